//! Registry replication: `PutReplicationConfiguration`, the `replicationConfiguration` of
//! `DescribeRegistry`, `DescribeImageReplicationStatus`, and the copying of pushed images into
//! their destination regions.
//!
//! A replication configuration belongs to the registry of one region, as in ECR: it is stored
//! under `ecr/registry/replication/<region>` and validated as ECR validates it (destinations in
//! another region of this account, at most 25 distinct destinations, `PREFIX_MATCH` filters).
//!
//! Each region has its own repositories. A push (a manifest `PUT` or `PutImage`) in a region
//! whose configuration has rules selecting the repository records, in the very transaction
//! that stores the manifest, one pending job per destination
//! (`ecr/replication-pending/<source>#<destination>#<repo>#<digest>`, with the tags pushed) and
//! the image's status (`ecr/replication-status/<source>#<repo>#<digest>`), `IN_PROGRESS` for
//! each destination. The replication worker ([`crate::Registry::run_replication`], woken by
//! pushes, and run at start-up, so a push answered before a crash still replicates) copies
//! the image: it creates the destination repository if absent (with the repository creation
//! template of the destination region that applies to `REPLICATION`, if any), links the blobs
//! (the bytes are shared; the destination's links keep them from the garbage collector), and
//! stores the manifests (an index's children first) and tags byte-exact. Each step is
//! idempotent, so a copy interrupted by a crash is redone whole. The job's end (deleted, and
//! the destination's status `COMPLETE` or `FAILED` with a `failureCode` saying why) commits
//! in one transaction. A replicated image is not replicated again from its destination.

use bytes::Bytes;
use futures::future::BoxFuture;
use gantry_aws_proto::AwsError;
use gantry_store::{StoreExt, Txn, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::RegistryAction;
use crate::core::{PushMode, Reference};
use crate::digest::Digest;
use crate::ecr::{Ecr, ImageId, invalid, to_aws};
use crate::error::RegistryError;
use crate::meta::{ManifestRecord, dec, enc};

/// The most distinct destinations a configuration may name across its rules (ECR's quota).
pub(crate) const MAX_DESTINATIONS: usize = 25;

/// The only repository filter type ECR knows.
const PREFIX_MATCH: &str = "PREFIX_MATCH";

fn config_key(region: &str) -> String {
    format!("ecr/registry/replication/{region}")
}

/// The replication status of an image of `region`.
fn status_key(region: &str, repo: &str, d: &Digest) -> String {
    format!("{STATUS_PREFIX}{region}#{repo}#{d}")
}

/// The statuses of every image of a repository of `region`.
pub(crate) fn status_repo_prefix(region: &str, repo: &str) -> String {
    format!("{STATUS_PREFIX}{region}#{repo}#")
}

const STATUS_PREFIX: &str = "ecr/replication-status/";

fn job_key(source: &str, destination: &str, repo: &str, d: &Digest) -> String {
    format!("{JOB_PREFIX}{source}#{destination}#{repo}#{d}")
}

const JOB_PREFIX: &str = "ecr/replication-pending/";

/// The most levels of indexes a replicated image may nest (an index of indexes of manifests).
const MAX_INDEX_DEPTH: usize = 4;

/// `ReplicationStatus` values.
const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETE: &str = "COMPLETE";
const FAILED: &str = "FAILED";

/// How an image's replication stands in each destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusRecord {
    pub destinations: Vec<DestinationStatus>,
}

/// `ImageReplicationStatus`, stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct DestinationStatus {
    pub region: String,
    pub registry_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
}

impl StatusRecord {
    fn set(&mut self, dest: &Destination, status: &str, failure_code: Option<String>) {
        let entry = DestinationStatus {
            region: dest.region.clone(),
            registry_id: dest.registry_id.clone(),
            status: status.to_owned(),
            failure_code,
        };
        match self
            .destinations
            .iter_mut()
            .find(|d| d.region == dest.region && d.registry_id == dest.registry_id)
        {
            Some(d) => *d = entry,
            None => self.destinations.push(entry),
        }
    }
}

/// One pending copy of an image into one destination region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub source_region: String,
    pub destination: Destination,
    pub repository: String,
    pub digest: Digest,
    /// The tags pushed for the image since the job was queued.
    #[serde(default)]
    pub tags: Vec<String>,
    pub queued_at: f64,
}

/// Why a copy failed, as `failureCode` reports it: a code, then the detail.
fn failure_code(e: &RegistryError) -> String {
    let code = match e {
        RegistryError::NameUnknown { .. } | RegistryError::ManifestUnknown(_) => {
            "SOURCE_IMAGE_NOT_FOUND"
        }
        RegistryError::TagImmutable { .. } => "IMAGE_TAG_IMMUTABLE",
        RegistryError::ManifestBlobUnknown(_) | RegistryError::BlobUnknown(_) => {
            "SOURCE_LAYER_NOT_FOUND"
        }
        _ => "REPLICATION_FAILED",
    };
    let detail = if e.is_internal() {
        "internal error".to_owned()
    } else {
        e.to_string()
    };
    format!("{code}: {detail}")
}

/// Errors after which a copy is retried later rather than reported failed.
fn transient(e: &RegistryError) -> bool {
    e.is_store_unavailable() || e.is_storage_full() || matches!(e, RegistryError::Contention(_))
}

/// `ReplicationConfiguration`, stored as it travels on the wire.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReplicationConfiguration {
    #[serde(default)]
    pub rules: Vec<ReplicationRule>,
}

/// `ReplicationRule`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplicationRule {
    #[serde(default)]
    pub destinations: Vec<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_filters: Option<Vec<RepositoryFilter>>,
}

/// `ReplicationDestination`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Destination {
    pub region: String,
    pub registry_id: String,
}

/// `RepositoryFilter`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RepositoryFilter {
    pub filter: String,
    pub filter_type: String,
}

impl ReplicationRule {
    /// Whether the rule replicates `repository`: a rule without filters replicates every
    /// repository; otherwise one filter's prefix must begin the name.
    pub fn matches(&self, repository: &str) -> bool {
        match &self.repository_filters {
            None => true,
            Some(filters) if filters.is_empty() => true,
            Some(filters) => filters
                .iter()
                .any(|f| f.filter_type == PREFIX_MATCH && repository.starts_with(&f.filter)),
        }
    }
}

impl ReplicationConfiguration {
    /// The destinations `repository` replicates to, each once, in the order the rules name them.
    pub fn destinations_for(&self, repository: &str) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(repository)) {
            for d in &rule.destinations {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }

    /// ECR's checks of a configuration set in `region` of the registry `account`.
    pub fn validate(&self, region: &str, account: &str) -> Result<(), RegistryError> {
        let mut distinct: Vec<&Destination> = Vec::new();
        for rule in &self.rules {
            if rule.destinations.is_empty() {
                return Err(invalid(
                    "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'A replication rule must have at least one destination'",
                ));
            }
            for f in rule.repository_filters.iter().flatten() {
                if f.filter_type != PREFIX_MATCH {
                    return Err(invalid(format!(
                        "1 validation error detected: Value '{}' at 'replicationConfiguration.rules.member.repositoryFilters.member.filterType' failed to satisfy constraint: Member must satisfy enum value set: [PREFIX_MATCH]",
                        f.filter_type
                    )));
                }
            }
            for d in &rule.destinations {
                if d.registry_id != account {
                    return Err(invalid(format!(
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'cross-account replication is not supported: this server holds only the registry with id '{account}', so destination registry '{}' cannot be replicated to'",
                        d.registry_id
                    )));
                }
                if d.region == region {
                    return Err(invalid(
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Replication destination cannot be the same as the source registry'",
                    ));
                }
                if !distinct.contains(&d) {
                    distinct.push(d);
                }
            }
        }
        if distinct.len() > MAX_DESTINATIONS {
            return Err(invalid(format!(
                "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'A replication configuration may contain at most {MAX_DESTINATIONS} unique destinations, {} were given'",
                distinct.len()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutReplicationConfigurationInput {
    replication_configuration: Option<ReplicationConfiguration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeImageReplicationStatusInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    image_id: Option<ImageId>,
}

impl crate::Registry {
    /// Adds to `txn`, the transaction of a push of `digest` (with `tag`) into `repo` of
    /// `region`, the replication the registry's configuration asks for: a pending job per
    /// destination and the image's status `IN_PROGRESS` there. `false` when no rule selects
    /// the repository.
    pub(crate) async fn queue_replication(
        &self,
        mut txn: Txn,
        region: &str,
        repo: &str,
        digest: &Digest,
        tag: Option<&str>,
        now: f64,
    ) -> Result<(Txn, bool), RegistryError> {
        let destinations = self
            .replication_configuration(region)
            .await?
            .destinations_for(repo);
        if destinations.is_empty() {
            return Ok((txn, false));
        }
        let skey = status_key(region, repo, digest);
        let cur = self.store.get_typed::<StatusRecord>(&skey).await?;
        let mut status = cur.as_ref().map(|c| c.value.clone()).unwrap_or_default();
        for dest in &destinations {
            status.set(dest, IN_PROGRESS, None);
            let jkey = job_key(region, &dest.region, repo, digest);
            let existing = self.store.get_typed::<JobRecord>(&jkey).await?;
            let mut job = existing
                .as_ref()
                .map(|j| j.value.clone())
                .unwrap_or(JobRecord {
                    source_region: region.to_owned(),
                    destination: dest.clone(),
                    repository: repo.to_owned(),
                    digest: digest.clone(),
                    tags: Vec::new(),
                    queued_at: now,
                });
            if let Some(tag) = tag
                && !job.tags.iter().any(|t| t == tag)
            {
                job.tags.push(tag.to_owned());
            }
            txn = txn
                .require_revision(&jkey, existing.map(|e| e.revision).unwrap_or(0))
                .put(&jkey, enc(&jkey, &job)?);
        }
        txn = txn
            .require_revision(&skey, cur.map(|c| c.revision).unwrap_or(0))
            .put(&skey, enc(&skey, &status)?);
        Ok((txn, true))
    }

    /// Runs every pending replication job once; returns how many ended (complete or failed).
    /// Jobs that meet a transient failure (the store unavailable, full, contended) stay for
    /// the next run.
    pub async fn replicate_pending(&self) -> Result<usize, RegistryError> {
        let mut ended = 0;
        let mut start: Option<String> = None;
        loop {
            let page = self.store.scan(JOB_PREFIX, start.as_deref(), 256).await?;
            for rec in &page.records {
                if !self.still_leading().await? {
                    tracing::warn!("replication stopped: this replica no longer leads");
                    return Ok(ended);
                }
                let job: Versioned<JobRecord> = dec(rec)?;
                if self.run_job(&rec.key, job).await? {
                    ended += 1;
                }
            }
            match page.next {
                Some(n) => start = Some(n),
                None => return Ok(ended),
            }
        }
    }

    /// Copies one job's image and records how it ended; `false` when it stays pending.
    async fn run_job(&self, key: &str, job: Versioned<JobRecord>) -> Result<bool, RegistryError> {
        let j = &job.value;
        match self.get_repo(&j.source_region, &j.repository).await {
            Err(RegistryError::NameUnknown { .. }) => {
                // The source repository was deleted (with its images' statuses): nothing to
                // copy and nobody to report to.
                let txn = Txn::new().require_revision(key, job.revision).delete(key);
                let ended = self.controller_store().commit(txn).await?.is_committed();
                if ended {
                    tracing::info!(source = %j.source_region, repository = %j.repository, digest = %j.digest, "replication dropped: the source repository was deleted");
                }
                return Ok(ended);
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let copied = self.copy_image(j).await;
        let (status, failure) = match &copied {
            Ok(()) => (COMPLETE, None),
            Err(e) if transient(e) => {
                tracing::warn!(source = %j.source_region, destination = %j.destination.region, repository = %j.repository, digest = %j.digest, error = %e, "replication will be retried");
                return Ok(false);
            }
            Err(e) => (FAILED, Some(failure_code(e))),
        };
        let skey = status_key(&j.source_region, &j.repository, &j.digest);
        for _ in 0..16 {
            let cur = self.store.get_typed::<StatusRecord>(&skey).await?;
            let mut rec = cur.as_ref().map(|c| c.value.clone()).unwrap_or_default();
            rec.set(&j.destination, status, failure.clone());
            let txn = Txn::new()
                .require_revision(key, job.revision)
                .delete(key)
                .require_revision(&skey, cur.map(|c| c.revision).unwrap_or(0))
                .put(&skey, enc(&skey, &rec)?);
            if self.controller_store().commit(txn).await?.is_committed() {
                match &failure {
                    None => {
                        tracing::info!(source = %j.source_region, destination = %j.destination.region, repository = %j.repository, digest = %j.digest, "image replicated")
                    }
                    Some(code) => {
                        tracing::warn!(source = %j.source_region, destination = %j.destination.region, repository = %j.repository, digest = %j.digest, failure = %code, "image replication failed")
                    }
                }
                return Ok(true);
            }
            // A push changed the job meanwhile (another tag): it runs again next time.
            if self.store.get(key).await?.map(|r| r.revision) != Some(job.revision) {
                return Ok(false);
            }
        }
        Err(RegistryError::Contention(skey))
    }

    /// The copy itself: the destination repository (created if absent), the manifests with
    /// their blob links, the tags.
    async fn copy_image(&self, j: &JobRecord) -> Result<(), RegistryError> {
        let (src, dst, repo) = (
            j.source_region.as_str(),
            j.destination.region.as_str(),
            j.repository.as_str(),
        );
        if self.get_repo(dst, repo).await.is_err() {
            self.create_repo_from_template(dst, repo, "REPLICATION")
                .await?;
        }
        let m = self
            .copy_manifest(src, dst, repo, j.digest.clone(), 0)
            .await?;
        for tag in &j.tags {
            // Only while the tag still names the image in the source: a later push moved it.
            let current = self.resolve(src, repo, &Reference::Tag(tag.clone())).await;
            if !matches!(&current, Ok(c) if c.digest == j.digest) {
                continue;
            }
            self.put_manifest(
                dst,
                repo,
                &Reference::Tag(tag.clone()),
                Some(&m.media_type),
                Bytes::from(m.body.clone()),
                PushMode::Replication,
            )
            .await?;
        }
        Ok(())
    }

    /// Copies manifest `d` of `repo` (an index's children first) from `src` into `dst`.
    fn copy_manifest<'a>(
        &'a self,
        src: &'a str,
        dst: &'a str,
        repo: &'a str,
        d: Digest,
        depth: usize,
    ) -> BoxFuture<'a, Result<ManifestRecord, RegistryError>> {
        Box::pin(async move {
            let Some(m) = self.get_manifest_by_digest(src, repo, &d).await? else {
                return Err(RegistryError::ManifestUnknown(d.to_string()));
            };
            let m = m.value;
            if self.get_manifest_by_digest(dst, repo, &d).await?.is_some() {
                return Ok(m);
            }
            if depth >= MAX_INDEX_DEPTH && !m.children.is_empty() {
                return Err(RegistryError::ManifestInvalid(format!(
                    "{d} nests indexes deeper than {MAX_INDEX_DEPTH} levels"
                )));
            }
            for child in &m.children {
                self.copy_manifest(src, dst, repo, child.clone(), depth + 1)
                    .await?;
            }
            for b in &m.blobs {
                // As a cross-repository mount: under the blob's lock, which the collector takes.
                let _guard = self.blob_lock(b).lock().await;
                if let Some(size) = self.blob_in_repo(src, repo, b).await? {
                    self.link_blob(dst, repo, b, size).await?;
                }
            }
            self.put_manifest(
                dst,
                repo,
                &Reference::Digest(d),
                Some(&m.media_type),
                Bytes::from(m.body.clone()),
                PushMode::Replication,
            )
            .await?;
            Ok(m)
        })
    }

    /// The replication configuration of the registry in `region` (no rules when none was put).
    pub(crate) async fn replication_configuration(
        &self,
        region: &str,
    ) -> Result<ReplicationConfiguration, RegistryError> {
        Ok(self
            .store
            .get_typed::<ReplicationConfiguration>(&config_key(region))
            .await?
            .map(|v| v.value)
            .unwrap_or_default())
    }
}

impl Ecr<'_> {
    pub(crate) async fn put_replication_configuration(
        &self,
        i: PutReplicationConfigurationInput,
    ) -> Result<Value, AwsError> {
        let run = async {
            self.authorize(RegistryAction::Manage, None)?;
            let cfg = i
                .replication_configuration
                .ok_or_else(|| invalid("replicationConfiguration is required"))?;
            cfg.validate(&self.ctx.region, &self.reg.cfg.account_id)?;
            let key = config_key(&self.ctx.region);
            self.reg
                .store
                .commit(Txn::new().put(&key, crate::meta::enc(&key, &cfg)?))
                .await?;
            tracing::info!(
                region = %self.ctx.region,
                rules = cfg.rules.len(),
                "replication configuration put"
            );
            Ok(cfg)
        };
        let cfg = run.await.map_err(to_aws)?;
        Ok(json!({ "replicationConfiguration": cfg }))
    }

    pub(crate) async fn describe_registry(&self) -> Result<Value, AwsError> {
        let run = async {
            self.authorize(RegistryAction::Describe, None)?;
            self.reg.replication_configuration(&self.ctx.region).await
        };
        let cfg = run.await.map_err(to_aws)?;
        Ok(json!({
            "registryId": self.reg.cfg.account_id,
            "replicationConfiguration": cfg,
        }))
    }

    pub(crate) async fn describe_image_replication_status(
        &self,
        i: DescribeImageReplicationStatusInput,
    ) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Describe, Some(&repo))?;
            let id = i
                .image_id
                .clone()
                .ok_or_else(|| invalid("imageId is required"))?;
            self.reg.get_repo(&self.ctx.region, &repo).await?;
            let image = self.resolve_image_id(&repo, &id).await?;
            let status = self
                .reg
                .store
                .get_typed::<StatusRecord>(&status_key(&self.ctx.region, &repo, &image.digest))
                .await?
                .map(|v| v.value)
                .unwrap_or_default();
            let statuses: Vec<Value> = status
                .destinations
                .into_iter()
                .map(|d| {
                    let mut v = json!({
                        "region": d.region,
                        "registryId": d.registry_id,
                        "status": d.status,
                    });
                    if let Some(code) = d.failure_code {
                        v["failureCode"] = json!(code);
                    }
                    v
                })
                .collect();
            let mut image_id = json!({ "imageDigest": image.digest.to_string() });
            if let Some(tag) = &id.image_tag {
                image_id["imageTag"] = json!(tag);
            }
            Ok(json!({
                "repositoryName": repo,
                "imageId": image_id,
                "replicationStatuses": statuses,
            }))
        };
        run.await.map_err(to_aws)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "000000000000";

    fn dest(region: &str) -> Destination {
        Destination {
            region: region.into(),
            registry_id: ACCOUNT.into(),
        }
    }

    fn rule(regions: &[&str], prefixes: Option<&[&str]>) -> ReplicationRule {
        ReplicationRule {
            destinations: regions.iter().map(|r| dest(r)).collect(),
            repository_filters: prefixes.map(|p| {
                p.iter()
                    .map(|f| RepositoryFilter {
                        filter: (*f).into(),
                        filter_type: PREFIX_MATCH.into(),
                    })
                    .collect()
            }),
        }
    }

    fn message(r: Result<(), RegistryError>) -> String {
        match r {
            Err(RegistryError::InvalidParameter(m)) => m,
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn prefix_filters_select_repositories() {
        let r = rule(&["us-west-2"], Some(&["prod/", "web"]));
        assert!(r.matches("prod/api"));
        assert!(r.matches("webapp"));
        assert!(!r.matches("dev/prod/api"));
        assert!(!r.matches("pro"));
        assert!(rule(&["us-west-2"], None).matches("anything"));
        assert!(rule(&["us-west-2"], Some(&[])).matches("anything"));
    }

    #[test]
    fn destinations_are_the_union_of_matching_rules_without_repeats() {
        let cfg = ReplicationConfiguration {
            rules: vec![
                rule(&["us-west-2", "eu-west-1"], Some(&["prod"])),
                rule(&["eu-west-1", "ap-south-1"], None),
                rule(&["ca-central-1"], Some(&["dev"])),
            ],
        };
        assert_eq!(
            cfg.destinations_for("prod/api"),
            vec![dest("us-west-2"), dest("eu-west-1"), dest("ap-south-1")]
        );
        assert_eq!(
            cfg.destinations_for("other"),
            vec![dest("eu-west-1"), dest("ap-south-1")]
        );
        assert!(
            ReplicationConfiguration::default()
                .destinations_for("prod")
                .is_empty()
        );
    }

    #[test]
    fn validation_follows_ecr() {
        let ok = ReplicationConfiguration {
            rules: vec![rule(&["us-west-2"], Some(&["prod"]))],
        };
        ok.validate("us-east-1", ACCOUNT).unwrap();
        ReplicationConfiguration::default()
            .validate("us-east-1", ACCOUNT)
            .unwrap();

        assert!(
            message(ok.validate("us-west-2", ACCOUNT))
                .contains("Replication destination cannot be the same as the source registry")
        );

        let other_account = ReplicationConfiguration {
            rules: vec![ReplicationRule {
                destinations: vec![Destination {
                    region: "us-west-2".into(),
                    registry_id: "123456789012".into(),
                }],
                repository_filters: None,
            }],
        };
        assert!(
            message(other_account.validate("us-east-1", ACCOUNT))
                .contains("cross-account replication is not supported")
        );

        let empty = ReplicationConfiguration {
            rules: vec![rule(&[], None)],
        };
        assert!(message(empty.validate("us-east-1", ACCOUNT)).contains("at least one destination"));

        let mut bad_filter = rule(&["us-west-2"], Some(&["prod"]));
        bad_filter.repository_filters.as_mut().unwrap()[0].filter_type = "WILDCARD".into();
        let bad = ReplicationConfiguration {
            rules: vec![bad_filter],
        };
        assert!(message(bad.validate("us-east-1", ACCOUNT)).contains("[PREFIX_MATCH]"));
    }

    #[test]
    fn at_most_25_distinct_destinations() {
        let regions: Vec<String> = (0..26).map(|i| format!("xx-region-{i}")).collect();
        let refs: Vec<&str> = regions.iter().map(String::as_str).collect();
        // 25 distinct destinations, some repeated across rules: allowed.
        let fits = ReplicationConfiguration {
            rules: vec![rule(&refs[..20], None), rule(&refs[15..25], Some(&["p"]))],
        };
        fits.validate("us-east-1", ACCOUNT).unwrap();
        let over = ReplicationConfiguration {
            rules: vec![rule(&refs[..20], None), rule(&refs[15..], Some(&["p"]))],
        };
        assert!(message(over.validate("us-east-1", ACCOUNT)).contains("at most 25 unique"));
    }
}
