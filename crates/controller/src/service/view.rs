//! What the service reconciler observes: tasks and container instances, reduced to the fields
//! it decides on. The runner builds these from the store's records.

use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
use gantry_domain::task::{Task, TaskStatus};
use gantry_domain::task_definition::TaskDefinition;
use serde::{Deserialize, Serialize};

/// A task's health as far as the service scheduler is concerned, aggregated over its essential
/// containers' health checks (ECS's `healthStatus`), or [`Health::NoCheck`] when none has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// Every essential container with a health check reports HEALTHY.
    Healthy,
    /// An essential container reports UNHEALTHY.
    Unhealthy,
    /// A health check has not reported yet.
    Unknown,
    /// No essential container has a health check: a RUNNING task counts as healthy.
    NoCheck,
}

impl Health {
    /// The health of `task` given its task definition (`None`: unknown definition, no checks).
    pub fn of_task(task: &Task, def: Option<&TaskDefinition>) -> Self {
        let any_check = task.containers.iter().filter(|c| c.essential).any(|c| {
            def.and_then(|d| d.container_definitions.iter().find(|cd| cd.name == c.name))
                .is_some_and(|cd| cd.health_check.is_some())
        });
        if !any_check {
            return Self::NoCheck;
        }
        match task.health_status(def) {
            "HEALTHY" => Self::Healthy,
            "UNHEALTHY" => Self::Unhealthy,
            _ => Self::Unknown,
        }
    }
}

/// One task of the service, live or stopped (stopped tasks stay visible for about an hour; the
/// circuit breaker and the launch throttle are derived from them, so keep passing them).
///
/// All times are epoch milliseconds, like `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    /// The service deployment that started the task (`Task::deployment_id`).
    pub deployment_id: Option<String>,
    pub desired: TaskStatus,
    pub last: TaskStatus,
    /// For a stopped task: its health when it stopped.
    pub health: Health,
    pub created_at: u64,
    /// When the task reached RUNNING, if it did.
    pub started_at: Option<u64>,
    pub stopped_at: Option<u64>,
    /// `TaskStopCode` (see `gantry_domain::task::stop_code`).
    pub stop_code: Option<String>,
    pub instance_id: Option<String>,
    /// Task scale-in protection: until then the task is chosen neither for scale-in nor for
    /// replacement by a deployment (it is still replaced when unhealthy or its instance drains).
    pub protected_until: Option<u64>,
    /// Optional scale-in preference from the placement strategy (lower is stopped first), e.g.
    /// the position given by `gantry_scheduler::scale_in::choose_tasks_to_stop` over all live
    /// tasks of the service. Give it to all tasks or to none.
    pub scale_in_rank: Option<u32>,
}

impl TaskView {
    /// The view of a stored task, given its health.
    pub fn from_task(task: &Task, health: Health) -> Self {
        Self {
            id: task.id.clone(),
            deployment_id: task.deployment_id.clone(),
            desired: task.desired_status,
            last: task.last_status,
            health,
            created_at: task.created_at,
            started_at: task.started_at,
            stopped_at: task.stopped_at,
            stop_code: task.stop_code.clone(),
            instance_id: task.container_instance_id.clone(),
            protected_until: task.protected_until,
            scale_in_rank: None,
        }
    }

    /// Live: wanted running and not stopped yet. A task whose desired status is STOPPED is on
    /// its way out (STOPPING) and no longer counts.
    pub fn is_live(&self) -> bool {
        self.desired != TaskStatus::Stopped && self.last != TaskStatus::Stopped
    }

    /// When the task stopped (or was told to), for ordering failures.
    pub(crate) fn stop_time(&self) -> u64 {
        self.stopped_at
            .unwrap_or_else(|| self.started_at.unwrap_or(0).max(self.created_at))
    }
}

/// One container instance of the cluster. Pass every instance of the cluster: for a DAEMON
/// service a task on an instance that is not in the view is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub id: String,
    pub status: ContainerInstanceStatus,
    pub agent_connected: bool,
    /// The DAEMON service's placement constraints, evaluated by the runner.
    pub eligible_for_daemon: bool,
    /// Live tasks of REPLICA services on this instance: a DAEMON task on a DRAINING instance is
    /// stopped only once they are gone ("stopped last"). 0 when unknown.
    pub replica_tasks: usize,
}

impl InstanceView {
    /// The view of a stored instance.
    pub fn from_instance(
        ci: &ContainerInstance,
        eligible_for_daemon: bool,
        replica_tasks: usize,
    ) -> Self {
        Self {
            id: ci.id.clone(),
            status: ci.status,
            agent_connected: ci.agent_connected,
            eligible_for_daemon,
            replica_tasks,
        }
    }

    /// Eligible for new DAEMON tasks: ACTIVE, agent connected, constraints met.
    pub fn daemon_eligible(&self) -> bool {
        self.status == ContainerInstanceStatus::Active
            && self.agent_connected
            && self.eligible_for_daemon
    }
}
