//! Wire helpers shared by the Logs operations: body parsing, name checks, ARNs, pagination and
//! the compare-and-swap retry loop.

use gantry_aws_proto::{json, pagination};
use gantry_front::RequestContext;
use gantry_store::{Store, StoreExt, Txn, TxnOutcome, Versioned};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::keys;
use crate::model::{LogGroup, LogStream};
use crate::{LogsError, LogsService};

/// How often a compare-and-swap write is retried before giving up.
const MAX_CAS_ATTEMPTS: usize = 64;

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, LogsError> {
    Ok(json::parse_body(body)?)
}

/// A required member, or `InvalidParameterException` naming it.
pub fn required<T>(v: Option<T>, member: &str) -> Result<T, LogsError> {
    v.ok_or_else(|| {
        LogsError::invalid(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// Checks a log group name against the model (`[\.\-_/#A-Za-z0-9]+`, 1..=512).
pub fn check_group_name(name: &str) -> Result<(), LogsError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'#'));
    if ok {
        Ok(())
    } else {
        Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
        )))
    }
}

/// Checks a log stream name against the model (`[^:*]*`, 1..=512).
pub fn check_stream_name(name: &str) -> Result<(), LogsError> {
    if name.is_empty() || name.len() > 512 || name.contains([':', '*']) {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*"
        )));
    }
    Ok(())
}

/// `arn:aws:logs:{region}:{account}:log-group:{name}` (the `logGroupArn` and the tagging ARN).
pub fn group_arn(ctx: &RequestContext, name: &str) -> String {
    format!(
        "arn:aws:logs:{}:{}:log-group:{name}",
        ctx.region, ctx.account_id
    )
}

pub fn stream_arn(ctx: &RequestContext, group: &str, stream: &str) -> String {
    format!("{}:log-stream:{stream}", group_arn(ctx, group))
}

/// The log group named by an ARN of this account and region (a trailing `:*` is accepted).
pub fn group_name_from_arn<'a>(ctx: &RequestContext, arn: &'a str) -> Option<&'a str> {
    let rest = arn.strip_prefix("arn:aws:logs:")?;
    let (region, rest) = rest.split_once(':')?;
    let (account, rest) = rest.split_once(':')?;
    let name = rest.strip_prefix("log-group:")?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    (region == ctx.region && account == ctx.account_id && !name.is_empty() && !name.contains(':'))
        .then_some(name)
}

/// The group a request names by `logGroupName` or `logGroupIdentifier` (a name or an ARN);
/// exactly one must be given.
pub fn group_ref(
    ctx: &RequestContext,
    name: Option<String>,
    identifier: Option<String>,
) -> Result<String, LogsError> {
    match (name, identifier) {
        (Some(_), Some(_)) => Err(LogsError::invalid(
            "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
        )),
        (Some(n), None) => {
            check_group_name(&n)?;
            Ok(n)
        }
        (None, Some(id)) => {
            let name = if id.starts_with("arn:") {
                group_name_from_arn(ctx, &id)
                    .ok_or_else(|| LogsError::invalid(format!("Invalid log group ARN: {id}")))?
                    .to_owned()
            } else {
                id
            };
            check_group_name(&name)?;
            Ok(name)
        }
        (None, None) => Err(LogsError::invalid(
            "Either logGroupName or logGroupIdentifier must be specified.",
        )),
    }
}

pub async fn load_group(
    svc: &LogsService,
    ctx: &RequestContext,
    name: &str,
) -> Result<Versioned<LogGroup>, LogsError> {
    svc.store
        .get_typed::<LogGroup>(&keys::group(&ctx.region, name))
        .await?
        .ok_or_else(LogsError::group_not_found)
}

pub async fn load_stream(
    svc: &LogsService,
    ctx: &RequestContext,
    group: &str,
    stream: &str,
) -> Result<Versioned<LogStream>, LogsError> {
    svc.store
        .get_typed::<LogStream>(&keys::stream(&ctx.region, group, stream))
        .await?
        .ok_or_else(LogsError::stream_not_found)
}

/// Checks `limit` against `[1, max]`.
pub fn limit(v: Option<i64>, max: i64, default: usize) -> Result<usize, LogsError> {
    match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

/// One page of `items` (already in output order, keyed by a sort key that is strictly monotonic
/// in that order: increasing, or decreasing when `descending`) after the key in `next_token`.
pub fn paginate<T>(
    items: Vec<(String, T)>,
    next_token: Option<&str>,
    limit: usize,
    descending: bool,
) -> Result<(Vec<T>, Option<String>), LogsError> {
    let start = match next_token {
        None => 0,
        Some(tok) => {
            let after = pagination::decode_token(tok)
                .ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?;
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

/// Adds `nextToken` to a response when there is one.
pub fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        v["nextToken"] = json!(t);
    }
    v
}

/// Commits `build(...)` until it succeeds; `build` re-reads what it needs each attempt.
pub async fn commit_with_retry<F, Fut, R>(store: &dyn Store, mut build: F) -> Result<R, LogsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Txn, R), LogsError>>,
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
    Err(LogsError::Contention(last_key))
}

#[cfg(test)]
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

    #[test]
    fn group_names_follow_the_model_pattern() {
        assert!(check_group_name("/ecs/web-app_1.#x").is_ok());
        assert!(check_group_name("").is_err());
        assert!(check_group_name("a:b").is_err());
        assert!(check_group_name("a b").is_err());
        assert!(check_group_name(&"a".repeat(513)).is_err());
    }

    #[test]
    fn stream_names_exclude_colon_and_star() {
        assert!(check_stream_name("prefix/web/0123abcd").is_ok());
        assert!(check_stream_name("a:b").is_err());
        assert!(check_stream_name("a*").is_err());
        assert!(check_stream_name("").is_err());
    }

    #[test]
    fn arns_name_groups_of_this_account_and_region_only() {
        let c = ctx();
        let arn = group_arn(&c, "/ecs/web");
        assert_eq!(
            arn,
            "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/web"
        );
        assert_eq!(group_name_from_arn(&c, &arn), Some("/ecs/web"));
        assert_eq!(
            group_name_from_arn(&c, &format!("{arn}:*")),
            Some("/ecs/web")
        );
        assert_eq!(
            group_name_from_arn(&c, "arn:aws:logs:eu-west-1:000000000000:log-group:x"),
            None
        );
        assert_eq!(
            group_name_from_arn(&c, "arn:aws:ecs:us-east-1:0:cluster/x"),
            None
        );
    }

    #[test]
    fn group_ref_takes_exactly_one_of_name_and_identifier() {
        let c = ctx();
        assert_eq!(group_ref(&c, Some("g".into()), None).ok(), Some("g".into()));
        assert_eq!(
            group_ref(&c, None, Some(group_arn(&c, "g"))).ok(),
            Some("g".into())
        );
        assert!(group_ref(&c, Some("g".into()), Some("g".into())).is_err());
        assert!(group_ref(&c, None, None).is_err());
    }

    #[test]
    fn pages_follow_tokens_in_both_directions() {
        let items: Vec<(String, u32)> = (0..7).map(|i| (format!("k{i}"), i)).collect();
        let (p1, t1) = paginate(items.clone(), None, 3, false).unwrap();
        assert_eq!(p1, vec![0, 1, 2]);
        let (p2, t2) = paginate(items.clone(), t1.as_deref(), 3, false).unwrap();
        assert_eq!(p2, vec![3, 4, 5]);
        let (p3, t3) = paginate(items.clone(), t2.as_deref(), 3, false).unwrap();
        assert_eq!((p3, t3), (vec![6], None));
        let rev: Vec<(String, u32)> = items.into_iter().rev().collect();
        let (p1, t1) = paginate(rev.clone(), None, 4, true).unwrap();
        assert_eq!(p1, vec![6, 5, 4, 3]);
        let (p2, t2) = paginate(rev.clone(), t1.as_deref(), 4, true).unwrap();
        assert_eq!((p2, t2), (vec![2, 1, 0], None));
        assert!(paginate(rev, Some("!!"), 3, true).is_err());
    }

    #[test]
    fn exact_page_size_has_no_token() {
        let items: Vec<(String, u32)> = (0..3).map(|i| (format!("k{i}"), i)).collect();
        let (p, t) = paginate(items, None, 3, false).unwrap();
        assert_eq!((p.len(), t), (3, None));
    }
}
