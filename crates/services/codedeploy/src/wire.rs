//! Wire helpers shared by the CodeDeploy operations: body parsing, store keys, timestamps,
//! pagination and the compare-and-swap commit.

use gantry_aws_proto::pagination;
use gantry_store::{Store, Txn, TxnOutcome};
use serde::de::DeserializeOwned;

use crate::CodeDeployError;

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodeDeployError> {
    gantry_aws_proto::json::parse_body_unquoted(body).map_err(CodeDeployError::Wire)
}

pub fn application(region: &str, name: &str) -> String {
    format!("codedeploy/app/{region}/{name}")
}

pub fn applications(region: &str) -> String {
    format!("codedeploy/app/{region}/")
}

pub fn config(region: &str, name: &str) -> String {
    format!("codedeploy/config/{region}/{name}")
}

pub fn configs(region: &str) -> String {
    format!("codedeploy/config/{region}/")
}

/// A timestamp as awsJson carries it: epoch seconds.
pub fn time(ms: u64) -> f64 {
    pagination::epoch_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// Page size of CodeDeploy's list operations.
pub const PAGE: usize = 100;

/// A list answer with its `nextToken` when there is a next page.
pub fn with_next(mut out: serde_json::Value, next: Option<String>) -> serde_json::Value {
    if let Some(next) = next {
        out["nextToken"] = serde_json::Value::String(next);
    }
    out
}

/// One page of `names` (sorted, unique) after the position in `token`.
pub fn page(
    names: Vec<String>,
    token: Option<&str>,
) -> Result<(Vec<String>, Option<String>), CodeDeployError> {
    let start = match token {
        None => 0,
        Some(t) => {
            let after = pagination::decode_token(t).ok_or_else(|| {
                CodeDeployError::InvalidNextToken(
                    "The next token was specified in an invalid format.".to_owned(),
                )
            })?;
            names.partition_point(|n| n.as_str() <= after.as_str())
        }
    };
    let mut rest = names.into_iter().skip(start);
    let page: Vec<String> = rest.by_ref().take(PAGE).collect();
    let next = if rest.next().is_some() {
        page.last().map(|n| pagination::encode_token(n))
    } else {
        None
    };
    Ok((page, next))
}

/// Commits `txn`; a conflict means another request created or changed the key first.
pub async fn commit(store: &dyn Store, txn: Txn) -> Result<bool, CodeDeployError> {
    Ok(matches!(
        store.commit(txn).await?,
        TxnOutcome::Committed { .. }
    ))
}

pub fn group(region: &str, app: &str, name: &str) -> String {
    format!("codedeploy/group/{region}/{app}/{name}")
}

pub fn groups(region: &str, app: &str) -> String {
    format!("codedeploy/group/{region}/{app}/")
}

pub fn all_groups(region: &str) -> String {
    format!("codedeploy/group/{region}/")
}

pub fn deployment(region: &str, id: &str) -> String {
    format!("codedeploy/deployment/{region}/{id}")
}

pub fn deployments(region: &str) -> String {
    format!("codedeploy/deployment/{region}/")
}

/// Deployments not finished yet, one key each (what the deployment runner scans).
pub fn active(region: &str, id: &str) -> String {
    format!("codedeploy/active/{region}/{id}")
}

pub const ACTIVE_PREFIX: &str = "codedeploy/active/";
