//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer,
//! Describe/ModifyLoadBalancerAttributes.

use std::collections::BTreeMap;

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::lb::{LoadBalancer, LoadBalancerType};
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};

use crate::error::Elbv2Error;
use crate::health::{HEALTH_REPORT_TTL_MS, ListenerStatusRecord};
use crate::wire::{self, Params};
use crate::{
    Elbv2Service, NetworkLookupError, attributes, commit_with_retry, keys, load_balancer_by_arn,
    xml_list,
};

/// Subnets and groups of a load balancer as EC2 has them.
#[derive(Debug, Default)]
struct Placement {
    vpc_id: Option<String>,
    subnet_zones: BTreeMap<String, String>,
    security_groups: Vec<String>,
}

fn lookup(e: NetworkLookupError) -> Elbv2Error {
    match e {
        NetworkLookupError::SubnetNotFound(id) => Elbv2Error::SubnetNotFound(id),
        NetworkLookupError::SecurityGroupNotFound(_) => Elbv2Error::InvalidSecurityGroup,
        NetworkLookupError::Internal(m) => Elbv2Error::Contention(m),
    }
}

/// Checks subnets and groups as ELBv2 does: subnets known, in one VPC, at most one per zone, at
/// least two zones for an application load balancer; groups known and of that VPC (none given:
/// the VPC's default group for an application load balancer). `vpc` pins the VPC (SetSubnets,
/// SetSecurityGroups). Without EC2 wired in, subnets and groups are kept as given.
async fn place(
    svc: &Elbv2Service,
    ctx: &RequestContext,
    lb_type: LoadBalancerType,
    subnets: Option<&[String]>,
    groups: Option<&[String]>,
    vpc: Option<&str>,
) -> Result<Placement, Elbv2Error> {
    let Some(networks) = &svc.networks else {
        return Ok(Placement {
            security_groups: groups.map(<[String]>::to_vec).unwrap_or_default(),
            ..Placement::default()
        });
    };
    let mut out = Placement {
        vpc_id: vpc.map(str::to_owned),
        ..Placement::default()
    };
    if let Some(ids) = subnets {
        let found = networks.subnets(&ctx.region, ids).await.map_err(lookup)?;
        for s in &found {
            match &out.vpc_id {
                Some(v) if *v != s.vpc_id => {
                    return Err(Elbv2Error::InvalidConfiguration(format!(
                        "Subnet '{}' is in {}, not in the load balancer's VPC {v}",
                        s.id, s.vpc_id
                    )));
                }
                Some(_) => {}
                None => out.vpc_id = Some(s.vpc_id.clone()),
            }
            if out.subnet_zones.values().any(|z| *z == s.availability_zone) {
                return Err(Elbv2Error::InvalidConfiguration(
                    "A load balancer cannot be attached to multiple subnets in the same Availability Zone".into(),
                ));
            }
            out.subnet_zones
                .insert(s.id.clone(), s.availability_zone.clone());
        }
        if lb_type == LoadBalancerType::Application && out.subnet_zones.len() < 2 {
            return Err(Elbv2Error::validation(
                "At least two subnets in two different Availability Zones must be specified",
            ));
        }
    }
    if let Some(ids) = groups {
        let found = networks
            .security_groups(&ctx.region, ids)
            .await
            .map_err(lookup)?;
        if found
            .iter()
            .any(|(_, v)| out.vpc_id.as_ref().is_some_and(|vpc| vpc != v))
        {
            return Err(Elbv2Error::InvalidSecurityGroup);
        }
        out.security_groups = found.into_iter().map(|(id, _)| id).collect();
        if out.security_groups.is_empty()
            && lb_type == LoadBalancerType::Application
            && let Some(vpc) = &out.vpc_id
            && let Some(g) = networks
                .default_security_group(&ctx.region, vpc)
                .await
                .map_err(lookup)?
        {
            out.security_groups.push(g);
        }
    }
    Ok(out)
}

/// Load balancer and target group names: 1-32 alphanumerics and hyphens, no hyphen first or
/// last.
pub(crate) fn validate_name(name: &str, what: &str) -> Result<(), Elbv2Error> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(Elbv2Error::validation(format!(
            "{what} name '{name}' can have a maximum of 32 characters, can contain only alphanumeric characters or hyphens, and must not begin or end with a hyphen"
        )));
    }
    Ok(())
}

fn dns_name(svc: &Elbv2Service, ctx: &RequestContext, name: &str, id: &str) -> String {
    // Ten digits like AWS, derived from the id so the name is stable.
    let digits: String = u64::from_str_radix(&id[..12], 16)
        .unwrap_or(0)
        .to_string()
        .chars()
        .rev()
        .take(10)
        .collect();
    format!(
        "{}-{digits}.{}.{}",
        name.to_ascii_lowercase(),
        ctx.region,
        svc.dns_suffix
    )
}

fn result(lbs: &[LoadBalancer], next: Option<String>) -> String {
    let mut w = xml_list("LoadBalancers", lbs, wire::write_load_balancer);
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
    let name = p.req("Name")?.to_owned();
    validate_name(&name, "Load balancer")?;
    if name.starts_with("internal-") {
        return Err(Elbv2Error::validation(
            "Load balancer names cannot begin with 'internal-'",
        ));
    }
    let lb_type = match p.get("Type").unwrap_or("application") {
        "application" => LoadBalancerType::Application,
        "network" => LoadBalancerType::Network,
        "gateway" => {
            return Err(Elbv2Error::OperationNotPermitted(
                "Gateway load balancers are not supported by Gantry".into(),
            ));
        }
        t => {
            return Err(Elbv2Error::validation(format!(
                "Load balancer type '{t}' must be one of [application, network, gateway]"
            )));
        }
    };
    let scheme = p.get("Scheme").unwrap_or("internet-facing").to_owned();
    if !matches!(scheme.as_str(), "internet-facing" | "internal") {
        return Err(Elbv2Error::validation(format!(
            "Scheme '{scheme}' must be internet-facing or internal"
        )));
    }
    let ip_address_type = p.get("IpAddressType").unwrap_or("ipv4").to_owned();
    check_ip_address_type(svc.networks.is_some(), lb_type, &ip_address_type)?;
    let subnets = requested_subnets(p)?;
    if svc.networks.is_some() && subnets.is_empty() {
        return Err(Elbv2Error::validation(
            "At least one subnet must be specified (Subnets or SubnetMappings)",
        ));
    }
    let groups = p.list("SecurityGroups");
    let placement = place(svc, ctx, lb_type, Some(&subnets), Some(&groups), None).await?;
    let tags = wire::parse_tags(p, "Tags")?;
    let key = keys::load_balancer(&ctx.region, &name);
    let lb = commit_with_retry(svc.store.as_ref(), || async {
        let existing = svc.store.get_typed::<LoadBalancer>(&key).await?;
        if let Some(e) = &existing {
            // Same name and type: AWS answers with the existing load balancer.
            if e.value.lb_type == lb_type && e.value.scheme == scheme {
                return Ok((Txn::new(), e.value.clone()));
            }
            return Err(Elbv2Error::DuplicateLoadBalancerName(name.clone()));
        }
        let same_type = crate::all_load_balancers(svc.store.as_ref(), &ctx.region)
            .await?
            .iter()
            .filter(|l| l.lb_type == lb_type)
            .count();
        crate::limits::check_load_balancers(lb_type, same_type)?;
        let id = keys::new_id();
        let lb = LoadBalancer {
            arn: format!(
                "{}loadbalancer/{}/{name}/{id}",
                keys::arn_prefix(&ctx.region, &ctx.account_id),
                lb_type.arn_segment()
            ),
            name: name.clone(),
            dns_name: dns_name(svc, ctx, &name, &id),
            id,
            lb_type,
            scheme: scheme.clone(),
            ip_address_type: ip_address_type.clone(),
            created_at: ctx.now,
            subnets: subnets.clone(),
            security_groups: placement.security_groups.clone(),
            vpc_id: placement.vpc_id.clone(),
            subnet_zones: placement.subnet_zones.clone(),
            attributes: attributes::load_balancer_defaults(lb_type),
            tags: tags.clone(),
            listeners: Vec::new(),
        };
        let txn = Txn::new()
            .require_absent(&key)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, lb))
    })
    .await?;
    Ok(result(&[lb], None))
}

/// `Subnets.member.N` and `SubnetMappings.member.N.SubnetId` (no addresses: Gantry gives load
/// balancers none of their own).
fn requested_subnets(p: &Params) -> Result<Vec<String>, Elbv2Error> {
    let mut subnets = p.list("Subnets");
    for m in p.structs("SubnetMappings") {
        for unsupported in ["AllocationId", "PrivateIPv4Address", "IPv6Address"] {
            if m.get(unsupported).is_some() {
                return Err(Elbv2Error::validation(format!(
                    "SubnetMappings.{unsupported} is not supported by Gantry"
                )));
            }
        }
        subnets.push(m.req("SubnetId")?.to_owned());
    }
    subnets.dedup();
    Ok(subnets)
}

pub(crate) async fn set_subnets(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("LoadBalancerArn")?.to_owned();
    let subnets = requested_subnets(p)?;
    if subnets.is_empty() {
        return Err(Elbv2Error::validation(
            "At least one subnet must be specified (Subnets or SubnetMappings)",
        ));
    }
    let store = svc.store.as_ref();
    let lb = commit_with_retry(store, || async {
        let cur = load_balancer_by_arn(store, &ctx.region, &arn).await?;
        let placement = place(
            svc,
            ctx,
            cur.value.lb_type,
            Some(&subnets),
            None,
            cur.value.vpc_id.as_deref(),
        )
        .await?;
        let mut lb = cur.value.clone();
        lb.subnets = subnets.clone();
        lb.subnet_zones = placement.subnet_zones;
        if lb.vpc_id.is_none() {
            lb.vpc_id = placement.vpc_id;
        }
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, lb))
    })
    .await?;
    let mut w = XmlWriter::new();
    wire::write_zones(&mut w, &lb);
    w.leaf("IpAddressType", &lb.ip_address_type);
    Ok(w.finish())
}

/// Checks an `IpAddressType` for a load balancer of type `t`. `dualstack` needs subnets with
/// IPv6 CIDR blocks: EC2's subnets have none (its VPCs are IPv4 only), so with EC2's subnets
/// known (`networks_known`) only `ipv4` is accepted; without them subnets are stored as given,
/// and so is the type.
fn check_ip_address_type(
    networks_known: bool,
    t: LoadBalancerType,
    ip_address_type: &str,
) -> Result<(), Elbv2Error> {
    match (t, ip_address_type) {
        (_, "ipv4") => Ok(()),
        (LoadBalancerType::Network, "dualstack-without-public-ipv4") => {
            Err(Elbv2Error::InvalidConfiguration(
                "IP address type 'dualstack-without-public-ipv4' is only supported by application load balancers"
                    .into(),
            ))
        }
        (_, "dualstack" | "dualstack-without-public-ipv4") if networks_known => {
            Err(Elbv2Error::InvalidSubnet(format!(
                "IP address type '{ip_address_type}' needs subnets with an IPv6 CIDR block, and this server's subnets are IPv4 only"
            )))
        }
        (_, "dualstack" | "dualstack-without-public-ipv4") => Ok(()),
        (_, other) => Err(Elbv2Error::validation(format!(
            "1 validation error detected: Value '{other}' at 'ipAddressType' failed to satisfy constraint: Member must satisfy enum value set: [ipv4, dualstack, dualstack-without-public-ipv4]"
        ))),
    }
}

pub(crate) async fn set_ip_address_type(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("LoadBalancerArn")?.to_owned();
    let ip_address_type = p.req("IpAddressType")?.to_owned();
    let store = svc.store.as_ref();
    let lb = commit_with_retry(store, || async {
        let cur = load_balancer_by_arn(store, &ctx.region, &arn).await?;
        let mut lb = cur.value.clone();
        check_ip_address_type(svc.networks.is_some(), lb.lb_type, &ip_address_type)?;
        if ip_address_type != "ipv4" && lb.scheme == "internal" {
            return Err(Elbv2Error::InvalidConfiguration(
                "Internal load balancers must use the 'ipv4' IP address type".into(),
            ));
        }
        if ip_address_type == "dualstack"
            && let Some(l) = lb
                .listeners
                .iter()
                .find(|l| matches!(l.protocol.as_str(), "UDP" | "TCP_UDP"))
        {
            return Err(Elbv2Error::InvalidConfiguration(format!(
                "A load balancer with a {} listener cannot use the dualstack IP address type",
                l.protocol
            )));
        }
        lb.ip_address_type = ip_address_type.clone();
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, lb))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("IpAddressType", &lb.ip_address_type);
    Ok(w.finish())
}

pub(crate) async fn set_security_groups(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("LoadBalancerArn")?.to_owned();
    let groups = p.list("SecurityGroups");
    if let Some(v) = p.get("EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic") {
        return Err(Elbv2Error::validation(format!(
            "EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic ({v}) is not supported by Gantry"
        )));
    }
    let store = svc.store.as_ref();
    let lb = commit_with_retry(store, || async {
        let cur = load_balancer_by_arn(store, &ctx.region, &arn).await?;
        let placement = place(
            svc,
            ctx,
            cur.value.lb_type,
            None,
            Some(&groups),
            cur.value.vpc_id.as_deref(),
        )
        .await?;
        let mut lb = cur.value.clone();
        lb.security_groups = placement.security_groups;
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, lb))
    })
    .await?;
    let mut w = XmlWriter::new();
    wire::write_strings(&mut w, "SecurityGroupIds", &lb.security_groups);
    Ok(w.finish())
}

pub(crate) async fn describe(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arns = p.list("LoadBalancerArns");
    let names = p.list("Names");
    if !arns.is_empty() && !names.is_empty() {
        return Err(Elbv2Error::validation(
            "Load balancer names and load balancer ARNs cannot be specified at the same time",
        ));
    }
    let mut items: Vec<(String, LoadBalancer)> = Vec::new();
    if !arns.is_empty() {
        for arn in &arns {
            let lb = load_balancer_by_arn(svc.store.as_ref(), &ctx.region, arn).await?;
            items.push((lb.value.name.clone(), lb.value));
        }
    } else if !names.is_empty() {
        for n in &names {
            match svc
                .store
                .get_typed::<LoadBalancer>(&keys::load_balancer(&ctx.region, n))
                .await?
            {
                Some(lb) => items.push((n.clone(), lb.value)),
                None => return Err(Elbv2Error::LoadBalancerNotFound(n.clone())),
            }
        }
    } else {
        items = crate::all_load_balancers(svc.store.as_ref(), &ctx.region)
            .await?
            .into_iter()
            .map(|lb| (lb.name.clone(), lb))
            .collect();
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items.dedup_by(|a, b| a.0 == b.0);
    let (page, next) = wire::paginate(items, p)?;
    let failures = listener_failures(svc, ctx).await?;
    let page: Vec<(LoadBalancer, wire::LbState)> = page
        .into_iter()
        .map(|lb| {
            let state = state_of(&lb, &failures);
            (lb, state)
        })
        .collect();
    let mut w = xml_list("LoadBalancers", &page, |w, (lb, state)| {
        wire::write_load_balancer_in(w, lb, state)
    });
    if let Some(n) = next {
        w.leaf("NextMarker", &n);
    }
    Ok(w.finish())
}

/// Listener ports that fresh proxy reports say could not be opened: port → descriptions.
async fn listener_failures(
    svc: &Elbv2Service,
    ctx: &RequestContext,
) -> Result<BTreeMap<u16, Vec<String>>, Elbv2Error> {
    let mut out: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let records = svc
        .store
        .scan_all_typed::<ListenerStatusRecord>(&keys::listener_status_all(&ctx.region))
        .await?;
    for r in records {
        if r.value.reported_at + HEALTH_REPORT_TTL_MS < ctx.now {
            continue;
        }
        for f in r.value.failures {
            out.entry(f.port).or_default().push(format!(
                "gantry lb {} cannot open port {}: {}",
                r.value.proxy_id, f.port, f.reason
            ));
        }
    }
    Ok(out)
}

/// `failed` when no listener of `lb` could be opened, `active_impaired` when some could not,
/// with the proxies' errors as the reason; else `active`.
fn state_of(lb: &LoadBalancer, failures: &BTreeMap<u16, Vec<String>>) -> wire::LbState {
    let failed: Vec<&String> = lb
        .listeners
        .iter()
        .filter_map(|l| failures.get(&l.port))
        .flatten()
        .collect();
    if failed.is_empty() {
        return wire::LbState::ACTIVE;
    }
    let all = lb.listeners.iter().all(|l| failures.contains_key(&l.port));
    wire::LbState {
        code: if all { "failed" } else { "active_impaired" },
        reason: Some(
            failed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

pub(crate) async fn delete(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("LoadBalancerArn")?;
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let lb = match load_balancer_by_arn(store, &ctx.region, arn).await {
            Ok(lb) => lb,
            // Deleting a deleted load balancer succeeds.
            Err(Elbv2Error::LoadBalancerNotFound(_)) => return Ok((Txn::new(), ())),
            Err(e) => return Err(e),
        };
        if lb
            .value
            .attributes
            .get("deletion_protection.enabled")
            .map(String::as_str)
            == Some("true")
        {
            return Err(Elbv2Error::OperationNotPermitted(format!(
                "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
            )));
        }
        let key = keys::load_balancer(&ctx.region, &lb.value.name);
        Ok((
            Txn::new().require_revision(&key, lb.revision).delete(&key),
            (),
        ))
    })
    .await?;
    Ok(String::new())
}

pub(crate) async fn describe_attributes(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let lb =
        load_balancer_by_arn(svc.store.as_ref(), &ctx.region, p.req("LoadBalancerArn")?).await?;
    let mut w = XmlWriter::new();
    wire::write_attributes(&mut w, &lb.value.attributes);
    Ok(w.finish())
}

pub(crate) async fn modify_attributes(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("LoadBalancerArn")?;
    let changes = attributes::parse(p)?;
    let store = svc.store.as_ref();
    let lb = commit_with_retry(store, || async {
        let cur = load_balancer_by_arn(store, &ctx.region, arn).await?;
        let mut lb = cur.value.clone();
        attributes::apply(&mut lb.attributes, &changes)?;
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, lb))
    })
    .await?;
    let mut w = XmlWriter::new();
    wire::write_attributes(&mut w, &lb.attributes);
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dualstack_needs_ipv6_subnets_which_ec2_subnets_never_have() {
        use LoadBalancerType::{Application, Network};
        check_ip_address_type(true, Application, "ipv4").unwrap();
        check_ip_address_type(true, Network, "ipv4").unwrap();
        for t in ["dualstack", "dualstack-without-public-ipv4"] {
            let e = check_ip_address_type(true, Application, t).unwrap_err();
            assert_eq!(e.aws_code(), "InvalidSubnet");
            assert!(e.to_string().contains(t), "{e}");
            // Subnets stored as given (no EC2): the type is stored as given too.
            check_ip_address_type(false, Application, t).unwrap();
        }
        let e = check_ip_address_type(false, Network, "dualstack-without-public-ipv4").unwrap_err();
        assert_eq!(e.aws_code(), "InvalidConfigurationRequest");
        let e = check_ip_address_type(false, Network, "ipv6").unwrap_err();
        assert_eq!(e.aws_code(), "ValidationError");
    }
}
