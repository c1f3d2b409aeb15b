//! Task networking shared by the control plane and the agents: the network attachment of an
//! awsvpc task (its ENI, address and subnet), and the security-group policy each agent enforces
//! on its host, as the control plane streams it (`GET /ec2/v1/network-policy`).

use serde::{Deserialize, Serialize};

/// The ENI of an awsvpc task, as the task record and the agent know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EniAttachment {
    /// The attachment id (a UUID), as DescribeTasks `attachments[].id` reports it.
    pub attachment_id: String,
    /// `eni-…`.
    pub eni_id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    /// The subnet's block, e.g. `10.0.1.0/24`.
    pub subnet_cidr: String,
    /// The subnet's router (its first address), the task's default gateway.
    pub gateway: String,
    pub private_ipv4: String,
    pub mac: String,
    pub private_dns_name: String,
    pub security_groups: Vec<String>,
    /// `assignPublicIp`: validated and reported; no public address is given.
    #[serde(default)]
    pub assign_public_ip: bool,
}

/// One rule of a policy: a protocol, a port range and the peers it admits (group references
/// already expanded to their members' addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// `-1` (all), `tcp`, `udp`, `icmp`, or a protocol number.
    pub protocol: String,
    /// For tcp/udp the port range; for icmp the type (`from`) and code (`to`), -1 for any.
    pub from_port: i64,
    pub to_port: i64,
    /// IPv4 blocks (`/32` for group members).
    pub cidrs: Vec<String>,
}

/// One interface the host must guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfacePolicy {
    pub eni_id: String,
    pub ip: String,
    pub vpc_cidr: String,
    pub ingress: Vec<PolicyRule>,
    pub egress: Vec<PolicyRule>,
}

/// Everything an agent needs to enforce security groups on its host: every interface of the
/// VPCs its own interfaces are in (so traffic between two tasks on one host is judged on both
/// ends), the blocks of those VPCs, and the blocks of the region's other VPCs (never routed to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    pub vpc_cidrs: Vec<String>,
    pub other_vpc_cidrs: Vec<String>,
    pub interfaces: Vec<InterfacePolicy>,
}

/// One line of the policy stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum NetworkPolicyMessage {
    /// A full snapshot; replaces the previous one.
    #[serde(rename = "policy")]
    Policy { policy: Box<NetworkPolicy> },
    /// Sent every `intervalSeconds` when nothing changed.
    #[serde(rename = "heartbeat")]
    Heartbeat { interval_seconds: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_lines_are_tagged() {
        let m = NetworkPolicyMessage::Heartbeat {
            interval_seconds: 5,
        };
        let text = serde_json::to_string(&m).expect("json");
        assert_eq!(text, r#"{"type":"heartbeat","intervalSeconds":5}"#);
        let p = NetworkPolicyMessage::Policy {
            policy: Box::default(),
        };
        let back: NetworkPolicyMessage =
            serde_json::from_str(&serde_json::to_string(&p).expect("json")).expect("parse");
        assert_eq!(back, p);
    }
}
