//! Store keys of ACM records, scoped by region.

pub fn certificates(region: &str) -> String {
    format!("acm/certificate/{region}/")
}

/// A certificate by the id that ends its ARN (a UUID).
pub fn certificate(region: &str, id: &str) -> String {
    format!("acm/certificate/{region}/{id}")
}
