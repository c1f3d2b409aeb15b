//! The registry's operations over metadata and blobs, shared by the OCI routes and the ECR API.
//!
//! Every metadata write is one store transaction guarded by the revisions it read
//! (compare-and-swap), retried on conflict. Uploading a blob and linking it to a repository happen
//! under a per-digest lock that the garbage collector takes too, so a collection never removes a
//! blob that a push is about to use.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use gantry_store::{StoreExt, Txn, TxnOutcome, Versioned};
use serde_json::{Value, json};

use crate::Registry;
use crate::blob::{ByteStream, UploadMeta};
use crate::digest::{Algorithm, Digest};
use crate::error::RegistryError;
use crate::manifest::{self, ParsedManifest};
use crate::meta::*;

/// How many times a compare-and-swap loop re-reads before giving up.
const CAS_ATTEMPTS: usize = 64;

/// Seconds since the epoch, fractional.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        if Digest::looks_like_digest(s) {
            Ok(Reference::Digest(s.parse()?))
        } else if manifest::valid_tag(s) {
            Ok(Reference::Tag(s.to_owned()))
        } else {
            Err(RegistryError::TagInvalid(s.to_owned()))
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// Which API pushes a manifest: ECR's `PutImage` refuses a push that changes nothing; a
/// replicated image is never replicated again from its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMode {
    Oci,
    PutImage,
    Replication,
}

/// The result of a manifest push.
#[derive(Clone, Debug)]
pub struct PutManifestOutcome {
    pub digest: Digest,
    pub record: ManifestRecord,
    pub subject: Option<Digest>,
}

/// How the index of open upload sessions names a repository of a region.
fn upload_scope(region: &str, repo: &str) -> String {
    format!("{region}#{repo}")
}

fn committed(outcome: TxnOutcome) -> bool {
    outcome.is_committed()
}

impl Registry {
    /// The regions that hold (or held) repositories, for the passes over every region.
    pub(crate) async fn regions(&self) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .store
            .scan_all_typed::<String>(KNOWN_REGION_PREFIX)
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    pub(crate) async fn get_repo(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Versioned<RepoRecord>, RegistryError> {
        match self
            .store
            .get_typed::<RepoRecord>(&repo_key(region, name))
            .await?
        {
            Some(r) if !r.value.deleting => Ok(r),
            _ => Err(RegistryError::NameUnknown {
                name: name.to_owned(),
                registry: self.cfg.account_id.clone(),
            }),
        }
    }

    pub(crate) async fn create_repo(
        &self,
        region: &str,
        rec: RepoRecord,
    ) -> Result<RepoRecord, RegistryError> {
        let key = repo_key(region, &rec.name);
        for _ in 0..CAS_ATTEMPTS {
            let existing = self.store.get(&key).await?;
            let txn = match &existing {
                Some(r) => {
                    let cur: Versioned<RepoRecord> = dec(r)?;
                    if !cur.value.deleting {
                        return Err(RegistryError::RepositoryAlreadyExists {
                            name: rec.name.clone(),
                            registry: self.cfg.account_id.clone(),
                        });
                    }
                    // A forced delete is still sweeping; let it finish first.
                    tokio::task::yield_now().await;
                    continue;
                }
                None => {
                    let known = known_region_key(region);
                    Txn::new()
                        .require_absent(&key)
                        .put(&key, enc(&key, &rec)?)
                        .put(&known, enc(&known, &region)?)
                }
            };
            if committed(self.store.commit(txn).await?) {
                return Ok(rec);
            }
        }
        Err(RegistryError::Contention(key))
    }

    /// Read-modify-write of a repository record.
    pub(crate) async fn update_repo<F>(
        &self,
        region: &str,
        name: &str,
        mut f: F,
    ) -> Result<RepoRecord, RegistryError>
    where
        F: FnMut(&mut RepoRecord) -> Result<(), RegistryError> + Send,
    {
        let key = repo_key(region, name);
        for _ in 0..CAS_ATTEMPTS {
            let cur = self.get_repo(region, name).await?;
            let mut rec = cur.value.clone();
            f(&mut rec)?;
            let txn = Txn::new()
                .require_revision(&key, cur.revision)
                .put(&key, enc(&key, &rec)?);
            if committed(self.store.commit(txn).await?) {
                return Ok(rec);
            }
        }
        Err(RegistryError::Contention(key))
    }

    pub(crate) async fn list_repos(&self, region: &str) -> Result<Vec<RepoRecord>, RegistryError> {
        Ok(self
            .store
            .scan_all_typed::<RepoRecord>(&repo_prefix(region))
            .await?
            .into_iter()
            .map(|v| v.value)
            .filter(|r| !r.deleting)
            .collect())
    }

    /// Deletes a repository. Without `force` it must hold no images. With `force`, the record is
    /// first marked deleting (which makes concurrent pushes fail), then its manifests, tags, links
    /// and referrers are removed, then the record itself.
    pub(crate) async fn delete_repo(
        &self,
        region: &str,
        name: &str,
        force: bool,
    ) -> Result<RepoRecord, RegistryError> {
        let key = repo_key(region, name);
        let marked = loop {
            let cur = self.get_repo(region, name).await?;
            if !force {
                let page = self
                    .store
                    .scan(&manifest_prefix(region, name), None, 1)
                    .await?;
                if !page.records.is_empty() {
                    return Err(RegistryError::RepositoryNotEmpty {
                        name: name.to_owned(),
                        registry: self.cfg.account_id.clone(),
                    });
                }
                // Nothing to sweep but links; fall through to the same path.
            }
            let mut rec = cur.value.clone();
            rec.deleting = true;
            let txn = Txn::new()
                .require_revision(&key, cur.revision)
                .put(&key, enc(&key, &rec)?);
            if committed(self.store.commit(txn).await?) {
                break cur.value;
            }
        };
        // Sweep. Nothing can be added meanwhile: every write path requires the repository's
        // revision, which the mark changed.
        let mut keys: Vec<String> = Vec::new();
        for prefix in [
            manifest_prefix(region, name),
            tag_prefix(region, name),
            referrer_repo_prefix(region, name),
            crate::replication::status_repo_prefix(region, name),
        ] {
            let mut start: Option<String> = None;
            loop {
                let page = self.store.scan(&prefix, start.as_deref(), 1000).await?;
                keys.extend(page.records.iter().map(|r| r.key.clone()));
                match page.next {
                    Some(n) => start = Some(n),
                    None => break,
                }
            }
        }
        for (d, link_region, repo) in self.scan_links().await? {
            if link_region == region && repo == name {
                keys.push(link_key(&d, region, &repo));
            }
        }
        keys.push(crate::lifecycle::policy_key(region, name));
        keys.push(crate::lifecycle::preview_key(region, name));
        for chunk in keys.chunks(500) {
            let txn = chunk.iter().fold(Txn::new(), |t, k| t.delete(k));
            self.store.commit(txn).await?;
        }
        self.store.commit(Txn::new().delete(&key)).await?;
        tracing::info!(repository = name, force, "repository deleted");
        Ok(marked)
    }

    /// Every (blob, region, repository) link.
    pub(crate) async fn scan_links(&self) -> Result<Vec<(Digest, String, String)>, RegistryError> {
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self.store.scan(LINK_ALL, start.as_deref(), 1000).await?;
            out.extend(page.records.iter().filter_map(|r| parse_link_key(&r.key)));
            match page.next {
                Some(n) => start = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// The size of a blob the repository may read, `None` when it may not (or it is gone).
    pub(crate) async fn blob_in_repo(
        &self,
        region: &str,
        repo: &str,
        d: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        if self.store.get(&link_key(d, region, repo)).await?.is_none() {
            return Ok(None);
        }
        Ok(self.blobs.stat(d).await?.map(|i| i.size))
    }

    /// Links a stored blob to a repository (after an upload or a mount).
    pub(crate) async fn link_blob(
        &self,
        region: &str,
        repo: &str,
        d: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        let lkey = link_key(d, region, repo);
        for _ in 0..CAS_ATTEMPTS {
            let r = self.get_repo(region, repo).await?;
            let link_rev = self
                .store
                .get(&lkey)
                .await?
                .map(|r| r.revision)
                .unwrap_or(0);
            let rec = LinkRecord {
                size,
                touched_at: now_secs(),
            };
            let txn = Txn::new()
                .require_revision(repo_key(region, repo), r.revision)
                .require_revision(&lkey, link_rev)
                .put(&lkey, enc(&lkey, &rec)?);
            if committed(self.store.commit(txn).await?) {
                return Ok(());
            }
        }
        Err(RegistryError::Contention(lkey))
    }

    /// Starts an upload session in an existing repository for `client`, within the caps on the
    /// sessions open per repository and per client.
    pub(crate) async fn start_upload(
        &self,
        region: &str,
        repo: &str,
        client: &str,
    ) -> Result<String, RegistryError> {
        self.get_repo(region, repo).await?;
        let id = uuid::Uuid::new_v4().to_string();
        if self.reserve_upload(&id, region, repo, client).is_err() {
            // The index may count sessions that ended without it hearing of it: recount.
            self.reload_uploads().await?;
            if let Err(e) = self.reserve_upload(&id, region, repo, client) {
                tracing::warn!(repository = repo, client, error = %e, "upload refused");
                return Err(e);
            }
        }
        let created = self
            .blobs
            .upload_create(
                &id,
                UploadMeta {
                    repository: repo.to_owned(),
                    region: Some(region.to_owned()),
                    created_at: now_secs(),
                    client: Some(client.to_owned()),
                },
            )
            .await;
        if let Err(e) = created {
            self.forget_upload(&id);
            return Err(e);
        }
        Ok(id)
    }

    /// Counts `id` among the open sessions when the caps allow it.
    fn reserve_upload(
        &self,
        id: &str,
        region: &str,
        repo: &str,
        client: &str,
    ) -> Result<(), RegistryError> {
        let scoped = upload_scope(region, repo);
        let mut guard = self.uploads.lock();
        let index = guard.get_or_insert_with(Default::default);
        let in_repo = index.values().filter(|(r, _)| *r == scoped).count();
        if in_repo >= self.options.max_uploads_per_repository {
            return Err(RegistryError::TooManyUploads(format!(
                "repository {repo} has {in_repo} upload sessions open, the most allowed; finish or \
                 cancel some (abandoned ones are purged after {} minutes idle)",
                self.options.upload_ttl.as_secs() / 60
            )));
        }
        let by_client = index
            .values()
            .filter(|(_, c)| c.as_deref() == Some(client))
            .count();
        if by_client >= self.options.max_uploads_per_client {
            return Err(RegistryError::TooManyUploads(format!(
                "{client} has {by_client} upload sessions open, the most allowed; finish or cancel \
                 some (abandoned ones are purged after {} minutes idle)",
                self.options.upload_ttl.as_secs() / 60
            )));
        }
        index.insert(id.to_owned(), (scoped, Some(client.to_owned())));
        Ok(())
    }

    /// Drops `id` from the open sessions.
    pub(crate) fn forget_upload(&self, id: &str) {
        if let Some(index) = self.uploads.lock().as_mut() {
            index.remove(id);
        }
    }

    /// Rebuilds the index of open sessions from the blob store.
    pub(crate) async fn reload_uploads(&self) -> Result<(), RegistryError> {
        let index = self
            .blobs
            .upload_list()
            .await?
            .into_iter()
            .map(|(id, st)| {
                let region = st
                    .meta
                    .region
                    .as_deref()
                    .unwrap_or(&self.cfg.default_region);
                let scoped = upload_scope(region, &st.meta.repository);
                (id, (scoped, st.meta.client))
            })
            .collect();
        *self.uploads.lock() = Some(index);
        Ok(())
    }

    /// Cancels a session (its bytes are deleted); `false` when it did not exist.
    pub(crate) async fn cancel_upload(&self, id: &str) -> Result<bool, RegistryError> {
        let removed = self.blobs.upload_delete(id).await;
        self.forget_upload(id);
        removed
    }

    /// Appends `body` to a session at `offset`, refusing to grow the blob past
    /// [`crate::RegistryOptions::max_blob_bytes`] (the bytes before the limit stay in the
    /// session).
    pub(crate) async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let max = self.options.max_blob_bytes;
        let mut budget = max.saturating_sub(offset);
        let limited: ByteStream = Box::pin(body.map(move |chunk| {
            let chunk = chunk?;
            let n = chunk.len() as u64;
            if n > budget {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    "blob size limit",
                ));
            }
            budget -= n;
            Ok(chunk)
        }));
        match self.blobs.upload_append(id, start, limited).await {
            Err(RegistryError::Io(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                Err(RegistryError::SizeInvalid(format!(
                    "the blob would exceed {max} bytes, the maximum layer size"
                )))
            }
            other => other,
        }
    }

    /// The session's offset, when it exists and belongs to `repo`.
    pub(crate) async fn upload_offset(
        &self,
        region: &str,
        repo: &str,
        id: &str,
    ) -> Result<u64, RegistryError> {
        match self.blobs.upload_status(id).await? {
            Some(st)
                if st.meta.repository == repo
                    && st
                        .meta
                        .region
                        .as_deref()
                        .unwrap_or(&self.cfg.default_region)
                        == region =>
            {
                Ok(st.offset)
            }
            _ => Err(RegistryError::BlobUploadUnknown(id.to_owned())),
        }
    }

    /// Verifies and stores the session's bytes as `digest`, and links the blob to `repo`.
    pub(crate) async fn finish_upload(
        &self,
        region: &str,
        repo: &str,
        id: &str,
        d: &Digest,
    ) -> Result<u64, RegistryError> {
        self.upload_offset(region, repo, id).await?;
        let _guard = self.blob_lock(d).lock().await;
        // The session ends here whatever happens (a digest mismatch deletes it too).
        let committed = self.blobs.upload_commit(id, d).await;
        self.forget_upload(id);
        let size = committed?;
        self.link_blob(region, repo, d, size).await?;
        tracing::debug!(repository = repo, digest = %d, size, "blob stored");
        Ok(size)
    }

    /// Cross-repository mount: links `d` into `repo` when `from` may read it.
    pub(crate) async fn mount_blob(
        &self,
        region: &str,
        repo: &str,
        from: &str,
        d: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let _guard = self.blob_lock(d).lock().await;
        let Some(size) = self.blob_in_repo(region, from, d).await? else {
            return Ok(None);
        };
        self.link_blob(region, repo, d, size).await?;
        Ok(Some(size))
    }

    /// Removes the repository's link to a blob.
    pub(crate) async fn unlink_blob(
        &self,
        region: &str,
        repo: &str,
        d: &Digest,
    ) -> Result<(), RegistryError> {
        let lkey = link_key(d, region, repo);
        if self.store.get(&lkey).await?.is_none() {
            return Err(RegistryError::BlobUnknown(d.to_string()));
        }
        self.store.commit(Txn::new().delete(&lkey)).await?;
        Ok(())
    }

    pub(crate) async fn get_manifest_by_digest(
        &self,
        region: &str,
        repo: &str,
        d: &Digest,
    ) -> Result<Option<Versioned<ManifestRecord>>, RegistryError> {
        Ok(self
            .store
            .get_typed::<ManifestRecord>(&manifest_key(region, repo, d))
            .await?)
    }

    /// Resolves a tag or digest to a manifest of an existing repository.
    pub(crate) async fn resolve(
        &self,
        region: &str,
        repo: &str,
        reference: &Reference,
    ) -> Result<ManifestRecord, RegistryError> {
        self.get_repo(region, repo).await?;
        let d = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                match self
                    .store
                    .get_typed::<TagRecord>(&tag_key(region, repo, t))
                    .await?
                {
                    Some(tag) => tag.value.digest,
                    None => return Err(RegistryError::ManifestUnknown(t.clone())),
                }
            }
        };
        match self.get_manifest_by_digest(region, repo, &d).await? {
            Some(m) => Ok(m.value),
            None => Err(RegistryError::ManifestUnknown(reference.to_string())),
        }
    }

    /// Pushes a manifest (byte-exact) under a tag or digest.
    pub(crate) async fn put_manifest(
        &self,
        region: &str,
        repo: &str,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        mode: PushMode,
    ) -> Result<PutManifestOutcome, RegistryError> {
        self.get_repo(region, repo).await?;
        if body.len() > manifest::MAX_MANIFEST_BYTES {
            return Err(RegistryError::SizeInvalid(format!(
                "manifest of {} bytes exceeds {}",
                body.len(),
                manifest::MAX_MANIFEST_BYTES
            )));
        }
        let parsed: ParsedManifest = manifest::parse(&body, content_type)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = expected.algorithm().digest(&body);
                if &actual != expected {
                    return Err(RegistryError::ManifestDigestMismatch {
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            Reference::Tag(_) => Algorithm::Sha256.digest(&body),
        };
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| RegistryError::ManifestInvalid("manifest is not UTF-8".into()))?;
        let mkey = manifest_key(region, repo, &digest);
        for _ in 0..CAS_ATTEMPTS {
            let r = self.get_repo(region, repo).await?;
            let mut txn = Txn::new().require_revision(repo_key(region, repo), r.revision);
            let now = now_secs();
            let mut image_size = 0u64;
            for b in &parsed.blobs {
                if !b.urls.is_empty() {
                    image_size += b.size;
                    continue;
                }
                let lkey = link_key(&b.digest, region, repo);
                let Some(link) = self.store.get(&lkey).await? else {
                    return Err(RegistryError::ManifestBlobUnknown(b.digest.to_string()));
                };
                let lrec: Versioned<LinkRecord> = dec(&link)?;
                if lrec.value.size != b.size {
                    return Err(RegistryError::ManifestInvalid(format!(
                        "descriptor of {} has size {}, the blob has {}",
                        b.digest, b.size, lrec.value.size
                    )));
                }
                image_size += b.size;
                // Touch the link: a concurrent GC sweep of it then conflicts.
                let touched = LinkRecord {
                    size: lrec.value.size,
                    touched_at: now,
                };
                txn = txn
                    .require_revision(&lkey, link.revision)
                    .put(&lkey, enc(&lkey, &touched)?);
            }
            for c in &parsed.children {
                let ckey = manifest_key(region, repo, &c.digest);
                let Some(child) = self.store.get(&ckey).await? else {
                    return Err(RegistryError::ManifestChildUnknown(c.digest.to_string()));
                };
                let crec: Versioned<ManifestRecord> = dec(&child)?;
                image_size += crec.value.image_size;
                txn = txn.require_revision(&ckey, child.revision);
            }
            let existing = self.store.get(&mkey).await?;
            let record = match &existing {
                Some(rec) => {
                    txn = txn.require_revision(&mkey, rec.revision);
                    dec::<ManifestRecord>(rec)?.value
                }
                None => {
                    let rec = ManifestRecord {
                        digest: digest.clone(),
                        media_type: parsed.media_type.clone(),
                        body: text.clone(),
                        pushed_at: now,
                        blobs: parsed.blobs.iter().map(|b| b.digest.clone()).collect(),
                        children: parsed.children.iter().map(|c| c.digest.clone()).collect(),
                        subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
                        artifact_type: parsed.artifact_type.clone(),
                        config_media_type: parsed.config_media_type.clone(),
                        image_size,
                    };
                    txn = txn.require_absent(&mkey).put(&mkey, enc(&mkey, &rec)?);
                    rec
                }
            };
            let mut changed = existing.is_none();
            if let Reference::Tag(tag) = reference {
                let tkey = tag_key(region, repo, tag);
                let cur = self.store.get(&tkey).await?;
                let cur_tag = cur.as_ref().map(dec::<TagRecord>).transpose()?;
                let same = cur_tag.as_ref().is_some_and(|t| t.value.digest == digest);
                if !same {
                    if cur_tag.is_some() && !r.value.tag_is_mutable(tag) {
                        return Err(RegistryError::TagImmutable {
                            repository: repo.to_owned(),
                            tag: tag.clone(),
                        });
                    }
                    let rec = TagRecord {
                        digest: digest.clone(),
                        updated_at: now,
                    };
                    txn = txn
                        .require_revision(&tkey, cur_tag.as_ref().map(|t| t.revision).unwrap_or(0))
                        .put(&tkey, enc(&tkey, &rec)?);
                    changed = true;
                }
            }
            if mode == PushMode::PutImage && !changed {
                return Err(RegistryError::ImageAlreadyExists(format!(
                    "{repo}@{digest}"
                )));
            }
            let mut replicates = false;
            if changed && mode != PushMode::Replication {
                let tag = match reference {
                    Reference::Tag(t) => Some(t.as_str()),
                    Reference::Digest(_) => None,
                };
                (txn, replicates) = self
                    .queue_replication(txn, region, repo, &digest, tag, now)
                    .await?;
            }
            if let (Some(subject), None) = (&parsed.subject, &existing) {
                let rkey = referrer_key(region, repo, &subject.digest, &digest);
                let mut desc = json!({
                    "mediaType": parsed.media_type,
                    "digest": digest.to_string(),
                    "size": body.len(),
                });
                if let Some(at) = &parsed.artifact_type {
                    desc["artifactType"] = json!(at);
                }
                if let Some(a) = &parsed.annotations {
                    desc["annotations"] = a.clone();
                }
                txn = txn.put(&rkey, enc(&rkey, &ReferrerRecord { descriptor: desc })?);
            }
            if committed(self.store.commit(txn).await?) {
                tracing::info!(%region, repository = repo, reference = %reference, digest = %digest, "manifest pushed");
                if replicates {
                    self.replication_wake.notify_one();
                }
                // ECR evaluates lifecycle policies after pushes; a failure here never fails the
                // push (the scheduled pass retries).
                if let Err(error) = self.apply_lifecycle(region, repo).await {
                    tracing::warn!(repository = repo, %error, "lifecycle policy evaluation after push failed");
                }
                return Ok(PutManifestOutcome {
                    digest,
                    subject: parsed.subject.map(|s| s.digest),
                    record,
                });
            }
        }
        Err(RegistryError::Contention(mkey))
    }

    /// All tags of a repository, in order, with what they point at.
    pub(crate) async fn list_tags(
        &self,
        region: &str,
        repo: &str,
    ) -> Result<Vec<(String, TagRecord)>, RegistryError> {
        let prefix = tag_prefix(region, repo);
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self.store.scan(&prefix, start.as_deref(), 1000).await?;
            for rec in &page.records {
                let t: Versioned<TagRecord> = dec(rec)?;
                out.push((rec.key[prefix.len()..].to_owned(), t.value));
            }
            match page.next {
                Some(n) => start = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// All manifests of a repository.
    pub(crate) async fn list_manifests(
        &self,
        region: &str,
        repo: &str,
    ) -> Result<Vec<ManifestRecord>, RegistryError> {
        Ok(self
            .store
            .scan_all_typed::<ManifestRecord>(&manifest_prefix(region, repo))
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    /// Digest → tags, for describing images.
    pub(crate) async fn tags_by_digest(
        &self,
        region: &str,
        repo: &str,
    ) -> Result<BTreeMap<Digest, Vec<String>>, RegistryError> {
        let mut map: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (tag, rec) in self.list_tags(region, repo).await? {
            map.entry(rec.digest).or_default().push(tag);
        }
        Ok(map)
    }

    /// Deletes a manifest and every tag pointing at it.
    pub(crate) async fn delete_manifest(
        &self,
        region: &str,
        repo: &str,
        d: &Digest,
    ) -> Result<ManifestRecord, RegistryError> {
        let mkey = manifest_key(region, repo, d);
        for _ in 0..CAS_ATTEMPTS {
            let r = self.get_repo(region, repo).await?;
            let Some(m) = self.get_manifest_by_digest(region, repo, d).await? else {
                return Err(RegistryError::ManifestUnknown(d.to_string()));
            };
            let mut txn = Txn::new()
                .require_revision(repo_key(region, repo), r.revision)
                .require_revision(&mkey, m.revision)
                .delete(&mkey);
            let prefix = tag_prefix(region, repo);
            let mut start: Option<String> = None;
            loop {
                let page = self.store.scan(&prefix, start.as_deref(), 1000).await?;
                for rec in &page.records {
                    let t: Versioned<TagRecord> = dec(rec)?;
                    if &t.value.digest == d {
                        txn = txn
                            .require_revision(&rec.key, rec.revision)
                            .delete(&rec.key);
                    }
                }
                match page.next {
                    Some(n) => start = Some(n),
                    None => break,
                }
            }
            if let Some(subject) = &m.value.subject {
                txn = txn.delete(referrer_key(region, repo, subject, d));
            }
            if committed(self.store.commit(txn).await?) {
                tracing::info!(repository = repo, digest = %d, "manifest deleted");
                return Ok(m.value);
            }
        }
        Err(RegistryError::Contention(mkey))
    }

    /// Removes a tag. With `drop_untagged`, the manifest is deleted too when that was its last
    /// tag (ECR's `BatchDeleteImage` by tag).
    pub(crate) async fn delete_tag(
        &self,
        region: &str,
        repo: &str,
        tag: &str,
        drop_untagged: bool,
    ) -> Result<Digest, RegistryError> {
        let tkey = tag_key(region, repo, tag);
        for _ in 0..CAS_ATTEMPTS {
            let r = self.get_repo(region, repo).await?;
            let Some(t) = self.store.get_typed::<TagRecord>(&tkey).await? else {
                return Err(RegistryError::ManifestUnknown(tag.to_owned()));
            };
            let d = t.value.digest.clone();
            let mut txn = Txn::new()
                .require_revision(repo_key(region, repo), r.revision)
                .require_revision(&tkey, t.revision)
                .delete(&tkey);
            if drop_untagged {
                let others = self
                    .list_tags(region, repo)
                    .await?
                    .into_iter()
                    .any(|(name, rec)| name != tag && rec.digest == d);
                if !others {
                    let mkey = manifest_key(region, repo, &d);
                    if let Some(m) = self.get_manifest_by_digest(region, repo, &d).await? {
                        txn = txn.require_revision(&mkey, m.revision).delete(&mkey);
                        if let Some(subject) = &m.value.subject {
                            txn = txn.delete(referrer_key(region, repo, subject, &d));
                        }
                    }
                }
            }
            if committed(self.store.commit(txn).await?) {
                return Ok(d);
            }
        }
        Err(RegistryError::Contention(tkey))
    }

    /// Referrer descriptors of `subject` in `repo`, optionally filtered by artifact type.
    pub(crate) async fn referrers(
        &self,
        region: &str,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Value>, RegistryError> {
        self.get_repo(region, repo).await?;
        Ok(self
            .store
            .scan_all_typed::<ReferrerRecord>(&referrer_prefix(region, repo, subject))
            .await?
            .into_iter()
            .map(|v| v.value.descriptor)
            .filter(|d| {
                artifact_type
                    .is_none_or(|at| d.get("artifactType").and_then(Value::as_str) == Some(at))
            })
            .collect())
    }
}
