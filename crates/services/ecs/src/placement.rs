//! The bridge between stored records and the pure scheduler (`gantry-scheduler`): instance views,
//! task demands, constraints and strategies from the wire, and failures back to the wire.

use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
use gantry_domain::task::TaskOverride;
use gantry_domain::task_definition::{NetworkMode, TaskDefinition};
use gantry_scheduler::{
    ContainerDemand, InstanceView, PlacementConstraint, PlacementError, PlacementStrategy,
    PortNeed, Protocol, RequiredAttribute, TaskDemand, check_limits, parse_ports,
};
use serde_json::Value;

use crate::EcsError;

impl From<PlacementError> for EcsError {
    fn from(e: PlacementError) -> Self {
        EcsError::InvalidParameter(e.to_string())
    }
}

/// The scheduler's view of a stored instance, with the groups of the tasks on it.
pub fn view_of(ci: &ContainerInstance, task_groups: Vec<String>) -> InstanceView {
    let registered_ports = |name: &str| {
        ci.registered_resources
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.string_set_value.as_deref())
            .map(parse_ports)
            .unwrap_or_default()
    };
    let registered = |name: &str| {
        ci.registered_resources
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.integer_value)
            .unwrap_or(0)
    };
    let mut used_tcp_ports = registered_ports("PORTS");
    used_tcp_ports.extend(parse_ports(&ci.reserved_ports));
    let mut used_udp_ports = registered_ports("PORTS_UDP");
    used_udp_ports.extend(parse_ports(&ci.reserved_udp_ports));
    InstanceView {
        id: ci.id.clone(),
        ec2_instance_id: ci.ec2_instance_id.clone(),
        active: ci.status == ContainerInstanceStatus::Active,
        agent_connected: ci.agent_connected,
        agent_version: ci.version_info.agent_version.clone(),
        registered_at: ci.registered_at,
        attributes: ci
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect(),
        remaining_cpu: registered("CPU") - ci.reserved_cpu,
        remaining_memory: registered("MEMORY") - ci.reserved_memory,
        remaining_enis: ci
            .registered_resources
            .iter()
            .find(|r| r.name == "ENI")
            .and_then(|r| r.integer_value)
            .map_or(i64::MAX, |e| e - ci.reserved_enis),
        used_tcp_ports,
        used_udp_ports,
        running_tasks_count: u32::try_from(ci.running_tasks_count).unwrap_or(0),
        task_groups,
        ..InstanceView::default()
    }
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// What one task of `td` (with `overrides`) needs, as the scheduler counts it.
pub fn demand(td: &TaskDefinition, overrides: &TaskOverride) -> TaskDemand {
    let mode = td.effective_network_mode();
    let containers: Vec<ContainerDemand> = td
        .container_definitions
        .iter()
        .map(|c| {
            let c = gantry_domain::task::effective_container(c, overrides);
            let ports = match mode {
                NetworkMode::Bridge | NetworkMode::Host => c
                    .port_mappings
                    .iter()
                    .filter_map(|pm| {
                        let host = match mode {
                            NetworkMode::Host => pm.host_port.or(pm.container_port),
                            _ => pm.host_port,
                        }
                        .unwrap_or(0);
                        Some(PortNeed {
                            host_port: u16::try_from(host).ok()?,
                            protocol: if pm.protocol.as_deref() == Some("udp") {
                                Protocol::Udp
                            } else {
                                Protocol::Tcp
                            },
                        })
                    })
                    .collect(),
                _ => vec![],
            };
            ContainerDemand {
                cpu: to_u32(c.cpu),
                memory: c.memory.map(to_u32),
                memory_reservation: c.memory_reservation.map(to_u32),
                ports,
            }
        })
        .collect();
    let task_cpu = overrides
        .cpu
        .as_deref()
        .or(td.cpu.as_deref())
        .and_then(|v| v.parse().ok());
    let task_mem = overrides
        .memory
        .as_deref()
        .or(td.memory.as_deref())
        .and_then(|v| v.parse().ok());
    let mut demand = TaskDemand::from_containers(task_cpu, task_mem, &containers);
    // An awsvpc task holds one of the instance's network interfaces.
    demand.enis = u32::from(mode == NetworkMode::Awsvpc);
    demand
}

/// The instance attributes `td` requires.
pub fn requires(td: &TaskDefinition) -> Vec<RequiredAttribute> {
    td.requires_attributes
        .iter()
        .map(|a| RequiredAttribute::named(a.name.clone()))
        .collect()
}

/// `placementConstraints` from the wire (request and task definition together).
pub fn constraints(values: &[Value]) -> Result<Vec<PlacementConstraint>, EcsError> {
    values
        .iter()
        .map(|c| {
            let kind = c.get("type").and_then(Value::as_str).unwrap_or("");
            let expr = c.get("expression").and_then(Value::as_str);
            Ok(PlacementConstraint::from_wire(kind, expr)?)
        })
        .collect()
}

/// `placementStrategy` from the wire.
pub fn strategies(values: &[Value]) -> Result<Vec<PlacementStrategy>, EcsError> {
    values
        .iter()
        .map(|s| {
            let kind = s.get("type").and_then(Value::as_str).unwrap_or("");
            let field = s.get("field").and_then(Value::as_str);
            Ok(PlacementStrategy::from_wire(kind, field)?)
        })
        .collect()
}

/// Checks constraint and strategy lists as ECS does (counts, types, fields, CQL syntax).
pub fn validate(constraint_values: &[Value], strategy_values: &[Value]) -> Result<(), EcsError> {
    check_limits(constraint_values.len(), strategy_values.len())?;
    constraints(constraint_values)?;
    strategies(strategy_values)?;
    Ok(())
}
