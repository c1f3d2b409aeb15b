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
    /// With temporary credentials (`AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
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
    /// Serve task role credentials on `169.254.170.2` (ECS's `ECS_ENABLE_TASK_IAM_ROLE`).
    pub task_iam_role: bool,
    /// Where task starts, Docker calls and stats samples are counted.
    pub metrics: std::sync::Arc<crate::metrics::AgentMetrics>,
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
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<set>"),
            )
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
            .field("task_iam_role", &self.task_iam_role)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// A configuration with defaults: credentials from the chain of [`host_credentials`],
    /// region from `AWS_REGION` (else `us-east-1`), Docker from `DOCKER_HOST` (else the local
    /// socket).
    pub fn new(
        endpoint: impl Into<String>,
        cluster: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (access_key_id, secret_access_key, session_token) =
            host_credentials(&env).unwrap_or_default();
        Self {
            endpoint: endpoint.into(),
            cluster: cluster.into(),
            data_dir: data_dir.into(),
            attributes: Vec::new(),
            region: env("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id,
            secret_access_key,
            session_token,
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
            task_iam_role: true,
            metrics: Default::default(),
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
                "credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (an IAM user's key, e.g. with AmazonEC2ContainerServiceforEC2Role), a profile in ~/.aws/credentials, or GANTRY_ROOT_ACCESS_KEY_ID and GANTRY_ROOT_SECRET_ACCESS_KEY"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The agent's identity, from the first of: `GANTRY_ROOT_ACCESS_KEY_ID` /
/// `GANTRY_ROOT_SECRET_ACCESS_KEY` (the root key); `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`); the profile `AWS_PROFILE` (else
/// `default`) of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
/// `~/.aws/credentials`). `env` reads a non-empty variable.
pub fn host_credentials(
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, String, Option<String>)> {
    if let (Some(k), Some(s)) = (
        env("GANTRY_ROOT_ACCESS_KEY_ID"),
        env("GANTRY_ROOT_SECRET_ACCESS_KEY"),
    ) {
        return Some((k, s, None));
    }
    if let (Some(k), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Some((k, s, env("AWS_SESSION_TOKEN")));
    }
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    profile_credentials(
        &text,
        &env("AWS_PROFILE").unwrap_or_else(|| "default".into()),
    )
}

/// The keys of `[profile]` in a shared credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let mut current = None;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_owned());
            continue;
        }
        if current.as_deref() != Some(profile) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some((key?, secret?, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_key_then_the_aws_variables_then_the_profile() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let both = vars(&[
            ("GANTRY_ROOT_ACCESS_KEY_ID", "ROOT"),
            ("GANTRY_ROOT_SECRET_ACCESS_KEY", "rs"),
            ("AWS_ACCESS_KEY_ID", "AKIAUSER"),
            ("AWS_SECRET_ACCESS_KEY", "us"),
        ]);
        assert_eq!(host_credentials(&both).unwrap().0, "ROOT");
        let user = vars(&[
            ("AWS_ACCESS_KEY_ID", "ASIAUSER"),
            ("AWS_SECRET_ACCESS_KEY", "us"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]);
        assert_eq!(
            host_credentials(&user).unwrap(),
            ("ASIAUSER".into(), "us".into(), Some("tok".into()))
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = d\n\n# agents\n[agent]\naws_access_key_id=AKIAAGENT\naws_secret_access_key=a\n",
        )
        .unwrap();
        let path = file.to_string_lossy().into_owned();
        let with_file = move |k: &str| match k {
            "AWS_SHARED_CREDENTIALS_FILE" => Some(path.clone()),
            "AWS_PROFILE" => Some("agent".to_owned()),
            _ => None,
        };
        assert_eq!(
            host_credentials(&with_file).unwrap(),
            ("AKIAAGENT".into(), "a".into(), None)
        );
        assert_eq!(
            profile_credentials(
                "[default]\naws_access_key_id=K\naws_secret_access_key=S\n",
                "default"
            )
            .unwrap()
            .0,
            "K"
        );
        assert!(profile_credentials("[x]\naws_access_key_id=K\n", "x").is_none());
        assert!(host_credentials(&|_: &str| None).is_none() || std::env::var("HOME").is_ok());
    }
}
