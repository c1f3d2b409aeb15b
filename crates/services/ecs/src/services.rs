//! CreateService, UpdateService, DeleteService, DescribeServices, ListServices. The service
//! runner (`service_runner`) keeps the tasks in line with what these record.

use std::collections::BTreeMap;

use gantry_domain::Arn;
use gantry_domain::service::{
    CircuitBreaker, Deployment, DeploymentConfiguration, DeploymentStatus, RolloutState,
    SchedulingStrategy, Service, ServiceStatus,
};
use gantry_domain::tags::{Tag, validate_tags};
use gantry_domain::task::TaskStatus;
use gantry_domain::validation::is_ecs_name;
use gantry_store::{StoreExt, Txn, encode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::wire::{
    active_cluster, check_len, cluster_name, commit_with_retry, get_service, include_tags,
    max_results, missing, paginate, parse, secs, with_token,
};
use crate::{EcsError, EcsService, keys, placement, task_definitions, task_network};
use gantry_front::RequestContext;

/// A new deployment id, `ecs-svc/` and 19 digits as ECS writes them.
pub(crate) fn deployment_id(svc: &EcsService) -> String {
    let hex = svc.ids.hex32();
    let n = u64::from_str_radix(&hex[..16], 16).unwrap_or(0) % 10_000_000_000_000_000_000;
    format!("ecs-svc/{n:019}")
}

pub(crate) fn service_arn(ctx: &RequestContext, s: &Service) -> String {
    Arn::service(&ctx.region, &ctx.account_id, &s.cluster, &s.name).to_string()
}

/// Running and pending counts per deployment id, from the service's tasks.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub running: i64,
    pub pending: i64,
}

pub(crate) async fn task_counts(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<BTreeMap<String, Counts>, EcsError> {
    // From the cluster's in-memory view (current with every commit acknowledged before the
    // call): no read and decoding of every task of the cluster per call.
    svc.placement
        .read(svc, &ctx.region, cluster, |view| {
            let mut out: BTreeMap<String, Counts> = BTreeMap::new();
            for t in view.task_records().filter(|t| t.cluster == cluster) {
                let Some(d) = &t.deployment_id else { continue };
                if t.desired_status != TaskStatus::Running {
                    continue;
                }
                let c = match out.get_mut(d) {
                    Some(c) => c,
                    None => out.entry(d.clone()).or_default(),
                };
                if t.last_status == TaskStatus::Running {
                    c.running += 1;
                } else if t.last_status.is_pending() {
                    c.pending += 1;
                }
            }
            out
        })
        .await
}

fn deployment_to_wire(d: &Deployment, ctx: &RequestContext, counts: Counts) -> Value {
    let mut v = json!({
        "id": d.id,
        "status": d.status.as_str(),
        "taskDefinition": Arn::task_definition(&ctx.region, &ctx.account_id, &d.family, d.revision).to_string(),
        "desiredCount": d.desired_count,
        "pendingCount": counts.pending,
        "runningCount": counts.running,
        "failedTasks": d.failed_tasks,
        "createdAt": secs(d.created_at),
        "updatedAt": secs(d.updated_at),
        "launchType": d.launch_type,
        "rolloutState": d.rollout_state.as_str(),
    });
    if let Some(r) = &d.rollout_state_reason {
        v["rolloutStateReason"] = json!(r);
    }
    if let Some(n) = &d.network_configuration {
        v["networkConfiguration"] = n.clone();
    }
    v
}

pub(crate) fn to_wire(
    s: &Service,
    ctx: &RequestContext,
    counts: &BTreeMap<String, Counts>,
    with_tags: bool,
) -> Value {
    let deployments: Vec<Value> = s
        .deployments
        .iter()
        .map(|d| deployment_to_wire(d, ctx, counts.get(&d.id).copied().unwrap_or_default()))
        .collect();
    let ids: Vec<&str> = s
        .deployments
        .iter()
        .map(|d| d.id.as_str())
        .chain(s.task_sets.iter().map(|t| t.id.as_str()))
        .collect();
    let (running, pending) = ids.iter().fold((0, 0), |(r, p), id| {
        let c = counts.get(*id).copied().unwrap_or_default();
        (r + c.running, p + c.pending)
    });
    let mut v = json!({
        "serviceArn": service_arn(ctx, s),
        "serviceName": s.name,
        "clusterArn": Arn::cluster(&ctx.region, &ctx.account_id, &s.cluster).to_string(),
        "loadBalancers": s.load_balancers,
        "serviceRegistries": [],
        "status": s.status.as_str(),
        "desiredCount": s.desired_count,
        "runningCount": running,
        "pendingCount": pending,
        "deploymentConfiguration": s.deployment_configuration,
        "deployments": deployments,
        "events": s.events.iter().map(|e| json!({"id": e.id, "createdAt": secs(e.created_at), "message": e.message})).collect::<Vec<_>>(),
        "createdAt": secs(s.created_at),
        "placementConstraints": s.placement_constraints,
        "placementStrategy": s.placement_strategy,
        "schedulingStrategy": s.scheduling_strategy.as_str(),
        "deploymentController": {"type": s.deployment_controller.as_deref().unwrap_or("ECS")},
        "createdBy": s.created_by,
        "enableECSManagedTags": s.enable_ecs_managed_tags,
        "propagateTags": s.propagate_tags.clone().unwrap_or_else(|| "NONE".into()),
        "enableExecuteCommand": s.enable_execute_command,
    });
    if let Some(p) = s.primary() {
        v["taskDefinition"] = json!(
            Arn::task_definition(&ctx.region, &ctx.account_id, &p.family, p.revision).to_string()
        );
    }
    if let Some(g) = s.health_check_grace_period_seconds {
        v["healthCheckGracePeriodSeconds"] = json!(g);
    }
    if let Some(r) = &s.role_arn {
        v["roleArn"] = json!(r);
    }
    if let Some(n) = &s.network_configuration {
        v["networkConfiguration"] = n.clone();
    }
    if s.capacity_provider_strategy.is_empty() {
        v["launchType"] = json!(s.launch_type);
    } else {
        v["capacityProviderStrategy"] = json!(s.capacity_provider_strategy);
    }
    if let Some(p) = &s.platform_version {
        v["platformVersion"] = json!(p);
        v["platformFamily"] = json!("Linux");
    }
    if s.uses_task_sets() {
        v["taskSets"] = json!(
            s.task_sets
                .iter()
                .map(|t| crate::task_sets::to_wire(
                    ctx,
                    s,
                    t,
                    counts.get(&t.id).copied().unwrap_or_default()
                ))
                .collect::<Vec<_>>()
        );
        if let Some(p) = s.task_sets.iter().find(|t| t.status == "PRIMARY") {
            v["taskDefinition"] = json!(
                Arn::task_definition(&ctx.region, &ctx.account_id, &p.family, p.revision)
                    .to_string()
            );
        }
    }
    if with_tags {
        v["tags"] = json!(s.tags);
    }
    v
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct DeploymentConfigurationInput {
    maximum_percent: Option<i64>,
    minimum_healthy_percent: Option<i64>,
    deployment_circuit_breaker: Option<CircuitBreaker>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

fn deployment_configuration(
    input: Option<&DeploymentConfigurationInput>,
    current: DeploymentConfiguration,
    strategy: SchedulingStrategy,
) -> Result<DeploymentConfiguration, EcsError> {
    let mut c = current;
    if let Some(i) = input {
        if let Some(v) = i.maximum_percent {
            c.maximum_percent = v;
        }
        if let Some(v) = i.minimum_healthy_percent {
            c.minimum_healthy_percent = v;
        }
        if let Some(b) = &i.deployment_circuit_breaker {
            c.deployment_circuit_breaker = Some(b.clone());
        }
        for (k, v) in &i.other {
            if matches!(
                k.as_str(),
                "alarms"
                    | "strategy"
                    | "bakeTimeInMinutes"
                    | "lifecycleHooks"
                    | "linearConfiguration"
                    | "canaryConfiguration"
            ) {
                c.other.insert(k.clone(), v.clone());
            }
        }
    }
    if !(0..=100).contains(&c.minimum_healthy_percent) {
        return Err(EcsError::invalid(format!(
            "minimumHealthyPercent must be between 0 and 100, but was {}.",
            c.minimum_healthy_percent
        )));
    }
    match strategy {
        SchedulingStrategy::Replica if c.maximum_percent < 100 => Err(EcsError::invalid(format!(
            "maximumPercent must be at least 100 for REPLICA services, but was {}.",
            c.maximum_percent
        ))),
        SchedulingStrategy::Daemon if c.maximum_percent != 100 => Err(EcsError::invalid(
            "The maximumPercent of a DAEMON service must be 100.".to_owned(),
        )),
        _ => Ok(c),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ServiceRequest {
    cluster: Option<String>,
    service_name: Option<String>,
    /// UpdateService/DeleteService name the service here.
    service: Option<String>,
    task_definition: Option<String>,
    desired_count: Option<i64>,
    launch_type: Option<String>,
    #[serde(default)]
    capacity_provider_strategy: Vec<gantry_domain::cluster::CapacityProviderStrategyItem>,
    deployment_configuration: Option<DeploymentConfigurationInput>,
    placement_constraints: Option<Vec<Value>>,
    placement_strategy: Option<Vec<Value>>,
    network_configuration: Option<Value>,
    health_check_grace_period_seconds: Option<i64>,
    role: Option<String>,
    scheduling_strategy: Option<String>,
    deployment_controller: Option<Value>,
    load_balancers: Option<Vec<Value>>,
    #[serde(default)]
    tags: Vec<Tag>,
    enable_ecs_managed_tags: Option<bool>,
    propagate_tags: Option<String>,
    enable_execute_command: Option<bool>,
    force_new_deployment: Option<bool>,
    force: Option<bool>,
    platform_version: Option<String>,
}

/// CreateService's `role`: an ARN as given, a bare name (with or without a path) as the ARN of
/// that role in the caller's account, as ECS expands it.
fn role_arn(ctx: &RequestContext, role: Option<&str>) -> Option<String> {
    let role = role.filter(|r| !r.is_empty())?;
    if role.starts_with("arn:") {
        return Some(role.to_owned());
    }
    Some(format!(
        "arn:aws:iam::{}:role/{}",
        ctx.account_id,
        role.trim_start_matches('/')
    ))
}

fn check_common(req: &ServiceRequest) -> Result<(), EcsError> {
    crate::wire::refuse_execute_command(req.enable_execute_command)?;
    if let Some(lt) = req.launch_type.as_deref() {
        match lt {
            "EC2" | "EXTERNAL" | "FARGATE" => {}
            "MANAGED_INSTANCES" => {
                return Err(EcsError::Unsupported(format!(
                    "The launch type {lt} is not supported by this endpoint yet; use EC2."
                )));
            }
            o => return Err(EcsError::invalid(format!("Invalid launchType '{o}'."))),
        }
    }
    if !req.capacity_provider_strategy.is_empty()
        && req.scheduling_strategy.as_deref() == Some("DAEMON")
    {
        return Err(EcsError::invalid(
            "A capacity provider strategy is not supported with the DAEMON scheduling strategy.",
        ));
    }
    if let Some(dc) = &req.deployment_controller {
        let t = dc.get("type").and_then(Value::as_str).unwrap_or("ECS");
        if !matches!(t, "ECS" | "EXTERNAL" | "CODE_DEPLOY") {
            return Err(EcsError::invalid(format!(
                "Invalid deploymentController type '{t}'. Valid values: ECS, CODE_DEPLOY, EXTERNAL."
            )));
        }
    }
    if let Some(c) = req.desired_count
        && c < 0
    {
        return Err(EcsError::invalid(format!(
            "desiredCount must not be negative, but was {c}."
        )));
    }
    if let Some(g) = req.health_check_grace_period_seconds
        && !(0..=2_147_483_647).contains(&g)
    {
        return Err(EcsError::invalid(
            "healthCheckGracePeriodSeconds must not be negative.",
        ));
    }
    if let Some(p) = req.propagate_tags.as_deref()
        && !matches!(p, "TASK_DEFINITION" | "SERVICE" | "NONE")
    {
        return Err(EcsError::invalid(format!(
            "Invalid propagateTags '{p}'. Valid values: TASK_DEFINITION, SERVICE, NONE."
        )));
    }
    for lb in req.load_balancers.iter().flatten() {
        let has = |k: &str| lb.get(k).is_some_and(|v| !v.is_null());
        if !(has("targetGroupArn") || has("loadBalancerName"))
            || !has("containerName")
            || !has("containerPort")
        {
            return Err(EcsError::invalid(
                "A load balancer needs targetGroupArn (or loadBalancerName), containerName and containerPort.",
            ));
        }
    }
    placement::validate(
        req.placement_constraints.as_deref().unwrap_or(&[]),
        req.placement_strategy.as_deref().unwrap_or(&[]),
    )?;
    if req.launch_type.as_deref() == Some("FARGATE")
        || (!req.capacity_provider_strategy.is_empty()
            && req
                .capacity_provider_strategy
                .iter()
                .all(|i| gantry_domain::capacity::is_fargate_provider(&i.capacity_provider)))
    {
        if req
            .placement_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        {
            return Err(EcsError::invalid(
                "Task placement constraints are not supported with the FARGATE launch type.",
            ));
        }
        if req
            .placement_strategy
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        {
            return Err(EcsError::invalid(
                "Task placement strategies are not supported with the FARGATE launch type.",
            ));
        }
        if req.scheduling_strategy.as_deref() == Some("DAEMON") {
            return Err(EcsError::invalid(
                "The DAEMON scheduling strategy is not supported with the FARGATE launch type.",
            ));
        }
    }
    validate_tags(&req.tags)?;
    Ok(())
}

fn new_deployment(
    svc: &EcsService,
    ctx: &RequestContext,
    family: &str,
    revision: u32,
    desired: i64,
    launch_type: &str,
    network_configuration: Option<&Value>,
) -> Deployment {
    Deployment {
        id: deployment_id(svc),
        status: DeploymentStatus::Primary,
        family: family.to_owned(),
        revision,
        desired_count: desired,
        failed_tasks: 0,
        reached_running: false,
        created_at: ctx.now,
        updated_at: ctx.now,
        rollout_state: RolloutState::InProgress,
        rollout_state_reason: Some("ECS deployment in progress.".to_owned()),
        launch_type: launch_type.to_owned(),
        network_configuration: network_configuration.cloned(),
    }
}

pub(super) async fn create(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ServiceRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(name) = req.service_name.clone().filter(|n| !n.is_empty()) else {
        return Err(EcsError::invalid("serviceName is required."));
    };
    if !is_ecs_name(&name, 255) {
        return Err(EcsError::invalid(format!(
            "Service name '{name}' is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
        )));
    }
    check_common(&req)?;
    if req
        .deployment_controller
        .as_ref()
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        == Some("EXTERNAL")
    {
        return create_external(svc, ctx, &req, cluster, name).await;
    }
    let code_deploy = req
        .deployment_controller
        .as_ref()
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        == Some("CODE_DEPLOY");
    if code_deploy {
        check_code_deploy(&req)?;
    }
    let strategy = match req.scheduling_strategy.as_deref() {
        None | Some("REPLICA") => SchedulingStrategy::Replica,
        Some("DAEMON") => SchedulingStrategy::Daemon,
        Some(o) => {
            return Err(EcsError::invalid(format!(
                "Invalid schedulingStrategy '{o}'. Valid values: REPLICA, DAEMON."
            )));
        }
    };
    if strategy == SchedulingStrategy::Daemon
        && req
            .placement_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(EcsError::invalid(
            "Placement strategies are not supported with the DAEMON scheduling strategy.",
        ));
    }
    let desired = match strategy {
        SchedulingStrategy::Replica => req
            .desired_count
            .ok_or_else(|| EcsError::invalid("desiredCount is required for a REPLICA service."))?,
        SchedulingStrategy::Daemon => 0,
    };
    let Some(td_ref) = req.task_definition.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("taskDefinition is required."));
    };
    let cluster_record = active_cluster(svc, ctx, &cluster).await?.value;
    // A strategy (the request's, else the cluster's default when no launch type is given) runs
    // the service on its providers' capacity: Fargate's, the only providers so far.
    let cp_strategy = crate::capacity_providers::effective_strategy(
        &cluster_record,
        req.launch_type.as_deref(),
        &req.capacity_provider_strategy,
    )?
    .unwrap_or_default();
    let td = task_definitions::resolve(svc, ctx, td_ref)
        .await?
        .filter(|t| t.value.status == gantry_domain::task_definition::TaskDefinitionStatus::Active)
        .ok_or_else(|| EcsError::client("TaskDefinition not found."))?
        .value;
    let config = deployment_configuration(
        req.deployment_configuration.as_ref(),
        DeploymentConfiguration::defaults(strategy),
        strategy,
    )?;
    crate::deployment_strategy::check(&config, req.load_balancers.as_deref().unwrap_or(&[]))?;
    if let (Some(groups), Some(lbs)) = (&svc.target_groups, &req.load_balancers) {
        crate::deployment_strategy::check_load_balancers(groups.as_ref(), &ctx.region, lbs).await?;
    }
    let pools = crate::capacity_providers::pools_of(svc, ctx, &cp_strategy).await?;
    let fargate_strategy = !cp_strategy.is_empty() && pools.iter().all(Option::is_none);
    let launch_type = if cp_strategy.is_empty() {
        req.launch_type.clone().unwrap_or_else(|| "EC2".into())
    } else if fargate_strategy {
        "FARGATE".to_owned()
    } else {
        "EC2".to_owned()
    };
    if fargate_strategy
        && (req
            .placement_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty())
            || req
                .placement_strategy
                .as_ref()
                .is_some_and(|c| !c.is_empty()))
    {
        return Err(EcsError::invalid(
            "Task placement constraints and strategies are not supported with Fargate capacity providers.",
        ));
    }
    crate::tasks::check_platform_version(Some(&launch_type), req.platform_version.as_deref())?;
    if launch_type == "FARGATE" {
        crate::tasks::check_fargate_launch(&td, &Default::default())?;
    }
    // awsvpc: subnets and groups must exist and belong together, as for RunTask.
    task_network::prepare(
        svc,
        ctx,
        &td,
        req.network_configuration.as_ref(),
        &launch_type,
    )
    .await?;
    let network_configuration = task_network::parse_config(req.network_configuration.as_ref())?
        .map(|c| task_network::normalized(&c));
    if let (Some(groups), Some(lbs)) = (&svc.target_groups, &req.load_balancers) {
        crate::service_lb::check_target_types(
            groups.as_ref(),
            &ctx.region,
            lbs,
            td.effective_network_mode(),
        )
        .await?;
    }
    let key = keys::service(&ctx.region, &cluster, &name);
    let service = commit_with_retry(svc.store.as_ref(), || async {
        let existing = svc.store.get_typed::<Service>(&key).await?;
        if let Some(e) = &existing
            && e.value.status != ServiceStatus::Inactive
        {
            return Err(EcsError::invalid("Creation of service was not idempotent."));
        }
        let s = Service {
            name: name.clone(),
            cluster: cluster.clone(),
            status: ServiceStatus::Active,
            desired_count: desired,
            scheduling_strategy: strategy,
            launch_type: launch_type.clone(),
            deployment_configuration: config.clone(),
            placement_constraints: req.placement_constraints.clone().unwrap_or_default(),
            placement_strategy: req.placement_strategy.clone().unwrap_or_default(),
            load_balancers: req.load_balancers.clone().unwrap_or_default(),
            health_check_grace_period_seconds: req.health_check_grace_period_seconds,
            role_arn: role_arn(ctx, req.role.as_deref()),
            network_configuration: network_configuration.clone(),
            tags: req.tags.clone(),
            propagate_tags: req.propagate_tags.clone(),
            enable_ecs_managed_tags: req.enable_ecs_managed_tags.unwrap_or(false),
            enable_execute_command: req.enable_execute_command.unwrap_or(false),
            created_at: ctx.now,
            created_by: ctx.caller_arn(),
            deployments: if code_deploy {
                Vec::new()
            } else {
                vec![new_deployment(
                    svc,
                    ctx,
                    &td.family,
                    td.revision,
                    desired,
                    &launch_type,
                    network_configuration.as_ref(),
                )]
            },
            events: vec![],
            throttle_failures: 0,
            throttle_until: 0,
            shift: None,
            production_target_group: None,
            last_rollback: None,
            deployment_controller: code_deploy.then(|| "CODE_DEPLOY".to_owned()),
            // CODE_DEPLOY: the service's first task set, PRIMARY, with its settings; CodeDeploy
            // adds the replacement ones.
            task_sets: if code_deploy {
                vec![gantry_domain::service::TaskSet {
                    id: deployment_id(svc),
                    external_id: None,
                    family: td.family.clone(),
                    revision: td.revision,
                    launch_type: launch_type.clone(),
                    status: "PRIMARY".into(),
                    scale: 100.0,
                    load_balancers: req.load_balancers.clone().unwrap_or_default(),
                    network_configuration: network_configuration.clone(),
                    platform_version: (launch_type == "FARGATE").then(|| {
                        req.platform_version
                            .clone()
                            .unwrap_or_else(|| "LATEST".to_owned())
                    }),
                    capacity_provider_strategy: cp_strategy.clone(),
                    stability_status: "STABILIZING".into(),
                    stability_status_at: ctx.now,
                    created_at: ctx.now,
                    updated_at: ctx.now,
                }]
            } else {
                Vec::new()
            },
            version: 1,
            capacity_provider_strategy: cp_strategy.clone(),
            platform_version: (launch_type == "FARGATE").then(|| {
                req.platform_version
                    .clone()
                    .unwrap_or_else(|| "LATEST".to_owned())
            }),
        };
        let txn = Txn::new()
            .require_revision(&key, existing.map_or(0, |e| e.revision))
            .put(&key, encode(&key, &s)?);
        Ok((txn, s))
    })
    .await?;
    crate::service_deployments::record(svc, ctx, None, &service).await?;
    Ok(json!({"service": to_wire(&service, ctx, &BTreeMap::new(), true)}))
}

/// CreateService with the CODE_DEPLOY deployment controller: one load balancer target group
/// (CodeDeploy's deployment group names the other one), no ECS deployment strategy.
fn check_code_deploy(req: &ServiceRequest) -> Result<(), EcsError> {
    let lbs = req.load_balancers.as_deref().unwrap_or(&[]);
    if lbs.is_empty() {
        return Err(EcsError::invalid(
            "A service with the CODE_DEPLOY deployment controller requires a load balancer: set loadBalancers with one targetGroupArn.",
        ));
    }
    if lbs.len() > 1 {
        return Err(EcsError::invalid(
            "A service with the CODE_DEPLOY deployment controller takes one load balancer target group; its deployment group names the second.",
        ));
    }
    if lbs
        .iter()
        .any(|lb| lb.get("targetGroupArn").is_none_or(Value::is_null))
    {
        return Err(EcsError::invalid(
            "A service with the CODE_DEPLOY deployment controller requires a targetGroupArn in its load balancer.",
        ));
    }
    if lbs
        .iter()
        .any(|lb| lb.get("advancedConfiguration").is_some())
    {
        return Err(EcsError::invalid(
            "advancedConfiguration is only supported with the ECS deployment controller.",
        ));
    }
    if req.scheduling_strategy.as_deref() == Some("DAEMON") {
        return Err(EcsError::invalid(
            "The DAEMON scheduling strategy is not supported with the CODE_DEPLOY deployment controller.",
        ));
    }
    if let Some(c) = &req.deployment_configuration
        && c.other.keys().any(|k| {
            matches!(
                k.as_str(),
                "strategy"
                    | "bakeTimeInMinutes"
                    | "lifecycleHooks"
                    | "linearConfiguration"
                    | "canaryConfiguration"
                    | "alarms"
            )
        })
    {
        return Err(EcsError::invalid(
            "deploymentConfiguration strategies, alarms and lifecycle hooks are only supported with the ECS deployment controller; a CODE_DEPLOY service takes its deployment configuration from CodeDeploy.",
        ));
    }
    Ok(())
}

/// CreateService with the EXTERNAL deployment controller: no task definition, load balancers or
/// network configuration of its own (its task sets carry them), no deployments.
async fn create_external(
    svc: &EcsService,
    ctx: &RequestContext,
    req: &ServiceRequest,
    cluster: String,
    name: String,
) -> Result<Value, EcsError> {
    let refuse = |what: &str| {
        Err(EcsError::invalid(format!(
            "{what} can't be specified for a service with the EXTERNAL deployment controller; set it on its task sets."
        )))
    };
    if req
        .task_definition
        .as_deref()
        .is_some_and(|t| !t.is_empty())
    {
        return refuse("taskDefinition");
    }
    if req.load_balancers.as_ref().is_some_and(|l| !l.is_empty()) {
        return refuse("loadBalancers");
    }
    if req.network_configuration.is_some() {
        return refuse("networkConfiguration");
    }
    if !req.capacity_provider_strategy.is_empty() {
        return refuse("capacityProviderStrategy");
    }
    if req.scheduling_strategy.as_deref() == Some("DAEMON") {
        return Err(EcsError::invalid(
            "The DAEMON scheduling strategy is not supported with the EXTERNAL deployment controller.",
        ));
    }
    let desired = req
        .desired_count
        .ok_or_else(|| EcsError::invalid("desiredCount is required for a REPLICA service."))?;
    active_cluster(svc, ctx, &cluster).await?;
    let config = deployment_configuration(
        req.deployment_configuration.as_ref(),
        DeploymentConfiguration::defaults(SchedulingStrategy::Replica),
        SchedulingStrategy::Replica,
    )?;
    if config.strategy().shifts_traffic() || !config.other.is_empty() {
        return Err(EcsError::invalid(
            "deploymentConfiguration strategies, alarms and lifecycle hooks are only supported with the ECS deployment controller.",
        ));
    }
    let launch_type = req.launch_type.clone().unwrap_or_else(|| "EC2".to_owned());
    let key = keys::service(&ctx.region, &cluster, &name);
    let service = commit_with_retry(svc.store.as_ref(), || async {
        let existing = svc.store.get_typed::<Service>(&key).await?;
        if let Some(e) = &existing
            && e.value.status != ServiceStatus::Inactive
        {
            return Err(EcsError::invalid("Creation of service was not idempotent."));
        }
        let s = Service {
            name: name.clone(),
            cluster: cluster.clone(),
            status: ServiceStatus::Active,
            desired_count: desired,
            scheduling_strategy: SchedulingStrategy::Replica,
            launch_type: launch_type.clone(),
            deployment_configuration: config.clone(),
            placement_constraints: req.placement_constraints.clone().unwrap_or_default(),
            placement_strategy: req.placement_strategy.clone().unwrap_or_default(),
            load_balancers: Vec::new(),
            health_check_grace_period_seconds: req.health_check_grace_period_seconds,
            role_arn: role_arn(ctx, req.role.as_deref()),
            network_configuration: None,
            tags: req.tags.clone(),
            propagate_tags: req.propagate_tags.clone(),
            enable_ecs_managed_tags: req.enable_ecs_managed_tags.unwrap_or(false),
            enable_execute_command: req.enable_execute_command.unwrap_or(false),
            created_at: ctx.now,
            created_by: ctx.caller_arn(),
            deployments: Vec::new(),
            events: vec![],
            throttle_failures: 0,
            throttle_until: 0,
            shift: None,
            production_target_group: None,
            last_rollback: None,
            deployment_controller: Some("EXTERNAL".into()),
            task_sets: Vec::new(),
            version: 1,
            capacity_provider_strategy: Vec::new(),
            platform_version: None,
        };
        let txn = Txn::new()
            .require_revision(&key, existing.map_or(0, |e| e.revision))
            .put(&key, encode(&key, &s)?);
        Ok((txn, s))
    })
    .await?;
    Ok(json!({"service": to_wire(&service, ctx, &BTreeMap::new(), true)}))
}

pub(super) async fn update(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ServiceRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(reference) = req.service.clone().filter(|n| !n.is_empty()) else {
        return Err(EcsError::invalid("service is required."));
    };
    check_common(&req)?;
    active_cluster(svc, ctx, &cluster).await?;
    let new_td = match req.task_definition.as_deref().filter(|s| !s.is_empty()) {
        Some(r) => Some(
            task_definitions::resolve(svc, ctx, r)
                .await?
                .filter(|t| {
                    t.value.status == gantry_domain::task_definition::TaskDefinitionStatus::Active
                })
                .ok_or_else(|| EcsError::client("TaskDefinition not found."))?
                .value,
        ),
        None => None,
    };
    let service = commit_with_retry(svc.store.as_ref(), || async {
        let Some(cur) = get_service(svc, ctx, &cluster, &reference).await? else {
            return Err(EcsError::ServiceNotFound);
        };
        if cur.value.status != ServiceStatus::Active {
            return Err(EcsError::ServiceNotActive);
        }
        let mut s = cur.value.clone();
        if s.is_code_deploy()
            && (new_td.is_some()
                || req.load_balancers.is_some()
                || req.network_configuration.is_some()
                || req.platform_version.is_some()
                || !req.capacity_provider_strategy.is_empty()
                || req.force_new_deployment == Some(true))
        {
            return Err(EcsError::invalid(
                "Unable to update task definition on services with a CODE_DEPLOY deployment controller. Use AWS CodeDeploy to trigger a new deployment.",
            ));
        }
        if s.uses_task_sets() {
            if new_td.is_some()
                || req.load_balancers.is_some()
                || req.network_configuration.is_some()
                || req.force_new_deployment == Some(true)
                || req.deployment_configuration.is_some()
            {
                return Err(EcsError::invalid(format!(
                    "Only desiredCount, placement and tags can be updated on a service with the {} deployment controller.",
                    s.deployment_controller.as_deref().unwrap_or("EXTERNAL")
                )));
            }
            if let Some(c) = req.desired_count {
                s.desired_count = c;
            }
            s.version += 1;
            let key = keys::service(&ctx.region, &cluster, &s.name);
            let txn = Txn::new()
                .require_revision(&key, cur.revision)
                .put(&key, encode(&key, &s)?);
            return Ok((txn, s));
        }
        if let Some(c) = req.desired_count
            && s.scheduling_strategy == SchedulingStrategy::Replica
        {
            s.desired_count = c;
        }
        s.deployment_configuration = deployment_configuration(
            req.deployment_configuration.as_ref(),
            s.deployment_configuration.clone(),
            s.scheduling_strategy,
        )?;
        let mut redeploy = req.force_new_deployment.unwrap_or(false);
        if let Some(pc) = &req.placement_constraints {
            redeploy |= *pc != s.placement_constraints;
            s.placement_constraints = pc.clone();
        }
        if let Some(ps) = &req.placement_strategy {
            redeploy |= *ps != s.placement_strategy;
            s.placement_strategy = ps.clone();
        }
        if let Some(n) = &req.network_configuration {
            let n = task_network::parse_config(Some(n))?.map(|c| task_network::normalized(&c));
            redeploy |= s.network_configuration != n;
            s.network_configuration = n;
        }
        if let Some(g) = req.health_check_grace_period_seconds {
            s.health_check_grace_period_seconds = Some(g);
        }
        if let Some(lbs) = &req.load_balancers {
            redeploy |= *lbs != s.load_balancers;
            s.load_balancers = lbs.clone();
        }
        if let Some(e) = req.enable_execute_command {
            s.enable_execute_command = e;
        }
        if let Some(p) = &req.propagate_tags {
            s.propagate_tags = Some(p.clone());
        }
        if !req.capacity_provider_strategy.is_empty() {
            let c = active_cluster(svc, ctx, &cluster).await?.value;
            crate::capacity_providers::effective_strategy(
                &c,
                None,
                &req.capacity_provider_strategy,
            )?;
            let pools =
                crate::capacity_providers::pools_of(svc, ctx, &req.capacity_provider_strategy)
                    .await?;
            let wanted = if pools.iter().all(Option::is_none) {
                "FARGATE"
            } else {
                "EC2"
            };
            if s.launch_type != wanted {
                return Err(EcsError::invalid(format!(
                    "Updating a service from {} capacity to {wanted} capacity is not supported; create a new service.",
                    s.launch_type
                )));
            }
            redeploy |= s.capacity_provider_strategy != req.capacity_provider_strategy;
            s.capacity_provider_strategy = req.capacity_provider_strategy.clone();
        }
        if let Some(v) = &req.platform_version {
            crate::tasks::check_platform_version(Some(&s.launch_type), Some(v))?;
            redeploy |= s.platform_version.as_ref() != Some(v);
            s.platform_version = Some(v.clone());
        }
        let (family, revision) = match (&new_td, s.primary()) {
            (Some(td), _) => (td.family.clone(), td.revision),
            (None, Some(p)) => (p.family.clone(), p.revision),
            (None, None) => return Err(EcsError::invalid("The service has no task definition.")),
        };
        if new_td.is_some() || req.network_configuration.is_some() || req.load_balancers.is_some() {
            // The (new) task definition and the (new) network configuration must fit together.
            let td = match &new_td {
                Some(td) => td.clone(),
                None => task_definitions::get_revision(svc, ctx, &family, revision)
                    .await?
                    .ok_or_else(|| EcsError::client("TaskDefinition not found."))?,
            };
            if s.launch_type == "FARGATE" {
                crate::tasks::check_fargate_launch(&td, &Default::default())?;
            }
            task_network::prepare(
                svc,
                ctx,
                &td,
                s.network_configuration.as_ref(),
                &s.launch_type,
            )
            .await?;
            if let Some(groups) = &svc.target_groups {
                crate::service_lb::check_target_types(
                    groups.as_ref(),
                    &ctx.region,
                    &s.load_balancers,
                    td.effective_network_mode(),
                )
                .await?;
            }
        }
        if s.primary()
            .is_none_or(|p| p.family != family || p.revision != revision)
        {
            redeploy = true;
        }
        if req.deployment_configuration.is_some() || req.load_balancers.is_some() {
            crate::deployment_strategy::check(&s.deployment_configuration, &s.load_balancers)?;
            if let Some(groups) = &svc.target_groups {
                crate::deployment_strategy::check_load_balancers(
                    groups.as_ref(),
                    &ctx.region,
                    &s.load_balancers,
                )
                .await?;
            }
        }
        if redeploy && let Some(sh) = &cur.value.shift {
            return Err(EcsError::invalid(format!(
                "The service {} has a deployment in progress (deployment {}, lifecycle stage {}). Wait for it to complete or stop it with StopServiceDeployment before starting another.",
                s.name,
                sh.deployment_id,
                sh.stage.as_str()
            )));
        }
        let desired = s.desired_count;
        if redeploy {
            for d in &mut s.deployments {
                if d.status == DeploymentStatus::Primary {
                    d.status = DeploymentStatus::Active;
                    d.updated_at = ctx.now;
                }
            }
            let launch_type = s.launch_type.clone();
            s.deployments.insert(
                0,
                new_deployment(
                    svc,
                    ctx,
                    &family,
                    revision,
                    desired,
                    &launch_type,
                    s.network_configuration.as_ref(),
                ),
            );
        } else if let Some(p) = s
            .deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
        {
            p.desired_count = desired;
            p.updated_at = ctx.now;
        }
        s.version += 1;
        let key = keys::service(&ctx.region, &cluster, &s.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &s)?);
        Ok((txn, s))
    })
    .await?;
    crate::service_deployments::record(svc, ctx, None, &service).await?;
    let counts = task_counts(svc, ctx, &cluster).await?;
    Ok(json!({"service": to_wire(&service, ctx, &counts, false)}))
}

pub(super) async fn delete(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ServiceRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(reference) = req.service.clone().filter(|n| !n.is_empty()) else {
        return Err(EcsError::invalid("service is required."));
    };
    active_cluster(svc, ctx, &cluster).await?;
    let force = req.force.unwrap_or(false);
    let service = commit_with_retry(svc.store.as_ref(), || async {
        let Some(cur) = get_service(svc, ctx, &cluster, &reference).await? else {
            return Err(EcsError::ServiceNotFound);
        };
        if cur.value.status != ServiceStatus::Active {
            return Err(EcsError::ServiceNotActive);
        }
        if !force
            && cur.value.desired_count > 0
            && cur.value.scheduling_strategy == SchedulingStrategy::Replica
        {
            return Err(EcsError::invalid(
                "The service cannot be stopped while it is scaled above 0.",
            ));
        }
        let mut s = cur.value.clone();
        s.status = ServiceStatus::Draining;
        s.desired_count = 0;
        for d in &mut s.deployments {
            d.desired_count = 0;
        }
        s.version += 1;
        let key = keys::service(&ctx.region, &cluster, &s.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &s)?);
        Ok((txn, s))
    })
    .await?;
    let counts = task_counts(svc, ctx, &cluster).await?;
    Ok(json!({"service": to_wire(&service, ctx, &counts, false)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    cluster: Option<String>,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

pub(super) async fn describe(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DescribeRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    check_len("services", &req.services, 10)?;
    let with_tags = include_tags(&req.include)?;
    active_cluster(svc, ctx, &cluster).await?;
    let counts = task_counts(svc, ctx, &cluster).await?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for r in &req.services {
        match get_service(svc, ctx, &cluster, r).await? {
            Some(s) => out.push(to_wire(&s.value, ctx, &counts, with_tags)),
            // ECS names an unknown service given by name without its cluster.
            None => failures.push(missing(r, |n| {
                Arn::new("ecs", &ctx.region, &ctx.account_id, format!("service/{n}"))
            })),
        }
    }
    Ok(json!({"services": out, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    cluster: Option<String>,
    launch_type: Option<String>,
    scheduling_strategy: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn list(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let limit = max_results(req.max_results, 100, 10)?;
    active_cluster(svc, ctx, &cluster).await?;
    let all = svc
        .store
        .scan_all_typed::<Service>(&keys::services(&ctx.region, &cluster))
        .await?;
    let mut items: Vec<(String, String)> = all
        .into_iter()
        .map(|s| s.value)
        .filter(|s| s.status == ServiceStatus::Active)
        .filter(|s| req.launch_type.as_ref().is_none_or(|l| &s.launch_type == l))
        .filter(|s| {
            req.scheduling_strategy
                .as_deref()
                .is_none_or(|x| s.scheduling_strategy.as_str() == x)
        })
        .map(|s| {
            let arn = service_arn(ctx, &s);
            (arn.clone(), arn)
        })
        .collect();
    items.sort();
    let (page, next) = paginate(items, req.next_token.as_deref(), limit)?;
    Ok(with_token(json!({"serviceArns": page}), next))
}
