//! Pure translation of an ECS container definition (overrides applied) into a [`ContainerSpec`]:
//! contract labels, names, ports, limits, health check, volumes, injected environment.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_domain::secrets::NamedValue;
use gantry_domain::task_definition::{ContainerDefinition, NetworkMode, TaskDefinition, Volume};
use serde_json::Value;

use crate::runtime::{ContainerSpec, HealthSpec, Networking, PortSpec, UlimitSpec};

/// Contract labels (ARCHITECTURE.md) and the agent's own.
pub mod labels {
    pub const CLUSTER: &str = "com.amazonaws.ecs.cluster";
    pub const TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
    pub const CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
    pub const FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
    pub const VERSION: &str = "com.amazonaws.ecs.task-definition-version";
    /// The ARN of the container instance whose agent owns the container.
    pub const INSTANCE: &str = "gantry.container-instance";
    /// The per-container id of the task metadata endpoint path.
    pub const METADATA_ID: &str = "gantry.metadata-id";
}

/// Default `stopTimeout` (ECS's default on EC2).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a container definition cannot be turned into a container; the text goes after
/// `CannotCreateContainerError: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// Identity of the task a container belongs to.
#[derive(Debug, Clone)]
pub struct TaskIdentity {
    pub cluster_arn: String,
    pub task_arn: String,
    pub task_id: String,
    pub family: String,
    pub revision: u32,
    pub instance_arn: String,
    pub region: String,
}

/// Host facts and per-container values the translation needs (kept out so it stays pure).
#[derive(Debug, Clone, Default)]
pub struct SpecInputs {
    /// Base URL of the metadata endpoint as bridge containers reach it (`http://172.17.0.1:P`).
    pub metadata_base_bridge: Option<String>,
    /// Base URL as host-network containers reach it (`http://127.0.0.1:P`).
    pub metadata_base_host: Option<String>,
    /// The container's unguessable metadata id.
    pub metadata_id: String,
    /// Random suffix of the Docker name.
    pub name_suffix: String,
    /// Hard limits of this host per ulimit name (`nofile` → 20000); absent = unlimited.
    pub hard_limits: BTreeMap<String, i64>,
    /// awsvpc tasks: the Docker id of the task's pause container, whose network namespace the
    /// container joins.
    pub awsvpc_namespace: Option<String>,
    /// The resolved `secrets`: environment variables set after (and over) `environment`.
    /// Their `Debug` never shows a value.
    pub secret_environment: Vec<NamedValue>,
    /// Fargate tasks: the task's size, applied to each of its containers, and the platform's
    /// hardening.
    pub fargate: Option<FargateLimits>,
    /// Fargate tasks: Docker's `CgroupParent` of the task's cgroup, the cap on all its
    /// containers together ([`crate::cgroup`]).
    pub cgroup_parent: Option<String>,
    /// The stop timeout of containers whose definition sets none.
    pub default_stop_timeout: Duration,
    /// This host's file systems (`efsVolumeConfiguration.fileSystemId` → host directory).
    pub file_systems: BTreeMap<String, std::path::PathBuf>,
    /// Tasks with a task role: the variable that points SDKs at the credentials endpoint
    /// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `..._FULL_URI`) and its value.
    pub task_credentials: Option<(&'static str, String)>,
}

/// What a Fargate task's containers run under: the task's CPU as a CFS quota and its memory as
/// a hard limit (a container's own smaller `memory` wins), `no-new-privileges`, a pids limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FargateLimits {
    /// Task CPU units (1024 = one CPU).
    pub cpu_units: i64,
    /// Task memory in MiB.
    pub memory_mib: i64,
    /// `ephemeralStorage.sizeInGiB` when the task asks for more than the default 20 GiB (ECS
    /// accepts 21 to 200): the size limit of each container's writable layer.
    pub storage_gib: Option<u32>,
}

/// Fargate's ephemeral storage when a task sets none.
pub const DEFAULT_EPHEMERAL_STORAGE_GIB: u32 = 20;

/// The most processes one container of a Fargate task may run.
pub const FARGATE_PIDS_LIMIT: i64 = 4096;

impl FargateLimits {
    /// From the task's `cpu` and `memory` (units and MiB, as the control plane stores them).
    pub fn of(cpu: Option<&str>, memory: Option<&str>) -> Option<Self> {
        Some(Self {
            cpu_units: cpu?.trim().parse().ok()?,
            memory_mib: memory?.trim().parse().ok()?,
            storage_gib: None,
        })
    }

    /// With the task's ephemeral storage (`None` or the default: no size limit is asked of the
    /// storage driver).
    pub fn with_storage(mut self, gib: Option<u32>) -> Self {
        self.storage_gib = gib.filter(|g| *g > DEFAULT_EPHEMERAL_STORAGE_GIB);
        self
    }
}

/// The Docker name ECS gives a container: `ecs-<family>-<revision>-<name>-<suffix>`.
pub fn docker_name(family: &str, revision: u32, name: &str, suffix: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("ecs-{}-{revision}-{}-{suffix}", clean(family), clean(name))
}

/// Name of a task-scoped Docker volume.
pub fn task_volume_name(task_id: &str, volume: &str) -> String {
    let clean: String = volume
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("gantry-{task_id}-{clean}")
}

/// Where a task definition volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A host path bind mount.
    HostPath(String),
    /// A Docker volume of this name; `task_scoped` ones are removed with the task.
    Docker { name: String, task_scoped: bool },
}

/// The host directory of an `efsVolumeConfiguration` on this host: the directory the file
/// system is mapped to (`gantry agent --file-system fs-ID=dir:PATH`) joined with
/// `rootDirectory`, which can never lead outside it.
fn file_system_path(
    name: &str,
    efs: &Value,
    file_systems: &BTreeMap<String, std::path::PathBuf>,
) -> Result<String, SpecError> {
    let id = efs
        .get("fileSystemId")
        .and_then(Value::as_str)
        .unwrap_or("");
    let base = file_systems.get(id).ok_or_else(|| {
        SpecError(format!(
            "volume {name}: file system {id} is not mapped on this host (gantry agent --file-system {id}=dir:PATH)"
        ))
    })?;
    let root = efs
        .get("rootDirectory")
        .and_then(Value::as_str)
        .unwrap_or("/");
    let mut path = base.clone();
    for part in root.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(SpecError(format!(
                "volume {name}: rootDirectory {root} may not contain '..'"
            )));
        }
        path.push(part);
    }
    Ok(path.to_string_lossy().into_owned())
}

/// Resolves one task definition volume; `file_systems` are this host's mapped file systems.
pub fn volume_source(
    task_id: &str,
    v: &Volume,
    file_systems: &BTreeMap<String, std::path::PathBuf>,
) -> Result<VolumeSource, SpecError> {
    let name = v.name.clone().unwrap_or_default();
    if let Some(efs) = v
        .config
        .get("efsVolumeConfiguration")
        .filter(|x| !x.is_null())
    {
        return Ok(VolumeSource::HostPath(file_system_path(
            &name,
            efs,
            file_systems,
        )?));
    }
    if let Some(path) = v
        .config
        .get("host")
        .and_then(|h| h.get("sourcePath"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        return Ok(VolumeSource::HostPath(path.to_owned()));
    }
    if let Some(dv) = v.config.get("dockerVolumeConfiguration") {
        if let Some(driver) = dv.get("driver").and_then(Value::as_str)
            && driver != "local"
        {
            return Err(SpecError(format!(
                "volume {name}: docker volume driver {driver} is not supported"
            )));
        }
        let shared = dv.get("scope").and_then(Value::as_str) == Some("shared");
        return Ok(VolumeSource::Docker {
            name: if shared {
                name.clone()
            } else {
                task_volume_name(task_id, &name)
            },
            task_scoped: !shared,
        });
    }
    for unsupported in [
        "fsxWindowsFileServerVolumeConfiguration",
        "configuredAtLaunch",
    ] {
        if v.config.get(unsupported).is_some_and(|x| !x.is_null()) {
            return Err(SpecError(format!(
                "volume {name}: {unsupported} is not supported"
            )));
        }
    }
    // `host: {}` or nothing: a Docker-managed volume that lives as long as the task.
    Ok(VolumeSource::Docker {
        name: task_volume_name(task_id, &name),
        task_scoped: true,
    })
}

fn networking(td: &TaskDefinition) -> Result<Networking, SpecError> {
    match td.effective_network_mode() {
        NetworkMode::Bridge => Ok(Networking::Bridge),
        NetworkMode::Host => Ok(Networking::Host),
        NetworkMode::None => Ok(Networking::None),
        NetworkMode::Awsvpc => Err(SpecError(
            "network mode awsvpc is not supported by this agent".into(),
        )),
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn secs(v: Option<i64>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|s| u64::try_from(s).ok()).unwrap_or(default))
}

/// Builds the Docker container for `def` (overrides already applied) of task `td`.
/// `sibling_names` maps the task's container names to their Docker names (for `volumesFrom` and
/// `links`).
pub fn container_spec(
    id: &TaskIdentity,
    td: &TaskDefinition,
    def: &ContainerDefinition,
    inputs: &SpecInputs,
    sibling_names: &BTreeMap<String, String>,
) -> Result<ContainerSpec, SpecError> {
    if def.privileged == Some(true) {
        return Err(SpecError(format!(
            "container {}: privileged containers are not allowed on this cluster",
            def.name
        )));
    }
    // Accepted at registration only with `--allow-privileged-tasks`; this agent does not apply
    // them yet, so the task fails to start rather than run without them.
    let given = |v: Option<&Value>| match v {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    };
    let linux = def.other.get("linuxParameters");
    for (setting, set) in [
        (
            "linuxParameters.capabilities.add",
            given(
                linux
                    .and_then(|l| l.get("capabilities"))
                    .and_then(|c| c.get("add")),
            ),
        ),
        (
            "linuxParameters.devices",
            given(linux.and_then(|l| l.get("devices"))),
        ),
        (
            "dockerSecurityOptions",
            given(def.other.get("dockerSecurityOptions")),
        ),
        ("pidMode host", td.pid_mode.as_deref() == Some("host")),
        ("ipcMode host", td.ipc_mode.as_deref() == Some("host")),
    ] {
        if set {
            return Err(SpecError(format!(
                "container {}: {setting} is not supported by this agent",
                def.name
            )));
        }
    }
    let awsvpc = td.effective_network_mode() == NetworkMode::Awsvpc;
    let (network, join_namespace_of) = if awsvpc {
        let pause = inputs.awsvpc_namespace.clone().ok_or_else(|| {
            SpecError(format!(
                "container {}: the task's network namespace (pause container) is missing",
                def.name
            ))
        })?;
        for (param, given) in [
            (
                "hostname",
                def.other.get("hostname").is_some_and(|v| !v.is_null()),
            ),
            (
                "dnsServers",
                def.other.get("dnsServers").is_some_and(|v| !v.is_null()),
            ),
            (
                "dnsSearchDomains",
                def.other
                    .get("dnsSearchDomains")
                    .is_some_and(|v| !v.is_null()),
            ),
            (
                "extraHosts",
                def.other.get("extraHosts").is_some_and(|v| !v.is_null()),
            ),
        ] {
            if given {
                return Err(SpecError(format!(
                    "container {}: {param} is not supported for tasks using the awsvpc network mode",
                    def.name
                )));
            }
        }
        (Networking::None, Some(pause))
    } else {
        (networking(td)?, None)
    };
    let mut labels: BTreeMap<String, String> = def.docker_labels.clone().unwrap_or_default();
    for (k, v) in [
        (labels::CLUSTER, id.cluster_arn.clone()),
        (labels::TASK_ARN, id.task_arn.clone()),
        (labels::CONTAINER_NAME, def.name.clone()),
        (labels::FAMILY, id.family.clone()),
        (labels::VERSION, id.revision.to_string()),
        (labels::INSTANCE, id.instance_arn.clone()),
        (labels::METADATA_ID, inputs.metadata_id.clone()),
    ] {
        labels.insert(k.to_owned(), v);
    }

    let mut env: Vec<String> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for kv in &def.environment {
        if let Some(n) = kv.name.as_deref()
            && !inputs.secret_environment.iter().any(|s| s.name == n)
        {
            names.push(n);
            env.push(format!("{n}={}", kv.value.as_deref().unwrap_or("")));
        }
    }
    for s in &inputs.secret_environment {
        names.push(&s.name);
        env.push(format!("{}={}", s.name, s.value));
    }
    let base = match network {
        Networking::Host => inputs.metadata_base_host.as_deref(),
        _ => inputs.metadata_base_bridge.as_deref(),
    };
    let mut injected: Vec<(&str, String)> = vec![
        ("AWS_EXECUTION_ENV", "AWS_ECS_EC2".to_owned()),
        ("AWS_REGION", id.region.clone()),
        ("AWS_DEFAULT_REGION", id.region.clone()),
    ];
    if let Some(base) = base {
        injected.push((
            "ECS_CONTAINER_METADATA_URI_V4",
            format!("{base}/v4/{}", inputs.metadata_id),
        ));
        injected.push((
            "ECS_CONTAINER_METADATA_URI",
            format!("{base}/v3/{}", inputs.metadata_id),
        ));
        // The agent API (task scale-in protection: `$ECS_AGENT_URI/task-protection/v1/state`).
        injected.push((
            "ECS_AGENT_URI",
            format!("{base}/api/{}", inputs.metadata_id),
        ));
    }
    if let Some((k, v)) = &inputs.task_credentials {
        injected.push((k, v.clone()));
    }
    for (k, v) in injected {
        if !names.contains(&k) {
            env.push(format!("{k}={v}"));
        }
    }

    let mut ports = Vec::new();
    for pm in &def.port_mappings {
        let Some(cp) = pm.container_port else {
            if pm.container_port_range.is_some() {
                return Err(SpecError(format!(
                    "container {}: containerPortRange is not supported",
                    def.name
                )));
            }
            continue;
        };
        let container_port = u16::try_from(cp)
            .map_err(|_| SpecError(format!("container {}: invalid port {cp}", def.name)))?;
        let host_port = match pm.host_port {
            None | Some(0) => None,
            Some(h) => Some(
                u16::try_from(h)
                    .map_err(|_| SpecError(format!("container {}: invalid port {h}", def.name)))?,
            ),
        };
        ports.push(PortSpec {
            container_port,
            host_port: if network == Networking::Host {
                Some(container_port)
            } else {
                host_port
            },
            protocol: pm.protocol.clone().unwrap_or_else(|| "tcp".to_owned()),
        });
    }

    let mut ulimits = Vec::new();
    for u in def.ulimits.iter().flatten() {
        let cap = inputs.hard_limits.get(&u.name).copied();
        let hard = cap.map_or(u.hard_limit, |c| u.hard_limit.min(c));
        ulimits.push(UlimitSpec {
            name: u.name.clone(),
            soft: u.soft_limit.min(hard),
            hard,
        });
    }

    let health = def.health_check.as_ref().map(|h| HealthSpec {
        test: h.command.clone(),
        interval: secs(h.interval, 30),
        timeout: secs(h.timeout, 5),
        retries: h.retries.unwrap_or(3),
        start_period: secs(h.start_period, 0),
    });

    let mut binds = Vec::new();
    for mp in &def.mount_points {
        let (Some(src), Some(dst)) = (mp.source_volume.as_deref(), mp.container_path.as_deref())
        else {
            continue;
        };
        let v = td
            .volumes
            .iter()
            .find(|v| v.name.as_deref() == Some(src))
            .ok_or_else(|| {
                SpecError(format!(
                    "container {}: mount point references unknown volume {src}",
                    def.name
                ))
            })?;
        let source = match volume_source(&id.task_id, v, &inputs.file_systems)? {
            VolumeSource::HostPath(p) => p,
            VolumeSource::Docker { name, .. } => name,
        };
        let ro = if mp.read_only == Some(true) {
            ":ro"
        } else {
            ""
        };
        binds.push(format!("{source}:{dst}{ro}"));
    }
    let mut volumes_from = Vec::new();
    for vf in &def.volumes_from {
        let Some(src) = vf.source_container.as_deref() else {
            continue;
        };
        let docker = sibling_names.get(src).ok_or_else(|| {
            SpecError(format!(
                "container {}: volumesFrom references unknown container {src}",
                def.name
            ))
        })?;
        let ro = if vf.read_only == Some(true) {
            ":ro"
        } else {
            ""
        };
        volumes_from.push(format!("{docker}{ro}"));
    }

    let mut links = Vec::new();
    for l in def.links() {
        if network != Networking::Bridge || join_namespace_of.is_some() {
            return Err(SpecError(format!(
                "container {}: links are only supported in the bridge network mode",
                def.name
            )));
        }
        let docker = sibling_names.get(&l.container).ok_or_else(|| {
            SpecError(format!(
                "container {}: links references unknown container {}",
                def.name, l.container
            ))
        })?;
        links.push(format!("{docker}:{}", l.alias));
    }

    let extra_hosts = def
        .other
        .get("extraHosts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    Some(format!(
                        "{}:{}",
                        h.get("hostname")?.as_str()?,
                        h.get("ipAddress")?.as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();

    Ok(ContainerSpec {
        name: docker_name(&id.family, id.revision, &def.name, &inputs.name_suffix),
        image: def.image.clone(),
        entrypoint: def.entry_point.clone(),
        cmd: def.command.clone(),
        env,
        working_dir: def.working_directory.clone(),
        user: def.user.clone(),
        labels,
        ports,
        cpu_shares: Some(def.cpu.max(2)),
        memory_bytes: match (def.memory, inputs.fargate) {
            (Some(m), Some(f)) => Some(m.min(f.memory_mib) * 1024 * 1024),
            (None, Some(f)) => Some(f.memory_mib * 1024 * 1024),
            (m, None) => m.map(|m| m * 1024 * 1024),
        },
        memory_reservation_bytes: def.memory_reservation.map(|m| m * 1024 * 1024),
        ulimits,
        health,
        binds,
        volumes_from,
        links,
        readonly_rootfs: def.readonly_root_filesystem == Some(true),
        stop_timeout: Some(secs(
            def.stop_timeout,
            inputs.default_stop_timeout.as_secs(),
        )),
        hostname: def
            .other
            .get("hostname")
            .and_then(Value::as_str)
            .filter(|_| network == Networking::Bridge)
            .map(str::to_owned),
        extra_hosts,
        dns: string_list(def.other.get("dnsServers")),
        dns_search: string_list(def.other.get("dnsSearchDomains")),
        endpoint: None,
        network: if join_namespace_of.is_some() {
            None
        } else {
            Some(network)
        },
        join_namespace_of,
        nano_cpus: inputs
            .fargate
            .map(|f| f.cpu_units.saturating_mul(1_000_000_000) / 1024),
        pids_limit: inputs.fargate.map(|_| FARGATE_PIDS_LIMIT),
        storage_size_gib: inputs.fargate.and_then(|f| f.storage_gib),
        cgroup_parent: inputs.cgroup_parent.clone(),
        security_opt: if inputs.fargate.is_some() {
            vec!["no-new-privileges".to_owned()]
        } else {
            Vec::new()
        },
    })
}

/// The pause container of an awsvpc task: on the subnet's network at the task's address, with
/// the task's host name, in the task's cgroup when it has one; nothing else runs in it.
pub fn pause_spec(
    id: &TaskIdentity,
    net: &gantry_domain::network::EniAttachment,
    network_name: &str,
    image: &str,
    name_suffix: &str,
    cgroup_parent: Option<String>,
) -> ContainerSpec {
    let mut labels = BTreeMap::new();
    for (k, v) in [
        (labels::CLUSTER, id.cluster_arn.clone()),
        (labels::TASK_ARN, id.task_arn.clone()),
        (
            labels::CONTAINER_NAME,
            crate::pause::PAUSE_CONTAINER_NAME.to_owned(),
        ),
        (labels::FAMILY, id.family.clone()),
        (labels::VERSION, id.revision.to_string()),
        (labels::INSTANCE, id.instance_arn.clone()),
    ] {
        labels.insert(k.to_owned(), v);
    }
    ContainerSpec {
        name: docker_name(&id.family, id.revision, "internalecspause", name_suffix),
        image: image.to_owned(),
        labels,
        cpu_shares: Some(2),
        hostname: net.private_dns_name.split('.').next().map(str::to_owned),
        endpoint: Some(crate::runtime::Endpoint {
            network: network_name.to_owned(),
            ipv4: net.private_ipv4.clone(),
            mac: net.mac.clone(),
        }),
        cgroup_parent,
        ..ContainerSpec::default()
    }
}

/// Maps the names of `/proc/self/limits` rows to ECS ulimit names.
const LIMIT_ROWS: &[(&str, &str)] = &[
    ("Max cpu time", "cpu"),
    ("Max file size", "fsize"),
    ("Max data size", "data"),
    ("Max stack size", "stack"),
    ("Max core file size", "core"),
    ("Max resident set", "rss"),
    ("Max processes", "nproc"),
    ("Max open files", "nofile"),
    ("Max locked memory", "memlock"),
    ("Max file locks", "locks"),
    ("Max pending signals", "sigpending"),
    ("Max msgqueue size", "msgqueue"),
    ("Max nice priority", "nice"),
    ("Max realtime priority", "rtprio"),
    ("Max realtime timeout", "rttime"),
];

/// Parses `/proc/self/limits` into hard limits per ECS ulimit name (unlimited ones left out).
pub fn parse_hard_limits(text: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        for (row, name) in LIMIT_ROWS {
            if let Some(rest) = line.strip_prefix(row) {
                let mut cols = rest.split_whitespace();
                let _soft = cols.next();
                if let Some(hard) = cols.next().and_then(|h| h.parse::<i64>().ok()) {
                    out.insert((*name).to_owned(), hard);
                }
            }
        }
    }
    out
}

/// This process's hard limits (what Docker can grant a container without CAP_SYS_RESOURCE).
pub fn host_hard_limits() -> BTreeMap<String, i64> {
    std::fs::read_to_string("/proc/self/limits")
        .map(|t| parse_hard_limits(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn td(v: Value) -> TaskDefinition {
        serde_json::from_value(v).expect("td")
    }

    fn ident() -> TaskIdentity {
        TaskIdentity {
            cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/c".into(),
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/c/abc".into(),
            task_id: "abc".into(),
            family: "web".into(),
            revision: 3,
            instance_arn: "arn:aws:ecs:us-east-1:000000000000:container-instance/c/i1".into(),
            region: "us-east-1".into(),
        }
    }

    fn inputs() -> SpecInputs {
        SpecInputs {
            metadata_base_bridge: Some("http://172.17.0.1:5000".into()),
            metadata_base_host: Some("http://127.0.0.1:5000".into()),
            metadata_id: "m1".into(),
            name_suffix: "ff00".into(),
            hard_limits: BTreeMap::from([("nofile".to_owned(), 20000)]),
            awsvpc_namespace: None,
            fargate: None,
            cgroup_parent: None,
            secret_environment: Vec::new(),
            default_stop_timeout: DEFAULT_STOP_TIMEOUT,
            file_systems: BTreeMap::from([("fs-1".to_owned(), "/srv/fs1".into())]),
            task_credentials: None,
        }
    }

    #[test]
    fn file_system_volumes_bind_their_root_directory_and_never_escape() {
        let fs = BTreeMap::from([("fs-1".to_owned(), std::path::PathBuf::from("/srv/fs1"))]);
        let vol = |root: &str| Volume {
            name: Some("d".into()),
            config: serde_json::from_value(json!({"efsVolumeConfiguration":
                {"fileSystemId": "fs-1", "rootDirectory": root}}))
            .expect("config"),
        };
        assert_eq!(
            volume_source("t", &vol("/app/data"), &fs).expect("ok"),
            VolumeSource::HostPath("/srv/fs1/app/data".into())
        );
        assert_eq!(
            volume_source("t", &vol("/"), &fs).expect("ok"),
            VolumeSource::HostPath("/srv/fs1".into())
        );
        assert!(volume_source("t", &vol("/a/../../etc"), &fs).is_err());
        let other = Volume {
            name: Some("d".into()),
            config: serde_json::from_value(
                json!({"efsVolumeConfiguration": {"fileSystemId": "fs-2"}}),
            )
            .expect("config"),
        };
        let err = volume_source("t", &other, &fs).expect_err("unmapped");
        assert!(err.0.contains("fs-2 is not mapped"), "{}", err.0);
    }

    #[test]
    fn fargate_containers_run_under_the_task_size_and_hardened() {
        let t = td(
            json!({"family": "web", "networkMode": "awsvpc", "cpu": "256", "memory": "512",
                   "requiresCompatibilities": ["FARGATE"], "containerDefinitions": [
            {"name": "app", "image": "i"}, {"name": "side", "image": "i", "memory": 128}]}),
        );
        let mut i = inputs();
        i.awsvpc_namespace = Some("pause".into());
        i.fargate = FargateLimits::of(Some("256"), Some("512"));
        i.cgroup_parent = Some("/gantry/task-t1".into());
        let app = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &i,
            &BTreeMap::new(),
        )
        .expect("spec");
        assert_eq!(app.nano_cpus, Some(250_000_000));
        assert_eq!(app.memory_bytes, Some(512 << 20));
        assert_eq!(app.pids_limit, Some(FARGATE_PIDS_LIMIT));
        assert_eq!(app.security_opt, vec!["no-new-privileges".to_owned()]);
        // Its containers share the task's cgroup, which caps them together.
        assert_eq!(app.cgroup_parent.as_deref(), Some("/gantry/task-t1"));
        // A container's own smaller limit stays.
        let side = container_spec(
            &ident(),
            &t,
            &t.container_definitions[1],
            &i,
            &BTreeMap::new(),
        )
        .expect("spec");
        assert_eq!(side.memory_bytes, Some(128 << 20));
        // The default 20 GiB of ephemeral storage asks nothing of the storage driver; more is a
        // size limit on each container.
        assert_eq!(app.storage_size_gib, None);
        for (asked, limit) in [(None, None), (Some(20), None), (Some(30), Some(30))] {
            i.fargate = FargateLimits::of(Some("256"), Some("512")).map(|f| f.with_storage(asked));
            let c = container_spec(
                &ident(),
                &t,
                &t.container_definitions[0],
                &i,
                &BTreeMap::new(),
            )
            .expect("spec");
            assert_eq!(c.storage_size_gib, limit);
        }
        // EC2 tasks are unchanged.
        i.fargate = None;
        let ec2 = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &i,
            &BTreeMap::new(),
        )
        .expect("spec");
        assert_eq!(
            (ec2.nano_cpus, ec2.memory_bytes, ec2.pids_limit),
            (None, None, None)
        );
        assert!(ec2.security_opt.is_empty());
    }

    #[test]
    fn secrets_become_environment_variables_over_plain_ones_and_never_labels() {
        let t = td(json!({"family": "web", "containerDefinitions": [
            {"name": "app", "image": "i", "environment": [
                {"name": "A", "value": "1"}, {"name": "DB", "value": "plain"}],
             "secrets": [{"name": "DB", "valueFrom": "arn:aws:secretsmanager:r:1:secret:db"}]}]}));
        let mut i = inputs();
        i.secret_environment = vec![NamedValue {
            name: "DB".into(),
            value: "s3cr3t".into(),
        }];
        let s = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &i,
            &BTreeMap::new(),
        )
        .expect("spec");
        assert!(s.env.contains(&"A=1".to_owned()));
        assert!(s.env.contains(&"DB=s3cr3t".to_owned()));
        assert!(!s.env.iter().any(|e| e == "DB=plain"));
        assert!(!s.labels.values().any(|v| v.contains("s3cr3t")));
        assert!(!format!("{i:?}").contains("s3cr3t"));
    }

    #[test]
    fn awsvpc_containers_join_the_pause_namespace() {
        let t = td(
            json!({"family": "web", "networkMode": "awsvpc", "containerDefinitions": [
            {"name": "app", "image": "i", "portMappings": [{"containerPort": 80, "hostPort": 80}]}]}),
        );
        let mut i = inputs();
        i.awsvpc_namespace = Some("pause-id".into());
        let s = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &i,
            &BTreeMap::new(),
        )
        .expect("spec");
        assert_eq!(s.join_namespace_of.as_deref(), Some("pause-id"));
        assert_eq!(s.network, None);
        assert_eq!(s.endpoint, None);
        assert!(s.hostname.is_none());
        let with_dns = td(
            json!({"family": "web", "networkMode": "awsvpc", "containerDefinitions": [
            {"name": "app", "image": "i", "dnsServers": ["1.1.1.1"]}]}),
        );
        let e = container_spec(
            &ident(),
            &with_dns,
            &with_dns.container_definitions[0],
            &i,
            &BTreeMap::new(),
        )
        .expect_err("dns refused");
        assert!(e.0.contains("dnsServers"), "{e}");
        let net = gantry_domain::network::EniAttachment {
            attachment_id: "a".into(),
            eni_id: "eni-1".into(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            subnet_cidr: "10.0.1.0/24".into(),
            gateway: "10.0.1.1".into(),
            private_ipv4: "10.0.1.9".into(),
            mac: "02:42:0a:00:01:09".into(),
            private_dns_name: "ip-10-0-1-9.ec2.internal".into(),
            security_groups: vec![],
            assign_public_ip: false,
        };
        let p = pause_spec(
            &ident(),
            &net,
            "gantry-subnet-1",
            "gantry/pause:1",
            "ab",
            None,
        );
        assert_eq!(p.labels[labels::CONTAINER_NAME], "~internal~ecs~pause");
        assert_eq!(p.hostname.as_deref(), Some("ip-10-0-1-9"));
        let ep = p.endpoint.expect("endpoint");
        assert_eq!(
            (ep.network.as_str(), ep.ipv4.as_str()),
            ("gantry-subnet-1", "10.0.1.9")
        );
    }

    #[test]
    fn bridge_container_gets_labels_ports_env_and_limits() {
        let t = td(
            json!({"family": "web", "revision": 3, "containerDefinitions": [
            {"name": "app", "image": "busybox", "cpu": 0, "memory": 64, "memoryReservation": 32,
             "portMappings": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}],
             "environment": [{"name": "A", "value": "1"}, {"name": "AWS_REGION", "value": "x"}],
             "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
             "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5},
             "dockerLabels": {"team": "a", "com.amazonaws.ecs.cluster": "spoof"}}]}),
        );
        let s = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &inputs(),
            &BTreeMap::new(),
        )
        .expect("spec");
        assert_eq!(s.name, "ecs-web-3-app-ff00");
        assert_eq!(s.labels[labels::CLUSTER], ident().cluster_arn);
        assert_eq!(s.labels[labels::VERSION], "3");
        assert_eq!(s.labels["team"], "a");
        assert_eq!(s.ports[0].host_port, None);
        assert_eq!(s.ports[1].host_port, Some(5353));
        assert_eq!(s.ports[1].protocol, "udp");
        assert!(s.env.contains(&"A=1".to_owned()));
        assert!(s.env.contains(&"AWS_REGION=x".to_owned()));
        assert!(!s.env.contains(&"AWS_REGION=us-east-1".to_owned()));
        assert!(
            s.env
                .contains(&"ECS_CONTAINER_METADATA_URI_V4=http://172.17.0.1:5000/v4/m1".to_owned())
        );
        assert!(
            s.env
                .contains(&"ECS_AGENT_URI=http://172.17.0.1:5000/api/m1".to_owned())
        );
        assert_eq!(s.ulimits[0].hard, 20000);
        assert_eq!(s.ulimits[0].soft, 20000);
        assert_eq!(s.cpu_shares, Some(2));
        assert_eq!(s.memory_bytes, Some(64 << 20));
        assert_eq!(s.memory_reservation_bytes, Some(32 << 20));
        let h = s.health.expect("health");
        assert_eq!(
            (h.interval.as_secs(), h.timeout.as_secs(), h.retries),
            (5, 5, 3)
        );
        assert_eq!(s.stop_timeout, Some(DEFAULT_STOP_TIMEOUT));
    }

    #[test]
    fn host_mode_publishes_container_ports_and_uses_loopback_metadata() {
        let t = td(
            json!({"family": "web", "networkMode": "host", "containerDefinitions": [
            {"name": "app", "image": "i", "portMappings": [{"containerPort": 8080}]}]}),
        );
        let s = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &inputs(),
            &BTreeMap::new(),
        )
        .expect("spec");
        assert_eq!(s.network, Some(Networking::Host));
        assert_eq!(s.ports[0].host_port, Some(8080));
        assert!(
            s.env
                .iter()
                .any(|e| e.starts_with("ECS_CONTAINER_METADATA_URI_V4=http://127.0.0.1:5000"))
        );
    }

    #[test]
    fn privileged_and_awsvpc_are_refused() {
        let t = td(json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i", "privileged": true}]}));
        let e = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &inputs(),
            &BTreeMap::new(),
        )
        .expect_err("privileged");
        assert!(e.0.contains("privileged"));
        for (extra, named) in [
            (json!({"pidMode": "host"}), "pidMode host"),
            (json!({"ipcMode": "host"}), "ipcMode host"),
            (
                json!({"containerDefinitions": [{"name": "a", "image": "i",
                    "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}}]}),
                "capabilities.add",
            ),
            (
                json!({"containerDefinitions": [{"name": "a", "image": "i",
                    "linuxParameters": {"devices": [{"hostPath": "/dev/kmsg"}]}}]}),
                "devices",
            ),
            (
                json!({"containerDefinitions": [{"name": "a", "image": "i",
                    "dockerSecurityOptions": ["no-new-privileges"]}]}),
                "dockerSecurityOptions",
            ),
        ] {
            let mut v =
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            let t = td(v);
            let e = container_spec(
                &ident(),
                &t,
                &t.container_definitions[0],
                &inputs(),
                &BTreeMap::new(),
            )
            .expect_err(named);
            assert!(
                e.0.contains(named) && e.0.contains("not supported"),
                "{}",
                e.0
            );
        }
        let t = td(
            json!({"family": "f", "networkMode": "awsvpc", "containerDefinitions": [
            {"name": "a", "image": "i"}]}),
        );
        assert!(
            container_spec(
                &ident(),
                &t,
                &t.container_definitions[0],
                &inputs(),
                &BTreeMap::new()
            )
            .is_err()
        );
    }

    #[test]
    fn volumes_become_binds() {
        let t = td(json!({"family": "f",
            "volumes": [{"name": "h", "host": {"sourcePath": "/srv/data"}},
                        {"name": "d", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true}},
                        {"name": "t", "host": {}}],
            "containerDefinitions": [{"name": "a", "image": "i", "mountPoints": [
                {"sourceVolume": "h", "containerPath": "/data", "readOnly": true},
                {"sourceVolume": "d", "containerPath": "/d"},
                {"sourceVolume": "t", "containerPath": "/t"}],
                "volumesFrom": [{"sourceContainer": "b", "readOnly": true}]},
                {"name": "b", "image": "i"}]}));
        let siblings = BTreeMap::from([("b".to_owned(), "ecs-f-0-b-x".to_owned())]);
        let s = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &inputs(),
            &siblings,
        )
        .expect("spec");
        assert_eq!(
            s.binds,
            vec!["/srv/data:/data:ro", "d:/d", "gantry-abc-t:/t"]
        );
        assert_eq!(s.volumes_from, vec!["ecs-f-0-b-x:ro"]);
    }

    #[test]
    fn links_become_docker_links_to_the_siblings_docker_names() {
        let t = td(json!({"family": "f", "containerDefinitions": [
            {"name": "proxy", "image": "i", "links": ["app", "db:database"]},
            {"name": "app", "image": "i"}, {"name": "db", "image": "i"}]}));
        let siblings = BTreeMap::from([
            ("app".to_owned(), "ecs-f-0-app-x".to_owned()),
            ("db".to_owned(), "ecs-f-0-db-x".to_owned()),
        ]);
        let s = container_spec(
            &ident(),
            &t,
            &t.container_definitions[0],
            &inputs(),
            &siblings,
        )
        .expect("spec");
        assert_eq!(s.links, vec!["ecs-f-0-app-x:app", "ecs-f-0-db-x:database"]);
        let host = td(
            json!({"family": "f", "networkMode": "host", "containerDefinitions": [
            {"name": "proxy", "image": "i", "links": ["app"]}, {"name": "app", "image": "i"}]}),
        );
        let e = container_spec(
            &ident(),
            &host,
            &host.container_definitions[0],
            &inputs(),
            &siblings,
        )
        .unwrap_err();
        assert!(e.0.contains("bridge network mode"), "{e}");
    }

    #[test]
    fn proc_limits_parse() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max open files            1024                 20000                files\n\
                    Max processes             unlimited            unlimited            processes\n";
        let m = parse_hard_limits(text);
        assert_eq!(m.get("nofile"), Some(&20000));
        assert!(!m.contains_key("nproc"));
    }
}
