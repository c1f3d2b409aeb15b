//! Property tests of token paging: whatever the batches (overlapping in time, out of order,
//! split into several chunks) and whatever the page size or read limits, paging forwards or
//! backwards through GetLogEvents, and through FilterLogEvents across streams, returns every event
//! exactly once, in order.

use std::sync::Arc;

use gantry_front::{JsonService, RequestContext};
use gantry_logs::{LogsService, ReadLimits};
use gantry_store::MemoryStore;
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000_000;
const STREAMS: [&str; 3] = ["app/a", "app/b", "db/c"];

/// One PutLogEvents call: a stream, a start offset, and `(gap ms, message size)` per event.
#[derive(Debug, Clone)]
struct Batch {
    stream: usize,
    start: u64,
    events: Vec<(u64, usize)>,
}

/// One stored event, with the order keys AWS documents.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Stored {
    ts: u64,
    stream: &'static str,
    seq: u64,
    idx: usize,
    message: String,
}

fn batch() -> impl Strategy<Value = Batch> {
    let size = prop_oneof![12 => 1usize..120, 1 => 20_000usize..90_000];
    (
        0..STREAMS.len(),
        0u64..6_000,
        prop::collection::vec((0u64..700, size), 1..30),
    )
        .prop_map(|(stream, start, events)| Batch {
            stream,
            start,
            events,
        })
}

fn limits() -> impl Strategy<Value = ReadLimits> {
    prop_oneof![
        Just(ReadLimits::default()),
        // Every chunk not being read is dropped and read again; FilterLogEvents answers after
        // about one chunk.
        Just(ReadLimits {
            resident_bytes: 1,
            filter_scan_bytes: 1,
        }),
        Just(ReadLimits {
            resident_bytes: 100_000,
            filter_scan_bytes: 150_000,
        }),
    ]
}

struct Harness {
    svc: LogsService,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn new(limits: ReadLimits) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Self {
            svc: LogsService::new(Arc::new(MemoryStore::new())).with_read_limits(limits),
            rt,
        }
    }

    fn call(&self, op: &str, body: Value) -> Value {
        let ctx = RequestContext {
            caller: None,
            request_id: "00000000-0000-4000-8000-000000000001".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            access_key_id: "AKID".into(),
            now: NOW,
        };
        self.rt
            .block_on(self.svc.call(op, body.to_string().as_bytes(), &ctx))
            .unwrap_or_else(|e| panic!("{op} {body}: {} {}", e.code, e.message))
    }

    /// Creates the group and streams, puts the batches, and returns what was stored.
    fn load(&self, batches: &[Batch]) -> Vec<Stored> {
        self.call("CreateLogGroup", json!({"logGroupName": "g"}));
        for s in STREAMS {
            self.call(
                "CreateLogStream",
                json!({"logGroupName": "g", "logStreamName": s}),
            );
        }
        let mut seqs = [0u64; STREAMS.len()];
        let mut stored = Vec::new();
        for (b, batch) in batches.iter().enumerate() {
            let mut ts = NOW - 3_600_000 + batch.start;
            let mut bytes = 0;
            let mut events = Vec::new();
            for (i, (gap, size)) in batch.events.iter().enumerate() {
                // Keep the batch within PutLogEvents' 1 MiB.
                if bytes + size + 64 > 1_000_000 {
                    break;
                }
                ts += gap;
                let even = if i % 2 == 0 { "even" } else { "odd" };
                let head = format!("b{b}-i{i}-{even}-");
                let message = format!("{head}{}", "x".repeat(size.saturating_sub(head.len())));
                bytes += message.len() + 26;
                events.push((ts, message));
            }
            seqs[batch.stream] += 1;
            let wire: Vec<Value> = events
                .iter()
                .map(|(t, m)| json!({"timestamp": t, "message": m}))
                .collect();
            let stream = STREAMS[batch.stream];
            let v = self.call(
                "PutLogEvents",
                json!({"logGroupName": "g", "logStreamName": stream, "logEvents": wire}),
            );
            assert!(v.get("rejectedLogEventsInfo").is_none(), "{v}");
            for (idx, (ts, message)) in events.into_iter().enumerate() {
                stored.push(Stored {
                    ts,
                    stream,
                    seq: seqs[batch.stream],
                    idx,
                    message,
                });
            }
        }
        stored.sort();
        stored
    }
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["message"].as_str().expect("message").to_owned())
        .collect()
}

fn of_stream(stored: &[Stored], stream: &str) -> Vec<String> {
    stored
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| e.message.clone())
        .collect()
}

/// Pages GetLogEvents as the AWS SDKs do: until the token handed back is the one sent.
fn get_all(h: &Harness, stream: &str, limit: u64, forward: bool) -> (Vec<String>, usize) {
    let token_field = if forward {
        "nextForwardToken"
    } else {
        "nextBackwardToken"
    };
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut token: Option<String> = None;
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 10_000, "paging does not end");
        let mut req = json!({"logGroupName": "g", "logStreamName": stream, "limit": limit,
            "startFromHead": forward});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let v = h.call("GetLogEvents", req);
        let page = messages(&v);
        assert!(page.len() as u64 <= limit);
        let next = v[token_field].as_str().expect("token").to_owned();
        let done = token.as_deref() == Some(next.as_str());
        assert!(!done || page.is_empty(), "same token with events: {v}");
        pages.push(page);
        if done {
            break;
        }
        token = Some(next);
    }
    if !forward {
        pages.reverse();
    }
    (pages.concat(), calls)
}

fn filter_all(h: &Harness, base: Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<Value> = None;
    for _ in 0..100_000 {
        let mut req = base.clone();
        req["logGroupName"] = json!("g");
        if let Some(t) = &token {
            req["nextToken"] = t.clone();
        }
        let v = h.call("FilterLogEvents", req);
        if let Some(limit) = base.get("limit").and_then(Value::as_u64) {
            assert!(v["events"].as_array().expect("events").len() as u64 <= limit);
        }
        out.extend(messages(&v));
        match v.get("nextToken") {
            Some(t) => token = Some(t.clone()),
            None => return out,
        }
    }
    panic!("FilterLogEvents paging does not end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn get_log_events_pages_cover_each_stream_once_in_both_directions(
        batches in prop::collection::vec(batch(), 1..10),
        limit in 1u64..9,
        limits in limits(),
    ) {
        let h = Harness::new(limits);
        let stored = h.load(&batches);
        for stream in STREAMS {
            let want = of_stream(&stored, stream);
            let (fwd, _) = get_all(&h, stream, limit, true);
            prop_assert_eq!(&fwd, &want, "forwards through {}", stream);
            let (bwd, _) = get_all(&h, stream, limit, false);
            prop_assert_eq!(&bwd, &want, "backwards through {}", stream);
        }
    }

    #[test]
    fn filter_log_events_pages_interleave_streams_in_time_order_once(
        batches in prop::collection::vec(batch(), 1..10),
        limit in 1u64..12,
        limits in limits(),
        window in (0u64..8_000, 0u64..8_000),
    ) {
        let h = Harness::new(limits);
        let stored = h.load(&batches);
        let all: Vec<String> = stored.iter().map(|e| e.message.clone()).collect();
        prop_assert_eq!(filter_all(&h, json!({"limit": limit})), all);
        // A time window (both ends inclusive), a pattern and a subset of streams.
        let (a, b) = (window.0.min(window.1), window.0.max(window.1));
        let (start, end) = (NOW - 3_600_000 + a, NOW - 3_600_000 + b);
        let want: Vec<String> = stored
            .iter()
            .filter(|e| e.ts >= start && e.ts <= end && e.stream.starts_with("app/"))
            .filter(|e| e.message.contains("-even-"))
            .map(|e| e.message.clone())
            .collect();
        let got = filter_all(&h, json!({"limit": limit, "startTime": start, "endTime": end,
            "filterPattern": "\"-even-\"", "logStreamNamePrefix": "app/"}));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn a_forward_token_pages_back_over_what_came_before(
        batches in prop::collection::vec(batch(), 1..8),
        limit in 1u64..6,
        pages in 1usize..5,
    ) {
        let h = Harness::new(ReadLimits::default());
        let stored = h.load(&batches);
        let want = of_stream(&stored, STREAMS[0]);
        let mut token: Option<String> = None;
        let mut seen = Vec::new();
        let mut back = None;
        let mut last_start = 0;
        for _ in 0..pages {
            let mut req = json!({"logGroupName": "g", "logStreamName": STREAMS[0],
                "limit": limit, "startFromHead": true});
            if let Some(t) = &token {
                req["nextToken"] = json!(t);
            }
            let v = h.call("GetLogEvents", req);
            let page = messages(&v);
            if !page.is_empty() {
                back = Some(v["nextBackwardToken"].as_str().expect("token").to_owned());
                last_start = seen.len();
                seen.extend(page);
            }
            token = Some(v["nextForwardToken"].as_str().expect("token").to_owned());
        }
        // Backwards from the first event of the last page: everything before it.
        if let Some(back) = back {
            let mut before = Vec::new();
            let mut token = back;
            loop {
                let v = h.call("GetLogEvents", json!({"logGroupName": "g",
                    "logStreamName": STREAMS[0], "limit": limit, "nextToken": token}));
                let next = v["nextBackwardToken"].as_str().expect("token").to_owned();
                let mut page = messages(&v);
                page.extend(before);
                before = page;
                if next == token {
                    break;
                }
                token = next;
            }
            let cut = want.iter().position(|m| *m == seen[last_start]).expect("seen");
            prop_assert_eq!(before, want[..cut].to_vec());
        }
        prop_assert_eq!(&seen[..], &want[..seen.len()]);
    }
}
