//! TagResource, UntagResource, ListTagsForResource and the deprecated TagLogGroup,
//! UntagLogGroup and ListTagsLogGroup. Only log groups carry tags.

use std::collections::BTreeMap;

use gantry_front::RequestContext;
use gantry_store::{Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{
    check_group_name, commit_with_retry, group_name_from_arn, load_group, parse, required,
};
use crate::{LogsError, LogsService, keys};

/// Most tags one log group may carry.
const MAX_TAGS: usize = 50;

/// Checks tag keys (1..=128 characters, not starting with `aws:`) and values (at most 256).
pub(crate) fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), LogsError> {
    if tags.len() > MAX_TAGS {
        return Err(LogsError::TooManyTags(format!(
            "A resource can have no more than {MAX_TAGS} tags."
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(LogsError::invalid(format!(
                "Tag key '{k}' must be between 1 and 128 characters."
            )));
        }
        if k.starts_with("aws:") {
            return Err(LogsError::invalid(format!(
                "Tag key '{k}' uses the reserved prefix 'aws:'."
            )));
        }
        if v.chars().count() > 256 {
            return Err(LogsError::invalid(format!(
                "The value of tag '{k}' must be at most 256 characters."
            )));
        }
    }
    Ok(())
}

fn group_of_arn(ctx: &RequestContext, arn: &str) -> Result<String, LogsError> {
    group_name_from_arn(ctx, arn)
        .map(str::to_owned)
        .ok_or_else(|| {
            LogsError::ResourceNotFound(format!("The specified resource {arn} does not exist."))
        })
}

/// Applies `change` to the tags of group `name`.
async fn update_tags(
    svc: &LogsService,
    ctx: &RequestContext,
    name: &str,
    change: impl Fn(&mut BTreeMap<String, String>),
) -> Result<(), LogsError> {
    let key = keys::group(&ctx.region, name);
    commit_with_retry(svc.store.as_ref(), || async {
        let mut group = load_group(svc, ctx, name).await?;
        change(&mut group.value.tags);
        if group.value.tags.len() > MAX_TAGS {
            return Err(LogsError::TooManyTags(format!(
                "A resource can have no more than {MAX_TAGS} tags."
            )));
        }
        let txn = Txn::new()
            .require_revision(&key, group.revision)
            .put(&key, encode(&key, &group.value)?);
        Ok((txn, ()))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceRequest {
    resource_arn: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

pub(crate) async fn tag_resource(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: TagResourceRequest = parse(body)?;
    let arn = required(req.resource_arn, "resourceArn")?;
    let tags = required(req.tags, "tags")?;
    check_tags(&tags)?;
    let name = group_of_arn(ctx, &arn)?;
    update_tags(svc, ctx, &name, |t| t.extend(tags.clone())).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResourceRequest {
    resource_arn: Option<String>,
    tag_keys: Option<Vec<String>>,
}

pub(crate) async fn untag_resource(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: UntagResourceRequest = parse(body)?;
    let arn = required(req.resource_arn, "resourceArn")?;
    let keys_to_remove = required(req.tag_keys, "tagKeys")?;
    let name = group_of_arn(ctx, &arn)?;
    update_tags(svc, ctx, &name, |t| {
        for k in &keys_to_remove {
            t.remove(k);
        }
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTagsForResourceRequest {
    resource_arn: Option<String>,
}

pub(crate) async fn list_for_resource(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: ListTagsForResourceRequest = parse(body)?;
    let arn = required(req.resource_arn, "resourceArn")?;
    let name = group_of_arn(ctx, &arn)?;
    let group = load_group(svc, ctx, &name).await?;
    Ok(json!({"tags": group.value.tags}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagLogGroupRequest {
    log_group_name: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

pub(crate) async fn tag_log_group(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: TagLogGroupRequest = parse(body)?;
    let name = required(req.log_group_name, "logGroupName")?;
    check_group_name(&name)?;
    let tags = required(req.tags, "tags")?;
    check_tags(&tags)?;
    update_tags(svc, ctx, &name, |t| t.extend(tags.clone())).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagLogGroupRequest {
    log_group_name: Option<String>,
    /// The keys to remove (the deprecated API names this member `tags`).
    tags: Option<Vec<String>>,
}

pub(crate) async fn untag_log_group(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: UntagLogGroupRequest = parse(body)?;
    let name = required(req.log_group_name, "logGroupName")?;
    check_group_name(&name)?;
    let keys_to_remove = required(req.tags, "tags")?;
    update_tags(svc, ctx, &name, |t| {
        for k in &keys_to_remove {
            t.remove(k);
        }
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTagsLogGroupRequest {
    log_group_name: Option<String>,
}

pub(crate) async fn list_log_group(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: ListTagsLogGroupRequest = parse(body)?;
    let name = required(req.log_group_name, "logGroupName")?;
    check_group_name(&name)?;
    let group = load_group(svc, ctx, &name).await?;
    Ok(json!({"tags": group.value.tags}))
}
