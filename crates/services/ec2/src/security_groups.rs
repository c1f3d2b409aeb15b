//! CreateSecurityGroup, DeleteSecurityGroup, DescribeSecurityGroups, DescribeSecurityGroupRules,
//! Authorize/RevokeSecurityGroupIngress/Egress. Rules are stored one per peer (`sgr-…`) and
//! reported grouped into IpPermissions as EC2 does.

use gantry_aws_proto::ec2::{Ec2Params, write_items};
use gantry_aws_proto::query::XmlWriter;
use gantry_front::RequestContext;
use gantry_store::{Txn, Versioned, encode};

use crate::cidr::Cidr;
use crate::defaults::default_vpc_id;
use crate::error::Ec2Error;
use crate::model::{NetworkInterface, Peer, SecurityGroup, SgRule};
use crate::wire::{self, Params, one};
use crate::{Ec2Service, commit_with_retry, keys, scan_all, vpcs};

/// The canonical protocol word: `-1` for all, `tcp`, `udp`, `icmp`, else the number.
pub(crate) fn protocol(raw: &str) -> Result<String, Ec2Error> {
    let p = raw.trim().to_ascii_lowercase();
    Ok(match p.as_str() {
        "-1" | "all" => "-1".into(),
        "tcp" | "6" => "tcp".into(),
        "udp" | "17" => "udp".into(),
        "icmp" | "1" => "icmp".into(),
        "icmpv6" | "58" => {
            return Err(Ec2Error::UnsupportedParameter(
                "IpProtocol icmpv6 (IPv6)".into(),
            ));
        }
        n => match n.parse::<u16>() {
            Ok(v) if v <= 255 => v.to_string(),
            _ => {
                return Err(Ec2Error::invalid(format!(
                    "Invalid value '{raw}' for IP protocol. Unknown protocol."
                )));
            }
        },
    })
}

fn ports(proto: &str, from: Option<i64>, to: Option<i64>) -> Result<(i64, i64), Ec2Error> {
    match proto {
        "tcp" | "udp" => {
            let (Some(f), Some(t)) = (from, to) else {
                return Err(Ec2Error::invalid(
                    "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange",
                ));
            };
            if !(0..=65535).contains(&f) || !(0..=65535).contains(&t) || f > t {
                return Err(Ec2Error::invalid(format!(
                    "Invalid value '{f}-{t}' for portRange. Ports must be between 0 and 65535 and fromPort must not exceed toPort."
                )));
            }
            Ok((f, t))
        }
        "icmp" => {
            let (f, t) = (from.unwrap_or(-1), to.unwrap_or(-1));
            if !(-1..=255).contains(&f) || !(-1..=255).contains(&t) {
                return Err(Ec2Error::invalid(format!(
                    "Invalid value '{f}/{t}' for ICMP type/code."
                )));
            }
            Ok((f, t))
        }
        // All protocols, or a protocol without ports: every port.
        _ => Ok((-1, -1)),
    }
}

fn check_cidr(raw: &str) -> Result<String, Ec2Error> {
    raw.parse::<Cidr>()
        .map(|c| c.to_string())
        .map_err(|_| Ec2Error::invalid(format!("CIDR block {raw} is malformed")))
}

fn describe_text(d: Option<&str>) -> Result<Option<String>, Ec2Error> {
    match d {
        Some(d) if d.chars().count() > 255 => Err(Ec2Error::invalid(
            "Rule descriptions must be at most 255 characters.",
        )),
        Some(d) => Ok(Some(d.to_owned())),
        None => Ok(None),
    }
}

/// The rules a request names: `IpPermissions.N` and/or the flat members (`IpProtocol`,
/// `FromPort`, `ToPort`, `CidrIp`, `SourceSecurityGroupName`). Group peers are resolved to ids
/// in `vpc_groups`.
fn requested_rules(p: &Params, vpc_groups: &[SecurityGroup]) -> Result<Vec<SgRule>, Ec2Error> {
    let mut out = Vec::new();
    let find_group = |id: Option<&str>, name: Option<&str>| -> Result<String, Ec2Error> {
        match (id, name) {
            (Some(id), _) => {
                crate::check_id("sg", id, "InvalidGroupId.Malformed")?;
                vpc_groups
                    .iter()
                    .find(|g| g.id == id)
                    .map(|g| g.id.clone())
                    .ok_or_else(|| Ec2Error::GroupNotFound(id.to_owned()))
            }
            (None, Some(name)) => vpc_groups
                .iter()
                .find(|g| g.name == name)
                .map(|g| g.id.clone())
                .ok_or_else(|| Ec2Error::GroupNotFound(name.to_owned())),
            (None, None) => Err(Ec2Error::MissingParameter("GroupId".into())),
        }
    };
    let perm = |node: &Ec2Params, out: &mut Vec<SgRule>| -> Result<(), Ec2Error> {
        let proto = protocol(
            node.get("IpProtocol")
                .ok_or_else(|| Ec2Error::MissingParameter("IpProtocol".into()))?,
        )?;
        let (from, to) = ports(
            &proto,
            wire::parse_int("FromPort", node.get("FromPort"))?,
            wire::parse_int("ToPort", node.get("ToPort"))?,
        )?;
        if !node.list("Ipv6Ranges").is_empty() {
            return Err(Ec2Error::UnsupportedParameter("Ipv6Ranges (IPv6)".into()));
        }
        let mut peers = Vec::new();
        for r in node.list("IpRanges") {
            let cidr = r
                .get("CidrIp")
                .ok_or_else(|| Ec2Error::MissingParameter("CidrIp".into()))?;
            peers.push((
                Peer::Cidr(check_cidr(cidr)?),
                describe_text(r.get("Description"))?,
            ));
        }
        for g in node.list("Groups") {
            let id = find_group(g.get("GroupId"), g.get("GroupName"))?;
            peers.push((Peer::Group(id), describe_text(g.get("Description"))?));
        }
        for pl in node.list("PrefixListIds") {
            let id = pl
                .get("PrefixListId")
                .ok_or_else(|| Ec2Error::MissingParameter("PrefixListId".into()))?;
            if !keys::is_id("pl", id) {
                return Err(Ec2Error::Malformed {
                    code: "InvalidPrefixListId.Malformed",
                    id: id.to_owned(),
                });
            }
            peers.push((
                Peer::PrefixList(id.to_owned()),
                describe_text(pl.get("Description"))?,
            ));
        }
        if peers.is_empty() {
            return Err(Ec2Error::MissingParameter(
                "IpRanges, Groups or PrefixListIds".into(),
            ));
        }
        for (peer, description) in peers {
            out.push(SgRule {
                id: keys::new_id("sgr"),
                protocol: proto.clone(),
                from_port: from,
                to_port: to,
                peer,
                description,
            });
        }
        Ok(())
    };
    for node in p.p.list("IpPermissions") {
        perm(node, &mut out)?;
    }
    // The flat form (older SDKs): one rule from the top-level members.
    let flat_peer = match (p.get("CidrIp"), p.get("SourceSecurityGroupName")) {
        (Some(c), None) => Some(Peer::Cidr(check_cidr(c)?)),
        (None, Some(n)) => Some(Peer::Group(find_group(None, Some(n))?)),
        (Some(_), Some(_)) => {
            return Err(Ec2Error::InvalidParameterCombination(
                "CidrIp and SourceSecurityGroupName cannot be given together".into(),
            ));
        }
        (None, None) => None,
    };
    if let Some(peer) = flat_peer {
        let proto = protocol(p.get("IpProtocol").unwrap_or("-1"))?;
        let (from, to) = ports(&proto, p.int("FromPort")?, p.int("ToPort")?)?;
        out.push(SgRule {
            id: keys::new_id("sgr"),
            protocol: proto,
            from_port: from,
            to_port: to,
            peer,
            description: None,
        });
    } else if p.get("IpProtocol").is_some() || p.get("FromPort").is_some() {
        return Err(Ec2Error::MissingParameter("CidrIp or IpPermissions".into()));
    }
    if out.is_empty() {
        return Err(Ec2Error::MissingParameter("IpPermissions".into()));
    }
    Ok(out)
}

/// EC2's wording of a rule in duplicate errors.
fn rule_text(r: &SgRule) -> String {
    let peer = match &r.peer {
        Peer::Cidr(c) => c.clone(),
        Peer::Group(g) => g.clone(),
        Peer::PrefixList(p) => p.clone(),
    };
    let proto = if r.protocol == "-1" {
        "ALL".to_owned()
    } else {
        r.protocol.to_ascii_uppercase()
    };
    format!(
        "peer: {peer}, {proto}, from port: {}, to port: {}, ALLOW",
        r.from_port, r.to_port
    )
}

/// The group a request names by `GroupId` (or, for ingress, `GroupName` in the default VPC).
async fn target_group(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<Versioned<SecurityGroup>, Ec2Error> {
    let store = svc.store.as_ref();
    if let Some(id) = p.get("GroupId") {
        return crate::security_group(store, &ctx.region, id).await;
    }
    let name = p
        .req("GroupName")
        .map_err(|_| Ec2Error::MissingParameter("GroupId".into()))?;
    let default_vpc = default_vpc_id(store, &ctx.region).await?;
    scan_all::<SecurityGroup>(store, &keys::security_groups(&ctx.region))
        .await?
        .into_iter()
        .find(|g| g.value.name == name && Some(&g.value.vpc_id) == default_vpc.as_ref())
        .ok_or_else(|| Ec2Error::GroupNotFound(name.to_owned()))
}

pub(crate) async fn create(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["GroupName", "GroupDescription", "VpcId", "TagSpecification"])?;
    let name = p.req("GroupName")?.to_owned();
    let description = p.req("GroupDescription")?.to_owned();
    if name.chars().count() > 255 || description.chars().count() > 255 {
        return Err(Ec2Error::invalid(
            "Group names and descriptions are limited to 255 characters.",
        ));
    }
    if name.starts_with("sg-") {
        return Err(Ec2Error::invalid(format!(
            "Group names may not be in the format sg-*: '{name}'."
        )));
    }
    if name == "default" {
        return Err(Ec2Error::GroupReserved(name));
    }
    let tags = p.tag_specifications("security-group")?;
    let store = svc.store.as_ref();
    let vpc_id = match p.get("VpcId") {
        Some(v) => v.to_owned(),
        None => default_vpc_id(store, &ctx.region)
            .await?
            .ok_or_else(|| Ec2Error::invalid("No default VPC for this user: give VpcId."))?,
    };
    let group = commit_with_retry(store, || async {
        let vpc = crate::vpc(store, &ctx.region, &vpc_id).await?;
        let taken = scan_all::<SecurityGroup>(store, &keys::security_groups(&ctx.region))
            .await?
            .into_iter()
            .any(|g| g.value.vpc_id == vpc_id && g.value.name == name);
        if taken {
            return Err(Ec2Error::GroupDuplicate {
                name: name.clone(),
                vpc: vpc_id.clone(),
            });
        }
        let g = SecurityGroup {
            id: keys::new_id("sg"),
            name: name.clone(),
            description: description.clone(),
            vpc_id: vpc_id.clone(),
            ingress: Vec::new(),
            egress: vec![vpcs::all_traffic(Peer::Cidr("0.0.0.0/0".into()))],
            tags: tags.clone(),
        };
        let mut v = vpc.value.clone();
        v.generation += 1;
        let vk = keys::vpc(&ctx.region, &vpc_id);
        let gk = keys::security_group(&ctx.region, &g.id);
        let txn = Txn::new()
            .require_revision(&vk, vpc.revision)
            .put(&vk, encode(&vk, &v)?)
            .require_absent(&gk)
            .put(&gk, encode(&gk, &g)?);
        Ok((txn, g))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("groupId", &group.id);
    wire::write_tags(&mut w, &group.tags);
    w.leaf("securityGroupArn", &wire::group_arn(ctx, &group.id));
    Ok(w.finish())
}

pub(crate) async fn delete(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["GroupId", "GroupName"])?;
    let store = svc.store.as_ref();
    let id = target_group(svc, p, ctx).await?.value.id;
    commit_with_retry(store, || async {
        let g = crate::security_group(store, &ctx.region, &id).await?;
        if g.value.is_default() {
            return Err(Ec2Error::CannotDelete { id: id.clone() });
        }
        let in_use = scan_all::<NetworkInterface>(store, &keys::network_interfaces(&ctx.region))
            .await?
            .iter()
            .any(|n| n.value.security_groups.contains(&id));
        let referenced = scan_all::<SecurityGroup>(store, &keys::security_groups(&ctx.region))
            .await?
            .iter()
            .filter(|o| o.value.id != id)
            .any(|o| {
                o.value
                    .ingress
                    .iter()
                    .chain(&o.value.egress)
                    .any(|r| r.peer == Peer::Group(id.clone()))
            });
        if in_use || referenced {
            return Err(Ec2Error::DependencyViolation(format!(
                "resource {id} has a dependent object"
            )));
        }
        let gk = keys::security_group(&ctx.region, &id);
        let mut txn = Txn::new().require_revision(&gk, g.revision).delete(&gk);
        let vk = keys::vpc(&ctx.region, &g.value.vpc_id);
        if let Ok(vpc) = crate::vpc(store, &ctx.region, &g.value.vpc_id).await {
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
    w.leaf("groupId", &id);
    Ok(w.finish())
}

fn rule_fields(rules: &[SgRule], field: &str) -> Option<Vec<String>> {
    Some(
        rules
            .iter()
            .filter_map(|r| match (field, &r.peer) {
                ("cidr", Peer::Cidr(c)) => Some(c.clone()),
                ("group-id", Peer::Group(g)) => Some(g.clone()),
                ("prefix-list-id", Peer::PrefixList(p)) => Some(p.clone()),
                ("protocol", _) => Some(r.protocol.clone()),
                ("from-port", _) => Some(r.from_port.to_string()),
                ("to-port", _) => Some(r.to_port.to_string()),
                _ => None,
            })
            .collect(),
    )
}

fn group_field(g: &SecurityGroup, name: &str, ctx: &RequestContext) -> wire::FieldValues {
    if let Some(f) = name.strip_prefix("egress.ip-permission.") {
        return matches!(
            f,
            "cidr" | "group-id" | "prefix-list-id" | "protocol" | "from-port" | "to-port"
        )
        .then(|| rule_fields(&g.egress, f))
        .flatten();
    }
    if let Some(f) = name.strip_prefix("ip-permission.") {
        return matches!(
            f,
            "cidr" | "group-id" | "prefix-list-id" | "protocol" | "from-port" | "to-port"
        )
        .then(|| rule_fields(&g.ingress, f))
        .flatten();
    }
    match name {
        "group-id" => one(&g.id),
        "group-name" => one(&g.name),
        "description" => one(&g.description),
        "vpc-id" => one(&g.vpc_id),
        "owner-id" => one(&ctx.account_id),
        _ => None,
    }
}

pub(crate) async fn describe(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["GroupId", "GroupName", "Filter", "MaxResults", "NextToken"])?;
    let ids = p.strings("GroupId");
    let names = p.strings("GroupName");
    if (!ids.is_empty() || !names.is_empty()) && p.get("MaxResults").is_some() {
        return Err(Ec2Error::InvalidParameterCombination(
            "The parameter groupIds or groupNames cannot be used with the parameter maxResults"
                .into(),
        ));
    }
    let store = svc.store.as_ref();
    let filters = p.p.filters();
    let all: Vec<SecurityGroup> =
        scan_all::<SecurityGroup>(store, &keys::security_groups(&ctx.region))
            .await?
            .into_iter()
            .map(|g| g.value)
            .collect();
    for id in &ids {
        crate::check_id("sg", id, "InvalidGroupId.Malformed")?;
        if !all.iter().any(|g| &g.id == id) {
            return Err(Ec2Error::GroupNotFound(id.clone()));
        }
    }
    let default_vpc = default_vpc_id(store, &ctx.region).await?;
    for n in &names {
        if !all
            .iter()
            .any(|g| &g.name == n && Some(&g.vpc_id) == default_vpc.as_ref())
        {
            return Err(Ec2Error::GroupNotFound(n.clone()));
        }
    }
    let mut items = Vec::new();
    for g in all {
        let named = (ids.is_empty() && names.is_empty())
            || ids.contains(&g.id)
            || (names.contains(&g.name) && Some(&g.vpc_id) == default_vpc.as_ref());
        if named && wire::passes(&filters, &g.tags, |n| group_field(&g, n, ctx))? {
            items.push((g.id.clone(), g));
        }
    }
    let (page, next) = wire::paginate(items, p, "MaxResults", "NextToken")?;
    let mut w = XmlWriter::new();
    write_items(&mut w, "securityGroupInfo", &page, |w, g| {
        wire::write_group(w, g, ctx)
    });
    if let Some(n) = next {
        w.leaf("nextToken", &n);
    }
    Ok(w.finish())
}

pub(crate) async fn describe_rules(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["SecurityGroupRuleId", "Filter", "MaxResults", "NextToken"])?;
    let ids = p.strings("SecurityGroupRuleId");
    let filters = p.p.filters();
    let all: Vec<SecurityGroup> =
        scan_all::<SecurityGroup>(svc.store.as_ref(), &keys::security_groups(&ctx.region))
            .await?
            .into_iter()
            .map(|g| g.value)
            .collect();
    let mut items = Vec::new();
    for g in &all {
        for (rules, egress) in [(&g.ingress, false), (&g.egress, true)] {
            for r in rules {
                if !ids.is_empty() && !ids.contains(&r.id) {
                    continue;
                }
                let field = |n: &str| match n {
                    "group-id" => one(&g.id),
                    "security-group-rule-id" => one(&r.id),
                    _ => None,
                };
                if wire::passes(&filters, &[], field)? {
                    items.push((r.id.clone(), (g, r, egress)));
                }
            }
        }
    }
    for id in &ids {
        if !items.iter().any(|(k, _)| k == id) {
            return Err(Ec2Error::RuleNotFound(id.clone()));
        }
    }
    let (page, next) = wire::paginate(items, p, "MaxResults", "NextToken")?;
    let mut w = XmlWriter::new();
    write_items(
        &mut w,
        "securityGroupRuleSet",
        &page,
        |w, (g, r, egress)| wire::write_rule(w, g, r, *egress, ctx),
    );
    if let Some(n) = next {
        w.leaf("nextToken", &n);
    }
    Ok(w.finish())
}

fn rules_mut(g: &mut SecurityGroup, egress: bool) -> &mut Vec<SgRule> {
    if egress {
        &mut g.egress
    } else {
        &mut g.ingress
    }
}

pub(crate) async fn authorize(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
    egress: bool,
) -> Result<String, Ec2Error> {
    let mut allowed = vec![
        "GroupId",
        "IpPermissions",
        "IpProtocol",
        "FromPort",
        "ToPort",
        "CidrIp",
        "SourceSecurityGroupName",
        "SourceSecurityGroupOwnerId",
    ];
    if !egress {
        allowed.push("GroupName");
    }
    p.allow(&allowed)?;
    let store = svc.store.as_ref();
    let id = target_group(svc, p, ctx).await?.value.id;
    let added = commit_with_retry(store, || async {
        let cur = crate::security_group(store, &ctx.region, &id).await?;
        let vpc_groups: Vec<SecurityGroup> =
            scan_all::<SecurityGroup>(store, &keys::security_groups(&ctx.region))
                .await?
                .into_iter()
                .map(|g| g.value)
                .filter(|g| g.vpc_id == cur.value.vpc_id)
                .collect();
        let new = requested_rules(p, &vpc_groups)?;
        let mut g = cur.value.clone();
        let rules = rules_mut(&mut g, egress);
        for (i, r) in new.iter().enumerate() {
            if rules.iter().any(|x| x.same_grant(r)) || new[..i].iter().any(|x| x.same_grant(r)) {
                return Err(Ec2Error::PermissionDuplicate(rule_text(r)));
            }
        }
        rules.extend(new.iter().cloned());
        if rules.len() > 120 {
            return Err(Ec2Error::invalid(
                "The maximum number of rules per security group has been reached (120).",
            ));
        }
        let k = keys::security_group(&ctx.region, &id);
        let txn = Txn::new()
            .require_revision(&k, cur.revision)
            .put(&k, encode(&k, &g)?);
        Ok((txn, (g, new)))
    })
    .await?;
    let (g, new) = added;
    let mut w = XmlWriter::new();
    w.leaf("return", "true");
    write_items(&mut w, "securityGroupRuleSet", &new, |w, r| {
        wire::write_rule(w, &g, r, egress, ctx)
    });
    Ok(w.finish())
}

pub(crate) async fn revoke(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
    egress: bool,
) -> Result<String, Ec2Error> {
    let mut allowed = vec![
        "GroupId",
        "IpPermissions",
        "IpProtocol",
        "FromPort",
        "ToPort",
        "CidrIp",
        "SourceSecurityGroupName",
        "SourceSecurityGroupOwnerId",
        "SecurityGroupRuleId",
    ];
    if !egress {
        allowed.push("GroupName");
    }
    p.allow(&allowed)?;
    let store = svc.store.as_ref();
    let id = target_group(svc, p, ctx).await?.value.id;
    let rule_ids = p.strings("SecurityGroupRuleId");
    let (g, revoked, unknown) = commit_with_retry(store, || async {
        let cur = crate::security_group(store, &ctx.region, &id).await?;
        let mut g = cur.value.clone();
        let mut revoked = Vec::new();
        let mut unknown = Vec::new();
        if !rule_ids.is_empty() {
            let rules = rules_mut(&mut g, egress);
            for rid in &rule_ids {
                match rules.iter().position(|r| &r.id == rid) {
                    Some(i) => revoked.push(rules.remove(i)),
                    None => return Err(Ec2Error::RuleNotFound(rid.clone())),
                }
            }
        } else {
            let vpc_groups: Vec<SecurityGroup> =
                scan_all::<SecurityGroup>(store, &keys::security_groups(&ctx.region))
                    .await?
                    .into_iter()
                    .map(|g| g.value)
                    .filter(|x| x.vpc_id == cur.value.vpc_id)
                    .collect();
            let wanted = requested_rules(p, &vpc_groups)?;
            let rules = rules_mut(&mut g, egress);
            for r in wanted {
                match rules.iter().position(|x| x.same_grant(&r)) {
                    Some(i) => revoked.push(rules.remove(i)),
                    None => unknown.push(r),
                }
            }
            if revoked.is_empty() {
                return Err(Ec2Error::PermissionNotFound);
            }
        }
        let k = keys::security_group(&ctx.region, &id);
        let txn = Txn::new()
            .require_revision(&k, cur.revision)
            .put(&k, encode(&k, &g)?);
        Ok((txn, (g, revoked, unknown)))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("return", "true");
    if !unknown.is_empty() {
        wire::write_permissions(&mut w, "unknownIpPermissionSet", &unknown, ctx);
    }
    write_items(&mut w, "revokedSecurityGroupRuleSet", &revoked, |w, r| {
        w.leaf("securityGroupRuleId", &r.id);
        w.leaf("groupId", &g.id);
        w.leaf("isEgress", if egress { "true" } else { "false" });
        w.leaf("ipProtocol", &r.protocol);
        w.leaf("fromPort", &r.from_port.to_string());
        w.leaf("toPort", &r.to_port.to_string());
        match &r.peer {
            Peer::Cidr(c) => w.leaf("cidrIpv4", c),
            Peer::Group(x) => w.leaf("referencedGroupId", x),
            Peer::PrefixList(x) => w.leaf("prefixListId", x),
        }
        if let Some(d) = &r.description {
            w.leaf("description", d);
        }
    });
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_normalised() {
        assert_eq!(protocol("TCP").expect("tcp"), "tcp");
        assert_eq!(protocol("6").expect("tcp"), "tcp");
        assert_eq!(protocol("all").expect("all"), "-1");
        assert_eq!(protocol("50").expect("esp"), "50");
        assert!(protocol("300").is_err());
        assert!(protocol("bogus").is_err());
    }

    #[test]
    fn port_ranges_are_checked() {
        assert_eq!(ports("tcp", Some(80), Some(80)).expect("80"), (80, 80));
        assert!(ports("tcp", Some(90), Some(80)).is_err());
        assert!(ports("udp", None, Some(53)).is_err());
        assert_eq!(ports("icmp", None, None).expect("all"), (-1, -1));
        assert_eq!(ports("-1", Some(1), Some(2)).expect("all"), (-1, -1));
    }
}
