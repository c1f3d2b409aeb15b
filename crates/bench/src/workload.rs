//! What each benchmarked operation sends: the request bodies, the setup before the run and the
//! check after it.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::ValueEnum;
use serde_json::{Value, json};

use crate::client::{Answer, EcsClient};

/// The operation a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// RegisterTaskDefinition: a durable write, one task definition family per worker.
    RegisterTaskDefinition,
    /// DescribeClusters of one cluster with TAGS and SETTINGS: a read.
    DescribeClusters,
}

/// The cluster DescribeClusters runs describe.
pub const BENCH_CLUSTER: &str = "gantry-bench";

impl Op {
    /// The ECS operation name (the `X-Amz-Target` suffix).
    pub fn ecs_name(self) -> &'static str {
        match self {
            Op::RegisterTaskDefinition => "RegisterTaskDefinition",
            Op::DescribeClusters => "DescribeClusters",
        }
    }

    /// The body worker `worker` sends on every request.
    pub fn body(self, worker: usize) -> Bytes {
        let v = match self {
            Op::RegisterTaskDefinition => task_definition(&family(worker)),
            Op::DescribeClusters => json!({
                "clusters": [BENCH_CLUSTER],
                "include": ["TAGS", "SETTINGS"],
            }),
        };
        Bytes::from(v.to_string())
    }

    /// Prepares the server before the workers start.
    pub async fn setup(self, client: &EcsClient) -> anyhow::Result<()> {
        match self {
            Op::RegisterTaskDefinition => Ok(()),
            Op::DescribeClusters => {
                let create = json!({
                    "clusterName": BENCH_CLUSTER,
                    "tags": [
                        {"key": "team", "value": "platform"},
                        {"key": "env", "value": "bench"},
                    ],
                    "settings": [{"name": "containerInsights", "value": "enabled"}],
                });
                expect_ok(
                    "CreateCluster",
                    client
                        .call("CreateCluster", Bytes::from(create.to_string()))
                        .await?,
                )?;
                let answer = expect_ok(
                    "DescribeClusters",
                    client.call(self.ecs_name(), self.body(0)).await?,
                )?;
                let clusters = answer["clusters"].as_array().map_or(0, Vec::len);
                if clusters != 1 {
                    bail!("DescribeClusters of {BENCH_CLUSTER} returned {clusters} clusters");
                }
                Ok(())
            }
        }
    }
}

/// The task definition family of `worker`: one per client, so their writes are independent.
pub fn family(worker: usize) -> String {
    format!("bench-{worker}")
}

/// A realistic two-container task definition: a web server and a proxy sidecar.
pub fn task_definition(family: &str) -> Value {
    let logs = |prefix: &str| {
        json!({
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": format!("/ecs/{family}"),
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": prefix,
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        })
    };
    json!({
        "family": family,
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "cpu": "512",
        "memory": "1024",
        "executionRoleArn": "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
        "taskRoleArn": "arn:aws:iam::000000000000:role/bench-web",
        "volumes": [{"name": "cache", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}}],
        "containerDefinitions": [
            {
                "name": "web",
                "image": "public.ecr.aws/nginx/nginx:1.27-alpine",
                "cpu": 384,
                "memory": 768,
                "memoryReservation": 512,
                "essential": true,
                "portMappings": [
                    {"containerPort": 8080, "hostPort": 0, "protocol": "tcp", "name": "http", "appProtocol": "http"},
                    {"containerPort": 8443, "hostPort": 0, "protocol": "tcp", "name": "https"},
                ],
                "environment": [
                    {"name": "APP_ENV", "value": "production"},
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "UPSTREAM", "value": "http://127.0.0.1:9901"},
                    {"name": "WORKERS", "value": "4"},
                    {"name": "FEATURE_FLAGS", "value": "search,checkout,recommendations"},
                ],
                "mountPoints": [{"sourceVolume": "cache", "containerPath": "/var/cache/nginx", "readOnly": false}],
                "dependsOn": [{"containerName": "envoy", "condition": "HEALTHY"}],
                "healthCheck": {
                    "command": ["CMD-SHELL", "wget -q -O /dev/null http://localhost:8080/healthz || exit 1"],
                    "interval": 30,
                    "timeout": 5,
                    "retries": 3,
                    "startPeriod": 15,
                },
                "logConfiguration": logs("web"),
                "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
                "dockerLabels": {"com.example.service": "web", "com.example.tier": "frontend"},
                "stopTimeout": 30,
            },
            {
                "name": "envoy",
                "image": "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.4.0-prod",
                "cpu": 128,
                "memory": 256,
                "essential": true,
                "user": "1337",
                "portMappings": [
                    {"containerPort": 9901, "hostPort": 0, "protocol": "tcp", "name": "admin"},
                    {"containerPort": 15000, "hostPort": 0, "protocol": "tcp", "name": "ingress"},
                ],
                "environment": [
                    {"name": "APPMESH_RESOURCE_ARN", "value": "arn:aws:appmesh:us-east-1:000000000000:mesh/bench/virtualNode/web"},
                    {"name": "ENVOY_LOG_LEVEL", "value": "warn"},
                    {"name": "ENABLE_ENVOY_STATS_TAGS", "value": "1"},
                ],
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -s http://localhost:9901/server_info | grep state | grep -q LIVE"],
                    "interval": 5,
                    "timeout": 2,
                    "retries": 3,
                    "startPeriod": 10,
                },
                "logConfiguration": logs("envoy"),
            },
        ],
        "tags": [
            {"key": "team", "value": "platform"},
            {"key": "service", "value": family},
        ],
    })
}

/// Fails unless `answer` is HTTP 200, and returns its JSON body.
pub fn expect_ok(op: &str, answer: Answer) -> anyhow::Result<Value> {
    if !answer.status.is_success() {
        bail!(
            "{op} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    serde_json::from_slice(&answer.body).with_context(|| format!("{op} answered invalid JSON"))
}

/// The revision in a RegisterTaskDefinition or DescribeTaskDefinition answer.
pub fn revision_of(body: &[u8]) -> anyhow::Result<u64> {
    let v: Value = serde_json::from_slice(body).context("answer is not JSON")?;
    v["taskDefinition"]["revision"]
        .as_u64()
        .ok_or_else(|| anyhow!("answer has no taskDefinition.revision"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_registers_its_own_family() {
        let a: Value = serde_json::from_slice(&Op::RegisterTaskDefinition.body(1)).expect("json");
        let b: Value = serde_json::from_slice(&Op::RegisterTaskDefinition.body(2)).expect("json");
        assert_eq!(a["family"], "bench-1");
        assert_eq!(b["family"], "bench-2");
        assert_eq!(a["containerDefinitions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn revision_is_read_from_the_task_definition() {
        assert_eq!(
            revision_of(br#"{"taskDefinition":{"revision":7}}"#).expect("revision"),
            7
        );
        assert!(revision_of(br#"{"taskDefinition":{}}"#).is_err());
    }
}
