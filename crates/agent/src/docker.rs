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
    ContainerCreateBody, HealthConfig, HostConfig, HostConfigLogConfig, PortBinding,
    ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptions, StatsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use gantry_domain::task::NetworkBinding;

use crate::runtime::{
    ContainerRuntime, ContainerSpec, ContainerState, HostInfo, ListedContainer, LocalImage,
    LogLine, Networking, RegistryAuth, RuntimeError, RuntimeEvent,
};

/// The Docker Engine, reached over `DOCKER_HOST`-style addresses.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
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
        Ok(Self { docker })
    }

    fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = Vec::new();
        for p in &spec.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            exposed.push(key.clone());
            if spec.network == Some(Networking::Bridge) || spec.network.is_none() {
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
        let host_config = HostConfig {
            network_mode: spec.network.map(|n| n.as_str().to_owned()),
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
