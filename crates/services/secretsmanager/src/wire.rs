//! Wire helpers shared by the Secrets Manager operations: body parsing that never echoes values,
//! member checks, `SecretId` resolution (name, partial ARN, full ARN), tags, pagination and the
//! compare-and-swap retry loop.

use std::collections::HashMap;
use std::sync::Arc;

use gantry_aws_proto::AwsError;
use gantry_aws_proto::pagination;
use gantry_front::RequestContext;
use gantry_store::{Store, StoreExt, Txn, TxnOutcome, Versioned};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::model::SecretRecord;
use crate::{SecretsManagerService, SmError, keys};

/// How often a compare-and-swap write is retried before giving up.
const MAX_CAS_ATTEMPTS: usize = 64;
/// The largest secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 65536;
/// Most tags one secret may carry.
pub const MAX_TAGS: usize = 50;

/// Parses a request body. A mismatch never quotes the offending value (it may be a secret):
/// only its position.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, SmError> {
    gantry_aws_proto::json::parse_body_unquoted(body).map_err(SmError::Wire)
}

/// A required member, or the model's validation error naming it.
pub fn required<T>(v: Option<T>, member: &str) -> Result<T, SmError> {
    v.ok_or_else(|| {
        SmError::Validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// Checks a secret name: 1..=512 characters of letters, digits and `/_+=.@-!`.
pub fn check_name(name: &str) -> Result<(), SmError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 512
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'/' | b'_' | b'+' | b'=' | b'.' | b'@' | b'-' | b'!')
        });
    if ok {
        Ok(())
    } else {
        Err(SmError::Validation(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!".to_owned(),
        ))
    }
}

/// Checks a `ClientRequestToken` (the new version's id): 32..=64 characters.
pub fn check_token(token: &str) -> Result<(), SmError> {
    let n = token.chars().count();
    if !(32..=64).contains(&n) {
        return Err(SmError::invalid(
            "ClientRequestToken must be 32-64 characters long.",
        ));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(SmError::invalid(format!(
            "ClientRequestToken {token} contains characters other than letters, digits, '-' and '_'."
        )));
    }
    Ok(())
}

pub fn check_description(d: &Option<String>) -> Result<(), SmError> {
    if d.as_ref().is_some_and(|d| d.chars().count() > 2048) {
        return Err(SmError::Validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 2048".to_owned(),
        ));
    }
    Ok(())
}

/// A secret value as a request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    String(String),
    Binary(Vec<u8>),
}

impl SecretValue {
    pub fn kind(&self) -> crate::model::ValueKind {
        match self {
            SecretValue::String(_) => crate::model::ValueKind::String,
            SecretValue::Binary(_) => crate::model::ValueKind::Binary,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            SecretValue::String(s) => s.as_bytes(),
            SecretValue::Binary(b) => b,
        }
    }

    /// Adds `SecretString` or `SecretBinary` to a response.
    pub fn add_to(&self, v: &mut Value) {
        match self {
            SecretValue::String(s) => v["SecretString"] = json!(s),
            SecretValue::Binary(b) => {
                use base64::Engine as _;
                v["SecretBinary"] = json!(base64::engine::general_purpose::STANDARD.encode(b));
            }
        }
    }
}

/// Reads `SecretString`/`SecretBinary`: at most one, within 64 KiB. `None` when neither is given.
pub fn secret_value(
    string: Option<String>,
    binary: Option<String>,
) -> Result<Option<SecretValue>, SmError> {
    let v = match (string, binary) {
        (Some(_), Some(_)) => {
            return Err(SmError::InvalidParameter(
                "You can't specify both a binary secret value and a string secret value in the same secret.".to_owned(),
            ));
        }
        (Some(s), None) => SecretValue::String(s),
        (None, Some(b)) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|_| {
                    SmError::Wire(AwsError::client(
                        "SerializationException",
                        "SecretBinary is not valid base64",
                    ))
                })?;
            SecretValue::Binary(bytes)
        }
        (None, None) => return Ok(None),
    };
    let (member, len) = match &v {
        SecretValue::String(s) => ("secretString", s.len()),
        SecretValue::Binary(b) => ("secretBinary", b.len()),
    };
    if len == 0 {
        return Err(SmError::Validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length greater than or equal to 1"
        )));
    }
    if len > MAX_VALUE_BYTES {
        return Err(SmError::Validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length less than or equal to {MAX_VALUE_BYTES}"
        )));
    }
    Ok(Some(v))
}

/// A tag as the wire carries it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// Checks tags (keys 1..=128, values at most 256, no `aws:` prefix) and merges them into
/// `into`, replacing the value of a key already present.
pub fn merge_tags(into: &mut Vec<(String, String)>, tags: &[Tag]) -> Result<(), SmError> {
    for t in tags {
        let k = required(t.key.clone(), "tags.member.key")?;
        let v = t.value.clone().unwrap_or_default();
        if k.is_empty() || k.chars().count() > 128 {
            return Err(SmError::Validation(format!(
                "1 validation error detected: Value '{k}' at 'tags.member.key' failed to satisfy constraint: Member must have length between 1 and 128"
            )));
        }
        if v.chars().count() > 256 {
            return Err(SmError::Validation(format!(
                "1 validation error detected: Value at 'tags.member.value' of tag '{k}' failed to satisfy constraint: Member must have length less than or equal to 256"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(SmError::invalid(format!(
                "Tag key {k} uses the reserved prefix aws:."
            )));
        }
        match into.iter_mut().find(|(key, _)| *key == k) {
            Some(existing) => existing.1 = v,
            None => into.push((k, v)),
        }
    }
    if into.len() > MAX_TAGS {
        return Err(SmError::LimitExceeded(format!(
            "A secret can have at most {MAX_TAGS} tags."
        )));
    }
    Ok(())
}

pub fn tags_to_wire(tags: &[(String, String)]) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect()
}

/// The name a `SecretId` names, and the full ARN it must have when it is a full ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A name, or a partial ARN (an ARN without the random suffix).
    Name(String),
    /// A full ARN: the secret must have exactly this ARN. `name` is the ARN's name without the
    /// suffix; `partial` is the whole tail, in case the name itself ends like a suffix.
    Arn {
        arn: String,
        name: String,
        partial: String,
    },
}

/// Reads a `SecretId` of this account and region.
pub fn secret_ref(ctx: &RequestContext, id: &str) -> Result<SecretRef, SmError> {
    if id.is_empty() || id.chars().count() > 2048 {
        return Err(SmError::Validation(
            "1 validation error detected: Value at 'secretId' failed to satisfy constraint: Member must have length between 1 and 2048".to_owned(),
        ));
    }
    let Some(rest) = id.strip_prefix("arn:") else {
        return Ok(SecretRef::Name(id.to_owned()));
    };
    let parts: Vec<&str> = rest.splitn(6, ':').collect();
    let [partition, service, region, account, kind, tail] = parts[..] else {
        return Err(SmError::not_found());
    };
    if !partition.starts_with("aws")
        || service != "secretsmanager"
        || kind != "secret"
        || region != ctx.region
        || account != ctx.account_id
        || tail.is_empty()
        || tail.contains(':')
    {
        return Err(SmError::not_found());
    }
    match tail.rsplit_once('-') {
        Some((name, suffix))
            if suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Ok(SecretRef::Arn {
                arn: id.to_owned(),
                name: name.to_owned(),
                partial: tail.to_owned(),
            })
        }
        _ => Ok(SecretRef::Name(tail.to_owned())),
    }
}

/// Loads the secret a `SecretId` names, including one scheduled for deletion; a secret whose
/// recovery window is over counts as gone.
pub async fn load_secret(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    id: &str,
) -> Result<Versioned<SecretRecord>, SmError> {
    let found = match secret_ref(ctx, id)? {
        SecretRef::Name(name) => get(svc, ctx, &name).await?,
        SecretRef::Arn { arn, name, partial } => {
            match get(svc, ctx, &name).await?.filter(|s| s.value.arn == arn) {
                Some(s) => Some(s),
                // A name that itself ends with "-XXXXXX", given as a partial ARN.
                None => get(svc, ctx, &partial).await?,
            }
        }
    };
    found
        .filter(|s| !s.value.is_expired(ctx.now))
        .ok_or_else(SmError::not_found)
}

async fn get(
    svc: &SecretsManagerService,
    ctx: &RequestContext,
    name: &str,
) -> Result<Option<Versioned<SecretRecord>>, SmError> {
    if check_name(name).is_err() {
        return Ok(None);
    }
    Ok(svc
        .store
        .get_typed::<SecretRecord>(&keys::secret(&ctx.region, name))
        .await?)
}

/// `MaxResults` within `[1, max]`, `default` when absent.
pub fn max_results(v: Option<i64>, max: i64, default: usize) -> Result<usize, SmError> {
    match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(SmError::Validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

/// One page of `items` (sorted by their unique key, ascending or `descending`) after the
/// position in `token`.
pub fn page<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    limit: usize,
    descending: bool,
) -> Result<(Vec<T>, Option<String>), SmError> {
    let start = match token {
        None => 0,
        Some(t) => {
            let after = pagination::decode_token(t).ok_or_else(|| {
                SmError::InvalidNextToken(format!("The NextToken value {t} is not valid."))
            })?;
            items.partition_point(|(k, _)| {
                if descending {
                    k.as_str() >= after.as_str()
                } else {
                    k.as_str() <= after.as_str()
                }
            })
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

/// Commits `build(...)` until it succeeds; `build` re-reads what it needs each attempt.
pub async fn commit_with_retry<F, Fut, R>(store: &dyn Store, mut build: F) -> Result<R, SmError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Txn, R), SmError>>,
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
    Err(SmError::Contention(last_key))
}

/// One async lock per secret name, so writes to one secret queue instead of conflicting; the
/// store's revisions still decide correctness.
#[derive(Debug, Default)]
pub struct SecretLocks {
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SecretLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock();
            if locks.len() > 4096 {
                locks.retain(|_, m| Arc::strong_count(m) > 1);
            }
            locks.entry(key.to_owned()).or_default().clone()
        };
        m.lock_owned().await
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
    fn secret_ids_are_names_partial_arns_or_full_arns() {
        let c = ctx();
        assert_eq!(
            secret_ref(&c, "prod/db").unwrap(),
            SecretRef::Name("prod/db".into())
        );
        assert_eq!(
            secret_ref(
                &c,
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db"
            )
            .unwrap(),
            SecretRef::Name("prod/db".into())
        );
        assert_eq!(
            secret_ref(
                &c,
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbC123"
            )
            .unwrap(),
            SecretRef::Arn {
                arn: "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbC123".into(),
                name: "prod/db".into(),
                partial: "prod/db-AbC123".into(),
            }
        );
        for foreign in [
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:x",
            "arn:aws:secretsmanager:us-east-1:999999999999:secret:x",
            "arn:aws:ssm:us-east-1:111122223333:parameter/x",
        ] {
            assert_eq!(
                secret_ref(&c, foreign).unwrap_err().aws_code(),
                "ResourceNotFoundException"
            );
        }
    }

    #[test]
    fn names_follow_the_documented_alphabet() {
        check_name("prod/db_user+admin=1.x@corp-!").unwrap();
        for bad in ["", "a b", "a:b", "é", &"a".repeat(513)] {
            assert_eq!(
                check_name(bad).unwrap_err().aws_code(),
                "ValidationException"
            );
        }
    }

    #[test]
    fn values_are_one_of_string_or_binary_within_64_kib() {
        assert_eq!(secret_value(None, None).unwrap(), None);
        assert!(secret_value(Some("a".into()), Some("YQ==".into())).is_err());
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let e = secret_value(Some(big), None).unwrap_err();
        assert_eq!(e.aws_code(), "ValidationException");
        assert!(!e.to_string().contains("xxx"));
        assert!(secret_value(Some("x".repeat(MAX_VALUE_BYTES)), None).is_ok());
        assert_eq!(
            secret_value(None, Some("aGk=".into())).unwrap(),
            Some(SecretValue::Binary(b"hi".to_vec()))
        );
    }

    #[test]
    fn tokens_are_32_to_64_characters() {
        check_token(&"a".repeat(32)).unwrap();
        check_token("5c1d3f0e-9a1b-4e0f-8f3a-0123456789ab").unwrap();
        assert!(check_token("short").is_err());
        assert!(check_token(&"a".repeat(65)).is_err());
    }

    #[test]
    fn tags_merge_and_refuse_reserved_keys() {
        let mut t = vec![("a".to_owned(), "1".to_owned())];
        merge_tags(
            &mut t,
            &[Tag {
                key: Some("a".into()),
                value: Some("2".into()),
            }],
        )
        .unwrap();
        assert_eq!(t, vec![("a".to_owned(), "2".to_owned())]);
        assert!(
            merge_tags(
                &mut t,
                &[Tag {
                    key: Some("aws:x".into()),
                    value: None
                }]
            )
            .is_err()
        );
    }

    #[test]
    fn parse_errors_never_quote_values() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct In {
            #[serde(rename = "SecretString")]
            s: Option<u32>,
        }
        let e = parse::<In>(br#"{"SecretString":"hunter2-pass"}"#).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
