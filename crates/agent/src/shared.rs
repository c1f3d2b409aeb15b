//! What every task actor shares: the runtime, the control-plane client, the checkpoint, the
//! metadata registry, registry credentials, background-task bookkeeping and ordered reporting.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use crate::checkpoint::Checkpoint;
use crate::client::{ApiClient, CallError, Service};
use crate::config::ImagePullBehavior;
use crate::metadata::MetadataRegistry;
use crate::runtime::{ContainerRuntime, RegistryAuth};

/// Tasks spawned by the agent, aborted together when the agent stops (so dropping the agent's
/// future leaves no work behind, as a `kill -9` would).
#[derive(Debug, Clone, Default)]
pub struct Spawner {
    handles: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Spawner {
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let h = tokio::spawn(fut);
        let mut hs = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if hs.len() > 64 {
            hs.retain(|h| !h.is_finished());
        }
        hs.push(h.abort_handle());
        h
    }

    pub fn abort_all(&self) {
        let hs = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for h in hs {
            h.abort();
        }
    }
}

/// Aborts everything a [`Spawner`] started when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(pub Spawner);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort_all();
    }
}

/// Seconds since the Unix epoch, as the ECS wire carries timestamps.
pub fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// RFC 3339 with nanoseconds (task metadata timestamps).
pub fn rfc3339(t: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(t);
    odt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Exponential backoff with jitter between `min` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// The next delay (jittered ±20 %), growing ×2 up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter).min(self.max)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The registry host of an image reference, when it names one (`host:port/repo`, `a.b/repo`).
pub fn image_registry(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// ECR tokens for Gantry's own registry, cached for an hour.
#[derive(Debug)]
pub struct RegistryAuthCache {
    api: ApiClient,
    /// `host:port` of every control-plane endpoint: each serves the same registry.
    own: Vec<String>,
    cached: Mutex<Option<(RegistryAuth, Instant)>>,
}

impl RegistryAuthCache {
    pub fn new(api: ApiClient) -> Self {
        let own = api.authorities();
        Self {
            api,
            own,
            cached: Mutex::new(None),
        }
    }

    /// Whether `image` lives in Gantry's own registry.
    pub fn is_own(&self, image: &str) -> bool {
        image_registry(image).is_some_and(|r| self.own.iter().any(|o| o == r))
    }

    /// Credentials for pulling `image`: a token from `GetAuthorizationToken` for Gantry's own
    /// registry, none (anonymous) for any other.
    pub async fn for_image(&self, image: &str) -> Result<Option<RegistryAuth>, CallError> {
        if !self.is_own(image) {
            return Ok(None);
        }
        let server_address = image_registry(image).unwrap_or_default().to_owned();
        if let Some((auth, at)) = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            && at.elapsed() < Duration::from_secs(3600)
        {
            return Ok(Some(RegistryAuth {
                server_address,
                ..auth
            }));
        }
        let v = self
            .api
            .call(Service::Ecr, "GetAuthorizationToken", &json!({}))
            .await?;
        let data = &v["authorizationData"][0];
        let token = data["authorizationToken"].as_str().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            CallError::Transport("GetAuthorizationToken: malformed authorizationToken".into())
        })?;
        let auth = RegistryAuth {
            username: user.to_owned(),
            password: password.to_owned(),
            server_address,
        };
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((auth.clone(), Instant::now()));
        Ok(Some(auth))
    }
}

/// Everything task actors share.
pub struct Shared {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub api: ApiClient,
    /// The cluster name, as reports name it.
    pub cluster: String,
    pub instance_arn: String,
    pub region: String,
    pub checkpoint: Checkpoint,
    pub metadata: MetadataRegistry,
    pub metadata_base_bridge: Option<String>,
    pub metadata_base_host: Option<String>,
    pub hard_limits: BTreeMap<String, i64>,
    pub pull_behavior: ImagePullBehavior,
    pub registry_auth: RegistryAuthCache,
    pub spawner: Spawner,
    /// Security groups on this host's packet filter.
    pub netfilter: Arc<crate::netfilter::Netfilter>,
    /// The image of awsvpc tasks' pause containers.
    pub pause_image: String,
    /// How long a container is given to stop when its definition sets no `stopTimeout`.
    pub default_stop_timeout: std::time::Duration,
    /// How long a stopped task's containers are kept before they are removed.
    pub cleanup_wait: std::time::Duration,
    /// File systems mapped on this host (`efsVolumeConfiguration.fileSystemId` → directory).
    pub file_systems: BTreeMap<String, std::path::PathBuf>,
    /// Task role credentials served on the credentials endpoint.
    pub credentials: crate::credentials::CredentialsRegistry,
    /// The port of the credentials endpoint on `169.254.170.2`, or why it is not served.
    pub credentials_port: Result<u16, String>,
    pub metrics: Arc<crate::metrics::AgentMetrics>,
    /// Fargate tasks' cgroups on this host, or why they cannot be made.
    pub task_cgroups: Result<crate::cgroup::TaskCgroups, String>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cluster", &self.cluster)
            .field("instance_arn", &self.instance_arn)
            .finish_non_exhaustive()
    }
}

/// One state change for the control plane.
#[derive(Debug, Clone)]
pub enum Report {
    /// A `SubmitTaskStateChange` body.
    Task(Value),
    /// A `SubmitContainerStateChange` body.
    Container(Value),
}

/// Sends `body` until the server acknowledges it (HTTP 200) or rejects it (HTTP 400: dropped).
pub async fn deliver(api: &ApiClient, op: &str, body: &Value) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut attempts = 0u32;
    loop {
        match api.call(Service::Ecs, op, body).await {
            Ok(_) => {
                tracing::debug!(op, task = %body["task"], status = %body["status"], "report delivered");
                return;
            }
            Err(e) if e.is_client_error() => {
                tracing::warn!(op, task = %body["task"], error = %e, "report rejected, dropped");
                return;
            }
            Err(e) => {
                attempts += 1;
                if attempts % 10 == 1 {
                    tracing::warn!(op, task = %body["task"], error = %e, attempts, "report not delivered, retrying");
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Starts the ordered report queue of one task; the handle ends once the sender is dropped and
/// everything queued was delivered (or rejected).
pub fn spawn_reporter(sh: &Shared) -> (mpsc::UnboundedSender<Report>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    let api = sh.api.clone();
    let h = sh.spawner.spawn(async move {
        while let Some(r) = rx.recv().await {
            match r {
                Report::Task(b) => deliver(&api, "SubmitTaskStateChange", &b).await,
                Report::Container(b) => deliver(&api, "SubmitContainerStateChange", &b).await,
            }
        }
    });
    (tx, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_are_recognised() {
        assert_eq!(
            image_registry("127.0.0.1:4000/app:v1"),
            Some("127.0.0.1:4000")
        );
        assert_eq!(image_registry("localhost/app"), Some("localhost"));
        assert_eq!(image_registry("library/busybox"), None);
        assert_eq!(image_registry("busybox"), None);
    }

    #[test]
    fn backoff_grows_to_max() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(300));
        for _ in 0..20 {
            b.next_delay();
        }
        assert!(b.next_delay() <= Duration::from_secs(10));
        assert!(b.next_delay() >= Duration::from_secs(8));
    }
}
