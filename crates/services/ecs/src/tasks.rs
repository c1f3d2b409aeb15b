//! RunTask, StartTask, StopTask, DescribeTasks, ListTasks, and the agent's state reports
//! SubmitTaskStateChange and SubmitContainerStateChange.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use gantry_domain::Arn;
use gantry_domain::cluster::{
    CapacityProviderStrategyItem, FARGATE_PLATFORM_CLUSTER, FARGATE_PLATFORM_VERSION,
};
use gantry_domain::container_instance::ContainerInstance;
use gantry_domain::tags::{Tag, validate_tags};
use gantry_domain::task::{
    Container, NetworkBinding, Reservation, Task, TaskOverride, TaskStatus, required_resources,
    stop_code,
};
use gantry_domain::task_definition::{TaskDefinition, TaskDefinitionStatus};
use gantry_store::{StoreExt, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cluster_view::Held;
use crate::wire::{
    active_cluster, check_len, cluster_name, include_tags, max_results, missing, parse, secs,
    with_token,
};
use crate::{EcsError, EcsService, keys, task_definitions};
use crate::{placement, placement_queue, task_network};
use gantry_front::RequestContext;
use gantry_scheduler::PlacementRequest;

pub(crate) fn task_arn(ctx: &RequestContext, t: &Task) -> String {
    Arn::task(&ctx.region, &ctx.account_id, &t.cluster, &t.id).to_string()
}

fn opt_secs(ms: Option<u64>) -> Option<Value> {
    ms.map(secs)
}

/// The wire form of a task (`Task` in the model).
pub(crate) fn to_wire(
    t: &Task,
    ctx: &RequestContext,
    def: Option<&TaskDefinition>,
    with_tags: bool,
) -> Value {
    let arn = task_arn(ctx, t);
    let containers: Vec<Value> = t
        .containers
        .iter()
        .map(|c| {
            let mut v = json!({
                "containerArn": Arn::new("ecs", &ctx.region, &ctx.account_id,
                    format!("container/{}/{}/{}", t.cluster, t.id, c.id)).to_string(),
                "taskArn": arn,
                "name": c.name,
                "image": c.image,
                "lastStatus": c.last_status,
                "networkBindings": c.network_bindings,
                "networkInterfaces": task_network::container_interfaces_wire(t),
                "cpu": c.cpu.to_string(),
            });
            if let Some(d) = &c.image_digest {
                v["imageDigest"] = json!(d);
            }
            if let Some(r) = &c.runtime_id {
                v["runtimeId"] = json!(r);
            }
            if let Some(e) = c.exit_code {
                v["exitCode"] = json!(e);
            }
            if let Some(r) = &c.reason {
                v["reason"] = json!(r);
            }
            if let Some(h) = &c.health_status {
                v["healthStatus"] = json!(h);
            }
            if let Some(m) = c.memory {
                v["memory"] = json!(m.to_string());
            }
            if let Some(m) = c.memory_reservation {
                v["memoryReservation"] = json!(m.to_string());
            }
            v
        })
        .collect();
    let mut overrides = serde_json::to_value(&t.overrides).unwrap_or_else(|_| json!({}));
    if overrides.get("inferenceAcceleratorOverrides").is_none() {
        overrides["inferenceAcceleratorOverrides"] = json!([]);
    }
    let mut v = json!({
        "taskArn": arn,
        "clusterArn": Arn::cluster(&ctx.region, &ctx.account_id, &t.cluster).to_string(),
        "taskDefinitionArn": Arn::task_definition(&ctx.region, &ctx.account_id, &t.family, t.revision).to_string(),
        "overrides": overrides,
        "lastStatus": t.last_status.as_str(),
        "desiredStatus": t.desired_status.as_str(),
        "containers": containers,
        "version": t.version,
        "createdAt": secs(t.created_at),
        "group": t.group,
        "launchType": t.launch_type,
        "attachments": task_network::attachments_wire(t),
        "healthStatus": t.health_status(def),
        "enableExecuteCommand": t.enable_execute_command,
        "tags": if with_tags { json!(t.tags) } else { json!([]) },
    });
    if let Some(ci) = t.container_instance_id.as_ref().filter(|_| !t.is_fargate()) {
        v["containerInstanceArn"] = json!(
            Arn::container_instance(&ctx.region, &ctx.account_id, &t.cluster, ci).to_string()
        );
    }
    if let Some(cp) = &t.capacity_provider_name {
        v["capacityProviderName"] = json!(cp);
    }
    if t.is_fargate() {
        v["platformVersion"] = json!(
            t.platform_version
                .as_deref()
                .unwrap_or(FARGATE_PLATFORM_VERSION)
        );
        v["platformFamily"] = json!("Linux");
        v["ephemeralStorage"] = json!({"sizeInGiB": t.ephemeral_storage_gib.unwrap_or(20)});
    }
    if let Some(c) = &t.cpu {
        v["cpu"] = json!(c);
    }
    if let Some(m) = &t.memory {
        v["memory"] = json!(m);
    }
    if let Some(s) = &t.started_by {
        v["startedBy"] = json!(s);
    }
    if let Some(az) = &t.availability_zone {
        v["availabilityZone"] = json!(az);
    }
    if let Some(c) = &t.stop_code {
        v["stopCode"] = json!(c);
    }
    if let Some(r) = &t.stopped_reason {
        v["stoppedReason"] = json!(r);
    }
    if t.last_status == TaskStatus::Running || t.connectivity_at.is_some() {
        v["connectivity"] = json!("CONNECTED");
    }
    for (name, ms) in [
        ("pullStartedAt", t.pull_started_at),
        ("pullStoppedAt", t.pull_stopped_at),
        ("startedAt", t.started_at),
        ("connectivityAt", t.connectivity_at),
        ("stoppingAt", t.stopping_at),
        ("stoppedAt", t.stopped_at),
        ("executionStoppedAt", t.execution_stopped_at),
    ] {
        if let Some(x) = opt_secs(ms) {
            v[name] = x;
        }
    }
    v
}

/// The failure reason of a Fargate task the platform has no room for (ECS's wording).
pub(crate) const FARGATE_CAPACITY_UNAVAILABLE: &str = "Capacity is unavailable at this time. Please try again later or in a different availability zone";

/// Idempotency record of a RunTask/StartTask `clientToken`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientTokenRecord {
    task_ids: Vec<String>,
    failures: Vec<Value>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunTaskRequest {
    cluster: Option<String>,
    task_definition: Option<String>,
    count: Option<i64>,
    group: Option<String>,
    launch_type: Option<String>,
    #[serde(default)]
    overrides: TaskOverride,
    started_by: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    propagate_tags: Option<String>,
    enable_execute_command: Option<bool>,
    client_token: Option<String>,
    #[serde(default)]
    placement_constraints: Vec<Value>,
    #[serde(default)]
    placement_strategy: Vec<Value>,
    #[serde(default)]
    capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// StartTask: the instances to start on.
    #[serde(default)]
    pub(crate) container_instances: Vec<String>,
    /// awsvpc tasks: `awsvpcConfiguration` (subnets, security groups, assignPublicIp).
    network_configuration: Option<Value>,
    /// Fargate: `LATEST` or `1.4.0`.
    platform_version: Option<String>,
    /// Set by the service runner: the service and deployment the tasks belong to.
    #[serde(skip)]
    pub(crate) service: Option<(String, String)>,
    /// Set by the service runner: use the service default strategy when none is given.
    #[serde(skip)]
    service_default_strategy: bool,
    /// The capacity provider the tasks are launched on (set when a strategy is split).
    #[serde(skip)]
    capacity_provider: Option<String>,
    /// Set by the service runner: the service's live tasks on each provider of its strategy.
    #[serde(skip)]
    existing_by_provider: Vec<u64>,
    /// A host-pool provider's share: only the instances of this pool qualify.
    #[serde(skip)]
    pool: Option<String>,
}

impl RunTaskRequest {
    /// What the service runner launches for one deployment: `count` tasks placed by the
    /// scheduler, or one task on `instance` (DAEMON).
    pub(crate) fn for_service(
        s: &gantry_domain::service::Service,
        d: &gantry_domain::service::Deployment,
        count: usize,
        instance: Option<String>,
        existing_by_provider: Vec<u64>,
    ) -> Self {
        let by_strategy = !s.capacity_provider_strategy.is_empty();
        Self {
            cluster: Some(s.cluster.clone()),
            task_definition: Some(format!("{}:{}", d.family, d.revision)),
            count: Some(count as i64),
            group: Some(s.group()),
            launch_type: (!by_strategy).then(|| s.launch_type.clone()),
            capacity_provider_strategy: s.capacity_provider_strategy.clone(),
            existing_by_provider,
            started_by: Some(d.id.clone()),
            tags: if s.propagate_tags.as_deref() == Some("SERVICE") {
                s.tags.clone()
            } else {
                vec![]
            },
            propagate_tags: s.propagate_tags.clone().filter(|p| p == "TASK_DEFINITION"),
            enable_execute_command: Some(s.enable_execute_command),
            placement_constraints: s.placement_constraints.clone(),
            placement_strategy: s.placement_strategy.clone(),
            container_instances: instance.into_iter().collect(),
            network_configuration: s.network_configuration.clone(),
            platform_version: s.platform_version.clone(),
            service: Some((s.name.clone(), d.id.clone())),
            service_default_strategy: true,
            ..Default::default()
        }
    }
}

fn validate_run_request(req: &RunTaskRequest, start: bool) -> Result<(), EcsError> {
    crate::wire::refuse_execute_command(req.enable_execute_command)?;
    if req.task_definition.as_deref().is_none_or(str::is_empty) {
        return Err(EcsError::invalid("taskDefinition is required."));
    }
    if let Some(c) = req.count
        && !(1..=10).contains(&c)
    {
        return Err(EcsError::invalid(format!(
            "count must be between 1 and 10, but was {c}."
        )));
    }
    if let Some(s) = &req.started_by
        && s.len() > 128
    {
        return Err(EcsError::invalid(
            "startedBy may be at most 128 characters.",
        ));
    }
    if let Some(g) = &req.group
        && (g.is_empty() || g.len() > 255)
    {
        return Err(EcsError::invalid("group must be 1 to 255 characters."));
    }
    if let Some(lt) = req.launch_type.as_deref() {
        match lt {
            "EC2" | "EXTERNAL" | "FARGATE" => {}
            "MANAGED_INSTANCES" => {
                return Err(EcsError::Unsupported(format!(
                    "The launch type {lt} is not supported by this endpoint yet; use EC2."
                )));
            }
            other => {
                return Err(EcsError::invalid(format!(
                    "Invalid launchType '{other}'. Valid values: EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES."
                )));
            }
        }
    }
    if !req.capacity_provider_strategy.is_empty() && req.launch_type.is_some() {
        return Err(EcsError::invalid(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    if let Some(p) = req.propagate_tags.as_deref()
        && !matches!(p, "TASK_DEFINITION" | "SERVICE" | "NONE")
    {
        return Err(EcsError::invalid(format!(
            "Invalid propagateTags '{p}'. Valid values: TASK_DEFINITION, SERVICE, NONE."
        )));
    }
    if start && (req.container_instances.is_empty() || req.container_instances.len() > 10) {
        return Err(EcsError::invalid(
            "containerInstances must hold between 1 and 10 entries.",
        ));
    }
    validate_tags(&req.tags)?;
    placement::validate(&req.placement_constraints, &req.placement_strategy)?;
    check_platform_version(req.launch_type.as_deref(), req.platform_version.as_deref())?;
    if req.launch_type.as_deref() == Some("FARGATE") {
        if start {
            return Err(EcsError::invalid(
                "StartTask does not support the FARGATE launch type; use RunTask.",
            ));
        }
        if !req.placement_constraints.is_empty() {
            return Err(EcsError::invalid(
                "Task placement constraints are not supported with the FARGATE launch type.",
            ));
        }
        if !req.placement_strategy.is_empty() {
            return Err(EcsError::invalid(
                "Task placement strategies are not supported with the FARGATE launch type.",
            ));
        }
    }
    Ok(())
}

/// `platformVersion`: only for Fargate, `LATEST` or `1.4.0` (the version Gantry's platform
/// runs); ECS's wording for the EC2 case.
pub(crate) fn check_platform_version(
    launch_type: Option<&str>,
    version: Option<&str>,
) -> Result<(), EcsError> {
    let Some(v) = version else { return Ok(()) };
    match launch_type {
        Some("EC2") | Some("EXTERNAL") => Err(EcsError::invalid(
            "The platform version must be null when specifying an EC2 launch type.",
        )),
        _ if matches!(v, "LATEST" | FARGATE_PLATFORM_VERSION) => Ok(()),
        _ if v.starts_with("1.") => Err(EcsError::Unsupported(format!(
            "Platform version {v} is not supported: this endpoint runs Fargate platform version {FARGATE_PLATFORM_VERSION} (use LATEST or {FARGATE_PLATFORM_VERSION})."
        ))),
        _ => Err(EcsError::invalid(format!(
            "The specified platform version ({v}) does not exist."
        ))),
    }
}

/// What a Fargate launch checks beyond the request's shape: the task definition's
/// compatibility, the task size after overrides, `runtimePlatform` and ephemeral storage.
/// Returns the ephemeral storage size in GiB.
pub(crate) fn check_fargate_launch(
    td: &TaskDefinition,
    overrides: &TaskOverride,
) -> Result<u32, EcsError> {
    if !td.compatibilities.iter().any(|c| c == "FARGATE") {
        return Err(EcsError::invalid(
            "Task definition does not support launch_type FARGATE.",
        ));
    }
    let cpu = overrides.cpu.as_deref().or(td.cpu.as_deref());
    let memory = overrides.memory.as_deref().or(td.memory.as_deref());
    let parse = |v: Option<&str>| v.and_then(|x| x.trim().parse::<u32>().ok());
    if let (Some(c), Some(m)) = (parse(cpu), parse(memory))
        && !gantry_domain::task_definition::fargate_size_is_valid(c, m)
    {
        return Err(EcsError::client(format!(
            "No Fargate configuration exists for given values: {c} CPU, {m} memory. See the Amazon ECS documentation for the valid values."
        )));
    }
    if let Some(rp) = td.other.get("runtimePlatform") {
        if let Some(os) = rp.get("operatingSystemFamily").and_then(Value::as_str)
            && os != "LINUX"
        {
            return Err(EcsError::Unsupported(format!(
                "Fargate tasks with operatingSystemFamily {os} are not supported: this platform runs LINUX tasks only."
            )));
        }
        let host = match std::env::consts::ARCH {
            "aarch64" => "ARM64",
            _ => "X86_64",
        };
        if let Some(arch) = rp.get("cpuArchitecture").and_then(Value::as_str)
            && arch != host
        {
            return Err(EcsError::Unsupported(format!(
                "Fargate tasks with cpuArchitecture {arch} are not supported: this platform runs {host} tasks only."
            )));
        }
    }
    let storage = overrides
        .other
        .get("ephemeralStorage")
        .or_else(|| td.other.get("ephemeralStorage"));
    match storage {
        Some(v) => gantry_domain::task_definition::ephemeral_storage_gib(v)
            .map_err(|e| EcsError::client(e.to_string())),
        None => Ok(20),
    }
}

pub(crate) fn new_task(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    td: &TaskDefinition,
    req: &RunTaskRequest,
    ci: &ContainerInstance,
    reservation: Reservation,
) -> Task {
    let mut tags = req.tags.clone();
    if req.propagate_tags.as_deref() == Some("TASK_DEFINITION") {
        gantry_domain::tags::merge_tags(&mut tags, &td.tags);
    }
    let containers = td
        .container_definitions
        .iter()
        .map(|c| {
            let eff = gantry_domain::task::effective_container(c, &req.overrides);
            Container {
                id: uuid::Uuid::new_v4().to_string(),
                name: c.name.clone(),
                image: c.image.clone(),
                image_digest: None,
                runtime_id: None,
                last_status: "PENDING".into(),
                exit_code: None,
                reason: None,
                network_bindings: vec![],
                health_status: c.health_check.as_ref().map(|_| "UNKNOWN".to_owned()),
                essential: c.is_essential(),
                cpu: eff.cpu,
                memory: eff.memory,
                memory_reservation: eff.memory_reservation,
            }
        })
        .collect();
    Task {
        id: svc.ids.hex32(),
        cluster: cluster.to_owned(),
        container_instance_id: Some(ci.id.clone()),
        family: td.family.clone(),
        revision: td.revision,
        desired_status: TaskStatus::Running,
        last_status: TaskStatus::Provisioning,
        launch_type: req.launch_type.clone().unwrap_or_else(|| "EC2".into()),
        cpu: req
            .overrides
            .cpu
            .clone()
            .or_else(|| td.cpu.clone())
            .or(Some(reservation.cpu.to_string())),
        memory: req
            .overrides
            .memory
            .clone()
            .or_else(|| td.memory.clone())
            .or(Some(reservation.memory.to_string())),
        overrides: req.overrides.clone(),
        containers,
        started_by: req.started_by.clone(),
        group: req
            .group
            .clone()
            .unwrap_or_else(|| format!("family:{}", td.family)),
        tags,
        created_at: ctx.now,
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        connectivity_at: None,
        stopping_at: None,
        stopped_at: None,
        execution_stopped_at: None,
        stop_code: None,
        stopped_reason: None,
        version: 1,
        reservation,
        availability_zone: ci.attribute("ecs.availability-zone").map(str::to_owned),
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
        service_name: req.service.as_ref().map(|(s, _)| s.clone()),
        deployment_id: req.service.as_ref().map(|(_, d)| d.clone()),
        network: None,
        capacity_provider_name: req.capacity_provider.clone(),
        platform_version: (req.launch_type.as_deref() == Some("FARGATE"))
            .then(|| FARGATE_PLATFORM_VERSION.to_owned()),
        ephemeral_storage_gib: None,
        stop_grace_seconds: None,
        protected_until: None,
    }
}

async fn resolve_active_td(
    svc: &EcsService,
    ctx: &RequestContext,
    reference: &str,
) -> Result<TaskDefinition, EcsError> {
    let td = task_definitions::resolve(svc, ctx, reference)
        .await?
        .ok_or_else(|| {
            EcsError::client(format!("Unable to find task definition '{reference}'."))
        })?;
    if td.value.status != TaskDefinitionStatus::Active {
        return Err(EcsError::client(format!(
            "TaskDefinition is inactive: {}:{}",
            td.value.family, td.value.revision
        )));
    }
    Ok(td.value)
}

async fn run_or_start(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
    start: bool,
) -> Result<Value, EcsError> {
    let req: RunTaskRequest = parse(body)?;
    validate_run_request(&req, start)?;
    let (tasks, failures, td) = launch_any(svc, ctx, &req, start).await?;
    let wire: Vec<Value> = tasks
        .iter()
        .map(|t| to_wire(t, ctx, Some(&td), true))
        .collect();
    Ok(json!({"tasks": wire, "failures": failures}))
}

/// Launches by capacity provider strategy (the request's, else the cluster's default): the count
/// is split over the providers (`gantry_domain::capacity::split`, counting the service's live
/// tasks), and each share launched on its provider's capacity. Without a strategy, by launch type.
pub(crate) async fn launch_any(
    svc: &EcsService,
    ctx: &RequestContext,
    req: &RunTaskRequest,
    start: bool,
) -> Result<(Vec<Task>, Vec<Value>, TaskDefinition), EcsError> {
    if start {
        return launch(svc, ctx, req, start).await;
    }
    let cluster = cluster_name(req.cluster.as_deref())?;
    let c = active_cluster(svc, ctx, &cluster).await?;
    let Some(strategy) = crate::capacity_providers::effective_strategy(
        &c.value,
        req.launch_type.as_deref(),
        &req.capacity_provider_strategy,
    )?
    else {
        return launch(svc, ctx, req, start).await;
    };
    let pools = crate::capacity_providers::pools_of(svc, ctx, &strategy).await?;
    let fargate = pools.iter().all(Option::is_none);
    // Fargate providers: placement is the platform's.
    if fargate && (!req.placement_constraints.is_empty() || !req.placement_strategy.is_empty()) {
        return Err(EcsError::invalid(
            "Task placement constraints and strategies are not supported with Fargate capacity providers.",
        ));
    }
    let count = req.count.unwrap_or(1).max(0) as u64;
    let shares = gantry_domain::capacity::split(&strategy, &req.existing_by_provider, count);
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    let mut def = None;
    for ((item, n), pool) in strategy.iter().zip(shares).zip(pools) {
        if n == 0 {
            continue;
        }
        let mut sub = req.clone();
        sub.launch_type = Some(if pool.is_some() { "EC2" } else { "FARGATE" }.to_owned());
        sub.pool = pool;
        sub.capacity_provider_strategy = Vec::new();
        sub.count = Some(n as i64);
        sub.capacity_provider = Some(item.capacity_provider.clone());
        // One idempotency record per provider's share.
        sub.client_token = req
            .client_token
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| format!("{t}/{}", item.capacity_provider));
        let (t, f, d) = launch(svc, ctx, &sub, false).await?;
        tasks.extend(t);
        failures.extend(f);
        def = Some(d);
    }
    let td = match def {
        Some(d) => d,
        None => {
            resolve_active_td(svc, ctx, req.task_definition.as_deref().unwrap_or_default()).await?
        }
    };
    Ok((tasks, failures, td))
}

/// Places and records tasks (RunTask, StartTask, and the service runner's launches): one
/// transaction creates the tasks and reserves their resources on the chosen instances.
pub(crate) async fn launch(
    svc: &EcsService,
    ctx: &RequestContext,
    req: &RunTaskRequest,
    start: bool,
) -> Result<(Vec<Task>, Vec<Value>, TaskDefinition), EcsError> {
    let cluster = cluster_name(req.cluster.as_deref())?;
    active_cluster(svc, ctx, &cluster).await?;
    let td =
        resolve_active_td(svc, ctx, req.task_definition.as_deref().unwrap_or_default()).await?;
    let launch_type = req.launch_type.clone().unwrap_or_else(|| "EC2".into());
    let fargate = launch_type == "FARGATE";
    let ephemeral_storage = if fargate {
        Some(check_fargate_launch(&td, &req.overrides)?)
    } else {
        None
    };
    if !fargate
        && !td
            .compatibilities
            .iter()
            .any(|c| c == "EC2" || c == "EXTERNAL")
    {
        return Err(EcsError::invalid(
            "Task definition does not support launch type EC2.",
        ));
    }
    // Fargate tasks run on the platform's capacity, never on the cluster's instances.
    let host_cluster = if fargate {
        FARGATE_PLATFORM_CLUSTER.to_owned()
    } else {
        cluster.clone()
    };
    let count = if start {
        req.container_instances.len()
    } else {
        req.count.unwrap_or(1) as usize
    };
    let network = task_network::prepare(
        svc,
        ctx,
        &td,
        req.network_configuration.as_ref(),
        &launch_type,
    )
    .await?;
    let need = required_resources(&td, &req.overrides);
    let demand = placement::demand(&td, &req.overrides);
    let mut constraint_values = req.placement_constraints.clone();
    constraint_values.extend(
        td.placement_constraints
            .iter()
            .map(|c| json!({"type": c.kind, "expression": c.expression})),
    );
    let mut constraints = placement::constraints(&constraint_values)?;
    if let Some(n) = &network {
        // awsvpc tasks go to instances in the zones of their subnets.
        constraints.push(task_network::zone_constraint(n)?);
    }
    let mut strategies = placement::strategies(&req.placement_strategy)?;
    if strategies.is_empty() && (req.service_default_strategy || fargate) {
        // Services, and every Fargate launch: spread over zones, then over hosts.
        strategies = gantry_scheduler::PlacementStrategy::service_default();
    }
    let token_key = req
        .client_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| keys::client_token(&ctx.region, &cluster, t));
    if let Some(p) = &req.pool {
        // A host-pool provider's tasks go only to its pool's instances.
        constraints.extend(placement::constraints(&[json!({
            "type": "memberOf",
            "expression": format!("attribute:{} == {p}", gantry_domain::capacity::POOL_ATTRIBUTE),
        })])?);
    }
    let group = req
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{}", td.family));
    let request = PlacementRequest {
        task: demand,
        count: if start {
            1
        } else {
            u32::try_from(count).unwrap_or(1)
        },
        group,
        constraints,
        strategy: strategies,
        requires_attributes: placement::requires(&td),
    };
    let job = placement_queue::Launch {
        ctx: ctx.clone(),
        req: req.clone(),
        start,
        cluster,
        td,
        need,
        request,
        network,
        token_key,
        fargate,
        host_cluster,
        ephemeral_storage,
    };
    let (tasks, failures, td) = placement_queue::submit(svc, job).await?;
    Ok((tasks, failures, td))
}

/// Answers a RunTask/StartTask whose `clientToken` was seen before with what that call created.
pub(crate) async fn replay_client_token(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    token_key: &str,
) -> Result<Option<(Vec<Task>, Vec<Value>)>, EcsError> {
    let Some(rec) = svc.store.get_typed::<ClientTokenRecord>(token_key).await? else {
        return Ok(None);
    };
    let mut tasks = Vec::new();
    for id in &rec.value.task_ids {
        if let Some(t) = svc
            .store
            .get_typed::<Task>(&keys::task(&ctx.region, cluster, id))
            .await?
        {
            tasks.push(t.value);
        }
    }
    Ok(Some((tasks, rec.value.failures)))
}

/// The idempotency record of a call with a `clientToken`.
pub(crate) fn client_token_record(tasks: &[Task], failures: &[Value]) -> impl Serialize {
    ClientTokenRecord {
        task_ids: tasks.iter().map(|t| t.id.clone()).collect(),
        failures: failures.to_vec(),
    }
}

/// Records a placement in a view so later picks of the same call see it.
pub(crate) fn reserve_in_view(
    v: &mut gantry_scheduler::InstanceView,
    d: &gantry_scheduler::TaskDemand,
    group: &str,
) {
    v.remaining_cpu -= i64::from(d.cpu);
    v.remaining_memory -= i64::from(d.memory);
    v.remaining_enis = v.remaining_enis.saturating_sub(i64::from(d.enis));
    v.used_tcp_ports.extend(d.tcp_ports.iter().copied());
    v.used_udp_ports.extend(d.udp_ports.iter().copied());
    v.task_groups.push(group.to_owned());
}

pub(super) async fn run(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    run_or_start(svc, body, ctx, false).await
}

pub(super) async fn start(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    run_or_start(svc, body, ctx, true).await
}

pub(crate) fn task_id(reference: &str) -> String {
    task_id_of(reference).to_owned()
}

/// The task id in a task reference (an id, or a task ARN).
pub(crate) fn task_id_of(reference: &str) -> &str {
    if reference.starts_with("arn:") {
        reference.rsplit('/').next().unwrap_or(reference)
    } else {
        reference
    }
}

/// Reads a task by id or ARN.
pub(crate) async fn get(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    reference: &str,
) -> Result<Option<Versioned<Task>>, EcsError> {
    Ok(svc
        .store
        .get_typed(&keys::task(&ctx.region, cluster, &task_id(reference)))
        .await?)
}

/// Changes a task with `change`, keeping its instance's counts and reservations in step, in one
/// transaction (compare-and-swap on both records). It goes through the cluster's placement queue,
/// so that state reports and placements on the same instances do not conflict.
pub(crate) async fn transition(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    reference: &str,
    change: impl Fn(&mut Task) -> Result<(), EcsError> + Send + Sync + 'static,
) -> Result<Task, EcsError> {
    placement_queue::transition(svc, ctx, cluster, reference, Box::new(change)).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopTaskRequest {
    cluster: Option<String>,
    task: Option<String>,
    reason: Option<String>,
}

/// Marks a task to be stopped with `code` and `reason` (the agent does the stopping).
pub(crate) async fn request_stop(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    reference: &str,
    code: &str,
    reason: &str,
) -> Result<Task, EcsError> {
    request_stop_with_grace(svc, ctx, cluster, reference, code, reason, None).await
}

/// [`request_stop`], with the seconds the agent waits between SIGTERM and SIGKILL.
pub(crate) async fn request_stop_with_grace(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    reference: &str,
    code: &str,
    reason: &str,
    grace: Option<u64>,
) -> Result<Task, EcsError> {
    // An instance whose agent is away cannot stop a task it never started.
    let agent_away = match get(svc, ctx, cluster, reference).await? {
        Some(t) => match &t.value.container_instance_id {
            Some(ci) => svc
                .store
                .get_typed::<ContainerInstance>(&keys::container_instance(
                    &ctx.region,
                    t.value.host_cluster(),
                    ci,
                ))
                .await?
                .is_none_or(|c| !c.value.agent_connected),
            None => true,
        },
        None => return Err(EcsError::invalid("The referenced task was not found.")),
    };
    let now = ctx.now;
    let (code, reason) = (code.to_owned(), reason.to_owned());
    transition(svc, ctx, cluster, reference, move |t| {
        if t.desired_status == TaskStatus::Stopped {
            return Ok(());
        }
        t.desired_status = TaskStatus::Stopped;
        t.stop_code = Some(code.clone());
        t.stopped_reason = Some(reason.clone());
        t.stopping_at = Some(now);
        t.stop_grace_seconds = grace;
        if t.last_status == TaskStatus::Provisioning && agent_away {
            t.last_status = TaskStatus::Stopped;
            t.stopped_at = Some(now);
            t.execution_stopped_at = Some(now);
            for c in &mut t.containers {
                c.last_status = "STOPPED".into();
            }
        } else if t.last_status == TaskStatus::Running {
            t.last_status = TaskStatus::Stopping;
        }
        Ok(())
    })
    .await
}

pub(super) async fn stop(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: StopTaskRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(reference) = req.task.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("task is required."));
    };
    if req.reason.as_deref().is_some_and(|r| r.len() > 255) {
        return Err(EcsError::invalid("reason may be at most 255 characters."));
    }
    active_cluster(svc, ctx, &cluster).await?;
    let reason = req
        .reason
        .clone()
        .unwrap_or_else(|| "Task stopped by user".to_owned());
    let t = request_stop(
        svc,
        ctx,
        &cluster,
        reference,
        stop_code::USER_INITIATED,
        &reason,
    )
    .await?;
    let def = task_definitions::get_revision(svc, ctx, &t.family, t.revision).await?;
    Ok(json!({"task": to_wire(&t, ctx, def.as_ref(), false)}))
}

/// DescribeTasks' input, borrowing its strings from the body where they hold no escapes (an
/// answer of 100 tasks allocated 100 strings here before anything else).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTasksRequest<'a> {
    #[serde(borrow)]
    cluster: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tasks: Vec<gantry_aws_proto::json::Text<'a>>,
    #[serde(default)]
    include: Vec<String>,
}

pub(super) async fn describe(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let bytes = describe_serialized(svc, body, ctx).await?;
    serde_json::from_slice(&bytes).map_err(|e| EcsError::Internal(e.to_string()))
}

/// DescribeTasks, serialized: each task's member is serialized once per task revision and kept
/// in the cluster view beside the task (answers with `include: TAGS` are built each time), so an
/// answer of 100 tasks is mostly copied bytes.
pub(super) async fn describe_serialized(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Vec<u8>, EcsError> {
    // No member of this input reads `""` as absent (`wire::EMPTY_MEANS_ABSENT`), so the body is
    // read as sent.
    let req: DescribeTasksRequest<'_> = gantry_aws_proto::json::parse_body(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let with_tags = include_tags(&req.include);
    let valid = (1..=100).contains(&req.tasks.len());
    // From the cluster's in-memory view (current with every commit acknowledged before this
    // call); a task the view does not hold is read from the store. ECS looks the cluster up
    // first, then refuses an empty list in its own words.
    let serialized = matches!(with_tags, Ok(false));
    let looked = svc
        .placement
        .read_active(svc, ctx, &cluster, |view| {
            if !valid {
                return Looked::Held(Vec::new());
            }
            // Every task held with its member made (the common case): the answer is copied from
            // the members under the view's lock, touching no reference count (calls describing
            // the same tasks from both cores made those counts bounce between them).
            let ids = req.tasks.iter().map(|r| task_id_of(r));
            if serialized && let Some(answer) = view.with_serialized(ids, answer_of) {
                return Looked::Answer(answer);
            }
            Looked::Held(
                req.tasks
                    .iter()
                    .map(|r| view.task_for_describe(task_id_of(r), serialized))
                    .collect(),
            )
        })
        .await?;
    let held = match looked {
        Looked::Answer(answer) => return Ok(answer),
        Looked::Held(held) => held,
    };
    if req.tasks.is_empty() {
        return Err(EcsError::invalid("Tasks cannot be empty."));
    }
    check_len("tasks", &req.tasks, 100)?;
    let with_tags = with_tags?;
    let mut members: Vec<Arc<[u8]>> = Vec::with_capacity(req.tasks.len());
    let mut failures = Vec::new();
    let mut defs: BTreeMap<(String, u32), Option<TaskDefinition>> = BTreeMap::new();
    for (r, held) in req.tasks.iter().zip(held) {
        let (task, cell) = match held {
            Some(Held::Serialized(bytes)) => {
                members.push(bytes);
                continue;
            }
            Some(Held::Task(t, cell)) => (Some(t), Some(cell)),
            None => (
                get(svc, ctx, &cluster, r).await?.map(|v| Arc::new(v.value)),
                None,
            ),
        };
        let Some(t) = task else {
            failures.push(missing(r, |id| {
                Arn::task(&ctx.region, &ctx.account_id, &cluster, id)
            }));
            continue;
        };
        let member: Arc<[u8]> = {
            let k = (t.family.clone(), t.revision);
            if !defs.contains_key(&k) {
                let d = task_definitions::get_revision(svc, ctx, &k.0, k.1).await?;
                defs.insert(k.clone(), d);
            }
            let def = defs.get(&k).and_then(Option::as_ref);
            let bytes: Arc<[u8]> = to_wire(&t, ctx, def, with_tags)
                .to_string()
                .into_bytes()
                .into();
            if let Some(c) = cell.filter(|_| !with_tags) {
                // Another call may have filled it meanwhile, with the same bytes.
                let _ = c.set(bytes.clone());
            }
            bytes
        };
        members.push(member);
    }
    let failures = serde_json::to_vec(&failures).map_err(|e| EcsError::Internal(e.to_string()))?;
    Ok(answer_with(&failures, &members))
}

/// What DescribeTasks found in the view: its whole answer, or each task as held.
enum Looked {
    Answer(Vec<u8>),
    Held(Vec<Option<Held>>),
}

/// The answer of a DescribeTasks whose every task was found: `{"failures":[],"tasks":[M,...]}`.
fn answer_of(members: &[&[u8]]) -> Vec<u8> {
    answer_with(b"[]", members)
}

/// `{"failures":F,"tasks":[M,M,...]}`, written once into a buffer of its final size.
fn answer_with(failures: &[u8], members: &[impl AsRef<[u8]>]) -> Vec<u8> {
    const OPEN: &[u8] = b"{\"failures\":";
    const TASKS: &[u8] = b",\"tasks\":[";
    let size = OPEN.len()
        + failures.len()
        + TASKS.len()
        + members.iter().map(|m| m.as_ref().len() + 1).sum::<usize>()
        + 2;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(OPEN);
    out.extend_from_slice(failures);
    out.extend_from_slice(TASKS);
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m.as_ref());
    }
    out.extend_from_slice(b"]}");
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTasksRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
    family: Option<String>,
    started_by: Option<String>,
    service_name: Option<String>,
    desired_status: Option<String>,
    launch_type: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn list(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListTasksRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let limit = max_results(req.max_results, 100, 100)?;
    let desired = match req.desired_status.as_deref() {
        None | Some("RUNNING") => TaskStatus::Running,
        Some("PENDING") => TaskStatus::Pending,
        Some("STOPPED") => TaskStatus::Stopped,
        Some(o) => {
            return Err(EcsError::invalid(format!(
                "Invalid desiredStatus '{o}'. Valid values: RUNNING, PENDING, STOPPED."
            )));
        }
    };
    if req.started_by.is_some() && req.service_name.is_some() {
        return Err(EcsError::invalid(
            "startedBy and serviceName cannot both be given.",
        ));
    }
    active_cluster(svc, ctx, &cluster).await?;
    let instance = req.container_instance.as_deref().map(|r| {
        gantry_domain::arn::container_instance_id_from_ref(r).unwrap_or_else(|_| r.to_owned())
    });
    // Tokens hold the last ARN of the page; ARNs of one cluster sort as their ids.
    let after = match req.next_token.as_deref() {
        None | Some("") => None,
        Some(tok) => Some(
            gantry_aws_proto::pagination::decode_token(tok)
                .and_then(|arn| arn.rsplit('/').next().map(str::to_owned))
                .ok_or_else(|| EcsError::invalid("Invalid nextToken."))?,
        ),
    };
    // From the cluster's in-memory view, in id order, only until the page is full.
    let mut page: Vec<String> = svc
        .placement
        .read(svc, &ctx.region, &cluster, |view| {
            view.tasks_after(after.as_deref())
                .filter(|(_, t)| match desired {
                    TaskStatus::Pending => {
                        t.desired_status == TaskStatus::Running && t.last_status.is_pending()
                    }
                    d => t.desired_status == d,
                })
                .filter(|(_, t)| {
                    instance
                        .as_ref()
                        .is_none_or(|i| t.container_instance_id.as_ref() == Some(i))
                })
                .filter(|(_, t)| req.family.as_ref().is_none_or(|f| &t.family == f))
                .filter(|(_, t)| {
                    req.started_by
                        .as_ref()
                        .is_none_or(|s| t.started_by.as_ref() == Some(s))
                })
                .filter(|(_, t)| {
                    req.service_name
                        .as_ref()
                        .is_none_or(|s| t.service_name.as_ref() == Some(s))
                })
                .filter(|(_, t)| req.launch_type.as_ref().is_none_or(|l| &t.launch_type == l))
                .take(limit + 1)
                .map(|(id, _)| Arn::task(&ctx.region, &ctx.account_id, &cluster, id).to_string())
                .collect()
        })
        .await?;
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last()
            .map(|arn| gantry_aws_proto::pagination::encode_token(arn))
            .unwrap_or_default()
    });
    Ok(with_token(json!({"taskArns": page}), next))
}

/// A container's state as the agent reports it.
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct ContainerStateChange {
    container_name: Option<String>,
    image_digest: Option<String>,
    runtime_id: Option<String>,
    exit_code: Option<i64>,
    #[serde(default)]
    network_bindings: Option<Vec<NetworkBinding>>,
    reason: Option<String>,
    status: Option<String>,
    /// Gantry's agent reports container health here (not in the ECS model).
    health_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskStateChangeRequest {
    cluster: Option<String>,
    task: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    containers: Vec<ContainerStateChange>,
    pull_started_at: Option<f64>,
    pull_stopped_at: Option<f64>,
    execution_stopped_at: Option<f64>,
    // SubmitContainerStateChange members.
    container_name: Option<String>,
    runtime_id: Option<String>,
    exit_code: Option<i64>,
    network_bindings: Option<Vec<NetworkBinding>>,
}

/// The cluster of a task an agent reports on: the one it names, except that a platform host
/// (which runs the Fargate tasks of every cluster) names its own; the task's ARN then says.
fn report_cluster(cluster: Option<&str>, task: &str) -> Result<String, EcsError> {
    let named = cluster_name(cluster)?;
    if named != FARGATE_PLATFORM_CLUSTER {
        return Ok(named);
    }
    task.strip_prefix("arn:")
        .and_then(|_| task.split_once(":task/"))
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(c, _)| c.to_owned())
        .ok_or_else(|| EcsError::invalid("A platform host must name tasks by their ARN."))
}

fn ms(secs: Option<f64>) -> Option<u64> {
    secs.filter(|s| *s > 0.0).map(|s| (s * 1000.0) as u64)
}

fn apply_container_change(t: &mut Task, c: &ContainerStateChange) {
    let Some(name) = &c.container_name else {
        return;
    };
    let Some(target) = t.containers.iter_mut().find(|x| &x.name == name) else {
        return;
    };
    if let Some(v) = &c.runtime_id {
        target.runtime_id = Some(v.clone());
    }
    if let Some(v) = &c.image_digest {
        target.image_digest = Some(v.clone());
    }
    if let Some(v) = c.exit_code {
        target.exit_code = Some(v);
    }
    if let Some(v) = &c.network_bindings
        && (!v.is_empty() || target.network_bindings.is_empty())
    {
        target.network_bindings = v.clone();
    }
    if let Some(v) = &c.reason {
        target.reason = Some(v.clone());
    }
    if let Some(v) = &c.status
        && matches!(v.as_str(), "PENDING" | "RUNNING" | "STOPPED")
        && target.last_status != "STOPPED"
    {
        target.last_status = v.clone();
    }
    if let Some(v) = &c.health_status
        && matches!(v.as_str(), "HEALTHY" | "UNHEALTHY" | "UNKNOWN")
    {
        target.health_status = Some(v.clone());
    }
}

fn stop_code_for(reason: Option<&str>) -> &'static str {
    let r = reason.unwrap_or("");
    if r.starts_with("Cannot")
        || r.starts_with("ResourceInitializationError")
        || r.starts_with("ContainerRuntimeTimeoutError")
        || r.starts_with("TaskFailedToStart")
    {
        stop_code::TASK_FAILED_TO_START
    } else {
        stop_code::ESSENTIAL_CONTAINER_EXITED
    }
}

pub(super) async fn submit_task_state_change(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: TaskStateChangeRequest = parse(body)?;
    let Some(reference) = req.task.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("task is required."));
    };
    let cluster = report_cluster(req.cluster.as_deref(), reference)?;
    let status = match req.status.as_deref() {
        None => None,
        Some(s) => Some(
            TaskStatus::parse(s)
                .ok_or_else(|| EcsError::invalid(format!("Invalid status '{s}'.")))?,
        ),
    };
    let now = ctx.now;
    let reference = reference.to_owned();
    transition(svc, ctx, &cluster, &reference, move |t| {
        if t.last_status == TaskStatus::Stopped {
            return Ok(()); // final; late reports change nothing
        }
        for c in &req.containers {
            apply_container_change(t, c);
        }
        if let Some(v) = ms(req.pull_started_at) {
            t.pull_started_at.get_or_insert(v);
        }
        if let Some(v) = ms(req.pull_stopped_at) {
            t.pull_stopped_at.get_or_insert(v);
        }
        match status {
            Some(TaskStatus::Stopped) => {
                t.last_status = TaskStatus::Stopped;
                t.desired_status = TaskStatus::Stopped;
                t.stopped_at = Some(now);
                t.execution_stopped_at = Some(ms(req.execution_stopped_at).unwrap_or(now));
                t.stopping_at.get_or_insert(now);
                if t.stop_code.is_none() {
                    t.stop_code = Some(stop_code_for(req.reason.as_deref()).to_owned());
                    t.stopped_reason = Some(
                        req.reason
                            .clone()
                            .unwrap_or_else(|| "Essential container in task exited".to_owned()),
                    );
                }
                for c in &mut t.containers {
                    c.last_status = "STOPPED".into();
                }
            }
            Some(TaskStatus::Running) if t.last_status < TaskStatus::Running => {
                if t.desired_status == TaskStatus::Stopped {
                    t.last_status = TaskStatus::Stopping;
                } else {
                    t.last_status = TaskStatus::Running;
                }
                t.started_at.get_or_insert(now);
                t.connectivity_at.get_or_insert(now);
                t.pull_stopped_at.get_or_insert(now);
            }
            Some(s @ (TaskStatus::Pending | TaskStatus::Activating)) if t.last_status < s => {
                t.last_status = s;
                if s == TaskStatus::Pending {
                    t.pull_started_at.get_or_insert(now);
                }
            }
            _ => {}
        }
        Ok(())
    })
    .await?;
    Ok(json!({"acknowledgment": "ACK"}))
}

pub(super) async fn submit_container_state_change(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: TaskStateChangeRequest = parse(body)?;
    let Some(reference) = req.task.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("task is required."));
    };
    let cluster = report_cluster(req.cluster.as_deref(), reference)?;
    let change = ContainerStateChange {
        container_name: req.container_name.clone(),
        runtime_id: req.runtime_id.clone(),
        exit_code: req.exit_code,
        network_bindings: req.network_bindings.clone(),
        reason: req.reason.clone(),
        status: req.status.clone(),
        ..Default::default()
    };
    if change.container_name.is_none() {
        return Err(EcsError::invalid("containerName is required."));
    }
    let reference = reference.to_owned();
    transition(svc, ctx, &cluster, &reference, move |t| {
        if t.last_status != TaskStatus::Stopped {
            apply_container_change(t, &change);
        }
        Ok(())
    })
    .await?;
    Ok(json!({"acknowledgment": "ACK"}))
}
