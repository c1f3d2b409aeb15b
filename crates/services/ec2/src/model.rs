//! The EC2 records Gantry stores: VPCs, subnets, security groups with their rules, network
//! interfaces, each subnet's address allocations, and the marker of the default VPC. Wire shapes
//! live in `wire.rs`; these are the stored forms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A tag on an EC2 resource (values may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// A VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
    pub cidr_association_id: String,
    pub is_default: bool,
    pub dhcp_options_id: String,
    pub instance_tenancy: String,
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
    #[serde(default)]
    pub enable_network_address_usage_metrics: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Bumped whenever a subnet or security group of the VPC is created or deleted, so that
    /// CIDR overlap, group-name uniqueness and DeleteVpc's dependency check hold under
    /// concurrency (compare-and-swap on the VPC record).
    #[serde(default)]
    pub generation: u64,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub default_for_az: bool,
    pub map_public_ip_on_launch: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// Where a security group rule admits traffic from (ingress) or to (egress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum Peer {
    /// An IPv4 CIDR block.
    Cidr(String),
    /// Members of another security group (by id).
    Group(String),
    /// A managed prefix list (stored and reported; it admits nothing here, since there are no
    /// prefix lists to expand).
    PrefixList(String),
}

/// One security group rule (`sgr-…`): one protocol/port range and one peer, as
/// DescribeSecurityGroupRules reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SgRule {
    pub id: String,
    /// `tcp`, `udp`, `icmp` or a protocol number as a string; `-1` for all.
    pub protocol: String,
    /// `-1` for all ports (or all ICMP types).
    pub from_port: i64,
    pub to_port: i64,
    pub peer: Peer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl SgRule {
    /// Whether two rules grant the same thing (descriptions aside).
    pub fn same_grant(&self, other: &SgRule) -> bool {
        self.protocol == other.protocol
            && self.from_port == other.from_port
            && self.to_port == other.to_port
            && self.peer == other.peer
    }
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    #[serde(default)]
    pub ingress: Vec<SgRule>,
    #[serde(default)]
    pub egress: Vec<SgRule>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl SecurityGroup {
    pub fn is_default(&self) -> bool {
        self.name == "default"
    }
}

/// The attachment of a network interface to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EniAttachment {
    pub attachment_id: String,
    pub instance_id: String,
    pub device_index: i64,
    pub attach_time: u64,
}

/// A network interface (an awsvpc task's ENI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    pub id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub private_ip: String,
    pub mac: String,
    pub private_dns_name: String,
    pub security_groups: Vec<String>,
    pub description: String,
    /// Who asked for it: the task ARN for task ENIs.
    pub requester_id: String,
    pub requester_managed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<EniAttachment>,
    pub created_at: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// The addresses in use in one subnet: private IP → network interface id. Written with
/// compare-and-swap by every allocation and release, so no address is ever handed out twice;
/// DeleteSubnet requires it empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
}

/// The default VPC of a region and the zones it has a default subnet in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Defaults {
    pub vpc_id: String,
    #[serde(default)]
    pub zones: Vec<String>,
}
