//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer,
//! Describe/ModifyLoadBalancerAttributes.

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::lb::{LoadBalancer, LoadBalancerType};
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};

use crate::error::Elbv2Error;
use crate::wire::{self, Params};
use crate::{Elbv2Service, attributes, commit_with_retry, keys, load_balancer_by_arn, xml_list};

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
    let mut subnets = p.list("Subnets");
    for m in p.structs("SubnetMappings") {
        subnets.push(m.req("SubnetId")?.to_owned());
    }
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
            security_groups: p.list("SecurityGroups"),
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
    Ok(result(&page, next))
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
