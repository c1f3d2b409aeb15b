//! Converting a stream stored one record per batch ([`LAYOUT_BATCHES`]) to chunks.
//!
//! Streams written before chunks existed are converted the first time they are read (or swept by
//! retention), one batch per transaction, so the work is bounded by one batch at a time and a
//! conversion cut short resumes where it stopped. Event positions (and so tokens) do not change.

use gantry_store::{StoreExt, Txn, decode, encode};

use crate::model::{EventBatch, LAYOUT_BATCHES, LAYOUT_CHUNKS, LogGroup, LogStream};
use crate::{LogsError, LogsService, chunk, keys};

/// Consecutive conflicts with writers after which a conversion gives up (the next read retries).
const MAX_CONFLICTS: usize = 64;

/// Adds the puts of a batch's chunks and reverse-index entries to `txn`; returns it and the
/// CloudWatch size of the events.
pub(crate) fn put_chunks(
    mut txn: Txn,
    prefix: &str,
    events: &[(u64, String)],
    seq: u64,
    ingestion_time: u64,
) -> (Txn, u64) {
    let mut bytes = 0;
    for c in chunk::split(events, seq, ingestion_time) {
        let ckey = keys::chunk(prefix, c.first_ts, seq, c.part);
        let rkey = keys::rindex_entry(prefix, c.last_ts, seq, c.first_idx + c.count - 1);
        bytes += c.bytes;
        txn = txn.put(rkey, ckey.clone().into_bytes()).put(ckey, c.value);
    }
    (txn, bytes)
}

/// The stream with its events in chunks, converting what is still stored per batch.
pub(crate) async fn ensure_chunked(
    svc: &LogsService,
    region: &str,
    group: &LogGroup,
    stream: LogStream,
) -> Result<LogStream, LogsError> {
    if stream.layout != LAYOUT_BATCHES {
        return Ok(stream);
    }
    let skey = keys::stream(region, &group.name, &stream.name);
    let prefix = keys::batches(region, &group.incarnation, stream.num);
    let mut conflicts = 0;
    loop {
        let Some(cur) = svc.store.get_typed::<LogStream>(&skey).await? else {
            return Err(LogsError::stream_not_found());
        };
        if cur.value.layout != LAYOUT_BATCHES {
            return Ok(cur.value);
        }
        let page = svc.store.scan(&prefix, None, 1).await?;
        let legacy = page
            .records
            .into_iter()
            .next()
            .filter(|r| keys::is_legacy_batch(&prefix, &r.key));
        let mut s = cur.value;
        let mut txn = Txn::new().require_revision(&skey, cur.revision);
        let done = legacy.is_none();
        match legacy {
            None => s.layout = LAYOUT_CHUNKS,
            Some(rec) => {
                let batch: EventBatch = decode(&rec)?.value;
                txn = txn.delete(&rec.key);
                txn = put_chunks(txn, &prefix, &batch.events, batch.seq, batch.ingestion_time).0;
            }
        }
        // Writing the stream record makes concurrent conversions of the same stream conflict.
        txn = txn.put(&skey, encode(&skey, &s)?);
        if svc.store.commit(txn).await?.is_committed() {
            conflicts = 0;
            if done {
                tracing::debug!(stream = %s.name, group = %group.name, "log stream converted to chunks");
                return Ok(s);
            }
        } else {
            conflicts += 1;
            if conflicts >= MAX_CONFLICTS {
                return Err(LogsError::Contention(skey));
            }
        }
    }
}
