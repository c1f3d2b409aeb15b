//! Deployment groups for the ECS compute platform: CreateDeploymentGroup, GetDeploymentGroup,
//! BatchGetDeploymentGroups, ListDeploymentGroups, UpdateDeploymentGroup, DeleteDeploymentGroup.
//! A group names one ECS service (with the CODE_DEPLOY deployment controller), the pair of
//! target groups its task sets alternate between, the production (and test) listener, the
//! blue/green settings and the automatic rollback.

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::wire::{all_groups, commit, group, groups, page, parse, time};
use crate::{CodeDeployError, CodeDeployService, apps, configs};

/// Most names BatchGetDeploymentGroups takes.
const BATCH_MAX: usize = 100;

/// The default configuration of ECS deployment groups.
pub const DEFAULT_CONFIG: &str = "CodeDeployDefault.ECSAllAtOnce";

/// The rollback events CodeDeploy knows.
const ROLLBACK_EVENTS: &[&str] = &[
    "DEPLOYMENT_FAILURE",
    "DEPLOYMENT_STOP_ON_ALARM",
    "DEPLOYMENT_STOP_ON_REQUEST",
];

/// `autoRollbackConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollback {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub events: Vec<String>,
}

impl AutoRollback {
    /// Whether a rollback follows `event` (`DEPLOYMENT_FAILURE`, ...).
    pub fn on(&self, event: &str) -> bool {
        self.enabled && self.events.iter().any(|e| e == event)
    }
}

/// A deployment's last state, as the group reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDeployment {
    pub deployment_id: String,
    pub status: String,
    pub create_time_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_ms: Option<u64>,
}

impl LastDeployment {
    fn wire(&self) -> Value {
        let mut v = json!({
            "deploymentId": self.deployment_id,
            "status": self.status,
            "createTime": time(self.create_time_ms),
        });
        if let Some(e) = self.end_time_ms {
            v["endTime"] = json!(time(e));
        }
        v
    }
}

/// A deployment group as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRecord {
    pub application_name: String,
    pub name: String,
    pub id: String,
    pub deployment_config_name: String,
    pub service_role_arn: String,
    pub cluster: String,
    pub service: String,
    /// The two target groups' names.
    pub target_groups: Vec<String>,
    pub prod_listeners: Vec<String>,
    #[serde(default)]
    pub test_listeners: Vec<String>,
    pub auto_rollback: AutoRollback,
    /// `terminateBlueInstancesOnDeploymentSuccess.terminationWaitTimeInMinutes`.
    pub termination_wait_minutes: u32,
    /// `deploymentReadyOption`: `CONTINUE_DEPLOYMENT` or `STOP_DEPLOYMENT`.
    pub ready_action: String,
    pub ready_wait_minutes: u32,
    /// The deployment in progress, if any (one at a time per group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deployment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted: Option<LastDeployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful: Option<LastDeployment>,
}

impl GroupRecord {
    pub fn blue_green_wire(&self) -> Value {
        json!({
            "terminateBlueInstancesOnDeploymentSuccess": {
                "action": "TERMINATE",
                "terminationWaitTimeInMinutes": self.termination_wait_minutes,
            },
            "deploymentReadyOption": {
                "actionOnTimeout": self.ready_action,
                "waitTimeInMinutes": self.ready_wait_minutes,
            },
        })
    }

    pub fn load_balancer_wire(&self) -> Value {
        let mut pair = json!({
            "targetGroups": self.target_groups.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
            "prodTrafficRoute": {"listenerArns": self.prod_listeners},
        });
        if !self.test_listeners.is_empty() {
            pair["testTrafficRoute"] = json!({"listenerArns": self.test_listeners});
        }
        json!({ "targetGroupPairInfoList": [pair] })
    }

    pub fn auto_rollback_wire(&self) -> Value {
        json!({"enabled": self.auto_rollback.enabled, "events": self.auto_rollback.events})
    }

    fn info(&self) -> Value {
        let mut v = json!({
            "applicationName": self.application_name,
            "deploymentGroupId": self.id,
            "deploymentGroupName": self.name,
            "deploymentConfigName": self.deployment_config_name,
            "ec2TagFilters": [],
            "onPremisesInstanceTagFilters": [],
            "autoScalingGroups": [],
            "serviceRoleArn": self.service_role_arn,
            "triggerConfigurations": [],
            "alarmConfiguration": {"enabled": false, "ignorePollAlarmFailure": false, "alarms": []},
            "autoRollbackConfiguration": self.auto_rollback_wire(),
            "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            "outdatedInstancesStrategy": "UPDATE",
            "blueGreenDeploymentConfiguration": self.blue_green_wire(),
            "loadBalancerInfo": self.load_balancer_wire(),
            "computePlatform": "ECS",
            "ecsServices": [{"serviceName": self.service, "clusterName": self.cluster}],
            "terminationHookEnabled": false,
        });
        if let Some(d) = &self.last_attempted {
            v["lastAttemptedDeployment"] = d.wire();
        }
        if let Some(d) = &self.last_successful {
            v["lastSuccessfulDeployment"] = d.wire();
        }
        v
    }
}

fn name_required() -> CodeDeployError {
    CodeDeployError::DeploymentGroupNameRequired("Deployment Group name is required".to_owned())
}

fn app_name_required() -> CodeDeployError {
    CodeDeployError::ApplicationNameRequired("Application name is required".to_owned())
}

pub(crate) fn not_found(app: &str, name: &str) -> CodeDeployError {
    CodeDeployError::DeploymentGroupDoesNotExist(format!(
        "No Deployment Group found for name: {name} in application: {app}"
    ))
}

/// The ECS application `name`, or CodeDeploy's error.
async fn ecs_application(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    name: Option<&str>,
) -> Result<String, CodeDeployError> {
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(app_name_required)?;
    let app = apps::load(svc, ctx, name).await?.ok_or_else(|| {
        CodeDeployError::ApplicationDoesNotExist(format!("No application found for name: {name}"))
    })?;
    Ok(app.name)
}

pub(crate) async fn load(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    app: &str,
    name: &str,
) -> Result<Option<gantry_store::Versioned<GroupRecord>>, CodeDeployError> {
    Ok(svc
        .store
        .get_typed::<GroupRecord>(&group(&ctx.region, app, name))
        .await?)
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct TargetGroupInfo {
    name: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct TrafficRoute {
    #[serde(default)]
    listener_arns: Vec<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct TargetGroupPair {
    #[serde(default)]
    target_groups: Vec<TargetGroupInfo>,
    prod_traffic_route: Option<TrafficRoute>,
    test_traffic_route: Option<TrafficRoute>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct LoadBalancerInfo {
    elb_info_list: Option<Vec<Value>>,
    target_group_info_list: Option<Vec<Value>>,
    target_group_pair_info_list: Option<Vec<TargetGroupPair>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct EcsServiceRef {
    service_name: Option<String>,
    cluster_name: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct DeploymentStyle {
    deployment_type: Option<String>,
    deployment_option: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct Termination {
    action: Option<String>,
    termination_wait_time_in_minutes: Option<i64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct ReadyOption {
    action_on_timeout: Option<String>,
    wait_time_in_minutes: Option<i64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct BlueGreen {
    terminate_blue_instances_on_deployment_success: Option<Termination>,
    deployment_ready_option: Option<ReadyOption>,
    green_fleet_provisioning_option: Option<Value>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct AlarmConfiguration {
    enabled: Option<bool>,
}

/// The members of CreateDeploymentGroup and UpdateDeploymentGroup.
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct GroupRequest {
    application_name: Option<String>,
    deployment_group_name: Option<String>,
    current_deployment_group_name: Option<String>,
    new_deployment_group_name: Option<String>,
    deployment_config_name: Option<String>,
    service_role_arn: Option<String>,
    ecs_services: Option<Vec<EcsServiceRef>>,
    load_balancer_info: Option<LoadBalancerInfo>,
    blue_green_deployment_configuration: Option<BlueGreen>,
    auto_rollback_configuration: Option<AutoRollback>,
    deployment_style: Option<DeploymentStyle>,
    alarm_configuration: Option<AlarmConfiguration>,
    ec2_tag_filters: Option<Vec<Value>>,
    ec2_tag_set: Option<Value>,
    on_premises_instance_tag_filters: Option<Vec<Value>>,
    on_premises_tag_set: Option<Value>,
    auto_scaling_groups: Option<Vec<Value>>,
    trigger_configurations: Option<Vec<Value>>,
    outdated_instances_strategy: Option<String>,
    termination_hook_enabled: Option<bool>,
    tags: Option<Vec<Value>>,
}

fn non_empty_list(v: &Option<Vec<Value>>) -> bool {
    v.as_ref().is_some_and(|l| !l.is_empty())
}

fn non_empty_set(v: &Option<Value>) -> bool {
    v.as_ref()
        .and_then(|s| {
            s.get("ec2TagSetList")
                .or_else(|| s.get("onPremisesTagSetList"))
        })
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty())
}

/// Refuses the members of other compute platforms and the features Gantry does not serve.
fn refuse_other_platforms(req: &GroupRequest) -> Result<(), CodeDeployError> {
    if non_empty_list(&req.ec2_tag_filters) || non_empty_set(&req.ec2_tag_set) {
        return Err(CodeDeployError::InvalidEc2Tag(
            "EC2 tag filters are not supported for the ECS compute platform.".to_owned(),
        ));
    }
    if non_empty_list(&req.on_premises_instance_tag_filters)
        || non_empty_set(&req.on_premises_tag_set)
    {
        return Err(CodeDeployError::InvalidTag(
            "On-premises instance tag filters are not supported for the ECS compute platform."
                .to_owned(),
        ));
    }
    if non_empty_list(&req.auto_scaling_groups) {
        return Err(CodeDeployError::InvalidAutoScalingGroup(
            "Auto Scaling groups are not supported for the ECS compute platform.".to_owned(),
        ));
    }
    if non_empty_list(&req.trigger_configurations) {
        return Err(CodeDeployError::InvalidTriggerConfig(
            "Trigger configurations are not supported by Gantry.".to_owned(),
        ));
    }
    if req.alarm_configuration.as_ref().and_then(|a| a.enabled) == Some(true) {
        return Err(CodeDeployError::InvalidAlarmConfig(
            "Alarm configurations on deployment groups are not supported by Gantry.".to_owned(),
        ));
    }
    if req.termination_hook_enabled == Some(true) {
        return Err(CodeDeployError::InvalidInput(
            "terminationHookEnabled applies to Amazon EC2 Auto Scaling groups, not to the ECS compute platform."
                .to_owned(),
        ));
    }
    if let Some(s) = req.outdated_instances_strategy.as_deref()
        && s != "UPDATE"
        && s != "IGNORE"
    {
        return Err(CodeDeployError::InvalidInput(format!(
            "The outdatedInstancesStrategy {s} is invalid: it must be UPDATE or IGNORE."
        )));
    }
    if req.tags.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(CodeDeployError::InvalidTagsToAdd(
            "Tags on CodeDeploy deployment groups are not supported by Gantry.".to_owned(),
        ));
    }
    Ok(())
}

fn check_role(arn: Option<&str>) -> Result<String, CodeDeployError> {
    let arn = arn
        .filter(|a| !a.is_empty())
        .ok_or_else(|| CodeDeployError::RoleRequired("Role ARN is required".to_owned()))?;
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[5].starts_with("role/")
    {
        return Err(CodeDeployError::InvalidRole(format!(
            "The service role ARN {arn} is not a valid IAM role ARN."
        )));
    }
    Ok(arn.to_owned())
}

pub(crate) fn check_auto_rollback(a: &AutoRollback) -> Result<(), CodeDeployError> {
    for e in &a.events {
        if !ROLLBACK_EVENTS.contains(&e.as_str()) {
            return Err(CodeDeployError::InvalidAutoRollbackConfig(format!(
                "The auto rollback event {e} is invalid: it must be DEPLOYMENT_FAILURE, DEPLOYMENT_STOP_ON_ALARM or DEPLOYMENT_STOP_ON_REQUEST."
            )));
        }
    }
    if a.enabled && a.events.is_empty() {
        return Err(CodeDeployError::InvalidAutoRollbackConfig(
            "AutoRollback events must be specified when AutoRollback is enabled.".to_owned(),
        ));
    }
    Ok(())
}

fn check_style(style: Option<&DeploymentStyle>) -> Result<(), CodeDeployError> {
    let bad = |m: &str| Err(CodeDeployError::InvalidDeploymentStyle(m.to_owned()));
    let Some(s) = style else {
        return bad(
            "A deploymentStyle of BLUE_GREEN with WITH_TRAFFIC_CONTROL is required for the ECS compute platform.",
        );
    };
    if s.deployment_type.as_deref() != Some("BLUE_GREEN") {
        return bad("For the ECS compute platform, the deploymentType must be BLUE_GREEN.");
    }
    if s.deployment_option.as_deref() != Some("WITH_TRAFFIC_CONTROL") {
        return bad(
            "For the ECS compute platform, the deploymentOption must be WITH_TRAFFIC_CONTROL.",
        );
    }
    Ok(())
}

/// (termination wait, ready action, ready wait) from `blueGreenDeploymentConfiguration`.
fn blue_green(b: Option<&BlueGreen>) -> Result<(u32, String, u32), CodeDeployError> {
    let bad = |m: String| CodeDeployError::InvalidBlueGreenDeploymentConfiguration(m);
    let Some(b) = b else {
        return Err(bad(
            "A blueGreenDeploymentConfiguration is required for the ECS compute platform."
                .to_owned(),
        ));
    };
    if b.green_fleet_provisioning_option.is_some() {
        return Err(bad(
            "greenFleetProvisioningOption is not supported for the ECS compute platform."
                .to_owned(),
        ));
    }
    let term = b
        .terminate_blue_instances_on_deployment_success
        .clone()
        .unwrap_or_default();
    if let Some(a) = term.action.as_deref()
        && a != "TERMINATE"
    {
        return Err(bad(format!(
            "The action {a} is invalid for the ECS compute platform: the original task set is always terminated (TERMINATE)."
        )));
    }
    let wait = term.termination_wait_time_in_minutes.unwrap_or(0);
    if !(0..=2880).contains(&wait) {
        return Err(bad(format!(
            "The terminationWaitTimeInMinutes {wait} is invalid: it must be between 0 and 2880."
        )));
    }
    let ready = b.deployment_ready_option.clone().unwrap_or_default();
    let action = ready
        .action_on_timeout
        .unwrap_or_else(|| "CONTINUE_DEPLOYMENT".to_owned());
    if action != "CONTINUE_DEPLOYMENT" && action != "STOP_DEPLOYMENT" {
        return Err(bad(format!(
            "The actionOnTimeout {action} is invalid: it must be CONTINUE_DEPLOYMENT or STOP_DEPLOYMENT."
        )));
    }
    let ready_wait = ready.wait_time_in_minutes.unwrap_or(0);
    if !(0..=2880).contains(&ready_wait) {
        return Err(bad(format!(
            "The waitTimeInMinutes {ready_wait} is invalid: it must be between 0 and 2880."
        )));
    }
    if action == "CONTINUE_DEPLOYMENT" && ready_wait != 0 {
        return Err(bad(
            "A waitTimeInMinutes applies only when actionOnTimeout is STOP_DEPLOYMENT.".to_owned(),
        ));
    }
    Ok((wait as u32, action, ready_wait as u32))
}

/// The ECS service of a group: exactly one, existing, with the CODE_DEPLOY controller; returns
/// (cluster, service, the target group ARN of its load balancer).
async fn check_service(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    services: Option<&[EcsServiceRef]>,
) -> Result<(String, String, Option<String>), CodeDeployError> {
    let bad = |m: String| CodeDeployError::InvalidEcsService(m);
    let list = services.unwrap_or(&[]);
    let [one] = list else {
        return Err(bad(format!(
            "A deployment group for the ECS compute platform names exactly one ECS service (ecsServices), not {}.",
            list.len()
        )));
    };
    let (Some(service), Some(cluster)) = (
        one.service_name.as_deref().filter(|s| !s.is_empty()),
        one.cluster_name.as_deref().filter(|s| !s.is_empty()),
    ) else {
        return Err(bad(
            "An ECS service needs a serviceName and a clusterName.".to_owned()
        ));
    };
    let platform = svc.platform()?;
    let out = platform
        .ecs(
            &ctx.region,
            "DescribeServices",
            json!({"cluster": cluster, "services": [service]}),
        )
        .await
        .map_err(|e| {
            bad(format!(
                "The ECS service {cluster}/{service} could not be read: {}",
                e.message
            ))
        })?;
    let s = out
        .get("services")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .filter(|s| s.get("status").and_then(Value::as_str) == Some("ACTIVE"))
        .ok_or_else(|| {
            bad(format!(
                "The ECS service {service} does not exist in the cluster {cluster}."
            ))
        })?;
    if s.pointer("/deploymentController/type")
        .and_then(Value::as_str)
        != Some("CODE_DEPLOY")
    {
        return Err(bad(
            "Deployment group's ECS service must be configured for a CODE_DEPLOY deployment controller."
                .to_owned(),
        ));
    }
    let tg = s
        .pointer("/loadBalancers/0/targetGroupArn")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((cluster.to_owned(), service.to_owned(), tg))
}

/// The target group pair and its listeners: two distinct existing groups, one production
/// listener (and at most one test listener) forwarding to one of them, the service's own group
/// one of the two. Returns (names, production listeners, test listeners).
async fn check_load_balancer(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    info: Option<&LoadBalancerInfo>,
    service_tg: Option<&str>,
) -> Result<(Vec<String>, Vec<String>, Vec<String>), CodeDeployError> {
    let bad_info = |m: &str| CodeDeployError::InvalidLoadBalancerInfo(m.to_owned());
    let bad_pair = |m: String| CodeDeployError::InvalidTargetGroupPair(m);
    let Some(info) = info else {
        return Err(bad_info(
            "A loadBalancerInfo with a targetGroupPairInfoList is required for the ECS compute platform.",
        ));
    };
    if non_empty_list(&info.elb_info_list) || non_empty_list(&info.target_group_info_list) {
        return Err(bad_info(
            "For the ECS compute platform, loadBalancerInfo takes a targetGroupPairInfoList only.",
        ));
    }
    let pairs = info.target_group_pair_info_list.clone().unwrap_or_default();
    let [pair] = pairs.as_slice() else {
        return Err(bad_pair(format!(
            "Exactly one target group pair is required, not {}.",
            pairs.len()
        )));
    };
    let names: Vec<String> = pair
        .target_groups
        .iter()
        .map(|t| t.name.clone().unwrap_or_default())
        .collect();
    if names.len() != 2 || names.iter().any(String::is_empty) {
        return Err(bad_pair(
            "A target group pair names exactly two target groups.".to_owned(),
        ));
    }
    if names[0] == names[1] {
        return Err(bad_pair(format!(
            "The two target groups of the pair must be different, but both are {}.",
            names[0]
        )));
    }
    let platform = svc.platform()?;
    let lb_err = |e: crate::platform::PlatformError| bad_pair(e.message);
    let mut arns = Vec::new();
    for n in &names {
        let arn = platform
            .target_group_arn(&ctx.region, n)
            .await
            .map_err(lb_err)?
            .ok_or_else(|| bad_pair(format!("The target group {n} does not exist.")))?;
        arns.push(arn);
    }
    if let Some(tg) = service_tg
        && !arns.iter().any(|a| a == tg)
    {
        return Err(bad_pair(format!(
            "The ECS service's target group {tg} is not one of the pair {} and {}.",
            names[0], names[1]
        )));
    }
    let prod = pair
        .prod_traffic_route
        .clone()
        .unwrap_or_default()
        .listener_arns;
    let test = pair
        .test_traffic_route
        .clone()
        .unwrap_or_default()
        .listener_arns;
    if prod.len() != 1 {
        return Err(bad_pair(format!(
            "A prodTrafficRoute names exactly one listener, not {}.",
            prod.len()
        )));
    }
    if test.len() > 1 {
        return Err(bad_pair(format!(
            "A testTrafficRoute names at most one listener, not {}.",
            test.len()
        )));
    }
    if test.first() == prod.first() && !test.is_empty() {
        return Err(bad_pair(
            "The production and test listeners must be different.".to_owned(),
        ));
    }
    for l in prod.iter().chain(test.iter()) {
        let (_, weights) = platform
            .listener_forward(&ctx.region, l)
            .await
            .map_err(lb_err)?
            .ok_or_else(|| bad_pair(format!("The listener {l} does not exist.")))?;
        if !weights.iter().any(|(tg, _)| arns.contains(tg)) {
            return Err(bad_pair(format!(
                "The listener {l} does not forward to either target group of the pair."
            )));
        }
    }
    Ok((names, prod, test))
}

/// Whether another group of the region already deploys `cluster`/`service`.
async fn check_service_free(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    cluster: &str,
    service: &str,
    except: Option<(&str, &str)>,
) -> Result<(), CodeDeployError> {
    let all = svc
        .store
        .scan_all_typed::<GroupRecord>(&all_groups(&ctx.region))
        .await?;
    if let Some(g) = all.into_iter().map(|v| v.value).find(|g| {
        g.cluster == cluster
            && g.service == service
            && except != Some((g.application_name.as_str(), g.name.as_str()))
    }) {
        return Err(CodeDeployError::EcsServiceMappingLimitExceeded(format!(
            "The ECS service {cluster}/{service} is already associated with the deployment group {} of the application {}.",
            g.name, g.application_name
        )));
    }
    Ok(())
}

async fn check_config(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    name: &str,
) -> Result<(), CodeDeployError> {
    if configs::find(svc, ctx, name).await?.is_none() {
        return Err(CodeDeployError::DeploymentConfigDoesNotExist(format!(
            "No deployment configuration found for name: {name}"
        )));
    }
    Ok(())
}

/// The preamble of CreateDeploymentGroup and UpdateDeploymentGroup: the request, its ECS
/// application and the deployment group name `name_of` picks (`deploymentGroupName`, or
/// `currentDeploymentGroupName` for an update), checked in that order.
async fn group_request(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
    name_of: fn(&GroupRequest) -> &Option<String>,
) -> Result<(GroupRequest, String, String), CodeDeployError> {
    let req: GroupRequest = parse(body)?;
    let app = ecs_application(svc, ctx, req.application_name.as_deref()).await?;
    let name = name_of(&req)
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(name_required)?;
    Ok((req, app, name))
}

pub(crate) async fn create(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let (req, app, name) = group_request(svc, body, ctx, |r| &r.deployment_group_name).await?;
    if load(svc, ctx, &app, &name).await?.is_some() {
        return Err(already_exists(&app, &name));
    }
    refuse_other_platforms(&req)?;
    let role = check_role(req.service_role_arn.as_deref())?;
    let config = req
        .deployment_config_name
        .clone()
        .unwrap_or_else(|| DEFAULT_CONFIG.to_owned());
    check_config(svc, ctx, &config).await?;
    check_style(req.deployment_style.as_ref())?;
    let (wait, ready_action, ready_wait) =
        blue_green(req.blue_green_deployment_configuration.as_ref())?;
    let auto_rollback = req.auto_rollback_configuration.clone().unwrap_or_default();
    check_auto_rollback(&auto_rollback)?;
    let (cluster, service, service_tg) =
        check_service(svc, ctx, req.ecs_services.as_deref()).await?;
    let (target_groups, prod, test) = check_load_balancer(
        svc,
        ctx,
        req.load_balancer_info.as_ref(),
        service_tg.as_deref(),
    )
    .await?;
    check_service_free(svc, ctx, &cluster, &service, None).await?;
    let record = GroupRecord {
        application_name: app.clone(),
        name: name.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        deployment_config_name: config,
        service_role_arn: role,
        cluster,
        service,
        target_groups,
        prod_listeners: prod,
        test_listeners: test,
        auto_rollback,
        termination_wait_minutes: wait,
        ready_action,
        ready_wait_minutes: ready_wait,
        active_deployment: None,
        last_attempted: None,
        last_successful: None,
    };
    let key = group(&ctx.region, &app, &name);
    let txn = Txn::new()
        .require_absent(&key)
        .put(&key, encode(&key, &record)?);
    if !commit(svc.store.as_ref(), txn).await? {
        return Err(already_exists(&app, &name));
    }
    Ok(json!({ "deploymentGroupId": record.id }))
}

fn already_exists(app: &str, name: &str) -> CodeDeployError {
    CodeDeployError::DeploymentGroupAlreadyExists(format!(
        "Deployment Group already exists with name: {name} for application: {app}"
    ))
}

pub(crate) async fn update(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let (req, app, name) =
        group_request(svc, body, ctx, |r| &r.current_deployment_group_name).await?;
    let cur = load(svc, ctx, &app, &name)
        .await?
        .ok_or_else(|| not_found(&app, &name))?;
    refuse_other_platforms(&req)?;
    let mut g = cur.value.clone();
    if let Some(r) = &req.service_role_arn {
        g.service_role_arn = check_role(Some(r))?;
    }
    if let Some(c) = &req.deployment_config_name {
        check_config(svc, ctx, c).await?;
        g.deployment_config_name = c.clone();
    }
    if req.deployment_style.is_some() {
        check_style(req.deployment_style.as_ref())?;
    }
    if req.blue_green_deployment_configuration.is_some() {
        let (wait, action, ready_wait) =
            blue_green(req.blue_green_deployment_configuration.as_ref())?;
        g.termination_wait_minutes = wait;
        g.ready_action = action;
        g.ready_wait_minutes = ready_wait;
    }
    if let Some(a) = &req.auto_rollback_configuration {
        check_auto_rollback(a)?;
        g.auto_rollback = a.clone();
    }
    let mut service_tg = None;
    if req.ecs_services.is_some() {
        let (cluster, service, tg) = check_service(svc, ctx, req.ecs_services.as_deref()).await?;
        check_service_free(svc, ctx, &cluster, &service, Some((&app, &name))).await?;
        g.cluster = cluster;
        g.service = service;
        service_tg = tg;
    }
    if req.load_balancer_info.is_some() {
        let (tgs, prod, test) = check_load_balancer(
            svc,
            ctx,
            req.load_balancer_info.as_ref(),
            service_tg.as_deref(),
        )
        .await?;
        g.target_groups = tgs;
        g.prod_listeners = prod;
        g.test_listeners = test;
    }
    let new_name = req
        .new_deployment_group_name
        .clone()
        .filter(|n| !n.is_empty() && *n != name);
    if new_name.is_some() && g.active_deployment.is_some() {
        return Err(CodeDeployError::InvalidInput(format!(
            "The deployment group {name} cannot be renamed while its deployment {} is in progress.",
            g.active_deployment.clone().unwrap_or_default()
        )));
    }
    let old_key = group(&ctx.region, &app, &name);
    let mut txn = Txn::new().require_revision(&old_key, cur.revision);
    match &new_name {
        Some(n) => {
            g.name = n.clone();
            let new_key = group(&ctx.region, &app, n);
            txn = txn
                .require_absent(&new_key)
                .delete(&old_key)
                .put(&new_key, encode(&new_key, &g)?);
        }
        None => txn = txn.put(&old_key, encode(&old_key, &g)?),
    }
    if !commit(svc.store.as_ref(), txn).await? {
        return Err(match &new_name {
            Some(n) if load(svc, ctx, &app, n).await?.is_some() => already_exists(&app, n),
            _ => CodeDeployError::InvalidInput(format!(
                "The deployment group {name} changed during the update; retry."
            )),
        });
    }
    Ok(json!({ "hooksNotCleanedUp": [] }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameRequest {
    application_name: Option<String>,
    deployment_group_name: Option<String>,
}

pub(crate) async fn get(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: NameRequest = parse(body)?;
    let app = ecs_application(svc, ctx, req.application_name.as_deref()).await?;
    let name = req
        .deployment_group_name
        .filter(|n| !n.is_empty())
        .ok_or_else(name_required)?;
    let g = load(svc, ctx, &app, &name)
        .await?
        .ok_or_else(|| not_found(&app, &name))?;
    Ok(json!({ "deploymentGroupInfo": g.value.info() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchRequest {
    application_name: Option<String>,
    deployment_group_names: Option<Vec<String>>,
}

pub(crate) async fn batch_get(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: BatchRequest = parse(body)?;
    let app = ecs_application(svc, ctx, req.application_name.as_deref()).await?;
    let names = req.deployment_group_names.ok_or_else(name_required)?;
    if names.len() > BATCH_MAX {
        return Err(CodeDeployError::BatchLimitExceeded(format!(
            "The maximum number of names or IDs allowed for this request ({BATCH_MAX}) was exceeded."
        )));
    }
    let mut infos = Vec::new();
    let mut missing = Vec::new();
    for n in &names {
        match load(svc, ctx, &app, n).await? {
            Some(g) => infos.push(g.value.info()),
            None => missing.push(n.clone()),
        }
    }
    let mut out = json!({ "deploymentGroupsInfo": infos });
    if !missing.is_empty() {
        out["errorMessage"] = json!(format!(
            "Deployment groups not found in application {app}: {}",
            missing.join(", ")
        ));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    application_name: Option<String>,
    next_token: Option<String>,
}

pub(crate) async fn list(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: ListRequest = parse(body)?;
    let app = ecs_application(svc, ctx, req.application_name.as_deref()).await?;
    let names: Vec<String> = svc
        .store
        .scan_all_typed::<GroupRecord>(&groups(&ctx.region, &app))
        .await?
        .into_iter()
        .map(|v| v.value.name)
        .collect();
    let (names, next) = page(names, req.next_token.as_deref())?;
    Ok(crate::wire::with_next(
        json!({ "applicationName": app, "deploymentGroups": names }),
        next,
    ))
}

/// Deleting a group that does not exist succeeds, as in CodeDeploy.
pub(crate) async fn delete(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: NameRequest = parse(body)?;
    let app = req
        .application_name
        .filter(|n| !n.is_empty())
        .ok_or_else(app_name_required)?;
    let name = req
        .deployment_group_name
        .filter(|n| !n.is_empty())
        .ok_or_else(name_required)?;
    let key = group(&ctx.region, &app, &name);
    svc.store.commit(Txn::new().delete(&key)).await?;
    Ok(json!({ "hooksNotCleanedUp": [] }))
}
