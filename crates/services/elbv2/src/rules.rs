//! CreateRule, DescribeRules, ModifyRule, DeleteRule, SetRulePriorities.
//!
//! Rules live inside their listener, inside the load balancer record, so priority uniqueness is
//! checked by one compare-and-swap. Each listener also has a default rule (priority `default`)
//! whose actions are the listener's default actions.

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::lb::{Listener, LoadBalancer, Rule};
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, Versioned, encode};

use crate::error::Elbv2Error;
use crate::keys::{self, ElbArn};
use crate::listeners::listener_by_arn;
use crate::wire::{self, Params};
use crate::{Elbv2Service, check_action_targets, commit_with_retry};

/// A rule as listed: a real rule, or a listener's default rule.
#[derive(Debug, Clone)]
enum Listed {
    Rule(Rule),
    Default { arn: String, listener: Listener },
}

fn default_rule_arn(l: &Listener) -> String {
    l.arn.replacen(":listener/", ":listener-rule/", 1) + "/" + &l.default_rule_id
}

fn write(w: &mut XmlWriter, r: &Listed) {
    match r {
        Listed::Rule(r) => wire::write_rule(w, r),
        Listed::Default { arn, listener } => wire::write_default_rule(w, arn, listener),
    }
}

fn result(rules: &[Listed], next: Option<String>) -> String {
    let mut w = XmlWriter::new();
    wire::write_list(&mut w, "Rules", rules, write);
    if let Some(n) = next {
        w.leaf("NextMarker", &n);
    }
    w.finish()
}

/// Where a rule ARN points: the load balancer record, the listener index, and the rule index
/// (`None` for the default rule).
async fn rule_by_arn(
    store: &dyn gantry_store::Store,
    region: &str,
    arn: &str,
) -> Result<(Versioned<LoadBalancer>, usize, Option<usize>), Elbv2Error> {
    let not_found = || Elbv2Error::RuleNotFound(arn.to_owned());
    let Some(ElbArn::Rule {
        lb_name,
        lb_id,
        listener_id,
        id,
    }) = keys::parse_arn(arn, region)
    else {
        return Err(not_found());
    };
    let Some(lb) = store
        .get_typed::<LoadBalancer>(&keys::load_balancer(region, &lb_name))
        .await?
    else {
        return Err(not_found());
    };
    if lb.value.id != lb_id {
        return Err(not_found());
    }
    let li = lb
        .value
        .listeners
        .iter()
        .position(|l| l.id == listener_id)
        .ok_or_else(not_found)?;
    let l = &lb.value.listeners[li];
    if l.default_rule_id == id {
        return Ok((lb, li, None));
    }
    let ri = l
        .rules
        .iter()
        .position(|r| r.id == id)
        .ok_or_else(not_found)?;
    Ok((lb, li, Some(ri)))
}

fn parse_priority(v: &str) -> Result<u32, Elbv2Error> {
    v.parse::<u32>()
        .ok()
        .filter(|p| (1..=50000).contains(p))
        .ok_or_else(|| {
            Elbv2Error::validation(format!("Priority '{v}' must be between 1 and 50000"))
        })
}

fn save(cur_revision: u64, region: &str, lb: &LoadBalancer) -> Result<Txn, Elbv2Error> {
    let key = keys::load_balancer(region, &lb.name);
    Ok(Txn::new()
        .require_revision(&key, cur_revision)
        .put(&key, encode(&key, lb)?))
}

pub(crate) async fn create(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let listener_arn = p.req("ListenerArn")?;
    let priority = parse_priority(p.req("Priority")?)?;
    let conditions = wire::parse_conditions(p)?;
    if conditions.is_empty() {
        return Err(Elbv2Error::validation(
            "A rule needs at least one condition",
        ));
    }
    let actions = wire::parse_actions(p, "Actions")?;
    let tags = wire::parse_tags(p, "Tags")?;
    let store = svc.store.as_ref();
    let rule = commit_with_retry(store, || async {
        let (cur, li) = listener_by_arn(store, &ctx.region, listener_arn).await?;
        let mut lb = cur.value.clone();
        check_action_targets(store, &ctx.region, lb.lb_type, &actions).await?;
        if lb.lb_type == gantry_domain::lb::LoadBalancerType::Network {
            return Err(Elbv2Error::InvalidConfiguration(
                "Network load balancer listeners do not have rules".into(),
            ));
        }
        if lb.listeners[li]
            .rules
            .iter()
            .any(|r| r.priority == priority)
        {
            return Err(Elbv2Error::PriorityInUse(priority));
        }
        let rules: usize = lb.listeners.iter().map(|l| l.rules.len()).sum();
        if rules >= crate::limits::RULES_PER_APPLICATION_LOAD_BALANCER {
            return Err(Elbv2Error::TooManyRules(format!(
                "A load balancer can have at most {} rules besides its listeners' default rules",
                crate::limits::RULES_PER_APPLICATION_LOAD_BALANCER
            )));
        }
        let l = &mut lb.listeners[li];
        let id = keys::new_id();
        let rule = Rule {
            arn: l.arn.replacen(":listener/", ":listener-rule/", 1) + "/" + &id,
            id,
            priority,
            conditions: conditions.clone(),
            actions: actions.clone(),
            tags: tags.clone(),
        };
        l.rules.push(rule.clone());
        Ok((save(cur.revision, &ctx.region, &lb)?, rule))
    })
    .await?;
    Ok(result(&[Listed::Rule(rule)], None))
}

fn sort_key(r: &Listed) -> String {
    match r {
        Listed::Rule(r) => format!("{:05}", r.priority),
        Listed::Default { .. } => "99999".into(),
    }
}

pub(crate) async fn describe(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let store = svc.store.as_ref();
    let arns = p.list("RuleArns");
    let listener_arn = p.get("ListenerArn");
    let mut items: Vec<(String, Listed)> = Vec::new();
    match (listener_arn, arns.is_empty()) {
        (Some(_), false) => {
            return Err(Elbv2Error::validation(
                "Rule ARNs and a listener ARN cannot be specified at the same time",
            ));
        }
        (None, true) => {
            return Err(Elbv2Error::validation(
                "You must specify either listener ARN or rule ARNs",
            ));
        }
        (Some(arn), true) => {
            let (lb, li) = listener_by_arn(store, &ctx.region, arn).await?;
            let l = &lb.value.listeners[li];
            for r in &l.rules {
                items.push((String::new(), Listed::Rule(r.clone())));
            }
            items.push((
                String::new(),
                Listed::Default {
                    arn: default_rule_arn(l),
                    listener: l.clone(),
                },
            ));
        }
        (None, false) => {
            for arn in &arns {
                let (lb, li, ri) = rule_by_arn(store, &ctx.region, arn).await?;
                let l = &lb.value.listeners[li];
                items.push((
                    String::new(),
                    match ri {
                        Some(ri) => Listed::Rule(l.rules[ri].clone()),
                        None => Listed::Default {
                            arn: default_rule_arn(l),
                            listener: l.clone(),
                        },
                    },
                ));
            }
        }
    }
    for (k, r) in &mut items {
        *k = sort_key(r)
            + match r {
                Listed::Rule(r) => &r.arn,
                Listed::Default { arn, .. } => arn,
            };
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = wire::paginate(items, p)?;
    Ok(result(&page, next))
}

pub(crate) async fn modify(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("RuleArn")?;
    let conditions = if p.has("Conditions") {
        Some(wire::parse_conditions(p)?)
    } else {
        None
    };
    let actions = if p.has("Actions") {
        Some(wire::parse_actions(p, "Actions")?)
    } else {
        None
    };
    let store = svc.store.as_ref();
    let listed = commit_with_retry(store, || async {
        let (cur, li, ri) = rule_by_arn(store, &ctx.region, arn).await?;
        let mut lb = cur.value.clone();
        if let Some(a) = &actions {
            check_action_targets(store, &ctx.region, lb.lb_type, a).await?;
        }
        let listed = match ri {
            None => {
                if conditions.as_ref().is_some_and(|c| !c.is_empty()) {
                    return Err(Elbv2Error::OperationNotPermitted(
                        "The conditions of a default rule cannot be modified".into(),
                    ));
                }
                let l = &mut lb.listeners[li];
                if let Some(a) = &actions {
                    l.default_actions = a.clone();
                }
                Listed::Default {
                    arn: arn.to_owned(),
                    listener: l.clone(),
                }
            }
            Some(ri) => {
                let r = &mut lb.listeners[li].rules[ri];
                if let Some(c) = &conditions {
                    if c.is_empty() {
                        return Err(Elbv2Error::validation(
                            "A rule needs at least one condition",
                        ));
                    }
                    r.conditions = c.clone();
                }
                if let Some(a) = &actions {
                    r.actions = a.clone();
                }
                Listed::Rule(r.clone())
            }
        };
        Ok((save(cur.revision, &ctx.region, &lb)?, listed))
    })
    .await?;
    Ok(result(&[listed], None))
}

pub(crate) async fn delete(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("RuleArn")?;
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let (cur, li, ri) = rule_by_arn(store, &ctx.region, arn).await?;
        let Some(ri) = ri else {
            return Err(Elbv2Error::OperationNotPermitted(
                "The default rule of a listener cannot be deleted".into(),
            ));
        };
        let mut lb = cur.value.clone();
        lb.listeners[li].rules.remove(ri);
        Ok((save(cur.revision, &ctx.region, &lb)?, ()))
    })
    .await?;
    Ok(String::new())
}

pub(crate) async fn set_priorities(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let mut changes: Vec<(String, u32)> = Vec::new();
    for pair in p.structs("RulePriorities") {
        changes.push((
            pair.req("RuleArn")?.to_owned(),
            parse_priority(pair.req("Priority")?)?,
        ));
    }
    if changes.is_empty() {
        return Err(Elbv2Error::validation("RulePriorities must not be empty"));
    }
    let store = svc.store.as_ref();
    let rules = commit_with_retry(store, || async {
        let mut lb: Option<(Versioned<LoadBalancer>, LoadBalancer)> = None;
        let mut touched = Vec::new();
        for (arn, priority) in &changes {
            let (cur, li, ri) = rule_by_arn(store, &ctx.region, arn).await?;
            let Some(ri) = ri else {
                return Err(Elbv2Error::OperationNotPermitted(
                    "The priority of a default rule cannot be changed".into(),
                ));
            };
            let (_, work) = match &mut lb {
                Some((first, work)) => {
                    if first.value.arn != cur.value.arn {
                        return Err(Elbv2Error::validation(
                            "All rules must belong to listeners of one load balancer",
                        ));
                    }
                    (first, work)
                }
                None => {
                    let work = cur.value.clone();
                    lb = Some((cur, work));
                    let Some((first, work)) = &mut lb else {
                        return Err(Elbv2Error::RuleNotFound(arn.clone()));
                    };
                    (first, work)
                }
            };
            work.listeners[li].rules[ri].priority = *priority;
            touched.push((li, ri));
        }
        let Some((cur, work)) = lb else {
            return Err(Elbv2Error::validation("RulePriorities must not be empty"));
        };
        for l in &work.listeners {
            let mut seen = std::collections::HashSet::new();
            for r in &l.rules {
                if !seen.insert(r.priority) {
                    return Err(Elbv2Error::PriorityInUse(r.priority));
                }
            }
        }
        let out: Vec<Listed> = touched
            .iter()
            .map(|(li, ri)| Listed::Rule(work.listeners[*li].rules[*ri].clone()))
            .collect();
        Ok((save(cur.revision, &ctx.region, &work)?, out))
    })
    .await?;
    Ok(result(&rules, None))
}

/// A listener rule's forward action, as ECS's traffic-shifting deployments read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleForward {
    /// The load balancer the rule's listener belongs to.
    pub load_balancer_arn: String,
    /// The target groups of the rule's forward action with their weights (empty: the rule does
    /// not forward).
    pub target_groups: Vec<(String, u32)>,
}

fn forward_of(actions: &[gantry_domain::lb::Action]) -> Vec<(String, u32)> {
    actions
        .iter()
        .find_map(|a| match a {
            gantry_domain::lb::Action::Forward { target_groups, .. } => Some(
                target_groups
                    .iter()
                    .map(|g| (g.target_group_arn.clone(), g.weight))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// The forward action of the rule `arn` (a listener's default rule included); `None` when no
/// such rule exists.
pub async fn rule_forward(
    store: &dyn gantry_store::Store,
    region: &str,
    arn: &str,
) -> Result<Option<RuleForward>, Elbv2Error> {
    let (lb, li, ri) = match rule_by_arn(store, region, arn).await {
        Ok(found) => found,
        Err(Elbv2Error::RuleNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let l = &lb.value.listeners[li];
    let actions = match ri {
        None => &l.default_actions,
        Some(ri) => &l.rules[ri].actions,
    };
    Ok(Some(RuleForward {
        load_balancer_arn: lb.value.arn.clone(),
        target_groups: forward_of(actions),
    }))
}

/// Rewrites the weights of the rule's forward action to `weights` (the target groups listed
/// there, in that order), as ModifyRule would; does nothing when they already are. Returns
/// whether it wrote.
pub async fn set_rule_weights(
    store: &dyn gantry_store::Store,
    region: &str,
    arn: &str,
    weights: &[(String, u32)],
) -> Result<bool, Elbv2Error> {
    use gantry_domain::lb::{Action, WeightedTargetGroup};
    commit_with_retry(store, || async {
        let (cur, li, ri) = rule_by_arn(store, region, arn).await?;
        let mut lb = cur.value.clone();
        let l = &mut lb.listeners[li];
        let actions = match ri {
            None => &mut l.default_actions,
            Some(ri) => &mut l.rules[ri].actions,
        };
        if forward_of(actions) == weights {
            return Ok((Txn::new(), false));
        }
        let groups: Vec<WeightedTargetGroup> = weights
            .iter()
            .map(|(tg, w)| WeightedTargetGroup {
                target_group_arn: tg.clone(),
                weight: *w,
            })
            .collect();
        match actions
            .iter_mut()
            .find(|a| matches!(a, Action::Forward { .. }))
        {
            Some(Action::Forward {
                target_group_arn,
                target_groups,
                ..
            }) => {
                *target_group_arn = None;
                *target_groups = groups;
            }
            _ => {
                return Err(Elbv2Error::OperationNotPermitted(format!(
                    "The rule '{arn}' has no forward action"
                )));
            }
        }
        Ok((save(cur.revision, region, &lb)?, true))
    })
    .await
}
