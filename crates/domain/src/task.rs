//! Tasks: lifecycle statuses and their legal order, containers, overrides, stop codes, the
//! resources a task holds on its instance, and the messages the control plane sends to agents.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EpochMillis;
use crate::container_instance::ContainerInstance;
use crate::tags::Tag;
use crate::task_definition::{ContainerDefinition, KeyValuePair, NetworkMode, TaskDefinition};

/// A task's status, in lifecycle order. `desiredStatus` uses PENDING, RUNNING and STOPPED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Activating => "ACTIVATING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Deprovisioning => "DEPROVISIONING",
            Self::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PROVISIONING" => Self::Provisioning,
            "PENDING" => Self::Pending,
            "ACTIVATING" => Self::Activating,
            "RUNNING" => Self::Running,
            "DEACTIVATING" => Self::Deactivating,
            "STOPPING" => Self::Stopping,
            "DEPROVISIONING" => Self::Deprovisioning,
            "STOPPED" => Self::Stopped,
            _ => return None,
        })
    }

    /// Whether the task counts as pending on its instance (placed, not yet running).
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Provisioning | Self::Pending | Self::Activating)
    }

    /// Whether the task counts as running on its instance.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Self::Running | Self::Deactivating | Self::Stopping | Self::Deprovisioning
        )
    }
}

/// Why a task stopped (`TaskStopCode`).
pub mod stop_code {
    pub const TASK_FAILED_TO_START: &str = "TaskFailedToStart";
    pub const ESSENTIAL_CONTAINER_EXITED: &str = "EssentialContainerExited";
    pub const USER_INITIATED: &str = "UserInitiated";
    pub const SERVICE_SCHEDULER_INITIATED: &str = "ServiceSchedulerInitiated";
    pub const SPOT_INTERRUPTION: &str = "SpotInterruption";
    pub const TERMINATION_NOTICE: &str = "TerminationNotice";
    pub const INFRASTRUCTURE_HEALTH: &str = "InfrastructureHealth";
}

/// A host port a container is reachable on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    #[serde(rename = "bindIP", default, skip_serializing_if = "Option::is_none")]
    pub bind_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// One container of a task, as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// The id part of the container's ARN.
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    pub last_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub network_bindings: Vec<NetworkBinding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    pub essential: bool,
    #[serde(default)]
    pub cpu: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
}

/// Per-container changes requested at RunTask/StartTask.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<KeyValuePair>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// `environmentFiles`, `resourceRequirements`, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Task-level changes requested at RunTask/StartTask (`TaskOverride`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverride {
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// `inferenceAcceleratorOverrides`, `ephemeralStorage`, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What a task holds on its container instance while it is not STOPPED.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub cpu: i64,
    pub memory: i64,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub udp_ports: Vec<String>,
    /// Network interfaces (1 for an awsvpc task).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub enis: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// The id part of the ARN (32 hex characters).
    pub id: String,
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_id: Option<String>,
    pub family: String,
    pub revision: u32,
    pub desired_status: TaskStatus,
    pub last_status: TaskStatus,
    pub launch_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default)]
    pub overrides: TaskOverride,
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    pub group: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub created_at: EpochMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// Bumped on every change, as ECS's `version`.
    pub version: u64,
    #[serde(default)]
    pub reservation: Reservation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub enable_execute_command: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The service deployment that started this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// awsvpc tasks: the task's network interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::EniAttachment>,
    /// The capacity provider the task was launched on (`FARGATE`, `FARGATE_SPOT`, a host pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    /// Fargate tasks: the platform version (`1.4.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    /// Fargate tasks: `ephemeralStorage.sizeInGiB` (20 when the task definition sets none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_gib: Option<u32>,
    /// Seconds between SIGTERM and SIGKILL when the task is stopped, overriding the containers'
    /// `stopTimeout` (a Spot interruption's warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_seconds: Option<u64>,
    /// Task scale-in protection (`UpdateTaskProtection`): until then the service scheduler
    /// neither scales the task in nor replaces it in a deployment. Past it, the task is
    /// unprotected again; the value is kept to show nothing but that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_until: Option<EpochMillis>,
}

/// Task scale-in protection lasts this long when `expiresInMinutes` is not given.
pub const DEFAULT_PROTECTION_MINUTES: i64 = 120;
/// The longest task scale-in protection (48 hours).
pub const MAX_PROTECTION_MINUTES: i64 = 2880;

impl Task {
    /// Whether scale-in protection holds at `now` (epoch milliseconds).
    pub fn is_protected(&self, now: EpochMillis) -> bool {
        self.protected_until.is_some_and(|until| until > now)
    }

    /// Whether the task runs on the platform's Fargate capacity.
    pub fn is_fargate(&self) -> bool {
        self.launch_type == "FARGATE"
    }

    /// The cluster whose container instance runs the task: the task's own cluster, or the
    /// platform cluster for Fargate tasks.
    pub fn host_cluster(&self) -> &str {
        if self.is_fargate() {
            crate::cluster::FARGATE_PLATFORM_CLUSTER
        } else {
            &self.cluster
        }
    }

    /// ECS's aggregate health: any essential UNHEALTHY → UNHEALTHY; else any UNKNOWN (or
    /// unreported) → UNKNOWN; else HEALTHY. Containers without a health check do not count.
    pub fn health_status(&self, def: Option<&TaskDefinition>) -> &'static str {
        let mut any_checked = false;
        let mut unknown = false;
        for c in self.containers.iter().filter(|c| c.essential) {
            let has_check = def
                .and_then(|d| d.container_definitions.iter().find(|cd| cd.name == c.name))
                .is_some_and(|cd| cd.health_check.is_some());
            if !has_check {
                continue;
            }
            any_checked = true;
            match c.health_status.as_deref() {
                Some("UNHEALTHY") => return "UNHEALTHY",
                Some("HEALTHY") => {}
                _ => unknown = true,
            }
        }
        if !any_checked || unknown {
            "UNKNOWN"
        } else {
            "HEALTHY"
        }
    }
}

/// The resources a task of `td` with `overrides` needs: task-level cpu/memory when set, else the
/// sum over containers (memory counts `memoryReservation` when set, else `memory`, as ECS does);
/// static host ports in bridge and host mode.
pub fn required_resources(td: &TaskDefinition, overrides: &TaskOverride) -> Reservation {
    let container_override = |name: &str| {
        overrides
            .container_overrides
            .iter()
            .find(|o| o.name.as_deref() == Some(name))
    };
    let task_cpu = overrides
        .cpu
        .as_deref()
        .or(td.cpu.as_deref())
        .and_then(|c| c.parse::<i64>().ok());
    let task_mem = overrides
        .memory
        .as_deref()
        .or(td.memory.as_deref())
        .and_then(|m| m.parse::<i64>().ok());
    let mut cpu = 0;
    let mut memory = 0;
    let mut ports = Vec::new();
    let mut udp_ports = Vec::new();
    for c in &td.container_definitions {
        let o = container_override(&c.name);
        cpu += o.and_then(|o| o.cpu).unwrap_or(c.cpu);
        let hard = o.and_then(|o| o.memory).or(c.memory);
        let soft = o
            .and_then(|o| o.memory_reservation)
            .or(c.memory_reservation);
        memory += soft.or(hard).unwrap_or(0);
        if matches!(
            td.effective_network_mode(),
            NetworkMode::Bridge | NetworkMode::Host
        ) {
            for pm in &c.port_mappings {
                let hp = match td.effective_network_mode() {
                    NetworkMode::Host => pm.host_port.or(pm.container_port),
                    _ => pm.host_port,
                };
                if let Some(p) = hp.filter(|p| *p > 0) {
                    if pm.protocol.as_deref() == Some("udp") {
                        udp_ports.push(p.to_string());
                    } else {
                        ports.push(p.to_string());
                    }
                }
            }
        }
    }
    Reservation {
        cpu: task_cpu.unwrap_or(cpu),
        memory: task_mem.unwrap_or(memory),
        ports,
        udp_ports,
        enis: i64::from(td.effective_network_mode() == NetworkMode::Awsvpc),
    }
}

/// Adds (`sign` = 1) or releases (`sign` = -1) a reservation on an instance.
pub fn apply_reservation(ci: &mut ContainerInstance, r: &Reservation, sign: i64) {
    ci.reserved_cpu = (ci.reserved_cpu + sign * r.cpu).max(0);
    ci.reserved_memory = (ci.reserved_memory + sign * r.memory).max(0);
    ci.reserved_enis = (ci.reserved_enis + sign * r.enis).max(0);
    if sign > 0 {
        ci.reserved_ports.extend(r.ports.iter().cloned());
        ci.reserved_udp_ports.extend(r.udp_ports.iter().cloned());
    } else {
        for p in &r.ports {
            if let Some(i) = ci.reserved_ports.iter().position(|x| x == p) {
                ci.reserved_ports.remove(i);
            }
        }
        for p in &r.udp_ports {
            if let Some(i) = ci.reserved_udp_ports.iter().position(|x| x == p) {
                ci.reserved_udp_ports.remove(i);
            }
        }
    }
}

/// Keeps an instance's task counts and reservations in step with one task's status change.
pub fn account_transition(
    ci: &mut ContainerInstance,
    r: &Reservation,
    from: Option<TaskStatus>,
    to: TaskStatus,
) {
    let counted = |s: Option<TaskStatus>| match s {
        Some(s) if s.is_pending() => (1, 0),
        Some(s) if s.is_running() => (0, 1),
        _ => (0, 0),
    };
    let (p0, r0) = counted(from);
    let (p1, r1) = counted(Some(to));
    ci.pending_tasks_count = (ci.pending_tasks_count - p0 + p1).max(0);
    ci.running_tasks_count = (ci.running_tasks_count - r0 + r1).max(0);
    let held = |s: Option<TaskStatus>| s.is_some_and(|s| s != TaskStatus::Stopped);
    match (held(from), held(Some(to))) {
        (false, true) => apply_reservation(ci, r, 1),
        (true, false) => apply_reservation(ci, r, -1),
        _ => {}
    }
    ci.version += 1;
}

/// A container definition with a task's overrides applied (what the agent runs).
pub fn effective_container(
    def: &ContainerDefinition,
    overrides: &TaskOverride,
) -> ContainerDefinition {
    let mut c = def.clone();
    if let Some(o) = overrides
        .container_overrides
        .iter()
        .find(|o| o.name.as_deref() == Some(&def.name))
    {
        if let Some(cmd) = &o.command {
            c.command = Some(cmd.clone());
        }
        if let Some(env) = &o.environment {
            for kv in env {
                match c.environment.iter_mut().find(|e| e.name == kv.name) {
                    Some(e) => e.value = kv.value.clone(),
                    None => c.environment.push(kv.clone()),
                }
            }
        }
        if let Some(cpu) = o.cpu {
            c.cpu = cpu;
        }
        if let Some(m) = o.memory {
            c.memory = Some(m);
        }
        if let Some(m) = o.memory_reservation {
            c.memory_reservation = Some(m);
        }
    }
    c
}

/// One task as sent to its agent: identity, desired status and everything needed to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTask {
    pub task_arn: String,
    pub cluster_arn: String,
    pub container_instance_arn: String,
    pub region: String,
    pub desired_status: TaskStatus,
    pub last_status: TaskStatus,
    /// The task record (containers' reported state, timestamps, overrides).
    pub task: Task,
    /// The task definition revision, with overrides NOT applied (see [`effective_container`]).
    pub task_definition: TaskDefinition,
}

/// Messages on the control plane → agent stream, one JSON object per line, shaped after ECS's
/// agent communication service: `{"type": "PayloadMessage", "message": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "message")]
pub enum AgentMessage {
    /// Tasks whose desired state changed (or all of the instance's tasks, on connect when
    /// `full_state` is true: the agent then stops anything of its own not listed).
    #[serde(rename = "PayloadMessage", rename_all = "camelCase")]
    Payload {
        message_id: String,
        full_state: bool,
        tasks: Vec<AgentTask>,
    },
    /// Sent every few seconds; an agent that hears nothing for 3 intervals reconnects.
    #[serde(rename = "HeartbeatMessage", rename_all = "camelCase")]
    Heartbeat {
        message_id: String,
        interval_seconds: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn td(v: Value) -> TaskDefinition {
        let mut t: TaskDefinition = serde_json::from_value(v).expect("td");
        crate::task_definition::normalize_for_registration(&mut t).expect("valid");
        t
    }

    #[test]
    fn resources_sum_containers_and_prefer_soft_memory() {
        let t = td(json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i", "cpu": 100, "memory": 512, "memoryReservation": 128,
             "portMappings": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
            {"name": "b", "image": "i", "cpu": 50, "memory": 64,
             "portMappings": [{"containerPort": 53, "hostPort": 5353, "protocol": "udp"}]}]}));
        let r = required_resources(&t, &TaskOverride::default());
        assert_eq!((r.cpu, r.memory), (150, 192));
        assert_eq!(r.ports, vec!["8080"]);
        assert_eq!(r.udp_ports, vec!["5353"]);
    }

    #[test]
    fn task_level_values_and_overrides_win() {
        let t = td(json!({"family": "f", "cpu": "1024", "memory": "2048",
            "containerDefinitions": [{"name": "a", "image": "i", "memory": 512}]}));
        let mut o = TaskOverride::default();
        assert_eq!(required_resources(&t, &o).memory, 2048);
        o.memory = Some("4096".into());
        assert_eq!(required_resources(&t, &o).memory, 4096);
    }

    #[test]
    fn overrides_apply_to_named_container_only() {
        let t = td(json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i", "memory": 10, "command": ["x"], "environment": [{"name": "K", "value": "1"}]},
            {"name": "b", "image": "i", "memory": 10}]}));
        let o: TaskOverride = serde_json::from_value(json!({"containerOverrides": [
            {"name": "a", "command": ["y"], "environment": [{"name": "K", "value": "2"}, {"name": "N", "value": "3"}]}]}))
        .expect("override");
        let a = effective_container(&t.container_definitions[0], &o);
        assert_eq!(a.command, Some(vec!["y".to_string()]));
        assert_eq!(a.environment.len(), 2);
        assert_eq!(a.environment[0].value.as_deref(), Some("2"));
        let b = effective_container(&t.container_definitions[1], &o);
        assert_eq!(b, t.container_definitions[1]);
    }

    #[test]
    fn agent_messages_use_ecs_envelopes() {
        let m = AgentMessage::Heartbeat {
            message_id: "m1".into(),
            interval_seconds: 5,
        };
        let v = serde_json::to_value(&m).expect("json");
        assert_eq!(
            v,
            json!({"type": "HeartbeatMessage", "message": {"messageId": "m1", "intervalSeconds": 5}})
        );
        let back: AgentMessage = serde_json::from_value(v).expect("parse");
        assert_eq!(back, m);
    }

    #[test]
    fn statuses_order_and_count() {
        assert!(TaskStatus::Pending < TaskStatus::Running);
        assert!(TaskStatus::Running < TaskStatus::Stopped);
        assert!(TaskStatus::Provisioning.is_pending());
        assert!(TaskStatus::Stopping.is_running());
        assert!(!TaskStatus::Stopped.is_running() && !TaskStatus::Stopped.is_pending());
        for s in ["PROVISIONING", "RUNNING", "STOPPED"] {
            assert_eq!(TaskStatus::parse(s).map(TaskStatus::as_str), Some(s));
        }
    }
}
