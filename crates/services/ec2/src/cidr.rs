//! IPv4 CIDR blocks, pure: parsing as EC2 accepts them, containment and overlap, the addresses
//! AWS reserves in every subnet, and the choice of a free address (the allocator the agents'
//! pause containers get their fixed IPs from).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: a base address with no host bits set, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

/// Why a string is not a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a valid IPv4 CIDR block")]
pub struct CidrError(pub String);

impl FromStr for Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n` with `n` in 0..=32. Host bits must be zero, as EC2 requires of VPC and subnet
    /// blocks.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let base = u32::from(addr);
        if base & !mask(prefix) != 0 {
            return Err(bad());
        }
        Ok(Self { base, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Cidr {
    /// `172.31.0.0/16`, the block of AWS's default VPCs.
    pub const AWS_DEFAULT_VPC: Cidr = Cidr {
        base: 0xAC1F_0000,
        prefix: 16,
    };

    /// A block from its parts; `None` when host bits are set or the prefix is over 32.
    pub fn new(base: Ipv4Addr, prefix: u8) -> Option<Self> {
        let base = u32::from(base);
        (prefix <= 32 && base & !mask(prefix) == 0).then_some(Self { base, prefix })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The last address (the broadcast address).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base | !mask(self.prefix))
    }

    /// Number of addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }

    /// Whether `other` lies entirely inside this block.
    pub fn contains_block(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains_block(other) || other.contains_block(self)
    }

    /// The address at `offset` from the network address.
    pub fn nth(&self, offset: u64) -> Option<Ipv4Addr> {
        (offset < self.size()).then(|| Ipv4Addr::from(self.base.wrapping_add(offset as u32)))
    }

    /// The subnet's router: the network address plus one (EC2's VPC router; the Docker bridge's
    /// gateway address on each host).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        (self.prefix <= 30).then(|| Ipv4Addr::from(self.base + 1))
    }

    /// The addresses AWS reserves in every subnet: the network address, the router (+1), the DNS
    /// server (+2), one for future use (+3) and the broadcast address.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        let off = u64::from(u32::from(ip).wrapping_sub(self.base));
        off < 4 || off + 1 == self.size()
    }

    /// How many addresses tasks can use: the size less the five reserved ones.
    pub fn usable(&self) -> u64 {
        self.size().saturating_sub(5)
    }

    /// The `n`-th block of prefix `prefix` inside this one (`10.0.0.0/16`, 24, 3 → `10.0.3.0/24`).
    pub fn child(&self, prefix: u8, n: u64) -> Option<Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let off = n.checked_mul(step)?;
        if off >= self.size() {
            return None;
        }
        Some(Cidr {
            base: self.base + off as u32,
            prefix,
        })
    }
}

/// Picks a free, unreserved address of `block`, starting the search at `start` (any number; it
/// is reduced into the block) and moving up, wrapping around. `None` when every usable address
/// is taken. Starting at a random point keeps a just-released address from being handed out
/// again at once.
pub fn pick_free(block: &Cidr, used: &BTreeSet<Ipv4Addr>, start: u64) -> Option<Ipv4Addr> {
    let size = block.size();
    if block.usable() == 0 {
        return None;
    }
    let first = start % size;
    for step in 0..size {
        let off = (first + step) % size;
        let ip = block.nth(off)?;
        if block.is_reserved(ip) || used.contains(&ip) {
            continue;
        }
        return Some(ip);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn parses_and_prints_blocks() {
        assert_eq!(c("10.0.0.0/16").to_string(), "10.0.0.0/16");
        assert_eq!(c("172.31.16.0/20").last(), Ipv4Addr::new(172, 31, 31, 255));
        for bad in [
            "10.0.0.1/16",
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/16",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn containment_and_overlap() {
        let vpc = c("10.0.0.0/16");
        assert!(vpc.contains_block(&c("10.0.1.0/24")));
        assert!(!vpc.contains_block(&c("10.1.0.0/24")));
        assert!(!vpc.contains_block(&c("10.0.0.0/8")));
        assert!(c("10.0.1.0/24").overlaps(&c("10.0.1.128/25")));
        assert!(!c("10.0.1.0/24").overlaps(&c("10.0.2.0/24")));
        assert_eq!(vpc.child(24, 3), Some(c("10.0.3.0/24")));
        assert_eq!(vpc.child(24, 256), None);
        assert_eq!(c("172.31.0.0/16").child(20, 1), Some(c("172.31.16.0/20")));
    }

    #[test]
    fn reserved_addresses_are_the_first_four_and_the_last() {
        let s = c("10.0.1.0/24");
        for host in [0u8, 1, 2, 3, 255] {
            assert!(s.is_reserved(Ipv4Addr::new(10, 0, 1, host)), "{host}");
        }
        assert!(!s.is_reserved(Ipv4Addr::new(10, 0, 1, 4)));
        assert_eq!(s.usable(), 251);
        assert_eq!(s.gateway(), Some(Ipv4Addr::new(10, 0, 1, 1)));
    }

    #[test]
    fn a_full_subnet_has_no_free_address() {
        let s = c("10.0.1.0/28");
        let mut used = BTreeSet::new();
        for _ in 0..s.usable() {
            let ip = pick_free(&s, &used, 7).expect("free");
            assert!(used.insert(ip));
        }
        assert_eq!(pick_free(&s, &used, 0), None);
    }

    proptest! {
        /// Whatever was taken and wherever the search starts, the pick is inside the block, not
        /// reserved and not taken; and there is a pick exactly when some usable address is free.
        #[test]
        fn picks_are_free_usable_addresses(
            prefix in 24u8..=28,
            taken in proptest::collection::vec(0u64..256, 0..300),
            start in any::<u64>(),
        ) {
            let block = Cidr::new(Ipv4Addr::new(10, 9, 8, 0), prefix).expect("block");
            let used: BTreeSet<Ipv4Addr> = taken.iter().filter_map(|o| block.nth(*o)).collect();
            let free_usable = (0..block.size())
                .filter_map(|o| block.nth(o))
                .filter(|ip| !block.is_reserved(*ip) && !used.contains(ip))
                .count();
            match pick_free(&block, &used, start) {
                Some(ip) => {
                    prop_assert!(block.contains(ip));
                    prop_assert!(!block.is_reserved(ip));
                    prop_assert!(!used.contains(&ip));
                }
                None => prop_assert_eq!(free_usable, 0),
            }
        }
    }
}
