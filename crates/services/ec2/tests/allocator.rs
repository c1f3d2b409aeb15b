//! The subnet allocator under random schedules: plans committed, plans racing from one snapshot,
//! releases. Whatever the order, no two live interfaces share an address, every address in use
//! belongs to exactly one live interface, and addresses are inside their subnet and never one
//! of the five AWS reserves.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use gantry_ec2::cidr::Cidr;
use gantry_ec2::defaults::{DefaultNetwork, ensure_defaults};
use gantry_ec2::ipam::{InterfaceSpec, plan_interfaces, release_interface};
use gantry_ec2::keys;
use gantry_ec2::model::{Ipam, NetworkInterface, Subnet};
use gantry_store::{MemoryStore, Store, StoreExt};
use proptest::prelude::*;

const REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
enum Step {
    /// Plan and commit `n` interfaces in subnet `s` (mod the subnet count).
    Plan { s: usize, n: usize, seed: u64 },
    /// Two plans from the same snapshot, committed one after the other.
    Race { s: usize, seed_a: u64, seed_b: u64 },
    /// Release the `k`-th live interface (mod the live count).
    Release { k: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..3, 1usize..6, any::<u64>()).prop_map(|(s, n, seed)| Step::Plan { s, n, seed }),
        (0usize..3, any::<u64>(), any::<u64>()).prop_map(|(s, seed_a, seed_b)| Step::Race {
            s,
            seed_a,
            seed_b
        }),
        any::<usize>().prop_map(|k| Step::Release { k }),
    ]
}

fn spec(subnet: &str, seed: u64) -> InterfaceSpec {
    InterfaceSpec {
        subnets: vec![subnet.to_owned()],
        security_groups: vec![],
        requester_id: "arn:aws:ecs:us-east-1:000000000000:task/c/t".into(),
        description: String::new(),
        instance_id: "i-0123456789abcdef0".into(),
        seed,
    }
}

async fn check(store: &MemoryStore, subnets: &[Subnet]) {
    let live: Vec<NetworkInterface> = store
        .scan_all_typed::<NetworkInterface>(&keys::network_interfaces(REGION))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    let ips: BTreeSet<&str> = live.iter().map(|n| n.private_ip.as_str()).collect();
    assert_eq!(
        ips.len(),
        live.len(),
        "two interfaces share an address: {live:?}"
    );
    for s in subnets {
        let block: Cidr = s.cidr.parse().unwrap();
        let ipam = store
            .get_typed::<Ipam>(&keys::ipam(REGION, &s.id))
            .await
            .unwrap()
            .map(|v| v.value)
            .unwrap_or_default();
        let expected: BTreeMap<String, String> = live
            .iter()
            .filter(|n| n.subnet_id == s.id)
            .map(|n| (n.private_ip.clone(), n.id.clone()))
            .collect();
        assert_eq!(
            ipam.addresses, expected,
            "allocations drifted from the interfaces"
        );
        for ip in ipam.addresses.keys() {
            let ip = ip.parse().unwrap();
            assert!(
                block.contains(ip) && !block.is_reserved(ip),
                "{ip} in {block}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn no_address_is_ever_held_twice(steps in proptest::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let store = MemoryStore::new();
            // A /24 VPC: three /28 default subnets of 11 usable addresses each, so schedules
            // fill them up.
            let net = DefaultNetwork { cidr: "10.30.0.0/24".parse().unwrap(), zone_suffixes: vec!["a".into(), "b".into(), "c".into()] };
            let zones = ["us-east-1a", "us-east-1b", "us-east-1c"].iter().map(|z| (*z).to_owned()).collect();
            ensure_defaults(&store, REGION, &net, &zones).await.unwrap();
            let subnets: Vec<Subnet> = store.scan_all_typed::<Subnet>(&keys::subnets(REGION)).await.unwrap().into_iter().map(|v| v.value).collect();
            for st in steps {
                match st {
                    Step::Plan { s, n, seed } => {
                        let sub = &subnets[s % subnets.len()].id;
                        let specs: Vec<InterfaceSpec> = (0..n as u64).map(|i| spec(sub, seed.wrapping_add(i * 13))).collect();
                        let (txn, _) = plan_interfaces(&store, REGION, &specs, 1).await.unwrap();
                        if !txn.is_empty() {
                            assert!(store.commit(txn).await.unwrap().is_committed(), "an uncontended plan commits");
                        }
                    }
                    Step::Race { s, seed_a, seed_b } => {
                        let sub = &subnets[s % subnets.len()].id;
                        let (a, _) = plan_interfaces(&store, REGION, &[spec(sub, seed_a)], 1).await.unwrap();
                        let (b, _) = plan_interfaces(&store, REGION, &[spec(sub, seed_b)], 1).await.unwrap();
                        let first = a.is_empty() || store.commit(a).await.unwrap().is_committed();
                        let second = !b.is_empty() && store.commit(b).await.unwrap().is_committed();
                        assert!(first);
                        assert!(!second, "a plan from a stale snapshot must not commit");
                    }
                    Step::Release { k } => {
                        let live = store.scan_all_typed::<NetworkInterface>(&keys::network_interfaces(REGION)).await.unwrap();
                        if live.is_empty() { continue; }
                        let id = live[k % live.len()].value.id.clone();
                        let txn = release_interface(&store, REGION, &id).await.unwrap();
                        assert!(store.commit(txn).await.unwrap().is_committed());
                    }
                }
                check(&store, &subnets).await;
            }
        });
    }
}
