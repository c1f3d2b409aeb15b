//! Prometheus metrics of the agent: task starts by outcome, the latency and failures of each
//! Docker Engine call (through [`MeteredRuntime`], a decorator of any [`ContainerRuntime`]), and
//! the usage samples taken through the stats API. The composition root registers
//! [`AgentMetrics`] into the registry it serves (`gantry agent --metrics-listen`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::runtime::{
    ContainerRuntime, ContainerSpec, ContainerState, HostInfo, ListedContainer, LocalImage,
    LogLine, RegistryAuth, RuntimeError, RuntimeEvent, SubnetNetwork,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

fn docker_histogram() -> Histogram {
    // 0.5 ms to about 16 s (pulls take longer and land in +Inf).
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// The agent's metrics.
#[derive(Debug)]
pub struct AgentMetrics {
    task_starts: Family<OutcomeLabels, Counter>,
    docker_latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
    docker_errors: Family<OperationLabels, Counter>,
    stats_samples: Family<OutcomeLabels, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self {
            task_starts: Family::default(),
            docker_latency: Family::new_with_constructor(docker_histogram),
            docker_errors: Family::default(),
            stats_samples: Family::default(),
        }
    }
}

impl AgentMetrics {
    /// Adds these metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "agent_task_starts",
            "Tasks this agent started: outcome running (all containers started) or failed (stopped before running)",
            self.task_starts.clone(),
        );
        registry.register(
            "agent_docker_request_duration_seconds",
            "Docker Engine API calls by operation, successful or not",
            self.docker_latency.clone(),
        );
        registry.register(
            "agent_docker_request_errors",
            "Docker Engine API calls that failed, by operation",
            self.docker_errors.clone(),
        );
        registry.register(
            "agent_stats_samples",
            "Container usage samples taken through the Docker stats API: outcome ok or failed",
            self.stats_samples.clone(),
        );
    }

    /// A task reached RUNNING.
    pub fn task_running(&self) {
        self.task_starts
            .get_or_create(&OutcomeLabels { outcome: "running" })
            .inc();
    }

    /// A task failed before it ran.
    pub fn task_failed(&self) {
        self.task_starts
            .get_or_create(&OutcomeLabels { outcome: "failed" })
            .inc();
    }

    /// One container's stats sample was taken (`ok`) or could not be.
    pub fn stats_sample(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.stats_samples
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    fn docker_call(&self, operation: &'static str, elapsed: Duration, ok: bool) {
        let labels = OperationLabels { operation };
        self.docker_latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.docker_errors.get_or_create(&labels).inc();
        }
    }
}

/// A [`ContainerRuntime`] that times every call of the one it wraps. Streams (`logs`, `events`)
/// are long-lived and not timed.
pub struct MeteredRuntime {
    inner: Arc<dyn ContainerRuntime>,
    metrics: Arc<AgentMetrics>,
}

impl std::fmt::Debug for MeteredRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredRuntime").finish_non_exhaustive()
    }
}

impl MeteredRuntime {
    pub fn new(inner: Arc<dyn ContainerRuntime>, metrics: Arc<AgentMetrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .docker_call(operation, started.elapsed(), result.is_ok());
        result
    }
}

#[async_trait]
impl ContainerRuntime for MeteredRuntime {
    async fn info(&self) -> Result<HostInfo, RuntimeError> {
        self.timed("info", self.inner.info()).await
    }
    async fn local_image(&self, image: &str) -> Result<Option<LocalImage>, RuntimeError> {
        self.timed("inspect_image", self.inner.local_image(image))
            .await
    }
    async fn remote_digest(
        &self,
        image: &str,
        auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError> {
        self.timed("distribution", self.inner.remote_digest(image, auth))
            .await
    }
    async fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> Result<(), RuntimeError> {
        self.timed("pull", self.inner.pull(image, auth)).await
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.timed("create", self.inner.create(spec)).await
    }
    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.timed("start", self.inner.start(id)).await
    }
    async fn stop(&self, id: &str, timeout: Option<Duration>) -> Result<(), RuntimeError> {
        self.timed("stop", self.inner.stop(id, timeout)).await
    }
    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.timed("remove", self.inner.remove(id)).await
    }
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.timed("remove_volume", self.inner.remove_volume(name))
            .await
    }
    async fn inspect(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        self.timed("inspect", self.inner.inspect(id)).await
    }
    async fn list_by_label(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ListedContainer>, RuntimeError> {
        self.timed("list", self.inner.list_by_label(key, value))
            .await
    }
    fn logs(&self, id: &str, since_secs: i64) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        self.inner.logs(id, since_secs)
    }
    async fn stats(&self, id: &str) -> Result<serde_json::Value, RuntimeError> {
        let result = self.timed("stats", self.inner.stats(id)).await;
        self.metrics.stats_sample(result.is_ok());
        result
    }
    fn events(
        &self,
        key: &str,
        value: &str,
    ) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        self.inner.events(key, value)
    }
    async fn bridge_gateway(&self) -> Result<Option<IpAddr>, RuntimeError> {
        self.timed("inspect_network", self.inner.bridge_gateway())
            .await
    }
    async fn ensure_subnet_network(&self, n: &SubnetNetwork) -> Result<String, RuntimeError> {
        self.timed("create_network", self.inner.ensure_subnet_network(n))
            .await
    }
    async fn ensure_imported_image(
        &self,
        image: &str,
        rootfs: Vec<u8>,
        cmd: &[&str],
    ) -> Result<(), RuntimeError> {
        self.timed(
            "import_image",
            self.inner.ensure_imported_image(image, rootfs, cmd),
        )
        .await
    }
    async fn subnet_networks(&self) -> Result<Vec<(String, usize)>, RuntimeError> {
        self.timed("list_networks", self.inner.subnet_networks())
            .await
    }
    async fn remove_network(&self, name: &str) -> Result<bool, RuntimeError> {
        self.timed("remove_network", self.inner.remove_network(name))
            .await
    }
}
