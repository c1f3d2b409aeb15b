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
    // A stopped task has nothing left to protect.
    let on = t.is_protected(now) && t.desired_status != TaskStatus::Stopped;
    let mut v = json!({
        "taskArn": task_arn(ctx, t),
        "protectionEnabled": on,
    });
    if let Some(until) = t.protected_until.filter(|_| on) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gantry_domain::task::Task;
    use gantry_front::{RandomIds, RequestContext};
    use gantry_store::{MemoryStore, Store, StoreExt, Txn, encode};
    use serde_json::{Value, json};

    use crate::{EcsOperation, EcsService, keys};

    const NOW: u64 = 1_700_000_000_000;

    fn ctx(now: u64) -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            access_key_id: "AKID".into(),
            now,
            caller: None,
        }
    }

    async fn call(svc: &EcsService, op: EcsOperation, now: u64, body: Value) -> Value {
        svc.dispatch(op, body.to_string().as_bytes(), &ctx(now))
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    /// A cluster with one instance and one running standalone task; returns the task's id.
    async fn one_task(svc: &EcsService) -> String {
        call(
            svc,
            EcsOperation::CreateCluster,
            NOW,
            json!({"clusterName": "c"}),
        )
        .await;
        call(
            svc,
            EcsOperation::RegisterContainerInstance,
            NOW,
            json!({"cluster": "c", "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]}),
        )
        .await;
        call(
            svc,
            EcsOperation::RegisterTaskDefinition,
            NOW,
            json!({"family": "w", "containerDefinitions": [
                {"name": "m", "image": "busybox", "memory": 16}]}),
        )
        .await;
        let out = call(
            svc,
            EcsOperation::RunTask,
            NOW,
            json!({"cluster": "c", "taskDefinition": "w"}),
        )
        .await;
        let arn = out["tasks"][0]["taskArn"].as_str().unwrap();
        arn.rsplit('/').next().unwrap().to_owned()
    }

    #[tokio::test]
    async fn only_service_tasks_are_protected_and_protection_expires() {
        let store = Arc::new(MemoryStore::new());
        let svc = EcsService::new(store.clone(), Arc::new(RandomIds));
        let id = one_task(&svc).await;
        let update = |minutes: Option<i64>| {
            let mut b = json!({"cluster": "c", "tasks": [id.clone(), "f".repeat(32)],
                "protectionEnabled": true});
            if let Some(m) = minutes {
                b["expiresInMinutes"] = json!(m);
            }
            b
        };
        // Standalone: TASK_NOT_VALID; unknown: MISSING.
        let out = call(&svc, EcsOperation::UpdateTaskProtection, NOW, update(None)).await;
        let reasons: Vec<&str> = out["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["TASK_NOT_VALID", "MISSING"]);
        assert_eq!(out["protectedTasks"], json!([]));

        // The same task as a service's.
        let key = keys::task("us-east-1", "c", &id);
        let mut t = store.get_typed::<Task>(&key).await.unwrap().unwrap();
        t.value.service_name = Some("svc".into());
        let txn = Txn::new()
            .require_revision(&key, t.revision)
            .put(&key, encode(&key, &t.value).unwrap());
        assert!(store.commit(txn).await.unwrap().is_committed());

        let out = call(&svc, EcsOperation::UpdateTaskProtection, NOW, update(None)).await;
        let p = &out["protectedTasks"][0];
        assert_eq!(p["protectionEnabled"], true);
        // The default: 120 minutes.
        assert_eq!(
            p["expirationDate"].as_f64().unwrap(),
            (NOW + 120 * 60_000) as f64 / 1000.0
        );
        let out = call(
            &svc,
            EcsOperation::UpdateTaskProtection,
            NOW,
            update(Some(1)),
        )
        .await;
        assert_eq!(
            out["protectedTasks"][0]["expirationDate"].as_f64().unwrap(),
            (NOW + 60_000) as f64 / 1000.0
        );
        let get = json!({"cluster": "c", "tasks": [id.clone()]});
        let at = |now| call(&svc, EcsOperation::GetTaskProtection, now, get.clone());
        assert_eq!(
            at(NOW + 59_999).await["protectedTasks"][0]["protectionEnabled"],
            true
        );
        let expired = at(NOW + 60_000).await;
        assert_eq!(expired["protectedTasks"][0]["protectionEnabled"], false);
        assert!(expired["protectedTasks"][0].get("expirationDate").is_none());

        // Out of range, too many tasks, no cluster.
        for bad in [
            update(Some(0)),
            update(Some(2881)),
            json!({"cluster": "c", "tasks": vec![id.clone(); 11], "protectionEnabled": true}),
            json!({"tasks": [id.clone()], "protectionEnabled": true}),
        ] {
            let e = svc
                .dispatch(
                    EcsOperation::UpdateTaskProtection,
                    bad.to_string().as_bytes(),
                    &ctx(NOW),
                )
                .await
                .unwrap_err();
            assert_eq!(e.aws_code(), "InvalidParameterException", "{bad}");
        }
    }
}
