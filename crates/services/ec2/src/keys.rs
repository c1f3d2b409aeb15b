//! Store keys and ids of EC2 records. Every key is scoped by region.
//!
//! - `ec2/<region>/vpc/<vpc-id>`, `ec2/<region>/subnet/<subnet-id>`,
//!   `ec2/<region>/sg/<sg-id>`, `ec2/<region>/eni/<eni-id>`: the resources;
//! - `ec2/<region>/ipam/<subnet-id>`: the addresses in use in a subnet;
//! - `ec2/<region>/defaults`: the default VPC and the zones with a default subnet.

pub fn root(region: &str) -> String {
    format!("ec2/{region}/")
}

pub fn vpcs(region: &str) -> String {
    format!("ec2/{region}/vpc/")
}

pub fn vpc(region: &str, id: &str) -> String {
    format!("ec2/{region}/vpc/{id}")
}

pub fn subnets(region: &str) -> String {
    format!("ec2/{region}/subnet/")
}

pub fn subnet(region: &str, id: &str) -> String {
    format!("ec2/{region}/subnet/{id}")
}

pub fn security_groups(region: &str) -> String {
    format!("ec2/{region}/sg/")
}

pub fn security_group(region: &str, id: &str) -> String {
    format!("ec2/{region}/sg/{id}")
}

pub fn network_interfaces(region: &str) -> String {
    format!("ec2/{region}/eni/")
}

pub fn network_interface(region: &str, id: &str) -> String {
    format!("ec2/{region}/eni/{id}")
}

pub fn ipam(region: &str, subnet_id: &str) -> String {
    format!("ec2/{region}/ipam/{subnet_id}")
}

pub fn defaults(region: &str) -> String {
    format!("ec2/{region}/defaults")
}

/// An AWS-style id: `prefix-` and 17 lowercase hex characters (`vpc-0a1b2c3d4e5f60718`).
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..17]
    )
}

/// Whether `id` has the shape of an id of this prefix (`vpc-` and 8 or 17 hex characters).
pub fn is_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|hex| {
            matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// A locally administered unicast MAC address (`0e:..`, as EC2's ENIs have), from random bits.
pub fn new_mac() -> String {
    let b = uuid::Uuid::new_v4();
    let b = b.as_bytes();
    format!(
        "0e:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_aws_ids() {
        let id = new_id("vpc");
        assert_eq!(id.len(), 4 + 17);
        assert!(is_id("vpc", &id));
        assert!(is_id("sg", "sg-12345678"));
        assert!(!is_id("sg", "sg-123"));
        assert!(!is_id("subnet", "vpc-12345678"));
        assert!(!is_id("vpc", "vpc-1234567g"));
        let mac = new_mac();
        assert!(mac.starts_with("0e:") && mac.len() == 17, "{mac}");
    }
}
