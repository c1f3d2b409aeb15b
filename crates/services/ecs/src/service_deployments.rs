//! ListServiceDeployments and DescribeServiceDeployments: the history of a service's deployments,
//! kept as one record per deployment (written when a deployment is created and whenever the
//! service runner commits a change to it).

use gantry_domain::Arn;
use gantry_domain::EpochMillis;
use gantry_domain::service::{Deployment, DeploymentStatus, RolloutState, Service};
use gantry_store::{StoreExt, Txn, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::wire::{
    check_len, cluster_name, failure, get_service, max_results, paginate, parse, secs, with_token,
};
use crate::{EcsError, EcsService, keys};
use gantry_front::RequestContext;

/// One deployment's history record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeploymentRecord {
    pub service: String,
    pub cluster: String,
    pub deployment: Deployment,
    /// Task definitions the deployment replaced (`family:revision`).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Set when the deployment left the service's `deployments[]` without completing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<EpochMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<EpochMillis>,
}

fn digits(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn arn(ctx: &RequestContext, cluster: &str, service: &str, id: &str) -> String {
    Arn::new(
        "ecs",
        &ctx.region,
        &ctx.account_id,
        format!("service-deployment/{cluster}/{service}/{}", digits(id)),
    )
    .to_string()
}

fn status(r: &DeploymentRecord) -> (&'static str, Option<String>) {
    let d = &r.deployment;
    match d.rollout_state {
        RolloutState::Completed => ("SUCCESSFUL", d.rollout_state_reason.clone()),
        RolloutState::Failed => ("ROLLBACK_REQUESTED", d.rollout_state_reason.clone()),
        RolloutState::InProgress
            if r.stopped_at.is_some() || d.status != DeploymentStatus::Primary =>
        {
            (
                "STOPPED",
                Some("A newer deployment replaced this one.".to_owned()),
            )
        }
        RolloutState::InProgress => ("IN_PROGRESS", d.rollout_state_reason.clone()),
    }
}

/// Records the deployments of `after` (and those of `before` that left it).
pub(crate) async fn record(
    svc: &EcsService,
    ctx: &RequestContext,
    before: Option<&Service>,
    after: &Service,
) -> Result<(), EcsError> {
    let mut txn = Txn::new();
    let sources: Vec<String> = after
        .deployments
        .iter()
        .filter(|d| d.status != DeploymentStatus::Primary)
        .map(|d| format!("{}:{}", d.family, d.revision))
        .collect();
    for d in &after.deployments {
        let key = keys::service_deployment(&ctx.region, &after.cluster, &after.name, &d.id);
        let existing = svc.store.get_typed::<DeploymentRecord>(&key).await?;
        let mut rec = existing
            .as_ref()
            .map(|e| e.value.clone())
            .unwrap_or(DeploymentRecord {
                service: after.name.clone(),
                cluster: after.cluster.clone(),
                deployment: d.clone(),
                sources: if d.status == DeploymentStatus::Primary {
                    sources.clone()
                } else {
                    vec![]
                },
                stopped_at: None,
                finished_at: None,
            });
        if rec.deployment == *d && existing.is_some() {
            continue;
        }
        rec.deployment = d.clone();
        if d.rollout_state != RolloutState::InProgress {
            rec.finished_at.get_or_insert(ctx.now);
        }
        txn = txn.put(&key, encode(&key, &rec)?);
    }
    for d in before.map(|b| b.deployments.as_slice()).unwrap_or(&[]) {
        if after.deployments.iter().any(|x| x.id == d.id) {
            continue;
        }
        let key = keys::service_deployment(&ctx.region, &after.cluster, &after.name, &d.id);
        if let Some(e) = svc.store.get_typed::<DeploymentRecord>(&key).await? {
            let mut rec = e.value.clone();
            if rec.deployment.rollout_state == RolloutState::InProgress && rec.stopped_at.is_none()
            {
                // A deployment the circuit breaker failed can leave the list in the same change
                // that fails it; the service's events say so.
                let failed = format!("(deployment {}) deployment failed", d.id);
                if after
                    .events
                    .iter()
                    .take(10)
                    .any(|e| e.message.contains(&failed))
                {
                    rec.deployment.rollout_state = RolloutState::Failed;
                    rec.deployment.rollout_state_reason =
                        Some("ECS deployment circuit breaker: tasks failed to start.".to_owned());
                } else {
                    rec.stopped_at = Some(ctx.now);
                }
                rec.finished_at = Some(ctx.now);
                txn = txn.put(&key, encode(&key, &rec)?);
            }
        }
    }
    if !txn.is_empty() {
        svc.store.commit(txn).await?;
    }
    Ok(())
}

fn brief(ctx: &RequestContext, r: &DeploymentRecord) -> Value {
    let (st, reason) = status(r);
    let mut v = json!({
        "serviceDeploymentArn": arn(ctx, &r.cluster, &r.service, &r.deployment.id),
        "serviceArn": Arn::service(&ctx.region, &ctx.account_id, &r.cluster, &r.service).to_string(),
        "clusterArn": Arn::cluster(&ctx.region, &ctx.account_id, &r.cluster).to_string(),
        "createdAt": secs(r.deployment.created_at),
        "startedAt": secs(r.deployment.created_at),
        "targetServiceRevisionArn": Arn::new("ecs", &ctx.region, &ctx.account_id,
            format!("service-revision/{}/{}/{}", r.cluster, r.service, digits(&r.deployment.id))).to_string(),
        "status": st,
    });
    if let Some(reason) = reason {
        v["statusReason"] = json!(reason);
    }
    if let Some(f) = r.finished_at {
        v["finishedAt"] = secs(f);
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    service: Option<String>,
    cluster: Option<String>,
    #[serde(default)]
    status: Vec<String>,
    created_at: Option<CreatedAt>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
struct CreatedAt {
    before: Option<f64>,
    after: Option<f64>,
}

pub(super) async fn list(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(reference) = req.service.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("service is required."));
    };
    let limit = max_results(req.max_results, 100, 20)?;
    let service = get_service(svc, ctx, &cluster, reference)
        .await?
        .ok_or(EcsError::ServiceNotFound)?
        .value;
    let all = svc
        .store
        .scan_all_typed::<DeploymentRecord>(&keys::service_deployments(
            &ctx.region,
            &cluster,
            &service.name,
        ))
        .await?;
    let mut items: Vec<(String, Value)> = all
        .into_iter()
        .map(|r| r.value)
        .filter(|r| req.status.is_empty() || req.status.iter().any(|s| s == status(r).0))
        .filter(|r| {
            req.created_at.as_ref().is_none_or(|c| {
                let t = r.deployment.created_at as f64 / 1000.0;
                c.before.is_none_or(|b| t < b) && c.after.is_none_or(|a| t > a)
            })
        })
        // Newest first: invert the creation time in the sort key.
        .map(|r| {
            (
                format!(
                    "{:020}-{}",
                    u64::MAX - r.deployment.created_at,
                    r.deployment.id
                ),
                brief(ctx, &r),
            )
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = paginate(items, req.next_token.as_deref(), limit)?;
    Ok(with_token(json!({"serviceDeployments": page}), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    #[serde(default)]
    service_deployment_arns: Vec<String>,
}

pub(super) async fn describe(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DescribeRequest = parse(body)?;
    check_len("serviceDeploymentArns", &req.service_deployment_arns, 20)?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for a in &req.service_deployment_arns {
        let parsed = Arn::parse(a).ok();
        let parts: Option<(String, String, String)> =
            parsed.as_ref().and_then(|p| match p.resource_parts() {
                ("service-deployment", rest) => {
                    let mut it = rest.splitn(3, '/');
                    Some((
                        it.next()?.to_owned(),
                        it.next()?.to_owned(),
                        it.next()?.to_owned(),
                    ))
                }
                _ => None,
            });
        let Some((cluster, service, digits)) = parts else {
            failures.push(failure(a, "MISSING", None));
            continue;
        };
        let key = keys::service_deployment(
            &ctx.region,
            &cluster,
            &service,
            &format!("ecs-svc/{digits}"),
        );
        match svc.store.get_typed::<DeploymentRecord>(&key).await? {
            Some(r) => {
                let r = r.value;
                let mut v = brief(ctx, &r);
                v["updatedAt"] = secs(r.deployment.updated_at);
                if let Some(s) = r.stopped_at {
                    v["stoppedAt"] = secs(s);
                }
                v["sourceServiceRevisions"] = json!(
                    r.sources
                        .iter()
                        .map(|s| json!({"arn": s}))
                        .collect::<Vec<_>>()
                );
                v["targetServiceRevision"] = json!({
                    "arn": v["targetServiceRevisionArn"].clone(),
                    "requestedTaskCount": r.deployment.desired_count,
                });
                v["deploymentCircuitBreaker"] = json!({
                    "status": if r.deployment.rollout_state == RolloutState::Failed { "TRIGGERED" } else { "MONITORING" },
                    "failureCount": r.deployment.failed_tasks,
                    "threshold": gantry_domain::service::circuit_breaker_threshold(r.deployment.desired_count),
                });
                out.push(v);
            }
            None => failures.push(failure(a, "MISSING", None)),
        }
    }
    Ok(json!({"serviceDeployments": out, "failures": failures}))
}
