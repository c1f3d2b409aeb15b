//! Resource policies: PutResourcePolicy, DescribeResourcePolicies, DeleteResourcePolicy.
//!
//! Account policies (no `resourceArn`): a region's are one record
//! (`logs/resourcepolicies/{region}`), a map by name, written by compare-and-swap: AWS allows at
//! most [`MAX_POLICIES`] per region, and one record keeps that limit under concurrent writers.
//! Resource-scoped policies (`resourceArn` of a log group): one per group
//! (`logs/grouppolicy/{region}/{group}`), written only with the group's current revision held
//! and the policy's `revisionId` given back as `expectedRevisionId`; deleting the group deletes
//! its policy. Documents are checked as CloudWatch Logs checks them (JSON, shaped as a policy, at
//! most [`MAX_DOCUMENT_CHARS`] characters) and returned as written; they are stored and listed,
//! not evaluated.

use std::collections::BTreeMap;

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, Versioned, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::LogGroup;
use crate::wire::{
    check_group_name, commit_with_retry, group_arn, group_name_from_arn, limit, load_group,
    paginate, parse, required, with_token,
};
use crate::{LogsError, LogsService, keys};

/// Most account resource policies per region (AWS's quota).
pub const MAX_POLICIES: usize = 10;
/// Longest policy document CloudWatch Logs takes, in characters (the model allows 51,200; the
/// service's own limit is lower).
pub const MAX_DOCUMENT_CHARS: usize = 5120;
const ACCOUNT: &str = "ACCOUNT";
const RESOURCE: &str = "RESOURCE";

fn policies_key(region: &str) -> String {
    format!("logs/resourcepolicies/{region}")
}

fn group_policies_prefix(region: &str) -> String {
    format!("logs/grouppolicy/{region}/")
}

/// Where the resource policy of log group `group` is stored.
pub(crate) fn group_policy_key(region: &str, group: &str) -> String {
    format!("{}{group}", group_policies_prefix(region))
}

/// A stored account resource policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ResourcePolicy {
    name: String,
    document: String,
    last_updated_time: u64,
}

impl ResourcePolicy {
    fn to_wire(&self) -> Value {
        json!({
            "policyName": self.name,
            "policyDocument": self.document,
            "lastUpdatedTime": self.last_updated_time,
            "policyScope": ACCOUNT,
        })
    }
}

/// The resource policy of one log group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GroupPolicy {
    name: String,
    group: String,
    document: String,
    last_updated_time: u64,
    revision_id: String,
}

impl GroupPolicy {
    fn to_wire(&self, ctx: &RequestContext) -> Value {
        json!({
            "policyName": self.name,
            "policyDocument": self.document,
            "lastUpdatedTime": self.last_updated_time,
            "policyScope": RESOURCE,
            "resourceArn": group_arn(ctx, &self.group),
            "revisionId": self.revision_id,
        })
    }
}

/// Every account resource policy of one region, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct RegionPolicies {
    policies: BTreeMap<String, ResourcePolicy>,
}

/// AWS's answer to a document it cannot read as a policy.
fn not_a_policy() -> LogsError {
    LogsError::invalid("Could not convert to persistable policy.")
}

/// Checks a policy document as CloudWatch Logs does: its size, JSON, and the shape of a policy
/// (`Statement` as an object or a non-empty list of objects, each with `Effect` `Allow` or
/// `Deny`, an `Action` or `NotAction`, and principals AWS can store). Resources are not checked:
/// CloudWatch Logs takes any string there.
fn check_document(doc: &str) -> Result<(), LogsError> {
    let chars = doc.encode_utf16().count();
    if chars > MAX_DOCUMENT_CHARS {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value at 'policyDocument' failed to satisfy constraint: Member must have length less than or equal to {MAX_DOCUMENT_CHARS} (found {chars} characters)"
        )));
    }
    let v: Value = serde_json::from_str(doc)
        .map_err(|e| LogsError::invalid(format!("The policyDocument is not valid JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(not_a_policy());
    };
    if let Some(version) = obj.get("Version")
        && !matches!(version.as_str(), Some("2012-10-17" | "2008-10-17"))
    {
        return Err(not_a_policy());
    }
    let statements: Vec<&Value> = match obj.get("Statement") {
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => return Err(not_a_policy()),
    };
    for s in statements {
        let Some(s) = s.as_object() else {
            return Err(not_a_policy());
        };
        let effect = s.get("Effect").and_then(Value::as_str);
        let has_actions = ["Action", "NotAction"].iter().any(|k| match s.get(*k) {
            Some(Value::String(a)) => !a.is_empty(),
            Some(Value::Array(list)) => !list.is_empty() && list.iter().all(Value::is_string),
            _ => false,
        });
        if !matches!(effect, Some("Allow" | "Deny")) || !has_actions {
            return Err(not_a_policy());
        }
        for key in ["Principal", "NotPrincipal"] {
            if let Some(p) = s.get(key) {
                check_principal(p)?;
            }
        }
    }
    Ok(())
}

/// `*`, or an object whose `AWS` values are `*`, account ids or IAM/STS ARNs and whose other
/// values are strings.
fn check_principal(p: &Value) -> Result<(), LogsError> {
    let map = match p {
        Value::String(s) if s == "*" => return Ok(()),
        Value::Object(map) if !map.is_empty() => map,
        _ => return Err(not_a_policy()),
    };
    for (kind, values) in map {
        let values: Vec<&Value> = match values {
            Value::Array(list) if !list.is_empty() => list.iter().collect(),
            v => vec![v],
        };
        for v in values {
            let Some(v) = v.as_str().filter(|v| !v.is_empty()) else {
                return Err(not_a_policy());
            };
            let ok = match kind.as_str() {
                "AWS" => {
                    v == "*"
                        || (v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()))
                        || v.starts_with("arn:aws:iam::")
                        || v.starts_with("arn:aws:sts::")
                }
                "Service" | "Federated" | "CanonicalUser" => true,
                _ => false,
            };
            if !ok {
                return Err(not_a_policy());
            }
        }
    }
    Ok(())
}

/// The log group a `resourceArn` names (its ARN, optionally with `:*`), which must exist.
async fn resource_group(
    svc: &LogsService,
    ctx: &RequestContext,
    arn: &str,
) -> Result<(String, Versioned<LogGroup>), LogsError> {
    let name = group_name_from_arn(ctx, arn).ok_or_else(|| {
        LogsError::invalid(format!(
            "Invalid resourceArn '{arn}': resource policies attach only to log groups of this account and region (arn:aws:logs:{}:{}:log-group:NAME).",
            ctx.region, ctx.account_id
        ))
    })?;
    check_group_name(name)?;
    let group = load_group(svc, ctx, name).await?;
    Ok((name.to_owned(), group))
}

/// `expectedRevisionId` on an account policy, which has no revision.
fn refuse_revision_without_resource(expected: Option<&String>) -> Result<(), LogsError> {
    match expected {
        Some(rev) => Err(LogsError::invalid(format!(
            "expectedRevisionId '{rev}' applies only to resource-scoped policies: give resourceArn, or omit expectedRevisionId for an account policy."
        ))),
        None => Ok(()),
    }
}

/// Checks `expected` against the group's current policy: absent for a first policy, its
/// `revisionId` afterwards.
fn check_revision(
    arn: &str,
    current: Option<&GroupPolicy>,
    expected: Option<&String>,
) -> Result<(), LogsError> {
    match (current, expected) {
        (None, None) => Ok(()),
        (Some(c), Some(e)) if c.revision_id == *e => Ok(()),
        (None, Some(e)) => Err(LogsError::OperationAborted(format!(
            "The resource {arn} has no resource policy, so expectedRevisionId '{e}' does not match; omit it to create the policy."
        ))),
        (Some(c), Some(e)) => Err(LogsError::OperationAborted(format!(
            "expectedRevisionId '{e}' does not match the current revision '{}' of the resource policy of {arn}.",
            c.revision_id
        ))),
        (Some(c), None) => Err(LogsError::invalid(format!(
            "The resource {arn} already has a resource policy; give its revisionId '{}' as expectedRevisionId to change it.",
            c.revision_id
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutResourcePolicyRequest {
    policy_name: Option<String>,
    policy_document: Option<String>,
    resource_arn: Option<String>,
    expected_revision_id: Option<String>,
}

pub(crate) async fn put(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: PutResourcePolicyRequest = parse(body)?;
    let name = required(req.policy_name, "policyName")?;
    let document = required(req.policy_document, "policyDocument")?;
    check_document(&document)?;
    match &req.resource_arn {
        Some(arn) => put_on_group(svc, ctx, arn, name, document, req.expected_revision_id).await,
        None => {
            refuse_revision_without_resource(req.expected_revision_id.as_ref())?;
            put_on_account(svc, ctx, name, document).await
        }
    }
}

async fn put_on_account(
    svc: &LogsService,
    ctx: &RequestContext,
    name: String,
    document: String,
) -> Result<Value, LogsError> {
    let key = policies_key(&ctx.region);
    let policy = ResourcePolicy {
        name: name.clone(),
        document,
        last_updated_time: ctx.now,
    };
    commit_with_retry(svc.store.as_ref(), || async {
        let current = svc.store.get_typed::<RegionPolicies>(&key).await?;
        let (mut all, txn) = match current {
            Some(c) => (c.value, Txn::new().require_revision(&key, c.revision)),
            None => (RegionPolicies::default(), Txn::new().require_absent(&key)),
        };
        if !all.policies.contains_key(&name) && all.policies.len() >= MAX_POLICIES {
            return Err(LogsError::LimitExceeded(
                "Resource limit exceeded.".to_owned(),
            ));
        }
        all.policies.insert(name.clone(), policy.clone());
        Ok((txn.put(&key, encode(&key, &all)?), ()))
    })
    .await?;
    Ok(json!({"resourcePolicy": policy.to_wire()}))
}

async fn put_on_group(
    svc: &LogsService,
    ctx: &RequestContext,
    arn: &str,
    name: String,
    document: String,
    expected: Option<String>,
) -> Result<Value, LogsError> {
    let policy = commit_with_retry(svc.store.as_ref(), || async {
        let (group, g) = resource_group(svc, ctx, arn).await?;
        let gkey = keys::group(&ctx.region, &group);
        let pkey = group_policy_key(&ctx.region, &group);
        let current = svc.store.get_typed::<GroupPolicy>(&pkey).await?;
        check_revision(arn, current.as_ref().map(|c| &c.value), expected.as_ref())?;
        let policy = GroupPolicy {
            name: name.clone(),
            group: group.clone(),
            document: document.clone(),
            last_updated_time: ctx.now,
            revision_id: ctx.request_id.clone(),
        };
        let txn = Txn::new()
            .require_revision(&gkey, g.revision)
            .require_revision(&pkey, current.map_or(0, |c| c.revision))
            .put(&pkey, encode(&pkey, &policy)?);
        Ok((txn, policy))
    })
    .await?;
    Ok(json!({
        "resourcePolicy": policy.to_wire(ctx),
        "revisionId": policy.revision_id,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteResourcePolicyRequest {
    policy_name: Option<String>,
    resource_arn: Option<String>,
    expected_revision_id: Option<String>,
}

pub(crate) async fn delete(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DeleteResourcePolicyRequest = parse(body)?;
    let name = required(req.policy_name, "policyName")?;
    let missing =
        || LogsError::ResourceNotFound(format!("Policy with name [{name}] does not exist."));
    if let Some(arn) = &req.resource_arn {
        let expected = required(req.expected_revision_id.clone(), "expectedRevisionId")?;
        commit_with_retry(svc.store.as_ref(), || async {
            let (group, _) = resource_group(svc, ctx, arn).await?;
            let pkey = group_policy_key(&ctx.region, &group);
            let Some(current) = svc.store.get_typed::<GroupPolicy>(&pkey).await? else {
                return Err(missing());
            };
            if current.value.name != name {
                return Err(missing());
            }
            check_revision(arn, Some(&current.value), Some(&expected))?;
            let txn = Txn::new()
                .require_revision(&pkey, current.revision)
                .delete(&pkey);
            Ok((txn, ()))
        })
        .await?;
        return Ok(json!({}));
    }
    refuse_revision_without_resource(req.expected_revision_id.as_ref())?;
    let key = policies_key(&ctx.region);
    commit_with_retry(svc.store.as_ref(), || async {
        let Some(current) = svc.store.get_typed::<RegionPolicies>(&key).await? else {
            return Err(missing());
        };
        let mut all = current.value;
        if all.policies.remove(&name).is_none() {
            return Err(missing());
        }
        let txn = Txn::new().require_revision(&key, current.revision);
        let txn = if all.policies.is_empty() {
            txn.delete(&key)
        } else {
            txn.put(&key, encode(&key, &all)?)
        };
        Ok((txn, ()))
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeResourcePoliciesRequest {
    next_token: Option<String>,
    limit: Option<i64>,
    resource_arn: Option<String>,
    policy_scope: Option<String>,
}

pub(crate) async fn describe(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DescribeResourcePoliciesRequest = parse(body)?;
    let limit = limit(req.limit, 50, 50)?;
    let items: Vec<(String, Value)> = match (req.policy_scope.as_deref(), &req.resource_arn) {
        (None | Some(ACCOUNT), None) => svc
            .store
            .get_typed::<RegionPolicies>(&policies_key(&ctx.region))
            .await?
            .map(|v| v.value)
            .unwrap_or_default()
            .policies
            .into_values()
            .map(|p| (p.name.clone(), p.to_wire()))
            .collect(),
        (Some(ACCOUNT), Some(arn)) => {
            return Err(LogsError::invalid(format!(
                "resourceArn '{arn}' names a resource-scoped policy: use policyScope RESOURCE (or omit policyScope) with it."
            )));
        }
        (None | Some(RESOURCE), Some(arn)) => {
            let (group, _) = resource_group(svc, ctx, arn).await?;
            svc.store
                .get_typed::<GroupPolicy>(&group_policy_key(&ctx.region, &group))
                .await?
                .map(|p| (p.value.group.clone(), p.value.to_wire(ctx)))
                .into_iter()
                .collect()
        }
        (Some(RESOURCE), None) => svc
            .store
            .scan_all_typed::<GroupPolicy>(&group_policies_prefix(&ctx.region))
            .await?
            .into_iter()
            .map(|p| (p.value.group.clone(), p.value.to_wire(ctx)))
            .collect(),
        (Some(other), _) => {
            return Err(LogsError::invalid(format!(
                "1 validation error detected: Value '{other}' at 'policyScope' failed to satisfy constraint: Member must satisfy enum value set: [ACCOUNT, RESOURCE]"
            )));
        }
    };
    let (page, next) = paginate(items, req.next_token.as_deref(), limit, false)?;
    Ok(with_token(json!({"resourcePolicies": page}), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_and_message(r: Result<(), LogsError>) -> Option<(&'static str, String)> {
        r.err().map(|e| (e.aws_code(), e.to_string()))
    }

    #[test]
    fn documents_must_be_policies_cloudwatch_logs_can_store() {
        let ok = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Route53","Effect":"Allow",
            "Principal":{"Service":["route53.amazonaws.com"]},"Action":"logs:PutLogEvents",
            "Resource":"log_arn"}]}"#;
        assert!(check_document(ok).is_ok());
        let single = r#"{"Statement":{"Effect":"Deny","Principal":"*","NotAction":["logs:*"]}}"#;
        assert!(check_document(single).is_ok());
        let persistable = Some((
            "InvalidParameterException",
            "Could not convert to persistable policy.".to_owned(),
        ));
        for bad in [
            "[]",
            "{}",
            r#"{"Statement":[]}"#,
            r#"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Action":"logs:*"}}"#,
            r#"{"Statement":{"Effect":"allow","Action":"logs:*"}}"#,
            r#"{"Statement":{"Effect":"Allow"}}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"logs:*","Principal":{"AWS":"delivery.logs.amazonaws.com"}}}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"logs:*","Principal":{"Robot":"x"}}}"#,
        ] {
            assert_eq!(code_and_message(check_document(bad)), persistable, "{bad}");
        }
        for principal in ["123456789012", "arn:aws:iam::123456789012:root", "*"] {
            let doc = json!({"Statement": {"Effect": "Allow", "Action": "logs:*",
                "Principal": {"AWS": principal}}})
            .to_string();
            assert!(check_document(&doc).is_ok(), "{principal}");
        }
        let (code, message) = code_and_message(check_document("{not json")).unwrap();
        assert_eq!(code, "InvalidParameterException");
        assert!(
            message.starts_with("The policyDocument is not valid JSON"),
            "{message}"
        );
    }

    #[test]
    fn a_resource_policy_changes_only_at_its_current_revision() {
        let arn = "arn:aws:logs:us-east-1:000000000000:log-group:g";
        let current = GroupPolicy {
            name: "p".into(),
            group: "g".into(),
            document: "{}".into(),
            last_updated_time: 0,
            revision_id: "r1".into(),
        };
        let r1 = "r1".to_owned();
        let r0 = "r0".to_owned();
        assert!(check_revision(arn, None, None).is_ok());
        assert!(check_revision(arn, Some(&current), Some(&r1)).is_ok());
        let code = |r: Result<(), LogsError>| r.unwrap_err().aws_code();
        assert_eq!(
            code(check_revision(arn, Some(&current), Some(&r0))),
            "OperationAbortedException"
        );
        assert_eq!(
            code(check_revision(arn, None, Some(&r1))),
            "OperationAbortedException"
        );
        assert_eq!(
            code(check_revision(arn, Some(&current), None)),
            "InvalidParameterException"
        );
    }

    #[test]
    fn documents_are_limited_to_5120_characters() {
        let pad = |n: usize| {
            let base = r#"{"Statement":{"Effect":"Allow","Action":"logs:*","Sid":""}}"#;
            let sid = "a".repeat(n - base.len());
            format!(r#"{{"Statement":{{"Effect":"Allow","Action":"logs:*","Sid":"{sid}"}}}}"#)
        };
        assert_eq!(pad(5120).len(), 5120);
        assert!(check_document(&pad(5120)).is_ok());
        let (code, message) = code_and_message(check_document(&pad(5121))).unwrap();
        assert_eq!(code, "InvalidParameterException");
        assert!(
            message.contains("Member must have length less than or equal to 5120"),
            "{message}"
        );
    }
}
