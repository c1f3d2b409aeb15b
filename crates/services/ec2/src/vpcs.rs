//! CreateVpc, DeleteVpc, DescribeVpcs, ModifyVpcAttribute, DescribeVpcAttribute.

use gantry_aws_proto::ec2::write_items;
use gantry_aws_proto::query::XmlWriter;
use gantry_front::RequestContext;
use gantry_store::{Txn, encode};

use crate::cidr::Cidr;
use crate::error::Ec2Error;
use crate::model::{NetworkInterface, Peer, SecurityGroup, SgRule, Subnet, Vpc};
use crate::wire::{self, Params, one};
use crate::{Ec2Service, commit_with_retry, keys, scan_all};

/// A new VPC record (AWS's defaults: DNS support on; DNS hostnames on for the default VPC).
pub(crate) fn new_vpc(cidr: &str, is_default: bool) -> Vpc {
    Vpc {
        id: keys::new_id("vpc"),
        cidr: cidr.to_owned(),
        cidr_association_id: keys::new_id("vpc-cidr-assoc"),
        is_default,
        dhcp_options_id: keys::new_id("dopt"),
        instance_tenancy: "default".into(),
        enable_dns_support: true,
        enable_dns_hostnames: is_default,
        enable_network_address_usage_metrics: false,
        tags: Vec::new(),
        generation: 0,
    }
}

/// All traffic, as EC2 writes the rules of a default group.
pub(crate) fn all_traffic(peer: Peer) -> SgRule {
    SgRule {
        id: keys::new_id("sgr"),
        protocol: "-1".into(),
        from_port: -1,
        to_port: -1,
        peer,
        description: None,
    }
}

/// The `default` security group every VPC has: ingress from its own members, egress anywhere.
pub(crate) fn default_group(vpc_id: &str) -> SecurityGroup {
    let id = keys::new_id("sg");
    SecurityGroup {
        ingress: vec![all_traffic(Peer::Group(id.clone()))],
        egress: vec![all_traffic(Peer::Cidr("0.0.0.0/0".into()))],
        id,
        name: "default".into(),
        description: "default VPC security group".into(),
        vpc_id: vpc_id.to_owned(),
        tags: Vec::new(),
    }
}

pub(crate) async fn create(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&[
        "CidrBlock",
        "InstanceTenancy",
        "TagSpecification",
        "AmazonProvidedIpv6CidrBlock",
    ])?;
    if p.bool("AmazonProvidedIpv6CidrBlock")? == Some(true) {
        return Err(Ec2Error::UnsupportedParameter(
            "AmazonProvidedIpv6CidrBlock".into(),
        ));
    }
    let raw = p.req("CidrBlock")?;
    let cidr: Cidr = raw.parse().map_err(|_| {
        Ec2Error::invalid(format!(
            "Value ({raw}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if !(16..=28).contains(&cidr.prefix()) {
        return Err(Ec2Error::InvalidVpcRange(raw.to_owned()));
    }
    match p.get("InstanceTenancy").unwrap_or("default") {
        "default" => {}
        "dedicated" | "host" => {
            return Err(Ec2Error::UnsupportedParameter("InstanceTenancy".into()));
        }
        t => {
            return Err(Ec2Error::invalid(format!(
                "Value ({t}) for parameter instanceTenancy is invalid."
            )));
        }
    }
    let tags = p.tag_specifications("vpc")?;
    let mut vpc = new_vpc(&cidr.to_string(), false);
    vpc.tags = tags;
    vpc.generation = 1;
    let group = default_group(&vpc.id);
    let vk = keys::vpc(&ctx.region, &vpc.id);
    let gk = keys::security_group(&ctx.region, &group.id);
    let txn = Txn::new()
        .require_absent(&vk)
        .put(&vk, encode(&vk, &vpc)?)
        .put(&gk, encode(&gk, &group)?);
    commit_with_retry(svc.store.as_ref(), || {
        let txn = txn.clone();
        async move { Ok((txn, ())) }
    })
    .await?;
    let mut w = XmlWriter::new();
    w.open("vpc");
    wire::write_vpc(&mut w, &vpc, ctx);
    w.close("vpc");
    Ok(w.finish())
}

pub(crate) async fn delete(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["VpcId"])?;
    let id = p.req("VpcId")?.to_owned();
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let vpc = crate::vpc(store, &ctx.region, &id).await?;
        let subnets = scan_all::<Subnet>(store, &keys::subnets(&ctx.region)).await?;
        let groups = scan_all::<SecurityGroup>(store, &keys::security_groups(&ctx.region)).await?;
        let enis =
            scan_all::<NetworkInterface>(store, &keys::network_interfaces(&ctx.region)).await?;
        let busy = subnets.iter().any(|s| s.value.vpc_id == id)
            || enis.iter().any(|n| n.value.vpc_id == id)
            || groups
                .iter()
                .any(|g| g.value.vpc_id == id && !g.value.is_default());
        if busy {
            return Err(Ec2Error::DependencyViolation(format!(
                "The vpc '{id}' has dependencies and cannot be deleted."
            )));
        }
        let vk = keys::vpc(&ctx.region, &id);
        let mut txn = Txn::new().require_revision(&vk, vpc.revision).delete(&vk);
        for g in groups.iter().filter(|g| g.value.vpc_id == id) {
            let gk = keys::security_group(&ctx.region, &g.value.id);
            txn = txn.require_revision(&gk, g.revision).delete(&gk);
        }
        Ok((txn, ()))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("return", "true");
    Ok(w.finish())
}

fn vpc_field(v: &Vpc, name: &str, ctx: &RequestContext) -> wire::FieldValues {
    match name {
        "vpc-id" => one(&v.id),
        "cidr" | "cidr-block-association.cidr-block" | "cidrBlock" => one(&v.cidr),
        "cidr-block-association.association-id" => one(&v.cidr_association_id),
        "cidr-block-association.state" => one("associated"),
        "is-default" | "isDefault" => one(v.is_default),
        "state" => one("available"),
        "dhcp-options-id" => one(&v.dhcp_options_id),
        "owner-id" => one(&ctx.account_id),
        _ => None,
    }
}

pub(crate) async fn describe(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["VpcId", "Filter", "MaxResults", "NextToken"])?;
    let ids = p.strings("VpcId");
    if !ids.is_empty() && p.get("MaxResults").is_some() {
        return Err(Ec2Error::InvalidParameterCombination(
            "The parameter vpcIds cannot be used with the parameter maxResults".into(),
        ));
    }
    let filters = p.p.filters();
    let all = scan_all::<Vpc>(svc.store.as_ref(), &keys::vpcs(&ctx.region)).await?;
    for id in &ids {
        crate::check_id("vpc", id, "InvalidVpcID.Malformed")?;
        if !all.iter().any(|v| &v.value.id == id) {
            return Err(Ec2Error::VpcNotFound(id.clone()));
        }
    }
    let mut items = Vec::new();
    for v in all {
        let v = v.value;
        if !ids.is_empty() && !ids.contains(&v.id) {
            continue;
        }
        if wire::passes(&filters, &v.tags, |n| vpc_field(&v, n, ctx))? {
            items.push((v.id.clone(), v));
        }
    }
    let (page, next) = wire::paginate(items, p, "MaxResults", "NextToken")?;
    let mut w = XmlWriter::new();
    write_items(&mut w, "vpcSet", &page, |w, v| wire::write_vpc(w, v, ctx));
    if let Some(n) = next {
        w.leaf("nextToken", &n);
    }
    Ok(w.finish())
}

const VPC_ATTRIBUTES: [&str; 3] = [
    "EnableDnsSupport",
    "EnableDnsHostnames",
    "EnableNetworkAddressUsageMetrics",
];

pub(crate) async fn modify_attribute(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&[
        "VpcId",
        "EnableDnsSupport",
        "EnableDnsHostnames",
        "EnableNetworkAddressUsageMetrics",
    ])?;
    let id = p.req("VpcId")?.to_owned();
    let given: Vec<(&str, bool)> = VPC_ATTRIBUTES
        .iter()
        .filter_map(|a| {
            let v = p.p.child(a)?.get("Value");
            Some(wire::parse_bool(a, v).map(|b| b.map(|b| (*a, b))))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    if given.len() != 1 {
        return Err(Ec2Error::InvalidParameterCombination(
            "Fields for multiple attribute types specified: exactly one of enableDnsSupport, enableDnsHostnames or enableNetworkAddressUsageMetrics must be given".into(),
        ));
    }
    let (attr, value) = given[0];
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let cur = crate::vpc(store, &ctx.region, &id).await?;
        let mut v = cur.value.clone();
        match attr {
            "EnableDnsSupport" => v.enable_dns_support = value,
            "EnableDnsHostnames" => v.enable_dns_hostnames = value,
            _ => v.enable_network_address_usage_metrics = value,
        }
        let k = keys::vpc(&ctx.region, &id);
        Ok((
            Txn::new()
                .require_revision(&k, cur.revision)
                .put(&k, encode(&k, &v)?),
            (),
        ))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("return", "true");
    Ok(w.finish())
}

pub(crate) async fn describe_attribute(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["VpcId", "Attribute"])?;
    let id = p.req("VpcId")?;
    let attr = p.req("Attribute")?;
    let v = crate::vpc(svc.store.as_ref(), &ctx.region, id).await?.value;
    let (tag, value) = match attr {
        "enableDnsSupport" => ("enableDnsSupport", v.enable_dns_support),
        "enableDnsHostnames" => ("enableDnsHostnames", v.enable_dns_hostnames),
        "enableNetworkAddressUsageMetrics" => (
            "enableNetworkAddressUsageMetrics",
            v.enable_network_address_usage_metrics,
        ),
        other => {
            return Err(Ec2Error::invalid(format!(
                "Value ({other}) for parameter attribute is invalid. Valid values: enableDnsSupport, enableDnsHostnames, enableNetworkAddressUsageMetrics"
            )));
        }
    };
    let mut w = XmlWriter::new();
    w.leaf("vpcId", &v.id);
    w.open(tag);
    w.leaf("value", if value { "true" } else { "false" });
    w.close(tag);
    Ok(w.finish())
}
