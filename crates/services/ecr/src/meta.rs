//! Registry metadata records and their keys in the store.
//!
//! Repositories and everything in them belong to one region, as in ECR; only the blob bytes
//! are shared (content addressed), and the links saying which repository of which region may
//! read a blob sit in one index the garbage collector scans.
//!
//! ```text
//! ecr/region/<region>/repo/<name>                          RepoRecord
//! ecr/region/<region>/manifest/<repo>#<digest>             ManifestRecord (byte-exact)
//! ecr/region/<region>/tag/<repo>#<tag>                     TagRecord
//! ecr/region/<region>/referrer/<repo>#<subject>#<digest>   ReferrerRecord (OCI referrers API)
//! ecr/region/<region>/lifecycle/<repo>                     lifecycle policy (`lifecycle.rs`)
//! ecr/region/<region>/ptc/<prefix>, .../rct/<prefix>       pull through cache rules, templates
//! ecr/region/<region>/registry/{policy,scanning}           registry policy, scanning configuration
//! ecr/blobref/<blob digest>#<region>#<repo>                LinkRecord: the repository may use the blob
//! ecr/known-region/<region>                                a region that holds repositories
//! ecr/registry/replication/<region>                        replication configuration
//! ecr/replication/<job>                                    pending replication (`replication.rs`)
//! ```
//!
//! `#` never occurs in region names, repository names, tags or digests, so `<repo>#` is an exact
//! prefix: a scan for repository `a` never sees the keys of repository `a/b`.
//!
//! Before regions, the same records lived under `ecr/repo/`, `ecr/manifest/`, `ecr/tag/`,
//! `ecr/link/`, ... without a region; [`migrate_unscoped`] moves them into the server's default
//! region when the registry opens.

use gantry_store::{Record, Store, StoreError, Txn, Versioned, decode, encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;

/// Where every key of `region` begins.
pub(crate) fn region_prefix(region: &str) -> String {
    format!("ecr/region/{region}/")
}

pub(crate) fn repo_key(region: &str, name: &str) -> String {
    format!("ecr/region/{region}/repo/{name}")
}
pub(crate) fn repo_prefix(region: &str) -> String {
    format!("ecr/region/{region}/repo/")
}

pub(crate) fn manifest_key(region: &str, repo: &str, d: &Digest) -> String {
    format!("ecr/region/{region}/manifest/{repo}#{d}")
}
pub(crate) fn manifest_prefix(region: &str, repo: &str) -> String {
    format!("ecr/region/{region}/manifest/{repo}#")
}
pub(crate) fn manifest_all(region: &str) -> String {
    format!("ecr/region/{region}/manifest/")
}

pub(crate) fn tag_key(region: &str, repo: &str, tag: &str) -> String {
    format!("ecr/region/{region}/tag/{repo}#{tag}")
}
pub(crate) fn tag_prefix(region: &str, repo: &str) -> String {
    format!("ecr/region/{region}/tag/{repo}#")
}

pub(crate) fn link_key(d: &Digest, region: &str, repo: &str) -> String {
    format!("ecr/blobref/{d}#{region}#{repo}")
}
pub(crate) fn link_prefix(d: &Digest) -> String {
    format!("ecr/blobref/{d}#")
}
pub(crate) const LINK_ALL: &str = "ecr/blobref/";

pub(crate) fn referrer_key(region: &str, repo: &str, subject: &Digest, d: &Digest) -> String {
    format!("ecr/region/{region}/referrer/{repo}#{subject}#{d}")
}
pub(crate) fn referrer_prefix(region: &str, repo: &str, subject: &Digest) -> String {
    format!("ecr/region/{region}/referrer/{repo}#{subject}#")
}
pub(crate) fn referrer_repo_prefix(region: &str, repo: &str) -> String {
    format!("ecr/region/{region}/referrer/{repo}#")
}

pub(crate) fn known_region_key(region: &str) -> String {
    format!("{KNOWN_REGION_PREFIX}{region}")
}
pub(crate) const KNOWN_REGION_PREFIX: &str = "ecr/known-region/";

/// Splits `ecr/blobref/<digest>#<region>#<repo>` into its parts.
pub(crate) fn parse_link_key(key: &str) -> Option<(Digest, String, String)> {
    let rest = key.strip_prefix(LINK_ALL)?;
    let (d, rest) = rest.split_once('#')?;
    let (region, repo) = rest.split_once('#')?;
    Some((d.parse().ok()?, region.to_owned(), repo.to_owned()))
}

/// The key layout before regions: `(old prefix, new prefix under ecr/region/<region>/)`.
const UNSCOPED: &[(&str, &str)] = &[
    ("ecr/repo/", "repo/"),
    ("ecr/manifest/", "manifest/"),
    ("ecr/tag/", "tag/"),
    ("ecr/referrer/", "referrer/"),
    ("ecr/lifecycle/", "lifecycle/"),
    ("ecr/lifecycle-preview/", "lifecycle-preview/"),
    ("ecr/ptc/", "ptc/"),
    ("ecr/rct/", "rct/"),
    ("ecr/registry/policy", "registry/policy"),
    ("ecr/registry/scanning", "registry/scanning"),
];
const UNSCOPED_LINKS: &str = "ecr/link/";

/// Records moved per transaction: two writes and two conditions each, within etcd's 128
/// operations per transaction.
const MIGRATION_BATCH: usize = 60;

/// Where a key of the layout before regions moves to in `region`; `None` for keys of the
/// current layout.
pub(crate) fn scoped_key(old: &str, region: &str) -> Option<String> {
    if let Some(rest) = old.strip_prefix(UNSCOPED_LINKS) {
        let (d, repo) = rest.split_once('#')?;
        return Some(format!("{LINK_ALL}{d}#{region}#{repo}"));
    }
    UNSCOPED.iter().find_map(|(from, to)| {
        old.strip_prefix(from)
            .map(|rest| format!("{}{to}{rest}", region_prefix(region)))
    })
}

/// Moves every record written before regions (repositories, images, tags, links, policies,
/// pull through cache rules, templates, registry settings) into `region`, the server's
/// default region, in batches of one transaction each (a record and its move commit
/// together, so an interrupted migration resumes where it stopped). Returns how many records
/// moved.
pub(crate) async fn migrate_unscoped(
    store: &dyn Store,
    region: &str,
) -> Result<usize, crate::RegistryError> {
    let mut moved = 0;
    let prefixes = UNSCOPED
        .iter()
        .map(|(from, _)| *from)
        .chain(std::iter::once(UNSCOPED_LINKS));
    for prefix in prefixes {
        let mut conflicts = 0;
        loop {
            let page = store.scan(prefix, None, MIGRATION_BATCH).await?;
            if page.records.is_empty() {
                break;
            }
            let mut txn = Txn::new();
            for rec in &page.records {
                let Some(new) = scoped_key(&rec.key, region) else {
                    continue;
                };
                txn = txn
                    .require_revision(&rec.key, rec.revision)
                    .delete(&rec.key)
                    .require_absent(&new)
                    .put(&new, rec.value.clone());
            }
            if prefix == "ecr/repo/" {
                let k = known_region_key(region);
                txn = txn.put(&k, encode(&k, &region)?);
            }
            if store.commit(txn).await?.is_committed() {
                moved += page.records.len();
            } else {
                // Another replica moved part of this page meanwhile: read again. A record of
                // the new layout in the way keeps failing; stop rather than lose either.
                conflicts += 1;
                if conflicts > 16 {
                    return Err(crate::RegistryError::Internal(format!(
                        "cannot move {} into region {region}: a record of the same name is already there",
                        page.records[0].key
                    )));
                }
            }
        }
    }
    Ok(moved)
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
        let (d2, region, repo) = parse_link_key(&link_key(&d, "us-west-2", "a/b")).unwrap();
        assert_eq!(
            (d2, region.as_str(), repo.as_str()),
            (d, "us-west-2", "a/b")
        );
    }

    #[test]
    fn keys_before_regions_move_into_the_default_region() {
        let d = crate::digest::Algorithm::Sha256.digest(b"x");
        let r = "us-east-1";
        assert_eq!(
            scoped_key("ecr/repo/team/app", r).unwrap(),
            repo_key(r, "team/app")
        );
        assert_eq!(
            scoped_key(&format!("ecr/manifest/team/app#{d}"), r).unwrap(),
            manifest_key(r, "team/app", &d)
        );
        assert_eq!(
            scoped_key("ecr/tag/team/app#v1", r).unwrap(),
            tag_key(r, "team/app", "v1")
        );
        assert_eq!(
            scoped_key(&format!("ecr/link/{d}#team/app"), r).unwrap(),
            link_key(&d, r, "team/app")
        );
        assert_eq!(
            scoped_key(&format!("ecr/referrer/team/app#{d}#{d}"), r).unwrap(),
            referrer_key(r, "team/app", &d, &d)
        );
        assert_eq!(
            scoped_key("ecr/lifecycle/team/app", r).unwrap(),
            crate::lifecycle::policy_key(r, "team/app")
        );
        assert_eq!(
            scoped_key("ecr/registry/scanning", r).unwrap(),
            "ecr/region/us-east-1/registry/scanning"
        );
        // Keys of the current layout, and the per-region replication configuration, stay.
        assert_eq!(scoped_key(&repo_key(r, "a"), r), None);
        assert_eq!(scoped_key(&link_key(&d, r, "a"), r), None);
        assert_eq!(scoped_key("ecr/registry/replication/us-east-1", r), None);
    }

    #[tokio::test]
    async fn the_migration_moves_every_unscoped_record_once() {
        use gantry_store::{MemoryStore, StoreExt};
        let store = MemoryStore::new();
        let d = crate::digest::Algorithm::Sha256.digest(b"layer");
        let old = [
            ("ecr/repo/app".to_owned(), br#"{"n":1}"#.to_vec()),
            (format!("ecr/manifest/app#{d}"), br#"{"n":2}"#.to_vec()),
            ("ecr/tag/app#v1".to_owned(), br#"{"n":3}"#.to_vec()),
            (format!("ecr/link/{d}#app"), br#"{"n":4}"#.to_vec()),
            ("ecr/ptc/hub".to_owned(), br#"{"n":5}"#.to_vec()),
            ("ecr/registry/policy".to_owned(), br#"{"n":6}"#.to_vec()),
        ];
        // Many repositories: more than one batch.
        let mut txn = Txn::new();
        for (k, v) in &old {
            txn = txn.put(k, v.clone());
        }
        for i in 0..300 {
            txn = txn.put(format!("ecr/repo/r{i:03}"), br#"{}"#.to_vec());
        }
        store.commit(txn).await.unwrap();

        let moved = migrate_unscoped(&store, "eu-west-1").await.unwrap();
        assert_eq!(moved, old.len() + 300);
        for (k, v) in &old {
            assert!(store.get(k).await.unwrap().is_none(), "{k} still there");
            let new = scoped_key(k, "eu-west-1").unwrap();
            assert_eq!(&store.get(&new).await.unwrap().unwrap().value, v, "{new}");
        }
        assert!(
            store
                .get(&repo_key("eu-west-1", "r299"))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store
                .get_typed::<String>(&known_region_key("eu-west-1"))
                .await
                .unwrap()
                .unwrap()
                .value,
            "eu-west-1"
        );
        // Nothing left to move: a second start changes nothing.
        assert_eq!(migrate_unscoped(&store, "eu-west-1").await.unwrap(), 0);
    }
}
