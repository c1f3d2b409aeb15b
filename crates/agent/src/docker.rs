//! [`ContainerRuntime`] on the Docker Engine API (bollard). Containers log with `json-file`; the
//! agent reads their output back through the logs API to ship `awslogs` lines itself.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
    ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptions, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use gantry_domain::task::NetworkBinding;

use crate::runtime::{
    ContainerRuntime, ContainerSpec, ContainerState, HostInfo, ListedContainer, LocalImage,
    LogLine, Networking, RegistryAuth, RuntimeError, RuntimeEvent, SubnetNetwork,
};

/// Labels of the subnet networks Gantry creates.
pub mod network_labels {
    /// Present on every network Gantry created for a subnet.
    pub const SUBNET_ID: &str = "gantry.subnet-id";
    pub const VPC_ID: &str = "gantry.vpc-id";
}

/// The Docker network of a subnet.
pub fn subnet_network_name(subnet_id: &str) -> String {
    format!("gantry-{subnet_id}")
}

/// The Linux bridge of a subnet's network: `gs-` and the last 12 characters of the subnet id
/// (interface names are at most 15 characters).
pub fn subnet_bridge_name(subnet_id: &str) -> String {
    let tail: String = subnet_id
        .chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("gs-{tail}")
}

/// The Docker Engine, reached over `DOCKER_HOST`-style addresses.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Serialises this agent's creation of subnet networks.
    networks: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn engine(e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(message),
        other => RuntimeError::Engine(other.to_string()),
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn credentials(auth: Option<RegistryAuth>) -> Option<DockerCredentials> {
    auth.map(|a| DockerCredentials {
        username: Some(a.username),
        password: Some(a.password),
        serveraddress: Some(a.server_address),
        ..Default::default()
    })
}

/// Splits `repo[:tag][@digest]` into what `/images/create` wants: `fromImage` and `tag` (a tag
/// or a digest; `latest` when neither is given, since an empty tag pulls every tag).
pub(crate) fn split_image(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        let repo = match repo.rfind(':') {
            Some(i) if !repo[i..].contains('/') => &repo[..i],
            _ => repo,
        };
        return (repo.to_owned(), digest.to_owned());
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (image[..i].to_owned(), image[i + 1..].to_owned()),
        _ => (image.to_owned(), "latest".to_owned()),
    }
}

/// The first host address of an IPv4 subnet (`172.17.0.0/16` → `172.17.0.1`).
fn first_host(subnet: &str) -> Option<IpAddr> {
    let (net, _) = subnet.split_once('/')?;
    let v4: std::net::Ipv4Addr = net.parse().ok()?;
    Some(IpAddr::V4(std::net::Ipv4Addr::from(
        u32::from(v4).checked_add(1)?,
    )))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Parses Docker's `2026-01-02T03:04:05.123456789Z message` log framing.
pub(crate) fn parse_log_line(raw: &[u8]) -> Option<LogLine> {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let (ts, message) = text.split_once(' ').unwrap_or((text, ""));
    let at =
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some(LogLine {
        timestamp_nanos: at.unix_timestamp_nanos(),
        message: message.strip_suffix('\r').unwrap_or(message).to_owned(),
    })
}

impl DockerRuntime {
    /// Connects to `host` (`unix:///var/run/docker.sock`, `tcp://...`, `http://...`) and settles
    /// on the newest API version both sides speak.
    pub async fn connect(host: &str) -> Result<Self, RuntimeError> {
        // Only response headers are bounded by this; `stop` waits for the stop timeout first.
        let docker = Docker::connect_with_host(host)
            .map_err(engine)?
            .with_timeout(Duration::from_secs(300));
        let docker = docker.negotiate_version().await.map_err(engine)?;
        Ok(Self {
            docker,
            networks: Default::default(),
        })
    }

    fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = Vec::new();
        // A container in another's network namespace can neither expose nor publish ports.
        let joins = spec.join_namespace_of.is_some();
        for p in spec.ports.iter().filter(|_| !joins) {
            let key = format!("{}/{}", p.container_port, p.protocol);
            exposed.push(key.clone());
            if spec.endpoint.is_none()
                && (spec.network == Some(Networking::Bridge) || spec.network.is_none())
            {
                port_bindings
                    .entry(key)
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(PortBinding {
                        host_ip: Some(String::new()),
                        host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
                    });
            }
        }
        let network_mode = match (&spec.endpoint, &spec.join_namespace_of) {
            (Some(e), _) => Some(e.network.clone()),
            (None, Some(id)) => Some(format!("container:{id}")),
            (None, None) => spec.network.map(|n| n.as_str().to_owned()),
        };
        let networking_config = spec.endpoint.as_ref().map(|e| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                e.network.clone(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(e.ipv4.clone()),
                        ..Default::default()
                    }),
                    mac_address: Some(e.mac.clone()),
                    ..Default::default()
                },
            )])),
        });
        let host_config = HostConfig {
            network_mode,
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            cpu_shares: spec.cpu_shares,
            memory: spec.memory_bytes,
            memory_reservation: spec.memory_reservation_bytes,
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|u| ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            volumes_from: (!spec.volumes_from.is_empty()).then(|| spec.volumes_from.clone()),
            links: (!spec.links.is_empty()).then(|| spec.links.clone()),
            readonly_rootfs: Some(spec.readonly_rootfs),
            privileged: Some(false),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "3".to_owned()),
                ])),
            }),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            dns: (!spec.dns.is_empty()).then(|| spec.dns.clone()),
            dns_search: (!spec.dns_search.is_empty()).then(|| spec.dns_search.clone()),
            nano_cpus: spec.nano_cpus,
            pids_limit: spec.pids_limit,
            security_opt: (!spec.security_opt.is_empty()).then(|| spec.security_opt.clone()),
            storage_opt: spec
                .storage_size_gib
                .map(|g| HashMap::from([("size".to_owned(), format!("{g}G"))])),
            cgroup_parent: spec.cgroup_parent.clone(),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            working_dir: spec.working_dir.clone(),
            user: spec.user.clone(),
            hostname: spec.hostname.clone(),
            labels: Some(spec.labels.clone().into_iter().collect()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            healthcheck: spec.health.as_ref().map(|h| HealthConfig {
                test: Some(h.test.clone()),
                interval: Some(nanos(h.interval)),
                timeout: Some(nanos(h.timeout)),
                retries: Some(h.retries),
                start_period: Some(nanos(h.start_period)),
                start_interval: None,
            }),
            stop_timeout: spec
                .stop_timeout
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        }
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn info(&self) -> Result<HostInfo, RuntimeError> {
        let info = self.docker.info().await.map_err(engine)?;
        Ok(HostInfo {
            cpus: info.ncpu.unwrap_or(1),
            memory_bytes: info.mem_total.unwrap_or(0),
            server_version: info.server_version.unwrap_or_default(),
            api_version: self.docker.client_version().to_string(),
            cgroup_driver: info
                .cgroup_driver
                .map(|d| d.to_string())
                .unwrap_or_default(),
        })
    }

    async fn local_image(&self, image: &str) -> Result<Option<LocalImage>, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(LocalImage {
                id: i.id.unwrap_or_default(),
                repo_digests: i.repo_digests.unwrap_or_default(),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    async fn remote_digest(
        &self,
        image: &str,
        auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError> {
        let d = self
            .docker
            .inspect_registry_image(image, credentials(auth))
            .await
            .map_err(engine)?;
        d.descriptor
            .digest
            .ok_or_else(|| RuntimeError::Engine(format!("no digest for {image}")))
    }

    async fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> Result<(), RuntimeError> {
        let (repo, tag) = split_image(image);
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&repo)
            .tag(&tag)
            .build();
        let mut s = self
            .docker
            .create_image(Some(opts), None, credentials(auth));
        while let Some(item) = s.next().await {
            item.map_err(|e| match e {
                BollardError::DockerStreamError { error } => RuntimeError::Pull(error),
                BollardError::DockerResponseServerError { message, .. } => {
                    RuntimeError::Pull(message)
                }
                other => RuntimeError::Pull(other.to_string()),
            })?;
        }
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let r = self
            .docker
            .create_container(Some(opts), Self::create_body(spec))
            .await
            .map_err(|e| match e {
                BollardError::DockerResponseServerError { message, .. } => {
                    RuntimeError::Engine(message)
                }
                other => RuntimeError::Engine(other.to_string()),
            })?;
        Ok(r.id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| match e {
                BollardError::DockerResponseServerError { message, .. } => {
                    RuntimeError::Engine(message)
                }
                other => RuntimeError::Engine(other.to_string()),
            })
    }

    async fn stop(&self, id: &str, timeout: Option<Duration>) -> Result<(), RuntimeError> {
        let opts = timeout.map(|t| {
            let secs = i32::try_from(t.as_secs()).unwrap_or(i32::MAX);
            StopContainerOptionsBuilder::default().t(secs).build()
        });
        match self.docker.stop_container(id, opts).await {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: gone.
            Err(BollardError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // 409: removal already in progress.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        match self
            .docker
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        let c = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(engine(e)),
        };
        let state = c.state.unwrap_or_default();
        let config = c.config.unwrap_or_default();
        let net = c.network_settings.unwrap_or_default();
        let mut bindings = Vec::new();
        for (key, binds) in net.ports.unwrap_or_default() {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let Ok(container_port) = port.parse::<i64>() else {
                continue;
            };
            for b in binds.unwrap_or_default() {
                let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<i64>().ok())
                else {
                    continue;
                };
                bindings.push(NetworkBinding {
                    bind_ip: Some(
                        b.host_ip
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".to_owned()),
                    ),
                    container_port: Some(container_port),
                    host_port: Some(host_port),
                    protocol: Some(proto.to_owned()),
                });
            }
        }
        bindings.sort_by(|a, b| {
            (a.container_port, a.bind_ip.as_deref()).cmp(&(b.container_port, b.bind_ip.as_deref()))
        });
        let mut networks: Vec<(String, String)> = net
            .networks
            .unwrap_or_default()
            .into_iter()
            .map(|(name, ep)| (name, ep.ip_address.unwrap_or_default()))
            .collect();
        networks.sort();
        let health = state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none");
        Ok(Some(ContainerState {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image: config.image.unwrap_or_default(),
            image_id: c.image.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            running: state.running.unwrap_or(false),
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.filter(|e| !e.is_empty()),
            created_at: c.created,
            started_at: state.started_at,
            finished_at: state.finished_at,
            health,
            bindings,
            networks,
            network_mode: c
                .host_config
                .and_then(|h| h.network_mode)
                .unwrap_or_default(),
        }))
    }

    async fn list_by_label(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ListedContainer>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(engine)?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                Some(ListedContainer {
                    id: c.id?,
                    labels: c.labels.unwrap_or_default().into_iter().collect(),
                })
            })
            .collect())
    }

    fn logs(&self, id: &str, since_secs: i64) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(i32::try_from(since_secs).unwrap_or(0))
            .build();
        self.docker
            .logs(id, Some(opts))
            .map_err(engine)
            .try_filter_map(|out| async move {
                Ok(match out {
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message } => parse_log_line(&message),
                    LogOutput::StdIn { .. } => None,
                })
            })
            .boxed()
    }

    async fn stats(&self, id: &str) -> Result<serde_json::Value, RuntimeError> {
        let opts = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(true)
            .build();
        let mut s = self.docker.stats(id, Some(opts));
        match s.next().await {
            Some(Ok(stats)) => {
                serde_json::to_value(stats).map_err(|e| RuntimeError::Engine(e.to_string()))
            }
            Some(Err(e)) => Err(engine(e)),
            None => Err(RuntimeError::Engine(format!("no stats for {id}"))),
        }
    }

    fn events(
        &self,
        key: &str,
        value: &str,
    ) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("label", vec![format!("{key}={value}")]),
        ]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker
            .events(Some(opts))
            .map_err(engine)
            .try_filter_map(|ev| async move {
                let Some(actor) = ev.actor else {
                    return Ok(None);
                };
                let Some(id) = actor.id else {
                    return Ok(None);
                };
                Ok(Some(RuntimeEvent {
                    container_id: id,
                    action: ev.action.unwrap_or_default(),
                    labels: actor
                        .attributes
                        .unwrap_or_default()
                        .into_iter()
                        .collect::<BTreeMap<_, _>>(),
                }))
            })
            .boxed()
    }

    async fn bridge_gateway(&self) -> Result<Option<IpAddr>, RuntimeError> {
        let net = match self
            .docker
            .inspect_network("bridge", None::<InspectNetworkOptions>)
            .await
        {
            Ok(n) => n,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(engine(e)),
        };
        // Docker 20.10 leaves `Gateway` out of the default bridge's IPAM config; the gateway
        // is then the subnet's first address.
        Ok(net
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                c.gateway
                    .and_then(|g| g.parse::<IpAddr>().ok())
                    .or_else(|| c.subnet.as_deref().and_then(first_host))
            })
            .find(IpAddr::is_ipv4))
    }

    async fn ensure_subnet_network(&self, n: &SubnetNetwork) -> Result<String, RuntimeError> {
        let _one = self.networks.lock().await;
        let name = subnet_network_name(&n.subnet_id);
        let matches = |net: &bollard::models::NetworkInspect| {
            net.ipam
                .as_ref()
                .and_then(|i| i.config.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.subnet.as_deref() == Some(n.cidr.as_str()))
                })
        };
        for attempt in 0..2 {
            match self
                .docker
                .inspect_network(&name, None::<InspectNetworkOptions>)
                .await
            {
                Ok(net) if matches(&net) => return Ok(name),
                Ok(_) => {
                    return Err(RuntimeError::Engine(format!(
                        "network {name} exists with another block than {}",
                        n.cidr
                    )));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(engine(e)),
            }
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                ipam: Some(Ipam {
                    driver: Some("default".into()),
                    config: Some(vec![IpamConfig {
                        subnet: Some(n.cidr.clone()),
                        gateway: Some(n.gateway.clone()),
                        ..Default::default()
                    }]),
                    options: None,
                }),
                options: Some(HashMap::from([(
                    "com.docker.network.bridge.name".to_owned(),
                    subnet_bridge_name(&n.subnet_id),
                )])),
                labels: Some(HashMap::from([
                    (network_labels::SUBNET_ID.to_owned(), n.subnet_id.clone()),
                    (network_labels::VPC_ID.to_owned(), n.vpc_id.clone()),
                ])),
                ..Default::default()
            };
            match self.docker.create_network(request).await {
                Ok(_) => {
                    tracing::info!(network = %name, cidr = %n.cidr, "subnet network created");
                    return Ok(name);
                }
                Err(e) => {
                    // Another agent on this Engine may be creating it right now.
                    for _ in 0..20 {
                        if let Ok(net) = self
                            .docker
                            .inspect_network(&name, None::<InspectNetworkOptions>)
                            .await
                            && matches(&net)
                        {
                            return Ok(name);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    // A network Gantry made for a subnet that no longer exists may hold the
                    // block: removed when nothing uses it, then tried again.
                    if attempt == 0 && self.remove_stale_overlapping(&n.cidr).await? {
                        continue;
                    }
                    return Err(RuntimeError::Engine(format!(
                        "cannot create network {name} for {}: {e}",
                        n.cidr
                    )));
                }
            }
        }
        Err(RuntimeError::Engine(format!(
            "cannot create network {name} for {}",
            n.cidr
        )))
    }

    async fn ensure_imported_image(
        &self,
        image: &str,
        rootfs: Vec<u8>,
        cmd: &[&str],
    ) -> Result<(), RuntimeError> {
        if self.local_image(image).await?.is_some() {
            return Ok(());
        }
        let (repo, tag) = split_image(image);
        let cmd_json =
            serde_json::to_string(cmd).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let opts = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(&repo)
            .tag(&tag)
            .changes(vec![format!("CMD {cmd_json}")])
            .build();
        let mut s = self.docker.create_image(
            Some(opts),
            Some(bollard::body_full(bytes::Bytes::from(rootfs))),
            None,
        );
        while let Some(item) = s.next().await {
            item.map_err(|e| RuntimeError::Engine(format!("importing {image}: {e}")))?;
        }
        tracing::info!(image, "image imported");
        Ok(())
    }

    async fn subnet_networks(&self) -> Result<Vec<(String, usize)>, RuntimeError> {
        let filters = HashMap::from([("label", vec![network_labels::SUBNET_ID.to_owned()])]);
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(engine)?;
        let mut out = Vec::new();
        for n in list {
            let Some(name) = n.name else { continue };
            // The list does not carry attached containers; inspect does.
            let attached = match self
                .docker
                .inspect_network(&name, None::<InspectNetworkOptions>)
                .await
            {
                Ok(i) => i.containers.map_or(0, |c| c.len()),
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(engine(e)),
            };
            out.push((name, attached));
        }
        Ok(out)
    }

    async fn remove_network(&self, name: &str) -> Result<bool, RuntimeError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(true),
            // Docker refuses (403) a network with endpoints: a container joined it since it
            // was seen unused.
            Err(BollardError::DockerResponseServerError {
                status_code: 403,
                message,
            }) if message.contains("active endpoints") => {
                tracing::info!(network = %name, "network left in place: a container joined it");
                Ok(false)
            }
            Err(e) => Err(engine(e)),
        }
    }
}

impl DockerRuntime {
    /// Removes Gantry subnet networks whose block overlaps `cidr` and that no container uses;
    /// whether any was removed.
    async fn remove_stale_overlapping(&self, cidr: &str) -> Result<bool, RuntimeError> {
        let Some(want) = parse_block(cidr) else {
            return Ok(false);
        };
        let filters = HashMap::from([("label", vec![network_labels::SUBNET_ID.to_owned()])]);
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(engine)?;
        let mut removed = false;
        for n in list {
            let Some(name) = n.name else { continue };
            let Ok(net) = self
                .docker
                .inspect_network(&name, None::<InspectNetworkOptions>)
                .await
            else {
                continue;
            };
            let overlaps = net
                .ipam
                .as_ref()
                .and_then(|i| i.config.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .filter_map(|c| c.subnet.as_deref().and_then(parse_block))
                        .any(|b| blocks_overlap(b, want))
                });
            if overlaps && net.containers.as_ref().is_none_or(|c| c.is_empty()) {
                tracing::info!(network = %name, "removing an unused Gantry network that holds the block");
                removed |= self.remove_network(&name).await?;
            }
        }
        Ok(removed)
    }
}

/// An IPv4 block as (base, prefix).
fn parse_block(cidr: &str) -> Option<(u32, u32)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((u32::from(ip), prefix))
}

fn blocks_overlap((a, pa): (u32, u32), (b, pb): (u32, u32)) -> bool {
    let p = pa.min(pb);
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_repo_and_tag() {
        assert_eq!(split_image("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split_image("127.0.0.1:5000/app:v1"),
            ("127.0.0.1:5000/app".into(), "v1".into())
        );
        assert_eq!(
            split_image("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
        assert_eq!(
            split_image("app:v1@sha256:abc"),
            ("app".into(), "sha256:abc".into())
        );
    }

    #[test]
    fn subnet_networks_have_short_bridge_names() {
        assert_eq!(
            subnet_bridge_name("subnet-0123456789abcdef0"),
            "gs-56789abcdef0"
        );
        assert!(subnet_bridge_name("subnet-0123456789abcdef0").len() <= 15);
        assert_eq!(subnet_network_name("subnet-1"), "gantry-subnet-1");
        assert!(blocks_overlap(
            parse_block("10.0.0.0/16").expect("block"),
            parse_block("10.0.3.0/24").expect("block")
        ));
        assert!(!blocks_overlap(
            parse_block("10.0.0.0/24").expect("block"),
            parse_block("10.0.1.0/24").expect("block")
        ));
    }

    #[test]
    fn gateway_is_the_first_subnet_address() {
        assert_eq!(
            first_host("172.17.0.0/16"),
            Some(IpAddr::V4(std::net::Ipv4Addr::new(172, 17, 0, 1)))
        );
        assert_eq!(first_host("fd00::/64"), None);
    }

    #[test]
    fn log_lines_carry_docker_timestamps() {
        let l = parse_log_line(b"2026-01-02T03:04:05.123456789Z hello world\n").expect("line");
        assert_eq!(l.message, "hello world");
        assert_eq!(l.timestamp_nanos % 1_000_000_000, 123_456_789);
        assert!(parse_log_line(b"garbage").is_none());
    }
}
