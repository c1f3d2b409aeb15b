//! PutLogEvents, GetLogEvents, FilterLogEvents, and reading a stream's stored batches.

use gantry_aws_proto::pagination;
use gantry_front::RequestContext;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use gantry_store::{Txn, decode, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{DAY_MS, LogGroup, LogStream, Position, event_size, sequence_token};
use crate::pattern::FilterPattern;
use crate::read::{ReadBudget, StreamCursor};
use crate::wire::{
    check_group_name, check_stream_name, commit_with_retry, group_ref, limit, load_group,
    load_stream, parse, required,
};
use crate::{LogsError, LogsService, keys, upgrade};

/// Most events in one PutLogEvents call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest PutLogEvents batch, counting 26 bytes of overhead per event.
pub const MAX_BATCH_BYTES: u64 = 1_048_576;
/// Largest event, counting its 26 bytes of overhead.
pub const MAX_EVENT_BYTES: u64 = 1_048_576;
/// Largest response of GetLogEvents and FilterLogEvents, as AWS caps them.
pub const MAX_RESPONSE_BYTES: u64 = 1_048_576;
/// Longest filter pattern (the model's `FilterPattern` shape).
pub const MAX_PATTERN_CHARS: usize = 1024;
/// Events further in the future than this are rejected as too new.
const TOO_NEW_MS: u64 = 2 * 60 * 60 * 1000;
/// Events older than this are rejected as too old.
const TOO_OLD_MS: u64 = 14 * DAY_MS;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InputLogEvent {
    timestamp: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEventsRequest {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
    log_events: Option<Vec<InputLogEvent>>,
    /// Ignored, as AWS now ignores it.
    #[allow(dead_code)]
    sequence_token: Option<String>,
    /// Telemetry entity: not kept; reported back in `rejectedEntityInfo`.
    entity: Option<Value>,
}

/// Which events of a batch are rejected, by index (the three ranges of `rejectedLogEventsInfo`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejections {
    /// The first too-new event (inclusive).
    pub too_new_start: Option<usize>,
    /// The end of the too-old events (exclusive: the count of too-old events).
    pub too_old_end: Option<usize>,
    /// The end of the expired events (exclusive).
    pub expired_end: Option<usize>,
}

impl Rejections {
    /// Classifies chronologically ordered timestamps; returns the accepted index range too.
    pub(crate) fn classify(
        ts: &[u64],
        now: u64,
        retention_cutoff: Option<u64>,
    ) -> (Self, std::ops::Range<usize>) {
        let too_old_before = now.saturating_sub(TOO_OLD_MS);
        let old = ts.partition_point(|&t| t < too_old_before);
        let expired = retention_cutoff.map_or(0, |c| ts.partition_point(|&t| t < c));
        let new_from = ts.partition_point(|&t| t <= now + TOO_NEW_MS);
        let r = Self {
            too_new_start: (new_from < ts.len()).then_some(new_from),
            too_old_end: (old > 0).then_some(old),
            expired_end: (expired > 0).then_some(expired),
        };
        let start = old.max(expired).min(new_from);
        (r, start..new_from)
    }

    fn to_wire(self) -> Option<Value> {
        if self == Self::default() {
            return None;
        }
        let mut v = json!({});
        if let Some(i) = self.too_new_start {
            v["tooNewLogEventStartIndex"] = json!(i);
        }
        if let Some(i) = self.too_old_end {
            v["tooOldLogEventEndIndex"] = json!(i);
        }
        if let Some(i) = self.expired_end {
            v["expiredLogEventEndIndex"] = json!(i);
        }
        Some(v)
    }
}

/// Validates a batch and returns its `(timestamp, message)` pairs.
fn validate_batch(events: Vec<InputLogEvent>) -> Result<Vec<(u64, String)>, LogsError> {
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length between 1 and {MAX_BATCH_EVENTS}"
        )));
    }
    let mut out = Vec::with_capacity(events.len());
    let mut bytes = 0u64;
    for (i, e) in events.into_iter().enumerate() {
        let ts = required(
            e.timestamp,
            &format!("logEvents.{}.member.timestamp", i + 1),
        )?;
        let message = required(e.message, &format!("logEvents.{}.member.message", i + 1))?;
        let ts = u64::try_from(ts).map_err(|_| {
            LogsError::invalid(format!(
                "1 validation error detected: Value '{ts}' at 'logEvents.{}.member.timestamp' failed to satisfy constraint: Member must have value greater than or equal to 0",
                i + 1
            ))
        })?;
        if message.is_empty() {
            return Err(LogsError::invalid(format!(
                "1 validation error detected: Value '' at 'logEvents.{}.member.message' failed to satisfy constraint: Member must have length greater than or equal to 1",
                i + 1
            )));
        }
        let size = event_size(&message);
        if size > MAX_EVENT_BYTES {
            return Err(LogsError::invalid(format!(
                "Log event too large: {size} bytes exceeds limit of {MAX_EVENT_BYTES}"
            )));
        }
        if let Some(&(prev, _)) = out.last()
            && ts < prev
        {
            return Err(LogsError::invalid(
                "Log events in a single PutLogEvents request must be in chronological order.",
            ));
        }
        bytes += size;
        out.push((ts, message));
    }
    if bytes > MAX_BATCH_BYTES {
        return Err(LogsError::invalid(format!(
            "Upload too large: {bytes} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    Ok(out)
}

/// The 24-hour span rule, which AWS applies to the events it would accept by time (within 14 days
/// in the past and 2 hours in the future); the others are rejected one by one instead.
fn check_span(ts: &[u64], now: u64) -> Result<(), LogsError> {
    let valid_from = ts.partition_point(|&t| t < now.saturating_sub(TOO_OLD_MS));
    let valid_to = ts.partition_point(|&t| t <= now + TOO_NEW_MS);
    if valid_from < valid_to && ts[valid_to - 1] - ts[valid_from] > DAY_MS {
        return Err(LogsError::invalid(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
        ));
    }
    Ok(())
}

pub(crate) async fn put(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: PutLogEventsRequest = parse(body)?;
    let group_name = required(req.log_group_name, "logGroupName")?;
    let stream_name = required(req.log_stream_name, "logStreamName")?;
    check_group_name(&group_name)?;
    check_stream_name(&stream_name)?;
    let events = validate_batch(required(req.log_events, "logEvents")?)?;
    let timestamps: Vec<u64> = events.iter().map(|e| e.0).collect();
    check_span(&timestamps, ctx.now)?;
    let skey = keys::stream(&ctx.region, &group_name, &stream_name);
    let (token, rejections, accepted) = commit_with_retry(svc.store.as_ref(), || async {
        let group = load_group(svc, ctx, &group_name).await?.value;
        let mut stream = load_stream(svc, ctx, &group_name, &stream_name).await?;
        let (rejections, accepted) =
            Rejections::classify(&timestamps, ctx.now, group.retention_cutoff(ctx.now));
        if accepted.is_empty() {
            return Ok((
                Txn::new(),
                (stream.value.sequence_token(), rejections, accepted),
            ));
        }
        let kept = &events[accepted.clone()];
        let (first_ts, last_ts) = (kept[0].0, kept[kept.len() - 1].0);
        let s = &mut stream.value;
        s.last_seq += 1;
        let prefix = keys::batches(&ctx.region, &group.incarnation, s.num);
        let (txn, bytes) = upgrade::put_chunks(
            Txn::new().require_revision(&skey, stream.revision),
            &prefix,
            kept,
            s.last_seq,
            ctx.now,
        );
        s.first_event_timestamp = Some(
            s.first_event_timestamp
                .map_or(first_ts, |t| t.min(first_ts)),
        );
        s.last_event_timestamp = Some(s.last_event_timestamp.map_or(last_ts, |t| t.max(last_ts)));
        s.last_ingestion_time = Some(ctx.now);
        s.stored_bytes += bytes;
        let txn = txn.put(&skey, encode(&skey, s)?);
        Ok((txn, (sequence_token(s.last_seq), rejections, accepted)))
    })
    .await?;
    if !accepted.is_empty() {
        crate::metric_filters::publish_events(svc, ctx, &group_name, &events[accepted]).await;
    }
    let mut out = json!({"nextSequenceToken": token});
    if let Some(r) = rejections.to_wire() {
        out["rejectedLogEventsInfo"] = r;
    }
    if req.entity.is_some() {
        // The events are kept; the entity (related-telemetry metadata) is not.
        out["rejectedEntityInfo"] = json!({"errorType": "UnsupportedLogGroupType"});
    }
    Ok(out)
}

/// `[lo, hi)` from a request's startTime/endTime and the group's retention.
fn time_range(
    group: &LogGroup,
    now: u64,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<(u64, u64), LogsError> {
    let conv = |v: Option<i64>, member: &str| -> Result<Option<u64>, LogsError> {
        v.map(|t| {
            u64::try_from(t).map_err(|_| {
                LogsError::invalid(format!(
                    "1 validation error detected: Value '{t}' at '{member}' failed to satisfy constraint: Member must have value greater than or equal to 0"
                ))
            })
        })
        .transpose()
    };
    let start = conv(start, "startTime")?.unwrap_or(0);
    let end = conv(end, "endTime")?.unwrap_or(u64::MAX);
    let lo = group.retention_cutoff(now).map_or(start, |c| start.max(c));
    Ok((lo, end))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetLogEventsRequest {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    next_token: Option<String>,
    limit: Option<i64>,
    start_from_head: Option<bool>,
}

enum Direction {
    Forward(Option<Position>),
    Backward(Option<Position>),
}

fn parse_get_token(token: &str) -> Result<Direction, LogsError> {
    let invalid = || LogsError::invalid("The specified nextToken is invalid.");
    if let Some(p) = token.strip_prefix("f/") {
        Ok(Direction::Forward(Some(
            Position::decode(p).ok_or_else(invalid)?,
        )))
    } else if let Some(p) = token.strip_prefix("b/") {
        Ok(Direction::Backward(Some(
            Position::decode(p).ok_or_else(invalid)?,
        )))
    } else {
        Err(invalid())
    }
}

pub(crate) async fn get(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: GetLogEventsRequest = parse(body)?;
    let group_name = group_ref(ctx, req.log_group_name, req.log_group_identifier)?;
    let stream_name = required(req.log_stream_name, "logStreamName")?;
    check_stream_name(&stream_name)?;
    let limit = limit(req.limit, 10_000, 10_000)?;
    let direction = match req.next_token.as_deref() {
        Some(t) => parse_get_token(t)?,
        None if req.start_from_head.unwrap_or(false) => Direction::Forward(None),
        None => Direction::Backward(None),
    };
    let group = load_group(svc, ctx, &group_name).await?.value;
    let stream = load_stream(svc, ctx, &group_name, &stream_name)
        .await?
        .value;
    let stream = upgrade::ensure_chunked(svc, &ctx.region, &group, stream).await?;
    let (lo, hi) = time_range(&group, ctx.now, req.start_time, req.end_time)?;
    let prefix = keys::batches(&ctx.region, &group.incarnation, stream.num);
    let store = svc.store.as_ref();
    let mut budget = ReadBudget::new(svc.read_limits.resident_bytes);
    let (mut cursor, anchor, backward) = match direction {
        Direction::Forward(after) => {
            let start = after.map_or(Position::before(lo), |a| a.max(Position::before(lo)));
            (
                StreamCursor::forward(prefix, start, hi),
                after.unwrap_or(Position::before(lo)),
                false,
            )
        }
        Direction::Backward(before) => {
            let end = before.map_or(Position::before(hi), |b| b.min(Position::before(hi)));
            (
                StreamCursor::backward(prefix, end, lo),
                before.unwrap_or(Position::before(lo)),
                true,
            )
        }
    };
    // Messages are copied out as they are read, so the page holds what it returns and no chunk.
    let mut bytes = 0;
    let mut page: Vec<(Position, Value)> = Vec::new();
    while page.len() < limit {
        let Some(e) = cursor.next(store, &mut budget).await? else {
            break;
        };
        bytes += e.size();
        if bytes > MAX_RESPONSE_BYTES {
            break;
        }
        let pos = e.position();
        page.push((
            pos,
            json!({
                "timestamp": pos.ts,
                "message": e.message()?,
                "ingestionTime": e.ingestion_time(),
            }),
        ));
    }
    cursor.release_all(&mut budget);
    if backward {
        page.reverse();
    }
    let (fwd, bwd) = match (page.first(), page.last()) {
        (Some(first), Some(last)) => (last.0, first.0),
        _ => (anchor, anchor),
    };
    let events: Vec<Value> = page.into_iter().map(|(_, v)| v).collect();
    Ok(json!({
        "events": events,
        "nextForwardToken": format!("f/{}", fwd.encode()),
        "nextBackwardToken": format!("b/{}", bwd.encode()),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterLogEventsRequest {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_names: Option<Vec<String>>,
    log_stream_name_prefix: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

/// Where FilterLogEvents resumes: after this `(timestamp, stream, batch, index)`. Events of all
/// streams are returned in this order.
type FilterKey = (u64, String, u64, u32);

/// The position in `stream` after which FilterLogEvents resumes when it stopped at `key`.
fn resume_in_stream(stream: &str, key: &FilterKey) -> Position {
    match stream.cmp(key.1.as_str()) {
        std::cmp::Ordering::Less => Position {
            ts: key.0,
            seq: u64::MAX,
            idx: u32::MAX,
        },
        std::cmp::Ordering::Equal => Position {
            ts: key.0,
            seq: key.2,
            idx: key.3,
        },
        std::cmp::Ordering::Greater => Position::before(key.0),
    }
}

/// A stream in the FilterLogEvents merge: not opened until the merge reaches its first event.
struct Lane {
    stream: LogStream,
    start: Position,
    cursor: Option<StreamCursor>,
}

pub(crate) async fn filter(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: FilterLogEventsRequest = parse(body)?;
    let group_name = group_ref(ctx, req.log_group_name, req.log_group_identifier)?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    if let Some(names) = &req.log_stream_names {
        if names.is_empty() || names.len() > 100 {
            return Err(LogsError::invalid(
                "1 validation error detected: Value at 'logStreamNames' failed to satisfy constraint: Member must have length between 1 and 100",
            ));
        }
        for n in names {
            check_stream_name(n)?;
        }
    }
    if let Some(p) = &req.log_stream_name_prefix {
        check_stream_name(p)?;
    }
    let limit = limit(req.limit, 10_000, 10_000)?;
    let pattern_text = req.filter_pattern.as_deref().unwrap_or("");
    if pattern_text.chars().count() > MAX_PATTERN_CHARS {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value at 'filterPattern' failed to satisfy constraint: Member must have length less than or equal to {MAX_PATTERN_CHARS}"
        )));
    }
    let pattern =
        FilterPattern::parse(pattern_text).map_err(|e| LogsError::invalid(e.to_string()))?;
    let after: Option<FilterKey> = match req.next_token.as_deref() {
        None => None,
        Some(t) => Some(
            pagination::decode_token(t)
                .and_then(|s| serde_json::from_str(&s).ok())
                .ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?,
        ),
    };
    let group = load_group(svc, ctx, &group_name).await?.value;
    // endTime is inclusive here ("events with a timestamp later than this time are not returned").
    let end = req.end_time.map(|t| t.saturating_add(1));
    let (lo, hi) = time_range(&group, ctx.now, req.start_time, end)?;
    let scan_prefix = format!(
        "{}{}",
        keys::streams(&ctx.region, &group_name),
        req.log_stream_name_prefix.as_deref().unwrap_or("")
    );
    let store = svc.store.as_ref();
    // Streams in name order; those with nothing in range are never opened.
    let mut lanes: Vec<Lane> = Vec::new();
    let mut start_after: Option<String> = None;
    loop {
        let page = store
            .scan(&scan_prefix, start_after.as_deref(), 1000)
            .await?;
        for rec in &page.records {
            let s: LogStream = decode(rec)?.value;
            if req
                .log_stream_names
                .as_ref()
                .is_some_and(|names| !names.contains(&s.name))
            {
                continue;
            }
            let start = after.as_ref().map_or(Position::before(lo), |a| {
                resume_in_stream(&s.name, a).max(Position::before(lo))
            });
            let in_range = s.last_event_timestamp.is_some_and(|t| t >= start.ts)
                && s.first_event_timestamp.is_some_and(|t| t < hi);
            if in_range {
                lanes.push(Lane {
                    stream: s,
                    start,
                    cursor: None,
                });
            }
        }
        match page.next {
            Some(next) => start_after = Some(next),
            None => break,
        }
    }
    // The merge: a min-heap of (next key, lane); unopened lanes enter at their earliest possible
    // key (sequence 0 sorts before every stored event).
    let mut heap: BinaryHeap<Reverse<(FilterKey, usize)>> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let ts = l.start.ts.max(l.stream.first_event_timestamp.unwrap_or(0));
            Reverse(((ts, l.stream.name.clone(), 0, 0), i))
        })
        .collect();
    let mut budget = ReadBudget::new(svc.read_limits.resident_bytes);
    let mut events: Vec<Value> = Vec::new();
    let mut bytes = 0;
    let mut last_returned: Option<FilterKey> = None;
    let mut last_examined: Option<FilterKey> = None;
    let mut more = false;
    while let Some(Reverse((_, i))) = heap.pop() {
        let lane = &mut lanes[i];
        if lane.cursor.is_none() {
            lane.stream =
                upgrade::ensure_chunked(svc, &ctx.region, &group, lane.stream.clone()).await?;
            let prefix = keys::batches(&ctx.region, &group.incarnation, lane.stream.num);
            lane.cursor = Some(StreamCursor::forward(prefix, lane.start, hi));
            // Enter the merge at the stream's real first event.
            if let Some(c) = lane.cursor.as_mut()
                && let Some(next) = c.peek(store, &mut budget).await?
            {
                heap.push(Reverse((
                    (next.ts, lane.stream.name.clone(), next.seq, next.idx),
                    i,
                )));
            }
            continue;
        }
        let Some(cursor) = lane.cursor.as_mut() else {
            continue;
        };
        let Some(e) = cursor.next(store, &mut budget).await? else {
            continue;
        };
        let pos = e.position();
        let key: FilterKey = (pos.ts, lane.stream.name.clone(), pos.seq, pos.idx);
        let message = e.message()?;
        if pattern.matches(message) {
            let size = e.size();
            if events.len() == limit || bytes + size > MAX_RESPONSE_BYTES {
                // A further match exists: resume after the last one returned.
                more = true;
                break;
            }
            bytes += size;
            events.push(json!({
                "logStreamName": lane.stream.name,
                "timestamp": pos.ts,
                "message": message,
                "ingestionTime": e.ingestion_time(),
                "eventId": pos.event_id(lane.stream.num),
            }));
            last_returned = Some(key.clone());
        }
        last_examined = Some(key);
        if let Some(next) = cursor.peek(store, &mut budget).await? {
            heap.push(Reverse((
                (next.ts, lane.stream.name.clone(), next.seq, next.idx),
                i,
            )));
        }
        if budget.over() {
            for (j, other) in lanes.iter_mut().enumerate() {
                if j != i
                    && let Some(c) = other.cursor.as_mut()
                {
                    c.evict(&mut budget, false);
                }
            }
        }
        if budget.loaded > svc.read_limits.filter_scan_bytes && !heap.is_empty() {
            // Enough read for one call: everything up to the last event examined is searched.
            last_returned = last_examined.clone();
            more = true;
            break;
        }
    }
    let mut out = json!({"events": events, "searchedLogStreams": []});
    if more && let Some(k) = last_returned.or(last_examined) {
        out["nextToken"] = json!(pagination::encode_token(&json!(k).to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 100 * DAY_MS;

    #[test]
    fn rejections_split_old_expired_and_new() {
        let ts = [
            NOW - 20 * DAY_MS,
            NOW - 10 * DAY_MS,
            NOW - 2 * DAY_MS,
            NOW,
            NOW + 3 * 60 * 60 * 1000,
        ];
        let (r, ok) = Rejections::classify(&ts, NOW, Some(NOW - 7 * DAY_MS));
        assert_eq!(
            r,
            Rejections {
                too_new_start: Some(4),
                too_old_end: Some(1),
                expired_end: Some(2),
            }
        );
        assert_eq!(ok, 2..4);
        let (r, ok) = Rejections::classify(&ts[2..4], NOW, None);
        assert_eq!((r, ok), (Rejections::default(), 0..2));
        let (_, ok) = Rejections::classify(&ts[4..], NOW, None);
        assert!(ok.is_empty());
        let (_, ok) = Rejections::classify(&ts[..1], NOW, None);
        assert!(ok.is_empty());
    }

    fn ev(ts: i64, m: &str) -> InputLogEvent {
        InputLogEvent {
            timestamp: Some(ts),
            message: Some(m.into()),
        }
    }

    #[test]
    fn batches_must_be_ordered_and_bounded() {
        assert!(validate_batch(vec![ev(2, "a"), ev(2, "b"), ev(3, "c")]).is_ok());
        assert!(validate_batch(vec![ev(3, "a"), ev(2, "b")]).is_err());
        assert!(validate_batch(vec![]).is_err());
        assert!(validate_batch(vec![ev(-1, "a")]).is_err());
        assert!(validate_batch(vec![ev(1, "")]).is_err());
        assert!(validate_batch((0..10_001).map(|i| ev(i, "x")).collect()).is_err());
        assert!(validate_batch((0..10_000).map(|i| ev(i, "x")).collect()).is_ok());
        let big = "x".repeat(600_000);
        let e = validate_batch(vec![ev(1, &big), ev(2, &big)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Upload too large: 1200052 bytes exceeds limit of 1048576"
        );
    }

    #[test]
    fn events_may_be_as_large_as_a_batch() {
        let largest = "x".repeat(MAX_EVENT_BYTES as usize - 26);
        assert!(validate_batch(vec![ev(1, &largest)]).is_ok());
        let e = validate_batch(vec![ev(1, &format!("{largest}y"))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Log event too large: 1048577 bytes exceeds limit of 1048576"
        );
    }

    #[test]
    fn the_day_span_counts_only_events_accepted_by_time() {
        let hour = 3_600_000;
        assert!(check_span(&[NOW - DAY_MS, NOW], NOW).is_ok());
        let e = check_span(&[NOW - DAY_MS - 1, NOW], NOW).unwrap_err();
        assert!(e.to_string().contains("cannot span more than 24 hours"));
        // Too old and too new events are rejected one by one, not counted in the span.
        assert!(check_span(&[NOW - 20 * DAY_MS, NOW - hour, NOW + 3 * hour], NOW).is_ok());
        assert!(check_span(&[NOW - 20 * DAY_MS], NOW).is_ok());
        assert!(check_span(&[NOW - 13 * DAY_MS, NOW - 11 * DAY_MS], NOW).is_err());
    }
}
