//! Task scale-in protection: `UpdateTaskProtection` and `GetTaskProtection`.
//!
//! Protection is a time on the task record (`Task::protected_until`); the service reconciler reads
//! it and neither scales in nor replaces a protected task (see `gantry_controller::service`), and
//! expiry is nothing but that time passing. Only tasks of a service can be protected, as on ECS:
//! a standalone task is a `TASK_NOT_VALID` failure.

use gantry_domain::Arn;
use gantry_domain::task::{DEFAULT_PROTECTION_MINUTES, MAX_PROTECTION_MINUTES, Task, TaskStatus};
use gantry_front::RequestContext;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::tasks::{self, task_arn};
use crate::wire::{active_cluster, check_len, cluster_name, failure, parse, secs};
use crate::{EcsError, EcsService};

/// The `detail` of a `TASK_NOT_VALID` failure for a task outside any service.
const NOT_A_SERVICE_TASK: &str = "Task scale-in protection applies only to tasks of a service.";
/// The `detail` of a `TASK_NOT_VALID` failure for a task that is stopped or stopping.
const TASK_STOPPING: &str = "The task is stopped or stopping.";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateTaskProtectionRequest {
    cluster: Option<String>,
    tasks: Option<Vec<String>>,
    protection_enabled: Option<bool>,
    expires_in_minutes: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetTaskProtectionRequest {
    cluster: Option<String>,
    tasks: Option<Vec<String>>,
}

/// One `protectedTasks[]` entry as of `now`.
fn protected_task(t: &Task, ctx: &RequestContext, now: u64) -> Value {
    let mut v = json!({
        "taskArn": task_arn(ctx, t),
        "protectionEnabled": t.is_protected(now),
    });
    if let Some(until) = t.protected_until.filter(|_| t.is_protected(now)) {
        v["expirationDate"] = secs(until);
    }
    v
}

/// Why a task cannot take protection, as a `failures[]` entry.
fn refusal(t: &Task, ctx: &RequestContext) -> Option<Value> {
    if t.service_name.is_none() {
        return Some(failure(
            &task_arn(ctx, t),
            "TASK_NOT_VALID",
            Some(NOT_A_SERVICE_TASK),
        ));
    }
    if t.desired_status == TaskStatus::Stopped || t.last_status == TaskStatus::Stopped {
        return Some(failure(
            &task_arn(ctx, t),
            "TASK_NOT_VALID",
            Some(TASK_STOPPING),
        ));
    }
    None
}

fn missing(ctx: &RequestContext, cluster: &str, reference: &str) -> Value {
    crate::wire::missing(reference, |id| {
        Arn::task(&ctx.region, &ctx.account_id, cluster, id)
    })
}

/// The cluster a protection request names: required by the model.
fn required_cluster(cluster: Option<&str>) -> Result<String, EcsError> {
    match cluster {
        Some(c) if !c.is_empty() => cluster_name(Some(c)),
        _ => Err(EcsError::invalid("cluster is required.")),
    }
}

pub(super) async fn update(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: UpdateTaskProtectionRequest = parse(body)?;
    let cluster = required_cluster(req.cluster.as_deref())?;
    let Some(enabled) = req.protection_enabled else {
        return Err(EcsError::invalid("protectionEnabled is required."));
    };
    let refs = req.tasks.unwrap_or_default();
    check_len("tasks", &refs, 10)?;
    let minutes = match req.expires_in_minutes {
        None => DEFAULT_PROTECTION_MINUTES,
        Some(m) if (1..=MAX_PROTECTION_MINUTES).contains(&m) => m,
        Some(m) => {
            return Err(EcsError::invalid(format!(
                "expiresInMinutes must be between 1 and {MAX_PROTECTION_MINUTES}, but was {m}."
            )));
        }
    };
    active_cluster(svc, ctx, &cluster).await?;
    let now = ctx.now;
    let until = enabled.then(|| now + minutes.unsigned_abs() * 60_000);
    let mut protected = Vec::new();
    let mut failures = Vec::new();
    for r in &refs {
        let Some(current) = tasks::get(svc, ctx, &cluster, r).await? else {
            failures.push(missing(ctx, &cluster, r));
            continue;
        };
        if let Some(f) = refusal(&current.value, ctx) {
            failures.push(f);
            continue;
        }
        let changed = tasks::transition(svc, ctx, &cluster, r, move |t| {
            if t.service_name.is_none() || t.desired_status == TaskStatus::Stopped {
                return Err(EcsError::invalid(
                    "the task left its service while protection was being set",
                ));
            }
            t.protected_until = until;
            Ok(())
        })
        .await;
        match changed {
            Ok(t) => protected.push(protected_task(&t, ctx, now)),
            // Stopped between the read and the change.
            Err(EcsError::InvalidParameter(_)) => failures.push(failure(
                &task_arn(ctx, &current.value),
                "TASK_NOT_VALID",
                Some(TASK_STOPPING),
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(json!({"protectedTasks": protected, "failures": failures}))
}

pub(super) async fn get(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: GetTaskProtectionRequest = parse(body)?;
    let cluster = required_cluster(req.cluster.as_deref())?;
    active_cluster(svc, ctx, &cluster).await?;
    let now = ctx.now;
    let mut protected = Vec::new();
    let mut failures = Vec::new();
    match req.tasks {
        Some(refs) if !refs.is_empty() => {
            check_len("tasks", &refs, 100)?;
            for r in &refs {
                match tasks::get(svc, ctx, &cluster, r).await? {
                    None => failures.push(missing(ctx, &cluster, r)),
                    Some(t) if t.value.service_name.is_none() => failures.push(failure(
                        &task_arn(ctx, &t.value),
                        "TASK_NOT_VALID",
                        Some(NOT_A_SERVICE_TASK),
                    )),
                    Some(t) => protected.push(protected_task(&t.value, ctx, now)),
                }
            }
        }
        // No list: the cluster's service tasks that are protected now.
        _ => {
            use gantry_store::StoreExt;
            let all = svc
                .store
                .scan_all_typed::<Task>(&crate::keys::tasks(&ctx.region, &cluster))
                .await?;
            for t in all {
                let t = t.value;
                if t.service_name.is_some()
                    && t.desired_status != TaskStatus::Stopped
                    && t.is_protected(now)
                {
                    protected.push(protected_task(&t, ctx, now));
                }
            }
        }
    }
    Ok(json!({"protectedTasks": protected, "failures": failures}))
}
