//! The retention job: deletes event batches whose every event is older than the group's
//! retention, and updates the stream's totals in the same transaction.

use gantry_store::{StoreExt, Txn, decode, encode};

use crate::model::{EventBatch, LogGroup, LogStream};
use crate::{LogsError, LogsService, keys};

/// Most batches examined per transaction.
const CHUNK: usize = 256;

pub(crate) async fn enforce(svc: &LogsService, now: u64) -> Result<usize, LogsError> {
    let mut deleted = 0;
    let mut start_after: Option<String> = None;
    loop {
        let page = svc
            .store
            .scan(keys::groups_all(), start_after.as_deref(), 256)
            .await?;
        for rec in &page.records {
            let group: LogGroup = decode(rec)?.value;
            let (Some(cutoff), Some(region)) = (
                group.retention_cutoff(now),
                keys::region_of_group_key(&rec.key),
            ) else {
                continue;
            };
            let streams = svc
                .store
                .scan_all_typed::<LogStream>(&keys::streams(region, &group.name))
                .await?;
            for s in streams {
                if s.value.first_event_timestamp.is_some_and(|t| t < cutoff) {
                    deleted += enforce_stream(svc, region, &group, &s.value.name, cutoff).await?;
                }
            }
        }
        match page.next {
            Some(next) => start_after = Some(next),
            None => return Ok(deleted),
        }
    }
}

async fn enforce_stream(
    svc: &LogsService,
    region: &str,
    group: &LogGroup,
    stream_name: &str,
    cutoff: u64,
) -> Result<usize, LogsError> {
    let skey = keys::stream(region, &group.name, stream_name);
    let mut deleted = 0;
    // Each round deletes up to CHUNK expired batches; a conflict with a writer just retries.
    for _ in 0..1024 {
        let Some(stream) = svc.store.get_typed::<LogStream>(&skey).await? else {
            return Ok(deleted);
        };
        let prefix = keys::batches(region, &group.incarnation, stream.value.num);
        let page = svc.store.scan(&prefix, None, CHUNK).await?;
        let mut txn = Txn::new().require_revision(&skey, stream.revision);
        let mut s = stream.value;
        let mut expired = 0;
        // The smallest first timestamp of the batches that stay, once known for certain.
        let mut first_kept: Option<u64> = None;
        let mut complete = page.next.is_none();
        for rec in &page.records {
            let batch: EventBatch = decode(rec)?.value;
            if batch.first_ts >= cutoff {
                first_kept = Some(first_kept.map_or(batch.first_ts, |t| t.min(batch.first_ts)));
                complete = true;
                break;
            }
            if batch.last_ts < cutoff {
                txn = txn.delete(&rec.key);
                s.stored_bytes = s.stored_bytes.saturating_sub(batch.bytes);
                expired += 1;
            } else {
                first_kept = Some(first_kept.map_or(batch.first_ts, |t| t.min(batch.first_ts)));
            }
        }
        if expired == 0 {
            return Ok(deleted);
        }
        if complete {
            s.first_event_timestamp = first_kept;
        }
        txn = txn.put(&skey, encode(&skey, &s)?);
        if svc.store.commit(txn).await?.is_committed() {
            deleted += expired;
        }
    }
    Ok(deleted)
}
