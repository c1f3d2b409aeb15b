//! PutLogEvents, GetLogEvents, FilterLogEvents, and reading a stream's stored batches.

use gantry_aws_proto::pagination;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, decode, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{
    DAY_MS, EventBatch, LogGroup, LogStream, Position, StoredEvent, event_size, sequence_token,
};
use crate::pattern::FilterPattern;
use crate::wire::{
    check_group_name, check_stream_name, commit_with_retry, group_ref, limit, load_group,
    load_stream, parse, required,
};
use crate::{LogsError, LogsService, keys};

/// Most events in one PutLogEvents call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest PutLogEvents batch, counting 26 bytes of overhead per event.
pub const MAX_BATCH_BYTES: u64 = 1_048_576;
/// Largest response of GetLogEvents and FilterLogEvents, as AWS caps them.
pub const MAX_RESPONSE_BYTES: u64 = 1_048_576;
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
}

/// Which events of a batch are rejected, by index (the three ranges of `rejectedLogEventsInfo`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejections {
    pub too_new_start: Option<usize>,
    pub too_old_end: Option<usize>,
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
            too_old_end: (old > 0).then(|| old - 1),
            expired_end: (expired > 0).then(|| expired - 1),
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
        if let Some(&(prev, _)) = out.last()
            && ts < prev
        {
            return Err(LogsError::invalid(
                "Log events in a single PutLogEvents request must be in chronological order.",
            ));
        }
        bytes += event_size(&message);
        out.push((ts, message));
    }
    if bytes > MAX_BATCH_BYTES {
        return Err(LogsError::invalid(format!(
            "Upload too large: {bytes} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if let (Some(first), Some(last)) = (out.first(), out.last())
        && last.0 - first.0 > DAY_MS
    {
        return Err(LogsError::invalid(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
        ));
    }
    Ok(out)
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
    let skey = keys::stream(&ctx.region, &group_name, &stream_name);
    let (token, rejections) = commit_with_retry(svc.store.as_ref(), || async {
        let group = load_group(svc, ctx, &group_name).await?.value;
        let mut stream = load_stream(svc, ctx, &group_name, &stream_name).await?;
        let (rejections, accepted) =
            Rejections::classify(&timestamps, ctx.now, group.retention_cutoff(ctx.now));
        if accepted.is_empty() {
            return Ok((Txn::new(), (stream.value.sequence_token(), rejections)));
        }
        let kept: Vec<(u64, String)> = events[accepted].to_vec();
        let (first_ts, last_ts) = (kept[0].0, kept[kept.len() - 1].0);
        let s = &mut stream.value;
        s.last_seq += 1;
        let batch = EventBatch {
            seq: s.last_seq,
            ingestion_time: ctx.now,
            first_ts,
            last_ts,
            bytes: kept.iter().map(|(_, m)| event_size(m)).sum(),
            events: kept,
        };
        s.first_event_timestamp = Some(
            s.first_event_timestamp
                .map_or(first_ts, |t| t.min(first_ts)),
        );
        s.last_event_timestamp = Some(s.last_event_timestamp.map_or(last_ts, |t| t.max(last_ts)));
        s.last_ingestion_time = Some(ctx.now);
        s.stored_bytes += batch.bytes;
        let prefix = keys::batches(&ctx.region, &group.incarnation, s.num);
        let bkey = keys::batch(&prefix, first_ts, batch.seq);
        let txn = Txn::new()
            .require_revision(&skey, stream.revision)
            .require_absent(&bkey)
            .put(&bkey, encode(&bkey, &batch)?)
            .put(&skey, encode(&skey, s)?);
        Ok((txn, (sequence_token(s.last_seq), rejections)))
    })
    .await?;
    let mut out = json!({"nextSequenceToken": token});
    if let Some(r) = rejections.to_wire() {
        out["rejectedLogEventsInfo"] = r;
    }
    Ok(out)
}

/// The events of `stream` with `lo <= timestamp < hi`, in position order. Only batches that can
/// hold such events are read: a batch spans at most a day, so batches whose first event is more
/// than a day before `lo` are skipped by the scan's start key.
pub(crate) async fn read_stream(
    svc: &LogsService,
    region: &str,
    group: &LogGroup,
    stream: &LogStream,
    lo: u64,
    hi: u64,
) -> Result<Vec<StoredEvent>, LogsError> {
    let mut out = Vec::new();
    if lo >= hi {
        return Ok(out);
    }
    let prefix = keys::batches(region, &group.incarnation, stream.num);
    let mut start_after = keys::batches_from(&prefix, lo.saturating_sub(DAY_MS));
    'pages: loop {
        let page = svc.store.scan(&prefix, Some(&start_after), 256).await?;
        for rec in &page.records {
            let batch: EventBatch = decode(rec)?.value;
            if batch.first_ts >= hi {
                break 'pages;
            }
            if batch.last_ts < lo {
                continue;
            }
            for (idx, (ts, message)) in batch.events.into_iter().enumerate() {
                if ts >= lo && ts < hi {
                    out.push(StoredEvent {
                        pos: Position {
                            ts,
                            seq: batch.seq,
                            idx: idx as u32,
                        },
                        ingestion_time: batch.ingestion_time,
                        message,
                    });
                }
            }
        }
        match page.next {
            Some(next) => start_after = next,
            None => break,
        }
    }
    out.sort_by_key(|e| e.pos);
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
    let (mut lo, mut hi) = time_range(&group, ctx.now, req.start_time, req.end_time)?;
    match direction {
        Direction::Forward(Some(p)) => lo = lo.max(p.ts),
        Direction::Backward(Some(p)) => hi = hi.min(p.ts.saturating_add(1)),
        _ => {}
    }
    let all = read_stream(svc, &ctx.region, &group, &stream, lo, hi).await?;
    let (page, anchor): (Vec<StoredEvent>, Position) = match direction {
        Direction::Forward(after) => {
            let mut bytes = 0;
            let page: Vec<StoredEvent> = all
                .into_iter()
                .filter(|e| after.is_none_or(|a| e.pos > a))
                .take(limit)
                .take_while(|e| {
                    bytes += event_size(&e.message);
                    bytes <= MAX_RESPONSE_BYTES
                })
                .collect();
            (page, after.unwrap_or(Position::before(lo)))
        }
        Direction::Backward(before) => {
            let mut bytes = 0;
            let mut page: Vec<StoredEvent> = all
                .into_iter()
                .rev()
                .filter(|e| before.is_none_or(|b| e.pos < b))
                .take(limit)
                .take_while(|e| {
                    bytes += event_size(&e.message);
                    bytes <= MAX_RESPONSE_BYTES
                })
                .collect();
            page.reverse();
            (page, before.unwrap_or(Position::before(lo)))
        }
    };
    let (fwd, bwd) = match (page.first(), page.last()) {
        (Some(first), Some(last)) => (last.pos, first.pos),
        _ => (anchor, anchor),
    };
    let events: Vec<Value> = page
        .iter()
        .map(|e| {
            json!({
                "timestamp": e.pos.ts,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
            })
        })
        .collect();
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

/// Where FilterLogEvents resumes: after this `(timestamp, stream, batch, index)`.
type FilterKey = (u64, String, u64, u32);

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
    if let Some(names) = &req.log_stream_names
        && (names.is_empty() || names.len() > 100)
    {
        return Err(LogsError::invalid(
            "1 validation error detected: Value at 'logStreamNames' failed to satisfy constraint: Member must have length between 1 and 100",
        ));
    }
    let limit = limit(req.limit, 10_000, 10_000)?;
    let pattern = FilterPattern::parse(req.filter_pattern.as_deref().unwrap_or(""))
        .map_err(|e| LogsError::invalid(e.to_string()))?;
    let after: Option<FilterKey> = match req.next_token.as_deref() {
        None => None,
        Some(t) => Some(
            pagination::decode_token(t)
                .and_then(|s| serde_json::from_str(&s).ok())
                .ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?,
        ),
    };
    let group = load_group(svc, ctx, &group_name).await?.value;
    let (mut lo, hi) = time_range(&group, ctx.now, req.start_time, req.end_time)?;
    if let Some(a) = &after {
        lo = lo.max(a.0);
    }
    let scan_prefix = format!(
        "{}{}",
        keys::streams(&ctx.region, &group_name),
        req.log_stream_name_prefix.as_deref().unwrap_or("")
    );
    let streams: Vec<LogStream> = svc
        .store
        .scan_all_typed::<LogStream>(&scan_prefix)
        .await?
        .into_iter()
        .map(|s| s.value)
        .filter(|s| {
            req.log_stream_names
                .as_ref()
                .is_none_or(|names| names.contains(&s.name))
        })
        .collect();
    let mut matched: Vec<(FilterKey, StoredEvent, u64)> = Vec::new();
    let mut searched = Vec::with_capacity(streams.len());
    for s in &streams {
        let skip_stream = s.last_event_timestamp.is_none_or(|t| t < lo)
            || s.first_event_timestamp.is_none_or(|t| t >= hi);
        if !skip_stream {
            for e in read_stream(svc, &ctx.region, &group, s, lo, hi).await? {
                if !pattern.matches(&e.message) {
                    continue;
                }
                let key: FilterKey = (e.pos.ts, s.name.clone(), e.pos.seq, e.pos.idx);
                if after.as_ref().is_some_and(|a| &key <= a) {
                    continue;
                }
                matched.push((key, e, s.num));
            }
        }
        searched.push(json!({"logStreamName": s.name, "searchedCompletely": true}));
    }
    matched.sort_by(|a, b| a.0.cmp(&b.0));
    let total = matched.len();
    let mut bytes = 0;
    let page: Vec<(FilterKey, StoredEvent, u64)> = matched
        .into_iter()
        .take(limit)
        .take_while(|(_, e, _)| {
            bytes += event_size(&e.message);
            bytes <= MAX_RESPONSE_BYTES
        })
        .collect();
    let next = if page.len() < total {
        page.last()
            .map(|(k, _, _)| pagination::encode_token(&json!(k).to_string()))
    } else {
        None
    };
    let events: Vec<Value> = page
        .iter()
        .map(|(k, e, num)| {
            json!({
                "logStreamName": k.1,
                "timestamp": e.pos.ts,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
                "eventId": e.pos.event_id(*num),
            })
        })
        .collect();
    let mut out = json!({"events": events, "searchedLogStreams": searched});
    if let Some(t) = next {
        out["nextToken"] = json!(t);
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
                too_old_end: Some(0),
                expired_end: Some(1),
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
    fn batches_must_be_ordered_bounded_and_within_a_day() {
        assert!(validate_batch(vec![ev(2, "a"), ev(2, "b"), ev(3, "c")]).is_ok());
        assert!(validate_batch(vec![ev(3, "a"), ev(2, "b")]).is_err());
        assert!(validate_batch(vec![]).is_err());
        assert!(validate_batch(vec![ev(0, "a"), ev(DAY_MS as i64 + 1, "b")]).is_err());
        assert!(validate_batch(vec![ev(0, "a"), ev(DAY_MS as i64, "b")]).is_ok());
        assert!(validate_batch(vec![ev(-1, "a")]).is_err());
        assert!(validate_batch(vec![ev(1, "")]).is_err());
        assert!(validate_batch((0..10_001).map(|i| ev(i, "x")).collect()).is_err());
        let big = "x".repeat(600_000);
        assert!(validate_batch(vec![ev(1, &big), ev(2, &big)]).is_err());
    }
}
