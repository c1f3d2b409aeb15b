//! Deployment configurations for the ECS compute platform: the predefined
//! `CodeDeployDefault.ECS*` ones and custom ones (CreateDeploymentConfig, GetDeploymentConfig,
//! ListDeploymentConfigs, DeleteDeploymentConfig).

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::apps::check_platform;
use crate::wire::{commit, config, configs, page, parse, time};
use crate::{CodeDeployError, CodeDeployService};

/// How traffic moves from the original task set to the replacement one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficRouting {
    AllAtOnce,
    /// `percentage` first, the rest `interval_minutes` later.
    TimeBasedCanary {
        percentage: u32,
        interval_minutes: u32,
    },
    /// `percentage` more every `interval_minutes`.
    TimeBasedLinear {
        percentage: u32,
        interval_minutes: u32,
    },
}

impl TrafficRouting {
    fn wire(&self) -> Value {
        match *self {
            Self::AllAtOnce => json!({ "type": "AllAtOnce" }),
            Self::TimeBasedCanary {
                percentage,
                interval_minutes,
            } => json!({
                "type": "TimeBasedCanary",
                "timeBasedCanary": { "canaryPercentage": percentage, "canaryInterval": interval_minutes },
            }),
            Self::TimeBasedLinear {
                percentage,
                interval_minutes,
            } => json!({
                "type": "TimeBasedLinear",
                "timeBasedLinear": { "linearPercentage": percentage, "linearInterval": interval_minutes },
            }),
        }
    }
}

/// The predefined ECS configurations, sorted by name.
pub const PREDEFINED: &[(&str, TrafficRouting)] = &[
    ("CodeDeployDefault.ECSAllAtOnce", TrafficRouting::AllAtOnce),
    (
        "CodeDeployDefault.ECSCanary10Percent15Minutes",
        TrafficRouting::TimeBasedCanary {
            percentage: 10,
            interval_minutes: 15,
        },
    ),
    (
        "CodeDeployDefault.ECSCanary10Percent5Minutes",
        TrafficRouting::TimeBasedCanary {
            percentage: 10,
            interval_minutes: 5,
        },
    ),
    (
        "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
        TrafficRouting::TimeBasedLinear {
            percentage: 10,
            interval_minutes: 1,
        },
    ),
    (
        "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
        TrafficRouting::TimeBasedLinear {
            percentage: 10,
            interval_minutes: 3,
        },
    ),
];

/// The prefix CodeDeploy reserves for its own configurations.
const RESERVED_PREFIX: &str = "CodeDeployDefault.";

/// A custom configuration as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub name: String,
    pub id: String,
    pub create_time_ms: u64,
    pub routing: TrafficRouting,
}

/// A configuration by name, predefined or custom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Config {
    Predefined(&'static str, TrafficRouting),
    Custom(ConfigRecord),
}

impl Config {
    fn info(&self) -> Value {
        match self {
            // CodeDeploy's own configurations carry no id or creation time of this server.
            Self::Predefined(name, routing) => json!({
                "deploymentConfigName": name,
                "computePlatform": "ECS",
                "trafficRoutingConfig": routing.wire(),
            }),
            Self::Custom(c) => json!({
                "deploymentConfigId": c.id,
                "deploymentConfigName": c.name,
                "createTime": time(c.create_time_ms),
                "computePlatform": "ECS",
                "trafficRoutingConfig": c.routing.wire(),
            }),
        }
    }
}

fn name_required() -> CodeDeployError {
    CodeDeployError::DeploymentConfigNameRequired("Deployment config name is required".to_owned())
}

fn predefined(name: &str) -> Option<Config> {
    PREDEFINED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, r)| Config::Predefined(n, *r))
}

/// The configuration named `name`, or `None`.
pub async fn find(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    name: &str,
) -> Result<Option<Config>, CodeDeployError> {
    if let Some(c) = predefined(name) {
        return Ok(Some(c));
    }
    Ok(svc
        .store
        .get_typed::<ConfigRecord>(&config(&ctx.region, name))
        .await?
        .map(|v| Config::Custom(v.value)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CanaryWire {
    canary_percentage: Option<i64>,
    canary_interval: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinearWire {
    linear_percentage: Option<i64>,
    linear_interval: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoutingWire {
    #[serde(rename = "type")]
    kind: Option<String>,
    time_based_canary: Option<CanaryWire>,
    time_based_linear: Option<LinearWire>,
}

fn bad_routing(msg: impl Into<String>) -> CodeDeployError {
    CodeDeployError::InvalidTrafficRoutingConfiguration(msg.into())
}

fn step(
    percentage: Option<i64>,
    interval: Option<i64>,
    what: &str,
) -> Result<(u32, u32), CodeDeployError> {
    let percentage = match percentage {
        Some(p @ 1..=99) => p as u32,
        _ => {
            return Err(bad_routing(format!(
                "The {what} percentage must be an integer between 1 and 99."
            )));
        }
    };
    let interval = match interval {
        Some(i @ 1..=2880) => i as u32,
        _ => {
            return Err(bad_routing(format!(
                "The {what} interval must be an integer number of minutes between 1 and 2880."
            )));
        }
    };
    Ok((percentage, interval))
}

/// Reads a `trafficRoutingConfig` as CodeDeploy checks it for ECS.
fn routing(wire: Option<RoutingWire>) -> Result<TrafficRouting, CodeDeployError> {
    let Some(w) = wire else {
        return Err(bad_routing(
            "A trafficRoutingConfig is required for the ECS compute platform.",
        ));
    };
    match w.kind.as_deref() {
        Some("AllAtOnce") => {
            if w.time_based_canary.is_some() || w.time_based_linear.is_some() {
                return Err(bad_routing(
                    "An AllAtOnce traffic routing configuration takes neither timeBasedCanary nor timeBasedLinear.",
                ));
            }
            Ok(TrafficRouting::AllAtOnce)
        }
        Some("TimeBasedCanary") => {
            if w.time_based_linear.is_some() {
                return Err(bad_routing(
                    "A TimeBasedCanary traffic routing configuration does not take timeBasedLinear.",
                ));
            }
            let c = w.time_based_canary.ok_or_else(|| {
                bad_routing(
                    "A TimeBasedCanary traffic routing configuration requires timeBasedCanary.",
                )
            })?;
            let (percentage, interval_minutes) =
                step(c.canary_percentage, c.canary_interval, "canary")?;
            Ok(TrafficRouting::TimeBasedCanary {
                percentage,
                interval_minutes,
            })
        }
        Some("TimeBasedLinear") => {
            if w.time_based_canary.is_some() {
                return Err(bad_routing(
                    "A TimeBasedLinear traffic routing configuration does not take timeBasedCanary.",
                ));
            }
            let l = w.time_based_linear.ok_or_else(|| {
                bad_routing(
                    "A TimeBasedLinear traffic routing configuration requires timeBasedLinear.",
                )
            })?;
            let (percentage, interval_minutes) =
                step(l.linear_percentage, l.linear_interval, "linear")?;
            Ok(TrafficRouting::TimeBasedLinear {
                percentage,
                interval_minutes,
            })
        }
        Some(other) => Err(bad_routing(format!(
            "The traffic routing type {other} is invalid: it must be TimeBasedCanary, TimeBasedLinear or AllAtOnce."
        ))),
        None => Err(bad_routing("The traffic routing type is required.")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    deployment_config_name: Option<String>,
    minimum_healthy_hosts: Option<Value>,
    traffic_routing_config: Option<RoutingWire>,
    compute_platform: Option<String>,
    zonal_config: Option<Value>,
}

pub(crate) async fn create(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: CreateRequest = parse(body)?;
    let name = req.deployment_config_name.ok_or_else(name_required)?;
    if predefined(&name).is_some() || name.starts_with(RESERVED_PREFIX) {
        return Err(CodeDeployError::DeploymentConfigAlreadyExists(format!(
            "Deployment Configuration already exists with name: {name}"
        )));
    }
    check_platform(req.compute_platform.as_deref())?;
    if req.minimum_healthy_hosts.is_some() {
        return Err(CodeDeployError::InvalidMinimumHealthyHostValue(
            "Minimum healthy hosts is not supported for the ECS compute platform.".to_owned(),
        ));
    }
    if req.zonal_config.is_some() {
        return Err(CodeDeployError::InvalidZonalDeploymentConfiguration(
            "A zonal configuration is only supported for the Server compute platform.".to_owned(),
        ));
    }
    let routing = routing(req.traffic_routing_config)?;
    let record = ConfigRecord {
        name: name.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        create_time_ms: ctx.now,
        routing,
    };
    let key = config(&ctx.region, &name);
    let txn = Txn::new()
        .require_absent(&key)
        .put(&key, encode(&key, &record)?);
    if !commit(svc.store.as_ref(), txn).await? {
        return Err(CodeDeployError::DeploymentConfigAlreadyExists(format!(
            "Deployment Configuration already exists with name: {name}"
        )));
    }
    Ok(json!({ "deploymentConfigId": record.id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameRequest {
    deployment_config_name: Option<String>,
}

pub(crate) async fn get(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: NameRequest = parse(body)?;
    let name = req.deployment_config_name.ok_or_else(name_required)?;
    let config = find(svc, ctx, &name).await?.ok_or_else(|| {
        CodeDeployError::DeploymentConfigDoesNotExist(format!(
            "No deployment configuration found for name: {name}"
        ))
    })?;
    Ok(json!({ "deploymentConfigInfo": config.info() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    next_token: Option<String>,
}

pub(crate) async fn list(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: ListRequest = parse(body)?;
    let mut names: Vec<String> = PREDEFINED.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.extend(
        svc.store
            .scan_all_typed::<ConfigRecord>(&configs(&ctx.region))
            .await?
            .into_iter()
            .map(|v| v.value.name),
    );
    names.sort();
    let (names, next) = page(names, req.next_token.as_deref())?;
    Ok(crate::wire::with_next(
        json!({ "deploymentConfigsList": names }),
        next,
    ))
}

/// Deleting a custom configuration; CodeDeploy's own cannot be deleted. A name that does not
/// exist succeeds, as in CodeDeploy.
pub(crate) async fn delete(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: NameRequest = parse(body)?;
    let name = req.deployment_config_name.ok_or_else(name_required)?;
    if name.starts_with(RESERVED_PREFIX) {
        return Err(CodeDeployError::InvalidOperation(
            "The default deployment configurations cannot be deleted.".to_owned(),
        ));
    }
    let key = config(&ctx.region, &name);
    svc.store.commit(Txn::new().delete(&key)).await?;
    Ok(json!({}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn routing_of(v: Value) -> Result<TrafficRouting, CodeDeployError> {
        routing(Some(serde_json::from_value(v).unwrap()))
    }

    #[test]
    fn predefined_configs_are_sorted() {
        assert!(PREDEFINED.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn traffic_routing_is_checked_as_codedeploy_checks_it() {
        assert_eq!(
            routing_of(json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 20, "canaryInterval": 2}})).unwrap(),
            TrafficRouting::TimeBasedCanary { percentage: 20, interval_minutes: 2 }
        );
        assert_eq!(
            routing_of(json!({"type": "AllAtOnce"})).unwrap(),
            TrafficRouting::AllAtOnce
        );
        for bad in [
            json!({"type": "TimeBasedCanary"}),
            json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 100, "canaryInterval": 2}}),
            json!({"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 10, "linearInterval": 0}}),
            json!({"type": "AllAtOnce", "timeBasedLinear": {"linearPercentage": 10, "linearInterval": 1}}),
            json!({"type": "Sideways"}),
        ] {
            assert_eq!(
                routing_of(bad.clone()).unwrap_err().aws_code(),
                "InvalidTrafficRoutingConfigurationException",
                "{bad}"
            );
        }
        assert!(routing(None).is_err());
    }
}
