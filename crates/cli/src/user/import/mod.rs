//! `gantry import dockerrun|compose FILE`: an Elastic Beanstalk `Dockerrun.aws.json` (v2) or a
//! Compose file turned into one task definition, then a service (created or updated), standalone
//! tasks, or nothing more. The file is translated completely before any call: what cannot be
//! honoured is refused naming the key, and then nothing is registered.

mod compose;
mod dockerrun;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::conn::{Conn, ConnArgs, short};
use super::deploy::{Outcome, follow, say};
use super::output::Style;

/// `gantry import` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import an Elastic Beanstalk multicontainer `Dockerrun.aws.json` (AWSEBDockerrunVersion 2).
    Dockerrun(DockerrunArgs),
    /// Import a Compose file (`docker-compose.yml`, `compose.yaml`).
    Compose(ComposeArgs),
}

/// `gantry import dockerrun` flags.
#[derive(Debug, Args)]
pub struct DockerrunArgs {
    /// The Dockerrun.aws.json file.
    pub file: PathBuf,
    /// The directory standing for the source bundle, which Elastic Beanstalk deploys to
    /// /var/app/current: volume source paths under /var/app/current and relative ones are
    /// taken from here (default: the file's directory). Agents must see it at the same path.
    #[arg(long, value_name = "DIR")]
    pub app_dir: Option<PathBuf>,
    /// Where the per-container log volumes (`awseb-logs-NAME`) live on the host: DIR/NAME
    /// (default: /var/log/containers, as Elastic Beanstalk).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    #[command(flatten)]
    pub target: ImportTarget,
}

/// `gantry import compose` flags.
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// The Compose file.
    pub file: PathBuf,
    /// The memory reservation (MiB) given to services that set no memory limit or reservation
    /// (ECS needs one of them for every container).
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub memory_reservation: u32,
    #[command(flatten)]
    pub target: ImportTarget,
}

/// What the import creates, shared by both formats.
#[derive(Debug, Args)]
pub struct ImportTarget {
    /// The cluster of the service or tasks.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// The task definition family (default: Compose's `name`, else the file's directory name).
    #[arg(long)]
    pub family: Option<String>,
    /// The service to create, or update when it exists (default: the family).
    #[arg(long)]
    pub service: Option<String>,
    /// The service's desired count, or the number of tasks with --run-task (default: Compose's
    /// deploy.replicas, else 1).
    #[arg(long)]
    pub count: Option<u32>,
    /// Run standalone tasks (RunTask) instead of a service.
    #[arg(long, conflicts_with = "service")]
    pub run_task: bool,
    /// Only register the task definition.
    #[arg(long, conflicts_with_all = ["service", "run_task", "count", "wait"])]
    pub register_only: bool,
    /// Wait until the service is stable, or the tasks are RUNNING.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// A translated file: the RegisterTaskDefinition input and what the file says of the count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub task_definition: Value,
    pub replicas: Option<u32>,
    /// Lines telling what was mapped and how (printed before registering).
    pub notes: Vec<String>,
}

/// A failed translation: what the user reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ImportError(pub String);

pub(crate) fn refuse<T>(msg: impl Into<String>) -> Result<T, ImportError> {
    Err(ImportError(msg.into()))
}

/// A family name from `raw`: characters ECS does not take become `-`.
pub(crate) fn sanitize_name(raw: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "app".to_owned() } else { s }
}

/// The absolute directory of `file`.
fn file_dir(file: &Path) -> anyhow::Result<PathBuf> {
    let abs = std::path::absolute(file)?;
    Ok(abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/")))
}

fn dir_name(dir: &Path) -> String {
    sanitize_name(
        &dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

pub async fn import(cmd: ImportCommand) -> anyhow::Result<()> {
    let (plan, target) = match cmd {
        ImportCommand::Dockerrun(a) => {
            let text = read(&a.file)?;
            let dir = file_dir(&a.file)?;
            let app_dir = match &a.app_dir {
                Some(d) => std::path::absolute(d)?,
                None => dir.clone(),
            };
            let log_dir = match &a.log_dir {
                Some(d) => std::path::absolute(d)?,
                None => PathBuf::from("/var/log/containers"),
            };
            let family = a.target.family.clone().unwrap_or_else(|| dir_name(&dir));
            let plan = dockerrun::translate(&text, &family, &app_dir, &log_dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
            (plan, a.target)
        }
        ImportCommand::Compose(a) => {
            let text = read(&a.file)?;
            let dir = file_dir(&a.file)?;
            let env = compose::Interpolation::from_process(&dir);
            let opts = compose::Options {
                family: a.target.family.clone(),
                default_family: dir_name(&dir),
                dir,
                memory_reservation: a.memory_reservation,
                env,
            };
            let plan = compose::translate(&text, &opts)
                .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
            (plan, a.target)
        }
    };
    apply(plan, target).await
}

async fn apply(plan: Plan, target: ImportTarget) -> anyhow::Result<()> {
    let conn = target.conn.connect()?;
    for n in &plan.notes {
        say(n);
    }
    let registered = conn
        .ecs("RegisterTaskDefinition", plan.task_definition.clone())
        .await?;
    let td = &registered["taskDefinition"];
    let arn = td["taskDefinitionArn"].as_str().unwrap_or("").to_owned();
    let names: Vec<&str> = td["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    say(&format!(
        "registered task definition {} ({} containers: {})",
        short(&arn),
        names.len(),
        names.join(", ")
    ));
    if target.register_only {
        return Ok(());
    }
    let count = target.count.or(plan.replicas).unwrap_or(1);
    if target.run_task {
        return run_tasks(&conn, &target, &arn, count).await;
    }
    let family = td["family"].as_str().unwrap_or("").to_owned();
    let service = target.service.clone().unwrap_or(family);
    let cluster = target.cluster.clone();
    let existing = conn
        .describe_services(&cluster, std::slice::from_ref(&service))
        .await?
        .into_iter()
        .find(|s| s["status"] == "ACTIVE");
    let last_event = existing.as_ref().and_then(|s| {
        s["events"].as_array()?.first()?["id"]
            .as_str()
            .map(str::to_owned)
    });
    match &existing {
        Some(_) => {
            let mut body = json!({"cluster": cluster, "service": service, "taskDefinition": arn});
            if let Some(c) = target.count.or(plan.replicas) {
                body["desiredCount"] = json!(c);
            }
            conn.ecs("UpdateService", body).await?;
            say(&format!(
                "updated service {service} in cluster {cluster} to {}",
                short(&arn)
            ));
        }
        None => {
            conn.ecs(
                "CreateService",
                json!({"cluster": cluster, "serviceName": service, "taskDefinition": arn,
                       "desiredCount": count}),
            )
            .await?;
            say(&format!(
                "created service {service} in cluster {cluster}: {count} x {}",
                short(&arn)
            ));
        }
    }
    if !target.wait {
        return Ok(());
    }
    match follow(
        &conn,
        &cluster,
        &service,
        &arn,
        last_event,
        Duration::from_secs(target.timeout),
        Style::detect(),
    )
    .await?
    {
        Outcome::Stable => {
            say(&format!("service {service} is stable on {}", short(&arn)));
            Ok(())
        }
        Outcome::Failed(why) => anyhow::bail!("service {service} did not start: {why}"),
    }
}

async fn run_tasks(
    conn: &Conn,
    target: &ImportTarget,
    arn: &str,
    count: u32,
) -> anyhow::Result<()> {
    let cluster = &target.cluster;
    let mut tasks: Vec<String> = Vec::new();
    let mut left = count;
    while left > 0 {
        let n = left.min(10);
        let r = conn
            .ecs(
                "RunTask",
                json!({"cluster": cluster, "taskDefinition": arn, "count": n}),
            )
            .await?;
        if let Some(f) = r["failures"].as_array().and_then(|f| f.first()) {
            anyhow::bail!(
                "RunTask of {}: {} {}",
                short(arn),
                f["reason"].as_str().unwrap_or(""),
                f["detail"].as_str().unwrap_or("")
            );
        }
        for t in r["tasks"].as_array().into_iter().flatten() {
            if let Some(a) = t["taskArn"].as_str() {
                say(&format!("started task {} in cluster {cluster}", short(a)));
                tasks.push(a.to_owned());
            }
        }
        left -= n;
    }
    if !target.wait {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(target.timeout);
    loop {
        let described = conn.describe_tasks(cluster, &tasks).await?;
        if let Some(t) = described.iter().find(|t| t["lastStatus"] == "STOPPED") {
            anyhow::bail!(
                "task {} stopped: {}",
                short(t["taskArn"].as_str().unwrap_or("")),
                t["stoppedReason"].as_str().unwrap_or("")
            );
        }
        if described.len() == tasks.len() && described.iter().all(|t| t["lastStatus"] == "RUNNING")
        {
            say(&format!("{} tasks RUNNING", tasks.len()));
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the tasks were not RUNNING within {}s", target.timeout);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
