//! Task placement for RunTask/StartTask: feasibility (status, agent, CPU, memory, host ports,
//! `distinctInstance`) then the strategy chain (binpack, spread, random).
//!
//! Placements of one call see each other: every pick reserves on its candidate at once.

use gantry_domain::Arn;
use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
use gantry_domain::task::{Reservation, apply_reservation};
use serde_json::Value;

use super::EcsError;
use crate::context::RequestContext;

/// An instance being considered, with what this call already put on it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub instance: ContainerInstance,
    /// Groups of the tasks already on the instance (one entry per task).
    pub groups: Vec<String>,
}

impl Candidate {
    pub fn new(instance: ContainerInstance, groups: Vec<String>) -> Self {
        Self { instance, groups }
    }

    fn registered(&self, name: &str) -> i64 {
        self.instance
            .registered_resources
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.integer_value)
            .unwrap_or(0)
    }

    fn remaining_cpu(&self) -> i64 {
        self.registered("CPU") - self.instance.reserved_cpu
    }

    fn remaining_memory(&self) -> i64 {
        self.registered("MEMORY") - self.instance.reserved_memory
    }

    fn ports_in_use(&self, name: &str) -> Vec<String> {
        let mut ports: Vec<String> = self
            .instance
            .registered_resources
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.string_set_value.clone())
            .unwrap_or_default();
        if name == "PORTS" {
            ports.extend(self.instance.reserved_ports.iter().cloned());
        } else {
            ports.extend(self.instance.reserved_udp_ports.iter().cloned());
        }
        ports
    }
}

/// Why no instance took a task, with the instance that came closest.
#[derive(Debug, Clone)]
pub struct PlacementFailure {
    pub arn: String,
    pub reason: String,
}

/// Feasibility checks in ECS's order; a later failure means a closer match.
fn fit(
    c: &Candidate,
    need: &Reservation,
    group: &str,
    distinct: bool,
) -> Result<(), (u8, &'static str)> {
    if !matches!(c.instance.status, ContainerInstanceStatus::Active) {
        return Err((0, "INACTIVE"));
    }
    if !c.instance.agent_connected {
        return Err((1, "AGENT"));
    }
    if distinct && c.groups.iter().any(|g| g == group) {
        return Err((2, "DistinctInstance placement constraint unsatisfied."));
    }
    if need.cpu > c.remaining_cpu() {
        return Err((3, "RESOURCE:CPU"));
    }
    if need.memory > c.remaining_memory() {
        return Err((4, "RESOURCE:MEMORY"));
    }
    let tcp = c.ports_in_use("PORTS");
    let udp = c.ports_in_use("PORTS_UDP");
    if need.ports.iter().any(|p| tcp.contains(p)) || need.udp_ports.iter().any(|p| udp.contains(p))
    {
        return Err((5, "RESOURCE:PORTS"));
    }
    Ok(())
}

fn reserve(c: &mut Candidate, need: &Reservation, group: &str) {
    apply_reservation(&mut c.instance, need, 1);
    c.groups.push(group.to_owned());
}

fn arn_of(c: &Candidate, ctx: &RequestContext) -> String {
    Arn::container_instance(
        &ctx.region,
        &ctx.account_id,
        &c.instance.cluster,
        &c.instance.id,
    )
    .to_string()
}

/// Checks that `candidates[idx]` can take the task (StartTask) and reserves on it.
pub fn check_fit(
    candidates: &mut [Candidate],
    idx: usize,
    need: &Reservation,
    group: &str,
    ctx: &RequestContext,
) -> Result<usize, PlacementFailure> {
    match fit(&candidates[idx], need, group, false) {
        Ok(()) => {
            reserve(&mut candidates[idx], need, group);
            Ok(idx)
        }
        Err((_, reason)) => Err(PlacementFailure {
            arn: arn_of(&candidates[idx], ctx),
            reason: reason.into(),
        }),
    }
}

/// Validates `placementConstraints` (at most 10; `distinctInstance` or `memberOf` with an
/// expression).
pub fn validate_constraints(constraints: &[Value]) -> Result<(), EcsError> {
    if constraints.len() > 10 {
        return Err(EcsError::invalid(
            "At most 10 placement constraints are allowed.",
        ));
    }
    for c in constraints {
        match c.get("type").and_then(Value::as_str) {
            Some("distinctInstance") => {}
            Some("memberOf") => {
                let expr = c.get("expression").and_then(Value::as_str).unwrap_or("");
                if expr.is_empty() || expr.len() > 2000 {
                    return Err(EcsError::invalid(
                        "A memberOf placement constraint needs an expression of 1 to 2000 characters.",
                    ));
                }
            }
            other => {
                return Err(EcsError::invalid(format!(
                    "Invalid placement constraint type {:?}. Valid values: distinctInstance, memberOf.",
                    other.unwrap_or("")
                )));
            }
        }
    }
    Ok(())
}

/// Validates `placementStrategy` (at most 5; `random`, `spread` with a field, `binpack` with
/// `cpu` or `memory`).
pub fn validate_strategies(strategies: &[Value]) -> Result<(), EcsError> {
    if strategies.len() > 5 {
        return Err(EcsError::invalid(
            "At most 5 placement strategies are allowed.",
        ));
    }
    for s in strategies {
        let field = s.get("field").and_then(Value::as_str);
        match s.get("type").and_then(Value::as_str) {
            Some("random") => {}
            Some("spread") if field.is_some_and(|f| !f.is_empty()) => {}
            Some("binpack") if matches!(field, Some("cpu" | "memory" | "CPU" | "MEMORY")) => {}
            Some(t @ ("spread" | "binpack")) => {
                return Err(EcsError::invalid(format!(
                    "Invalid field {:?} for placement strategy {t}.",
                    field.unwrap_or("")
                )));
            }
            other => {
                return Err(EcsError::invalid(format!(
                    "Invalid placement strategy type {:?}. Valid values: random, spread, binpack.",
                    other.unwrap_or("")
                )));
            }
        }
    }
    Ok(())
}

/// The sort key of a candidate under one strategy: lower is better.
fn score(c: &Candidate, all: &[Candidate], strategy: &Value, tiebreak: u64) -> i64 {
    let field = strategy.get("field").and_then(Value::as_str).unwrap_or("");
    match strategy.get("type").and_then(Value::as_str) {
        Some("binpack") if field.eq_ignore_ascii_case("cpu") => c.remaining_cpu(),
        Some("binpack") => c.remaining_memory(),
        Some("spread") if field == "instanceId" || field == "host" => c.groups.len() as i64,
        Some("spread") => {
            let attr = field.strip_prefix("attribute:").unwrap_or(field);
            let mine = c.instance.attribute(attr);
            all.iter()
                .filter(|o| o.instance.attribute(attr) == mine)
                .map(|o| o.groups.len() as i64)
                .sum()
        }
        _ => (tiebreak % 1_000_003) as i64,
    }
}

/// Places `count` tasks needing `need` each. Returns one result per task: the candidate index,
/// or why none fits.
pub fn place(
    candidates: &mut [Candidate],
    need: &Reservation,
    count: usize,
    group: &str,
    constraints: &[Value],
    strategies: &[Value],
    ctx: &RequestContext,
) -> Result<Vec<Result<usize, PlacementFailure>>, EcsError> {
    if constraints
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some("memberOf"))
    {
        return Err(EcsError::invalid(
            "memberOf placement constraints (Cluster Query Language) are not supported by this endpoint yet.",
        ));
    }
    let distinct = constraints
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some("distinctInstance"));
    // Without a strategy, spread over instances so tasks do not pile up on one host.
    let default_strategy = [serde_json::json!({"type": "spread", "field": "instanceId"})];
    let strategies = if strategies.is_empty() {
        &default_strategy[..]
    } else {
        strategies
    };
    let mut out = Vec::with_capacity(count);
    let mut seed = ctx.now ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..count {
        let mut best: Option<(Vec<i64>, usize)> = None;
        let mut closest: Option<(u8, &'static str, usize)> = None;
        for i in 0..candidates.len() {
            match fit(&candidates[i], need, group, distinct) {
                Ok(()) => {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let key: Vec<i64> = strategies
                        .iter()
                        .map(|s| score(&candidates[i], candidates, s, seed >> 11))
                        .collect();
                    if best.as_ref().is_none_or(|(k, _)| key < *k) {
                        best = Some((key, i));
                    }
                }
                Err((rank, reason)) => {
                    if closest.is_none_or(|(r, _, _)| rank > r) {
                        closest = Some((rank, reason, i));
                    }
                }
            }
        }
        match best {
            Some((_, i)) => {
                reserve(&mut candidates[i], need, group);
                out.push(Ok(i));
            }
            None => {
                let (arn, reason) = match closest {
                    Some((_, reason, i)) => (arn_of(&candidates[i], ctx), reason.to_owned()),
                    None => (String::new(), "RESOURCE:CPU".to_owned()),
                };
                out.push(Err(PlacementFailure { arn, reason }));
            }
        }
    }
    Ok(out)
}
