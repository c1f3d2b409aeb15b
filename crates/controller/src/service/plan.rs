//! What the service reconciler decides: launches, stops and the updated service record.

use gantry_domain::service::{SchedulingStrategy, Service};
use serde::Serialize;

/// Start `count` tasks of a deployment's task definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Launch {
    /// The deployment whose family/revision and launch type to run (look it up in
    /// [`Plan::service`] when set: a rollback creates the deployment in the same plan).
    pub deployment_id: String,
    pub count: usize,
    /// DAEMON: exactly this instance. REPLICA: `None`, the scheduler places.
    pub instance_id: Option<String>,
}

/// Why the reconciler stops a task (for metrics and logs; the runner's `stoppedReason` is
/// [`Stop::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopKind {
    /// More tasks than desired.
    ScaleIn,
    /// A task of an older deployment, replaced by the primary.
    Deployment,
    /// Failed its health checks past the grace period.
    Unhealthy,
    /// Its container instance is DRAINING (or gone).
    InstanceDraining,
    /// DAEMON: a second task on the same instance.
    Duplicate,
    /// DAEMON: the instance no longer meets the service's constraints.
    IneligibleInstance,
    /// The service is being deleted.
    ServiceDeleted,
}

/// Stop one task: the runner sets desired STOPPED with stopCode `ServiceSchedulerInitiated` and
/// `reason` as `stoppedReason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stop {
    pub task_id: String,
    pub reason: String,
    pub kind: StopKind,
}

/// The outcome of one reconcile.
///
/// Apply it in this order: commit [`Plan::service`] (compare-and-swap on the revision read; on
/// conflict drop the whole plan and reconcile again), then the stops, then place the launches.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    pub launches: Vec<Launch>,
    pub stops: Vec<Stop>,
    /// `Some(updated)` when the record must change (deployments, rollout state, events,
    /// throttle, status); `version` is already bumped.
    pub service: Option<Service>,
    /// The earliest time at which the same inputs would give a different plan (end of a launch
    /// back-off, of a health check grace period, of a task's scale-in protection). The runner may
    /// reconcile again then instead of only on its timer.
    pub wake_at: Option<u64>,
}

impl Plan {
    /// Nothing to do and nothing to record.
    pub fn is_empty(&self) -> bool {
        self.launches.is_empty() && self.stops.is_empty() && self.service.is_none()
    }

    /// Total tasks to start.
    pub fn launch_count(&self) -> usize {
        self.launches.iter().map(|l| l.count).sum()
    }
}

/// Order in which a runner handles services that compete for the same instances: DAEMON tasks
/// are placed first (lower sorts first). They are stopped last on a DRAINING instance by the
/// reconciler itself (see [`super::InstanceView::replica_tasks`]).
pub fn placement_priority(service: &Service) -> u8 {
    match service.scheduling_strategy {
        SchedulingStrategy::Daemon => 0,
        SchedulingStrategy::Replica => 1,
    }
}

/// Generator of the ids the reconciler writes: deployment ids (`ecs-svc/<19 digits>`) and
/// service event ids (UUIDs in ECS). Injected so that reconcile stays pure.
pub trait IdSource {
    fn deployment_id(&mut self) -> String;
    fn event_id(&mut self) -> String;
}

/// Deterministic ids from a counter, for tests and simulations.
#[derive(Debug, Clone, Default)]
pub struct SequentialIds {
    next: u64,
}

impl SequentialIds {
    pub fn starting_at(next: u64) -> Self {
        Self { next }
    }

    fn bump(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

impl IdSource for SequentialIds {
    fn deployment_id(&mut self) -> String {
        format!("ecs-svc/{:019}", self.bump())
    }

    fn event_id(&mut self) -> String {
        let n = self.bump();
        format!("00000000-0000-4000-8000-{n:012x}")
    }
}
