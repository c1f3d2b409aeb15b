//! Task usage reported by agents (`POST /agent/v1/telemetry`, SigV4-signed for `ecs`), turned
//! into the `AWS/ECS` metrics: `CPUUtilization` and `MemoryUtilization` per `ClusterName` and
//! per `ClusterName, ServiceName`, each task's usage as a percent of what it reserves (its task
//! size, or the sum of its containers' `cpu`/`memory`), one sample per task and report (so a
//! period's `Average` is the tasks' mean, `Maximum` the busiest task, `SampleCount` the samples).
//! ECS publishes through the [`MetricsSink`] the composition root implements over CloudWatch.
//!
//! Clusters whose `containerInsights` setting is `enabled` or `enhanced` also get
//! `ECS/ContainerInsights` `CpuUtilized`, `CpuReserved` (CPU units), `MemoryUtilized`,
//! `MemoryReserved` (MiB) per `ClusterName`, `ClusterName, ServiceName` and
//! `ClusterName, TaskDefinitionFamily`, one sample per task and report: with the agents' default
//! one-minute interval a minute's `Sum` is the total over the tasks.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use gantry_aws_proto::sigv4::{self, CredentialProvider};
use gantry_aws_proto::{AwsError, new_request_id};
use gantry_domain::cluster::Cluster;
use gantry_domain::task::{Task, TaskStatus};
use gantry_front::Clock;
use gantry_store::{Store, StoreExt};
use serde::Deserialize;

use crate::keys;

/// Largest accepted report (a host with hundreds of tasks stays far below).
const REPORT_LIMIT: usize = 1 << 20;

/// One metric sample for the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub namespace: &'static str,
    pub name: &'static str,
    pub dimensions: Vec<(String, String)>,
    /// Seconds since the epoch.
    pub timestamp: i64,
    pub value: f64,
    pub unit: &'static str,
}

/// Where ECS's metrics go (CloudWatch, wired by the composition root).
#[async_trait]
pub trait MetricsSink: Send + Sync {
    async fn publish(
        &self,
        region: &str,
        samples: Vec<MetricSample>,
        now_ms: u64,
    ) -> Result<(), AwsError>;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    cluster: String,
    #[serde(default)]
    tasks: Vec<TaskUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskUsage {
    task_arn: String,
    cpu_units: f64,
    #[serde(rename = "memoryMiB")]
    memory_mib: f64,
}

/// The telemetry endpoint.
pub struct Telemetry {
    store: Arc<dyn Store>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn MetricsSink>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    pub fn new(
        store: Arc<dyn Store>,
        creds: Arc<dyn CredentialProvider>,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn MetricsSink>,
    ) -> Self {
        Self {
            store,
            creds,
            clock,
            sink,
        }
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/agent/v1/telemetry", post(report))
            .with_state(self)
    }
}

/// The samples of one task's usage: (CPU percent, memory percent) of its reservation, under
/// the cluster and, for a service's task, the service.
pub fn samples_for(
    task: &Task,
    cluster: &str,
    cpu_units: f64,
    memory_mib: f64,
    now_s: i64,
) -> Vec<MetricSample> {
    let reserved_cpu = task
        .cpu
        .as_deref()
        .and_then(|c| c.parse::<f64>().ok())
        .unwrap_or(task.reservation.cpu as f64);
    let reserved_mem = task
        .memory
        .as_deref()
        .and_then(|m| m.parse::<f64>().ok())
        .unwrap_or(task.reservation.memory as f64);
    let mut dims = vec![vec![("ClusterName".to_owned(), cluster.to_owned())]];
    if let Some(service) = &task.service_name {
        dims.push(vec![
            ("ClusterName".to_owned(), cluster.to_owned()),
            ("ServiceName".to_owned(), service.clone()),
        ]);
    }
    let mut out = Vec::new();
    for d in dims {
        if reserved_cpu > 0.0 {
            out.push(MetricSample {
                namespace: "AWS/ECS",
                name: "CPUUtilization",
                dimensions: d.clone(),
                timestamp: now_s,
                value: cpu_units / reserved_cpu * 100.0,
                unit: "Percent",
            });
        }
        if reserved_mem > 0.0 {
            out.push(MetricSample {
                namespace: "AWS/ECS",
                name: "MemoryUtilization",
                dimensions: d,
                timestamp: now_s,
                value: memory_mib / reserved_mem * 100.0,
                unit: "Percent",
            });
        }
    }
    out
}

/// The `ECS/ContainerInsights` samples of one task's usage.
pub fn insights_for(
    task: &Task,
    cluster: &str,
    cpu_units: f64,
    memory_mib: f64,
    now_s: i64,
) -> Vec<MetricSample> {
    let reserved_cpu = task
        .cpu
        .as_deref()
        .and_then(|c| c.parse::<f64>().ok())
        .unwrap_or(task.reservation.cpu as f64);
    let reserved_mem = task
        .memory
        .as_deref()
        .and_then(|m| m.parse::<f64>().ok())
        .unwrap_or(task.reservation.memory as f64);
    let c = ("ClusterName".to_owned(), cluster.to_owned());
    let mut dims = vec![
        vec![c.clone()],
        vec![
            c.clone(),
            ("TaskDefinitionFamily".to_owned(), task.family.clone()),
        ],
    ];
    if let Some(service) = &task.service_name {
        dims.push(vec![c, ("ServiceName".to_owned(), service.clone())]);
    }
    let mut out = Vec::new();
    for d in dims {
        for (name, value, unit) in [
            ("CpuUtilized", cpu_units, "None"),
            ("CpuReserved", reserved_cpu, "None"),
            ("MemoryUtilized", memory_mib, "Megabytes"),
            ("MemoryReserved", reserved_mem, "Megabytes"),
        ] {
            out.push(MetricSample {
                namespace: "ECS/ContainerInsights",
                name,
                dimensions: d.clone(),
                timestamp: now_s,
                value,
                unit,
            });
        }
    }
    out
}

async fn report(State(t): State<Arc<Telemetry>>, req: Request) -> Response {
    let request_id = new_request_id();
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, REPORT_LIMIT).await else {
        return AwsError::client("InvalidParameterException", "The report is too large.")
            .json_response(&request_id);
    };
    let verified = match sigv4::verify(&parts, &body, t.creds.as_ref(), t.clock.now()) {
        Ok(v) => v,
        Err(e) => return e.to_json_error().json_response(&request_id),
    };
    let report: Report = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return AwsError::client("SerializationException", format!("invalid report: {e}"))
                .json_response(&request_id);
        }
    };
    let cluster =
        gantry_domain::arn::cluster_name_from_ref(&report.cluster).unwrap_or(report.cluster);
    let now_ms = t.clock.now_millis();
    let now_s = (now_ms / 1000) as i64;
    let insights = match t
        .store
        .get_typed::<Cluster>(&keys::cluster(&verified.region, &cluster))
        .await
    {
        Ok(Some(c)) => c.value.settings.iter().any(|s| {
            s.name == "containerInsights" && (s.value == "enabled" || s.value == "enhanced")
        }),
        Ok(None) => false,
        Err(e) => return AwsError::server(e.to_string()).json_response(&request_id),
    };
    let mut samples = Vec::new();
    for u in &report.tasks {
        if !(u.cpu_units.is_finite() && u.memory_mib.is_finite())
            || u.cpu_units < 0.0
            || u.memory_mib < 0.0
        {
            continue;
        }
        let id = u.task_arn.rsplit('/').next().unwrap_or_default();
        let key = keys::task(&verified.region, &cluster, id);
        match t.store.get_typed::<Task>(&key).await {
            Ok(Some(task)) if task.value.last_status == TaskStatus::Running => {
                samples.extend(samples_for(
                    &task.value,
                    &cluster,
                    u.cpu_units,
                    u.memory_mib,
                    now_s,
                ));
                if insights {
                    samples.extend(insights_for(
                        &task.value,
                        &cluster,
                        u.cpu_units,
                        u.memory_mib,
                        now_s,
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => return AwsError::server(e.to_string()).json_response(&request_id),
        }
    }
    if !samples.is_empty()
        && let Err(e) = t.sink.publish(&verified.region, samples, now_ms).await
    {
        return e.json_response(&request_id);
    }
    gantry_aws_proto::json::ok_response(&serde_json::json!({}), &request_id)
}
