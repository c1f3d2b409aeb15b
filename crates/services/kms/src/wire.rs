//! Wire helpers shared by the KMS operations: body parsing that never echoes values, key
//! references (key id, key ARN, alias name, alias ARN), blobs, markers and the compare-and-swap
//! retry loop.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::pagination;
use gantry_front::RequestContext;
use gantry_store::{Store, StoreExt, Txn, TxnOutcome, Versioned};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::model::{AliasRecord, KeyRecord, KeyState, alias_arn, key_arn};
use crate::{KmsError, KmsService, keys};

/// How often a compare-and-swap write is retried before giving up.
const MAX_CAS_ATTEMPTS: usize = 64;

/// Parses a request body. Unlike the generic decoder, a mismatch never quotes the offending
/// value (it may be a plaintext): only its position.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, KmsError> {
    gantry_aws_proto::json::parse_body_unquoted(body).map_err(KmsError::Wire)
}

/// A required member, or KMS's validation error naming it.
pub fn required<T>(v: Option<T>, member: &str) -> Result<T, KmsError> {
    v.ok_or_else(|| {
        KmsError::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// Decodes a base64 blob member (`Plaintext`, `CiphertextBlob`) and checks its length bounds.
pub fn blob(v: Option<String>, member: &str, max: usize) -> Result<Vec<u8>, KmsError> {
    let text = required(v, member)?;
    let bytes = STANDARD.decode(text.as_bytes()).map_err(|_| {
        KmsError::Wire(AwsError::client(
            "SerializationException",
            format!("{member} is not valid base64"),
        ))
    })?;
    if bytes.is_empty() {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length greater than or equal to 1"
        )));
    }
    if bytes.len() > max {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    Ok(bytes)
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A key as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A key id (a UUID), given as such or inside a key ARN.
    Id(String),
    /// An alias name (`alias/...`), given as such or inside an alias ARN.
    Alias(String),
}

fn looks_like_key_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Reads a `KeyId` member: a key id or key ARN, and when `allow_alias` an alias name or ARN.
pub fn key_ref(ctx: &RequestContext, s: &str, allow_alias: bool) -> Result<KeyRef, KmsError> {
    if s.is_empty() || s.len() > 2048 {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{s}' at 'keyId' failed to satisfy constraint: Member must have length between 1 and 2048"
        )));
    }
    if let Some(rest) = s.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return Err(KmsError::InvalidArn(format!("Invalid arn {s}")));
        };
        if !partition.starts_with("aws") || service != "kms" {
            return Err(KmsError::InvalidArn(format!("Invalid arn {s}")));
        }
        if region != ctx.region {
            return Err(KmsError::InvalidArn(format!("Invalid arn {region}")));
        }
        if account != ctx.account_id {
            return Err(KmsError::NotFound(format!("Key '{s}' does not exist")));
        }
        if let Some(id) = resource.strip_prefix("key/") {
            if !looks_like_key_id(id) {
                return Err(KmsError::NotFound(format!("Invalid keyId {s}")));
            }
            return Ok(KeyRef::Id(id.to_owned()));
        }
        if resource.starts_with("alias/") && allow_alias {
            return Ok(KeyRef::Alias(resource.to_owned()));
        }
        return Err(KmsError::NotFound(format!("Invalid keyId {s}")));
    }
    if s.starts_with("alias/") {
        if allow_alias {
            return Ok(KeyRef::Alias(s.to_owned()));
        }
        return Err(KmsError::NotFound(format!("Invalid keyId {s}")));
    }
    if looks_like_key_id(s) {
        return Ok(KeyRef::Id(s.to_owned()));
    }
    Err(KmsError::NotFound(format!("Invalid keyId {s}")))
}

pub fn key_not_found(ctx: &RequestContext, key_id: &str) -> KmsError {
    KmsError::NotFound(format!(
        "Key '{}' does not exist",
        key_arn(&ctx.region, &ctx.account_id, key_id)
    ))
}

pub fn alias_not_found(ctx: &RequestContext, name: &str) -> KmsError {
    KmsError::NotFound(format!(
        "Alias {} is not found.",
        alias_arn(&ctx.region, &ctx.account_id, name)
    ))
}

/// Loads the key a reference names (following an alias).
pub async fn load_key(
    svc: &KmsService,
    ctx: &RequestContext,
    r: &KeyRef,
) -> Result<Versioned<KeyRecord>, KmsError> {
    let key_id = match r {
        KeyRef::Id(id) => id.clone(),
        KeyRef::Alias(name) => {
            svc.store
                .get_typed::<AliasRecord>(&keys::alias(&ctx.region, name))
                .await?
                .ok_or_else(|| alias_not_found(ctx, name))?
                .value
                .target_key_id
        }
    };
    svc.store
        .get_typed::<KeyRecord>(&keys::key(&ctx.region, &key_id))
        .await?
        .ok_or_else(|| key_not_found(ctx, &key_id))
}

/// Reads `KeyId` and loads the key.
pub async fn load_key_member(
    svc: &KmsService,
    ctx: &RequestContext,
    key_id: Option<String>,
    allow_alias: bool,
) -> Result<Versioned<KeyRecord>, KmsError> {
    let key_id = required(key_id, "keyId")?;
    let r = key_ref(ctx, &key_id, allow_alias)?;
    load_key(svc, ctx, &r).await
}

/// The error for using `key` to encrypt or decrypt, unless it is enabled.
pub fn usable(key: &KeyRecord) -> Result<(), KmsError> {
    match key.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::Disabled(format!("{} is disabled.", key.arn))),
        KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            key.arn
        ))),
    }
}

/// The error for changing a key pending deletion.
pub fn not_pending_deletion(key: &KeyRecord) -> Result<(), KmsError> {
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            key.arn
        )));
    }
    Ok(())
}

/// `Limit`: 1..=1000, default 100 (ListKeys, ListAliases, ListResourceTags, ...).
pub fn limit(v: Option<i64>) -> Result<usize, KmsError> {
    match v {
        None => Ok(100),
        Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
        Some(n) => Err(KmsError::validation(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"
        ))),
    }
}

/// One page of `items` (sorted by their key) after the position in `marker`.
pub fn page<T>(
    items: Vec<(String, T)>,
    marker: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), KmsError> {
    let start = match marker {
        None => 0,
        Some(m) => {
            let after = pagination::decode_token(m)
                .ok_or_else(|| KmsError::InvalidMarker(format!("Invalid marker: {m}")))?;
            items.partition_point(|(k, _)| k.as_str() <= after.as_str())
        }
    };
    let mut rest = items.into_iter().skip(start);
    let page: Vec<(String, T)> = rest.by_ref().take(limit).collect();
    let next = if rest.next().is_some() {
        page.last().map(|(k, _)| pagination::encode_token(k))
    } else {
        None
    };
    Ok((page.into_iter().map(|(_, v)| v).collect(), next))
}

/// Adds `NextMarker` and `Truncated` to a list response.
pub fn with_marker(mut v: Value, next: Option<String>) -> Value {
    v["Truncated"] = json!(next.is_some());
    if let Some(m) = next {
        v["NextMarker"] = json!(m);
    }
    v
}

/// Commits `build(...)` until it succeeds; `build` re-reads what it needs each attempt.
pub async fn commit_with_retry<F, Fut, R>(store: &dyn Store, mut build: F) -> Result<R, KmsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Txn, R), KmsError>>,
{
    let mut last_key = String::new();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (txn, result) = build().await?;
        if txn.is_empty() {
            return Ok(result);
        }
        match store.commit(txn).await? {
            TxnOutcome::Committed { .. } => return Ok(result),
            TxnOutcome::Conflict { key } => last_key = key,
        }
    }
    Err(KmsError::Contention(last_key))
}

/// Refuses grant tokens: Gantry issues no grants, so none is valid.
pub fn no_grant_tokens(tokens: &Option<Vec<String>>) -> Result<(), KmsError> {
    match tokens {
        Some(t) if !t.is_empty() => Err(KmsError::InvalidGrantToken(
            "Grant tokens are not supported: Gantry issues no grants.".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// Refuses an `EncryptionAlgorithm` other than `SYMMETRIC_DEFAULT` (the only one of symmetric
/// keys).
pub fn symmetric_algorithm(alg: &Option<String>, member: &str) -> Result<(), KmsError> {
    match alg.as_deref() {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(a @ ("RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" | "SM2PKE")) => {
            Err(KmsError::InvalidKeyUsage(format!(
                "The encryption algorithm {a} is not valid for a symmetric key (only SYMMETRIC_DEFAULT)."
            )))
        }
        Some(a) => Err(KmsError::validation(format!(
            "1 validation error detected: Value '{a}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]"
        ))),
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
            account_id: "000000000000".into(),
            access_key_id: "AK".into(),
            now: 0,
        }
    }

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn key_references_take_every_form_kms_accepts() {
        let c = ctx();
        assert_eq!(key_ref(&c, ID, false).unwrap(), KeyRef::Id(ID.into()));
        let arn = key_arn("us-east-1", "000000000000", ID);
        assert_eq!(key_ref(&c, &arn, false).unwrap(), KeyRef::Id(ID.into()));
        assert_eq!(
            key_ref(&c, "alias/app", true).unwrap(),
            KeyRef::Alias("alias/app".into())
        );
        assert_eq!(
            key_ref(&c, "arn:aws:kms:us-east-1:000000000000:alias/app", true).unwrap(),
            KeyRef::Alias("alias/app".into())
        );
    }

    #[test]
    fn malformed_references_answer_kms_errors() {
        let c = ctx();
        assert_eq!(
            key_ref(&c, "alias/app", false).unwrap_err().to_string(),
            "Invalid keyId alias/app"
        );
        assert_eq!(
            key_ref(&c, "nope", true).unwrap_err().aws_code(),
            "NotFoundException"
        );
        assert_eq!(
            key_ref(&c, "arn:aws:s3:::bucket", true)
                .unwrap_err()
                .aws_code(),
            "InvalidArnException"
        );
        assert_eq!(
            key_ref(&c, &key_arn("eu-west-1", "000000000000", ID), true)
                .unwrap_err()
                .aws_code(),
            "InvalidArnException"
        );
    }

    #[test]
    fn parse_errors_never_quote_values() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct In {
            #[serde(rename = "Plaintext")]
            plaintext: Option<u32>,
        }
        let e = parse::<In>(br#"{"Plaintext":"sup3r-s3cret"}"#).unwrap_err();
        assert!(!e.to_string().contains("sup3r"), "{e}");
        assert_eq!(e.aws_code(), "SerializationException");
    }

    #[test]
    fn pages_follow_markers() {
        let items: Vec<(String, u32)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
        let (p, m) = page(items.clone(), None, 2).unwrap();
        assert_eq!(p, vec![0, 1]);
        let (p, m) = page(items.clone(), m.as_deref(), 2).unwrap();
        assert_eq!(p, vec![2, 3]);
        let (p, m) = page(items.clone(), m.as_deref(), 2).unwrap();
        assert_eq!((p, m), (vec![4], None));
        assert_eq!(
            page(items, Some("junk"), 2).unwrap_err().aws_code(),
            "InvalidMarkerException"
        );
    }
}
