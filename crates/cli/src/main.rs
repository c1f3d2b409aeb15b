//! The `gantry` binary: the composition root. Parses the command line, sets up tracing, wires the
//! store, the APIs and the listeners together, and shuts down on SIGTERM or Ctrl-C within a
//! deadline (a second signal exits at once).

mod agent_config;
mod authz;
#[rustfmt::skip]
mod authz_table;
mod config;
mod console;
mod credentials;
mod datadir;
mod health;
mod identity;
mod kms_authz;
mod leader;
mod prometheus;
mod provisioner;
mod secrets;
mod server;
mod user;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: the server makes many small allocations per request on
/// every worker thread, and glibc's arenas serialised them on their locks (about a quarter of the
/// server's CPU under DescribeTasks load went to malloc, free and their lock waits). With
/// jemalloc, RunTask at 10,000 instances went from 5,700 to 9,100 tasks/s and DescribeTasks from
/// 7,500 to 11,700 calls/s, at 747 MiB peak RSS against 631 (docs/benchmarks.md, "Placement").
/// mimalloc was faster than glibc too but held twice the memory (2.1 GiB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// List tasks, like `docker ps`.
    Ps(user::PsArgs),
    /// List services with their counts and rollout state.
    Services(user::ServicesArgs),
    /// Print (and with -f follow) the awslogs output of a service's or a task's containers.
    Logs(user::LogsArgs),
    /// Register a revision with new images, update the service and follow the rollout until it
    /// is stable or fails.
    Deploy(user::DeployArgs),
    /// Set a service's desired count.
    Scale(user::ScaleArgs),
    /// Show the server, store, agents, clusters and load balancers.
    Status(user::StatusArgs),
    /// Print the `export` lines of a local `gantry up` again, from its data directory.
    Env(user::EnvArgs),
    /// Push a local Docker image to Gantry's registry (creating the repository when missing).
    Push(user::PushArgs),
    /// Turn an Elastic Beanstalk Dockerrun.aws.json or a Compose file into a task definition
    /// and a service (or tasks).
    #[command(subcommand)]
    Import(user::ImportCommand),
}

async fn run_agent(args: config::AgentArgs, file: agent_config::EcsConfig) -> anyhow::Result<()> {
    for key in &file.unknown {
        tracing::warn!(
            key = %key,
            file = %agent_config::describe(args.config.as_ref()),
            "unknown agent configuration key; ignored"
        );
    }
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| file.get("ECS_BACKEND_HOST").map(str::to_owned))
        .ok_or_else(|| {
            anyhow::anyhow!("set --endpoint or ECS_BACKEND_HOST in the agent's configuration")
        })?;
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| file.get("ECS_DATADIR").map(std::path::PathBuf::from))
        .ok_or_else(|| {
            anyhow::anyhow!("set --data-dir or ECS_DATADIR in the agent's configuration")
        })?;
    datadir::prepare(&data_dir)?;
    let _lock = datadir::DataDirLock::acquire(&data_dir, "agent")?;
    let cluster = match &args.fargate_pool {
        Some(_) => gantry_domain::cluster::FARGATE_PLATFORM_CLUSTER.to_owned(),
        None => args
            .cluster
            .clone()
            .or_else(|| file.get("ECS_CLUSTER").map(str::to_owned))
            .unwrap_or_else(|| "default".to_owned()),
    };
    let mut cfg = gantry_agent::AgentConfig::new(endpoint, cluster, data_dir);
    file.apply(&mut cfg)?;
    for (id, path) in args.file_systems {
        std::fs::create_dir_all(&path)
            .map_err(|e| anyhow::anyhow!("file system {id}: creating {}: {e}", path.display()))?;
        cfg.file_systems.insert(id, path);
    }
    for (k, v) in args.attributes {
        cfg.attributes.retain(|(name, _)| *name != k);
        cfg.attributes.push((k, v));
    }
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
    if args.disable_task_iam_role {
        cfg.task_iam_role = false;
    }
    cfg.usage_interval = std::time::Duration::from_secs(args.usage_interval.max(1));
    if let Some(image) = args.pause_image {
        cfg.pause_image = image;
    }
    if args.uninstall {
        gantry_agent::uninstall(cfg).await?;
        return Ok(());
    }
    if let Some(addr) = args.metrics_listen {
        let metrics = cfg.metrics.clone();
        prometheus::serve_open(addr, "gantry agent", move |r| metrics.register(r)).await?;
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
    s.usage_interval = std::time::Duration::from_secs_f64(args.metrics_interval);
    s.availability_zone = args.availability_zone.filter(|z| !z.is_empty());
    if let Some(addr) = args.metrics_listen {
        let metrics = s.metrics.clone();
        prometheus::serve_open(addr, "gantry lb", move |r| metrics.register(r)).await?;
    }
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
    // The agent's file is read before logging starts: its ECS_LOGLEVEL sets the level when
    // GANTRY_LOG does not.
    let agent_file = match &cli.command {
        Command::Agent(a) => Some(agent_config::EcsConfig::load(a.config.as_deref())?),
        _ => None,
    };
    let level = std::env::var("GANTRY_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            agent_file
                .as_ref()
                .and_then(|f| f.log_level())
                .map(str::to_owned)
        });
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(level.as_deref()))
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
            Command::Agent(args) => run_agent(args, agent_file.unwrap_or_default()).await,
            Command::Lb(args) => run_lb(args).await,
            Command::Simulate(args) => run_simulate(args).await,
            Command::Fargate(cmd) => run_fargate(cmd).await,
            Command::Ps(args) => user::ps(args).await,
            Command::Services(args) => user::services(args).await,
            Command::Logs(args) => user::logs(args).await,
            Command::Deploy(args) => user::deploy(args).await,
            Command::Scale(args) => user::scale(args).await,
            Command::Status(args) => user::status(args).await,
            Command::Env(args) => user::env(args).await,
            Command::Push(args) => user::push(args).await,
            Command::Import(cmd) => user::import(cmd).await,
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

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every argument of `cmd` and its subcommands lacking help text, as `path --flag`.
    fn without_help(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let builtin = matches!(a.get_id().as_str(), "help" | "version");
            if !builtin && a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path} --{}", a.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                out.push(format!("{path} {} (no about)", sub.get_name()));
            }
            without_help(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_of_every_subcommand_has_help_text() {
        let mut missing = Vec::new();
        without_help(&super::Cli::command(), "gantry", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }
}
