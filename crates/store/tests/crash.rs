//! Durability under SIGKILL: every commit the SQLite store acknowledged survives the process being
//! killed mid-write.
//!
//! The test re-executes its own binary with `CHILD_ENV` set, which turns `crash_writer_child` into
//! a writer that commits numbered keys from 32 tasks and prints `ack <n>` for each acknowledged
//! one. The parent reads acks, kills the child with SIGKILL, reopens the store and checks them all.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gantry_store::{SqliteOptions, SqliteStore, Store, Txn, TxnOutcome};

/// Names the database the child writes to; absent in a normal test run.
const CHILD_ENV: &str = "GANTRY_STORE_CRASH_CHILD_DB";
/// How many acknowledged commits the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 300;
/// The child stops on its own after this long, should the parent have gone away.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

fn key(n: u64) -> String {
    format!("crash/{n:08}")
}

#[test]
fn crash_writer_child() -> Result<()> {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return Ok(()); // Only meaningful when started by `acknowledged_commits_survive_sigkill`.
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(write_until_killed(PathBuf::from(path)))
}

async fn write_until_killed(path: PathBuf) -> Result<()> {
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default())?);
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (store, next) = (store.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let value = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes();
                let outcome = store
                    .commit(Txn::new().require_absent(key(n)).put(key(n), value))
                    .await?;
                ensure!(outcome.is_committed(), "commit of {n}: {outcome:?}");
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {n}")?;
                out.flush()?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

#[test]
fn acknowledged_commits_survive_sigkill() -> Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return Ok(()); // We are the child; only `crash_writer_child` runs here.
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "crash_writer_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let acked = read_acks(stdout);
    child.kill()?; // SIGKILL
    let status = child.wait()?;
    let acked = acked?;
    ensure!(
        !status.success(),
        "child exited on its own ({status}) before it was killed"
    );
    check_acked_present(&path, &acked)
}

/// Reads `ack <n>` lines until enough arrived, failing after a deadline.
fn read_acks(stdout: std::process::ChildStdout) -> Result<BTreeSet<u64>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line
                .strip_prefix("ack ")
                .and_then(|n| n.trim().parse::<u64>().ok())
                && tx.send(n).is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acked = BTreeSet::new();
    while acked.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => {
                acked.insert(n);
            }
            Err(e) => bail!(
                "only {} acks from the child before it stopped: {e}",
                acked.len()
            ),
        }
    }
    Ok(acked)
}

fn check_acked_present(path: &Path, acked: &BTreeSet<u64>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = SqliteStore::open(path, SqliteOptions::default())?;
        let mut missing = Vec::new();
        for &n in acked {
            if store.get(&key(n)).await?.is_none() {
                missing.push(n);
            }
        }
        ensure!(
            missing.is_empty(),
            "{} acknowledged keys lost: {missing:?}",
            missing.len()
        );
        let revision = store.revision().await?;
        ensure!(
            revision >= acked.len() as u64,
            "revision {revision} below {} acks",
            acked.len()
        );
        // The store still works after recovery.
        let outcome = store.commit(Txn::new().put("after-crash", vec![])).await?;
        ensure!(matches!(outcome, TxnOutcome::Committed { revision: r } if r == revision + 1));
        Ok(())
    })
}
