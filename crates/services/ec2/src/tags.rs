//! CreateTags, DeleteTags, DescribeTags over VPCs, subnets, security groups and network
//! interfaces (the resource is told by its id's prefix).

use gantry_aws_proto::ec2::write_items;
use gantry_aws_proto::query::XmlWriter;
use gantry_front::RequestContext;
use gantry_store::{Store, StoreExt, Txn, encode};

use crate::error::Ec2Error;
use crate::model::{NetworkInterface, SecurityGroup, Subnet, Tag, Vpc};
use crate::wire::{self, Params, one};
use crate::{Ec2Service, commit_with_retry, keys, scan_all};

/// The store key of a record from (region, id).
type KeyOf = fn(&str, &str) -> String;

/// The taggable kinds, by id prefix: the resource type and the key of its record.
fn kind_of(id: &str) -> Option<(&'static str, KeyOf)> {
    let prefix = id.split('-').next()?;
    let (t, key): (&'static str, KeyOf) = match prefix {
        "vpc" => ("vpc", keys::vpc),
        "subnet" => ("subnet", keys::subnet),
        "sg" => ("security-group", keys::security_group),
        "eni" => ("network-interface", keys::network_interface),
        _ => return None,
    };
    keys::is_id(prefix, id).then_some((t, key))
}

fn not_found(kind: &str, id: &str) -> Ec2Error {
    match kind {
        "vpc" => Ec2Error::VpcNotFound(id.to_owned()),
        "subnet" => Ec2Error::SubnetNotFound(id.to_owned()),
        "security-group" => Ec2Error::GroupNotFound(id.to_owned()),
        _ => Ec2Error::NetworkInterfaceNotFound(id.to_owned()),
    }
}

/// Reads, changes and writes the tags of one resource, whatever its kind.
async fn edit_tags(
    store: &dyn Store,
    region: &str,
    id: &str,
    f: &(dyn Fn(&mut Vec<Tag>) -> Result<(), Ec2Error> + Sync),
) -> Result<Txn, Ec2Error> {
    let Some((kind, key_of)) = kind_of(id) else {
        return Err(Ec2Error::Malformed {
            code: "InvalidID",
            id: id.to_owned(),
        });
    };
    let key = key_of(region, id);
    macro_rules! edit {
        ($t:ty, $field:ident) => {{
            let cur = store
                .get_typed::<$t>(&key)
                .await?
                .ok_or_else(|| not_found(kind, id))?;
            let mut v = cur.value.clone();
            f(&mut v.$field)?;
            Txn::new()
                .require_revision(&key, cur.revision)
                .put(&key, encode(&key, &v)?)
        }};
    }
    Ok(match kind {
        "vpc" => edit!(Vpc, tags),
        "subnet" => edit!(Subnet, tags),
        "security-group" => edit!(SecurityGroup, tags),
        _ => edit!(NetworkInterface, tags),
    })
}

fn merge(a: Txn, b: Txn) -> Txn {
    let mut a = a;
    a.conditions.extend(b.conditions);
    a.mutations.extend(b.mutations);
    a
}

fn request_tags(p: &Params) -> Vec<Tag> {
    p.p.list("Tag")
        .into_iter()
        .map(|t| Tag {
            key: t.get("Key").unwrap_or_default().to_owned(),
            value: t.get("Value").unwrap_or_default().to_owned(),
        })
        .collect()
}

pub(crate) async fn create(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["ResourceId", "Tag"])?;
    let ids = p.strings("ResourceId");
    if ids.is_empty() {
        return Err(Ec2Error::MissingParameter("ResourceId".into()));
    }
    let tags = request_tags(p);
    if tags.is_empty() {
        return Err(Ec2Error::MissingParameter("Tag".into()));
    }
    wire::validate_tags(&tags)?;
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let mut txn = Txn::new();
        for id in &ids {
            let t = edit_tags(store, &ctx.region, id, &|current| {
                wire::merge_tags(current, &tags)
            })
            .await?;
            txn = merge(txn, t);
        }
        Ok((txn, ()))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("return", "true");
    Ok(w.finish())
}

pub(crate) async fn delete(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["ResourceId", "Tag"])?;
    let ids = p.strings("ResourceId");
    if ids.is_empty() {
        return Err(Ec2Error::MissingParameter("ResourceId".into()));
    }
    // Each `Tag.N` removes its key, or only that key with that value when `Value` is given;
    // no tags at all removes every tag.
    let selectors: Vec<(String, Option<String>)> =
        p.p.list("Tag")
            .into_iter()
            .map(|t| {
                (
                    t.get("Key").unwrap_or_default().to_owned(),
                    t.get("Value").map(str::to_owned),
                )
            })
            .collect();
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let mut txn = Txn::new();
        for id in &ids {
            let t = edit_tags(store, &ctx.region, id, &|current| {
                if selectors.is_empty() {
                    current.clear();
                } else {
                    current.retain(|t| {
                        !selectors
                            .iter()
                            .any(|(k, v)| *k == t.key && v.as_ref().is_none_or(|v| *v == t.value))
                    });
                }
                Ok(())
            })
            .await?;
            txn = merge(txn, t);
        }
        Ok((txn, ()))
    })
    .await?;
    let mut w = XmlWriter::new();
    w.leaf("return", "true");
    Ok(w.finish())
}

pub(crate) async fn describe(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["Filter", "MaxResults", "NextToken"])?;
    let filters = p.p.filters();
    let store = svc.store.as_ref();
    let r = &ctx.region;
    let mut all: Vec<(String, &'static str, Vec<Tag>)> = Vec::new();
    for v in scan_all::<Vpc>(store, &keys::vpcs(r)).await? {
        all.push((v.value.id, "vpc", v.value.tags));
    }
    for s in scan_all::<Subnet>(store, &keys::subnets(r)).await? {
        all.push((s.value.id, "subnet", s.value.tags));
    }
    for g in scan_all::<SecurityGroup>(store, &keys::security_groups(r)).await? {
        all.push((g.value.id, "security-group", g.value.tags));
    }
    for n in scan_all::<NetworkInterface>(store, &keys::network_interfaces(r)).await? {
        all.push((n.value.id, "network-interface", n.value.tags));
    }
    let mut items = Vec::new();
    for (id, kind, tags) in all {
        for t in tags {
            let field = |n: &str| match n {
                "key" => one(&t.key),
                "value" => one(&t.value),
                "resource-id" => one(&id),
                "resource-type" => one(kind),
                _ => None,
            };
            if wire::passes(&filters, std::slice::from_ref(&t), field)? {
                items.push((format!("{id}\u{1}{}", t.key), (id.clone(), kind, t)));
            }
        }
    }
    let (page, next) = wire::paginate(items, p, "MaxResults", "NextToken")?;
    let mut w = XmlWriter::new();
    write_items(&mut w, "tagSet", &page, |w, (id, kind, t)| {
        w.leaf("resourceId", id);
        w.leaf("resourceType", kind);
        w.leaf("key", &t.key);
        w.leaf("value", &t.value);
    });
    if let Some(n) = next {
        w.leaf("nextToken", &n);
    }
    Ok(w.finish())
}
