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

/// Every batch of one stream, in (first timestamp, sequence) order.
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

/// The key strictly before every batch whose first event is at `first_ts` or later.
pub fn batches_from(prefix: &str, first_ts: u64) -> String {
    format!("{prefix}{first_ts:016}")
}

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
        assert!(batches_from(&p, 5) < batch(&p, 5, 0));
        assert!(batches_from(&p, 5) > batch(&p, 4, 999));
    }

    #[test]
    fn region_is_read_back_from_group_keys() {
        assert_eq!(
            region_of_group_key(&group("eu-west-1", "/a/b")),
            Some("eu-west-1")
        );
    }
}
