//! The `gantry` binary: the composition root. Parses the command line, sets up tracing, wires the
//! store, the APIs and the listeners together, and shuts down gracefully on SIGTERM.

mod config;
mod credentials;
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane (APIs, registry, controllers).
    Server(config::ServerArgs),
    /// Run everything on this machine and print the `export` lines for the AWS CLI.
    Up(config::UpArgs),
    /// Run an agent: register this host as a container instance and run its tasks on Docker.
    Agent(config::AgentArgs),
}

async fn run_agent(args: config::AgentArgs) -> anyhow::Result<()> {
    let mut cfg = gantry_agent::AgentConfig::new(args.endpoint, args.cluster, args.data_dir);
    cfg.attributes = args.attributes;
    cfg.region = args.region;
    gantry_agent::run(cfg, server::shutdown_signal()).await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args.into_config()?, None).await,
            Command::Up(args) => {
                let local_agent = (!args.no_agent).then(|| args.cluster.clone());
                let cfg = args.into_config()?;
                server::run(cfg, Some(server::UpOptions { local_agent })).await
            }
            Command::Agent(args) => run_agent(args).await,
        }
    })
}
