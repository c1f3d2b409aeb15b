//! Durable commit throughput of the SQLite store under concurrency (group commit).
//!
//! `cargo run --release -p gantry-store --example bench_commit [DIR] [SECONDS] [TASKS]`
//!
//! Opens a durable store in a fresh temp dir under DIR (default: the system temp dir; it must be on
//! the disk being measured, not tmpfs), then TASKS (64) tokio tasks each commit ~1 KiB JSON puts for
//! SECONDS (5) seconds. Prints commits/s, the mean group-commit batch size and commit latencies.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use gantry_store::{SqliteOptions, SqliteStore, Store, Txn};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let seconds: u64 = args
        .next()
        .map_or(Ok(5), |s| s.parse())
        .context("SECONDS")?;
    let tasks: usize = args.next().map_or(Ok(64), |s| s.parse()).context("TASKS")?;
    let dir =
        tempfile::tempdir_in(&base).with_context(|| format!("temp dir in {}", base.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(
        dir.path().join("bench.db"),
        Duration::from_secs(seconds),
        tasks,
    ))
}

async fn run(path: PathBuf, duration: Duration, tasks: usize) -> Result<()> {
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default())?);
    println!(
        "store: {} (durable, synchronous=FULL), {tasks} tasks, {duration:?}",
        path.display()
    );
    let pad = "x".repeat(900);
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        let pad = pad.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let value = format!(
                    "{{\"taskArn\":\"arn:aws:ecs:local:000000000000:task/bench/{task}-{i}\",\
                     \"lastStatus\":\"RUNNING\",\"pad\":\"{pad}\"}}"
                );
                let began = Instant::now();
                let outcome = store
                    .commit(Txn::new().put(format!("bench/{task:03}/{i:08}"), value.into_bytes()))
                    .await?;
                latencies.push(began.elapsed());
                ensure!(
                    outcome.is_committed(),
                    "unconditional put conflicted: {outcome:?}"
                );
                i += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let elapsed = start.elapsed();
    let stats = store.stats();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let commits = latencies.len();
    println!(
        "{commits} commits in {:.2} s: {:.0} commits/s",
        elapsed.as_secs_f64(),
        commits as f64 / elapsed.as_secs_f64()
    );
    println!(
        "{} batches ({:.0} fsyncs/s), mean batch {:.1} txns",
        stats.batches,
        stats.batches as f64 / elapsed.as_secs_f64(),
        stats.txns as f64 / stats.batches.max(1) as f64
    );
    println!(
        "latency p50 {:?} p99 {:?} max {:?}",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
