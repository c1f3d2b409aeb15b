//! The simulated fleet: which instance types, zones and custom attributes each instance gets.
//! Pure and deterministic for a given seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// An EC2 instance type as the ECS agent would register it: CPU units (1024 per vCPU) and the
/// memory left for tasks in MiB (the agent keeps some for the OS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceType {
    pub name: &'static str,
    pub cpu: u32,
    pub memory_mib: u32,
    /// Relative share of the fleet.
    pub weight: u32,
}

/// The default mix: mostly general purpose, some compute and memory optimised hosts.
pub const DEFAULT_TYPES: &[InstanceType] = &[
    InstanceType {
        name: "m5.large",
        cpu: 2048,
        memory_mib: 7680,
        weight: 40,
    },
    InstanceType {
        name: "m5.xlarge",
        cpu: 4096,
        memory_mib: 15616,
        weight: 30,
    },
    InstanceType {
        name: "c5.2xlarge",
        cpu: 8192,
        memory_mib: 15360,
        weight: 20,
    },
    InstanceType {
        name: "r5.large",
        cpu: 2048,
        memory_mib: 15872,
        weight: 10,
    },
];

/// The value of the custom `stack` attribute each instance gets, half each.
pub const STACKS: [&str; 2] = ["blue", "green"];

/// Ports the ECS agent reserves on every instance (SSH, Docker, the agent's own).
const RESERVED_PORTS: [&str; 5] = ["22", "2375", "2376", "51678", "51679"];

/// One simulated container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Position in the fleet, 0-based.
    pub index: usize,
    pub instance_type: InstanceType,
    pub availability_zone: String,
    pub stack: &'static str,
}

impl InstanceSpec {
    /// The `RegisterContainerInstance` request of this instance.
    pub fn register_request(&self, cluster: &str) -> Value {
        let mut attributes = vec![
            json!({"name": "ecs.availability-zone", "value": self.availability_zone}),
            json!({"name": "ecs.instance-type", "value": self.instance_type.name}),
            json!({"name": "ecs.os-type", "value": "linux"}),
            json!({"name": "ecs.cpu-architecture", "value": "x86_64"}),
            json!({"name": "stack", "value": self.stack}),
        ];
        let flags = (17..=44)
            .map(|m| format!("com.amazonaws.ecs.capability.docker-remote-api.1.{m}"))
            .chain(
                ["json-file", "awslogs", "none"]
                    .map(|d| format!("com.amazonaws.ecs.capability.logging-driver.{d}")),
            )
            .chain(
                [
                    "ecs.capability.container-health-check",
                    "ecs.capability.container-ordering",
                    "ecs.capability.task-cpu-mem-limit",
                    "ecs.capability.full-sync",
                ]
                .map(str::to_owned),
            );
        attributes.extend(flags.map(|name| json!({"name": name})));
        json!({
            "cluster": cluster,
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": self.instance_type.cpu},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": self.instance_type.memory_mib},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": RESERVED_PORTS},
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
            ],
            "attributes": attributes,
            "versionInfo": {
                "agentVersion": concat!("gantry-sim ", env!("CARGO_PKG_VERSION")),
                "agentHash": "simulated",
                "dockerVersion": "simulated",
            },
        })
    }
}

/// `count` instances: zones `<region>a/b/c` round-robin (so they balance exactly), types drawn
/// by weight and `stack` drawn evenly from a generator seeded with `seed`.
pub fn fleet(region: &str, count: usize, seed: u64, types: &[InstanceType]) -> Vec<InstanceSpec> {
    let mut rng = StdRng::seed_from_u64(seed);
    let total: u32 = types.iter().map(|t| t.weight).sum();
    (0..count)
        .map(|index| {
            let mut pick = rng.random_range(0..total.max(1));
            let instance_type = *types
                .iter()
                .find(|t| {
                    if pick < t.weight {
                        true
                    } else {
                        pick -= t.weight;
                        false
                    }
                })
                .unwrap_or(&types[0]);
            let zone = ["a", "b", "c"][index % 3];
            InstanceSpec {
                index,
                instance_type,
                availability_zone: format!("{region}{zone}"),
                stack: STACKS[rng.random_range(0..STACKS.len())],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_fleet() {
        let a = fleet("us-east-1", 500, 7, DEFAULT_TYPES);
        assert_eq!(a, fleet("us-east-1", 500, 7, DEFAULT_TYPES));
        assert_ne!(a, fleet("us-east-1", 500, 8, DEFAULT_TYPES));
    }

    #[test]
    fn fleet_mixes_zones_types_and_stacks() {
        let f = fleet("eu-west-1", 3000, 1, DEFAULT_TYPES);
        for zone in ["eu-west-1a", "eu-west-1b", "eu-west-1c"] {
            assert_eq!(
                f.iter().filter(|i| i.availability_zone == zone).count(),
                1000
            );
        }
        for t in DEFAULT_TYPES {
            let n = f.iter().filter(|i| i.instance_type == *t).count();
            let expected = 3000 * t.weight as usize / 100;
            assert!(n.abs_diff(expected) < expected / 4, "{}: {n}", t.name);
        }
        let blue = f.iter().filter(|i| i.stack == "blue").count();
        assert!((1300..1700).contains(&blue), "blue: {blue}");
    }

    #[test]
    fn registration_carries_resources_and_attributes() {
        let spec = &fleet("us-east-1", 1, 3, DEFAULT_TYPES)[0];
        let r = spec.register_request("c1");
        assert_eq!(r["cluster"], "c1");
        assert_eq!(
            r["totalResources"][0]["integerValue"],
            spec.instance_type.cpu
        );
        assert_eq!(
            r["totalResources"][1]["integerValue"],
            spec.instance_type.memory_mib
        );
        let attr = |n: &str| {
            r["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == n))
                .map(|x| x["value"].clone())
        };
        assert_eq!(attr("ecs.availability-zone"), Some(json!("us-east-1a")));
        assert_eq!(
            attr("ecs.instance-type"),
            Some(json!(spec.instance_type.name))
        );
        assert_eq!(attr("stack"), Some(json!(spec.stack)));
        assert_eq!(
            attr("com.amazonaws.ecs.capability.logging-driver.awslogs"),
            Some(Value::Null)
        );
    }
}
