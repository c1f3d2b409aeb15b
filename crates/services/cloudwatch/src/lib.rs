//! CloudWatch metrics and alarms (`monitoring`, API version 2010-08-01), served on awsJson1.0
//! (`GraniteServiceVersion20100801`, what botocore sends, in query-compatible mode) and on
//! awsQuery (older SDKs, Terraform, the AWS CLI v2 of Debian). Every operation of the model is
//! listed in [`CloudWatchOperation`].
//!
//! Storage: every `PutMetricData` becomes one batch record in the store (its datapoints already
//! aggregated per series, storage bucket and unit), committed before the call is acknowledged,
//! and is then added to the in-memory [`series::Index`] that reads use. On start the batches are
//! replayed; batches and buckets older than the retention (15 days) are dropped by
//! [`CloudWatchService::maintain`]. Alarms are records of their own, evaluated by
//! [`CloudWatchService::evaluate_alarms`].
//!
//! A service crate: depends on the front, the wire layer and the store, never on another service.

pub mod alarms;
pub mod error;
pub mod math;
pub mod metrics;
#[rustfmt::skip]
pub mod model_constraints;
pub mod series;
pub mod wire;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::query::QueryRequest;
use gantry_front::{JsonService, Protocol, QueryService, RequestContext, ServiceSpec};
use gantry_store::{Store, StoreError, Txn};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::invalid;
use crate::series::{Agg, Index, PeriodAgg, Row, SeriesKey};

gantry_front::operations! {
    /// Every operation of the CloudWatch API model.
    pub enum CloudWatchOperation {
        DeleteAlarmMuteRule,
        DeleteAlarms,
        DeleteAnomalyDetector,
        DeleteDashboards,
        DeleteInsightRules,
        DeleteMetricStream,
        DescribeAlarmContributors,
        DescribeAlarmHistory,
        DescribeAlarms,
        DescribeAlarmsForMetric,
        DescribeAnomalyDetectors,
        DescribeInsightRules,
        DisableAlarmActions,
        DisableInsightRules,
        EnableAlarmActions,
        EnableInsightRules,
        GetAlarmMuteRule,
        GetDashboard,
        GetInsightRuleReport,
        GetMetricData,
        GetMetricStatistics,
        GetMetricStream,
        GetMetricWidgetImage,
        GetOTelEnrichment,
        ListAlarmMuteRules,
        ListDashboards,
        ListManagedInsightRules,
        ListMetricStreams,
        ListMetrics,
        ListTagsForResource,
        PutAlarmMuteRule,
        PutAnomalyDetector,
        PutCompositeAlarm,
        PutDashboard,
        PutInsightRule,
        PutManagedInsightRules,
        PutMetricAlarm,
        PutMetricData,
        PutMetricStream,
        SetAlarmState,
        StartMetricStreams,
        StartOTelEnrichment,
        StopMetricStreams,
        StopOTelEnrichment,
        TagResource,
        UntagResource,
    }
}

/// The XML namespace of CloudWatch's query responses.
pub const XMLNS: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";

/// How the front reaches CloudWatch on awsJson1.0.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "cloudwatch",
    signing_name: "monitoring",
    protocol: Protocol::Json {
        target_prefix: "GraniteServiceVersion20100801",
    },
    operations: CloudWatchOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// How the front reaches CloudWatch on awsQuery (the same operations and constraints).
pub static QUERY_SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "cloudwatch",
    signing_name: "monitoring",
    protocol: Protocol::Query {
        xmlns: XMLNS,
        version: "2010-08-01",
    },
    operations: CloudWatchOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// Metric data is kept this long (CloudWatch keeps 1-minute data for 15 days).
pub const RETENTION_MS: u64 = 15 * 86_400_000;

const BATCH_PREFIX: &str = "cloudwatch/points/";

/// One stored `PutMetricData`: its rows, compactly.
#[derive(Debug, Deserialize)]
struct Batch {
    /// The raw values of the rows of `p` that have them (by index in `p`): what percentiles
    /// are computed from. Batches stored before raw values were kept have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    v: Vec<(usize, Vec<(f64, f64)>)>,
    /// When it was put, milliseconds.
    t: u64,
    /// Region.
    r: String,
    /// (namespace, metric name, dimensions, unit, bucket, count, sum, min, max)
    #[allow(clippy::type_complexity)]
    p: Vec<(
        String,
        String,
        Vec<(String, String)>,
        u8,
        i64,
        f64,
        f64,
        f64,
        f64,
    )>,
}

/// A [`Batch`] as written: the same record, borrowing the rows' strings.
#[derive(Serialize)]
struct BatchOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    v: Vec<(usize, &'a [(f64, f64)])>,
    t: u64,
    r: &'a str,
    #[allow(clippy::type_complexity)]
    p: Vec<(
        &'a str,
        &'a str,
        &'a [(String, String)],
        u8,
        i64,
        f64,
        f64,
        f64,
        f64,
    )>,
}

/// What alarm actions do: implemented by the composition root over the services whose ARNs
/// actions name (Application Auto Scaling's policies).
#[async_trait]
pub trait AlarmActions: Send + Sync + std::fmt::Debug {
    /// Whether `arn` names an action this server runs (checked by `PutMetricAlarm`).
    fn accepts(&self, arn: &str) -> bool;
    /// Runs the action `arn` for `alarm` (its name) now in `state`; `value` is the most recent
    /// datapoint the evaluation saw (none for `SetAlarmState` or missing data), `threshold` the
    /// alarm's.
    async fn invoke(
        &self,
        region: &str,
        arn: &str,
        alarm: &str,
        state: &str,
        value: Option<f64>,
        threshold: f64,
    );
}

/// The CloudWatch service: the series index, the store behind it, the alarms.
#[derive(Debug)]
pub struct CloudWatchService {
    store: Arc<dyn Store>,
    index: RwLock<Index>,
    nonce: u32,
    seq: AtomicU64,
    actions: std::sync::OnceLock<Arc<dyn AlarmActions>>,
    /// What alarm evaluation and retention write through when set (the leader's fenced store
    /// with several replicas); the API's store otherwise.
    controller_store: std::sync::OnceLock<Arc<dyn Store>>,
    /// The change feed opened before the start-up scan, and the batches that scan read which
    /// were written after the feed's start, until [`CloudWatchService::follow`] takes them.
    pending_watch: parking_lot::Mutex<Option<(gantry_store::Watch, HashSet<String>)>>,
}

/// Reads every stored metric batch into a new index; also returns the keys of batches written
/// after revision `since` (a change feed opened at `since` delivers them again).
async fn load_index(
    store: &dyn Store,
    since: gantry_store::Revision,
) -> Result<(Index, HashSet<String>), StoreError> {
    let mut index = Index::default();
    let mut recent = HashSet::new();
    let mut after: Option<String> = None;
    let mut batches = 0usize;
    loop {
        let page = store.scan(BATCH_PREFIX, after.as_deref(), 512).await?;
        for record in &page.records {
            if record.revision > since {
                recent.insert(record.key.clone());
            }
            match serde_json::from_slice::<Batch>(&record.value) {
                Ok(b) => {
                    batches += 1;
                    for row in rows_of(&b) {
                        index.add(&row, b.t);
                    }
                }
                Err(error) => {
                    tracing::error!(key = %record.key, %error, "unreadable metric batch skipped");
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    tracing::debug!(batches, series = index.len(), "metric data loaded");
    Ok((index, recent))
}

impl CloudWatchService {
    /// Opens the service over `store`, replaying the stored metric data into the index.
    pub async fn open(store: Arc<dyn Store>) -> Result<Arc<Self>, StoreError> {
        // Watching from before the scan: what other replicas write meanwhile is not missed
        // (see [`CloudWatchService::follow`]).
        let since = store.revision().await?;
        let watch = store.watch(BATCH_PREFIX);
        let (index, scanned) = load_index(store.as_ref(), since).await?;
        Ok(Arc::new(Self {
            store,
            index: RwLock::new(index),
            nonce: rand::random(),
            seq: AtomicU64::new(0),
            actions: std::sync::OnceLock::new(),
            controller_store: std::sync::OnceLock::new(),
            pending_watch: parking_lot::Mutex::new(Some((watch, scanned))),
        }))
    }

    /// Declares this replica the only writer of its store (one server): the change-feed watch
    /// that [`Self::follow`] would read is dropped. Left unread, a watch keeps every commit the
    /// store makes, values included, alive in the feed (up to its 4,096 most recent commits:
    /// 1.25 GiB of server memory after 1 GiB of log events).
    pub fn stand_alone(&self) {
        drop(self.pending_watch.lock().take());
    }

    /// Keeps the in-memory index in step with the metric data other replicas store (several
    /// servers on one store), until `shutdown`: their batches are added as they are written,
    /// data past the retention leaves the index (the leader deletes it from the store), and the
    /// index is rebuilt from the store if this replica fell behind the change feed.
    pub async fn follow(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some((mut watch, mut scanned)) = self.pending_watch.lock().take() else {
            return;
        };
        let own = format!("-{:08x}-", self.nonce);
        let mut expiry = tokio::time::interval(std::time::Duration::from_secs(600));
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = expiry.tick() => {
                    let cutoff = now_millis().saturating_sub(RETENTION_MS);
                    self.index.write().expire((cutoff / 1000) as i64);
                    continue;
                }
                event = watch.next() => event,
            };
            match event {
                Ok(ev) => {
                    let Some(value) = ev.value else { continue };
                    // Batches are written once: skip this replica's own (already indexed)
                    // and those the start-up scan already read.
                    if ev.key.contains(&own) || scanned.remove(&ev.key) {
                        continue;
                    }
                    match serde_json::from_slice::<Batch>(&value) {
                        Ok(b) => {
                            let mut index = self.index.write();
                            for row in rows_of(&b) {
                                index.add(&row, b.t);
                            }
                        }
                        Err(error) => {
                            tracing::error!(key = %ev.key, %error, "unreadable metric batch skipped");
                        }
                    }
                }
                Err(gantry_store::WatchError::Closed) => return,
                Err(gantry_store::WatchError::Lagged(_)) => {
                    tracing::warn!("metric change feed lagged; reloading the index from the store");
                    let since = match self.store.revision().await {
                        Ok(r) => r,
                        Err(error) => {
                            tracing::warn!(%error, "reloading metric data failed; retrying");
                            continue;
                        }
                    };
                    watch = self.store.watch(BATCH_PREFIX);
                    match load_index(self.store.as_ref(), since).await {
                        Ok((index, seen)) => {
                            *self.index.write() = index;
                            scanned = seen;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "reloading metric data failed");
                        }
                    }
                }
            }
        }
    }

    /// Stores `rows` (one batch, durable when this returns) and adds them to the index. The
    /// composition root publishes the `AWS/*` namespaces through this.
    pub async fn put_rows(
        &self,
        region: &str,
        rows: Vec<Row>,
        now_ms: u64,
    ) -> Result<(), AwsError> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = BatchOut {
            v: rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.values.as_deref().map(|v| (i, v)))
                .collect(),
            t: now_ms,
            r: region,
            p: rows
                .iter()
                .map(|r| {
                    (
                        r.key.namespace.as_str(),
                        r.key.name.as_str(),
                        r.key.dimensions.as_slice(),
                        r.unit,
                        r.bucket,
                        r.agg.count,
                        r.agg.sum,
                        r.agg.min,
                        r.agg.max,
                    )
                })
                .collect(),
        };
        let value = serde_json::to_vec(&batch).map_err(|e| AwsError::server(e.to_string()))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let key = format!("{BATCH_PREFIX}{now_ms:013}-{:08x}-{seq:010}", self.nonce);
        self.store
            .commit(Txn::new().put(key, value))
            .await
            .map_err(error::store)?;
        let mut index = self.index.write();
        for row in &rows {
            index.add(row, now_ms);
        }
        Ok(())
    }

    /// Drops metric data older than the retention, from the store and the index. Returns the
    /// number of batches deleted.
    pub async fn maintain(&self, now_ms: u64) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(RETENTION_MS);
        let cutoff_key = format!("{BATCH_PREFIX}{cutoff:013}");
        let mut deleted = 0;
        loop {
            let page = self.store.scan(BATCH_PREFIX, None, 256).await?;
            let old: Vec<String> = page
                .records
                .into_iter()
                .map(|r| r.key)
                .filter(|k| *k < cutoff_key)
                .collect();
            if old.is_empty() {
                break;
            }
            let n = old.len();
            let mut txn = Txn::new();
            for k in old {
                txn = txn.delete(k);
            }
            if !self.controller_store().commit(txn).await?.is_committed() {
                // Another writer (or a newer leader) got there first: stop this pass.
                break;
            }
            deleted += n;
            if n < 256 {
                break;
            }
        }
        self.index.write().expire((cutoff / 1000) as i64);
        Ok(deleted)
    }

    /// Runs `op` on its JSON input.
    pub async fn call_json(
        &self,
        op: CloudWatchOperation,
        input: Value,
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        use CloudWatchOperation as O;
        match op {
            O::PutMetricData => {
                let rows = metrics::put_metric_data(&input, &ctx.region, ctx.now)?;
                self.put_rows(&ctx.region, rows, ctx.now).await?;
                Ok(json!({}))
            }
            O::GetMetricStatistics => self.get_metric_statistics(&input, ctx),
            O::GetMetricData => self.get_metric_data(&input, ctx),
            O::ListMetrics => self.list_metrics(&input, ctx),
            O::PutMetricAlarm => alarms::put_metric_alarm(self, &input, ctx).await,
            O::DescribeAlarms => alarms::describe_alarms(self, &input, ctx).await,
            O::DescribeAlarmsForMetric => {
                alarms::describe_alarms_for_metric(self, &input, ctx).await
            }
            O::DeleteAlarms => alarms::delete_alarms(self, &input, ctx).await,
            O::SetAlarmState => alarms::set_alarm_state(self, &input, ctx).await,
            O::EnableAlarmActions => alarms::set_actions_enabled(self, &input, ctx, true).await,
            O::DisableAlarmActions => alarms::set_actions_enabled(self, &input, ctx, false).await,
            O::DescribeAlarmHistory => alarms::describe_alarm_history(self, &input, ctx).await,
            other => Err(AwsError::client(
                "InvalidAction",
                format!("The operation {other} is not supported by this endpoint."),
            )),
        }
    }

    fn get_metric_statistics(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        let key = metrics::series_key(input, &ctx.region, "")?;
        let (start, end) = metrics::time_range(input)?;
        let period = input
            .get("Period")
            .and_then(Value::as_i64)
            .ok_or_else(|| error::missing("Period"))?;
        metrics::check_period(period, "Period")?;
        let stats = metrics::statistics(input)?;
        let raw = stats
            .iter()
            .any(|s| matches!(s, series::Stat::Percentile(_)));
        let unit = metrics::unit(input.get("Unit"), "unit")?;
        let first = metrics::align_start(start, period);
        let last = end.ceil() as i64;
        let requested = (last - first + period - 1) / period;
        if requested > metrics::MAX_STATISTICS_DATAPOINTS {
            return Err(error::combination(format!(
                "You have requested up to {requested} datapoints, which exceeds the limit of {}. \
                 You may reduce the datapoints requested by increasing Period, or decreasing the \
                 time range.",
                metrics::MAX_STATISTICS_DATAPOINTS
            )));
        }
        let periods = self
            .index
            .read()
            .periods(&key, first, last, period, unit, raw);
        let points: Vec<Value> = periods
            .iter()
            .map(|p| metrics::datapoint(p, &stats))
            .collect();
        Ok(json!({ "Label": key.name, "Datapoints": points }))
    }

    /// The values of one metric statistic per period, in time order.
    pub fn stat_series(
        &self,
        key: &SeriesKey,
        start: i64,
        end: i64,
        period: i64,
        stat: series::Stat,
        unit: Option<u8>,
    ) -> metrics::TimeSeries {
        let raw = matches!(stat, series::Stat::Percentile(_));
        let periods = self
            .index
            .read()
            .periods(key, start, end, period, unit, raw);
        // The periods are in time order, the units of one period next to each other: merging
        // neighbours with the same start merges the units.
        let mut merged: Vec<PeriodAgg> = Vec::with_capacity(periods.len());
        for p in periods {
            match merged.last_mut() {
                Some(m) if m.start == p.start => m.merge(&p),
                _ => merged.push(p),
            }
        }
        // Collected from keys in ascending order, the map is built in one pass.
        merged
            .into_iter()
            .filter_map(|a| Some((a.start, a.stat(stat)?)))
            .collect()
    }

    /// What a `GetMetricData` answers: the results to return (in query order) and whether
    /// their datapoints go in ascending time order.
    fn metric_data(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<(Vec<math::QueryResult>, bool), AwsError> {
        let (start, end) = metrics::time_range(input)?;
        if input.get("NextToken").and_then(Value::as_str).is_some() {
            return Err(AwsError::client(
                "InvalidNextToken",
                "The NextToken is invalid: this server returns every datapoint in one page.",
            ));
        }
        let queries = input
            .get("MetricDataQueries")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if queries.is_empty() {
            return Err(error::missing("MetricDataQueries"));
        }
        if queries.len() > 500 {
            return Err(invalid(
                "The collection MetricDataQueries must not have a size greater than 500.",
            ));
        }
        let ascending = match input.get("ScanBy").and_then(Value::as_str) {
            None | Some("TimestampDescending") => false,
            Some("TimestampAscending") => true,
            Some(other) => return Err(error::invalid_value(other, "ScanBy")),
        };
        let max = input
            .get("MaxDatapoints")
            .and_then(Value::as_i64)
            .unwrap_or(100_800);
        let results = math::evaluate_queries(self, queries, start, end, &ctx.region)?;
        let total: usize = results.iter().map(|r| r.values.len()).sum();
        if total as i64 > max {
            return Err(error::combination(format!(
                "The queries return {total} datapoints, more than MaxDatapoints ({max}); this \
                 server does not page GetMetricData: narrow the time range or increase Period."
            )));
        }
        let returned = results.into_iter().filter(|r| r.return_data).collect();
        Ok((returned, ascending))
    }

    /// `GetMetricData` as a JSON value (what the query protocol's XML is written from).
    fn get_metric_data(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        let (results, ascending) = self.metric_data(input, ctx)?;
        Ok(wire::metric_data_value(results, ascending))
    }

    /// `GetMetricData` written straight to awsJson bytes: the answer is mostly timestamps and
    /// values, which are not worth a JSON value each.
    fn get_metric_data_serialized(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<Vec<u8>, AwsError> {
        let (results, ascending) = self.metric_data(input, ctx)?;
        Ok(wire::metric_data_json(&results, ascending))
    }

    fn list_metrics(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        const PAGE: usize = 500;
        let filter = metrics::ListFilter::parse(input, ctx.now)?;
        let skip = match input.get("NextToken").and_then(Value::as_str) {
            None => 0,
            Some(t) => t.parse::<usize>().map_err(|_| {
                AwsError::client("InvalidNextToken", format!("The NextToken {t} is invalid."))
            })?,
        };
        let keys = self.index.read().keys();
        let matching: Vec<&SeriesKey> = keys
            .iter()
            .filter(|(k, last)| filter.matches(k, *last, &ctx.region))
            .map(|(k, _)| k.as_ref())
            .collect();
        let page: Vec<Value> = matching
            .iter()
            .skip(skip)
            .take(PAGE)
            .map(|k| metrics::metric_json(k))
            .collect();
        let mut out = json!({ "Metrics": page });
        if matching.len() > skip + PAGE {
            out["NextToken"] = json!((skip + PAGE).to_string());
        }
        Ok(out)
    }

    /// Sets what alarm actions run (once; alarms with actions are refused until then).
    pub fn set_actions(&self, actions: Arc<dyn AlarmActions>) {
        let _ = self.actions.set(actions);
    }

    pub(crate) fn actions(&self) -> Option<&Arc<dyn AlarmActions>> {
        self.actions.get()
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Makes alarm evaluation and metric retention (the leader's jobs) write through `store`,
    /// so a deposed leader's writes are refused. Only the first call counts.
    pub fn set_controller_store(&self, store: Arc<dyn Store>) {
        let _ = self.controller_store.set(store);
    }

    pub(crate) fn controller_store(&self) -> &Arc<dyn Store> {
        self.controller_store.get().unwrap_or(&self.store)
    }
}

fn rows_of(b: &Batch) -> impl Iterator<Item = Row> + '_ {
    let mut values: std::collections::HashMap<usize, &Vec<(f64, f64)>> =
        b.v.iter().map(|(i, v)| (*i, v)).collect();
    b.p.iter().enumerate().map(
        move |(i, (ns, name, dims, unit, bucket, count, sum, min, max))| Row {
            key: SeriesKey {
                region: b.r.clone(),
                namespace: ns.clone(),
                name: name.clone(),
                dimensions: dims.clone(),
            },
            bucket: *bucket,
            unit: *unit,
            agg: Agg {
                count: *count,
                sum: *sum,
                min: *min,
                max: *max,
            },
            values: values.remove(&i).cloned(),
        },
    )
}

fn operation(op: &str) -> Result<CloudWatchOperation, AwsError> {
    op.parse().map_err(|()| {
        AwsError::client(
            "InvalidAction",
            format!("Could not find operation {op} for version 2010-08-01"),
        )
    })
}

#[async_trait]
impl JsonService for CloudWatchService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        self.call_body(operation(op)?, body, ctx).await
    }

    async fn call_serialized(
        &self,
        op: &str,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Vec<u8>, AwsError> {
        match operation(op)? {
            CloudWatchOperation::GetMetricData => {
                self.get_metric_data_serialized(&json_input(body)?, ctx)
            }
            op => self
                .call_body(op, body, ctx)
                .await
                .map(|v| v.to_string().into_bytes()),
        }
    }
}

impl CloudWatchService {
    /// Runs `op` on an awsJson body.
    async fn call_body(
        &self,
        op: CloudWatchOperation,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        if op == CloudWatchOperation::PutMetricData
            && let Some(rows) = metrics::put_metric_data_body(body, &ctx.region, ctx.now)
        {
            // Decoded without a JSON value per member (the usual case).
            self.put_rows(&ctx.region, rows?, ctx.now).await?;
            return Ok(json!({}));
        }
        self.call_json(op, json_input(body)?, ctx).await
    }
}

/// An awsJson request body as a value.
fn json_input(body: &[u8]) -> Result<Value, AwsError> {
    match gantry_aws_proto::json::parse_body(body) {
        Ok(v) => Ok(v),
        Err(first) => {
            // Python's JSON writer sends non-finite doubles as bare NaN / Infinity.
            gantry_aws_proto::json::parse_body(&wire::quote_non_finite(body)).map_err(|_| first)
        }
    }
}

/// CloudWatch on awsQuery: the same service, its input converted from form parameters and its
/// results written as XML ([`wire`]).
#[derive(Debug)]
pub struct CloudWatchQuery(pub Arc<CloudWatchService>);

#[async_trait]
impl QueryService for CloudWatchQuery {
    fn spec(&self) -> &'static ServiceSpec {
        &QUERY_SPEC
    }

    async fn call(
        &self,
        action: &str,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<String, AwsError> {
        let op = operation(action)?;
        let input = wire::query_to_json(action, req)?;
        let result = self.0.call_json(op, input, ctx).await?;
        wire::json_to_xml(action, &result)
    }
}

/// The service on both wires, for the composition root.
#[derive(Debug, Clone)]
pub struct CloudWatchJson(pub Arc<CloudWatchService>);

#[async_trait]
impl JsonService for CloudWatchJson {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        JsonService::call(self.0.as_ref(), op, body, ctx).await
    }

    async fn call_serialized(
        &self,
        op: &str,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Vec<u8>, AwsError> {
        JsonService::call_serialized(self.0.as_ref(), op, body, ctx).await
    }
}

impl CloudWatchService {
    /// Evaluates the alarms every `evaluation_interval` (CloudWatch: every minute) and drops
    /// expired metric data every ten minutes, until `shutdown` turns true.
    pub async fn run(
        self: Arc<Self>,
        evaluation_interval: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(evaluation_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_maintenance = 0u64;
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = tick.tick() => {
                    let now = now_millis();
                    match self.evaluate_alarms(now).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(alarms = n, "alarm states changed"),
                        Err(error) => tracing::warn!(%error, "alarm evaluation failed; retrying next interval"),
                    }
                    if now.saturating_sub(last_maintenance) >= 600_000 {
                        last_maintenance = now;
                        if let Err(error) = self.maintain(now).await {
                            tracing::warn!(%error, "metric retention pass failed; retrying later");
                        }
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lone server's CloudWatch keeps no unread watch: the store's feed would otherwise hold
    /// every later commit of every service, values included.
    #[tokio::test]
    async fn a_lone_server_keeps_no_unread_watch() {
        let store = Arc::new(gantry_store::MemoryStore::new());
        let svc = CloudWatchService::open(store.clone()).await.unwrap();
        let commit = |i: usize| {
            let store = store.clone();
            async move {
                let txn = gantry_store::Txn::new().put(format!("logs/x/{i}"), vec![0u8; 1024]);
                store.commit(txn).await.unwrap();
            }
        };
        for i in 0..10 {
            commit(i).await;
        }
        assert_eq!(
            store.unread_commits(),
            10,
            "the follower's watch holds them"
        );
        svc.stand_alone();
        assert_eq!(store.unread_commits(), 0);
        for i in 10..20 {
            commit(i).await;
        }
        assert_eq!(store.unread_commits(), 0);
    }

    /// What `PutMetricData` stored reads back, after a restart, as the same index.
    #[tokio::test]
    async fn stored_batches_load_back_into_the_same_index() {
        let store: Arc<dyn Store> = Arc::new(gantry_store::MemoryStore::new());
        let now_ms = 1_796_551_200_000;
        let svc = CloudWatchService::open(store.clone()).await.unwrap();
        let input = json!({"Namespace": "App", "MetricData": [
            {"MetricName": "Latency", "Dimensions": [{"Name": "Host", "Value": "a\"b"}],
             "Values": [1.5, 2.0, 2.0], "Counts": [1, 2, 1], "Unit": "Milliseconds"},
            {"MetricName": "Latency", "Dimensions": [{"Name": "Host", "Value": "a\"b"}],
             "Value": -3.0, "Unit": "Milliseconds", "Timestamp": 1_796_551_100},
            {"MetricName": "Errors", "StatisticValues":
                {"SampleCount": 3, "Sum": 6, "Minimum": 1, "Maximum": 3}, "StorageResolution": 1},
        ]});
        let rows = metrics::put_metric_data(&input, "eu-west-1", now_ms).unwrap();
        let keys: Vec<SeriesKey> = rows.iter().map(|r| r.key.clone()).collect();
        svc.put_rows("eu-west-1", rows, now_ms).await.unwrap();
        let again = CloudWatchService::open(store).await.unwrap();
        let (a, b) = (svc.index.read(), again.index.read());
        assert_eq!(a.keys(), b.keys());
        let start = (now_ms / 1000) as i64 - 3600;
        for key in &keys {
            let want = a.periods(key, start, start + 7200, 60, None, true);
            assert!(!want.is_empty());
            assert_eq!(want, b.periods(key, start, start + 7200, 60, None, true));
        }
    }
}
