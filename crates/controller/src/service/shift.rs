//! Deployments that shift traffic (`BLUE_GREEN`, `LINEAR`, `CANARY`) and alarm-based failure
//! of any deployment, as a pure step over the service record: `advance(service, tasks, now)`
//! returns the updated record when something moves, and the runner commits it before
//! reconciling.
//!
//! A shift runs the new (green) deployment in full beside the old (blue) one, each in its own
//! target group of the service's `advancedConfiguration`, and walks ECS's lifecycle stages:
//! PRE_SCALE_UP → SCALE_UP (green reaches `desired` healthy tasks) → POST_SCALE_UP →
//! TEST_TRAFFIC_SHIFT (the test rule sends everything to green) → POST_TEST_TRAFFIC_SHIFT →
//! PRODUCTION_TRAFFIC_SHIFT (at once, in `stepPercent` steps every `stepBakeTimeInMinutes`, or
//! `canaryPercent` then the rest after `canaryBakeTimeInMinutes`) → POST_PRODUCTION_TRAFFIC_SHIFT
//! → BAKE_TIME (`bakeTimeInMinutes`, both revisions up) → CLEAN_UP (the reconciler stops blue;
//! when green is COMPLETED the shift ends and green's group becomes the production group).
//! `PAUSE` hooks hold the deployment at their stage until ContinueServiceDeployment or their
//! timeout. A rollback (circuit breaker count on green, an alarm in ALARM, StopServiceDeployment,
//! a hook) makes blue PRIMARY again with the weights back on blue; the reconciler then stops
//! green. The listener rules' weights follow from the record ([`weights`]).

use gantry_domain::service::{
    DeploymentStatus, DeploymentStrategy, HeldHook, LifecycleStage, RollbackNote, RolloutState,
    Service, TrafficShift, circuit_breaker_threshold,
};

use super::failures;
use super::messages;
use super::{Health, IdSource, TaskView};
use gantry_domain::task::TaskStatus;

/// `rolloutStateReason` / rollback reason of an alarm-failed deployment.
pub fn alarm_reason(alarms: &[String]) -> String {
    format!(
        "ECS deployment failed: alarm(s) {} in ALARM state.",
        alarms.join(", ")
    )
}

/// Advances `service` at `now`: alarm-based failure, then the traffic shift. `in_alarm` are
/// the names of the service's deployment alarms now in ALARM; `minute_ms` is how long one
/// minute of the configured bake times and hook timeouts lasts (60 000 outside tests).
pub fn advance(
    service: &Service,
    tasks: &[TaskView],
    now: u64,
    minute_ms: u64,
    in_alarm: &[String],
    ids: &mut dyn IdSource,
) -> Option<Service> {
    let primary = service.primary()?.clone();
    let mut next = service.clone();
    let cfg = &service.deployment_configuration;
    // A rollback's own deployment is not watched: it is what the alarm asked for.
    let is_rollback = service
        .last_rollback
        .as_ref()
        .is_some_and(|rb| rb.to_deployment_id == primary.id);
    if primary.rollout_state == RolloutState::InProgress
        && !is_rollback
        && let Some((names, rollback)) = cfg.alarms()
    {
        let hit: Vec<String> = names
            .iter()
            .filter(|n| in_alarm.contains(n))
            .cloned()
            .collect();
        if !hit.is_empty() {
            let reason = alarm_reason(&hit);
            if next.shift.is_some() {
                roll_back_shift(&mut next, &reason, now, ids);
            } else {
                fail_rolling(&mut next, &reason, rollback, now, ids);
            }
            return Some(bump(next));
        }
    }
    let strategy = cfg.strategy();
    let Some(lb) = service.advanced_lb() else {
        if next.shift.take().is_some() {
            return Some(bump(next));
        }
        return None;
    };
    let mut changed = false;
    if next.production_target_group.is_none() {
        next.production_target_group = Some(lb.target_group_arn.clone());
        changed = true;
    }
    let Some(mut sh) = next.shift.take() else {
        if strategy.shifts_traffic() && primary.rollout_state == RolloutState::InProgress {
            let source = next
                .deployments
                .iter()
                .filter(|d| d.status != DeploymentStatus::Primary)
                .find(|d| {
                    tasks
                        .iter()
                        .any(|t| t.is_live() && t.deployment_id.as_deref() == Some(&d.id))
                });
            if let Some(src) = source {
                let blue = next
                    .production_target_group
                    .clone()
                    .unwrap_or(lb.target_group_arn.clone());
                let green = lb.other(&blue).to_owned();
                next.shift = Some(TrafficShift {
                    deployment_id: primary.id.clone(),
                    source_deployment_id: src.id.clone(),
                    green_target_group: green,
                    blue_target_group: blue,
                    stage: LifecycleStage::PreScaleUp,
                    stage_started_at: now,
                    production_percent: 0.0,
                    test_percent: 0.0,
                    step_at: now,
                    passed_hooks: Vec::new(),
                    held: None,
                    rollback_requested: None,
                });
                changed = true;
            }
        }
        return changed.then(|| bump(next));
    };
    if sh.deployment_id != primary.id {
        // The shift's deployment is no longer PRIMARY (a rollback elsewhere): it is over.
        return Some(bump(next));
    }
    if let Some(reason) = sh.rollback_requested.clone() {
        next.shift = Some(sh);
        roll_back_shift(&mut next, &reason, now, ids);
        return Some(bump(next));
    }
    let desired = primary.desired_count;
    let count = failures::breaker_count(tasks, &primary.id);
    if sh.stage < LifecycleStage::CleanUp && count.failures >= circuit_breaker_threshold(desired) {
        next.shift = Some(sh);
        roll_back_shift(&mut next, messages::ROLLOUT_FAILED, now, ids);
        return Some(bump(next));
    }
    if let Some(h) = sh.held.clone() {
        let hook = cfg
            .pause_hooks()
            .into_iter()
            .find(|p| p.stages.contains(&h.stage));
        let timed_out = hook.as_ref().and_then(|p| {
            let t = u64::try_from(p.timeout_minutes?).ok()?;
            (now >= h.since.saturating_add(t.saturating_mul(minute_ms)))
                .then(|| p.timeout_action.clone())
        });
        match h.action.as_deref().map(str::to_owned).or(timed_out) {
            Some(a) if a == "ROLLBACK" => {
                next.shift = Some(sh);
                let reason = format!("Lifecycle hook {} rolled the deployment back.", h.hook_id);
                roll_back_shift(&mut next, &reason, now, ids);
                return Some(bump(next));
            }
            Some(_) => {
                sh.passed_hooks.push(h.stage.clone());
                sh.held = None;
                next.shift = Some(sh);
                return Some(bump(next));
            }
            None => {
                next.shift = Some(sh);
                return changed.then(|| bump(next));
            }
        }
    }
    let hooks = cfg.pause_hooks();
    let mut hold = |sh: &mut TrafficShift, stage: &str| -> bool {
        if sh.passed_hooks.iter().any(|p| p == stage) {
            return false;
        }
        if hooks.iter().any(|h| h.stages.iter().any(|s| s == stage)) {
            sh.held = Some(HeldHook {
                hook_id: ids.event_id(),
                stage: stage.to_owned(),
                since: now,
                action: None,
            });
            return true;
        }
        false
    };
    let minutes = |m: i64| u64::try_from(m).unwrap_or(0).saturating_mul(minute_ms);
    let step = |sh: &mut TrafficShift, stage: LifecycleStage| {
        sh.stage = stage;
        sh.stage_started_at = now;
    };
    let before = sh.clone();
    match sh.stage {
        LifecycleStage::PreScaleUp => {
            if !hold(&mut sh, "PRE_SCALE_UP") {
                step(&mut sh, LifecycleStage::ScaleUp);
            }
        }
        LifecycleStage::ScaleUp => {
            let healthy = tasks
                .iter()
                .filter(|t| {
                    t.is_live()
                        && t.deployment_id.as_deref() == Some(&primary.id)
                        && t.last == TaskStatus::Running
                        && matches!(t.health, Health::Healthy | Health::NoCheck)
                })
                .count();
            if i64::try_from(healthy).unwrap_or(i64::MAX) >= desired {
                step(&mut sh, LifecycleStage::PostScaleUp);
            }
        }
        LifecycleStage::PostScaleUp => {
            if !hold(&mut sh, "POST_SCALE_UP") {
                step(&mut sh, LifecycleStage::TestTrafficShift);
                sh.test_percent = 100.0;
            }
        }
        LifecycleStage::TestTrafficShift => {
            if !hold(&mut sh, "TEST_TRAFFIC_SHIFT") {
                step(&mut sh, LifecycleStage::PostTestTrafficShift);
            }
        }
        LifecycleStage::PostTestTrafficShift => {
            if !hold(&mut sh, "POST_TEST_TRAFFIC_SHIFT")
                && !hold(&mut sh, "PRE_PRODUCTION_TRAFFIC_SHIFT")
            {
                step(&mut sh, LifecycleStage::ProductionTrafficShift);
                sh.production_percent = match cfg.strategy() {
                    DeploymentStrategy::Linear => cfg.linear().0,
                    DeploymentStrategy::Canary => cfg.canary().0,
                    _ => 100.0,
                }
                .clamp(0.0, 100.0);
                sh.step_at = now;
            }
        }
        LifecycleStage::ProductionTrafficShift => {
            if sh.production_percent >= 100.0 {
                if !hold(&mut sh, "PRODUCTION_TRAFFIC_SHIFT") {
                    step(&mut sh, LifecycleStage::PostProductionTrafficShift);
                }
            } else {
                let (inc, bake) = match cfg.strategy() {
                    DeploymentStrategy::Linear => cfg.linear(),
                    _ => (100.0, cfg.canary().1),
                };
                if now >= sh.step_at.saturating_add(minutes(bake)) {
                    let p = ((sh.production_percent + inc) * 10.0).round() / 10.0;
                    sh.production_percent = p.min(100.0);
                    sh.step_at = now;
                }
            }
        }
        LifecycleStage::PostProductionTrafficShift => {
            if !hold(&mut sh, "POST_PRODUCTION_TRAFFIC_SHIFT") {
                step(&mut sh, LifecycleStage::BakeTime);
            }
        }
        LifecycleStage::BakeTime => {
            if now
                >= sh
                    .stage_started_at
                    .saturating_add(minutes(cfg.bake_minutes()))
            {
                step(&mut sh, LifecycleStage::CleanUp);
            }
        }
        LifecycleStage::CleanUp => {
            if primary.rollout_state == RolloutState::Completed {
                next.production_target_group = Some(sh.green_target_group.clone());
                return Some(bump(next));
            }
        }
    }
    let moved = sh != before;
    next.shift = Some(sh);
    (moved || changed).then(|| bump(next))
}

/// StopServiceDeployment with `ROLLBACK` on the PRIMARY deployment `deployment_id` while it is
/// IN_PROGRESS: a shift goes back to blue, a rolling deployment rolls back to the last
/// COMPLETED revision. `None` when that deployment is not in progress.
pub fn stop_deployment(
    service: &Service,
    deployment_id: &str,
    now: u64,
    ids: &mut dyn IdSource,
) -> Option<Service> {
    let primary = service.primary()?;
    if primary.id != deployment_id || primary.rollout_state != RolloutState::InProgress {
        return None;
    }
    let mut next = service.clone();
    let reason = "Service deployment rolled back because of a stop request.";
    if next.shift.is_some() {
        roll_back_shift(&mut next, reason, now, ids);
    } else {
        fail_rolling(&mut next, reason, true, now, ids);
    }
    Some(bump(next))
}

fn bump(mut s: Service) -> Service {
    s.version += 1;
    s
}

/// Rolls a shift back: blue is PRIMARY again and serves all traffic, green is FAILED (the
/// reconciler stops its tasks).
fn roll_back_shift(next: &mut Service, reason: &str, now: u64, ids: &mut dyn IdSource) {
    let Some(sh) = next.shift.take() else { return };
    let name = next.name.clone();
    let desired = next.desired_count;
    for d in &mut next.deployments {
        if d.id == sh.deployment_id {
            d.status = DeploymentStatus::Active;
            d.rollout_state = RolloutState::Failed;
            d.rollout_state_reason = Some(reason.to_owned());
            d.updated_at = now;
        } else if d.id == sh.source_deployment_id {
            d.status = DeploymentStatus::Primary;
            d.desired_count = desired;
            d.updated_at = now;
        }
    }
    next.last_rollback = Some(RollbackNote {
        deployment_id: sh.deployment_id.clone(),
        reason: reason.to_owned(),
        started_at: now,
        to_deployment_id: sh.source_deployment_id.clone(),
    });
    next.push_event(
        ids.event_id(),
        now,
        format!(
            "(service {name}) (deployment {}) deployment failed: {reason}",
            sh.deployment_id
        ),
    );
    next.push_event(
        ids.event_id(),
        now,
        messages::rolling_back(&name, &sh.deployment_id, &sh.source_deployment_id),
    );
}

/// An alarm failed a rolling deployment: FAILED, and with rollback a new PRIMARY deployment of
/// the last COMPLETED revision (as the circuit breaker does).
fn fail_rolling(
    next: &mut Service,
    reason: &str,
    rollback: bool,
    now: u64,
    ids: &mut dyn IdSource,
) {
    let name = next.name.clone();
    let desired = next.desired_count;
    let Some(p) = next
        .deployments
        .iter()
        .position(|d| d.status == DeploymentStatus::Primary)
    else {
        return;
    };
    let failed = {
        let f = &mut next.deployments[p];
        f.rollout_state = RolloutState::Failed;
        f.rollout_state_reason = Some(reason.to_owned());
        f.updated_at = now;
        f.clone()
    };
    next.push_event(
        ids.event_id(),
        now,
        format!(
            "(service {name}) (deployment {}) deployment failed: {reason}",
            failed.id
        ),
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
        gantry_domain::service::Deployment {
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
            rollout_state_reason: Some(format!(
                "ECS deployment alarms: rolling back to deploymentId {}.",
                target.id
            )),
            launch_type: target.launch_type.clone(),
            network_configuration: next.network_configuration.clone(),
        },
    );
    next.last_rollback = Some(RollbackNote {
        deployment_id: failed.id.clone(),
        reason: reason.to_owned(),
        started_at: now,
        to_deployment_id: id,
    });
    next.push_event(
        ids.event_id(),
        now,
        messages::rolling_back(&name, &failed.id, &target.id),
    );
}

/// The weights the production and test listener rules should have now, as
/// `(rule ARN, [(target group ARN, weight)])`, groups in the order of the service's
/// `advancedConfiguration` (target group first, alternate second).
pub fn weights(service: &Service) -> Vec<(String, Vec<(String, u32)>)> {
    let Some(lb) = service.advanced_lb() else {
        return Vec::new();
    };
    let serving = service
        .production_target_group
        .clone()
        .unwrap_or(lb.target_group_arn.clone());
    let split = |green_tg: &str, green_pct: f64| -> Vec<(String, u32)> {
        let (g, b) = to_weights(green_pct);
        [&lb.target_group_arn, &lb.alternate_target_group_arn]
            .iter()
            .map(|tg| ((*tg).clone(), if *tg == green_tg { g } else { b }))
            .collect()
    };
    let (prod, test) = match &service.shift {
        Some(sh) => (
            split(&sh.green_target_group, sh.production_percent),
            split(&sh.green_target_group, sh.test_percent),
        ),
        None => (split(&serving, 100.0), split(&serving, 100.0)),
    };
    let mut out = vec![(lb.production_listener_rule.clone(), prod)];
    if let Some(t) = &lb.test_listener_rule {
        out.push((t.clone(), test));
    }
    out
}

/// A share in percent (multiples of 0.1) as forward weights (green, blue): whole percents as
/// they are, tenths scaled by ten (ELBv2 weights go to 999).
fn to_weights(pct: f64) -> (u32, u32) {
    let tenths = (pct.clamp(0.0, 100.0) * 10.0).round() as u32;
    if tenths.is_multiple_of(10) {
        (tenths / 10, 100 - tenths / 10)
    } else {
        (tenths, 1000 - tenths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{self, Sim};
    use serde_json::json;

    const A: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/a/1";
    const B: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/b/2";
    const PROD: &str =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener-rule/app/lb/1/2/3";
    const TEST: &str =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener-rule/app/lb/1/4/5";

    /// A stable service of 2 tasks behind the two groups, with `strategy` settings.
    fn shifting(strategy: serde_json::Value) -> Sim {
        let mut svc = sim::replica_service("web", 2, 100, 200);
        svc.load_balancers = vec![json!({
            "targetGroupArn": A, "containerName": "web", "containerPort": 80,
            "advancedConfiguration": {"alternateTargetGroupArn": B, "productionListenerRule": PROD,
                                      "testListenerRule": TEST, "roleArn": "r"}})];
        if let serde_json::Value::Object(m) = strategy {
            svc.deployment_configuration.other.extend(m);
        }
        let mut s = Sim::new(svc, sim::instances(2));
        assert!(s.run_until_stable(20).is_some());
        s
    }

    /// One runner pass: advance the deployment, else reconcile and apply; then a tick.
    fn pass(s: &mut Sim, in_alarm: &[String]) {
        if let Some(next) = advance(&s.service, &s.tasks, s.now, 1_000, in_alarm, &mut s.ids) {
            s.service = next;
        } else {
            let plan = s.plan();
            s.apply(&plan);
        }
        s.advance();
    }

    fn prod_share(s: &Sim) -> u32 {
        let w = weights(&s.service);
        let green = s
            .service
            .shift
            .as_ref()
            .map(|sh| sh.green_target_group.clone())
            .unwrap_or_else(|| s.service.serving_target_group().unwrap_or_default());
        w[0].1
            .iter()
            .find(|(tg, _)| *tg == green)
            .map_or(0, |(_, w)| *w)
    }

    #[test]
    fn blue_green_walks_the_stages_keeps_blue_through_the_bake_then_swaps_groups() {
        let mut s = shifting(json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 3}));
        assert_eq!(
            weights(&s.service)[0].1,
            vec![(A.to_owned(), 100), (B.to_owned(), 0)]
        );
        let blue = s.primary_id();
        s.deploy(2);
        let mut stages = Vec::new();
        let mut blue_during_bake = Vec::new();
        for _ in 0..60 {
            pass(&mut s, &[]);
            if let Some(sh) = &s.service.shift {
                if stages.last() != Some(&sh.stage) {
                    stages.push(sh.stage);
                }
                if sh.stage == LifecycleStage::BakeTime {
                    blue_during_bake.push(s.live_of(&blue));
                    assert_eq!(prod_share(&s), 100);
                }
                if sh.stage < LifecycleStage::TestTrafficShift {
                    assert_eq!(weights(&s.service)[1].1[0], (A.to_owned(), 100));
                }
            }
        }
        use LifecycleStage::*;
        assert_eq!(
            stages,
            vec![
                PreScaleUp,
                ScaleUp,
                PostScaleUp,
                TestTrafficShift,
                PostTestTrafficShift,
                ProductionTrafficShift,
                PostProductionTrafficShift,
                BakeTime,
                CleanUp
            ]
        );
        assert!(blue_during_bake.len() >= 3 && blue_during_bake.iter().all(|n| *n == 2));
        assert!(s.service.shift.is_none());
        assert_eq!(s.service.production_target_group.as_deref(), Some(B));
        assert_eq!(s.live_of(&blue), 0);
        assert_eq!(s.service.deployments.len(), 1);
        assert_eq!(
            s.service.deployments[0].rollout_state,
            RolloutState::Completed
        );
        assert_eq!(
            weights(&s.service)[0].1,
            vec![(A.to_owned(), 0), (B.to_owned(), 100)]
        );
    }

    #[test]
    fn linear_steps_by_step_percent_after_each_bake() {
        let mut s = shifting(json!({"strategy": "LINEAR",
            "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 2}}));
        s.deploy(2);
        let mut seen = Vec::new();
        for _ in 0..60 {
            pass(&mut s, &[]);
            if let Some(sh) = &s.service.shift
                && sh.stage == LifecycleStage::ProductionTrafficShift
            {
                seen.push(prod_share(&s));
            }
        }
        seen.dedup();
        assert_eq!(seen, vec![25, 50, 75, 100]);
        assert_eq!(s.service.production_target_group.as_deref(), Some(B));
    }

    #[test]
    fn a_pause_hook_holds_until_continued_and_an_alarm_rolls_back_to_blue() {
        let mut s = shifting(json!({"strategy": "CANARY",
            "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1},
            "alarms": {"alarmNames": ["errors"], "enable": true, "rollback": true},
            "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"]}]}));
        let blue = s.primary_id();
        s.deploy(2);
        for _ in 0..40 {
            pass(&mut s, &[]);
        }
        let sh = s.service.shift.clone().expect("held");
        assert_eq!(sh.stage, LifecycleStage::PostProductionTrafficShift);
        assert!(sh.held.is_some());
        assert_eq!(prod_share(&s), 100);
        pass(&mut s, &["errors".to_owned()]);
        assert!(s.service.shift.is_none());
        assert_eq!(s.primary_id(), blue);
        assert_eq!(prod_share(&s), 100, "all production back on blue");
        assert_eq!(s.service.serving_target_group().as_deref(), Some(A));
        let rb = s.service.last_rollback.clone().expect("rollback noted");
        assert!(rb.reason.contains("errors"));
        for _ in 0..20 {
            pass(&mut s, &["errors".to_owned()]);
        }
        assert_eq!(s.live_of(&blue), 2);
        assert_eq!(s.live().count(), 2, "green stopped");
    }

    #[test]
    fn a_hook_timeout_takes_its_action_and_a_stop_request_rolls_a_shift_back() {
        let mut s = shifting(json!({"strategy": "BLUE_GREEN",
            "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"],
                                "timeoutConfiguration": {"timeoutInMinutes": 3, "action": "CONTINUE"}}]}));
        let blue = s.primary_id();
        s.deploy(2);
        let green = s.primary_id();
        let mut held_for = 0;
        for _ in 0..40 {
            pass(&mut s, &[]);
            if s.service.shift.as_ref().is_some_and(|sh| sh.held.is_some()) {
                held_for += 1;
            }
            if s.service
                .shift
                .as_ref()
                .is_some_and(|sh| sh.stage >= LifecycleStage::TestTrafficShift)
            {
                break;
            }
        }
        // Held for the 3 one-second "minutes", then continued by the timeout.
        assert!((3..=5).contains(&held_for), "held for {held_for} passes");
        let next = stop_deployment(&s.service, &green, s.now, &mut s.ids).expect("in progress");
        assert!(next.shift.is_none());
        assert_eq!(next.primary().map(|d| d.id.clone()), Some(blue));
        let failed = next
            .deployments
            .iter()
            .find(|d| d.id == green)
            .expect("kept");
        assert_eq!(failed.rollout_state, RolloutState::Failed);
        assert!(stop_deployment(&next, &green, s.now, &mut s.ids).is_none());
    }

    #[test]
    fn an_alarm_fails_a_rolling_deployment_and_rolls_back_once() {
        let mut s = shifting(json!({
            "alarms": {"alarmNames": ["errors"], "enable": true, "rollback": true}}));
        s.service.load_balancers.clear();
        s.health = Health::Unknown;
        s.deploy(2);
        pass(&mut s, &[]);
        let failed = s.primary_id();
        pass(&mut s, &["errors".to_owned()]);
        let d = s
            .service
            .deployments
            .iter()
            .find(|d| d.id == failed)
            .expect("kept");
        assert_eq!(d.rollout_state, RolloutState::Failed);
        let rollback = s.primary_id();
        assert_ne!(rollback, failed);
        for _ in 0..5 {
            pass(&mut s, &["errors".to_owned()]);
        }
        assert_eq!(
            s.primary_id(),
            rollback,
            "the rollback itself is not failed again"
        );
    }

    #[test]
    fn shares_become_weights() {
        assert_eq!(to_weights(0.0), (0, 100));
        assert_eq!(to_weights(25.0), (25, 75));
        assert_eq!(to_weights(100.0), (100, 0));
        assert_eq!(to_weights(10.5), (105, 895));
    }
}
