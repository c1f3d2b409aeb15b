//! The container runtime the agent drives, as a trait: what a task actor needs from Docker and
//! nothing more. [`crate::docker::DockerRuntime`] implements it on the Docker Engine API.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use gantry_domain::task::NetworkBinding;

/// Failures of the container runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime could not be reached or answered something unexpected.
    #[error("container runtime: {0}")]
    Engine(String),
    /// The named container, image or volume does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// An image pull failed (the detail is Docker's message).
    #[error("{0}")]
    Pull(String),
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub server_address: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

/// The host as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub cpus: i64,
    pub memory_bytes: i64,
    pub server_version: String,
    /// The Engine API version in use (e.g. `1.41`).
    pub api_version: String,
    /// Docker's cgroup driver: `cgroupfs`, `systemd` or `none`.
    pub cgroup_driver: String,
}

/// A locally present image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    pub id: String,
    pub repo_digests: Vec<String>,
}

/// Docker networking for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Networking {
    Bridge,
    Host,
    None,
}

impl Networking {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Host => "host",
            Self::None => "none",
        }
    }
}

/// The bridge network of one subnet on this host (awsvpc tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetNetwork {
    pub subnet_id: String,
    pub vpc_id: String,
    /// The subnet's block, e.g. `10.0.1.0/24`.
    pub cidr: String,
    /// The subnet's router address, given to the bridge.
    pub gateway: String,
}

/// A container's own place on a network: the awsvpc pause container's fixed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The network's name.
    pub network: String,
    pub ipv4: String,
    pub mac: String,
}

/// A port to publish. `host_port` None asks for an ephemeral host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub container_port: u16,
    pub host_port: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A resource limit, already clamped to what the host allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlimitSpec {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Docker HEALTHCHECK, durations in whole seconds as ECS gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// `["CMD-SHELL", "..."]` or `["CMD", ...]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: i64,
    pub start_period: Duration,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub network: Option<Networking>,
    pub cpu_shares: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub memory_reservation_bytes: Option<i64>,
    pub ulimits: Vec<UlimitSpec>,
    pub health: Option<HealthSpec>,
    /// Docker `Binds` entries (`source:target[:ro]`, source a host path or a volume name).
    pub binds: Vec<String>,
    /// Docker `VolumesFrom` entries (`container[:ro]`).
    pub volumes_from: Vec<String>,
    /// Docker `Links` entries (`docker-name:alias`), bridge mode only.
    pub links: Vec<String>,
    pub readonly_rootfs: bool,
    pub stop_timeout: Option<Duration>,
    pub hostname: Option<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    /// On this network with a fixed address (the awsvpc pause container).
    pub endpoint: Option<Endpoint>,
    /// In the network namespace of this container (`container:<id>`; awsvpc task containers).
    pub join_namespace_of: Option<String>,
    /// A CPU quota in billionths of a CPU (Docker `NanoCpus`): Fargate tasks' size.
    pub nano_cpus: Option<i64>,
    /// The most processes the container may run (Docker `PidsLimit`).
    pub pids_limit: Option<i64>,
    /// Docker `SecurityOpt` entries (`no-new-privileges`).
    pub security_opt: Vec<String>,
    /// The size limit of the container's writable layer in GiB (Docker `StorageOpt` `size`;
    /// only some storage drivers can apply one, the others refuse the container).
    pub storage_size_gib: Option<u32>,
    /// Docker `CgroupParent`: the cgroup (or systemd slice) of the task, which caps all its
    /// containers together (Fargate tasks).
    pub cgroup_parent: Option<String>,
}

/// A container's state as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerState {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    /// Docker's status word: created, running, exited, dead, ...
    pub status: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Docker's health word (starting, healthy, unhealthy) when a check is configured.
    pub health: Option<String>,
    pub bindings: Vec<NetworkBinding>,
    /// (network name, IPv4 address) per attached network.
    pub networks: Vec<(String, String)>,
    pub network_mode: String,
}

impl ContainerState {
    /// Whether the container has run and is no longer running.
    pub fn has_exited(&self) -> bool {
        !self.running && matches!(self.status.as_str(), "exited" | "dead")
    }
}

/// One container found by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedContainer {
    pub id: String,
    pub labels: BTreeMap<String, String>,
}

/// A log line with Docker's timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_nanos: i128,
    pub message: String,
}

/// A container-related runtime event (start, die, health change, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub action: String,
    pub labels: BTreeMap<String, String>,
}

/// What the agent needs from a container runtime.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// CPUs, memory and versions of the host.
    async fn info(&self) -> Result<HostInfo, RuntimeError>;
    /// The image if present locally.
    async fn local_image(&self, image: &str) -> Result<Option<LocalImage>, RuntimeError>;
    /// The digest the registry currently serves for `image` (a cheap manifest lookup).
    async fn remote_digest(
        &self,
        image: &str,
        auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError>;
    /// Pulls `image` (to completion).
    async fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> Result<(), RuntimeError>;
    /// Creates a container; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// SIGTERM, then SIGKILL after `timeout` (None: the container's own stop timeout). A stopped
    /// or missing container is not an error.
    async fn stop(&self, id: &str, timeout: Option<Duration>) -> Result<(), RuntimeError>;
    /// Removes a container (forcibly) with its anonymous volumes. Missing is not an error.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;
    /// Removes a named volume. Missing or in use is not an error.
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError>;
    /// The container's state; None when it does not exist.
    async fn inspect(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError>;
    /// All containers (running or not) carrying label `key=value`.
    async fn list_by_label(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ListedContainer>, RuntimeError>;
    /// stdout and stderr since `since_secs` (epoch seconds), following until the container stops.
    fn logs(&self, id: &str, since_secs: i64) -> BoxStream<'static, Result<LogLine, RuntimeError>>;
    /// One sample of Docker stats, as Docker's JSON.
    async fn stats(&self, id: &str) -> Result<serde_json::Value, RuntimeError>;
    /// Container events for containers carrying label `key=value`.
    fn events(
        &self,
        key: &str,
        value: &str,
    ) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;
    /// The gateway address of the default bridge network (what bridge containers reach the host
    /// on), if there is one.
    async fn bridge_gateway(&self) -> Result<Option<IpAddr>, RuntimeError>;
    /// Creates the bridge network of a subnet unless it exists (it is shared by every agent on
    /// the Engine); returns its name.
    async fn ensure_subnet_network(&self, n: &SubnetNetwork) -> Result<String, RuntimeError>;
    /// Makes `image` present, importing `rootfs` (a tar) as that image with `cmd` when missing.
    async fn ensure_imported_image(
        &self,
        image: &str,
        rootfs: Vec<u8>,
        cmd: &[&str],
    ) -> Result<(), RuntimeError>;
    /// Gantry's subnet networks: (name, containers attached).
    async fn subnet_networks(&self) -> Result<Vec<(String, usize)>, RuntimeError>;
    /// Removes a network no container uses; whether it is gone. A network a container joined
    /// meanwhile (another agent's task on a shared host) stays, answering `false`; missing is
    /// not an error.
    async fn remove_network(&self, name: &str) -> Result<bool, RuntimeError>;
}
