//! Wire helpers shared by the Parameter Store operations: body parsing that never echoes values,
//! parameter names and selectors, ARNs, store keys, pagination, the compare-and-swap retry loop
//! and per-parameter locks.

use std::collections::HashMap;
use std::sync::Arc;

use gantry_aws_proto::pagination;
use gantry_front::RequestContext;
use gantry_store::{Store, Txn, TxnOutcome};
use serde::de::DeserializeOwned;

use crate::SsmError;

const MAX_CAS_ATTEMPTS: usize = 64;
/// The longest name a caller may give (AWS counts the ARN prefix in its 1011).
pub const MAX_NAME: usize = 1011;
/// Most levels of hierarchy.
pub const MAX_LEVELS: usize = 15;

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, SsmError> {
    gantry_aws_proto::json::parse_body_unquoted(body).map_err(SsmError::Wire)
}

pub fn required<T>(v: Option<T>, member: &str) -> Result<T, SsmError> {
    v.ok_or_else(|| {
        SsmError::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

const NAME_RULES: &str = "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_";

/// Checks a parameter name for creation: letters, digits and `_.-/`, a leading `/` when
/// hierarchical, no `aws`/`ssm` prefix, at most 15 levels and 1011 characters. Returns it with
/// surrounding spaces removed, as SSM does.
pub fn check_name(name: &str) -> Result<String, SsmError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(SsmError::validation(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must have length between 1 and {MAX_NAME}"
        )));
    }
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'));
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if !chars_ok || first.starts_with("aws") || first.starts_with("ssm") || name.contains("//") {
        return Err(SsmError::validation(NAME_RULES));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(SsmError::validation(format!(
            "Parameter name must be a fully qualified name: {name} contains '/' but does not begin with it."
        )));
    }
    if name.ends_with('/') {
        return Err(SsmError::validation(NAME_RULES));
    }
    if name.matches('/').count() > MAX_LEVELS {
        return Err(SsmError::HierarchyLevelLimitExceeded(format!(
            "A hierarchy can have a maximum of {MAX_LEVELS} levels: {name}."
        )));
    }
    Ok(name.to_owned())
}

/// The part of a parameter ARN after `parameter/`: the name without its leading slash.
pub fn arn(ctx: &RequestContext, name: &str) -> String {
    format!(
        "arn:aws:ssm:{}:{}:parameter/{}",
        ctx.region,
        ctx.account_id,
        name.strip_prefix('/').unwrap_or(name)
    )
}

/// A name as a read names it: `name`, `name:version` or `name:label`, or the parameter's ARN
/// (of this account and Region) with the same suffixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub name: String,
    pub selector: Option<Selector>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Version(u64),
    Label(String),
}

impl Selector {
    /// As the `Selector` response member: `:3` or `:prod`.
    pub fn as_wire(&self) -> String {
        match self {
            Selector::Version(v) => format!(":{v}"),
            Selector::Label(l) => format!(":{l}"),
        }
    }
}

/// Reads a `Name` member of a read (GetParameter, GetParameters). `None` when it names a
/// parameter of another account or Region (such names are reported as not found / invalid).
pub fn selected(ctx: &RequestContext, raw: &str) -> Option<Selected> {
    let raw = raw.trim();
    let body = match raw.strip_prefix("arn:") {
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return None;
            };
            if !partition.starts_with("aws")
                || service != "ssm"
                || region != ctx.region
                || account != ctx.account_id
            {
                return None;
            }
            let tail = resource.strip_prefix("parameter")?;
            // `parameter/a/b` names `/a/b`; `parameter/x` names `x` or `/x`: try the form
            // without a slash only when no hierarchy is involved.
            let tail = tail.strip_prefix('/')?;
            if tail.contains('/') {
                format!("/{tail}")
            } else {
                tail.to_owned()
            }
        }
        None => raw.to_owned(),
    };
    let (name, selector) = match body.rsplit_once(':') {
        Some((name, sel)) => {
            let selector = match sel.parse::<u64>() {
                Ok(v) => Selector::Version(v),
                Err(_) => Selector::Label(sel.to_owned()),
            };
            (name.to_owned(), Some(selector))
        }
        None => (body, None),
    };
    Some(Selected { name, selector })
}

pub fn parameter(region: &str, name: &str) -> String {
    format!("ssm/param/{region}/{name}")
}

pub fn parameters(region: &str) -> String {
    format!("ssm/param/{region}/")
}

pub fn values(region: &str, uid: &str) -> String {
    format!("ssm/value/{region}/{uid}/")
}

pub fn value(region: &str, uid: &str, version: u64) -> String {
    format!("ssm/value/{region}/{uid}/{version:010}")
}

/// `MaxResults` within `[1, max]`.
pub fn max_results(v: Option<i64>, max: i64) -> Result<usize, SsmError> {
    match v {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(SsmError::validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {max}"
        ))),
    }
}

/// One page of `items` (sorted ascending by their unique key) after the position in `token`.
pub fn page<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), SsmError> {
    let start = match token {
        None => 0,
        Some(t) => {
            let after = pagination::decode_token(t).ok_or_else(|| {
                SsmError::InvalidNextToken("The nextToken is not valid.".to_owned())
            })?;
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

pub async fn commit_with_retry<F, Fut, R>(store: &dyn Store, mut build: F) -> Result<R, SsmError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Txn, R), SsmError>>,
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
    Err(SsmError::Contention(last_key))
}

/// One async lock per parameter, so writes to one parameter queue instead of conflicting.
#[derive(Debug, Default)]
pub struct ParameterLocks {
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ParameterLocks {
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
    fn names_follow_parameter_store_rules() {
        assert_eq!(check_name(" /app/db.url ").unwrap(), "/app/db.url");
        check_name("plain_name-1").unwrap();
        for bad in ["/aws/x", "ssm-thing", "/a b", "a/b", "/a//b", "/a/", "/a:b"] {
            assert_eq!(
                check_name(bad).unwrap_err().aws_code(),
                "ValidationException",
                "{bad}"
            );
        }
        let deep = "/a".repeat(16);
        assert_eq!(
            check_name(&deep).unwrap_err().aws_code(),
            "HierarchyLevelLimitExceededException"
        );
        check_name(&"/a".repeat(15)).unwrap();
    }

    #[test]
    fn reads_take_selectors_and_arns() {
        let c = ctx();
        assert_eq!(
            selected(&c, "/app/db:3").unwrap(),
            Selected {
                name: "/app/db".into(),
                selector: Some(Selector::Version(3))
            }
        );
        assert_eq!(
            selected(&c, "/app/db:prod").unwrap().selector,
            Some(Selector::Label("prod".into()))
        );
        assert_eq!(
            selected(&c, "arn:aws:ssm:us-east-1:111122223333:parameter/app/db")
                .unwrap()
                .name,
            "/app/db"
        );
        assert_eq!(
            selected(&c, "arn:aws:ssm:us-east-1:111122223333:parameter/flat")
                .unwrap()
                .name,
            "flat"
        );
        assert!(selected(&c, "arn:aws:ssm:eu-west-1:111122223333:parameter/x").is_none());
        assert_eq!(
            arn(&c, "/app/db"),
            "arn:aws:ssm:us-east-1:111122223333:parameter/app/db"
        );
        assert_eq!(
            arn(&c, "flat"),
            "arn:aws:ssm:us-east-1:111122223333:parameter/flat"
        );
    }
}
