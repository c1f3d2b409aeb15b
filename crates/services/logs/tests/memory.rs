//! Reads cost what they return: on a 48 MiB stream in a SQLite store, `limit=1` reads and 16
//! concurrent readers paging through it raise this process's peak resident memory (VmHWM, reset
//! through /proc/self/clear_refs before each phase) by a bounded amount, far below the stream's
//! size. This file holds one test so that nothing else runs in the process while it measures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gantry_front::{JsonService, RequestContext};
use gantry_logs::LogsService;
use gantry_store::{SqliteOptions, SqliteStore};
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000_000;
const MIB: u64 = 1 << 20;
/// Batches of 1,000 events of 1,000 bytes: about 1 MiB each.
const BATCHES: u64 = 48;
const PER_BATCH: u64 = 1_000;

fn ctx() -> RequestContext {
    RequestContext {
        caller: None,
        request_id: "00000000-0000-4000-8000-000000000001".into(),
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        access_key_id: "AKID".into(),
        now: NOW,
    }
}

async fn call(svc: &LogsService, op: &str, body: Value) -> Value {
    svc.call(op, body.to_string().as_bytes(), &ctx())
        .await
        .unwrap_or_else(|e| panic!("{op}: {} {}", e.code, e.message))
}

/// `(VmRSS, VmHWM)` of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak to the current resident size; returns the resident size.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    memory().0
}

fn message(n: u64) -> String {
    let head = format!("event {n:08} ");
    format!("{head}{}", "x".repeat(1_000 - head.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_hold_memory_bounded_by_what_they_return() {
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        eprintln!("\n*** SKIPPED: /proc/self/clear_refs is not writable here ***\n");
        assert!(
            std::env::var("CI").is_err() && std::env::var("GANTRY_REQUIRE_DOCKER").is_err(),
            "the memory test needs /proc/self/clear_refs"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(
            &dir.path().join("state.db"),
            SqliteOptions {
                durable: false,
                ..SqliteOptions::default()
            },
        )
        .unwrap(),
    );
    let svc = Arc::new(LogsService::new(store));
    call(&svc, "CreateLogGroup", json!({"logGroupName": "g"})).await;
    call(
        &svc,
        "CreateLogStream",
        json!({"logGroupName": "g", "logStreamName": "big"}),
    )
    .await;
    let first = NOW - BATCHES * PER_BATCH * 10;
    for b in 0..BATCHES {
        let events: Vec<Value> = (0..PER_BATCH)
            .map(|i| {
                let n = b * PER_BATCH + i;
                json!({"timestamp": first + n * 10, "message": message(n)})
            })
            .collect();
        call(
            &svc,
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "big", "logEvents": events}),
        )
        .await;
    }
    let total = BATCHES * PER_BATCH;
    let stream =
        &call(&svc, "DescribeLogStreams", json!({"logGroupName": "g"})).await["logStreams"][0];
    assert!(stream["storedBytes"].as_u64().unwrap() > 46 * MIB);

    // limit=1 from the head, from the tail, through FilterLogEvents, and a pattern matching only
    // the last event (the search stops after a bounded amount and answers with a token).
    let base = reset_peak();
    let head = call(
        &svc,
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "big", "limit": 1, "startFromHead": true}),
    )
    .await;
    assert_eq!(head["events"][0]["message"], message(0));
    let tail = call(
        &svc,
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "big", "limit": 1}),
    )
    .await;
    assert_eq!(tail["events"][0]["message"], message(total - 1));
    let f = call(
        &svc,
        "FilterLogEvents",
        json!({"logGroupName": "g", "limit": 1, "startTime": first + total * 5}),
    )
    .await;
    assert_eq!(f["events"][0]["message"], message(total / 2));
    let rare = format!("\"event {:08}\"", total - 1);
    call(
        &svc,
        "FilterLogEvents",
        json!({"logGroupName": "g", "limit": 1, "filterPattern": rare}),
    )
    .await;
    let (_, peak) = memory();
    let single = peak.saturating_sub(base);
    eprintln!(
        "limit=1 reads: peak {} MiB above {} MiB",
        single / MIB,
        base / MIB
    );
    assert!(
        single < 24 * MIB,
        "limit=1 reads raised the peak by {} MiB",
        single / MIB
    );

    // 16 readers paging concurrently, 1 MiB pages: 8 through GetLogEvents, 8 through
    // FilterLogEvents, each for 6 pages.
    let base = reset_peak();
    let mut readers = Vec::new();
    for r in 0..16u64 {
        let svc = svc.clone();
        readers.push(tokio::spawn(async move {
            let start = first + (r * total / 16) * 10;
            let mut token: Option<Value> = None;
            let mut seen = 0;
            for _ in 0..6 {
                let (op, mut req) = if r % 2 == 0 {
                    (
                        "GetLogEvents",
                        json!({"logGroupName": "g", "logStreamName": "big",
                            "startFromHead": true, "startTime": start}),
                    )
                } else {
                    (
                        "FilterLogEvents",
                        json!({"logGroupName": "g", "startTime": start}),
                    )
                };
                if let Some(t) = &token {
                    req["nextToken"] = t.clone();
                }
                let v = call(&svc, op, req).await;
                seen += v["events"].as_array().unwrap().len();
                token = Some(if op == "GetLogEvents" {
                    v["nextForwardToken"].clone()
                } else {
                    v["nextToken"].clone()
                });
            }
            seen
        }));
    }
    for r in readers {
        assert!(r.await.unwrap() >= 5_000);
    }
    let (_, peak) = memory();
    let paging = peak.saturating_sub(base);
    eprintln!(
        "16 concurrent readers: peak {} MiB above {} MiB",
        paging / MIB,
        base / MIB
    );
    // Before reads were bounded this phase raised the peak by over 1 GiB; now about 12 MiB.
    assert!(
        paging < 48 * MIB,
        "concurrent paging raised the peak by {} MiB",
        paging / MIB
    );
}
