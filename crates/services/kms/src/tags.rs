//! TagResource, UntagResource, ListResourceTags, and the tag checks CreateKey shares.

use std::collections::BTreeMap;

use gantry_front::RequestContext;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::key_ops::update_key;
use crate::model::KeyManager;
use crate::wire::{
    limit, load_key_member, not_pending_deletion, page, parse, required, with_marker,
};
use crate::{KmsError, KmsService};

/// Most tags one key may carry.
pub const MAX_TAGS: usize = 50;

/// One tag as the wire carries it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub tag_key: Option<String>,
    pub tag_value: Option<String>,
}

/// Checks tags (keys 1..=128 characters, not `aws:`; values at most 256) and returns them as a
/// map (a later duplicate key wins, as KMS applies them in order).
pub fn check_tags(tags: &[Tag]) -> Result<BTreeMap<String, String>, KmsError> {
    let mut out = BTreeMap::new();
    for t in tags {
        let k = required(t.tag_key.clone(), "tagKey")?;
        let v = required(t.tag_value.clone(), "tagValue")?;
        if k.is_empty() || k.chars().count() > 128 {
            return Err(KmsError::validation(format!(
                "1 validation error detected: Value '{k}' at 'tags.member.tagKey' failed to satisfy constraint: Member must have length between 1 and 128"
            )));
        }
        if v.chars().count() > 256 {
            return Err(KmsError::validation(format!(
                "1 validation error detected: Value at 'tags.member.tagValue' of tag '{k}' failed to satisfy constraint: Member must have length less than or equal to 256"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::Tag(format!(
                "Tag key {k} uses the reserved prefix aws:."
            )));
        }
        out.insert(k, v);
    }
    if out.len() > MAX_TAGS {
        return Err(KmsError::LimitExceeded(format!(
            "A KMS key can have at most {MAX_TAGS} tags."
        )));
    }
    Ok(out)
}

pub fn tags_to_wire(tags: &BTreeMap<String, String>) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceRequest {
    key_id: Option<String>,
    tags: Option<Vec<Tag>>,
}

pub(crate) async fn tag(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: TagResourceRequest = parse(body)?;
    let tags = check_tags(&required(req.tags, "tags")?)?;
    let key = load_key_member(svc, ctx, req.key_id, false).await?;
    if key.value.manager == KeyManager::Aws {
        return Err(crate::managed::denied(
            ctx,
            "kms:TagResource",
            &key.value.arn,
        ));
    }
    update_key(svc, ctx, &key.value.key_id, |k| {
        not_pending_deletion(k)?;
        k.tags.extend(tags.clone());
        if k.tags.len() > MAX_TAGS {
            return Err(KmsError::LimitExceeded(format!(
                "A KMS key can have at most {MAX_TAGS} tags."
            )));
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagResourceRequest {
    key_id: Option<String>,
    tag_keys: Option<Vec<String>>,
}

pub(crate) async fn untag(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: UntagResourceRequest = parse(body)?;
    let remove = required(req.tag_keys, "tagKeys")?;
    let key = load_key_member(svc, ctx, req.key_id, false).await?;
    if key.value.manager == KeyManager::Aws {
        return Err(crate::managed::denied(
            ctx,
            "kms:UntagResource",
            &key.value.arn,
        ));
    }
    update_key(svc, ctx, &key.value.key_id, |k| {
        not_pending_deletion(k)?;
        for r in &remove {
            k.tags.remove(r);
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResourceTagsRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

pub(crate) async fn list(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: ListResourceTagsRequest = parse(body)?;
    let limit = limit(req.limit)?;
    let key = load_key_member(svc, ctx, req.key_id, false).await?;
    let items: Vec<(String, (String, String))> = key
        .value
        .tags
        .into_iter()
        .map(|(k, v)| (k.clone(), (k, v)))
        .collect();
    let (tags, next) = page(items, req.marker.as_deref(), limit)?;
    let tags: BTreeMap<String, String> = tags.into_iter().collect();
    Ok(with_marker(json!({"Tags": tags_to_wire(&tags)}), next))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        Tag {
            tag_key: Some(k.into()),
            tag_value: Some(v.into()),
        }
    }

    #[test]
    fn tags_follow_kms_rules() {
        assert_eq!(check_tags(&[t("env", "prod")]).unwrap().len(), 1);
        assert_eq!(
            check_tags(&[t("aws:x", "y")]).unwrap_err().aws_code(),
            "TagException"
        );
        assert_eq!(
            check_tags(&[t("", "y")]).unwrap_err().aws_code(),
            "ValidationException"
        );
        let many: Vec<Tag> = (0..51).map(|i| t(&format!("k{i}"), "v")).collect();
        assert_eq!(
            check_tags(&many).unwrap_err().aws_code(),
            "LimitExceededException"
        );
    }
}
