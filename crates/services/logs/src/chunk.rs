//! Event chunks: the stored unit of log events.
//!
//! PutLogEvents splits its accepted events into chunks of at most [`CHUNK_BYTES`] of messages
//! (one event may exceed it on its own) whose events lie within [`CHUNK_SPAN_MS`] of the chunk's
//! first. Each chunk is one store record keyed by stream, first timestamp, batch sequence and part
//! ([`crate::keys::chunk`]); a small reverse-index record keyed by the inverted last timestamp
//! ([`crate::keys::rindex_entry`]) lets readers walk a stream backwards with forward scans.
//! Because a chunk spans at most [`CHUNK_SPAN_MS`], every chunk holding an event at or after time
//! `t` has its first timestamp at or after `t - CHUNK_SPAN_MS`: a reader seeks there and never
//! looks further back, whatever the size of the stream.
//!
//! A chunk value is binary (little-endian), so messages are stored as they came, without escaping:
//! `version u8 = 1 | seq u64 | ingestion_time u64 | first_idx u32 | count u32 |
//! count × (timestamp u64 | length u32 | message bytes)`.

use gantry_store::StoreError;

use crate::model::{Position, event_size};

/// The message bytes after which a chunk is closed (a single larger event gets a chunk of its own).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The widest span of timestamps within one chunk: the reader's lookback when it seeks.
pub const CHUNK_SPAN_MS: u64 = 1_000;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 8 + 4 + 4;
const EVENT_HEADER: usize = 8 + 4;

/// One chunk to be written: its key parts and its encoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChunk {
    pub first_ts: u64,
    pub last_ts: u64,
    /// Index of this chunk within its batch.
    pub part: u32,
    /// Batch index of the chunk's first event.
    pub first_idx: u32,
    /// Number of events.
    pub count: u32,
    /// CloudWatch's size of the chunk's events (messages plus 26 bytes each).
    pub bytes: u64,
    pub value: Vec<u8>,
}

/// Splits a batch's accepted events (chronological) into chunks. `first_idx` is the batch index
/// of `events[0]`.
pub fn split(events: &[(u64, String)], seq: u64, ingestion_time: u64) -> Vec<NewChunk> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let first_ts = events[start].0;
        let mut end = start;
        let mut bytes = 0usize;
        while end < events.len() {
            let (ts, msg) = &events[end];
            let full = end > start && bytes + msg.len() > CHUNK_BYTES;
            if full || ts.saturating_sub(first_ts) > CHUNK_SPAN_MS {
                break;
            }
            bytes += msg.len();
            end += 1;
        }
        out.push(encode(
            &events[start..end],
            seq,
            ingestion_time,
            start as u32,
            out.len() as u32,
        ));
        start = end;
    }
    out
}

fn encode(
    events: &[(u64, String)],
    seq: u64,
    ingestion_time: u64,
    first_idx: u32,
    part: u32,
) -> NewChunk {
    let payload: usize = events.iter().map(|(_, m)| EVENT_HEADER + m.len()).sum();
    let mut value = Vec::with_capacity(HEADER + payload);
    value.push(VERSION);
    value.extend_from_slice(&seq.to_le_bytes());
    value.extend_from_slice(&ingestion_time.to_le_bytes());
    value.extend_from_slice(&first_idx.to_le_bytes());
    value.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for (ts, msg) in events {
        value.extend_from_slice(&ts.to_le_bytes());
        value.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        value.extend_from_slice(msg.as_bytes());
    }
    NewChunk {
        first_ts: events.first().map_or(0, |e| e.0),
        last_ts: events.last().map_or(0, |e| e.0),
        part,
        first_idx,
        count: events.len() as u32,
        bytes: events.iter().map(|(_, m)| event_size(m)).sum(),
        value,
    }
}

/// A stored chunk, parsed: the raw value and where each event sits in it.
#[derive(Debug)]
pub struct Chunk {
    pub key: String,
    raw: Vec<u8>,
    pub seq: u64,
    pub ingestion_time: u64,
    first_idx: u32,
    /// `(timestamp, offset, length)` of each event, chronological.
    events: Vec<(u64, u32, u32)>,
}

fn codec(key: &str, detail: &str) -> StoreError {
    StoreError::Codec {
        key: key.to_owned(),
        detail: detail.to_owned(),
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

impl Chunk {
    /// Parses a stored chunk; a malformed value is a codec error naming the key.
    pub fn parse(key: String, raw: Vec<u8>) -> Result<Self, StoreError> {
        if raw.len() < HEADER || raw[0] != VERSION {
            return Err(codec(&key, "not a version 1 event chunk"));
        }
        let seq = le_u64(&raw, 1);
        let ingestion_time = le_u64(&raw, 9);
        let first_idx = le_u32(&raw, 17);
        let count = le_u32(&raw, 21) as usize;
        // Every event takes at least its header, so `count` is bounded by the value's length.
        if count == 0 || count > (raw.len() - HEADER) / EVENT_HEADER {
            return Err(codec(&key, "bad event count"));
        }
        let mut events = Vec::with_capacity(count);
        let mut at = HEADER;
        let mut prev = 0;
        for _ in 0..count {
            if raw.len() - at < EVENT_HEADER {
                return Err(codec(&key, "truncated event"));
            }
            let ts = le_u64(&raw, at);
            let len = le_u32(&raw, at + 8) as usize;
            at += EVENT_HEADER;
            if raw.len() - at < len || ts < prev {
                return Err(codec(&key, "truncated or unordered event"));
            }
            events.push((ts, at as u32, len as u32));
            at += len;
            prev = ts;
        }
        if at != raw.len() {
            return Err(codec(&key, "trailing bytes"));
        }
        Ok(Self {
            key,
            raw,
            seq,
            ingestion_time,
            first_idx,
            events,
        })
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Bytes held in memory for this chunk.
    pub fn resident(&self) -> usize {
        self.raw.len() + self.events.len() * 16
    }

    pub fn position(&self, i: usize) -> Position {
        Position {
            ts: self.events[i].0,
            seq: self.seq,
            idx: self.first_idx + i as u32,
        }
    }

    pub fn first_ts(&self) -> u64 {
        self.events[0].0
    }

    pub fn last_ts(&self) -> u64 {
        self.events[self.events.len() - 1].0
    }

    /// The index of the batch's last event in this chunk (part of the reverse-index key).
    pub fn last_idx(&self) -> u32 {
        self.first_idx + self.events.len() as u32 - 1
    }

    /// The message of event `i`; invalid UTF-8 is a codec error.
    pub fn message(&self, i: usize) -> Result<&str, StoreError> {
        let (_, off, len) = self.events[i];
        std::str::from_utf8(&self.raw[off as usize..(off + len) as usize])
            .map_err(|_| codec(&self.key, "message is not UTF-8"))
    }

    /// CloudWatch's size of event `i`.
    pub fn event_bytes(&self, i: usize) -> u64 {
        u64::from(self.events[i].2) + 26
    }

    /// CloudWatch's size of every event of the chunk.
    pub fn bytes(&self) -> u64 {
        (0..self.len()).map(|i| self.event_bytes(i)).sum()
    }

    /// The first index whose position is after `p` (`len()` if none). Positions within a chunk
    /// strictly increase, so this is a binary search.
    pub fn first_after(&self, p: Position) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.position(mid) <= p {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The last index whose position is before `p` (`None` if none).
    pub fn last_before(&self, p: Position) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.position(mid) < p {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evs(v: &[(u64, &str)]) -> Vec<(u64, String)> {
        v.iter().map(|(t, m)| (*t, (*m).to_owned())).collect()
    }

    #[test]
    fn chunks_round_trip_and_keep_batch_indexes() {
        let events = evs(&[
            (5, "a"),
            (5, "bb"),
            (900, "ccc"),
            (1_006, "d"),
            (1_007, "é"),
        ]);
        let chunks = split(&events, 7, 42);
        assert_eq!(chunks.len(), 2, "split at the 1 s span");
        assert_eq!(
            (chunks[0].first_ts, chunks[0].last_ts, chunks[0].part),
            (5, 900, 0)
        );
        assert_eq!(
            (chunks[1].first_ts, chunks[1].last_ts, chunks[1].part),
            (1_006, 1_007, 1)
        );
        let c = Chunk::parse("k".into(), chunks[1].value.clone()).unwrap();
        assert_eq!((c.seq, c.ingestion_time, c.len()), (7, 42, 2));
        assert_eq!(
            c.position(1),
            Position {
                ts: 1_007,
                seq: 7,
                idx: 4
            }
        );
        assert_eq!(c.message(1).unwrap(), "é");
        assert_eq!(c.bytes(), chunks[1].bytes);
        assert_eq!(c.last_idx(), 4);
    }

    #[test]
    fn chunks_close_at_the_size_limit_but_take_one_large_event() {
        let big = "x".repeat(CHUNK_BYTES + 10);
        let small = "y".repeat(CHUNK_BYTES / 2 + 1);
        let events = vec![(1, small.clone()), (1, small.clone()), (1, big), (2, small)];
        let chunks = split(&events, 1, 0);
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c.first_ts <= c.last_ts));
    }

    #[test]
    fn seeks_inside_a_chunk() {
        let chunks = split(&evs(&[(1, "a"), (2, "b"), (2, "c"), (3, "d")]), 9, 0);
        let c = Chunk::parse("k".into(), chunks[0].value.clone()).unwrap();
        let at = |ts, idx| Position { ts, seq: 9, idx };
        assert_eq!(c.first_after(Position::before(2)), 1);
        assert_eq!(c.first_after(at(2, 1)), 2);
        assert_eq!(c.first_after(at(3, 3)), 4);
        assert_eq!(c.last_before(at(2, 2)), Some(1));
        assert_eq!(c.last_before(Position::before(1)), None);
    }

    #[test]
    fn malformed_values_are_codec_errors() {
        let good = split(&evs(&[(1, "abc")]), 1, 0).remove(0).value;
        for bad in [
            vec![],
            vec![2; HEADER],
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
        ] {
            assert!(Chunk::parse("k".into(), bad).is_err());
        }
        let mut huge_count = good.clone();
        huge_count[21..25].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Chunk::parse("k".into(), huge_count).is_err());
        let mut bad_utf8 = good;
        let n = bad_utf8.len();
        bad_utf8[n - 1] = 0xff;
        assert!(
            Chunk::parse("k".into(), bad_utf8)
                .unwrap()
                .message(0)
                .is_err()
        );
    }
}
