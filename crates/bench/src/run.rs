//! The closed loop: N workers, each sending its next request as soon as the previous one is
//! answered, until the deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;

use crate::client::EcsClient;
use crate::cpu::{self, Usage};
use crate::stats::{Observed, Summary, summarize};
use crate::workload::{self, Op};

/// How many failed requests have their answer printed.
const PRINTED_ERRORS: usize = 5;
/// How much of an error body is printed.
const PRINTED_BODY_BYTES: usize = 512;

/// What one worker saw.
#[derive(Debug, Default)]
struct WorkerReport {
    observed: Observed,
    /// Successful requests (kept after `observed` is merged away).
    ok: u64,
    /// The first and last successful answers, for the consistency check.
    first_ok: Option<Bytes>,
    last_ok: Option<Bytes>,
}

/// The figures of a run and the per-worker answers the check needs.
#[derive(Debug)]
pub struct RunReport {
    pub summary: Summary,
    /// CPU used during the run (not the setup or the check).
    pub cpu: Usage,
    reports: Vec<WorkerReport>,
}

fn report_error(printed: &AtomicUsize, worker: usize, what: &str) {
    if printed.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
        eprintln!("error (worker {worker}): {what}");
    }
}

async fn worker(
    client: EcsClient,
    op: Op,
    id: usize,
    deadline: Instant,
    printed: Arc<AtomicUsize>,
) -> WorkerReport {
    let body = op.body(id);
    let mut report = WorkerReport::default();
    while Instant::now() < deadline {
        let sent = Instant::now();
        match client.call(op.ecs_name(), body.clone()).await {
            Ok(answer) if answer.status == http::StatusCode::OK => {
                report
                    .observed
                    .latencies_us
                    .push(sent.elapsed().as_micros() as u64);
                report.ok += 1;
                if report.first_ok.is_none() {
                    report.first_ok = Some(answer.body.clone());
                }
                report.last_ok = Some(answer.body);
            }
            Ok(answer) => {
                report.observed.errors += 1;
                let body = &answer.body[..answer.body.len().min(PRINTED_BODY_BYTES)];
                report_error(
                    &printed,
                    id,
                    &format!("HTTP {}: {}", answer.status, String::from_utf8_lossy(body)),
                );
            }
            Err(e) => {
                report.observed.errors += 1;
                report_error(&printed, id, &format!("{e:#}"));
            }
        }
    }
    report
}

/// Runs `concurrency` workers of `op` for `duration` and summarises what they saw.
pub async fn run(
    client: &EcsClient,
    op: Op,
    concurrency: usize,
    duration: Duration,
    server_pid: Option<u32>,
) -> anyhow::Result<RunReport> {
    let printed = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu::Sample::now(server_pid);
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = (0..concurrency)
        .map(|id| tokio::spawn(worker(client.clone(), op, id, deadline, printed.clone())))
        .collect();
    let mut reports = Vec::with_capacity(concurrency);
    for handle in handles {
        reports.push(handle.await.context("a worker panicked")?);
    }
    // The last requests, sent just before the deadline, are answered a little after it.
    let elapsed = start.elapsed();
    let cpu = cpu::usage(cpu_before, cpu::Sample::now(server_pid));
    let mut observed = Observed::default();
    for r in &mut reports {
        observed.merge(std::mem::take(&mut r.observed));
    }
    let hidden = printed
        .load(Ordering::Relaxed)
        .saturating_sub(PRINTED_ERRORS);
    if hidden > 0 {
        eprintln!("({hidden} more errors not shown)");
    }
    Ok(RunReport {
        summary: summarize(observed, elapsed),
        cpu,
        reports,
    })
}

/// After a RegisterTaskDefinition run: each worker's acknowledged revisions must be contiguous
/// (one per success, none lost or repeated) and its latest one readable. Returns what was checked.
pub async fn check(client: &EcsClient, op: Op, report: &RunReport) -> anyhow::Result<String> {
    match op {
        Op::DescribeClusters => Ok("nothing to check for reads".to_owned()),
        Op::RegisterTaskDefinition => {
            let mut families = 0;
            for (id, r) in report.reports.iter().enumerate() {
                let (Some(first), Some(last)) = (&r.first_ok, &r.last_ok) else {
                    continue;
                };
                let family = workload::family(id);
                let first = workload::revision_of(first)?;
                let last = workload::revision_of(last)?;
                let acknowledged = r.ok;
                if last + 1 - first != acknowledged {
                    bail!(
                        "family {family}: {acknowledged} registrations acknowledged but revisions \
                         run from {first} to {last}"
                    );
                }
                let body = json!({"taskDefinition": family}).to_string();
                let answer = client
                    .call("DescribeTaskDefinition", Bytes::from(body))
                    .await?;
                let latest = workload::revision_of(
                    workload::expect_ok("DescribeTaskDefinition", answer)?
                        .to_string()
                        .as_bytes(),
                )?;
                if latest != last {
                    bail!("family {family}: latest revision is {latest}, expected {last}");
                }
                families += 1;
            }
            Ok(format!(
                "{families} families: revisions contiguous, one per acknowledged registration, \
                 latest readable"
            ))
        }
    }
}
