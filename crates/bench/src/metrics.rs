//! CloudWatch metrics benchmarks: `PutMetricData` ingestion (points per second with many calls in
//! flight) and `GetMetricData` latency over many series of a day of one-minute data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::client::{Answer, EcsClient};
use crate::cpu;
use crate::stats::quantile;

pub const TARGET_PREFIX: &str = "GraniteServiceVersion20100801";
pub const SIGNING_NAME: &str = "monitoring";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn call(client: &EcsClient, op: &str, body: Value) -> anyhow::Result<Value> {
    let Answer { status, body } = client.call(op, Bytes::from(body.to_string())).await?;
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(
        status.is_success(),
        "{op}: HTTP {status}: {}",
        &text[..text.len().min(500)]
    );
    serde_json::from_slice(&body).with_context(|| format!("{op}: answer is not JSON"))
}

/// One `PutMetricData` body: `items` metric items over `series` series (dimension `Series`),
/// each with `values` values, timestamps in the last minute.
fn put_body(n: u64, items: usize, values: usize, series: usize) -> Value {
    let t = now_s() - 30;
    let data: Vec<Value> = (0..items)
        .map(|i| {
            let s = (n as usize * items + i) % series;
            let mut item = json!({
                "MetricName": "Latency",
                "Dimensions": [{"Name": "Series", "Value": format!("s{s}")}],
                "Timestamp": t,
                "Unit": "Milliseconds",
            });
            if values == 1 {
                item["Value"] = json!((n as usize + i) % 1000);
            } else {
                item["Values"] = json!((0..values).map(|v| (v + i) as f64).collect::<Vec<_>>());
            }
            item
        })
        .collect();
    json!({"Namespace": "Bench", "MetricData": data})
}

/// Sends `PutMetricData` calls `concurrency` at a time for `duration`; prints calls/s, points/s
/// and the latency quantiles.
pub async fn put_throughput(
    client: &EcsClient,
    concurrency: usize,
    items: usize,
    values: usize,
    series: usize,
    duration: Duration,
    server_pid: Option<u32>,
) -> anyhow::Result<()> {
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..64)
            .map(|n| Bytes::from(put_body(n, items, values, series).to_string()))
            .collect(),
    );
    let calls = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu::Sample::now(server_pid);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let bodies = bodies.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                let Answer { status, body } = client
                    .call("PutMetricData", bodies[n % bodies.len()].clone())
                    .await?;
                anyhow::ensure!(
                    status.is_success(),
                    "PutMetricData: HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                lat.push(t.elapsed().as_micros() as u64);
                calls.fetch_add(1, Ordering::Relaxed);
                n += concurrency;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu::usage(cpu_before, cpu::Sample::now(server_pid));
    let calls = calls.load(Ordering::Relaxed);
    let cpu_line = cpu.line(calls);
    let calls = calls as f64;
    lat.sort();
    println!(
        "PutMetricData: {concurrency} in flight, {items} items x {values} values over {series} series: \
         {:.0} calls/s, {:.0} points/s; latency p50 {:.1} ms p99 {:.1} ms",
        calls / secs,
        calls * (items * values) as f64 / secs,
        quantile(&lat, 0.5) as f64 / 1000.0,
        quantile(&lat, 0.99) as f64 / 1000.0,
    );
    println!("  cpu: {cpu_line}");
    Ok(())
}

/// Loads `series` series with one datapoint per minute for `minutes` minutes (ending two minutes
/// ago), then times `requests` `GetMetricData` calls asking for all of them at `period`: from
/// sending the request to the answer's last byte. Decoding the answer (to count and check the
/// datapoints) is timed apart.
pub async fn get_latency(
    client: &EcsClient,
    series: usize,
    minutes: u64,
    period: u64,
    requests: usize,
    server_pid: Option<u32>,
) -> anyhow::Result<()> {
    let end = now_s() / 60 * 60 - 120;
    let start = end - minutes * 60;
    let mut batch = Vec::new();
    let mut loaded = 0u64;
    for m in 0..minutes {
        for s in 0..series {
            batch.push(json!({
                "MetricName": "Load",
                "Dimensions": [{"Name": "Series", "Value": format!("s{s}")}],
                "Timestamp": start + m * 60,
                "Value": ((m as usize * 7 + s) % 100) as f64,
            }));
            if batch.len() == 1000 {
                call(
                    client,
                    "PutMetricData",
                    json!({"Namespace": "BenchRead", "MetricData": batch}),
                )
                .await?;
                loaded += 1000;
                batch = Vec::new();
            }
        }
    }
    if !batch.is_empty() {
        loaded += batch.len() as u64;
        call(
            client,
            "PutMetricData",
            json!({"Namespace": "BenchRead", "MetricData": batch}),
        )
        .await?;
    }
    let queries: Vec<Value> = (0..series)
        .map(|s| {
            json!({
                "Id": format!("m{s}"),
                "MetricStat": {
                    "Metric": {"Namespace": "BenchRead", "MetricName": "Load",
                               "Dimensions": [{"Name": "Series", "Value": format!("s{s}")}]},
                    "Period": period,
                    "Stat": "Average",
                },
            })
        })
        .collect();
    let body = json!({
        "MetricDataQueries": queries,
        "StartTime": start,
        "EndTime": end,
        "MaxDatapoints": series as u64 * minutes,
    });
    let body = Bytes::from(body.to_string());
    let mut lat = Vec::new();
    let mut decode = Vec::new();
    let mut points = 0;
    // The server is idle while the client decodes: its CPU over the loop is the calls'.
    let cpu_before = cpu::Sample::now(server_pid);
    for _ in 0..requests {
        let t = Instant::now();
        let Answer { status, body } = client.call("GetMetricData", body.clone()).await?;
        lat.push(t.elapsed().as_micros() as u64);
        anyhow::ensure!(
            status.is_success(),
            "GetMetricData: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
        let t = Instant::now();
        let out: Value =
            serde_json::from_slice(&body).context("GetMetricData: answer is not JSON")?;
        decode.push(t.elapsed().as_micros() as u64);
        points = out["MetricDataResults"].as_array().map_or(0, |r| {
            r.iter()
                .map(|q| {
                    let values = q["Values"].as_array().map_or(0, Vec::len);
                    let timestamps = q["Timestamps"].as_array().map_or(0, Vec::len);
                    if values == timestamps { values } else { 0 }
                })
                .sum()
        });
    }
    let cpu = cpu::usage(cpu_before, cpu::Sample::now(server_pid));
    lat.sort();
    decode.sort();
    println!(
        "GetMetricData: {series} series x {minutes} minutes ({loaded} datapoints loaded), period {period}s, \
         {points} datapoints returned: p50 {:.1} ms p90 {:.1} ms p99 {:.1} ms over {requests} calls \
         (to the answer's last byte; decoding it into JSON values in the client: p50 {:.1} ms)",
        quantile(&lat, 0.5) as f64 / 1000.0,
        quantile(&lat, 0.9) as f64 / 1000.0,
        quantile(&lat, 0.99) as f64 / 1000.0,
        quantile(&decode, 0.5) as f64 / 1000.0,
    );
    println!(
        "  cpu (client's includes decoding): {}",
        cpu.line(requests as u64)
    );
    Ok(())
}
