//! The EC2 wire, one place: reading parameters (with the allow-list that refuses what Gantry
//! does not honour), tags, filters, pagination, and the XML of every resource.

use std::collections::BTreeMap;

use gantry_aws_proto::ec2::{Ec2Params, Filter, write_items};
use gantry_aws_proto::pagination::{decode_token, encode_token, iso8601};
use gantry_aws_proto::query::XmlWriter;
use gantry_front::RequestContext;

use crate::error::Ec2Error;
use crate::model::{NetworkInterface, Peer, SecurityGroup, SgRule, Subnet, Tag, Vpc};

/// The parameters of one request, with the checks every operation applies.
#[derive(Debug)]
pub struct Params {
    pub p: Ec2Params,
}

/// Parameters every operation accepts.
const COMMON: &[&str] = &["Action", "Version", "DryRun"];

impl Params {
    /// Refuses any top-level parameter outside `allowed` (and the common ones): a member the
    /// model has but Gantry cannot honour is never silently dropped.
    pub fn allow(&self, allowed: &[&str]) -> Result<(), Ec2Error> {
        for name in self.p.names() {
            if !COMMON.contains(&name) && !allowed.contains(&name) {
                return Err(Ec2Error::UnsupportedParameter(name.to_owned()));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.p.get(name)
    }

    /// A required, non-empty parameter.
    pub fn req(&self, name: &str) -> Result<&str, Ec2Error> {
        self.p
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Ec2Error::MissingParameter(name.to_owned()))
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.p.strings(name)
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, Ec2Error> {
        parse_bool(name, self.p.get(name))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, Ec2Error> {
        parse_int(name, self.p.get(name))
    }

    pub fn dry_run(&self) -> Result<bool, Ec2Error> {
        Ok(self.bool("DryRun")?.unwrap_or(false))
    }

    /// The tags of `TagSpecification.N` for `resource_type` (a specification for another type
    /// is refused, as EC2 does).
    pub fn tag_specifications(&self, resource_type: &str) -> Result<Vec<Tag>, Ec2Error> {
        let mut tags = Vec::new();
        for spec in self.p.list("TagSpecification") {
            let rt = spec.get("ResourceType").unwrap_or_default();
            if rt != resource_type {
                return Err(Ec2Error::invalid(format!(
                    "'{rt}' is not a valid taggable resource type for this operation."
                )));
            }
            for t in spec.list("Tag") {
                tags.push(Tag {
                    key: t.get("Key").unwrap_or_default().to_owned(),
                    value: t.get("Value").unwrap_or_default().to_owned(),
                });
            }
        }
        validate_tags(&tags)?;
        Ok(tags)
    }
}

pub fn parse_bool(name: &str, v: Option<&str>) -> Result<Option<bool>, Ec2Error> {
    match v {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(Ec2Error::invalid(format!(
            "Value ({v}) for parameter {name} is invalid. Expected: 'true' or 'false'."
        ))),
    }
}

pub fn parse_int(name: &str, v: Option<&str>) -> Result<Option<i64>, Ec2Error> {
    match v {
        None => Ok(None),
        Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            Ec2Error::invalid(format!(
                "Value ({v}) for parameter {name} is invalid. Expected an integer."
            ))
        }),
    }
}

/// EC2's tag rules: keys of 1-128 characters not starting with `aws:`, values up to 256, at most
/// 50 per resource.
pub fn validate_tags(tags: &[Tag]) -> Result<(), Ec2Error> {
    if tags.len() > 50 {
        return Err(Ec2Error::invalid(
            "The number of tags specified exceeds the maximum of 50.",
        ));
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(Ec2Error::invalid(format!(
                "Tag key '{}' must be between 1 and 128 characters.",
                t.key
            )));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(Ec2Error::invalid(
                "Tag keys starting with 'aws:' are reserved for internal use",
            ));
        }
        if t.value.chars().count() > 256 {
            return Err(Ec2Error::invalid(format!(
                "Tag value for key '{}' must be at most 256 characters.",
                t.key
            )));
        }
    }
    Ok(())
}

/// Sets `new` on `tags` (replacing values of existing keys), keeping the 50-tag limit.
pub fn merge_tags(tags: &mut Vec<Tag>, new: &[Tag]) -> Result<(), Ec2Error> {
    for t in new {
        match tags.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value = t.value.clone(),
            None => tags.push(t.clone()),
        }
    }
    validate_tags(tags)
}

/// The answer to a filter name for one resource: the resource's values for it, or `None` when
/// the filter name is unknown for this kind of resource.
pub type FieldValues = Option<Vec<String>>;

/// Whether a resource passes every filter (AND across filters, OR across a filter's values).
/// `fields` answers the resource's own filter names; `tag:<key>`, `tag-key` and `tag-value`
/// are answered from `tags`.
pub fn passes(
    filters: &[Filter],
    tags: &[Tag],
    fields: impl Fn(&str) -> FieldValues,
) -> Result<bool, Ec2Error> {
    for f in filters {
        let values: Vec<String> = if let Some(key) = f.name.strip_prefix("tag:") {
            tags.iter()
                .filter(|t| t.key == key)
                .map(|t| t.value.clone())
                .collect()
        } else if f.name == "tag-key" {
            tags.iter().map(|t| t.key.clone()).collect()
        } else if f.name == "tag-value" {
            tags.iter().map(|t| t.value.clone()).collect()
        } else {
            fields(&f.name).ok_or_else(|| Ec2Error::InvalidFilter(f.name.clone()))?
        };
        if !f.matches_any(values.iter().map(String::as_str)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One value as a filter sees it.
pub fn one(v: impl ToString) -> FieldValues {
    Some(vec![v.to_string()])
}

/// `MaxResults` (5..=1000 when given) and `NextToken` over items sorted by id: the page and the
/// token of the next one.
pub fn paginate<T>(
    items: Vec<(String, T)>,
    params: &Params,
    max_name: &str,
    token_name: &str,
) -> Result<(Vec<T>, Option<String>), Ec2Error> {
    let max = match params.int(max_name)? {
        None => None,
        Some(m) if (5..=1000).contains(&m) => Some(m as usize),
        Some(m) => {
            return Err(Ec2Error::invalid(format!(
                "Value ( {m} ) for parameter maxResults is invalid. Parameter must be between 5 and 1000."
            )));
        }
    };
    let after = match params.get(token_name).filter(|t| !t.is_empty()) {
        Some(t) => Some(decode_token(t).ok_or(Ec2Error::InvalidPaginationToken)?),
        None => None,
    };
    let mut items = items;
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .collect();
    match max {
        Some(m) if rest.len() > m => {
            let mut page = rest;
            let tail = page.split_off(m);
            drop(tail);
            let token = page.last().map(|(k, _)| encode_token(k));
            Ok((page.into_iter().map(|(_, v)| v).collect(), token))
        }
        _ => Ok((rest.into_iter().map(|(_, v)| v).collect(), None)),
    }
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

pub fn write_tags(w: &mut XmlWriter, tags: &[Tag]) {
    write_items(w, "tagSet", tags, |w, t| {
        w.leaf("key", &t.key);
        w.leaf("value", &t.value);
    });
}

pub fn write_vpc(w: &mut XmlWriter, v: &Vpc, ctx: &RequestContext) {
    w.leaf("vpcId", &v.id);
    w.leaf("ownerId", &ctx.account_id);
    w.leaf("state", "available");
    w.leaf("cidrBlock", &v.cidr);
    w.open("cidrBlockAssociationSet");
    w.open("item");
    w.leaf("cidrBlock", &v.cidr);
    w.leaf("associationId", &v.cidr_association_id);
    w.open("cidrBlockState");
    w.leaf("state", "associated");
    w.close("cidrBlockState");
    w.close("item");
    w.close("cidrBlockAssociationSet");
    w.open("ipv6CidrBlockAssociationSet");
    w.close("ipv6CidrBlockAssociationSet");
    w.leaf("dhcpOptionsId", &v.dhcp_options_id);
    w.leaf("instanceTenancy", &v.instance_tenancy);
    w.leaf("isDefault", bool_text(v.is_default));
    write_tags(w, &v.tags);
}

pub fn subnet_arn(ctx: &RequestContext, id: &str) -> String {
    format!("arn:aws:ec2:{}:{}:subnet/{id}", ctx.region, ctx.account_id)
}

pub fn write_subnet(w: &mut XmlWriter, s: &Subnet, available: u64, ctx: &RequestContext) {
    w.leaf("subnetId", &s.id);
    w.leaf("subnetArn", &subnet_arn(ctx, &s.id));
    w.leaf("state", "available");
    w.leaf("vpcId", &s.vpc_id);
    w.leaf("ownerId", &ctx.account_id);
    w.leaf("cidrBlock", &s.cidr);
    w.leaf("availableIpAddressCount", &available.to_string());
    w.leaf("availabilityZone", &s.availability_zone);
    w.leaf("availabilityZoneId", &s.availability_zone_id);
    w.leaf("defaultForAz", bool_text(s.default_for_az));
    w.leaf("mapPublicIpOnLaunch", bool_text(s.map_public_ip_on_launch));
    w.leaf("mapCustomerOwnedIpOnLaunch", "false");
    w.leaf("assignIpv6AddressOnCreation", "false");
    w.open("ipv6CidrBlockAssociationSet");
    w.close("ipv6CidrBlockAssociationSet");
    w.leaf("ipv6Native", "false");
    w.leaf("enableDns64", "false");
    w.open("privateDnsNameOptionsOnLaunch");
    w.leaf("hostnameType", "ip-name");
    w.leaf("enableResourceNameDnsARecord", "false");
    w.leaf("enableResourceNameDnsAAAARecord", "false");
    w.close("privateDnsNameOptionsOnLaunch");
    write_tags(w, &s.tags);
}

pub fn group_arn(ctx: &RequestContext, id: &str) -> String {
    format!(
        "arn:aws:ec2:{}:{}:security-group/{id}",
        ctx.region, ctx.account_id
    )
}

pub fn rule_arn(ctx: &RequestContext, id: &str) -> String {
    format!(
        "arn:aws:ec2:{}:{}:security-group-rule/{id}",
        ctx.region, ctx.account_id
    )
}

/// Rules grouped into IpPermissions by (protocol, from, to), in first-seen order.
pub fn write_permissions(w: &mut XmlWriter, tag: &str, rules: &[SgRule], ctx: &RequestContext) {
    let mut groups: Vec<(&str, i64, i64, Vec<&SgRule>)> = Vec::new();
    for r in rules {
        match groups
            .iter_mut()
            .find(|(p, f, t, _)| *p == r.protocol && *f == r.from_port && *t == r.to_port)
        {
            Some(g) => g.3.push(r),
            None => groups.push((&r.protocol, r.from_port, r.to_port, vec![r])),
        }
    }
    write_items(w, tag, &groups, |w, (proto, from, to, rs)| {
        w.leaf("ipProtocol", proto);
        if *proto != "-1" {
            w.leaf("fromPort", &from.to_string());
            w.leaf("toPort", &to.to_string());
        }
        let of = |f: fn(&Peer) -> bool| {
            rs.iter()
                .filter(|r| f(&r.peer))
                .copied()
                .collect::<Vec<_>>()
        };
        write_items(w, "groups", &of(|p| matches!(p, Peer::Group(_))), |w, r| {
            if let Peer::Group(g) = &r.peer {
                w.leaf("userId", &ctx.account_id);
                w.leaf("groupId", g);
            }
            if let Some(d) = &r.description {
                w.leaf("description", d);
            }
        });
        write_items(
            w,
            "ipRanges",
            &of(|p| matches!(p, Peer::Cidr(_))),
            |w, r| {
                if let Peer::Cidr(c) = &r.peer {
                    w.leaf("cidrIp", c);
                }
                if let Some(d) = &r.description {
                    w.leaf("description", d);
                }
            },
        );
        w.open("ipv6Ranges");
        w.close("ipv6Ranges");
        write_items(
            w,
            "prefixListIds",
            &of(|p| matches!(p, Peer::PrefixList(_))),
            |w, r| {
                if let Peer::PrefixList(p) = &r.peer {
                    w.leaf("prefixListId", p);
                }
                if let Some(d) = &r.description {
                    w.leaf("description", d);
                }
            },
        );
    });
}

pub fn write_group(w: &mut XmlWriter, g: &SecurityGroup, ctx: &RequestContext) {
    w.leaf("ownerId", &ctx.account_id);
    w.leaf("groupId", &g.id);
    w.leaf("groupName", &g.name);
    w.leaf("groupDescription", &g.description);
    w.leaf("vpcId", &g.vpc_id);
    w.leaf("securityGroupArn", &group_arn(ctx, &g.id));
    write_permissions(w, "ipPermissions", &g.ingress, ctx);
    write_permissions(w, "ipPermissionsEgress", &g.egress, ctx);
    write_tags(w, &g.tags);
}

pub fn write_rule(
    w: &mut XmlWriter,
    g: &SecurityGroup,
    r: &SgRule,
    egress: bool,
    ctx: &RequestContext,
) {
    w.leaf("securityGroupRuleId", &r.id);
    w.leaf("groupId", &g.id);
    w.leaf("groupOwnerId", &ctx.account_id);
    w.leaf("isEgress", bool_text(egress));
    w.leaf("ipProtocol", &r.protocol);
    w.leaf("fromPort", &r.from_port.to_string());
    w.leaf("toPort", &r.to_port.to_string());
    match &r.peer {
        Peer::Cidr(c) => w.leaf("cidrIpv4", c),
        Peer::PrefixList(p) => w.leaf("prefixListId", p),
        Peer::Group(id) => {
            w.open("referencedGroupInfo");
            w.leaf("groupId", id);
            w.leaf("userId", &ctx.account_id);
            w.close("referencedGroupInfo");
        }
    }
    if let Some(d) = &r.description {
        w.leaf("description", d);
    }
    w.open("tagSet");
    w.close("tagSet");
    w.leaf("securityGroupRuleArn", &rule_arn(ctx, &r.id));
}

pub fn write_network_interface(
    w: &mut XmlWriter,
    n: &NetworkInterface,
    group_names: &BTreeMap<String, String>,
    ctx: &RequestContext,
) {
    w.leaf("networkInterfaceId", &n.id);
    w.leaf("subnetId", &n.subnet_id);
    w.leaf("vpcId", &n.vpc_id);
    w.leaf("availabilityZone", &n.availability_zone);
    w.leaf("availabilityZoneId", &n.availability_zone_id);
    w.leaf("description", &n.description);
    w.leaf("ownerId", &ctx.account_id);
    w.leaf("requesterId", &n.requester_id);
    w.leaf("requesterManaged", bool_text(n.requester_managed));
    w.leaf(
        "status",
        if n.attachment.is_some() {
            "in-use"
        } else {
            "available"
        },
    );
    w.leaf("macAddress", &n.mac);
    w.leaf("privateIpAddress", &n.private_ip);
    w.leaf("privateDnsName", &n.private_dns_name);
    w.leaf("sourceDestCheck", "true");
    w.leaf("interfaceType", "interface");
    write_items(w, "groupSet", &n.security_groups, |w, g| {
        w.leaf("groupId", g);
        w.leaf("groupName", group_names.get(g).map_or("", String::as_str));
    });
    if let Some(a) = &n.attachment {
        w.open("attachment");
        w.leaf("attachmentId", &a.attachment_id);
        w.leaf("instanceId", &a.instance_id);
        w.leaf("instanceOwnerId", &ctx.account_id);
        w.leaf("deviceIndex", &a.device_index.to_string());
        w.leaf("networkCardIndex", "0");
        w.leaf("status", "attached");
        w.leaf(
            "attachTime",
            &iso8601(std::time::UNIX_EPOCH + std::time::Duration::from_millis(a.attach_time)),
        );
        w.leaf("deleteOnTermination", "false");
        w.close("attachment");
    }
    write_items(w, "privateIpAddressesSet", &[n], |w, n| {
        w.leaf("privateIpAddress", &n.private_ip);
        w.leaf("privateDnsName", &n.private_dns_name);
        w.leaf("primary", "true");
    });
    w.open("ipv6AddressesSet");
    w.close("ipv6AddressesSet");
    write_tags(w, &n.tags);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_aws_proto::query::QueryRequest;

    fn params(body: &str) -> Params {
        Params {
            p: Ec2Params::from_request(&QueryRequest::parse(body.as_bytes(), None)),
        }
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let p = params("Action=CreateVpc&CidrBlock=10.0.0.0%2F16&AmazonProvidedIpv6CidrBlock=true");
        let e = p.allow(&["CidrBlock"]).expect_err("ipv6 refused");
        assert_eq!(e.aws_code(), "InvalidParameter");
        assert!(e.to_string().contains("AmazonProvidedIpv6CidrBlock"));
        assert!(
            p.allow(&["CidrBlock", "AmazonProvidedIpv6CidrBlock"])
                .is_ok()
        );
    }

    #[test]
    fn filters_and_across_or_within() {
        let tags = vec![Tag {
            key: "Name".into(),
            value: "web".into(),
        }];
        let f = |n: &str, v: &[&str]| Filter {
            name: n.into(),
            values: v.iter().map(|s| (*s).to_owned()).collect(),
        };
        let fields = |n: &str| match n {
            "vpc-id" => one("vpc-1"),
            _ => None,
        };
        assert!(
            passes(
                &[f("vpc-id", &["vpc-2", "vpc-1"]), f("tag:Name", &["w*"])],
                &tags,
                fields
            )
            .expect("ok")
        );
        assert!(
            !passes(
                &[f("vpc-id", &["vpc-1"]), f("tag:Name", &["db"])],
                &tags,
                fields
            )
            .expect("ok")
        );
        let e = passes(&[f("nope", &["x"])], &tags, fields).expect_err("unknown filter");
        assert_eq!(e.to_string(), "The filter 'nope' is invalid");
    }

    #[test]
    fn pages_follow_next_token() {
        let items: Vec<(String, u32)> = (0..12).map(|i| (format!("id-{i:02}"), i)).collect();
        let (page, token) = paginate(
            items.clone(),
            &params("MaxResults=5"),
            "MaxResults",
            "NextToken",
        )
        .expect("page");
        assert_eq!(page, vec![0, 1, 2, 3, 4]);
        let token = token.expect("more");
        let (page, _) = paginate(
            items.clone(),
            &params(&format!("MaxResults=5&NextToken={token}")),
            "MaxResults",
            "NextToken",
        )
        .expect("page");
        assert_eq!(page, vec![5, 6, 7, 8, 9]);
        assert!(
            paginate(
                items.clone(),
                &params("MaxResults=4"),
                "MaxResults",
                "NextToken"
            )
            .is_err()
        );
        assert!(paginate(items, &params("NextToken=bogus"), "MaxResults", "NextToken").is_err());
    }
}
