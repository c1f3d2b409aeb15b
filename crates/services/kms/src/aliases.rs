//! CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{AliasRecord, KeyManager, KeyRecord, alias_arn};
use crate::wire::{
    alias_not_found, commit_with_retry, key_ref, limit, load_key, load_key_member,
    not_pending_deletion, page, parse, required, with_marker,
};
use crate::{KmsError, KmsService, keys, managed};

/// Most aliases one key may have.
const MAX_ALIASES_PER_KEY: usize = 50;

/// Checks an alias name: `alias/` then `[a-zA-Z0-9/_-]`, at most 256 characters, outside the
/// reserved `alias/aws/` namespace.
pub fn check_alias_name(name: &str) -> Result<(), KmsError> {
    if name.is_empty()
        || name.len() > 256
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'))
    {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        )));
    }
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {name} must begin with 'alias/'."
        )));
    };
    if rest.is_empty() || name.contains(':') {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {name} contains invalid characters for an alias."
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {name} is in the reserved alias/aws/ namespace: those aliases belong to AWS-managed keys."
        )));
    }
    Ok(())
}

/// The target of CreateAlias and UpdateAlias: a customer-managed key not pending deletion.
async fn target(
    svc: &KmsService,
    ctx: &RequestContext,
    target: Option<String>,
) -> Result<KeyRecord, KmsError> {
    let raw = required(target, "targetKeyId")?;
    if raw.starts_with("alias/") || (raw.starts_with("arn:") && raw.contains(":alias/")) {
        return Err(KmsError::validation(
            "Aliases must refer to keys. Not aliases",
        ));
    }
    let key = load_key_member(svc, ctx, Some(raw), false).await?.value;
    if key.manager == KeyManager::Aws {
        return Err(managed::denied(ctx, "kms:CreateAlias", &key.arn));
    }
    not_pending_deletion(&key)?;
    Ok(key)
}

async fn aliases_of(
    svc: &KmsService,
    ctx: &RequestContext,
    key_id: &str,
) -> Result<usize, KmsError> {
    Ok(svc
        .store
        .scan_all_typed::<AliasRecord>(&keys::aliases(&ctx.region))
        .await?
        .iter()
        .filter(|a| a.value.target_key_id == key_id)
        .count())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasRequest {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

pub(crate) async fn create(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: AliasRequest = parse(body)?;
    let name = required(req.alias_name, "aliasName")?;
    check_alias_name(&name)?;
    let key = target(svc, ctx, req.target_key_id).await?;
    if aliases_of(svc, ctx, &key.key_id).await? >= MAX_ALIASES_PER_KEY {
        return Err(KmsError::LimitExceeded(format!(
            "{} already has {MAX_ALIASES_PER_KEY} aliases.",
            key.arn
        )));
    }
    let store_key = keys::alias(&ctx.region, &name);
    let alias = AliasRecord {
        name: name.clone(),
        target_key_id: key.key_id.clone(),
        created_ms: ctx.now,
        updated_ms: ctx.now,
    };
    let txn = Txn::new()
        .require_absent(&store_key)
        .put(&store_key, encode(&store_key, &alias)?);
    if !svc.store.commit(txn).await?.is_committed() {
        return Err(KmsError::AlreadyExists(format!(
            "An alias with the name {} already exists",
            alias_arn(&ctx.region, &ctx.account_id, &name)
        )));
    }
    Ok(json!({}))
}

pub(crate) async fn update(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: AliasRequest = parse(body)?;
    let name = required(req.alias_name, "aliasName")?;
    check_alias_name(&name)?;
    let key = target(svc, ctx, req.target_key_id).await?;
    let store_key = keys::alias(&ctx.region, &name);
    commit_with_retry(svc.store.as_ref(), || async {
        let mut alias = svc
            .store
            .get_typed::<AliasRecord>(&store_key)
            .await?
            .ok_or_else(|| alias_not_found(ctx, &name))?;
        let current = load_key(
            svc,
            ctx,
            &crate::wire::KeyRef::Id(alias.value.target_key_id.clone()),
        )
        .await?;
        not_pending_deletion(&current.value)?;
        alias.value.target_key_id = key.key_id.clone();
        alias.value.updated_ms = ctx.now;
        let txn = Txn::new()
            .require_revision(&store_key, alias.revision)
            .put(&store_key, encode(&store_key, &alias.value)?);
        Ok((txn, ()))
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteAliasRequest {
    alias_name: Option<String>,
}

pub(crate) async fn delete(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: DeleteAliasRequest = parse(body)?;
    let name = required(req.alias_name, "aliasName")?;
    check_alias_name(&name)?;
    let store_key = keys::alias(&ctx.region, &name);
    commit_with_retry(svc.store.as_ref(), || async {
        let alias = svc
            .store
            .get_typed::<AliasRecord>(&store_key)
            .await?
            .ok_or_else(|| alias_not_found(ctx, &name))?;
        let txn = Txn::new()
            .require_revision(&store_key, alias.revision)
            .delete(&store_key);
        Ok((txn, ()))
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAliasesRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

pub(crate) async fn list(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: ListAliasesRequest = parse(body)?;
    let limit = limit(req.limit)?;
    let only_key = match req.key_id {
        Some(k) => {
            let r = key_ref(ctx, &k, false)?;
            Some(load_key(svc, ctx, &r).await?.value.key_id)
        }
        None => None,
    };
    let stored = svc
        .store
        .scan_all_typed::<AliasRecord>(&keys::aliases(&ctx.region))
        .await?;
    let mut items: Vec<(String, Value)> = stored
        .iter()
        .filter(|a| {
            only_key
                .as_ref()
                .is_none_or(|k| &a.value.target_key_id == k)
        })
        .map(|a| {
            (
                a.value.name.clone(),
                a.value.to_wire(&ctx.region, &ctx.account_id),
            )
        })
        .collect();
    if only_key.is_none() {
        // AWS-managed aliases are listed before their key exists, without a target.
        for m in managed::MANAGED_KEYS {
            if !stored.iter().any(|a| a.value.name == m.alias) {
                items.push((
                    m.alias.to_owned(),
                    json!({
                        "AliasName": m.alias,
                        "AliasArn": alias_arn(&ctx.region, &ctx.account_id, m.alias),
                    }),
                ));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let (page, next) = page(items, req.marker.as_deref(), limit)?;
    Ok(with_marker(json!({"Aliases": page}), next))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_follow_kms_rules() {
        check_alias_name("alias/app/db-key_1").unwrap();
        assert_eq!(
            check_alias_name("app").unwrap_err().aws_code(),
            "InvalidAliasNameException"
        );
        assert_eq!(
            check_alias_name("alias/aws/mine").unwrap_err().aws_code(),
            "InvalidAliasNameException"
        );
        assert_eq!(
            check_alias_name("alias/a b").unwrap_err().aws_code(),
            "ValidationException"
        );
        assert_eq!(
            check_alias_name("alias/").unwrap_err().aws_code(),
            "InvalidAliasNameException"
        );
    }
}
