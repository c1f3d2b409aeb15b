//! Maintenance: purging abandoned upload sessions and collecting unreferenced blobs.
//!
//! A blob is kept while any manifest references it, while any repository links to it, and
//! while it is younger than the grace period. A link is removed once no manifest of its
//! repository references it and it was not used (upload, mount, manifest push) within the grace
//! period. Races with pushes are closed by compare-and-swap (a manifest push rewrites the links
//! it uses, so a concurrent link removal conflicts) and by the per-digest lock that uploads and
//! mounts hold while they store and link a blob.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use gantry_store::{Txn, Versioned};

use crate::Registry;
use crate::core::now_secs;
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::meta::{
    LINK_ALL, LinkRecord, ManifestRecord, dec, link_prefix, manifest_all, parse_link_key,
};

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub uploads_purged: usize,
    /// Images lifecycle policies expired.
    pub images_expired: usize,
    pub links_removed: usize,
    pub blobs_removed: usize,
    pub bytes_reclaimed: u64,
}

impl Registry {
    /// Deletes upload sessions idle for longer than the TTL.
    pub(crate) async fn purge_uploads(&self) -> Result<usize, RegistryError> {
        let cutoff = SystemTime::now()
            .checked_sub(self.options.upload_ttl)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut purged = 0;
        for (id, st) in self.blobs.upload_list().await? {
            if st.modified < cutoff && self.blobs.upload_purge_if_idle(&id, cutoff).await? {
                tracing::info!(upload = %id, repository = %st.meta.repository, "purged abandoned upload");
                self.forget_upload(&id);
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// One garbage collection pass.
    pub(crate) async fn collect_garbage(&self) -> Result<GcReport, RegistryError> {
        let grace = self.options.gc_grace;
        let cutoff_secs = now_secs() - grace.as_secs_f64();
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = GcReport::default();

        // 1. What manifests reference, per repository of each region and overall.
        let mut used_in_repo: HashSet<(String, String, Digest)> = HashSet::new();
        let mut used: HashSet<Digest> = HashSet::new();
        for region in self.regions().await? {
            let prefix = manifest_all(&region);
            let mut start: Option<String> = None;
            loop {
                let page = self.store.scan(&prefix, start.as_deref(), 1000).await?;
                for rec in &page.records {
                    let Some((repo, _)) = rec.key[prefix.len()..].rsplit_once('#') else {
                        continue;
                    };
                    let m: Versioned<ManifestRecord> = dec(rec)?;
                    for b in m.value.blobs {
                        used.insert(b.clone());
                        used_in_repo.insert((region.clone(), repo.to_owned(), b));
                    }
                }
                match page.next {
                    Some(n) => start = Some(n),
                    None => break,
                }
            }
        }

        // 2. Links no manifest of their repository uses, idle past the grace period.
        let mut start: Option<String> = None;
        loop {
            let page = self.store.scan(LINK_ALL, start.as_deref(), 1000).await?;
            for rec in &page.records {
                let Some((d, region, repo)) = parse_link_key(&rec.key) else {
                    continue;
                };
                if used_in_repo.contains(&(region, repo, d)) {
                    continue;
                }
                let link: Versioned<LinkRecord> = dec(rec)?;
                if link.value.touched_at >= cutoff_secs {
                    continue;
                }
                let txn = Txn::new()
                    .require_revision(&rec.key, rec.revision)
                    .delete(&rec.key);
                if self.controller_store().commit(txn).await?.is_committed() {
                    report.links_removed += 1;
                }
            }
            match page.next {
                Some(n) => start = Some(n),
                None => break,
            }
        }

        // 3. Blobs nothing references, older than the grace period.
        for (d, info) in self.blobs.list().await? {
            if used.contains(&d) || info.modified >= cutoff {
                continue;
            }
            let _guard = self.blob_lock(&d).lock().await;
            if !self
                .store
                .scan(&link_prefix(&d), None, 1)
                .await?
                .records
                .is_empty()
            {
                continue;
            }
            match self.blobs.stat(&d).await? {
                Some(now) if now.modified < cutoff => {}
                _ => continue,
            }
            if !self.still_leading().await? {
                tracing::warn!("garbage collection stopped: this replica no longer leads");
                break;
            }
            if self.blobs.delete(&d).await? {
                tracing::info!(digest = %d, size = info.size, "collected unreferenced blob");
                report.blobs_removed += 1;
                report.bytes_reclaimed += info.size;
            }
        }
        Ok(report)
    }

    /// The grace period (for tests).
    pub fn gc_grace(&self) -> Duration {
        self.options.gc_grace
    }
}
