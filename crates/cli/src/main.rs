//! The `gantry` binary: the composition root. Parses the command line, sets up tracing, wires the
//! store, the APIs and the listeners together, and shuts down on SIGTERM or Ctrl-C within a
//! deadline (a second signal exits at once).

mod authz;
#[rustfmt::skip]
mod authz_table;
mod config;
mod credentials;
mod datadir;
mod identity;
mod leader;
mod prometheus;
mod secrets;
mod server;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gantry",
    version,
    about = "Self-hosted ECS + ECR: the control plane, agents and load balancer in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `gantry server --help`: how to run several replicas.
const SEVERAL_SERVERS: &str = "\
Several servers (availability):
  1. Run a three-member etcd cluster (apt-get install etcd-server).
  2. Start the first replica with the same root key every replica will use:
       GANTRY_ROOT_ACCESS_KEY_ID=... GANTRY_ROOT_SECRET_ACCESS_KEY=... \\
       AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \\
       gantry server --data-dir /var/lib/gantry --listen 0.0.0.0:4510 \\
         --store etcd://M1:2379,M2:2379,M3:2379/gantry \\
         --blob-store 's3://BUCKET/registry?endpoint=https://S3-HOST&region=REGION'
  3. Copy master-key and registry-token-secret from its data dir into the data dirs of the
     other replicas (mode 0600), then start them with the same flags.
  4. Point clients, agents and load balancers at any replica (or a TCP balancer in front).
Any replica answers every call; one elected replica runs the controllers, and another takes
over within seconds when it dies. docs/operations.md covers backup, upgrades and failures.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane (APIs, registry, controllers).
    #[command(after_long_help = SEVERAL_SERVERS)]
    Server(config::ServerArgs),
    /// Run everything on this machine and print the `export` lines for the AWS CLI.
    Up(config::UpArgs),
    /// Run an agent: register this host as a container instance and run its tasks on Docker.
    Agent(config::AgentArgs),
    /// Run a load balancer: serve the listeners of the load balancers defined through ELBv2.
    Lb(config::LbArgs),
    /// Operate the platform's Fargate capacity.
    #[command(subcommand)]
    Fargate(FargateCommand),
    /// Register N simulated container instances that stay connected and run every task they are
    /// given at once (no containers): for measuring the control plane at scale.
    Simulate(config::SimulateArgs),
}

async fn run_agent(args: config::AgentArgs) -> anyhow::Result<()> {
    datadir::prepare(&args.data_dir)?;
    let _lock = datadir::DataDirLock::acquire(&args.data_dir, "agent")?;
    let cluster = match &args.fargate_pool {
        Some(_) => gantry_domain::cluster::FARGATE_PLATFORM_CLUSTER.to_owned(),
        None => args.cluster,
    };
    let mut cfg = gantry_agent::AgentConfig::new(args.endpoint, cluster, args.data_dir);
    cfg.attributes = args.attributes;
    if let Some(pool) = args.pool {
        cfg.attributes
            .push((gantry_domain::capacity::POOL_ATTRIBUTE.to_owned(), pool));
    }
    if let Some(pool) = args.fargate_pool {
        cfg.attributes.push((
            gantry_domain::cluster::FARGATE_POOL_ATTRIBUTE.to_owned(),
            pool,
        ));
    }
    cfg.region = args.region;
    cfg.usage_interval = std::time::Duration::from_secs(args.usage_interval.max(1));
    if let Some(image) = args.pause_image {
        cfg.pause_image = image;
    }
    if args.uninstall {
        gantry_agent::uninstall(cfg).await?;
        return Ok(());
    }
    gantry_agent::run(cfg, server::shutdown_signal()).await?;
    Ok(())
}

#[derive(Debug, Subcommand)]
enum FargateCommand {
    /// Reclaim Spot capacity: N running FARGATE_SPOT tasks get SIGTERM, then SIGKILL after the
    /// warning, and stop with SpotInterruption; their services replace them.
    Interrupt(config::InterruptArgs),
}

async fn run_fargate(cmd: FargateCommand) -> anyhow::Result<()> {
    let FargateCommand::Interrupt(args) = cmd;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(ak), Some(sk)) = (
        env("GANTRY_ROOT_ACCESS_KEY_ID"),
        env("GANTRY_ROOT_SECRET_ACCESS_KEY"),
    ) else {
        anyhow::bail!("set GANTRY_ROOT_ACCESS_KEY_ID and GANTRY_ROOT_SECRET_ACCESS_KEY");
    };
    let api = gantry_agent::client::ApiClient::new(&args.endpoint, &args.region, &ak, &sk)
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut body = serde_json::json!({"count": args.count, "warningSeconds": args.warning_seconds});
    if let Some(c) = &args.cluster {
        body["cluster"] = serde_json::json!(c);
    }
    let answer = api
        .post_json(
            gantry_agent::client::Service::Ecs,
            "/admin/v1/fargate/interrupt",
            &body,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

async fn run_lb(args: config::LbArgs) -> anyhow::Result<()> {
    let mut s = gantry_lb::LbSettings::new(args.endpoint);
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    s.access_key_id = env("GANTRY_ROOT_ACCESS_KEY_ID").ok_or_else(|| {
        anyhow::anyhow!("set GANTRY_ROOT_ACCESS_KEY_ID and GANTRY_ROOT_SECRET_ACCESS_KEY")
    })?;
    s.secret_access_key = env("GANTRY_ROOT_SECRET_ACCESS_KEY")
        .ok_or_else(|| anyhow::anyhow!("set GANTRY_ROOT_SECRET_ACCESS_KEY"))?;
    s.region = args.region;
    s.bind = args.bind;
    gantry_lb::run(s, server::shutdown_signal()).await?;
    Ok(())
}

async fn run_simulate(args: config::SimulateArgs) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(ak), Some(sk)) = (
        env("GANTRY_ROOT_ACCESS_KEY_ID"),
        env("GANTRY_ROOT_SECRET_ACCESS_KEY"),
    ) else {
        anyhow::bail!("set GANTRY_ROOT_ACCESS_KEY_ID and GANTRY_ROOT_SECRET_ACCESS_KEY");
    };
    let mut cfg = gantry_sim::SimConfig::new(args.endpoint, args.cluster, args.instances, ak, sk);
    cfg.seed = args.seed;
    cfg.fargate_pool = args.fargate_pool;
    cfg.region = args.region;
    gantry_sim::run(cfg, server::shutdown_signal()).await?;
    Ok(())
}

/// Caps glibc's malloc arenas at two. By default glibc gives every thread that allocates an arena
/// of its own (up to eight per core) and keeps what is freed there for reuse, so memory that a
/// burst of large requests used on many threads stays resident long after. Two arenas keep the
/// server's resident memory close to what it actually holds (see "CloudWatch Logs reads" in
/// docs/benchmarks.md). A `MALLOC_ARENA_MAX` set by the operator wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: `mallopt` only changes a malloc tunable. It is called once, from `main`, before
    // the runtime or any other thread exists, so no allocation can race with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// The log filter from `GANTRY_LOG` (default `info`). The Docker client's debug output is never
/// enabled whatever the setting: it dumps request and response bodies, and a container's create
/// body holds its environment, secret values included.
fn log_filter(setting: Option<&str>) -> tracing_subscriber::EnvFilter {
    let base = setting.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_new(base)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match "bollard=info".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("GANTRY_LOG").ok().as_deref()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args.into_config()?, None).await,
            Command::Up(args) => {
                let local_agent = (!args.no_agent).then(|| args.cluster.clone());
                let local_lb = !args.no_lb;
                let cfg = args.into_config()?;
                server::run(
                    cfg,
                    Some(server::UpOptions {
                        local_agent,
                        local_lb,
                    }),
                )
                .await
            }
            Command::Agent(args) => run_agent(args).await,
            Command::Lb(args) => run_lb(args).await,
            Command::Simulate(args) => run_simulate(args).await,
            Command::Fargate(cmd) => run_fargate(cmd).await,
        }
    });
    // Whatever is still running (a blocking write stuck on a dead disk, a task that ignored its
    // deadline) is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

#[cfg(test)]
mod log_filter_tests {
    use super::log_filter;

    #[test]
    fn the_docker_client_never_logs_bodies() {
        for setting in [
            None,
            Some("debug"),
            Some("trace"),
            Some("bollard=trace"),
            Some("x=debug,bollard=debug"),
        ] {
            let shown = log_filter(setting).to_string();
            assert!(shown.contains("bollard=info"), "{setting:?}: {shown}");
            assert!(
                !shown.contains("bollard=debug") && !shown.contains("bollard=trace"),
                "{setting:?}: {shown}"
            );
        }
    }
}
