//! `gantry logs [-f] SERVICE|TASK`: the `awslogs` output of a service's or a task's containers,
//! read through the CloudWatch Logs API (FilterLogEvents over the tasks' streams).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::LogsArgs;
use super::conn::{Conn, short};
use super::output::Style;

/// One container's log stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stream {
    pub group: String,
    pub name: String,
    /// What the line is prefixed with: `container/task-id`.
    pub label: String,
}

/// Whether `target` names a task (an ARN or a 32-hex id) rather than a service.
fn is_task(target: &str) -> bool {
    target.contains(":task/")
        || (target.len() == 32 && target.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The awslogs streams of `task`'s containers, per its task definition.
pub(crate) fn task_streams(task: &Value, definition: &Value) -> Vec<Stream> {
    let task_id = short(task["taskArn"].as_str().unwrap_or("")).to_owned();
    let mut out = Vec::new();
    for def in definition["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let log = &def["logConfiguration"];
        if log["logDriver"] != "awslogs" {
            continue;
        }
        let Some(group) = log["options"]["awslogs-group"].as_str() else {
            continue;
        };
        let name = def["name"].as_str().unwrap_or("");
        let stream = match log["options"]["awslogs-stream-prefix"].as_str() {
            Some(p) if !p.is_empty() => format!("{p}/{name}/{task_id}"),
            // Without a prefix the stream is the container's runtime id.
            _ => match task["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == name)
                .and_then(|c| c["runtimeId"].as_str())
            {
                Some(id) => id.to_owned(),
                None => continue,
            },
        };
        out.push(Stream {
            group: group.to_owned(),
            name: stream,
            label: format!("{name}/{}", &task_id[..task_id.len().min(8)]),
        });
    }
    out
}

/// Resolves the target into its tasks' streams (the cluster is found once).
struct Resolver {
    cluster: String,
    service: Option<String>,
    task: Option<String>,
    definitions: HashMap<String, Value>,
}

impl Resolver {
    async fn new(conn: &Conn, args: &LogsArgs) -> anyhow::Result<Self> {
        if is_task(&args.target) {
            let cluster = match (&args.cluster, args.target.split_once(":task/")) {
                (Some(c), _) => c.clone(),
                (None, Some((_, rest))) if rest.contains('/') => {
                    rest.split('/').next().unwrap_or("default").to_owned()
                }
                (None, _) => {
                    let mut found = None;
                    for c in conn.cluster_arns().await? {
                        let t = conn
                            .describe_tasks(&c, std::slice::from_ref(&args.target))
                            .await?;
                        if !t.is_empty() {
                            found = Some(c);
                            break;
                        }
                    }
                    found.ok_or_else(|| anyhow::anyhow!("task {} not found", args.target))?
                }
            };
            return Ok(Self {
                cluster,
                service: None,
                task: Some(args.target.clone()),
                definitions: HashMap::new(),
            });
        }
        let (cluster, _) =
            super::service_cluster(conn, args.cluster.as_deref(), &args.target).await?;
        Ok(Self {
            cluster,
            service: Some(args.target.clone()),
            task: None,
            definitions: HashMap::new(),
        })
    }

    async fn streams(&mut self, conn: &Conn) -> anyhow::Result<Vec<Stream>> {
        let arns = match (&self.task, &self.service) {
            (Some(t), _) => vec![t.clone()],
            (None, Some(s)) => {
                let mut arns = Vec::new();
                for status in ["RUNNING", "STOPPED"] {
                    arns.extend(
                        conn.list_all(
                            "ListTasks",
                            json!({"cluster": self.cluster, "serviceName": s, "desiredStatus": status}),
                            "taskArns",
                        )
                        .await?,
                    );
                }
                arns
            }
            (None, None) => Vec::new(),
        };
        let tasks = conn.describe_tasks(&self.cluster, &arns).await?;
        if tasks.is_empty() && self.task.is_some() {
            anyhow::bail!(
                "task {} not found in cluster {}",
                arns[0],
                short(&self.cluster)
            );
        }
        let mut out = Vec::new();
        for t in tasks {
            let Some(td) = t["taskDefinitionArn"].as_str().map(str::to_owned) else {
                continue;
            };
            if !self.definitions.contains_key(&td) {
                let d = conn
                    .ecs("DescribeTaskDefinition", json!({"taskDefinition": td}))
                    .await?;
                self.definitions
                    .insert(td.clone(), d["taskDefinition"].clone());
            }
            out.extend(task_streams(&t, &self.definitions[&td]));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Prints the events after `since_ms` (skipping `seen` ids), returns the newest timestamp.
async fn print_new(
    conn: &Conn,
    streams: &[Stream],
    since_ms: i64,
    seen: &mut HashSet<String>,
    style: Style,
    labelled: bool,
) -> anyhow::Result<i64> {
    let mut by_group: BTreeMap<&str, Vec<&Stream>> = BTreeMap::new();
    for s in streams {
        by_group.entry(&s.group).or_default().push(s);
    }
    let mut lines: Vec<(i64, String, String)> = Vec::new();
    let mut newest = since_ms;
    for (group, streams) in by_group {
        for chunk in streams.chunks(100) {
            let labels: HashMap<&str, &str> = chunk
                .iter()
                .map(|s| (s.name.as_str(), s.label.as_str()))
                .collect();
            let mut token: Option<String> = None;
            loop {
                let mut body = json!({
                    "logGroupName": group,
                    "logStreamNames": chunk.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                    "startTime": since_ms,
                });
                if let Some(t) = &token {
                    body["nextToken"] = t.clone().into();
                }
                let page = match conn.logs("FilterLogEvents", body).await {
                    Ok(p) => p,
                    // The group or streams appear with the containers' first lines.
                    Err(e) if e.to_string().contains("ResourceNotFoundException") => break,
                    Err(e) => return Err(e),
                };
                for e in page["events"].as_array().into_iter().flatten() {
                    let id = e["eventId"].as_str().unwrap_or("").to_owned();
                    if !seen.insert(id) {
                        continue;
                    }
                    let ts = e["timestamp"].as_i64().unwrap_or(0);
                    newest = newest.max(ts);
                    let label = labels
                        .get(e["logStreamName"].as_str().unwrap_or(""))
                        .copied()
                        .unwrap_or("");
                    lines.push((
                        ts,
                        label.to_owned(),
                        e["message"].as_str().unwrap_or("").to_owned(),
                    ));
                }
                token = page["nextToken"].as_str().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
        }
    }
    lines.sort_by_key(|l| l.0);
    let mut out = String::new();
    for (_, label, message) in lines {
        let message = message.trim_end_matches('\n');
        if labelled {
            let label = if style.color {
                format!("\x1b[36m{label}\x1b[0m")
            } else {
                label
            };
            out.push_str(&format!("{label} | {message}\n"));
        } else {
            out.push_str(message);
            out.push('\n');
        }
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(newest)
}

pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let conn = args.conn.connect()?;
    let style = Style::detect();
    let mut resolver = Resolver::new(&conn, &args).await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut since = now_ms - (args.since as i64) * 1000;
    let mut seen = HashSet::new();
    let mut streams = resolver.streams(&conn).await?;
    if streams.is_empty() && !args.follow {
        anyhow::bail!(
            "{} has no container with the awslogs log driver",
            args.target
        );
    }
    // A service's lines say which container and task they come from.
    let labelled = resolver.service.is_some() || streams.len() > 1;
    loop {
        let newest = print_new(&conn, &streams, since, &mut seen, style, labelled).await?;
        if !args.follow {
            return Ok(());
        }
        // Events of the newest millisecond may still arrive: re-read from it, skipping the ids
        // already printed.
        since = since.max(newest);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        streams = resolver.streams(&conn).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_the_awslogs_naming() {
        let task = json!({"taskArn": "arn:aws:ecs:us-east-1:0:task/c/0123456789abcdef0123456789abcdef",
            "containers": [{"name": "side", "runtimeId": "dockerid"}]});
        let def = json!({"containerDefinitions": [
            {"name": "web", "logConfiguration": {"logDriver": "awslogs",
                "options": {"awslogs-group": "/ecs/web", "awslogs-stream-prefix": "p"}}},
            {"name": "side", "logConfiguration": {"logDriver": "awslogs",
                "options": {"awslogs-group": "/ecs/web"}}},
            {"name": "quiet"}
        ]});
        let s = task_streams(&task, &def);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "p/web/0123456789abcdef0123456789abcdef");
        assert_eq!(s[0].label, "web/01234567");
        assert_eq!(s[1].name, "dockerid");
        assert!(is_task("0123456789abcdef0123456789abcdef"));
        assert!(is_task("arn:aws:ecs:us-east-1:0:task/c/abc"));
        assert!(!is_task("web"));
    }
}
