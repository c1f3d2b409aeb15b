//! Property tests of the service reconciler (reliability matrix S1): bounds, convergence,
//! idempotence, DAEMON placement. `PROPTEST_CASES=10000 cargo test --release -p
//! gantry-controller --test properties` for a long run.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};

use gantry_controller::service::{
    Health, InstanceView, Plan, SequentialIds, StopKind, TaskView, reconcile,
};
use gantry_controller::sim::{self, Sim};
use gantry_domain::container_instance::ContainerInstanceStatus;
use gantry_domain::service::{
    CircuitBreaker, DeploymentStatus, RolloutState, SchedulingStrategy, Service, ServiceStatus,
};
use gantry_domain::task::{TaskStatus, stop_code};
use proptest::prelude::*;
use proptest::sample::select;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn bounds(s: &Service) -> (usize, usize) {
    let c = &s.deployment_configuration;
    let d = s.desired_count;
    (
        usize::try_from(c.min_healthy(d)).unwrap(),
        usize::try_from(c.max_tasks(d)).unwrap(),
    )
}

/// No slack at all: can neither stop a healthy task nor start one (ECS is stuck too).
fn no_slack(s: &Service) -> bool {
    let (min, max) = bounds(s);
    let d = usize::try_from(s.desired_count).unwrap();
    d > 0 && min >= d && max <= d
}

#[derive(Debug, Clone)]
enum Action {
    Deploy,
    Drain(usize),
    Disconnect(usize),
    Lose(usize),
    Reconnect(usize),
    Scale(i64),
    Wait(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::Deploy),
        1 => (0usize..4).prop_map(Action::Drain),
        1 => (0usize..4).prop_map(Action::Disconnect),
        1 => (0usize..4).prop_map(Action::Lose),
        1 => (0usize..4).prop_map(Action::Reconnect),
        1 => (0i64..10).prop_map(Action::Scale),
        2 => (0usize..6).prop_map(Action::Wait),
    ]
}

/// One runner iteration with the bounds checked on the applied plan.
fn checked_tick(s: &mut Sim) -> Result<Plan, TestCaseError> {
    let (min_healthy, max_tasks) = bounds(&s.service);
    let live_before = s.live().count();
    let healthy_before = s.healthy();
    let plan = s.plan();
    s.apply(&plan);
    let live = s.live().count();
    prop_assert!(
        live <= max_tasks.max(live_before),
        "live {live} > maxTasks {max_tasks} (was {live_before})"
    );
    if plan.launch_count() > 0 {
        prop_assert!(live <= max_tasks, "launched above maxTasks");
    }
    prop_assert!(
        s.healthy() >= min_healthy.min(healthy_before),
        "healthy {} < minHealthy {min_healthy} (was {healthy_before})",
        s.healthy()
    );
    s.advance();
    Ok(plan)
}

proptest! {
    #![proptest_config(config(96))]

    /// Deployments, drains, scaling and agents disconnecting, coming back or being declared lost
    /// (S7), with unlimited capacity: never above maxTasks live, never below minHealthy healthy
    /// beyond the capacity lost with disconnected hosts, and once faults stop the service
    /// converges to a fixed point: reconciling it again gives an empty plan.
    #[test]
    fn rolling_updates_stay_within_bounds_and_converge(
        desired in 0i64..10,
        min in select(vec![0i64, 25, 50, 75, 100]),
        max in select(vec![100i64, 125, 150, 200, 300]),
        n_instances in 1usize..5,
        actions in prop::collection::vec(action(), 1..6),
    ) {
        let mut s = Sim::new(sim::replica_service("web", desired, min, max), sim::instances(n_instances));
        prop_assert!(s.run_until_stable(100).is_some());
        let mut revision = 1;
        for a in actions {
            match a {
                Action::Deploy => {
                    revision += 1;
                    s.deploy(revision);
                }
                Action::Drain(k) => {
                    let active = s.instances.iter().filter(|i| i.status == ContainerInstanceStatus::Active && i.agent_connected).count();
                    if active > 1 {
                        let k = k % s.instances.len();
                        s.instances[k].status = ContainerInstanceStatus::Draining;
                    }
                }
                Action::Disconnect(k) => {
                    let usable = s.instances.iter().filter(|i| i.status == ContainerInstanceStatus::Active && i.agent_connected).count();
                    let k = k % s.instances.len();
                    if usable > 1 || !s.instances[k].agent_connected {
                        s.instances[k].agent_connected = false;
                    }
                }
                Action::Lose(k) => {
                    let k = k % s.instances.len();
                    if !s.instances[k].agent_connected {
                        let id = s.instances[k].id.clone();
                        s.mark_lost(&id);
                    }
                }
                Action::Reconnect(k) => {
                    let k = k % s.instances.len();
                    s.instances[k].agent_connected = true;
                }
                Action::Scale(d) => s.service.desired_count = d,
                Action::Wait(n) => {
                    for _ in 0..n {
                        checked_tick(&mut s)?;
                    }
                }
            }
            checked_tick(&mut s)?;
        }
        // Faults stop: half the disconnected hosts come back, the others are declared lost.
        for k in 0..s.instances.len() {
            if !s.instances[k].agent_connected {
                if k % 2 == 0 {
                    let id = s.instances[k].id.clone();
                    s.mark_lost(&id);
                }
                s.instances[k].agent_connected = true;
            }
        }
        for _ in 0..300 {
            if s.plan().is_empty() && !s.in_flight() {
                break;
            }
            checked_tick(&mut s)?;
        }
        let plan = s.plan();
        prop_assert!(plan.is_empty(), "no fixed point: {plan:?}");
        // f(f(s)) = f(s): the same again, with nothing recorded.
        prop_assert!(s.plan().is_empty());
        let d = usize::try_from(s.service.desired_count).unwrap();
        let drained: HashSet<&str> = s.instances.iter()
            .filter(|i| i.status != ContainerInstanceStatus::Active)
            .map(|i| i.id.as_str()).collect();
        if !no_slack(&s.service) {
            prop_assert_eq!(s.service.deployments.len(), 1);
            prop_assert_eq!(s.service.deployments[0].rollout_state, RolloutState::Completed);
            prop_assert_eq!(s.live_of(&s.primary_id()), d);
            prop_assert_eq!(s.live().count(), d);
            prop_assert!(s.live().all(|t| !drained.contains(t.instance_id.as_deref().unwrap_or(""))));
            prop_assert_eq!(s.healthy(), d);
            let steady = "(service web) has reached a steady state.";
            prop_assert_eq!(s.messages().last().copied(), Some(steady));
        }
    }

    /// A deployment whose tasks never start: with the breaker it fails (and rolls back when
    /// asked); without it the launch throttle backs off. Old healthy tasks are never stopped
    /// below minHealthy and everything converges.
    #[test]
    fn failing_deployments_converge_within_bounds(
        desired in 1i64..8,
        min in select(vec![0i64, 50, 100]),
        max in select(vec![100i64, 150, 200]),
        breaker in any::<bool>(),
        rollback in any::<bool>(),
        unhealthy in any::<bool>(),
    ) {
        let mut s = Sim::new(sim::replica_service("web", desired, min, max), sim::instances(2));
        s.service.deployment_configuration.deployment_circuit_breaker = Some(CircuitBreaker { enable: breaker, rollback });
        prop_assert!(s.run_until_stable(100).is_some());
        if unhealthy { s.unhealthy.insert(2); } else { s.fail_to_start.insert(2); }
        s.deploy(2);
        let failed = s.primary_id();
        for _ in 0..400 {
            checked_tick(&mut s)?;
        }
        let msgs = s.messages();
        let tripped = msgs.iter().any(|m| m.contains(&format!("(deployment {failed}) deployment failed")));
        prop_assert_eq!(tripped, breaker && !no_slack(&s.service));
        if tripped && rollback {
            prop_assert!(s.run_until_stable(400).is_some());
            prop_assert_eq!(s.service.deployments.len(), 1);
            prop_assert_eq!(s.service.deployments[0].revision, 1);
            prop_assert_eq!(s.service.deployments[0].rollout_state, RolloutState::Completed);
            prop_assert_eq!(s.healthy(), usize::try_from(desired).unwrap());
        }
        if tripped && !rollback {
            prop_assert!(s.run_until_stable(400).is_some());
            prop_assert_eq!(s.service.deployments[0].rollout_state, RolloutState::Failed);
        }
    }
}

#[derive(Debug, Clone)]
enum DaemonAction {
    Join,
    Drain(usize),
    Disconnect(usize),
    Reconnect(usize),
    Ineligible(usize),
    Deploy,
    Wait(usize),
}

fn daemon_action() -> impl Strategy<Value = DaemonAction> {
    prop_oneof![
        2 => Just(DaemonAction::Join),
        1 => (0usize..8).prop_map(DaemonAction::Drain),
        1 => (0usize..8).prop_map(DaemonAction::Disconnect),
        1 => (0usize..8).prop_map(DaemonAction::Reconnect),
        1 => (0usize..8).prop_map(DaemonAction::Ineligible),
        2 => Just(DaemonAction::Deploy),
        2 => (0usize..4).prop_map(DaemonAction::Wait),
    ]
}

fn daemon_tick(s: &mut Sim) -> Result<(), TestCaseError> {
    let plan = s.plan();
    let mut targets = HashSet::new();
    for l in &plan.launches {
        prop_assert_eq!(l.count, 1);
        let id = l.instance_id.as_deref();
        prop_assert!(id.is_some(), "DAEMON launch without an instance");
        let v = s
            .instances
            .iter()
            .find(|v| Some(v.id.as_str()) == id)
            .unwrap();
        prop_assert!(v.daemon_eligible(), "DAEMON launch on {v:?}");
        prop_assert!(targets.insert(v.id.clone()), "two launches on {}", v.id);
    }
    s.apply(&plan);
    s.advance();
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    /// DAEMON: launches only on eligible instances (never DRAINING or disconnected), and once
    /// converged exactly one task per eligible instance and none on ineligible connected ones.
    #[test]
    fn daemon_one_task_per_eligible_instance(
        n in 0usize..5,
        actions in prop::collection::vec(daemon_action(), 0..10),
    ) {
        let mut s = Sim::new(sim::daemon_service("agentd"), sim::instances(n));
        let mut revision = 1;
        for a in actions {
            let len = s.instances.len();
            match a {
                DaemonAction::Join => {
                    let id = format!("i-{len:03}");
                    let mut v = sim::instances(1).remove(0);
                    v.id = id;
                    s.instances.push(v);
                }
                DaemonAction::Drain(k) if len > 0 => s.instances[k % len].status = ContainerInstanceStatus::Draining,
                DaemonAction::Disconnect(k) if len > 0 => s.instances[k % len].agent_connected = false,
                DaemonAction::Reconnect(k) if len > 0 => s.instances[k % len].agent_connected = true,
                DaemonAction::Ineligible(k) if len > 0 => s.instances[k % len].eligible_for_daemon = false,
                DaemonAction::Deploy => {
                    revision += 1;
                    s.deploy(revision);
                }
                DaemonAction::Wait(w) => {
                    for _ in 0..w {
                        daemon_tick(&mut s)?;
                    }
                }
                _ => {}
            }
            daemon_tick(&mut s)?;
        }
        for _ in 0..50 {
            if s.plan().is_empty() && !s.in_flight() {
                break;
            }
            daemon_tick(&mut s)?;
        }
        prop_assert!(s.plan().is_empty());
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for t in s.live() {
            *per.entry(t.instance_id.as_deref().unwrap_or("")).or_default() += 1;
        }
        for v in &s.instances {
            let here = per.get(v.id.as_str()).copied().unwrap_or(0);
            if v.daemon_eligible() {
                prop_assert_eq!(here, 1, "eligible {} has {} tasks", v.id, here);
            } else if v.agent_connected {
                prop_assert_eq!(here, 0, "ineligible {} has {} tasks", v.id, here);
            }
        }
        let eligible = s.instances.iter().filter(|v| v.daemon_eligible()).count();
        prop_assert_eq!(s.service.desired_count, i64::try_from(eligible).unwrap());
    }
}

// S1: arbitrary cluster states, one reconcile.

fn instance_view() -> impl Strategy<Value = (ContainerInstanceStatus, bool, bool)> {
    (
        select(vec![
            ContainerInstanceStatus::Active,
            ContainerInstanceStatus::Active,
            ContainerInstanceStatus::Draining,
            ContainerInstanceStatus::Inactive,
        ]),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.8),
    )
}

#[derive(Debug, Clone)]
struct TaskSpec {
    deployment: usize,
    desired_stopped: bool,
    last: TaskStatus,
    health: Health,
    started: bool,
    age: u64,
    code: Option<&'static str>,
    instance: usize,
    protected: bool,
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        (0usize..4, prop::bool::weighted(0.2)),
        select(vec![
            TaskStatus::Provisioning,
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Running,
            TaskStatus::Stopping,
            TaskStatus::Stopped,
        ]),
        select(vec![
            Health::Healthy,
            Health::Unhealthy,
            Health::Unknown,
            Health::NoCheck,
        ]),
        (any::<bool>(), 0u64..600_000),
        select(vec![
            None,
            Some(stop_code::TASK_FAILED_TO_START),
            Some(stop_code::ESSENTIAL_CONTAINER_EXITED),
            Some(stop_code::SERVICE_SCHEDULER_INITIATED),
            Some(stop_code::USER_INITIATED),
        ]),
        (0usize..7, prop::bool::weighted(0.2)),
    )
        .prop_map(
            |(
                (deployment, desired_stopped),
                last,
                health,
                (started, age),
                code,
                (instance, protected),
            )| {
                TaskSpec {
                    deployment,
                    desired_stopped,
                    last,
                    health,
                    started,
                    age,
                    code,
                    instance,
                    protected,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct World {
    service: Service,
    tasks: Vec<TaskView>,
    instances: Vec<InstanceView>,
    now: u64,
}

fn world() -> impl Strategy<Value = World> {
    (
        (any::<bool>(), prop::bool::weighted(0.15), 0i64..8),
        (select(vec![0i64, 50, 100]), select(vec![100i64, 150, 200])),
        (
            any::<bool>(),
            any::<bool>(),
            0u8..3,
            0usize..3,
            select(vec![None, Some(0i64), Some(30)]),
        ),
        prop::collection::vec(instance_view(), 0..6),
        prop::collection::vec(task_spec(), 0..14),
    )
        .prop_map(
            |(
                (daemon, deleting, desired),
                (min, max),
                (enable, rollback, state, olds, grace),
                insts,
                specs,
            )| {
                let now = 10_000_000u64;
                let mut service = if daemon {
                    sim::daemon_service("svc")
                } else {
                    sim::replica_service("svc", desired, min, max)
                };
                service.deployment_configuration.minimum_healthy_percent = min;
                service.deployment_configuration.maximum_percent = max;
                service.deployment_configuration.deployment_circuit_breaker =
                    Some(CircuitBreaker { enable, rollback });
                service.health_check_grace_period_seconds = grace;
                if deleting {
                    service.status = ServiceStatus::Draining;
                }
                let mut ids = SequentialIds::starting_at(100);
                for k in 0..olds {
                    service.deployments[0].rollout_state = RolloutState::Completed;
                    sim::start_deployment(
                        &mut service,
                        2 + u32::try_from(k).unwrap(),
                        now - 1_000,
                        &mut ids,
                    );
                }
                service.deployments[0].rollout_state = match state {
                    0 => RolloutState::InProgress,
                    1 => RolloutState::Completed,
                    _ => RolloutState::Failed,
                };
                let instances: Vec<InstanceView> = insts
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (status, agent_connected, eligible_for_daemon))| InstanceView {
                            id: format!("i-{i}"),
                            status,
                            agent_connected,
                            eligible_for_daemon,
                            replica_tasks: i % 2,
                        },
                    )
                    .collect();
                let tasks = specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let deployment_id = service
                            .deployments
                            .get(t.deployment)
                            .map(|d| d.id.clone())
                            .or_else(|| (t.deployment == 3).then(|| "ecs-svc/gone".to_owned()));
                        let stopped = t.last == TaskStatus::Stopped || t.desired_stopped;
                        let created_at = now - t.age;
                        TaskView {
                            id: format!("t{i:02}"),
                            deployment_id,
                            desired: if t.desired_stopped {
                                TaskStatus::Stopped
                            } else {
                                TaskStatus::Running
                            },
                            last: t.last,
                            health: t.health,
                            created_at,
                            started_at: (t.started || t.last.is_running())
                                .then_some(created_at + 1),
                            stopped_at: stopped.then_some(created_at + 2),
                            stop_code: if stopped {
                                t.code.map(str::to_owned)
                            } else {
                                None
                            },
                            instance_id: (t.instance < instances.len())
                                .then(|| format!("i-{}", t.instance)),
                            protected_until: t.protected.then_some(now + 60_000),
                            scale_in_rank: None,
                        }
                    })
                    .collect();
                World {
                    service,
                    tasks,
                    instances,
                    now,
                }
            },
        )
}

proptest! {
    #![proptest_config(config(512))]

    /// One reconcile of an arbitrary state is safe and idempotent on the record.
    #[test]
    fn arbitrary_states_are_reconciled_safely(w in world()) {
        let mut ids = SequentialIds::starting_at(10_000);
        let plan = reconcile(&w.service, &w.tasks, &w.instances, w.now, &mut ids);
        let deleting = w.service.status != ServiceStatus::Active;
        let by_id = |id: &str| w.tasks.iter().find(|t| t.id == id).unwrap();
        let instance = |t: &TaskView| t.instance_id.as_deref().and_then(|i| w.instances.iter().find(|v| v.id == i));
        let mut seen = HashSet::new();
        for st in &plan.stops {
            prop_assert!(seen.insert(st.task_id.clone()), "stopped twice");
            let t = by_id(&st.task_id);
            prop_assert!(t.is_live(), "stopping a task that is not live");
            let disconnected = instance(t).is_some_and(|v| !v.agent_connected);
            prop_assert!(deleting || !disconnected, "stopped a task on a disconnected instance");
            if matches!(st.kind, StopKind::ScaleIn | StopKind::Deployment | StopKind::Duplicate) {
                prop_assert!(t.protected_until.is_none_or(|p| p <= w.now), "stopped a protected task");
            }
        }
        if deleting || w.service.deployments[0].rollout_state == RolloutState::Failed && !plan.service.as_ref().is_some_and(|s| s.deployments[0].rollout_state == RolloutState::InProgress) {
            prop_assert_eq!(plan.launch_count(), 0);
        }
        let next = plan.service.clone().unwrap_or_else(|| w.service.clone());
        let live_after = w.tasks.iter().filter(|t| t.is_live() && !seen.contains(&t.id)).count();
        if next.scheduling_strategy == SchedulingStrategy::Daemon {
            let mut targets = HashSet::new();
            for l in &plan.launches {
                let v = w.instances.iter().find(|v| Some(v.id.as_str()) == l.instance_id.as_deref());
                prop_assert!(v.is_some_and(InstanceView::daemon_eligible), "DAEMON launch on an ineligible instance");
                prop_assert!(targets.insert(l.instance_id.clone()));
                prop_assert_eq!(l.count, 1);
            }
        } else {
            let max_tasks = usize::try_from(next.deployment_configuration.max_tasks(next.desired_count)).unwrap();
            if plan.launch_count() > 0 {
                prop_assert!(live_after + plan.launch_count() <= max_tasks);
            }
            prop_assert!(plan.launches.iter().all(|l| l.instance_id.is_none()));
        }
        // The primary of the record launches.
        if let Some(p) = next.deployments.iter().find(|d| d.status == DeploymentStatus::Primary) {
            prop_assert!(plan.launches.iter().all(|l| l.deployment_id == p.id));
        }
        // A runner that committed the record but died before stopping and launching: the next
        // reconcile decides the same and records nothing new.
        let again = reconcile(&next, &w.tasks, &w.instances, w.now, &mut ids);
        prop_assert!(again.service.is_none(), "record changed again: {:#?}\nvs {:#?}", again.service, next);
        let mut a: Vec<_> = plan.stops.iter().map(|s| s.task_id.clone()).collect();
        let mut b: Vec<_> = again.stops.iter().map(|s| s.task_id.clone()).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
        prop_assert_eq!(plan.launches, again.launches);
    }
}
