//! Capacity providers: the built-in FARGATE and FARGATE_SPOT, DescribeCapacityProviders,
//! PutClusterCapacityProviders, and how RunTask and services choose a strategy (the request's,
//! else the cluster's default) and check it.

use gantry_domain::Arn;
use gantry_domain::capacity::{FARGATE, FARGATE_SPOT, is_fargate_provider, validate_strategy};
use gantry_domain::cluster::{CapacityProviderStrategyItem, Cluster};
use gantry_domain::service::{Service, ServiceStatus};
use gantry_domain::task::{Task, TaskStatus};
use gantry_store::{StoreExt, Txn, encode};
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
        "capacityProviderArn": Arn::new("ecs", &ctx.region, &ctx.account_id,
            format!("capacity-provider/{name}")).to_string(),
        "name": name,
        "status": "ACTIVE",
        "tags": [],
    })
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

/// DescribeCapacityProviders: FARGATE and FARGATE_SPOT (the only providers until host pools
/// land); unknown names in `failures[]` (MISSING).
pub(super) async fn describe(
    _svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DescribeRequest = parse(body)?;
    for i in &req.include {
        if i != "TAGS" {
            return Err(EcsError::invalid(format!(
                "Invalid include value '{i}'. Valid values: TAGS."
            )));
        }
    }
    let all = [FARGATE, FARGATE_SPOT];
    match req.capacity_providers.filter(|c| !c.is_empty()) {
        Some(names) => {
            let mut out = Vec::new();
            let mut failures = Vec::new();
            for n in &names {
                let name = n.rsplit('/').next().unwrap_or(n);
                if all.contains(&name) {
                    out.push(builtin_wire(ctx, name));
                } else {
                    let arn = if n.starts_with("arn:") {
                        n.clone()
                    } else {
                        Arn::new(
                            "ecs",
                            &ctx.region,
                            &ctx.account_id,
                            format!("capacity-provider/{n}"),
                        )
                        .to_string()
                    };
                    failures.push(failure(&arn, "MISSING", None));
                }
            }
            Ok(json!({"capacityProviders": out, "failures": failures}))
        }
        None => {
            let limit = max_results(req.max_results, 10, 10)?;
            let items: Vec<(String, String)> =
                all.iter().map(|n| (n.to_string(), n.to_string())).collect();
            let (page, next) = paginate(items, req.next_token.as_deref(), limit)?;
            let out: Vec<Value> = page.iter().map(|n| builtin_wire(ctx, n)).collect();
            Ok(with_token(
                json!({"capacityProviders": out, "failures": []}),
                next,
            ))
        }
    }
}

/// Checks that every named provider exists (the built-ins only, for now).
pub(crate) fn check_providers_exist(names: &[String]) -> Result<(), EcsError> {
    for cp in names {
        if !is_fargate_provider(cp) {
            return Err(EcsError::invalid(format!(
                "The specified capacity provider '{cp}' does not exist."
            )));
        }
    }
    Ok(())
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
    check_providers_exist(&providers)?;
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
        if let Some(p) = removed.iter().find(|p| in_use.contains(p)) {
            return Err(EcsError::ResourceInUse(format!(
                "The specified capacity provider {p} is in use and cannot be removed."
            )));
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
                "Specifying both a launchType and capacityProviderStrategy is not supported.",
            ));
        }
        validate_strategy(requested, &cluster.capacity_providers)?;
        return Ok(Some(requested.to_vec()));
    }
    if launch_type.is_none() && !cluster.default_capacity_provider_strategy.is_empty() {
        return Ok(Some(cluster.default_capacity_provider_strategy.clone()));
    }
    Ok(None)
}
