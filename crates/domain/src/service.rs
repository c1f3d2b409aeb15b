//! Services: desired count, deployments and their rollout state, the circuit breaker settings,
//! service events.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EpochMillis;
use crate::tags::Tag;

/// A service's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceStatus {
    Active,
    Draining,
    Inactive,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// REPLICA keeps `desiredCount` tasks; DAEMON one task per eligible instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SchedulingStrategy {
    Replica,
    Daemon,
}

impl SchedulingStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replica => "REPLICA",
            Self::Daemon => "DAEMON",
        }
    }
}

/// `deploymentCircuitBreaker`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

/// `deploymentConfiguration`, with ECS's defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    pub maximum_percent: i64,
    pub minimum_healthy_percent: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_circuit_breaker: Option<CircuitBreaker>,
    /// `alarms`, `strategy`, `bakeTimeInMinutes`, ... kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl DeploymentConfiguration {
    /// ECS's defaults: 200/100 for REPLICA, 100/0 for DAEMON.
    pub fn defaults(strategy: SchedulingStrategy) -> Self {
        let (max, min) = match strategy {
            SchedulingStrategy::Replica => (200, 100),
            SchedulingStrategy::Daemon => (100, 0),
        };
        Self {
            maximum_percent: max,
            minimum_healthy_percent: min,
            deployment_circuit_breaker: Some(CircuitBreaker::default()),
            other: Map::new(),
        }
    }

    /// `ceil(desired × minimumHealthyPercent / 100)`.
    pub fn min_healthy(&self, desired: i64) -> i64 {
        (desired * self.minimum_healthy_percent + 99) / 100
    }

    /// `floor(desired × maximumPercent / 100)`.
    pub fn max_tasks(&self, desired: i64) -> i64 {
        desired * self.maximum_percent / 100
    }
}

/// `deploymentConfiguration.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStrategy {
    Rolling,
    BlueGreen,
    Linear,
    Canary,
}

impl DeploymentStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rolling => "ROLLING",
            Self::BlueGreen => "BLUE_GREEN",
            Self::Linear => "LINEAR",
            Self::Canary => "CANARY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ROLLING" => Self::Rolling,
            "BLUE_GREEN" => Self::BlueGreen,
            "LINEAR" => Self::Linear,
            "CANARY" => Self::Canary,
            _ => return None,
        })
    }

    /// Whether the strategy shifts traffic between two target groups.
    pub fn shifts_traffic(self) -> bool {
        self != Self::Rolling
    }
}

/// A `PAUSE` lifecycle hook: the deployment waits at `stage` until it is continued or the
/// timeout passes.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseHook {
    pub stages: Vec<String>,
    pub timeout_minutes: Option<i64>,
    /// `CONTINUE` or `ROLLBACK` when the timeout passes.
    pub timeout_action: String,
}

impl DeploymentConfiguration {
    /// The strategy (`ROLLING` when not given).
    pub fn strategy(&self) -> DeploymentStrategy {
        self.other
            .get("strategy")
            .and_then(Value::as_str)
            .and_then(DeploymentStrategy::parse)
            .unwrap_or(DeploymentStrategy::Rolling)
    }

    fn int(&self, path: &[&str], default: i64) -> i64 {
        let mut v = self.other.get(path[0]);
        for p in &path[1..] {
            v = v.and_then(|x| x.get(p));
        }
        v.and_then(Value::as_i64).unwrap_or(default)
    }

    fn num(&self, path: &[&str], default: f64) -> f64 {
        let mut v = self.other.get(path[0]);
        for p in &path[1..] {
            v = v.and_then(|x| x.get(p));
        }
        v.and_then(Value::as_f64).unwrap_or(default)
    }

    /// `bakeTimeInMinutes` (0 when not given).
    pub fn bake_minutes(&self) -> i64 {
        self.int(&["bakeTimeInMinutes"], 0)
    }

    /// `linearConfiguration`: (stepPercent, stepBakeTimeInMinutes), ECS's defaults 10 and 6.
    pub fn linear(&self) -> (f64, i64) {
        (
            self.num(&["linearConfiguration", "stepPercent"], 10.0),
            self.int(&["linearConfiguration", "stepBakeTimeInMinutes"], 6),
        )
    }

    /// `canaryConfiguration`: (canaryPercent, canaryBakeTimeInMinutes), ECS's defaults 5 and 10.
    pub fn canary(&self) -> (f64, i64) {
        (
            self.num(&["canaryConfiguration", "canaryPercent"], 5.0),
            self.int(&["canaryConfiguration", "canaryBakeTimeInMinutes"], 10),
        )
    }

    /// The `PAUSE` lifecycle hooks.
    pub fn pause_hooks(&self) -> Vec<PauseHook> {
        let Some(Value::Array(hooks)) = self.other.get("lifecycleHooks") else {
            return Vec::new();
        };
        hooks
            .iter()
            .filter(|h| h.get("targetType").and_then(Value::as_str) == Some("PAUSE"))
            .map(|h| PauseHook {
                stages: h
                    .get("lifecycleStages")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                timeout_minutes: h
                    .pointer("/timeoutConfiguration/timeoutInMinutes")
                    .and_then(Value::as_i64),
                timeout_action: h
                    .pointer("/timeoutConfiguration/action")
                    .and_then(Value::as_str)
                    .unwrap_or("ROLLBACK")
                    .to_owned(),
            })
            .collect()
    }

    /// `alarms` when enabled: the alarm names and whether to roll back.
    pub fn alarms(&self) -> Option<(Vec<String>, bool)> {
        let a = self.other.get("alarms")?;
        if a.get("enable").and_then(Value::as_bool) != Some(true) {
            return None;
        }
        let names = a
            .get("alarmNames")
            .and_then(Value::as_array)
            .map(|n| {
                n.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Some((
            names,
            a.get("rollback").and_then(Value::as_bool) == Some(true),
        ))
    }
}

/// The lifecycle stage of a deployment that shifts traffic (`lifecycleStage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleStage {
    PreScaleUp,
    ScaleUp,
    PostScaleUp,
    TestTrafficShift,
    PostTestTrafficShift,
    ProductionTrafficShift,
    PostProductionTrafficShift,
    BakeTime,
    CleanUp,
}

impl LifecycleStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreScaleUp => "PRE_SCALE_UP",
            Self::ScaleUp => "SCALE_UP",
            Self::PostScaleUp => "POST_SCALE_UP",
            Self::TestTrafficShift => "TEST_TRAFFIC_SHIFT",
            Self::PostTestTrafficShift => "POST_TEST_TRAFFIC_SHIFT",
            Self::ProductionTrafficShift => "PRODUCTION_TRAFFIC_SHIFT",
            Self::PostProductionTrafficShift => "POST_PRODUCTION_TRAFFIC_SHIFT",
            Self::BakeTime => "BAKE_TIME",
            Self::CleanUp => "CLEAN_UP",
        }
    }
}

/// A `PAUSE` hook holding a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldHook {
    pub hook_id: String,
    /// The hook stage (`DeploymentLifecycleHookStage`).
    pub stage: String,
    pub since: EpochMillis,
    /// Set by ContinueServiceDeployment: `CONTINUE` or `ROLLBACK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A BLUE_GREEN, LINEAR or CANARY deployment in progress: the green deployment runs beside the
/// blue one, in the other target group, while the listener rules' weights move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficShift {
    /// The green (new, PRIMARY) deployment.
    pub deployment_id: String,
    /// The blue deployment serving production when the shift began.
    pub source_deployment_id: String,
    pub green_target_group: String,
    pub blue_target_group: String,
    pub stage: LifecycleStage,
    pub stage_started_at: EpochMillis,
    /// Share of production traffic sent to green, in percent.
    pub production_percent: f64,
    /// Share of test traffic sent to green, in percent.
    pub test_percent: f64,
    /// When the production share last changed (LINEAR and CANARY steps).
    pub step_at: EpochMillis,
    /// Hook stages already passed.
    #[serde(default)]
    pub passed_hooks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldHook>,
    /// StopServiceDeployment asked for a rollback, with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_requested: Option<String>,
}

/// A rollback of a deployment, as DescribeServiceDeployments reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackNote {
    /// The deployment rolled back.
    pub deployment_id: String,
    pub reason: String,
    pub started_at: EpochMillis,
    /// The deployment that serves again.
    pub to_deployment_id: String,
}

/// The circuit breaker's failure threshold: `clamp(ceil(0.5 × desired), 3, 200)`.
pub fn circuit_breaker_threshold(desired: i64) -> i64 {
    ((desired + 1) / 2).clamp(3, 200)
}

/// Status of one deployment within a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    Primary,
    Active,
    Inactive,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "PRIMARY",
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// `rolloutState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }
}

/// One deployment: a task definition revision the service runs (or ran).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `ecs-svc/<19 digits>`.
    pub id: String,
    pub status: DeploymentStatus,
    pub family: String,
    pub revision: u32,
    pub desired_count: i64,
    /// Consecutive tasks of this deployment that stopped before RUNNING (circuit breaker stage 1)
    /// or failed health after RUNNING (stage 2).
    pub failed_tasks: i64,
    /// Whether a task of this deployment has reached RUNNING (breaker stage 2).
    #[serde(default)]
    pub reached_running: bool,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
    pub rollout_state: RolloutState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state_reason: Option<String>,
    pub launch_type: String,
    /// The service's `networkConfiguration` when the deployment was made: the one its tasks
    /// launch with (DescribeServices reports it per deployment, as ECS does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
}

/// A service event, newest first in `events[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    pub id: String,
    pub created_at: EpochMillis,
    pub message: String,
}

/// Most events kept per service.
pub const MAX_EVENTS: usize = 100;

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub cluster: String,
    pub status: ServiceStatus,
    pub desired_count: i64,
    pub scheduling_strategy: SchedulingStrategy,
    pub launch_type: String,
    /// The capacity provider strategy the service launches with (empty: its launch type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<crate::cluster::CapacityProviderStrategyItem>,
    /// Fargate services: the requested platform version (`LATEST` or `1.4.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    pub deployment_configuration: DeploymentConfiguration,
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    #[serde(default)]
    pub placement_strategy: Vec<Value>,
    #[serde(default)]
    pub load_balancers: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<i64>,
    /// The IAM role (as an ARN) named by CreateService's `role`, reported as `roleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<String>,
    #[serde(default)]
    pub enable_ecs_managed_tags: bool,
    #[serde(default)]
    pub enable_execute_command: bool,
    pub created_at: EpochMillis,
    pub created_by: String,
    /// Newest first; the PRIMARY deployment is the first.
    pub deployments: Vec<Deployment>,
    /// Newest first, at most [`MAX_EVENTS`].
    #[serde(default)]
    pub events: Vec<ServiceEvent>,
    /// Launch throttling: consecutive tasks that stopped before RUNNING, and when the next launch
    /// may happen.
    #[serde(default)]
    pub throttle_failures: i64,
    #[serde(default)]
    pub throttle_until: EpochMillis,
    /// Bumped on every change.
    #[serde(default)]
    pub version: u64,
    /// A traffic-shifting deployment in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<TrafficShift>,
    /// Services with an alternate target group: the one production traffic goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_target_group: Option<String>,
    /// The latest rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rollback: Option<RollbackNote>,
    /// `deploymentController.type` when not `ECS` (`EXTERNAL`, `CODE_DEPLOY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_controller: Option<String>,
    /// EXTERNAL and CODE_DEPLOY services: their task sets (such a service has no deployments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_sets: Vec<TaskSet>,
}

/// A task set of a service with the EXTERNAL or CODE_DEPLOY deployment controller: a task
/// definition with its own launch settings and load balancers, run at `scale` percent of the
/// service's desired count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSet {
    /// `ecs-svc/<19 digits>`, also the tasks' `startedBy`.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub family: String,
    pub revision: u32,
    pub launch_type: String,
    /// `PRIMARY`, `ACTIVE` or `DRAINING`.
    pub status: String,
    /// Percent of the service's desired count.
    pub scale: f64,
    #[serde(default)]
    pub load_balancers: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<crate::cluster::CapacityProviderStrategyItem>,
    /// `STEADY_STATE` or `STABILIZING`.
    pub stability_status: String,
    pub stability_status_at: EpochMillis,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

impl TaskSet {
    /// `computedDesiredCount`: `ceil(desired × scale / 100)`, 0 while DRAINING.
    pub fn computed_desired(&self, desired: i64) -> i64 {
        if self.status == "DRAINING" {
            return 0;
        }
        ((desired as f64) * self.scale / 100.0).ceil() as i64
    }
}

impl Service {
    /// Whether the service's task sets are managed by the task-set API (EXTERNAL controller).
    pub fn is_external(&self) -> bool {
        self.deployment_controller.as_deref() == Some("EXTERNAL")
    }

    /// Whether CodeDeploy deploys the service (CODE_DEPLOY controller).
    pub fn is_code_deploy(&self) -> bool {
        self.deployment_controller.as_deref() == Some("CODE_DEPLOY")
    }

    /// Whether the service's tasks run as task sets (EXTERNAL and CODE_DEPLOY controllers).
    pub fn uses_task_sets(&self) -> bool {
        self.is_external() || self.is_code_deploy()
    }
}

/// The `loadBalancers[]` entry of a service with an `advancedConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvancedLoadBalancer {
    pub target_group_arn: String,
    pub alternate_target_group_arn: String,
    pub production_listener_rule: String,
    pub test_listener_rule: Option<String>,
}

impl AdvancedLoadBalancer {
    /// Reads one `loadBalancers[]` entry; `None` without a complete `advancedConfiguration`.
    pub fn of(lb: &Value) -> Option<Self> {
        let a = lb.get("advancedConfiguration")?;
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            target_group_arn: s(lb.get("targetGroupArn"))?,
            alternate_target_group_arn: s(a.get("alternateTargetGroupArn"))?,
            production_listener_rule: s(a.get("productionListenerRule"))?,
            test_listener_rule: s(a.get("testListenerRule")),
        })
    }

    /// The group that is not `tg` of the two.
    pub fn other(&self, tg: &str) -> &str {
        if tg == self.target_group_arn {
            &self.alternate_target_group_arn
        } else {
            &self.target_group_arn
        }
    }
}

impl Service {
    /// The load balancer a traffic-shifting deployment moves traffic on.
    pub fn advanced_lb(&self) -> Option<AdvancedLoadBalancer> {
        self.load_balancers
            .iter()
            .find_map(AdvancedLoadBalancer::of)
    }

    /// The target group production traffic goes to (services with an alternate group).
    pub fn serving_target_group(&self) -> Option<String> {
        let lb = self.advanced_lb()?;
        Some(
            self.production_target_group
                .clone()
                .unwrap_or(lb.target_group_arn),
        )
    }

    /// The PRIMARY deployment.
    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
    }

    /// The task group of the service's tasks.
    pub fn group(&self) -> String {
        format!("service:{}", self.name)
    }

    /// Adds an event (newest first), keeping at most [`MAX_EVENTS`].
    pub fn push_event(&mut self, id: String, now: EpochMillis, message: String) {
        self.events.insert(
            0,
            ServiceEvent {
                id,
                created_at: now,
                message,
            },
        );
        self.events.truncate(MAX_EVENTS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_the_ecs_worked_examples() {
        let c = |max, min| DeploymentConfiguration {
            maximum_percent: max,
            minimum_healthy_percent: min,
            deployment_circuit_breaker: None,
            other: Map::new(),
        };
        assert_eq!(
            (c(200, 100).min_healthy(4), c(200, 100).max_tasks(4)),
            (4, 8)
        );
        assert_eq!((c(200, 50).min_healthy(4), c(200, 50).max_tasks(4)), (2, 8));
        assert_eq!((c(100, 50).min_healthy(4), c(100, 50).max_tasks(4)), (2, 4));
        assert_eq!(
            (c(125, 100).min_healthy(3), c(125, 100).max_tasks(3)),
            (3, 3)
        );
        assert_eq!((c(200, 75).min_healthy(2), c(200, 75).max_tasks(2)), (2, 4));
        assert_eq!((c(100, 0).min_healthy(1), c(100, 0).max_tasks(1)), (0, 1));
    }

    #[test]
    fn breaker_threshold_is_clamped() {
        assert_eq!(circuit_breaker_threshold(1), 3);
        assert_eq!(circuit_breaker_threshold(6), 3);
        assert_eq!(circuit_breaker_threshold(25), 13);
        assert_eq!(circuit_breaker_threshold(400), 200);
        assert_eq!(circuit_breaker_threshold(800), 200);
    }
}
