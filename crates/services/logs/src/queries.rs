//! Logs Insights: StartQuery, GetQueryResults, StopQuery, DescribeQueries and the saved query
//! definitions (Put/Describe/DeleteQueryDefinition).
//!
//! StartQuery compiles the query (a syntax error is `MalformedQueryException` with its
//! `queryCompileError`), records it as `Scheduled` and hands it to the query thread, which reads
//! the selected groups' streams one at a time through the same bounded cursors as
//! FilterLogEvents, feeds every event in range to the [`Engine`], and records the rows and
//! statistics when it finishes. StopQuery marks the record `Cancelled`; the runner notices within
//! [`CANCEL_CHECK_EVENTS`] events and drops its work. Query records are kept for
//! [`QUERY_RESULTS_KEPT_MS`], as AWS keeps results for seven days.

use gantry_aws_proto::pagination;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, decode, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::insights::engine::{Engine, Row};
use crate::insights::eval::{Record, Val};
use crate::insights::query;
use crate::model::{DAY_MS, LogGroup, LogStream, Position};
use crate::read::{ReadBudget, StreamCursor};
use crate::wire::{
    check_group_name, commit_with_retry, group_name_from_arn, limit, paginate, parse, required,
    with_token,
};
use crate::{LogsError, LogsService, keys, upgrade};

/// Events between two checks for StopQuery.
pub const CANCEL_CHECK_EVENTS: u64 = 8192;
/// How long query records (and their results) are kept.
pub const QUERY_RESULTS_KEPT_MS: u64 = 7 * DAY_MS;
/// A query still running after this long is reported as `Timeout`, as AWS times queries out.
pub const QUERY_TIMEOUT_MS: u64 = 60 * 60 * 1000;
/// The largest `limit` StartQuery takes (the default is the query language's 10,000).
const MAX_QUERY_LIMIT: usize = 100_000;
/// Most log groups one query may name.
const MAX_GROUPS: usize = 50;
/// Most saved query definitions per region.
const MAX_DEFINITIONS: usize = 1000;

fn query_key(region: &str, id: &str) -> String {
    format!("logs/query/{region}/{id}")
}

fn queries_prefix(region: &str) -> String {
    format!("logs/query/{region}/")
}

fn definition_key(region: &str, id: &str) -> String {
    format!("logs/querydef/{region}/{id}")
}

fn definitions_prefix(region: &str) -> String {
    format!("logs/querydef/{region}/")
}

/// What AWS's `QueryStatistics` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryStats {
    pub records_matched: u64,
    pub records_scanned: u64,
    pub bytes_scanned: u64,
    pub log_groups_scanned: u64,
}

impl QueryStats {
    fn to_wire(self) -> Value {
        json!({
            "recordsMatched": self.records_matched as f64,
            "recordsScanned": self.records_scanned as f64,
            "estimatedRecordsSkipped": 0.0,
            "bytesScanned": self.bytes_scanned as f64,
            "estimatedBytesSkipped": 0.0,
            "logGroupsScanned": self.log_groups_scanned as f64,
        })
    }
}

/// A query and, once it ends, its results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryRecord {
    pub id: String,
    pub query_string: String,
    pub groups: Vec<String>,
    pub account_id: String,
    /// Epoch milliseconds.
    pub create_time: u64,
    /// Events with timestamps in `[start_ms, end_ms)`.
    pub start_ms: u64,
    pub end_ms: u64,
    pub limit: usize,
    pub status: String,
    pub end_time: Option<u64>,
    pub statistics: QueryStats,
    pub results: Vec<Row>,
    pub error: Option<String>,
}

impl QueryRecord {
    /// The status as reported at `now`.
    fn status_at(&self, now: u64) -> &str {
        match self.status.as_str() {
            "Scheduled" | "Running" if now.saturating_sub(self.create_time) > QUERY_TIMEOUT_MS => {
                "Timeout"
            }
            s => s,
        }
    }
}

/// A saved query.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueryDefinition {
    id: String,
    name: String,
    query_string: String,
    log_group_names: Vec<String>,
    parameters: Option<Value>,
    last_modified: u64,
}

/// Only the Logs Insights language is served.
fn check_language(lang: Option<&str>) -> Result<(), LogsError> {
    match lang {
        None | Some("CWLI") => Ok(()),
        Some(other @ ("SQL" | "PPL")) => Err(LogsError::invalid(format!(
            "The query language {other} is not supported by this endpoint; use CWLI (Logs Insights QL)."
        ))),
        Some(other) => Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{other}' at 'queryLanguage' failed to satisfy constraint: Member must satisfy enum value set: [CWLI, SQL, PPL]"
        ))),
    }
}

fn group_missing(name: &str, account: &str) -> LogsError {
    LogsError::ResourceNotFound(format!(
        "Log group '{name}' does not exist for account ID '{account}'"
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartQueryRequest {
    query_language: Option<String>,
    log_group_name: Option<String>,
    log_group_names: Option<Vec<String>>,
    log_group_identifiers: Option<Vec<String>>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    query_string: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn start(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: StartQueryRequest = parse(body)?;
    check_language(req.query_language.as_deref())?;
    let start_time = required(req.start_time, "startTime")?;
    let end_time = required(req.end_time, "endTime")?;
    let query_string = required(req.query_string, "queryString")?;
    let groups: Vec<String> = match (
        req.log_group_name,
        req.log_group_names,
        req.log_group_identifiers,
    ) {
        (Some(n), None, None) => vec![n],
        (None, Some(ns), None) => ns,
        (None, None, Some(ids)) => ids
            .into_iter()
            .map(|id| {
                if id.starts_with("arn:") {
                    group_name_from_arn(ctx, &id)
                        .map(str::to_owned)
                        .ok_or_else(|| LogsError::invalid(format!("Invalid log group ARN: {id}")))
                } else {
                    Ok(id)
                }
            })
            .collect::<Result<_, _>>()?,
        (None, None, None) => {
            return Err(LogsError::invalid(
                "Query must specify one of logGroupName, logGroupNames or logGroupIdentifiers.",
            ));
        }
        _ => {
            return Err(LogsError::invalid(
                "logGroupName, logGroupNames and logGroupIdentifiers are mutually exclusive parameters.",
            ));
        }
    };
    if groups.is_empty() || groups.len() > MAX_GROUPS {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value at 'logGroupNames' failed to satisfy constraint: Member must have length between 1 and {MAX_GROUPS}"
        )));
    }
    for g in &groups {
        check_group_name(g)?;
    }
    for (v, member) in [(start_time, "startTime"), (end_time, "endTime")] {
        if v < 0 {
            return Err(LogsError::invalid(format!(
                "1 validation error detected: Value '{v}' at '{member}' failed to satisfy constraint: Member must have value greater than or equal to 0"
            )));
        }
    }
    if end_time < start_time {
        return Err(LogsError::invalid(
            "End time should not be before the start time",
        ));
    }
    let limit = limit(req.limit, MAX_QUERY_LIMIT as i64, query::MAX_LIMIT)?;
    let compiled = query::parse(&query_string).map_err(|e| LogsError::MalformedQuery {
        message: e.message,
        start: e.start,
        end: e.end,
    })?;
    let mut unique: Vec<String> = Vec::new();
    for g in groups {
        if !unique.contains(&g) {
            unique.push(g);
        }
    }
    for g in &unique {
        if svc.store.get(&keys::group(&ctx.region, g)).await?.is_none() {
            return Err(group_missing(g, &ctx.account_id));
        }
    }
    // Seconds, both ends included.
    let to_ms = |s: i64| (s as u64).saturating_mul(1000);
    let rec = QueryRecord {
        id: ctx.request_id.clone(),
        query_string,
        groups: unique,
        account_id: ctx.account_id.clone(),
        create_time: ctx.now,
        start_ms: to_ms(start_time),
        end_ms: to_ms(end_time).saturating_add(1000),
        limit,
        status: "Scheduled".to_owned(),
        end_time: None,
        statistics: QueryStats::default(),
        results: Vec::new(),
        error: None,
    };
    let key = query_key(&ctx.region, &rec.id);
    svc.store
        .commit(
            Txn::new()
                .require_absent(&key)
                .put(&key, encode(&key, &rec)?),
        )
        .await?;
    svc.spawn_query(ctx.region.clone(), rec.id.clone(), compiled);
    Ok(json!({"queryId": rec.id}))
}

/// Sets the status of a query still scheduled or running; `false` when it has ended.
async fn transition(
    svc: &LogsService,
    key: &str,
    update: impl Fn(&mut QueryRecord),
) -> Result<bool, LogsError> {
    commit_with_retry(svc.store.as_ref(), || async {
        let Some(cur) = svc.store.get_typed::<QueryRecord>(key).await? else {
            return Ok((Txn::new(), false));
        };
        if !matches!(cur.value.status.as_str(), "Scheduled" | "Running") {
            return Ok((Txn::new(), false));
        }
        let mut next = cur.value.clone();
        update(&mut next);
        let txn = Txn::new()
            .require_revision(key, cur.revision)
            .put(key, encode(key, &next)?);
        Ok((txn, true))
    })
    .await
}

/// Runs a query to its end and records the outcome (on the query thread).
pub(crate) async fn run(
    svc: LogsService,
    region: String,
    id: String,
    compiled: query::Query,
) -> Result<(), LogsError> {
    let key = query_key(&region, &id);
    let now = svc.clock.now_millis();
    if !transition(&svc, &key, |r| r.status = "Running".to_owned()).await? {
        return Ok(());
    }
    let outcome = execute(&svc, &region, &key, compiled).await;
    let done = svc.clock.now_millis().max(now);
    match outcome {
        Ok(Some((rows, stats))) => {
            transition(&svc, &key, |r| {
                r.status = "Complete".to_owned();
                r.end_time = Some(done);
                r.statistics = stats;
                r.results = rows.clone();
            })
            .await?;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(query_id = %id, %error, "logs insights query failed");
            transition(&svc, &key, |r| {
                r.status = "Failed".to_owned();
                r.end_time = Some(done);
                r.error = Some(error.to_string());
            })
            .await?;
        }
    }
    Ok(())
}

/// The query's rows and statistics; `None` when it was stopped.
async fn execute(
    svc: &LogsService,
    region: &str,
    key: &str,
    compiled: query::Query,
) -> Result<Option<(Vec<Row>, QueryStats)>, LogsError> {
    let Some(rec) = svc.store.get_typed::<QueryRecord>(key).await? else {
        return Ok(None);
    };
    let rec = rec.value;
    let mut engine = Engine::new(compiled, rec.limit);
    let mut stats = QueryStats::default();
    let store = svc.store.as_ref();
    let mut budget = ReadBudget::new(svc.read_limits.resident_bytes);
    let mut since_check = 0u64;
    'groups: for group_name in &rec.groups {
        let Some(group) = store
            .get_typed::<LogGroup>(&keys::group(region, group_name))
            .await?
        else {
            continue;
        };
        let group = group.value;
        stats.log_groups_scanned += 1;
        let now = svc.clock.now_millis();
        let lo = group
            .retention_cutoff(now)
            .map_or(rec.start_ms, |c| rec.start_ms.max(c));
        let hi = rec.end_ms;
        if lo >= hi {
            continue;
        }
        let log = format!("{}:{}", rec.account_id, group.name);
        let mut start_after: Option<String> = None;
        loop {
            let page = store
                .scan(
                    &keys::streams(region, group_name),
                    start_after.as_deref(),
                    100,
                )
                .await?;
            for srec in &page.records {
                let stream: LogStream = decode(srec)?.value;
                let overlaps = stream.last_event_timestamp.is_some_and(|t| t >= lo)
                    && stream.first_event_timestamp.is_some_and(|t| t < hi);
                if !overlaps {
                    continue;
                }
                let stream = upgrade::ensure_chunked(svc, region, &group, stream).await?;
                let prefix = keys::batches(region, &group.incarnation, stream.num);
                let mut cursor = StreamCursor::forward(prefix, Position::before(lo), hi);
                while let Some(e) = cursor.next(store, &mut budget).await? {
                    let pos = e.position();
                    let message = e.message()?;
                    stats.records_scanned += 1;
                    stats.bytes_scanned += message.len() as u64;
                    let mut r = Record::default();
                    r.set("@timestamp", Val::Time(pos.ts as i64));
                    r.set("@message", Val::Str(message.to_owned()));
                    r.set("@logStream", Val::Str(stream.name.clone()));
                    r.set("@log", Val::Str(log.clone()));
                    r.set("@ingestionTime", Val::Time(e.ingestion_time() as i64));
                    if message.trim_start().starts_with('{')
                        && let Ok(doc) = serde_json::from_str::<Value>(message)
                    {
                        r.add_json(&doc);
                    }
                    engine.push(r);
                    if budget.over() {
                        cursor.evict(&mut budget, true);
                    }
                    since_check += 1;
                    if since_check >= CANCEL_CHECK_EVENTS {
                        since_check = 0;
                        let cur = store.get_typed::<QueryRecord>(key).await?;
                        if cur.is_none_or(|c| c.value.status != "Running") {
                            cursor.release_all(&mut budget);
                            return Ok(None);
                        }
                    }
                    if !engine.wants_more() {
                        cursor.release_all(&mut budget);
                        break 'groups;
                    }
                }
                cursor.release_all(&mut budget);
            }
            match page.next {
                Some(next) => start_after = Some(next),
                None => break,
            }
        }
    }
    stats.records_matched = engine.matched();
    Ok(Some((engine.finish(), stats)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryIdRequest {
    query_id: Option<String>,
    next_token: Option<String>,
    max_items: Option<i64>,
}

fn query_missing() -> LogsError {
    LogsError::ResourceNotFound("Query does not exist.".to_owned())
}

fn check_query_id(id: &str) -> Result<(), LogsError> {
    if id.is_empty() || id.len() > 256 {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{id}' at 'queryId' failed to satisfy constraint: Member must have length less than or equal to 256"
        )));
    }
    Ok(())
}

pub(crate) async fn get_results(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: QueryIdRequest = parse(body)?;
    let id = required(req.query_id, "queryId")?;
    check_query_id(&id)?;
    // maxItems 0 (the model's minimum) asks for no cap beyond the 10,000 of a page.
    let max = match req.max_items {
        Some(0) => 10_000,
        other => limit(other, 10_000, 10_000)?,
    };
    let rec = svc
        .store
        .get_typed::<QueryRecord>(&query_key(&ctx.region, &id))
        .await?
        .ok_or_else(query_missing)?
        .value;
    let from = match req.next_token.as_deref() {
        None => 0,
        Some(t) => pagination::decode_token(t)
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n <= rec.results.len())
            .ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?,
    };
    let rows: Vec<Value> = rec
        .results
        .iter()
        .skip(from)
        .take(max)
        .map(|row| {
            Value::Array(
                row.iter()
                    .map(|(f, v)| json!({"field": f, "value": v}))
                    .collect(),
            )
        })
        .collect();
    let next = (from + rows.len() < rec.results.len())
        .then(|| pagination::encode_token(&(from + rows.len()).to_string()));
    let out = json!({
        "queryLanguage": "CWLI",
        "results": rows,
        "statistics": rec.statistics.to_wire(),
        "status": rec.status_at(ctx.now),
    });
    Ok(with_token(out, next))
}

pub(crate) async fn stop(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: QueryIdRequest = parse(body)?;
    let id = required(req.query_id, "queryId")?;
    check_query_id(&id)?;
    let key = query_key(&ctx.region, &id);
    if svc.store.get(&key).await?.is_none() {
        return Err(query_missing());
    }
    let now = ctx.now;
    let stopped = transition(svc, &key, |r| {
        r.status = "Cancelled".to_owned();
        r.end_time = Some(now);
    })
    .await?;
    Ok(json!({"success": stopped}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeQueriesRequest {
    log_group_name: Option<String>,
    status: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
    query_language: Option<String>,
}

const STATUSES: &[&str] = &[
    "Scheduled",
    "Running",
    "Complete",
    "Failed",
    "Cancelled",
    "Timeout",
    "Unknown",
];

pub(crate) async fn describe(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DescribeQueriesRequest = parse(body)?;
    check_language(req.query_language.as_deref())?;
    if let Some(g) = &req.log_group_name {
        check_group_name(g)?;
    }
    if let Some(s) = &req.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{s}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            STATUSES.join(", ")
        )));
    }
    let max = limit(req.max_results, 1000, 1000)?;
    let all = svc
        .store
        .scan_all_typed::<QueryRecord>(&queries_prefix(&ctx.region))
        .await?;
    let mut items: Vec<(String, Value)> = all
        .into_iter()
        .map(|v| v.value)
        .filter(|q| {
            req.log_group_name
                .as_ref()
                .is_none_or(|g| q.groups.contains(g))
        })
        .filter(|q| {
            req.status
                .as_deref()
                .is_none_or(|s| q.status_at(ctx.now) == s)
        })
        .map(|q| {
            let mut v = json!({
                "queryLanguage": "CWLI",
                "queryId": q.id,
                "queryString": q.query_string,
                "status": q.status_at(ctx.now),
                "createTime": q.create_time,
                "logGroupName": q.groups.first(),
                "bytesScanned": q.statistics.bytes_scanned as f64,
            });
            if let Some(end) = q.end_time {
                v["queryDuration"] = json!(end.saturating_sub(q.create_time));
            }
            (format!("{:020}/{}", u64::MAX - q.create_time, q.id), v)
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = paginate(items, req.next_token.as_deref(), max, false)?;
    Ok(with_token(json!({"queries": page}), next))
}

/// Deletes query records older than [`QUERY_RESULTS_KEPT_MS`]; returns how many.
pub(crate) async fn expire(svc: &LogsService, now: u64) -> Result<usize, LogsError> {
    let cutoff = now.saturating_sub(QUERY_RESULTS_KEPT_MS);
    let mut deleted = 0;
    let mut start_after: Option<String> = None;
    loop {
        let page = svc
            .store
            .scan("logs/query/", start_after.as_deref(), 256)
            .await?;
        let mut txn = Txn::new();
        for rec in &page.records {
            let q: QueryRecord = decode(rec)?.value;
            if q.create_time < cutoff {
                txn = txn
                    .require_revision(&rec.key, rec.revision)
                    .delete(&rec.key);
                deleted += 1;
            }
        }
        if !txn.is_empty() {
            svc.store.commit(txn).await?;
        }
        match page.next {
            Some(next) => start_after = Some(next),
            None => return Ok(deleted),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutQueryDefinitionRequest {
    query_language: Option<String>,
    name: Option<String>,
    query_definition_id: Option<String>,
    log_group_names: Option<Vec<String>>,
    query_string: Option<String>,
    /// Idempotency token: a retried Put with the same name and query updates the same record.
    #[allow(dead_code)]
    client_token: Option<String>,
    parameters: Option<Value>,
}

fn definition_missing() -> LogsError {
    LogsError::ResourceNotFound("The specified query definition does not exist.".to_owned())
}

pub(crate) async fn put_definition(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: PutQueryDefinitionRequest = parse(body)?;
    check_language(req.query_language.as_deref())?;
    let name = required(req.name, "name")?;
    let query_string = required(req.query_string, "queryString")?;
    let log_group_names = req.log_group_names.unwrap_or_default();
    for g in &log_group_names {
        check_group_name(g)?;
    }
    let id = match &req.query_definition_id {
        Some(id) => {
            check_query_id(id)?;
            if svc
                .store
                .get(&definition_key(&ctx.region, id))
                .await?
                .is_none()
            {
                return Err(definition_missing());
            }
            id.clone()
        }
        None => {
            let existing = svc
                .store
                .scan(&definitions_prefix(&ctx.region), None, MAX_DEFINITIONS + 1)
                .await?;
            if existing.records.len() >= MAX_DEFINITIONS {
                return Err(LogsError::LimitExceeded(format!(
                    "Account limit of {MAX_DEFINITIONS} query definitions reached."
                )));
            }
            ctx.request_id.clone()
        }
    };
    let def = QueryDefinition {
        id: id.clone(),
        name,
        query_string,
        log_group_names,
        parameters: req.parameters,
        last_modified: ctx.now,
    };
    let key = definition_key(&ctx.region, &id);
    svc.store
        .commit(Txn::new().put(&key, encode(&key, &def)?))
        .await?;
    Ok(json!({"queryDefinitionId": id}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeQueryDefinitionsRequest {
    query_language: Option<String>,
    query_definition_name_prefix: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) async fn describe_definitions(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DescribeQueryDefinitionsRequest = parse(body)?;
    check_language(req.query_language.as_deref())?;
    let max = limit(req.max_results, 1000, 1000)?;
    let all = svc
        .store
        .scan_all_typed::<QueryDefinition>(&definitions_prefix(&ctx.region))
        .await?;
    let mut items: Vec<(String, Value)> = all
        .into_iter()
        .map(|v| v.value)
        .filter(|d| {
            req.query_definition_name_prefix
                .as_deref()
                .is_none_or(|p| d.name.starts_with(p))
        })
        .map(|d| {
            let mut v = json!({
                "queryLanguage": "CWLI",
                "queryDefinitionId": d.id,
                "name": d.name,
                "queryString": d.query_string,
                "lastModified": d.last_modified,
                "logGroupNames": d.log_group_names,
            });
            if let Some(p) = d.parameters {
                v["parameters"] = p;
            }
            (format!("{}\u{0}{}", d.name, d.id), v)
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = paginate(items, req.next_token.as_deref(), max, false)?;
    Ok(with_token(json!({"queryDefinitions": page}), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteQueryDefinitionRequest {
    query_definition_id: Option<String>,
}

pub(crate) async fn delete_definition(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DeleteQueryDefinitionRequest = parse(body)?;
    let id = required(req.query_definition_id, "queryDefinitionId")?;
    check_query_id(&id)?;
    let key = definition_key(&ctx.region, &id);
    let Some(cur) = svc.store.get(&key).await? else {
        return Err(definition_missing());
    };
    svc.store
        .commit(Txn::new().require_revision(&key, cur.revision).delete(&key))
        .await?;
    Ok(json!({"success": true}))
}
