//! CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster,
//! UpdateClusterSettings.

use gantry_domain::Arn;
use gantry_domain::cluster::{
    CapacityProviderStrategyItem, Cluster, ClusterSetting, ClusterStatus, apply_settings,
    validate_cluster_name, validate_settings,
};
use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
use gantry_domain::tags::{Tag, validate_tags};
use gantry_store::{StoreExt, Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{
    active_cluster, cluster_name, commit_with_retry, failure, max_results, paginate, parse,
    with_token,
};
use crate::{EcsError, EcsService, keys};
use gantry_front::RequestContext;

/// What a cluster holds, for its counts.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ClusterCounts {
    pub registered_instances: i64,
    pub running_tasks: i64,
    pub pending_tasks: i64,
    pub active_services: i64,
}

pub(super) async fn counts(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<ClusterCounts, EcsError> {
    let instances = svc
        .store
        .scan_all_typed::<ContainerInstance>(&keys::container_instances(&ctx.region, cluster))
        .await?;
    let mut c = ClusterCounts::default();
    let tasks = svc
        .store
        .scan_all_typed::<gantry_domain::task::Task>(&keys::tasks(&ctx.region, cluster))
        .await?;
    for t in tasks {
        if t.value.last_status.is_pending() {
            c.pending_tasks += 1;
        } else if t.value.last_status.is_running() {
            c.running_tasks += 1;
        }
    }
    let services = svc
        .store
        .scan_all_typed::<gantry_domain::service::Service>(&keys::services(&ctx.region, cluster))
        .await?;
    c.active_services = services
        .iter()
        .filter(|s| s.value.status != gantry_domain::service::ServiceStatus::Inactive)
        .count() as i64;
    for i in instances {
        if matches!(
            i.value.status,
            ContainerInstanceStatus::Active | ContainerInstanceStatus::Draining
        ) {
            c.registered_instances += 1;
        }
    }
    Ok(c)
}

/// Which optional parts of a cluster to include.
#[derive(Debug, Default, Clone, Copy)]
struct Include {
    settings: bool,
    statistics: bool,
    tags: bool,
    configurations: bool,
    attachments: bool,
}

fn parse_include(include: &[String]) -> Result<Include, EcsError> {
    let mut inc = Include::default();
    for i in include {
        match i.as_str() {
            "SETTINGS" => inc.settings = true,
            "STATISTICS" => inc.statistics = true,
            "TAGS" => inc.tags = true,
            "CONFIGURATIONS" => inc.configurations = true,
            "ATTACHMENTS" => inc.attachments = true,
            other => {
                return Err(EcsError::invalid(format!(
                    "Invalid include value '{other}'. Valid values: ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS, TAGS."
                )));
            }
        }
    }
    Ok(inc)
}

const ALL: Include = Include {
    settings: true,
    statistics: false,
    tags: true,
    configurations: true,
    attachments: false,
};

/// A cluster as UpdateCluster and PutClusterCapacityProviders answer it.
pub(crate) async fn wire_of(
    svc: &EcsService,
    ctx: &RequestContext,
    c: &Cluster,
) -> Result<Value, EcsError> {
    let counts = counts(svc, ctx, &c.name).await?;
    Ok(to_wire(c, ctx, counts, ALL))
}

fn to_wire(c: &Cluster, ctx: &RequestContext, counts: ClusterCounts, inc: Include) -> Value {
    let mut v = json!({
        "clusterArn": Arn::cluster(&ctx.region, &ctx.account_id, &c.name).to_string(),
        "clusterName": c.name,
        "status": c.status.as_str(),
        "registeredContainerInstancesCount": counts.registered_instances,
        "runningTasksCount": counts.running_tasks,
        "pendingTasksCount": counts.pending_tasks,
        "activeServicesCount": counts.active_services,
        "statistics": [],
        "capacityProviders": c.capacity_providers,
        "defaultCapacityProviderStrategy": c.default_capacity_provider_strategy,
    });
    // ECS leaves `tags` out of a cluster that has none, even when they were asked for.
    if inc.tags && !c.tags.is_empty() {
        v["tags"] = json!(c.tags);
    }
    if inc.settings {
        v["settings"] = json!(c.settings);
    }
    if inc.configurations {
        if let Some(conf) = &c.configuration {
            v["configuration"] = conf.clone();
        }
        if let Some(sc) = &c.service_connect_defaults {
            v["serviceConnectDefaults"] = sc.clone();
        }
    }
    if inc.statistics {
        v["statistics"] = json!([
            {"name": "runningEC2TasksCount", "value": counts.running_tasks.to_string()},
            {"name": "runningFargateTasksCount", "value": "0"},
            {"name": "pendingEC2TasksCount", "value": counts.pending_tasks.to_string()},
            {"name": "pendingFargateTasksCount", "value": "0"},
            {"name": "activeEC2ServiceCount", "value": counts.active_services.to_string()},
            {"name": "activeFargateServiceCount", "value": "0"},
            {"name": "drainingEC2ServiceCount", "value": "0"},
            {"name": "drainingFargateServiceCount", "value": "0"},
        ]);
    }
    if inc.attachments {
        v["attachments"] = json!([]);
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateClusterRequest {
    cluster_name: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    settings: Vec<ClusterSetting>,
    configuration: Option<Value>,
    #[serde(default)]
    capacity_providers: Vec<String>,
    #[serde(default)]
    default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    service_connect_defaults: Option<Value>,
}

pub(super) async fn create(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: CreateClusterRequest = parse(body)?;
    let name = req.cluster_name.unwrap_or_else(|| "default".to_owned());
    validate_cluster_name(&name)?;
    validate_tags(&req.tags)?;
    validate_settings(&req.settings)?;
    crate::capacity_providers::check_providers_exist(svc, ctx, &req.capacity_providers).await?;
    gantry_domain::capacity::validate_strategy(
        &req.default_capacity_provider_strategy,
        &req.capacity_providers,
    )?;
    // A new cluster without its own containerInsights setting takes the account setting.
    let insights = crate::account_settings::effective_value(svc, ctx, "containerInsights").await?;
    let key = keys::cluster(&ctx.region, &name);
    let cluster = commit_with_retry(svc.store.as_ref(), || async {
        let existing = svc.store.get_typed::<Cluster>(&key).await?;
        if let Some(c) = &existing
            && c.value.status == ClusterStatus::Active
        {
            // ECS answers an existing ACTIVE cluster as if it had been created.
            return Ok((Txn::new(), c.value.clone()));
        }
        let mut settings = vec![ClusterSetting {
            name: "containerInsights".into(),
            value: insights.clone(),
        }];
        apply_settings(&mut settings, &req.settings);
        let cluster = Cluster {
            name: name.clone(),
            status: ClusterStatus::Active,
            created_at: ctx.now,
            tags: req.tags.clone(),
            settings,
            configuration: req.configuration.clone(),
            service_connect_defaults: req.service_connect_defaults.clone(),
            capacity_providers: req.capacity_providers.clone(),
            default_capacity_provider_strategy: req.default_capacity_provider_strategy.clone(),
        };
        let txn = Txn::new()
            .require_revision(&key, existing.map_or(0, |e| e.revision))
            .put(&key, encode(&key, &cluster)?);
        Ok((txn, cluster))
    })
    .await?;
    let counts = counts(svc, ctx, &name).await?;
    Ok(json!({"cluster": to_wire(&cluster, ctx, counts, ALL)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeClustersRequest {
    clusters: Option<Vec<String>>,
    #[serde(default)]
    include: Vec<String>,
}

pub(super) async fn describe(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DescribeClustersRequest = parse(body)?;
    let inc = parse_include(&req.include)?;
    let refs = match req.clusters {
        Some(c) if !c.is_empty() => c,
        _ => vec!["default".to_owned()],
    };
    if refs.len() > 100 {
        return Err(EcsError::invalid(
            "At most 100 clusters can be described at once.",
        ));
    }
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for r in &refs {
        let name = match cluster_name(Some(r)) {
            Ok(n) => n,
            Err(_) => {
                failures.push(failure(r, "MISSING", None));
                continue;
            }
        };
        match svc
            .store
            .get_typed::<Cluster>(&keys::cluster(&ctx.region, &name))
            .await?
        {
            Some(c) => {
                let counts = counts(svc, ctx, &name).await?;
                clusters.push(to_wire(&c.value, ctx, counts, inc));
            }
            None => failures.push(failure(
                &Arn::cluster(&ctx.region, &ctx.account_id, &name).to_string(),
                "MISSING",
                None,
            )),
        }
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListClustersRequest {
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn list(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListClustersRequest = parse(body)?;
    let limit = max_results(req.max_results, 100, 100)?;
    let all = svc
        .store
        .scan_all_typed::<Cluster>(&keys::clusters(&ctx.region))
        .await?;
    let mut arns: Vec<(String, String)> = all
        .into_iter()
        .filter(|c| c.value.status == ClusterStatus::Active)
        .map(|c| {
            let arn = Arn::cluster(&ctx.region, &ctx.account_id, &c.value.name).to_string();
            (arn.clone(), arn)
        })
        .collect();
    arns.sort();
    let (page, next) = paginate(arns, req.next_token.as_deref(), limit)?;
    Ok(with_token(json!({"clusterArns": page}), next))
}

#[derive(Deserialize)]
struct ClusterRef {
    cluster: Option<String>,
}

pub(super) async fn delete(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ClusterRef = parse(body)?;
    let Some(r) = req.cluster.as_deref() else {
        return Err(EcsError::invalid("cluster is required."));
    };
    let name = cluster_name(Some(r))?;
    let key = keys::cluster(&ctx.region, &name);
    let cluster = commit_with_retry(svc.store.as_ref(), || async {
        let current = active_cluster(svc, ctx, &name).await?;
        let counts = counts(svc, ctx, &name).await?;
        if counts.registered_instances > 0 {
            return Err(EcsError::ClusterContainsContainerInstances);
        }
        if counts.active_services > 0 {
            return Err(EcsError::ClusterContainsServices);
        }
        if counts.running_tasks + counts.pending_tasks > 0 {
            return Err(EcsError::ClusterContainsTasks);
        }
        let mut c = current.value.clone();
        c.status = ClusterStatus::Inactive;
        let txn = Txn::new()
            .require_revision(&key, current.revision)
            .put(&key, encode(&key, &c)?);
        Ok((txn, c))
    })
    .await?;
    Ok(json!({"cluster": to_wire(&cluster, ctx, ClusterCounts::default(), ALL)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateClusterRequest {
    cluster: Option<String>,
    settings: Option<Vec<ClusterSetting>>,
    configuration: Option<Value>,
    service_connect_defaults: Option<Value>,
}

async fn apply_update(
    svc: &EcsService,
    ctx: &RequestContext,
    req: UpdateClusterRequest,
) -> Result<Value, EcsError> {
    let Some(r) = req.cluster.as_deref() else {
        return Err(EcsError::invalid("cluster is required."));
    };
    let name = cluster_name(Some(r))?;
    if let Some(s) = &req.settings {
        validate_settings(s)?;
    }
    let key = keys::cluster(&ctx.region, &name);
    let cluster = commit_with_retry(svc.store.as_ref(), || async {
        let current = active_cluster(svc, ctx, &name).await?;
        let mut c = current.value.clone();
        if let Some(s) = &req.settings {
            apply_settings(&mut c.settings, s);
        }
        if let Some(conf) = &req.configuration {
            c.configuration = Some(conf.clone());
        }
        if let Some(sc) = &req.service_connect_defaults {
            c.service_connect_defaults = Some(sc.clone());
        }
        let txn = Txn::new()
            .require_revision(&key, current.revision)
            .put(&key, encode(&key, &c)?);
        Ok((txn, c))
    })
    .await?;
    let counts = counts(svc, ctx, &name).await?;
    Ok(json!({"cluster": to_wire(&cluster, ctx, counts, ALL)}))
}

pub(super) async fn update(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    apply_update(svc, ctx, parse(body)?).await
}

pub(super) async fn update_settings(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: UpdateClusterRequest = parse(body)?;
    if req.settings.is_none() {
        return Err(EcsError::invalid("settings is required."));
    }
    apply_update(
        svc,
        ctx,
        UpdateClusterRequest {
            configuration: None,
            service_connect_defaults: None,
            ..req
        },
    )
    .await
}
