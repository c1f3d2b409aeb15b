//! Clusters.

use serde::{Deserialize, Serialize};

use crate::EpochMillis;
use crate::tags::Tag;
use crate::validation::{ValidationError, is_ecs_name};

/// The name ECS uses when a request names no cluster.
pub const DEFAULT_CLUSTER: &str = "default";

/// The cluster the platform's Fargate capacity registers into (`gantry agent --fargate-pool`,
/// and the server's own machine with `gantry up` or `--fargate-local`). Its name is not a valid
/// user cluster name, it has no cluster record, and no user operation reaches it: it appears in
/// no ListClusters, ListContainerInstances or EC2 placement.
pub const FARGATE_PLATFORM_CLUSTER: &str = "platform.fargate";

/// The attribute naming a platform instance's Fargate pool.
pub const FARGATE_POOL_ATTRIBUTE: &str = "gantry.fargate-pool";

/// The attribute of a host that serves the subnets of every zone of its region (value
/// [`ALL_ZONES`]): the server's own Fargate host, the only platform capacity of a one-machine
/// installation. Its tasks take the zone of the subnet they get.
pub const ZONES_ATTRIBUTE: &str = "gantry.zones";

/// The value of [`ZONES_ATTRIBUTE`] for a host serving every zone.
pub const ALL_ZONES: &str = "all";

/// The Fargate platform version tasks run on (`LATEST` resolves to it).
pub const FARGATE_PLATFORM_VERSION: &str = "1.4.0";

/// A cluster's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterStatus {
    Active,
    Inactive,
}

impl ClusterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Active => "ACTIVE",
            ClusterStatus::Inactive => "INACTIVE",
        }
    }
}

/// A cluster setting (`containerInsights`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSetting {
    pub name: String,
    pub value: String,
}

/// A capacity provider strategy item, as stored on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub base: u32,
}

/// A cluster as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub name: String,
    pub status: ClusterStatus,
    pub created_at: EpochMillis,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub settings: Vec<ClusterSetting>,
    /// `ClusterConfiguration` (execute command logging, managed storage), kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<serde_json::Value>,
    /// `serviceConnectDefaults`, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_defaults: Option<serde_json::Value>,
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
}

/// Checks a cluster name: up to 255 letters, digits, hyphens and underscores.
pub fn validate_cluster_name(name: &str) -> Result<(), ValidationError> {
    if is_ecs_name(name, 255) {
        Ok(())
    } else {
        Err(ValidationError::invalid(format!(
            "Cluster name '{name}' is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
        )))
    }
}

/// Checks cluster settings: only `containerInsights` with `enabled`, `disabled` or `enhanced`.
pub fn validate_settings(settings: &[ClusterSetting]) -> Result<(), ValidationError> {
    for s in settings {
        if s.name != "containerInsights" {
            return Err(ValidationError::invalid(format!(
                "Unsupported cluster setting name '{}'. Valid names: containerInsights.",
                s.name
            )));
        }
        if !matches!(s.value.as_str(), "enabled" | "disabled" | "enhanced") {
            return Err(ValidationError::invalid(format!(
                "Invalid value '{}' for cluster setting containerInsights. Valid values: enabled, disabled, enhanced.",
                s.value
            )));
        }
    }
    Ok(())
}

/// Sets each given setting, replacing one of the same name.
pub fn apply_settings(current: &mut Vec<ClusterSetting>, new: &[ClusterSetting]) {
    for s in new {
        match current.iter_mut().find(|c| c.name == s.name) {
            Some(c) => c.value = s.value.clone(),
            None => current.push(s.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated_and_replaced_by_name() {
        let on = ClusterSetting {
            name: "containerInsights".into(),
            value: "enabled".into(),
        };
        let off = ClusterSetting {
            name: "containerInsights".into(),
            value: "disabled".into(),
        };
        assert!(validate_settings(std::slice::from_ref(&on)).is_ok());
        assert!(
            validate_settings(&[ClusterSetting {
                name: "x".into(),
                value: "enabled".into()
            }])
            .is_err()
        );
        let mut cur = vec![on];
        apply_settings(&mut cur, std::slice::from_ref(&off));
        assert_eq!(cur, vec![off]);
    }

    #[test]
    fn cluster_names_follow_ecs_rules() {
        assert!(validate_cluster_name("prod_1-a").is_ok());
        assert!(validate_cluster_name("prod/1").is_err());
    }
}
