//! Task definitions: families, revisions, container definitions, and the checks ECS makes at
//! registration (cpu/memory units, network modes, the Fargate size table, container rules).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EpochMillis;
use crate::tags::Tag;
use crate::validation::{ValidationError, is_ecs_name};

/// Most containers one task definition may hold.
pub const MAX_CONTAINERS: usize = 10;

/// Registration status of one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskDefinitionStatus {
    #[default]
    Active,
    Inactive,
    DeleteInProgress,
}

impl TaskDefinitionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::DeleteInProgress => "DELETE_IN_PROGRESS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "INACTIVE" => Some(Self::Inactive),
            "DELETE_IN_PROGRESS" => Some(Self::DeleteInProgress),
            _ => None,
        }
    }
}

/// Docker networking mode of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Bridge,
    Host,
    Awsvpc,
    None,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Host => "host",
            Self::Awsvpc => "awsvpc",
            Self::None => "none",
        }
    }
}

/// `name`/`value` pairs (environment variables, statistics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValuePair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port_range: Option<String>,
}

/// A secret injected as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub value_from: String,
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Volumes taken from another container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Start-order dependency on another container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDependency {
    pub container_name: String,
    pub condition: String,
}

/// Container health check (Docker HEALTHCHECK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
}

/// Log driver configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    pub log_driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_options: Option<Vec<Secret>>,
}

/// A resource limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ulimit {
    pub name: String,
    pub soft_limit: i64,
    pub hard_limit: i64,
}

/// Members of `ContainerDefinition` in the ECS model that are kept as given, without checks.
const CONTAINER_PASSTHROUGH: &[&str] = &[
    "repositoryCredentials",
    "links",
    "restartPolicy",
    "environmentFiles",
    "linuxParameters",
    "versionConsistency",
    "hostname",
    "disableNetworking",
    "dnsServers",
    "dnsSearchDomains",
    "extraHosts",
    "dockerSecurityOptions",
    "interactive",
    "pseudoTerminal",
    "systemControls",
    "resourceRequirements",
    "firelensConfiguration",
    "credentialSpecs",
];

/// One container of a task definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub cpu: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: Vec<KeyValuePair>,
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    #[serde(default)]
    pub volumes_from: Vec<VolumeFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<Secret>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<ContainerDependency>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<Vec<Ulimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// The model's other members, kept as given (see `CONTAINER_PASSTHROUGH`).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ContainerDefinition {
    /// Whether the task stops when this container stops (default true).
    pub fn is_essential(&self) -> bool {
        self.essential.unwrap_or(true)
    }

    /// The container's `links` (`name` or `name:alias`, the alias defaulting to the name).
    pub fn links(&self) -> Vec<Link> {
        self.other
            .get("links")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|l| match l.split_once(':') {
                        Some((c, alias)) => Link {
                            container: c.to_owned(),
                            alias: alias.to_owned(),
                        },
                        None => Link {
                            container: l.to_owned(),
                            alias: l.to_owned(),
                        },
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One entry of a container's `links`: another container of the task, reachable under `alias`
/// (bridge network mode only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub container: String,
    pub alias: String,
}

/// The containers of `td` in an order in which each comes after the containers it links to and
/// takes `volumesFrom` of (what Docker needs to exist when it creates a container); `None` when
/// those references form a cycle. Unknown names are left to the callers' checks.
pub fn creation_order(td: &TaskDefinition) -> Option<Vec<usize>> {
    let defs = &td.container_definitions;
    let needs = |i: usize| -> Vec<usize> {
        let c = &defs[i];
        c.links()
            .into_iter()
            .map(|l| l.container)
            .chain(
                c.volumes_from
                    .iter()
                    .filter_map(|v| v.source_container.clone()),
            )
            .filter_map(|n| defs.iter().position(|d| d.name == n))
            .filter(|&j| j != i)
            .collect()
    };
    let mut order = Vec::with_capacity(defs.len());
    let mut placed = vec![false; defs.len()];
    while order.len() < defs.len() {
        let next = (0..defs.len()).find(|&i| !placed[i] && needs(i).iter().all(|&j| placed[j]))?;
        placed[next] = true;
        order.push(next);
    }
    Some(order)
}

/// A task-level volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `host`, `dockerVolumeConfiguration`, `efsVolumeConfiguration`, ... kept as given.
    #[serde(flatten)]
    pub config: Map<String, Value>,
}

/// A placement constraint carried by a task definition (`memberOf` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementConstraint {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

/// An attribute a container instance needs to run this task definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequiredAttribute {
    pub name: String,
}

/// Members of `RegisterTaskDefinition` kept as given, without checks.
const TASK_PASSTHROUGH: &[&str] = &[
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
];

/// A task definition revision, as registered and as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub revision: u32,
    #[serde(default)]
    pub status: TaskDefinitionStatus,
    #[serde(default)]
    pub container_definitions: Vec<ContainerDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub placement_constraints: Vec<PlacementConstraint>,
    #[serde(default)]
    pub requires_compatibilities: Vec<String>,
    #[serde(default)]
    pub compatibilities: Vec<String>,
    #[serde(default)]
    pub requires_attributes: Vec<RequiredAttribute>,
    /// CPU units as a number string (`"1 vCPU"` is stored as `"1024"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// MiB as a number string (`"2GB"` is stored as `"2048"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    #[serde(default)]
    pub registered_at: EpochMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<EpochMillis>,
    #[serde(default)]
    pub registered_by: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The model's other members, kept as given (see `TASK_PASSTHROUGH`).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl TaskDefinition {
    /// Task-level CPU units, when set.
    pub fn cpu_units(&self) -> Option<u32> {
        self.cpu.as_deref().and_then(|c| c.parse().ok())
    }

    /// Task-level memory in MiB, when set.
    pub fn memory_mib(&self) -> Option<u32> {
        self.memory.as_deref().and_then(|m| m.parse().ok())
    }

    /// The network mode, `bridge` when not set (EC2 default).
    pub fn effective_network_mode(&self) -> NetworkMode {
        self.network_mode.unwrap_or(NetworkMode::Bridge)
    }
}

/// Parses task-level CPU: `"1024"`, `"1 vCPU"`, `"0.25 vcpu"` → CPU units.
pub fn parse_cpu(s: &str) -> Result<u32, ValidationError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let bad = || ValidationError::client(format!("Invalid 'cpu' setting for task: '{s}'."));
    if let Some(num) = lower.strip_suffix("vcpu") {
        let v: f64 = num.trim().parse().map_err(|_| bad())?;
        if !v.is_finite() || v <= 0.0 || v > 192.0 {
            return Err(bad());
        }
        Ok((v * 1024.0).round() as u32)
    } else {
        let v: u32 = t.parse().map_err(|_| bad())?;
        if v == 0 {
            return Err(bad());
        }
        Ok(v)
    }
}

/// Parses task-level memory: `"512"`, `"2GB"`, `"0.5 GB"` → MiB.
pub fn parse_memory(s: &str) -> Result<u32, ValidationError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let bad = || ValidationError::client(format!("Invalid 'memory' setting for task: '{s}'."));
    if let Some(num) = lower.strip_suffix("gb") {
        let v: f64 = num.trim().parse().map_err(|_| bad())?;
        if !v.is_finite() || v <= 0.0 || v > 1024.0 {
            return Err(bad());
        }
        Ok((v * 1024.0).round() as u32)
    } else {
        let num = lower
            .strip_suffix("mib")
            .or_else(|| lower.strip_suffix("mb"))
            .unwrap_or(&lower);
        let v: u32 = num.trim().parse().map_err(|_| bad())?;
        if v == 0 {
            return Err(bad());
        }
        Ok(v)
    }
}

/// Whether `(cpu, memory)` is a Fargate task size.
pub fn fargate_size_is_valid(cpu: u32, memory: u32) -> bool {
    let (lo, hi, step) = match cpu {
        256 => return matches!(memory, 512 | 1024 | 2048),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return false,
    };
    memory >= lo && memory <= hi && (memory - lo).is_multiple_of(step)
}

/// What Fargate refuses in a task definition besides sizes and the network mode (ECS's
/// "Tasks using the Fargate launch type do not support ..." errors).
fn check_fargate_rules(td: &TaskDefinition) -> Result<(), ValidationError> {
    let refuse = |what: &str| {
        Err(ValidationError::client(format!(
            "Tasks using the Fargate launch type do not support {what}."
        )))
    };
    if td.ipc_mode.is_some() {
        return refuse("ipcMode");
    }
    if td.pid_mode.as_deref() == Some("host") {
        return refuse("pidMode 'host'. The supported value for pidMode is 'task'");
    }
    for v in &td.volumes {
        if v.config
            .get("host")
            .and_then(|h| h.get("sourcePath"))
            .is_some_and(|p| !p.is_null())
        {
            return refuse("host volumes with a sourcePath");
        }
    }
    for c in &td.container_definitions {
        if c.privileged == Some(true) {
            return refuse("privileged containers");
        }
        if c.other
            .get("links")
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
        {
            return refuse("links");
        }
    }
    Ok(())
}

/// The task's `ephemeralStorage.sizeInGiB` (21 to 200), as ECS checks it.
pub fn ephemeral_storage_gib(v: &Value) -> Result<u32, ValidationError> {
    let size = v.get("sizeInGiB").and_then(Value::as_i64);
    match size {
        Some(s @ 21..=200) => Ok(s as u32),
        _ => Err(ValidationError::client(format!(
            "The ephemeral storage size must be between 21 and 200 GiB; got {}.",
            v.get("sizeInGiB")
                .map(|x| x.to_string())
                .unwrap_or_else(|| "nothing".into())
        ))),
    }
}

/// Whether the task definition can run on Fargate (what `compatibilities` reports).
pub fn fargate_compatible(td: &TaskDefinition) -> bool {
    td.effective_network_mode() == NetworkMode::Awsvpc
        && matches!((td.cpu_units(), td.memory_mib()), (Some(c), Some(m)) if fargate_size_is_valid(c, m))
        && check_fargate_rules(td).is_ok()
}

fn keep_only(map: &mut Map<String, Value>, allowed: &[&str]) {
    map.retain(|k, _| allowed.contains(&k.as_str()));
}

fn container_err(name: &str, what: impl std::fmt::Display) -> ValidationError {
    ValidationError::client(format!("Invalid setting for container '{name}'. {what}"))
}

/// Checks a registration request and fills the defaults ECS fills: task-level cpu/memory in
/// units/MiB, `essential`, port-mapping protocol and host ports, `compatibilities` and
/// `requiresAttributes`. Revision, status and timestamps are set by the caller.
pub fn normalize_for_registration(td: &mut TaskDefinition) -> Result<(), ValidationError> {
    if !is_ecs_name(&td.family, 255) {
        return Err(ValidationError::client(format!(
            "Family '{}' is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.",
            td.family
        )));
    }
    keep_only(&mut td.other, TASK_PASSTHROUGH);
    for v in &td.volumes {
        if let Some(efs) = v.config.get("efsVolumeConfiguration") {
            check_efs_volume(v.name.as_deref().unwrap_or(""), efs)?;
        }
    }
    if td.container_definitions.is_empty() {
        return Err(ValidationError::client(
            "Container list cannot be empty.".to_owned(),
        ));
    }
    if td.container_definitions.len() > MAX_CONTAINERS {
        return Err(ValidationError::client(format!(
            "Too many containers: {} (the limit is {MAX_CONTAINERS}).",
            td.container_definitions.len()
        )));
    }
    // The execution role is the principal that reads the secrets at task start.
    let has_role = td
        .execution_role_arn
        .as_deref()
        .is_some_and(|r| !r.is_empty());
    if !has_role
        && td
            .container_definitions
            .iter()
            .any(|c| c.secrets.as_ref().is_some_and(|s| !s.is_empty()))
    {
        return Err(ValidationError::client(
            "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'.",
        ));
    }
    for c in &td.requires_compatibilities {
        if !matches!(
            c.as_str(),
            "EC2" | "FARGATE" | "EXTERNAL" | "MANAGED_INSTANCES"
        ) {
            return Err(ValidationError::client(format!(
                "Invalid requiresCompatibilities value '{c}'. Valid values: EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES."
            )));
        }
    }
    let cpu = td.cpu.as_deref().map(parse_cpu).transpose()?;
    let memory = td.memory.as_deref().map(parse_memory).transpose()?;
    td.cpu = cpu.map(|c| c.to_string());
    td.memory = memory.map(|m| m.to_string());
    if let Some(pid) = &td.pid_mode
        && !matches!(pid.as_str(), "host" | "task")
    {
        return Err(ValidationError::client(format!("Invalid pidMode '{pid}'.")));
    }
    if let Some(ipc) = &td.ipc_mode
        && !matches!(ipc.as_str(), "host" | "task" | "none")
    {
        return Err(ValidationError::client(format!("Invalid ipcMode '{ipc}'.")));
    }

    let fargate = td.requires_compatibilities.iter().any(|c| c == "FARGATE");
    let mode = td.effective_network_mode();
    if fargate {
        if mode != NetworkMode::Awsvpc {
            return Err(ValidationError::client(
                "Fargate only supports network mode 'awsvpc'.".to_owned(),
            ));
        }
        let Some(cpu) = cpu else {
            return Err(ValidationError::client(
                "Fargate requires that 'cpu' be defined at the task level.".to_owned(),
            ));
        };
        let Some(memory) = memory else {
            return Err(ValidationError::client(
                "Fargate requires that 'memory' be defined at the task level.".to_owned(),
            ));
        };
        if !fargate_size_is_valid(cpu, memory) {
            return Err(ValidationError::client(format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
            )));
        }
        check_fargate_rules(td)?;
    }
    if let Some(es) = td.other.get("ephemeralStorage") {
        ephemeral_storage_gib(es)?;
    }

    let volume_names: Vec<&str> = td
        .volumes
        .iter()
        .filter_map(|v| v.name.as_deref())
        .collect();
    for (i, v) in td.volumes.iter().enumerate() {
        if v.name.as_deref().is_none_or(|n| n.is_empty()) {
            return Err(ValidationError::client(format!(
                "Volume at index {i} must have a name."
            )));
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for c in &td.container_definitions {
        if c.name.is_empty() {
            return Err(ValidationError::client(
                "Container.name should not be null or empty.".to_owned(),
            ));
        }
        if !is_ecs_name(&c.name, 255) {
            return Err(ValidationError::client(format!(
                "Container name '{}' is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.",
                c.name
            )));
        }
        if seen.contains(&c.name.as_str()) {
            return Err(ValidationError::client(format!(
                "Duplicate container name '{}' in task definition.",
                c.name
            )));
        }
        seen.push(&c.name);
    }
    let names = seen.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut total_container_memory: u64 = 0;
    for c in &mut td.container_definitions {
        keep_only(&mut c.other, CONTAINER_PASSTHROUGH);
        let name = c.name.clone();
        if c.image.trim().is_empty() {
            return Err(ValidationError::client(format!(
                "Container.image should not be null or empty. Container '{name}'."
            )));
        }
        if c.cpu < 0 {
            return Err(container_err(&name, "'cpu' must not be negative."));
        }
        if let Some(m) = c.memory
            && m < 6
        {
            return Err(container_err(
                &name,
                format!("The memory of {m} MiB is below the minimum of 6 MiB."),
            ));
        }
        if let Some(r) = c.memory_reservation {
            if r < 6 {
                return Err(container_err(
                    &name,
                    format!("The memoryReservation of {r} MiB is below the minimum of 6 MiB."),
                ));
            }
            if let Some(m) = c.memory
                && r > m
            {
                return Err(container_err(
                    &name,
                    "'memoryReservation' must be less than or equal to 'memory'.",
                ));
            }
        }
        if c.memory.is_none() && c.memory_reservation.is_none() && memory.is_none() {
            return Err(container_err(
                &name,
                "At least one of 'memory' or 'memoryReservation' must be specified.",
            ));
        }
        total_container_memory += c.memory.or(c.memory_reservation).unwrap_or(0).max(0) as u64;
        for pm in &mut c.port_mappings {
            let proto = pm.protocol.get_or_insert_with(|| "tcp".to_owned());
            if proto != "tcp" && proto != "udp" {
                return Err(container_err(
                    &name,
                    format!("Invalid protocol '{proto}': must be tcp or udp."),
                ));
            }
            if pm.container_port.is_none() && pm.container_port_range.is_none() {
                return Err(container_err(
                    &name,
                    "Port mappings must have a containerPort or a containerPortRange.",
                ));
            }
            for p in [pm.container_port, pm.host_port].into_iter().flatten() {
                if !(0..=65535).contains(&p) {
                    return Err(container_err(
                        &name,
                        format!("Invalid port {p}: ports must be between 0 and 65535."),
                    ));
                }
            }
            if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) {
                match (pm.host_port, pm.container_port) {
                    (None, Some(cp)) => pm.host_port = Some(cp),
                    (Some(hp), Some(cp)) if hp != cp => {
                        return Err(ValidationError::client(format!(
                            "When networkMode={} is specified, hostPort must be left blank or it must be set to be the same as the containerPort. Container '{name}' has hostPort {hp} and containerPort {cp}.",
                            mode.as_str()
                        )));
                    }
                    _ => {}
                }
            }
        }
        if mode == NetworkMode::None && !c.port_mappings.is_empty() {
            return Err(container_err(
                &name,
                "Port mappings are not allowed with network mode 'none'.",
            ));
        }
        for mp in &c.mount_points {
            if let Some(sv) = &mp.source_volume
                && !volume_names.contains(&sv.as_str())
            {
                return Err(ValidationError::client(format!(
                    "Invalid 'mountPoints' for container '{name}': unknown volume '{sv}'."
                )));
            }
        }
        if let Some(deps) = &c.depends_on {
            for d in deps {
                if !names.contains(&d.container_name) || d.container_name == name {
                    return Err(ValidationError::client(format!(
                        "Invalid 'dependsOn' for container '{name}': unknown container '{}'.",
                        d.container_name
                    )));
                }
                match d.condition.as_str() {
                    "START" | "HEALTHY" | "COMPLETE" | "SUCCESS" => {}
                    other => {
                        return Err(ValidationError::client(format!(
                            "Invalid 'dependsOn' condition '{other}' for container '{name}'. Valid values: START, COMPLETE, SUCCESS, HEALTHY."
                        )));
                    }
                }
            }
        }
        if let Some(links) = c.other.get("links").filter(|l| !l.is_null()) {
            check_links(&name, links, &names, mode)?;
        }
        if let Some(hc) = &mut c.health_check {
            if hc.command.is_empty() {
                return Err(container_err(
                    &name,
                    "healthCheck.command must not be empty.",
                ));
            }
            let checks = [
                ("interval", hc.interval.get_or_insert(30), 5, 300),
                ("timeout", hc.timeout.get_or_insert(5), 2, 120),
                ("retries", hc.retries.get_or_insert(3), 1, 10),
            ];
            for (field, v, lo, hi) in checks {
                if *v < lo || *v > hi {
                    return Err(container_err(
                        &name,
                        format!("healthCheck.{field} {v} is out of range [{lo}, {hi}]."),
                    ));
                }
            }
            if let Some(sp) = hc.start_period
                && !(0..=300).contains(&sp)
            {
                return Err(container_err(
                    &name,
                    format!("healthCheck.startPeriod {sp} is out of range [0, 300]."),
                ));
            }
        }
        if let Some(u) = &c.ulimits {
            for l in u {
                if l.soft_limit > l.hard_limit {
                    return Err(container_err(
                        &name,
                        format!("ulimit '{}' has a softLimit above its hardLimit.", l.name),
                    ));
                }
            }
        }
    }
    // Dependency conditions COMPLETE/SUCCESS are refused when the *dependency* is essential.
    for c in &td.container_definitions {
        for d in c.depends_on.iter().flatten() {
            if matches!(d.condition.as_str(), "COMPLETE" | "SUCCESS") {
                let dep_essential = td
                    .container_definitions
                    .iter()
                    .find(|x| x.name == d.container_name)
                    .is_some_and(|x| x.is_essential());
                if dep_essential {
                    return Err(ValidationError::client(format!(
                        "Invalid 'dependsOn' for container '{}': condition {} on essential container '{}' is not allowed.",
                        c.name, d.condition, d.container_name
                    )));
                }
            }
        }
    }
    if creation_order(td).is_none() {
        return Err(ValidationError::client(
            "Invalid 'links' or 'volumesFrom': the containers' references form a cycle.".to_owned(),
        ));
    }
    if !td.container_definitions.iter().any(|c| c.is_essential()) {
        return Err(ValidationError::client(
            "Task definition must have at least one essential container.".to_owned(),
        ));
    }
    for c in &mut td.container_definitions {
        c.essential.get_or_insert(true);
    }
    if let Some(m) = memory
        && total_container_memory > u64::from(m)
    {
        return Err(ValidationError::client(format!(
            "The sum of the containers' memory ({total_container_memory} MiB) exceeds the task memory ({m} MiB)."
        )));
    }
    for pc in &td.placement_constraints {
        if pc.kind != "memberOf" {
            return Err(ValidationError::client(format!(
                "Invalid placement constraint type '{}' for a task definition: only memberOf is allowed.",
                pc.kind
            )));
        }
        if pc
            .expression
            .as_deref()
            .is_none_or(|e| e.is_empty() || e.len() > 2000)
        {
            return Err(ValidationError::client(
                "A memberOf placement constraint needs an expression of 1 to 2000 characters."
                    .to_owned(),
            ));
        }
    }

    td.compatibilities = compatibilities(td);
    td.requires_attributes = required_attributes(td);
    Ok(())
}

/// ECS's rules for a container's `links`: bridge network mode only, each `name[:alias]` naming
/// another container of the task, names and aliases of up to 255 letters, numbers, hyphens and
/// underscores.
fn check_links(
    name: &str,
    links: &Value,
    names: &[String],
    mode: NetworkMode,
) -> Result<(), ValidationError> {
    let Some(list) = links.as_array() else {
        return Err(container_err(name, "'links' must be a list of strings."));
    };
    if list.is_empty() {
        return Ok(());
    }
    if mode != NetworkMode::Bridge {
        return Err(ValidationError::client(format!(
            "Links are not supported when networkMode={}.",
            mode.as_str()
        )));
    }
    for l in list {
        let Some(text) = l.as_str() else {
            return Err(container_err(name, "'links' must be a list of strings."));
        };
        let (target, alias) = text.split_once(':').unwrap_or((text, text));
        if !is_ecs_name(target, 255) || !is_ecs_name(alias, 255) {
            return Err(ValidationError::client(format!(
                "Invalid 'links' for container '{name}': '{text}' is not name or name:alias (up to 255 letters, numbers, hyphens, and underscores)."
            )));
        }
        if target == name || !names.iter().any(|n| n == target) {
            return Err(ValidationError::client(format!(
                "Invalid 'links' for container '{name}': unknown container '{target}'."
            )));
        }
    }
    Ok(())
}

fn compatibilities(td: &TaskDefinition) -> Vec<String> {
    let mut out = vec!["EC2".to_owned()];
    if fargate_compatible(td) {
        out.push("FARGATE".to_owned());
    }
    for c in &td.requires_compatibilities {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// ECS's rules for an `efsVolumeConfiguration`: a file system id, `transitEncryption` ENABLED or
/// DISABLED (ENABLED when IAM authorization is), a `rootDirectory` of at most 255 characters
/// that is `/` (or absent) with an access point.
fn check_efs_volume(name: &str, efs: &Value) -> Result<(), ValidationError> {
    let invalid = |m: String| Err(ValidationError::client(m));
    if efs["fileSystemId"].as_str().is_none_or(str::is_empty) {
        return invalid(format!(
            "Volume '{name}': efsVolumeConfiguration.fileSystemId is required."
        ));
    }
    let transit = efs["transitEncryption"].as_str();
    if let Some(t) = transit
        && t != "ENABLED"
        && t != "DISABLED"
    {
        return invalid(format!(
            "Volume '{name}': transitEncryption must be ENABLED or DISABLED, got {t}."
        ));
    }
    if let Some(port) = efs["transitEncryptionPort"].as_i64()
        && !(0..=65535).contains(&port)
    {
        return invalid(format!(
            "Volume '{name}': transitEncryptionPort must be between 0 and 65535."
        ));
    }
    let auth = &efs["authorizationConfig"];
    if auth["iam"] == "ENABLED" && transit != Some("ENABLED") {
        return invalid(format!(
            "Volume '{name}': transit encryption must be enabled when IAM authorization is enabled."
        ));
    }
    let root = efs["rootDirectory"].as_str().unwrap_or("");
    if root.len() > 255 {
        return invalid(format!(
            "Volume '{name}': rootDirectory may be at most 255 characters."
        ));
    }
    if auth["accessPointId"]
        .as_str()
        .is_some_and(|a| !a.is_empty())
        && !root.is_empty()
        && root != "/"
    {
        return invalid(format!(
            "Volume '{name}': the root directory must be omitted or set to '/' when an access point is used."
        ));
    }
    if root.split('/').any(|p| p == "..") {
        return invalid(format!(
            "Volume '{name}': rootDirectory may not contain '..'."
        ));
    }
    Ok(())
}

/// The capability attributes an instance must carry to run `td`, named as ECS names them.
pub fn required_attributes(td: &TaskDefinition) -> Vec<RequiredAttribute> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: &str| {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_owned());
        }
    };
    if td.network_mode.is_some() {
        add("com.amazonaws.ecs.capability.docker-remote-api.1.18");
    }
    if td.effective_network_mode() == NetworkMode::Awsvpc {
        add("ecs.capability.task-eni");
    }
    if td.task_role_arn.as_deref().is_some_and(|r| !r.is_empty()) {
        add("com.amazonaws.ecs.capability.task-iam-role");
    }
    // Shared file systems, named as ECS names them.
    for v in &td.volumes {
        if let Some(efs) = v.config.get("efsVolumeConfiguration") {
            add("ecs.capability.efs");
            if efs["authorizationConfig"]["iam"] == "ENABLED" {
                add("ecs.capability.efsAuth");
            }
        }
        if v.config
            .contains_key("fsxWindowsFileServerVolumeConfiguration")
        {
            add("ecs.capability.fsxWindowsFileServer");
        }
    }
    for c in &td.container_definitions {
        if let Some(lc) = &c.log_configuration {
            add(&format!(
                "com.amazonaws.ecs.capability.logging-driver.{}",
                lc.log_driver
            ));
            if lc.log_driver == "awslogs"
                && td
                    .execution_role_arn
                    .as_deref()
                    .is_some_and(|r| !r.is_empty())
            {
                add("ecs.capability.execution-role-awslogs");
            }
        }
        if c.health_check.is_some() {
            add("ecs.capability.container-health-check");
        }
        if c.depends_on.as_ref().is_some_and(|d| !d.is_empty()) {
            add("ecs.capability.container-ordering");
        }
        let from_asm =
            |v: &str| v.starts_with("arn:") && v.split(':').nth(2) == Some("secretsmanager");
        for s in c.secrets.iter().flatten() {
            add(if from_asm(&s.value_from) {
                "ecs.capability.secrets.asm.environment-variables"
            } else {
                "ecs.capability.secrets.ssm.environment-variables"
            });
        }
        let log_secrets = c
            .log_configuration
            .as_ref()
            .and_then(|l| l.secret_options.as_ref());
        for s in log_secrets.into_iter().flatten() {
            add(if from_asm(&s.value_from) {
                "ecs.capability.secrets.asm.bootstrap.log-driver"
            } else {
                "ecs.capability.secrets.ssm.bootstrap.log-driver"
            });
        }
        if c.other.contains_key("repositoryCredentials") {
            add("com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager");
        }
        if c.docker_labels.is_some() {
            add("com.amazonaws.ecs.capability.docker-remote-api.1.18");
        }
        if c.ulimits.is_some() {
            add("com.amazonaws.ecs.capability.docker-remote-api.1.18");
        }
    }
    names
        .into_iter()
        .map(|name| RequiredAttribute { name })
        .collect()
}

/// A task definition reference as users give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDefinitionRef {
    /// `family`: the latest ACTIVE revision.
    Family(String),
    /// `family:revision` or a full ARN.
    Revision(String, u32),
}

/// Parses `family`, `family:revision` or `arn:aws:ecs:...:task-definition/family:revision`.
pub fn parse_task_definition_ref(s: &str) -> Result<TaskDefinitionRef, ValidationError> {
    let bad = || ValidationError::client(format!("Invalid revision number. Number: {s}"));
    let body = if s.starts_with("arn:") {
        let arn = crate::Arn::parse(s)
            .map_err(|_| ValidationError::client(format!("Invalid task definition: {s}")))?;
        match arn.resource_parts() {
            ("task-definition", rest) if !rest.is_empty() => rest.to_owned(),
            _ => {
                return Err(ValidationError::client(format!(
                    "Invalid task definition: {s}"
                )));
            }
        }
    } else {
        s.to_owned()
    };
    match body.split_once(':') {
        None if !body.is_empty() => Ok(TaskDefinitionRef::Family(body)),
        None => Err(ValidationError::client(
            "Task definition must not be empty.".to_owned(),
        )),
        Some((family, rev)) => {
            let n: u32 = rev.parse().map_err(|_| bad())?;
            if n == 0 || family.is_empty() {
                return Err(bad());
            }
            Ok(TaskDefinitionRef::Revision(family.to_owned(), n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn td(v: Value) -> TaskDefinition {
        serde_json::from_value(v).expect("valid td json")
    }

    fn web() -> Value {
        json!({
            "family": "web",
            "containerDefinitions": [
                {"name": "app", "image": "busybox", "memory": 128,
                 "portMappings": [{"containerPort": 80}],
                 "healthCheck": {"command": ["CMD-SHELL", "true"]}},
                {"name": "sidecar", "image": "busybox", "memoryReservation": 64, "essential": false,
                 "dependsOn": [{"containerName": "app", "condition": "START"}],
                 "unknownMember": 1, "links": ["app"]}
            ]
        })
    }

    #[test]
    fn secrets_need_an_execution_role_and_name_their_capabilities() {
        let with = |role: Option<&str>| {
            let mut v = json!({"family": "s", "containerDefinitions": [
                {"name": "app", "image": "busybox", "memory": 32,
                 "secrets": [
                    {"name": "A", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:a-AbCdEf"},
                    {"name": "B", "valueFrom": "/app/b"}],
                 "logConfiguration": {"logDriver": "awslogs", "options": {},
                    "secretOptions": [{"name": "x", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:x"}]}}]});
            if let Some(r) = role {
                v["executionRoleArn"] = json!(r);
            }
            td(v)
        };
        let e = normalize_for_registration(&mut with(None)).unwrap_err();
        assert_eq!(
            e,
            ValidationError::client(
                "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'."
            )
        );
        let mut t = with(Some("arn:aws:iam::1:role/exec"));
        normalize_for_registration(&mut t).unwrap();
        let names: Vec<&str> = t
            .requires_attributes
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        for want in [
            "ecs.capability.secrets.asm.environment-variables",
            "ecs.capability.secrets.ssm.environment-variables",
            "ecs.capability.secrets.asm.bootstrap.log-driver",
            "ecs.capability.execution-role-awslogs",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn links_are_bridge_only_name_known_containers_and_set_the_creation_order() {
        let with = |mode: Option<&str>, links: Value| {
            let mut v = json!({"family": "l", "containerDefinitions": [
                {"name": "proxy", "image": "x", "memory": 16, "links": links,
                 "volumesFrom": [{"sourceContainer": "data"}]},
                {"name": "app", "image": "x", "memory": 16},
                {"name": "data", "image": "x", "memory": 16, "essential": false}]});
            if let Some(m) = mode {
                v["networkMode"] = json!(m);
            }
            let mut t = td(v);
            normalize_for_registration(&mut t).map(|_| t)
        };
        let t = with(None, json!(["app:backend"])).expect("bridge links");
        assert_eq!(
            t.container_definitions[0].links(),
            vec![Link {
                container: "app".into(),
                alias: "backend".into()
            }]
        );
        assert_eq!(creation_order(&t), Some(vec![1, 2, 0]));
        for mode in ["host", "awsvpc", "none"] {
            let e = with(Some(mode), json!(["app"])).unwrap_err().to_string();
            assert!(
                e.contains(&format!("Links are not supported when networkMode={mode}.")),
                "{e}"
            );
        }
        let e = with(None, json!(["nothere"])).unwrap_err().to_string();
        assert!(e.contains("unknown container 'nothere'"), "{e}");
        let e = with(None, json!(["proxy"])).unwrap_err().to_string();
        assert!(e.contains("unknown container 'proxy'"), "a self link: {e}");
        let e = with(None, json!(["app:bad alias"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'app:bad alias'"), "{e}");
        let mut cycle = td(json!({"family": "c", "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 16, "links": ["b"]},
            {"name": "b", "image": "x", "memory": 16, "volumesFrom": [{"sourceContainer": "a"}]}]}));
        let e = normalize_for_registration(&mut cycle)
            .unwrap_err()
            .to_string();
        assert!(e.contains("form a cycle"), "{e}");
    }

    #[test]
    fn registration_fills_ecs_defaults() {
        let mut t = td(web());
        normalize_for_registration(&mut t).unwrap();
        let app = &t.container_definitions[0];
        assert_eq!(app.essential, Some(true));
        assert_eq!(app.port_mappings[0].protocol.as_deref(), Some("tcp"));
        assert_eq!(
            app.port_mappings[0].host_port, None,
            "bridge keeps dynamic ports"
        );
        let hc = app.health_check.as_ref().unwrap();
        assert_eq!(
            (hc.interval, hc.timeout, hc.retries),
            (Some(30), Some(5), Some(3))
        );
        let side = &t.container_definitions[1];
        assert!(side.other.contains_key("links"));
        assert!(
            !side.other.contains_key("unknownMember"),
            "non-model members are dropped"
        );
        assert_eq!(t.compatibilities, vec!["EC2"]);
        let req: Vec<_> = t
            .requires_attributes
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert!(req.contains(&"ecs.capability.container-health-check"));
        assert!(req.contains(&"ecs.capability.container-ordering"));
    }

    #[test]
    fn efs_volumes_are_checked_as_ecs_checks_them() {
        let reg = |efs: Value| {
            let mut t = td(
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "memory": 8}],
                "volumes": [{"name": "d", "efsVolumeConfiguration": efs}]}),
            );
            normalize_for_registration(&mut t).map_err(|e| e.to_string())
        };
        assert!(reg(json!({"fileSystemId": "fs-1", "rootDirectory": "/a"})).is_ok());
        assert!(
            reg(json!({"rootDirectory": "/a"}))
                .expect_err("id")
                .contains("fileSystemId")
        );
        assert!(reg(json!({"fileSystemId": "fs-1", "transitEncryption": "MAYBE"})).is_err());
        assert!(
            reg(json!({"fileSystemId": "fs-1", "authorizationConfig": {"iam": "ENABLED"}}))
                .expect_err("iam")
                .contains("transit encryption")
        );
        assert!(reg(json!({"fileSystemId": "fs-1", "rootDirectory": "/a/../b"})).is_err());
        assert!(
            reg(json!({"fileSystemId": "fs-1", "rootDirectory": "/x",
            "authorizationConfig": {"accessPointId": "fsap-1"}}))
            .is_err()
        );
    }

    #[test]
    fn shared_file_systems_require_their_capabilities() {
        let t = td(
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}],
            "volumes": [{"name": "d", "efsVolumeConfiguration": {"fileSystemId": "fs-1",
                "authorizationConfig": {"iam": "ENABLED"}}}]}),
        );
        let req: Vec<String> = required_attributes(&t)
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert!(req.contains(&"ecs.capability.efs".to_owned()), "{req:?}");
        assert!(
            req.contains(&"ecs.capability.efsAuth".to_owned()),
            "{req:?}"
        );
    }

    #[test]
    fn container_memory_is_required_without_task_memory() {
        let mut t =
            td(json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}]}));
        let err = normalize_for_registration(&mut t).unwrap_err();
        assert!(err.to_string().contains("'a'"), "{err}");
    }

    #[test]
    fn fargate_needs_awsvpc_and_a_valid_size() {
        let base = json!({"family": "f", "requiresCompatibilities": ["FARGATE"],
            "containerDefinitions": [{"name": "a", "image": "i"}]});
        let mut t = td(base.clone());
        assert!(
            normalize_for_registration(&mut t)
                .unwrap_err()
                .to_string()
                .contains("awsvpc")
        );
        let mut v = base.clone();
        v["networkMode"] = json!("awsvpc");
        v["cpu"] = json!("256");
        v["memory"] = json!("4096");
        let mut t = td(v.clone());
        let e = normalize_for_registration(&mut t).unwrap_err().to_string();
        assert!(e.contains("256 CPU, 4096 memory"), "{e}");
        v["cpu"] = json!("0.25 vCPU");
        v["memory"] = json!("0.5GB");
        let mut t = td(v);
        normalize_for_registration(&mut t).unwrap();
        assert_eq!(t.cpu.as_deref(), Some("256"));
        assert_eq!(t.memory.as_deref(), Some("512"));
        assert_eq!(t.compatibilities, vec!["EC2", "FARGATE"]);
    }

    #[test]
    fn awsvpc_host_port_must_match() {
        let mut t = td(
            json!({"family": "f", "networkMode": "awsvpc", "memory": "512",
            "containerDefinitions": [{"name": "a", "image": "i", "portMappings": [{"containerPort": 80, "hostPort": 81}]}]}),
        );
        assert!(normalize_for_registration(&mut t).is_err());
        let mut t = td(
            json!({"family": "f", "networkMode": "awsvpc", "memory": "512",
            "containerDefinitions": [{"name": "a", "image": "i", "portMappings": [{"containerPort": 80}]}]}),
        );
        normalize_for_registration(&mut t).unwrap();
        assert_eq!(
            t.container_definitions[0].port_mappings[0].host_port,
            Some(80)
        );
    }

    #[test]
    fn dependencies_and_volumes_must_exist() {
        let mut t = td(json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i", "memory": 10, "dependsOn": [{"containerName": "zz", "condition": "START"}]}]}));
        assert!(normalize_for_registration(&mut t).is_err());
        let mut t = td(json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i", "memory": 10, "mountPoints": [{"sourceVolume": "data", "containerPath": "/d"}]}]}));
        assert!(normalize_for_registration(&mut t).is_err());
        let mut t = td(
            json!({"family": "f", "volumes": [{"name": "data", "host": {"sourcePath": "/tmp"}}],
            "containerDefinitions": [
            {"name": "a", "image": "i", "memory": 10, "mountPoints": [{"sourceVolume": "data", "containerPath": "/d"}]}]}),
        );
        normalize_for_registration(&mut t).unwrap();
        assert!(t.volumes[0].config.contains_key("host"));
    }

    #[test]
    fn complete_condition_on_essential_dependency_is_refused() {
        let mut t = td(json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i", "memory": 10},
            {"name": "b", "image": "i", "memory": 10, "dependsOn": [{"containerName": "a", "condition": "SUCCESS"}]}]}));
        assert!(normalize_for_registration(&mut t).is_err());
    }

    #[test]
    fn cpu_and_memory_units_parse() {
        assert_eq!(parse_cpu("1 vCPU").unwrap(), 1024);
        assert_eq!(parse_cpu("512").unwrap(), 512);
        assert!(parse_cpu("lots").is_err());
        assert_eq!(parse_memory("2GB").unwrap(), 2048);
        assert_eq!(parse_memory("2 GB").unwrap(), 2048);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert!(parse_memory("-1").is_err());
    }

    #[test]
    fn fargate_table_edges() {
        assert!(fargate_size_is_valid(256, 512));
        assert!(!fargate_size_is_valid(256, 4096));
        assert!(fargate_size_is_valid(4096, 30720));
        assert!(!fargate_size_is_valid(4096, 31744));
        assert!(fargate_size_is_valid(16384, 122880));
        assert!(!fargate_size_is_valid(8192, 18432));
        assert!(fargate_size_is_valid(8192, 20480));
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            parse_task_definition_ref("web").unwrap(),
            TaskDefinitionRef::Family("web".into())
        );
        assert_eq!(
            parse_task_definition_ref("web:3").unwrap(),
            TaskDefinitionRef::Revision("web".into(), 3)
        );
        assert_eq!(
            parse_task_definition_ref("arn:aws:ecs:us-east-1:0:task-definition/web:7").unwrap(),
            TaskDefinitionRef::Revision("web".into(), 7)
        );
        assert!(parse_task_definition_ref("web:x").is_err());
        assert!(parse_task_definition_ref("web:0").is_err());
    }
}

/// What RegisterTaskDefinition accepts that reaches into the host: host paths under
/// `allowed_host_paths` (`--allowed-host-paths`), and privileged settings when
/// `allow_privileged` (`--allow-privileged-tasks`). The default accepts neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAccess {
    pub allowed_host_paths: Vec<String>,
    pub allow_privileged: bool,
}

impl HostAccess {
    /// Whether the absolute host path `path` is one of the allowed paths or beneath one
    /// (compared by components; a path with `..` is never allowed).
    pub fn allows_path(&self, path: &str) -> bool {
        let parts = |p: &str| -> Option<Vec<String>> {
            if !p.starts_with('/') {
                return None;
            }
            let mut out = Vec::new();
            for c in p.split('/').filter(|c| !c.is_empty() && *c != ".") {
                if c == ".." {
                    return None;
                }
                out.push(c.to_owned());
            }
            Some(out)
        };
        let Some(path) = parts(path) else {
            return false;
        };
        self.allowed_host_paths
            .iter()
            .filter_map(|a| parts(a))
            .any(|allowed| path.starts_with(&allowed))
    }
}

/// Refuses what reaches into the host unless `access` allows it: host bind mounts outside the
/// allow-list, `privileged`, added capabilities, devices, `pidMode`/`ipcMode: host` and
/// `dockerSecurityOptions`.
pub fn check_host_access(td: &TaskDefinition, access: &HostAccess) -> Result<(), ValidationError> {
    for v in &td.volumes {
        if let Some(path) = v
            .config
            .get("host")
            .and_then(|h| h.get("sourcePath"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            && !access.allows_path(path)
        {
            return Err(ValidationError::client(format!(
                "Volume '{}' mounts host path '{path}', which is outside the host paths this server allows (--allowed-host-paths). Use a Docker volume (dockerVolumeConfiguration, or host without sourcePath) or ask the operator to allow the path.",
                v.name.as_deref().unwrap_or_default()
            )));
        }
    }
    if access.allow_privileged {
        return Ok(());
    }
    let refuse = |what: String| {
        Err(ValidationError::client(format!(
            "{what} is not allowed on this server: it gives the task access to the host. Start the server with --allow-privileged-tasks to allow it."
        )))
    };
    if td.pid_mode.as_deref() == Some("host") {
        return refuse("pidMode 'host'".into());
    }
    if td.ipc_mode.as_deref() == Some("host") {
        return refuse("ipcMode 'host'".into());
    }
    let non_empty = |v: Option<&Value>| match v {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    };
    for c in &td.container_definitions {
        let name = &c.name;
        if c.privileged == Some(true) {
            return refuse(format!("Container '{name}': privileged: true"));
        }
        let linux = c.other.get("linuxParameters");
        let caps = linux
            .and_then(|l| l.get("capabilities"))
            .and_then(|k| k.get("add"));
        if non_empty(caps) {
            return refuse(format!(
                "Container '{name}': linuxParameters.capabilities.add {}",
                caps.map(Value::to_string).unwrap_or_default()
            ));
        }
        if non_empty(linux.and_then(|l| l.get("devices"))) {
            return refuse(format!("Container '{name}': linuxParameters.devices"));
        }
        let opts = c.other.get("dockerSecurityOptions");
        if non_empty(opts) {
            return refuse(format!(
                "Container '{name}': dockerSecurityOptions {}",
                opts.map(Value::to_string).unwrap_or_default()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod host_access_tests {
    use super::*;
    use serde_json::json;

    fn td(v: Value) -> TaskDefinition {
        serde_json::from_value(v).unwrap()
    }

    fn msg(r: Result<(), ValidationError>) -> String {
        match r.unwrap_err() {
            ValidationError::Client(m) | ValidationError::InvalidParameter(m) => m,
        }
    }

    #[test]
    fn host_paths_follow_the_allow_list() {
        let t = td(
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}],
            "volumes": [{"name": "root", "host": {"sourcePath": "/"}}]}),
        );
        let none = HostAccess::default();
        assert!(msg(check_host_access(&t, &none)).contains("host path '/'"));
        let srv = HostAccess {
            allowed_host_paths: vec!["/srv/data/".into()],
            allow_privileged: false,
        };
        assert!(check_host_access(&t, &srv).is_err());
        assert!(srv.allows_path("/srv/data"));
        assert!(srv.allows_path("/srv/data/x/y"));
        assert!(!srv.allows_path("/srv/database"));
        assert!(!srv.allows_path("/srv/data/../../etc"));
        assert!(!srv.allows_path("srv/data"));
        // Docker volumes need no allow-list.
        let named = td(
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}],
            "volumes": [{"name": "t", "host": {}}, {"name": "d",
                "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}}]}),
        );
        assert!(check_host_access(&named, &none).is_ok());
    }

    #[test]
    fn privileged_settings_need_the_flag() {
        let cases = [
            json!({"pidMode": "host"}),
            json!({"ipcMode": "host"}),
            json!({"containerDefinitions": [{"name": "a", "image": "i", "privileged": true}]}),
            json!({"containerDefinitions": [{"name": "a", "image": "i",
                "linuxParameters": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}),
            json!({"containerDefinitions": [{"name": "a", "image": "i",
                "linuxParameters": {"devices": [{"hostPath": "/dev/kmsg"}]}}]}),
            json!({"containerDefinitions": [{"name": "a", "image": "i",
                "dockerSecurityOptions": ["apparmor:unconfined"]}]}),
        ];
        let allow = HostAccess {
            allowed_host_paths: vec![],
            allow_privileged: true,
        };
        for case in cases {
            let mut v =
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}]});
            for (k, x) in case.as_object().unwrap() {
                v[k] = x.clone();
            }
            let t = td(v);
            let m = msg(check_host_access(&t, &HostAccess::default()));
            assert!(m.contains("--allow-privileged-tasks"), "{m}");
            assert!(check_host_access(&t, &allow).is_ok(), "{case}");
        }
        // Dropping capabilities, `task` modes and unprivileged containers are fine.
        let ok = td(json!({"family": "f", "pidMode": "task", "ipcMode": "none",
            "containerDefinitions": [{"name": "a", "image": "i", "privileged": false,
                "linuxParameters": {"capabilities": {"add": [], "drop": ["ALL"]}, "initProcessEnabled": true}}]}));
        assert!(check_host_access(&ok, &HostAccess::default()).is_ok());
    }
}
