//! Services with the EXTERNAL deployment controller: each task set keeps
//! `computedDesiredCount` (`ceil(desired × scale / 100)`) tasks of its own task definition; a
//! DRAINING task set keeps none and leaves the service once its tasks are gone. Pure, like
//! [`super::reconcile`]: `(service, tasks, now) → Plan`.

use std::cmp::Reverse;

use gantry_domain::service::Service;
use gantry_domain::task::TaskStatus;

use super::{Health, Launch, Plan, Stop, StopKind, TaskView};

/// `stoppedReason` of a task a task set no longer needs.
pub fn scaled_in(task_set: &str) -> String {
    format!("Scaling activity initiated by (task-set {task_set})")
}

/// Plans the tasks of an EXTERNAL service.
pub fn plan(service: &Service, tasks: &[TaskView], now: u64) -> Plan {
    let mut plan = Plan::default();
    let mut next = service.clone();
    let deleting = service.status != gantry_domain::service::ServiceStatus::Active;
    let live: Vec<&TaskView> = tasks.iter().filter(|t| t.is_live()).collect();
    let healthy = |t: &TaskView| {
        t.last == TaskStatus::Running && matches!(t.health, Health::Healthy | Health::NoCheck)
    };
    for t in &live {
        let known = service
            .task_sets
            .iter()
            .any(|s| Some(s.id.as_str()) == t.deployment_id.as_deref());
        if deleting || !known {
            plan.stops.push(Stop {
                task_id: t.id.clone(),
                reason: scaled_in(t.deployment_id.as_deref().unwrap_or("")),
                kind: StopKind::ScaleIn,
            });
        }
    }
    let desired = if deleting { 0 } else { service.desired_count };
    next.task_sets.retain(|ts| {
        ts.status != "DRAINING"
            || live
                .iter()
                .any(|t| t.deployment_id.as_deref() == Some(ts.id.as_str()))
    });
    for ts in &mut next.task_sets {
        let want = usize::try_from(ts.computed_desired(desired).max(0)).unwrap_or(0);
        let mut mine: Vec<&TaskView> = live
            .iter()
            .copied()
            .filter(|t| t.deployment_id.as_deref() == Some(ts.id.as_str()))
            .collect();
        if deleting {
            continue;
        }
        // Unhealthy tasks are replaced.
        let (failing, ok): (Vec<&TaskView>, Vec<&TaskView>) = mine
            .drain(..)
            .partition(|t| t.last == TaskStatus::Running && t.health == Health::Unhealthy);
        for t in &failing {
            plan.stops.push(Stop {
                task_id: t.id.clone(),
                reason: super::messages::UNHEALTHY.to_owned(),
                kind: StopKind::Unhealthy,
            });
        }
        let mut ok = ok;
        if ok.len() > want {
            // Keep the healthiest, then the oldest.
            ok.sort_by_key(|t| (Reverse(healthy(t)), t.created_at, t.id.clone()));
            for t in &ok[want..] {
                plan.stops.push(Stop {
                    task_id: t.id.clone(),
                    reason: scaled_in(&ts.id),
                    kind: StopKind::ScaleIn,
                });
            }
            ok.truncate(want);
        } else if ok.len() < want {
            plan.launches.push(Launch {
                deployment_id: ts.id.clone(),
                count: want - ok.len(),
                instance_id: None,
            });
        }
        let steady = ok.len() == want && ok.iter().all(|t| healthy(t)) && failing.is_empty();
        let status = if steady {
            "STEADY_STATE"
        } else {
            "STABILIZING"
        };
        if ts.stability_status != status {
            ts.stability_status = status.to_owned();
            ts.stability_status_at = now;
        }
    }
    if deleting && live.is_empty() {
        next.status = gantry_domain::service::ServiceStatus::Inactive;
    }
    if next != *service {
        next.version += 1;
        plan.service = Some(next);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim;
    use gantry_domain::service::TaskSet;

    fn task_set(id: &str, scale: f64, status: &str) -> TaskSet {
        TaskSet {
            id: id.into(),
            external_id: None,
            family: "web".into(),
            revision: 1,
            launch_type: "EC2".into(),
            status: status.into(),
            scale,
            load_balancers: vec![],
            network_configuration: None,
            platform_version: None,
            capacity_provider_strategy: vec![],
            stability_status: "STABILIZING".into(),
            stability_status_at: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn running(id: &str, set: &str) -> TaskView {
        TaskView {
            id: id.into(),
            deployment_id: Some(set.into()),
            desired: TaskStatus::Running,
            last: TaskStatus::Running,
            health: Health::NoCheck,
            created_at: 0,
            started_at: Some(1),
            stopped_at: None,
            stop_code: None,
            instance_id: None,
            protected_until: None,
            scale_in_rank: None,
        }
    }

    #[test]
    fn each_task_set_runs_its_computed_count_and_a_drained_set_leaves() {
        let mut s = sim::replica_service("web", 3, 100, 200);
        s.deployments.clear();
        s.deployment_controller = Some("EXTERNAL".into());
        s.task_sets = vec![
            task_set("a", 100.0, "PRIMARY"),
            task_set("b", 50.0, "ACTIVE"),
        ];
        assert_eq!(s.task_sets[1].computed_desired(3), 2);
        let tasks = vec![
            running("1", "a"),
            running("2", "a"),
            running("3", "a"),
            running("4", "a"),
        ];
        let p = plan(&s, &tasks, 5);
        assert_eq!(p.stops.len(), 1, "a has one too many");
        assert_eq!(
            p.launches,
            vec![Launch {
                deployment_id: "b".into(),
                count: 2,
                instance_id: None
            }]
        );
        let next = p.service.expect("stability changes");
        assert_eq!(next.task_sets[0].stability_status, "STEADY_STATE");
        assert_eq!(next.task_sets[1].stability_status, "STABILIZING");
        s.task_sets[0].status = "DRAINING".into();
        let p = plan(&s, &tasks[..1], 6);
        assert_eq!(p.stops.len(), 1);
        let p = plan(&s, &[], 7);
        let next = p.service.expect("drained set removed");
        assert_eq!(next.task_sets.len(), 1);
        assert_eq!(next.task_sets[0].id, "b");
    }
}
