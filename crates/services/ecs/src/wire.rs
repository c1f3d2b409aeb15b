//! Wire helpers shared by the ECS operations: body parsing, timestamps, pagination, failures and
//! the compare-and-swap retry loop.

use gantry_aws_proto::{json, pagination};
use gantry_domain::arn::cluster_name_from_ref;
use gantry_domain::cluster::{Cluster, ClusterStatus, DEFAULT_CLUSTER};
use gantry_domain::service::Service;
use gantry_store::{Store, StoreExt, Txn, TxnOutcome, Versioned};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{EcsError, EcsService, keys};
use gantry_front::RequestContext;

/// How often a compare-and-swap write is retried before giving up.
pub(crate) const MAX_CAS_ATTEMPTS: usize = 64;

/// Request members (top level, and in RunTask's `overrides`) that ECS treats as absent when
/// they are the empty string.
/// Deployment tools send `""` for "no role" (ecs-deploy always, Ansible's `ecs_taskdefinition`
/// by default), and ECS registers such a task definition without a role: an empty role must not
/// add the task-role or execution-role requirements, nor reach the agent. The other optional
/// strings were audited: `cluster` (the default cluster), `nextToken` (the first page) and
/// RunTask's `clientToken` (no idempotency) already read `""` as absent where they are used;
/// CreateService's `role` and `clientToken` (Ansible's `ecs_service` sends `""`) are not used;
/// enumerations (`networkMode`, `launchType`, `pidMode`, ...) and sizes (`cpu`, `memory`) refuse
/// `""` as an invalid value, naming it.
pub const EMPTY_MEANS_ABSENT: &[&str] = &["taskRoleArn", "executionRoleArn"];

/// Decodes an ECS request body; the members of [`EMPTY_MEANS_ABSENT`] given as `""` are dropped
/// first, so every operation reads them as absent.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, EcsError> {
    if !body.windows(2).any(|w| w == b"\"\"") {
        return Ok(json::parse_body(body)?);
    }
    let mut value: Value = json::parse_body(body)?;
    let strip = |obj: &mut serde_json::Map<String, Value>| {
        obj.retain(|k, v| !(EMPTY_MEANS_ABSENT.contains(&k.as_str()) && v.as_str() == Some("")));
    };
    if let Some(obj) = value.as_object_mut() {
        strip(obj);
        // RunTask/StartTask `overrides` carry the same two roles.
        if let Some(o) = obj.get_mut("overrides").and_then(Value::as_object_mut) {
            strip(o);
        }
    }
    let body = serde_json::to_vec(&value).map_err(|e| EcsError::invalid(e.to_string()))?;
    Ok(json::parse_body(&body)?)
}

/// Epoch milliseconds as the JSON protocol's epoch seconds.
pub fn secs(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// One `failures[]` entry.
pub fn failure(arn: &str, reason: &str, detail: Option<&str>) -> Value {
    let mut v = json!({"reason": reason});
    if !arn.is_empty() {
        v["arn"] = json!(arn);
    }
    if let Some(d) = detail {
        v["detail"] = json!(d);
    }
    v
}

/// A `MISSING` failure for a reference that was not found: the reference itself when it is an
/// ARN, else the ARN `arn_of` builds from the id or name.
pub fn missing(reference: &str, arn_of: impl FnOnce(&str) -> gantry_domain::Arn) -> Value {
    if reference.starts_with("arn:") {
        failure(reference, "MISSING", None)
    } else {
        failure(&arn_of(reference).to_string(), "MISSING", None)
    }
}

/// The cluster a request names (default `default`).
pub fn cluster_name(reference: Option<&str>) -> Result<String, EcsError> {
    match reference {
        None | Some("") => Ok(DEFAULT_CLUSTER.to_owned()),
        Some(r) => cluster_name_from_ref(r)
            .map_err(|_| EcsError::invalid(format!("Invalid cluster identifier: {r}"))),
    }
}

/// ECS Exec (`ExecuteCommand`) is not served, so a request that turns it on is refused rather
/// than echoed back as if it worked.
pub fn refuse_execute_command(enable: Option<bool>) -> Result<(), EcsError> {
    if enable == Some(true) {
        return Err(EcsError::invalid(
            "enableExecuteCommand=true is not supported: ECS Exec (ExecuteCommand) is not served by this endpoint.",
        ));
    }
    Ok(())
}

/// Reads an ACTIVE cluster or fails with `ClusterNotFoundException`.
pub async fn active_cluster(
    svc: &EcsService,
    ctx: &RequestContext,
    name: &str,
) -> Result<Versioned<Cluster>, EcsError> {
    match svc
        .store
        .get_typed::<Cluster>(&keys::cluster(&ctx.region, name))
        .await?
    {
        Some(c) if c.value.status == ClusterStatus::Active => Ok(c),
        _ => Err(EcsError::ClusterNotFound),
    }
}

/// Checks that a list member holds 1 to `max` entries, as ECS does.
pub fn check_len<T>(member: &str, items: &[T], max: usize) -> Result<(), EcsError> {
    if items.is_empty() || items.len() > max {
        return Err(EcsError::invalid(format!(
            "{member} must hold between 1 and {max} entries."
        )));
    }
    Ok(())
}

/// Reads an `include` list that may only name `TAGS`; true when it does.
pub fn include_tags(include: &[String]) -> Result<bool, EcsError> {
    for i in include {
        if i != "TAGS" {
            return Err(EcsError::invalid(format!(
                "Invalid include value '{i}'. Valid values: TAGS."
            )));
        }
    }
    Ok(!include.is_empty())
}

/// Checks `maxResults` against `[1, max]`.
pub fn max_results(v: Option<i64>, max: i64, default: i64) -> Result<usize, EcsError> {
    match v {
        None => Ok(default as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(EcsError::invalid(format!(
            "maxResults must be between 1 and {max}, but was {n}."
        ))),
    }
}

/// Slices sorted `(sort_key, item)` pairs into one page after `next_token`.
pub fn paginate<T>(
    mut items: Vec<(String, T)>,
    next_token: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    let start = match next_token {
        None | Some("") => 0,
        Some(tok) => {
            let after = pagination::decode_token(tok)
                .ok_or_else(|| EcsError::invalid("Invalid nextToken.".to_owned()))?;
            items.partition_point(|(k, _)| k.as_str() <= after.as_str())
        }
    };
    let rest: Vec<(String, T)> = items.drain(start..).collect();
    let more = rest.len() > limit;
    let page: Vec<(String, T)> = rest.into_iter().take(limit).collect();
    let next = if more {
        page.last().map(|(k, _)| pagination::encode_token(k))
    } else {
        None
    };
    Ok((page.into_iter().map(|(_, v)| v).collect(), next))
}

/// Adds `nextToken` to a response when there is one.
pub fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        v["nextToken"] = json!(t);
    }
    v
}

/// Commits `build(...)` until it succeeds; `build` re-reads what it needs each attempt.
pub async fn commit_with_retry<F, Fut, R>(store: &dyn Store, mut build: F) -> Result<R, EcsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Txn, R), EcsError>>,
{
    let mut last_key = String::new();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (txn, result) = build().await?;
        if txn.is_empty() {
            return Ok(result);
        }
        match store.commit(txn).await? {
            TxnOutcome::Committed { .. } => return Ok(result),
            TxnOutcome::Conflict { key } => last_key = key,
        }
    }
    Err(EcsError::Contention(last_key))
}

/// Reads a service by name or ARN.
pub async fn get_service(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    reference: &str,
) -> Result<Option<Versioned<Service>>, EcsError> {
    let name = if reference.starts_with("arn:") {
        reference.rsplit('/').next().unwrap_or(reference)
    } else {
        reference
    };
    Ok(svc
        .store
        .get_typed(&keys::service(&ctx.region, cluster, name))
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_tokens_to_the_end() {
        let items: Vec<(String, u32)> = (0..7).map(|i| (format!("k{i}"), i)).collect();
        let (p1, t1) = paginate(items.clone(), None, 3).unwrap();
        assert_eq!(p1, vec![0, 1, 2]);
        let (p2, t2) = paginate(items.clone(), t1.as_deref(), 3).unwrap();
        assert_eq!(p2, vec![3, 4, 5]);
        let (p3, t3) = paginate(items.clone(), t2.as_deref(), 3).unwrap();
        assert_eq!(p3, vec![6]);
        assert!(t3.is_none());
        assert!(paginate(items, Some("!!not-a-token!!"), 3).is_err());
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Roles {
        task_role_arn: Option<String>,
        execution_role_arn: Option<String>,
        family: Option<String>,
    }

    #[test]
    fn empty_roles_read_as_absent() {
        let r: Roles = parse(br#"{"taskRoleArn":"","executionRoleArn":"","family":""}"#).unwrap();
        assert_eq!(r.task_role_arn, None);
        assert_eq!(r.execution_role_arn, None);
        assert_eq!(
            r.family.as_deref(),
            Some(""),
            "other members keep their empty value"
        );
        let r: Roles = parse(br#"{"taskRoleArn":"arn:aws:iam::1:role/r"}"#).unwrap();
        assert_eq!(r.task_role_arn.as_deref(), Some("arn:aws:iam::1:role/r"));
        assert!(parse::<Roles>(br#"{"taskRoleArn":"" "#).is_err());
        let v: Value =
            parse(br#"{"overrides":{"taskRoleArn":"","executionRoleArn":"","cpu":""}}"#).unwrap();
        assert_eq!(v["overrides"], json!({"cpu": ""}));
    }

    #[test]
    fn max_results_is_bounded() {
        assert_eq!(max_results(None, 100, 100).unwrap(), 100);
        assert!(max_results(Some(0), 100, 100).is_err());
        assert!(max_results(Some(101), 100, 100).is_err());
    }
}
