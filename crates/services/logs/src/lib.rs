//! CloudWatch Logs (awsJson1.1, target prefix `Logs_20140328`): log groups, log streams, event
//! ingestion and reads, filter patterns, retention, tags and Logs Insights queries, over the Gantry
//! store.
//!
//! Every operation of the model is listed in [`LogsOperation`]; the implemented ones live in one
//! module per resource (`groups`, `streams`, `events`, `tags`, `metric_filters`,
//! `resource_policies`, `queries` with the pure query engine in [`insights`]), the rest answer
//! `InvalidOperationException`. Events are stored in chunks (`chunk`: at most 64 KiB of messages
//! within one second), keyed by stream, first timestamp and batch sequence, with a reverse index by
//! last timestamp; the stream's totals are updated in the same transaction. Reads (`read`) seek to
//! their token and merge the chunks they reach, so a call costs what it returns, and at most
//! [`READ_THREADS`] run at once, on threads of their own. [`LogsService::run_retention`] deletes what PutRetentionPolicy has expired; reads
//! never return expired events even before the job runs.
//!
//! Must not depend on Docker, the scheduler or the ECS API; it only plugs into
//! [`gantry_front::Front`] as a [`JsonService`].

mod chunk;
#[rustfmt::skip]
mod model_constraints;
mod error;
mod events;
mod groups;
pub mod insights;
mod keys;
pub mod metric_filters;
mod model;
pub mod pattern;
mod pool;
mod queries;
mod read;
mod resource_policies;
mod retention;
mod streams;
mod tags;
mod upgrade;
mod wire;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_front::{Clock, JsonService, Protocol, RequestContext, ServiceSpec, SystemClock};
use gantry_store::Store;
use serde_json::Value;

pub use error::LogsError;
pub use model::RETENTION_DAYS;

/// The `X-Amz-Target` prefix of CloudWatch Logs.
pub const TARGET_PREFIX: &str = "Logs_20140328";

pub use pool::READ_THREADS;

/// How often the retention job runs unless configured otherwise.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);

gantry_front::operations! {
/// Every operation of the CloudWatch Logs API model.
pub enum LogsOperation {
AssociateKmsKey,
AssociateSourceToS3TableIntegration,
CancelExportTask,
CancelImportTask,
CreateDelivery,
CreateExportTask,
CreateImportTask,
CreateLogAnomalyDetector,
CreateLogGroup,
CreateLogStream,
CreateLookupTable,
CreateScheduledQuery,
DeleteAccountPolicy,
DeleteDataProtectionPolicy,
DeleteDelivery,
DeleteDeliveryDestination,
DeleteDeliveryDestinationPolicy,
DeleteDeliverySource,
DeleteDestination,
DeleteIndexPolicy,
DeleteIntegration,
DeleteLogAnomalyDetector,
DeleteLogGroup,
DeleteLogStream,
DeleteLookupTable,
DeleteMetricFilter,
DeleteQueryDefinition,
DeleteResourcePolicy,
DeleteRetentionPolicy,
DeleteScheduledQuery,
DeleteSubscriptionFilter,
DeleteTransformer,
DescribeAccountPolicies,
DescribeConfigurationTemplates,
DescribeDeliveries,
DescribeDeliveryDestinations,
DescribeDeliverySources,
DescribeDestinations,
DescribeExportTasks,
DescribeFieldIndexes,
DescribeImportTaskBatches,
DescribeImportTasks,
DescribeIndexPolicies,
DescribeLogGroups,
DescribeLogStreams,
DescribeLookupTables,
DescribeMetricFilters,
DescribeQueries,
DescribeQueryDefinitions,
DescribeResourcePolicies,
DescribeSubscriptionFilters,
DisassociateKmsKey,
DisassociateSourceFromS3TableIntegration,
FilterLogEvents,
GetDataProtectionPolicy,
GetDelivery,
GetDeliveryDestination,
GetDeliveryDestinationPolicy,
GetDeliverySource,
GetIntegration,
GetLogAnomalyDetector,
GetLogEvents,
GetLogFields,
GetLogGroupFields,
GetLogObject,
GetLogRecord,
GetLookupTable,
GetQueryResults,
GetScheduledQuery,
GetScheduledQueryHistory,
GetTransformer,
ListAggregateLogGroupSummaries,
ListAnomalies,
ListIntegrations,
ListLogAnomalyDetectors,
ListLogGroups,
ListLogGroupsForQuery,
ListScheduledQueries,
ListSourcesForS3TableIntegration,
ListTagsForResource,
ListTagsLogGroup,
PutAccountPolicy,
PutBearerTokenAuthentication,
PutDataProtectionPolicy,
PutDeliveryDestination,
PutDeliveryDestinationPolicy,
PutDeliverySource,
PutDestination,
PutDestinationPolicy,
PutIndexPolicy,
PutIntegration,
PutLogEvents,
PutLogGroupDeletionProtection,
PutMetricFilter,
PutQueryDefinition,
PutResourcePolicy,
PutRetentionPolicy,
PutSubscriptionFilter,
PutTransformer,
StartLiveTail,
StartQuery,
StopQuery,
TagLogGroup,
TagResource,
TestMetricFilter,
TestTransformer,
UntagLogGroup,
UntagResource,
UpdateAnomaly,
UpdateDeliveryConfiguration,
UpdateLogAnomalyDetector,
UpdateLookupTable,
UpdateScheduledQuery,
}
}

/// How the front reaches CloudWatch Logs.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "logs",
    signing_name: "logs",
    protocol: Protocol::Json {
        target_prefix: TARGET_PREFIX,
    },
    operations: LogsOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// The CloudWatch Logs service: state in the store, time from the clock (for the retention job).
pub struct LogsService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) retention_interval: Duration,
    /// The threads GetLogEvents and FilterLogEvents run on, started by the first read.
    reads: Arc<OnceLock<pool::ReadPool>>,
    /// The thread Logs Insights queries run on, started by the first StartQuery.
    queries: Arc<OnceLock<pool::ReadPool>>,
    /// Where metric filters publish; without it, filters are kept but publish nothing.
    pub(crate) metrics: Option<Arc<dyn metric_filters::MetricPublisher>>,
    pub(crate) read_limits: ReadLimits,
}

/// What one GetLogEvents or FilterLogEvents call may hold and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Chunk data a call holds before it drops what it is not reading (and reads it again).
    pub resident_bytes: usize,
    /// Chunk data a FilterLogEvents call reads before it answers what it found with a
    /// `nextToken` (AWS too answers partial or empty pages with a token).
    pub filter_scan_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            resident_bytes: 2 << 20,
            filter_scan_bytes: 16 << 20,
        }
    }
}

impl fmt::Debug for LogsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogsService")
            .field("store", &self.store)
            .field("retention_interval", &self.retention_interval)
            .field("read_limits", &self.read_limits)
            .finish()
    }
}

impl LogsService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            retention_interval: DEFAULT_RETENTION_INTERVAL,
            reads: Arc::new(OnceLock::new()),
            queries: Arc::new(OnceLock::new()),
            metrics: None,
            read_limits: ReadLimits::default(),
        }
    }

    /// The same service writing through `store`: the leader's retention job runs on a copy
    /// writing through the fenced store, so a deposed leader's writes are refused.
    #[must_use]
    pub fn writing_through(&self, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: self.clock.clone(),
            retention_interval: self.retention_interval,
            reads: self.reads.clone(),
            queries: self.queries.clone(),
            metrics: self.metrics.clone(),
            read_limits: self.read_limits,
        }
    }

    /// Publishes what metric filters make of incoming events through `publisher`.
    #[must_use]
    pub fn with_metric_publisher(
        mut self,
        publisher: Arc<dyn metric_filters::MetricPublisher>,
    ) -> Self {
        self.metrics = Some(publisher);
        self
    }

    /// Bounds each read by `limits` instead of the defaults.
    #[must_use]
    pub fn with_read_limits(mut self, limits: ReadLimits) -> Self {
        self.read_limits = limits;
        self
    }

    /// Runs an event read on the read threads (see `pool`).
    async fn read<F, Fut>(
        &self,
        body: &[u8],
        ctx: &RequestContext,
        f: F,
    ) -> Result<Value, LogsError>
    where
        F: FnOnce(LogsService, Vec<u8>, RequestContext) -> Fut,
        Fut: std::future::Future<Output = Result<Value, LogsError>> + Send + 'static,
    {
        let pool = match self.reads.get() {
            Some(p) => p,
            None => {
                let started = pool::ReadPool::start()?;
                self.reads.get_or_init(|| started)
            }
        };
        pool.run(f(self.handle(), body.to_vec(), ctx.clone())).await
    }

    /// Another handle on the same service (same store, clock, limits and threads).
    fn handle(&self) -> LogsService {
        LogsService {
            store: self.store.clone(),
            clock: self.clock.clone(),
            retention_interval: self.retention_interval,
            reads: self.reads.clone(),
            queries: self.queries.clone(),
            metrics: self.metrics.clone(),
            read_limits: self.read_limits,
        }
    }

    /// Runs a started Logs Insights query on the query thread, in the background.
    fn spawn_query(&self, region: String, id: String, compiled: insights::query::Query) {
        let svc = self.handle();
        let queries = self.queries.clone();
        tokio::spawn(async move {
            let pool = match queries.get() {
                Some(p) => p,
                None => match pool::ReadPool::start_named(1, "gantry-logs-query") {
                    Ok(started) => queries.get_or_init(|| started),
                    Err(error) => {
                        tracing::error!(%error, "logs insights query thread could not start");
                        return;
                    }
                },
            };
            let work = queries::run(svc, region, id.clone(), compiled);
            if let Err(error) = pool.run(work).await {
                tracing::warn!(query_id = %id, %error, "logs insights query ended without recording its outcome");
            }
        });
    }

    /// Uses `clock` for the retention job's notion of now (requests use their own `now`).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs the retention job every `interval`.
    #[must_use]
    pub fn with_retention_interval(mut self, interval: Duration) -> Self {
        self.retention_interval = interval;
        self
    }

    /// Whether Gantry serves `op` (the rest answer `InvalidOperationException`).
    pub fn is_implemented(op: LogsOperation) -> bool {
        use LogsOperation::*;
        matches!(
            op,
            CreateLogGroup
                | DeleteLogGroup
                | DescribeLogGroups
                | CreateLogStream
                | DeleteLogStream
                | DescribeLogStreams
                | PutLogEvents
                | GetLogEvents
                | FilterLogEvents
                | PutRetentionPolicy
                | DeleteRetentionPolicy
                | TagResource
                | UntagResource
                | ListTagsForResource
                | TagLogGroup
                | UntagLogGroup
                | ListTagsLogGroup
                | StartQuery
                | GetQueryResults
                | StopQuery
                | DescribeQueries
                | PutQueryDefinition
                | DescribeQueryDefinitions
                | DeleteQueryDefinition
                | PutMetricFilter
                | DescribeMetricFilters
                | DeleteMetricFilter
                | TestMetricFilter
                | PutResourcePolicy
                | DescribeResourcePolicies
                | DeleteResourcePolicy
        )
    }

    async fn dispatch(
        &self,
        op: LogsOperation,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, LogsError> {
        use LogsOperation::*;
        match op {
            CreateLogGroup => groups::create(self, body, ctx).await,
            DeleteLogGroup => groups::delete(self, body, ctx).await,
            DescribeLogGroups => groups::describe(self, body, ctx).await,
            PutRetentionPolicy => groups::put_retention(self, body, ctx).await,
            DeleteRetentionPolicy => groups::delete_retention(self, body, ctx).await,
            CreateLogStream => streams::create(self, body, ctx).await,
            DeleteLogStream => streams::delete(self, body, ctx).await,
            DescribeLogStreams => streams::describe(self, body, ctx).await,
            PutLogEvents => events::put(self, body, ctx).await,
            GetLogEvents => {
                self.read(body, ctx, |svc, body, ctx| async move {
                    events::get(&svc, &body, &ctx).await
                })
                .await
            }
            FilterLogEvents => {
                self.read(body, ctx, |svc, body, ctx| async move {
                    events::filter(&svc, &body, &ctx).await
                })
                .await
            }
            TagResource => tags::tag_resource(self, body, ctx).await,
            UntagResource => tags::untag_resource(self, body, ctx).await,
            ListTagsForResource => tags::list_for_resource(self, body, ctx).await,
            TagLogGroup => tags::tag_log_group(self, body, ctx).await,
            UntagLogGroup => tags::untag_log_group(self, body, ctx).await,
            ListTagsLogGroup => tags::list_log_group(self, body, ctx).await,
            StartQuery => queries::start(self, body, ctx).await,
            GetQueryResults => queries::get_results(self, body, ctx).await,
            StopQuery => queries::stop(self, body, ctx).await,
            DescribeQueries => queries::describe(self, body, ctx).await,
            PutQueryDefinition => queries::put_definition(self, body, ctx).await,
            DescribeQueryDefinitions => queries::describe_definitions(self, body, ctx).await,
            DeleteQueryDefinition => queries::delete_definition(self, body, ctx).await,
            PutMetricFilter => metric_filters::put(self, body, ctx).await,
            DescribeMetricFilters => metric_filters::describe(self, body, ctx).await,
            DeleteMetricFilter => metric_filters::delete(self, body, ctx).await,
            TestMetricFilter => metric_filters::test(self, body, ctx).await,
            PutResourcePolicy => resource_policies::put(self, body, ctx).await,
            DescribeResourcePolicies => resource_policies::describe(self, body, ctx).await,
            DeleteResourcePolicy => resource_policies::delete(self, body, ctx).await,
            other => Err(LogsError::InvalidOperation(format!(
                "The operation {other} is not supported by this endpoint."
            ))),
        }
    }

    /// Deletes every event batch that retention has fully expired as of `now` (epoch ms); returns
    /// how many batches were deleted.
    pub async fn enforce_retention(&self, now: u64) -> Result<usize, LogsError> {
        let batches = retention::enforce(self, now).await?;
        queries::expire(self, now).await?;
        Ok(batches)
    }

    /// Enforces retention every interval until `shutdown` turns true (or its sender is dropped).
    pub async fn run_retention(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.retention_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = tick.tick() => {
                    let now = self.clock.now_millis();
                    match self.enforce_retention(now).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(batches = n, "retention deleted expired log events"),
                        Err(error) => tracing::warn!(%error, "retention pass failed; retrying next interval"),
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

#[async_trait]
impl JsonService for LogsService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        let Ok(op) = op.parse::<LogsOperation>() else {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("Unknown operation {TARGET_PREFIX}.{op}"),
            ));
        };
        self.dispatch(op, body, ctx).await.map_err(AwsError::from)
    }
}
