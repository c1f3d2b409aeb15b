//! CreateListener, DescribeListeners, ModifyListener, DeleteListener, DescribeListenerAttributes,
//! ModifyListenerAttributes.

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::lb::{Action, Listener, LoadBalancer, LoadBalancerType};
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, Versioned, encode};

use crate::attributes;
use crate::certificates::apply_tls_settings;
use crate::error::Elbv2Error;
use crate::keys::{self, ElbArn};
use crate::wire::{self, Params};
use crate::{
    Elbv2Service, check_action_targets, commit_with_retry, load_balancer_by_arn,
    target_group_by_arn,
};

/// The load balancer holding the listener an ARN names, and the listener's index in it.
pub(crate) async fn listener_by_arn(
    store: &dyn gantry_store::Store,
    region: &str,
    arn: &str,
) -> Result<(Versioned<LoadBalancer>, usize), Elbv2Error> {
    let not_found = || Elbv2Error::ListenerNotFound(arn.to_owned());
    let Some(ElbArn::Listener { lb_name, lb_id, id }) = keys::parse_arn(arn, region) else {
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
    let i = lb
        .value
        .listeners
        .iter()
        .position(|l| l.id == id)
        .ok_or_else(not_found)?;
    Ok((lb, i))
}

fn check_protocol(svc: &Elbv2Service, lb: &LoadBalancer, protocol: &str) -> Result<(), Elbv2Error> {
    match (lb.lb_type, protocol) {
        (LoadBalancerType::Application, "HTTP") | (LoadBalancerType::Network, "TCP") => Ok(()),
        (LoadBalancerType::Application, "HTTPS") | (LoadBalancerType::Network, "TLS")
            if svc.certificates.is_some() =>
        {
            Ok(())
        }
        (LoadBalancerType::Network, "UDP" | "TCP_UDP") => {
            if lb.ip_address_type == "dualstack" {
                return Err(Elbv2Error::InvalidConfiguration(format!(
                    "Protocol '{protocol}' cannot be used on a load balancer with the dualstack IP address type"
                )));
            }
            Ok(())
        }
        (LoadBalancerType::Application, "HTTPS") | (LoadBalancerType::Network, "TLS") => {
            Err(Elbv2Error::UnsupportedProtocol(format!(
                "Protocol '{protocol}' needs certificates from ACM, which this server does not serve"
            )))
        }
        (LoadBalancerType::Network, "QUIC" | "TCP_QUIC") => Err(Elbv2Error::UnsupportedProtocol(
            format!("Protocol '{protocol}' is not supported by Gantry"),
        )),
        (LoadBalancerType::Application, _) => Err(Elbv2Error::validation(format!(
            "Listener protocol '{protocol}' must be one of 'HTTP, HTTPS'"
        ))),
        _ => Err(Elbv2Error::InvalidConfiguration(format!(
            "Protocol '{protocol}' is not valid for a {} load balancer",
            lb.lb_type.as_str()
        ))),
    }
}

/// The target group protocols a network listener of `protocol` may forward to.
fn target_protocols(listener_protocol: &str) -> &'static [&'static str] {
    match listener_protocol {
        "TCP" => &["TCP", "TCP_UDP"],
        "TLS" => &["TCP", "TLS"],
        "UDP" => &["UDP", "TCP_UDP"],
        "TCP_UDP" => &["TCP_UDP"],
        _ => &[],
    }
}

/// Checks the target groups a network listener of `protocol` forwards to carry its traffic: a
/// TCP listener needs TCP or TCP_UDP groups, a UDP listener UDP or TCP_UDP groups, a TCP_UDP
/// listener TCP_UDP groups.
async fn check_listener_targets(
    store: &dyn gantry_store::Store,
    region: &str,
    lb: &LoadBalancer,
    protocol: &str,
    actions: &[Action],
) -> Result<(), Elbv2Error> {
    if lb.lb_type != LoadBalancerType::Network {
        return Ok(());
    }
    let allowed = target_protocols(protocol);
    for arn in actions.iter().flat_map(Action::target_group_arns) {
        let tg = target_group_by_arn(store, region, arn).await?.value;
        if !allowed.contains(&tg.protocol.as_str()) {
            return Err(Elbv2Error::IncompatibleProtocols(format!(
                "The listener protocol '{protocol}' is not compatible with the protocol '{}' of target group '{arn}' (a {protocol} listener forwards to {} target groups)",
                tg.protocol,
                allowed.join(" or ")
            )));
        }
    }
    Ok(())
}

fn parse_port(p: &Params) -> Result<Option<u16>, Elbv2Error> {
    match p.u32("Port")? {
        Some(n) if (1..=65535).contains(&n) => Ok(Some(n as u16)),
        Some(n) => Err(Elbv2Error::validation(format!(
            "Port {n} must be between 1 and 65535"
        ))),
        None => Ok(None),
    }
}

fn result(lb: &LoadBalancer, listeners: &[&Listener], next: Option<String>) -> String {
    let mut w = XmlWriter::new();
    wire::write_list(&mut w, "Listeners", listeners, |w, l| {
        wire::write_listener(w, lb, l)
    });
    if let Some(n) = next {
        w.leaf("NextMarker", &n);
    }
    w.finish()
}

pub(crate) async fn create(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let lb_arn = p.req("LoadBalancerArn")?;
    let store = svc.store.as_ref();
    let actions = wire::parse_actions(p, "DefaultActions")?;
    let port = parse_port(p)?;
    let tags = wire::parse_tags(p, "Tags")?;
    let (lb, listener) = commit_with_retry(store, || async {
        let cur = load_balancer_by_arn(store, &ctx.region, lb_arn).await?;
        let mut lb = cur.value.clone();
        let protocol = p
            .get("Protocol")
            .unwrap_or(match lb.lb_type {
                LoadBalancerType::Application => "HTTP",
                LoadBalancerType::Network => "TCP",
            })
            .to_owned();
        check_protocol(svc, &lb, &protocol)?;
        let port =
            port.ok_or_else(|| Elbv2Error::validation("A listener port must be specified"))?;
        check_action_targets(store, &ctx.region, lb.lb_type, &actions).await?;
        check_listener_targets(store, &ctx.region, &lb, &protocol, &actions).await?;
        if let Some(existing) = lb.listeners.iter().find(|l| l.port == port) {
            if existing.protocol == protocol && existing.default_actions == actions {
                return Ok((Txn::new(), (lb.clone(), existing.clone())));
            }
            return Err(Elbv2Error::DuplicateListener(port));
        }
        if lb.listeners.len() >= crate::limits::LISTENERS_PER_LOAD_BALANCER {
            return Err(Elbv2Error::TooManyListeners(format!(
                "A load balancer can have at most {} listeners",
                crate::limits::LISTENERS_PER_LOAD_BALANCER
            )));
        }
        let id = keys::new_id();
        let mut listener = Listener {
            arn: format!(
                "{}listener/{}/{}/{}/{id}",
                keys::arn_prefix(&ctx.region, &ctx.account_id),
                lb.lb_type.arn_segment(),
                lb.name,
                lb.id
            ),
            id,
            port,
            protocol,
            default_actions: actions.clone(),
            default_rule_id: keys::new_id(),
            rules: Vec::new(),
            tags: tags.clone(),
            certificates: Vec::new(),
            ssl_policy: None,
            attributes: Default::default(),
        };
        apply_tls_settings(svc, ctx, p, &mut listener).await?;
        lb.listeners.push(listener.clone());
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, (lb, listener)))
    })
    .await?;
    Ok(result(&lb, &[&listener], None))
}

pub(crate) async fn describe(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let store = svc.store.as_ref();
    let arns = p.list("ListenerArns");
    let lb_arn = p.get("LoadBalancerArn");
    let mut items: Vec<(String, (LoadBalancer, Listener))> = Vec::new();
    match (lb_arn, arns.is_empty()) {
        (Some(_), false) => {
            return Err(Elbv2Error::validation(
                "Listener ARNs and a load balancer ARN cannot be specified at the same time",
            ));
        }
        (None, true) => {
            return Err(Elbv2Error::validation(
                "You must specify either listener ARNs or a load balancer ARN",
            ));
        }
        (Some(lb_arn), true) => {
            let lb = load_balancer_by_arn(store, &ctx.region, lb_arn)
                .await?
                .value;
            for l in &lb.listeners {
                items.push((format!("{:05}{}", l.port, l.id), (lb.clone(), l.clone())));
            }
        }
        (None, false) => {
            for arn in &arns {
                let (lb, i) = listener_by_arn(store, &ctx.region, arn).await?;
                let l = lb.value.listeners[i].clone();
                items.push((format!("{}{:05}", lb.value.name, l.port), (lb.value, l)));
            }
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = wire::paginate(items, p)?;
    let mut w = XmlWriter::new();
    wire::write_list(&mut w, "Listeners", &page, |w, (lb, l)| {
        wire::write_listener(w, lb, l)
    });
    if let Some(n) = next {
        w.leaf("NextMarker", &n);
    }
    Ok(w.finish())
}

pub(crate) async fn modify(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("ListenerArn")?;
    let store = svc.store.as_ref();
    let port = parse_port(p)?;
    let actions = if p.has("DefaultActions") {
        Some(wire::parse_actions(p, "DefaultActions")?)
    } else {
        None
    };
    let (lb, listener) = commit_with_retry(store, || async {
        let (cur, i) = listener_by_arn(store, &ctx.region, arn).await?;
        let mut lb = cur.value.clone();
        let mut l = lb.listeners[i].clone();
        if let Some(proto) = p.get("Protocol") {
            check_protocol(svc, &lb, proto)?;
            l.protocol = proto.to_owned();
        }
        apply_tls_settings(svc, ctx, p, &mut l).await?;
        if let Some(port) = port {
            if lb.listeners.iter().any(|o| o.port == port && o.id != l.id) {
                return Err(Elbv2Error::DuplicateListener(port));
            }
            l.port = port;
        }
        if let Some(a) = &actions {
            check_action_targets(store, &ctx.region, lb.lb_type, a).await?;
            l.default_actions = a.clone();
        }
        if p.has("Protocol") || actions.is_some() {
            check_listener_targets(store, &ctx.region, &lb, &l.protocol, &l.default_actions)
                .await?;
        }
        // Attributes the new protocol does not have go.
        let defaults = attributes::listener_defaults(lb.lb_type, &l.protocol);
        l.attributes.retain(|k, _| defaults.contains_key(k));
        lb.listeners[i] = l.clone();
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, (lb, l)))
    })
    .await?;
    Ok(result(&lb, &[&listener], None))
}

pub(crate) async fn delete(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("ListenerArn")?;
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let (cur, i) = listener_by_arn(store, &ctx.region, arn).await?;
        let mut lb = cur.value.clone();
        lb.listeners.remove(i);
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, ()))
    })
    .await?;
    Ok(String::new())
}

/// The attributes AWS defines for listener `l` of `lb`: their defaults, with the values set by
/// `ModifyListenerAttributes`.
fn listener_attributes(
    lb: &LoadBalancer,
    l: &Listener,
) -> std::collections::BTreeMap<String, String> {
    let mut attrs = attributes::listener_defaults(lb.lb_type, &l.protocol);
    for (k, v) in &l.attributes {
        if let Some(slot) = attrs.get_mut(k) {
            slot.clone_from(v);
        }
    }
    attrs
}

pub(crate) async fn describe_attributes(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let (lb, i) = listener_by_arn(svc.store.as_ref(), &ctx.region, p.req("ListenerArn")?).await?;
    let mut w = XmlWriter::new();
    wire::write_attributes(
        &mut w,
        &listener_attributes(&lb.value, &lb.value.listeners[i]),
    );
    Ok(w.finish())
}

pub(crate) async fn modify_attributes(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("ListenerArn")?;
    let changes = attributes::parse(p)?;
    let store = svc.store.as_ref();
    let attrs = commit_with_retry(store, || async {
        let (cur, i) = listener_by_arn(store, &ctx.region, arn).await?;
        let mut lb = cur.value.clone();
        let defaults = attributes::listener_defaults(lb.lb_type, &lb.listeners[i].protocol);
        attributes::check_listener(&defaults, &changes)?;
        let l = &mut lb.listeners[i];
        for (k, v) in &changes {
            // Only the values that differ from the defaults are kept.
            if defaults.get(k) == Some(v) {
                l.attributes.remove(k);
            } else {
                l.attributes.insert(k.clone(), v.clone());
            }
        }
        let attrs = listener_attributes(&lb, &lb.listeners[i]);
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, attrs))
    })
    .await?;
    let mut w = XmlWriter::new();
    wire::write_attributes(&mut w, &attrs);
    Ok(w.finish())
}
