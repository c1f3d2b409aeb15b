//! Capacity providers: the built-in FARGATE and FARGATE_SPOT, DescribeCapacityProviders,
//! PutClusterCapacityProviders, and how RunTask and services choose a strategy (the request's,
//! else the cluster's default) and check it.

use gantry_domain::Arn;
use gantry_domain::capacity::{
    CapacityProvider, FARGATE, FARGATE_SPOT, ProviderStatus, is_fargate_provider,
    normalize_group_provider, pool_of_group_arn, require_weight, validate_provider_name,
    validate_strategy,
};
use gantry_domain::cluster::{CapacityProviderStrategyItem, Cluster};
use gantry_domain::service::{Service, ServiceStatus};
use gantry_domain::tags::{Tag, validate_tags};
use gantry_domain::task::{Task, TaskStatus};
use gantry_store::{StoreExt, Txn, Versioned, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{
    active_cluster, cluster_name, commit_with_retry, failure, max_results, paginate, parse,
    with_token,
};
use crate::{EcsError, EcsService, keys};
use gantry_front::RequestContext;

/// The wire form of a built-in provider.
fn builtin_wire(ctx: &RequestContext, name: &str) -> Value {
    json!({
        "capacityProviderArn": provider_arn(ctx, name),
        "name": name,
        "status": "ACTIVE",
        "type": name,
        "tags": [],
    })
}

fn provider_arn(ctx: &RequestContext, name: &str) -> String {
    Arn::new(
        "ecs",
        &ctx.region,
        &ctx.account_id,
        format!("capacity-provider/{name}"),
    )
    .to_string()
}

/// The wire form of a host-pool provider.
fn to_wire(ctx: &RequestContext, p: &CapacityProvider, with_tags: bool) -> Value {
    let mut v = json!({
        "capacityProviderArn": provider_arn(ctx, &p.name),
        "name": p.name,
        "status": match p.status { ProviderStatus::Active => "ACTIVE", ProviderStatus::Inactive => "INACTIVE" },
        "type": "EC2_AUTOSCALING",
        "autoScalingGroupProvider": p.auto_scaling_group_provider,
        "updateStatus": p.update_status,
        "tags": if with_tags { json!(p.tags) } else { json!([]) },
    });
    if let Some(r) = &p.update_status_reason {
        v["updateStatusReason"] = json!(r);
    }
    v
}

/// A stored provider by name or ARN.
pub(crate) async fn get(
    svc: &EcsService,
    ctx: &RequestContext,
    reference: &str,
) -> Result<Option<Versioned<CapacityProvider>>, EcsError> {
    let name = reference.rsplit('/').next().unwrap_or(reference);
    Ok(svc
        .store
        .get_typed::<CapacityProvider>(&keys::capacity_provider(&ctx.region, name))
        .await?)
}

/// The ACTIVE host-pool providers of the region by pool name: an instance started with
/// `gantry agent --pool NAME` belongs to the provider whose Auto Scaling group ARN names NAME.
pub(crate) async fn providers_by_pool(
    svc: &EcsService,
    ctx: &RequestContext,
) -> Result<std::collections::BTreeMap<String, String>, EcsError> {
    Ok(svc
        .store
        .scan_all_typed::<CapacityProvider>(&keys::capacity_providers(&ctx.region))
        .await?
        .into_iter()
        .filter(|p| p.value.status == ProviderStatus::Active)
        .map(|p| (p.value.pool, p.value.name))
        .collect())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    #[serde(default)]
    capacity_providers: Option<Vec<String>>,
    #[serde(default)]
    include: Vec<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// DescribeCapacityProviders: FARGATE, FARGATE_SPOT and the account's host pools; unknown names
/// in `failures[]` (MISSING).
pub(super) async fn describe(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DescribeRequest = parse(body)?;
    let mut with_tags = false;
    for i in &req.include {
        if i != "TAGS" {
            return Err(EcsError::invalid(format!(
                "Invalid include value '{i}'. Valid values: TAGS."
            )));
        }
        with_tags = true;
    }
    match req.capacity_providers.filter(|c| !c.is_empty()) {
        Some(names) => {
            let mut out = Vec::new();
            let mut failures = Vec::new();
            for n in &names {
                let name = n.rsplit('/').next().unwrap_or(n);
                if is_fargate_provider(name) {
                    out.push(builtin_wire(ctx, name));
                } else if let Some(p) = get(svc, ctx, n).await? {
                    out.push(to_wire(ctx, &p.value, with_tags));
                } else {
                    let arn = if n.starts_with("arn:") {
                        n.clone()
                    } else {
                        provider_arn(ctx, n)
                    };
                    failures.push(failure(&arn, "MISSING", None));
                }
            }
            Ok(json!({"capacityProviders": out, "failures": failures}))
        }
        None => {
            let limit = max_results(req.max_results, 10, 10)?;
            let mut all: Vec<(String, Value)> = [FARGATE, FARGATE_SPOT]
                .iter()
                .map(|n| (n.to_string(), builtin_wire(ctx, n)))
                .collect();
            for p in svc
                .store
                .scan_all_typed::<CapacityProvider>(&keys::capacity_providers(&ctx.region))
                .await?
            {
                if p.value.status == ProviderStatus::Active {
                    all.push((p.value.name.clone(), to_wire(ctx, &p.value, with_tags)));
                }
            }
            let (page, next) = paginate(all, req.next_token.as_deref(), limit)?;
            Ok(with_token(
                json!({"capacityProviders": page, "failures": []}),
                next,
            ))
        }
    }
}

/// Checks that every named provider exists: a built-in or an ACTIVE host pool.
pub(crate) async fn check_providers_exist(
    svc: &EcsService,
    ctx: &RequestContext,
    names: &[String],
) -> Result<(), EcsError> {
    for cp in names {
        if is_fargate_provider(cp) {
            continue;
        }
        if !get(svc, ctx, cp)
            .await?
            .is_some_and(|p| p.value.status == ProviderStatus::Active)
        {
            return Err(EcsError::invalid(format!(
                "The specified capacity provider '{cp}' does not exist."
            )));
        }
    }
    Ok(())
}

/// The pool of each host-pool provider of a strategy (`None` for the Fargate providers).
pub(crate) async fn pools_of(
    svc: &EcsService,
    ctx: &RequestContext,
    strategy: &[CapacityProviderStrategyItem],
) -> Result<Vec<Option<String>>, EcsError> {
    let mut out = Vec::with_capacity(strategy.len());
    for item in strategy {
        if is_fargate_provider(&item.capacity_provider) {
            out.push(None);
            continue;
        }
        match get(svc, ctx, &item.capacity_provider).await? {
            Some(p) if p.value.status == ProviderStatus::Active => out.push(Some(p.value.pool)),
            _ => {
                return Err(EcsError::invalid(format!(
                    "The specified capacity provider '{}' does not exist.",
                    item.capacity_provider
                )));
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    name: Option<String>,
    cluster: Option<String>,
    auto_scaling_group_provider: Option<Value>,
    managed_instances_provider: Option<Value>,
    #[serde(default)]
    tags: Vec<Tag>,
}

/// CreateCapacityProvider: a host pool (`autoScalingGroupProvider`; the ARN's
/// `autoScalingGroupName/NAME` is the pool `gantry agent --pool NAME` joins).
pub(super) async fn create(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: CreateRequest = parse(body)?;
    let Some(name) = req.name.clone().filter(|n| !n.is_empty()) else {
        return Err(EcsError::invalid("name is required."));
    };
    if req.managed_instances_provider.is_some() || req.cluster.is_some() {
        return Err(EcsError::Unsupported(
            "Managed instances capacity providers are not supported by this endpoint; use autoScalingGroupProvider (a host pool).".into(),
        ));
    }
    validate_provider_name(&name)?;
    validate_tags(&req.tags)?;
    let Some(group) = req.auto_scaling_group_provider.as_ref() else {
        return Err(EcsError::invalid("autoScalingGroupProvider is required."));
    };
    let arn = group
        .get("autoScalingGroupArn")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(pool) = pool_of_group_arn(arn) else {
        return Err(EcsError::invalid(format!(
            "The specified Auto Scaling group ARN '{arn}' is invalid: it must be arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:ID:autoScalingGroupName/NAME, where NAME is the pool its instances join (gantry agent --pool NAME)."
        )));
    };
    let pool = pool.to_owned();
    let provider = normalize_group_provider(group, None)?;
    let key = keys::capacity_provider(&ctx.region, &name);
    let created = commit_with_retry(svc.store.as_ref(), || async {
        let existing = svc.store.get_typed::<CapacityProvider>(&key).await?;
        if existing
            .as_ref()
            .is_some_and(|e| e.value.status == ProviderStatus::Active)
        {
            return Err(EcsError::client(
                "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.",
            ));
        }
        let others = svc
            .store
            .scan_all_typed::<CapacityProvider>(&keys::capacity_providers(&ctx.region))
            .await?;
        if others
            .iter()
            .any(|o| o.value.status == ProviderStatus::Active && o.value.pool == pool)
        {
            return Err(EcsError::client(format!(
                "The specified Auto Scaling group ARN is already being used by another capacity provider (pool {pool})."
            )));
        }
        let p = CapacityProvider {
            name: name.clone(),
            status: ProviderStatus::Active,
            auto_scaling_group_provider: provider.clone(),
            pool: pool.clone(),
            update_status: "CREATE_COMPLETE".to_owned(),
            update_status_reason: None,
            tags: req.tags.clone(),
            created_at: ctx.now,
        };
        let txn = Txn::new()
            .require_revision(&key, existing.map_or(0, |e| e.revision))
            .put(&key, encode(&key, &p)?);
        Ok((txn, p))
    })
    .await?;
    Ok(json!({"capacityProvider": to_wire(ctx, &created, true)}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UpdateRequest {
    name: Option<String>,
    cluster: Option<String>,
    auto_scaling_group_provider: Option<Value>,
    managed_instances_provider: Option<Value>,
}

/// UpdateCapacityProvider: managed scaling, termination protection and draining (stored; the
/// scaling itself belongs to auto scaling).
pub(super) async fn update(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: UpdateRequest = parse(body)?;
    let Some(name) = req.name.clone().filter(|n| !n.is_empty()) else {
        return Err(EcsError::invalid("name is required."));
    };
    if req.managed_instances_provider.is_some() || req.cluster.is_some() {
        return Err(EcsError::Unsupported(
            "Managed instances capacity providers are not supported by this endpoint.".into(),
        ));
    }
    if is_fargate_provider(&name) {
        return Err(EcsError::invalid(format!(
            "The capacity provider {name} is managed by AWS and cannot be updated."
        )));
    }
    let input = req.auto_scaling_group_provider.clone().unwrap_or_default();
    if input.get("autoScalingGroupArn").is_some() {
        return Err(EcsError::invalid(
            "The Auto Scaling group of a capacity provider cannot be changed.",
        ));
    }
    let updated = commit_with_retry(svc.store.as_ref(), || async {
        let Some(cur) = get(svc, ctx, &name)
            .await?
            .filter(|c| c.value.status == ProviderStatus::Active)
        else {
            return Err(EcsError::invalid(format!(
                "The specified capacity provider '{name}' does not exist."
            )));
        };
        let mut p = cur.value.clone();
        p.auto_scaling_group_provider =
            normalize_group_provider(&input, Some(&p.auto_scaling_group_provider))?;
        p.update_status = "UPDATE_COMPLETE".to_owned();
        p.update_status_reason = None;
        let key = keys::capacity_provider(&ctx.region, &p.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &p)?);
        Ok((txn, p))
    })
    .await?;
    Ok(json!({"capacityProvider": to_wire(ctx, &updated, false)}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeleteRequest {
    capacity_provider: Option<String>,
}

/// DeleteCapacityProvider: INACTIVE once no cluster has it; while one does, ECS's answer: the
/// provider stays ACTIVE with `updateStatus` DELETE_FAILED and a reason naming the cluster
/// (remove it from the clusters' providers, and so from their strategies, first).
pub(super) async fn delete(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DeleteRequest = parse(body)?;
    let Some(reference) = req.capacity_provider.clone().filter(|n| !n.is_empty()) else {
        return Err(EcsError::invalid("capacityProvider is required."));
    };
    let name = reference
        .rsplit('/')
        .next()
        .unwrap_or(&reference)
        .to_owned();
    if is_fargate_provider(&name) {
        return Err(EcsError::invalid(format!(
            "The capacity provider {name} is managed by AWS and cannot be deleted."
        )));
    }
    let mut associated = None;
    for c in svc
        .store
        .scan_all_typed::<Cluster>(&keys::clusters(&ctx.region))
        .await?
    {
        if c.value.status == gantry_domain::cluster::ClusterStatus::Active
            && c.value.capacity_providers.contains(&name)
        {
            associated = Some(c.value.name.clone());
            break;
        }
    }
    let deleted = commit_with_retry(svc.store.as_ref(), || async {
        let Some(cur) = get(svc, ctx, &name)
            .await?
            .filter(|c| c.value.status == ProviderStatus::Active)
        else {
            return Err(EcsError::invalid(format!(
                "The specified capacity provider '{name}' does not exist."
            )));
        };
        let mut p = cur.value.clone();
        // As ECS: a provider a cluster still has stays ACTIVE, its update DELETE_FAILED with the
        // reason; otherwise it becomes INACTIVE.
        match &associated {
            Some(cluster) => {
                p.update_status = "DELETE_FAILED".to_owned();
                p.update_status_reason = Some(format!(
                    "The capacity provider cannot be deleted because it is associated with cluster: {cluster}. Remove the capacity provider from the cluster and try again."
                ));
            }
            None => {
                p.status = ProviderStatus::Inactive;
                p.update_status = "DELETE_COMPLETE".to_owned();
                p.update_status_reason = None;
            }
        }
        let key = keys::capacity_provider(&ctx.region, &p.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &p)?);
        Ok((txn, p))
    })
    .await?;
    Ok(json!({"capacityProvider": to_wire(ctx, &deleted, false)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRequest {
    cluster: Option<String>,
    capacity_providers: Option<Vec<String>>,
    default_capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
}

/// PutClusterCapacityProviders: replaces the cluster's providers and default strategy; a provider
/// that a live task or an active service still uses cannot be removed.
pub(super) async fn put_cluster(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: PutRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(providers) = req.capacity_providers else {
        return Err(EcsError::invalid("capacityProviders is required."));
    };
    let Some(strategy) = req.default_capacity_provider_strategy else {
        return Err(EcsError::invalid(
            "defaultCapacityProviderStrategy is required.",
        ));
    };
    check_providers_exist(svc, ctx, &providers).await?;
    validate_strategy(&strategy, &providers)?;
    let key = keys::cluster(&ctx.region, &cluster);
    let c = active_cluster(svc, ctx, &cluster).await?;
    let removed: Vec<&String> = c
        .value
        .capacity_providers
        .iter()
        .filter(|p| !providers.contains(p))
        .collect();
    if !removed.is_empty() {
        let in_use = in_use(svc, ctx, &cluster).await?;
        if removed.iter().any(|p| in_use.contains(p)) {
            return Err(EcsError::ResourceInUse(
                "The specified capacity provider is in use and cannot be removed.".to_owned(),
            ));
        }
    }
    let updated = commit_with_retry(svc.store.as_ref(), || async {
        let cur = active_cluster(svc, ctx, &cluster).await?;
        let mut c: Cluster = cur.value.clone();
        c.capacity_providers = providers.clone();
        c.default_capacity_provider_strategy = strategy.clone();
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &c)?);
        Ok((txn, c))
    })
    .await?;
    Ok(json!({"cluster": crate::clusters::wire_of(svc, ctx, &updated).await?}))
}

/// The providers that live tasks or active services of the cluster use.
async fn in_use(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
) -> Result<Vec<String>, EcsError> {
    let mut out: Vec<String> = Vec::new();
    for t in svc
        .store
        .scan_all_typed::<Task>(&keys::tasks(&ctx.region, cluster))
        .await?
    {
        if t.value.last_status != TaskStatus::Stopped
            && let Some(p) = &t.value.capacity_provider_name
        {
            out.push(p.clone());
        }
    }
    for s in svc
        .store
        .scan_all_typed::<Service>(&keys::services(&ctx.region, cluster))
        .await?
    {
        if s.value.status != ServiceStatus::Inactive {
            out.extend(
                s.value
                    .capacity_provider_strategy
                    .iter()
                    .map(|i| i.capacity_provider.clone()),
            );
        }
    }
    Ok(out)
}

/// The strategy a launch uses: the request's, else (with no launch type either) the cluster's
/// default; `None` means a launch type (EC2 when none is given). Checked as ECS checks it.
pub(crate) fn effective_strategy(
    cluster: &Cluster,
    launch_type: Option<&str>,
    requested: &[CapacityProviderStrategyItem],
) -> Result<Option<Vec<CapacityProviderStrategyItem>>, EcsError> {
    if !requested.is_empty() {
        if launch_type.is_some() {
            return Err(EcsError::invalid(
                "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
            ));
        }
        validate_strategy(requested, &cluster.capacity_providers)?;
        require_weight(requested, false)?;
        return Ok(Some(requested.to_vec()));
    }
    if launch_type.is_none() && !cluster.default_capacity_provider_strategy.is_empty() {
        require_weight(&cluster.default_capacity_provider_strategy, true)?;
        return Ok(Some(cluster.default_capacity_provider_strategy.clone()));
    }
    Ok(None)
}
