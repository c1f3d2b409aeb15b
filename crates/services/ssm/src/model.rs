//! Parameters as stored: one record per parameter (its versions' metadata, never a SecureString
//! value in the clear) and one record per version holding the value, or for a SecureString
//! only its ciphertext.

use serde::{Deserialize, Serialize};

/// A parameter's type, as SSM spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterType {
    String,
    StringList,
    SecureString,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::SecureString => "SecureString",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "String" => Some(Self::String),
            "StringList" => Some(Self::StringList),
            "SecureString" => Some(Self::SecureString),
            _ => None,
        }
    }
}

/// One version's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: u64,
    pub labels: Vec<String>,
    pub last_modified_ms: u64,
    pub last_modified_user: String,
    pub kind: ParameterType,
    /// For SecureString: the key as DescribeParameters shows it.
    pub key_id: Option<String>,
    pub description: Option<String>,
    pub allowed_pattern: Option<String>,
    /// `Standard` or `Advanced`.
    pub tier: String,
    pub data_type: String,
}

/// A parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterRecord {
    pub name: String,
    /// Unique per parameter ever created: value records live under it.
    pub uid: String,
    /// Oldest first; the last is the current version.
    pub versions: Vec<VersionMeta>,
    /// Tags in the order they were added.
    pub tags: Vec<(String, String)>,
}

impl ParameterRecord {
    pub fn current(&self) -> Option<&VersionMeta> {
        self.versions.last()
    }

    pub fn version(&self, v: u64) -> Option<&VersionMeta> {
        self.versions.iter().find(|m| m.version == v)
    }

    pub fn version_with_label(&self, label: &str) -> Option<&VersionMeta> {
        self.versions
            .iter()
            .find(|m| m.labels.iter().any(|l| l == label))
    }
}

/// The stored value of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredValue {
    /// String and StringList values, which Parameter Store does not encrypt.
    Plain(String),
    /// Base64 of the KMS ciphertext of a SecureString.
    Encrypted(String),
}
