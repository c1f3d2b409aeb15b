//! Runs a simulated fleet until SIGINT/SIGTERM (what `gantry simulate` wires up), writing its
//! progress as JSON to `--status-file` twice a second so scripts can wait for it.
//!
//! ```sh
//! export GANTRY_ROOT_ACCESS_KEY_ID=... GANTRY_ROOT_SECRET_ACCESS_KEY=...
//! cargo run --release -p gantry-sim --example simulate -- \
//!     --endpoint http://127.0.0.1:4510 --cluster sim --instances 10000 --status-file /tmp/sim.json
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gantry_sim::{SimConfig, Simulator};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long, default_value = "default")]
    cluster: String,
    #[arg(long)]
    instances: usize,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Registrations, stream openings and reports in flight at once (each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rewritten twice a second with the fleet's progress (JSON).
    #[arg(long)]
    status_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = SimConfig::from_env(args.endpoint, args.cluster, args.instances)?;
    cfg.region = args.region;
    cfg.seed = args.seed;
    cfg.register_concurrency = args.concurrency;
    cfg.connect_concurrency = args.concurrency;
    cfg.report_concurrency = args.concurrency;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let sim = Simulator::start(cfg).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut logged = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    let p = sim.progress();
                    if let Some(path) = &args.status_file {
                        let tmp = path.with_extension("tmp");
                        std::fs::write(&tmp, serde_json::to_vec(&p)?)
                            .with_context(|| format!("writing {}", tmp.display()))?;
                        std::fs::rename(&tmp, path)?;
                    }
                    if logged.elapsed() >= Duration::from_secs(5) {
                        logged = tokio::time::Instant::now();
                        tracing::info!(
                            registered = p.registered,
                            connected = p.connected,
                            reported_running = p.reported_running,
                            reported_stopped = p.reported_stopped,
                            report_failures = p.report_failures,
                            "simulated instances"
                        );
                    }
                }
            }
        }
        sim.stop().await;
        anyhow::Ok(())
    })
}
