//! Durable commit throughput of a store under concurrency: SQLite (group commit) or etcd.
//!
//! `cargo run --release -p gantry-store --example bench_commit [DIR|etcd://HOST:PORT,...] [SECONDS] [TASKS]`
//!
//! Opens a durable SQLite store in a fresh temp dir under DIR (default: the system temp dir; it
//! must be on the disk being measured, not tmpfs), or an etcd store at the given `etcd://` URL,
//! then TASKS (64) tokio tasks each commit ~1 KiB JSON puts for SECONDS (5) seconds. Prints
//! commits/s, commit latencies, and for SQLite the mean group-commit batch size.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use gantry_store::{EtcdOptions, EtcdStore, SqliteOptions, SqliteStore, Store, Txn};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let target = args.next();
    let seconds: u64 = args
        .next()
        .map_or(Ok(5), |s| s.parse())
        .context("SECONDS")?;
    let tasks: usize = args.next().map_or(Ok(64), |s| s.parse()).context("TASKS")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let duration = Duration::from_secs(seconds);
    if let Some(url) = target.as_deref().filter(|t| t.starts_with("etcd://")) {
        return runtime.block_on(async {
            let opts = EtcdOptions::from_url(url).map_err(anyhow::Error::msg)?;
            let store = Arc::new(EtcdStore::connect(opts).await?);
            println!("store: etcd {url}, {tasks} tasks, {duration:?}");
            run(store, duration, tasks).await?;
            Ok(())
        });
    }
    let base = target.map_or_else(std::env::temp_dir, PathBuf::from);
    let dir =
        tempfile::tempdir_in(&base).with_context(|| format!("temp dir in {}", base.display()))?;
    let path = dir.path().join("bench.db");
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default())?);
        println!(
            "store: {} (durable, synchronous=FULL), {tasks} tasks, {duration:?}",
            path.display()
        );
        let elapsed = run(store.clone(), duration, tasks).await?;
        let stats = store.stats();
        println!(
            "{} batches ({:.0} fsyncs/s), mean batch {:.1} txns",
            stats.batches,
            stats.batches as f64 / elapsed.as_secs_f64(),
            stats.txns as f64 / stats.batches.max(1) as f64
        );
        Ok(())
    })
}

/// Runs the load; returns how long it took.
async fn run(store: Arc<dyn Store>, duration: Duration, tasks: usize) -> Result<Duration> {
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
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let commits = latencies.len();
    println!(
        "{commits} commits in {:.2} s: {:.0} commits/s",
        elapsed.as_secs_f64(),
        commits as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:?} p99 {:?} max {:?}",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(elapsed)
}
