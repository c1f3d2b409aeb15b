//! Task placement for Gantry: which container instance runs each task.
//!
//! Pure: no I/O, no clock, no global randomness (a seeded [`SchedRng`] is passed in). Must not
//! depend on tokio, HTTP, a database or Docker; it does not depend on `gantry-domain` either, so
//! callers build the small [`InstanceView`] from whatever they store.
//!
//! # What it does
//! Placement follows ECS ([`place`], [`Placer`]):
//! 1. **Feasibility**: only `ACTIVE` instances are candidates; a disconnected agent fails with
//!    `AGENT`; `requiresAttributes` with `ATTRIBUTE`; then CPU units, memory (counted as ECS
//!    counts it, see [`TaskDemand::from_containers`]), static TCP/UDP host ports and free
//!    dynamic ports (`RESOURCE:CPU`, `RESOURCE:MEMORY`, `RESOURCE:PORTS`).
//! 2. **Constraints** (binding): `distinctInstance` (no other task of the group on the
//!    instance) and `memberOf` with the Cluster Query Language ([`cql`]).
//! 3. **Strategies** (best effort), in order, later ones breaking ties: `binpack` on cpu or
//!    memory (least remaining first), `spread` on `instanceId`/`host` or any attribute (fewest
//!    tasks of the group first), `random`. Remaining ties are broken with the seeded RNG; no
//!    strategy at all means random. Services without a strategy use
//!    [`PlacementStrategy::service_default`].
//! 4. A task that cannot be placed gets a [`PlacementFailure`]: ECS's reason string
//!    ([`FailureReason::as_str`]) and the closest-matching instance for `failures[].arn` and
//!    service events ([`FailureReason::event_detail`]).
//!
//! Tasks placed in one call see each other's reservations; a [`Placer`] kept across calls also
//! sees the earlier calls' (the one-shot [`place`] builds a `Placer` per call). The caller
//! commits the reservations to the store with compare-and-swap and retries on conflict.
//!
//! Scale-in is [`choose_tasks_to_stop`]. `ListContainerInstances --filter` is
//! [`cql::parse`] then [`Expr::matches`]; [`CqlError`] and [`PlacementError`] map to
//! `InvalidParameterException`.
//!
//! # Example
//! Building the view from a stored `gantry_domain::container_instance::ContainerInstance`
//! (`ci`) and the groups of the tasks on it whose desired status is RUNNING:
//!
//! ```ignore
//! use gantry_domain::container_instance::ContainerInstanceStatus;
//! use gantry_scheduler::{parse_ports, InstanceView};
//!
//! fn view_of(ci: &ContainerInstance, task_groups: Vec<String>) -> InstanceView {
//!     let registered_ports = |name: &str| {
//!         ci.registered_resources
//!             .iter()
//!             .find(|r| r.name == name)
//!             .and_then(|r| r.string_set_value.as_deref())
//!             .map(parse_ports)
//!             .unwrap_or_default()
//!     };
//!     let mut used_tcp_ports = registered_ports("PORTS");
//!     used_tcp_ports.extend(parse_ports(&ci.reserved_ports));
//!     let mut used_udp_ports = registered_ports("PORTS_UDP");
//!     used_udp_ports.extend(parse_ports(&ci.reserved_udp_ports));
//!     let registered = |name: &str| {
//!         ci.registered_resources
//!             .iter()
//!             .find(|r| r.name == name)
//!             .and_then(|r| r.integer_value)
//!             .unwrap_or(0)
//!     };
//!     InstanceView {
//!         id: ci.id.clone(),
//!         ec2_instance_id: ci.ec2_instance_id.clone(),
//!         active: ci.status == ContainerInstanceStatus::Active,
//!         agent_connected: ci.agent_connected,
//!         agent_version: ci.version_info.agent_version.clone(),
//!         registered_at: ci.registered_at,
//!         attributes: ci.attributes.iter().map(|a| (a.name.clone(), a.value.clone())).collect(),
//!         remaining_cpu: registered("CPU") - ci.reserved_cpu,
//!         remaining_memory: registered("MEMORY") - ci.reserved_memory,
//!         used_tcp_ports,
//!         used_udp_ports,
//!         running_tasks_count: ci.running_tasks_count as u32,
//!         task_groups,
//!         ..InstanceView::default()
//!     }
//! }
//! ```
//!
//! Placing two tasks of a service with `spread(AZ)` then `binpack(memory)` and a `memberOf`:
//!
//! ```
//! use gantry_scheduler::{
//!     InstanceView, PlacementConstraint, PlacementRequest, PlacementResult, PlacementStrategy,
//!     SchedRng, TaskDemand, place,
//! };
//!
//! let instance = |id: &str, zone: &str, stack: &str| InstanceView {
//!     id: id.into(),
//!     attributes: vec![
//!         ("ecs.availability-zone".into(), Some(zone.into())),
//!         ("stack".into(), Some(stack.into())),
//!     ],
//!     remaining_cpu: 2048,
//!     remaining_memory: 4096,
//!     ..InstanceView::default()
//! };
//! let view = vec![
//!     instance("a1", "us-east-1a", "blue"),
//!     instance("b1", "us-east-1b", "blue"),
//!     instance("b2", "us-east-1b", "green"),
//! ];
//! let request = PlacementRequest {
//!     task: TaskDemand { cpu: 256, memory: 512, ..TaskDemand::default() },
//!     count: 2,
//!     group: "service:web".into(),
//!     constraints: vec![PlacementConstraint::from_wire(
//!         "memberOf",
//!         Some("attribute:stack == blue"),
//!     )?],
//!     strategy: vec![
//!         PlacementStrategy::from_wire("spread", Some("attribute:ecs.availability-zone"))?,
//!         PlacementStrategy::from_wire("binpack", Some("memory"))?,
//!     ],
//!     requires_attributes: vec![],
//! };
//! let results = place(&request, &view, &mut SchedRng::seed_from_u64(7));
//! let mut ids: Vec<&str> = results
//!     .iter()
//!     .map(|r| match r {
//!         PlacementResult::Placed { instance } => view[*instance].id.as_str(),
//!         PlacementResult::Failed(f) => f.reason.as_str(),
//!     })
//!     .collect();
//! ids.sort();
//! assert_eq!(ids, ["a1", "b1"]);
//! # Ok::<(), gantry_scheduler::PlacementError>(())
//! ```

pub mod cql;
mod placer;
mod request;
mod rng;
mod scale_in;
mod view;

pub use cql::{CqlError, Expr};
pub use placer::{
    FailureReason, PlacementFailure, PlacementResult, Placer, StaticIndex, place, same_statics,
};
pub use request::{
    BinpackField, MAX_CONSTRAINTS, MAX_EXPRESSION_LEN, MAX_STRATEGIES, PlacementConstraint,
    PlacementError, PlacementRequest, PlacementStrategy, RequiredAttribute, SpreadField,
    check_limits,
};
pub use rng::SchedRng;
pub use scale_in::{RunningTask, choose_tasks_to_stop};
pub use view::{
    ContainerDemand, DEFAULT_DYNAMIC_PORT_RANGE, InstanceView, PortNeed, Protocol, TaskDemand,
    parse_ports,
};
