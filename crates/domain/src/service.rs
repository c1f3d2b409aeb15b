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
}

impl Service {
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
