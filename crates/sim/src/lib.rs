//! Simulated container instances, so the control plane can be measured at 10,000 instances
//! without Docker.
//!
//! [`Simulator::start`] registers N fake container instances through the ECS API
//! (`RegisterContainerInstance`, a realistic mix: three zones `<region>a/b/c`, several instance
//! types and sizes, a custom `stack=blue|green` attribute, the capability attributes the real
//! agent announces), bounded to a few registrations in flight. Each instance then holds its own
//! assignment stream (`GET /agent/v1/connect`) open, exactly as the agent does, and acknowledges
//! its tasks at once: desired RUNNING is reported RUNNING, desired STOPPED is reported STOPPED
//! (`SubmitTaskStateChange` over one shared keep-alive pool, bounded concurrency, transient
//! failures retried). A lost stream is reopened with jittered back-off; an instance the control
//! plane no longer knows registers again.
//!
//! Everything goes over the wire: this crate depends on no other Gantry crate, so it measures
//! the control plane as an agent sees it (and would notice a wire change the agent missed).
//!
//! ```no_run
//! # async fn demo() -> Result<(), gantry_sim::SimError> {
//! let cfg = gantry_sim::SimConfig::new("http://127.0.0.1:4510", "default", 1000, "AKIA...", "secret");
//! gantry_sim::run(cfg, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod client;
pub mod fleet;
mod instance;
mod report;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

pub use client::{EcsClient, Prepared};

/// Where the root access key id is read from by [`SimConfig::from_env`] (as `gantry server`).
pub const ACCESS_KEY_ENV: &str = "GANTRY_ROOT_ACCESS_KEY_ID";
/// Where the root secret access key is read from by [`SimConfig::from_env`].
pub const SECRET_KEY_ENV: &str = "GANTRY_ROOT_SECRET_ACCESS_KEY";

/// Failures of the simulator and of its calls to the control plane.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SimError {
    /// The configuration is unusable (checked once by [`SimConfig::validate`]).
    #[error("invalid simulator configuration: {0}")]
    InvalidConfig(String),
    /// The control plane could not be reached, did not answer in time, or the stream broke.
    #[error("transport: {0}")]
    Transport(String),
    /// The control plane answered with an AWS error.
    #[error("{code} (HTTP {status}): {message}")]
    Aws {
        status: u16,
        code: String,
        message: String,
    },
    /// [`Simulator::wait_connected`] ran out of time.
    #[error("only {connected} of {instances} instances connected within {waited:?}")]
    NotConnected {
        connected: u64,
        instances: u64,
        waited: Duration,
    },
}

impl SimError {
    /// The AWS error code, if the control plane answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Aws { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: transport failures, throttling, server errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Aws { status, code, .. } => {
                *status >= 500 || *status == 429 || code.contains("Throttl")
            }
            Self::InvalidConfig(_) | Self::NotConnected { .. } => false,
        }
    }

    /// Whether the control plane rejected the request itself (4xx, not throttling nor auth).
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Aws { status, .. }
            if (400..500).contains(status) && *status != 403 && *status != 429)
            && !self.is_retryable()
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_concurrency() -> usize {
    64
}

/// The platform cluster Fargate capacity registers into (`gantry_domain::cluster::FARGATE_PLATFORM_CLUSTER`).
pub const FARGATE_PLATFORM_CLUSTER: &str = "platform.fargate";

/// The simulator's configuration.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimConfig {
    /// The control plane, `http://host:port`; with several server replicas, their URLs
    /// separated by commas (calls move to the next when one cannot be reached).
    pub endpoint: String,
    /// The cluster the instances join (created if missing).
    pub cluster: String,
    /// How many instances to simulate.
    pub instances: usize,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Seeds the fleet mix and the reconnection jitter.
    #[serde(default)]
    pub seed: u64,
    /// Registrations in flight at once.
    #[serde(default = "default_concurrency")]
    pub register_concurrency: usize,
    /// Streams being opened at once (open streams are not limited).
    #[serde(default = "default_concurrency")]
    pub connect_concurrency: usize,
    /// State change reports in flight at once.
    #[serde(default = "default_concurrency")]
    pub report_concurrency: usize,
    /// Register the instances as Fargate capacity of this platform pool (into the platform
    /// cluster) instead of into `cluster`.
    #[serde(default)]
    pub fargate_pool: Option<String>,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("endpoint", &self.endpoint)
            .field("cluster", &self.cluster)
            .field("instances", &self.instances)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("seed", &self.seed)
            .field("register_concurrency", &self.register_concurrency)
            .field("connect_concurrency", &self.connect_concurrency)
            .field("report_concurrency", &self.report_concurrency)
            .finish_non_exhaustive()
    }
}

impl SimConfig {
    /// A configuration with the defaults: region us-east-1, seed 0, 64 calls in flight each.
    pub fn new(
        endpoint: impl Into<String>,
        cluster: impl Into<String>,
        instances: usize,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            cluster: cluster.into(),
            instances,
            region: default_region(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            seed: 0,
            register_concurrency: default_concurrency(),
            connect_concurrency: default_concurrency(),
            report_concurrency: default_concurrency(),
            fargate_pool: None,
        }
    }

    /// The cluster the instances register into: `cluster`, or the platform cluster for a
    /// Fargate pool.
    pub fn registration_cluster(&self) -> &str {
        if self.fargate_pool.is_some() {
            FARGATE_PLATFORM_CLUSTER
        } else {
            &self.cluster
        }
    }

    /// As [`SimConfig::new`], with the root credentials from [`ACCESS_KEY_ENV`] and
    /// [`SECRET_KEY_ENV`].
    pub fn from_env(
        endpoint: impl Into<String>,
        cluster: impl Into<String>,
        instances: usize,
    ) -> Result<Self, SimError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SimError::InvalidConfig(format!("{name} is not set")))
        };
        Ok(Self::new(
            endpoint,
            cluster,
            instances,
            var(ACCESS_KEY_ENV)?,
            var(SECRET_KEY_ENV)?,
        ))
    }

    /// Checks the configuration once, before anything starts.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |why: &str| Err(SimError::InvalidConfig(why.to_owned()));
        if self.instances == 0 {
            return bad("instances must be at least 1");
        }
        let cluster_ok = self.fargate_pool.is_some()
            || (1..=255).contains(&self.cluster.len())
                && self
                    .cluster
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !cluster_ok {
            return bad("cluster must be 1-255 letters, digits, hyphens and underscores");
        }
        if self.region.is_empty() {
            return bad("region must not be empty");
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return bad("access_key_id and secret_access_key are required");
        }
        if self.register_concurrency == 0
            || self.connect_concurrency == 0
            || self.report_concurrency == 0
        {
            return bad("concurrency limits must be at least 1");
        }
        EcsClient::new(
            &self.endpoint,
            &self.region,
            &self.access_key_id,
            &self.secret_access_key,
            1,
            Duration::from_secs(1),
        )
        .map(drop)
    }
}

/// Counters shared by the instances.
#[derive(Debug, Default)]
struct Counters {
    registered: AtomicU64,
    connected: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    connect_failures: AtomicU64,
    register_failures: AtomicU64,
    reported_running: AtomicU64,
    reported_stopped: AtomicU64,
    report_failures: AtomicU64,
}

/// A snapshot of the fleet's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Instances configured.
    pub instances: u64,
    /// Instances registered (each once, re-registrations not counted).
    pub registered: u64,
    /// Instances whose assignment stream is open now.
    pub connected: u64,
    /// Streams opened, reconnections included.
    pub connects: u64,
    /// Streams lost.
    pub disconnects: u64,
    /// Stream openings that failed.
    pub connect_failures: u64,
    /// Registration attempts that failed (and were retried).
    pub register_failures: u64,
    /// RUNNING reports the control plane accepted.
    pub reported_running: u64,
    /// STOPPED reports the control plane accepted.
    pub reported_stopped: u64,
    /// Reports given up after retries or refused.
    pub report_failures: u64,
}

/// What the instances share.
struct Shared {
    cfg: SimConfig,
    /// ECS calls (registration, reports) over one keep-alive pool.
    api: EcsClient,
    /// The assignment streams, each on its own connection.
    streams: EcsClient,
    register_slots: Semaphore,
    connect_slots: Semaphore,
    reports: mpsc::Sender<stream::Report>,
    progress: Counters,
}

/// Raises the open-files soft limit to the hard limit (one socket per instance); the limit in
/// force afterwards.
fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// A running fleet; stopped (its connections dropped) by [`Simulator::stop`] or when dropped.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    driver: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Validates `cfg` and starts registering and connecting the instances on the current
    /// Tokio runtime; returns at once.
    pub async fn start(cfg: SimConfig) -> Result<Self, SimError> {
        cfg.validate()?;
        if let Some(limit) = raise_nofile_limit() {
            let need = (cfg.instances + cfg.report_concurrency + 64) as u64;
            if limit < need {
                tracing::warn!(
                    limit,
                    need,
                    "the open-files limit is below one socket per instance; some streams will fail"
                );
            }
        }
        let client = |max_idle: usize, timeout: Duration| {
            EcsClient::new(
                &cfg.endpoint,
                &cfg.region,
                &cfg.access_key_id,
                &cfg.secret_access_key,
                max_idle,
                timeout,
            )
        };
        let api = client(
            cfg.report_concurrency
                .max(cfg.register_concurrency)
                .saturating_mul(2),
            Duration::from_secs(30),
        )?;
        // A stream keeps its connection until it ends; a dropped one is not worth pooling.
        let streams = client(0, Duration::from_secs(30))?;
        let (tx, rx) = mpsc::channel(cfg.report_concurrency.saturating_mul(64).max(1024));
        let shared = Arc::new(Shared {
            register_slots: Semaphore::new(cfg.register_concurrency),
            connect_slots: Semaphore::new(cfg.connect_concurrency),
            reports: tx,
            progress: Counters::default(),
            api,
            streams,
            cfg,
        });
        tracing::info!(
            endpoint = %shared.cfg.endpoint,
            cluster = %shared.cfg.cluster,
            instances = shared.cfg.instances,
            "starting simulated instances"
        );
        let reporter = tokio::spawn(report::run(shared.clone(), rx));
        let fleet = fleet::fleet(
            &shared.cfg.region,
            shared.cfg.instances,
            shared.cfg.seed,
            fleet::DEFAULT_TYPES,
        );
        let sh = shared.clone();
        let driver = tokio::spawn(async move {
            let mut set = JoinSet::new();
            for spec in fleet {
                set.spawn(instance::run(sh.clone(), spec));
            }
            // Instances run until aborted; dropping the set (on abort) aborts them all.
            while set.join_next().await.is_some() {}
        });
        Ok(Self {
            shared,
            driver,
            reporter,
        })
    }

    /// The fleet's progress now.
    pub fn progress(&self) -> Progress {
        let c = &self.shared.progress;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Progress {
            instances: self.shared.cfg.instances as u64,
            registered: get(&c.registered),
            connected: get(&c.connected),
            connects: get(&c.connects),
            disconnects: get(&c.disconnects),
            connect_failures: get(&c.connect_failures),
            register_failures: get(&c.register_failures),
            reported_running: get(&c.reported_running),
            reported_stopped: get(&c.reported_stopped),
            report_failures: get(&c.report_failures),
        }
    }

    /// Waits until every instance is registered and has its stream open.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<Progress, SimError> {
        let started = Instant::now();
        loop {
            let p = self.progress();
            if p.connected == p.instances && p.registered == p.instances {
                return Ok(p);
            }
            if started.elapsed() >= timeout {
                return Err(SimError::NotConnected {
                    connected: p.connected,
                    instances: p.instances,
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Drops every stream and pending report.
    pub async fn stop(mut self) {
        self.driver.abort();
        self.reporter.abort();
        let _ = (&mut self.driver).await;
        let _ = (&mut self.reporter).await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.driver.abort();
        self.reporter.abort();
    }
}

/// Runs a fleet until `shutdown` resolves, logging its progress every few seconds.
pub async fn run(cfg: SimConfig, shutdown: impl Future<Output = ()>) -> Result<(), SimError> {
    let sim = Simulator::start(cfg).await?;
    let started = Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut last = Progress::default();
    let mut all_connected = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let p = sim.progress();
                if p != last {
                    tracing::info!(
                        registered = p.registered,
                        connected = p.connected,
                        reconnects = p.connects.saturating_sub(p.registered),
                        reported_running = p.reported_running,
                        reported_stopped = p.reported_stopped,
                        report_failures = p.report_failures,
                        "simulated instances"
                    );
                }
                if !all_connected && p.connected == p.instances {
                    all_connected = true;
                    tracing::info!(
                        instances = p.instances,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "all simulated instances registered and connected"
                    );
                }
                last = p;
            }
        }
    }
    tracing::info!("stopping simulated instances");
    sim.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SimConfig {
        SimConfig::new("http://127.0.0.1:4510", "default", 10, "AKIA", "secret")
    }

    #[test]
    fn valid_defaults_pass_validation() {
        assert!(cfg().validate().is_ok());
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let cases: [fn(&mut SimConfig); 5] = [
            |c| c.instances = 0,
            |c| c.cluster = "no spaces".into(),
            |c| c.endpoint = "https://x:1".into(),
            |c| c.secret_access_key.clear(),
            |c| c.report_concurrency = 0,
        ];
        for change in cases {
            let mut c = cfg();
            change(&mut c);
            assert!(
                matches!(c.validate(), Err(SimError::InvalidConfig(_))),
                "{c:?}"
            );
        }
    }

    #[test]
    fn config_parses_with_defaults_and_refuses_unknown_fields() {
        let c: SimConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://127.0.0.1:1", "cluster": "c", "instances": 3,
            "accessKeyId": "a", "secretAccessKey": "s"
        }))
        .expect("parses");
        assert_eq!((c.region.as_str(), c.report_concurrency), ("us-east-1", 64));
        assert!(
            serde_json::from_value::<SimConfig>(serde_json::json!({
                "endpoint": "x", "cluster": "c", "instances": 3,
                "accessKeyId": "a", "secretAccessKey": "s", "bogus": 1
            }))
            .is_err()
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        assert!(!format!("{:?}", cfg()).contains("secret"));
    }

    #[test]
    fn errors_classify_for_retries() {
        let aws = |status, code: &str| SimError::Aws {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(aws(500, "ServerException").is_retryable());
        assert!(aws(400, "ThrottlingException").is_retryable());
        assert!(!aws(400, "ThrottlingException").is_client_error());
        assert!(aws(400, "InvalidParameterException").is_client_error());
        assert!(!aws(403, "InvalidSignatureException").is_client_error());
        assert!(SimError::Transport("x".into()).is_retryable());
    }
}
