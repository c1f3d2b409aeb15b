//! Key policies as KMS evaluates them: before an operation that acts on a key runs, the key (or
//! keys) it names is resolved (key id, key ARN, alias name or ARN; the key inside the ciphertext
//! blob for Decrypt and ReEncrypt; the alias's target for alias operations) and the caller's
//! request is put to the [`KeyAuthorizer`] the composition root installed, with the key's ARN and
//! its key policy. The rule itself (the key policy must allow, directly or by delegating to the
//! account's IAM policies) lives with the authorizer.
//!
//! Requests of the account root (no caller) and requests made before an authorizer is installed
//! are not checked. A key that cannot be resolved is not checked here: the operation answers
//! its own error (`NotFoundException`, `InvalidCiphertextException`, ...).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_front::RequestContext;
use serde_json::Value;

use crate::crypto::Blob;
use crate::model::{KeyManager, KeyRecord};
use crate::wire::{KeyRef, key_ref, load_key};
use crate::{KmsError, KmsOperation, KmsService, authz, managed};

/// One question put to the [`KeyAuthorizer`]: may the caller do `action` on the key `key_arn`
/// whose key policy is `policy`?
#[derive(Debug, Clone, Copy)]
pub struct KeyAccess<'a> {
    /// `kms:Encrypt`, `kms:ReEncryptTo`, ...
    pub action: &'a str,
    pub key_arn: &'a str,
    /// The key policy document.
    pub policy: &'a str,
    /// `kms:ViaService` (`secretsmanager.us-east-1.amazonaws.com`) when another service uses
    /// the key on the caller's behalf.
    pub via_service: Option<&'a str>,
}

/// Another service using a key on a caller's behalf (Secrets Manager, Parameter Store): the
/// action the caller needs on a customer managed key, and the service's name (`secretsmanager`)
/// for `kms:ViaService`.
#[derive(Debug, Clone, Copy)]
pub struct OnBehalf<'a> {
    /// `kms:GenerateDataKey`, `kms:Encrypt`, `kms:Decrypt`.
    pub action: &'a str,
    /// The service's endpoint prefix: `secretsmanager`, `ssm`.
    pub service: &'a str,
}

/// Checks the caller of `ctx` may use `key` through `on_behalf`'s service. AWS managed keys are
/// not checked: their key policies allow every principal of the account through the service
/// that owns them, whose own authorization has already run.
pub(crate) fn check_on_behalf(
    svc: &KmsService,
    ctx: &RequestContext,
    key: &KeyRecord,
    on_behalf: &OnBehalf<'_>,
) -> Result<(), KmsError> {
    if key.manager != KeyManager::Customer {
        return Ok(());
    }
    let via = format!("{}.{}.amazonaws.com", on_behalf.service, ctx.region);
    check(
        svc,
        ctx,
        &KeyAccess {
            action: on_behalf.action,
            key_arn: &key.arn,
            policy: &key.policy,
            via_service: Some(&via),
        },
    )
}

/// Decides key access for a caller; answers AWS's denial message when refused.
pub trait KeyAuthorizer: Send + Sync + fmt::Debug {
    fn authorize(&self, ctx: &RequestContext, access: &KeyAccess<'_>) -> Result<(), String>;
}

/// Whether the authorization of `operation` is decided by key policies alone (its only resource
/// is a key), so that the front's IAM-only check does not apply. Alias operations also need the
/// IAM permission on the alias, which the front checks.
pub fn decided_by_key_policy(operation: &str) -> bool {
    authz::AUTHORIZATION
        .iter()
        .any(|(op, _, types)| *op == operation && *types == ["key"])
}

/// Puts `access` to the installed authorizer, for callers other than the account root.
pub(crate) fn check(
    svc: &KmsService,
    ctx: &RequestContext,
    access: &KeyAccess<'_>,
) -> Result<(), KmsError> {
    if ctx.caller.is_none() {
        return Ok(());
    }
    match svc.key_authorizer.get() {
        Some(a) => a.authorize(ctx, access).map_err(KmsError::AccessDenied),
        None => Ok(()),
    }
}

/// The key a `KeyId`-like member names, if it resolves (AWS-managed aliases are created on first
/// use, as the operations do).
async fn named_key(
    svc: &KmsService,
    ctx: &RequestContext,
    member: Option<&Value>,
    allow_alias: bool,
) -> Result<Option<KeyRecord>, KmsError> {
    let Some(s) = member.and_then(Value::as_str) else {
        return Ok(None);
    };
    let Ok(r) = key_ref(ctx, s, allow_alias) else {
        return Ok(None);
    };
    let loaded = match &r {
        KeyRef::Alias(name) => match managed::managed_key(name) {
            Some(m) => managed::ensure(svc, ctx, m).await.map(|k| k.value),
            None => load_key(svc, ctx, &r).await.map(|k| k.value),
        },
        KeyRef::Id(_) => load_key(svc, ctx, &r).await.map(|k| k.value),
    };
    match loaded {
        Ok(k) => Ok(Some(k)),
        Err(KmsError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The key that sealed a `CiphertextBlob` member, if it parses and the key exists.
async fn blob_key(
    svc: &KmsService,
    ctx: &RequestContext,
    member: Option<&Value>,
) -> Result<Option<KeyRecord>, KmsError> {
    let Some(bytes) = member
        .and_then(Value::as_str)
        .and_then(|s| STANDARD.decode(s.as_bytes()).ok())
    else {
        return Ok(None);
    };
    let Some(parsed) = Blob::parse(&bytes) else {
        return Ok(None);
    };
    match load_key(svc, ctx, &KeyRef::Id(parsed.key_id.to_owned())).await {
        Ok(k) => Ok(Some(k.value)),
        Err(KmsError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks every key `op` with `body` acts on, before the operation runs.
pub(crate) async fn check_request(
    svc: &KmsService,
    op: KmsOperation,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<(), KmsError> {
    if ctx.caller.is_none() || svc.key_authorizer.get().is_none() {
        return Ok(());
    }
    // A body that does not parse is answered by the operation.
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Ok(());
    };
    let mut keys: Vec<(String, KeyRecord)> = Vec::new();
    match op {
        KmsOperation::Decrypt => {
            if let Some(k) = blob_key(svc, ctx, v.get("CiphertextBlob")).await? {
                keys.push(("kms:Decrypt".to_owned(), k));
            }
        }
        KmsOperation::ReEncrypt => {
            if let Some(k) = blob_key(svc, ctx, v.get("CiphertextBlob")).await? {
                keys.push(("kms:ReEncryptFrom".to_owned(), k));
            }
            if let Some(k) = named_key(svc, ctx, v.get("DestinationKeyId"), true).await? {
                keys.push(("kms:ReEncryptTo".to_owned(), k));
            }
        }
        KmsOperation::CreateAlias | KmsOperation::UpdateAlias | KmsOperation::DeleteAlias => {
            let action = format!("kms:{op}");
            if op != KmsOperation::DeleteAlias
                && let Some(k) = named_key(svc, ctx, v.get("TargetKeyId"), false).await?
            {
                keys.push((action.clone(), k));
            }
            // The key the alias points at now.
            if op != KmsOperation::CreateAlias
                && let Some(name) = v.get("AliasName").and_then(Value::as_str)
                && name.starts_with("alias/")
                && !name.starts_with("alias/aws/")
            {
                match load_key(svc, ctx, &KeyRef::Alias(name.to_owned())).await {
                    Ok(k) => keys.push((action, k.value)),
                    Err(KmsError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        _ if decided_by_key_policy(op.as_str()) => {
            if let Some(k) = named_key(svc, ctx, v.get("KeyId"), true).await? {
                keys.push((format!("kms:{op}"), k));
            }
        }
        _ => {}
    }
    for (action, key) in &keys {
        check(
            svc,
            ctx,
            &KeyAccess {
                action,
                key_arn: &key.arn,
                policy: &key.policy,
                via_service: None,
            },
        )?;
    }
    Ok(())
}
