//! The deployment runner: every tick, each deployment not finished moves one step, through ECS
//! task sets and the listeners' weights (the [`Platform`](crate::platform::Platform)):
//!
//! 1. **Start**: the service's PRIMARY task set is the original (blue) one, in one target group
//!    of the pair; the replacement (green) task set is created with the AppSpec's task
//!    definition in the other group, at 100 % scale.
//! 2. **Install**: green becomes steady (all its tasks running and healthy); the test listener
//!    then sends everything to green. With `deploymentReadyOption` `STOP_DEPLOYMENT` the
//!    deployment is `Ready` until ContinueDeployment (or its wait ends: stopped).
//! 3. **Shift**: the production listener's weights move as the configuration says
//!    ([`next_share`]: all at once, canary then the rest, or linear steps), one minute lasting
//!    `minute` (shortened in tests).
//! 4. **Terminate**: green is made PRIMARY; after `terminationWaitTimeInMinutes` (or
//!    ContinueDeployment `TERMINATION_WAIT`) blue is deleted and the deployment `Succeeded`.
//!
//! A stop with rollback, or a failure with `DEPLOYMENT_FAILURE` rollback, puts every listener
//! back on blue, blue PRIMARY again, deletes green, and records a rollback deployment.

use std::sync::Arc;
use std::time::Duration;

use gantry_front::Clock;
use gantry_store::{StoreExt, Txn, encode};
use serde_json::{Value, json};

use crate::configs::TrafficRouting;
use crate::deployments::{self, DeploymentRecord, ErrorInfo, Phase, RollbackInfo, Status, new_id};
use crate::groups::GroupRecord;
use crate::platform::{Platform, PlatformError};
use crate::wire::{ACTIVE_PREFIX, active, commit, deployment, group};
use crate::{CodeDeployError, CodeDeployService};

/// How long the replacement task set may take to become steady, in minutes (CodeDeploy's hour).
const INSTALL_TIMEOUT_MINUTES: u64 = 60;

/// The share of production traffic on the replacement after a step from `current` percent, or
/// `None` when the current step's interval has not passed.
pub fn next_share(routing: TrafficRouting, current: u32, elapsed_minutes: f64) -> Option<u32> {
    match routing {
        TrafficRouting::AllAtOnce => (current < 100).then_some(100),
        TrafficRouting::TimeBasedCanary {
            percentage,
            interval_minutes,
        } => {
            if current == 0 {
                Some(percentage)
            } else if current < 100 && elapsed_minutes >= f64::from(interval_minutes) {
                Some(100)
            } else {
                None
            }
        }
        TrafficRouting::TimeBasedLinear {
            percentage,
            interval_minutes,
        } => {
            if current == 0 {
                Some(percentage.min(100))
            } else if current < 100 && elapsed_minutes >= f64::from(interval_minutes) {
                Some((current + percentage).min(100))
            } else {
                None
            }
        }
    }
}

/// Runs the deployments of every region.
pub struct DeploymentRunner {
    svc: Arc<CodeDeployService>,
    clock: Arc<dyn Clock>,
    minute: Duration,
}

impl std::fmt::Debug for DeploymentRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentRunner")
            .field("minute", &self.minute)
            .finish()
    }
}

/// What a step decided.
enum Outcome {
    /// Nothing changed.
    Same,
    /// The record changed.
    Changed(Box<DeploymentRecord>),
    /// The deployment finished; with a rollback deployment to record.
    Finished(Box<DeploymentRecord>, Option<Box<DeploymentRecord>>),
}

fn failure(e: &PlatformError) -> bool {
    // ECS's client errors fail the deployment; anything else is retried.
    !matches!(
        e.code.as_str(),
        "ServerException" | "InternalFailure" | "Unavailable"
    )
}

impl DeploymentRunner {
    pub fn new(svc: Arc<CodeDeployService>, clock: Arc<dyn Clock>, minute: Duration) -> Self {
        Self { svc, clock, minute }
    }

    /// Runs until `shutdown` turns true, a pass every `interval`.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "deployment pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// One step of every deployment not finished.
    pub async fn pass(&self) -> Result<(), CodeDeployError> {
        let store = &self.svc.store;
        let actives = store
            .scan_all_typed::<(String, String)>(ACTIVE_PREFIX)
            .await?;
        for a in actives {
            let (region, id) = a.value;
            let span = tracing::info_span!("deployment", deployment = %id);
            let _enter = span.enter();
            let Some(cur) = deployments::load(&self.svc, &region, &id).await? else {
                store
                    .commit(Txn::new().delete(active(&region, &id)))
                    .await?;
                continue;
            };
            let outcome = match self.step(&region, &cur.value).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "deployment step failed; retrying");
                    continue;
                }
            };
            self.save(&region, cur.revision, outcome).await?;
        }
        Ok(())
    }

    async fn save(
        &self,
        region: &str,
        revision: u64,
        outcome: Outcome,
    ) -> Result<(), CodeDeployError> {
        let store = self.svc.store.as_ref();
        match outcome {
            Outcome::Same => {}
            Outcome::Changed(mut d) => {
                d.version += 1;
                let key = deployment(region, &d.id);
                let txn = Txn::new()
                    .require_revision(&key, revision)
                    .put(&key, encode(&key, &d)?);
                commit(store, txn).await?;
            }
            Outcome::Finished(mut d, rollback) => {
                d.version += 1;
                let key = deployment(region, &d.id);
                let mut txn = Txn::new()
                    .require_revision(&key, revision)
                    .put(&key, encode(&key, &d)?)
                    .delete(active(region, &d.id));
                if let Some(r) = &rollback {
                    let rkey = deployment(region, &r.id);
                    txn = txn.put(&rkey, encode(&rkey, r.as_ref())?);
                }
                let gkey = group(region, &d.application_name, &d.group_name);
                if let Some(g) = store.get_typed::<GroupRecord>(&gkey).await? {
                    let mut next = g.value.clone();
                    if next.active_deployment.as_deref() == Some(d.id.as_str()) {
                        next.active_deployment = None;
                    }
                    next.last_attempted = Some(d.last());
                    if d.status == Status::Succeeded {
                        next.last_successful = Some(d.last());
                    }
                    txn = txn
                        .require_revision(&gkey, g.revision)
                        .put(&gkey, encode(&gkey, &next)?);
                }
                if commit(store, txn).await? {
                    tracing::info!(status = d.status.as_str(), "deployment finished");
                }
            }
        }
        Ok(())
    }

    fn platform(&self) -> Result<&Arc<dyn Platform>, CodeDeployError> {
        self.svc.platform()
    }

    fn minutes(&self, n: u64) -> u64 {
        n.saturating_mul(u64::try_from(self.minute.as_millis()).unwrap_or(60_000))
    }

    async fn ecs(&self, region: &str, op: &str, input: Value) -> Result<Value, PlatformError> {
        self.platform()
            .map_err(|e| PlatformError::new("InternalFailure", e.to_string()))?
            .ecs(region, op, input)
            .await
    }

    /// Weights sending `green` percent to the replacement group.
    async fn route(
        &self,
        region: &str,
        d: &DeploymentRecord,
        listener: &str,
        green: u32,
    ) -> Result<(), PlatformError> {
        let (Some(b), Some(g)) = (&d.blue_target_group, &d.green_target_group) else {
            return Ok(());
        };
        let weights = vec![
            (b.clone(), 100 - green.min(100)),
            (g.clone(), green.min(100)),
        ];
        self.platform()
            .map_err(|e| PlatformError::new("InternalFailure", e.to_string()))?
            .set_listener_weights(region, listener, &weights)
            .await
    }

    async fn step(&self, region: &str, cur: &DeploymentRecord) -> Result<Outcome, CodeDeployError> {
        let now = self.clock.now_millis();
        let mut d = cur.clone();
        if let Some(rollback) = d.stop_requested {
            let err = ErrorInfo {
                code: "MANUAL_STOP".to_owned(),
                message: "The deployment was stopped by a user request.".to_owned(),
            };
            return self
                .finish_failed(region, d, Status::Stopped, err, rollback, now)
                .await;
        }
        let lb_err = |e: PlatformError| CodeDeployError::InvalidInput(e.to_string());
        match d.phase {
            Phase::Start => {
                let out = match self
                    .ecs(
                        region,
                        "DescribeServices",
                        json!({"cluster": d.cluster, "services": [d.service]}),
                    )
                    .await
                {
                    Ok(o) => o,
                    Err(e) if failure(&e) => {
                        return self
                            .fail(region, d, "INVALID_ECS_SERVICE", &e.message, now)
                            .await;
                    }
                    Err(e) => return Err(lb_err(e)),
                };
                let service = out
                    .get("services")
                    .and_then(Value::as_array)
                    .and_then(|l| l.first())
                    .filter(|s| {
                        s.get("status").and_then(Value::as_str) == Some("ACTIVE")
                            && s.pointer("/deploymentController/type")
                                .and_then(Value::as_str)
                                == Some("CODE_DEPLOY")
                    });
                let Some(service) = service else {
                    let msg = format!(
                        "The ECS service {} of the cluster {} does not exist or does not use the CODE_DEPLOY deployment controller.",
                        d.service, d.cluster
                    );
                    return self.fail(region, d, "INVALID_ECS_SERVICE", &msg, now).await;
                };
                let sets: Vec<&Value> = service
                    .get("taskSets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|t| t.get("status").and_then(Value::as_str) != Some("DRAINING"))
                    .collect();
                let primary = sets
                    .iter()
                    .find(|t| t.get("status").and_then(Value::as_str) == Some("PRIMARY"));
                let (Some(primary), 1) = (primary, sets.len()) else {
                    let msg = format!(
                        "The ECS service {} must have exactly one task set, its PRIMARY one, when a deployment starts; it has {}.",
                        d.service,
                        sets.len()
                    );
                    return self.fail(region, d, "ECS_UPDATE_ERROR", &msg, now).await;
                };
                let platform = self.platform()?;
                let mut arns = Vec::new();
                for n in &d.target_groups {
                    match platform.target_group_arn(region, n).await.map_err(lb_err)? {
                        Some(a) => arns.push(a),
                        None => {
                            let msg = format!("The target group {n} does not exist.");
                            return self
                                .fail(region, d, "ELASTIC_LOAD_BALANCING_INVALID", &msg, now)
                                .await;
                        }
                    }
                }
                let blue_tg = primary
                    .pointer("/loadBalancers/0/targetGroupArn")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let Some(green_tg) = arns
                    .iter()
                    .find(|a| **a != blue_tg)
                    .filter(|_| arns.contains(&blue_tg))
                    .cloned()
                else {
                    let msg = format!(
                        "The original task set's target group {blue_tg} is not one of the deployment group's target groups."
                    );
                    return self
                        .fail(region, d, "ELASTIC_LOAD_BALANCING_INVALID", &msg, now)
                        .await;
                };
                let Some(spec) = d.appspec.clone() else {
                    return self
                        .fail(
                            region,
                            d,
                            "INVALID_REVISION",
                            "The deployment has no AppSpec.",
                            now,
                        )
                        .await;
                };
                let mut input = spec.task_set_members();
                input["cluster"] = json!(d.cluster);
                input["service"] = json!(d.service);
                input["externalId"] = json!(d.id);
                input["scale"] = json!({"value": 100.0, "unit": "PERCENT"});
                input["loadBalancers"] = json!([{
                    "targetGroupArn": green_tg,
                    "containerName": spec.container_name,
                    "containerPort": spec.container_port,
                }]);
                if input.get("capacityProviderStrategy").is_none()
                    && let Some(lt) = primary.get("launchType")
                {
                    input["launchType"] = lt.clone();
                }
                if input.get("networkConfiguration").is_none()
                    && let Some(n) = primary.get("networkConfiguration")
                {
                    input["networkConfiguration"] = n.clone();
                }
                if input.get("platformVersion").is_none()
                    && let Some(p) = primary.get("platformVersion")
                {
                    input["platformVersion"] = p.clone();
                }
                d.service_arn = service
                    .get("serviceArn")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                d.blue_task_set = primary.get("id").and_then(Value::as_str).map(str::to_owned);
                d.blue_target_group = Some(blue_tg);
                d.green_target_group = Some(green_tg);
                d.status = Status::InProgress;
                d.start_time_ms = Some(now);
                match self.ecs(region, "CreateTaskSet", input).await {
                    Ok(out) => {
                        d.green_task_set = out
                            .pointer("/taskSet/id")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                    }
                    Err(e) if failure(&e) => {
                        let msg = format!(
                            "The ECS service could not create the replacement task set: {}",
                            e.message
                        );
                        return self.fail(region, d, "ECS_UPDATE_ERROR", &msg, now).await;
                    }
                    Err(e) => return Err(lb_err(e)),
                }
                tracing::info!(task_set = ?d.green_task_set, "replacement task set created");
                d.phase = Phase::Install;
                d.phase_at = now;
                Ok(Outcome::Changed(Box::new(d)))
            }
            Phase::Install => {
                let Some(green) = d.green_task_set.clone() else {
                    return self
                        .fail(
                            region,
                            d,
                            "ECS_UPDATE_ERROR",
                            "The replacement task set is missing.",
                            now,
                        )
                        .await;
                };
                let out = self
                    .ecs(
                        region,
                        "DescribeTaskSets",
                        json!({"cluster": d.cluster, "service": d.service, "taskSets": [green]}),
                    )
                    .await
                    .map_err(lb_err)?;
                let ts = out
                    .get("taskSets")
                    .and_then(Value::as_array)
                    .and_then(|l| l.first());
                let Some(ts) = ts else {
                    let msg = format!("The replacement task set {green} no longer exists.");
                    return self.fail(region, d, "ECS_UPDATE_ERROR", &msg, now).await;
                };
                let n = |k: &str| ts.get(k).and_then(Value::as_i64).unwrap_or(0);
                let steady = ts.get("stabilityStatus").and_then(Value::as_str)
                    == Some("STEADY_STATE")
                    && n("runningCount") >= n("computedDesiredCount");
                if !steady {
                    if now >= d.phase_at + self.minutes(INSTALL_TIMEOUT_MINUTES) {
                        let msg = format!(
                            "The replacement task set {green} did not reach a steady state within {INSTALL_TIMEOUT_MINUTES} minutes."
                        );
                        return self.fail(region, d, "TIMEOUT", &msg, now).await;
                    }
                    return Ok(Outcome::Same);
                }
                if let Some(test) = d.test_listener.clone() {
                    self.route(region, &d, &test, 100).await.map_err(lb_err)?;
                }
                d.phase_at = now;
                if d.ready_action == "STOP_DEPLOYMENT" {
                    d.phase = Phase::Ready;
                    d.status = Status::Ready;
                    return Ok(Outcome::Changed(Box::new(d)));
                }
                self.begin_shift(region, &mut d, now).await?;
                Ok(Outcome::Changed(Box::new(d)))
            }
            Phase::Ready => {
                if d.continue_requested.as_deref() == Some("READY_WAIT") {
                    d.continue_requested = None;
                    d.status = Status::InProgress;
                    self.begin_shift(region, &mut d, now).await?;
                    return Ok(Outcome::Changed(Box::new(d)));
                }
                if now >= d.phase_at + self.minutes(u64::from(d.ready_wait_minutes)) {
                    let err = ErrorInfo {
                        code: "TIMEOUT".to_owned(),
                        message: "Traffic was not rerouted within the deployment group's wait time (deploymentReadyOption STOP_DEPLOYMENT).".to_owned(),
                    };
                    return self
                        .finish_failed(region, d, Status::Stopped, err, true, now)
                        .await;
                }
                Ok(Outcome::Same)
            }
            Phase::Shift => {
                if d.prod_percent >= 100 {
                    let green = d.green_task_set.clone().unwrap_or_default();
                    self.ecs(
                        region,
                        "UpdateServicePrimaryTaskSet",
                        json!({"cluster": d.cluster, "service": d.service, "primaryTaskSet": green}),
                    )
                    .await
                    .map_err(lb_err)?;
                    d.phase = Phase::Terminate;
                    d.phase_at = now;
                    return Ok(Outcome::Changed(Box::new(d)));
                }
                let elapsed =
                    now.saturating_sub(d.step_at) as f64 / self.minute.as_millis().max(1) as f64;
                match next_share(d.routing, d.prod_percent, elapsed) {
                    Some(pct) => {
                        self.route(region, &d, &d.prod_listener.clone(), pct)
                            .await
                            .map_err(lb_err)?;
                        tracing::info!(percent = pct, "production traffic shifted");
                        d.prod_percent = pct;
                        d.step_at = now;
                        Ok(Outcome::Changed(Box::new(d)))
                    }
                    None => Ok(Outcome::Same),
                }
            }
            Phase::Terminate => {
                let skip = d.continue_requested.as_deref() == Some("TERMINATION_WAIT");
                if !skip && now < d.phase_at + self.minutes(u64::from(d.termination_wait_minutes)) {
                    return Ok(Outcome::Same);
                }
                if let Some(blue) = d.blue_task_set.clone() {
                    self.delete_task_set(region, &d, &blue).await?;
                }
                d.continue_requested = None;
                d.phase = Phase::Done;
                d.phase_at = now;
                d.status = Status::Succeeded;
                d.complete_time_ms = Some(now);
                Ok(Outcome::Finished(Box::new(d), None))
            }
            Phase::Done => Ok(Outcome::Finished(Box::new(d), None)),
        }
    }

    async fn begin_shift(
        &self,
        region: &str,
        d: &mut DeploymentRecord,
        now: u64,
    ) -> Result<(), CodeDeployError> {
        let pct = next_share(d.routing, 0, 0.0).unwrap_or(100);
        self.route(region, d, &d.prod_listener.clone(), pct)
            .await
            .map_err(|e| CodeDeployError::InvalidInput(e.to_string()))?;
        tracing::info!(percent = pct, "production traffic shifted");
        d.prod_percent = pct;
        d.step_at = now;
        d.phase = Phase::Shift;
        d.phase_at = now;
        Ok(())
    }

    async fn delete_task_set(
        &self,
        region: &str,
        d: &DeploymentRecord,
        id: &str,
    ) -> Result<(), CodeDeployError> {
        match self
            .ecs(
                region,
                "DeleteTaskSet",
                json!({"cluster": d.cluster, "service": d.service, "taskSet": id, "force": true}),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == "TaskSetNotFoundException" => Ok(()),
            Err(e) => Err(CodeDeployError::InvalidInput(e.to_string())),
        }
    }

    /// A failure: with a `DEPLOYMENT_FAILURE` rollback, everything goes back to blue.
    async fn fail(
        &self,
        region: &str,
        d: DeploymentRecord,
        code: &str,
        message: &str,
        now: u64,
    ) -> Result<Outcome, CodeDeployError> {
        tracing::warn!(code, message, "deployment failed");
        let rollback = d.auto_rollback.on("DEPLOYMENT_FAILURE");
        let err = ErrorInfo {
            code: code.to_owned(),
            message: message.to_owned(),
        };
        self.finish_failed(region, d, Status::Failed, err, rollback, now)
            .await
    }

    /// Ends a deployment as `status`; with `rollback`, all traffic back on blue, blue PRIMARY
    /// and green deleted, recorded as a rollback deployment.
    async fn finish_failed(
        &self,
        region: &str,
        mut d: DeploymentRecord,
        status: Status,
        err: ErrorInfo,
        rollback: bool,
        now: u64,
    ) -> Result<Outcome, CodeDeployError> {
        let mut rollback_record = None;
        if rollback && d.green_task_set.is_some() {
            let lb_err = |e: PlatformError| CodeDeployError::InvalidInput(e.to_string());
            self.route(region, &d, &d.prod_listener.clone(), 0)
                .await
                .map_err(lb_err)?;
            if let Some(t) = d.test_listener.clone() {
                self.route(region, &d, &t, 0).await.map_err(lb_err)?;
            }
            if d.phase >= Phase::Terminate
                && let Some(blue) = d.blue_task_set.clone()
            {
                self.ecs(
                    region,
                    "UpdateServicePrimaryTaskSet",
                    json!({"cluster": d.cluster, "service": d.service, "primaryTaskSet": blue}),
                )
                .await
                .map_err(lb_err)?;
            }
            if let Some(green) = d.green_task_set.clone() {
                self.delete_task_set(region, &d, &green).await?;
            }
            let id = new_id();
            let mut r = d.clone();
            r.id = id.clone();
            r.creator = "codeDeployRollback".to_owned();
            r.status = Status::Succeeded;
            r.error = None;
            r.create_time_ms = now;
            r.start_time_ms = Some(now);
            r.complete_time_ms = Some(now);
            r.description = Some(format!("Rollback of the deployment {}", d.id));
            r.appspec = None;
            r.stop_requested = None;
            r.continue_requested = None;
            r.prod_percent = 0;
            r.phase = Phase::Done;
            r.phase_at = now;
            r.rollback_info = Some(RollbackInfo {
                rollback_deployment_id: None,
                rollback_triggering_deployment_id: Some(d.id.clone()),
                rollback_message: Some(format!(
                    "Deployment {} is a rollback of the deployment {}.",
                    id, d.id
                )),
            });
            r.version = 1;
            d.rollback_info = Some(RollbackInfo {
                rollback_deployment_id: Some(id.clone()),
                rollback_triggering_deployment_id: None,
                rollback_message: Some(format!(
                    "Deployment {} rolled back this deployment: production traffic is back on the original task set.",
                    id
                )),
            });
            d.prod_percent = 0;
            rollback_record = Some(r);
            tracing::info!(rollback = %id, "deployment rolled back");
        }
        d.stop_requested = None;
        d.status = status;
        d.error = Some(err);
        d.phase = Phase::Done;
        d.phase_at = now;
        d.complete_time_ms = Some(now);
        Ok(Outcome::Finished(
            Box::new(d),
            rollback_record.map(Box::new),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_configuration() {
        let canary = TrafficRouting::TimeBasedCanary {
            percentage: 10,
            interval_minutes: 5,
        };
        assert_eq!(next_share(canary, 0, 0.0), Some(10));
        assert_eq!(next_share(canary, 10, 4.9), None);
        assert_eq!(next_share(canary, 10, 5.0), Some(100));
        assert_eq!(next_share(canary, 100, 9.0), None);
        let linear = TrafficRouting::TimeBasedLinear {
            percentage: 30,
            interval_minutes: 1,
        };
        let mut pct = next_share(linear, 0, 0.0).unwrap_or(0);
        let mut seen = vec![pct];
        while let Some(p) = next_share(linear, pct, 1.0) {
            pct = p;
            seen.push(p);
        }
        assert_eq!(seen, vec![30, 60, 90, 100]);
        assert_eq!(next_share(TrafficRouting::AllAtOnce, 0, 0.0), Some(100));
        assert_eq!(next_share(TrafficRouting::AllAtOnce, 100, 0.0), None);
    }
}
