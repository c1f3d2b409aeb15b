//! The secret lifecycle: CreateSecret, DescribeSecret, ListSecrets, UpdateSecret, DeleteSecret,
//! RestoreSecret, TagResource, UntagResource, the maintenance purge, and the answer of the
//! operations Gantry does not run (rotation, replication).

use std::collections::BTreeMap;

use gantry_aws_proto::pagination::epoch_seconds;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, Versioned, encode};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{AWSCURRENT, DAY_MS, SecretRecord, StoredValue, VersionMeta};
use crate::values::{decrypt_version, encrypt_value, new_version, same_value};
use crate::wire::{
    Tag, check_description, check_name, check_token, commit_with_retry, load_secret, max_results,
    merge_tags, page, parse, required, secret_value, tags_to_wire,
};
use crate::{SecretsManagerService, SmError, keys};

fn time(ms: u64) -> f64 {
    epoch_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// `arn:aws:secretsmanager:{region}:{account}:secret:{name}-{6 random letters and digits}`.
fn new_arn(ctx: &RequestContext, name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!(
        "arn:aws:secretsmanager:{}:{}:secret:{name}-{suffix}",
        ctx.region, ctx.account_id
    )
}

/// `KmsKeyId` as DescribeSecret shows it: the alias ARN when an alias was given, else the key
/// ARN; `None` for the AWS-managed key.
pub(crate) fn shown_key_id(
    ctx: &RequestContext,
    given: Option<&str>,
    key_arn: &str,
) -> Option<String> {
    let given = given.filter(|g| !g.is_empty())?;
    if given == crate::DEFAULT_KEY || given.ends_with(":alias/aws/secretsmanager") {
        return None;
    }
    if let Some(alias) = given.strip_prefix("alias/") {
        return Some(format!(
            "arn:aws:kms:{}:{}:alias/{alias}",
            ctx.region, ctx.account_id
        ));
    }
    if given.contains(":alias/") {
        return Some(given.to_owned());
    }
    Some(key_arn.to_owned())
}

/// The versions that have labels, as `VersionIdsToStages`.
fn stages_map(r: &SecretRecord) -> BTreeMap<String, Vec<String>> {
    r.versions
        .iter()
        .filter(|(_, v)| !v.stages.is_empty())
        .map(|(id, v)| (id.clone(), v.stages.clone()))
        .collect()
}

/// DescribeSecret's answer; ListSecrets names the version map `SecretVersionsToStages`.
pub(crate) fn describe_json(r: &SecretRecord, for_list: bool) -> Value {
    let mut v = json!({
        "ARN": r.arn,
        "Name": r.name,
        "LastChangedDate": time(r.last_changed_ms),
        "CreatedDate": time(r.created_ms),
    });
    if let Some(d) = &r.description {
        v["Description"] = json!(d);
    }
    if let Some(k) = &r.kms_key_id {
        v["KmsKeyId"] = json!(k);
    }
    if let Some(a) = r.last_accessed_ms {
        v["LastAccessedDate"] = json!(time(a));
    }
    if let Some(d) = r.deleted_ms {
        v["DeletedDate"] = json!(time(d));
    }
    if !r.tags.is_empty() {
        v["Tags"] = json!(tags_to_wire(&r.tags));
    }
    let stages = stages_map(r);
    if !stages.is_empty() {
        let field = if for_list {
            "SecretVersionsToStages"
        } else {
            "VersionIdsToStages"
        };
        v[field] = json!(stages);
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateSecretRequest {
    name: Option<String>,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    tags: Option<Vec<Tag>>,
    add_replica_regions: Option<Vec<Value>>,
    #[serde(default)]
    force_overwrite_replica_secret: bool,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

fn refuse_partner_type(kind: &Option<String>) -> Result<(), SmError> {
    if kind.as_ref().is_some_and(|k| !k.is_empty()) {
        return Err(SmError::InvalidRequest(
            "Type (secrets managed by a partner) is not supported by Gantry.".to_owned(),
        ));
    }
    Ok(())
}

pub(crate) async fn create(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: CreateSecretRequest = parse(body)?;
    let name = required(req.name, "name")?;
    check_name(&name)?;
    check_description(&req.description)?;
    if req.add_replica_regions.is_some_and(|r| !r.is_empty()) || req.force_overwrite_replica_secret
    {
        return Err(SmError::InvalidRequest(
            "Replica secrets (AddReplicaRegions) are not supported by Gantry.".to_owned(),
        ));
    }
    refuse_partner_type(&req.kind)?;
    let value = secret_value(req.secret_string, req.secret_binary)?;
    if let Some(t) = &req.client_request_token {
        check_token(t)?;
    }
    let mut tags = Vec::new();
    merge_tags(&mut tags, &req.tags.unwrap_or_default())?;
    let key_given = req.kms_key_id.filter(|k| !k.is_empty());

    let store_key = keys::secret(&ctx.region, &name);
    let _guard = svc.locks.lock(&store_key).await;
    let existing = svc.store.get_typed::<SecretRecord>(&store_key).await?;
    let mut expired = None;
    if let Some(e) = existing {
        if e.value.is_expired(ctx.now) {
            expired = Some(e);
        } else if e.value.is_deleted() {
            return Err(SmError::InvalidRequest(
                "You can't create this secret because a secret with this name is already scheduled for deletion.".to_owned(),
            ));
        } else {
            // The same request again (same token, same value) is answered as the first time.
            if let (Some(t), Some(v)) = (&req.client_request_token, &value)
                && e.value.versions.contains_key(t)
                && same_value(svc, ctx, &e.value, t, v).await?
            {
                return Ok(json!({"ARN": e.value.arn, "Name": e.value.name, "VersionId": t}));
            }
            return Err(SmError::ResourceExists(format!(
                "The operation failed because the secret {name} already exists."
            )));
        }
    }

    let arn = new_arn(ctx, &name);
    let mut record = SecretRecord {
        name: name.clone(),
        arn: arn.clone(),
        uid: uuid::Uuid::new_v4().simple().to_string(),
        description: req.description,
        kms_key_id: None,
        created_ms: ctx.now,
        last_changed_ms: ctx.now,
        last_accessed_ms: None,
        deleted_ms: None,
        deletion_ms: None,
        tags,
        policy: None,
        versions: BTreeMap::new(),
    };
    let mut txn = Txn::new();
    if let Some(old) = &expired {
        txn = purge_txn(svc, &ctx.region, &old.value, old.revision, txn).await?;
    } else {
        txn = txn.require_absent(&store_key);
    }
    let mut version_id = None;
    match &value {
        Some(v) => {
            let id = req
                .client_request_token
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let enc = encrypt_value(svc, ctx, key_given.as_deref(), &arn, &id, v).await?;
            record.kms_key_id = shown_key_id(ctx, key_given.as_deref(), &enc.key_arn);
            let value_key = keys::value(&ctx.region, &record.uid, &id);
            new_version(
                &mut record,
                &id,
                v.kind(),
                &enc.key_arn,
                &[AWSCURRENT.to_owned()],
                ctx.now,
            )?;
            txn = txn.put(
                &value_key,
                encode(&value_key, &StoredValue::from_blob(&enc.blob))?,
            );
            version_id = Some(id);
        }
        None => {
            if let Some(k) = &key_given {
                let arn = svc
                    .cipher
                    .check_key(ctx, k)
                    .await
                    .map_err(crate::values::encryption_failure)?;
                record.kms_key_id = shown_key_id(ctx, Some(k), &arn);
            }
        }
    }
    txn = txn.put(&store_key, encode(&store_key, &record)?);
    if !svc.store.commit(txn).await?.is_committed() {
        return Err(SmError::ResourceExists(format!(
            "The operation failed because the secret {name} already exists."
        )));
    }
    tracing::info!(secret = %arn, "secret created");
    let mut out = json!({"ARN": arn, "Name": name});
    if let Some(id) = version_id {
        out["VersionId"] = json!(id);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretIdRequest {
    secret_id: Option<String>,
}

pub(crate) async fn describe(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: SecretIdRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let s = load_secret(svc, ctx, &id).await?;
    Ok(describe_json(&s.value, false))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Filter {
    key: Option<String>,
    values: Option<Vec<String>>,
}

const FILTER_KEYS: &[&str] = &[
    "description",
    "name",
    "tag-key",
    "tag-value",
    "primary-region",
    "owning-service",
    "all",
];

/// Checks filters against the model: known keys, 1..=10 values of the allowed characters.
pub(crate) fn check_filters(filters: &[Filter]) -> Result<(), SmError> {
    if filters.len() > 10 {
        return Err(SmError::Validation(
            "1 validation error detected: Value at 'filters' failed to satisfy constraint: Member must have length less than or equal to 10".to_owned(),
        ));
    }
    for (i, f) in filters.iter().enumerate() {
        let key = f.key.as_deref().unwrap_or_default();
        if !FILTER_KEYS.contains(&key) {
            return Err(SmError::Validation(format!(
                "1 validation error detected: Value '{key}' at 'filters.{}.member.key' failed to satisfy constraint: Member must satisfy enum value set: [description, name, tag-key, tag-value, primary-region, owning-service, all]",
                i + 1
            )));
        }
        let values = f.values.as_deref().unwrap_or_default();
        if values.is_empty() || values.len() > 10 {
            return Err(SmError::invalid(format!(
                "Invalid filter values for key: {key}"
            )));
        }
        for v in values {
            let ok = v.chars().count() <= 512
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || " :_@/+=.-!".contains(c));
            if !ok {
                return Err(SmError::Validation(format!(
                    "1 validation error detected: Value '{v}' at 'filters.{}.member.values' failed to satisfy constraint: Member must satisfy regular expression pattern: ^\\!?[a-zA-Z0-9 :_@\\/\\+\\=\\.\\-\\!]*$",
                    i + 1
                )));
            }
        }
    }
    Ok(())
}

/// Whether `r` passes every filter (AND across filters; within one, any positive value and no
/// negated `!value`).
pub(crate) fn matches(ctx: &RequestContext, r: &SecretRecord, filters: &[Filter]) -> bool {
    filters.iter().all(|f| {
        let key = f.key.as_deref().unwrap_or_default();
        let test = |value: &str| -> bool {
            match key {
                "name" => r.name.starts_with(value),
                "description" => r
                    .description
                    .as_ref()
                    .is_some_and(|d| d.to_lowercase().starts_with(&value.to_lowercase())),
                "tag-key" => r.tags.iter().any(|(k, _)| k.starts_with(value)),
                "tag-value" => r.tags.iter().any(|(_, v)| v.starts_with(value)),
                "primary-region" => ctx.region.starts_with(value),
                "owning-service" => false,
                _ => value.split_whitespace().all(|word| {
                    let w = word.to_lowercase();
                    r.name.to_lowercase().contains(&w)
                        || r.description
                            .as_ref()
                            .is_some_and(|d| d.to_lowercase().contains(&w))
                        || r.tags.iter().any(|(k, v)| {
                            k.to_lowercase().contains(&w) || v.to_lowercase().contains(&w)
                        })
                }),
            }
        };
        let values = f.values.as_deref().unwrap_or_default();
        let (neg, pos): (Vec<&String>, Vec<&String>) =
            values.iter().partition(|v| v.starts_with('!'));
        (pos.is_empty() || pos.iter().any(|v| test(v))) && !neg.iter().any(|v| test(&v[1..]))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListSecretsRequest {
    #[serde(default)]
    include_planned_deletion: bool,
    max_results: Option<i64>,
    next_token: Option<String>,
    filters: Option<Vec<Filter>>,
    sort_order: Option<String>,
    sort_by: Option<String>,
}

/// The secrets of the region that pass `filters`, each with a unique sort key for `sort_by`.
pub(crate) async fn filtered(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    filters: &[Filter],
    include_deleted: bool,
    sort_by: &str,
) -> Result<Vec<(String, SecretRecord)>, SmError> {
    let all = svc
        .store
        .scan_all_typed::<SecretRecord>(&keys::secrets(&ctx.region))
        .await?;
    let mut items: Vec<(String, SecretRecord)> = all
        .into_iter()
        .map(|s| s.value)
        .filter(|s| !s.is_expired(ctx.now) && (include_deleted || !s.is_deleted()))
        .filter(|s| matches(ctx, s, filters))
        .map(|s| {
            let key = match sort_by {
                "name" => s.name.clone(),
                "last-accessed-date" => {
                    format!("{:020}\u{1}{}", s.last_accessed_ms.unwrap_or(0), s.name)
                }
                "last-changed-date" => format!("{:020}\u{1}{}", s.last_changed_ms, s.name),
                _ => format!("{:020}\u{1}{}", s.created_ms, s.name),
            };
            (key, s)
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(items)
}

pub(crate) async fn list(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: ListSecretsRequest = parse(body)?;
    let limit = max_results(req.max_results, 100, 100)?;
    let filters = req.filters.unwrap_or_default();
    check_filters(&filters)?;
    let descending = match req.sort_order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            return Err(SmError::Validation(format!(
                "1 validation error detected: Value '{o}' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum value set: [asc, desc]"
            )));
        }
    };
    let sort_by = req.sort_by.as_deref().unwrap_or("created-date");
    if ![
        "created-date",
        "last-accessed-date",
        "last-changed-date",
        "name",
    ]
    .contains(&sort_by)
    {
        return Err(SmError::Validation(format!(
            "1 validation error detected: Value '{sort_by}' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: [created-date, last-accessed-date, last-changed-date, name]"
        )));
    }
    let mut items = filtered(svc, ctx, &filters, req.include_planned_deletion, sort_by).await?;
    if descending {
        items.reverse();
    }
    let (page, next) = page(items, req.next_token.as_deref(), limit, descending)?;
    let mut out =
        json!({"SecretList": page.iter().map(|s| describe_json(s, true)).collect::<Vec<_>>()});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateSecretRequest {
    secret_id: Option<String>,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

pub(crate) async fn update(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: UpdateSecretRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    check_description(&req.description)?;
    refuse_partner_type(&req.kind)?;
    let value = secret_value(req.secret_string, req.secret_binary)?;
    if let Some(t) = &req.client_request_token {
        check_token(t)?;
    }
    let first = load_secret(svc, ctx, &id).await?;
    let store_key = keys::secret(&ctx.region, &first.value.name);
    let _guard = svc.locks.lock(&store_key).await;
    let version_id = req
        .client_request_token
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let new_id = commit_with_retry(svc.store.as_ref(), || async {
        let Versioned {
            value: mut record,
            revision,
        } = load_secret(svc, ctx, &id).await?;
        if record.is_deleted() {
            return Err(SmError::marked_for_deletion());
        }
        let mut txn = Txn::new().require_revision(&store_key, revision);
        if let Some(d) = &req.description {
            record.description = Some(d.clone());
        }
        // A new key re-encrypts the versions that have the rotation labels.
        if let Some(k) = &req.kms_key_id {
            let given = Some(k.as_str()).filter(|k| !k.is_empty());
            let key_arn = match given {
                Some(g) => svc
                    .cipher
                    .check_key(ctx, g)
                    .await
                    .map_err(crate::values::encryption_failure)?,
                None => svc
                    .cipher
                    .check_key(ctx, crate::DEFAULT_KEY)
                    .await
                    .map_err(crate::values::encryption_failure)?,
            };
            record.kms_key_id = shown_key_id(ctx, given, &key_arn);
            let labelled: Vec<String> = record
                .versions
                .iter()
                .filter(|(_, v)| {
                    v.stages
                        .iter()
                        .any(|s| matches!(s.as_str(), "AWSCURRENT" | "AWSPENDING" | "AWSPREVIOUS"))
                })
                .map(|(id, _)| id.clone())
                .collect();
            for vid in labelled {
                let plain = decrypt_version(svc, ctx, &record, &vid).await?;
                let enc = encrypt_value(svc, ctx, given, &record.arn, &vid, &plain).await?;
                if let Some(meta) = record.versions.get_mut(&vid) {
                    meta.kms_key_arn = enc.key_arn.clone();
                }
                let value_key = keys::value(&ctx.region, &record.uid, &vid);
                txn = txn.put(&value_key, encode(&value_key, &StoredValue::from_blob(&enc.blob))?);
            }
        }
        let mut new_id = None;
        if let Some(v) = &value {
            if record.versions.contains_key(&version_id) {
                if same_value(svc, ctx, &record, &version_id, v).await? {
                    return Ok((Txn::new(), Some(version_id.clone())));
                }
                return Err(SmError::ResourceExists(format!(
                    "You can't use ClientRequestToken {version_id} because that value is already in use for a version of secret {}.",
                    record.arn
                )));
            }
            let key = record.kms_key_id.clone();
            let enc = encrypt_value(svc, ctx, key.as_deref(), &record.arn, &version_id, v).await?;
            let removed = new_version(
                &mut record,
                &version_id,
                v.kind(),
                &enc.key_arn,
                &[AWSCURRENT.to_owned()],
                ctx.now,
            )?;
            let value_key = keys::value(&ctx.region, &record.uid, &version_id);
            txn = txn
                .require_absent(&value_key)
                .put(&value_key, encode(&value_key, &StoredValue::from_blob(&enc.blob))?);
            for r in removed {
                txn = txn.delete(keys::value(&ctx.region, &record.uid, &r));
            }
            new_id = Some(version_id.clone());
        }
        record.last_changed_ms = ctx.now;
        txn = txn.put(&store_key, encode(&store_key, &record)?);
        Ok((txn, new_id))
    })
    .await?;
    let mut out = json!({"ARN": first.value.arn, "Name": first.value.name});
    if let Some(v) = new_id {
        out["VersionId"] = json!(v);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteSecretRequest {
    secret_id: Option<String>,
    recovery_window_in_days: Option<i64>,
    #[serde(default)]
    force_delete_without_recovery: bool,
}

/// Adds the deletion of `r` (its record, guarded by `revision`, and every value) to `txn`.
async fn purge_txn(
    svc: &SecretsManagerService,
    region: &str,
    r: &SecretRecord,
    revision: u64,
    txn: Txn,
) -> Result<Txn, SmError> {
    let store_key = keys::secret(region, &r.name);
    let mut txn = txn
        .require_revision(&store_key, revision)
        .delete(&store_key);
    let mut start: Option<String> = None;
    loop {
        let page = svc
            .store
            .scan(&keys::values(region, &r.uid), start.as_deref(), 1000)
            .await?;
        for rec in &page.records {
            txn = txn.delete(&rec.key);
        }
        match page.next {
            Some(n) => start = Some(n),
            None => return Ok(txn),
        }
    }
}

pub(crate) async fn delete(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: DeleteSecretRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    if let Some(days) = req.recovery_window_in_days {
        if req.force_delete_without_recovery {
            return Err(SmError::invalid(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
            ));
        }
        if !(7..=30).contains(&days) {
            return Err(SmError::invalid(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
            ));
        }
    }
    let days = req.recovery_window_in_days.unwrap_or(30) as u64;
    let first = load_secret(svc, ctx, &id).await?;
    let store_key = keys::secret(&ctx.region, &first.value.name);
    let _guard = svc.locks.lock(&store_key).await;
    let deletion_ms = commit_with_retry(svc.store.as_ref(), || async {
        let Versioned {
            value: mut record,
            revision,
        } = load_secret(svc, ctx, &id).await?;
        if req.force_delete_without_recovery {
            let txn = purge_txn(svc, &ctx.region, &record, revision, Txn::new()).await?;
            return Ok((txn, ctx.now));
        }
        if record.is_deleted() {
            return Err(SmError::marked_for_deletion());
        }
        let deletion_ms = ctx.now + days * DAY_MS;
        record.deleted_ms = Some(ctx.now);
        record.deletion_ms = Some(deletion_ms);
        let txn = Txn::new()
            .require_revision(&store_key, revision)
            .put(&store_key, encode(&store_key, &record)?);
        Ok((txn, deletion_ms))
    })
    .await?;
    tracing::info!(secret = %first.value.arn, force = req.force_delete_without_recovery, "secret deleted");
    Ok(json!({
        "ARN": first.value.arn,
        "Name": first.value.name,
        "DeletionDate": time(deletion_ms),
    }))
}

pub(crate) async fn restore(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: SecretIdRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let first = load_secret(svc, ctx, &id).await?;
    let store_key = keys::secret(&ctx.region, &first.value.name);
    let _guard = svc.locks.lock(&store_key).await;
    commit_with_retry(svc.store.as_ref(), || async {
        let Versioned {
            value: mut record,
            revision,
        } = load_secret(svc, ctx, &id).await?;
        if !record.is_deleted() {
            return Ok((Txn::new(), ()));
        }
        record.deleted_ms = None;
        record.deletion_ms = None;
        let txn = Txn::new()
            .require_revision(&store_key, revision)
            .put(&store_key, encode(&store_key, &record)?);
        Ok((txn, ()))
    })
    .await?;
    Ok(json!({"ARN": first.value.arn, "Name": first.value.name}))
}

/// Applies `change` to the secret `id` names (not scheduled for deletion).
pub(crate) async fn update_record(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    id: &str,
    change: impl Fn(&mut SecretRecord) -> Result<(), SmError>,
) -> Result<SecretRecord, SmError> {
    let first = load_secret(svc, ctx, id).await?;
    let store_key = keys::secret(&ctx.region, &first.value.name);
    let _guard = svc.locks.lock(&store_key).await;
    commit_with_retry(svc.store.as_ref(), || async {
        let Versioned {
            value: mut record,
            revision,
        } = load_secret(svc, ctx, id).await?;
        if record.is_deleted() {
            return Err(SmError::marked_for_deletion());
        }
        change(&mut record)?;
        let txn = Txn::new()
            .require_revision(&store_key, revision)
            .put(&store_key, encode(&store_key, &record)?);
        Ok((txn, record))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceRequest {
    secret_id: Option<String>,
    tags: Option<Vec<Tag>>,
}

pub(crate) async fn tag(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: TagResourceRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let tags = required(req.tags, "tags")?;
    merge_tags(&mut Vec::new(), &tags)?;
    update_record(svc, ctx, &id, |r| merge_tags(&mut r.tags, &tags)).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagResourceRequest {
    secret_id: Option<String>,
    tag_keys: Option<Vec<String>>,
}

pub(crate) async fn untag(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SmError> {
    let req: UntagResourceRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let remove = required(req.tag_keys, "tagKeys")?;
    update_record(svc, ctx, &id, |r| {
        r.tags.retain(|(k, _)| !remove.contains(k));
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// Rotation and replication: the secret must exist, then the answer says Gantry does not run
/// them.
pub(crate) async fn unsupported(
    svc: &SecretsManagerService,
    body: &[u8],
    ctx: &RequestContext,
    what: &str,
) -> Result<Value, SmError> {
    let req: SecretIdRequest = parse(body)?;
    let id = required(req.secret_id, "secretId")?;
    let s = load_secret(svc, ctx, &id).await?;
    if s.value.is_deleted() {
        return Err(SmError::marked_for_deletion());
    }
    let hint = if what == "Rotation" {
        "Gantry does not run rotation Lambda functions; store a new value with PutSecretValue or UpdateSecret instead."
    } else {
        "Gantry keeps each secret in its own Region only."
    };
    Err(SmError::InvalidRequest(format!(
        "{what} is not supported by Gantry's Secrets Manager: {hint}"
    )))
}

/// Deletes every secret whose recovery window is over as of `now`.
pub(crate) async fn purge_expired(svc: &SecretsManagerService, now: u64) -> Result<usize, SmError> {
    let all = svc
        .store
        .scan_all_typed::<SecretRecord>(keys::secrets_all())
        .await?;
    let mut n = 0;
    for s in all.into_iter().filter(|s| s.value.is_expired(now)) {
        // The region is the ARN's fourth field.
        let region = s.value.arn.split(':').nth(3).unwrap_or_default().to_owned();
        let txn = purge_txn(svc, &region, &s.value, s.revision, Txn::new()).await?;
        if svc.store.commit(txn).await?.is_committed() {
            tracing::info!(secret = %s.value.arn, "secret deleted at the end of its recovery window");
            n += 1;
        }
    }
    Ok(n)
}

impl StoredValue {
    pub(crate) fn from_blob(blob: &[u8]) -> Self {
        use base64::Engine as _;
        Self {
            ciphertext: base64::engine::general_purpose::STANDARD.encode(blob),
        }
    }
}

/// Unused-label versions are kept as `VersionMeta` without stages; used by `new_version`.
pub(crate) fn version_meta(kind: crate::model::ValueKind, key_arn: &str, now: u64) -> VersionMeta {
    VersionMeta {
        stages: Vec::new(),
        created_ms: now,
        last_accessed_ms: None,
        kind,
        kms_key_arn: key_arn.to_owned(),
    }
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

    #[test]
    fn arns_end_with_six_random_characters() {
        let a = new_arn(&ctx(), "prod/db");
        let (head, suffix) = a.rsplit_once('-').unwrap();
        assert_eq!(
            head,
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db"
        );
        assert_eq!(suffix.len(), 6);
        assert!(suffix.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, new_arn(&ctx(), "prod/db"));
    }

    #[test]
    fn key_ids_show_as_describe_secret_shows_them() {
        let c = ctx();
        let key = "arn:aws:kms:us-east-1:111122223333:key/k";
        assert_eq!(shown_key_id(&c, None, key), None);
        assert_eq!(
            shown_key_id(&c, Some("alias/aws/secretsmanager"), key),
            None
        );
        assert_eq!(
            shown_key_id(&c, Some("alias/app"), key).unwrap(),
            "arn:aws:kms:us-east-1:111122223333:alias/app"
        );
        assert_eq!(shown_key_id(&c, Some("k"), key).unwrap(), key);
    }

    fn filter(key: &str, values: &[&str]) -> Filter {
        Filter {
            key: Some(key.into()),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn filters_match_prefixes_with_negation() {
        let c = ctx();
        let r = SecretRecord {
            name: "prod/db".into(),
            arn: "a".into(),
            uid: "u".into(),
            description: Some("Main Database".into()),
            kms_key_id: None,
            created_ms: 0,
            last_changed_ms: 0,
            last_accessed_ms: None,
            deleted_ms: None,
            deletion_ms: None,
            tags: vec![("env".into(), "production".into())],
            policy: None,
            versions: BTreeMap::new(),
        };
        assert!(matches(&c, &r, &[filter("name", &["prod/"])]));
        assert!(!matches(&c, &r, &[filter("name", &["Prod/"])]));
        assert!(matches(&c, &r, &[filter("description", &["main"])]));
        assert!(matches(
            &c,
            &r,
            &[filter("tag-key", &["env"]), filter("tag-value", &["prod"])]
        ));
        assert!(!matches(&c, &r, &[filter("name", &["!prod"])]));
        assert!(matches(&c, &r, &[filter("name", &["!dev"])]));
        assert!(matches(&c, &r, &[filter("all", &["database prod"])]));
        assert!(check_filters(&[filter("bogus", &["x"])]).is_err());
        assert!(check_filters(&[filter("name", &["a b:c_@/+=.-"])]).is_ok());
        assert!(check_filters(&[filter("name", &["a#b"])]).is_err());
    }
}
