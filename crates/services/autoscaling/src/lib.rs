//! Application Auto Scaling (`application-autoscaling`, awsJson1.1, `AnyScaleFrontendService`)
//! for ECS services' desired count (`ServiceNamespace=ecs`,
//! `ResourceId=service/<cluster>/<service>`, `ScalableDimension=ecs:service:DesiredCount`).
//!
//! - Scalable targets with their min/max and `SuspendedState`; registering one brings the
//!   service's desired count within min/max.
//! - Target tracking on `ECSServiceAverageCPUUtilization` / `ECSServiceAverageMemoryUtilization`
//!   / `ALBRequestCountPerTarget`, or on one metric a `CustomizedMetricSpecification` names:
//!   the policy creates and owns two CloudWatch alarms, `TargetTracking-<resource>-AlarmHigh-<id>`
//!   (above the target for 3 one-minute periods) and `-AlarmLow-<id>` (below 90 % of it for 15),
//!   whose actions invoke the policy; it scales out fast (desired × metric / target, rounded up)
//!   and in slowly (one task at a time), honouring cooldowns and `DisableScaleIn`.
//! - Step scaling: user alarms invoke the policy; the step whose bounds (relative to the alarm's
//!   threshold) hold the breaching value gives the adjustment.
//! - Scheduled actions (`at()`, `rate()` and `cron()`, in the action's time zone) that set min/max at their time.
//! - Scaling activities with AWS's descriptions and causes.
//! - Tags on scalable targets (at registration, `TagResource`, `UntagResource`,
//!   `ListTagsForResource` by `ScalableTargetARN`), kept in the target's record.
//!
//! Cross-service needs are traits the composition root implements: [`Services`] (ECS's desired
//! count) and [`Alarms`] (CloudWatch alarms); CloudWatch calls [`AutoScalingService::execute`]
//! when an alarm action names a policy.

#[rustfmt::skip]
pub mod model_constraints;
pub mod schedule;

use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_front::{JsonService, Protocol, RequestContext, ServiceSpec};
use gantry_store::{Store, Txn, TxnOutcome};
use serde_json::{Value, json};

gantry_front::operations! {
    /// Every operation of the Application Auto Scaling model.
    pub enum AutoScalingOperation {
        DeleteScalingPolicy,
        DeleteScheduledAction,
        DeregisterScalableTarget,
        DescribeScalableTargets,
        DescribeScalingActivities,
        DescribeScalingPolicies,
        DescribeScheduledActions,
        GetPredictiveScalingForecast,
        ListTagsForResource,
        PutScalingPolicy,
        PutScheduledAction,
        RegisterScalableTarget,
        TagResource,
        UntagResource,

    }
}

/// How the front reaches Application Auto Scaling.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "application-autoscaling",
    signing_name: "application-autoscaling",
    protocol: Protocol::Json {
        target_prefix: "AnyScaleFrontendService",
    },
    operations: AutoScalingOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

const DIMENSION: &str = "ecs:service:DesiredCount";
/// ECS's default cooldowns for target tracking (seconds).
const DEFAULT_COOLDOWN: i64 = 300;

/// ECS services as Application Auto Scaling sees them.
#[async_trait]
pub trait Services: Send + Sync + std::fmt::Debug {
    /// The desired count of `cluster`/`service`, or `None` when there is no such active service.
    async fn desired_count(
        &self,
        region: &str,
        cluster: &str,
        service: &str,
    ) -> Result<Option<i64>, AwsError>;
    /// Sets the desired count.
    async fn set_desired_count(
        &self,
        region: &str,
        cluster: &str,
        service: &str,
        count: i64,
    ) -> Result<(), AwsError>;
}

/// CloudWatch alarms as target tracking creates and deletes them.
#[async_trait]
pub trait Alarms: Send + Sync + std::fmt::Debug {
    /// `PutMetricAlarm` with `input`; returns the alarm's ARN.
    async fn put(&self, region: &str, input: Value) -> Result<String, AwsError>;
    /// `DeleteAlarms` (names that do not exist are ignored).
    async fn delete(&self, region: &str, names: &[String]) -> Result<(), AwsError>;
}

/// Target tracking's alarms: how many one-minute periods above the target scale out, below 90 %
/// of it scale in (AWS: 3 and 15).
#[derive(Debug, Clone, Copy)]
pub struct TrackingPeriods {
    pub high: i64,
    pub low: i64,
}

impl Default for TrackingPeriods {
    fn default() -> Self {
        Self { high: 3, low: 15 }
    }
}

/// The Application Auto Scaling service.
#[derive(Debug)]
pub struct AutoScalingService {
    store: Arc<dyn Store>,
    services: Arc<dyn Services>,
    alarms: Arc<dyn Alarms>,
    periods: TrackingPeriods,
    account_id: String,
    /// One scaling decision at a time.
    lock: tokio::sync::Mutex<()>,
}

fn validation(msg: impl Into<String>) -> AwsError {
    AwsError::client("ValidationException", msg)
}

fn not_found(msg: impl Into<String>) -> AwsError {
    AwsError::client("ObjectNotFoundException", msg)
}

fn store_err(e: gantry_store::StoreError) -> AwsError {
    if e.is_storage_full() || e.is_unavailable() {
        AwsError::unavailable(
            "InternalServiceException",
            gantry_aws_proto::store_retry_message(e.is_storage_full()),
        )
    } else {
        tracing::error!(error = %e, "store failure");
        AwsError::client(
            "InternalServiceException",
            "The request was not applied; retry.",
        )
        .with_status(http::StatusCode::INTERNAL_SERVER_ERROR)
    }
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// `(cluster, service)` of an ECS `ResourceId`.
fn ecs_resource(resource_id: &str) -> Result<(&str, &str), AwsError> {
    let mut parts = resource_id.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("service"), Some(c), Some(svc), None) if !c.is_empty() && !svc.is_empty() => {
            Ok((c, svc))
        }
        _ => Err(validation(format!(
            "Unsupported resource ID {resource_id}: ECS resources are service/<cluster>/<service>."
        ))),
    }
}

/// The statistics a `CustomizedMetricSpecification` may name (the model's `MetricStatistic`).
const METRIC_STATISTICS: [&str; 5] = ["Average", "Minimum", "Maximum", "SampleCount", "Sum"];

/// CloudWatch's units (`StandardUnit`), the values a customized metric's `Unit` may take.
const METRIC_UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The metric a target-tracking policy's `CustomizedMetricSpecification` names, as the
/// `(namespace, metric name, dimensions, statistic, unit)` its alarms watch. The metric-math
/// form (`Metrics`) is refused: this server's alarms watch one metric.
fn customized_metric(
    spec: &Value,
) -> Result<(String, String, Value, String, Option<String>), AwsError> {
    const P: &str = "CustomizedMetricSpecification";
    if !spec.is_object() {
        return Err(validation(format!("{P} must be a structure.")));
    }
    if spec.get("Metrics").is_some_and(|m| !m.is_null()) {
        return Err(validation(format!(
            "{P}.Metrics (metric math with TargetTrackingMetricDataQuery) is not supported by this server; specify one metric with MetricName, Namespace, Statistic and optionally Dimensions and Unit."
        )));
    }
    let string = |name: &str| -> Result<Option<String>, AwsError> {
        match spec.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) if !v.is_empty() => Ok(Some(v.clone())),
            Some(other) => Err(validation(format!(
                "The value {other} for {P}.{name} is invalid: a non-empty string is required."
            ))),
        }
    };
    let required = |name: &str| -> Result<String, AwsError> {
        string(name)?.ok_or_else(|| validation(format!("{P}.{name} is required.")))
    };
    let metric = required("MetricName")?;
    let namespace = required("Namespace")?;
    let statistic = required("Statistic")?;
    if !METRIC_STATISTICS.contains(&statistic.as_str()) {
        return Err(validation(format!(
            "1 validation error detected: Value '{statistic}' at 'targetTrackingScalingPolicyConfiguration.customizedMetricSpecification.statistic' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            METRIC_STATISTICS.join(", ")
        )));
    }
    let unit = string("Unit")?;
    if let Some(unit) = &unit
        && !METRIC_UNITS.contains(&unit.as_str())
    {
        return Err(validation(format!(
            "The value {unit} for {P}.Unit is invalid: use one of CloudWatch's units ({}).",
            METRIC_UNITS.join(", ")
        )));
    }
    let mut dims = Vec::new();
    match spec.get("Dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, d) in list.iter().enumerate() {
                let member = |m: &str| {
                    d.get(m)
                        .and_then(Value::as_str)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            validation(format!("{P}.Dimensions[{}].{m} is required.", i + 1))
                        })
                };
                dims.push(json!({"Name": member("Name")?, "Value": member("Value")?}));
            }
        }
        Some(_) => return Err(validation(format!("{P}.Dimensions must be a list."))),
    }
    Ok((namespace, metric, Value::Array(dims), statistic, unit))
}

/// The `LoadBalancer` and `TargetGroup` dimensions an `ALBRequestCountPerTarget` resource label
/// names: `app/<lb-name>/<lb-id>/targetgroup/<tg-name>/<tg-id>`.
fn alb_resource_label(label: &str) -> Result<(&str, &str), AwsError> {
    let invalid = || {
        validation(format!(
            "Invalid ResourceLabel {label}: for ALBRequestCountPerTarget it is \
             app/<load-balancer-name>/<load-balancer-id>/targetgroup/<target-group-name>/<target-group-id>."
        ))
    };
    let i = label.find("/targetgroup/").ok_or_else(invalid)?;
    let (lb, tg) = (&label[..i], &label[i + 1..]);
    let well_formed = |s: &str, kind: &str| {
        let p: Vec<&str> = s.split('/').collect();
        p.len() == 3 && p[0] == kind && !p[1].is_empty() && !p[2].is_empty()
    };
    if well_formed(lb, "app") && well_formed(tg, "targetgroup") {
        Ok((lb, tg))
    } else {
        Err(invalid())
    }
}

/// The target's namespace, resource and dimension, checked: only ECS services are scalable here.
fn target_of(input: &Value) -> Result<(String, String), AwsError> {
    let ns =
        s(input, "ServiceNamespace").ok_or_else(|| validation("ServiceNamespace is required."))?;
    if ns != "ecs" {
        return Err(validation(format!(
            "Unsupported service namespace {ns}: this server scales ECS services (ecs) only."
        )));
    }
    let id = s(input, "ResourceId").ok_or_else(|| validation("ResourceId is required."))?;
    let dim = s(input, "ScalableDimension")
        .ok_or_else(|| validation("ScalableDimension is required."))?;
    if dim != DIMENSION {
        return Err(validation(format!(
            "Unsupported scalable dimension {dim} for ECS: use {DIMENSION}."
        )));
    }
    ecs_resource(id)?;
    Ok((id.to_owned(), dim.to_owned()))
}

fn target_key(region: &str, resource: &str) -> String {
    format!("autoscaling/{region}/target/ecs/{resource}")
}

fn policy_prefix(region: &str, resource: &str) -> String {
    format!("autoscaling/{region}/policy/ecs/{resource}/")
}

fn activity_prefix(region: &str) -> String {
    format!("autoscaling/{region}/activity/")
}

impl AutoScalingService {
    pub fn new(
        store: Arc<dyn Store>,
        services: Arc<dyn Services>,
        alarms: Arc<dyn Alarms>,
        account_id: impl Into<String>,
    ) -> Self {
        Self {
            store,
            services,
            alarms,
            periods: TrackingPeriods::default(),
            account_id: account_id.into(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Other alarm periods for target tracking (tests).
    pub fn with_tracking_periods(mut self, periods: TrackingPeriods) -> Self {
        self.periods = periods;
        self
    }

    async fn get(&self, key: &str) -> Result<Option<(Value, u64)>, AwsError> {
        let rec = self.store.get(key).await.map_err(store_err)?;
        Ok(rec.and_then(|r| Some((serde_json::from_slice(&r.value).ok()?, r.revision))))
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Value)>, AwsError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .scan(prefix, after.as_deref(), 500)
                .await
                .map_err(store_err)?;
            for r in page.records {
                if let Ok(v) = serde_json::from_slice(&r.value) {
                    out.push((r.key, v));
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    async fn commit(&self, txn: Txn) -> Result<(), AwsError> {
        match self.store.commit(txn).await.map_err(store_err)? {
            TxnOutcome::Committed { .. } => Ok(()),
            _ => Err(AwsError::client(
                "ConcurrentUpdateException",
                "Concurrent updates to the same resource; retry.",
            )),
        }
    }

    async fn record_activity(
        &self,
        region: &str,
        resource: &str,
        description: String,
        cause: String,
        outcome: Result<(), String>,
        now_ms: u64,
    ) -> Result<(), AwsError> {
        let (status, message) = match outcome {
            Ok(()) => ("Successful", None),
            Err(m) => ("Failed", Some(m)),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let mut a = json!({
            "ActivityId": id,
            "ServiceNamespace": "ecs",
            "ResourceId": resource,
            "ScalableDimension": DIMENSION,
            "Description": description,
            "Cause": cause,
            "StartTime": secs(now_ms),
            "EndTime": secs(now_ms),
            "StatusCode": status,
        });
        if let Some(m) = message {
            a["StatusMessage"] = json!(m);
        }
        let key = format!("{}{now_ms:013}-{id}", activity_prefix(region));
        self.commit(Txn::new().put(key, a.to_string().into_bytes()))
            .await
    }

    /// Sets the service's desired count to `n` and records the activity.
    async fn scale(
        &self,
        region: &str,
        resource: &str,
        n: i64,
        cause: String,
        now_ms: u64,
    ) -> Result<(), AwsError> {
        let (cluster, service) = ecs_resource(resource)?;
        let description = format!("Setting desired count to {n}.");
        match self
            .services
            .set_desired_count(region, cluster, service, n)
            .await
        {
            Ok(()) => {
                self.record_activity(region, resource, description, cause, Ok(()), now_ms)
                    .await
            }
            Err(e) => {
                self.record_activity(
                    region,
                    resource,
                    description,
                    cause,
                    Err(e.message.clone()),
                    now_ms,
                )
                .await?;
                Err(e)
            }
        }
    }

    async fn register(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        let (resource, _) = target_of(input)?;
        let (cluster, service) = ecs_resource(&resource)?;
        let Some(current) = self
            .services
            .desired_count(&ctx.region, cluster, service)
            .await?
        else {
            return Err(validation(format!("ECS service doesn't exist: {resource}")));
        };
        let key = target_key(&ctx.region, &resource);
        let existing = self.get(&key).await?;
        let (mut target, rev) = match existing {
            Some((t, rev)) => (t, rev),
            None => {
                let (Some(_), Some(_)) = (input.get("MinCapacity"), input.get("MaxCapacity"))
                else {
                    return Err(validation(
                        "MinCapacity and MaxCapacity are required to register a new scalable target.",
                    ));
                };
                let arn = format!(
                    "arn:aws:application-autoscaling:{}:{}:scalable-target/{}",
                    ctx.region,
                    self.account_id,
                    uuid::Uuid::new_v4().simple()
                );
                (
                    json!({
                        "ServiceNamespace": "ecs",
                        "ResourceId": resource,
                        "ScalableDimension": DIMENSION,
                        "RoleARN": format!("arn:aws:iam::{}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService", self.account_id),
                        "CreationTime": secs(ctx.now),
                        "ScalableTargetARN": arn,
                        "SuspendedState": {
                            "DynamicScalingInSuspended": false,
                            "DynamicScalingOutSuspended": false,
                            "ScheduledScalingSuspended": false,
                        },
                    }),
                    0,
                )
            }
        };
        for k in ["MinCapacity", "MaxCapacity"] {
            if let Some(v) = input.get(k).and_then(Value::as_i64) {
                target[k] = json!(v);
            }
        }
        if let Some(st) = input.get("SuspendedState").and_then(Value::as_object) {
            for (k, v) in st {
                if let Some(b) = v.as_bool() {
                    target["SuspendedState"][k] = json!(b);
                }
            }
        }
        let min = target["MinCapacity"].as_i64().unwrap_or(0);
        let max = target["MaxCapacity"].as_i64().unwrap_or(0);
        if min > max {
            return Err(validation(format!(
                "Minimum capacity cannot be greater than maximum capacity (min {min}, max {max})."
            )));
        }
        let arn = target["ScalableTargetARN"].clone();
        let tags = tag_map(input)?;
        if !tags.is_empty() {
            // AWS takes tags only when the target is created.
            if rev != 0 {
                return Err(validation(
                    "The scalable target that you tried to tag already exists. To update tags on an existing scalable target, use the TagResource API.",
                ));
            }
            let merged = merge_tags(&serde_json::Map::new(), &tags, arn.as_str().unwrap_or(""))?;
            target[TAGS] = Value::Object(merged);
        }
        self.commit(
            Txn::new()
                .require_revision(key.clone(), rev)
                .put(key, target.to_string().into_bytes()),
        )
        .await?;
        let clamped = current.clamp(min, max);
        if clamped != current {
            let _g = self.lock.lock().await;
            let cause = format!("minimum capacity was set to {min}");
            let cause = if current > max {
                format!("maximum capacity was set to {max}")
            } else {
                cause
            };
            self.scale(&ctx.region, &resource, clamped, cause, ctx.now)
                .await?;
        }
        Ok(json!({ "ScalableTargetARN": arn }))
    }

    async fn describe_targets(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        if s(input, "ServiceNamespace") != Some("ecs") {
            return Ok(json!({ "ScalableTargets": [] }));
        }
        let ids: Vec<&str> = input
            .get("ResourceIds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let targets: Vec<Value> = self
            .scan(&format!("autoscaling/{}/target/ecs/", ctx.region))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .filter(|t| ids.is_empty() || ids.contains(&s(t, "ResourceId").unwrap_or_default()))
            .map(public)
            .collect();
        Ok(json!({ "ScalableTargets": targets }))
    }

    async fn deregister(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        let (resource, _) = target_of(input)?;
        let key = target_key(&ctx.region, &resource);
        let Some((_, rev)) = self.get(&key).await? else {
            return Err(not_found(format!(
                "No scalable target registered for service namespace: ecs, resource ID: {resource}, scalable dimension: {DIMENSION}"
            )));
        };
        let policies = self.scan(&policy_prefix(&ctx.region, &resource)).await?;
        let mut alarms = Vec::new();
        let mut txn = Txn::new().require_revision(key.clone(), rev).delete(key);
        for (k, p) in policies {
            alarms.extend(owned_alarms(&p));
            txn = txn.delete(k);
        }
        self.commit(txn).await?;
        if !alarms.is_empty() {
            self.alarms.delete(&ctx.region, &alarms).await?;
        }
        Ok(json!({}))
    }

    /// The store key, record and revision of the scalable target named by `ResourceARN`.
    async fn target_by_arn(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<(String, Value, u64), AwsError> {
        let arn = s(input, "ResourceARN").ok_or_else(|| validation("ResourceARN is required."))?;
        let found = self
            .scan(&format!("autoscaling/{}/target/ecs/", ctx.region))
            .await?
            .into_iter()
            .find(|(_, t)| s(t, "ScalableTargetARN") == Some(arn));
        let Some((key, _)) = found else {
            return Err(AwsError::client(
                "ResourceNotFoundException",
                format!("No scalable target found for ARN: {arn}"),
            )
            .with_member("ResourceName", json!(arn)));
        };
        // Read again for the revision the update is conditional on.
        match self.get(&key).await? {
            Some((t, rev)) => Ok((key, t, rev)),
            None => Err(AwsError::client(
                "ResourceNotFoundException",
                format!("No scalable target found for ARN: {arn}"),
            )
            .with_member("ResourceName", json!(arn))),
        }
    }

    async fn tag(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        if input.get("Tags").is_none() {
            return Err(validation("Tags is required."));
        }
        let tags = tag_map(input)?;
        let (key, mut target, rev) = self.target_by_arn(input, ctx).await?;
        let arn = s(&target, "ScalableTargetARN")
            .unwrap_or_default()
            .to_owned();
        let current = target[TAGS].as_object().cloned().unwrap_or_default();
        target[TAGS] = Value::Object(merge_tags(&current, &tags, &arn)?);
        self.commit(
            Txn::new()
                .require_revision(key.clone(), rev)
                .put(key, target.to_string().into_bytes()),
        )
        .await?;
        Ok(json!({}))
    }

    async fn untag(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        let Some(keys) = input.get("TagKeys").and_then(Value::as_array) else {
            return Err(validation("TagKeys is required."));
        };
        let (key, mut target, rev) = self.target_by_arn(input, ctx).await?;
        if let Some(tags) = target.get_mut(TAGS).and_then(Value::as_object_mut) {
            for k in keys.iter().filter_map(Value::as_str) {
                tags.remove(k);
            }
        }
        self.commit(
            Txn::new()
                .require_revision(key.clone(), rev)
                .put(key, target.to_string().into_bytes()),
        )
        .await?;
        Ok(json!({}))
    }

    async fn list_tags(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        let (_, target, _) = self.target_by_arn(input, ctx).await?;
        let tags = target.get(TAGS).cloned().unwrap_or_else(|| json!({}));
        Ok(json!({ "Tags": tags }))
    }

    async fn put_policy(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        let (resource, _) = target_of(input)?;
        let name = s(input, "PolicyName").ok_or_else(|| validation("PolicyName is required."))?;
        if self
            .get(&target_key(&ctx.region, &resource))
            .await?
            .is_none()
        {
            return Err(not_found(format!(
                "No scalable target registered for service namespace: ecs, resource ID: {resource}, scalable dimension: {DIMENSION}"
            )));
        }
        let kind = s(input, "PolicyType").unwrap_or("StepScaling");
        let key = format!("{}{name}", policy_prefix(&ctx.region, &resource));
        let existing = self.get(&key).await?;
        let (id, old_alarms, rev, created) = match &existing {
            Some((p, rev)) => (
                p["_id"].as_str().unwrap_or_default().to_owned(),
                owned_alarms(p),
                *rev,
                p["CreationTime"].clone(),
            ),
            None => (
                uuid::Uuid::new_v4().to_string(),
                Vec::new(),
                0,
                json!(secs(ctx.now)),
            ),
        };
        let arn = format!(
            "arn:aws:autoscaling:{}:{}:scalingPolicy:{id}:resource/ecs/{resource}:policyName/{name}",
            ctx.region, self.account_id
        );
        let mut policy = json!({
            "PolicyARN": arn,
            "PolicyName": name,
            "ServiceNamespace": "ecs",
            "ResourceId": resource,
            "ScalableDimension": DIMENSION,
            "PolicyType": kind,
            "CreationTime": created,
            "Alarms": [],
            "_id": id,
        });
        let mut new_alarms = Vec::new();
        match kind {
            "TargetTrackingScaling" => {
                let cfg = input
                    .get("TargetTrackingScalingPolicyConfiguration")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| validation("TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling policy."))?;
                let target = cfg
                    .get("TargetValue")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| validation("TargetValue is required."))?;
                if target.is_nan() || target <= 0.0 {
                    return Err(validation("TargetValue must be greater than 0."));
                }
                let predefined = cfg.get("PredefinedMetricSpecification");
                let customized = cfg.get("CustomizedMetricSpecification");
                if predefined.is_some() && customized.is_some() {
                    return Err(validation(
                        "Only one of PredefinedMetricSpecification or CustomizedMetricSpecification can be specified.",
                    ));
                }
                policy["TargetTrackingScalingPolicyConfiguration"] = cfg.clone();
                let (cluster, service) = ecs_resource(&resource)?;
                let ecs_dims = json!([{"Name": "ClusterName", "Value": cluster}, {"Name": "ServiceName", "Value": service}]);
                // (namespace, metric, dimensions, statistic, unit)
                let (namespace, metric, dims, statistic, unit) = if let Some(spec) = customized {
                    customized_metric(spec)?
                } else {
                    let (namespace, metric, dims, statistic, unit) = match cfg
                        .pointer("/PredefinedMetricSpecification/PredefinedMetricType")
                        .and_then(Value::as_str)
                    {
                        Some("ECSServiceAverageCPUUtilization") => (
                            "AWS/ECS",
                            "CPUUtilization",
                            ecs_dims,
                            "Average",
                            Some("Percent"),
                        ),
                        Some("ECSServiceAverageMemoryUtilization") => (
                            "AWS/ECS",
                            "MemoryUtilization",
                            ecs_dims,
                            "Average",
                            Some("Percent"),
                        ),
                        Some("ALBRequestCountPerTarget") => {
                            let label = cfg
                            .pointer("/PredefinedMetricSpecification/ResourceLabel")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                validation(
                                    "ResourceLabel is required for predefined metric type ALBRequestCountPerTarget.",
                                )
                            })?;
                            let (lb, tg) = alb_resource_label(label)?;
                            (
                                "AWS/ApplicationELB",
                                "RequestCountPerTarget",
                                json!([{"Name": "LoadBalancer", "Value": lb}, {"Name": "TargetGroup", "Value": tg}]),
                                "Sum",
                                None,
                            )
                        }
                        Some(other) => {
                            return Err(validation(format!(
                                "Unsupported predefined metric type {other} for ECS on this server: use ECSServiceAverageCPUUtilization, ECSServiceAverageMemoryUtilization or ALBRequestCountPerTarget."
                            )));
                        }
                        None if predefined.is_some() => {
                            return Err(validation(
                                "PredefinedMetricType is required in PredefinedMetricSpecification.",
                            ));
                        }
                        None => {
                            return Err(validation(
                                "Either PredefinedMetricSpecification or CustomizedMetricSpecification must be specified.",
                            ));
                        }
                    };
                    (
                        namespace.to_owned(),
                        metric.to_owned(),
                        dims,
                        statistic.to_owned(),
                        unit.map(str::to_owned),
                    )
                };
                let suffix = uuid::Uuid::new_v4();
                let mut specs = vec![(
                    "AlarmHigh",
                    self.periods.high,
                    target,
                    "GreaterThanThreshold",
                )];
                if cfg.get("DisableScaleIn").and_then(Value::as_bool) != Some(true) {
                    specs.push((
                        "AlarmLow",
                        self.periods.low,
                        target * 0.9,
                        "LessThanThreshold",
                    ));
                }
                for (which, periods, threshold, op) in specs {
                    let alarm_name = format!("TargetTracking-{resource}-{which}-{suffix}");
                    let mut alarm = json!({
                        "AlarmName": alarm_name,
                        "AlarmDescription": format!("DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {arn}."),
                        "ActionsEnabled": true,
                        "AlarmActions": [arn],
                        "Namespace": namespace,
                        "MetricName": metric,
                        "Dimensions": dims,
                        "Statistic": statistic,
                        "Period": 60,
                        "EvaluationPeriods": periods,
                        "DatapointsToAlarm": periods,
                        "Threshold": threshold,
                        "ComparisonOperator": op,
                    });
                    if let Some(unit) = &unit {
                        alarm["Unit"] = json!(unit);
                    }
                    let alarm_arn = self.alarms.put(&ctx.region, alarm).await?;
                    new_alarms.push(json!({"AlarmName": alarm_name, "AlarmARN": alarm_arn}));
                }
                policy["Alarms"] = json!(new_alarms);
            }
            "StepScaling" => {
                let cfg = input
                    .get("StepScalingPolicyConfiguration")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| {
                        validation(
                            "StepScalingPolicyConfiguration is required for a StepScaling policy.",
                        )
                    })?;
                let adj = s(cfg, "AdjustmentType")
                    .ok_or_else(|| validation("AdjustmentType is required."))?;
                if ![
                    "ChangeInCapacity",
                    "PercentChangeInCapacity",
                    "ExactCapacity",
                ]
                .contains(&adj)
                {
                    return Err(validation(format!("Unsupported AdjustmentType {adj}.")));
                }
                let steps = cfg
                    .get("StepAdjustments")
                    .and_then(Value::as_array)
                    .map(Vec::len)
                    .unwrap_or(0);
                if steps == 0 {
                    return Err(validation(
                        "StepAdjustments must contain at least one step.",
                    ));
                }
                policy["StepScalingPolicyConfiguration"] = cfg.clone();
            }
            other => {
                return Err(validation(format!(
                    "Unsupported policy type {other}: this server runs TargetTrackingScaling and StepScaling (predictive scaling is not supported)."
                )));
            }
        }
        let committed = self
            .commit(
                Txn::new()
                    .require_revision(key.clone(), rev)
                    .put(key, policy.to_string().into_bytes()),
            )
            .await;
        let stale: Vec<String> = if committed.is_ok() {
            old_alarms
        } else {
            new_alarms
                .iter()
                .filter_map(|a| s(a, "AlarmName").map(str::to_owned))
                .collect()
        };
        if !stale.is_empty() {
            self.alarms.delete(&ctx.region, &stale).await?;
        }
        committed?;
        Ok(json!({ "PolicyARN": arn, "Alarms": new_alarms }))
    }

    async fn describe_policies(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        if s(input, "ServiceNamespace") != Some("ecs") {
            return Ok(json!({ "ScalingPolicies": [] }));
        }
        let names: Vec<&str> = input
            .get("PolicyNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let resource = s(input, "ResourceId");
        let prefix = match resource {
            Some(r) => policy_prefix(&ctx.region, r),
            None => format!("autoscaling/{}/policy/ecs/", ctx.region),
        };
        let policies: Vec<Value> = self
            .scan(&prefix)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .filter(|p| names.is_empty() || names.contains(&s(p, "PolicyName").unwrap_or_default()))
            .map(public)
            .collect();
        Ok(json!({ "ScalingPolicies": policies }))
    }

    async fn delete_policy(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        let (resource, _) = target_of(input)?;
        let name = s(input, "PolicyName").ok_or_else(|| validation("PolicyName is required."))?;
        let key = format!("{}{name}", policy_prefix(&ctx.region, &resource));
        let Some((p, rev)) = self.get(&key).await? else {
            return Err(not_found(format!(
                "No scaling policy found for service namespace: ecs, resource ID: {resource}, scalable dimension: {DIMENSION}, policy name: {name}"
            )));
        };
        self.commit(Txn::new().require_revision(key.clone(), rev).delete(key))
            .await?;
        let alarms = owned_alarms(&p);
        if !alarms.is_empty() {
            self.alarms.delete(&ctx.region, &alarms).await?;
        }
        Ok(json!({}))
    }

    async fn describe_activities(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        if s(input, "ServiceNamespace") != Some("ecs") {
            return Ok(json!({ "ScalingActivities": [] }));
        }
        let resource = s(input, "ResourceId");
        let max = input
            .get("MaxResults")
            .and_then(Value::as_u64)
            .unwrap_or(50)
            .clamp(1, 50) as usize;
        let mut acts: Vec<Value> = self
            .scan(&activity_prefix(&ctx.region))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .filter(|a| resource.is_none_or(|r| s(a, "ResourceId") == Some(r)))
            .collect();
        acts.reverse();
        acts.truncate(max);
        Ok(json!({ "ScalingActivities": acts }))
    }

    /// Runs the policy `arn` because of `trigger` (an alarm action) at `now_ms`.
    pub async fn execute(
        &self,
        region: &str,
        arn: &str,
        trigger: Trigger<'_>,
        now_ms: u64,
    ) -> Result<(), AwsError> {
        let Trigger {
            alarm,
            state,
            value,
            threshold,
        } = trigger;
        let _g = self.lock.lock().await;
        let Some((key, policy)) = self
            .scan(&format!("autoscaling/{region}/policy/ecs/"))
            .await?
            .into_iter()
            .find(|(_, p)| s(p, "PolicyARN") == Some(arn))
        else {
            tracing::debug!(arn, "alarm action for a policy that no longer exists");
            return Ok(());
        };
        let resource = s(&policy, "ResourceId").unwrap_or_default().to_owned();
        let Some((target, _)) = self.get(&target_key(region, &resource)).await? else {
            return Ok(());
        };
        let (cluster, service) = ecs_resource(&resource)?;
        let Some(current) = self
            .services
            .desired_count(region, cluster, service)
            .await?
        else {
            return Ok(());
        };
        let min = target["MinCapacity"].as_i64().unwrap_or(0);
        let max = target["MaxCapacity"].as_i64().unwrap_or(current);
        let suspended = |k: &str| {
            target
                .pointer(&format!("/SuspendedState/{k}"))
                .and_then(Value::as_bool)
                == Some(true)
        };
        let name = s(&policy, "PolicyName").unwrap_or_default();
        let last_out = policy.get("_lastScaleOut").and_then(Value::as_u64);
        let last_in = policy.get("_lastScaleIn").and_then(Value::as_u64);
        let in_cooldown = |last: Option<u64>, cooldown: i64| {
            last.is_some_and(|t| now_ms < t + (cooldown.max(0) as u64) * 1000)
        };
        let desired = match s(&policy, "PolicyType") {
            Some("TargetTrackingScaling") => {
                let cfg = &policy["TargetTrackingScalingPolicyConfiguration"];
                let target_value = cfg["TargetValue"].as_f64().unwrap_or(1.0);
                let Some(v) = value else { return Ok(()) };
                if alarm.contains("-AlarmHigh-") {
                    let want = ((current.max(1) as f64) * v / target_value).ceil() as i64;
                    let cooldown = cfg["ScaleOutCooldown"].as_i64().unwrap_or(DEFAULT_COOLDOWN);
                    if want <= current
                        || suspended("DynamicScalingOutSuspended")
                        || in_cooldown(last_out, cooldown)
                    {
                        return Ok(());
                    }
                    want
                } else {
                    let cooldown = cfg["ScaleInCooldown"].as_i64().unwrap_or(DEFAULT_COOLDOWN);
                    if cfg["DisableScaleIn"].as_bool() == Some(true)
                        || suspended("DynamicScalingInSuspended")
                        || in_cooldown(last_in, cooldown)
                        || in_cooldown(last_out, cooldown)
                    {
                        return Ok(());
                    }
                    // Scale in conservatively: one task at a time, never below what the metric needs.
                    let need = ((current as f64) * v / target_value).ceil() as i64;
                    if need >= current {
                        return Ok(());
                    }
                    current - 1
                }
            }
            _ => {
                let cfg = &policy["StepScalingPolicyConfiguration"];
                let diff = value.unwrap_or(threshold) - threshold;
                let step = cfg["StepAdjustments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|st| {
                        let lo = st["MetricIntervalLowerBound"]
                            .as_f64()
                            .unwrap_or(f64::NEG_INFINITY);
                        let hi = st["MetricIntervalUpperBound"]
                            .as_f64()
                            .unwrap_or(f64::INFINITY);
                        lo <= diff && diff < hi || (hi == 0.0 && diff == 0.0 && lo < 0.0)
                    });
                let Some(adj) = step.and_then(|st| st["ScalingAdjustment"].as_i64()) else {
                    return Ok(());
                };
                let cooldown = cfg["Cooldown"].as_i64().unwrap_or(DEFAULT_COOLDOWN);
                if in_cooldown(last_out.max(last_in), cooldown) {
                    return Ok(());
                }
                let want = match s(cfg, "AdjustmentType") {
                    Some("ExactCapacity") => adj,
                    Some("PercentChangeInCapacity") => {
                        let mut delta = (current as f64 * adj as f64 / 100.0).trunc() as i64;
                        let floor = cfg["MinAdjustmentMagnitude"].as_i64().unwrap_or(1).max(1);
                        if delta.abs() < floor && adj != 0 {
                            delta = floor * adj.signum();
                        }
                        current + delta
                    }
                    _ => current + adj,
                };
                if (want > current && suspended("DynamicScalingOutSuspended"))
                    || (want < current && suspended("DynamicScalingInSuspended"))
                {
                    return Ok(());
                }
                want
            }
        };
        let desired = desired.clamp(min, max);
        if desired == current {
            return Ok(());
        }
        let cause = format!("monitor alarm {alarm} in state {state} triggered policy {name}");
        self.scale(region, &resource, desired, cause, now_ms)
            .await?;
        let mark = if desired > current {
            "_lastScaleOut"
        } else {
            "_lastScaleIn"
        };
        let mut updated = policy.clone();
        updated[mark] = json!(now_ms);
        // Best effort: a concurrent PutScalingPolicy wins and its cooldown starts afresh.
        let _ = self
            .commit(Txn::new().put(key, updated.to_string().into_bytes()))
            .await;
        Ok(())
    }
}

fn scheduled_prefix(region: &str) -> String {
    format!("autoscaling/scheduled/{region}/")
}

impl AutoScalingService {
    async fn put_scheduled(&self, input: &Value, ctx: &RequestContext) -> Result<Value, AwsError> {
        let (resource, _) = target_of(input)?;
        let name = s(input, "ScheduledActionName")
            .ok_or_else(|| validation("ScheduledActionName is required."))?;
        if self
            .get(&target_key(&ctx.region, &resource))
            .await?
            .is_none()
        {
            return Err(not_found(format!(
                "No scalable target registered for service namespace: ecs, resource ID: {resource}, scalable dimension: {DIMENSION}"
            )));
        }
        let key = format!("{}{resource}/{name}", scheduled_prefix(&ctx.region));
        let existing = self.get(&key).await?;
        let rev = existing.as_ref().map_or(0, |(_, r)| *r);
        let old = existing.map(|(v, _)| v);
        // An update may leave out what does not change.
        let pick = |k: &str| {
            input
                .get(k)
                .filter(|v| !v.is_null())
                .or_else(|| old.as_ref().and_then(|o| o.get(k)))
                .cloned()
        };
        let text = pick("Schedule")
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| validation("Schedule is required."))?;
        let tz = pick("Timezone").and_then(|v| v.as_str().map(str::to_owned));
        let sched = schedule::parse(&text, tz.as_deref()).map_err(validation)?;
        let action = pick("ScalableTargetAction").unwrap_or(json!({}));
        let (min, max) = (
            action["MinCapacity"].as_i64(),
            action["MaxCapacity"].as_i64(),
        );
        if min.is_none() && max.is_none() {
            return Err(validation(
                "ScalableTargetAction needs MinCapacity, MaxCapacity or both.",
            ));
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(validation(format!(
                "Minimum capacity cannot be greater than maximum capacity (min {lo}, max {hi})."
            )));
        }
        let created = old
            .as_ref()
            .and_then(|o| o.get("CreationTime").cloned())
            .unwrap_or(json!(secs(ctx.now)));
        let start_ms = pick("StartTime")
            .and_then(|v| v.as_f64())
            .map(|t| (t * 1000.0) as u64)
            .unwrap_or(ctx.now);
        let first = match sched {
            schedule::Schedule::Rate(every)
                if input.get("StartTime").is_none() && old.is_none() =>
            {
                schedule::next_after(&sched, ctx.now + every, ctx.now)
            }
            _ => schedule::next_after(&sched, start_ms, ctx.now.saturating_sub(1)),
        };
        let mut record = json!({
            "ScheduledActionName": name,
            "ScheduledActionARN": format!(
                "arn:aws:autoscaling:{}:{}:scheduledAction:{}:resource/ecs/{resource}:scheduledActionName/{name}",
                ctx.region, self.account_id, uuid::Uuid::new_v4()
            ),
            "ServiceNamespace": "ecs",
            "Schedule": text,
            "ResourceId": resource,
            "ScalableDimension": DIMENSION,
            "ScalableTargetAction": action,
            "CreationTime": created,
            "_start": start_ms,
            "_next": first,
        });
        if let Some(old_arn) = old.as_ref().and_then(|o| o.get("ScheduledActionARN")) {
            record["ScheduledActionARN"] = old_arn.clone();
        }
        for k in ["Timezone", "StartTime", "EndTime"] {
            if let Some(v) = pick(k) {
                record[k] = v;
            }
        }
        self.commit(
            Txn::new()
                .require_revision(key.clone(), rev)
                .put(key, record.to_string().into_bytes()),
        )
        .await?;
        Ok(json!({}))
    }

    async fn describe_scheduled(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        if s(input, "ServiceNamespace") != Some("ecs") {
            return Ok(json!({ "ScheduledActions": [] }));
        }
        let names: Vec<&str> = input
            .get("ScheduledActionNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let resource = s(input, "ResourceId");
        let actions: Vec<Value> = self
            .scan(&scheduled_prefix(&ctx.region))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .filter(|a| {
                resource.is_none_or(|r| s(a, "ResourceId") == Some(r))
                    && (names.is_empty()
                        || names.contains(&s(a, "ScheduledActionName").unwrap_or_default()))
            })
            .map(public)
            .collect();
        Ok(json!({ "ScheduledActions": actions }))
    }

    async fn delete_scheduled(
        &self,
        input: &Value,
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        let (resource, _) = target_of(input)?;
        let name = s(input, "ScheduledActionName")
            .ok_or_else(|| validation("ScheduledActionName is required."))?;
        let key = format!("{}{resource}/{name}", scheduled_prefix(&ctx.region));
        let Some((_, rev)) = self.get(&key).await? else {
            return Err(not_found(format!(
                "No scheduled action found for service namespace: ecs, resource ID: {resource}, scalable dimension: {DIMENSION}, scheduled action name: {name}"
            )));
        };
        self.commit(Txn::new().require_revision(key.clone(), rev).delete(key))
            .await?;
        Ok(json!({}))
    }

    /// Runs the scheduled actions that are due at `now_ms`; returns how many ran.
    pub async fn run_due(&self, now_ms: u64) -> Result<usize, AwsError> {
        let mut ran = 0;
        for (key, mut action) in self.scan("autoscaling/scheduled/").await? {
            let Some(next) = action["_next"].as_u64() else {
                continue;
            };
            if next > now_ms {
                continue;
            }
            let region = key["autoscaling/scheduled/".len()..]
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let resource = s(&action, "ResourceId").unwrap_or_default().to_owned();
            let name = s(&action, "ScheduledActionName")
                .unwrap_or_default()
                .to_owned();
            let expired = action["EndTime"]
                .as_f64()
                .is_some_and(|end| ((end * 1000.0) as u64) < next);
            if !expired {
                self.apply_scheduled(
                    &region,
                    &resource,
                    &name,
                    &action["ScalableTargetAction"],
                    now_ms,
                )
                .await?;
                ran += 1;
            }
            let sched = schedule::parse(
                s(&action, "Schedule").unwrap_or_default(),
                s(&action, "Timezone"),
            );
            let start = action["_start"].as_u64().unwrap_or(now_ms);
            action["_next"] = match sched {
                Ok(sc) if !expired => json!(schedule::next_after(&sc, start, now_ms)),
                _ => Value::Null,
            };
            // A concurrent update of the action wins; it carries its own next run.
            let _ = self
                .commit(Txn::new().put(key, action.to_string().into_bytes()))
                .await;
        }
        Ok(ran)
    }

    async fn apply_scheduled(
        &self,
        region: &str,
        resource: &str,
        name: &str,
        action: &Value,
        now_ms: u64,
    ) -> Result<(), AwsError> {
        let _g = self.lock.lock().await;
        let key = target_key(region, resource);
        let Some((mut target, rev)) = self.get(&key).await? else {
            return Ok(());
        };
        if target
            .pointer("/SuspendedState/ScheduledScalingSuspended")
            .and_then(Value::as_bool)
            == Some(true)
        {
            return Ok(());
        }
        if let Some(min) = action["MinCapacity"].as_i64() {
            target["MinCapacity"] = json!(min);
        }
        if let Some(max) = action["MaxCapacity"].as_i64() {
            target["MaxCapacity"] = json!(max);
        }
        let min = target["MinCapacity"].as_i64().unwrap_or(0);
        let max = target["MaxCapacity"].as_i64().unwrap_or(0).max(min);
        target["MaxCapacity"] = json!(max);
        self.commit(
            Txn::new()
                .require_revision(key.clone(), rev)
                .put(key, target.to_string().into_bytes()),
        )
        .await?;
        let (cluster, service) = ecs_resource(resource)?;
        let Some(current) = self
            .services
            .desired_count(region, cluster, service)
            .await?
        else {
            return Ok(());
        };
        let clamped = current.clamp(min, max);
        if clamped != current {
            let cause = if clamped > current {
                format!("scheduled action name {name} set min capacity to {min}")
            } else {
                format!("scheduled action name {name} set max capacity to {max}")
            };
            self.scale(region, resource, clamped, cause, now_ms).await?;
        }
        Ok(())
    }

    /// Runs due scheduled actions every `tick` until `shutdown` turns true.
    pub async fn run(
        self: Arc<Self>,
        tick: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = interval.tick() => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    if let Err(error) = self.run_due(now).await {
                        tracing::warn!(%error, "scheduled actions pass failed; retrying next tick");
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Why a policy runs: an alarm in a state.
#[derive(Debug, Clone, Copy)]
pub struct Trigger<'a> {
    /// The alarm's name.
    pub alarm: &'a str,
    /// The state it is in (`ALARM`, `OK`, ...).
    pub state: &'a str,
    /// The most recent datapoint the alarm evaluated (none for `SetAlarmState`).
    pub value: Option<f64>,
    /// The alarm's threshold.
    pub threshold: f64,
}

/// The names of the alarms a target tracking policy owns.
fn owned_alarms(p: &Value) -> Vec<String> {
    if s(p, "PolicyType") != Some("TargetTrackingScaling") {
        return Vec::new();
    }
    p["Alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| s(a, "AlarmName").map(str::to_owned))
        .collect()
}

/// Where a scalable target's record keeps its tags (not a member of `ScalableTarget`).
const TAGS: &str = "_tags";
/// Tags a scalable target may carry.
const MAX_TAGS: usize = 50;

/// The request's `Tags` map (absent: empty); the model's constraints (key 1..=128 and value
/// ..=256 characters) are checked by the front, the reserved `aws:` prefix here.
fn tag_map(input: &Value) -> Result<serde_json::Map<String, Value>, AwsError> {
    let tags = match input.get("Tags") {
        None | Some(Value::Null) => return Ok(serde_json::Map::new()),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(validation("Tags must be a map of tag keys to tag values.")),
    };
    for (k, v) in &tags {
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(validation(format!(
                "Tag key '{k}' uses the reserved prefix 'aws:'."
            )));
        }
        if !v.is_string() {
            return Err(validation(format!(
                "The value of tag '{k}' must be a string."
            )));
        }
    }
    Ok(tags)
}

/// `current` with `tags` added or replaced; more than [`MAX_TAGS`] is `TooManyTagsException`.
fn merge_tags(
    current: &serde_json::Map<String, Value>,
    tags: &serde_json::Map<String, Value>,
    arn: &str,
) -> Result<serde_json::Map<String, Value>, AwsError> {
    let mut merged = current.clone();
    merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    if merged.len() > MAX_TAGS {
        return Err(AwsError::client(
            "TooManyTagsException",
            format!(
                "A scalable target can have at most {MAX_TAGS} tags; this request would leave {} on {arn}.",
                merged.len()
            ),
        )
        .with_member("ResourceName", json!(arn)));
    }
    Ok(merged)
}

fn public(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| !k.starts_with('_'));
    }
    v
}

#[async_trait]
impl JsonService for AutoScalingService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        let input: Value = gantry_aws_proto::json::parse_body(body)?;
        match op {
            "RegisterScalableTarget" => self.register(&input, ctx).await,
            "DescribeScalableTargets" => self.describe_targets(&input, ctx).await,
            "DeregisterScalableTarget" => self.deregister(&input, ctx).await,
            "PutScalingPolicy" => self.put_policy(&input, ctx).await,
            "DescribeScalingPolicies" => self.describe_policies(&input, ctx).await,
            "DeleteScalingPolicy" => self.delete_policy(&input, ctx).await,
            "DescribeScalingActivities" => self.describe_activities(&input, ctx).await,
            "PutScheduledAction" => self.put_scheduled(&input, ctx).await,
            "DescribeScheduledActions" => self.describe_scheduled(&input, ctx).await,
            "DeleteScheduledAction" => self.delete_scheduled(&input, ctx).await,
            "TagResource" => self.tag(&input, ctx).await,
            "UntagResource" => self.untag(&input, ctx).await,
            "ListTagsForResource" => self.list_tags(&input, ctx).await,
            other => Err(validation(format!(
                "The operation {other} is not supported by this endpoint."
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use gantry_store::MemoryStore;

    use super::*;

    #[test]
    fn alb_resource_labels_name_the_load_balancer_and_target_group() {
        assert_eq!(
            alb_resource_label("app/web/50dc6c495c0c9188/targetgroup/tg/943f017f100becff").unwrap(),
            (
                "app/web/50dc6c495c0c9188",
                "targetgroup/tg/943f017f100becff"
            )
        );
        for bad in [
            "app/web/50dc/targetgroup/tg",
            "net/web/50dc/targetgroup/tg/94",
            "app/web/targetgroup/tg/94",
            "targetgroup/tg/94",
        ] {
            assert!(alb_resource_label(bad).is_err(), "{bad}");
        }
    }

    #[derive(Debug, Default)]
    struct FakeServices(Mutex<i64>);

    #[async_trait]
    impl Services for FakeServices {
        async fn desired_count(&self, _: &str, _: &str, _: &str) -> Result<Option<i64>, AwsError> {
            Ok(Some(*self.0.lock().unwrap()))
        }
        async fn set_desired_count(
            &self,
            _: &str,
            _: &str,
            _: &str,
            n: i64,
        ) -> Result<(), AwsError> {
            *self.0.lock().unwrap() = n;
            Ok(())
        }
    }

    #[derive(Debug, Default)]
    struct FakeAlarms(Mutex<Vec<Value>>);

    #[async_trait]
    impl Alarms for FakeAlarms {
        async fn put(&self, _: &str, input: Value) -> Result<String, AwsError> {
            let name = input["AlarmName"].as_str().unwrap().to_owned();
            self.0.lock().unwrap().push(input);
            Ok(format!("arn:aws:cloudwatch:r:1:alarm:{name}"))
        }
        async fn delete(&self, _: &str, names: &[String]) -> Result<(), AwsError> {
            self.0
                .lock()
                .unwrap()
                .retain(|a| !names.iter().any(|n| a["AlarmName"] == n.as_str()));
            Ok(())
        }
    }

    fn ctx(now: u64) -> RequestContext {
        RequestContext {
            caller: None,
            request_id: "r".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            access_key_id: String::new(),
            now,
        }
    }

    async fn call(svc: &AutoScalingService, op: &str, body: Value) -> Value {
        JsonService::call(svc, op, body.to_string().as_bytes(), &ctx(1_000))
            .await
            .unwrap()
    }

    /// A service of 2 tasks registered as scalable from 1 to 10, with its scalable target.
    async fn two_tasks_scalable_to_ten() -> (
        AutoScalingService,
        Arc<FakeServices>,
        Arc<FakeAlarms>,
        Value,
    ) {
        let services = Arc::new(FakeServices(Mutex::new(2)));
        let alarms = Arc::new(FakeAlarms::default());
        let svc = AutoScalingService::new(
            Arc::new(MemoryStore::new()),
            services.clone(),
            alarms.clone(),
            "000000000000",
        );
        let target = json!({"ServiceNamespace": "ecs", "ResourceId": "service/c/s",
                            "ScalableDimension": DIMENSION});
        let mut reg = target.clone();
        reg["MinCapacity"] = json!(1);
        reg["MaxCapacity"] = json!(10);
        call(&svc, "RegisterScalableTarget", reg).await;
        (svc, services, alarms, target)
    }

    #[tokio::test]
    async fn tags_live_in_the_target_record_and_go_with_it() {
        let services = Arc::new(FakeServices(Mutex::new(2)));
        let svc = AutoScalingService::new(
            Arc::new(MemoryStore::new()),
            services,
            Arc::new(FakeAlarms::default()),
            "000000000000",
        );
        let target = json!({"ServiceNamespace": "ecs", "ResourceId": "service/c/s",
                            "ScalableDimension": DIMENSION});
        let mut reg = target.clone();
        reg["MinCapacity"] = json!(1);
        reg["MaxCapacity"] = json!(10);
        reg["Tags"] = json!({"env": "prod"});
        let arn = call(&svc, "RegisterScalableTarget", reg.clone()).await["ScalableTargetARN"]
            .as_str()
            .unwrap()
            .to_owned();
        let by_arn = json!({"ResourceARN": arn});
        assert_eq!(
            call(&svc, "ListTagsForResource", by_arn.clone()).await,
            json!({"Tags": {"env": "prod"}})
        );
        // Tags are taken at creation only.
        let err = JsonService::call(
            &svc,
            "RegisterScalableTarget",
            reg.to_string().as_bytes(),
            &ctx(1_000),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, "ValidationException");
        // Describe does not show the tags.
        let d = call(
            &svc,
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs"}),
        )
        .await;
        assert!(d["ScalableTargets"][0].get(TAGS).is_none());
        let many: serde_json::Map<String, Value> =
            (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
        let err = JsonService::call(
            &svc,
            "TagResource",
            json!({"ResourceARN": arn, "Tags": many})
                .to_string()
                .as_bytes(),
            &ctx(1_000),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, "TooManyTagsException");
        call(&svc, "DeregisterScalableTarget", target).await;
        let err = JsonService::call(
            &svc,
            "ListTagsForResource",
            by_arn.to_string().as_bytes(),
            &ctx(1_000),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, "ResourceNotFoundException");
    }

    #[tokio::test]
    async fn alb_request_count_per_target_tracks_the_labelled_target_group() {
        let (svc, services, alarms, target) = two_tasks_scalable_to_ten().await;
        let mut put = target.clone();
        put["PolicyName"] = json!("requests");
        put["PolicyType"] = json!("TargetTrackingScaling");
        put["TargetTrackingScalingPolicyConfiguration"] = json!({
            "TargetValue": 100.0, "ScaleOutCooldown": 0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget"}});
        let err = JsonService::call(
            &svc,
            "PutScalingPolicy",
            put.to_string().as_bytes(),
            &ctx(1_000),
        )
        .await
        .unwrap_err();
        assert!(err.message.contains("ResourceLabel"), "{}", err.message);
        put["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["ResourceLabel"] =
            json!("app/web/50dc6c495c0c9188/targetgroup/tg/943f017f100becff");
        let out = call(&svc, "PutScalingPolicy", put).await;
        let arn = out["PolicyARN"].as_str().unwrap().to_owned();
        let high = out["Alarms"][0]["AlarmName"].as_str().unwrap().to_owned();
        {
            let alarms = alarms.0.lock().unwrap();
            assert_eq!(alarms.len(), 2);
            for a in alarms.iter() {
                assert_eq!(a["Namespace"], "AWS/ApplicationELB");
                assert_eq!(a["MetricName"], "RequestCountPerTarget");
                assert_eq!(a["Statistic"], "Sum");
                assert!(a.get("Unit").is_none(), "{a}");
                assert_eq!(
                    a["Dimensions"],
                    json!([{"Name": "LoadBalancer", "Value": "app/web/50dc6c495c0c9188"},
                           {"Name": "TargetGroup", "Value": "targetgroup/tg/943f017f100becff"}])
                );
            }
        }
        // 2 tasks taking 300 requests each per minute against a target of 100: 6 tasks.
        svc.execute(
            "us-east-1",
            &arn,
            Trigger {
                alarm: &high,
                state: "ALARM",
                value: Some(300.0),
                threshold: 100.0,
            },
            10_000,
        )
        .await
        .unwrap();
        assert_eq!(*services.0.lock().unwrap(), 6);
    }

    #[tokio::test]
    async fn customized_metric_alarms_watch_the_users_metric() {
        let (svc, services, alarms, target) = two_tasks_scalable_to_ten().await;
        let mut put = target.clone();
        put["PolicyName"] = json!("queue");
        put["PolicyType"] = json!("TargetTrackingScaling");
        let spec = json!({"MetricName": "Backlog", "Namespace": "App/Queue",
                          "Dimensions": [{"Name": "Queue", "Value": "jobs"}],
                          "Statistic": "Maximum", "Unit": "Count"});
        put["TargetTrackingScalingPolicyConfiguration"] = json!({"TargetValue": 40.0, "ScaleOutCooldown": 0, "CustomizedMetricSpecification": spec});
        let try_put = |cfg: Value| {
            let mut put = put.clone();
            put["TargetTrackingScalingPolicyConfiguration"] = cfg;
            let svc = &svc;
            async move {
                JsonService::call(
                    svc,
                    "PutScalingPolicy",
                    put.to_string().as_bytes(),
                    &ctx(1_000),
                )
                .await
                .unwrap_err()
            }
        };
        // Refusals: both specifications, neither, a statistic outside the enum, a missing
        // member, a bad unit, a dimension without a value, the metric-math form.
        let pre = json!({"PredefinedMetricType": "ECSServiceAverageCPUUtilization"});
        let mut bad_stat = spec.clone();
        bad_stat["Statistic"] = json!("p99");
        let mut no_ns = spec.clone();
        no_ns.as_object_mut().unwrap().remove("Namespace");
        let mut bad_unit = spec.clone();
        bad_unit["Unit"] = json!("Widgets");
        let mut bad_dim = spec.clone();
        bad_dim["Dimensions"] = json!([{"Name": "Queue"}]);
        let maths =
            json!({"Metrics": [{"Id": "m1", "Expression": "SUM(METRICS())", "ReturnData": true}]});
        for (cfg, needle) in [
            (
                json!({"TargetValue": 40.0, "PredefinedMetricSpecification": pre, "CustomizedMetricSpecification": spec}),
                "Only one of",
            ),
            (
                json!({"TargetValue": 40.0}),
                "Either PredefinedMetricSpecification or CustomizedMetricSpecification",
            ),
            (
                json!({"TargetValue": 40.0, "CustomizedMetricSpecification": bad_stat}),
                "'p99'",
            ),
            (
                json!({"TargetValue": 40.0, "CustomizedMetricSpecification": no_ns}),
                "CustomizedMetricSpecification.Namespace is required",
            ),
            (
                json!({"TargetValue": 40.0, "CustomizedMetricSpecification": bad_unit}),
                "Widgets",
            ),
            (
                json!({"TargetValue": 40.0, "CustomizedMetricSpecification": bad_dim}),
                "Dimensions[1].Value",
            ),
            (
                json!({"TargetValue": 40.0, "CustomizedMetricSpecification": maths}),
                "CustomizedMetricSpecification.Metrics",
            ),
        ] {
            let err = try_put(cfg).await;
            assert_eq!(err.code, "ValidationException", "{needle}");
            assert!(err.message.contains(needle), "{needle}: {}", err.message);
        }
        assert!(alarms.0.lock().unwrap().is_empty());

        let out = call(&svc, "PutScalingPolicy", put).await;
        let arn = out["PolicyARN"].as_str().unwrap().to_owned();
        let high = out["Alarms"][0]["AlarmName"].as_str().unwrap().to_owned();
        assert!(
            high.starts_with("TargetTracking-service/c/s-AlarmHigh-"),
            "{high}"
        );
        {
            let alarms = alarms.0.lock().unwrap();
            assert_eq!(alarms.len(), 2);
            for a in alarms.iter() {
                assert_eq!(a["Namespace"], "App/Queue");
                assert_eq!(a["MetricName"], "Backlog");
                assert_eq!(a["Statistic"], "Maximum");
                assert_eq!(a["Unit"], "Count");
                assert_eq!(a["Dimensions"], json!([{"Name": "Queue", "Value": "jobs"}]));
                assert_eq!(a["AlarmActions"], json!([arn]));
            }
            assert_eq!(alarms[0]["Threshold"], 40.0);
            assert_eq!(alarms[0]["ComparisonOperator"], "GreaterThanThreshold");
            assert_eq!(alarms[1]["Threshold"], 36.0);
            assert_eq!(alarms[1]["ComparisonOperator"], "LessThanThreshold");
        }
        let described = call(
            &svc,
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs", "PolicyNames": ["queue"]}),
        )
        .await;
        assert_eq!(
            described["ScalingPolicies"][0]["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"],
            spec
        );
        // A backlog of 100 per task against a target of 40: ceil(2 × 100 / 40) = 5 tasks.
        svc.execute(
            "us-east-1",
            &arn,
            Trigger {
                alarm: &high,
                state: "ALARM",
                value: Some(100.0),
                threshold: 40.0,
            },
            10_000,
        )
        .await
        .unwrap();
        assert_eq!(*services.0.lock().unwrap(), 5);
    }

    #[tokio::test]
    async fn target_tracking_scales_out_by_ratio_and_in_one_at_a_time_with_cooldowns() {
        let (svc, services, alarms, target) = two_tasks_scalable_to_ten().await;
        let mut put = target.clone();
        put["PolicyName"] = json!("cpu");
        put["PolicyType"] = json!("TargetTrackingScaling");
        put["TargetTrackingScalingPolicyConfiguration"] = json!({
            "TargetValue": 50.0, "ScaleOutCooldown": 60, "ScaleInCooldown": 120,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}});
        let out = call(&svc, "PutScalingPolicy", put).await;
        let arn = out["PolicyARN"].as_str().unwrap().to_owned();
        let names: Vec<String> = out["Alarms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["AlarmName"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(alarms.0.lock().unwrap().len(), 2);
        let (high, low) = (&names[0], &names[1]);
        let fire = |alarm: &str, value: f64, now: u64| {
            let svc = &svc;
            let arn = arn.clone();
            let alarm = alarm.to_owned();
            async move {
                svc.execute(
                    "us-east-1",
                    &arn,
                    Trigger {
                        alarm: &alarm,
                        state: "ALARM",
                        value: Some(value),
                        threshold: 50.0,
                    },
                    now,
                )
                .await
                .unwrap();
            }
        };
        let desired = || *services.0.lock().unwrap();
        // 2 tasks at 130 % of a 50 % target: ceil(2 × 130 / 50) = 6.
        fire(high, 130.0, 10_000).await;
        assert_eq!(desired(), 6);
        // Within the scale-out cooldown nothing happens; after it, scale out again, clamped at 10.
        fire(high, 200.0, 30_000).await;
        assert_eq!(desired(), 6);
        fire(high, 200.0, 71_000).await;
        assert_eq!(desired(), 10);
        // Scale in waits for the cooldown after the last scale-out, then one task at a time.
        fire(low, 10.0, 100_000).await;
        assert_eq!(desired(), 10);
        fire(low, 10.0, 200_000).await;
        assert_eq!(desired(), 9);
        fire(low, 10.0, 250_000).await;
        assert_eq!(desired(), 9);
        fire(low, 10.0, 330_000).await;
        assert_eq!(desired(), 8);
        let acts = call(
            &svc,
            "DescribeScalingActivities",
            json!({"ServiceNamespace": "ecs"}),
        )
        .await;
        let causes: Vec<&str> = acts["ScalingActivities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["Cause"].as_str().unwrap())
            .collect();
        assert_eq!(causes.len(), 4);
        assert_eq!(
            causes[0],
            format!("monitor alarm {low} in state ALARM triggered policy cpu")
        );
        // Deleting the policy deletes the alarms it owns.
        let mut del = target.clone();
        del["PolicyName"] = json!("cpu");
        call(&svc, "DeleteScalingPolicy", del).await;
        assert!(alarms.0.lock().unwrap().is_empty());
    }
}
