//! Deployments of ECS services: CreateDeployment (an AppSpec as `AppSpecContent` or `String`),
//! GetDeployment, BatchGetDeployments, ListDeployments, StopDeployment (with or without
//! rollback), ContinueDeployment (`READY_WAIT`, `TERMINATION_WAIT`), GetDeploymentTarget and
//! ListDeploymentTargets. The deployment runner (`runner.rs`) moves them along.

use gantry_aws_proto::pagination;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::appspec::AppSpec;
use crate::configs::{Config, TrafficRouting};
use crate::groups::{self, AutoRollback, LastDeployment};
use crate::wire::{active, commit, deployment, deployments, group, parse, time};
use crate::{CodeDeployError, CodeDeployService, apps, configs};

/// Most ids BatchGetDeployments takes.
const BATCH_MAX: usize = 25;
/// Longest description.
const DESCRIPTION_MAX: usize = 512;

/// `deploymentInfo.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Created,
    InProgress,
    Ready,
    Succeeded,
    Failed,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::InProgress => "InProgress",
            Self::Ready => "Ready",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Stopped => "Stopped",
        }
    }

    pub fn is_done(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Stopped)
    }
}

/// Where a deployment is in its walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// The replacement task set is to be created.
    Start,
    /// The replacement task set is starting and becoming healthy.
    Install,
    /// Waiting for ContinueDeployment before production traffic moves (`STOP_DEPLOYMENT`).
    Ready,
    /// Production traffic is moving to the replacement task set.
    Shift,
    /// All traffic on the replacement; the original task set waits for its termination.
    Terminate,
    Done,
}

/// `errorInformation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// `rollbackInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_triggering_deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_message: Option<String>,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    pub id: String,
    pub application_name: String,
    pub group_name: String,
    pub config_name: String,
    pub routing: TrafficRouting,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub create_time_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `user` or `codeDeployRollback`.
    pub creator: String,
    pub revision: Value,
    /// The AppSpec (none for a rollback deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appspec: Option<AppSpec>,
    pub auto_rollback: AutoRollback,
    pub cluster: String,
    pub service: String,
    /// The target group pair's names.
    pub target_groups: Vec<String>,
    pub prod_listener: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener: Option<String>,
    pub termination_wait_minutes: u32,
    pub ready_action: String,
    pub ready_wait_minutes: u32,
    /// The group's settings as the deployment runs them, for `deploymentInfo`.
    pub blue_green: Value,
    pub load_balancer_info: Value,
    pub phase: Phase,
    pub phase_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_task_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_target_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green_task_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green_target_group: Option<String>,
    /// Share of production traffic on the replacement task set, in percent.
    #[serde(default)]
    pub prod_percent: u32,
    #[serde(default)]
    pub step_at: u64,
    /// StopDeployment asked to stop, rolling back when true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<bool>,
    /// ContinueDeployment's wait type, until the runner acts on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_requested: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_info: Option<RollbackInfo>,
    /// Updated on every change, for compare-and-swap between the API and the runner.
    #[serde(default)]
    pub version: u64,
}

impl DeploymentRecord {
    fn overview(&self) -> Value {
        let mut o = json!({"Pending": 0, "InProgress": 0, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0});
        let k = match self.status {
            Status::Created => "Pending",
            Status::InProgress => "InProgress",
            Status::Ready => "Ready",
            Status::Succeeded => "Succeeded",
            Status::Failed | Status::Stopped => "Failed",
        };
        o[k] = json!(1);
        o
    }

    pub fn last(&self) -> LastDeployment {
        LastDeployment {
            deployment_id: self.id.clone(),
            status: self.status.as_str().to_owned(),
            create_time_ms: self.create_time_ms,
            end_time_ms: self.complete_time_ms,
        }
    }

    pub fn info(&self) -> Value {
        let mut v = json!({
            "applicationName": self.application_name,
            "deploymentGroupName": self.group_name,
            "deploymentConfigName": self.config_name,
            "deploymentId": self.id,
            "revision": self.revision,
            "status": self.status.as_str(),
            "createTime": time(self.create_time_ms),
            "deploymentOverview": self.overview(),
            "creator": self.creator,
            "ignoreApplicationStopFailures": false,
            "autoRollbackConfiguration": {"enabled": self.auto_rollback.enabled, "events": self.auto_rollback.events},
            "updateOutdatedInstancesOnly": false,
            "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            "instanceTerminationWaitTimeStarted": self.phase >= Phase::Terminate && self.status != Status::Stopped,
            "blueGreenDeploymentConfiguration": self.blue_green,
            "loadBalancerInfo": self.load_balancer_info,
            "fileExistsBehavior": "DISALLOW",
            "deploymentStatusMessages": [],
            "computePlatform": "ECS",
        });
        if let Some(t) = self.start_time_ms {
            v["startTime"] = json!(time(t));
        }
        if let Some(t) = self.complete_time_ms {
            v["completeTime"] = json!(time(t));
        }
        if let Some(d) = &self.description {
            v["description"] = json!(d);
        }
        if let Some(e) = &self.error {
            v["errorInformation"] = json!({"code": e.code, "message": e.message});
        }
        if let Some(r) = &self.rollback_info {
            v["rollbackInfo"] = json!(r);
        }
        v
    }

    /// The ECS deployment target's id: `<cluster>:<service>`.
    pub fn target_id(&self) -> String {
        format!("{}:{}", self.cluster, self.service)
    }
}

/// A new deployment id: `d-` and nine letters and digits.
pub fn new_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..9)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("d-{tail}")
}

fn check_id(id: Option<&str>) -> Result<String, CodeDeployError> {
    let id = id.filter(|i| !i.is_empty()).ok_or_else(|| {
        CodeDeployError::DeploymentIdRequired("Deployment Id is required".to_owned())
    })?;
    let ok = id.len() == 11
        && id.starts_with("d-")
        && id[2..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !ok {
        return Err(CodeDeployError::InvalidDeploymentId(format!(
            "Specified DeploymentId is not in the valid format: {id}"
        )));
    }
    Ok(id.to_owned())
}

pub(crate) async fn load(
    svc: &CodeDeployService,
    region: &str,
    id: &str,
) -> Result<Option<gantry_store::Versioned<DeploymentRecord>>, CodeDeployError> {
    Ok(svc
        .store
        .get_typed::<DeploymentRecord>(&deployment(region, id))
        .await?)
}

fn not_found(id: &str) -> CodeDeployError {
    CodeDeployError::DeploymentDoesNotExist(format!("The deployment {id} could not be found."))
}

async fn existing(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    id: Option<&str>,
) -> Result<gantry_store::Versioned<DeploymentRecord>, CodeDeployError> {
    let id = check_id(id)?;
    load(svc, &ctx.region, &id)
        .await?
        .ok_or_else(|| not_found(&id))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawString {
    content: Option<String>,
    sha256: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Revision {
    revision_type: Option<String>,
    app_spec_content: Option<RawString>,
    string: Option<RawString>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    application_name: Option<String>,
    deployment_group_name: Option<String>,
    revision: Option<Value>,
    deployment_config_name: Option<String>,
    description: Option<String>,
    ignore_application_stop_failures: Option<bool>,
    target_instances: Option<Value>,
    auto_rollback_configuration: Option<AutoRollback>,
    update_outdated_instances_only: Option<bool>,
    file_exists_behavior: Option<String>,
    override_alarm_configuration: Option<Value>,
}

/// The AppSpec of a revision: `AppSpecContent` or `String`, its `sha256` checked when given.
fn appspec_of(revision: &Value) -> Result<AppSpec, CodeDeployError> {
    let r: Revision = serde_json::from_value(revision.clone()).map_err(|e| {
        CodeDeployError::InvalidRevision(format!("The revision is not well formed: {e}"))
    })?;
    let raw = match r.revision_type.as_deref() {
        Some("AppSpecContent") => r.app_spec_content,
        Some("String") => r.string,
        Some(t @ ("S3" | "GitHub")) => {
            return Err(CodeDeployError::InvalidRevision(format!(
                "The revision type {t} is not supported by Gantry: give the AppSpec as AppSpecContent."
            )));
        }
        Some(t) => {
            return Err(CodeDeployError::InvalidRevision(format!(
                "The revision type {t} is invalid: it must be AppSpecContent, String, S3 or GitHub."
            )));
        }
        None => {
            return Err(CodeDeployError::InvalidRevision(
                "The revision requires a revisionType.".to_owned(),
            ));
        }
    };
    let raw = raw.unwrap_or_default();
    let content = raw.content.filter(|c| !c.is_empty()).ok_or_else(|| {
        CodeDeployError::InvalidRevision("The AppSpec content is empty.".to_owned())
    })?;
    if let Some(want) = raw.sha256.filter(|s| !s.is_empty()) {
        let got = hex::encode(sha2::Sha256::digest(content.as_bytes()));
        if !got.eq_ignore_ascii_case(&want) {
            return Err(CodeDeployError::InvalidRevision(format!(
                "The sha256 {want} does not match the AppSpec content (its SHA-256 is {got})."
            )));
        }
    }
    crate::appspec::parse(&content)
}

pub(crate) async fn create(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: CreateRequest = parse(body)?;
    let app_name = req
        .application_name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            CodeDeployError::ApplicationNameRequired("Application name is required".to_owned())
        })?;
    let app = apps::load(svc, ctx, &app_name).await?.ok_or_else(|| {
        CodeDeployError::ApplicationDoesNotExist(format!(
            "No application found for name: {app_name}"
        ))
    })?;
    let group_name = req
        .deployment_group_name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            CodeDeployError::DeploymentGroupNameRequired(
                "Deployment Group name is required".to_owned(),
            )
        })?;
    let g = groups::load(svc, ctx, &app.name, &group_name)
        .await?
        .ok_or_else(|| groups::not_found(&app.name, &group_name))?;
    let revision = req.revision.ok_or_else(|| {
        CodeDeployError::RevisionRequired("Revision is required for the deployment.".to_owned())
    })?;
    let spec = appspec_of(&revision)?;
    if let Some(d) = &req.description
        && d.chars().count() > DESCRIPTION_MAX
    {
        return Err(CodeDeployError::DescriptionTooLong(format!(
            "The description is too long: at most {DESCRIPTION_MAX} characters."
        )));
    }
    if req.target_instances.is_some()
        || req.update_outdated_instances_only == Some(true)
        || req.ignore_application_stop_failures == Some(true)
        || req.file_exists_behavior.is_some()
    {
        return Err(CodeDeployError::InvalidInput(
            "targetInstances, updateOutdatedInstancesOnly, ignoreApplicationStopFailures and fileExistsBehavior apply to the EC2/on-premises compute platform, not to ECS.".to_owned(),
        ));
    }
    if req
        .override_alarm_configuration
        .as_ref()
        .and_then(|a| a.get("enabled"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(CodeDeployError::InvalidAlarmConfig(
            "Alarm configurations are not supported by Gantry.".to_owned(),
        ));
    }
    let config_name = req
        .deployment_config_name
        .unwrap_or_else(|| g.value.deployment_config_name.clone());
    let routing = match configs::find(svc, ctx, &config_name).await? {
        Some(Config::Predefined(_, r)) => r,
        Some(Config::Custom(c)) => c.routing,
        None => {
            return Err(CodeDeployError::DeploymentConfigDoesNotExist(format!(
                "No deployment configuration found for name: {config_name}"
            )));
        }
    };
    let auto_rollback = match req.auto_rollback_configuration {
        Some(a) => {
            groups::check_auto_rollback(&a)?;
            a
        }
        None => g.value.auto_rollback.clone(),
    };
    if let Some(d) = &g.value.active_deployment {
        return Err(CodeDeployError::DeploymentLimitExceeded(format!(
            "The Deployment Group '{group_name}' already has an active Deployment '{d}'"
        )));
    }
    let id = new_id();
    let gv = &g.value;
    let record = DeploymentRecord {
        id: id.clone(),
        application_name: app.name.clone(),
        group_name: group_name.clone(),
        config_name,
        routing,
        status: Status::Created,
        error: None,
        create_time_ms: ctx.now,
        start_time_ms: None,
        complete_time_ms: None,
        description: req.description,
        creator: "user".to_owned(),
        revision,
        appspec: Some(spec),
        auto_rollback,
        cluster: gv.cluster.clone(),
        service: gv.service.clone(),
        target_groups: gv.target_groups.clone(),
        prod_listener: gv.prod_listeners.first().cloned().unwrap_or_default(),
        test_listener: gv.test_listeners.first().cloned(),
        termination_wait_minutes: gv.termination_wait_minutes,
        ready_action: gv.ready_action.clone(),
        ready_wait_minutes: gv.ready_wait_minutes,
        blue_green: gv.blue_green_wire(),
        load_balancer_info: gv.load_balancer_wire(),
        phase: Phase::Start,
        phase_at: ctx.now,
        service_arn: None,
        blue_task_set: None,
        blue_target_group: None,
        green_task_set: None,
        green_target_group: None,
        prod_percent: 0,
        step_at: ctx.now,
        stop_requested: None,
        continue_requested: None,
        rollback_info: None,
        version: 1,
    };
    let mut next_group = gv.clone();
    next_group.active_deployment = Some(id.clone());
    next_group.last_attempted = Some(record.last());
    let gkey = group(&ctx.region, &app.name, &group_name);
    let dkey = deployment(&ctx.region, &id);
    let akey = active(&ctx.region, &id);
    let txn = Txn::new()
        .require_revision(&gkey, g.revision)
        .require_absent(&dkey)
        .put(&gkey, encode(&gkey, &next_group)?)
        .put(&dkey, encode(&dkey, &record)?)
        .put(&akey, encode(&akey, &(ctx.region.clone(), id.clone()))?);
    if !commit(svc.store.as_ref(), txn).await? {
        let now = groups::load(svc, ctx, &app.name, &group_name).await?;
        let active = now.and_then(|g| g.value.active_deployment);
        return Err(CodeDeployError::DeploymentLimitExceeded(format!(
            "The Deployment Group '{group_name}' already has an active Deployment '{}'",
            active.unwrap_or_default()
        )));
    }
    Ok(json!({ "deploymentId": id }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IdRequest {
    deployment_id: Option<String>,
    auto_rollback_enabled: Option<bool>,
    deployment_wait_type: Option<String>,
    target_id: Option<String>,
    next_token: Option<String>,
    target_filters: Option<Value>,
}

pub(crate) async fn get(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: IdRequest = parse(body)?;
    let d = existing(svc, ctx, req.deployment_id.as_deref()).await?;
    Ok(json!({ "deploymentInfo": d.value.info() }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BatchRequest {
    deployment_ids: Option<Vec<String>>,
}

pub(crate) async fn batch_get(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: BatchRequest = parse(body)?;
    let ids = req.deployment_ids.ok_or_else(|| {
        CodeDeployError::DeploymentIdRequired("Deployment Ids are required".to_owned())
    })?;
    if ids.len() > BATCH_MAX {
        return Err(CodeDeployError::BatchLimitExceeded(format!(
            "The maximum number of names or IDs allowed for this request ({BATCH_MAX}) was exceeded."
        )));
    }
    let mut infos = Vec::new();
    for id in &ids {
        let id = check_id(Some(id))?;
        if let Some(d) = load(svc, &ctx.region, &id).await? {
            infos.push(d.value.info());
        }
    }
    Ok(json!({ "deploymentsInfo": infos }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TimeRange {
    start: Option<f64>,
    end: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    application_name: Option<String>,
    deployment_group_name: Option<String>,
    external_id: Option<String>,
    include_only_statuses: Option<Vec<String>>,
    create_time_range: Option<TimeRange>,
    next_token: Option<String>,
}

const STATUSES: &[&str] = &[
    "Created",
    "Queued",
    "InProgress",
    "Baking",
    "Succeeded",
    "Failed",
    "Stopped",
    "Ready",
];

pub(crate) async fn list(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: ListRequest = parse(body)?;
    let app = req.application_name.filter(|n| !n.is_empty());
    let grp = req.deployment_group_name.filter(|n| !n.is_empty());
    match (&app, &grp) {
        (Some(a), Some(g)) => {
            apps::load(svc, ctx, a).await?.ok_or_else(|| {
                CodeDeployError::ApplicationDoesNotExist(format!(
                    "No application found for name: {a}"
                ))
            })?;
            groups::load(svc, ctx, a, g)
                .await?
                .ok_or_else(|| groups::not_found(a, g))?;
        }
        (Some(_), None) => {
            return Err(CodeDeployError::DeploymentGroupNameRequired(
                "Deployment Group name is required when an application name is given".to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(CodeDeployError::ApplicationNameRequired(
                "Application name is required when a deployment group name is given".to_owned(),
            ));
        }
        (None, None) => {}
    }
    let statuses = req.include_only_statuses.unwrap_or_default();
    if let Some(s) = statuses.iter().find(|s| !STATUSES.contains(&s.as_str())) {
        return Err(CodeDeployError::InvalidDeploymentStatus(format!(
            "The deployment status {s} is invalid."
        )));
    }
    let range = req.create_time_range.unwrap_or_default();
    if let (Some(s), Some(e)) = (range.start, range.end)
        && s > e
    {
        return Err(CodeDeployError::InvalidTimeRange(
            "The start time of the range is after its end time.".to_owned(),
        ));
    }
    let mut all: Vec<DeploymentRecord> = svc
        .store
        .scan_all_typed::<DeploymentRecord>(&deployments(&ctx.region))
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|d| app.as_ref().is_none_or(|a| *a == d.application_name))
        .filter(|d| grp.as_ref().is_none_or(|g| *g == d.group_name))
        .filter(|_| req.external_id.is_none())
        .filter(|d| statuses.is_empty() || statuses.iter().any(|s| s == d.status.as_str()))
        .filter(|d| {
            let t = d.create_time_ms as f64 / 1000.0;
            range.start.is_none_or(|s| t >= s) && range.end.is_none_or(|e| t <= e)
        })
        .collect();
    all.sort_by(|a, b| {
        b.create_time_ms
            .cmp(&a.create_time_ms)
            .then(a.id.cmp(&b.id))
    });
    let start = match req.next_token.as_deref() {
        None => 0,
        Some(t) => pagination::decode_token(t)
            .and_then(|p| p.parse::<usize>().ok())
            .ok_or_else(|| {
                CodeDeployError::InvalidNextToken(
                    "The next token was specified in an invalid format.".to_owned(),
                )
            })?,
    };
    let ids: Vec<&str> = all
        .iter()
        .skip(start)
        .take(crate::wire::PAGE)
        .map(|d| d.id.as_str())
        .collect();
    let mut out = json!({ "deployments": ids });
    if start + crate::wire::PAGE < all.len() {
        out["nextToken"] = json!(pagination::encode_token(
            &(start + crate::wire::PAGE).to_string()
        ));
    }
    Ok(out)
}

/// Changes a deployment record with compare-and-swap on its version.
async fn change<F>(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    id: Option<&str>,
    f: F,
) -> Result<DeploymentRecord, CodeDeployError>
where
    F: Fn(&mut DeploymentRecord) -> Result<(), CodeDeployError>,
{
    for _ in 0..10 {
        let cur = existing(svc, ctx, id).await?;
        let mut d = cur.value.clone();
        f(&mut d)?;
        d.version += 1;
        let key = deployment(&ctx.region, &d.id);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &d)?);
        if commit(svc.store.as_ref(), txn).await? {
            return Ok(d);
        }
    }
    Err(CodeDeployError::InvalidInput(
        "The deployment kept changing; retry.".to_owned(),
    ))
}

fn completed(d: &DeploymentRecord) -> CodeDeployError {
    CodeDeployError::DeploymentAlreadyCompleted(format!(
        "The deployment {} has already completed ({}).",
        d.id,
        d.status.as_str()
    ))
}

pub(crate) async fn stop(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: IdRequest = parse(body)?;
    let explicit = req.auto_rollback_enabled;
    change(svc, ctx, req.deployment_id.as_deref(), |d| {
        if d.status.is_done() {
            return Err(completed(d));
        }
        let rollback = explicit.unwrap_or_else(|| d.auto_rollback.on("DEPLOYMENT_STOP_ON_REQUEST"));
        d.stop_requested = Some(rollback);
        Ok(())
    })
    .await?;
    Ok(json!({
        "status": "Pending",
        "statusMessage": "Stopping Pending. Stopping to schedule commands in the deployment instances",
    }))
}

pub(crate) async fn continue_deployment(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: IdRequest = parse(body)?;
    let wait = req
        .deployment_wait_type
        .unwrap_or_else(|| "READY_WAIT".to_owned());
    if wait != "READY_WAIT" && wait != "TERMINATION_WAIT" {
        return Err(CodeDeployError::InvalidDeploymentWaitType(format!(
            "The wait type {wait} is invalid: it must be READY_WAIT or TERMINATION_WAIT."
        )));
    }
    change(svc, ctx, req.deployment_id.as_deref(), |d| {
        if d.status.is_done() {
            return Err(completed(d));
        }
        let waiting = match wait.as_str() {
            "READY_WAIT" => d.status == Status::Ready,
            _ => d.phase == Phase::Terminate,
        };
        if !waiting {
            return Err(CodeDeployError::DeploymentIsNotInReadyState(format!(
                "The deployment {} is not waiting for {wait} (status {}).",
                d.id,
                d.status.as_str()
            )));
        }
        d.continue_requested = Some(wait.clone());
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// The ECS target's lifecycle events, from where the deployment is.
fn lifecycle(d: &DeploymentRecord) -> Vec<Value> {
    const EVENTS: &[(&str, Phase)] = &[
        ("BeforeInstall", Phase::Install),
        ("Install", Phase::Ready),
        ("AfterInstall", Phase::Ready),
        ("AllowTestTraffic", Phase::Ready),
        ("AfterAllowTestTraffic", Phase::Ready),
        ("BeforeAllowTraffic", Phase::Shift),
        ("AllowTraffic", Phase::Terminate),
        ("AfterAllowTraffic", Phase::Terminate),
    ];
    let mut failed_one = false;
    EVENTS
        .iter()
        .map(|(name, done_from)| {
            let status = if d.phase >= *done_from && d.status != Status::Failed
                || d.status == Status::Succeeded
            {
                "Succeeded"
            } else if d.status.is_done() {
                if d.status == Status::Failed && !failed_one {
                    failed_one = true;
                    "Failed"
                } else {
                    "Skipped"
                }
            } else if !failed_one && d.status != Status::Created {
                failed_one = true; // the first not done is the one in progress
                "InProgress"
            } else {
                "Pending"
            };
            json!({"lifecycleEventName": name, "status": status})
        })
        .collect()
}

async fn ecs_target(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    d: &DeploymentRecord,
) -> Result<Value, CodeDeployError> {
    let mut sets = Vec::new();
    let platform = svc.platform()?;
    let ids: Vec<&String> = [&d.blue_task_set, &d.green_task_set]
        .into_iter()
        .flatten()
        .collect();
    let described = if ids.is_empty() || d.status.is_done() {
        Value::Null
    } else {
        platform
            .ecs(
                &ctx.region,
                "DescribeTaskSets",
                json!({"cluster": d.cluster, "service": d.service, "taskSets": ids}),
            )
            .await
            .unwrap_or(Value::Null)
    };
    for (label, id, tg, weight) in [
        (
            "Blue",
            &d.blue_task_set,
            &d.blue_target_group,
            100 - d.prod_percent.min(100),
        ),
        (
            "Green",
            &d.green_task_set,
            &d.green_target_group,
            d.prod_percent.min(100),
        ),
    ] {
        let Some(id) = id else { continue };
        let live = described
            .get("taskSets")
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .find(|t| t.get("id").and_then(Value::as_str) == Some(id))
            });
        let n = |k: &str| live.and_then(|t| t.get(k)).cloned().unwrap_or(json!(0));
        let tg_name = tg
            .as_deref()
            .and_then(|arn| arn.split('/').nth(1))
            .unwrap_or_default();
        sets.push(json!({
            "identifer": id,
            "desiredCount": n("computedDesiredCount"),
            "pendingCount": n("pendingCount"),
            "runningCount": n("runningCount"),
            "status": live.and_then(|t| t.get("status")).cloned().unwrap_or(json!("INACTIVE")),
            "trafficWeight": weight as f64,
            "targetGroup": {"name": tg_name},
            "taskSetLabel": label,
        }));
    }
    let status = match d.status {
        Status::Created => "Pending",
        Status::InProgress => "InProgress",
        Status::Ready => "Ready",
        Status::Succeeded => "Succeeded",
        Status::Failed | Status::Stopped => "Failed",
    };
    Ok(json!({
        "deploymentTargetType": "ECSTarget",
        "ecsTarget": {
            "deploymentId": d.id,
            "targetId": d.target_id(),
            "targetArn": d.service_arn.clone().unwrap_or_default(),
            "lastUpdatedAt": time(d.phase_at),
            "lifecycleEvents": lifecycle(d),
            "status": status,
            "taskSetsInfo": sets,
        }
    }))
}

pub(crate) async fn get_target(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: IdRequest = parse(body)?;
    let d = existing(svc, ctx, req.deployment_id.as_deref())
        .await?
        .value;
    let target = req.target_id.filter(|t| !t.is_empty()).ok_or_else(|| {
        CodeDeployError::DeploymentTargetIdRequired("A target ID is required.".to_owned())
    })?;
    if d.status == Status::Created {
        return Err(CodeDeployError::DeploymentNotStarted(format!(
            "The deployment {} has not started.",
            d.id
        )));
    }
    if target != d.target_id() {
        return Err(CodeDeployError::DeploymentTargetDoesNotExist(format!(
            "The target {target} does not exist in the deployment {}.",
            d.id
        )));
    }
    Ok(json!({ "deploymentTarget": ecs_target(svc, ctx, &d).await? }))
}

pub(crate) async fn list_targets(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: IdRequest = parse(body)?;
    let d = existing(svc, ctx, req.deployment_id.as_deref())
        .await?
        .value;
    if req.next_token.is_some() {
        return Err(CodeDeployError::InvalidNextToken(
            "The next token was specified in an invalid format.".to_owned(),
        ));
    }
    if req
        .target_filters
        .as_ref()
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
    {
        return Err(CodeDeployError::InvalidInput(
            "Target filters are not supported by Gantry for the ECS compute platform.".to_owned(),
        ));
    }
    if d.status == Status::Created {
        return Err(CodeDeployError::DeploymentNotStarted(format!(
            "The deployment {} has not started.",
            d.id
        )));
    }
    Ok(json!({ "targetIds": [d.target_id()] }))
}
