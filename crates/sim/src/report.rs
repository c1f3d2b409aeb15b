//! Submits the instances' task state changes: one queue for the whole fleet, drained by at most
//! `report_concurrency` calls in flight over the shared keep-alive pool, each retried with
//! back-off while the failure is transient.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::Shared;
use crate::stream::{Report, Reported};

/// Attempts per report before it is given up (the next full state asks again).
const REPORT_ATTEMPTS: u32 = 8;

/// Drains `rx` until every sender is gone.
pub(crate) async fn run(sh: Arc<Shared>, mut rx: mpsc::Receiver<Report>) {
    let slots = Arc::new(Semaphore::new(sh.cfg.report_concurrency.max(1)));
    let mut inflight = JoinSet::new();
    while let Some(report) = rx.recv().await {
        while inflight.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let sh = sh.clone();
        inflight.spawn(async move {
            submit(&sh, &report).await;
            drop(permit);
        });
    }
    while inflight.join_next().await.is_some() {}
}

async fn submit(sh: &Shared, r: &Report) {
    let containers: Vec<_> = r
        .containers
        .iter()
        .map(|name| match r.status {
            Reported::Running => {
                json!({"containerName": name, "status": "RUNNING", "networkBindings": []})
            }
            Reported::Stopped => {
                json!({"containerName": name, "status": "STOPPED", "exitCode": 0, "networkBindings": []})
            }
        })
        .collect();
    let mut body = json!({
        "cluster": sh.cfg.registration_cluster(),
        "task": r.task_arn,
        "status": r.status.as_str(),
        "containers": containers,
    });
    if r.status == Reported::Stopped {
        body["reason"] = json!("Stopped by the simulated instance");
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=REPORT_ATTEMPTS {
        match sh.api.call("SubmitTaskStateChange", &body).await {
            Ok(_) => {
                let counter = match r.status {
                    Reported::Running => &sh.progress.reported_running,
                    Reported::Stopped => &sh.progress.reported_stopped,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if e.is_retryable() && attempt < REPORT_ATTEMPTS => {
                tracing::debug!(task_arn = %r.task_arn, attempt, error = %e, "state change not accepted, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                sh.progress.report_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(task_arn = %r.task_arn, status = r.status.as_str(), error = %e, "state change given up");
                return;
            }
        }
    }
}
