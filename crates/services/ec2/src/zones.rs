//! DescribeAvailabilityZones and DescribeAccountAttributes.

use gantry_aws_proto::ec2::write_items;
use gantry_aws_proto::query::XmlWriter;
use gantry_front::RequestContext;

use crate::Ec2Service;
use crate::defaults::{default_vpc_id, known_zones, zone_id};
use crate::error::Ec2Error;
use crate::wire::{self, Params, one};

pub(crate) async fn describe_zones(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["ZoneName", "ZoneId", "AllAvailabilityZones", "Filter"])?;
    p.bool("AllAvailabilityZones")?;
    let names = p.strings("ZoneName");
    let ids = p.strings("ZoneId");
    let filters = p.p.filters();
    let mut zones = known_zones(svc.store.as_ref(), &ctx.region).await?;
    zones.extend(svc.defaults.wanted_zones(&ctx.region).await);
    for n in &names {
        if !zones.contains(n) {
            return Err(Ec2Error::invalid(format!("The zone '{n}' does not exist.")));
        }
    }
    let mut out = Vec::new();
    for z in zones {
        let id = zone_id(&ctx.region, &z);
        if (!names.is_empty() || !ids.is_empty()) && !names.contains(&z) && !ids.contains(&id) {
            continue;
        }
        let field = |n: &str| match n {
            "zone-name" => one(&z),
            "zone-id" => one(&id),
            "state" => one("available"),
            "region-name" | "group-name" | "network-border-group" => one(&ctx.region),
            "zone-type" => one("availability-zone"),
            "opt-in-status" => one("opt-in-not-required"),
            _ => None,
        };
        if wire::passes(&filters, &[], field)? {
            out.push((z.clone(), id));
        }
    }
    let mut w = XmlWriter::new();
    write_items(&mut w, "availabilityZoneInfo", &out, |w, (z, id)| {
        w.leaf("zoneName", z);
        w.leaf("zoneId", id);
        w.leaf("zoneState", "available");
        w.leaf("regionName", &ctx.region);
        w.leaf("groupName", &ctx.region);
        w.leaf("networkBorderGroup", &ctx.region);
        w.leaf("optInStatus", "opt-in-not-required");
        w.leaf("zoneType", "availability-zone");
        w.open("messageSet");
        w.close("messageSet");
    });
    Ok(w.finish())
}

pub(crate) async fn describe_account_attributes(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["AttributeName"])?;
    let wanted = p.strings("AttributeName");
    let default_vpc = default_vpc_id(svc.store.as_ref(), &ctx.region)
        .await?
        .unwrap_or_else(|| "none".to_owned());
    let all: Vec<(&str, Vec<String>)> = vec![
        ("supported-platforms", vec!["VPC".into()]),
        ("default-vpc", vec![default_vpc]),
        ("max-instances", vec!["20".into()]),
        ("vpc-max-security-groups-per-interface", vec!["5".into()]),
        ("max-elastic-ips", vec!["5".into()]),
        ("vpc-max-elastic-ips", vec!["5".into()]),
    ];
    for n in &wanted {
        if !all.iter().any(|(name, _)| name == n) {
            return Err(Ec2Error::invalid(format!(
                "Value ({n}) for parameter attributeName is invalid."
            )));
        }
    }
    let chosen: Vec<&(&str, Vec<String>)> = all
        .iter()
        .filter(|(n, _)| wanted.is_empty() || wanted.iter().any(|w| w == n))
        .collect();
    let mut w = XmlWriter::new();
    write_items(
        &mut w,
        "accountAttributeSet",
        &chosen,
        |w, (name, values)| {
            w.leaf("attributeName", name);
            write_items(w, "attributeValueSet", values, |w, v| {
                w.leaf("attributeValue", v)
            });
        },
    );
    Ok(w.finish())
}
