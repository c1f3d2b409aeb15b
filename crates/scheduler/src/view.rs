//! The read-only inputs of placement: what an instance offers and what a task needs.

/// The dynamic host port range the ECS agent uses when `/proc/sys/net/ipv4/ip_local_port_range`
/// gives none (`ECS_DYNAMIC_HOST_PORT_RANGE` unset): 49153-65535.
pub const DEFAULT_DYNAMIC_PORT_RANGE: (u16, u16) = (49153, 65535);

/// One container instance as the scheduler sees it: a snapshot, built by the caller from the
/// stored `ContainerInstance` and the tasks on it.
#[derive(Debug, Clone)]
pub struct InstanceView {
    /// The container instance id (or ARN); results refer to instances by their index in the view,
    /// this is for the caller's convenience and for `instanceId` spread.
    pub id: String,
    /// `ec2InstanceId`, for the CQL subject of that name.
    pub ec2_instance_id: String,
    /// Whether the instance's status is `ACTIVE`. Other instances (`DRAINING`, `INACTIVE`, ...)
    /// are never candidates.
    pub active: bool,
    /// Whether the agent is connected; disconnected instances fail with `AGENT`.
    pub agent_connected: bool,
    /// `versionInfo.agentVersion`, for the CQL subject `agentVersion`.
    pub agent_version: Option<String>,
    /// Registration time, milliseconds since the Unix epoch (CQL `registeredAt`).
    pub registered_at: u64,
    /// Attributes by name, with their value if they have one.
    pub attributes: Vec<(String, Option<String>)>,
    /// Registered CPU units minus what tasks hold.
    pub remaining_cpu: i64,
    /// Registered memory (MiB) minus what tasks hold.
    pub remaining_memory: i64,
    /// Network interfaces still available to awsvpc tasks (the registered `ENI` resource minus
    /// the awsvpc tasks on the instance); `i64::MAX` when the instance has no such limit.
    pub remaining_enis: i64,
    /// TCP host ports not available: the registered `PORTS` set (ports reserved at registration)
    /// plus the static host ports of tasks on the instance.
    pub used_tcp_ports: Vec<u16>,
    /// UDP host ports not available (`PORTS_UDP` plus tasks' static UDP host ports).
    pub used_udp_ports: Vec<u16>,
    /// The range Docker picks dynamic host ports from (inclusive).
    pub dynamic_port_range: (u16, u16),
    /// Dynamic host ports already handed out on this instance (TCP), counted against the range.
    pub dynamic_tcp_in_use: u32,
    /// Dynamic host ports already handed out on this instance (UDP).
    pub dynamic_udp_in_use: u32,
    /// ECS `runningTasksCount` (CQL subject of that name).
    pub running_tasks_count: u32,
    /// The group of every task on the instance whose desired status is `RUNNING`, one entry per
    /// task (duplicates expected): `service:web`, `family:batch`, ... Drives `task:group`,
    /// `distinctInstance` and `spread`.
    pub task_groups: Vec<String>,
}

impl Default for InstanceView {
    fn default() -> Self {
        Self {
            id: String::new(),
            ec2_instance_id: String::new(),
            active: true,
            agent_connected: true,
            agent_version: None,
            registered_at: 0,
            attributes: Vec::new(),
            remaining_cpu: 0,
            remaining_memory: 0,
            remaining_enis: i64::MAX,
            used_tcp_ports: Vec::new(),
            used_udp_ports: Vec::new(),
            dynamic_port_range: DEFAULT_DYNAMIC_PORT_RANGE,
            dynamic_tcp_in_use: 0,
            dynamic_udp_in_use: 0,
            running_tasks_count: 0,
            task_groups: Vec::new(),
        }
    }
}

impl InstanceView {
    /// The attribute `name`: `None` when absent, `Some(None)` when present without a value.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }
}

/// Parses a resource string set of ports (`["22", "2375"]`), skipping what is not a port number.
pub fn parse_ports<S: AsRef<str>>(ports: &[S]) -> Vec<u16> {
    ports
        .iter()
        .filter_map(|p| p.as_ref().trim().parse().ok())
        .collect()
}

/// Transport protocol of a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// One port mapping of a container, from the placement point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortNeed {
    /// The host port; `0` asks Docker for a dynamic port (bridge mode without `hostPort`).
    pub host_port: u16,
    pub protocol: Protocol,
}

/// What one container of a task definition asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerDemand {
    /// Container `cpu` units.
    pub cpu: u32,
    /// Hard limit `memory` (MiB).
    pub memory: Option<u32>,
    /// Soft limit `memoryReservation` (MiB).
    pub memory_reservation: Option<u32>,
    /// Host ports (none in `awsvpc` mode).
    pub ports: Vec<PortNeed>,
}

/// What one task needs from an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskDemand {
    /// CPU units.
    pub cpu: u32,
    /// Memory (MiB) reserved on the instance.
    pub memory: u32,
    /// Static TCP host ports.
    pub tcp_ports: Vec<u16>,
    /// Static UDP host ports.
    pub udp_ports: Vec<u16>,
    /// Dynamic TCP host ports needed.
    pub dynamic_tcp_ports: u32,
    /// Dynamic UDP host ports needed.
    pub dynamic_udp_ports: u32,
    /// Network interfaces (1 for an awsvpc task).
    pub enis: u32,
}

impl TaskDemand {
    /// Counts a task as ECS does on EC2 instances:
    /// - CPU: the task-level `cpu` when set, otherwise the sum of the containers' `cpu`;
    /// - memory: the task-level `memory` when set, otherwise the sum over containers of
    ///   `memoryReservation` when set, else `memory` (the soft limit is what is reserved);
    /// - ports: host port `0` is a dynamic port, any other a static one (duplicates counted once).
    pub fn from_containers(
        task_cpu: Option<u32>,
        task_memory: Option<u32>,
        containers: &[ContainerDemand],
    ) -> Self {
        let cpu = task_cpu.unwrap_or_else(|| {
            containers
                .iter()
                .fold(0u32, |acc, c| acc.saturating_add(c.cpu))
        });
        let memory = task_memory.unwrap_or_else(|| {
            containers.iter().fold(0u32, |acc, c| {
                acc.saturating_add(c.memory_reservation.or(c.memory).unwrap_or(0))
            })
        });
        let mut demand = Self {
            cpu,
            memory,
            ..Self::default()
        };
        for p in containers.iter().flat_map(|c| &c.ports) {
            match (p.protocol, p.host_port) {
                (Protocol::Tcp, 0) => demand.dynamic_tcp_ports += 1,
                (Protocol::Udp, 0) => demand.dynamic_udp_ports += 1,
                (Protocol::Tcp, hp) => demand.tcp_ports.push(hp),
                (Protocol::Udp, hp) => demand.udp_ports.push(hp),
            }
        }
        demand.normalize();
        demand
    }

    /// Sorts and deduplicates the static ports.
    pub(crate) fn normalize(&mut self) {
        self.tcp_ports.sort_unstable();
        self.tcp_ports.dedup();
        self.udp_ports.sort_unstable();
        self.udp_ports.dedup();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_reservation_is_what_is_reserved() {
        let d = TaskDemand::from_containers(
            None,
            None,
            &[
                ContainerDemand {
                    cpu: 256,
                    memory: Some(512),
                    memory_reservation: Some(128),
                    ports: vec![PortNeed {
                        host_port: 80,
                        protocol: Protocol::Tcp,
                    }],
                },
                ContainerDemand {
                    cpu: 128,
                    memory: Some(300),
                    memory_reservation: None,
                    ports: vec![
                        PortNeed {
                            host_port: 0,
                            protocol: Protocol::Tcp,
                        },
                        PortNeed {
                            host_port: 53,
                            protocol: Protocol::Udp,
                        },
                    ],
                },
            ],
        );
        assert_eq!(d.cpu, 384);
        assert_eq!(d.memory, 428);
        assert_eq!(d.tcp_ports, vec![80]);
        assert_eq!(d.udp_ports, vec![53]);
        assert_eq!(d.dynamic_tcp_ports, 1);
    }

    #[test]
    fn task_level_sizes_win() {
        let d = TaskDemand::from_containers(
            Some(1024),
            Some(2048),
            &[ContainerDemand {
                cpu: 10,
                memory: Some(100),
                ..ContainerDemand::default()
            }],
        );
        assert_eq!((d.cpu, d.memory), (1024, 2048));
    }

    #[test]
    fn ports_parse_skipping_garbage() {
        assert_eq!(parse_ports(&["22", " 2375", "x", "70000"]), vec![22, 2375]);
    }
}
