//! The agent's main loop: registration, re-adoption, the assignment stream and dispatch of its
//! messages to task actors.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use gantry_domain::container_instance::{Attribute, Resource, VersionInfo};
use gantry_domain::network::NetworkPolicyMessage;
use gantry_domain::task::{AgentMessage, AgentTask};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::actor::{Adopted, TaskMsg, spawn_actor};
use crate::cgroup::{CGROUP_ROOT, TaskCgroups};
use crate::checkpoint::Checkpoint;
use crate::client::{ApiClient, CallError, Service};
use crate::config::AgentConfig;
use crate::metadata::{self, MetadataRegistry};
use crate::netfilter::Netfilter;
use crate::pause::PAUSE_CONTAINER_NAME;
use crate::runtime::{ContainerRuntime, ListedContainer};
use crate::shared::{AbortOnDrop, Backoff, RegistryAuthCache, Shared, Spawner};
use crate::spec::{host_hard_limits, labels};

/// Failures that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The checkpoint in the data dir cannot be read or written.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The container runtime is not reachable.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The metadata endpoint cannot listen.
    #[error("metadata endpoint: {0}")]
    Listen(std::io::Error),
}

/// Runs the agent against the Docker Engine at `cfg.docker_host` until `shutdown` completes.
/// Containers are left running on shutdown (a restarted agent re-adopts them); the agent's
/// security-group chains are removed when no awsvpc task of its own is left running.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    cfg.validate().map_err(AgentError::Config)?;
    let runtime = crate::docker::DockerRuntime::connect(&cfg.docker_host).await?;
    run_with_runtime(cfg, Arc::new(runtime), shutdown).await
}

/// [`run`] with an injected runtime.
pub async fn run_with_runtime(
    cfg: AgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    cfg.validate().map_err(AgentError::Config)?;
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(crate::metrics::MeteredRuntime::new(
        runtime,
        cfg.metrics.clone(),
    ));
    let spawner = Spawner::default();
    let _guard = AbortOnDrop(spawner.clone());
    let netfilter: Arc<std::sync::OnceLock<(Arc<Netfilter>, String)>> = Arc::default();
    let result = tokio::select! {
        r = agent_main(cfg, runtime.clone(), spawner.clone(), netfilter.clone()) => r,
        () = shutdown => {
            tracing::info!("agent stopping; task containers keep running");
            Ok(())
        }
    };
    spawner.abort_all();
    if let Some((nf, arn)) = netfilter.get() {
        let awsvpc_left = runtime
            .list_by_label(labels::INSTANCE, arn)
            .await
            .map(|cs| {
                cs.iter().any(|c| {
                    c.labels.get(labels::CONTAINER_NAME).map(String::as_str)
                        == Some(PAUSE_CONTAINER_NAME)
                })
            })
            .unwrap_or(true);
        if awsvpc_left {
            tracing::info!("awsvpc tasks keep running: their security-group rules stay in place");
        } else if let Err(e) = nf.remove().await {
            tracing::warn!(error = %e, "cannot remove the security-group chains");
        }
    }
    result
}

/// `gantry agent --uninstall`: removes what the agent of `cfg.data_dir` left on this host: its
/// task containers (and their pause containers), its security-group chains, and the Gantry
/// subnet networks no container uses any more. The control plane is not contacted.
pub async fn uninstall(cfg: AgentConfig) -> Result<(), AgentError> {
    let runtime = crate::docker::DockerRuntime::connect(&cfg.docker_host).await?;
    let checkpoint = Checkpoint::open(&cfg.data_dir)?;
    if let Some((arn, _)) = checkpoint.instance() {
        for c in runtime.list_by_label(labels::INSTANCE, &arn).await? {
            let _ = runtime.stop(&c.id, Some(Duration::ZERO)).await;
            runtime.remove(&c.id).await?;
        }
        let cgroups =
            TaskCgroups::detect(Path::new(CGROUP_ROOT), &runtime.info().await?.cgroup_driver);
        for (task, r) in checkpoint.tasks() {
            if r.cgroup_parent.is_some()
                && let Ok(cg) = &cgroups
            {
                cg.remove(task_id_of(&task))
                    .map_err(|e| AgentError::Config(e.to_string()))?;
            }
        }
        Netfilter::new(&arn, crate::netfilter::probe().await)
            .remove()
            .await
            .map_err(|e| AgentError::Config(e.to_string()))?;
        tracing::info!(container_instance = %arn, "agent's containers and chains removed");
    }
    for (name, attached) in runtime.subnet_networks().await? {
        if attached == 0 && runtime.remove_network(&name).await? {
            tracing::info!(network = %name, "unused subnet network removed");
        }
    }
    Ok(())
}

/// Follows the host's security-group policy and applies every snapshot, reconnecting with
/// backoff.
async fn follow_policy(api: ApiClient, instance_id: String, netfilter: Arc<Netfilter>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let path = format!(
        "/ec2/v1/network-policy?{}",
        form_query(&[("instanceId", &instance_id)])
    );
    loop {
        let started = Instant::now();
        match api.open_stream_for(Service::Ec2, &path).await {
            Ok(mut body) => {
                let mut buf = BytesMut::new();
                let mut silence = Duration::from_secs(30);
                loop {
                    let frame = match tokio::time::timeout(silence, body.frame()).await {
                        Ok(Some(Ok(f))) => f,
                        Ok(Some(Err(e))) => {
                            tracing::warn!(error = %e, "network policy stream failed");
                            break;
                        }
                        Ok(None) | Err(_) => break,
                    };
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    buf.extend_from_slice(&data);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line = buf.split_to(pos + 1);
                        match serde_json::from_slice::<NetworkPolicyMessage>(&line[..pos]) {
                            Ok(NetworkPolicyMessage::Policy { policy }) => {
                                if let Err(e) = netfilter.apply(&policy).await {
                                    tracing::error!(error = %e, "cannot apply the security groups");
                                }
                            }
                            Ok(NetworkPolicyMessage::Heartbeat { interval_seconds }) => {
                                silence = Duration::from_secs(interval_seconds.max(1) * 3);
                            }
                            Err(e) => tracing::warn!(error = %e, "unreadable network policy line"),
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot follow the network policy"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Binds the metadata endpoint on loopback and on the Docker bridge gateway, on one port.
async fn bind_metadata(
    preferred: u16,
    gateway: Option<IpAddr>,
) -> Result<(Vec<tokio::net::TcpListener>, u16, Option<IpAddr>), std::io::Error> {
    let bind_pair = |port: u16| async move {
        let lo =
            tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
                .await?;
        let port = lo.local_addr()?.port();
        let mut ls = vec![lo];
        let mut gw_bound = None;
        if let Some(gw) = gateway {
            match tokio::net::TcpListener::bind(SocketAddr::new(gw, port)).await {
                Ok(l) => {
                    ls.push(l);
                    gw_bound = Some(gw);
                }
                Err(e) => return Err(e),
            }
        }
        Ok::<_, std::io::Error>((ls, port, gw_bound))
    };
    if preferred != 0
        && let Ok(r) = bind_pair(preferred).await
    {
        return Ok(r);
    }
    let mut last = None;
    for _ in 0..5 {
        match bind_pair(0).await {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    // No usable gateway address: loopback only.
    tracing::warn!(error = ?last, "cannot listen on the Docker bridge gateway; bridge containers will not reach the metadata endpoint");
    let lo =
        tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), preferred))
            .await?;
    let port = lo.local_addr()?.port();
    Ok((vec![lo], port, None))
}

fn agent_attributes(
    cfg: &AgentConfig,
    api_version: &str,
    awsvpc: bool,
    task_roles: bool,
) -> Vec<Attribute> {
    let mut attrs: Vec<Attribute> = cfg
        .attributes
        .iter()
        .map(|(k, v)| Attribute {
            name: k.clone(),
            value: Some(v.clone()),
        })
        .collect();
    let mut flag = |name: String| {
        if !attrs.iter().any(|a| a.name == name) {
            attrs.push(Attribute { name, value: None });
        }
    };
    let minor: u32 = api_version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(41);
    for m in 17..=minor {
        flag(format!(
            "com.amazonaws.ecs.capability.docker-remote-api.1.{m}"
        ));
    }
    for d in &cfg.logging_drivers {
        flag(format!("com.amazonaws.ecs.capability.logging-driver.{d}"));
    }
    for c in gantry_domain::capability::AGENT_CAPABILITIES
        .iter()
        .filter(|c| **c != "ecs.capability.task-eni")
    {
        flag((*c).to_owned());
    }
    if !cfg.file_systems.is_empty() {
        // Task definitions with `efsVolumeConfiguration` require it.
        flag("ecs.capability.efs".to_owned());
    }
    if task_roles {
        // Task definitions with a task role require it: only a host serving the credentials
        // endpoint offers it (ECS_ENABLE_TASK_IAM_ROLE).
        flag("com.amazonaws.ecs.capability.task-iam-role".to_owned());
        flag("com.amazonaws.ecs.capability.task-iam-role-network-host".to_owned());
    }
    if awsvpc {
        // awsvpc task definitions require it; only hosts that can enforce security groups
        // offer it.
        flag("ecs.capability.task-eni".to_owned());
    }
    attrs
}

struct Registered {
    arn: String,
    /// The instance's EC2 instance id (what task interfaces are attached to).
    ec2_instance_id: String,
}

async fn register(
    api: &ApiClient,
    cfg: &AgentConfig,
    checkpoint: &Checkpoint,
    resources: &[Resource],
    version: &VersionInfo,
    attributes: &[Attribute],
) -> Registered {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut arn = checkpoint
        .instance()
        .filter(|(_, c)| *c == cfg.cluster)
        .map(|(a, _)| a);
    loop {
        let mut body = json!({
            "cluster": cfg.cluster,
            "totalResources": resources,
            "versionInfo": version,
            "attributes": attributes,
        });
        if !cfg.tags.is_empty() {
            body["tags"] = json!(
                cfg.tags
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(a) = &arn {
            body["containerInstanceArn"] = json!(a);
        }
        match api
            .call(Service::Ecs, "RegisterContainerInstance", &body)
            .await
        {
            Ok(v) => {
                if let Some(a) = v["containerInstance"]["containerInstanceArn"].as_str() {
                    if let Err(e) = checkpoint.set_instance(a, &cfg.cluster) {
                        tracing::error!(error = %e, "cannot write checkpoint");
                    }
                    tracing::info!(container_instance = a, cluster = %cfg.cluster, "registered");
                    return Registered {
                        arn: a.to_owned(),
                        ec2_instance_id: v["containerInstance"]["ec2InstanceId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    };
                }
                tracing::warn!(answer = %v, "registration answer without containerInstanceArn");
            }
            Err(e) if e.code() == Some("ClusterNotFoundException") => {
                tracing::info!(cluster = %cfg.cluster, "cluster not found; creating it");
                if let Err(e) = api
                    .call(
                        Service::Ecs,
                        "CreateCluster",
                        &json!({"clusterName": cfg.cluster}),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "cannot create cluster");
                } else {
                    continue;
                }
            }
            Err(e) if arn.is_some() && e.is_client_error() => {
                tracing::warn!(error = %e, "re-registration with the checkpointed identity refused; registering anew");
                arn = None;
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "registration failed, retrying"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

struct ActorHandle {
    tx: mpsc::UnboundedSender<TaskMsg>,
    join: JoinHandle<()>,
}

struct Dispatcher {
    sh: Arc<Shared>,
    actors: HashMap<String, ActorHandle>,
    /// Tasks this agent finished (STOPPED and cleaned up), so a stale assignment is not rerun.
    finished: HashMap<String, Instant>,
    /// Containers found at start, by task ARN, not yet claimed by an actor.
    adopted: HashMap<String, Vec<ListedContainer>>,
}

impl Dispatcher {
    fn reap(&mut self) {
        let done: Vec<String> = self
            .actors
            .iter()
            .filter(|(_, h)| h.join.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for arn in done {
            self.actors.remove(&arn);
            self.finished.insert(arn, Instant::now());
        }
        self.finished
            .retain(|_, at| at.elapsed() < Duration::from_secs(3 * 3600));
    }

    fn spawn(&mut self, t: AgentTask) {
        let arn = t.task_arn.clone();
        let adopted = Adopted {
            containers: self.adopted.remove(&arn).unwrap_or_default(),
            record: self.sh.checkpoint.task(&arn),
        };
        let (tx, join) = spawn_actor(self.sh.clone(), t, adopted);
        self.actors.insert(arn, ActorHandle { tx, join });
    }

    fn poke(&self, task_arn: &str) {
        if let Some(h) = self.actors.get(task_arn) {
            let _ = h.tx.send(TaskMsg::Poke);
        }
    }

    fn payload(&mut self, full_state: bool, tasks: Vec<AgentTask>) {
        self.reap();
        let listed: HashSet<String> = tasks.iter().map(|t| t.task_arn.clone()).collect();
        for t in tasks {
            let arn = t.task_arn.clone();
            if let Some(h) = self.actors.get(&arn) {
                let _ = h.tx.send(TaskMsg::Assign(Box::new(t)));
            } else if self.finished.contains_key(&arn) {
                tracing::debug!(task_arn = %arn, "assignment for a task this agent already stopped; ignored");
            } else {
                // New, adopted, or stopped before it ever ran here (the actor then only reports
                // it STOPPED so the control plane can finish it).
                self.spawn(t);
            }
        }
        if full_state {
            for (arn, h) in &self.actors {
                if !listed.contains(arn) {
                    let _ = h.tx.send(TaskMsg::Unlisted);
                }
            }
            // Containers and checkpoint entries of tasks the control plane no longer lists.
            let orphans: Vec<(String, Vec<ListedContainer>)> = self.adopted.drain().collect();
            for (arn, containers) in orphans {
                tracing::info!(task_arn = %arn, containers = containers.len(), "removing containers of a task the control plane no longer lists");
                let sh = self.sh.clone();
                self.sh.spawner.spawn(remove_orphan(sh, arn, containers));
            }
            for (arn, _) in self.sh.checkpoint.tasks() {
                if !listed.contains(&arn) && !self.actors.contains_key(&arn) {
                    let sh = self.sh.clone();
                    self.sh.spawner.spawn(remove_orphan(sh, arn, Vec::new()));
                }
            }
        }
    }
}

/// The id part of a task ARN.
fn task_id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Stops and removes the containers of a task that is not ours to run any more.
async fn remove_orphan(sh: Arc<Shared>, arn: String, containers: Vec<ListedContainer>) {
    let mut ids: Vec<String> = containers.into_iter().map(|c| c.id).collect();
    let record = sh.checkpoint.task(&arn);
    if let Some(r) = &record {
        for id in r.containers.values() {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
    }
    for id in &ids {
        // Only containers that carry our instance label are touched.
        match sh.runtime.inspect(id).await {
            Ok(Some(s)) if s.labels.get(labels::INSTANCE) == Some(&sh.instance_arn) => {}
            Ok(Some(s)) if s.labels.contains_key(labels::INSTANCE) => {}
            _ => continue,
        }
        if let Err(e) = sh.runtime.stop(id, None).await {
            tracing::warn!(docker_id = %id, error = %e, "cannot stop container");
        }
        if let Err(e) = sh.runtime.remove(id).await {
            tracing::warn!(docker_id = %id, error = %e, "cannot remove container");
        }
    }
    if let Some(r) = record {
        for v in &r.volumes {
            let _ = sh.runtime.remove_volume(v).await;
        }
        if r.cgroup_parent.is_some()
            && let Ok(cg) = &sh.task_cgroups
            && let Err(e) = cg.remove(task_id_of(&arn))
        {
            tracing::warn!(task_arn = %arn, error = %e, "cannot remove the task's cgroup");
        }
    }
    if let Err(e) = sh.checkpoint.remove_task(&arn) {
        tracing::error!(error = %e, "cannot write checkpoint");
    }
}

/// Reads the assignment stream until it ends, fails or stays silent for three heartbeats.
async fn follow_stream(
    api: &ApiClient,
    cluster: &str,
    instance_arn: &str,
    d: &mut Dispatcher,
    events: &mut mpsc::UnboundedReceiver<String>,
) -> Result<(), CallError> {
    let q: String = form_query(&[("cluster", cluster), ("containerInstance", instance_arn)]);
    let mut body = api.open_stream(&format!("/agent/v1/connect?{q}")).await?;
    tracing::info!("connected to the control plane");
    let mut silence = Duration::from_secs(90);
    let mut buf = BytesMut::new();
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(silence, body.frame()) => f,
            Some(arn) = events.recv() => { d.poke(&arn); continue; }
        };
        let frame = match frame {
            Err(_) => {
                return Err(CallError::Transport(format!(
                    "nothing heard for {silence:?}"
                )));
            }
            Ok(None) => return Err(CallError::Transport("stream ended".into())),
            Ok(Some(Err(e))) => return Err(CallError::Transport(format!("stream: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(pos + 1);
            let line = &line[..pos];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<AgentMessage>(line) {
                Ok(AgentMessage::Heartbeat {
                    interval_seconds, ..
                }) => {
                    silence = Duration::from_secs(interval_seconds.max(1) * 3);
                }
                Ok(AgentMessage::Payload {
                    full_state,
                    tasks,
                    message_id,
                }) => {
                    tracing::debug!(message_id, full_state, tasks = tasks.len(), "payload");
                    d.payload(full_state, tasks);
                }
                Err(e) => {
                    let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                    tracing::warn!(error = %e, kind = %v["type"], "unreadable message from the control plane, ignored");
                }
            }
        }
        if buf.len() > 64 << 20 {
            buf.advance(buf.len());
            return Err(CallError::Transport("message too large".into()));
        }
    }
}

fn form_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn agent_main(
    cfg: AgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
    spawner: Spawner,
    netfilter_slot: Arc<std::sync::OnceLock<(Arc<Netfilter>, String)>>,
) -> Result<(), AgentError> {
    let checkpoint = Checkpoint::open(&cfg.data_dir)?;
    let api = ApiClient::new(
        &cfg.endpoint,
        &cfg.region,
        &cfg.access_key_id,
        &cfg.secret_access_key,
    )
    .map_err(AgentError::Config)?;
    let api = match &cfg.session_token {
        Some(t) => api.with_session(&cfg.access_key_id, &cfg.secret_access_key, t),
        None => api,
    };
    let host = runtime.info().await?;
    let task_cgroups = TaskCgroups::detect(Path::new(CGROUP_ROOT), &host.cgroup_driver);
    match &task_cgroups {
        Ok(c) => tracing::info!(driver = ?c.driver(), "Fargate tasks run in cgroups of their own"),
        Err(e) => tracing::info!(error = %e, "Fargate tasks cannot run on this host"),
    }

    // Metadata endpoint: same port as last time when possible (adopted containers keep theirs).
    let gateway = runtime.bridge_gateway().await.ok().flatten();
    let preferred = if cfg.metadata_port != 0 {
        cfg.metadata_port
    } else {
        checkpoint.metadata_port().unwrap_or(0)
    };
    let (listeners, port, gw) = bind_metadata(preferred, gateway)
        .await
        .map_err(AgentError::Listen)?;
    checkpoint.set_metadata_port(port)?;
    let registry = MetadataRegistry::default();
    let credentials = crate::credentials::CredentialsRegistry::default();
    let protection =
        crate::task_protection::router(registry.clone(), credentials.clone(), api.clone());
    for server in metadata::serve(
        listeners,
        registry.clone(),
        runtime.clone(),
        protection.clone(),
    ) {
        spawner.spawn(server);
    }
    tracing::info!(port, gateway = ?gw, "task metadata endpoint listening");

    // Task credentials (and the metadata documents) on 169.254.170.2.
    let listened = if cfg.task_iam_role {
        crate::credentials::listen(checkpoint.credentials_port(), port).await
    } else {
        Err(crate::credentials::EndpointUnavailable(
            "task roles are disabled on this agent (--disable-task-iam-role)".into(),
        ))
    };
    let credentials_port = match listened {
        Ok(l) => {
            let p = l.local_addr().map_err(AgentError::Listen)?.port();
            checkpoint.set_credentials_port(p)?;
            let app = metadata::app(registry.clone(), runtime.clone())
                .merge(crate::credentials::router(
                    credentials.clone(),
                    runtime.clone(),
                ))
                .merge(protection);
            spawner.spawn(metadata::serve_router(l, app));
            tracing::info!(
                port = p,
                "task credentials endpoint listening on 169.254.170.2"
            );
            Ok(p)
        }
        Err(e) => {
            if cfg.task_iam_role {
                tracing::error!(error = %e, "tasks with a task role cannot run on this host");
            } else {
                tracing::info!("task roles disabled: tasks with a task role are not placed here");
            }
            Err(e.to_string())
        }
    };

    let mut ports: Vec<String> = cfg.reserved_ports.iter().map(u16::to_string).collect();
    if !ports.contains(&port.to_string()) {
        ports.push(port.to_string());
    }
    let resources = vec![
        Resource::integer("CPU", host.cpus * 1024),
        Resource::integer(
            "MEMORY",
            (host.memory_bytes / (1024 * 1024) - cfg.reserved_memory_mib).max(0),
        ),
        Resource::string_set("PORTS", ports),
        Resource::string_set(
            "PORTS_UDP",
            cfg.reserved_ports_udp.iter().map(u16::to_string).collect(),
        ),
    ];
    let version = VersionInfo {
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        agent_hash: Some("gantry".to_owned()),
        docker_version: Some(format!("DockerVersion: {}", host.server_version)),
    };
    let packet_filter = crate::netfilter::probe().await;
    let attributes = agent_attributes(
        &cfg,
        &host.api_version,
        packet_filter.is_ok(),
        credentials_port.is_ok(),
    );
    let previous = checkpoint.instance().map(|(a, _)| a);
    let reg = register(&api, &cfg, &checkpoint, &resources, &version, &attributes).await;

    // Re-adoption: everything carrying our instance label (and the previous one's, if the
    // identity changed), grouped by task.
    let mut adopted: HashMap<String, Vec<ListedContainer>> = HashMap::new();
    let mut owners = vec![reg.arn.clone()];
    if let Some(p) = previous.filter(|p| *p != reg.arn) {
        owners.push(p);
    }
    for owner in &owners {
        for c in runtime.list_by_label(labels::INSTANCE, owner).await? {
            if let Some(task) = c.labels.get(labels::TASK_ARN).cloned() {
                adopted.entry(task).or_default().push(c);
            }
        }
    }
    tracing::info!(
        tasks = adopted.len(),
        containers = adopted.values().map(Vec::len).sum::<usize>(),
        "found existing task containers"
    );

    let netfilter = Arc::new(Netfilter::new(&reg.arn, packet_filter));
    let _ = netfilter_slot.set((netfilter.clone(), reg.arn.clone()));
    if netfilter.usable().is_ok() {
        if reg.ec2_instance_id.is_empty() {
            tracing::warn!(
                "the control plane gave no EC2 instance id: security groups cannot be followed"
            );
        } else {
            spawner.spawn(follow_policy(
                api.clone(),
                reg.ec2_instance_id.clone(),
                netfilter.clone(),
            ));
        }
    }

    spawner.spawn(crate::usage::report_forever(
        api.clone(),
        runtime.clone(),
        cfg.cluster.clone(),
        reg.arn.clone(),
        cfg.usage_interval,
    ));

    let sh = Arc::new(Shared {
        runtime: runtime.clone(),
        api: api.clone(),
        cluster: cfg.cluster.clone(),
        instance_arn: reg.arn.clone(),
        region: cfg.region.clone(),
        checkpoint,
        metadata: registry,
        metadata_base_bridge: gw.map(|g| format!("http://{g}:{port}")),
        metadata_base_host: Some(format!("http://127.0.0.1:{port}")),
        hard_limits: host_hard_limits(),
        pull_behavior: cfg.image_pull_behavior,
        registry_auth: RegistryAuthCache::new(api.clone()),
        spawner: spawner.clone(),
        netfilter,
        pause_image: cfg.pause_image.clone(),
        default_stop_timeout: cfg.container_stop_timeout,
        cleanup_wait: cfg.task_cleanup_wait,
        file_systems: cfg.file_systems.clone(),
        credentials,
        credentials_port,
        metrics: cfg.metrics.clone(),
        task_cgroups,
    });

    // Runtime events → pokes for the owning task's actor.
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<String>();
    {
        let runtime = runtime.clone();
        let arn = reg.arn.clone();
        spawner.spawn(async move {
            loop {
                let mut s = runtime.events(labels::INSTANCE, &arn);
                while let Some(ev) = s.next().await {
                    match ev {
                        Ok(ev) => {
                            if let Some(t) = ev.labels.get(labels::TASK_ARN)
                                && ev_tx.send(t.clone()).is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "runtime event stream interrupted");
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    let mut d = Dispatcher {
        sh,
        actors: HashMap::new(),
        finished: HashMap::new(),
        adopted,
    };
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut client_errors = 0u32;
    loop {
        let started = Instant::now();
        match follow_stream(&api, &cfg.cluster, &reg.arn, &mut d, &mut ev_rx).await {
            Ok(()) => {}
            Err(e) => {
                if e.is_client_error() {
                    client_errors += 1;
                } else {
                    client_errors = 0;
                }
                tracing::warn!(error = %e, "assignment stream lost, reconnecting");
            }
        }
        if client_errors >= 3 {
            // The control plane may have lost this instance: register again (same identity).
            client_errors = 0;
            let checkpoint = d.sh.checkpoint.clone();
            let r = register(&api, &cfg, &checkpoint, &resources, &version, &attributes).await;
            if r.arn != reg.arn {
                tracing::warn!(new = %r.arn, old = %reg.arn, "control plane gave this host a new identity; restart the agent to adopt it");
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        // Drain pokes while disconnected so actors still notice exits.
        let delay = backoff.next_delay();
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                Some(arn) = ev_rx.recv() => d.poke(&arn),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_include_capabilities_and_custom_ones() {
        let mut cfg = AgentConfig::new("http://127.0.0.1:1", "c", "/tmp/x");
        cfg.attributes = vec![("stack".into(), "blue".into())];
        let attrs = agent_attributes(&cfg, "1.41", true, true);
        assert_eq!(attrs[0].name, "stack");
        for n in [
            "com.amazonaws.ecs.capability.docker-remote-api.1.17",
            "com.amazonaws.ecs.capability.docker-remote-api.1.41",
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "ecs.capability.container-health-check",
            "ecs.capability.container-ordering",
            "ecs.capability.task-eni",
            "com.amazonaws.ecs.capability.task-iam-role",
        ] {
            assert!(attrs.iter().any(|a| a.name == n), "{n}");
        }
        let without = agent_attributes(&cfg, "1.41", false, false);
        assert!(!without.iter().any(|a| a.name == "ecs.capability.task-eni"));
        assert!(
            !without
                .iter()
                .any(|a| a.name == "com.amazonaws.ecs.capability.task-iam-role")
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            form_query(&[
                ("cluster", "c"),
                (
                    "containerInstance",
                    "arn:aws:ecs:r:1:container-instance/c/x"
                )
            ]),
            "cluster=c&containerInstance=arn%3Aaws%3Aecs%3Ar%3A1%3Acontainer-instance%2Fc%2Fx"
        );
    }
}
