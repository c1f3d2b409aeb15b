//! Network interfaces of awsvpc tasks and the addresses of subnets.
//!
//! The control plane allocates: an interface and its private address are planned here as store
//! writes ([`plan_interfaces`]) that ECS commits in the same transaction as the tasks they belong
//! to, and removed by the writes of [`release_interface`] that ECS commits with the task's
//! STOPPED record. Each subnet's addresses live in one record (`ec2/<region>/ipam/<subnet>`)
//! written with compare-and-swap by every allocation and release, so two tasks can never hold one
//! address, across hosts and processes; an address outlives neither its task nor a restart of
//! any agent (agents never allocate). Also DescribeNetworkInterfaces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use gantry_aws_proto::ec2::write_items;
use gantry_aws_proto::query::XmlWriter;
use gantry_front::RequestContext;
use gantry_store::{Store, StoreExt, Txn, Versioned, encode};

use crate::cidr::{Cidr, pick_free};
use crate::error::Ec2Error;
use crate::model::{EniAttachment, Ipam, NetworkInterface, SecurityGroup, Subnet};
use crate::wire::{self, Params, one};
use crate::{Ec2Service, keys, scan_all};

/// One interface to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Subnets it may go in (all in the instance's zone); the one with the most free addresses
    /// is chosen.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// The task ARN.
    pub requester_id: String,
    /// The ENI's description (ECS writes the attachment ARN there).
    pub description: String,
    /// The EC2 instance id of the container instance it is attached to.
    pub instance_id: String,
    /// Spreads the search for a free address (any number, e.g. random bits).
    pub seed: u64,
}

/// Subnets by id, in the order asked; the first unknown one is an error.
pub async fn subnets(
    store: &dyn Store,
    region: &str,
    ids: &[String],
) -> Result<Vec<Subnet>, Ec2Error> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(crate::subnet(store, region, id).await?.value);
    }
    Ok(out)
}

/// Security groups by id, in the order asked; the first unknown one is an error.
pub async fn security_groups(
    store: &dyn Store,
    region: &str,
    ids: &[String],
) -> Result<Vec<SecurityGroup>, Ec2Error> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(crate::security_group(store, region, id).await?.value);
    }
    Ok(out)
}

/// The `default` security group of a VPC.
pub async fn default_security_group(
    store: &dyn Store,
    region: &str,
    vpc_id: &str,
) -> Result<Option<SecurityGroup>, Ec2Error> {
    Ok(
        scan_all::<SecurityGroup>(store, &keys::security_groups(region))
            .await?
            .into_iter()
            .map(|g| g.value)
            .find(|g| g.vpc_id == vpc_id && g.is_default()),
    )
}

/// The private DNS name EC2 gives an address (`ip-10-0-1-5.ec2.internal` in us-east-1,
/// `ip-10-0-1-5.<region>.compute.internal` elsewhere).
pub fn private_dns_name(region: &str, ip: Ipv4Addr) -> String {
    let host = format!("ip-{}", ip.to_string().replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

struct SubnetState {
    subnet: Versioned<Subnet>,
    block: Cidr,
    ipam: Option<Versioned<Ipam>>,
    used: BTreeSet<Ipv4Addr>,
    changed: Ipam,
}

/// Plans one interface per spec: the writes that create them and take their addresses (to be
/// committed with the caller's own records, all or nothing), and per spec the interface or why
/// it could not have one (no free address in any of its subnets). Fails when a subnet or group
/// does not exist.
pub async fn plan_interfaces(
    store: &dyn Store,
    region: &str,
    specs: &[InterfaceSpec],
    now: u64,
) -> Result<(Txn, Vec<Result<NetworkInterface, Ec2Error>>), Ec2Error> {
    let mut state: BTreeMap<String, SubnetState> = BTreeMap::new();
    for id in specs.iter().flat_map(|s| &s.subnets) {
        if state.contains_key(id) {
            continue;
        }
        let subnet = crate::subnet(store, region, id).await?;
        let block: Cidr = subnet
            .value
            .cidr
            .parse()
            .map_err(|_| Ec2Error::invalid(format!("subnet {id} has an invalid block")))?;
        let ipam = store.get_typed::<Ipam>(&keys::ipam(region, id)).await?;
        let current = ipam.as_ref().map(|i| i.value.clone()).unwrap_or_default();
        let used = current
            .addresses
            .keys()
            .filter_map(|a| a.parse().ok())
            .collect();
        state.insert(
            id.clone(),
            SubnetState {
                subnet,
                block,
                ipam,
                used,
                changed: current,
            },
        );
    }
    for g in specs.iter().flat_map(|s| &s.security_groups) {
        crate::security_group(store, region, g).await?;
    }
    let mut txn = Txn::new();
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        // The candidate subnet with the most free addresses.
        let best = spec
            .subnets
            .iter()
            .filter_map(|id| {
                state
                    .get(id)
                    .map(|s| (id, s.block.usable().saturating_sub(s.used.len() as u64)))
            })
            .max_by_key(|(_, free)| *free)
            .map(|(id, _)| id.clone());
        let Some(subnet_id) = best else {
            out.push(Err(Ec2Error::MissingParameter("subnets".into())));
            continue;
        };
        let Some(st) = state.get_mut(&subnet_id) else {
            continue;
        };
        let Some(ip) = pick_free(&st.block, &st.used, spec.seed) else {
            out.push(Err(Ec2Error::InsufficientFreeAddresses(subnet_id)));
            continue;
        };
        st.used.insert(ip);
        let eni = NetworkInterface {
            id: keys::new_id("eni"),
            subnet_id: subnet_id.clone(),
            vpc_id: st.subnet.value.vpc_id.clone(),
            availability_zone: st.subnet.value.availability_zone.clone(),
            availability_zone_id: st.subnet.value.availability_zone_id.clone(),
            private_ip: ip.to_string(),
            mac: keys::mac_of(ip),
            private_dns_name: private_dns_name(region, ip),
            security_groups: spec.security_groups.clone(),
            description: spec.description.clone(),
            requester_id: spec.requester_id.clone(),
            requester_managed: true,
            attachment: Some(EniAttachment {
                attachment_id: keys::new_id("eni-attach"),
                instance_id: spec.instance_id.clone(),
                device_index: 1,
                attach_time: now,
            }),
            created_at: now,
            tags: Vec::new(),
        };
        st.changed
            .addresses
            .insert(eni.private_ip.clone(), eni.id.clone());
        let k = keys::network_interface(region, &eni.id);
        txn = txn.require_absent(&k).put(&k, encode(&k, &eni)?);
        out.push(Ok(eni));
    }
    for (id, st) in &state {
        let before = st.ipam.as_ref().map(|i| &i.value);
        if before == Some(&st.changed) || (before.is_none() && st.changed.addresses.is_empty()) {
            continue;
        }
        let ik = keys::ipam(region, id);
        let sk = keys::subnet(region, id);
        txn = txn
            .require_revision(&sk, st.subnet.revision)
            .require_revision(&ik, st.ipam.as_ref().map_or(0, |i| i.revision))
            .put(&ik, encode(&ik, &st.changed)?);
    }
    Ok((txn, out))
}

/// The writes that delete interface `eni_id` and free its address; nothing when it is gone.
pub async fn release_interface(
    store: &dyn Store,
    region: &str,
    eni_id: &str,
) -> Result<Txn, Ec2Error> {
    let ek = keys::network_interface(region, eni_id);
    let Some(eni) = store.get_typed::<NetworkInterface>(&ek).await? else {
        return Ok(Txn::new());
    };
    let mut txn = Txn::new().require_revision(&ek, eni.revision).delete(&ek);
    let ik = keys::ipam(region, &eni.value.subnet_id);
    if let Some(ipam) = store.get_typed::<Ipam>(&ik).await? {
        let mut next = ipam.value.clone();
        if next.addresses.get(&eni.value.private_ip) == Some(&eni.value.id) {
            next.addresses.remove(&eni.value.private_ip);
            txn = txn
                .require_revision(&ik, ipam.revision)
                .put(&ik, encode(&ik, &next)?);
        }
    }
    Ok(txn)
}

/// One network interface by id.
pub async fn network_interface(
    store: &dyn Store,
    region: &str,
    id: &str,
) -> Result<Option<NetworkInterface>, Ec2Error> {
    Ok(store
        .get_typed::<NetworkInterface>(&keys::network_interface(region, id))
        .await?
        .map(|v| v.value))
}

fn eni_field(
    n: &NetworkInterface,
    names: &BTreeMap<String, String>,
    name: &str,
    ctx: &RequestContext,
) -> wire::FieldValues {
    let att = n.attachment.as_ref();
    match name {
        "network-interface-id" => one(&n.id),
        "subnet-id" => one(&n.subnet_id),
        "vpc-id" => one(&n.vpc_id),
        "availability-zone" => one(&n.availability_zone),
        "private-ip-address" | "addresses.private-ip-address" => one(&n.private_ip),
        "private-dns-name" => one(&n.private_dns_name),
        "mac-address" => one(&n.mac),
        "description" => one(&n.description),
        "requester-id" => one(&n.requester_id),
        "requester-managed" => one(n.requester_managed),
        "status" => one(if att.is_some() { "in-use" } else { "available" }),
        "owner-id" => one(&ctx.account_id),
        "interface-type" => one("interface"),
        "group-id" => Some(n.security_groups.clone()),
        "group-name" => Some(
            n.security_groups
                .iter()
                .filter_map(|g| names.get(g).cloned())
                .collect(),
        ),
        "attachment.instance-id" => Some(att.map(|a| a.instance_id.clone()).into_iter().collect()),
        "attachment.attachment-id" => {
            Some(att.map(|a| a.attachment_id.clone()).into_iter().collect())
        }
        "attachment.status" => Some(att.map(|_| "attached".to_owned()).into_iter().collect()),
        _ => None,
    }
}

/// DescribeNetworkInterfaces.
pub(crate) async fn describe(
    svc: &Ec2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Ec2Error> {
    p.allow(&["NetworkInterfaceId", "Filter", "MaxResults", "NextToken"])?;
    let ids = p.strings("NetworkInterfaceId");
    let filters = p.p.filters();
    let store = svc.store.as_ref();
    let all = scan_all::<NetworkInterface>(store, &keys::network_interfaces(&ctx.region)).await?;
    for id in &ids {
        crate::check_id("eni", id, "InvalidNetworkInterfaceID.Malformed")?;
        if !all.iter().any(|n| &n.value.id == id) {
            return Err(Ec2Error::NetworkInterfaceNotFound(id.clone()));
        }
    }
    let names: BTreeMap<String, String> =
        scan_all::<SecurityGroup>(store, &keys::security_groups(&ctx.region))
            .await?
            .into_iter()
            .map(|g| (g.value.id, g.value.name))
            .collect();
    let mut items = Vec::new();
    for n in all {
        let n = n.value;
        if !ids.is_empty() && !ids.contains(&n.id) {
            continue;
        }
        if wire::passes(&filters, &n.tags, |f| eni_field(&n, &names, f, ctx))? {
            items.push((n.id.clone(), n));
        }
    }
    let (page, next) = wire::paginate(items, p, "MaxResults", "NextToken")?;
    let mut w = XmlWriter::new();
    write_items(&mut w, "networkInterfaceSet", &page, |w, n| {
        wire::write_network_interface(w, n, &names, ctx)
    });
    if let Some(n) = next {
        w.leaf("nextToken", &n);
    }
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::{DefaultNetwork, ensure_defaults};
    use gantry_store::MemoryStore;

    async fn setup() -> (MemoryStore, Vec<Subnet>) {
        let store = MemoryStore::new();
        let zones = ["us-east-1a".to_owned()].into_iter().collect();
        let net = DefaultNetwork {
            cidr: "10.20.0.0/24".parse().expect("cidr"),
            zone_suffixes: vec!["a".into()],
        };
        ensure_defaults(&store, "us-east-1", &net, &zones)
            .await
            .expect("defaults");
        let subnets = scan_all::<Subnet>(&store, &keys::subnets("us-east-1"))
            .await
            .expect("scan")
            .into_iter()
            .map(|s| s.value)
            .collect();
        (store, subnets)
    }

    fn spec(subnet: &str, seed: u64) -> InterfaceSpec {
        InterfaceSpec {
            subnets: vec![subnet.to_owned()],
            security_groups: vec![],
            requester_id: "arn:aws:ecs:us-east-1:0:task/c/t".into(),
            description: "d".into(),
            instance_id: "i-0123456789abcdef0".into(),
            seed,
        }
    }

    #[tokio::test]
    async fn planned_interfaces_take_distinct_addresses_and_release_them() {
        let (store, subnets) = setup().await;
        let s = &subnets[0].id;
        // A /24 VPC gives a /28 default subnet: 11 usable addresses.
        let specs: Vec<InterfaceSpec> = (0..12).map(|i| spec(s, i * 7)).collect();
        let (txn, out) = plan_interfaces(&store, "us-east-1", &specs, 1)
            .await
            .expect("plan");
        assert!(store.commit(txn).await.expect("commit").is_committed());
        let ok: Vec<&NetworkInterface> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(ok.len(), 11);
        let ips: BTreeSet<&str> = ok.iter().map(|n| n.private_ip.as_str()).collect();
        assert_eq!(ips.len(), 11);
        assert!(matches!(
            out[11],
            Err(Ec2Error::InsufficientFreeAddresses(_))
        ));
        let release = release_interface(&store, "us-east-1", &ok[0].id)
            .await
            .expect("release");
        assert!(store.commit(release).await.expect("commit").is_committed());
        let (txn, out) = plan_interfaces(&store, "us-east-1", &[spec(s, 3)], 2)
            .await
            .expect("plan");
        assert!(store.commit(txn).await.expect("commit").is_committed());
        assert_eq!(out[0].as_ref().expect("eni").private_ip, ok[0].private_ip);
    }

    #[tokio::test]
    async fn concurrent_plans_conflict_instead_of_sharing_an_address() {
        let (store, subnets) = setup().await;
        let s = &subnets[0].id;
        let (a, _) = plan_interfaces(&store, "us-east-1", &[spec(s, 5)], 1)
            .await
            .expect("a");
        let (b, _) = plan_interfaces(&store, "us-east-1", &[spec(s, 5)], 1)
            .await
            .expect("b");
        assert!(store.commit(a).await.expect("a").is_committed());
        assert!(!store.commit(b).await.expect("b").is_committed());
    }
}
