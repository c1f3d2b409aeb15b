//! KMS records as stored, and their wire shapes (`KeyMetadata`, `AliasListEntry`).

use std::collections::BTreeMap;

use gantry_aws_proto::pagination::epoch_seconds;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One day in milliseconds.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// A key's state, as KMS spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// Who manages a key: the account (`CUSTOMER`) or a service on its behalf (`AWS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyManager {
    #[serde(rename = "CUSTOMER")]
    Customer,
    #[serde(rename = "AWS")]
    Aws,
}

impl KeyManager {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyManager::Customer => "CUSTOMER",
            KeyManager::Aws => "AWS",
        }
    }
}

/// How a key material version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// The key's first material, made by CreateKey.
    Created,
    /// Made by the rotation schedule.
    Automatic,
    /// Made by RotateKeyOnDemand.
    OnDemand,
}

/// One version of a key's material, wrapped by the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    /// 1, 2, ... in creation order; ciphertext blobs name it.
    pub version: u32,
    /// The `KeyMaterialId`: 64 lowercase hex characters.
    pub id: String,
    /// Base64 of the nonce and the sealed material.
    pub wrapped: String,
    pub created_ms: u64,
    pub origin: Origin,
}

/// Automatic rotation, when enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub period_days: u32,
    pub next_rotation_ms: u64,
}

/// A KMS key (symmetric, `SYMMETRIC_DEFAULT`, origin `AWS_KMS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub arn: String,
    pub account_id: String,
    pub creation_ms: u64,
    pub description: String,
    pub manager: KeyManager,
    pub state: KeyState,
    /// When a key pending deletion is deleted.
    pub deletion_ms: Option<u64>,
    pub pending_window_days: Option<u32>,
    /// The `default` key policy, as the caller wrote it (or AWS's default).
    pub policy: String,
    pub tags: BTreeMap<String, String>,
    /// Every material version; the last one encrypts.
    pub materials: Vec<Material>,
    pub rotation: Option<Rotation>,
}

impl KeyRecord {
    /// The material that encrypts now.
    pub fn current(&self) -> Option<&Material> {
        self.materials.last()
    }

    pub fn material(&self, version: u32) -> Option<&Material> {
        self.materials.iter().find(|m| m.version == version)
    }

    /// `KeyMetadata` as DescribeKey and CreateKey answer it.
    pub fn metadata(&self) -> Value {
        let mut v = json!({
            "AWSAccountId": self.account_id,
            "KeyId": self.key_id,
            "Arn": self.arn,
            "CreationDate": epoch_seconds(ms_to_time(self.creation_ms)),
            "Enabled": self.state == KeyState::Enabled,
            "Description": self.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": self.state.as_str(),
            "Origin": "AWS_KMS",
            "KeyManager": self.manager.as_str(),
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "MultiRegion": false,
        });
        if let Some(d) = self.deletion_ms {
            v["DeletionDate"] = json!(epoch_seconds(ms_to_time(d)));
        }
        if let Some(w) = self.pending_window_days {
            v["PendingDeletionWindowInDays"] = json!(w);
        }
        if let Some(m) = self.current() {
            v["CurrentKeyMaterialId"] = json!(m.id);
        }
        v
    }
}

/// An alias: a friendly name for one key of its region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// `alias/...`.
    pub name: String,
    pub target_key_id: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl AliasRecord {
    pub fn arn(&self, region: &str, account: &str) -> String {
        alias_arn(region, account, &self.name)
    }

    /// `AliasListEntry`.
    pub fn to_wire(&self, region: &str, account: &str) -> Value {
        json!({
            "AliasName": self.name,
            "AliasArn": self.arn(region, account),
            "TargetKeyId": self.target_key_id,
            "CreationDate": epoch_seconds(ms_to_time(self.created_ms)),
            "LastUpdatedDate": epoch_seconds(ms_to_time(self.updated_ms)),
        })
    }
}

pub fn key_arn(region: &str, account: &str, key_id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{key_id}")
}

pub fn alias_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{name}")
}

pub fn ms_to_time(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}
