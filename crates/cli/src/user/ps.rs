//! `gantry ps` (tasks, like `docker ps`) and `gantry services`.

use serde_json::{Value, json};

use super::conn::short;
use super::output::{Style, Table, age};
use super::{PsArgs, ServicesArgs};

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `family:revision` of a task definition ARN.
fn definition(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The host → container port bindings of a task's containers (or its awsvpc address).
fn ports(task: &Value) -> String {
    let mut out = Vec::new();
    for c in task["containers"].as_array().into_iter().flatten() {
        for b in c["networkBindings"].as_array().into_iter().flatten() {
            out.push(format!(
                "{}:{}->{}/{}",
                b["bindIP"].as_str().unwrap_or("0.0.0.0"),
                b["hostPort"],
                b["containerPort"],
                b["protocol"].as_str().unwrap_or("tcp")
            ));
        }
        for n in c["networkInterfaces"].as_array().into_iter().flatten() {
            if let Some(ip) = n["privateIpv4Address"].as_str() {
                out.push(ip.to_owned());
            }
        }
    }
    out.dedup();
    out.join(", ")
}

pub async fn ps(args: PsArgs) -> anyhow::Result<()> {
    let conn = args.conn.connect()?;
    let style = Style::detect();
    let now = now_secs();
    let mut table = Table::new(&[
        "TASK",
        "CLUSTER",
        "GROUP",
        "DEFINITION",
        "STATUS",
        "HEALTH",
        "AGE",
        "PORTS",
    ])
    .states("STATUS")
    .states("HEALTH");
    for cluster in conn.clusters(args.cluster.as_deref()).await? {
        let mut arns = conn
            .list_all(
                "ListTasks",
                json!({"cluster": cluster, "desiredStatus": "RUNNING"}),
                "taskArns",
            )
            .await?;
        if args.all {
            arns.extend(
                conn.list_all(
                    "ListTasks",
                    json!({"cluster": cluster, "desiredStatus": "STOPPED"}),
                    "taskArns",
                )
                .await?,
            );
        }
        let mut tasks = conn.describe_tasks(&cluster, &arns).await?;
        tasks.sort_by(|a, b| {
            b["createdAt"]
                .as_f64()
                .partial_cmp(&a["createdAt"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for t in tasks {
            let started = t["startedAt"].as_f64().or(t["createdAt"].as_f64());
            table.row(vec![
                short(t["taskArn"].as_str().unwrap_or("")).to_owned(),
                short(t["clusterArn"].as_str().unwrap_or(&cluster)).to_owned(),
                t["group"].as_str().unwrap_or("").to_owned(),
                definition(t["taskDefinitionArn"].as_str().unwrap_or("")).to_owned(),
                t["lastStatus"].as_str().unwrap_or("").to_owned(),
                t["healthStatus"].as_str().unwrap_or("UNKNOWN").to_owned(),
                started.map(|s| age(now - s)).unwrap_or_default(),
                ports(&t),
            ]);
        }
    }
    table.print(style);
    Ok(())
}

pub async fn services(args: ServicesArgs) -> anyhow::Result<()> {
    let conn = args.conn.connect()?;
    let style = Style::detect();
    let mut table = Table::new(&[
        "SERVICE",
        "CLUSTER",
        "STATUS",
        "DESIRED",
        "RUNNING",
        "PENDING",
        "DEFINITION",
        "ROLLOUT",
    ])
    .states("STATUS")
    .states("ROLLOUT");
    for cluster in conn.clusters(args.cluster.as_deref()).await? {
        let arns = conn
            .list_all("ListServices", json!({"cluster": cluster}), "serviceArns")
            .await?;
        let mut services = conn.describe_services(&cluster, &arns).await?;
        services.sort_by(|a, b| a["serviceName"].as_str().cmp(&b["serviceName"].as_str()));
        for s in services {
            let primary = s["deployments"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["status"] == "PRIMARY"));
            table.row(vec![
                s["serviceName"].as_str().unwrap_or("").to_owned(),
                short(s["clusterArn"].as_str().unwrap_or(&cluster)).to_owned(),
                s["status"].as_str().unwrap_or("").to_owned(),
                s["desiredCount"].to_string(),
                s["runningCount"].to_string(),
                s["pendingCount"].to_string(),
                definition(s["taskDefinition"].as_str().unwrap_or("")).to_owned(),
                primary
                    .and_then(|p| p["rolloutState"].as_str())
                    .unwrap_or("")
                    .to_owned(),
            ]);
        }
    }
    table.print(style);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_show_bindings_and_addresses() {
        let t = json!({"containers": [
            {"networkBindings": [{"bindIP": "0.0.0.0", "hostPort": 32768, "containerPort": 80, "protocol": "tcp"}]},
            {"networkInterfaces": [{"privateIpv4Address": "10.0.0.5"}]}
        ]});
        assert_eq!(ports(&t), "0.0.0.0:32768->80/tcp, 10.0.0.5");
        assert_eq!(
            definition("arn:aws:ecs:us-east-1:0:task-definition/web:3"),
            "web:3"
        );
    }
}
