//! Store keys of KMS records, scoped by region (KMS keys and aliases are regional).

pub fn keys(region: &str) -> String {
    format!("kms/key/{region}/")
}

pub fn key(region: &str, key_id: &str) -> String {
    format!("kms/key/{region}/{key_id}")
}

/// Every key of every region (the maintenance job's scan).
pub fn keys_all() -> &'static str {
    "kms/key/"
}

pub fn aliases(region: &str) -> String {
    format!("kms/alias/{region}/")
}

/// `name` is the full alias name, `alias/...`.
pub fn alias(region: &str, name: &str) -> String {
    format!("kms/alias/{region}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cover_their_records() {
        assert!(key("eu-west-1", "abc").starts_with(&keys("eu-west-1")));
        assert!(key("eu-west-1", "abc").starts_with(keys_all()));
        assert!(alias("r", "alias/a").starts_with(&aliases("r")));
    }
}
