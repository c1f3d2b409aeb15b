//! Registry metadata records and their keys in the store.
//!
//! ```text
//! ecr/repo/<name>                          RepoRecord
//! ecr/manifest/<repo>#<digest>             ManifestRecord (the manifest bytes, byte-exact)
//! ecr/tag/<repo>#<tag>                     TagRecord
//! ecr/link/<blob digest>#<repo>            LinkRecord: the repository may use the blob
//! ecr/referrer/<repo>#<subject>#<digest>   ReferrerRecord (OCI referrers API)
//! ```
//!
//! `#` never occurs in repository names, tags or digests, so `<repo>#` is an exact prefix: a scan
//! for repository `a` never sees the keys of repository `a/b`.

use gantry_store::{Record, StoreError, Versioned, decode, encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;

pub(crate) fn repo_key(name: &str) -> String {
    format!("ecr/repo/{name}")
}
pub(crate) const REPO_PREFIX: &str = "ecr/repo/";

pub(crate) fn manifest_key(repo: &str, d: &Digest) -> String {
    format!("ecr/manifest/{repo}#{d}")
}
pub(crate) fn manifest_prefix(repo: &str) -> String {
    format!("ecr/manifest/{repo}#")
}
pub(crate) const MANIFEST_ALL: &str = "ecr/manifest/";

pub(crate) fn tag_key(repo: &str, tag: &str) -> String {
    format!("ecr/tag/{repo}#{tag}")
}
pub(crate) fn tag_prefix(repo: &str) -> String {
    format!("ecr/tag/{repo}#")
}

pub(crate) fn link_key(d: &Digest, repo: &str) -> String {
    format!("ecr/link/{d}#{repo}")
}
pub(crate) fn link_prefix(d: &Digest) -> String {
    format!("ecr/link/{d}#")
}
pub(crate) const LINK_ALL: &str = "ecr/link/";

pub(crate) fn referrer_key(repo: &str, subject: &Digest, d: &Digest) -> String {
    format!("ecr/referrer/{repo}#{subject}#{d}")
}
pub(crate) fn referrer_prefix(repo: &str, subject: &Digest) -> String {
    format!("ecr/referrer/{repo}#{subject}#")
}
pub(crate) fn referrer_repo_prefix(repo: &str) -> String {
    format!("ecr/referrer/{repo}#")
}

/// Splits `ecr/link/<digest>#<repo>` into its parts.
pub(crate) fn parse_link_key(key: &str) -> Option<(Digest, String)> {
    let rest = key.strip_prefix(LINK_ALL)?;
    let (d, repo) = rest.split_once('#')?;
    Some((d.parse().ok()?, repo.to_owned()))
}

/// `imageTagMutabilityExclusionFilters[]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExclusionFilter {
    #[serde(rename = "filterType")]
    pub filter_type: String,
    pub filter: String,
}

/// A resource tag on a repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceTag {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}

/// A repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepoRecord {
    pub name: String,
    pub created_at: f64,
    pub image_tag_mutability: String,
    #[serde(default)]
    pub mutability_exclusions: Vec<ExclusionFilter>,
    #[serde(default)]
    pub scan_on_push: bool,
    pub encryption_type: String,
    #[serde(default)]
    pub kms_key: Option<String>,
    #[serde(default)]
    pub tags: Vec<ResourceTag>,
    #[serde(default)]
    pub policy: Option<String>,
    /// Set by a forced delete while it removes the repository's contents; pushes see the
    /// repository as gone.
    #[serde(default)]
    pub deleting: bool,
}

impl RepoRecord {
    /// Whether a push may move `tag` to another manifest.
    pub fn tag_is_mutable(&self, tag: &str) -> bool {
        let matched = self
            .mutability_exclusions
            .iter()
            .any(|f| wildcard_match(&f.filter, tag));
        match self.image_tag_mutability.as_str() {
            "IMMUTABLE" => false,
            "IMMUTABLE_WITH_EXCLUSION" => matched,
            "MUTABLE_WITH_EXCLUSION" => !matched,
            _ => true,
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn wildcard_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.len() >= part.len() && rest.ends_with(part);
        } else if let Some(pos) = rest.find(part) {
            rest = &rest[pos + part.len()..];
        } else {
            return false;
        }
    }
    true
}

/// A manifest stored in a repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    /// The manifest exactly as pushed (manifests are JSON, hence UTF-8).
    pub body: String,
    pub pushed_at: f64,
    /// Config and layer digests (image manifests).
    #[serde(default)]
    pub blobs: Vec<Digest>,
    /// Child manifest digests (indexes).
    #[serde(default)]
    pub children: Vec<Digest>,
    #[serde(default)]
    pub subject: Option<Digest>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config_media_type: Option<String>,
    /// Sum of the config and layer sizes (image manifests) or of the children (indexes).
    pub image_size: u64,
}

/// A tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: Digest,
    pub updated_at: f64,
}

/// Repository → blob link: the repository may read the blob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub size: u64,
    /// Last time an upload, mount or manifest push used the link (GC grace).
    pub touched_at: f64,
}

/// One entry of the referrers index of a subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferrerRecord {
    /// The descriptor as returned by the referrers API.
    pub descriptor: Value,
}

pub(crate) fn enc<T: Serialize>(key: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    encode(key, v)
}

pub(crate) fn dec<T: serde::de::DeserializeOwned>(r: &Record) -> Result<Versioned<T>, StoreError> {
    decode(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("v*", "v1"));
        assert!(wildcard_match("*-rc", "1.0-rc"));
        assert!(wildcard_match("a*b*c", "aXXbYc"));
        assert!(!wildcard_match("a*b*c", "aXXbY"));
        assert!(wildcard_match("latest", "latest"));
        assert!(!wildcard_match("latest", "latest2"));
    }

    #[test]
    fn link_key_roundtrip() {
        let d = crate::digest::Algorithm::Sha256.digest(b"x");
        let (d2, repo) = parse_link_key(&link_key(&d, "a/b")).unwrap();
        assert_eq!((d2, repo.as_str()), (d, "a/b"));
    }
}
