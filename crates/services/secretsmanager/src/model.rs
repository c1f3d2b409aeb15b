//! Secrets as stored: one record per secret (metadata and the version index, never a value) and
//! one record per version holding only its ciphertext.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One day in milliseconds.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// Whether a version holds `SecretString` or `SecretBinary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueKind {
    String,
    Binary,
}

/// A version's metadata (its value lives in its own record, encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Staging labels, in the order they were attached.
    pub stages: Vec<String>,
    pub created_ms: u64,
    /// Midnight UTC of the last day the version was read.
    pub last_accessed_ms: Option<u64>,
    pub kind: ValueKind,
    /// The ARN of the KMS key that encrypted it.
    pub kms_key_arn: String,
}

/// A secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub name: String,
    /// `arn:aws:secretsmanager:{region}:{account}:secret:{name}-{6 random characters}`.
    pub arn: String,
    /// Unique per secret ever created: value records live under it, so a secret created again
    /// with the name of a deleted one never sees the old values.
    pub uid: String,
    pub description: Option<String>,
    /// `KmsKeyId` as DescribeSecret shows it (the key ARN, or the alias ARN when an alias was
    /// given); `None` for the AWS-managed `aws/secretsmanager` key.
    pub kms_key_id: Option<String>,
    pub created_ms: u64,
    pub last_changed_ms: u64,
    /// Midnight UTC of the last day a value was read.
    pub last_accessed_ms: Option<u64>,
    /// When DeleteSecret was called, while the secret waits out its recovery window.
    pub deleted_ms: Option<u64>,
    /// When the secret is deleted for good.
    pub deletion_ms: Option<u64>,
    /// Tags in the order they were added.
    pub tags: Vec<(String, String)>,
    pub policy: Option<String>,
    pub versions: BTreeMap<String, VersionMeta>,
}

impl SecretRecord {
    /// The version holding `stage`.
    pub fn version_with_stage(&self, stage: &str) -> Option<(&String, &VersionMeta)> {
        self.versions
            .iter()
            .find(|(_, v)| v.stages.iter().any(|s| s == stage))
    }

    /// Whether DeleteSecret scheduled it (until RestoreSecret or its deletion).
    pub fn is_deleted(&self) -> bool {
        self.deleted_ms.is_some()
    }

    /// Whether its recovery window is over as of `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        self.deletion_ms.is_some_and(|d| d <= now)
    }
}

/// The stored form of one version's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValue {
    /// Base64 of the KMS ciphertext blob.
    pub ciphertext: String,
}

/// Midnight UTC of the day of `ms`.
pub fn day_of(ms: u64) -> u64 {
    ms - ms % DAY_MS
}
