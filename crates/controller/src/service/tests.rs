use gantry_domain::container_instance::ContainerInstanceStatus;
use gantry_domain::service::{CircuitBreaker, RolloutState, ServiceStatus};
use gantry_domain::task::{TaskStatus, stop_code};

use super::*;
use crate::sim::{self, Sim};

/// A stable service of `desired` healthy tasks of revision 1, spread over 3 instances.
fn stable(desired: i64, min: i64, max: i64) -> Sim {
    let mut s = Sim::new(
        sim::replica_service("web", desired, min, max),
        sim::instances(3),
    );
    assert!(s.run_until_stable(50).is_some());
    assert_eq!(s.live().count(), usize::try_from(desired).unwrap());
    assert_eq!(
        s.service.deployments[0].rollout_state,
        RolloutState::Completed
    );
    s
}

fn count_of(messages: &[&str], needle: &str) -> usize {
    messages.iter().filter(|m| m.contains(needle)).count()
}

/// Rolls to completion, checking the bounds after every applied plan; returns the ticks taken.
fn roll(s: &mut Sim, min_healthy: usize, max_tasks: usize) -> usize {
    for n in 0..200 {
        let plan = s.plan();
        if plan.is_empty() && !s.live().any(|t| t.last == TaskStatus::Pending) {
            return n;
        }
        s.apply(&plan);
        assert!(s.live().count() <= max_tasks, "above maxTasks at tick {n}");
        assert!(s.healthy() >= min_healthy, "below minHealthy at tick {n}");
        s.advance();
    }
    panic!("did not converge");
}

fn assert_deployed(s: &mut Sim, desired: usize) {
    let primary = s.primary_id();
    assert_eq!(s.service.deployments.len(), 1);
    assert_eq!(
        s.service.deployments[0].rollout_state,
        RolloutState::Completed
    );
    assert_eq!(s.live_of(&primary), desired);
    assert_eq!(s.live().count(), desired);
    let msgs = s.messages();
    assert!(msgs.ends_with(&[
        messages::deployment_completed("web", &primary).as_str(),
        messages::steady_state("web").as_str(),
    ]));
    // Stable: f(f(s)) = f(s).
    assert!(s.plan().is_empty());
}

#[test]
fn new_service_launches_desired_then_completes_with_one_steady_state_event() {
    let mut s = Sim::new(sim::replica_service("web", 3, 100, 200), sim::instances(2));
    let plan = s.plan();
    assert_eq!(plan.launch_count(), 3);
    assert_eq!(plan.launches[0].instance_id, None);
    assert!(s.run_until_stable(10).is_some());
    assert_deployed(&mut s, 3);
    assert_eq!(count_of(&s.messages(), "steady state"), 1);
    for _ in 0..5 {
        assert!(s.tick().is_empty());
    }
}

#[test]
fn worked_example_4_100_200_surges_4_new_before_stopping() {
    let mut s = stable(4, 100, 200);
    s.deploy(2);
    let plan = s.plan();
    assert_eq!(plan.launch_count(), 4);
    assert!(plan.stops.is_empty());
    roll(&mut s, 4, 8);
    assert_deployed(&mut s, 4);
}

#[test]
fn worked_example_4_50_200_stops_2_and_starts_4() {
    let mut s = stable(4, 50, 200);
    s.deploy(2);
    let plan = s.plan();
    assert_eq!(plan.stops.len(), 2);
    assert_eq!(plan.launch_count(), 4);
    assert!(plan.stops.iter().all(|st| st.kind == StopKind::Deployment));
    roll(&mut s, 2, 8);
    assert_deployed(&mut s, 4);
}

#[test]
fn worked_example_4_50_100_replaces_in_place_two_at_a_time() {
    let mut s = stable(4, 50, 100);
    s.deploy(2);
    let plan = s.tick();
    assert_eq!((plan.stops.len(), plan.launch_count()), (2, 2));
    // New tasks RUNNING and healthy now: the remaining two old ones go.
    let plan = s.tick();
    assert_eq!((plan.stops.len(), plan.launch_count()), (2, 2));
    roll(&mut s, 2, 4);
    assert_deployed(&mut s, 4);
}

#[test]
fn worked_example_3_100_125_is_stuck_and_says_so_once() {
    let mut s = stable(3, 100, 125);
    s.deploy(2);
    for _ in 0..5 {
        let plan = s.tick();
        assert!(plan.launches.is_empty() && plan.stops.is_empty());
    }
    assert_eq!(
        count_of(&s.messages(), "was unable to stop or start tasks"),
        1
    );
    assert_eq!(
        s.messages().last().copied(),
        Some(messages::stuck("web").as_str())
    );
    // Fixing the configuration unsticks it.
    s.service.deployment_configuration.maximum_percent = 200;
    roll(&mut s, 3, 6);
    assert_deployed(&mut s, 3);
}

#[test]
fn worked_example_2_75_200_must_surge() {
    let mut s = stable(2, 75, 200);
    s.deploy(2);
    let plan = s.plan();
    assert_eq!((plan.stops.len(), plan.launch_count()), (0, 2));
    roll(&mut s, 2, 4);
    assert_deployed(&mut s, 2);
}

#[test]
fn worked_example_1_0_100_stops_then_starts() {
    let mut s = stable(1, 0, 100);
    s.deploy(2);
    let plan = s.plan();
    assert_eq!((plan.stops.len(), plan.launch_count()), (1, 1));
    roll(&mut s, 0, 1);
    assert_deployed(&mut s, 1);
}

#[test]
fn old_deployment_without_tasks_is_removed() {
    let mut s = stable(2, 50, 200);
    let old = s.primary_id();
    s.deploy(2);
    roll(&mut s, 1, 4);
    assert!(s.service.deployments.iter().all(|d| d.id != old));
}

fn with_breaker(s: &mut Sim, rollback: bool) {
    s.service
        .deployment_configuration
        .deployment_circuit_breaker = Some(CircuitBreaker {
        enable: true,
        rollback,
    });
}

#[test]
fn circuit_breaker_without_rollback_fails_and_stops_launching() {
    let mut s = stable(6, 100, 200);
    with_breaker(&mut s, false);
    s.fail_to_start.insert(2);
    s.deploy(2);
    let failed = s.primary_id();
    let first = s.tick();
    assert_eq!(first.launch_count(), 6);
    // All 6 failed to start: threshold clamp(ceil(6/2), 3, 200) = 3 reached.
    let plan = s.tick();
    assert!(plan.launches.is_empty());
    let dep = &s.service.deployments[0];
    assert_eq!(
        (dep.id.as_str(), dep.rollout_state),
        (failed.as_str(), RolloutState::Failed)
    );
    assert_eq!(
        dep.rollout_state_reason.as_deref(),
        Some(messages::ROLLOUT_FAILED)
    );
    assert_eq!(dep.failed_tasks, 6);
    assert!(
        s.messages()
            .contains(&messages::deployment_failed("web", &failed).as_str())
    );
    // No more launches, the old tasks keep serving.
    for _ in 0..20 {
        assert_eq!(s.tick().launch_count(), 0);
    }
    assert_eq!(s.healthy(), 6);
    assert!(s.plan().is_empty());
}

#[test]
fn circuit_breaker_with_rollback_returns_to_the_last_completed_revision() {
    let mut s = stable(6, 100, 200);
    with_breaker(&mut s, true);
    let completed = s.primary_id();
    s.fail_to_start.insert(2);
    s.deploy(2);
    let failed = s.primary_id();
    s.tick();
    s.tick();
    let rollback = s.primary_id();
    assert_ne!(rollback, failed);
    let d = &s.service.deployments;
    assert_eq!(
        (d[0].revision, d[0].rollout_state),
        (1, RolloutState::InProgress)
    );
    assert_eq!(
        d[0].rollout_state_reason,
        Some(messages::rollout_rolling_back(&completed))
    );
    // The failed deployment has no live task left: it is gone already.
    assert!(d.iter().all(|x| x.id != failed));
    let msgs = s.messages();
    assert!(msgs.ends_with(&[
        messages::deployment_failed("web", &failed).as_str(),
        messages::rolling_back("web", &failed, &completed).as_str(),
    ]));
    roll(&mut s, 6, 12);
    assert_deployed(&mut s, 6);
    assert_eq!(s.service.deployments[0].revision, 1);
}

#[test]
fn rollback_works_even_after_the_old_tasks_were_all_replaced() {
    // 0/100 with desired 1: the old task is stopped before the new one fails.
    let mut s = stable(1, 0, 100);
    with_breaker(&mut s, true);
    s.fail_to_start.insert(2);
    s.deploy(2);
    let mut ticks = 0;
    while s.service.deployments[0].revision != 1 || s.service.deployments.len() > 1 {
        s.tick();
        ticks += 1;
        assert!(ticks < 200, "no rollback");
    }
    roll(&mut s, 0, 1);
    assert_deployed(&mut s, 1);
}

#[test]
fn circuit_breaker_stage_two_counts_health_check_replacements() {
    let mut s = stable(2, 100, 200);
    with_breaker(&mut s, true);
    s.unhealthy.insert(2);
    s.deploy(2);
    let failed = s.primary_id();
    let mut failed_at = None;
    for n in 0..30 {
        s.tick();
        let m = messages::deployment_failed("web", &failed);
        if failed_at.is_none() && s.messages().contains(&m.as_str()) {
            failed_at = Some(n);
        }
    }
    // Tick 0 launches 2, tick 1 sees them RUNNING and UNHEALTHY: replaced (2 failures), tick 3
    // replaces the replacements: 4 >= 3.
    assert_eq!(failed_at, Some(3));
    assert!(s.run_until_stable(50).is_some());
    assert_eq!(s.service.deployments.len(), 1);
    assert_eq!(s.service.deployments[0].revision, 1);
    assert_eq!(s.healthy(), 2);
}

#[test]
fn unhealthy_task_is_replaced_only_after_the_grace_period() {
    let mut s = stable(2, 100, 200);
    s.service.health_check_grace_period_seconds = Some(30);
    let victim = s.live().next().unwrap().id.clone();
    let started = s.now;
    for t in &mut s.tasks {
        if t.id == victim {
            t.health = Health::Unhealthy;
            t.started_at = Some(started);
        }
    }
    let plan = s.plan();
    assert!(plan.stops.is_empty() && plan.launches.is_empty());
    assert_eq!(plan.wake_at, Some(started + 30_000));
    s.now = started + 30_000;
    let plan = s.plan();
    assert_eq!(plan.stops.len(), 1);
    assert_eq!(plan.stops[0].task_id, victim);
    assert_eq!(plan.stops[0].reason, messages::UNHEALTHY);
    assert_eq!(plan.launch_count(), 1);
}

#[test]
fn throttle_backs_off_to_the_cap_and_a_new_deployment_resets_it() {
    let mut s = Sim::new(sim::replica_service("web", 1, 100, 200), sim::instances(1));
    s.fail_to_start.insert(1);
    let mut launches_at = Vec::new();
    for _ in 0..4_000 {
        let plan = s.tick();
        if plan.launch_count() > 0 {
            launches_at.push(s.now - sim::TICK_MS);
        }
    }
    let gaps: Vec<u64> = launches_at.windows(2).map(|w| w[1] - w[0]).collect();
    // A failure is seen one tick after the launch; the back-off doubles from 5 s to 15 min.
    assert_eq!(&gaps[..4], &[6_000, 11_000, 21_000, 41_000]);
    assert!(gaps.iter().all(|&g| g <= 15 * 60 * 1_000 + 1_000));
    assert_eq!(*gaps.last().unwrap(), 15 * 60 * 1_000 + 1_000);
    assert_eq!(count_of(&s.messages(), "unable to consistently start"), 1);
    assert!(s.service.throttle_failures >= 10);
    // A new deployment resets the throttle: it launches at once.
    s.deploy(2);
    assert_eq!(s.plan().launch_count(), 1);
}

#[test]
fn task_that_ran_then_exited_is_not_throttled() {
    let mut s = stable(1, 100, 200);
    for t in &mut s.tasks {
        if t.is_live() {
            t.desired = TaskStatus::Stopped;
            t.last = TaskStatus::Stopped;
            t.stop_code = Some(stop_code::ESSENTIAL_CONTAINER_EXITED.to_owned());
            t.stopped_at = Some(s.now);
        }
    }
    let plan = s.plan();
    assert_eq!(plan.launch_count(), 1);
    assert!(
        plan.service
            .as_ref()
            .is_none_or(|x| x.throttle_failures == 0)
    );
}

#[test]
fn draining_an_instance_replaces_first_then_stops_within_min_healthy() {
    let mut s = stable(6, 100, 200);
    s.instances[0].status = ContainerInstanceStatus::Draining;
    let on_drained = s
        .live()
        .filter(|t| t.instance_id.as_deref() == Some("i-000"))
        .count();
    assert!(on_drained > 0);
    let plan = s.plan();
    assert!(plan.stops.is_empty());
    assert_eq!(plan.launch_count(), on_drained);
    let ticks = roll(&mut s, 6, 12);
    assert!(ticks > 0);
    assert!(s.live().all(|t| t.instance_id.as_deref() != Some("i-000")));
    assert_eq!(s.live().count(), 6);
    assert_eq!(
        s.instances[0].status,
        ContainerInstanceStatus::Draining,
        "the instance stays DRAINING"
    );
    assert!(s.tasks.iter().filter(|t| !t.is_live()).all(|t| {
        t.instance_id.as_deref() == Some("i-000")
            && t.stop_code.as_deref() == Some(stop_code::SERVICE_SCHEDULER_INITIATED)
    }));
}

#[test]
fn scale_in_stops_pending_first_then_newest_and_spares_protected_tasks() {
    let mut s = stable(4, 100, 200);
    // Two more tasks, one still pending, then scale to 2 with the oldest protected.
    s.service.desired_count = 6;
    s.tick();
    s.service.desired_count = 7;
    let plan = s.plan();
    s.apply(&plan);
    let pending: Vec<String> = s
        .live()
        .filter(|t| t.last == TaskStatus::Pending)
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(pending.len(), 1);
    let oldest = s.live().map(|t| t.id.clone()).min().unwrap();
    let now = s.now;
    for t in &mut s.tasks {
        if t.id == oldest {
            t.protected_until = Some(now + 60_000);
        }
    }
    s.service.desired_count = 2;
    let plan = s.plan();
    assert_eq!(plan.stops.len(), 5);
    assert_eq!(plan.stops[0].task_id, pending[0]);
    assert!(plan.stops.iter().all(|st| st.task_id != oldest));
    assert!(plan.stops.iter().all(|st| st.kind == StopKind::ScaleIn));
    // Newest first among the running ones: the two kept are the oldest.
    s.apply(&plan);
    let mut kept: Vec<String> = s.live().map(|t| t.id.clone()).collect();
    kept.sort();
    let mut all: Vec<String> = s.tasks.iter().map(|t| t.id.clone()).collect();
    all.sort();
    assert_eq!(kept, all[..2].to_vec());
}

#[test]
fn protected_surplus_waits_for_expiry() {
    let mut s = stable(4, 100, 200);
    let now = s.now;
    for t in &mut s.tasks {
        t.protected_until = Some(now + 60_000);
    }
    s.service.desired_count = 2;
    let plan = s.plan();
    assert!(plan.stops.is_empty());
    assert_eq!(plan.wake_at, Some(now + 60_000));
    s.now += 60_000;
    assert_eq!(s.plan().stops.len(), 2);
}

#[test]
fn deployment_keeps_a_protected_old_task_until_its_protection_expires() {
    let mut s = stable(3, 100, 200);
    let now = s.now;
    let kept = s.live().map(|t| t.id.clone()).min().unwrap();
    let until = now + 60_000;
    for t in &mut s.tasks {
        if t.id == kept {
            t.protected_until = Some(until);
        }
    }
    s.deploy(2);
    let new = s.primary_id();
    // The rollout replaces the two unprotected tasks and waits for the protected one.
    for _ in 0..20 {
        let plan = s.plan();
        assert!(plan.stops.iter().all(|st| st.task_id != kept));
        s.apply(&plan);
        s.advance();
    }
    assert!(s.live().any(|t| t.id == kept));
    assert_eq!(s.live_of(&new), 3);
    assert_eq!(s.live().count(), 4);
    let plan = s.plan();
    assert!(plan.stops.is_empty());
    assert_eq!(plan.wake_at, Some(until));
    // Once expired, it is replaced like any task of an older deployment.
    s.now = until;
    let plan = s.plan();
    assert_eq!(plan.stops.len(), 1);
    assert_eq!(plan.stops[0].task_id, kept);
    assert_eq!(plan.stops[0].kind, StopKind::Deployment);
}

#[test]
fn tasks_on_a_disconnected_instance_are_left_alone() {
    let mut s = stable(3, 100, 200);
    s.instances[1].agent_connected = false;
    let plan = s.plan();
    assert!(plan.launches.is_empty() && plan.stops.is_empty());
    // Once the runner marks them lost, they are replaced.
    let now = s.now;
    for t in &mut s.tasks {
        if t.instance_id.as_deref() == Some("i-001") && t.is_live() {
            t.desired = TaskStatus::Stopped;
            t.last = TaskStatus::Stopped;
            t.stop_code = Some(stop_code::INFRASTRUCTURE_HEALTH.to_owned());
            t.stopped_at = Some(now);
        }
    }
    let lost = s.tasks.iter().filter(|t| !t.is_live()).count();
    assert!(lost > 0);
    assert_eq!(s.plan().launch_count(), lost);
}

#[test]
fn delete_service_stops_everything_then_goes_inactive() {
    let mut s = stable(3, 100, 200);
    s.service.status = ServiceStatus::Draining;
    let plan = s.plan();
    assert_eq!(plan.stops.len(), 3);
    assert!(plan.launches.is_empty());
    assert!(
        plan.stops
            .iter()
            .all(|st| st.kind == StopKind::ServiceDeleted)
    );
    assert!(
        plan.service
            .as_ref()
            .is_none_or(|n| n.status == ServiceStatus::Draining),
        "DRAINING until the stops have taken effect"
    );
    s.apply(&plan);
    let plan = s.plan();
    assert!(plan.stops.is_empty() && plan.launches.is_empty());
    assert_eq!(
        plan.service.as_ref().map(|n| n.status),
        Some(ServiceStatus::Inactive)
    );
    s.apply(&plan);
    assert!(s.plan().is_empty());
}

#[test]
fn a_deleted_service_stays_draining_while_its_tasks_deactivate() {
    // Behind a load balancer a stop starts with DEACTIVATING (desired still RUNNING) while the
    // targets drain: the service must stay DRAINING so that the stop is finished.
    let mut s = stable(2, 100, 200);
    s.service.status = ServiceStatus::Draining;
    for t in &mut s.tasks {
        t.last = TaskStatus::Deactivating;
    }
    for _ in 0..3 {
        let plan = s.plan();
        assert!(
            plan.service
                .as_ref()
                .is_none_or(|n| n.status == ServiceStatus::Draining),
            "{plan:?}"
        );
        assert!(plan.launches.is_empty());
    }
    for t in &mut s.tasks {
        t.desired = TaskStatus::Stopped;
        t.last = TaskStatus::Stopped;
    }
    assert_eq!(
        s.plan().service.map(|n| n.status),
        Some(ServiceStatus::Inactive)
    );
}

#[test]
fn delete_service_waits_while_tasks_are_still_live() {
    let mut s = Sim::new(sim::replica_service("web", 0, 100, 200), sim::instances(1));
    s.service.status = ServiceStatus::Draining;
    let plan = s.plan();
    assert_eq!(
        plan.service.map(|x| x.status),
        Some(ServiceStatus::Inactive)
    );
}

fn daemon(n: usize) -> Sim {
    let mut s = Sim::new(sim::daemon_service("agentd"), sim::instances(n));
    assert!(s.run_until_stable(20).is_some());
    s
}

fn per_instance(s: &Sim) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for t in s.live() {
        *m.entry(t.instance_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    m
}

#[test]
fn daemon_runs_one_task_per_eligible_instance() {
    let mut s = Sim::new(sim::daemon_service("agentd"), sim::instances(3));
    s.instances[2].eligible_for_daemon = false;
    let plan = s.plan();
    let targets: Vec<_> = plan
        .launches
        .iter()
        .map(|l| (l.instance_id.clone().unwrap(), l.count))
        .collect();
    assert_eq!(
        targets,
        vec![("i-000".to_owned(), 1), ("i-001".to_owned(), 1)]
    );
    assert!(s.run_until_stable(20).is_some());
    assert_eq!(s.service.desired_count, 2);
    assert_eq!(
        s.service.deployments[0].rollout_state,
        RolloutState::Completed
    );
    // A new instance joins.
    s.instances.extend(sim::instances(4).into_iter().skip(3));
    let plan = s.plan();
    assert_eq!(plan.launches.len(), 1);
    assert_eq!(plan.launches[0].instance_id.as_deref(), Some("i-003"));
    assert!(s.run_until_stable(20).is_some());
    assert_eq!(per_instance(&s).len(), 3);
    assert!(per_instance(&s).values().all(|&n| n == 1));
}

#[test]
fn daemon_task_on_a_draining_instance_is_stopped_last() {
    let mut s = daemon(3);
    s.instances[0].status = ContainerInstanceStatus::Draining;
    s.instances[0].replica_tasks = 2;
    let plan = s.plan();
    assert!(plan.stops.is_empty() && plan.launches.is_empty());
    s.instances[0].replica_tasks = 0;
    let plan = s.plan();
    assert_eq!(plan.stops.len(), 1);
    assert_eq!(plan.stops[0].kind, StopKind::InstanceDraining);
    assert!(plan.launches.is_empty());
    assert!(s.run_until_stable(10).is_some());
    assert_eq!(s.service.desired_count, 2);
}

#[test]
fn daemon_ignores_disconnected_instances_and_stops_on_ineligible_ones() {
    let mut s = daemon(3);
    s.instances[1].agent_connected = false;
    s.instances[2].eligible_for_daemon = false;
    let plan = s.plan();
    assert!(plan.launches.is_empty());
    assert_eq!(plan.stops.len(), 1);
    assert_eq!(plan.stops[0].kind, StopKind::IneligibleInstance);
    s.apply(&plan);
    assert_eq!(s.service.desired_count, 1);
}

#[test]
fn daemon_deployment_replaces_per_instance_stop_then_start() {
    let mut s = daemon(3);
    s.deploy(2);
    let plan = s.plan();
    assert_eq!(plan.stops.len(), 3);
    assert_eq!(plan.launches.len(), 3);
    for l in &plan.launches {
        assert_eq!(l.count, 1);
    }
    assert!(s.run_until_stable(10).is_some());
    assert_eq!(s.service.deployments.len(), 1);
    assert_eq!(s.service.deployments[0].revision, 2);
    assert!(per_instance(&s).values().all(|&n| n == 1));
}

#[test]
fn daemon_stops_duplicates() {
    let mut s = daemon(2);
    let mut dup = s.live().next().unwrap().clone();
    dup.id = "dup".into();
    dup.created_at += 1;
    s.tasks.push(dup);
    let plan = s.plan();
    assert_eq!(plan.stops.len(), 1);
    assert_eq!(plan.stops[0].task_id, "dup");
    assert_eq!(plan.stops[0].kind, StopKind::Duplicate);
}

#[test]
fn placement_priority_puts_daemons_first() {
    assert!(
        placement_priority(&sim::daemon_service("a"))
            < placement_priority(&sim::replica_service("b", 1, 100, 200))
    );
}

#[test]
fn fifty_task_rolling_deploy_takes_three_reconciles_with_default_bounds() {
    let mut s = stable(50, 100, 200);
    s.deploy(2);
    // Launch 50; they run; stop the 50 old ones and complete.
    let ticks = roll(&mut s, 50, 100);
    assert_eq!(ticks, 3);
    assert_deployed(&mut s, 50);
}
