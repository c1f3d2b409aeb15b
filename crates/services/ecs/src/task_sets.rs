//! Task sets of services with the EXTERNAL deployment controller: CreateTaskSet, UpdateTaskSet,
//! DeleteTaskSet, DescribeTaskSets, UpdateServicePrimaryTaskSet. CodeDeploy calls the same
//! operations on services with the CODE_DEPLOY controller (`*_as_code_deploy`). A task set lives
//! on its service's record; the service runner keeps `computedDesiredCount` tasks of each one
//! running and registered in the task set's target groups.

use std::collections::BTreeMap;

use gantry_domain::Arn;
use gantry_domain::service::{Service, ServiceStatus, TaskSet};
use gantry_front::RequestContext;
use gantry_store::{Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::services::{Counts, deployment_id, service_arn, task_counts};
use crate::wire::{active_cluster, cluster_name, commit_with_retry, get_service, parse, secs};
use crate::{EcsError, EcsService, keys, task_definitions, task_network};

const EXTERNAL_ONLY: &str = "Amazon ECS only supports task set management on services configured to use external deployment controllers.";

pub(crate) fn task_set_arn(ctx: &RequestContext, s: &Service, id: &str) -> String {
    Arn::new(
        "ecs",
        &ctx.region,
        &ctx.account_id,
        format!("task-set/{}/{}/{id}", s.cluster, s.name),
    )
    .to_string()
}

pub(crate) fn to_wire(ctx: &RequestContext, s: &Service, ts: &TaskSet, counts: Counts) -> Value {
    let mut v = json!({
        "id": ts.id,
        "taskSetArn": task_set_arn(ctx, s, &ts.id),
        "serviceArn": service_arn(ctx, s),
        "clusterArn": Arn::cluster(&ctx.region, &ctx.account_id, &s.cluster).to_string(),
        "status": ts.status,
        "taskDefinition": Arn::task_definition(&ctx.region, &ctx.account_id, &ts.family, ts.revision).to_string(),
        "computedDesiredCount": ts.computed_desired(s.desired_count),
        "pendingCount": counts.pending,
        "runningCount": counts.running,
        "createdAt": secs(ts.created_at),
        "updatedAt": secs(ts.updated_at),
        "loadBalancers": ts.load_balancers,
        "serviceRegistries": [],
        "scale": {"value": ts.scale, "unit": "PERCENT"},
        "stabilityStatus": ts.stability_status,
        "stabilityStatusAt": secs(ts.stability_status_at),
    });
    if let Some(e) = &ts.external_id {
        v["externalId"] = json!(e);
        if s.is_code_deploy() {
            v["startedBy"] = json!("CODE_DEPLOY");
        }
    }
    if let Some(n) = &ts.network_configuration {
        v["networkConfiguration"] = n.clone();
    }
    if ts.capacity_provider_strategy.is_empty() {
        v["launchType"] = json!(ts.launch_type);
    } else {
        v["capacityProviderStrategy"] = json!(ts.capacity_provider_strategy);
    }
    if let Some(p) = &ts.platform_version {
        v["platformVersion"] = json!(p);
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Scale {
    value: Option<f64>,
    unit: Option<String>,
}

fn scale_of(scale: Option<&Scale>) -> Result<f64, EcsError> {
    let Some(s) = scale else { return Ok(100.0) };
    if let Some(u) = s.unit.as_deref()
        && u != "PERCENT"
    {
        return Err(EcsError::invalid(format!(
            "Invalid scale unit {u}. Valid values: PERCENT."
        )));
    }
    let v = s.value.unwrap_or(100.0);
    if !(0.0..=100.0).contains(&v) {
        return Err(EcsError::invalid(format!(
            "The scale value must be between 0 and 100, but was {v}."
        )));
    }
    Ok(v)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Request {
    cluster: Option<String>,
    service: Option<String>,
    task_set: Option<String>,
    #[serde(default)]
    task_sets: Vec<String>,
    primary_task_set: Option<String>,
    external_id: Option<String>,
    task_definition: Option<String>,
    network_configuration: Option<Value>,
    load_balancers: Option<Vec<Value>>,
    service_registries: Option<Vec<Value>>,
    launch_type: Option<String>,
    #[serde(default)]
    capacity_provider_strategy: Vec<gantry_domain::cluster::CapacityProviderStrategyItem>,
    platform_version: Option<String>,
    scale: Option<Scale>,
    force: Option<bool>,
    /// Set when CodeDeploy calls (CODE_DEPLOY services), never from the wire.
    #[serde(skip)]
    code_deploy: bool,
}

fn parse_as(body: &[u8], code_deploy: bool) -> Result<Request, EcsError> {
    let mut req: Request = parse(body)?;
    req.code_deploy = code_deploy;
    Ok(req)
}

/// The EXTERNAL service a request names.
async fn external_service(
    svc: &EcsService,
    ctx: &RequestContext,
    req: &Request,
) -> Result<(String, gantry_store::Versioned<Service>), EcsError> {
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(reference) = req.service.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("service is required."));
    };
    // An unknown cluster is reported before the service, as ECS does.
    active_cluster(svc, ctx, &cluster).await?;
    let s = get_service(svc, ctx, &cluster, reference)
        .await?
        .ok_or(EcsError::ServiceNotFound)?;
    if s.value.status != ServiceStatus::Active {
        return Err(EcsError::ServiceNotActive);
    }
    let allowed = if req.code_deploy {
        s.value.is_code_deploy()
    } else {
        s.value.is_external()
    };
    if !allowed {
        return Err(EcsError::invalid(EXTERNAL_ONLY));
    }
    Ok((cluster, s))
}

/// The index of the task set `r` (id or ARN) names.
fn find(s: &Service, r: &str) -> Result<usize, EcsError> {
    let id = r
        .rsplit_once("/ecs-svc/")
        .map_or(r.to_owned(), |(_, n)| format!("ecs-svc/{n}"));
    s.task_sets.iter().position(|t| t.id == id).ok_or_else(|| {
        EcsError::TaskSetNotFound(format!("The specified task set {r} does not exist."))
    })
}

async fn counts_of(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<BTreeMap<String, Counts>, EcsError> {
    task_counts(svc, ctx, cluster).await
}

/// Changes one service record with compare-and-swap; `change` returns the task set to answer.
async fn change<F>(
    svc: &EcsService,
    ctx: &RequestContext,
    req: &Request,
    change: F,
) -> Result<Value, EcsError>
where
    F: Fn(&mut Service) -> Result<String, EcsError>,
{
    let (cluster, _) = external_service(svc, ctx, req).await?;
    let (s, id) = commit_with_retry(svc.store.as_ref(), || async {
        let (_, cur) = external_service(svc, ctx, req).await?;
        let mut s = cur.value.clone();
        let id = change(&mut s)?;
        s.version += 1;
        let key = keys::service(&ctx.region, &cluster, &s.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &s)?);
        Ok((txn, (s, id)))
    })
    .await?;
    let counts = counts_of(svc, ctx, &cluster).await?;
    let ts = s
        .task_sets
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| EcsError::Internal(format!("task set {id} vanished")))?;
    Ok(json!({"taskSet": to_wire(ctx, &s, ts, counts.get(&id).copied().unwrap_or_default())}))
}

pub(super) async fn create(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    create_of(svc, parse_as(body, false)?, ctx).await
}

pub(super) async fn create_as_code_deploy(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    create_of(svc, parse_as(body, true)?, ctx).await
}

async fn create_of(
    svc: &EcsService,
    req: Request,
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let (_, cur) = external_service(svc, ctx, &req).await?;
    if req
        .service_registries
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        return Err(EcsError::Unsupported(
            "serviceRegistries are not supported by this endpoint.".into(),
        ));
    }
    let Some(td_ref) = req.task_definition.as_deref().filter(|t| !t.is_empty()) else {
        return Err(EcsError::invalid("taskDefinition is required."));
    };
    let scale = scale_of(req.scale.as_ref())?;
    let td = task_definitions::resolve(svc, ctx, td_ref)
        .await?
        .filter(|t| t.value.status == gantry_domain::task_definition::TaskDefinitionStatus::Active)
        .ok_or_else(|| EcsError::client("TaskDefinition not found."))?
        .value;
    if !req.capacity_provider_strategy.is_empty() {
        return Err(EcsError::Unsupported(
            "A capacity provider strategy on a task set is not supported by this endpoint; use launchType.".into(),
        ));
    }
    let launch_type = req
        .launch_type
        .clone()
        .unwrap_or_else(|| cur.value.launch_type.clone());
    if !matches!(launch_type.as_str(), "EC2" | "FARGATE") {
        return Err(EcsError::invalid(format!(
            "Invalid launchType '{launch_type}' for a task set."
        )));
    }
    if launch_type == "FARGATE" {
        crate::tasks::check_fargate_launch(&td, &Default::default())?;
    }
    crate::tasks::check_platform_version(Some(&launch_type), req.platform_version.as_deref())?;
    let network = task_network::parse_config(req.network_configuration.as_ref())?
        .map(|c| task_network::normalized(&c));
    task_network::prepare(svc, ctx, &td, network.as_ref(), &launch_type).await?;
    let lbs = req.load_balancers.clone().unwrap_or_default();
    for lb in &lbs {
        let has = |k: &str| lb.get(k).is_some_and(|v| !v.is_null());
        if !has("targetGroupArn") || !has("containerName") || !has("containerPort") {
            return Err(EcsError::invalid(
                "A load balancer needs targetGroupArn, containerName and containerPort.",
            ));
        }
    }
    if let Some(groups) = &svc.target_groups {
        crate::service_lb::check_target_types(
            groups.as_ref(),
            &ctx.region,
            &lbs,
            td.effective_network_mode(),
        )
        .await?;
    }
    let id = deployment_id(svc);
    let now = ctx.now;
    change(svc, ctx, &req, |s| {
        s.task_sets.push(TaskSet {
            id: id.clone(),
            external_id: req.external_id.clone(),
            family: td.family.clone(),
            revision: td.revision,
            launch_type: launch_type.clone(),
            status: "ACTIVE".into(),
            scale,
            load_balancers: lbs.clone(),
            network_configuration: network.clone(),
            platform_version: (launch_type == "FARGATE").then(|| {
                req.platform_version
                    .clone()
                    .unwrap_or_else(|| "LATEST".to_owned())
            }),
            capacity_provider_strategy: Vec::new(),
            stability_status: "STABILIZING".into(),
            stability_status_at: now,
            created_at: now,
            updated_at: now,
        });
        Ok(id.clone())
    })
    .await
}

pub(super) async fn update(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    update_of(svc, parse_as(body, false)?, ctx).await
}

pub(super) async fn update_as_code_deploy(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    update_of(svc, parse_as(body, true)?, ctx).await
}

async fn update_of(
    svc: &EcsService,
    req: Request,
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let Some(r) = req.task_set.clone().filter(|t| !t.is_empty()) else {
        return Err(EcsError::invalid("taskSet is required."));
    };
    let Some(scale) = req.scale.as_ref() else {
        return Err(EcsError::invalid("scale is required."));
    };
    let scale = scale_of(Some(scale))?;
    let now = ctx.now;
    change(svc, ctx, &req, |s| {
        let i = find(s, &r)?;
        let ts = &mut s.task_sets[i];
        if ts.status == "DRAINING" {
            return Err(EcsError::invalid(format!(
                "The task set {r} is being deleted and cannot be updated."
            )));
        }
        ts.scale = scale;
        ts.updated_at = now;
        Ok(ts.id.clone())
    })
    .await
}

pub(super) async fn delete(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    delete_of(svc, parse_as(body, false)?, ctx).await
}

pub(super) async fn delete_as_code_deploy(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    delete_of(svc, parse_as(body, true)?, ctx).await
}

async fn delete_of(
    svc: &EcsService,
    req: Request,
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let Some(r) = req.task_set.clone().filter(|t| !t.is_empty()) else {
        return Err(EcsError::invalid("taskSet is required."));
    };
    let force = req.force.unwrap_or(false);
    let now = ctx.now;
    change(svc, ctx, &req, |s| {
        let i = find(s, &r)?;
        let ts = &mut s.task_sets[i];
        if ts.status == "PRIMARY" && !force {
            return Err(EcsError::invalid(format!(
                "Cannot delete the PRIMARY task set {r} unless force is true."
            )));
        }
        ts.status = "DRAINING".into();
        ts.updated_at = now;
        Ok(ts.id.clone())
    })
    .await
}

pub(super) async fn update_primary(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    update_primary_of(svc, parse_as(body, false)?, ctx).await
}

pub(super) async fn update_primary_as_code_deploy(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    update_primary_of(svc, parse_as(body, true)?, ctx).await
}

async fn update_primary_of(
    svc: &EcsService,
    req: Request,
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let Some(r) = req.primary_task_set.clone().filter(|t| !t.is_empty()) else {
        return Err(EcsError::invalid("primaryTaskSet is required."));
    };
    let now = ctx.now;
    change(svc, ctx, &req, |s| {
        let i = find(s, &r)?;
        if s.task_sets[i].status == "DRAINING" {
            return Err(EcsError::invalid(format!(
                "The task set {r} is being deleted and cannot become PRIMARY."
            )));
        }
        for (j, ts) in s.task_sets.iter_mut().enumerate() {
            let want = if j == i {
                "PRIMARY"
            } else if ts.status == "PRIMARY" {
                "ACTIVE"
            } else {
                continue;
            };
            ts.status = want.into();
            ts.updated_at = now;
        }
        Ok(s.task_sets[i].id.clone())
    })
    .await
}

pub(super) async fn describe(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    describe_of(svc, parse_as(body, false)?, ctx).await
}

pub(super) async fn describe_as_code_deploy(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    describe_of(svc, parse_as(body, true)?, ctx).await
}

async fn describe_of(
    svc: &EcsService,
    req: Request,
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let (cluster, s) = external_service(svc, ctx, &req).await?;
    let s = s.value;
    let counts = counts_of(svc, ctx, &cluster).await?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    if req.task_sets.is_empty() {
        for ts in &s.task_sets {
            out.push(to_wire(
                ctx,
                &s,
                ts,
                counts.get(&ts.id).copied().unwrap_or_default(),
            ));
        }
    }
    for r in &req.task_sets {
        match find(&s, r) {
            Ok(i) => {
                let ts = &s.task_sets[i];
                out.push(to_wire(
                    ctx,
                    &s,
                    ts,
                    counts.get(&ts.id).copied().unwrap_or_default(),
                ));
            }
            Err(_) => failures.push(crate::wire::failure(r, "MISSING", None)),
        }
    }
    Ok(json!({"taskSets": out, "failures": failures}))
}
