//! Services behind load balancers: a service's `loadBalancers` (targetGroupArn, containerName,
//! containerPort) register each RUNNING task's host address and dynamic host port; a task leaves
//! in two phases (deregistered and DEACTIVATING for the target group's deregistration delay, then
//! stopped), so in-flight requests finish; target health feeds the service's deployment health.

use std::collections::{HashMap, HashSet};

use gantry_controller::service::Health;
use gantry_domain::container_instance::ContainerInstance;
use gantry_domain::lb::TargetHealthState;
use gantry_domain::service::Service;
use gantry_domain::task::{Task, TaskStatus};

use crate::{EcsError, EcsService, tasks};
use gantry_front::RequestContext;

/// One `loadBalancers` entry of a service.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub target_group_arn: String,
    /// `advancedConfiguration.alternateTargetGroupArn`.
    pub alternate: Option<String>,
    pub container_name: String,
    pub container_port: i64,
}

pub(crate) fn bindings(s: &Service) -> Vec<Binding> {
    let mut entries: Vec<&serde_json::Value> = s.load_balancers.iter().collect();
    // EXTERNAL services: the load balancers of their task sets, each target group once.
    for ts in &s.task_sets {
        for lb in &ts.load_balancers {
            if !entries
                .iter()
                .any(|e| e.get("targetGroupArn") == lb.get("targetGroupArn"))
            {
                entries.push(lb);
            }
        }
    }
    entries
        .into_iter()
        .filter_map(|lb| {
            Some(Binding {
                target_group_arn: lb.get("targetGroupArn")?.as_str()?.to_owned(),
                alternate: lb
                    .pointer("/advancedConfiguration/alternateTargetGroupArn")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                container_name: lb.get("containerName")?.as_str()?.to_owned(),
                container_port: lb.get("containerPort")?.as_i64()?,
            })
        })
        .collect()
}

/// A target to register: an instance id (or IP), its port and the address proxies connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub id: String,
    pub port: u16,
    pub address: String,
    pub availability_zone: Option<String>,
}

/// The load balancer side, as the service runner needs it (implemented over the ELBv2 API's
/// store by the composition root, so this crate does not depend on it).
#[async_trait::async_trait]
pub trait TargetGroups: Send + Sync {
    /// Registered targets of a target group with their health state.
    async fn targets(
        &self,
        region: &str,
        tg_arn: &str,
        now: u64,
    ) -> Result<Vec<(String, u16, TargetHealthState)>, String>;
    async fn register(
        &self,
        region: &str,
        tg_arn: &str,
        targets: &[TargetSpec],
        now: u64,
    ) -> Result<(), String>;
    async fn deregister(
        &self,
        region: &str,
        tg_arn: &str,
        targets: &[(String, u16)],
        now: u64,
    ) -> Result<(), String>;
    /// The target group's `deregistration_delay.timeout_seconds`, in ms.
    async fn deregistration_delay_ms(&self, region: &str, tg_arn: &str) -> Option<u64>;
    /// The target group's `TargetType` (`instance`, `ip`), if it exists.
    async fn target_type(&self, region: &str, tg_arn: &str) -> Option<String>;
    /// The load balancers whose listeners or rules forward to the target group.
    async fn target_group_load_balancers(
        &self,
        region: &str,
        tg_arn: &str,
    ) -> Result<Vec<String>, String>;
    /// A listener rule's load balancer and forward action (target groups with weights);
    /// `None` when the rule does not exist.
    async fn rule_forward(
        &self,
        region: &str,
        rule_arn: &str,
    ) -> Result<Option<(String, Vec<(String, u32)>)>, String>;
    /// Rewrites the weights of a listener rule's forward action; returns whether it changed.
    async fn set_rule_weights(
        &self,
        region: &str,
        rule_arn: &str,
        weights: &[(String, u32)],
    ) -> Result<bool, String>;
}

/// Sets the listener rules of a traffic-shifting service to the weights its record implies
/// (`gantry_controller::service::shift::weights`); returns the rules it rewrote.
pub(crate) async fn apply_weights(
    groups: &dyn TargetGroups,
    region: &str,
    s: &Service,
) -> Result<Vec<String>, EcsError> {
    let mut changed = Vec::new();
    for (rule, weights) in gantry_controller::service::shift::weights(s) {
        if groups
            .set_rule_weights(region, &rule, &weights)
            .await
            .map_err(lb_err)?
        {
            changed.push(rule);
        }
    }
    Ok(changed)
}

/// The target group a task of `s` belongs in for binding `b`: for a service with an alternate
/// group, green tasks in the green group, blue ones in the blue group, and otherwise only the
/// tasks of every deployment but a failed one, in the production group.
fn group_of<'a>(s: &'a Service, b: &'a Binding, t: &Task) -> Option<&'a str> {
    if s.uses_task_sets() {
        // A task of a task set that is not draining, in that task set's groups.
        let ts = s
            .task_sets
            .iter()
            .find(|ts| Some(ts.id.as_str()) == t.deployment_id.as_deref())?;
        let mine = ts.status != "DRAINING"
            && ts.load_balancers.iter().any(|lb| {
                lb.get("targetGroupArn").and_then(serde_json::Value::as_str)
                    == Some(b.target_group_arn.as_str())
            });
        return mine.then_some(b.target_group_arn.as_str());
    }
    let Some(alt) = &b.alternate else {
        return Some(&b.target_group_arn);
    };
    let dep = t.deployment_id.as_deref();
    match &s.shift {
        Some(sh) if dep == Some(sh.deployment_id.as_str()) => Some(&sh.green_target_group),
        Some(sh) if dep == Some(sh.source_deployment_id.as_str()) => Some(&sh.blue_target_group),
        Some(_) => None,
        // Between shifts every deployment serves production but a failed (rolled back) one.
        None if s.deployments.iter().any(|d| {
            Some(d.id.as_str()) == dep
                && d.rollout_state == gantry_domain::service::RolloutState::Failed
        }) =>
        {
            None
        }
        None => Some(
            s.production_target_group
                .as_deref()
                .filter(|p| *p == alt.as_str())
                .unwrap_or(&b.target_group_arn),
        ),
    }
}

/// ECS's check of a service's target groups against its task definition's network mode:
/// awsvpc tasks register as `ip` targets, bridge and host tasks as `instance` targets.
pub(crate) async fn check_target_types(
    groups: &dyn TargetGroups,
    region: &str,
    load_balancers: &[serde_json::Value],
    mode: gantry_domain::task_definition::NetworkMode,
) -> Result<(), EcsError> {
    use gantry_domain::task_definition::NetworkMode;
    let wanted = if mode == NetworkMode::Awsvpc {
        "ip"
    } else {
        "instance"
    };
    let arns = load_balancers.iter().flat_map(|lb| {
        [
            lb.get("targetGroupArn"),
            lb.pointer("/advancedConfiguration/alternateTargetGroupArn"),
        ]
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
    });
    for arn in arns {
        match groups.target_type(region, arn).await {
            Some(t) if t != wanted => {
                return Err(EcsError::invalid(format!(
                    "The provided target group {arn} has target type {t}, which is incompatible with the {} network mode specified in the task definition.",
                    mode.as_str()
                )));
            }
            Some(_) => {}
            None => {
                return Err(EcsError::invalid(format!(
                    "Unable to assume role and validate the specified targetGroupArn. Please verify that the ECS service role being passed has the proper permissions. Target group {arn} not found."
                )));
            }
        }
    }
    Ok(())
}

fn lb_err(e: String) -> EcsError {
    EcsError::InvalidParameter(e)
}

/// The target a task offers for one binding: (instance id, host port, address); for awsvpc
/// tasks (`ip` target groups) the task's own address and the container port.
fn target_of(
    t: &Task,
    b: &Binding,
    instances: &HashMap<&str, &ContainerInstance>,
) -> Option<(String, u16, String)> {
    let c = t.containers.iter().find(|c| c.name == b.container_name)?;
    if let Some(net) = &t.network {
        let port = u16::try_from(b.container_port).ok()?;
        return Some((net.private_ipv4.clone(), port, net.private_ipv4.clone()));
    }
    let port = c
        .network_bindings
        .iter()
        .find(|nb| nb.container_port == Some(b.container_port))
        .and_then(|nb| nb.host_port)?;
    let ci = instances.get(t.container_instance_id.as_deref()?)?;
    let address = ci
        .attribute("gantry.host-address")
        .unwrap_or("127.0.0.1")
        .to_owned();
    Some((
        ci.ec2_instance_id.clone(),
        u16::try_from(port).ok()?,
        address,
    ))
}

/// What the load balancers say about a service's tasks.
#[derive(Debug, Default)]
pub(crate) struct LbState {
    /// Per task id: the worst target state across its bindings.
    pub health: HashMap<String, TargetHealthState>,
    /// Per task id: the target group of an unhealthy target.
    pub unhealthy_in: HashMap<String, String>,
}

fn rank(s: TargetHealthState) -> u8 {
    match s {
        TargetHealthState::Healthy => 0,
        TargetHealthState::Initial => 1,
        TargetHealthState::Draining | TargetHealthState::Unused => 2,
        TargetHealthState::Unavailable => 3,
        TargetHealthState::Unhealthy | TargetHealthState::UnhealthyDraining => 4,
    }
}

/// Registers RUNNING tasks, deregisters targets of tasks that are gone or leaving, finishes
/// the two-phase stop of DEACTIVATING tasks whose delay is over, and reads target health.
/// Returns the state and the events to write.
pub(crate) async fn sync(
    svc: &EcsService,
    groups: &dyn TargetGroups,
    ctx: &RequestContext,
    cluster: &str,
    s: &Service,
    service_tasks: &[&Task],
    instances: &HashMap<&str, &ContainerInstance>,
) -> Result<(LbState, Vec<String>), EcsError> {
    let mut state = LbState::default();
    let mut events = Vec::new();
    let now = ctx.now;
    for (b, tg) in bindings(s).into_iter().flat_map(|b| {
        let mut tgs = vec![b.target_group_arn.clone()];
        tgs.extend(b.alternate.clone());
        tgs.into_iter().map(move |tg| (b.clone(), tg))
    }) {
        let registered = match groups.targets(&ctx.region, &tg, now).await {
            Ok(r) => r,
            // A target group deleted under the service (`terraform destroy` deletes it right
            // after the service): nothing to register in or drain from. Its leaving tasks must
            // still stop, in the second phase below (a deleted group has no delay).
            Err(_) if groups.target_type(&ctx.region, &tg).await.is_none() => continue,
            Err(e) => return Err(lb_err(e)),
        };
        let by_target: HashMap<(String, u16), TargetHealthState> = registered
            .iter()
            .map(|(id, port, st)| ((id.clone(), *port), *st))
            .collect();
        let mut wanted: HashSet<(String, u16)> = HashSet::new();
        let mut to_register = Vec::new();
        for t in service_tasks {
            if group_of(s, &b, t) != Some(tg.as_str()) {
                continue;
            }
            let Some((id, port, address)) = target_of(t, &b, instances) else {
                continue;
            };
            let serving =
                t.desired_status == TaskStatus::Running && t.last_status == TaskStatus::Running;
            if serving {
                wanted.insert((id.clone(), port));
                match by_target.get(&(id.clone(), port)) {
                    Some(TargetHealthState::Draining) | None => to_register.push(TargetSpec {
                        id: id.clone(),
                        port,
                        address,
                        availability_zone: t.availability_zone.clone(),
                    }),
                    Some(h) => {
                        let e = state.health.entry(t.id.clone()).or_insert(*h);
                        if rank(*h) > rank(*e) {
                            *e = *h;
                        }
                        if matches!(h, TargetHealthState::Unhealthy) {
                            state.unhealthy_in.insert(t.id.clone(), tg.clone());
                        }
                    }
                }
                if !by_target.contains_key(&(id, port)) {
                    state
                        .health
                        .insert(t.id.clone(), TargetHealthState::Initial);
                }
            }
        }
        if !to_register.is_empty() {
            groups
                .register(&ctx.region, &tg, &to_register, now)
                .await
                .map_err(lb_err)?;
            events.push(format!(
                "(service {}) registered {} targets in (target-group {})",
                s.name,
                to_register.len(),
                tg
            ));
        }
        let stale: Vec<(String, u16)> = registered
            .iter()
            .filter(|(id, port, st)| {
                *st != TargetHealthState::Draining && !wanted.contains(&(id.clone(), *port))
            })
            .map(|(id, port, _)| (id.clone(), *port))
            .collect();
        if !stale.is_empty() {
            groups
                .deregister(&ctx.region, &tg, &stale, now)
                .await
                .map_err(lb_err)?;
            events.push(format!(
                "(service {}) deregistered {} targets in (target-group {})",
                s.name,
                stale.len(),
                tg
            ));
        }
    }
    // Second phase of a stop: the delay is over, now stop the containers.
    for t in service_tasks {
        if t.last_status == TaskStatus::Deactivating && t.desired_status == TaskStatus::Running {
            let until = t.stopping_at.unwrap_or(0) + drain_delay_ms(groups, ctx, s).await;
            if until <= now {
                let reason = t
                    .stopped_reason
                    .clone()
                    .unwrap_or_else(|| "Task stopped by the service scheduler".into());
                tasks::request_stop(
                    svc,
                    ctx,
                    cluster,
                    &t.id,
                    gantry_domain::task::stop_code::SERVICE_SCHEDULER_INITIATED,
                    &reason,
                )
                .await?;
            }
        }
    }
    Ok((state, events))
}

/// The longest deregistration delay among the service's target groups, in ms.
async fn drain_delay_ms(groups: &dyn TargetGroups, ctx: &RequestContext, s: &Service) -> u64 {
    let mut max = 0;
    for b in bindings(s) {
        for tg in std::iter::once(&b.target_group_arn).chain(b.alternate.as_ref()) {
            if let Some(ms) = groups.deregistration_delay_ms(&ctx.region, tg).await {
                max = max.max(ms);
            }
        }
    }
    max
}

/// First phase of stopping a task that serves traffic: deregister its targets and mark it
/// DEACTIVATING; the containers are stopped once the deregistration delay is over.
pub(crate) async fn begin_stop(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    task_id: &str,
    reason: &str,
) -> Result<(), EcsError> {
    let now = ctx.now;
    let reason = reason.to_owned();
    tasks::transition(svc, ctx, cluster, task_id, move |t| {
        if t.last_status != TaskStatus::Running || t.desired_status != TaskStatus::Running {
            return Ok(());
        }
        t.last_status = TaskStatus::Deactivating;
        t.stopping_at = Some(now);
        t.stopped_reason = Some(reason.clone());
        Ok(())
    })
    .await?;
    Ok(())
}

/// Folds target health into a task's deployment health: healthy only when both the container
/// health and every target are healthy; an unhealthy target makes the task unhealthy.
pub(crate) fn combine(
    container: Health,
    target: Option<TargetHealthState>,
    leaving: bool,
) -> Health {
    if leaving {
        return Health::Unknown;
    }
    match target {
        None => container,
        Some(TargetHealthState::Healthy) => match container {
            Health::NoCheck | Health::Healthy => Health::Healthy,
            other => other,
        },
        Some(TargetHealthState::Unhealthy | TargetHealthState::UnhealthyDraining) => {
            Health::Unhealthy
        }
        Some(_) => match container {
            Health::Unhealthy => Health::Unhealthy,
            _ => Health::Unknown,
        },
    }
}

/// Whether a service has load balancers whose settings are usable.
pub(crate) fn has_load_balancers(s: &Service) -> bool {
    !bindings(s).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_health_gates_deployment_health() {
        use TargetHealthState::*;
        assert_eq!(
            combine(Health::NoCheck, Some(Healthy), false),
            Health::Healthy
        );
        assert_eq!(
            combine(Health::NoCheck, Some(Initial), false),
            Health::Unknown
        );
        assert_eq!(
            combine(Health::Healthy, Some(Unhealthy), false),
            Health::Unhealthy
        );
        assert_eq!(
            combine(Health::Unknown, Some(Healthy), false),
            Health::Unknown
        );
        assert_eq!(
            combine(Health::Healthy, Some(Healthy), true),
            Health::Unknown
        );
        assert_eq!(combine(Health::NoCheck, None, false), Health::NoCheck);
    }
}
