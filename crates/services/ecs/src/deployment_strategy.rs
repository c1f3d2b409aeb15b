//! Checks of `deploymentConfiguration.strategy` and what it needs: bake times, the linear and
//! canary settings, lifecycle hooks, alarms, and the load balancer's `advancedConfiguration`
//! (alternate target group, production and test listener rules) against the ELBv2 records.

use gantry_domain::service::{AdvancedLoadBalancer, DeploymentConfiguration, DeploymentStrategy};
use serde_json::Value;

use crate::EcsError;
use crate::service_lb::TargetGroups;

const HOOK_STAGES: [&str; 8] = [
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
];

fn minutes(name: &str, v: Option<&Value>) -> Result<(), EcsError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_i64() {
            Some(m) if (0..=1440).contains(&m) => Ok(()),
            _ => Err(EcsError::invalid(format!(
                "{name} must be between 0 and 1440 minutes, but was {v}."
            ))),
        },
    }
}

fn percent(name: &str, v: Option<&Value>, min: f64) -> Result<(), EcsError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let ok = v.as_f64().is_some_and(|p| {
        (min..=100.0).contains(&p) && ((p * 10.0).round() - p * 10.0).abs() < 1e-6
    });
    if ok {
        Ok(())
    } else {
        Err(EcsError::invalid(format!(
            "{name} must be a multiple of 0.1 between {min:.1} and 100.0, but was {v}."
        )))
    }
}

/// Checks the strategy settings of `cfg` and, for a strategy that shifts traffic, that
/// `load_balancers` carry an `advancedConfiguration`.
pub(crate) fn check(
    cfg: &DeploymentConfiguration,
    load_balancers: &[Value],
) -> Result<(), EcsError> {
    let o = &cfg.other;
    if let Some(s) = o.get("strategy").filter(|v| !v.is_null())
        && s.as_str().and_then(DeploymentStrategy::parse).is_none()
    {
        return Err(EcsError::invalid(format!(
            "Invalid strategy {s}. Valid values: ROLLING, BLUE_GREEN, LINEAR, CANARY."
        )));
    }
    let strategy = cfg.strategy();
    minutes("bakeTimeInMinutes", o.get("bakeTimeInMinutes"))?;
    if let Some(l) = o.get("linearConfiguration").filter(|v| !v.is_null()) {
        if strategy != DeploymentStrategy::Linear {
            return Err(EcsError::invalid(
                "linearConfiguration is only valid when the deployment strategy is LINEAR.",
            ));
        }
        percent("stepPercent", l.get("stepPercent"), 3.0)?;
        minutes("stepBakeTimeInMinutes", l.get("stepBakeTimeInMinutes"))?;
    }
    if let Some(c) = o.get("canaryConfiguration").filter(|v| !v.is_null()) {
        if strategy != DeploymentStrategy::Canary {
            return Err(EcsError::invalid(
                "canaryConfiguration is only valid when the deployment strategy is CANARY.",
            ));
        }
        percent("canaryPercent", c.get("canaryPercent"), 0.1)?;
        minutes("canaryBakeTimeInMinutes", c.get("canaryBakeTimeInMinutes"))?;
    }
    if let Some(hooks) = o.get("lifecycleHooks").filter(|v| !v.is_null()) {
        let hooks = hooks
            .as_array()
            .ok_or_else(|| EcsError::invalid("lifecycleHooks must be a list."))?;
        if !hooks.is_empty() && !strategy.shifts_traffic() {
            return Err(EcsError::invalid(
                "lifecycleHooks are only supported with the BLUE_GREEN, LINEAR and CANARY deployment strategies.",
            ));
        }
        for h in hooks {
            let target = h
                .get("targetType")
                .and_then(Value::as_str)
                .unwrap_or("AWS_LAMBDA");
            match target {
                "PAUSE" => {}
                "AWS_LAMBDA" => {
                    return Err(EcsError::invalid(
                        "Lifecycle hooks with targetType AWS_LAMBDA are not supported: this endpoint cannot invoke Lambda functions. Use targetType PAUSE.",
                    ));
                }
                other => {
                    return Err(EcsError::invalid(format!(
                        "Invalid targetType {other}. Valid values: AWS_LAMBDA, PAUSE."
                    )));
                }
            }
            let stages = h
                .get("lifecycleStages")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    EcsError::invalid("A lifecycle hook needs at least one lifecycleStages value.")
                })?;
            for st in stages {
                if !st.as_str().is_some_and(|s| HOOK_STAGES.contains(&s)) {
                    return Err(EcsError::invalid(format!(
                        "Invalid lifecycle stage {st}. Valid values: {}.",
                        HOOK_STAGES.join(", ")
                    )));
                }
            }
            if let Some(a) = h
                .pointer("/timeoutConfiguration/action")
                .and_then(Value::as_str)
                && !matches!(a, "CONTINUE" | "ROLLBACK")
            {
                return Err(EcsError::invalid(format!(
                    "Invalid timeout action {a}. Valid values: ROLLBACK, CONTINUE."
                )));
            }
        }
    }
    if let Some(a) = o.get("alarms").filter(|v| !v.is_null()) {
        for k in ["alarmNames", "enable", "rollback"] {
            if a.get(k).is_none_or(Value::is_null) {
                return Err(EcsError::invalid(format!("alarms.{k} is required.")));
            }
        }
    }
    for lb in load_balancers {
        if let Some(a) = lb.get("advancedConfiguration").filter(|v| !v.is_null()) {
            for k in [
                "alternateTargetGroupArn",
                "productionListenerRule",
                "roleArn",
            ] {
                if a.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(EcsError::invalid(format!(
                        "advancedConfiguration.{k} is required for a load balancer with advancedConfiguration."
                    )));
                }
            }
            if a.get("alternateTargetGroupArn") == lb.get("targetGroupArn") {
                return Err(EcsError::invalid(
                    "The alternateTargetGroupArn must be different from the targetGroupArn.",
                ));
            }
        }
    }
    if strategy.shifts_traffic()
        && !load_balancers
            .iter()
            .any(|lb| AdvancedLoadBalancer::of(lb).is_some())
    {
        return Err(EcsError::invalid(format!(
            "The {} deployment strategy requires a load balancer with advancedConfiguration (alternateTargetGroupArn, productionListenerRule, roleArn).",
            strategy.as_str()
        )));
    }
    Ok(())
}

/// Checks each `advancedConfiguration` against the load balancers: the listener rules exist,
/// belong to a load balancer that routes to the target group, and forward to one of the two
/// groups.
pub(crate) async fn check_load_balancers(
    groups: &dyn TargetGroups,
    region: &str,
    load_balancers: &[Value],
) -> Result<(), EcsError> {
    for lb in load_balancers.iter().filter_map(AdvancedLoadBalancer::of) {
        if groups
            .target_type(region, &lb.alternate_target_group_arn)
            .await
            .is_none()
        {
            return Err(EcsError::invalid(format!(
                "Unable to assume role and validate the specified alternateTargetGroupArn. Target group {} not found.",
                lb.alternate_target_group_arn
            )));
        }
        let lbs = groups
            .target_group_load_balancers(region, &lb.target_group_arn)
            .await
            .map_err(EcsError::Internal)?;
        let rules = [
            ("productionListenerRule", Some(&lb.production_listener_rule)),
            ("testListenerRule", lb.test_listener_rule.as_ref()),
        ];
        for (name, rule) in rules {
            let Some(rule) = rule else { continue };
            let Some((owner, forward)) = groups
                .rule_forward(region, rule)
                .await
                .map_err(EcsError::Internal)?
            else {
                return Err(EcsError::invalid(format!(
                    "The {name} {rule} was not found."
                )));
            };
            if !lbs.contains(&owner) {
                return Err(EcsError::invalid(format!(
                    "The {name} {rule} belongs to load balancer {owner}, which does not route to target group {}.",
                    lb.target_group_arn
                )));
            }
            if !forward
                .iter()
                .any(|(tg, _)| *tg == lb.target_group_arn || *tg == lb.alternate_target_group_arn)
            {
                return Err(EcsError::invalid(format!(
                    "The {name} {rule} must forward to target group {} or {}.",
                    lb.target_group_arn, lb.alternate_target_group_arn
                )));
            }
        }
    }
    Ok(())
}
