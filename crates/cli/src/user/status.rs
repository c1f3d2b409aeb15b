//! `gantry status`: the server (probes, endpoint, versions), the store (readiness), the agents
//! (container instances and their connection), the clusters and the load balancers.

use serde_json::json;

use super::StatusArgs;
use super::conn::short;
use super::output::{Style, Table};

/// The text of each `<name>` element of `xml`, in order.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let conn = args.conn.connect()?;
    let style = Style::detect();
    let probe = |r: Result<u16, String>, good: &'static str, bad: &'static str| match r {
        Ok(200) => good.to_owned(),
        Ok(code) => format!("{bad} (HTTP {code})"),
        Err(e) => format!("unreachable ({e})"),
    };
    let live = probe(conn.probe("/healthz").await, "ok", "unhealthy");
    let ready = probe(conn.probe("/readyz").await, "ready", "not ready");
    println!("{} {}", style.bold("server:"), conn.endpoint);
    println!("  health: {}", style.state(&live));
    println!("  store:  {}", style.state(&ready));
    println!("  region: {}", conn.region);
    println!("  client: gantry {}", env!("CARGO_PKG_VERSION"));
    if live != "ok" {
        anyhow::bail!("the server at {} is not answering", conn.endpoint);
    }

    let mut clusters = Table::new(&[
        "CLUSTER",
        "STATUS",
        "INSTANCES",
        "SERVICES",
        "RUNNING",
        "PENDING",
    ])
    .states("STATUS");
    let mut agents = Table::new(&[
        "INSTANCE",
        "CLUSTER",
        "STATUS",
        "AGENT",
        "VERSION",
        "TASKS",
        "CPU FREE",
        "MEMORY FREE",
    ])
    .states("STATUS")
    .states("AGENT");
    let arns = conn.cluster_arns().await?;
    for chunk in arns.chunks(100) {
        let page = conn
            .ecs("DescribeClusters", json!({"clusters": chunk}))
            .await?;
        for c in page["clusters"].as_array().into_iter().flatten() {
            clusters.row(vec![
                c["clusterName"].as_str().unwrap_or("").to_owned(),
                c["status"].as_str().unwrap_or("").to_owned(),
                c["registeredContainerInstancesCount"].to_string(),
                c["activeServicesCount"].to_string(),
                c["runningTasksCount"].to_string(),
                c["pendingTasksCount"].to_string(),
            ]);
        }
    }
    for cluster in &arns {
        let instances = conn
            .list_all(
                "ListContainerInstances",
                json!({"cluster": cluster}),
                "containerInstanceArns",
            )
            .await?;
        for chunk in instances.chunks(100) {
            let page = conn
                .ecs(
                    "DescribeContainerInstances",
                    json!({"cluster": cluster, "containerInstances": chunk}),
                )
                .await?;
            for i in page["containerInstances"].as_array().into_iter().flatten() {
                let free = |name: &str| {
                    i["remainingResources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["name"] == name)
                        .map(|r| r["integerValue"].to_string())
                        .unwrap_or_default()
                };
                agents.row(vec![
                    i["ec2InstanceId"]
                        .as_str()
                        .unwrap_or_else(|| short(i["containerInstanceArn"].as_str().unwrap_or("")))
                        .to_owned(),
                    short(cluster).to_owned(),
                    i["status"].as_str().unwrap_or("").to_owned(),
                    if i["agentConnected"] == true {
                        "connected"
                    } else {
                        "disconnected"
                    }
                    .to_owned(),
                    i["versionInfo"]["agentVersion"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    i["runningTasksCount"].to_string(),
                    free("CPU"),
                    free("MEMORY"),
                ]);
            }
        }
    }
    println!("\n{}", style.bold("clusters:"));
    clusters.print(style);
    println!("\n{}", style.bold("agents:"));
    agents.print(style);

    let mut lbs = Table::new(&["LOAD BALANCER", "TYPE", "STATE", "DNS NAME"]).states("STATE");
    let xml = conn.elbv2("DescribeLoadBalancers", &[]).await?;
    for member in xml.split("<member>").skip(1) {
        let Some(name) = elements(member, "LoadBalancerName").first().copied() else {
            continue;
        };
        let state = elements(member, "State")
            .first()
            .map(|s| elements(s, "Code").first().copied().unwrap_or(""))
            .unwrap_or("");
        lbs.row(vec![
            name.to_owned(),
            elements(member, "Type")
                .first()
                .copied()
                .unwrap_or("")
                .to_owned(),
            state.to_owned(),
            elements(member, "DNSName")
                .first()
                .copied()
                .unwrap_or("")
                .to_owned(),
        ]);
    }
    println!("\n{}", style.bold("load balancers:"));
    lbs.print(style);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::elements;

    #[test]
    fn elements_in_order() {
        let xml = "<a><Code>active</Code><Code>x</Code></a>";
        assert_eq!(elements(xml, "Code"), vec!["active", "x"]);
        assert!(elements(xml, "Nope").is_empty());
    }
}
