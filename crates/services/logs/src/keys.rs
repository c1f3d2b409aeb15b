//! Store keys of Logs records, scoped by region.
//!
//! Log group names cannot contain `:` and stream names cannot contain `:` or `*`, so `:` separates
//! a group from its streams without ambiguity. Event batches live under the group's incarnation
//! (a fresh id per CreateLogGroup) and the stream's number (never reused within an incarnation), so
//! batches left behind by a delete can never reappear under a re-created group or stream.

/// Every log group of every region.
pub fn groups_all() -> &'static str {
    "logs/group/"
}

pub fn groups(region: &str) -> String {
    format!("logs/group/{region}/")
}

pub fn group(region: &str, name: &str) -> String {
    format!("logs/group/{region}/{name}")
}

pub fn streams(region: &str, group: &str) -> String {
    format!("logs/stream/{region}/{group}:")
}

pub fn stream(region: &str, group: &str, stream: &str) -> String {
    format!("logs/stream/{region}/{group}:{stream}")
}

/// The prefix of everything stored for one stream's events (chunks, reverse index, and the
/// per-batch records of the layout before chunks).
pub fn batches(region: &str, incarnation: &str, stream_num: u64) -> String {
    format!(
        "{}{stream_num:010}/",
        incarnation_batches(region, incarnation)
    )
}

/// Every batch of every stream of one group incarnation.
pub fn incarnation_batches(region: &str, incarnation: &str) -> String {
    format!("logs/events/{region}/{incarnation}/")
}

/// Every chunk of one stream (`stream` is a prefix made by [`batches`]), in (first timestamp,
/// sequence, part) order.
pub fn chunks(stream: &str) -> String {
    format!("{stream}c/")
}

pub fn chunk(stream: &str, first_ts: u64, seq: u64, part: u32) -> String {
    format!("{stream}c/{first_ts:020}/{seq:020}/{part:05}")
}

/// The key strictly before every chunk whose first event is at `first_ts` or later.
pub fn chunks_from(stream: &str, first_ts: u64) -> String {
    format!("{stream}c/{first_ts:020}")
}

/// `(first_ts, seq)` of a key made by [`chunk`].
pub fn parse_chunk(key: &str) -> Option<(u64, u64)> {
    let tail = &key[key.rfind("c/")? + 2..];
    let mut parts = tail.split('/');
    let first_ts = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((first_ts, seq))
}

/// The reverse index of one stream's chunks, in (last timestamp, sequence, part) descending order.
pub fn rindex(stream: &str) -> String {
    format!("{stream}r/")
}

/// The reverse-index entry of a chunk; its value is the chunk's key.
pub fn rindex_entry(stream: &str, last_ts: u64, seq: u64, last_idx: u32) -> String {
    format!(
        "{stream}r/{:020}/{:020}/{:010}",
        u64::MAX - last_ts,
        u64::MAX - seq,
        u32::MAX - last_idx
    )
}

/// The key strictly before every reverse-index entry whose chunk ends at `last_ts` or earlier.
pub fn rindex_from(stream: &str, last_ts: u64) -> String {
    format!("{stream}r/{:020}", u64::MAX - last_ts)
}

/// `(last_ts, seq)` of a key made by [`rindex_entry`].
pub fn parse_rindex(key: &str) -> Option<(u64, u64)> {
    let tail = &key[key.rfind("r/")? + 2..];
    let mut parts = tail.split('/');
    let last_ts = u64::MAX - parts.next()?.parse::<u64>().ok()?;
    let seq = u64::MAX - parts.next()?.parse::<u64>().ok()?;
    Some((last_ts, seq))
}

/// Whether a key under a stream's prefix is a batch of the layout before chunks.
pub fn is_legacy_batch(stream: &str, key: &str) -> bool {
    key.strip_prefix(stream)
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// A batch record of the layout before chunks.
#[cfg(test)]
pub fn batch(prefix: &str, first_ts: u64, seq: u64) -> String {
    format!("{prefix}{first_ts:016}/{seq:012}")
}

/// The region of a group key made by [`group`].
pub fn region_of_group_key(key: &str) -> Option<&str> {
    key.strip_prefix(groups_all())?
        .split_once('/')
        .map(|(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_prefix_does_not_cover_longer_group_names() {
        let p = streams("r", "a");
        assert!(stream("r", "a", "s").starts_with(&p));
        assert!(!stream("r", "a/b", "s").starts_with(&p));
        assert!(!stream("r", "ab", "s").starts_with(&p));
    }

    #[test]
    fn batch_keys_sort_by_time_then_sequence() {
        let p = batches("r", "inc", 1);
        assert!(batch(&p, 5, 2) < batch(&p, 6, 1));
        assert!(batch(&p, 5, 1) < batch(&p, 5, 2));
    }

    #[test]
    fn chunk_keys_sort_forward_and_the_reverse_index_backward() {
        let p = batches("r", "inc", 1);
        assert!(chunk(&p, 5, 2, 0) < chunk(&p, 5, 2, 1));
        assert!(chunk(&p, 5, 2, 9) < chunk(&p, 5, 3, 0));
        assert!(chunk(&p, 5, 99, 0) < chunk(&p, 6, 1, 0));
        assert!(chunks_from(&p, 5) < chunk(&p, 5, 0, 0));
        assert!(chunks_from(&p, 5) > chunk(&p, 4, u64::MAX, 99_999));
        assert!(chunk(&p, u64::MAX, 1, 0).starts_with(&chunks(&p)));
        assert_eq!(parse_chunk(&chunk(&p, 5, 2, 3)), Some((5, 2)));
        assert!(rindex_entry(&p, 9, 1, 0) < rindex_entry(&p, 8, 5, 0));
        assert!(rindex_entry(&p, 9, 2, 0) < rindex_entry(&p, 9, 1, 7));
        assert!(rindex_entry(&p, 9, 1, 7) < rindex_entry(&p, 9, 1, 6));
        assert!(rindex_from(&p, 9) < rindex_entry(&p, 9, u64::MAX, u32::MAX));
        assert!(rindex_from(&p, 9) > rindex_entry(&p, 10, 0, 0));
        assert_eq!(parse_rindex(&rindex_entry(&p, 9, 4, 2)), Some((9, 4)));
        assert!(is_legacy_batch(&p, &batch(&p, 5, 1)));
        assert!(!is_legacy_batch(&p, &chunk(&p, 5, 1, 0)));
        assert!(!is_legacy_batch(&p, &rindex_entry(&p, 5, 1, 0)));
    }

    #[test]
    fn region_is_read_back_from_group_keys() {
        assert_eq!(
            region_of_group_key(&group("eu-west-1", "/a/b")),
            Some("eu-west-1")
        );
    }
}
