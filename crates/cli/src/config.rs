//! Command-line configuration of each role, validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// `gantry server` flags.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where state (the embedded store), blobs and generated credentials live.
    #[arg(long, env = "GANTRY_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (see --ready-file).
    #[arg(long, env = "GANTRY_LISTEN", default_value = "127.0.0.1:4510")]
    pub listen: SocketAddr,
    /// Written once serving: JSON with `endpoint` and `registry`.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// The account id in ARNs.
    #[arg(long, env = "GANTRY_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// The region printed for clients (requests use the region they are signed for); also the
    /// region of registry (`/v2/`) requests whose credentials and host name none, and where
    /// registry data written before repositories had a region is moved.
    #[arg(long, env = "GANTRY_REGION", default_value = "us-east-1")]
    pub region: String,
    /// How long STOPPED tasks stay describable, in seconds (ECS keeps them at least an hour).
    #[arg(long, env = "GANTRY_STOPPED_TASK_RETENTION", default_value_t = 3600)]
    pub stopped_task_retention: u64,
    /// Seconds a dropped agent may stay away before its instance is DISCONNECTED.
    #[arg(long, env = "GANTRY_HEARTBEAT_GRACE", default_value_t = 15)]
    pub heartbeat_grace: u64,
    /// Seconds a DISCONNECTED instance may stay away before its tasks are marked lost and
    /// replaced elsewhere.
    #[arg(long, env = "GANTRY_LOST_AFTER", default_value_t = 60)]
    pub lost_after: u64,
    /// The block of each region's default VPC (AWS's is 172.31.0.0/16): a /16 to /24 not used by
    /// other networks on the hosts. Default subnets are 16 times smaller, one per zone.
    #[arg(long, env = "GANTRY_DEFAULT_VPC_CIDR", default_value = "172.31.0.0/16")]
    pub default_vpc_cidr: String,
    /// Seconds between evaluations of CloudWatch alarms (CloudWatch evaluates every minute;
    /// shorter for tests).
    #[arg(long, env = "GANTRY_ALARM_EVALUATION_INTERVAL", default_value_t = 60)]
    pub alarm_evaluation_interval: u64,
    /// Milliseconds one minute of a deployment's bake times and lifecycle hook timeouts lasts
    /// (a minute, as in ECS; shorter for tests).
    #[arg(long, env = "GANTRY_DEPLOYMENT_MINUTE_MS", default_value_t = 60_000)]
    pub deployment_minute_ms: u64,
    /// The one-minute periods target tracking's alarms wait above the target before scaling
    /// out and below 90 % of it before scaling in, as HIGH,LOW (AWS: 3,15; shorter for tests).
    #[arg(long, env = "GANTRY_TARGET_TRACKING_PERIODS", default_value = "3,15")]
    pub target_tracking_periods: String,
    /// Trade durability for speed: do not fsync each commit (tests only).
    #[arg(long, hide = true)]
    pub no_fsync: bool,
    /// Run Fargate tasks on this machine: an agent in the server's process registers it as
    /// platform capacity (pool `local`), which no user cluster shows.
    #[arg(long, env = "GANTRY_FARGATE_LOCAL")]
    pub fargate_local: bool,
    /// How managed scaling grows and shrinks host pool NAME (repeatable): `NAME=local` starts and
    /// stops agents inside this server; `NAME=exec:COMMAND` runs COMMAND with the pool name and
    /// the desired instance count as arguments; `NAME=webhook:URL` POSTs them as JSON to an
    /// http:// URL.
    #[arg(long = "pool-provisioner", value_name = "NAME=KIND")]
    pub pool_provisioners: Vec<String>,
    /// Seconds between managed-scaling assessments of host pools (ECS: 60; shorter for tests).
    #[arg(long, env = "GANTRY_MANAGED_SCALING_INTERVAL", default_value_t = 60)]
    pub managed_scaling_interval: u64,
    /// Consecutive assessments wanting fewer instances before a pool shrinks (ECS: 15).
    #[arg(
        long,
        env = "GANTRY_MANAGED_SCALING_SCALE_IN_PERIODS",
        default_value_t = 15
    )]
    pub managed_scaling_scale_in_periods: u32,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub listener: ListenerArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Where the control plane keeps its state.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The state store: `sqlite` (default: one file in the data dir, for one server) or
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (several server replicas on one etcd cluster,
    /// keys under /PREFIX/, default /gantry/). Every replica of one installation names the same
    /// etcd cluster and prefix.
    #[arg(
        long = "store",
        env = "GANTRY_STORE",
        default_value = "sqlite",
        value_name = "URL"
    )]
    pub url: String,
    /// Where registry blobs live: the data dir (default) or
    /// `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`, an S3-compatible bucket every replica
    /// shares. Credentials come from the standard chain (AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY, web identity, instance metadata).
    #[arg(long = "blob-store", env = "GANTRY_BLOB_STORE", value_name = "URL")]
    pub blob_store: Option<String>,
    /// etcd user (etcd's `--auth`); the password comes from GANTRY_ETCD_PASSWORD.
    #[arg(long, env = "GANTRY_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// PEM file of the CAs that signed the etcd members' certificates: connect with TLS.
    #[arg(long, env = "GANTRY_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// PEM client certificate for etcd's `--client-cert-auth` (with --etcd-key).
    #[arg(long, env = "GANTRY_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, env = "GANTRY_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
}

/// The validated choice of state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `state.db` in the data dir.
    Sqlite,
    Etcd(gantry_store::EtcdOptions),
}

impl StoreArgs {
    pub fn into_config(self) -> anyhow::Result<StoreConfig> {
        if self.url == "sqlite" {
            anyhow::ensure!(
                self.etcd_user.is_none() && self.etcd_cacert.is_none() && self.etcd_cert.is_none(),
                "--etcd-user, --etcd-cacert and --etcd-cert need --store etcd://..."
            );
            return Ok(StoreConfig::Sqlite);
        }
        let mut opts = gantry_store::EtcdOptions::from_url(&self.url).map_err(|e| {
            anyhow::anyhow!("--store: {e} (use sqlite or etcd://HOST:PORT[,HOST:PORT...][/PREFIX])")
        })?;
        if let Some(user) = self.etcd_user {
            let password = std::env::var("GANTRY_ETCD_PASSWORD").map_err(|_| {
                anyhow::anyhow!("--etcd-user {user} needs the password in GANTRY_ETCD_PASSWORD")
            })?;
            opts.user = Some((user, password));
        }
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
        };
        if self.etcd_cacert.is_some() || self.etcd_cert.is_some() {
            opts.tls = Some(gantry_store::EtcdTls {
                ca_pem: self.etcd_cacert.as_ref().map(read).transpose()?,
                client_cert_pem: self.etcd_cert.as_ref().map(read).transpose()?,
                client_key_pem: self.etcd_key.as_ref().map(read).transpose()?,
            });
        }
        Ok(StoreConfig::Etcd(opts))
    }
}

/// Identity settings (`gantry server` and `gantry up`).
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// Also accept the root access key pair as registry Basic credentials (user = access key
    /// id, password = secret). Off by default: registry clients log in with a password from
    /// `aws ecr get-login-password`, which names its principal and is re-checked on every request.
    #[arg(long, env = "GANTRY_REGISTRY_ROOT_BASIC_AUTH")]
    pub registry_root_basic_auth: bool,
    /// Host directories task definitions may bind-mount (`volumes[].host.sourcePath`), a path
    /// and everything beneath it; repeat or separate with commas. Default: none (Docker volumes
    /// only).
    #[arg(long, env = "GANTRY_ALLOWED_HOST_PATHS", value_delimiter = ',')]
    pub allowed_host_paths: Vec<String>,
    /// Accept task definitions that reach into the host: `privileged`, added capabilities,
    /// devices, `pidMode`/`ipcMode` `host` and `dockerSecurityOptions`. Refused by default.
    #[arg(long, env = "GANTRY_ALLOW_PRIVILEGED_TASKS")]
    pub allow_privileged_tasks: bool,
}

impl IdentityArgs {
    fn host_access(&self) -> anyhow::Result<gantry_domain::task_definition::HostAccess> {
        for p in &self.allowed_host_paths {
            anyhow::ensure!(
                p.starts_with('/') && !p.split('/').any(|c| c == ".."),
                "--allowed-host-paths takes absolute paths without '..', got {p:?}"
            );
        }
        Ok(gantry_domain::task_definition::HostAccess {
            allowed_host_paths: self.allowed_host_paths.clone(),
            allow_privileged: self.allow_privileged_tasks,
        })
    }
}

/// The API listener's limits and the shutdown deadline (`gantry server` and `gantry up`).
#[derive(Debug, Clone, Args)]
pub struct ListenerArgs {
    /// Seconds a connection may take to send a complete request head (from its accept, or from
    /// the first byte of a later head).
    #[arg(long, env = "GANTRY_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a connection may stay open with no request in flight (and a request body may
    /// stall) before it is closed.
    #[arg(long, env = "GANTRY_IDLE_TIMEOUT", default_value_t = 60)]
    pub idle_timeout: u64,
    /// The most client connections the API listener serves at once; at the cap, the connection
    /// waiting the longest without a request is closed to make room.
    #[arg(long, env = "GANTRY_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds each part (API connections, agent, load balancer, controllers) gets to stop after
    /// SIGTERM or Ctrl-C before it is dropped; a second signal exits at once.
    #[arg(long, env = "GANTRY_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout: u64,
}

impl ListenerArgs {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.header_read_timeout > 0,
            "--header-read-timeout must be at least 1 second"
        );
        anyhow::ensure!(
            self.idle_timeout > 0,
            "--idle-timeout must be at least 1 second"
        );
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        Ok(())
    }

    fn limits(&self) -> gantry_front::listener::ListenerLimits {
        gantry_front::listener::ListenerLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout),
            max_connections: self.max_connections,
        }
    }
}

/// `gantry up` flags: the server's, with a default data directory.
/// `gantry agent` flags. Each may also come from the ECS agent's configuration file (see
/// `--config`); a flag wins over the file.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The ECS agent configuration file to read (`KEY=VALUE` lines such as `ECS_CLUSTER=prod`);
    /// default /etc/ecs/ecs.config when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The control plane's URL, e.g. http://127.0.0.1:4510; with several server replicas, their
    /// URLs separated by commas (the agent moves to the next when one cannot be reached) (file:
    /// ECS_BACKEND_HOST).
    #[arg(long, env = "GANTRY_ENDPOINT")]
    pub endpoint: Option<String>,
    /// The cluster to join, created when missing (file: ECS_CLUSTER; default `default`).
    #[arg(long, env = "GANTRY_CLUSTER")]
    pub cluster: Option<String>,
    /// Where the agent keeps its checkpoint: instance identity, tasks, log positions (file:
    /// ECS_DATADIR).
    #[arg(long, env = "GANTRY_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A custom attribute of this container instance (repeatable; added to the file's
    /// ECS_INSTANCE_ATTRIBUTES, and replacing one of the same name).
    #[arg(long = "attribute", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    pub attributes: Vec<(String, String)>,
    /// A file system this host maps for `efsVolumeConfiguration` volumes: fs-ID=dir:PATH (a host
    /// directory, created when missing; repeatable). Tasks bind-mount its `rootDirectory`.
    #[arg(long = "file-system", value_name = "FS-ID=dir:PATH", value_parser = parse_file_system)]
    pub file_systems: Vec<(String, PathBuf)>,
    /// SigV4 region of the control plane.
    #[arg(long, env = "GANTRY_REGION", default_value = "us-east-1")]
    pub region: String,
    /// The image of awsvpc tasks' pause containers (default: built in, x86-64 only).
    #[arg(long, env = "GANTRY_PAUSE_IMAGE")]
    pub pause_image: Option<String>,
    /// Seconds between samples of the tasks' CPU and memory usage (reported to the control
    /// plane for the `AWS/ECS` metrics; ECS publishes them every minute).
    #[arg(long, env = "GANTRY_USAGE_INTERVAL", default_value_t = 60)]
    pub usage_interval: u64,
    /// Remove what this agent left on the host (its task and pause containers, its
    /// security-group chains, unused subnet networks) and exit.
    #[arg(long)]
    pub uninstall: bool,
    /// Do not serve task role credentials (ECS's `ECS_ENABLE_TASK_IAM_ROLE=false`): the host
    /// does not offer `com.amazonaws.ecs.capability.task-iam-role`.
    #[arg(long, env = "GANTRY_DISABLE_TASK_IAM_ROLE")]
    pub disable_task_iam_role: bool,
    /// Offer this host as Fargate capacity in the platform pool NAME instead of joining a
    /// cluster: it runs the Fargate tasks of every cluster and appears in none.
    #[arg(long, value_name = "NAME", conflicts_with = "cluster", value_parser = parse_pool)]
    pub fargate_pool: Option<String>,
    /// Join the host pool NAME: the capacity provider whose `autoScalingGroupArn` ends in
    /// `autoScalingGroupName/NAME` places its tasks on this pool's instances only.
    #[arg(long, value_name = "NAME", conflicts_with = "fargate_pool", value_parser = parse_pool)]
    pub pool: Option<String>,
    /// Serve Prometheus metrics (task starts, Docker call latency, stats samples) at
    /// `http://ADDR/metrics`, without authentication: bind it to a private address. Port 0
    /// picks a free port (logged).
    #[arg(long, env = "GANTRY_AGENT_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

fn parse_file_system(s: &str) -> Result<(String, PathBuf), String> {
    let (id, backend) = s
        .split_once('=')
        .ok_or_else(|| format!("expected FS-ID=dir:PATH, got {s:?}"))?;
    let valid_id = id.strip_prefix("fs-").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !valid_id {
        return Err(format!(
            "a file system id is fs- followed by letters and digits, got {id:?}"
        ));
    }
    match backend.split_once(':') {
        Some(("dir", path)) if path.starts_with('/') && !path.split('/').any(|p| p == "..") => {
            Ok((id.to_owned(), PathBuf::from(path)))
        }
        Some(("dir", path)) => Err(format!(
            "dir: takes an absolute path without '..', got {path:?}"
        )),
        Some(("nfs" | "fuse", _)) => Err(format!(
            "{backend}: only the dir: backend is supported by this agent so far"
        )),
        _ => Err(format!("expected dir:PATH after {id}=, got {backend:?}")),
    }
}

fn parse_pool(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "a pool name is 1 to 64 letters, digits, hyphens and underscores, got {s:?}"
        ))
    }
}

/// `gantry fargate interrupt` flags.
#[derive(Debug, Args)]
pub struct InterruptArgs {
    /// The control plane's URL, e.g. http://127.0.0.1:4510.
    #[arg(long, env = "GANTRY_ENDPOINT")]
    pub endpoint: String,
    /// Only tasks of this cluster (default: every cluster of the region).
    #[arg(long)]
    pub cluster: Option<String>,
    /// How many running FARGATE_SPOT tasks to reclaim.
    #[arg(long)]
    pub count: u64,
    /// Seconds between SIGTERM and SIGKILL (AWS gives two minutes).
    #[arg(long, default_value_t = 120)]
    pub warning_seconds: u64,
    /// SigV4 region of the control plane.
    #[arg(long, env = "GANTRY_REGION", default_value = "us-east-1")]
    pub region: String,
}

/// `gantry lb` flags.
#[derive(Debug, Args)]
pub struct LbArgs {
    /// The control plane's URL, e.g. http://127.0.0.1:4510; with several server replicas, their
    /// URLs separated by commas (the load balancer moves to the next when one cannot be reached).
    #[arg(long, env = "GANTRY_ENDPOINT")]
    pub endpoint: String,
    /// Address the listeners bind (their ports come from the ELBv2 listeners).
    #[arg(long, env = "GANTRY_LB_BIND", default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// The region whose load balancers this proxy serves.
    #[arg(long, env = "GANTRY_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Serve Prometheus metrics (requests, response times and upstream errors per target group)
    /// at `http://ADDR/metrics`, without authentication: bind it to a private address. Port 0
    /// picks a free port (logged).
    #[arg(long, env = "GANTRY_LB_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// How often traffic is reported to the control plane for CloudWatch's
    /// `AWS/ApplicationELB` metrics, in seconds (ELB publishes every minute).
    #[arg(long, env = "GANTRY_LB_METRICS_INTERVAL", default_value_t = 60.0, value_name = "SECONDS", value_parser = parse_interval)]
    pub metrics_interval: f64,
    /// The availability zone this proxy serves in as a load balancer node: the
    /// `AvailabilityZone` dimension of the metrics it reports for load balancers enabled in that
    /// zone (default, and for the others: each load balancer's first zone).
    #[arg(long, env = "GANTRY_LB_AVAILABILITY_ZONE", value_name = "ZONE")]
    pub availability_zone: Option<String>,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s} is not a number of seconds between 0.1 and 3600"
        )),
    }
}

/// `gantry simulate` flags.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The control plane's URL, e.g. http://127.0.0.1:4510; with several server replicas, their
    /// URLs separated by commas (calls move to the next when one cannot be reached).
    #[arg(long, env = "GANTRY_ENDPOINT")]
    pub endpoint: String,
    /// The cluster the simulated instances join (created when missing).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// How many container instances to simulate.
    #[arg(long, default_value_t = 100)]
    pub instances: usize,
    /// Seeds the fleet mix (zones, instance types, sizes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Simulate Fargate capacity of this platform pool instead of a cluster's instances.
    #[arg(long, value_name = "NAME", value_parser = parse_pool)]
    pub fargate_pool: Option<String>,
    /// SigV4 region of the control plane.
    #[arg(long, env = "GANTRY_REGION", default_value = "us-east-1")]
    pub region: String,
}

fn parse_attribute(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where state lives (default: $XDG_DATA_HOME/gantry or ~/.local/share/gantry).
    #[arg(long, env = "GANTRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (see --ready-file).
    #[arg(long, env = "GANTRY_LISTEN", default_value = "127.0.0.1:4510")]
    pub listen: SocketAddr,
    /// Written once serving: JSON with `endpoint` and `registry`.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// The account id in ARNs.
    #[arg(long, env = "GANTRY_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// The region printed for clients (requests use the region they are signed for); also the
    /// region of registry (`/v2/`) requests whose credentials and host name none, and where
    /// registry data written before repositories had a region is moved.
    #[arg(long, env = "GANTRY_REGION", default_value = "us-east-1")]
    pub region: String,
    /// How long STOPPED tasks stay describable, in seconds (ECS keeps them at least an hour).
    #[arg(long, env = "GANTRY_STOPPED_TASK_RETENTION", default_value_t = 3600)]
    pub stopped_task_retention: u64,
    /// Seconds a dropped agent may stay away before its instance is DISCONNECTED.
    #[arg(long, env = "GANTRY_HEARTBEAT_GRACE", default_value_t = 15)]
    pub heartbeat_grace: u64,
    /// Seconds a DISCONNECTED instance may stay away before its tasks are marked lost and
    /// replaced elsewhere.
    #[arg(long, env = "GANTRY_LOST_AFTER", default_value_t = 60)]
    pub lost_after: u64,
    /// The block of each region's default VPC (AWS's is 172.31.0.0/16): a /16 to /24 not used by
    /// other networks on the hosts. Default subnets are 16 times smaller, one per zone.
    #[arg(long, env = "GANTRY_DEFAULT_VPC_CIDR", default_value = "172.31.0.0/16")]
    pub default_vpc_cidr: String,
    /// Do not start the local agents (control plane only: no EC2 instance, no Fargate capacity).
    #[arg(long)]
    pub no_agent: bool,
    /// Do not start the local load balancer.
    #[arg(long)]
    pub no_lb: bool,
    /// Do not run Fargate tasks on this machine (no platform capacity).
    #[arg(long)]
    pub no_fargate: bool,
    /// The cluster the local agent joins.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    #[command(flatten)]
    pub listener: ListenerArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// The validated configuration of the control plane.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub ready_file: Option<PathBuf>,
    pub account_id: String,
    pub region: String,
    pub durable: bool,
    pub stopped_task_retention: std::time::Duration,
    pub heartbeat_grace: std::time::Duration,
    pub lost_after: std::time::Duration,
    pub limits: gantry_front::listener::ListenerLimits,
    pub shutdown_timeout: std::time::Duration,
    pub default_vpc_cidr: gantry_ec2::cidr::Cidr,
    /// Run an in-process agent offering this machine as Fargate capacity.
    pub fargate_local: bool,
    pub alarm_evaluation_interval: std::time::Duration,
    /// How long one minute of deployment bake times and hook timeouts lasts.
    pub deployment_minute: std::time::Duration,
    pub tracking_periods: gantry_autoscaling::TrackingPeriods,
    /// Whether the root key pair is accepted as registry Basic credentials.
    pub registry_root_basic_auth: bool,
    /// The state store.
    pub store: StoreConfig,
    /// The registry's S3 bucket; `None`: blobs in the data dir.
    pub blob_store: Option<gantry_ecr::S3Config>,
    /// What task definitions may take from the host.
    pub host_access: gantry_domain::task_definition::HostAccess,
    /// Host pools' provisioners for managed scaling.
    pub pool_provisioners: std::collections::HashMap<String, crate::provisioner::ProvisionerKind>,
    pub managed_scaling: gantry_ecs::managed_scaling::ManagedScalingTiming,
}

fn tracking_periods(raw: &str) -> anyhow::Result<gantry_autoscaling::TrackingPeriods> {
    let parse = |s: Option<&str>| {
        s.and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| (1..=1440).contains(v))
    };
    let mut parts = raw.split(',');
    match (parse(parts.next()), parse(parts.next()), parts.next()) {
        (Some(high), Some(low), None) => Ok(gantry_autoscaling::TrackingPeriods { high, low }),
        _ => anyhow::bail!(
            "--target-tracking-periods must be HIGH,LOW (1 to 1440 each), got {raw:?}"
        ),
    }
}

fn default_vpc_cidr(raw: &str) -> anyhow::Result<gantry_ec2::cidr::Cidr> {
    let c: gantry_ec2::cidr::Cidr = raw
        .parse()
        .map_err(|e| anyhow::anyhow!("--default-vpc-cidr: {e}"))?;
    anyhow::ensure!(
        (16..=24).contains(&c.prefix()),
        "--default-vpc-cidr must be a /16 to /24 block, got {raw}"
    );
    Ok(c)
}

fn validate_account(id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()),
        "--account-id must be 12 digits, got {id:?}"
    );
    Ok(())
}

impl ServerArgs {
    pub fn into_config(self) -> anyhow::Result<ServerConfig> {
        validate_account(&self.account_id)?;
        self.listener.validate()?;
        Ok(ServerConfig {
            limits: self.listener.limits(),
            shutdown_timeout: std::time::Duration::from_secs(self.listener.shutdown_timeout),
            data_dir: self.data_dir,
            listen: self.listen,
            ready_file: self.ready_file,
            account_id: self.account_id,
            region: self.region,
            durable: !self.no_fsync,
            stopped_task_retention: std::time::Duration::from_secs(self.stopped_task_retention),
            heartbeat_grace: std::time::Duration::from_secs(self.heartbeat_grace),
            lost_after: std::time::Duration::from_secs(self.lost_after),
            default_vpc_cidr: default_vpc_cidr(&self.default_vpc_cidr)?,
            fargate_local: self.fargate_local,
            alarm_evaluation_interval: std::time::Duration::from_secs(
                self.alarm_evaluation_interval.max(1),
            ),
            deployment_minute: std::time::Duration::from_millis(self.deployment_minute_ms.max(1)),
            tracking_periods: tracking_periods(&self.target_tracking_periods)?,
            registry_root_basic_auth: self.identity.registry_root_basic_auth,
            host_access: self.identity.host_access()?,
            pool_provisioners: self
                .pool_provisioners
                .iter()
                .map(|raw| crate::provisioner::parse(raw))
                .collect::<anyhow::Result<_>>()?,
            managed_scaling: gantry_ecs::managed_scaling::ManagedScalingTiming {
                interval: std::time::Duration::from_secs(self.managed_scaling_interval.max(1)),
                scale_in_periods: self.managed_scaling_scale_in_periods.max(1),
            },
            blob_store: self
                .store
                .blob_store
                .as_deref()
                .map(gantry_ecr::S3Config::from_url)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--blob-store: {e}"))?,
            store: self.store.into_config()?,
        })
    }
}

impl UpArgs {
    pub fn into_config(self) -> anyhow::Result<ServerConfig> {
        validate_account(&self.account_id)?;
        self.listener.validate()?;
        let data_dir = match self.data_dir {
            Some(d) => d,
            None => default_data_dir()?,
        };
        Ok(ServerConfig {
            limits: self.listener.limits(),
            shutdown_timeout: std::time::Duration::from_secs(self.listener.shutdown_timeout),
            data_dir,
            listen: self.listen,
            ready_file: self.ready_file,
            account_id: self.account_id,
            region: self.region,
            durable: true,
            stopped_task_retention: std::time::Duration::from_secs(self.stopped_task_retention),
            heartbeat_grace: std::time::Duration::from_secs(self.heartbeat_grace),
            lost_after: std::time::Duration::from_secs(self.lost_after),
            default_vpc_cidr: default_vpc_cidr(&self.default_vpc_cidr)?,
            fargate_local: !self.no_fargate && !self.no_agent,
            alarm_evaluation_interval: std::time::Duration::from_secs(60),
            deployment_minute: std::time::Duration::from_secs(60),
            tracking_periods: gantry_autoscaling::TrackingPeriods::default(),
            registry_root_basic_auth: self.identity.registry_root_basic_auth,
            host_access: self.identity.host_access()?,
            pool_provisioners: Default::default(),
            managed_scaling: Default::default(),
            store: StoreConfig::Sqlite,
            blob_store: None,
        })
    }
}

pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("gantry"));
    }
    let home =
        std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("set --data-dir (no HOME)"))?;
    Ok(PathBuf::from(home).join(".local/share/gantry"))
}
