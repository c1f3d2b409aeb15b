//! A deterministic, in-memory simulation of the runner around [`crate::service::reconcile`]:
//! it applies plans to a task list and moves tasks through their lifecycle one tick at a time.
//! Used by the tests, the property tests and the benchmarks; no I/O, no clock.
//!
//! Task behaviour per task definition revision: by default a launched task is PENDING, RUNNING
//! and healthy on the next tick. Revisions in [`Sim::fail_to_start`] stop before RUNNING with
//! `TaskFailedToStart`; revisions in [`Sim::unhealthy`] run but report UNHEALTHY.

use std::collections::HashSet;

use gantry_domain::container_instance::ContainerInstanceStatus;
use gantry_domain::service::{
    Deployment, DeploymentConfiguration, DeploymentStatus, RolloutState, SchedulingStrategy,
    Service, ServiceStatus,
};
use gantry_domain::task::{TaskStatus, stop_code};

use crate::service::{
    Health, IdSource, InstanceView, Plan, SequentialIds, TaskView, messages, reconcile,
};

/// Milliseconds per simulated tick.
pub const TICK_MS: u64 = 1_000;

/// A REPLICA service with one IN_PROGRESS primary deployment of `family:1`.
pub fn replica_service(name: &str, desired: i64, min: i64, max: i64) -> Service {
    let mut config = DeploymentConfiguration::defaults(SchedulingStrategy::Replica);
    config.minimum_healthy_percent = min;
    config.maximum_percent = max;
    let id = "ecs-svc/0000000000000000001".to_owned();
    Service {
        name: name.to_owned(),
        cluster: "default".to_owned(),
        status: ServiceStatus::Active,
        desired_count: desired,
        scheduling_strategy: SchedulingStrategy::Replica,
        launch_type: "EC2".to_owned(),
        deployment_configuration: config,
        placement_constraints: Vec::new(),
        placement_strategy: Vec::new(),
        load_balancers: Vec::new(),
        health_check_grace_period_seconds: None,
        role_arn: None,
        network_configuration: None,
        tags: Vec::new(),
        propagate_tags: None,
        enable_ecs_managed_tags: false,
        enable_execute_command: false,
        created_at: 0,
        created_by: "arn:aws:iam::000000000000:root".to_owned(),
        deployments: vec![Deployment {
            rollout_state_reason: Some(messages::rollout_in_progress(&id)),
            id,
            status: DeploymentStatus::Primary,
            family: name.to_owned(),
            revision: 1,
            desired_count: desired,
            failed_tasks: 0,
            reached_running: false,
            created_at: 0,
            updated_at: 0,
            rollout_state: RolloutState::InProgress,
            launch_type: "EC2".to_owned(),
            network_configuration: None,
        }],
        events: Vec::new(),
        throttle_failures: 0,
        throttle_until: 0,
        shift: None,
        production_target_group: None,
        last_rollback: None,
        deployment_controller: None,
        task_sets: Vec::new(),
        version: 1,
        platform_version: None,
        capacity_provider_strategy: Vec::new(),
    }
}

/// A DAEMON service (min 0 / max 100) with one IN_PROGRESS primary deployment of `family:1`.
pub fn daemon_service(name: &str) -> Service {
    let mut s = replica_service(name, 0, 0, 100);
    s.scheduling_strategy = SchedulingStrategy::Daemon;
    s.deployment_configuration = DeploymentConfiguration::defaults(SchedulingStrategy::Daemon);
    s
}

/// What `UpdateService` with a new task definition does: a new PRIMARY deployment (IN_PROGRESS)
/// first, the previous primary becomes ACTIVE.
pub fn start_deployment(service: &mut Service, revision: u32, now: u64, ids: &mut dyn IdSource) {
    for d in &mut service.deployments {
        if d.status == DeploymentStatus::Primary {
            d.status = DeploymentStatus::Active;
            d.updated_at = now;
        }
    }
    let id = ids.deployment_id();
    service.deployments.insert(
        0,
        Deployment {
            rollout_state_reason: Some(messages::rollout_in_progress(&id)),
            id,
            status: DeploymentStatus::Primary,
            family: service.name.clone(),
            revision,
            desired_count: service.desired_count,
            failed_tasks: 0,
            reached_running: false,
            created_at: now,
            updated_at: now,
            rollout_state: RolloutState::InProgress,
            launch_type: service.launch_type.clone(),
            network_configuration: service.network_configuration.clone(),
        },
    );
    service.version += 1;
}

/// `count` ACTIVE instances with connected agents, eligible for DAEMON tasks.
pub fn instances(count: usize) -> Vec<InstanceView> {
    (0..count)
        .map(|i| InstanceView {
            id: format!("i-{i:03}"),
            status: ContainerInstanceStatus::Active,
            agent_connected: true,
            eligible_for_daemon: true,
            replica_tasks: 0,
        })
        .collect()
}

/// The simulated cluster of one service.
#[derive(Debug, Clone)]
pub struct Sim {
    pub service: Service,
    pub tasks: Vec<TaskView>,
    pub instances: Vec<InstanceView>,
    pub now: u64,
    pub ids: SequentialIds,
    /// Revisions whose tasks stop before RUNNING (`TaskFailedToStart`).
    pub fail_to_start: HashSet<u32>,
    /// Revisions whose tasks run but report UNHEALTHY.
    pub unhealthy: HashSet<u32>,
    /// Health a good task reports once RUNNING.
    pub health: Health,
    next_task: u64,
    next_instance: usize,
}

impl Sim {
    pub fn new(service: Service, instances: Vec<InstanceView>) -> Self {
        Self {
            service,
            tasks: Vec::new(),
            instances,
            now: 1_000_000,
            ids: SequentialIds::starting_at(1_000),
            fail_to_start: HashSet::new(),
            unhealthy: HashSet::new(),
            health: Health::Healthy,
            next_task: 0,
            next_instance: 0,
        }
    }

    /// Reconciles at the current time (without applying).
    pub fn plan(&mut self) -> Plan {
        reconcile(
            &self.service,
            &self.tasks,
            &self.instances,
            self.now,
            &mut self.ids,
        )
    }

    /// Applies a plan as the runner would: commit the service, stop, launch (PENDING).
    pub fn apply(&mut self, plan: &Plan) {
        if let Some(s) = &plan.service {
            self.service = s.clone();
        }
        for stop in &plan.stops {
            if let Some(t) = self.tasks.iter_mut().find(|t| t.id == stop.task_id) {
                t.desired = TaskStatus::Stopped;
                t.last = TaskStatus::Stopped;
                t.stop_code = Some(stop_code::SERVICE_SCHEDULER_INITIATED.to_owned());
                t.stopped_at = Some(self.now);
            }
        }
        for launch in &plan.launches {
            for _ in 0..launch.count {
                let instance = match &launch.instance_id {
                    Some(i) => Some(i.clone()),
                    None => self.pick_instance(),
                };
                self.next_task += 1;
                self.tasks.push(TaskView {
                    id: format!("t{:05}", self.next_task),
                    deployment_id: Some(launch.deployment_id.clone()),
                    desired: TaskStatus::Running,
                    last: TaskStatus::Pending,
                    health: Health::Unknown,
                    created_at: self.now,
                    started_at: None,
                    stopped_at: None,
                    stop_code: None,
                    instance_id: instance,
                    protected_until: None,
                    scale_in_rank: None,
                });
            }
        }
    }

    /// Round robin over ACTIVE instances with a connected agent (`None` without instances).
    fn pick_instance(&mut self) -> Option<String> {
        let ok: Vec<&InstanceView> = self
            .instances
            .iter()
            .filter(|i| i.status == ContainerInstanceStatus::Active && i.agent_connected)
            .collect();
        if ok.is_empty() {
            return None;
        }
        self.next_instance = (self.next_instance + 1) % ok.len();
        Some(ok[self.next_instance].id.clone())
    }

    fn revision_of(&self, t: &TaskView) -> Option<u32> {
        let id = t.deployment_id.as_deref()?;
        self.service
            .deployments
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.revision)
    }

    /// Advances the clock by one tick and moves every PENDING task on: RUNNING (healthy,
    /// unhealthy) or STOPPED before RUNNING, per its revision. Tasks on instances whose agent is
    /// disconnected do not move.
    pub fn advance(&mut self) {
        self.now += TICK_MS;
        let now = self.now;
        let disconnected: HashSet<String> = self
            .instances
            .iter()
            .filter(|i| !i.agent_connected)
            .map(|i| i.id.clone())
            .collect();
        for k in 0..self.tasks.len() {
            let t = &self.tasks[k];
            if !t.is_live() || t.last != TaskStatus::Pending {
                continue;
            }
            if t.instance_id
                .as_ref()
                .is_some_and(|i| disconnected.contains(i))
            {
                continue;
            }
            let rev = self.revision_of(t);
            let fails = rev.is_some_and(|r| self.fail_to_start.contains(&r));
            let sick = rev.is_some_and(|r| self.unhealthy.contains(&r));
            let health = if sick { Health::Unhealthy } else { self.health };
            let t = &mut self.tasks[k];
            if fails {
                t.desired = TaskStatus::Stopped;
                t.last = TaskStatus::Stopped;
                t.stop_code = Some(stop_code::TASK_FAILED_TO_START.to_owned());
                t.stopped_at = Some(now);
            } else {
                t.last = TaskStatus::Running;
                t.started_at = Some(now);
                t.health = health;
            }
        }
    }

    /// One runner iteration: reconcile, apply, advance. Returns the plan.
    pub fn tick(&mut self) -> Plan {
        let plan = self.plan();
        self.apply(&plan);
        self.advance();
        plan
    }

    /// Ticks until a plan is empty (returns the number of ticks) or `max` ticks pass (`None`).
    pub fn run_until_stable(&mut self, max: usize) -> Option<usize> {
        for n in 0..max {
            let plan = self.plan();
            if plan.is_empty() && !self.in_flight() {
                return Some(n);
            }
            self.apply(&plan);
            self.advance();
        }
        None
    }

    /// Whether a live task is still PENDING on a reachable instance (it will move next tick).
    pub fn in_flight(&self) -> bool {
        self.live()
            .any(|t| t.last == TaskStatus::Pending && !self.on_disconnected(t))
    }

    /// Live tasks.
    pub fn live(&self) -> impl Iterator<Item = &TaskView> {
        self.tasks.iter().filter(|t| t.is_live())
    }

    /// Live tasks of a deployment.
    pub fn live_of(&self, deployment_id: &str) -> usize {
        self.live()
            .filter(|t| t.deployment_id.as_deref() == Some(deployment_id))
            .count()
    }

    /// Live RUNNING tasks that count as healthy (not on an instance whose agent is
    /// disconnected).
    pub fn healthy(&self) -> usize {
        self.live()
            .filter(|t| {
                t.last == TaskStatus::Running
                    && matches!(t.health, Health::Healthy | Health::NoCheck)
                    && !self.on_disconnected(t)
            })
            .count()
    }

    fn on_disconnected(&self, t: &TaskView) -> bool {
        t.instance_id.as_ref().is_some_and(|i| {
            self.instances
                .iter()
                .any(|v| &v.id == i && !v.agent_connected)
        })
    }

    /// What the runner does past `lost_after`: the live tasks on instance `id` become STOPPED
    /// with stopCode `InfrastructureHealth`.
    pub fn mark_lost(&mut self, id: &str) {
        let now = self.now;
        for t in &mut self.tasks {
            if t.is_live() && t.instance_id.as_deref() == Some(id) {
                t.desired = TaskStatus::Stopped;
                t.last = TaskStatus::Stopped;
                t.stop_code = Some(stop_code::INFRASTRUCTURE_HEALTH.to_owned());
                t.stopped_at = Some(now);
            }
        }
    }

    /// The primary deployment's id.
    pub fn primary_id(&self) -> String {
        self.service
            .deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
            .map(|d| d.id.clone())
            .unwrap_or_default()
    }

    /// Event messages, oldest first.
    pub fn messages(&self) -> Vec<&str> {
        self.service
            .events
            .iter()
            .rev()
            .map(|e| e.message.as_str())
            .collect()
    }

    /// `UpdateService` to a new revision.
    pub fn deploy(&mut self, revision: u32) {
        start_deployment(&mut self.service, revision, self.now, &mut self.ids);
    }
}
