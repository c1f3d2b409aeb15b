//! CloudWatch Logs benchmarks: loading a large log group fast, the latency of
//! `FilterLogEvents --limit N` at the head, middle and tail of the group, and the server's resident
//! memory while many clients page through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::client::{Answer, EcsClient};
use crate::stats::quantile;

pub const LOGS_TARGET_PREFIX: &str = "Logs_20140328";
pub const LOGS_SIGNING_NAME: &str = "logs";

/// Largest PutLogEvents batch: messages plus 26 bytes per event.
const MAX_BATCH_BYTES: usize = 1_048_576;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn call(client: &EcsClient, op: &str, body: Value) -> anyhow::Result<Value> {
    let Answer { status, body } = client.call(op, Bytes::from(body.to_string())).await?;
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(status.is_success(), "{op}: HTTP {status}: {text}");
    serde_json::from_slice(&body).with_context(|| format!("{op}: answer is not JSON: {text}"))
}

/// A small deterministic generator for varied log lines (no dependency for a benchmark).
struct Lines(u64);

impl Lines {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A log line of `size` bytes: a request log with varied fields, padded with a payload.
    fn line(&mut self, size: usize) -> String {
        const LEVELS: [&str; 4] = ["INFO", "INFO", "WARN", "ERROR"];
        const PATHS: [&str; 5] = [
            "/api/v1/items",
            "/api/v1/orders",
            "/healthz",
            "/login",
            "/api/v2/search",
        ];
        let r = self.next();
        let mut s = format!(
            "{} request_id={:016x} method=GET path={}/{} status={} latency_ms={} ",
            LEVELS[(r % 4) as usize],
            self.next(),
            PATHS[(r >> 8) as usize % PATHS.len()],
            r >> 40,
            [200, 200, 201, 404, 500][(r >> 16) as usize % 5],
            (r >> 24) % 900
        );
        while s.len() < size {
            let w = self.next();
            s.push_str(&format!("{w:x} "));
        }
        s.truncate(size);
        s
    }
}

/// Loads `bytes` of events into `group` across `streams` streams, timestamps spread evenly over
/// `span_ms` ending a minute ago, in PutLogEvents batches of about 1 MiB sent `concurrency` at a
/// time. Returns the number of events.
pub async fn load(
    client: &EcsClient,
    group: &str,
    streams: usize,
    bytes: u64,
    event_bytes: usize,
    span_ms: u64,
    concurrency: usize,
) -> anyhow::Result<u64> {
    anyhow::ensure!(streams > 0 && concurrency > 0 && event_bytes > 0);
    call(client, "CreateLogGroup", json!({"logGroupName": group})).await?;
    for s in 0..streams {
        call(
            client,
            "CreateLogStream",
            json!({"logGroupName": group, "logStreamName": stream_name(s)}),
        )
        .await?;
    }
    let per_stream = bytes.div_ceil(streams as u64);
    let events_per_stream = per_stream.div_ceil(event_bytes as u64 + 26);
    let per_batch = (MAX_BATCH_BYTES / (event_bytes + 26)).min(10_000) as u64;
    let end = now_ms() - 60_000;
    let start = end - span_ms;
    let step = (span_ms / events_per_stream.max(1)).max(1);
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // Work items: (stream, first event index); streams are loaded concurrently.
    let batches: Vec<(usize, u64)> = (0..events_per_stream)
        .step_by(per_batch as usize)
        .flat_map(|first| (0..streams).map(move |s| (s, first)))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(batches.into_iter()));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let group = group.to_owned();
        let queue = queue.clone();
        let sent = sent.clone();
        workers.push(tokio::spawn(async move {
            let mut lines = Lines(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
            loop {
                let next = queue.lock().map_err(|_| anyhow!("queue poisoned"))?.next();
                let Some((s, first)) = next else {
                    return anyhow::Ok(());
                };
                let last = (first + per_batch).min(events_per_stream);
                // Streams are offset by a few milliseconds so their events interleave.
                let events: Vec<Value> = (first..last)
                    .map(|i| {
                        json!({"timestamp": start + i * step + s as u64 % step,
                            "message": lines.line(event_bytes)})
                    })
                    .collect();
                let v = call(
                    &client,
                    "PutLogEvents",
                    json!({"logGroupName": group, "logStreamName": stream_name(s),
                        "logEvents": events}),
                )
                .await?;
                anyhow::ensure!(
                    v.get("rejectedLogEventsInfo").is_none(),
                    "events rejected: {v}"
                );
                sent.fetch_add(last - first, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let events = sent.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let mib = (events * (event_bytes as u64 + 26)) as f64 / (1 << 20) as f64;
    println!(
        "loaded events={events} streams={streams} MiB={mib:.0} seconds={secs:.1} MiB_per_s={:.1}",
        mib / secs
    );
    Ok(events)
}

fn stream_name(s: usize) -> String {
    format!("web/app/{s:04}")
}

/// The time range of a group's events, from its streams.
async fn time_range(client: &EcsClient, group: &str) -> anyhow::Result<(u64, u64)> {
    let mut first = u64::MAX;
    let mut last = 0;
    let mut token: Option<Value> = None;
    loop {
        let mut req = json!({"logGroupName": group});
        if let Some(t) = &token {
            req["nextToken"] = t.clone();
        }
        let v = call(client, "DescribeLogStreams", req).await?;
        for s in v["logStreams"].as_array().into_iter().flatten() {
            first = first.min(s["firstEventTimestamp"].as_u64().unwrap_or(u64::MAX));
            last = last.max(s["lastEventTimestamp"].as_u64().unwrap_or(0));
        }
        match v.get("nextToken") {
            Some(t) => token = Some(t.clone()),
            None => break,
        }
    }
    anyhow::ensure!(first <= last, "log group {group} has no events");
    Ok((first, last))
}

/// Latency of `FilterLogEvents --limit` from the head (no startTime), the middle and the tail
/// (startTime in the last 0.1 % of the group's time range, as `aws logs tail --follow` polls
/// from the last event it saw), one client.
pub async fn read_latency(
    client: &EcsClient,
    group: &str,
    limit: u64,
    requests: usize,
) -> anyhow::Result<()> {
    let (first, last) = time_range(client, group).await?;
    let positions = [
        ("head", None),
        ("middle", Some(first + (last - first) / 2)),
        ("tail", Some(last - (last - first) / 1000)),
    ];
    for (name, start) in positions {
        let mut lat = Vec::with_capacity(requests);
        let mut events = 0;
        for _ in 0..requests {
            let mut req = json!({"logGroupName": group, "limit": limit});
            if let Some(t) = start {
                req["startTime"] = json!(t);
            }
            let t0 = Instant::now();
            let v = call(client, "FilterLogEvents", req).await?;
            lat.push(t0.elapsed().as_micros() as u64);
            events = v["events"].as_array().map_or(0, Vec::len);
        }
        anyhow::ensure!(
            events as u64 == limit,
            "{name}: {events} events, not {limit}"
        );
        lat.sort_unstable();
        println!(
            "filter-log-events position={name} limit={limit} requests={requests} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            quantile(&lat, 0.5) as f64 / 1e3,
            quantile(&lat, 0.9) as f64 / 1e3,
            quantile(&lat, 0.99) as f64 / 1e3,
            quantile(&lat, 1.0) as f64 / 1e3
        );
    }
    Ok(())
}

/// `(VmRSS, VmHWM)` of a process, in bytes.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `clients` clients page through the whole group at once with FilterLogEvents (`limit` events
/// per page, each client starting at its own point in time), while the server's resident memory
/// is sampled every 50 ms. Reports pages, events, MiB/s and the server's peak RSS.
pub async fn page_memory(
    client: &EcsClient,
    group: &str,
    clients: usize,
    limit: u64,
    duration: Duration,
    server_pid: u32,
) -> anyhow::Result<u64> {
    let (first, last) = time_range(client, group).await?;
    let (rss_before, _) =
        memory(server_pid).ok_or_else(|| anyhow!("cannot read /proc/{server_pid}/status"))?;
    // Reset the kernel's peak so VmHWM covers this run only (needs the right to do so).
    let hwm_reset = std::fs::write(format!("/proc/{server_pid}/clear_refs"), "5").is_ok();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some((rss, _)) = memory(server_pid) {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let started = Instant::now();
    let mut workers = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let group = group.to_owned();
        let start = first + (last - first) / clients as u64 * c as u64;
        workers.push(tokio::spawn(async move {
            let (mut pages, mut events, mut bytes) = (0u64, 0u64, 0u64);
            let mut token: Option<Value> = None;
            while started.elapsed() < duration {
                let mut req = json!({"logGroupName": group, "limit": limit, "startTime": start});
                if let Some(t) = &token {
                    req["nextToken"] = t.clone();
                }
                let v = call(&client, "FilterLogEvents", req).await?;
                pages += 1;
                for e in v["events"].as_array().into_iter().flatten() {
                    events += 1;
                    bytes += e["message"].as_str().map_or(0, str::len) as u64 + 26;
                }
                // At the end (no token) the client pages again from its start.
                token = v.get("nextToken").cloned();
            }
            anyhow::Ok((pages, events, bytes))
        }));
    }
    let (mut pages, mut events, mut bytes) = (0, 0, 0);
    for w in workers {
        let (p, e, b) = w.await??;
        pages += p;
        events += e;
        bytes += b;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let sampled_peak = sampler.await?;
    let (rss_after, hwm) = memory(server_pid).unwrap_or((0, 0));
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let peak = if hwm_reset {
        hwm.max(sampled_peak)
    } else {
        sampled_peak
    };
    println!(
        "paging clients={clients} limit={limit} seconds={secs:.1} pages={pages} events={events} MiB_per_s={:.1} pages_per_s={:.1}",
        mib(bytes) / secs,
        pages as f64 / secs
    );
    println!(
        "server_rss_mib before={:.0} peak={:.0} after={:.0} (peak from {})",
        mib(rss_before),
        mib(peak),
        mib(rss_after),
        if hwm_reset {
            "VmHWM reset before the run, and 50 ms samples"
        } else {
            "50 ms samples of VmRSS"
        }
    );
    Ok(peak)
}
