//! CreateLogGroup, DeleteLogGroup, DescribeLogGroups, PutRetentionPolicy, DeleteRetentionPolicy.

use std::collections::BTreeMap;

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{LogGroup, LogStream, RETENTION_DAYS};
use crate::tags::check_tags;
use crate::wire::{
    check_group_name, commit_with_retry, group_arn, group_name_from_arn, limit, load_group,
    paginate, parse, required, with_token,
};
use crate::{LogsError, LogsService, keys};

/// Deletes of leftover event batches per transaction after a group or stream is gone.
pub(crate) const DELETE_CHUNK: usize = 64;

const CLASSES: &[&str] = &["STANDARD", "INFREQUENT_ACCESS", "DELIVERY"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateLogGroupRequest {
    log_group_name: Option<String>,
    kms_key_id: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    log_group_class: Option<String>,
}

pub(crate) async fn create(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: CreateLogGroupRequest = parse(body)?;
    let name = required(req.log_group_name, "logGroupName")?;
    check_group_name(&name)?;
    let tags = req.tags.unwrap_or_default();
    check_tags(&tags)?;
    let class = req.log_group_class.unwrap_or_else(|| "STANDARD".to_owned());
    if !CLASSES.contains(&class.as_str()) {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{class}' at 'logGroupClass' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, INFREQUENT_ACCESS, DELIVERY]"
        )));
    }
    let key = keys::group(&ctx.region, &name);
    let group = LogGroup {
        name: name.clone(),
        creation_time: ctx.now,
        incarnation: ctx.request_id.replace('-', ""),
        retention_in_days: None,
        tags,
        kms_key_id: req.kms_key_id,
        log_group_class: class,
        deletion_protection: false,
        next_stream_num: 1,
        metric_filter_count: 0,
    };
    let txn = Txn::new()
        .require_absent(&key)
        .put(&key, encode(&key, &group)?);
    if !svc.store.commit(txn).await?.is_committed() {
        return Err(LogsError::ResourceAlreadyExists(
            "The specified log group already exists".to_owned(),
        ));
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupNameRequest {
    log_group_name: Option<String>,
}

fn group_name(body: &[u8]) -> Result<String, LogsError> {
    let req: GroupNameRequest = parse(body)?;
    let name = required(req.log_group_name, "logGroupName")?;
    check_group_name(&name)?;
    Ok(name)
}

pub(crate) async fn delete(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let name = group_name(body)?;
    let key = keys::group(&ctx.region, &name);
    let incarnation = commit_with_retry(svc.store.as_ref(), || async {
        let group = load_group(svc, ctx, &name).await?;
        let streams = svc
            .store
            .scan_all_typed::<LogStream>(&keys::streams(&ctx.region, &name))
            .await?;
        let mut txn = Txn::new()
            .require_revision(&key, group.revision)
            .delete(&key);
        for s in streams {
            txn = txn.delete(keys::stream(&ctx.region, &name, &s.value.name));
        }
        for k in crate::metric_filters::keys_of_group(svc, &ctx.region, &name).await? {
            txn = txn.delete(k);
        }
        txn = txn.delete(crate::resource_policies::group_policy_key(
            &ctx.region,
            &name,
        ));
        Ok((txn, group.value.incarnation))
    })
    .await?;
    // The batches are unreachable now (their incarnation is gone); removing them is cleanup.
    let prefix = keys::incarnation_batches(&ctx.region, &incarnation);
    delete_prefix(svc, &prefix).await?;
    Ok(json!({}))
}

/// Deletes every record under `prefix`, a chunk per transaction.
pub(crate) async fn delete_prefix(svc: &LogsService, prefix: &str) -> Result<(), LogsError> {
    loop {
        let page = svc.store.scan(prefix, None, DELETE_CHUNK).await?;
        if page.records.is_empty() {
            return Ok(());
        }
        let mut txn = Txn::new();
        for r in &page.records {
            txn = txn.delete(&r.key);
        }
        svc.store.commit(txn).await?;
        if page.next.is_none() {
            return Ok(());
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogGroupsRequest {
    log_group_name_prefix: Option<String>,
    log_group_name_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
    log_group_class: Option<String>,
    log_group_identifiers: Option<Vec<String>>,
}

/// The wire shape of a log group.
pub(crate) fn to_wire(ctx: &RequestContext, g: &LogGroup, stored_bytes: u64) -> Value {
    let arn = group_arn(ctx, &g.name);
    let mut v = json!({
        "logGroupName": g.name,
        "creationTime": g.creation_time,
        "metricFilterCount": g.metric_filter_count,
        "arn": format!("{arn}:*"),
        "logGroupArn": arn,
        "storedBytes": stored_bytes,
        "logGroupClass": g.log_group_class,
    });
    if let Some(d) = g.retention_in_days {
        v["retentionInDays"] = json!(d);
    }
    if let Some(k) = &g.kms_key_id {
        v["kmsKeyId"] = json!(k);
    }
    v
}

pub(crate) async fn describe(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DescribeLogGroupsRequest = parse(body)?;
    let limit = limit(req.limit, 50, 50)?;
    if req.log_group_name_prefix.is_some() && req.log_group_name_pattern.is_some() {
        return Err(LogsError::invalid(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.",
        ));
    }
    if let Some(p) = &req.log_group_name_prefix {
        check_group_name(p)?;
    }
    let pattern = req.log_group_name_pattern.map(|p| p.to_lowercase());
    let identifiers: Option<Vec<String>> = req.log_group_identifiers.map(|ids| {
        ids.iter()
            .map(|id| {
                group_name_from_arn(ctx, id)
                    .map(str::to_owned)
                    .unwrap_or_else(|| id.clone())
            })
            .collect()
    });
    let groups = svc
        .store
        .scan_all_typed::<LogGroup>(&keys::groups(&ctx.region))
        .await?;
    let items: Vec<(String, LogGroup)> = groups
        .into_iter()
        .map(|g| g.value)
        .filter(|g| {
            req.log_group_name_prefix
                .as_ref()
                .is_none_or(|p| g.name.starts_with(p.as_str()))
                && pattern
                    .as_ref()
                    .is_none_or(|p| g.name.to_lowercase().contains(p.as_str()))
                && req
                    .log_group_class
                    .as_ref()
                    .is_none_or(|c| &g.log_group_class == c)
                && identifiers.as_ref().is_none_or(|ids| ids.contains(&g.name))
        })
        .map(|g| (g.name.clone(), g))
        .collect();
    let (page, next) = paginate(items, req.next_token.as_deref(), limit, false)?;
    let mut out = Vec::with_capacity(page.len());
    for g in &page {
        let bytes = stored_bytes(svc, ctx, &g.name).await?;
        out.push(to_wire(ctx, g, bytes));
    }
    Ok(with_token(json!({"logGroups": out}), next))
}

async fn stored_bytes(
    svc: &LogsService,
    ctx: &RequestContext,
    group: &str,
) -> Result<u64, LogsError> {
    let streams = svc
        .store
        .scan_all_typed::<LogStream>(&keys::streams(&ctx.region, group))
        .await?;
    Ok(streams.iter().map(|s| s.value.stored_bytes).sum())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRetentionPolicyRequest {
    log_group_name: Option<String>,
    retention_in_days: Option<i64>,
}

pub(crate) async fn put_retention(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: PutRetentionPolicyRequest = parse(body)?;
    let name = required(req.log_group_name, "logGroupName")?;
    check_group_name(&name)?;
    let days = required(req.retention_in_days, "retentionInDays")?;
    let days = u32::try_from(days)
        .ok()
        .filter(|d| RETENTION_DAYS.contains(d))
        .ok_or_else(|| {
            let valid: Vec<String> = RETENTION_DAYS.iter().map(u32::to_string).collect();
            LogsError::invalid(format!(
                "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                valid.join(", ")
            ))
        })?;
    set_retention(svc, ctx, &name, Some(days)).await
}

pub(crate) async fn delete_retention(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let name = group_name(body)?;
    set_retention(svc, ctx, &name, None).await
}

async fn set_retention(
    svc: &LogsService,
    ctx: &RequestContext,
    name: &str,
    days: Option<u32>,
) -> Result<Value, LogsError> {
    let key = keys::group(&ctx.region, name);
    commit_with_retry(svc.store.as_ref(), || async {
        let mut group = load_group(svc, ctx, name).await?;
        group.value.retention_in_days = days;
        let txn = Txn::new()
            .require_revision(&key, group.revision)
            .put(&key, encode(&key, &group.value)?);
        Ok((txn, ()))
    })
    .await?;
    Ok(json!({}))
}
