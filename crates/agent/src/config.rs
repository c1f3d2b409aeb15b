//! Agent configuration, validated once at start.

use std::path::PathBuf;

/// How the agent treats images that are already present locally (ECS's
/// `ECS_IMAGE_PULL_BEHAVIOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImagePullBehavior {
    /// Use a local image when present; for images of Gantry's own registry, pull again when the
    /// tag now points at another digest. A failed pull of a locally present image is not an error
    /// (the local copy is used). This is the default: a cached image starts as fast as
    /// `docker run`.
    #[default]
    PreferCached,
    /// Always pull; fall back to a local copy when the pull fails (ECS's `default`).
    Default,
    /// Always pull; a failed pull fails the task.
    Always,
}

/// Everything `gantry agent` needs.
#[derive(Clone)]
pub struct AgentConfig {
    /// Control plane URL, e.g. `http://127.0.0.1:40123`.
    pub endpoint: String,
    /// Cluster name to register in (created when missing).
    pub cluster: String,
    /// Where the checkpoint (instance ARN, tasks, log positions) is kept.
    pub data_dir: PathBuf,
    /// Custom attributes (`--attribute KEY=VALUE`).
    pub attributes: Vec<(String, String)>,
    /// SigV4 region (default `us-east-1`).
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Docker Engine address (`unix:///var/run/docker.sock`, `tcp://...`).
    pub docker_host: String,
    /// Port of the task metadata endpoint; 0 picks a free one.
    pub metadata_port: u16,
    /// MiB of host memory not offered to tasks.
    pub reserved_memory_mib: i64,
    /// Host ports never offered to tasks (ECS's `ECS_RESERVED_PORTS`).
    pub reserved_ports: Vec<u16>,
    /// UDP host ports never offered to tasks (ECS's `ECS_RESERVED_PORTS_UDP`).
    pub reserved_ports_udp: Vec<u16>,
    /// How long a container is given to stop when its definition sets no `stopTimeout`
    /// (ECS's `ECS_CONTAINER_STOP_TIMEOUT`, default 30 s).
    pub container_stop_timeout: std::time::Duration,
    /// How long a stopped task's containers stay on the host before they are removed (ECS's
    /// `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`; Gantry's default removes them at once).
    pub task_cleanup_wait: std::time::Duration,
    /// Logging drivers offered to tasks (ECS's `ECS_AVAILABLE_LOGGING_DRIVERS`).
    pub logging_drivers: Vec<String>,
    /// Tags of the container instance (ECS's `ECS_CONTAINER_INSTANCE_TAGS`).
    pub tags: Vec<(String, String)>,
    /// File systems this host maps (`efsVolumeConfiguration.fileSystemId` → host directory).
    pub file_systems: std::collections::BTreeMap<String, PathBuf>,
    pub image_pull_behavior: ImagePullBehavior,
    /// The image of awsvpc tasks' pause containers; the default is built in (x86-64).
    pub pause_image: String,
    /// How often task usage is sampled and reported (the `AWS/ECS` metrics' resolution).
    pub usage_interval: std::time::Duration,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("endpoint", &self.endpoint)
            .field("cluster", &self.cluster)
            .field("data_dir", &self.data_dir)
            .field("attributes", &self.attributes)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("docker_host", &self.docker_host)
            .field("metadata_port", &self.metadata_port)
            .field("reserved_memory_mib", &self.reserved_memory_mib)
            .field("reserved_ports", &self.reserved_ports)
            .field("reserved_ports_udp", &self.reserved_ports_udp)
            .field("container_stop_timeout", &self.container_stop_timeout)
            .field("task_cleanup_wait", &self.task_cleanup_wait)
            .field("logging_drivers", &self.logging_drivers)
            .field("tags", &self.tags)
            .field("file_systems", &self.file_systems)
            .field("image_pull_behavior", &self.image_pull_behavior)
            .field("pause_image", &self.pause_image)
            .field("usage_interval", &self.usage_interval)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// A configuration with defaults: credentials from `GANTRY_ROOT_ACCESS_KEY_ID` /
    /// `GANTRY_ROOT_SECRET_ACCESS_KEY`, region from `AWS_REGION` (else `us-east-1`), Docker from
    /// `DOCKER_HOST` (else the local socket).
    pub fn new(
        endpoint: impl Into<String>,
        cluster: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            endpoint: endpoint.into(),
            cluster: cluster.into(),
            data_dir: data_dir.into(),
            attributes: Vec::new(),
            region: env("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id: env("GANTRY_ROOT_ACCESS_KEY_ID").unwrap_or_default(),
            secret_access_key: env("GANTRY_ROOT_SECRET_ACCESS_KEY").unwrap_or_default(),
            docker_host: env("DOCKER_HOST")
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned()),
            metadata_port: 0,
            reserved_memory_mib: 256,
            reserved_ports: vec![22, 2375, 2376, 51678, 51679],
            reserved_ports_udp: Vec::new(),
            container_stop_timeout: crate::spec::DEFAULT_STOP_TIMEOUT,
            task_cleanup_wait: std::time::Duration::ZERO,
            logging_drivers: gantry_domain::capability::LOGGING_DRIVERS
                .iter()
                .map(|d| (*d).to_owned())
                .collect(),
            tags: Vec::new(),
            file_systems: Default::default(),
            image_pull_behavior: ImagePullBehavior::default(),
            pause_image: crate::pause::PAUSE_IMAGE.to_owned(),
            usage_interval: std::time::Duration::from_secs(60),
        }
    }

    /// Checks the configuration once, before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        if !self.endpoint.starts_with("http://") {
            return Err(format!(
                "endpoint {} must be http://host:port",
                self.endpoint
            ));
        }
        if self.cluster.is_empty() {
            return Err("cluster must not be empty".into());
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return Err(
                "credentials missing: set GANTRY_ROOT_ACCESS_KEY_ID and GANTRY_ROOT_SECRET_ACCESS_KEY"
                    .into(),
            );
        }
        Ok(())
    }
}
