//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.

use std::collections::BTreeMap;

use gantry_domain::Arn;
use gantry_domain::tags::validate_tags;
use gantry_domain::task_definition::{
    TaskDefinition, TaskDefinitionRef, TaskDefinitionStatus, check_host_access,
    normalize_for_registration, parse_task_definition_ref,
};
use gantry_store::{StoreExt, Txn, Versioned, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::wire::{
    check_len, commit_with_retry, failure, include_tags, max_results, paginate, parse, secs,
    with_token,
};
use crate::{EcsError, EcsService, keys};
use gantry_front::RequestContext;

/// Per-family bookkeeping: the last revision handed out (revisions never repeat).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FamilyRecord {
    latest_revision: u32,
}

/// The wire form of a task definition (tags travel beside it, not inside).
pub(super) fn to_wire(td: &TaskDefinition, ctx: &RequestContext) -> Value {
    let mut v = serde_json::to_value(td).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.remove("tags");
        obj.insert(
            "taskDefinitionArn".into(),
            json!(
                Arn::task_definition(&ctx.region, &ctx.account_id, &td.family, td.revision)
                    .to_string()
            ),
        );
        obj.insert("registeredAt".into(), secs(td.registered_at));
        // ECS reports the default network mode of a Linux task definition that named none.
        let windows = td
            .other
            .get("runtimePlatform")
            .and_then(|p| p.get("operatingSystemFamily"))
            .and_then(Value::as_str)
            .is_some_and(|f| f.starts_with("WINDOWS"));
        if td.network_mode.is_none() && !windows {
            obj.insert("networkMode".into(), json!("bridge"));
        }
        if let Some(d) = td.deregistered_at {
            obj.insert("deregisteredAt".into(), secs(d));
        }
        if let Some(d) = td.delete_requested_at {
            obj.insert("deleteRequestedAt".into(), secs(d));
        }
    }
    v
}

#[derive(Deserialize)]
struct RegisterRequest {
    #[serde(flatten)]
    td: TaskDefinition,
}

pub(super) async fn register(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: RegisterRequest = parse(body)?;
    let mut td = req.td;
    if td.family.is_empty() {
        return Err(EcsError::client("Family must not be empty."));
    }
    validate_tags(&td.tags)?;
    normalize_for_registration(&mut td)?;
    check_host_access(&td, &svc.host_access)?;
    td.status = TaskDefinitionStatus::Active;
    td.registered_at = ctx.now;
    td.registered_by = ctx.caller_arn();
    td.deregistered_at = None;
    td.delete_requested_at = None;

    let family_key = keys::family(&ctx.region, &td.family);
    let _guard = svc.locks.lock(&family_key).await;
    let registered = commit_with_retry(svc.store.as_ref(), || async {
        let fam = svc.store.get_typed::<FamilyRecord>(&family_key).await?;
        let (rev, mut record) = match fam {
            Some(Versioned { value, revision }) => (revision, value),
            None => (0, FamilyRecord::default()),
        };
        record.latest_revision += 1;
        let mut td = td.clone();
        td.revision = record.latest_revision;
        let td_key = keys::task_definition(&ctx.region, &td.family, td.revision);
        let txn = Txn::new()
            .require_revision(&family_key, rev)
            .put(&family_key, encode(&family_key, &record)?)
            .require_absent(&td_key)
            .put(&td_key, encode(&td_key, &td)?);
        Ok((txn, td))
    })
    .await?;
    Ok(json!({"taskDefinition": to_wire(&registered, ctx), "tags": registered.tags}))
}

/// Finds the revision a reference names: `family` means its latest ACTIVE revision.
pub(super) async fn resolve(
    svc: &EcsService,
    ctx: &RequestContext,
    reference: &str,
) -> Result<Option<Versioned<TaskDefinition>>, EcsError> {
    match parse_task_definition_ref(reference)? {
        TaskDefinitionRef::Revision(family, rev) => Ok(svc
            .store
            .get_typed::<TaskDefinition>(&keys::task_definition(&ctx.region, &family, rev))
            .await?),
        TaskDefinitionRef::Family(family) => {
            let all = svc
                .store
                .scan_all_typed::<TaskDefinition>(&keys::task_definitions_of(&ctx.region, &family))
                .await?;
            Ok(all
                .into_iter()
                .rev()
                .find(|t| t.value.status == TaskDefinitionStatus::Active))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    task_definition: Option<String>,
    #[serde(default)]
    include: Vec<String>,
}

pub(super) async fn describe(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DescribeRequest = parse(body)?;
    let Some(reference) = req.task_definition.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("taskDefinition is required."));
    };
    let with_tags = include_tags(&req.include)?;
    let td = resolve(svc, ctx, reference)
        .await?
        .ok_or_else(|| EcsError::client("Unable to describe task definition."))?;
    let mut out = json!({"taskDefinition": to_wire(&td.value, ctx)});
    if with_tags {
        out["tags"] = json!(td.value.tags);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn list(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListRequest = parse(body)?;
    let limit = max_results(req.max_results, 100, 100)?;
    let status = match req.status.as_deref() {
        None => TaskDefinitionStatus::Active,
        Some(s) => TaskDefinitionStatus::parse(s).ok_or_else(|| {
            EcsError::invalid(format!(
                "Invalid status '{s}'. Valid values: ACTIVE, INACTIVE, DELETE_IN_PROGRESS."
            ))
        })?,
    };
    let descending = match req.sort.as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(s) => {
            return Err(EcsError::invalid(format!(
                "Invalid sort '{s}'. Valid values: ASC, DESC."
            )));
        }
    };
    let prefix = match req.family_prefix.as_deref() {
        // familyPrefix is the full family name.
        Some(f) if !f.is_empty() => keys::task_definitions_of(&ctx.region, f),
        _ => keys::task_definitions(&ctx.region),
    };
    let all = svc.store.scan_all_typed::<TaskDefinition>(&prefix).await?;
    let mut items: Vec<(String, String)> = all
        .into_iter()
        .filter(|t| t.value.status == status)
        .map(|t| {
            let arn = Arn::task_definition(
                &ctx.region,
                &ctx.account_id,
                &t.value.family,
                t.value.revision,
            )
            .to_string();
            // Sort key: family, then revision as a fixed-width number.
            (
                format!("{}\u{0}{:010}", t.value.family, t.value.revision),
                arn,
            )
        })
        .collect();
    items.sort();
    if descending {
        items.reverse();
        // Keep sort keys ascending for the page cursor by inverting them.
        items = items.into_iter().map(|(k, v)| (invert(&k), v)).collect();
    }
    let (page, next) = paginate(items, req.next_token.as_deref(), limit)?;
    Ok(with_token(json!({"taskDefinitionArns": page}), next))
}

/// Maps a key to one whose ascending order is the original's descending order.
fn invert(key: &str) -> String {
    key.chars()
        .map(|c| char::from_u32(0x10FFFF - c as u32).unwrap_or(c))
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListFamiliesRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn list_families(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListFamiliesRequest = parse(body)?;
    let limit = max_results(req.max_results, 100, 100)?;
    let want = req.status.as_deref().unwrap_or("ALL");
    if !matches!(want, "ACTIVE" | "INACTIVE" | "ALL") {
        return Err(EcsError::invalid(format!(
            "Invalid status '{want}'. Valid values: ACTIVE, INACTIVE, ALL."
        )));
    }
    let prefix = keys::task_definitions(&ctx.region);
    let scan_prefix = format!("{prefix}{}", req.family_prefix.as_deref().unwrap_or(""));
    let all = svc
        .store
        .scan_all_typed::<TaskDefinition>(&scan_prefix)
        .await?;
    let mut has_active: BTreeMap<String, bool> = BTreeMap::new();
    for t in all {
        if t.value.status == TaskDefinitionStatus::DeleteInProgress {
            continue;
        }
        let e = has_active.entry(t.value.family.clone()).or_insert(false);
        *e |= t.value.status == TaskDefinitionStatus::Active;
    }
    let items: Vec<(String, String)> = has_active
        .into_iter()
        .filter(|(_, active)| match want {
            "ACTIVE" => *active,
            "INACTIVE" => !*active,
            _ => true,
        })
        .map(|(f, _)| (f.clone(), f))
        .collect();
    let (page, next) = paginate(items, req.next_token.as_deref(), limit)?;
    Ok(with_token(json!({"families": page}), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterRequest {
    task_definition: Option<String>,
}

fn revision_ref(reference: &str) -> Result<(String, u32), EcsError> {
    match parse_task_definition_ref(reference)? {
        TaskDefinitionRef::Revision(f, r) => Ok((f, r)),
        TaskDefinitionRef::Family(_) => Err(EcsError::client(format!(
            "Invalid revision number. Number: {reference}. Use family:revision or the full ARN."
        ))),
    }
}

pub(super) async fn deregister(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DeregisterRequest = parse(body)?;
    let Some(reference) = req.task_definition.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("taskDefinition is required."));
    };
    let (family, rev) = revision_ref(reference)?;
    let key = keys::task_definition(&ctx.region, &family, rev);
    let td = commit_with_retry(svc.store.as_ref(), || async {
        let Some(cur) = svc.store.get_typed::<TaskDefinition>(&key).await? else {
            return Err(EcsError::client(
                "The specified task definition does not exist.",
            ));
        };
        if cur.value.status != TaskDefinitionStatus::Active {
            return Ok((Txn::new(), cur.value));
        }
        let mut td = cur.value.clone();
        td.status = TaskDefinitionStatus::Inactive;
        td.deregistered_at = Some(ctx.now);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &td)?);
        Ok((txn, td))
    })
    .await?;
    Ok(json!({"taskDefinition": to_wire(&td, ctx)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRequest {
    #[serde(default)]
    task_definitions: Vec<String>,
}

pub(super) async fn delete(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DeleteRequest = parse(body)?;
    check_len("taskDefinitions", &req.task_definitions, 10)?;
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for reference in &req.task_definitions {
        let (family, rev) = match revision_ref(reference) {
            Ok(x) => x,
            Err(_) => {
                failures.push(failure(
                    reference,
                    "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.",
                    None,
                ));
                continue;
            }
        };
        let key = keys::task_definition(&ctx.region, &family, rev);
        let outcome = commit_with_retry(svc.store.as_ref(), || async {
            let Some(cur) = svc.store.get_typed::<TaskDefinition>(&key).await? else {
                return Ok((Txn::new(), Err("The specified task definition does not exist. Specify a valid account, family, revision and try again.")));
            };
            match cur.value.status {
                TaskDefinitionStatus::Active => Ok((
                    Txn::new(),
                    Err("The specified task definition is still in ACTIVE status. Please deregister the target and try again."),
                )),
                TaskDefinitionStatus::DeleteInProgress => Ok((Txn::new(), Ok(cur.value))),
                TaskDefinitionStatus::Inactive => {
                    let mut td = cur.value.clone();
                    td.status = TaskDefinitionStatus::DeleteInProgress;
                    td.delete_requested_at = Some(ctx.now);
                    let txn =
                        Txn::new().require_revision(&key, cur.revision).put(&key, encode(&key, &td)?);
                    Ok((txn, Ok(td)))
                }
            }
        })
        .await?;
        match outcome {
            Ok(td) => deleted.push(to_wire(&td, ctx)),
            // ECS names the reference as given and puts its explanation in `reason`.
            Err(reason) => failures.push(failure(reference, reason, None)),
        }
    }
    Ok(json!({"taskDefinitions": deleted, "failures": failures}))
}

/// Reads one revision.
pub(super) async fn get_revision(
    svc: &EcsService,
    ctx: &RequestContext,
    family: &str,
    revision: u32,
) -> Result<Option<TaskDefinition>, EcsError> {
    Ok(svc
        .store
        .get_typed::<TaskDefinition>(&keys::task_definition(&ctx.region, family, revision))
        .await?
        .map(|v| v.value))
}
