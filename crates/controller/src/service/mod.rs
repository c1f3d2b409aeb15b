//! The service reconciler: one service's desired state, its tasks and the cluster's instances
//! at `now` → a [`Plan`] of launches, stops and the updated service record.
//!
//! The runner calls [`reconcile`] every second and on every task change, commits
//! [`Plan::service`] with compare-and-swap, stops [`Plan::stops`] (stopCode
//! `ServiceSchedulerInitiated`, `stoppedReason` = [`Stop::reason`]) and places
//! [`Plan::launches`] with the scheduler. It writes the "has started N tasks" / "has stopped N
//! running tasks" events itself, since only it knows the task ids; the reconciler writes the
//! deployment, steady-state, stuck, throttle and circuit breaker events.
//!
//! ```
//! use gantry_controller::service::{reconcile, SequentialIds, TaskView, Health};
//! use gantry_domain::service::*;
//! use gantry_domain::task::TaskStatus;
//!
//! let deployment = Deployment {
//!     id: "ecs-svc/0000000000000000001".into(), status: DeploymentStatus::Primary,
//!     family: "web".into(), revision: 2, desired_count: 2, failed_tasks: 0,
//!     reached_running: false, created_at: 0, updated_at: 0,
//!     rollout_state: RolloutState::InProgress, rollout_state_reason: None,
//!     launch_type: "EC2".into(), network_configuration: None,
//! };
//! let service = Service {
//!     name: "web".into(), cluster: "default".into(), status: ServiceStatus::Active,
//!     desired_count: 2, scheduling_strategy: SchedulingStrategy::Replica,
//!     launch_type: "EC2".into(),
//!     deployment_configuration: DeploymentConfiguration::defaults(SchedulingStrategy::Replica),
//!     placement_constraints: vec![], placement_strategy: vec![], load_balancers: vec![],
//!     health_check_grace_period_seconds: None, network_configuration: None, tags: vec![],
//!     propagate_tags: None, enable_ecs_managed_tags: false, enable_execute_command: false,
//!     created_at: 0, created_by: "root".into(), deployments: vec![deployment], events: vec![],
//!     throttle_failures: 0, throttle_until: 0, version: 1, platform_version: None,
//!     shift: None, production_target_group: None, last_rollback: None,
//!     deployment_controller: None, task_sets: vec![],
//!     capacity_provider_strategy: vec![], role_arn: None,
//! };
//! // A new service without tasks: launch 2 of the primary deployment.
//! let plan = reconcile(&service, &[], &[], 1_000, &mut SequentialIds::default());
//! assert_eq!(plan.launch_count(), 2);
//! assert!(plan.stops.is_empty());
//! ```
//!
//! Semantics (ECS's, see `aws-api.md` §3.3-3.5):
//! - **Live** tasks are wanted running (desired ≠ STOPPED) and not STOPPED. A task counts toward
//!   the deployment named by its `deployment_id`. **Healthy** = RUNNING and its health is
//!   HEALTHY or it has no health check. UNHEALTHY within `healthCheckGracePeriodSeconds` after
//!   `started_at` is neither healthy nor failed.
//! - **Bounds**: `minHealthy = ceil(desired × min% / 100)`, `maxTasks = floor(desired × max% /
//!   100)`. A healthy task is stopped only while the healthy count stays ≥ minHealthy; a task
//!   that is not healthy costs nothing to stop. Launches never take the live count above
//!   maxTasks. Stops are decided first, launches after them in the same plan (the runner must
//!   release a stopped task's resources before placing).
//! - **Replaced** within those bounds: tasks of older deployments, tasks on DRAINING (or
//!   deregistered) instances, UNHEALTHY tasks past the grace period. Tasks on instances whose
//!   agent is disconnected are left alone (still live, never replaced or stopped) until the
//!   runner marks them STOPPED as lost.
//! - **Scale-in** (more primary tasks than desired): pending first, then running-not-healthy,
//!   then healthy; among equals by `scale_in_rank`, then newest first. Protected tasks
//!   (`protected_until`) are kept, and tasks of older deployments wait for their protection to
//!   expire.
//! - **Deployments**: the PRIMARY deployment launches; an older deployment without live tasks is
//!   removed (except the last COMPLETED one while a rollback may still need it); the primary is
//!   COMPLETED when it has `desired` healthy tasks and nothing else is live.
//! - **Circuit breaker** and **launch throttle** are derived from the task list (see
//!   [`failures`]), so reconcile is idempotent: reconciling the returned state again at the same
//!   `now` gives an empty plan once the service is stable.
//! - **DAEMON**: one task per eligible instance (ACTIVE, agent connected, constraints met), with
//!   desired = their number, replaced per instance within min/max (default 0 / 100: stop the old
//!   task, start the new one on that instance). A DAEMON task on a DRAINING instance is stopped
//!   last, once the instance's REPLICA tasks are gone.
//! - **DeleteService** (status DRAINING): desired 0, every task is stopped, then INACTIVE.
//!
//! What the runner must do around it:
//! - Pass every task of the service, including the stopped ones it still keeps (about an hour),
//!   with the health they had when they stopped, and every instance of the cluster.
//! - Commit [`Plan::service`] first (compare-and-swap); on conflict drop the plan and reconcile
//!   again. Then stop: desired STOPPED, stopCode `ServiceSchedulerInitiated`, `stoppedReason` =
//!   [`Stop::reason`]. Then launch: the task definition of [`Launch::deployment_id`]'s deployment,
//!   `Task::deployment_id` set to it; REPLICA through the scheduler (never on DRAINING or
//!   disconnected instances), DAEMON on exactly [`Launch::instance_id`], counting the resources
//!   of the tasks just stopped there as free.
//! - Mark the tasks of a lost host STOPPED with a stop code that is not a task failure (e.g.
//!   `InfrastructureHealth`): only `TaskFailedToStart` and `EssentialContainerExited` (and, after
//!   RUNNING, a scheduler stop of an UNHEALTHY task) count for the breaker and the throttle.
//! - Write the "has started N tasks" / "has stopped N running tasks" / "unable to place a task"
//!   events, and reconcile again at [`Plan::wake_at`] if it is earlier than its next tick.

mod draft;
pub mod failures;
pub mod messages;
mod plan;
pub mod shift;
pub mod task_sets;
mod view;

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use draft::Draft;

use gantry_domain::container_instance::ContainerInstanceStatus;
use gantry_domain::service::{
    Deployment, DeploymentStatus, RolloutState, SchedulingStrategy, Service, ServiceStatus,
    circuit_breaker_threshold,
};
use gantry_domain::task::TaskStatus;

pub use plan::{IdSource, Launch, Plan, SequentialIds, Stop, StopKind, placement_priority};
pub use view::{Health, InstanceView, TaskView};

/// Reconciles one service. Pure: the same inputs give the same plan; `ids` is only called when
/// an event or a deployment is created. `now` and every time in the views are epoch
/// milliseconds.
pub fn reconcile(
    service: &Service,
    tasks: &[TaskView],
    instances: &[InstanceView],
    now: u64,
    ids: &mut dyn IdSource,
) -> Plan {
    let mut next = Draft::new(service);
    let name = service.name.as_str();
    let deleting = service.status != ServiceStatus::Active;
    let daemon = service.scheduling_strategy == SchedulingStrategy::Daemon;
    let by_id: HashMap<&str, &InstanceView> =
        instances.iter().map(|i| (i.id.as_str(), i)).collect();

    let desired = if deleting {
        0
    } else if daemon {
        let n = instances.iter().filter(|i| i.daemon_eligible()).count();
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        next.desired_count = n;
        n
    } else {
        service.desired_count.max(0)
    };

    // Primary bookkeeping and the circuit breaker.
    if let Some(p) = next.primary_index() {
        let d = &mut next.deployments[p];
        if d.desired_count != desired {
            d.desired_count = desired;
            d.updated_at = now;
        }
        if !deleting && d.rollout_state == RolloutState::InProgress {
            let count = failures::breaker_count(tasks, &d.id);
            if d.failed_tasks != count.failures || d.reached_running != count.reached_running {
                d.failed_tasks = count.failures;
                d.reached_running = count.reached_running;
                d.updated_at = now;
            }
            let breaker = service
                .deployment_configuration
                .deployment_circuit_breaker
                .clone()
                .unwrap_or_default();
            // A traffic shift fails and rolls back through `shift::advance`.
            if breaker.enable
                && service.shift.is_none()
                && count.failures >= circuit_breaker_threshold(desired)
            {
                trip_breaker(&mut next, p, desired, breaker.rollback, now, ids);
            }
        }
    }

    // Launch throttle of the (possibly new) primary.
    let primary = next.primary_index();
    let throttle = primary
        .map(|p| failures::throttle(tasks, &next.deployments[p].id))
        .unwrap_or_default();
    if throttle.failures != next.throttle_failures || throttle.until != next.throttle_until {
        if !deleting && next.throttle_failures == 0 && throttle.failures > 0 {
            next.push_event(ids.event_id(), now, messages::throttled(name));
        }
        next.throttle_failures = throttle.failures;
        next.throttle_until = throttle.until;
    }

    let primary_id = primary.map(|p| next.deployments[p].id.clone());
    let primary_failed =
        primary.is_none_or(|p| next.deployments[p].rollout_state == RolloutState::Failed);
    let throttled = now < throttle.until;
    let dep_index: HashMap<&str, usize> = next
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let grace_ms = u64::try_from(service.health_check_grace_period_seconds.unwrap_or(0))
        .unwrap_or(0)
        .saturating_mul(1_000);
    // While a traffic shift has not reached CLEAN_UP, the blue deployment's tasks serve
    // production beside green: they are neither replaced nor counted.
    let blue = service
        .shift
        .as_ref()
        .filter(|sh| sh.stage < gantry_domain::service::LifecycleStage::CleanUp)
        .map(|sh| sh.source_deployment_id.as_str());
    let obs: Vec<Obs<'_>> = tasks
        .iter()
        .filter(|t| t.is_live())
        .filter(|t| blue.is_none() || t.deployment_id.as_deref() != blue)
        .map(|t| Obs::new(t, &by_id, &dep_index, primary, now, grace_ms))
        .collect();

    let cfg = &service.deployment_configuration;
    let ctx = Ctx {
        desired,
        min_healthy: cfg.min_healthy(desired),
        max_tasks: cfg.max_tasks(desired),
        deleting,
        keep_all: primary_failed,
        can_launch: !deleting && !primary_failed && !throttled,
        primary_id: primary_id.as_deref(),
        now,
    };
    let mut d = if daemon {
        plan_daemon(&ctx, &obs, instances, &by_id)
    } else {
        plan_replica(&ctx, &obs)
    };
    if blue.is_some() {
        d.complete = false;
    }
    if throttled && d.unmet > 0 {
        wake(&mut d.wake_at, throttle.until, now);
    }
    for o in &obs {
        if o.t.last == TaskStatus::Running && o.t.health == Health::Unhealthy && !o.failing {
            let start = o.t.started_at.unwrap_or(o.t.created_at);
            wake(&mut d.wake_at, start.saturating_add(grace_ms), now);
        }
    }

    // Deployment bookkeeping after the stops.
    let stopped: HashSet<&str> = d.stops.iter().map(|(o, _)| obs[*o].t.id.as_str()).collect();
    let mut live_after: HashMap<&str, usize> = HashMap::new();
    for o in obs.iter().filter(|o| !stopped.contains(o.t.id.as_str())) {
        *live_after
            .entry(o.t.deployment_id.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    if !deleting
        && d.complete
        && let Some(p) = primary
    {
        let dep = &mut next.deployments[p];
        if dep.rollout_state == RolloutState::InProgress {
            dep.rollout_state = RolloutState::Completed;
            dep.rollout_state_reason = Some(messages::rollout_completed(&dep.id));
            dep.updated_at = now;
            let msg = messages::deployment_completed(name, &dep.id);
            next.push_event(ids.event_id(), now, msg);
        }
    }
    let rollback_source = rollback_source(&next, service);
    let live_of = |id: &str| live_after.get(id).copied().unwrap_or(0);
    next.deployments.retain(|dep| {
        dep.status == DeploymentStatus::Primary
            || live_of(&dep.id) > 0
            || rollback_source.as_deref() == Some(dep.id.as_str())
            || service
                .shift
                .as_ref()
                .is_some_and(|sh| sh.source_deployment_id == dep.id)
    });

    if !deleting {
        let stable = d.complete
            && next.deployments.len() == 1
            && next.deployments[0].status == DeploymentStatus::Primary
            && next.deployments[0].rollout_state == RolloutState::Completed;
        let steady = messages::steady_state(name);
        if stable && next.newest_event() != Some(steady.as_str()) {
            next.push_event(ids.event_id(), now, steady);
        }
        let stuck = messages::stuck(name);
        if d.stuck && next.newest_event() != Some(stuck.as_str()) {
            next.push_event(ids.event_id(), now, stuck);
        }
    } else if service.status == ServiceStatus::Draining && obs.is_empty() {
        // INACTIVE once no task is live any more, not when this plan stops the last ones: a
        // task behind a load balancer stays live (DEACTIVATING) while its targets drain, and
        // the runner finishes its stop only for services it still reconciles.
        next.status = ServiceStatus::Inactive;
    }

    let stops = d
        .stops
        .iter()
        .map(|&(o, kind)| {
            let t = obs[o].t;
            let reason = match kind {
                StopKind::Unhealthy => messages::UNHEALTHY.to_owned(),
                StopKind::InstanceDraining => messages::instance_draining(t.instance_id.as_deref()),
                StopKind::IneligibleInstance => messages::INELIGIBLE_INSTANCE.to_owned(),
                StopKind::ScaleIn
                | StopKind::Deployment
                | StopKind::Duplicate
                | StopKind::ServiceDeleted => messages::scaling_activity(primary_id.as_deref()),
            };
            Stop {
                task_id: t.id.clone(),
                reason,
                kind,
            }
        })
        .collect();
    let service = next.finish();
    Plan {
        launches: d.launches,
        stops,
        service,
        wake_at: d.wake_at,
    }
}

fn wake(at: &mut Option<u64>, t: u64, now: u64) {
    if t > now {
        *at = Some(at.map_or(t, |a| a.min(t)));
    }
}

/// The primary deployment `p` failed: mark it FAILED and, with rollback, start a new primary
/// deployment with the task definition of the last COMPLETED deployment.
fn trip_breaker(
    next: &mut Draft<'_>,
    p: usize,
    desired: i64,
    rollback: bool,
    now: u64,
    ids: &mut dyn IdSource,
) {
    let name = next.base.name.clone();
    let failed = &mut next.deployments[p];
    failed.rollout_state = RolloutState::Failed;
    failed.rollout_state_reason = Some(messages::ROLLOUT_FAILED.to_owned());
    failed.updated_at = now;
    let failed = failed.clone();
    next.push_event(
        ids.event_id(),
        now,
        messages::deployment_failed(&name, &failed.id),
    );
    if !rollback {
        return;
    }
    let target = next
        .deployments
        .iter()
        .enumerate()
        .find(|(i, d)| {
            *i != p
                && d.rollout_state == RolloutState::Completed
                && (d.family.as_str(), d.revision) != (failed.family.as_str(), failed.revision)
        })
        .map(|(_, d)| d.clone());
    let Some(target) = target else { return };
    let id = ids.deployment_id();
    next.deployments[p].status = DeploymentStatus::Active;
    next.deployments.insert(
        0,
        Deployment {
            id: id.clone(),
            status: DeploymentStatus::Primary,
            family: target.family.clone(),
            revision: target.revision,
            desired_count: desired,
            failed_tasks: 0,
            reached_running: false,
            created_at: now,
            updated_at: now,
            rollout_state: RolloutState::InProgress,
            rollout_state_reason: Some(messages::rollout_rolling_back(&target.id)),
            launch_type: target.launch_type.clone(),
            // Tasks launch with the service's current configuration.
            network_configuration: next.base.network_configuration.clone(),
        },
    );
    next.push_event(
        ids.event_id(),
        now,
        messages::rolling_back(&name, &failed.id, &target.id),
    );
}

/// While the primary rolls out with rollback enabled, the last COMPLETED deployment is kept in
/// the list even without tasks: it is what the circuit breaker rolls back to.
fn rollback_source(next: &Draft<'_>, service: &Service) -> Option<String> {
    let breaker = service
        .deployment_configuration
        .deployment_circuit_breaker
        .clone()
        .unwrap_or_default();
    let alarms = service
        .deployment_configuration
        .alarms()
        .is_some_and(|(_, rollback)| rollback);
    let p = next.primary_index()?;
    if !((breaker.enable && breaker.rollback) || alarms)
        || next.deployments[p].rollout_state != RolloutState::InProgress
    {
        return None;
    }
    next.deployments
        .iter()
        .enumerate()
        .find(|(i, d)| *i != p && d.rollout_state == RolloutState::Completed)
        .map(|(_, d)| d.id.clone())
}

/// Where a task is, as far as replacing it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// ACTIVE (or REGISTERING) instance with a connected agent, or no instance (platform
    /// capacity), or an instance the view does not know.
    Normal,
    /// DRAINING instance with a connected agent.
    Draining,
    /// DEREGISTERING, INACTIVE, ... instance: leaving the cluster.
    Gone,
    /// The instance's agent is disconnected: leave the task alone.
    Disconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Pending,
    Running,
    Healthy,
}

/// A live task, classified.
#[derive(Debug)]
struct Obs<'a> {
    t: &'a TaskView,
    place: Place,
    phase: Phase,
    /// UNHEALTHY past the grace period: to be replaced.
    failing: bool,
    protected: bool,
    /// Index of its deployment in the service's list (`usize::MAX`: none known).
    dep: usize,
    primary: bool,
}

impl<'a> Obs<'a> {
    fn new(
        t: &'a TaskView,
        by_id: &HashMap<&str, &InstanceView>,
        dep_index: &HashMap<&str, usize>,
        primary: Option<usize>,
        now: u64,
        grace_ms: u64,
    ) -> Self {
        let instance = t.instance_id.as_deref().and_then(|i| by_id.get(i));
        let place = match instance {
            None => Place::Normal,
            Some(i) if !i.agent_connected => Place::Disconnected,
            Some(i) => match i.status {
                ContainerInstanceStatus::Active | ContainerInstanceStatus::Registering => {
                    Place::Normal
                }
                ContainerInstanceStatus::Draining => Place::Draining,
                _ => Place::Gone,
            },
        };
        let connected = place != Place::Disconnected;
        let running = t.last == TaskStatus::Running;
        let phase = if connected && running && matches!(t.health, Health::Healthy | Health::NoCheck)
        {
            Phase::Healthy
        } else if t.last.is_running() {
            Phase::Running
        } else {
            Phase::Pending
        };
        let start = t.started_at.unwrap_or(t.created_at);
        let failing = connected
            && running
            && t.health == Health::Unhealthy
            && now >= start.saturating_add(grace_ms);
        let dep = t
            .deployment_id
            .as_deref()
            .and_then(|d| dep_index.get(d).copied())
            .unwrap_or(usize::MAX);
        Self {
            t,
            place,
            phase,
            failing,
            protected: t.protected_until.is_some_and(|p| p > now),
            dep,
            primary: Some(dep) == primary,
        }
    }

    fn healthy(&self) -> bool {
        self.phase == Phase::Healthy
    }

    /// Stop-first order among tasks of equal standing: lower rank, then newest (highest id on
    /// a tie).
    fn tiebreak(&self) -> (Option<u32>, Reverse<u64>, Reverse<&'a str>) {
        (
            self.t.scale_in_rank,
            Reverse(self.t.created_at),
            Reverse(self.t.id.as_str()),
        )
    }
}

/// Inputs shared by the REPLICA and DAEMON planners.
struct Ctx<'a> {
    desired: i64,
    min_healthy: i64,
    max_tasks: i64,
    deleting: bool,
    /// The primary launches nothing (FAILED without rollback, or none): every deployment's
    /// tasks are kept, as nothing would replace them.
    keep_all: bool,
    can_launch: bool,
    primary_id: Option<&'a str>,
    now: u64,
}

/// A task the planner would like to stop.
#[derive(Debug, Clone, Copy)]
struct Cand {
    obs: usize,
    kind: StopKind,
    /// Stopped whatever the bounds (service deleted, DAEMON task on an ineligible instance).
    forced: bool,
}

#[derive(Debug, Default)]
struct Decision {
    stops: Vec<(usize, StopKind)>,
    launches: Vec<Launch>,
    /// Tasks still missing after this plan's launches.
    unmet: usize,
    /// No progress possible because of min/max alone.
    stuck: bool,
    /// Exactly `desired` healthy primary tasks live, nothing else, nothing to do.
    complete: bool,
    wake_at: Option<u64>,
}

/// Picks the stops among `cands` within the bounds; returns them and whether a healthy
/// candidate was held back by minimumHealthyPercent.
fn select_stops(
    ctx: &Ctx<'_>,
    obs: &[Obs<'_>],
    mut cands: Vec<Cand>,
    mut healthy: i64,
    need: usize,
) -> (Vec<(usize, StopKind)>, bool) {
    cands.sort_by(|a, b| {
        let (x, y) = (&obs[a.obs], &obs[b.obs]);
        let key = |c: &Cand, o: &Obs<'_>| {
            (
                !c.forced,
                o.healthy(),
                o.place == Place::Normal,
                Reverse(o.dep),
            )
        };
        key(a, x)
            .cmp(&key(b, y))
            .then_with(|| x.tiebreak().cmp(&y.tiebreak()))
    });
    let mut stops = Vec::new();
    let mut blocked = false;
    for c in cands {
        let o = &obs[c.obs];
        if c.forced || !o.healthy() {
            stops.push((c.obs, c.kind));
            continue;
        }
        // Nothing would replace it now (throttled, or the primary FAILED): keep serving.
        if !ctx.can_launch
            && need > 0
            && matches!(c.kind, StopKind::Deployment | StopKind::InstanceDraining)
        {
            continue;
        }
        if healthy > ctx.min_healthy {
            healthy -= 1;
            stops.push((c.obs, c.kind));
        } else {
            blocked = true;
        }
    }
    (stops, blocked)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn plan_replica(ctx: &Ctx<'_>, obs: &[Obs<'_>]) -> Decision {
    let mut d = Decision::default();
    let mut healthy = 0i64;
    let mut good = Vec::new();
    let mut cands = Vec::new();
    for (i, o) in obs.iter().enumerate() {
        if o.healthy() {
            healthy += 1;
        }
        let cand = |kind, forced| Cand {
            obs: i,
            kind,
            forced,
        };
        if ctx.deleting {
            cands.push(cand(StopKind::ServiceDeleted, true));
        } else if o.place == Place::Disconnected {
            if o.primary || ctx.keep_all {
                good.push(i);
            }
        } else if o.failing {
            cands.push(cand(StopKind::Unhealthy, false));
        } else if matches!(o.place, Place::Draining | Place::Gone) {
            cands.push(cand(StopKind::InstanceDraining, false));
        } else if o.primary || ctx.keep_all {
            good.push(i);
        } else if o.protected {
            wake(&mut d.wake_at, o.t.protected_until.unwrap_or(0), ctx.now);
        } else {
            cands.push(cand(StopKind::Deployment, false));
        }
    }
    // Scale-in: keep the best `desired` of the good tasks.
    let desired = usize::try_from(ctx.desired).unwrap_or(0);
    if good.len() > desired {
        good.sort_by(|&a, &b| {
            let (x, y) = (&obs[a], &obs[b]);
            let key = |o: &Obs<'_>| (o.place == Place::Disconnected || o.protected, o.phase);
            key(x)
                .cmp(&key(y))
                .then_with(|| x.tiebreak().cmp(&y.tiebreak()))
        });
        let surplus = good.len() - desired;
        for &i in &good[..surplus] {
            let o = &obs[i];
            if o.protected {
                wake(&mut d.wake_at, o.t.protected_until.unwrap_or(0), ctx.now);
            } else if o.place != Place::Disconnected {
                cands.push(Cand {
                    obs: i,
                    kind: StopKind::ScaleIn,
                    forced: false,
                });
            }
        }
        good.drain(..surplus);
    }
    let need = desired - good.len();
    let (stops, blocked) = select_stops(ctx, obs, cands, healthy, need);
    let live_after = to_i64(obs.len() - stops.len());
    let room = usize::try_from(ctx.max_tasks - live_after).unwrap_or(0);
    let launch = if ctx.can_launch { need.min(room) } else { 0 };
    if launch > 0
        && let Some(id) = ctx.primary_id
    {
        d.launches.push(Launch {
            deployment_id: id.to_owned(),
            count: launch,
            instance_id: None,
        });
    }
    d.unmet = need - launch;
    d.stuck = ctx.can_launch
        && need > 0
        && launch == 0
        && stops.is_empty()
        && blocked
        && obs.iter().all(Obs::healthy);
    d.complete = stops.is_empty()
        && d.launches.is_empty()
        && obs.len() == desired
        && good.len() == desired
        && good.iter().all(|&i| obs[i].primary && obs[i].healthy());
    d.stops = stops;
    d
}

fn plan_daemon(
    ctx: &Ctx<'_>,
    obs: &[Obs<'_>],
    instances: &[InstanceView],
    by_id: &HashMap<&str, &InstanceView>,
) -> Decision {
    let mut d = Decision::default();
    let mut eligible: Vec<&str> = instances
        .iter()
        .filter(|i| i.daemon_eligible())
        .map(|i| i.id.as_str())
        .collect();
    eligible.sort_unstable();
    let mut buckets: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut cands = Vec::new();
    let forced = |i, kind| Cand {
        obs: i,
        kind,
        forced: true,
    };
    for (i, o) in obs.iter().enumerate() {
        let instance = o.t.instance_id.as_deref();
        let view = instance.and_then(|id| by_id.get(id));
        if ctx.deleting {
            cands.push(forced(i, StopKind::ServiceDeleted));
        } else if o.place == Place::Disconnected {
            // Left alone until the runner marks it lost.
        } else if let Some(v) = view.filter(|v| v.daemon_eligible()) {
            buckets.entry(v.id.as_str()).or_default().push(i);
        } else if view.is_some_and(|v| v.status == ContainerInstanceStatus::Draining) {
            // Stopped last: once the instance's REPLICA tasks are gone.
            if view.is_some_and(|v| v.replica_tasks == 0) {
                cands.push(forced(i, StopKind::InstanceDraining));
            }
        } else {
            cands.push(forced(i, StopKind::IneligibleInstance));
        }
    }
    let mut live = 0i64;
    let mut healthy = 0i64;
    let mut needy = Vec::new();
    let mut keepers = Vec::new();
    for inst in &eligible {
        let bucket = buckets.get(inst).map(Vec::as_slice).unwrap_or(&[]);
        let mut mine = Vec::new();
        for &i in bucket {
            let o = &obs[i];
            live += 1;
            if o.healthy() {
                healthy += 1;
            }
            let cand = |kind| Cand {
                obs: i,
                kind,
                forced: false,
            };
            if o.failing {
                cands.push(cand(StopKind::Unhealthy));
            } else if o.primary || ctx.keep_all {
                mine.push(i);
            } else if o.protected {
                wake(&mut d.wake_at, o.t.protected_until.unwrap_or(0), ctx.now);
            } else {
                cands.push(cand(StopKind::Deployment));
            }
        }
        // Keep the best: healthiest, then oldest.
        mine.sort_by(|&a, &b| {
            let (x, y) = (&obs[a], &obs[b]);
            (Reverse(x.phase), x.t.created_at, &x.t.id).cmp(&(
                Reverse(y.phase),
                y.t.created_at,
                &y.t.id,
            ))
        });
        match mine.split_first() {
            Some((&k, dups)) => {
                keepers.push(k);
                for &i in dups {
                    if !obs[i].protected {
                        cands.push(Cand {
                            obs: i,
                            kind: StopKind::Duplicate,
                            forced: false,
                        });
                    }
                }
            }
            None => needy.push(*inst),
        }
    }
    let (stops, blocked) = select_stops(ctx, obs, cands, healthy, needy.len());
    let stopped: HashSet<usize> = stops.iter().map(|s| s.0).collect();
    let remaining = |inst: &str| {
        buckets
            .get(inst)
            .is_some_and(|b| b.iter().any(|i| !stopped.contains(i)))
    };
    let stopped_here = eligible
        .iter()
        .filter_map(|inst| buckets.get(inst))
        .flatten()
        .filter(|i| stopped.contains(i))
        .count();
    let live_after = live - to_i64(stopped_here);
    let room = usize::try_from(ctx.max_tasks - live_after).unwrap_or(0);
    // Empty instances first.
    needy.sort_by_key(|inst| (remaining(inst), *inst));
    let launch = if ctx.can_launch {
        needy.len().min(room)
    } else {
        0
    };
    if let Some(id) = ctx.primary_id {
        for inst in &needy[..launch] {
            d.launches.push(Launch {
                deployment_id: id.to_owned(),
                count: 1,
                instance_id: Some((*inst).to_owned()),
            });
        }
    }
    d.unmet = needy.len() - launch;
    d.stuck = ctx.can_launch
        && !needy.is_empty()
        && launch == 0
        && stops.is_empty()
        && blocked
        && obs.iter().all(Obs::healthy);
    d.complete = stops.is_empty()
        && d.launches.is_empty()
        && needy.is_empty()
        && to_i64(obs.len()) == ctx.desired
        && keepers.len() == eligible.len()
        && keepers.iter().all(|&i| obs[i].primary && obs[i].healthy());
    d.stops = stops;
    d
}

#[cfg(test)]
mod tests;
