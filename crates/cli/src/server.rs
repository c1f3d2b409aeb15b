//! The control plane: store, APIs and listener, with graceful shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use gantry_aws_proto::sigv4::CredentialProvider;
use gantry_ecr::{EcrService, Registry, RegistryConfig};
use gantry_ecs::agent_stream::AgentStreams;
use gantry_ecs::service_lb::{TargetGroups, TargetSpec};
use gantry_ecs::service_runner::{Liveness, ServiceRunner};
use gantry_ecs::task_network;
use gantry_ecs::{self as ecs, EcsService};
use gantry_front::{Clock, Front, RandomIds, SystemClock, listener};
use gantry_kms::{KmsService, MasterKey};
use gantry_secretsmanager::SecretsManagerService;
use gantry_ssm::SsmService;
use gantry_store::{
    Election, EtcdElection, EtcdStore, FencedStore, SoloElection, SqliteOptions, SqliteStore, Store,
};
use gantry_sts::StsService;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::{ServerConfig, StoreConfig};
use crate::credentials::{RootCredentials, load_or_create_secret};
use crate::datadir::{self, DataDirLock};
use crate::identity::{
    AgentChannelCredentials, ExecutionRoles, IamSessions, Identity, LateCredentials, MasterSealer,
    StoredResourcePolicies,
};
use crate::leader::Controllers;
use crate::secrets::{KmsKeys, TaskSecretResolver};
use gantry_iam::IamService;

/// How often the registry retries replication jobs a transient failure (the store unavailable
/// or full) kept pending; pushes wake the replication worker at once.
const REPLICATION_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// What `gantry up` adds to the server: the printed exports, and a local agent.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The cluster a local agent joins; `None` runs no agent.
    pub local_agent: Option<String>,
    /// Whether to run a local load balancer.
    pub local_lb: bool,
}

/// The address clients should use for a bound listener (a wildcard bind is reached on loopback).
fn client_addr(bound: SocketAddr) -> SocketAddr {
    let mut a = bound;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    a
}

fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT; a second one then exits the process at once, so a
/// shutdown that takes too long can always be cut short. The handlers are installed when this is
/// called, not when the future is first polled, so a signal sent as soon as the ready file exists
/// is never left to the default action (which would kill the process without a clean shutdown).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut int) = match (term, int) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down (a second signal exits at once)"),
            _ = int.recv() => tracing::info!("interrupt received, shutting down (a second signal exits at once)"),
        }
        tokio::spawn(async move {
            let code = tokio::select! {
                _ = term.recv() => 143,
                _ = int.recv() => 130,
            };
            tracing::warn!("second signal received, exiting now");
            std::process::exit(code);
        });
    }
}

/// Waits for each part to finish until `deadline`, then drops (aborts) the ones still running.
/// The parts stop concurrently: the whole takes at most until `deadline`.
async fn stop_parts(parts: Vec<(&'static str, tokio::task::JoinHandle<()>)>, deadline: Instant) {
    let waits = parts.into_iter().map(|(name, mut handle)| async move {
        match tokio::time::timeout_at(deadline.into(), &mut handle).await {
            Ok(Ok(())) => tracing::debug!(part = name, "stopped"),
            Ok(Err(e)) => tracing::warn!(part = name, error = %e, "ended abnormally"),
            Err(_) => {
                handle.abort();
                tracing::warn!(part = name, "did not stop in time; dropped");
            }
        }
    });
    futures::future::join_all(waits).await;
}

/// Removes expired STOPPED tasks every minute until shutdown.
async fn collect_stopped_tasks_forever(
    store: Arc<dyn Store>,
    retention: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let every =
        std::time::Duration::from_secs(60).min(retention.max(std::time::Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let now = SystemClock.now_millis();
        match ecs::collect_stopped_tasks(store.as_ref(), now, retention.as_millis() as u64).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired stopped tasks removed"),
            Err(e) => tracing::warn!(error = %e, "stopped-task collection failed"),
        }
    }
}

/// The service runner's view of target groups, over the ELBv2 API's records.
struct ElbTargetGroups {
    store: Arc<dyn Store>,
}

#[async_trait]
impl TargetGroups for ElbTargetGroups {
    async fn targets(
        &self,
        region: &str,
        tg_arn: &str,
        now: u64,
    ) -> Result<Vec<(String, u16, gantry_domain::lb::TargetHealthState)>, String> {
        gantry_elbv2::target_health(self.store.as_ref(), region, tg_arn, now)
            .await
            .map(|v| v.into_iter().map(|h| (h.id, h.port, h.state)).collect())
            .map_err(|e| e.to_string())
    }

    async fn register(
        &self,
        region: &str,
        tg_arn: &str,
        targets: &[TargetSpec],
        now: u64,
    ) -> Result<(), String> {
        let specs: Vec<gantry_elbv2::TargetSpec> = targets
            .iter()
            .map(|t| gantry_elbv2::TargetSpec {
                id: t.id.clone(),
                port: Some(t.port),
                address: Some(t.address.clone()),
                availability_zone: t.availability_zone.clone(),
            })
            .collect();
        gantry_elbv2::register_targets_with_address(
            self.store.as_ref(),
            region,
            tg_arn,
            &specs,
            now,
        )
        .await
        .map_err(|e| e.to_string())
    }

    async fn deregister(
        &self,
        region: &str,
        tg_arn: &str,
        targets: &[(String, u16)],
        now: u64,
    ) -> Result<(), String> {
        gantry_elbv2::deregister_targets(self.store.as_ref(), region, tg_arn, targets, now)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn deregistration_delay_ms(&self, region: &str, tg_arn: &str) -> Option<u64> {
        gantry_elbv2::target_group(self.store.as_ref(), region, tg_arn)
            .await
            .ok()
            .flatten()
            .map(|tg| tg.deregistration_delay_seconds() * 1000)
    }

    async fn target_type(&self, region: &str, tg_arn: &str) -> Option<String> {
        gantry_elbv2::target_group(self.store.as_ref(), region, tg_arn)
            .await
            .ok()
            .flatten()
            .map(|tg| tg.target_type)
    }

    async fn target_group_load_balancers(
        &self,
        region: &str,
        tg_arn: &str,
    ) -> Result<Vec<String>, String> {
        gantry_elbv2::target_group_load_balancers(self.store.as_ref(), region, tg_arn)
            .await
            .map_err(|e| e.to_string())
    }

    async fn rule_forward(
        &self,
        region: &str,
        rule_arn: &str,
    ) -> Result<Option<(String, Vec<(String, u32)>)>, String> {
        gantry_elbv2::rule_forward(self.store.as_ref(), region, rule_arn)
            .await
            .map(|r| r.map(|r| (r.load_balancer_arn, r.target_groups)))
            .map_err(|e| e.to_string())
    }

    async fn set_rule_weights(
        &self,
        region: &str,
        rule_arn: &str,
        weights: &[(String, u32)],
    ) -> Result<bool, String> {
        gantry_elbv2::set_rule_weights(self.store.as_ref(), region, rule_arn, weights)
            .await
            .map_err(|e| e.to_string())
    }
}

/// ECS deployments' alarms, read from CloudWatch.
struct CloudWatchDeploymentAlarms {
    cloudwatch: Arc<gantry_cloudwatch::CloudWatchService>,
    account_id: String,
}

#[async_trait::async_trait]
impl gantry_ecs::service_runner::DeploymentAlarms for CloudWatchDeploymentAlarms {
    async fn in_alarm(&self, region: &str, names: &[String]) -> Result<Vec<String>, String> {
        let ctx = internal_context(region, &self.account_id);
        let out = self
            .cloudwatch
            .call_json(
                gantry_cloudwatch::CloudWatchOperation::DescribeAlarms,
                serde_json::json!({"AlarmNames": names, "StateValue": "ALARM"}),
                &ctx,
            )
            .await
            .map_err(|e| e.message.clone())?;
        Ok(out["MetricAlarms"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(out["CompositeAlarms"].as_array().into_iter().flatten())
            .filter_map(|a| a["AlarmName"].as_str().map(str::to_owned))
            .collect())
    }
}

/// ECS's view of EC2 for awsvpc tasks: subnets, groups, and the interfaces planned with the
/// tasks' own records.
struct Ec2TaskNetworks {
    store: Arc<dyn Store>,
}

fn lookup_error(e: gantry_ec2::Ec2Error) -> task_network::NetworkLookupError {
    use gantry_ec2::Ec2Error as E;
    use task_network::NetworkLookupError as L;
    match e {
        E::SubnetNotFound(id) => L::SubnetNotFound(id),
        E::GroupNotFound(id) => L::SecurityGroupNotFound(id),
        E::Malformed { code, id } if code.starts_with("InvalidSubnet") => L::SubnetNotFound(id),
        E::Malformed { id, .. } => L::SecurityGroupNotFound(id),
        other => L::Internal(other.to_string()),
    }
}

#[async_trait]
impl task_network::TaskNetworks for Ec2TaskNetworks {
    async fn resolve(
        &self,
        region: &str,
        subnets: &[String],
        security_groups: &[String],
    ) -> Result<task_network::NetworkLookup, task_network::NetworkLookupError> {
        let store = self.store.as_ref();
        let subnets = gantry_ec2::ipam::subnets(store, region, subnets)
            .await
            .map_err(lookup_error)?;
        let groups = gantry_ec2::ipam::security_groups(store, region, security_groups)
            .await
            .map_err(lookup_error)?;
        let default_security_group = match subnets.first() {
            Some(s) => gantry_ec2::ipam::default_security_group(store, region, &s.vpc_id)
                .await
                .map_err(lookup_error)?
                .map(|g| g.id),
            None => None,
        };
        Ok(task_network::NetworkLookup {
            subnets: subnets
                .into_iter()
                .map(|s| task_network::SubnetInfo {
                    id: s.id,
                    vpc_id: s.vpc_id,
                    cidr: s.cidr,
                    availability_zone: s.availability_zone,
                })
                .collect(),
            security_groups: groups.into_iter().map(|g| (g.id, g.vpc_id)).collect(),
            default_security_group,
        })
    }

    async fn plan(
        &self,
        region: &str,
        requests: &[task_network::InterfaceRequest],
        now: u64,
    ) -> Result<
        (
            gantry_store::Txn,
            Vec<Result<task_network::InterfaceGrant, String>>,
        ),
        task_network::NetworkLookupError,
    > {
        let specs: Vec<gantry_ec2::ipam::InterfaceSpec> = requests
            .iter()
            .map(|r| gantry_ec2::ipam::InterfaceSpec {
                subnets: r.subnets.clone(),
                security_groups: r.security_groups.clone(),
                requester_id: r.task_arn.clone(),
                description: r.attachment_arn.clone(),
                instance_id: r.instance_id.clone(),
                seed: r.seed,
            })
            .collect();
        let (txn, out) =
            gantry_ec2::ipam::plan_interfaces(self.store.as_ref(), region, &specs, now)
                .await
                .map_err(lookup_error)?;
        let grants = out
            .into_iter()
            .map(|r| {
                r.map(|n| task_network::InterfaceGrant {
                    eni_id: n.id,
                    subnet_id: n.subnet_id,
                    private_ip: n.private_ip,
                    mac: n.mac,
                    private_dns_name: n.private_dns_name,
                })
                .map_err(|e| format!("{}: {e}", e.aws_code()))
            })
            .collect();
        Ok((txn, grants))
    }

    async fn release(
        &self,
        region: &str,
        eni_id: &str,
    ) -> Result<gantry_store::Txn, task_network::NetworkLookupError> {
        gantry_ec2::ipam::release_interface(self.store.as_ref(), region, eni_id)
            .await
            .map_err(lookup_error)
    }
}

/// ELBv2's view of ACM: listener certificates, and their keys for the proxies' channel.
#[derive(Debug)]
struct AcmListenerCertificates {
    acm: Arc<gantry_acm::AcmService>,
    account_id: String,
}

impl AcmListenerCertificates {
    /// The account root's context in `region`: the channel reads keys on the account's behalf.
    fn context(&self, region: &str) -> gantry_front::RequestContext {
        gantry_front::RequestContext {
            request_id: gantry_aws_proto::new_request_id(),
            region: region.to_owned(),
            account_id: self.account_id.clone(),
            access_key_id: String::new(),
            now: gantry_front::Clock::now_millis(&SystemClock),
            caller: None,
        }
    }

    fn of_account(&self, arn: &str) -> bool {
        arn.split(':').nth(4) == Some(self.account_id.as_str())
    }
}

#[async_trait]
impl gantry_elbv2::Certificates for AcmListenerCertificates {
    async fn exists(&self, region: &str, arn: &str) -> Result<bool, String> {
        if !self.of_account(arn) {
            return Ok(false);
        }
        self.acm
            .exists(region, arn)
            .await
            .map_err(|e| e.to_string())
    }

    async fn material(
        &self,
        region: &str,
        arn: &str,
    ) -> Result<Option<gantry_domain::lb::CertificateMaterial>, String> {
        if !self.of_account(arn) {
            return Ok(None);
        }
        let served = self
            .acm
            .served_certificate(&self.context(region), arn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(served.map(|c| gantry_domain::lb::CertificateMaterial {
            certificate_arn: c.arn,
            chain_pem: c.chain_pem,
            private_key_pem: c.private_key_pem,
        }))
    }
}

/// ACM's `InUseBy`: the load balancer listeners serving a certificate.
#[derive(Debug)]
struct ListenerCertificateUsers {
    store: Arc<dyn Store>,
}

#[async_trait]
impl gantry_acm::CertificateUsers for ListenerCertificateUsers {
    async fn users(&self, region: &str, certificate_arn: &str) -> Result<Vec<String>, String> {
        gantry_elbv2::listeners_using_certificate(self.store.as_ref(), region, certificate_arn)
            .await
            .map_err(|e| e.to_string())
    }
}

/// ELBv2's view of EC2: the subnets and security groups load balancers are placed in.
struct Ec2LbNetworks {
    store: Arc<dyn Store>,
}

fn lb_lookup_error(e: gantry_ec2::Ec2Error) -> gantry_elbv2::NetworkLookupError {
    use gantry_ec2::Ec2Error as E;
    use gantry_elbv2::NetworkLookupError as L;
    match e {
        E::SubnetNotFound(id) => L::SubnetNotFound(id),
        E::GroupNotFound(id) => L::SecurityGroupNotFound(id),
        E::Malformed { code, id } if code.starts_with("InvalidSubnet") => L::SubnetNotFound(id),
        E::Malformed { id, .. } => L::SecurityGroupNotFound(id),
        other => L::Internal(other.to_string()),
    }
}

#[async_trait]
impl gantry_elbv2::Networks for Ec2LbNetworks {
    async fn subnets(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<gantry_elbv2::SubnetRef>, gantry_elbv2::NetworkLookupError> {
        Ok(gantry_ec2::ipam::subnets(self.store.as_ref(), region, ids)
            .await
            .map_err(lb_lookup_error)?
            .into_iter()
            .map(|s| gantry_elbv2::SubnetRef {
                id: s.id,
                vpc_id: s.vpc_id,
                availability_zone: s.availability_zone,
            })
            .collect())
    }

    async fn security_groups(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, gantry_elbv2::NetworkLookupError> {
        Ok(
            gantry_ec2::ipam::security_groups(self.store.as_ref(), region, ids)
                .await
                .map_err(lb_lookup_error)?
                .into_iter()
                .map(|g| (g.id, g.vpc_id))
                .collect(),
        )
    }

    async fn default_security_group(
        &self,
        region: &str,
        vpc_id: &str,
    ) -> Result<Option<String>, gantry_elbv2::NetworkLookupError> {
        Ok(
            gantry_ec2::ipam::default_security_group(self.store.as_ref(), region, vpc_id)
                .await
                .map_err(lb_lookup_error)?
                .map(|g| g.id),
        )
    }
}

/// EC2's default subnets follow the zones ECS's container instances report.
struct InstanceZones {
    store: Arc<dyn Store>,
}

#[async_trait]
impl gantry_ec2::ZoneSource for InstanceZones {
    async fn zones(&self, region: &str) -> Vec<String> {
        match ecs::availability_zones(self.store.as_ref(), region).await {
            Ok(z) => z,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the zones of the container instances");
                Vec::new()
            }
        }
    }
}

/// The store as the API sees it, with its backend when closing or electing needs it.
type OpenedStore = (
    Arc<dyn Store>,
    Option<Arc<SqliteStore>>,
    Option<Arc<EtcdStore>>,
);

/// Runs the control plane until SIGTERM or Ctrl-C.
pub async fn run(cfg: ServerConfig, up: Option<UpOptions>) -> anyhow::Result<()> {
    datadir::prepare(&cfg.data_dir)?;
    let lock = DataDirLock::acquire(&cfg.data_dir, "server")?;
    tracing::debug!(lock = %lock.path().display(), "data dir locked");
    // `gantry up`'s agent keeps its checkpoint beside the server's state; hold its lock too, so a
    // `gantry agent` started on it meanwhile refuses.
    let agent_dir = cfg.data_dir.join("agent");
    let _agent_lock = match up.as_ref().and_then(|u| u.local_agent.as_ref()) {
        Some(_) => {
            datadir::prepare(&agent_dir)?;
            Some(DataDirLock::acquire(&agent_dir, "agent")?)
        }
        None => None,
    };
    // The platform agent (Fargate capacity on this machine) keeps its own checkpoint.
    let fargate_dir = cfg.data_dir.join("fargate-agent");
    let _fargate_lock = if cfg.fargate_local {
        datadir::prepare(&fargate_dir)?;
        Some(DataDirLock::acquire(&fargate_dir, "agent")?)
    } else {
        None
    };
    let creds = Arc::new(RootCredentials::load_or_create(&cfg.data_dir)?);
    let (store, sqlite, etcd): OpenedStore = match &cfg.store {
        StoreConfig::Sqlite => {
            let sqlite = Arc::new(
                SqliteStore::open(
                    &cfg.data_dir.join("state.db"),
                    SqliteOptions {
                        durable: cfg.durable,
                        ..Default::default()
                    },
                )
                .context("opening the store")?,
            );
            (sqlite.clone(), Some(sqlite), None)
        }
        StoreConfig::Etcd(opts) => {
            let etcd = EtcdStore::connect(opts.clone()).await.with_context(|| {
                format!(
                    "opening the store on etcd at {} (prefix {})",
                    opts.endpoints.join(","),
                    opts.prefix
                )
            })?;
            tracing::info!(endpoints = %opts.endpoints.join(","), prefix = %opts.prefix, "state store: etcd");
            let etcd = Arc::new(etcd);
            (etcd.clone(), None, Some(etcd))
        }
    };

    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = client_addr(listener.local_addr()?);
    let endpoint = format!("http://{addr}");

    // KMS keys, IAM access key secrets and session tokens are sealed by the data dir's master
    // key (0600), never stored in the clear.
    let master = MasterKey::new(&load_or_create_secret(&cfg.data_dir, "master-key")?)
        .context("the data dir's master-key file")?;
    let iam = Arc::new(
        IamService::open(
            store.clone(),
            Arc::new(MasterSealer(master.clone())),
            cfg.account_id.clone(),
        )
        .await
        .context("loading IAM")?,
    );
    // The registry authenticates with the same credentials; its repository policies take part
    // in the authorization of ECR calls, which it in turn asks of the identity.
    let registry_creds = Arc::new(LateCredentials::new(
        &creds.access_key_id,
        cfg.registry_root_basic_auth,
    ));
    let registry_cfg = RegistryConfig {
        data_dir: cfg.data_dir.join("registry"),
        default_region: cfg.region.clone(),
        account_id: cfg.account_id.clone(),
        token_secret: load_or_create_secret(&cfg.data_dir, "registry-token-secret")?,
    };
    let registry_options = gantry_ecr::RegistryOptions {
        pull_through_refresh: cfg.pull_through_refresh,
        ..gantry_ecr::RegistryOptions::default()
    };
    let registry = match &cfg.blob_store {
        None => Registry::open_with_options(
            registry_cfg,
            store.clone(),
            registry_creds.clone(),
            registry_options,
        )
        .await
        .context("opening the registry")?,
        Some(s3) => {
            let blobs = gantry_ecr::S3BlobStore::open(s3)
                .await
                .with_context(|| format!("opening the registry's bucket {}", s3.bucket))?;
            tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, "registry blobs: S3");
            Registry::open_on(
                registry_cfg,
                store.clone(),
                registry_creds.clone(),
                Arc::new(blobs),
                registry_options,
            )
            .await
            .context("opening the registry")?
        }
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut parts: Vec<(&'static str, tokio::task::JoinHandle<()>)> = Vec::new();
    // With several replicas, IAM's in-memory directory follows what the others write.
    if etcd.is_some() {
        parts.push((
            "iam directory follower",
            tokio::spawn(iam.clone().follow(shutdown_rx.clone())),
        ));
    }
    // Controllers run on the elected leader only; with one server it leads at once.
    let mut controllers = Controllers::default();
    let election: Arc<dyn Election> = match &etcd {
        Some(etcd) => Arc::new(EtcdElection::new(
            etcd.clone(),
            format!("{}@{}", std::process::id(), addr),
            std::time::Duration::from_secs(3),
        )),
        None => Arc::new(SoloElection::default()),
    };
    let fenced = Arc::new(FencedStore::new(store.clone()));
    // What the controllers write through: fenced by the leader's term on etcd; the plain store
    // with one server (nobody else can lead).
    let controller_store: Arc<dyn Store> = match &etcd {
        Some(_) => fenced.clone(),
        None => store.clone(),
    };
    // Every leader-only job writes through `controller_store`, so a deposed leader's writes are
    // refused by the store.
    if etcd.is_some() {
        registry.set_controller_store(controller_store.clone());
    }
    {
        let registry = registry.clone();
        controllers.add("registry maintenance", move |stop| {
            tokio::spawn(registry.clone().run_maintenance(stop))
        });
    }
    {
        let registry = registry.clone();
        controllers.add("registry replication", move |stop| {
            tokio::spawn(registry.clone().run_replication(REPLICATION_RETRY, stop))
        });
    }

    let target_groups = Arc::new(ElbTargetGroups {
        store: store.clone(),
    });
    let ecs = Arc::new(
        EcsService::new(store.clone(), Arc::new(RandomIds))
            .with_networks(Arc::new(Ec2TaskNetworks {
                store: store.clone(),
            }))
            .with_target_groups(target_groups.clone())
            .with_host_access(cfg.host_access.clone())
            .with_endpoint(endpoint.clone()),
    );
    let ecs_service = ecs.clone();
    // On etcd the controllers (service runner, scaling) write through the fenced store, with its own ECS state; with one
    // server it shares the API's.
    let runner_ecs = match &etcd {
        Some(_) => Arc::new(
            EcsService::new(controller_store.clone(), Arc::new(RandomIds))
                .with_networks(Arc::new(Ec2TaskNetworks {
                    store: controller_store.clone(),
                }))
                .with_target_groups(Arc::new(ElbTargetGroups {
                    store: controller_store.clone(),
                }))
                .with_host_access(cfg.host_access.clone())
                .with_endpoint(endpoint.clone()),
        ),
        None => ecs_service.clone(),
    };
    {
        let store = controller_store.clone();
        let retention = cfg.stopped_task_retention;
        controllers.add("stopped-task collection", move |stop| {
            tokio::spawn(collect_stopped_tasks_forever(
                store.clone(),
                retention,
                stop,
            ))
        });
    }
    let kms = Arc::new(KmsService::new(store.clone(), master));
    {
        let kms = Arc::new(kms.writing_through(controller_store.clone()));
        controllers.add("kms maintenance", move |stop| {
            tokio::spawn(kms.clone().run_maintenance(stop))
        });
    }
    let keys = Arc::new(KmsKeys::new(kms.clone(), cfg.account_id.clone()));
    let secretsmanager = Arc::new(SecretsManagerService::new(store.clone(), keys.clone()));
    let identity = Arc::new(
        Identity::new(creds.clone(), iam.clone(), &cfg.region).with_resource_policies(Arc::new(
            StoredResourcePolicies {
                registry: registry.clone(),
                secrets: secretsmanager.clone(),
            },
        )),
    );
    registry_creds.set(identity.clone());
    registry.set_authorizer(identity.clone());
    registry.set_upstream_credentials(Arc::new(crate::secrets::PullThroughSecrets::new(
        secretsmanager.clone(),
    )));
    kms.set_key_authorizer(Arc::new(crate::kms_authz::KeyPolicies {
        identity: identity.clone(),
    }));
    let cred_provider: Arc<dyn CredentialProvider> = identity.clone();
    {
        let secretsmanager = Arc::new(secretsmanager.writing_through(controller_store.clone()));
        controllers.add("secrets manager maintenance", move |stop| {
            tokio::spawn(secretsmanager.clone().run_maintenance(stop))
        });
    }
    let ssm = Arc::new(SsmService::new(store.clone(), keys.clone()));
    let acm = Arc::new(
        gantry_acm::AcmService::new(store.clone(), keys.clone()).with_users(Arc::new(
            ListenerCertificateUsers {
                store: store.clone(),
            },
        )),
    );
    let listener_certificates = Arc::new(AcmListenerCertificates {
        acm: acm.clone(),
        account_id: cfg.account_id.clone(),
    });
    let ecr = Arc::new(
        EcrService::new(registry.clone(), addr.to_string()).with_repository_keys(keys.clone()),
    );
    let ec2 = Arc::new(gantry_ec2::Ec2Service::new(
        store.clone(),
        gantry_ec2::DefaultNetwork {
            cidr: cfg.default_vpc_cidr,
            ..Default::default()
        },
        Some(Arc::new(InstanceZones {
            store: store.clone(),
        })),
    ));
    // The default VPC of the server's region exists from the first start.
    ec2.ensure_defaults(&cfg.region)
        .await
        .context("creating the default VPC")?;
    let cloudwatch = gantry_cloudwatch::CloudWatchService::open(store.clone())
        .await
        .context("loading CloudWatch metric data")?;
    // With several replicas, the metric index follows what the others store.
    if etcd.is_some() {
        parts.push((
            "cloudwatch metric follower",
            tokio::spawn(cloudwatch.clone().follow(shutdown_rx.clone())),
        ));
    } else {
        cloudwatch.stand_alone();
    }
    let logs = Arc::new(
        gantry_logs::LogsService::new(store.clone())
            .with_metric_publisher(Arc::new(LogMetricsSink(cloudwatch.clone()))),
    );
    {
        let logs = Arc::new(logs.writing_through(controller_store.clone()));
        controllers.add("log retention", move |stop| {
            tokio::spawn(logs.clone().run_retention(stop))
        });
    }
    if etcd.is_some() {
        cloudwatch.set_controller_store(controller_store.clone());
    }
    {
        let cloudwatch = cloudwatch.clone();
        let every = cfg.alarm_evaluation_interval;
        controllers.add("cloudwatch alarms and retention", move |stop| {
            tokio::spawn(cloudwatch.clone().run(every, stop))
        });
    }
    // Application Auto Scaling acts on ECS services and owns CloudWatch alarms, whose actions
    // call back into it.
    let autoscaling = Arc::new(
        gantry_autoscaling::AutoScalingService::new(
            store.clone(),
            Arc::new(EcsScalableServices {
                ecs: ecs.clone(),
                account_id: cfg.account_id.clone(),
            }),
            Arc::new(CloudWatchAlarms {
                cloudwatch: cloudwatch.clone(),
                account_id: cfg.account_id.clone(),
            }),
            cfg.account_id.clone(),
        )
        .with_tracking_periods(cfg.tracking_periods),
    );
    cloudwatch.set_actions(Arc::new(ScalingActions(Arc::downgrade(&autoscaling))));
    {
        // Scheduled actions run on the leader, through its fenced store and ECS.
        let autoscaling = Arc::new(
            gantry_autoscaling::AutoScalingService::new(
                controller_store.clone(),
                Arc::new(EcsScalableServices {
                    ecs: runner_ecs.clone(),
                    account_id: cfg.account_id.clone(),
                }),
                Arc::new(CloudWatchAlarms {
                    cloudwatch: cloudwatch.clone(),
                    account_id: cfg.account_id.clone(),
                }),
                cfg.account_id.clone(),
            )
            .with_tracking_periods(cfg.tracking_periods),
        );
        controllers.add("scheduled scaling", move |stop| {
            tokio::spawn(
                autoscaling
                    .clone()
                    .run(std::time::Duration::from_secs(1), stop),
            )
        });
    }
    // CodeDeploy deploys CODE_DEPLOY services through ECS's task sets and the listeners'
    // weights; its runner moves deployments along on the leader.
    let codedeploy = Arc::new(
        gantry_codedeploy::CodeDeployService::new(store.clone()).with_platform(Arc::new(
            CodeDeployPlatform {
                ecs: ecs.clone(),
                store: store.clone(),
                account_id: cfg.account_id.clone(),
            },
        )),
    );
    {
        let deployments = Arc::new(gantry_codedeploy::DeploymentRunner::new(
            Arc::new(
                gantry_codedeploy::CodeDeployService::new(controller_store.clone()).with_platform(
                    Arc::new(CodeDeployPlatform {
                        ecs: ecs.clone(),
                        store: controller_store.clone(),
                        account_id: cfg.account_id.clone(),
                    }),
                ),
            ),
            Arc::new(SystemClock),
            cfg.deployment_minute,
        ));
        controllers.add("codedeploy deployments", move |stop| {
            tokio::spawn(
                deployments
                    .clone()
                    .run(std::time::Duration::from_millis(250), stop),
            )
        });
    }
    let front = Arc::new(
        Front::new(cred_provider, Arc::new(SystemClock), cfg.account_id.clone())
            .with_authenticator(identity.clone())
            .with_authorizer(identity.clone())
            .with_query(iam)
            .with_json(ecs)
            .with_json(ecr)
            .with_json(logs)
            .with_json(kms)
            .with_json(secretsmanager.clone())
            .with_json(acm.clone())
            .with_json(ssm.clone())
            .with_json(codedeploy)
            .with_query(Arc::new(StsService::new(Arc::new(IamSessions {
                identity: identity.clone(),
            }))))
            .with_query(Arc::new(
                gantry_elbv2::Elbv2Service::new(store.clone())
                    .with_networks(Arc::new(Ec2LbNetworks {
                        store: store.clone(),
                    }))
                    .with_certificates(listener_certificates.clone()),
            ))
            .with_query(ec2)
            // CloudWatch: awsJson1.0 (botocore) and awsQuery (older SDKs, Terraform).
            .with_json(Arc::new(gantry_cloudwatch::CloudWatchJson(
                cloudwatch.clone(),
            )))
            .with_json(autoscaling)
            .with_query(Arc::new(gantry_cloudwatch::CloudWatchQuery(
                cloudwatch.clone(),
            ))),
    );
    // Agents' task usage becomes ECS's AWS/ECS metrics in CloudWatch.
    // Agents authenticate as the root or as an IAM identity allowed what ECS's instance role is.
    let poll_creds = Arc::new(AgentChannelCredentials {
        identity: identity.clone(),
        action: "ecs:Poll",
    });
    let telemetry = Arc::new(gantry_ecs::telemetry::Telemetry::new(
        store.clone(),
        Arc::new(AgentChannelCredentials {
            identity: identity.clone(),
            action: "ecs:StartTelemetrySession",
        }),
        Arc::new(SystemClock),
        Arc::new(CloudWatchSink(cloudwatch.clone())),
    ));
    // `/v2/` does its own (Basic) authentication; everything else goes through the SigV4 front.
    let agents = Arc::new(
        AgentStreams::new(
            store.clone(),
            poll_creds.clone(),
            Arc::new(SystemClock),
            cfg.account_id.clone(),
        )
        .with_grace(cfg.heartbeat_grace)
        .with_shutdown(shutdown_rx.clone())
        // Secrets are read as the task's execution role, with its IAM policies.
        .with_secrets(Arc::new(TaskSecretResolver::new(
            secretsmanager.clone(),
            ssm.clone(),
            Arc::new(ExecutionRoles {
                identity: identity.clone(),
            }),
        ))),
    );
    tokio::spawn(agents.clone().expire_earlier_connections());
    let runner = Arc::new(
        ServiceRunner::new(
            runner_ecs.clone(),
            Arc::new(SystemClock),
            cfg.account_id.clone(),
            Liveness {
                heartbeat_grace: cfg.heartbeat_grace,
                lost_after: cfg.lost_after,
            },
        )
        .with_target_groups(match &etcd {
            Some(_) => Arc::new(ElbTargetGroups {
                store: controller_store.clone(),
            }),
            None => target_groups,
        })
        .with_alarms(Arc::new(CloudWatchDeploymentAlarms {
            cloudwatch: cloudwatch.clone(),
            account_id: cfg.account_id.clone(),
        }))
        .with_bake_minute(cfg.deployment_minute),
    );
    controllers.add("service runner", move |stop| {
        tokio::spawn(runner.clone().run(stop))
    });
    // Managed scaling of host pools, through the configured provisioners: the loop runs on the
    // leader; the pool agents this server started stop with it.
    let provisioners = Arc::new(crate::provisioner::Provisioners::new(
        cfg.pool_provisioners.clone(),
        crate::provisioner::LocalSettings {
            endpoint: endpoint.clone(),
            data_dir: cfg.data_dir.clone(),
            region: cfg.region.clone(),
            access_key_id: creds.access_key_id.clone(),
            secret_access_key: creds.secret_access_key.clone(),
        },
    ));
    if !cfg.pool_provisioners.is_empty() {
        let scaling = Arc::new(gantry_ecs::managed_scaling::ManagedScaling::new(
            runner_ecs.clone(),
            provisioners.clone(),
            Arc::new(CloudWatchSink(cloudwatch.clone())),
            Arc::new(SystemClock),
            cfg.account_id.clone(),
            cfg.region.clone(),
            cfg.managed_scaling,
        ));
        provisioners.resume().await;
        controllers.add("managed scaling", move |stop| {
            let scaling = scaling.clone();
            tokio::spawn(async move { scaling.run(stop).await })
        });
        let stop_agents = provisioners.clone();
        let mut shutdown = shutdown_rx.clone();
        parts.push((
            "pool agents",
            tokio::spawn(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
                stop_agents.stop_all().await;
            }),
        ));
    }
    parts.push((
        "controllers (leader only)",
        tokio::spawn(controllers.run(election, fenced, shutdown_rx.clone())),
    ));
    // The channel delivers listener certificates with their private keys to the proxies, and
    // turns load balancers' traffic into ELB's AWS/ApplicationELB and AWS/NetworkELB metrics.
    let lb_channel = Arc::new(
        gantry_elbv2::LbChannel::new(
            store.clone(),
            creds.clone(),
            Arc::new(SystemClock),
            shutdown_rx.clone(),
        )
        .with_metrics(Arc::new(CloudWatchSink(cloudwatch.clone())))
        .with_certificates(listener_certificates.clone()),
    )
    .router();
    let policy_channel = gantry_ec2::policy::policy_router(
        store.clone(),
        poll_creds.clone(),
        Arc::new(SystemClock),
        shutdown_rx.clone(),
    );
    let admin = ecs::admin::admin_router(
        ecs_service.clone(),
        creds.clone(),
        Arc::new(SystemClock),
        cfg.account_id.clone(),
    );
    let metrics_route = crate::prometheus::router(&front.metrics(), creds.clone());
    let app = front
        .router()
        .merge(metrics_route)
        .merge(crate::health::router(store.clone()))
        .merge(crate::console::router(Arc::new(
            crate::console::Console::new(endpoint.clone(), cfg.region.clone())?,
        )))
        .merge(registry.router())
        .merge(agents.router())
        .merge(admin)
        .merge(telemetry.router())
        .merge(lb_channel)
        .merge(policy_channel);
    tracing::info!(%endpoint, data_dir = %cfg.data_dir.display(), "gantry server listening");

    // Listening for the signal before anyone is told the server is ready.
    let shutdown = shutdown_signal();
    if let Some(path) = &cfg.ready_file {
        let ready = json!({
            "endpoint": endpoint,
            "registry": addr.to_string(),
            "region": cfg.region,
            "accountId": cfg.account_id,
            "pid": std::process::id(),
        });
        write_atomically(path, serde_json::to_vec_pretty(&ready)?.as_slice())?;
    }
    // For `gantry env`: where this server answers (the credentials are beside it); private
    // like every file of the data dir.
    crate::credentials::write_private(
        &cfg.data_dir.join(crate::user::env::SERVER_FILE),
        serde_json::to_vec_pretty(&json!({
            "endpoint": endpoint,
            "registry": addr.to_string(),
            "region": cfg.region,
        }))?
        .as_slice(),
    )?;
    if up.is_some() {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "# Gantry is running. Paste these lines into your shell:"
        )?;
        write!(
            out,
            "{}",
            crate::user::env::export_lines(
                &endpoint,
                &addr.to_string(),
                &cfg.region,
                &creds.access_key_id,
                &creds.secret_access_key,
            )
        )?;
        out.flush()?;
    }

    // `gantry up`: one local agent in the same process, on the same credentials. Dropping its
    // task drops the metadata endpoint and everything else it started.
    if let Some(cluster) = up.as_ref().and_then(|u| u.local_agent.clone()) {
        let mut acfg = gantry_agent::AgentConfig::new(endpoint.clone(), cluster, agent_dir);
        acfg.access_key_id = creds.access_key_id.clone();
        acfg.secret_access_key = creds.secret_access_key.clone();
        acfg.region = cfg.region.clone();
        let mut stop = shutdown_rx.clone();
        parts.push((
            "local agent",
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = gantry_agent::run(acfg, stopped).await {
                    tracing::error!(error = %e, "local agent stopped");
                }
            }),
        ));
    }
    // `gantry up` and `--fargate-local`: this machine as Fargate capacity, through an agent
    // registered into the platform cluster (pool `local`), serving the subnets of every zone.
    if cfg.fargate_local {
        let mut acfg = gantry_agent::AgentConfig::new(
            endpoint.clone(),
            gantry_domain::cluster::FARGATE_PLATFORM_CLUSTER,
            fargate_dir,
        );
        acfg.attributes.push((
            gantry_domain::cluster::FARGATE_POOL_ATTRIBUTE.to_owned(),
            "local".to_owned(),
        ));
        // The only platform host of a one-machine installation serves every zone's subnets.
        acfg.attributes.push((
            gantry_domain::cluster::ZONES_ATTRIBUTE.to_owned(),
            gantry_domain::cluster::ALL_ZONES.to_owned(),
        ));
        acfg.access_key_id = creds.access_key_id.clone();
        acfg.secret_access_key = creds.secret_access_key.clone();
        acfg.region = cfg.region.clone();
        let mut stop = shutdown_rx.clone();
        parts.push((
            "fargate platform agent",
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = gantry_agent::run(acfg, stopped).await {
                    tracing::error!(error = %e, "fargate platform agent stopped");
                }
            }),
        ));
    }
    // `gantry up`: one local load balancer, serving the listeners on this machine.
    if up.as_ref().is_some_and(|u| u.local_lb) {
        let mut settings = gantry_lb::LbSettings::new(endpoint.clone());
        settings.access_key_id = creds.access_key_id.clone();
        settings.secret_access_key = creds.secret_access_key.clone();
        settings.region = cfg.region.clone();
        let mut stop = shutdown_rx.clone();
        parts.push((
            "local load balancer",
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = gantry_lb::run(settings, stopped).await {
                    tracing::error!(error = %e, "local load balancer stopped");
                }
            }),
        ));
    }

    // On the signal every part is told to stop at once; each then has `shutdown_timeout` (the
    // API's open connections included) before it is dropped.
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<Instant>();
    let stop_all = shutdown_tx.clone();
    let served = listener::serve(
        listener,
        app,
        cfg.limits.clone(),
        async move {
            shutdown.await;
            let _ = signalled_tx.send(Instant::now());
            let _ = stop_all.send(true);
        },
        cfg.shutdown_timeout,
    )
    .await;
    if served.dropped > 0 {
        tracing::warn!(
            connections = served.dropped,
            "API connections still busy at the shutdown deadline were closed"
        );
    }
    let _ = shutdown_tx.send(true);
    let signalled = signalled_rx.await.unwrap_or_else(|_| Instant::now());
    stop_parts(parts, signalled + cfg.shutdown_timeout).await;
    // Closing the store finishes the batch being written; it gets the same bound.
    if let Some(sqlite) = sqlite {
        let closing = tokio::task::spawn_blocking(move || sqlite.close());
        if tokio::time::timeout(cfg.shutdown_timeout, closing)
            .await
            .is_err()
        {
            tracing::error!("the store did not close in time; exiting without waiting for it");
        }
    }
    tracing::info!("gantry server stopped");
    Ok(())
}

/// ECS's metrics published into CloudWatch (`gantry_ecs::telemetry::MetricsSink`).
#[derive(Debug)]
struct CloudWatchSink(Arc<gantry_cloudwatch::CloudWatchService>);

#[async_trait::async_trait]
impl gantry_ecs::telemetry::MetricsSink for CloudWatchSink {
    async fn publish(
        &self,
        region: &str,
        samples: Vec<gantry_ecs::telemetry::MetricSample>,
        now_ms: u64,
    ) -> Result<(), gantry_aws_proto::AwsError> {
        use gantry_cloudwatch::series::{Agg, Row, SeriesKey, UNIT_NONE, unit_id, values_of};
        let rows = samples
            .into_iter()
            .map(|s| {
                let mut dimensions = s.dimensions;
                dimensions.sort();
                Row {
                    key: SeriesKey {
                        region: region.to_owned(),
                        namespace: s.namespace.to_owned(),
                        name: s.name.to_owned(),
                        dimensions,
                    },
                    bucket: s.timestamp - s.timestamp.rem_euclid(60),
                    unit: unit_id(s.unit).unwrap_or(UNIT_NONE),
                    agg: Agg::of(s.value, 1.0),
                    values: values_of(s.value, 1.0),
                }
            })
            .collect();
        self.0.put_rows(region, rows, now_ms).await
    }
}

#[async_trait::async_trait]
impl gantry_elbv2::usage::LbMetricsSink for CloudWatchSink {
    async fn publish(
        &self,
        region: &str,
        samples: Vec<gantry_elbv2::usage::LbMetricSample>,
        now_ms: u64,
    ) -> Result<(), gantry_aws_proto::AwsError> {
        use gantry_cloudwatch::series::{
            Agg, Row, SeriesKey, UNIT_NONE, Values, merge_values, unit_id, values_of,
        };
        let rows = samples
            .into_iter()
            .map(|s| {
                let mut agg = Agg::EMPTY;
                let mut values: Values = Some(Vec::new());
                for (v, c) in &s.values {
                    agg.merge(&Agg::of(*v, *c));
                    merge_values(&mut values, &values_of(*v, *c));
                }
                Row {
                    key: SeriesKey {
                        region: region.to_owned(),
                        namespace: s.namespace.to_owned(),
                        name: s.name.to_owned(),
                        dimensions: s.dimensions,
                    },
                    bucket: s.timestamp - s.timestamp.rem_euclid(60),
                    unit: unit_id(s.unit).unwrap_or(UNIT_NONE),
                    agg,
                    values,
                }
            })
            .collect();
        self.0.put_rows(region, rows, now_ms).await
    }
}

/// Logs metric filters' data published into CloudWatch
/// (`gantry_logs::metric_filters::MetricPublisher`).
#[derive(Debug)]
struct LogMetricsSink(Arc<gantry_cloudwatch::CloudWatchService>);

#[async_trait::async_trait]
impl gantry_logs::metric_filters::MetricPublisher for LogMetricsSink {
    async fn publish(
        &self,
        region: &str,
        samples: Vec<gantry_logs::metric_filters::MetricSample>,
        now_ms: u64,
    ) -> Result<(), String> {
        use gantry_cloudwatch::series::{Agg, Row, SeriesKey, UNIT_NONE, unit_id, values_of_set};
        let rows = samples
            .into_iter()
            .map(|s| {
                let agg = Agg {
                    count: s.count,
                    sum: s.sum,
                    min: s.min,
                    max: s.max,
                };
                Row {
                    key: SeriesKey {
                        region: region.to_owned(),
                        namespace: s.namespace,
                        name: s.name,
                        dimensions: s.dimensions,
                    },
                    bucket: s.minute,
                    unit: s.unit.as_deref().and_then(unit_id).unwrap_or(UNIT_NONE),
                    values: values_of_set(&agg),
                    agg,
                }
            })
            .collect();
        self.0
            .put_rows(region, rows, now_ms)
            .await
            .map_err(|e| e.to_string())
    }
}

fn internal_context(region: &str, account_id: &str) -> gantry_front::RequestContext {
    gantry_front::RequestContext {
        caller: None,
        request_id: gantry_aws_proto::new_request_id(),
        region: region.to_owned(),
        account_id: account_id.to_owned(),
        access_key_id: String::new(),
        now: SystemClock.now_millis(),
    }
}

/// CodeDeploy's ECS and ELBv2: ECS's task-set operations as CodeDeploy calls them, target
/// groups by name and listener weights over the ELBv2 records.
struct CodeDeployPlatform {
    ecs: Arc<EcsService>,
    store: Arc<dyn Store>,
    account_id: String,
}

impl std::fmt::Debug for CodeDeployPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeDeployPlatform").finish_non_exhaustive()
    }
}

fn elb_platform_error(e: gantry_elbv2::Elbv2Error) -> gantry_codedeploy::PlatformError {
    let aws = gantry_aws_proto::AwsError::from(e);
    gantry_codedeploy::PlatformError::new(aws.code, aws.message)
}

#[async_trait::async_trait]
impl gantry_codedeploy::Platform for CodeDeployPlatform {
    async fn ecs(
        &self,
        region: &str,
        operation: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, gantry_codedeploy::PlatformError> {
        let ctx = internal_context(region, &self.account_id);
        let body = serde_json::to_vec(&input)
            .map_err(|e| gantry_codedeploy::PlatformError::new("InternalFailure", e.to_string()))?;
        self.ecs
            .call_as_code_deploy(operation, &body, &ctx)
            .await
            .map_err(|e| gantry_codedeploy::PlatformError::new(e.code, e.message))
    }

    async fn target_group_arn(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<String>, gantry_codedeploy::PlatformError> {
        Ok(
            gantry_elbv2::target_group_named(self.store.as_ref(), region, name)
                .await
                .map_err(elb_platform_error)?
                .map(|tg| tg.arn),
        )
    }

    async fn listener_forward(
        &self,
        region: &str,
        listener_arn: &str,
    ) -> Result<Option<(String, Vec<(String, u32)>)>, gantry_codedeploy::PlatformError> {
        let Some(rule) =
            gantry_elbv2::listener_default_rule(self.store.as_ref(), region, listener_arn)
                .await
                .map_err(elb_platform_error)?
        else {
            return Ok(None);
        };
        Ok(
            gantry_elbv2::rule_forward(self.store.as_ref(), region, &rule)
                .await
                .map_err(elb_platform_error)?
                .map(|f| (f.load_balancer_arn, f.target_groups)),
        )
    }

    async fn set_listener_weights(
        &self,
        region: &str,
        listener_arn: &str,
        weights: &[(String, u32)],
    ) -> Result<(), gantry_codedeploy::PlatformError> {
        let rule = gantry_elbv2::listener_default_rule(self.store.as_ref(), region, listener_arn)
            .await
            .map_err(elb_platform_error)?
            .ok_or_else(|| {
                gantry_codedeploy::PlatformError::new(
                    "ListenerNotFound",
                    format!("The listener {listener_arn} does not exist."),
                )
            })?;
        gantry_elbv2::set_rule_weights(self.store.as_ref(), region, &rule, weights)
            .await
            .map_err(elb_platform_error)?;
        Ok(())
    }
}

/// ECS services' desired counts for Application Auto Scaling, through ECS's own operations.
#[derive(Debug)]
struct EcsScalableServices {
    ecs: Arc<EcsService>,
    account_id: String,
}

#[async_trait::async_trait]
impl gantry_autoscaling::Services for EcsScalableServices {
    async fn desired_count(
        &self,
        region: &str,
        cluster: &str,
        service: &str,
    ) -> Result<Option<i64>, gantry_aws_proto::AwsError> {
        let ctx = internal_context(region, &self.account_id);
        let body = serde_json::json!({"cluster": cluster, "services": [service]}).to_string();
        let out = match gantry_front::JsonService::call(
            self.ecs.as_ref(),
            "DescribeServices",
            body.as_bytes(),
            &ctx,
        )
        .await
        {
            Ok(v) => v,
            Err(e) if e.code == "ClusterNotFoundException" => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out["services"]
            .as_array()
            .and_then(|s| s.first())
            .filter(|s| s["status"] == "ACTIVE")
            .and_then(|s| s["desiredCount"].as_i64()))
    }

    async fn set_desired_count(
        &self,
        region: &str,
        cluster: &str,
        service: &str,
        count: i64,
    ) -> Result<(), gantry_aws_proto::AwsError> {
        let ctx = internal_context(region, &self.account_id);
        let body =
            serde_json::json!({"cluster": cluster, "service": service, "desiredCount": count})
                .to_string();
        gantry_front::JsonService::call(self.ecs.as_ref(), "UpdateService", body.as_bytes(), &ctx)
            .await
            .map(|_| ())
    }
}

/// CloudWatch alarms for Application Auto Scaling's target tracking.
#[derive(Debug)]
struct CloudWatchAlarms {
    cloudwatch: Arc<gantry_cloudwatch::CloudWatchService>,
    account_id: String,
}

#[async_trait::async_trait]
impl gantry_autoscaling::Alarms for CloudWatchAlarms {
    async fn put(
        &self,
        region: &str,
        input: serde_json::Value,
    ) -> Result<String, gantry_aws_proto::AwsError> {
        let name = input["AlarmName"].as_str().unwrap_or_default().to_owned();
        let ctx = internal_context(region, &self.account_id);
        self.cloudwatch
            .call_json(
                gantry_cloudwatch::CloudWatchOperation::PutMetricAlarm,
                input,
                &ctx,
            )
            .await?;
        Ok(format!(
            "arn:aws:cloudwatch:{region}:{}:alarm:{name}",
            self.account_id
        ))
    }

    async fn delete(
        &self,
        region: &str,
        names: &[String],
    ) -> Result<(), gantry_aws_proto::AwsError> {
        let ctx = internal_context(region, &self.account_id);
        for name in names {
            let r = self
                .cloudwatch
                .call_json(
                    gantry_cloudwatch::CloudWatchOperation::DeleteAlarms,
                    serde_json::json!({"AlarmNames": [name]}),
                    &ctx,
                )
                .await;
            match r {
                Ok(_) => {}
                Err(e) if e.code == "ResourceNotFound" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Alarm actions naming Application Auto Scaling policies.
#[derive(Debug)]
struct ScalingActions(std::sync::Weak<gantry_autoscaling::AutoScalingService>);

#[async_trait::async_trait]
impl gantry_cloudwatch::AlarmActions for ScalingActions {
    fn accepts(&self, arn: &str) -> bool {
        arn.starts_with("arn:aws:autoscaling:") && arn.contains(":scalingPolicy:")
    }

    async fn invoke(
        &self,
        region: &str,
        arn: &str,
        alarm: &str,
        state: &str,
        value: Option<f64>,
        threshold: f64,
    ) {
        let Some(aas) = self.0.upgrade() else { return };
        if let Err(e) = aas
            .execute(
                region,
                arn,
                gantry_autoscaling::Trigger {
                    alarm,
                    state,
                    value,
                    threshold,
                },
                SystemClock.now_millis(),
            )
            .await
        {
            tracing::warn!(policy = arn, alarm, error = %e, "scaling policy failed");
        }
    }
}
