//! Capacity providers and `capacityProviderStrategy`: the built-in Fargate providers, the checks
//! ECS makes on a strategy, and how a strategy splits tasks over its providers (aws-api.md §3.7).

use serde::{Deserialize, Serialize};

use crate::cluster::CapacityProviderStrategyItem;
use crate::validation::ValidationError;

/// The built-in provider of on-demand Fargate capacity.
pub const FARGATE: &str = "FARGATE";
/// The built-in provider of interruptible Fargate capacity.
pub const FARGATE_SPOT: &str = "FARGATE_SPOT";

/// The most providers one strategy may name.
pub const MAX_STRATEGY_ITEMS: usize = 6;

/// The attribute that puts a container instance in a host pool (`gantry agent --pool NAME`); an
/// Auto Scaling group provider's `autoScalingGroupArn` names its pool.
pub const POOL_ATTRIBUTE: &str = "gantry.pool";

/// A capacity provider's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProviderStatus {
    Active,
    Inactive,
}

/// An Auto Scaling group provider (a host pool), as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProvider {
    pub name: String,
    pub status: ProviderStatus,
    /// `autoScalingGroupProvider` as ECS reports it: the ARN, `managedScaling` with ECS's
    /// defaults filled in, `managedTerminationProtection`, `managedDraining`.
    pub auto_scaling_group_provider: serde_json::Value,
    /// The pool the ARN names (its `autoScalingGroupName/` part).
    pub pool: String,
    /// `CREATE_COMPLETE`, `UPDATE_COMPLETE`, `DELETE_COMPLETE`, `DELETE_FAILED`.
    pub update_status: String,
    /// Why the last update failed (`DELETE_FAILED`: the clusters it is associated with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status_reason: Option<String>,
    #[serde(default)]
    pub tags: Vec<crate::tags::Tag>,
    pub created_at: crate::EpochMillis,
}

/// The pool an Auto Scaling group ARN names:
/// `arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:UUID:autoScalingGroupName/NAME`.
pub fn pool_of_group_arn(arn: &str) -> Option<&str> {
    if !arn.starts_with("arn:") || !arn.contains(":autoscaling:") {
        return None;
    }
    let (_, name) = arn.split_once(":autoScalingGroupName/")?;
    (!name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(name)
}

/// Checks a new provider's name: ECS's name rules and its reserved prefixes.
pub fn validate_provider_name(name: &str) -> Result<(), ValidationError> {
    if !crate::validation::is_ecs_name(name, 255) {
        return Err(ValidationError::invalid(format!(
            "The capacity provider name '{name}' is invalid: up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed."
        )));
    }
    let lower = name.to_ascii_lowercase();
    if ["aws", "ecs", "fargate"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(ValidationError::invalid(format!(
            "The capacity provider name '{name}' is invalid: a capacity provider name cannot start with 'aws', 'ecs', or 'fargate'."
        )));
    }
    Ok(())
}

/// Fills `managedScaling` with ECS's defaults and checks the provider's settings; `current` is
/// the stored provider when updating.
pub fn normalize_group_provider(
    input: &serde_json::Value,
    current: Option<&serde_json::Value>,
) -> Result<serde_json::Value, ValidationError> {
    use serde_json::{Value, json};
    let mut out = current.cloned().unwrap_or_else(|| json!({}));
    if let Some(arn) = input.get("autoScalingGroupArn") {
        out["autoScalingGroupArn"] = arn.clone();
    }
    let enum_of = |field: &str, v: &Value| -> Result<Value, ValidationError> {
        match v.as_str() {
            Some("ENABLED" | "DISABLED") => Ok(v.clone()),
            _ => Err(ValidationError::invalid(format!(
                "Invalid {field} '{}'. Valid values: ENABLED, DISABLED.",
                v.as_str().unwrap_or_default()
            ))),
        }
    };
    let mut scaling = out
        .get("managedScaling")
        .cloned()
        .unwrap_or_else(|| json!({"status": "DISABLED", "targetCapacity": 100, "minimumScalingStepSize": 1, "maximumScalingStepSize": 10000, "instanceWarmupPeriod": 300}));
    if let Some(ms) = input.get("managedScaling").and_then(Value::as_object) {
        for (k, v) in ms {
            match k.as_str() {
                "status" => scaling["status"] = enum_of("managedScaling.status", v)?,
                "targetCapacity"
                | "minimumScalingStepSize"
                | "maximumScalingStepSize"
                | "instanceWarmupPeriod" => scaling[k.as_str()] = v.clone(),
                _ => {}
            }
        }
    }
    let min = scaling["minimumScalingStepSize"].as_i64().unwrap_or(1);
    let max = scaling["maximumScalingStepSize"].as_i64().unwrap_or(10000);
    if min > max {
        return Err(ValidationError::invalid(
            "The minimumScalingStepSize must be less than or equal to the maximumScalingStepSize.",
        ));
    }
    out["managedScaling"] = scaling;
    for field in ["managedTerminationProtection", "managedDraining"] {
        if let Some(v) = input.get(field) {
            out[field] = enum_of(field, v)?;
        }
    }
    if out.get("managedTerminationProtection").is_none() {
        out["managedTerminationProtection"] = json!("DISABLED");
    }
    if out.get("managedDraining").is_none() {
        out["managedDraining"] = json!("ENABLED");
    }
    if out["managedTerminationProtection"] == "ENABLED"
        && out["managedScaling"]["status"] != "ENABLED"
    {
        return Err(ValidationError::invalid(
            "The managed termination protection setting for the capacity provider is invalid. To enable managed termination protection for a capacity provider, managed scaling must also be enabled.",
        ));
    }
    Ok(out)
}

/// Whether `name` is one of the built-in Fargate providers.
pub fn is_fargate_provider(name: &str) -> bool {
    name == FARGATE || name == FARGATE_SPOT
}

/// Checks a strategy as ECS does, against the providers associated with the cluster.
pub fn validate_strategy(
    items: &[CapacityProviderStrategyItem],
    associated: &[String],
) -> Result<(), ValidationError> {
    if items.is_empty() {
        return Ok(());
    }
    if items.len() > MAX_STRATEGY_ITEMS {
        return Err(ValidationError::invalid(format!(
            "The specified capacity provider strategy cannot contain more than {MAX_STRATEGY_ITEMS} capacity providers."
        )));
    }
    for (i, item) in items.iter().enumerate() {
        if items[..i]
            .iter()
            .any(|x| x.capacity_provider == item.capacity_provider)
        {
            return Err(ValidationError::invalid(format!(
                "The specified capacity provider strategy contains the capacity provider {} more than once.",
                item.capacity_provider
            )));
        }
        if item.weight > 1000 {
            return Err(ValidationError::invalid(format!(
                "The weight of capacity provider {} must be between 0 and 1000.",
                item.capacity_provider
            )));
        }
        if item.base > 100_000 {
            return Err(ValidationError::invalid(format!(
                "The base of capacity provider {} must be between 0 and 100000.",
                item.capacity_provider
            )));
        }
    }
    if items.iter().filter(|i| i.base > 0).count() > 1 {
        return Err(ValidationError::invalid(
            "The specified capacity provider strategy cannot contain more than one capacity provider with a base value greater than 0.",
        ));
    }
    let fargate = items
        .iter()
        .filter(|i| is_fargate_provider(&i.capacity_provider))
        .count();
    if fargate != 0 && fargate != items.len() {
        return Err(ValidationError::invalid(
            "A capacity provider strategy cannot contain a mix of capacity providers using Auto Scaling groups and Fargate providers. Specify one or the other and try again.",
        ));
    }
    if let Some(i) = items
        .iter()
        .find(|i| !associated.contains(&i.capacity_provider))
    {
        return Err(ValidationError::invalid(format!(
            "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again. ({} is not associated.)",
            i.capacity_provider
        )));
    }
    Ok(())
}

/// Checks that a strategy a launch uses gives some provider a weight: ECS accepts a cluster
/// default whose weights are all 0, and refuses the RunTask or CreateService that would use it.
/// `cluster_default`: the strategy is the cluster's default, not the request's.
pub fn require_weight(
    items: &[CapacityProviderStrategyItem],
    cluster_default: bool,
) -> Result<(), ValidationError> {
    if items.is_empty() || items.iter().any(|i| i.weight > 0) {
        return Ok(());
    }
    Err(ValidationError::invalid(if cluster_default {
        "There are no capacity providers with a weight value greater than zero defined in the default capacity provider strategy. At least one capacity provider must have a weight value greater than zero specified. Update the cluster's default capacity provider strategy or specify a valid capacity provider strategy and try again."
    } else {
        "There are no capacity providers with a weight value greater than zero defined in the capacity provider strategy. At least one capacity provider must have a weight value greater than zero specified. Specify a valid capacity provider strategy and try again."
    }))
}

/// How many of `n` new tasks go to each item of a (valid) strategy, given how many live tasks
/// each item's provider already holds (`existing`, in the order of `items`): the item with a
/// `base` first gets up to its base, then each task goes to the weighted item furthest below its
/// exact share of the tasks beyond the bases (ties: the earlier item), which keeps every item
/// within one task of its exact share at every total. Items of weight 0 get only their
/// base.
pub fn split(items: &[CapacityProviderStrategyItem], existing: &[u64], n: u64) -> Vec<u64> {
    let mut counts: Vec<u64> = (0..items.len())
        .map(|i| existing.get(i).copied().unwrap_or(0))
        .collect();
    let mut out = vec![0u64; items.len()];
    if items.iter().all(|i| i.weight == 0) {
        return out;
    }
    for _ in 0..n {
        // The base first.
        if let Some(b) = items
            .iter()
            .position(|i| i.base > 0)
            .filter(|&b| counts[b] < u64::from(items[b].base))
        {
            counts[b] += 1;
            out[b] += 1;
            continue;
        }
        // Then the weighted item furthest below its exact share of the tasks beyond the bases,
        // counting this one: maximise T' * w_i - beyond_i * W (integers, no rounding).
        let total_weight: u128 = items.iter().map(|i| u128::from(i.weight)).sum();
        let beyond = |i: usize| counts[i].saturating_sub(u64::from(items[i].base));
        let placed: u128 = (0..items.len())
            .filter(|&i| items[i].weight > 0)
            .map(|i| u128::from(beyond(i)))
            .sum();
        let mut best: Option<(usize, i128)> = None;
        for (i, item) in items.iter().enumerate() {
            if item.weight == 0 {
                continue;
            }
            let deficit = ((placed + 1) * u128::from(item.weight)) as i128
                - (u128::from(beyond(i)) * total_weight) as i128;
            if best.is_none_or(|(_, d)| deficit > d) {
                best = Some((i, deficit));
            }
        }
        let best = best.map(|(i, _)| i);
        if let Some(i) = best {
            counts[i] += 1;
            out[i] += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(name: &str, weight: u32, base: u32) -> CapacityProviderStrategyItem {
        CapacityProviderStrategyItem {
            capacity_provider: name.into(),
            weight,
            base,
        }
    }

    #[test]
    fn the_issue_example_gives_4_and_6() {
        let s = [item(FARGATE, 1, 2), item(FARGATE_SPOT, 3, 0)];
        assert_eq!(split(&s, &[0, 0], 10), vec![4, 6]);
        // Launched in batches, the same totals.
        let a = split(&s, &[0, 0], 3);
        let b = split(&s, &a, 7);
        assert_eq!(vec![a[0] + b[0], a[1] + b[1]], vec![4, 6]);
    }

    #[test]
    fn weight_zero_gets_only_its_base() {
        let s = [item("A", 0, 3), item("B", 1, 0)];
        assert_eq!(split(&s, &[0, 0], 10), vec![3, 7]);
        assert_eq!(split(&s, &[0, 0], 2), vec![2, 0]);
    }

    #[test]
    fn ecs_errors() {
        let assoc = vec![
            FARGATE.to_owned(),
            FARGATE_SPOT.to_owned(),
            "pool".to_owned(),
        ];
        let msg = |s: &[CapacityProviderStrategyItem]| {
            validate_strategy(s, &assoc).unwrap_err().to_string()
        };
        assert!(msg(&[item(FARGATE, 1, 0), item("pool", 1, 0)]).contains("cannot contain a mix"));
        assert!(
            msg(&[item(FARGATE, 1, 1), item(FARGATE_SPOT, 1, 1)])
                .contains("more than one capacity provider with a base")
        );
        // Every weight 0: accepted as a cluster default, refused when a launch uses it.
        let zero = [item(FARGATE, 0, 0), item(FARGATE_SPOT, 0, 0)];
        assert!(validate_strategy(&zero, &assoc).is_ok());
        assert!(
            require_weight(&zero, true)
                .unwrap_err()
                .to_string()
                .contains("defined in the default capacity provider strategy")
        );
        assert!(
            require_weight(&zero, false)
                .unwrap_err()
                .to_string()
                .starts_with(
                    "There are no capacity providers with a weight value greater than zero"
                )
        );
        assert!(require_weight(&[item(FARGATE, 0, 2), item(FARGATE_SPOT, 1, 0)], false).is_ok());
        let seven: Vec<_> = (0..7).map(|i| item(&format!("p{i}"), 1, 0)).collect();
        assert!(msg(&seven).contains("more than 6"));
        assert!(msg(&[item("other", 1, 0)]).contains("not associated with the cluster"));
        assert!(
            validate_strategy(&[item(FARGATE, 1, 2), item(FARGATE_SPOT, 3, 0)], &assoc).is_ok()
        );
    }

    /// The reference model: the base first, then the tasks beyond the bases apportioned by
    /// weight, each item getting the floor of its exact share and the rest going one by one to
    /// the items with the largest remainders (Hamilton's method), earlier items winning ties.
    fn reference(items: &[CapacityProviderStrategyItem], n: u64) -> Vec<u64> {
        let mut out = vec![0u64; items.len()];
        let mut left = n;
        if let Some(b) = items.iter().position(|i| i.base > 0) {
            let take = left.min(u64::from(items[b].base));
            out[b] += take;
            left -= take;
        }
        let total: u64 = items.iter().map(|i| u64::from(i.weight)).sum();
        if total == 0 {
            return out;
        }
        let mut rem: Vec<(u64, usize)> = Vec::new();
        let mut given = 0;
        for (i, it) in items.iter().enumerate() {
            let exact = left * u64::from(it.weight);
            out[i] += exact / total;
            given += exact / total;
            rem.push((exact % total, i));
        }
        rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in rem.into_iter().take((left - given) as usize) {
            out[i] += 1;
        }
        out
    }

    fn strategy() -> impl Strategy<Value = Vec<CapacityProviderStrategyItem>> {
        (1usize..=6, any::<u64>()).prop_flat_map(|(len, seed)| {
            (
                proptest::collection::vec(0u32..=5, len),
                proptest::option::of((0..len, 0u32..=6)),
                Just(seed),
            )
                .prop_map(|(weights, base, _)| {
                    let mut items: Vec<_> = weights
                        .iter()
                        .enumerate()
                        .map(|(i, w)| item(&format!("p{i}"), *w, 0))
                        .collect();
                    if let Some((i, b)) = base {
                        items[i].base = b;
                    }
                    if items.iter().all(|i| i.weight == 0) {
                        items[0].weight = 1;
                    }
                    items
                })
        })
    }

    proptest! {
        /// At every total, the split stays within one task of the reference model's for each
        /// provider, always places every task, and gives the base first.
        #[test]
        fn split_tracks_the_reference_model(items in strategy(), n in 0u64..200) {
            let got = split(&items, &vec![0; items.len()], n);
            let want = reference(&items, n);
            prop_assert_eq!(got.iter().sum::<u64>(), n);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(g.abs_diff(*w) <= 1, "got {:?}, reference {:?}", got, want);
            }
            if let Some(b) = items.iter().position(|i| i.base > 0) {
                prop_assert!(got[b] >= n.min(u64::from(items[b].base)));
            }
            for (i, it) in items.iter().enumerate() {
                if it.weight == 0 {
                    prop_assert!(got[i] <= u64::from(it.base));
                }
            }
        }

        /// Launching in two batches (what a service does as its tasks start) reaches the same
        /// totals as launching all at once.
        #[test]
        fn batches_reach_the_same_totals(items in strategy(), a in 0u64..50, b in 0u64..50) {
            let first = split(&items, &vec![0; items.len()], a);
            let second = split(&items, &first, b);
            let all = split(&items, &vec![0; items.len()], a + b);
            let sum: Vec<u64> = first.iter().zip(&second).map(|(x, y)| x + y).collect();
            prop_assert_eq!(sum, all);
        }
    }
}
