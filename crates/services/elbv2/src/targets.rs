//! RegisterTargets, DeregisterTargets, DescribeTargetHealth, and the same as Rust functions for
//! the ECS service runner.
//!
//! Deregistration keeps the target with `drainingUntil = now + deregistration delay`: proxies
//! stop sending it new requests at once and let in-flight ones finish; [`sweep_expired`] removes
//! it once the delay is over (readers already ignore expired ones).

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::EpochMillis;
use gantry_domain::lb::{LoadBalancerType, Target, TargetGroup};
use gantry_front::RequestContext;
use gantry_store::{Store, StoreExt, Txn, Versioned, encode};

use crate::error::Elbv2Error;
use crate::health::{self, HealthRecord, TargetHealthInfo};
use crate::wire::{self, Params};
use crate::{
    Elbv2Service, all_load_balancers, keys, lbs_using, load_balancer_by_arn, target_group_by_arn,
};

/// A target to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub id: String,
    /// `None`: the target group's port.
    pub port: Option<u16>,
    /// Where proxies connect, when it is not the id (instance targets: the host's address).
    pub address: Option<String>,
    pub availability_zone: Option<String>,
}

/// Whether a target is still registered or draining at `now`.
pub(crate) fn is_live(t: &Target, now: EpochMillis) -> bool {
    t.draining_until.is_none_or(|d| d > now)
}

fn check_target(tg: &TargetGroup, spec: &TargetSpec) -> Result<u16, Elbv2Error> {
    let port = spec.port.or(tg.port).ok_or_else(|| {
        Elbv2Error::InvalidTarget(format!("A port is required for target '{}'", spec.id))
    })?;
    if port == 0 {
        return Err(Elbv2Error::InvalidTarget(format!(
            "The port of target '{}' must be between 1 and 65535",
            spec.id
        )));
    }
    if tg.target_type == "alb" {
        if Some(port) != tg.port {
            return Err(Elbv2Error::InvalidTarget(format!(
                "The port of target '{}' must be the target group's port {}",
                spec.id,
                tg.port.unwrap_or(0)
            )));
        }
        return Ok(port);
    }
    if spec.id.is_empty() || spec.id.contains('/') {
        return Err(Elbv2Error::InvalidTarget(format!(
            "The target id '{}' is not valid",
            spec.id
        )));
    }
    if tg.target_type == "ip" && spec.id.parse::<std::net::IpAddr>().is_err() {
        return Err(Elbv2Error::InvalidTarget(format!(
            "The IP address '{}' is not a valid IPv4 or IPv6 address",
            spec.id
        )));
    }
    Ok(port)
}

/// Checks the targets of an `alb` target group: each names an application load balancer of the
/// region with a listener on `port`, and the group holds at most one of them.
async fn check_alb_targets(
    store: &dyn Store,
    region: &str,
    tg: &TargetGroup,
    specs: &[TargetSpec],
    now: EpochMillis,
) -> Result<(), Elbv2Error> {
    let port = tg.port.unwrap_or(0);
    let mut ids: Vec<&str> = Vec::new();
    for spec in specs {
        let lb = match load_balancer_by_arn(store, region, &spec.id).await {
            Ok(lb) => lb.value,
            Err(Elbv2Error::LoadBalancerNotFound(_)) => {
                return Err(Elbv2Error::InvalidTarget(format!(
                    "The application load balancer '{}' does not exist",
                    spec.id
                )));
            }
            Err(_) => {
                return Err(Elbv2Error::InvalidTarget(format!(
                    "The target id '{}' is not the ARN of an application load balancer",
                    spec.id
                )));
            }
        };
        if lb.lb_type != LoadBalancerType::Application {
            return Err(Elbv2Error::InvalidTarget(format!(
                "The load balancer '{}' is not an application load balancer",
                spec.id
            )));
        }
        if !lb.listeners.iter().any(|l| l.port == port) {
            return Err(Elbv2Error::InvalidTarget(format!(
                "The application load balancer '{}' has no listener on port {port}, the port of the target group",
                spec.id
            )));
        }
        ids.push(spec.id.as_str());
    }
    let live = live_targets(store, region, &tg.name, now).await?;
    ids.extend(
        live.iter()
            .filter(|t| t.draining_until.is_none())
            .map(|t| t.id.as_str()),
    );
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > 1 {
        return Err(Elbv2Error::InvalidTarget(
            "A target group with target type 'alb' can have only one application load balancer as a target".into(),
        ));
    }
    Ok(())
}

async fn register(
    store: &dyn Store,
    region: &str,
    tg_arn: &str,
    specs: &[TargetSpec],
    now: EpochMillis,
) -> Result<(), Elbv2Error> {
    if specs.is_empty() {
        return Err(Elbv2Error::validation("Targets must not be empty"));
    }
    for _ in 0..32 {
        let tg = target_group_by_arn(store, region, tg_arn).await?;
        let tg_key = keys::target_group(region, &tg.value.name);
        let mut txn = Txn::new().require_revision(&tg_key, tg.revision);
        if tg.value.target_type == "alb" {
            check_alb_targets(store, region, &tg.value, specs, now).await?;
        }
        for spec in specs {
            let port = check_target(&tg.value, spec)?;
            let key = keys::target(region, &tg.value.name, &spec.id, port);
            let existing = store.get_typed::<Target>(&key).await?;
            let target = match &existing {
                Some(e) if e.value.draining_until.is_none() => {
                    if e.value.address == spec.address {
                        continue;
                    }
                    Target {
                        address: spec.address.clone(),
                        ..e.value.clone()
                    }
                }
                _ => Target {
                    id: spec.id.clone(),
                    port,
                    address: spec.address.clone(),
                    availability_zone: spec.availability_zone.clone(),
                    registered_at: now,
                    draining_until: None,
                },
            };
            txn = txn
                .require_revision(&key, existing.map_or(0, |e| e.revision))
                .put(&key, encode(&key, &target)?);
        }
        if txn.mutations.is_empty() || store.commit(txn).await?.is_committed() {
            return Ok(());
        }
    }
    Err(Elbv2Error::Contention(tg_arn.to_owned()))
}

/// Registers `(id, port)` targets (IP targets, or instance ids the proxies can resolve).
pub async fn register_targets(
    store: &dyn Store,
    region: &str,
    target_group_arn: &str,
    targets: &[(String, u16)],
    now: EpochMillis,
) -> Result<(), Elbv2Error> {
    let specs: Vec<TargetSpec> = targets
        .iter()
        .map(|(id, port)| TargetSpec {
            id: id.clone(),
            port: Some(*port),
            address: None,
            availability_zone: None,
        })
        .collect();
    register(store, region, target_group_arn, &specs, now).await
}

/// Registers targets with an explicit connect address (an instance target on a host: the id is
/// the container instance's EC2-style id, the address the host's reachable IP).
pub async fn register_targets_with_address(
    store: &dyn Store,
    region: &str,
    target_group_arn: &str,
    targets: &[TargetSpec],
    now: EpochMillis,
) -> Result<(), Elbv2Error> {
    register(store, region, target_group_arn, targets, now).await
}

/// Starts draining targets: no new requests, gone after the target group's deregistration delay.
/// Returns that delay in seconds. `strict`: fail on targets that are not registered (the API);
/// otherwise they are ignored.
async fn deregister(
    store: &dyn Store,
    region: &str,
    tg_arn: &str,
    targets: &[(String, Option<u16>)],
    now: EpochMillis,
    strict: bool,
) -> Result<u64, Elbv2Error> {
    for _ in 0..32 {
        let tg = target_group_by_arn(store, region, tg_arn).await?;
        let delay = tg.value.deregistration_delay_seconds();
        let mut txn = Txn::new();
        let mut missing = Vec::new();
        for (id, port) in targets {
            let port = port.or(tg.value.port).unwrap_or(0);
            let key = keys::target(region, &tg.value.name, id, port);
            let existing = store.get_typed::<Target>(&key).await?;
            let Some(e) = existing.filter(|e| is_live(&e.value, now)) else {
                missing.push(format!("Id={id},Port={port}"));
                continue;
            };
            if e.value.draining_until.is_some() {
                continue;
            }
            txn = txn.require_revision(&key, e.revision);
            txn = if delay == 0 {
                txn.delete(&key)
            } else {
                let mut t = e.value.clone();
                t.draining_until = Some(now + delay * 1000);
                txn.put(&key, encode(&key, &t)?)
            };
        }
        if strict && !missing.is_empty() {
            return Err(Elbv2Error::InvalidTarget(format!(
                "The following targets are not registered: '{}'",
                missing.join("', '")
            )));
        }
        if txn.mutations.is_empty() || store.commit(txn).await?.is_committed() {
            return Ok(delay);
        }
    }
    Err(Elbv2Error::Contention(tg_arn.to_owned()))
}

/// Deregisters `(id, port)` targets (targets that are not registered are ignored). Returns the
/// deregistration delay in seconds: the time to wait before stopping the target.
pub async fn deregister_targets(
    store: &dyn Store,
    region: &str,
    target_group_arn: &str,
    targets: &[(String, u16)],
    now: EpochMillis,
) -> Result<u64, Elbv2Error> {
    let t: Vec<(String, Option<u16>)> = targets
        .iter()
        .map(|(id, port)| (id.clone(), Some(*port)))
        .collect();
    deregister(store, region, target_group_arn, &t, now, false).await
}

/// The live targets of a target group, in key order.
pub(crate) async fn live_targets(
    store: &dyn Store,
    region: &str,
    tg_name: &str,
    now: EpochMillis,
) -> Result<Vec<Target>, Elbv2Error> {
    Ok(store
        .scan_all_typed::<Target>(&keys::targets(region, tg_name))
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|t| is_live(t, now))
        .collect())
}

async fn health_of(
    store: &dyn Store,
    region: &str,
    tg: &TargetGroup,
    filter: Option<&[(String, Option<u16>)]>,
    now: EpochMillis,
) -> Result<Vec<TargetHealthInfo>, Elbv2Error> {
    let targets = live_targets(store, region, &tg.name, now).await?;
    let reports: Vec<HealthRecord> = store
        .scan_all_typed::<HealthRecord>(&keys::health_of(region, &tg.name))
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|r| r.target_group_arn == tg.arn)
        .collect();
    let lbs = all_load_balancers(store, region).await?;
    let in_use = !lbs_using(&lbs, &tg.arn).is_empty();
    let one = |t: &Target| health::combine(tg, t, in_use, &reports, now);
    Ok(match filter {
        None => targets.iter().map(one).collect(),
        Some(wanted) => wanted
            .iter()
            .map(|(id, port)| {
                let port = port.or(tg.port).unwrap_or(0);
                match targets.iter().find(|t| &t.id == id && t.port == port) {
                    Some(t) => one(t),
                    None => health::not_registered(id, port),
                }
            })
            .collect(),
    })
}

/// The health of every registered (or draining) target of a target group.
pub async fn target_health(
    store: &dyn Store,
    region: &str,
    target_group_arn: &str,
    now: EpochMillis,
) -> Result<Vec<TargetHealthInfo>, Elbv2Error> {
    let tg = target_group_by_arn(store, region, target_group_arn).await?;
    health_of(store, region, &tg.value, None, now).await
}

/// Removes targets whose deregistration delay is over and health reports far past their TTL, in
/// every region. Returns how many records were removed.
pub async fn sweep_expired(store: &dyn Store, now: EpochMillis) -> Result<usize, Elbv2Error> {
    let mut removed = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store.scan("elbv2/", after.as_deref(), 1000).await?;
        for rec in &page.records {
            let kind = rec.key.split('/').nth(2);
            let expired = match kind {
                Some("target") => gantry_store::decode::<Target>(rec)
                    .map(|t: Versioned<Target>| !is_live(&t.value, now))
                    .unwrap_or(false),
                Some("health") => gantry_store::decode::<HealthRecord>(rec)
                    .map(|r: Versioned<HealthRecord>| {
                        r.value.reported_at + 10 * health::HEALTH_REPORT_TTL_MS < now
                    })
                    .unwrap_or(false),
                _ => false,
            };
            if expired {
                let txn = Txn::new()
                    .require_revision(&rec.key, rec.revision)
                    .delete(&rec.key);
                if store.commit(txn).await?.is_committed() {
                    removed += 1;
                }
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(removed),
        }
    }
}

fn parse_targets(p: &Params) -> Result<Vec<(TargetSpec, Option<u16>)>, Elbv2Error> {
    let mut out = Vec::new();
    for t in p.structs("Targets") {
        let port = match t.u32("Port")? {
            Some(n) if n <= 65535 => Some(n as u16),
            Some(n) => {
                return Err(Elbv2Error::validation(format!(
                    "Port {n} must be between 1 and 65535"
                )));
            }
            None => None,
        };
        out.push((
            TargetSpec {
                id: t.req("Id")?.to_owned(),
                port,
                address: None,
                availability_zone: t.get("AvailabilityZone").map(str::to_owned),
            },
            port,
        ));
    }
    Ok(out)
}

pub(crate) async fn register_op(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("TargetGroupArn")?;
    let specs: Vec<TargetSpec> = parse_targets(p)?.into_iter().map(|(s, _)| s).collect();
    register(svc.store.as_ref(), &ctx.region, arn, &specs, ctx.now).await?;
    Ok(String::new())
}

pub(crate) async fn deregister_op(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("TargetGroupArn")?;
    let targets: Vec<(String, Option<u16>)> = parse_targets(p)?
        .into_iter()
        .map(|(s, port)| (s.id, port))
        .collect();
    if targets.is_empty() {
        return Err(Elbv2Error::validation("Targets must not be empty"));
    }
    deregister(
        svc.store.as_ref(),
        &ctx.region,
        arn,
        &targets,
        ctx.now,
        true,
    )
    .await?;
    Ok(String::new())
}

pub(crate) async fn describe_health_op(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("TargetGroupArn")?;
    let store = svc.store.as_ref();
    let tg = target_group_by_arn(store, &ctx.region, arn).await?.value;
    let wanted: Vec<(String, Option<u16>)> = parse_targets(p)?
        .into_iter()
        .map(|(s, port)| (s.id, port))
        .collect();
    let filter = (!wanted.is_empty()).then_some(wanted.as_slice());
    let infos = health_of(store, &ctx.region, &tg, filter, ctx.now).await?;
    let mut w = XmlWriter::new();
    wire::write_list(&mut w, "TargetHealthDescriptions", &infos, |w, h| {
        w.open("Target");
        w.leaf("Id", &h.id);
        w.leaf("Port", &h.port.to_string());
        w.close("Target");
        let hc_port = if tg.health_check.port == "traffic-port" {
            h.port.to_string()
        } else {
            tg.health_check.port.clone()
        };
        w.leaf("HealthCheckPort", &hc_port);
        w.open("TargetHealth");
        w.leaf("State", h.state.as_str());
        if let Some(r) = &h.reason {
            w.leaf("Reason", r);
        }
        if let Some(d) = &h.description {
            w.leaf("Description", d);
        }
        w.close("TargetHealth");
    });
    Ok(w.finish())
}
