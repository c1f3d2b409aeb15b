//! Store keys of Secrets Manager records, scoped by region.

/// Every secret of every region (the maintenance job's scan).
pub fn secrets_all() -> &'static str {
    "secretsmanager/secret/"
}

pub fn secrets(region: &str) -> String {
    format!("secretsmanager/secret/{region}/")
}

/// Names cannot contain a NUL, and no name is a prefix problem: the key is exact.
pub fn secret(region: &str, name: &str) -> String {
    format!("secretsmanager/secret/{region}/{name}")
}

/// Every value of one secret.
pub fn values(region: &str, uid: &str) -> String {
    format!("secretsmanager/value/{region}/{uid}/")
}

pub fn value(region: &str, uid: &str, version_id: &str) -> String {
    format!("secretsmanager/value/{region}/{uid}/{version_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_live_under_their_secret_uid() {
        assert!(value("r", "u1", "v").starts_with(&values("r", "u1")));
        assert!(!value("r", "u10", "v").starts_with(&values("r", "u1")));
        assert!(secret("r", "a/b").starts_with(&secrets("r")));
    }
}
