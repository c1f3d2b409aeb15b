//! The default VPC of a region: created on first use of the region with its default security
//! group and one default subnet in each zone, and given a default subnet in every zone that
//! appears later (the zones the region's container instances report).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gantry_store::{Store, StoreExt, Txn, encode};

use crate::cidr::Cidr;
use crate::error::Ec2Error;
use crate::model::{Defaults, Subnet, Vpc};
use crate::{commit_with_retry, keys, vpcs};

/// What the default VPC of each region looks like.
#[derive(Debug, Clone)]
pub struct DefaultNetwork {
    /// The default VPC's block; AWS uses `172.31.0.0/16`.
    pub cidr: Cidr,
    /// Zone suffixes every region has a default subnet in (`a`, `b`, `c`: `us-east-1a`, ...).
    pub zone_suffixes: Vec<String>,
}

impl Default for DefaultNetwork {
    fn default() -> Self {
        Self {
            cidr: Cidr::AWS_DEFAULT_VPC,
            zone_suffixes: vec!["a".into(), "b".into(), "c".into()],
        }
    }
}

impl DefaultNetwork {
    /// Default subnets are 16 times smaller than the VPC (`/16` → `/20`, as AWS's), at most
    /// `/28`.
    pub fn subnet_prefix(&self) -> u8 {
        (self.cidr.prefix() + 4).min(28)
    }
}

/// Where the zones of a region come from beyond the fixed ones: the availability zones the
/// region's container instances report (implemented by the composition root over ECS).
#[async_trait]
pub trait ZoneSource: Send + Sync {
    async fn zones(&self, region: &str) -> Vec<String>;
}

/// The zone id of a zone name: `us-east-1a` → `use1-az1` (region initials and number, zone
/// letter as a number); other names → `<region initials>-<name>`.
pub fn zone_id(region: &str, zone: &str) -> String {
    let abbrev: String = region
        .split('-')
        .map(|part| {
            if part.bytes().all(|b| b.is_ascii_digit()) || part.len() <= 2 {
                part.to_owned()
            } else {
                part[..1].to_owned()
            }
        })
        .collect();
    match zone.strip_prefix(region) {
        Some(letter) if letter.len() == 1 && letter.as_bytes()[0].is_ascii_lowercase() => {
            format!("{abbrev}-az{}", letter.as_bytes()[0] - b'a' + 1)
        }
        _ => format!("{abbrev}-{zone}"),
    }
}

/// Ensures the default network of a region, remembering what it already ensured.
pub struct Defaulter {
    store: Arc<dyn Store>,
    network: DefaultNetwork,
    zones: Option<Arc<dyn ZoneSource>>,
    ensured: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl std::fmt::Debug for Defaulter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defaulter")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl Defaulter {
    pub fn new(
        store: Arc<dyn Store>,
        network: DefaultNetwork,
        zones: Option<Arc<dyn ZoneSource>>,
    ) -> Self {
        Self {
            store,
            network,
            zones,
            ensured: Mutex::new(HashMap::new()),
        }
    }

    /// The zones the region should have a default subnet in.
    pub async fn wanted_zones(&self, region: &str) -> BTreeSet<String> {
        let mut want: BTreeSet<String> = self
            .network
            .zone_suffixes
            .iter()
            .map(|s| format!("{region}{s}"))
            .collect();
        if let Some(z) = &self.zones {
            want.extend(z.zones(region).await);
        }
        want
    }

    /// Creates what is missing of the region's default network.
    pub async fn ensure(&self, region: &str) -> Result<(), Ec2Error> {
        let want = self.wanted_zones(region).await;
        let done = self
            .ensured
            .lock()
            .map(|m| m.get(region).is_some_and(|z| z.is_superset(&want)))
            .unwrap_or(false);
        if done {
            return Ok(());
        }
        ensure_defaults(self.store.as_ref(), region, &self.network, &want).await?;
        if let Ok(mut m) = self.ensured.lock() {
            m.entry(region.to_owned()).or_default().extend(want);
        }
        Ok(())
    }
}

/// Creates the default VPC of `region` (with its default security group and a default subnet
/// per zone) if the region has none yet, else adds default subnets for zones that have none.
/// Idempotent and safe to run concurrently.
pub async fn ensure_defaults(
    store: &dyn Store,
    region: &str,
    network: &DefaultNetwork,
    zones: &BTreeSet<String>,
) -> Result<(), Ec2Error> {
    let marker_key = keys::defaults(region);
    let prefix = network.subnet_prefix();
    commit_with_retry(store, || async {
        let marker = store.get_typed::<Defaults>(&marker_key).await?;
        let Some(marker) = marker else {
            let vpc = vpcs::new_vpc(&network.cidr.to_string(), true);
            let group = vpcs::default_group(&vpc.id);
            let mut txn = Txn::new().require_absent(&marker_key);
            let mut made = Vec::new();
            for (i, zone) in zones.iter().enumerate() {
                let Some(block) = network.cidr.child(prefix, i as u64) else {
                    tracing::warn!(zone = %zone, "no room for a default subnet in the default VPC");
                    continue;
                };
                let s = new_default_subnet(region, &vpc.id, zone, block);
                let k = keys::subnet(region, &s.id);
                txn = txn.require_absent(&k).put(&k, encode(&k, &s)?);
                made.push(zone.clone());
            }
            let mut vpc = vpc;
            vpc.generation = made.len() as u64 + 1;
            let vk = keys::vpc(region, &vpc.id);
            let gk = keys::security_group(region, &group.id);
            let marker = Defaults {
                vpc_id: vpc.id.clone(),
                zones: made,
            };
            txn = txn
                .put(&vk, encode(&vk, &vpc)?)
                .put(&gk, encode(&gk, &group)?)
                .put(&marker_key, encode(&marker_key, &marker)?);
            tracing::info!(region, vpc = %vpc.id, "default VPC created");
            return Ok((txn, ()));
        };
        let missing: Vec<&String> = zones
            .iter()
            .filter(|z| !marker.value.zones.contains(z))
            .collect();
        if missing.is_empty() {
            return Ok((Txn::new(), ()));
        }
        let vk = keys::vpc(region, &marker.value.vpc_id);
        let Some(vpc) = store.get_typed::<Vpc>(&vk).await? else {
            // The default VPC was deleted: there is no default network to extend.
            return Ok((Txn::new(), ()));
        };
        let taken: Vec<Cidr> = store
            .scan_all_typed::<Subnet>(&keys::subnets(region))
            .await?
            .into_iter()
            .filter(|s| s.value.vpc_id == vpc.value.id)
            .filter_map(|s| s.value.cidr.parse().ok())
            .collect();
        let Ok(vpc_block) = vpc.value.cidr.parse::<Cidr>() else {
            return Ok((Txn::new(), ()));
        };
        let mut free = (0..(1u64 << (prefix - vpc_block.prefix())))
            .filter_map(|i| vpc_block.child(prefix, i))
            .filter(|b| !taken.iter().any(|t| t.overlaps(b)));
        let mut txn = Txn::new()
            .require_revision(&marker_key, marker.revision)
            .require_revision(&vk, vpc.revision);
        let mut new_marker = marker.value.clone();
        for zone in missing {
            let Some(block) = free.next() else {
                tracing::warn!(zone = %zone, "no room for a default subnet in the default VPC");
                break;
            };
            let s = new_default_subnet(region, &vpc.value.id, zone, block);
            let k = keys::subnet(region, &s.id);
            txn = txn.require_absent(&k).put(&k, encode(&k, &s)?);
            new_marker.zones.push(zone.clone());
            tracing::info!(region, zone = %zone, subnet = %s.id, "default subnet created");
        }
        let mut v = vpc.value.clone();
        v.generation += 1;
        txn = txn
            .put(&vk, encode(&vk, &v)?)
            .put(&marker_key, encode(&marker_key, &new_marker)?);
        Ok((txn, ()))
    })
    .await
}

fn new_default_subnet(region: &str, vpc_id: &str, zone: &str, block: Cidr) -> Subnet {
    Subnet {
        id: keys::new_id("subnet"),
        vpc_id: vpc_id.to_owned(),
        cidr: block.to_string(),
        availability_zone: zone.to_owned(),
        availability_zone_id: zone_id(region, zone),
        default_for_az: true,
        map_public_ip_on_launch: true,
        tags: Vec::new(),
    }
}

/// The region's default VPC id, if it has one.
pub async fn default_vpc_id(store: &dyn Store, region: &str) -> Result<Option<String>, Ec2Error> {
    let Some(marker) = store.get_typed::<Defaults>(&keys::defaults(region)).await? else {
        return Ok(None);
    };
    let exists = store
        .get_typed::<Vpc>(&keys::vpc(region, &marker.value.vpc_id))
        .await?
        .is_some();
    Ok(exists.then_some(marker.value.vpc_id))
}

/// The zones of a region: those with a default subnet, and those of any subnet.
pub async fn known_zones(store: &dyn Store, region: &str) -> Result<BTreeSet<String>, Ec2Error> {
    let mut zones: BTreeSet<String> = store
        .get_typed::<Defaults>(&keys::defaults(region))
        .await?
        .map(|m| m.value.zones.into_iter().collect())
        .unwrap_or_default();
    for s in store
        .scan_all_typed::<Subnet>(&keys::subnets(region))
        .await?
    {
        zones.insert(s.value.availability_zone);
    }
    Ok(zones)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::MemoryStore;

    #[test]
    fn zone_ids_follow_aws() {
        assert_eq!(zone_id("us-east-1", "us-east-1a"), "use1-az1");
        assert_eq!(zone_id("eu-west-3", "eu-west-3c"), "euw3-az3");
        assert_eq!(zone_id("us-east-1", "lab"), "use1-lab");
    }

    #[tokio::test]
    async fn default_network_is_created_once_and_grows_with_zones() {
        let store = MemoryStore::new();
        let net = DefaultNetwork::default();
        let zones: BTreeSet<String> = ["us-east-1a", "us-east-1b"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        ensure_defaults(&store, "us-east-1", &net, &zones)
            .await
            .expect("first");
        ensure_defaults(&store, "us-east-1", &net, &zones)
            .await
            .expect("again");
        let subnets = store
            .scan_all_typed::<Subnet>(&keys::subnets("us-east-1"))
            .await
            .expect("scan");
        assert_eq!(subnets.len(), 2);
        let mut cidrs: Vec<String> = subnets.iter().map(|s| s.value.cidr.clone()).collect();
        cidrs.sort();
        assert_eq!(cidrs, vec!["172.31.0.0/20", "172.31.16.0/20"]);
        assert!(subnets.iter().all(|s| s.value.default_for_az));
        let mut more = zones.clone();
        more.insert("us-east-1d".into());
        ensure_defaults(&store, "us-east-1", &net, &more)
            .await
            .expect("grow");
        let subnets = store
            .scan_all_typed::<Subnet>(&keys::subnets("us-east-1"))
            .await
            .expect("scan");
        assert_eq!(subnets.len(), 3);
        let d = subnets
            .iter()
            .find(|s| s.value.availability_zone == "us-east-1d")
            .expect("d");
        assert_eq!(d.value.cidr, "172.31.32.0/20");
        assert_eq!(d.value.availability_zone_id, "use1-az4");
        assert!(
            default_vpc_id(&store, "us-east-1")
                .await
                .expect("read")
                .is_some()
        );
        assert!(
            default_vpc_id(&store, "eu-west-1")
                .await
                .expect("read")
                .is_none()
        );
    }
}
