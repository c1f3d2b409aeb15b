//! Stored records: log groups, log streams and event batches (JSON in the store, never on the wire).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds in a day.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The retention periods PutRetentionPolicy accepts, in days.
pub const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// A log group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogGroup {
    pub name: String,
    pub creation_time: u64,
    /// Fresh per CreateLogGroup: the event batches of this group live under it.
    pub incarnation: String,
    pub retention_in_days: Option<u32>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub kms_key_id: Option<String>,
    pub log_group_class: String,
    #[serde(default)]
    pub deletion_protection: bool,
    /// The number the next CreateLogStream takes.
    pub next_stream_num: u64,
    /// How many metric filters the group has.
    #[serde(default)]
    pub metric_filter_count: u32,
}

impl LogGroup {
    /// Events strictly older than this are expired (`None`: kept forever).
    pub fn retention_cutoff(&self, now: u64) -> Option<u64> {
        self.retention_in_days
            .map(|d| now.saturating_sub(u64::from(d) * DAY_MS))
    }
}

/// A log stream and its running totals, updated in the same transaction as each batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogStream {
    pub name: String,
    pub creation_time: u64,
    /// Unique within the group's incarnation; names the stream's batches and event ids.
    pub num: u64,
    pub first_event_timestamp: Option<u64>,
    pub last_event_timestamp: Option<u64>,
    pub last_ingestion_time: Option<u64>,
    pub stored_bytes: u64,
    /// Sequence number of the last batch (0: none yet); also the upload sequence token.
    pub last_seq: u64,
    /// How the stream's events are stored: [`LAYOUT_BATCHES`] (records written before chunks,
    /// converted on first use) or [`LAYOUT_CHUNKS`].
    #[serde(default)]
    pub layout: u32,
}

/// One record per PutLogEvents batch, keyed by first timestamp (no longer written).
pub const LAYOUT_BATCHES: u32 = 0;
/// Chunks and the reverse index (see `chunk.rs`).
pub const LAYOUT_CHUNKS: u32 = 1;

impl LogStream {
    pub fn sequence_token(&self) -> String {
        sequence_token(self.last_seq)
    }
}

/// A sequence token as AWS shapes them (a long decimal number).
pub fn sequence_token(seq: u64) -> String {
    format!("4959{seq:052}")
}

/// The events of one PutLogEvents call, in chronological order: the stored form of
/// [`LAYOUT_BATCHES`], read only to convert it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    pub seq: u64,
    pub ingestion_time: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    /// Bytes as CloudWatch counts them: UTF-8 length plus 26 per event.
    pub bytes: u64,
    /// `(timestamp, message)`.
    pub events: Vec<(u64, String)>,
}

/// Where an event sits in its stream: ordered by timestamp, then batch, then index in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub ts: u64,
    pub seq: u64,
    pub idx: u32,
}

impl Position {
    /// A position before every event at `ts` or later.
    pub fn before(ts: u64) -> Self {
        Self { ts, seq: 0, idx: 0 }
    }

    /// 38 decimal digits.
    pub fn encode(&self) -> String {
        format!("{:020}{:012}{:06}", self.ts, self.seq, self.idx)
    }

    pub fn decode(s: &str) -> Option<Self> {
        if s.len() != 38 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            ts: s[..20].parse().ok()?,
            seq: s[20..32].parse().ok()?,
            idx: s[32..].parse().ok()?,
        })
    }

    /// A group-wide unique, stable event id (decimal digits, as AWS's are).
    pub fn event_id(&self, stream_num: u64) -> String {
        format!("{:010}{}", stream_num, self.encode())
    }
}

/// CloudWatch's size of one event.
pub fn event_size(message: &str) -> u64 {
    message.len() as u64 + 26
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_sort_like_their_encoding() {
        let a = Position {
            ts: 1_700_000_000_000,
            seq: 3,
            idx: 9,
        };
        let b = Position {
            ts: 1_700_000_000_000,
            seq: 4,
            idx: 0,
        };
        assert_eq!(Position::decode(&a.encode()), Some(a));
        assert!(a < b && a.encode() < b.encode());
        assert!(Position::before(a.ts) < a);
        assert_eq!(Position::decode("12"), None);
        assert_eq!(Position::decode(&"x".repeat(38)), None);
    }

    #[test]
    fn retention_cutoff_is_days_before_now() {
        let mut g = LogGroup {
            name: "g".into(),
            creation_time: 0,
            incarnation: "i".into(),
            retention_in_days: None,
            tags: BTreeMap::new(),
            kms_key_id: None,
            log_group_class: "STANDARD".into(),
            deletion_protection: false,
            next_stream_num: 1,
            metric_filter_count: 0,
        };
        assert_eq!(g.retention_cutoff(10 * DAY_MS), None);
        g.retention_in_days = Some(3);
        assert_eq!(g.retention_cutoff(10 * DAY_MS), Some(7 * DAY_MS));
        assert_eq!(g.retention_cutoff(DAY_MS), Some(0));
    }
}
