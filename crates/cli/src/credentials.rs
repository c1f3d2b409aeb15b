//! Root credentials: from the environment, or generated once and kept in the data directory
//! (mode 0600).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use gantry_aws_proto::sigv4::CredentialProvider;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The root access key pair.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for RootCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish()
    }
}

impl CredentialProvider for RootCredentials {
    fn secret_access_key(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == self.access_key_id).then(|| self.secret_access_key.clone())
    }
}

const FILE: &str = "root-credentials.json";

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

impl RootCredentials {
    /// Environment first, then the stored file; an error when neither holds a pair.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(FILE);
        let from_env = std::env::var("GANTRY_ROOT_ACCESS_KEY_ID").is_ok_and(|v| !v.is_empty());
        anyhow::ensure!(
            from_env || path.exists(),
            "{} holds no root credentials and GANTRY_ROOT_ACCESS_KEY_ID is not set",
            data_dir.display()
        );
        Self::load_or_create(data_dir)
    }

    /// Environment first, then the stored file, else a new pair written to the file.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let env_id = std::env::var("GANTRY_ROOT_ACCESS_KEY_ID")
            .ok()
            .filter(|v| !v.is_empty());
        let env_secret = std::env::var("GANTRY_ROOT_SECRET_ACCESS_KEY")
            .ok()
            .filter(|v| !v.is_empty());
        match (env_id, env_secret) {
            (Some(access_key_id), Some(secret_access_key)) => {
                return Ok(Self {
                    access_key_id,
                    secret_access_key,
                });
            }
            (None, None) => {}
            _ => anyhow::bail!(
                "set both GANTRY_ROOT_ACCESS_KEY_ID and GANTRY_ROOT_SECRET_ACCESS_KEY, or neither"
            ),
        }
        let path = data_dir.join(FILE);
        if path.exists() {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            return serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()));
        }
        let creds = Self {
            access_key_id: format!(
                "AKIA{}",
                random_string(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
            ),
            secret_access_key: random_string(
                40,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            ),
        };
        write_private(&path, serde_json::to_string_pretty(&creds)?.as_bytes())?;
        Ok(creds)
    }
}

/// Writes `contents` to `path` atomically, readable by the owner only (mode 0600).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The registry's token-signing secret: 32 random bytes kept in the data dir (0600), so tokens
/// minted by `GetAuthorizationToken` stay valid across restarts.
pub fn load_or_create_secret(data_dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(name);
    if path.exists() {
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        anyhow::ensure!(bytes.len() >= 32, "{} is too short", path.display());
        return Ok(bytes);
    }
    let mut secret = vec![0u8; 32];
    rand::rng().fill(secret.as_mut_slice());
    write_private(&path, &secret)?;
    Ok(secret)
}
