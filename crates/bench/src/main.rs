//! `gantry-bench`: load generators for Gantry's benchmarks (see `docs/benchmarks.md`).
//!
//! `gantry-bench api` drives a running `gantry server` through its public ECS JSON API the way a
//! real client does: SigV4-signed requests over a pool of keep-alive HTTP/1.1 connections, from
//! N workers in a closed loop. It depends on no Gantry crate, so it measures the wire and nothing
//! else; it must stay that way. `gantry-bench logs-load`, `logs-read` and `logs-page` do the same
//! for CloudWatch Logs (`scripts/bench-logs.sh`).

mod client;
mod cpu;
mod logs;
mod metrics;
mod run;
mod stats;
mod workload;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::EcsClient;
use crate::workload::Op;

#[derive(Debug, Parser)]
#[command(name = "gantry-bench", version, about = "Load generators for Gantry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop load on one ECS control-plane operation; prints req/s and latency.
    Api(ApiArgs),
    /// Creates a log group and loads it with events, fast (1 MiB batches, concurrent streams).
    LogsLoad(LogsLoadArgs),
    /// Latency of FilterLogEvents --limit from the head, the middle and the tail of a group.
    LogsRead(LogsReadArgs),
    /// Many clients paging through a group at once; reports the server's peak resident memory.
    LogsPage(LogsPageArgs),
    /// CloudWatch PutMetricData ingestion: points per second with many calls in flight.
    MetricsPut(MetricsPutArgs),
    /// CloudWatch GetMetricData latency over many series of one-minute data.
    MetricsRead(MetricsReadArgs),
}

#[derive(Debug, Args)]
struct MetricsPutArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Metric items per call (CloudWatch allows 1,000).
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// Values per item (1: `Value`; more: `Values`, CloudWatch allows 150).
    #[arg(long, default_value_t = 1)]
    values: usize,
    /// Distinct series the items spread over.
    #[arg(long, default_value_t = 1000)]
    series: usize,
    #[arg(long, default_value = "20s", value_parser = stats::parse_duration)]
    duration: Duration,
    /// The server's process id (the `pid` of its ready file), to report its CPU time per call.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Debug, Args)]
struct MetricsReadArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long, default_value_t = 100)]
    series: usize,
    #[arg(long, default_value_t = 1440)]
    minutes: u64,
    #[arg(long, default_value_t = 60)]
    period: u64,
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// The server's process id (the `pid` of its ready file), to report its CPU time per call.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Debug, Args)]
struct Conn {
    /// The server, e.g. http://127.0.0.1:4510 (the `endpoint` of its ready file).
    #[arg(long)]
    endpoint: String,
    /// The region requests are signed for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// A request not answered within this long is an error.
    #[arg(long, default_value = "60s", value_parser = stats::parse_duration)]
    timeout: Duration,
    #[arg(long, env = "GANTRY_ROOT_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: String,
    #[arg(long, env = "GANTRY_ROOT_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    /// The log group.
    #[arg(long, default_value = "/bench/logs")]
    group: String,
}

impl Conn {
    fn client(&self, pool: usize) -> anyhow::Result<EcsClient> {
        Ok(EcsClient::new(
            &self.endpoint,
            &self.region,
            &self.access_key_id,
            &self.secret_access_key,
            pool,
            self.timeout,
        )?
        .with_service(logs::LOGS_TARGET_PREFIX, logs::LOGS_SIGNING_NAME))
    }

    fn metrics_client(&self, pool: usize) -> anyhow::Result<EcsClient> {
        Ok(EcsClient::new(
            &self.endpoint,
            &self.region,
            &self.access_key_id,
            &self.secret_access_key,
            pool,
            self.timeout,
        )?
        .with_service(metrics::TARGET_PREFIX, metrics::SIGNING_NAME))
    }
}

#[derive(Debug, Args)]
struct LogsLoadArgs {
    #[command(flatten)]
    conn: Conn,
    /// Total bytes of events (messages plus 26 each), e.g. 1073741824.
    #[arg(long)]
    bytes: u64,
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Size of each message.
    #[arg(long, default_value_t = 300)]
    event_bytes: usize,
    /// The events' timestamps spread over this span, ending a minute ago.
    #[arg(long, default_value = "360m", value_parser = stats::parse_duration)]
    span: Duration,
    /// PutLogEvents calls in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[derive(Debug, Args)]
struct LogsReadArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// Requests per position.
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

#[derive(Debug, Args)]
struct LogsPageArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Events per page.
    #[arg(long, default_value_t = 10_000)]
    limit: u64,
    #[arg(long, default_value = "30s", value_parser = stats::parse_duration)]
    duration: Duration,
    /// The server's process id (the `pid` of its ready file).
    #[arg(long)]
    server_pid: u32,
    /// Fail when the server's peak resident memory exceeds this many MiB.
    #[arg(long)]
    max_rss_mib: Option<u64>,
}

async fn logs_page(args: LogsPageArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client(args.clients)?;
    let peak = logs::page_memory(
        &client,
        &args.conn.group,
        args.clients,
        args.limit,
        args.duration,
        args.server_pid,
    )
    .await?;
    if let Some(max) = args.max_rss_mib
        && peak > max << 20
    {
        eprintln!("server peak RSS {} MiB exceeds {max} MiB", peak >> 20);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// The server, e.g. http://127.0.0.1:4510 (the `endpoint` of its ready file).
    #[arg(long)]
    endpoint: String,
    /// Concurrent clients, each with at most one request in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long the workers send requests (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = stats::parse_duration)]
    duration: Duration,
    /// The operation to load.
    #[arg(long, value_enum)]
    op: Op,
    /// The region requests are signed for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// A request not answered within this long counts as an error.
    #[arg(long, default_value = "30s", value_parser = stats::parse_duration)]
    timeout: Duration,
    /// The server's process id (the `pid` of its ready file), to report its CPU time per request.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, env = "GANTRY_ROOT_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: String,
    #[arg(long, env = "GANTRY_ROOT_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
}

async fn api(args: ApiArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let client = EcsClient::new(
        &args.endpoint,
        &args.region,
        &args.access_key_id,
        &args.secret_access_key,
        args.concurrency,
        args.timeout,
    )?;
    args.op.setup(&client).await?;
    println!(
        "op={} concurrency={} duration_s={}",
        args.op.ecs_name(),
        args.concurrency,
        args.duration.as_secs_f64()
    );
    let report = run::run(
        &client,
        args.op,
        args.concurrency,
        args.duration,
        args.server_pid,
    )
    .await?;
    println!("{}", report.summary);
    println!("cpu: {}", report.cpu.line(report.summary.ok));
    let checked = run::check(&client, args.op, &report).await?;
    println!("check: {checked}");
    if report.summary.errors > 0 || report.summary.ok == 0 {
        eprintln!(
            "failed: {} errors, {} successes",
            report.summary.errors, report.summary.ok
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async move {
                match cli.command {
                    Command::Api(args) => api(args).await,
                    Command::LogsLoad(a) => {
                        let client = a.conn.client(a.concurrency)?;
                        logs::load(
                            &client,
                            &a.conn.group,
                            a.streams,
                            a.bytes,
                            a.event_bytes,
                            a.span.as_millis() as u64,
                            a.concurrency,
                        )
                        .await?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Command::LogsRead(a) => {
                        let client = a.conn.client(1)?;
                        logs::read_latency(&client, &a.conn.group, a.limit, a.requests).await?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Command::LogsPage(a) => logs_page(a).await,
                    Command::MetricsPut(a) => {
                        let client = a.conn.metrics_client(a.concurrency)?;
                        metrics::put_throughput(
                            &client,
                            a.concurrency,
                            a.items,
                            a.values,
                            a.series,
                            a.duration,
                            a.server_pid,
                        )
                        .await?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Command::MetricsRead(a) => {
                        let client = a.conn.metrics_client(1)?;
                        metrics::get_latency(
                            &client,
                            a.series,
                            a.minutes,
                            a.period,
                            a.requests,
                            a.server_pid,
                        )
                        .await?;
                        Ok(ExitCode::SUCCESS)
                    }
                }
            })
        });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gantry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
