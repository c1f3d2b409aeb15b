//! CreateSubnet, DeleteSubnet, DescribeSubnets, ModifySubnetAttribute.

use gantry_aws_proto::ec2::write_items;
use gantry_aws_proto::query::XmlWriter;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};

use crate::cidr::Cidr;
use crate::defaults::{known_zones, zone_id};
use crate::error::Ec2Error;
use crate::model::{Ipam, Subnet};
use crate::wire::{self, Params, one};
use crate::{Ec2Service, commit_with_retry, keys, scan_all};

pub(crate) async fn create(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&[
        "VpcId",
        "CidrBlock",
        "AvailabilityZone",
        "AvailabilityZoneId",
        "TagSpecification",
    ])?;
    let vpc_id = p.req("VpcId")?.to_owned();
    let raw = p.req("CidrBlock")?.to_owned();
    let block: Cidr = raw.parse().map_err(|_| {
        Ec2Error::invalid(format!(
            "Value ({raw}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    let tags = p.tag_specifications("subnet")?;
    let store = svc.store.as_ref();
    let zones = known_zones(store, &ctx.region).await?;
    let zone = match (p.get("AvailabilityZone"), p.get("AvailabilityZoneId")) {
        (Some(_), Some(_)) => {
            return Err(Ec2Error::InvalidParameterCombination(
                "Only one of availabilityZone and availabilityZoneId may be given".into(),
            ));
        }
        (Some(z), None) => Some(z.to_owned()),
        (None, Some(id)) => Some(
            zones
                .iter()
                .find(|z| zone_id(&ctx.region, z) == id)
                .cloned()
                .ok_or_else(|| {
                    Ec2Error::invalid(format!(
                        "Value ({id}) for parameter availabilityZoneId is invalid. No such zone id."
                    ))
                })?,
        ),
        (None, None) => None,
    };
    if let Some(z) = &zone
        && !zones.contains(z)
    {
        return Err(Ec2Error::invalid(format!(
            "Value ({z}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
            zones.iter().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let subnet = commit_with_retry(store, || async {
        let vpc = crate::vpc(store, &ctx.region, &vpc_id).await?;
        let vpc_block: Cidr = vpc
            .value
            .cidr
            .parse()
            .map_err(|_| Ec2Error::invalid(format!("VPC {vpc_id} has an invalid block")))?;
        if !(16..=28).contains(&block.prefix()) || !vpc_block.contains_block(&block) {
            return Err(Ec2Error::InvalidSubnetRange(raw.clone()));
        }
        let siblings: Vec<Subnet> = scan_all::<Subnet>(store, &keys::subnets(&ctx.region))
            .await?
            .into_iter()
            .map(|s| s.value)
            .filter(|s| s.vpc_id == vpc_id)
            .collect();
        if siblings
            .iter()
            .filter_map(|s| s.cidr.parse::<Cidr>().ok())
            .any(|c| c.overlaps(&block))
        {
            return Err(Ec2Error::SubnetConflict(raw.clone()));
        }
        // No zone given: the zone with the fewest subnets of this VPC, as spreading would.
        let zone = match &zone {
            Some(z) => z.clone(),
            None => zones
                .iter()
                .min_by_key(|z| {
                    siblings
                        .iter()
                        .filter(|s| &s.availability_zone == *z)
                        .count()
                })
                .cloned()
                .unwrap_or_else(|| format!("{}a", ctx.region)),
        };
        let s = Subnet {
            id: keys::new_id("subnet"),
            vpc_id: vpc_id.clone(),
            cidr: block.to_string(),
            availability_zone_id: zone_id(&ctx.region, &zone),
            availability_zone: zone,
            default_for_az: false,
            map_public_ip_on_launch: false,
            tags: tags.clone(),
        };
        let mut v = vpc.value.clone();
        v.generation += 1;
        let vk = keys::vpc(&ctx.region, &vpc_id);
        let sk = keys::subnet(&ctx.region, &s.id);
        let txn = Txn::new()
            .require_revision(&vk, vpc.revision)
            .put(&vk, encode(&vk, &v)?)
            .require_absent(&sk)
            .put(&sk, encode(&sk, &s)?);
        Ok((txn, s))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.open("subnet");
    wire::write_subnet(&mut w, &subnet, block.usable(), ctx);
    w.close("subnet");
    Ok(w.finish())
}

pub(crate) async fn delete(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["SubnetId"])?;
    let id = p.req("SubnetId")?.to_owned();
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let s = crate::subnet(store, &ctx.region, &id).await?;
        let ik = keys::ipam(&ctx.region, &id);
        let ipam = store.get_typed::<Ipam>(&ik).await?;
        if ipam.as_ref().is_some_and(|i| !i.value.addresses.is_empty()) {
            return Err(Ec2Error::DependencyViolation(format!(
                "The subnet '{id}' has dependencies and cannot be deleted."
            )));
        }
        let vk = keys::vpc(&ctx.region, &s.value.vpc_id);
        let sk = keys::subnet(&ctx.region, &id);
        let mut txn = Txn::new()
            .require_revision(&sk, s.revision)
            .delete(&sk)
            .require_revision(&ik, ipam.as_ref().map_or(0, |i| i.revision))
            .delete(&ik);
        if let Some(vpc) = store.get_typed::<crate::model::Vpc>(&vk).await? {
            let mut v = vpc.value.clone();
            v.generation += 1;
            txn = txn
                .require_revision(&vk, vpc.revision)
                .put(&vk, encode(&vk, &v)?);
        }
        Ok((txn, ()))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("return", "true");
    Ok(w.finish())
}

/// Usable addresses of a subnet not taken by a network interface.
pub(crate) async fn available(svc: &Ec2Service, region: &str, s: &Subnet) -> Result<u64, Ec2Error> {
    let used = svc
        .store
        .get_typed::<Ipam>(&keys::ipam(region, &s.id))
        .await?
        .map_or(0, |i| i.value.addresses.len() as u64);
    let usable = s.cidr.parse::<Cidr>().map_or(0, |c| c.usable());
    Ok(usable.saturating_sub(used))
}

fn subnet_field(s: &Subnet, available: u64, name: &str, ctx: &RequestContext) -> wire::FieldValues {
    match name {
        "subnet-id" | "subnetId" => one(&s.id),
        "vpc-id" | "vpcId" => one(&s.vpc_id),
        "cidr" | "cidr-block" | "cidrBlock" => one(&s.cidr),
        "availability-zone" | "availabilityZone" => one(&s.availability_zone),
        "availability-zone-id" | "availabilityZoneId" => one(&s.availability_zone_id),
        "default-for-az" | "defaultForAz" => one(s.default_for_az),
        "map-public-ip-on-launch" => one(s.map_public_ip_on_launch),
        "state" => one("available"),
        "owner-id" => one(&ctx.account_id),
        "subnet-arn" => one(wire::subnet_arn(ctx, &s.id)),
        "available-ip-address-count" | "availableIpAddressCount" => one(available),
        _ => None,
    }
}

pub(crate) async fn describe(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["SubnetId", "Filter", "MaxResults", "NextToken"])?;
    let ids = p.strings("SubnetId");
    if !ids.is_empty() && p.get("MaxResults").is_some() {
        return Err(Ec2Error::InvalidParameterCombination(
            "The parameter subnetIds cannot be used with the parameter maxResults".into(),
        ));
    }
    let filters = p.p.filters();
    let all = scan_all::<Subnet>(svc.store.as_ref(), &keys::subnets(&ctx.region)).await?;
    for id in &ids {
        crate::check_id("subnet", id, "InvalidSubnetID.Malformed")?;
        if !all.iter().any(|s| &s.value.id == id) {
            return Err(Ec2Error::SubnetNotFound(id.clone()));
        }
    }
    let mut items = Vec::new();
    for s in all {
        let s = s.value;
        if !ids.is_empty() && !ids.contains(&s.id) {
            continue;
        }
        let avail = available(svc, &ctx.region, &s).await?;
        if wire::passes(&filters, &s.tags, |n| subnet_field(&s, avail, n, ctx))? {
            items.push((s.id.clone(), (s, avail)));
        }
    }
    let (page, next) = wire::paginate(items, p, "MaxResults", "NextToken")?;
    let mut w = XmlWriter::new();
    write_items(&mut w, "subnetSet", &page, |w, (s, avail)| {
        wire::write_subnet(w, s, *avail, ctx)
    });
    if let Some(n) = next {
        w.leaf("nextToken", &n);
    }
    Ok(w.finish())
}

pub(crate) async fn modify_attribute(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["SubnetId", "MapPublicIpOnLaunch"])?;
    let id = p.req("SubnetId")?.to_owned();
    let value =
        p.p.child("MapPublicIpOnLaunch")
            .map(|c| wire::parse_bool("MapPublicIpOnLaunch", c.get("Value")))
            .transpose()?
            .flatten()
            .ok_or_else(|| Ec2Error::MissingParameter("MapPublicIpOnLaunch".into()))?;
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let cur = crate::subnet(store, &ctx.region, &id).await?;
        let mut s = cur.value.clone();
        s.map_public_ip_on_launch = value;
        let k = keys::subnet(&ctx.region, &id);
        Ok((
            Txn::new()
                .require_revision(&k, cur.revision)
                .put(&k, encode(&k, &s)?),
            (),
        ))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("return", "true");
    Ok(w.finish())
}
