//! Secret values: GetSecretValue, BatchGetSecretValue, PutSecretValue, UpdateSecretVersionStage,
//! ListSecretVersionIds, and the encryption of each version through [`crate::SecretCipher`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_aws_proto::pagination::epoch_seconds;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, Versioned, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{AWSCURRENT, SecretRecord, StoredValue, ValueKind, day_of};
use crate::secrets::{check_filters, filtered, version_meta};
use crate::stages::{self, StageError};
use crate::wire::{
    SecretValue, check_token, commit_with_retry, load_secret, max_results, page, parse, required,
    secret_value,
};
use crate::{Encrypted, EncryptionContext, KeyFailure, SecretsManagerService, SmError, keys};

fn time(ms: u64) -> f64 {
    epoch_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// The encryption context of one version.
pub(crate) fn context_for(arn: &str, version_id: &str) -> EncryptionContext {
    EncryptionContext::from([
        ("SecretARN".to_owned(), arn.to_owned()),
        ("SecretVersionId".to_owned(), version_id.to_owned()),
    ])
}

/// KMS refusing the caller the key, as Secrets Manager words it.
fn kms_denied(f: &KeyFailure) -> Option<SmError> {
    (f.code == "AccessDeniedException")
        .then(|| SmError::AccessDenied(format!("Access to KMS is not allowed ({})", f.message)))
}

pub(crate) fn encryption_failure(f: KeyFailure) -> SmError {
    if f.internal {
        return SmError::Kms(f.message);
    }
    if let Some(e) = kms_denied(&f) {
        return e;
    }
    SmError::EncryptionFailure(format!(
        "Secrets Manager can't encrypt the protected secret text using the provided KMS key. Check that the KMS key is available, enabled, and not in an invalid state. ({}: {})",
        f.code, f.message
    ))
}

pub(crate) fn decryption_failure(f: KeyFailure) -> SmError {
    if f.internal {
        return SmError::Kms(f.message);
    }
    if let Some(e) = kms_denied(&f) {
        return e;
    }
    SmError::DecryptionFailure(format!(
        "Secrets Manager can't decrypt the protected secret text using the provided KMS key. ({}: {})",
        f.code, f.message
    ))
}

/// Encrypts `value` for version `version_id` of secret `arn` with `key` (`None`: the default).
pub(crate) async fn encrypt_value(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    key: Option<&str>,
    arn: &str,
    version_id: &str,
    value: &SecretValue,
) -> Result<Encrypted, SmError> {
    svc.cipher
        .encrypt(ctx, key, value.bytes(), &context_for(arn, version_id))
        .await
        .map_err(encryption_failure)
}

/// The decrypted value of version `version_id` of `r`.
pub(crate) async fn decrypt_version(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    r: &SecretRecord,
    version_id: &str,
) -> Result<SecretValue, SmError> {
    let meta = r.versions.get(version_id).ok_or_else(|| {
        SmError::ResourceNotFound(format!(
            "Secrets Manager can't find the specified secret value for VersionId: {version_id}"
        ))
    })?;
    let key = keys::value(&ctx.region, &r.uid, version_id);
    let stored = svc
        .store
        .get_typed::<StoredValue>(&key)
        .await?
        .ok_or_else(|| {
            SmError::Store(gantry_store::StoreError::Codec {
                key: key.clone(),
                detail: "the version's value record is missing".to_owned(),
            })
        })?;
    let blob = STANDARD
        .decode(stored.value.ciphertext.as_bytes())
        .map_err(|e| {
            SmError::Store(gantry_store::StoreError::Codec {
                key: key.clone(),
                detail: e.to_string(),
            })
        })?;
    let plain = svc
        .cipher
        .decrypt(ctx, &blob, &context_for(&r.arn, version_id))
        .await
        .map_err(decryption_failure)?;
    match meta.kind {
        ValueKind::Binary => Ok(SecretValue::Binary(plain)),
        ValueKind::String => String::from_utf8(plain)
            .map(SecretValue::String)
            .map_err(|_| {
                SmError::Store(gantry_store::StoreError::Codec {
                    key,
                    detail: "a string version decrypted to bytes that are not UTF-8".to_owned(),
                })
            }),
    }
}

/// Whether version `version_id` of `r` holds exactly `value` (an idempotent retry).
pub(crate) async fn same_value(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    r: &SecretRecord,
    version_id: &str,
    value: &SecretValue,
) -> Result<bool, SmError> {
    Ok(&decrypt_version(svc, ctx, r, version_id).await? == value)
}

/// Adds version `id` to `r` with `labels` (moving them from other versions) and removes
/// outdated versions; returns the removed ids (their value records must be deleted too).
pub(crate) fn new_version(
    r: &mut SecretRecord,
    id: &str,
    kind: ValueKind,
    key_arn: &str,
    labels: &[String],
    now: u64,
) -> Result<Vec<String>, SmError> {
    r.versions
        .insert(id.to_owned(), version_meta(kind, key_arn, now));
    stages::attach_new_version(&mut r.versions, id, labels).map_err(stage_error)?;
    r.last_changed_ms = now;
    Ok(stages::prune(&mut r.versions, now))
}

fn stage_error(e: StageError) -> SmError {
    match e {
        StageError::NoSuchVersion(_) => SmError::ResourceNotFound(e.to_string()),
        StageError::TooManyLabels => SmError::LimitExceeded(e.to_string()),
        other => SmError::invalid(other.to_string()),
    }
}

/// A value read for a caller: what GetSecretValue answers.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedSecret {
    pub arn: String,
    pub name: String,
    pub version_id: String,
    pub stages: Vec<String>,
    pub created_ms: u64,
    pub value: SecretValue,
}

impl std::fmt::Debug for ResolvedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedSecret")
            .field("arn", &self.arn)
            .field("version_id", &self.version_id)
            .finish_non_exhaustive()
    }
}

impl ResolvedSecret {
    fn to_wire(&self) -> Value {
        let mut v = json!({
            "ARN": self.arn,
            "Name": self.name,
            "VersionId": self.version_id,
            "VersionStages": self.stages,
            "CreatedDate": time(self.created_ms),
        });
        self.value.add_to(&mut v);
        v
    }
}

fn check_stage(stage: &str) -> Result<(), SmError> {
    if stage.is_empty() || stage.chars().count() > 256 {
        return Err(SmError::Validation(
            "1 validation error detected: Value at 'versionStage' failed to satisfy constraint: Member must have length between 1 and 256".to_owned(),
        ));
    }
    Ok(())
}

/// GetSecretValue's work: select the version, decrypt it, note the day it was read.
pub(crate) async fn read(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    secret_id: &str,
    version_id: Option<&str>,
    version_stage: Option<&str>,
) -> Result<ResolvedSecret, SmError> {
    if let Some(v) = version_id
        && !(32..=64).contains(&v.chars().count())
    {
        return Err(SmError::Validation(
            "1 validation error detected: Value at 'versionId' failed to satisfy constraint: Member must have length between 32 and 64".to_owned(),
        ));
    }
    if let Some(s) = version_stage {
        check_stage(s)?;
    }
    let Versioned { value: r, revision } = load_secret(svc, ctx, secret_id).await?;
    if r.is_deleted() {
        return Err(SmError::marked_for_deletion());
    }
    let id = match (version_id, version_stage) {
        (Some(id), stage) => {
            let meta = r.versions.get(id).ok_or_else(|| {
                SmError::ResourceNotFound(format!(
                    "Secrets Manager can't find the specified secret value for VersionId: {id}"
                ))
            })?;
            if let Some(s) = stage
                && !meta.stages.iter().any(|x| x == s)
            {
                return Err(SmError::InvalidRequest(
                    "You provided a VersionStage that is not associated to the provided VersionId."
                        .to_owned(),
                ));
            }
            id.to_owned()
        }
        (None, stage) => {
            let stage = stage.unwrap_or(AWSCURRENT);
            r.version_with_stage(stage)
                .map(|(id, _)| id.clone())
                .ok_or_else(|| {
                    SmError::ResourceNotFound(format!(
                        "Secrets Manager can't find the specified secret value for staging label: {stage}"
                    ))
                })?
        }
    };
    let value = decrypt_version(svc, ctx, &r, &id).await?;
    let meta = &r.versions[&id];
    let resolved = ResolvedSecret {
        arn: r.arn.clone(),
        name: r.name.clone(),
        version_id: id.clone(),
        stages: meta.stages.clone(),
        created_ms: meta.created_ms,
        value,
    };
    note_access(svc, ctx, r, revision, &id).await;
    Ok(resolved)
}

/// Records the day a secret and version were last read, once per day; a conflict or failure
/// only loses the note.
async fn note_access(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    mut r: SecretRecord,
    revision: u64,
    version_id: &str,
) {
    let today = day_of(ctx.now);
    let version_noted = r
        .versions
        .get(version_id)
        .is_some_and(|v| v.last_accessed_ms == Some(today));
    if r.last_accessed_ms == Some(today) && version_noted {
        return;
    }
    r.last_accessed_ms = Some(today);
    if let Some(v) = r.versions.get_mut(version_id) {
        v.last_accessed_ms = Some(today);
    }
    let key = keys::secret(&ctx.region, &r.name);
    let Ok(bytes) = encode(&key, &r) else {
        return;
    };
    let txn = Txn::new().require_revision(&key, revision).put(&key, bytes);
    if let Err(error) = svc.store.commit(txn).await {
        tracing::debug!(%error, "last-accessed date not recorded");
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetSecretValueRequest {
    secret_id: Option<String>,
    version_id: Option<String>,
    version_stage: Option<String>,
}

pub(crate) async fn get(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: GetSecretValueRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let r = read(
        svc,
        ctx,
        &id,
        req.version_id.as_deref(),
        req.version_stage.as_deref(),
    )
    .await?;
    Ok(r.to_wire())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchGetSecretValueRequest {
    secret_id_list: Option<Vec<String>>,
    filters: Option<Vec<crate::secrets::Filter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) async fn batch_get(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: BatchGetSecretValueRequest = parse(body)?;
    let mut values = Vec::new();
    let mut errors = Vec::new();
    match (req.secret_id_list, req.filters) {
        (Some(_), Some(_)) => Err(SmError::invalid(
            "Either 'SecretIdList' or 'Filters' must be provided, but not both.",
        )),
        (None, None) => Err(SmError::invalid(
            "Either 'SecretIdList' or 'Filters' must be provided.",
        )),
        (Some(ids), None) => {
            if req.max_results.is_some() || req.next_token.is_some() {
                return Err(SmError::invalid(
                    "'Filters' not specified. 'Filters' must also be specified when 'MaxResults' or 'NextToken' is provided.",
                ));
            }
            if ids.is_empty() || ids.len() > 20 {
                return Err(SmError::Validation(
                    "1 validation error detected: Value at 'secretIdList' failed to satisfy constraint: Member must have length between 1 and 20".to_owned(),
                ));
            }
            for id in ids {
                match read(svc, ctx, &id, None, None).await {
                    Ok(r) => values.push(r.to_wire()),
                    Err(e @ (SmError::Store(_) | SmError::Kms(_) | SmError::Contention(_))) => {
                        return Err(e);
                    }
                    Err(e) => errors.push(json!({
                        "SecretId": id,
                        "ErrorCode": e.aws_code(),
                        "Message": e.to_string(),
                    })),
                }
            }
            Ok(json!({"SecretValues": values, "Errors": errors}))
        }
        (None, Some(filters)) => {
            check_filters(&filters)?;
            let limit = max_results(req.max_results, 20, 20)?;
            let items = filtered(svc, ctx, &filters, false, "created-date").await?;
            let (page, next) = page(items, req.next_token.as_deref(), limit, false)?;
            for s in page {
                match read(svc, ctx, &s.arn, None, None).await {
                    Ok(r) => values.push(r.to_wire()),
                    Err(e @ (SmError::Store(_) | SmError::Kms(_) | SmError::Contention(_))) => {
                        return Err(e);
                    }
                    Err(e) => errors.push(json!({
                        "SecretId": s.arn,
                        "ErrorCode": e.aws_code(),
                        "Message": e.to_string(),
                    })),
                }
            }
            let mut out = json!({"SecretValues": values, "Errors": errors});
            if let Some(t) = next {
                out["NextToken"] = json!(t);
            }
            Ok(out)
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutSecretValueRequest {
    secret_id: Option<String>,
    client_request_token: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    version_stages: Option<Vec<String>>,
    rotation_token: Option<String>,
}

pub(crate) async fn put(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: PutSecretValueRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    if req.rotation_token.is_some() {
        return Err(SmError::InvalidRequest(
            "RotationToken is not supported: Gantry does not run rotation functions.".to_owned(),
        ));
    }
    let value = secret_value(req.secret_string, req.secret_binary)?.ok_or_else(|| {
        SmError::InvalidRequest("You must provide either SecretString or SecretBinary.".to_owned())
    })?;
    let labels = req
        .version_stages
        .unwrap_or_else(|| vec![AWSCURRENT.to_owned()]);
    if labels.is_empty() || labels.len() > 20 {
        return Err(SmError::Validation(
            "1 validation error detected: Value at 'versionStages' failed to satisfy constraint: Member must have length between 1 and 20".to_owned(),
        ));
    }
    for l in &labels {
        check_stage(l)?;
    }
    let version_id = match req.client_request_token {
        Some(t) => {
            check_token(&t)?;
            t
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let first = load_secret(svc, ctx, &id).await?;
    let store_key = keys::secret(&ctx.region, &first.value.name);
    let _guard = svc.locks.lock(&store_key).await;
    let stages = commit_with_retry(svc.store.as_ref(), || async {
        let Versioned {
            value: mut record,
            revision,
        } = load_secret(svc, ctx, &id).await?;
        if record.is_deleted() {
            return Err(SmError::marked_for_deletion());
        }
        if record.versions.contains_key(&version_id) {
            if same_value(svc, ctx, &record, &version_id, &value).await? {
                let stages = record.versions[&version_id].stages.clone();
                return Ok((Txn::new(), stages));
            }
            return Err(SmError::ResourceExists(format!(
                "You can't use ClientRequestToken {version_id} because that value is already in use for a version of secret {}.",
                record.arn
            )));
        }
        let key = record.kms_key_id.clone();
        let enc = encrypt_value(svc, ctx, key.as_deref(), &record.arn, &version_id, &value).await?;
        let removed = new_version(
            &mut record,
            &version_id,
            value.kind(),
            &enc.key_arn,
            &labels,
            ctx.now,
        )?;
        let value_key = keys::value(&ctx.region, &record.uid, &version_id);
        let mut txn = Txn::new()
            .require_revision(&store_key, revision)
            .require_absent(&value_key)
            .put(&value_key, encode(&value_key, &StoredValue::from_blob(&enc.blob))?);
        for r in removed {
            txn = txn.delete(keys::value(&ctx.region, &record.uid, &r));
        }
        let stages = record.versions[&version_id].stages.clone();
        txn = txn.put(&store_key, encode(&store_key, &record)?);
        Ok((txn, stages))
    })
    .await?;
    Ok(json!({
        "ARN": first.value.arn,
        "Name": first.value.name,
        "VersionId": version_id,
        "VersionStages": stages,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateSecretVersionStageRequest {
    secret_id: Option<String>,
    version_stage: Option<String>,
    remove_from_version_id: Option<String>,
    move_to_version_id: Option<String>,
}

pub(crate) async fn update_stage(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: UpdateSecretVersionStageRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let stage = required(req.version_stage, "versionStage")?;
    check_stage(&stage)?;
    let r = crate::secrets::update_record(svc, ctx, &id, |r| {
        stages::move_label(
            &mut r.versions,
            &stage,
            req.remove_from_version_id.as_deref(),
            req.move_to_version_id.as_deref(),
        )
        .map_err(stage_error)?;
        r.last_changed_ms = ctx.now;
        Ok(())
    })
    .await?;
    Ok(json!({"ARN": r.arn, "Name": r.name}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListSecretVersionIdsRequest {
    secret_id: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
    #[serde(default)]
    include_deprecated: bool,
}

pub(crate) async fn list_versions(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: ListSecretVersionIdsRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let limit = max_results(req.max_results, 100, 100)?;
    let r = load_secret(svc, ctx, &id).await?.value;
    // Newest first: the key sorts descending by creation time, then id.
    let mut items: Vec<(String, Value)> = r
        .versions
        .iter()
        .filter(|(_, v)| req.include_deprecated || !v.stages.is_empty())
        .map(|(vid, v)| {
            let mut e = json!({
                "VersionId": vid,
                "VersionStages": v.stages,
                "CreatedDate": time(v.created_ms),
                "KmsKeyIds": [v.kms_key_arn],
            });
            if let Some(a) = v.last_accessed_ms {
                e["LastAccessedDate"] = json!(time(a));
            }
            (format!("{:020}\u{1}{vid}", u64::MAX - v.created_ms), e)
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = page(items, req.next_token.as_deref(), limit, false)?;
    let mut out = json!({"Versions": page, "ARN": r.arn, "Name": r.name});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}
