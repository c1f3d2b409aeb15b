//! Task placement for Gantry: feasibility, constraints (the Cluster Query Language) and strategies.
//!
//! Pure: no I/O, no clock, no global randomness. Must not depend on tokio, HTTP, a database or
//! Docker.

pub mod cql;
mod placer;
mod request;
mod rng;
mod scale_in;
mod view;

pub use cql::{CqlError, Expr};
pub use placer::{FailureReason, PlacementFailure, PlacementResult, Placer, place};
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
