//! User commands: `gantry ps`, `services`, `logs`, `deploy`, `scale`, `status`, `env`, `push`,
//! `import`.
//! They talk to the APIs like any AWS client (the standard credential chain, [`conn`]) and print
//! tables on a terminal, plain text when piped ([`output`]).

pub mod conn;
mod deploy;
pub mod env;
pub mod import;
pub mod logs;
pub mod output;
mod ps;
mod push;
mod status;

use std::path::PathBuf;

use clap::Args;

pub use conn::ConnArgs;

/// `gantry ps` flags.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only tasks of this cluster (default: every cluster).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Also show stopped tasks (ECS keeps them for an hour).
    #[arg(long, short)]
    pub all: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `gantry services` flags.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Only services of this cluster (default: every cluster).
    #[arg(long)]
    pub cluster: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `gantry logs` flags.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A service name, or a task id or ARN.
    pub target: String,
    /// The cluster of the service or task (default: the one cluster that has it).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Keep printing new lines as they arrive, until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// How far back to start, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub since: u64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `gantry deploy` flags.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The service to deploy.
    pub service: String,
    /// The new image: IMAGE for a single-container task definition, or CONTAINER=IMAGE
    /// (repeatable).
    #[arg(long = "image", required = true, value_name = "[CONTAINER=]IMAGE")]
    pub images: Vec<String>,
    /// The service's cluster (default: the one cluster that has it).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Return once the service is updated, without following the rollout.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to follow the rollout before giving up.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `gantry scale` flags.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The service to scale.
    pub service: String,
    /// The new desired count.
    pub count: u32,
    /// The service's cluster (default: the one cluster that has it).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Wait until the running count reaches the desired count.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `gantry status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `gantry env` flags.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The data directory of `gantry up` (default: its default, $XDG_DATA_HOME/gantry or
    /// ~/.local/share/gantry).
    #[arg(long, env = "GANTRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `gantry push` flags.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// A local Docker image (`name[:tag]`).
    pub image: String,
    /// The repository to push to (default: the image's name; created when missing).
    #[arg(long)]
    pub repository: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub use deploy::{deploy, scale};
pub use env::env;
pub use import::{ImportCommand, import};
pub use logs::logs;
pub use ps::{ps, services};
pub use push::push;
pub use status::status;

/// Finds the cluster of service `name`: `cluster` when given, else the one cluster having an
/// ACTIVE service of that name.
pub(crate) async fn service_cluster(
    conn: &conn::Conn,
    cluster: Option<&str>,
    name: &str,
) -> anyhow::Result<(String, serde_json::Value)> {
    let mut found = Vec::new();
    for c in conn.clusters(cluster).await? {
        let services = conn.describe_services(&c, &[name.to_owned()]).await?;
        if let Some(s) = services.into_iter().find(|s| s["status"] == "ACTIVE") {
            found.push((c, s));
        }
    }
    match found.len() {
        0 => anyhow::bail!(
            "service {name} not found{}",
            cluster
                .map(|c| format!(" in cluster {c}"))
                .unwrap_or_default()
        ),
        1 => Ok(found.remove(0)),
        _ => anyhow::bail!(
            "service {name} exists in several clusters ({}); pass --cluster",
            found
                .iter()
                .map(|(c, _)| conn::short(c).to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
