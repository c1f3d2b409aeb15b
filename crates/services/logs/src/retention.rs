//! The retention job: deletes event chunks whose every event is older than the group's
//! retention, and updates the stream's totals in the same transaction.

use gantry_store::{StoreExt, Txn, decode, encode};

use crate::chunk::Chunk;
use crate::model::{LogGroup, LogStream};
use crate::{LogsError, LogsService, keys, upgrade};

/// Most chunks deleted per transaction.
const CHUNK: usize = 256;
/// Chunks read per store scan (each up to 64 KiB, or one large event).
const SCAN_PAGE: usize = 8;

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
                    deleted += enforce_stream(svc, region, &group, s.value, cutoff).await?;
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
    stream: LogStream,
    cutoff: u64,
) -> Result<usize, LogsError> {
    let stream = upgrade::ensure_chunked(svc, region, group, stream).await?;
    let skey = keys::stream(region, &group.name, &stream.name);
    let prefix = keys::batches(region, &group.incarnation, stream.num);
    let mut deleted = 0;
    // Each round deletes the expired chunks among the first CHUNK (a chunk expires when its last
    // event does); a conflict with a writer just retries.
    for _ in 0..1024 {
        let Some(stream) = svc.store.get_typed::<LogStream>(&skey).await? else {
            return Ok(deleted);
        };
        let mut txn = Txn::new().require_revision(&skey, stream.revision);
        let mut s = stream.value;
        let mut expired = 0;
        // The smallest first timestamp of the chunks that stay, once known for certain.
        let mut first_kept: Option<u64> = None;
        let mut start_after: Option<String> = None;
        let mut complete = false;
        'scan: while expired < CHUNK {
            let page = svc
                .store
                .scan(&keys::chunks(&prefix), start_after.as_deref(), SCAN_PAGE)
                .await?;
            for rec in page.records {
                let key = rec.key.clone();
                let c = Chunk::parse(rec.key, rec.value)?;
                if c.first_ts() >= cutoff {
                    first_kept = Some(first_kept.map_or(c.first_ts(), |t| t.min(c.first_ts())));
                    complete = true;
                    break 'scan;
                }
                if c.last_ts() < cutoff {
                    let rkey = keys::rindex_entry(&prefix, c.last_ts(), c.seq, c.last_idx());
                    txn = txn.delete(&key).delete(rkey);
                    s.stored_bytes = s.stored_bytes.saturating_sub(c.bytes());
                    expired += 1;
                } else {
                    first_kept = Some(first_kept.map_or(c.first_ts(), |t| t.min(c.first_ts())));
                }
                start_after = Some(key);
            }
            if page.next.is_none() {
                complete = true;
                break;
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
