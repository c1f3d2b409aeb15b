//! Failure accounting derived from the task list: the deployment circuit breaker and the launch
//! throttle. Both are recomputed from the (live and recently stopped) tasks on every reconcile,
//! so reconcile is idempotent and survives a restart of the control plane.

use gantry_domain::task::stop_code;

use super::view::{Health, TaskView};

/// First launch back-off after a task failed to start.
pub const THROTTLE_BASE_MS: u64 = 5_000;
/// Longest launch back-off (ECS: "up to 15 minutes").
pub const THROTTLE_CAP_MS: u64 = 15 * 60 * 1_000;

/// Stop codes that mean the task itself failed (as opposed to being stopped by the scheduler, a
/// user, a Spot reclaim or a lost host).
fn is_failure_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(stop_code::TASK_FAILED_TO_START | stop_code::ESSENTIAL_CONTAINER_EXITED)
    )
}

fn of_deployment<'a>(
    tasks: &'a [TaskView],
    deployment_id: &'a str,
) -> impl Iterator<Item = &'a TaskView> + 'a {
    tasks
        .iter()
        .filter(move |t| t.deployment_id.as_deref() == Some(deployment_id))
}

/// The circuit breaker's view of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerCount {
    /// A task of the deployment has reached RUNNING: stage 2.
    pub reached_running: bool,
    /// Stage 1: tasks that stopped without reaching RUNNING. Stage 2: tasks that failed (exited,
    /// failed to start, or were replaced as unhealthy) since the first one reached RUNNING.
    pub failures: i64,
}

/// Counts the failures of `deployment_id`'s tasks for the circuit breaker.
pub fn breaker_count(tasks: &[TaskView], deployment_id: &str) -> BreakerCount {
    let stage2_start = of_deployment(tasks, deployment_id)
        .filter_map(|t| t.started_at)
        .min();
    let failures = of_deployment(tasks, deployment_id)
        .filter(|t| !t.is_live())
        .filter(|t| match stage2_start {
            None => t.started_at.is_none() && is_failure_code(t.stop_code.as_deref()),
            Some(since) => {
                t.stop_time() >= since
                    && (is_failure_code(t.stop_code.as_deref())
                        || (t.started_at.is_some()
                            && t.health == Health::Unhealthy
                            && t.stop_code.as_deref()
                                == Some(stop_code::SERVICE_SCHEDULER_INITIATED)))
            }
        })
        .count();
    BreakerCount {
        reached_running: stage2_start.is_some(),
        failures: i64::try_from(failures).unwrap_or(i64::MAX),
    }
}

/// The launch throttle of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    /// Consecutive tasks (most recent first) that stopped before reaching RUNNING, up to the
    /// latest one that did reach RUNNING.
    pub failures: i64,
    /// No launch before this time (0: none).
    pub until: u64,
}

/// Derives the launch throttle from `deployment_id`'s tasks: `n` consecutive failures to start
/// delay launches until the latest failure + `min(5 s × 2^(n-1), 15 min)`.
pub fn throttle(tasks: &[TaskView], deployment_id: &str) -> Throttle {
    // (time, failed) events: a start is a success, a stop before RUNNING a failure.
    let mut events: Vec<(u64, bool)> = Vec::new();
    for t in of_deployment(tasks, deployment_id) {
        if let Some(s) = t.started_at {
            events.push((s, false));
        } else if !t.is_live() && is_failure_code(t.stop_code.as_deref()) {
            events.push((t.stop_time(), true));
        }
    }
    // Most recent first; on a tie the success wins.
    events.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let n = events.iter().take_while(|e| e.1).count();
    if n == 0 {
        return Throttle::default();
    }
    let latest = events[0].0;
    let shift = u32::try_from(n - 1).unwrap_or(u32::MAX).min(20);
    let delay = (THROTTLE_BASE_MS << shift).min(THROTTLE_CAP_MS);
    Throttle {
        failures: i64::try_from(n).unwrap_or(i64::MAX),
        until: latest.saturating_add(delay),
    }
}
