//! Account resource policies: PutResourcePolicy, DescribeResourcePolicies, DeleteResourcePolicy.
//!
//! A region's policies are one record (`logs/resourcepolicies/{region}`), a map by name, written
//! by compare-and-swap: AWS allows at most [`MAX_POLICIES`] per region, and one record keeps that
//! limit under concurrent writers. Documents are checked as CloudWatch Logs checks them (JSON,
//! shaped as a policy, at most [`MAX_DOCUMENT_CHARS`] characters) and returned as written; they
//! are stored and listed, not evaluated. Resource-scoped policies (`resourceArn`,
//! `expectedRevisionId`, `policyScope` `RESOURCE`) are refused with a clear error.

use std::collections::BTreeMap;

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::wire::{commit_with_retry, limit, paginate, parse, required, with_token};
use crate::{LogsError, LogsService};

/// Most account resource policies per region (AWS's quota).
pub const MAX_POLICIES: usize = 10;
/// Longest policy document CloudWatch Logs takes, in characters (the model allows 51,200; the
/// service's own limit is lower).
pub const MAX_DOCUMENT_CHARS: usize = 5120;
/// The one `policyScope` served.
const ACCOUNT: &str = "ACCOUNT";

fn policies_key(region: &str) -> String {
    format!("logs/resourcepolicies/{region}")
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

/// Refuses the members of resource-scoped policies, which are not served.
fn refuse_resource_scope(
    resource_arn: Option<&String>,
    expected_revision_id: Option<&String>,
) -> Result<(), LogsError> {
    if let Some(arn) = resource_arn {
        return Err(LogsError::invalid(format!(
            "Resource-scoped policies are not supported on this endpoint: resourceArn '{arn}' cannot be used; omit resourceArn to manage account policies."
        )));
    }
    if let Some(rev) = expected_revision_id {
        return Err(LogsError::invalid(format!(
            "Resource-scoped policies are not supported on this endpoint: expectedRevisionId '{rev}' cannot be used; account policies have no revision."
        )));
    }
    Ok(())
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
    refuse_resource_scope(req.resource_arn.as_ref(), req.expected_revision_id.as_ref())?;
    let name = required(req.policy_name, "policyName")?;
    let document = required(req.policy_document, "policyDocument")?;
    check_document(&document)?;
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
    refuse_resource_scope(req.resource_arn.as_ref(), req.expected_revision_id.as_ref())?;
    let name = required(req.policy_name, "policyName")?;
    let key = policies_key(&ctx.region);
    let missing =
        || LogsError::ResourceNotFound(format!("Policy with name [{name}] does not exist."));
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
    match req.policy_scope.as_deref() {
        None | Some(ACCOUNT) => {}
        Some("RESOURCE") => {
            return Err(LogsError::invalid(
                "Resource-scoped policies are not supported on this endpoint: policyScope 'RESOURCE' cannot be used; omit policyScope or use 'ACCOUNT'.",
            ));
        }
        Some(other) => {
            return Err(LogsError::invalid(format!(
                "1 validation error detected: Value '{other}' at 'policyScope' failed to satisfy constraint: Member must satisfy enum value set: [ACCOUNT, RESOURCE]"
            )));
        }
    }
    refuse_resource_scope(req.resource_arn.as_ref(), None)?;
    let all = svc
        .store
        .get_typed::<RegionPolicies>(&policies_key(&ctx.region))
        .await?
        .map(|v| v.value)
        .unwrap_or_default();
    let items: Vec<(String, Value)> = all
        .policies
        .into_values()
        .map(|p| (p.name.clone(), p.to_wire()))
        .collect();
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
