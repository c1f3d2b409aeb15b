//! The key lifecycle: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
//! ScheduleKeyDeletion, CancelKeyDeletion, UpdateKeyDescription, and rotation
//! (EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand,
//! ListKeyRotations).

use gantry_aws_proto::pagination::epoch_seconds;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{
    AliasRecord, DAY_MS, KeyManager, KeyRecord, KeyState, Material, Origin, Rotation, ms_to_time,
};
use crate::tags::{Tag, check_tags};
use crate::wire::{
    KeyRef, b64, commit_with_retry, limit, load_key, load_key_member, no_grant_tokens,
    not_pending_deletion, page, parse, required, with_marker,
};
use crate::{KmsError, KmsService, keys, managed, policy};

/// Most on-demand rotations one key may have.
const MAX_ON_DEMAND_ROTATIONS: usize = 25;

/// Applies `change` to key `key_id` with compare-and-swap, re-reading on conflict; returns the
/// key as written.
pub async fn update_key(
    svc: &KmsService,
    ctx: &RequestContext,
    key_id: &str,
    change: impl Fn(&mut KeyRecord) -> Result<(), KmsError>,
) -> Result<KeyRecord, KmsError> {
    let store_key = keys::key(&ctx.region, key_id);
    commit_with_retry(svc.store.as_ref(), || async {
        let mut key = load_key(svc, ctx, &KeyRef::Id(key_id.to_owned())).await?;
        change(&mut key.value)?;
        let txn = Txn::new()
            .require_revision(&store_key, key.revision)
            .put(&store_key, encode(&store_key, &key.value)?);
        Ok((txn, key.value))
    })
    .await
}

fn unsupported(what: &str) -> KmsError {
    KmsError::UnsupportedOperation(format!(
        "{what} is not supported: Gantry's KMS keys are symmetric encryption keys (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT, origin AWS_KMS) in the Region's own key store."
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyRequest {
    policy: Option<String>,
    description: Option<String>,
    key_usage: Option<String>,
    customer_master_key_spec: Option<String>,
    key_spec: Option<String>,
    origin: Option<String>,
    custom_key_store_id: Option<String>,
    #[serde(default)]
    bypass_policy_lockout_safety_check: bool,
    tags: Option<Vec<Tag>>,
    multi_region: Option<bool>,
    xks_key_id: Option<String>,
}

pub(crate) async fn create(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: CreateKeyRequest = parse(body)?;
    let description = req.description.unwrap_or_default();
    if description.chars().count() > 8192 {
        return Err(KmsError::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192",
        ));
    }
    match req.key_usage.as_deref() {
        None | Some("ENCRYPT_DECRYPT") => {}
        Some(u @ ("SIGN_VERIFY" | "GENERATE_VERIFY_MAC" | "KEY_AGREEMENT")) => {
            return Err(unsupported(&format!("KeyUsage {u}")));
        }
        Some(u) => {
            return Err(KmsError::validation(format!(
                "1 validation error detected: Value '{u}' at 'keyUsage' failed to satisfy constraint: Member must satisfy enum value set: [SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT]"
            )));
        }
    }
    if req.key_spec.is_some() && req.customer_master_key_spec.is_some() {
        return Err(KmsError::validation(
            "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.",
        ));
    }
    if let Some(spec) = req
        .key_spec
        .as_deref()
        .or(req.customer_master_key_spec.as_deref())
        && spec != "SYMMETRIC_DEFAULT"
    {
        return Err(unsupported(&format!("KeySpec {spec}")));
    }
    match req.origin.as_deref() {
        None | Some("AWS_KMS") => {}
        Some(o) => return Err(unsupported(&format!("Origin {o}"))),
    }
    if req.custom_key_store_id.is_some() || req.xks_key_id.is_some() {
        return Err(unsupported("A custom key store"));
    }
    if req.multi_region == Some(true) {
        return Err(unsupported("A multi-Region key"));
    }
    let tags = check_tags(&req.tags.unwrap_or_default())?;
    let mut key = managed::new_key(
        svc,
        ctx,
        description,
        KeyManager::Customer,
        String::new(),
        tags,
    );
    key.policy = match req.policy {
        Some(p) => {
            policy::check_policy(ctx, &p, &key.arn, req.bypass_policy_lockout_safety_check)?;
            p
        }
        None => policy::default_policy(&ctx.account_id),
    };
    let store_key = keys::key(&ctx.region, &key.key_id);
    let txn = Txn::new()
        .require_absent(&store_key)
        .put(&store_key, encode(&store_key, &key)?);
    if !svc.store.commit(txn).await?.is_committed() {
        return Err(KmsError::Contention(store_key));
    }
    tracing::info!(key_id = %key.key_id, region = %ctx.region, "KMS key created");
    Ok(json!({"KeyMetadata": key.metadata()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdRequest {
    key_id: Option<String>,
    grant_tokens: Option<Vec<String>>,
}

pub(crate) async fn describe(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: KeyIdRequest = parse(body)?;
    no_grant_tokens(&req.grant_tokens)?;
    let key = load_key_member(svc, ctx, req.key_id, true).await?;
    Ok(json!({"KeyMetadata": key.value.metadata()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    limit: Option<i64>,
    marker: Option<String>,
}

pub(crate) async fn list(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: ListRequest = parse(body)?;
    let limit = limit(req.limit)?;
    let keys = svc
        .store
        .scan_all_typed::<KeyRecord>(&keys::keys(&ctx.region))
        .await?;
    let items: Vec<(String, Value)> = keys
        .into_iter()
        .map(|k| {
            (
                k.value.key_id.clone(),
                json!({"KeyId": k.value.key_id, "KeyArn": k.value.arn}),
            )
        })
        .collect();
    let (page, next) = page(items, req.marker.as_deref(), limit)?;
    Ok(with_marker(json!({"Keys": page}), next))
}

/// Reads `KeyId` (no alias) of a customer-managed key: AWS-managed keys answer AccessDenied for
/// `action`.
async fn customer_key(
    svc: &KmsService,
    ctx: &RequestContext,
    key_id: Option<String>,
    action: &str,
) -> Result<KeyRecord, KmsError> {
    let key = load_key_member(svc, ctx, key_id, false).await?;
    if key.value.manager == KeyManager::Aws {
        return Err(managed::denied(ctx, action, &key.value.arn));
    }
    Ok(key.value)
}

pub(crate) async fn enable(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: KeyIdRequest = parse(body)?;
    let key = customer_key(svc, ctx, req.key_id, "kms:EnableKey").await?;
    update_key(svc, ctx, &key.key_id, |k| {
        not_pending_deletion(k)?;
        k.state = KeyState::Enabled;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn disable(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: KeyIdRequest = parse(body)?;
    let key = customer_key(svc, ctx, req.key_id, "kms:DisableKey").await?;
    update_key(svc, ctx, &key.key_id, |k| {
        not_pending_deletion(k)?;
        k.state = KeyState::Disabled;
        Ok(())
    })
    .await?;
    tracing::info!(key_id = %key.key_id, "KMS key disabled");
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleKeyDeletionRequest {
    key_id: Option<String>,
    pending_window_in_days: Option<i64>,
}

pub(crate) async fn schedule_deletion(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: ScheduleKeyDeletionRequest = parse(body)?;
    let days = req.pending_window_in_days.unwrap_or(30);
    if !(7..=30).contains(&days) {
        let bound = if days < 7 {
            "greater than or equal to 7"
        } else {
            "less than or equal to 30"
        };
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value {bound}"
        )));
    }
    let key = customer_key(svc, ctx, req.key_id, "kms:ScheduleKeyDeletion").await?;
    let deletion_ms = ctx.now + days as u64 * DAY_MS;
    let key = update_key(svc, ctx, &key.key_id, |k| {
        not_pending_deletion(k)?;
        k.state = KeyState::PendingDeletion;
        k.deletion_ms = Some(deletion_ms);
        k.pending_window_days = Some(days as u32);
        Ok(())
    })
    .await?;
    tracing::info!(key_id = %key.key_id, days, "KMS key scheduled for deletion");
    Ok(json!({
        "KeyId": key.arn,
        "DeletionDate": epoch_seconds(ms_to_time(deletion_ms)),
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": days,
    }))
}

pub(crate) async fn cancel_deletion(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: KeyIdRequest = parse(body)?;
    let key = customer_key(svc, ctx, req.key_id, "kms:CancelKeyDeletion").await?;
    let key = update_key(svc, ctx, &key.key_id, |k| {
        if k.state != KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is not pending deletion.",
                k.arn
            )));
        }
        // A key whose deletion is cancelled comes back disabled, as in KMS.
        k.state = KeyState::Disabled;
        k.deletion_ms = None;
        k.pending_window_days = None;
        Ok(())
    })
    .await?;
    Ok(json!({"KeyId": key.arn}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateKeyDescriptionRequest {
    key_id: Option<String>,
    description: Option<String>,
}

pub(crate) async fn update_description(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: UpdateKeyDescriptionRequest = parse(body)?;
    let description = required(req.description, "description")?;
    if description.chars().count() > 8192 {
        return Err(KmsError::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192",
        ));
    }
    let key = customer_key(svc, ctx, req.key_id, "kms:UpdateKeyDescription").await?;
    update_key(svc, ctx, &key.key_id, |k| {
        not_pending_deletion(k)?;
        k.description = description.clone();
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

fn rotatable(k: &KeyRecord) -> Result<(), KmsError> {
    not_pending_deletion(k)?;
    if k.state == KeyState::Disabled {
        return Err(KmsError::Disabled(format!("{} is disabled.", k.arn)));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnableKeyRotationRequest {
    key_id: Option<String>,
    rotation_period_in_days: Option<i64>,
}

pub(crate) async fn enable_rotation(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: EnableKeyRotationRequest = parse(body)?;
    let days = req.rotation_period_in_days.unwrap_or(365);
    if !(90..=2560).contains(&days) {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{days}' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between 90 and 2560"
        )));
    }
    let key = customer_key(svc, ctx, req.key_id, "kms:EnableKeyRotation").await?;
    let now = ctx.now;
    update_key(svc, ctx, &key.key_id, |k| {
        rotatable(k)?;
        k.rotation = Some(Rotation {
            period_days: days as u32,
            next_rotation_ms: now + days as u64 * DAY_MS,
        });
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn disable_rotation(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: KeyIdRequest = parse(body)?;
    let key = customer_key(svc, ctx, req.key_id, "kms:DisableKeyRotation").await?;
    update_key(svc, ctx, &key.key_id, |k| {
        rotatable(k)?;
        k.rotation = None;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn rotation_status(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: KeyIdRequest = parse(body)?;
    let key = load_key_member(svc, ctx, req.key_id, false).await?.value;
    not_pending_deletion(&key)?;
    let mut v = json!({"KeyRotationEnabled": key.rotation.is_some(), "KeyId": key.arn});
    if let Some(r) = key.rotation {
        v["RotationPeriodInDays"] = json!(r.period_days);
        v["NextRotationDate"] = json!(epoch_seconds(ms_to_time(r.next_rotation_ms)));
    }
    Ok(v)
}

/// Adds a material version to `k` (the new current one).
pub fn rotate(svc: &KmsService, k: &mut KeyRecord, now: u64, origin: Origin) {
    let version = k.materials.last().map_or(1, |m| m.version + 1);
    let wrapped = svc.master.new_material(&k.arn, version);
    k.materials.push(Material {
        version,
        id: hex::encode(crate::crypto::random_bytes(32)),
        wrapped: b64(&wrapped),
        created_ms: now,
        origin,
    });
}

pub(crate) async fn rotate_on_demand(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: KeyIdRequest = parse(body)?;
    let key = customer_key(svc, ctx, req.key_id, "kms:RotateKeyOnDemand").await?;
    let now = ctx.now;
    let key = update_key(svc, ctx, &key.key_id, |k| {
        rotatable(k)?;
        let done = k
            .materials
            .iter()
            .filter(|m| m.origin == Origin::OnDemand)
            .count();
        if done >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(format!(
                "{} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations.",
                k.arn
            )));
        }
        rotate(svc, k, now, Origin::OnDemand);
        Ok(())
    })
    .await?;
    tracing::info!(key_id = %key.key_id, "KMS key rotated on demand");
    Ok(json!({"KeyId": key.arn}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyRotationsRequest {
    key_id: Option<String>,
    include_key_material: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

pub(crate) async fn list_rotations(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: ListKeyRotationsRequest = parse(body)?;
    let limit = limit(req.limit)?;
    let all = match req.include_key_material.as_deref() {
        None | Some("ROTATIONS_ONLY") => false,
        Some("ALL_KEY_MATERIAL") => true,
        Some(o) => {
            return Err(KmsError::validation(format!(
                "1 validation error detected: Value '{o}' at 'includeKeyMaterial' failed to satisfy constraint: Member must satisfy enum value set: [ALL_KEY_MATERIAL, ROTATIONS_ONLY]"
            )));
        }
    };
    let key = load_key_member(svc, ctx, req.key_id, false).await?.value;
    not_pending_deletion(&key)?;
    let current = key.current().map(|m| m.version);
    let items: Vec<(String, Value)> = key
        .materials
        .iter()
        .filter(|m| all || m.origin != Origin::Created)
        .map(|m| {
            let mut v = json!({
                "KeyId": key.arn,
                "KeyMaterialId": m.id,
                "KeyMaterialState": if Some(m.version) == current { "CURRENT" } else { "NON_CURRENT" },
            });
            if m.origin != Origin::Created {
                v["RotationDate"] = json!(epoch_seconds(ms_to_time(m.created_ms)));
                v["RotationType"] = json!(if m.origin == Origin::OnDemand {
                    "ON_DEMAND"
                } else {
                    "AUTOMATIC"
                });
            }
            (format!("{:010}", m.version), v)
        })
        .collect();
    let (page, next) = page(items, req.marker.as_deref(), limit)?;
    Ok(with_marker(json!({"Rotations": page}), next))
}

/// Deletes keys whose waiting period has passed (with their aliases) and rotates keys whose
/// rotation date has come, as of `now`. Returns (deleted, rotated).
pub async fn maintain(svc: &KmsService, now: u64) -> Result<(usize, usize), KmsError> {
    let all = svc
        .store
        .scan_all_typed::<KeyRecord>(keys::keys_all())
        .await?;
    let (mut deleted, mut rotated) = (0, 0);
    for rec in all {
        let key = rec.value;
        let store_key = keys::key(&region_of(&key), &key.key_id);
        if key.state == KeyState::PendingDeletion && key.deletion_ms.is_some_and(|d| d <= now) {
            let region = region_of(&key);
            let aliases = svc
                .store
                .scan_all_typed::<AliasRecord>(&keys::aliases(&region))
                .await?;
            let mut txn = Txn::new()
                .require_revision(&store_key, rec.revision)
                .delete(&store_key);
            for a in aliases
                .iter()
                .filter(|a| a.value.target_key_id == key.key_id)
            {
                let ak = keys::alias(&region, &a.value.name);
                txn = txn.require_revision(&ak, a.revision).delete(ak);
            }
            if svc.store.commit(txn).await?.is_committed() {
                tracing::info!(key_id = %key.key_id, region = %region, "KMS key deleted at the end of its waiting period");
                deleted += 1;
            }
            continue;
        }
        if key.state == KeyState::Enabled
            && let Some(r) = key.rotation
            && r.next_rotation_ms <= now
        {
            let mut k = key.clone();
            rotate(svc, &mut k, now, Origin::Automatic);
            k.rotation = Some(Rotation {
                period_days: r.period_days,
                next_rotation_ms: now + u64::from(r.period_days) * DAY_MS,
            });
            let txn = Txn::new()
                .require_revision(&store_key, rec.revision)
                .put(&store_key, encode(&store_key, &k)?);
            if svc.store.commit(txn).await?.is_committed() {
                tracing::info!(key_id = %key.key_id, "KMS key rotated on schedule");
                rotated += 1;
            }
        }
    }
    Ok((deleted, rotated))
}

/// The region in a key's ARN.
fn region_of(key: &KeyRecord) -> String {
    key.arn
        .split(':')
        .nth(3)
        .map(str::to_owned)
        .unwrap_or_default()
}
