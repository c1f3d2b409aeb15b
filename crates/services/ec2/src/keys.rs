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

/// The MAC address of an interface with address `ip`: locally administered, `02:42:` and the
/// four address bytes. It is the address Docker derives from the IP on a bridge network, so the
/// interface record and the task's real interface agree on every Engine version (older ones
/// ignore a requested endpoint MAC).
pub fn mac_of(ip: std::net::Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
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
        assert_eq!(
            mac_of(std::net::Ipv4Addr::new(10, 250, 9, 9)),
            "02:42:0a:fa:09:09"
        );
    }
}
