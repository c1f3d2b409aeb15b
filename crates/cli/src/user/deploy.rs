//! `gantry deploy` (a new revision with new images, then the rollout followed until the service
//! is stable or the deployment fails) and `gantry scale`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::conn::{Conn, short};
use super::output::Style;
use super::{DeployArgs, ScaleArgs};

/// The fields DescribeTaskDefinition answers that RegisterTaskDefinition does not take.
const DESCRIBED_ONLY: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
];

/// The RegisterTaskDefinition input for `described` with `images` swapped in.
fn next_revision(described: &Value, tags: &Value, images: &[String]) -> anyhow::Result<Value> {
    let mut input = described.clone();
    let Some(obj) = input.as_object_mut() else {
        anyhow::bail!("the task definition is not an object");
    };
    for k in DESCRIBED_ONLY {
        obj.remove(*k);
    }
    if tags.as_array().is_some_and(|t| !t.is_empty()) {
        obj.insert("tags".into(), tags.clone());
    }
    let containers = obj
        .get_mut("containerDefinitions")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| anyhow::anyhow!("the task definition has no containers"))?;
    for spec in images {
        match spec.split_once('=') {
            Some((name, image)) => {
                let c = containers
                    .iter_mut()
                    .find(|c| c["name"] == name)
                    .ok_or_else(|| {
                        anyhow::anyhow!("the task definition has no container {name}")
                    })?;
                c["image"] = image.into();
            }
            None if containers.len() == 1 => containers[0]["image"] = spec.as_str().into(),
            None => {
                let names: Vec<&str> = containers
                    .iter()
                    .filter_map(|c| c["name"].as_str())
                    .collect();
                anyhow::bail!(
                    "the task definition has {} containers ({}); say which with --image CONTAINER=IMAGE",
                    names.len(),
                    names.join(", ")
                )
            }
        }
    }
    Ok(input)
}

pub(super) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// How the rollout of `task_definition` ends.
pub(super) enum Outcome {
    Stable,
    Failed(String),
}

/// Prints the service's progress (counts and new events) until `done` says it ended.
pub(super) async fn follow(
    conn: &Conn,
    cluster: &str,
    service: &str,
    task_definition: &str,
    since_event: Option<String>,
    timeout: Duration,
    style: Style,
) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let mut last_line = String::new();
    let mut seen_event = since_event;
    loop {
        let s = conn
            .describe_services(cluster, &[service.to_owned()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("service {service} disappeared"))?;
        // New events, oldest first.
        let events: Vec<&Value> = s["events"].as_array().into_iter().flatten().collect();
        let fresh: Vec<&&Value> = events
            .iter()
            .take_while(|e| e["id"].as_str() != seen_event.as_deref())
            .collect();
        for e in fresh.iter().rev() {
            say(&format!("  event: {}", e["message"].as_str().unwrap_or("")));
        }
        if let Some(e) = events.first() {
            seen_event = e["id"].as_str().map(str::to_owned);
        }
        let deployments = s["deployments"].as_array().cloned().unwrap_or_default();
        let ours = deployments
            .iter()
            .find(|d| d["taskDefinition"] == task_definition);
        let line = match ours {
            Some(d) => format!(
                "{}: {} running, {} pending of {} desired ({} deployments)",
                style.state(d["rolloutState"].as_str().unwrap_or("IN_PROGRESS")),
                d["runningCount"],
                d["pendingCount"],
                d["desiredCount"],
                deployments.len()
            ),
            None => "the new deployment is gone".to_owned(),
        };
        if line != last_line {
            say(&format!("  rollout {line}"));
            last_line = line;
        }
        match ours {
            None => {
                return Ok(Outcome::Failed(
                    "the deployment was replaced (rolled back)".to_owned(),
                ));
            }
            Some(d) if d["rolloutState"] == "FAILED" => {
                return Ok(Outcome::Failed(
                    d["rolloutStateReason"]
                        .as_str()
                        .unwrap_or("the deployment failed")
                        .to_owned(),
                ));
            }
            Some(d)
                if d["status"] == "PRIMARY"
                    && deployments.len() == 1
                    && d["runningCount"] == s["desiredCount"]
                    && (d["rolloutState"] == "COMPLETED" || d["rolloutState"].is_null()) =>
            {
                return Ok(Outcome::Stable);
            }
            Some(_) => {}
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the rollout did not finish within {}s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let conn = args.conn.connect()?;
    let style = Style::detect();
    let (cluster, service) =
        super::service_cluster(&conn, args.cluster.as_deref(), &args.service).await?;
    let current = service["taskDefinition"].as_str().unwrap_or("").to_owned();
    let described = conn
        .ecs(
            "DescribeTaskDefinition",
            json!({"taskDefinition": current, "include": ["TAGS"]}),
        )
        .await?;
    let input = next_revision(
        &described["taskDefinition"],
        &described["tags"],
        &args.images,
    )?;
    let registered = conn.ecs("RegisterTaskDefinition", input).await?;
    let arn = registered["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    say(&format!(
        "registered {} (was {})",
        short(&arn),
        short(&current)
    ));
    let last_event = service["events"]
        .as_array()
        .and_then(|e| e.first())
        .and_then(|e| e["id"].as_str())
        .map(str::to_owned);
    conn.ecs(
        "UpdateService",
        json!({"cluster": cluster, "service": args.service, "taskDefinition": arn}),
    )
    .await?;
    say(&format!(
        "updated service {} in cluster {}",
        args.service,
        short(&cluster)
    ));
    if args.no_wait {
        return Ok(());
    }
    match follow(
        &conn,
        &cluster,
        &args.service,
        &arn,
        last_event,
        Duration::from_secs(args.timeout),
        style,
    )
    .await?
    {
        Outcome::Stable => {
            say(&format!(
                "service {} is stable on {}",
                args.service,
                short(&arn)
            ));
            Ok(())
        }
        Outcome::Failed(why) => anyhow::bail!("deployment of {} failed: {why}", short(&arn)),
    }
}

pub async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let conn = args.conn.connect()?;
    let (cluster, service) =
        super::service_cluster(&conn, args.cluster.as_deref(), &args.service).await?;
    conn.ecs(
        "UpdateService",
        json!({"cluster": cluster, "service": args.service, "desiredCount": args.count}),
    )
    .await?;
    say(&format!(
        "service {}: desired count {} -> {}",
        args.service, service["desiredCount"], args.count
    ));
    if !args.wait {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last = String::new();
    loop {
        let s = conn
            .describe_services(&cluster, std::slice::from_ref(&args.service))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("service {} disappeared", args.service))?;
        let line = format!(
            "  {} running, {} pending of {}",
            s["runningCount"], s["pendingCount"], s["desiredCount"]
        );
        if line != last {
            say(&line);
            last = line;
        }
        if s["runningCount"] == s["desiredCount"] && s["pendingCount"] == 0 {
            say(&format!(
                "service {} runs {} tasks",
                args.service, s["runningCount"]
            ));
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the service did not reach {} tasks in time", args.count);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_revision_swaps_images_and_drops_described_fields() {
        let d = json!({"taskDefinitionArn": "arn", "revision": 3, "status": "ACTIVE", "family": "web",
            "requiresAttributes": [], "compatibilities": ["EC2"], "registeredAt": 1.0,
            "containerDefinitions": [{"name": "web", "image": "old"}]});
        let n = next_revision(&d, &json!([]), &["new:2".into()]).expect("single");
        assert_eq!(
            n,
            json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "new:2"}]})
        );
        let two = json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]});
        assert!(next_revision(&two, &json!([]), &["z".into()]).is_err());
        let n = next_revision(&two, &json!([{"key": "k", "value": "v"}]), &["b=z".into()])
            .expect("named");
        assert_eq!(n["containerDefinitions"][1]["image"], "z");
        assert_eq!(n["tags"][0]["key"], "k");
        assert!(next_revision(&two, &json!([]), &["c=z".into()]).is_err());
    }
}
