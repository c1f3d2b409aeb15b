//! LabelParameterVersion and UnlabelParameterVersion.

use gantry_front::RequestContext;
use gantry_store::{Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::params::load;
use crate::wire::{commit_with_retry, parameter, parse, required, selected};
use crate::{SsmError, SsmService};

/// Most labels one version may carry.
const MAX_LABELS: usize = 10;

/// Whether `label` is one Parameter Store accepts: 1..=100 letters, digits, `.`, `-`, `_`, not
/// beginning with a digit, `aws` or `ssm`.
pub fn valid_label(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    !label.is_empty()
        && label.chars().count() <= 100
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !label.as_bytes()[0].is_ascii_digit()
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
}

fn check_labels(labels: &[String]) -> Result<(), SsmError> {
    if labels.is_empty() || labels.len() > MAX_LABELS {
        return Err(SsmError::validation(format!(
            "1 validation error detected: Value at 'labels' failed to satisfy constraint: Member must have length between 1 and {MAX_LABELS}"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LabelRequest {
    name: Option<String>,
    parameter_version: Option<u64>,
    labels: Option<Vec<String>>,
}

fn version_not_found(name: &str, v: u64) -> SsmError {
    SsmError::ParameterVersionNotFound(format!(
        "Systems Manager could not find version {v} of {name}. Verify the version and try again."
    ))
}

fn name_of(ctx: &RequestContext, raw: &str) -> Result<String, SsmError> {
    selected(ctx, raw)
        .filter(|s| s.selector.is_none())
        .map(|s| s.name)
        .ok_or_else(|| SsmError::not_found(raw.trim()))
}

pub(crate) async fn label(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: LabelRequest = parse(body)?;
    let name = name_of(ctx, &required(req.name, "name")?)?;
    let labels = required(req.labels, "labels")?;
    check_labels(&labels)?;
    let (valid, invalid): (Vec<String>, Vec<String>) =
        labels.into_iter().partition(|l| valid_label(l));
    let store_key = parameter(&ctx.region, &name);
    let _guard = svc.locks.lock(&store_key).await;
    let version = commit_with_retry(svc.store.as_ref(), || async {
        let rec = load(svc, ctx, &name)
            .await?
            .ok_or_else(|| SsmError::not_found(&name))?;
        let mut r = rec.value;
        let version = match req.parameter_version {
            Some(v) => v,
            None => r.current().map_or(0, |c| c.version),
        };
        if r.version(version).is_none() {
            return Err(version_not_found(&name, version));
        }
        for v in r.versions.iter_mut() {
            if v.version != version {
                v.labels.retain(|l| !valid.contains(l));
            }
        }
        let Some(target) = r.versions.iter_mut().find(|v| v.version == version) else {
            return Err(version_not_found(&name, version));
        };
        for l in &valid {
            if !target.labels.contains(l) {
                target.labels.push(l.clone());
            }
        }
        if target.labels.len() > MAX_LABELS {
            return Err(SsmError::ParameterVersionLabelLimitExceeded(format!(
                "A parameter version can have maximum {MAX_LABELS} labels. Move one or more labels to another version and try again."
            )));
        }
        let txn = Txn::new()
            .require_revision(&store_key, rec.revision)
            .put(&store_key, encode(&store_key, &r)?);
        Ok((txn, version))
    })
    .await?;
    Ok(json!({"InvalidLabels": invalid, "ParameterVersion": version}))
}

pub(crate) async fn unlabel(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: LabelRequest = parse(body)?;
    let name = name_of(ctx, &required(req.name, "name")?)?;
    let version = required(req.parameter_version, "parameterVersion")?;
    let labels = required(req.labels, "labels")?;
    check_labels(&labels)?;
    let store_key = parameter(&ctx.region, &name);
    let _guard = svc.locks.lock(&store_key).await;
    let (removed, invalid) = commit_with_retry(svc.store.as_ref(), || async {
        let rec = load(svc, ctx, &name)
            .await?
            .ok_or_else(|| SsmError::not_found(&name))?;
        let mut r = rec.value;
        let Some(target) = r.versions.iter_mut().find(|v| v.version == version) else {
            return Err(version_not_found(&name, version));
        };
        let (removed, invalid): (Vec<String>, Vec<String>) = labels
            .iter()
            .cloned()
            .partition(|l| target.labels.contains(l));
        target.labels.retain(|l| !removed.contains(l));
        if removed.is_empty() {
            return Ok((Txn::new(), (removed, invalid)));
        }
        let txn = Txn::new()
            .require_revision(&store_key, rec.revision)
            .put(&store_key, encode(&store_key, &r)?);
        Ok((txn, (removed, invalid)))
    })
    .await?;
    Ok(json!({"RemovedLabels": removed, "InvalidLabels": invalid}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_parameter_store_rules() {
        assert!(valid_label("prod"));
        assert!(valid_label("release-1.2_x"));
        for bad in ["", "1st", "awsy", "SSMx", "a b", "a/b"] {
            assert!(!valid_label(bad), "{bad}");
        }
        assert!(!valid_label(&"a".repeat(101)));
    }
}
