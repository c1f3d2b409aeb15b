//! Resource policies: PutResourcePolicy, GetResourcePolicy, DeleteResourcePolicy,
//! ValidateResourcePolicy. Documents are validated as resource-based policies by
//! `gantry-iam-policy` (IAM's wording, answered as `MalformedPolicyDocumentException`).

use gantry_front::RequestContext;
use gantry_iam_policy::{Effect, PolicyDocument, PolicyKind, PrincipalType, Principals};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::secrets::update_record;
use crate::wire::{load_secret, parse, required};
use crate::{SecretsManagerService, SmError};

/// The largest resource policy, in characters.
const MAX_POLICY_CHARS: usize = 20480;

/// Validates `text` as a secret's resource policy.
pub fn check_policy(text: &str) -> Result<PolicyDocument, SmError> {
    if text.is_empty() || text.chars().count() > MAX_POLICY_CHARS {
        return Err(SmError::Validation(format!(
            "1 validation error detected: Value at 'resourcePolicy' failed to satisfy constraint: Member must have length between 1 and {MAX_POLICY_CHARS}"
        )));
    }
    PolicyDocument::parse(text, PolicyKind::Resource)
        .map_err(|e| SmError::MalformedPolicyDocument(e.to_string()))
}

/// Whether the policy allows anyone (`"*"` or `{"AWS": "*"}`) without a condition: what
/// `BlockPublicPolicy` refuses.
pub fn grants_public_access(doc: &PolicyDocument) -> bool {
    doc.statements.iter().any(|s| {
        s.effect == Effect::Allow
            && s.conditions.is_empty()
            && match &s.principal {
                Some(Principals::Any) => !s.not_principal,
                Some(Principals::Listed(list)) => {
                    s.not_principal
                        || list
                            .iter()
                            .any(|(t, v)| *t == PrincipalType::Aws && v == "*")
                }
                None => false,
            }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutResourcePolicyRequest {
    secret_id: Option<String>,
    resource_policy: Option<String>,
    block_public_policy: Option<bool>,
}

pub(crate) async fn put(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: PutResourcePolicyRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let text = required(req.resource_policy, "resourcePolicy")?;
    let doc = check_policy(&text)?;
    if req.block_public_policy == Some(true) && grants_public_access(&doc) {
        return Err(SmError::PublicPolicy(
            "This resource policy will grant public access to the secret. Please remove the public access or set BlockPublicPolicy to false.".to_owned(),
        ));
    }
    let r = update_record(svc, ctx, &id, |r| {
        r.policy = Some(text.clone());
        Ok(())
    })
    .await?;
    Ok(json!({"ARN": r.arn, "Name": r.name}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretIdRequest {
    secret_id: Option<String>,
}

pub(crate) async fn get(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: SecretIdRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let r = load_secret(svc, ctx, &id).await?.value;
    let mut out = json!({"ARN": r.arn, "Name": r.name});
    if let Some(p) = r.policy {
        out["ResourcePolicy"] = json!(p);
    }
    Ok(out)
}

pub(crate) async fn delete(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: SecretIdRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let r = update_record(svc, ctx, &id, |r| {
        r.policy = None;
        Ok(())
    })
    .await?;
    Ok(json!({"ARN": r.arn, "Name": r.name}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ValidateResourcePolicyRequest {
    secret_id: Option<String>,
    resource_policy: Option<String>,
}

pub(crate) async fn validate(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: ValidateResourcePolicyRequest = parse(body)?;
    let text = required(req.resource_policy, "resourcePolicy")?;
    if let Some(id) = req.secret_id {
        load_secret(svc, ctx, &id).await?;
    }
    let doc = check_policy(&text)?;
    let mut errors = Vec::new();
    if grants_public_access(&doc) {
        errors.push(json!({
            "CheckName": "BLOCK_PUBLIC_POLICY",
            "ErrorMessage": "This resource policy grants public access to the secret.",
        }));
    }
    Ok(json!({"PolicyValidationPassed": errors.is_empty(), "ValidationErrors": errors}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked_and_public_ones_recognised() {
        let public = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
        assert!(grants_public_access(&check_policy(public).unwrap()));
        let scoped = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
        assert!(!grants_public_access(&check_policy(scoped).unwrap()));
        let e = check_policy("{").unwrap_err();
        assert_eq!(
            (e.aws_code(), e.to_string().as_str()),
            (
                "MalformedPolicyDocumentException",
                "Syntax errors in policy."
            )
        );
    }
}
