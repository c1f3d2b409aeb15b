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
    active_cluster, check_len, cluster_name, failure, get_service, max_results, paginate, parse,
    secs, with_token,
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
    /// The deployment's strategy and settings when it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<gantry_domain::service::DeploymentConfiguration>,
    /// A traffic-shifting deployment: its latest lifecycle stage and traffic shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<gantry_domain::service::TrafficShift>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<gantry_domain::service::RollbackNote>,
    /// The rollback finished: the deployment's tasks are gone.
    #[serde(default)]
    pub rollback_done: bool,
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
    if let Some(rb) = &r.rollback {
        let st = if r.rollback_done {
            "ROLLBACK_SUCCESSFUL"
        } else {
            "ROLLBACK_IN_PROGRESS"
        };
        return (st, Some(rb.reason.clone()));
    }
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
                configuration: Some(after.deployment_configuration.clone()),
                shift: None,
                rollback: None,
                rollback_done: false,
            });
        let shift = after.shift.as_ref().filter(|sh| sh.deployment_id == d.id);
        let rollback = after
            .last_rollback
            .as_ref()
            .filter(|rb| rb.deployment_id == d.id);
        let same_shift = shift.is_none_or(|sh| rec.shift.as_ref() == Some(sh));
        let same_rollback = rollback.is_none_or(|rb| rec.rollback.as_ref() == Some(rb));
        if rec.deployment == *d && existing.is_some() && same_shift && same_rollback {
            continue;
        }
        if let Some(sh) = shift {
            rec.shift = Some(sh.clone());
        }
        if let Some(rb) = rollback {
            rec.rollback = Some(rb.clone());
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
            if rec.rollback.is_some() && !rec.rollback_done {
                rec.rollback_done = true;
                txn = txn.put(&key, encode(&key, &rec)?);
                continue;
            }
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
    // An unknown cluster is reported before the service, as ECS does.
    active_cluster(svc, ctx, &cluster).await?;
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
                if let Some(c) = &r.configuration {
                    v["deploymentConfiguration"] = json!(c);
                    if let Some((names, _)) = c.alarms() {
                        let triggered: Vec<&String> = r
                            .rollback
                            .as_ref()
                            .map(|rb| {
                                names
                                    .iter()
                                    .filter(|n| rb.reason.contains(n.as_str()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        v["alarms"] = json!({
                            "status": if triggered.is_empty() { "MONITORING" } else { "TRIGGERED" },
                            "alarmNames": names,
                            "triggeredAlarmNames": triggered,
                        });
                    }
                }
                if let Some(sh) = &r.shift {
                    v["lifecycleStage"] = json!(sh.stage.as_str());
                    v["targetServiceRevision"]["requestedProductionTrafficWeight"] =
                        json!(sh.production_percent);
                    v["targetServiceRevision"]["requestedTestTrafficWeight"] =
                        json!(sh.test_percent);
                    if let Some(h) = &sh.held {
                        let hook = r.configuration.as_ref().and_then(|c| {
                            c.pause_hooks()
                                .into_iter()
                                .find(|p| p.stages.contains(&h.stage))
                        });
                        let mut detail = json!({
                            "hookId": h.hook_id,
                            "targetType": "PAUSE",
                            "status": "AWAITING_ACTION",
                        });
                        if let Some(p) = hook {
                            detail["timeoutAction"] = json!(p.timeout_action);
                            if let Some(m) = p.timeout_minutes {
                                detail["expiresAt"] =
                                    secs(h.since + u64::try_from(m).unwrap_or(0) * 60_000);
                            }
                        }
                        v["lifecycleHookDetails"] = json!([detail]);
                    }
                }
                if let Some(rb) = &r.rollback {
                    v["rollback"] = json!({
                        "reason": rb.reason,
                        "startedAt": secs(rb.started_at),
                        "serviceRevisionArn": Arn::new("ecs", &ctx.region, &ctx.account_id,
                            format!("service-revision/{}/{}/{}", r.cluster, r.service, self::digits(&rb.to_deployment_id))).to_string(),
                    });
                }
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

/// The cluster, service and deployment id a service deployment ARN names.
fn parse_deployment_arn(a: &str) -> Option<(String, String, String)> {
    let parsed = Arn::parse(a).ok()?;
    match parsed.resource_parts() {
        ("service-deployment", rest) => {
            let mut it = rest.splitn(3, '/');
            Some((
                it.next()?.to_owned(),
                it.next()?.to_owned(),
                format!("ecs-svc/{}", it.next()?),
            ))
        }
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopRequest {
    service_deployment_arn: Option<String>,
    stop_type: Option<String>,
}

/// Applies `change` to the service of a deployment ARN; the change answers the updated record
/// or an error.
async fn change_service<F>(
    svc: &EcsService,
    ctx: &RequestContext,
    arn: &str,
    change: F,
) -> Result<Value, EcsError>
where
    F: Fn(&Service, &str) -> Result<Service, EcsError>,
{
    let not_found = || {
        EcsError::ServiceDeploymentNotFound(format!("The service deployment {arn} does not exist."))
    };
    let (cluster, service, id) = parse_deployment_arn(arn).ok_or_else(not_found)?;
    let key = keys::service(&ctx.region, &cluster, &service);
    let (before, after) = crate::wire::commit_with_retry(svc.store.as_ref(), || async {
        let cur = svc
            .store
            .get_typed::<Service>(&key)
            .await?
            .ok_or_else(not_found)?;
        if !cur.value.deployments.iter().any(|d| d.id == id) {
            let rec = keys::service_deployment(&ctx.region, &cluster, &service, &id);
            if svc
                .store
                .get_typed::<DeploymentRecord>(&rec)
                .await?
                .is_none()
            {
                return Err(not_found());
            }
        }
        let next = change(&cur.value, &id)?;
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &next)?);
        Ok((txn, (cur.value.clone(), next)))
    })
    .await?;
    record(svc, ctx, Some(&before), &after).await?;
    Ok(json!({"serviceDeploymentArn": arn}))
}

fn not_in_progress(arn: &str) -> EcsError {
    EcsError::Conflict(format!(
        "The service deployment {arn} is not in progress and cannot be stopped."
    ))
}

pub(super) async fn stop(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: StopRequest = parse(body)?;
    let Some(arn) = req.service_deployment_arn.filter(|a| !a.is_empty()) else {
        return Err(EcsError::invalid("serviceDeploymentArn is required."));
    };
    match req.stop_type.as_deref().unwrap_or("ROLLBACK") {
        "ROLLBACK" => {}
        "ABORT" => {
            return Err(EcsError::Unsupported(
                "stopType ABORT is not supported by this endpoint; use ROLLBACK.".into(),
            ));
        }
        other => {
            return Err(EcsError::invalid(format!(
                "Invalid stopType {other}. Valid values: ABORT, ROLLBACK."
            )));
        }
    }
    let now = ctx.now;
    change_service(svc, ctx, &arn, |s, id| {
        gantry_controller::service::shift::stop_deployment(
            s,
            id,
            now,
            &mut crate::service_runner::Ids(svc),
        )
        .ok_or_else(|| not_in_progress(&arn))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContinueRequest {
    service_deployment_arn: Option<String>,
    hook_id: Option<String>,
    action: Option<String>,
}

pub(super) async fn continue_(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ContinueRequest = parse(body)?;
    let Some(arn) = req.service_deployment_arn.filter(|a| !a.is_empty()) else {
        return Err(EcsError::invalid("serviceDeploymentArn is required."));
    };
    let Some(hook_id) = req.hook_id.filter(|h| !h.is_empty()) else {
        return Err(EcsError::invalid("hookId is required."));
    };
    let action = req.action.unwrap_or_else(|| "CONTINUE".into());
    if !matches!(action.as_str(), "CONTINUE" | "ROLLBACK") {
        return Err(EcsError::invalid(format!(
            "Invalid action {action}. Valid values: ROLLBACK, CONTINUE."
        )));
    }
    change_service(svc, ctx, &arn, |s, id| {
        let mut next = s.clone();
        let held = next
            .shift
            .as_mut()
            .filter(|sh| sh.deployment_id == id)
            .and_then(|sh| sh.held.as_mut())
            .filter(|h| h.hook_id == hook_id && h.action.is_none())
            .ok_or_else(|| {
                EcsError::invalid(format!(
                    "The lifecycle hook {hook_id} is not awaiting action in service deployment {arn}."
                ))
            })?;
        held.action = Some(action.clone());
        next.version += 1;
        Ok(next)
    })
    .await
}
