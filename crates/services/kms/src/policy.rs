//! Key policies: GetKeyPolicy, PutKeyPolicy, ListKeyPolicies, the default policy KMS writes for
//! keys created without one, and the policies of the AWS-managed keys.
//!
//! Documents are validated as resource-based policies by `gantry-iam-policy` (IAM's
//! `MalformedPolicyDocument` wording, answered as `MalformedPolicyDocumentException`), and
//! checked against KMS's lockout safety rule: the caller must still be allowed
//! `kms:PutKeyPolicy` under the new policy unless `BypassPolicyLockoutSafetyCheck` is set.

use gantry_front::RequestContext;
use gantry_iam_policy::{Context, Policy, PolicyKind, PolicySet, Principal, Request, evaluate};
use gantry_store::{Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::KeyManager;
use crate::wire::{
    commit_with_retry, limit, load_key_member, not_pending_deletion, parse, required,
};
use crate::{KmsError, KmsService, keys};

/// The largest key policy KMS accepts, in bytes.
pub const MAX_POLICY_BYTES: usize = 32 * 1024;
/// A key's only policy name.
pub const POLICY_NAME: &str = "default";

/// The policy KMS gives a key created without one: the account may do everything, which lets
/// IAM policies grant access to the key.
pub fn default_policy(account: &str) -> String {
    format!(
        r#"{{
  "Version" : "2012-10-17",
  "Id" : "key-default-1",
  "Statement" : [ {{
    "Sid" : "Enable IAM User Permissions",
    "Effect" : "Allow",
    "Principal" : {{
      "AWS" : "arn:aws:iam::{account}:root"
    }},
    "Action" : "kms:*",
    "Resource" : "*"
  }} ]
}}"#
    )
}

/// The policy of an AWS-managed key: principals of the account may use it through the service
/// that owns it, and the account may read its metadata.
pub fn managed_policy(account: &str, region: &str, service: &str, service_name: &str) -> String {
    format!(
        r#"{{
  "Version" : "2012-10-17",
  "Id" : "auto-{service}-2",
  "Statement" : [ {{
    "Sid" : "Allow access through {service_name} for all principals in the account that are authorized to use {service_name}",
    "Effect" : "Allow",
    "Principal" : {{
      "AWS" : "*"
    }},
    "Action" : [ "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey" ],
    "Resource" : "*",
    "Condition" : {{
      "StringEquals" : {{
        "kms:CallerAccount" : "{account}",
        "kms:ViaService" : "{service}.{region}.amazonaws.com"
      }}
    }}
  }}, {{
    "Sid" : "Allow direct access to key metadata to the account",
    "Effect" : "Allow",
    "Principal" : {{
      "AWS" : "arn:aws:iam::{account}:root"
    }},
    "Action" : [ "kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant" ],
    "Resource" : "*"
  }} ]
}}"#
    )
}

/// Validates a key policy for `key_arn`: size, the policy language, and (unless bypassed) that
/// the caller keeps `kms:PutKeyPolicy`.
pub fn check_policy(
    ctx: &RequestContext,
    text: &str,
    key_arn: &str,
    bypass_lockout_check: bool,
) -> Result<(), KmsError> {
    if text.is_empty() {
        return Err(KmsError::validation(
            "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if text.len() > MAX_POLICY_BYTES {
        return Err(KmsError::LimitExceeded(format!(
            "The key policy is {} bytes; a key policy can have at most {MAX_POLICY_BYTES} bytes.",
            text.len()
        )));
    }
    let policy = Policy::parse(text, PolicyKind::Resource)
        .map_err(|e| KmsError::MalformedPolicyDocument(e.to_string()))?;
    if bypass_lockout_check {
        return Ok(());
    }
    if !keeps_put_key_policy(ctx, &policy, key_arn) {
        return Err(KmsError::MalformedPolicyDocument(
            "The new key policy will not allow you to update the key policy in the future."
                .to_owned(),
        ));
    }
    Ok(())
}

/// KMS's lockout safety rule: the policy must let the caller (the account root for root
/// credentials) call `kms:PutKeyPolicy` again, either by naming it (its ARN, its role, `*`) or
/// by delegating to its account's IAM policies, and must not deny it.
fn keeps_put_key_policy(ctx: &RequestContext, policy: &Policy, key_arn: &str) -> bool {
    let root = Principal::root(&ctx.account_id);
    let principal = ctx.caller.as_deref().unwrap_or(&root);
    let context = Context::new()
        .with("kms:CallerAccount", principal.account.clone())
        .with("aws:PrincipalArn", ctx.caller_arn());
    if principal.kind == gantry_iam_policy::PrincipalKind::Root {
        let request = Request {
            principal,
            action: "kms:PutKeyPolicy",
            resources: &[key_arn],
            resource_account: None,
            context: &context,
        };
        let set = PolicySet {
            resource: Some(policy),
            ..PolicySet::default()
        };
        return evaluate(&request, &set).is_allowed();
    }
    // Whether the key policy allows the caller in any way, the IAM side granted: evaluated as
    // across accounts, where both sides must allow (an account named delegates to an IAM side
    // that allows everything here).
    let Ok(anything) = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        PolicyKind::Identity,
    ) else {
        return false;
    };
    let request = Request {
        principal,
        action: "kms:PutKeyPolicy",
        resources: &[key_arn],
        resource_account: Some(""),
        context: &context,
    };
    let set = PolicySet {
        identity: &[&anything],
        resource: Some(policy),
        ..PolicySet::default()
    };
    evaluate(&request, &set).is_allowed()
}

fn policy_name(name: Option<String>) -> Result<(), KmsError> {
    match name.as_deref() {
        None | Some(POLICY_NAME) => Ok(()),
        Some(other) => Err(KmsError::NotFound(format!(
            "No such policy exists: {other}. A key has one policy, named \"{POLICY_NAME}\"."
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetKeyPolicyRequest {
    key_id: Option<String>,
    policy_name: Option<String>,
}

pub(crate) async fn get(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: GetKeyPolicyRequest = parse(body)?;
    let key = load_key_member(svc, ctx, req.key_id, false).await?;
    policy_name(req.policy_name)?;
    Ok(json!({"Policy": key.value.policy, "PolicyName": POLICY_NAME}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutKeyPolicyRequest {
    key_id: Option<String>,
    policy_name: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    bypass_policy_lockout_safety_check: bool,
}

pub(crate) async fn put(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: PutKeyPolicyRequest = parse(body)?;
    let text = required(req.policy, "policy")?;
    let first = load_key_member(svc, ctx, req.key_id, false).await?;
    policy_name(req.policy_name)?;
    let key_id = first.value.key_id.clone();
    if first.value.manager == KeyManager::Aws {
        return Err(crate::managed::denied(
            ctx,
            "kms:PutKeyPolicy",
            &first.value.arn,
        ));
    }
    check_policy(
        ctx,
        &text,
        &first.value.arn,
        req.bypass_policy_lockout_safety_check,
    )?;
    let store_key = keys::key(&ctx.region, &key_id);
    commit_with_retry(svc.store.as_ref(), || async {
        let mut key =
            crate::wire::load_key(svc, ctx, &crate::wire::KeyRef::Id(key_id.clone())).await?;
        not_pending_deletion(&key.value)?;
        key.value.policy = text.clone();
        let txn = Txn::new()
            .require_revision(&store_key, key.revision)
            .put(&store_key, encode(&store_key, &key.value)?);
        Ok((txn, ()))
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyPoliciesRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

pub(crate) async fn list(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: ListKeyPoliciesRequest = parse(body)?;
    limit(req.limit)?;
    if let Some(m) = req.marker {
        return Err(KmsError::InvalidMarker(format!("Invalid marker: {m}")));
    }
    load_key_member(svc, ctx, req.key_id, false).await?;
    Ok(json!({"PolicyNames": [POLICY_NAME], "Truncated": false}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            caller: None,
            request_id: "r".into(),
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            access_key_id: "AK".into(),
            now: 0,
        }
    }

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn default_and_managed_policies_are_valid_resource_policies() {
        let c = ctx();
        check_policy(&c, &default_policy("111122223333"), ARN, false).unwrap();
        let managed = managed_policy(
            "111122223333",
            "us-east-1",
            "secretsmanager",
            "AWS Secrets Manager",
        );
        Policy::parse(&managed, PolicyKind::Resource).unwrap();
        let v: Value = serde_json::from_str(&default_policy("111122223333")).unwrap();
        assert_eq!(
            v["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::111122223333:root"
        );
    }

    #[test]
    fn malformed_policies_answer_iam_wording() {
        let e = check_policy(&ctx(), "{not json", ARN, false).unwrap_err();
        assert_eq!(e.aws_code(), "MalformedPolicyDocumentException");
        assert_eq!(e.to_string(), "Syntax errors in policy.");
        let no_principal = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
        let e = check_policy(&ctx(), no_principal, ARN, false).unwrap_err();
        assert_eq!(e.to_string(), "Missing required field Principal");
    }

    #[test]
    fn a_policy_denying_the_caller_put_key_policy_is_a_lockout() {
        let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*"}]}"#;
        let e = check_policy(&ctx(), deny, ARN, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The new key policy will not allow you to update the key policy in the future."
        );
        check_policy(&ctx(), deny, ARN, true).unwrap();
    }

    #[test]
    fn oversized_policies_are_refused() {
        let big = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"{}","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}}]}}"#,
            "a".repeat(MAX_POLICY_BYTES)
        );
        assert_eq!(
            check_policy(&ctx(), &big, ARN, false)
                .unwrap_err()
                .aws_code(),
            "LimitExceededException"
        );
    }
}
