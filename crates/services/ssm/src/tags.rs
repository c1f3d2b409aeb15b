//! AddTagsToResource, RemoveTagsFromResource and ListTagsForResource for parameters, and the tag
//! checks PutParameter shares.

use gantry_front::RequestContext;
use gantry_store::{Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::params::load;
use crate::wire::{commit_with_retry, parameter, parse, required};
use crate::{SsmError, SsmService};

/// Most tags one parameter may carry.
const MAX_TAGS: usize = 50;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: Option<String>,
    pub value: Option<String>,
}

fn tag_chars_ok(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// Checks tags and merges them into `into` (a key present gets the new value).
pub fn merge_tags(into: &mut Vec<(String, String)>, tags: &[Tag]) -> Result<(), SsmError> {
    for t in tags {
        let k = required(t.key.clone(), "tags.member.key")?;
        let v = required(t.value.clone(), "tags.member.value")?;
        if k.is_empty() || k.chars().count() > 128 || !tag_chars_ok(&k) {
            return Err(SsmError::validation(format!(
                "1 validation error detected: Value '{k}' at 'tags.member.key' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$"
            )));
        }
        if v.chars().count() > 256 || !tag_chars_ok(&v) {
            return Err(SsmError::validation(format!(
                "1 validation error detected: Value at 'tags.member.value' of tag '{k}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(SsmError::validation(format!(
                "Tag key {k} uses the reserved prefix aws:."
            )));
        }
        match into.iter_mut().find(|(key, _)| *key == k) {
            Some(e) => e.1 = v,
            None => into.push((k, v)),
        }
    }
    if into.len() > MAX_TAGS {
        return Err(SsmError::TooManyTags(format!(
            "A parameter can have at most {MAX_TAGS} tags."
        )));
    }
    Ok(())
}

/// The parameter a tagging request names (`ResourceType` `Parameter`, `ResourceId` its name).
fn resource(
    resource_type: Option<String>,
    resource_id: Option<String>,
) -> Result<String, SsmError> {
    let t = required(resource_type, "resourceType")?;
    let id = required(resource_id, "resourceId")?;
    match t.as_str() {
        "Parameter" => Ok(id.trim().to_owned()),
        "Document" | "ManagedInstance" | "MaintenanceWindow" | "PatchBaseline" | "OpsItem"
        | "OpsMetadata" | "Automation" | "Association" => Err(SsmError::InvalidResourceId(
            format!("The resource {t} {id} does not exist: Gantry's SSM holds parameters only."),
        )),
        other => Err(SsmError::InvalidResourceType(format!(
            "The resource type {other} is not valid."
        ))),
    }
}

async fn update_tags(
    svc: &SsmService,
    ctx: &RequestContext,
    name: &str,
    change: impl Fn(&mut Vec<(String, String)>) -> Result<(), SsmError>,
) -> Result<(), SsmError> {
    let store_key = parameter(&ctx.region, name);
    let _guard = svc.locks.lock(&store_key).await;
    commit_with_retry(svc.store.as_ref(), || async {
        let rec = load(svc, ctx, name).await?.ok_or_else(|| {
            SsmError::InvalidResourceId(format!("The parameter {name} does not exist."))
        })?;
        let mut r = rec.value;
        change(&mut r.tags)?;
        let txn = Txn::new()
            .require_revision(&store_key, rec.revision)
            .put(&store_key, encode(&store_key, &r)?);
        Ok((txn, ()))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddTagsRequest {
    resource_type: Option<String>,
    resource_id: Option<String>,
    tags: Option<Vec<Tag>>,
}

pub(crate) async fn add(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: AddTagsRequest = parse(body)?;
    let name = resource(req.resource_type, req.resource_id)?;
    let tags = required(req.tags, "tags")?;
    merge_tags(&mut Vec::new(), &tags)?;
    update_tags(svc, ctx, &name, |t| merge_tags(t, &tags)).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveTagsRequest {
    resource_type: Option<String>,
    resource_id: Option<String>,
    tag_keys: Option<Vec<String>>,
}

pub(crate) async fn remove(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: RemoveTagsRequest = parse(body)?;
    let name = resource(req.resource_type, req.resource_id)?;
    let keys = required(req.tag_keys, "tagKeys")?;
    update_tags(svc, ctx, &name, |t| {
        t.retain(|(k, _)| !keys.contains(k));
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsRequest {
    resource_type: Option<String>,
    resource_id: Option<String>,
}

pub(crate) async fn list(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: ListTagsRequest = parse(body)?;
    let name = resource(req.resource_type, req.resource_id)?;
    let rec = load(svc, ctx, &name).await?.ok_or_else(|| {
        SsmError::InvalidResourceId(format!("The parameter {name} does not exist."))
    })?;
    let tags: Vec<Value> = rec
        .value
        .tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({"TagList": tags}))
}
