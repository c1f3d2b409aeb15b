//! Task usage for the control plane's `AWS/ECS` metrics: every interval the agent samples each
//! of its task containers through the Docker stats API (one-shot, no stream), turns the CPU time
//! used since the previous sample into CPU units (1,024 per core) and the memory in use (minus
//! the page cache) into MiB, sums them per task, and posts one report for the host to
//! `POST /agent/v1/telemetry`. A report that cannot be delivered is dropped (the next one
//! carries fresh figures); nothing queues up on the agent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{ApiClient, Service};
use crate::runtime::ContainerRuntime;
use crate::spec::labels;

/// The pause container of awsvpc tasks is the network's, not the task's work.
const PAUSE: &str = crate::pause::PAUSE_CONTAINER_NAME;

/// Cumulative CPU nanoseconds and memory bytes in use (without the page cache) of a stats
/// document, as Docker reports them on cgroup v1 and v2.
pub fn cpu_and_memory(stats: &Value) -> Option<(u64, u64)> {
    let cpu = stats
        .pointer("/cpu_stats/cpu_usage/total_usage")
        .and_then(Value::as_u64)?;
    let usage = stats
        .pointer("/memory_stats/usage")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let cache = [
        "/memory_stats/stats/total_inactive_file",
        "/memory_stats/stats/inactive_file",
        "/memory_stats/stats/cache",
    ]
    .iter()
    .find_map(|p| stats.pointer(p).and_then(Value::as_u64))
    .unwrap_or(0);
    Some((cpu, usage.saturating_sub(cache)))
}

/// Samples and reports forever, every `every`.
pub async fn report_forever(
    api: ApiClient,
    runtime: Arc<dyn ContainerRuntime>,
    cluster: String,
    instance_arn: String,
    every: Duration,
) {
    let mut previous: HashMap<String, (u64, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let containers = match runtime.list_by_label(labels::INSTANCE, &instance_arn).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list containers for usage");
                continue;
            }
        };
        let mut tasks: HashMap<String, (f64, f64, bool)> = HashMap::new();
        let mut seen = HashMap::new();
        for c in containers {
            let Some(task) = c.labels.get(labels::TASK_ARN).cloned() else {
                continue;
            };
            if c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(PAUSE) {
                continue;
            }
            let Ok(stats) = runtime.stats(&c.id).await else {
                continue;
            };
            let Some((cpu, mem)) = cpu_and_memory(&stats) else {
                continue;
            };
            if stats.pointer("/memory_stats/usage").is_none() && cpu == 0 {
                continue; // not running
            }
            let now = Instant::now();
            let entry = tasks.entry(task).or_insert((0.0, 0.0, true));
            entry.1 += mem as f64 / (1024.0 * 1024.0);
            match previous.get(&c.id) {
                Some((before, at)) if cpu >= *before => {
                    let elapsed = now.duration_since(*at).as_nanos().max(1) as f64;
                    entry.0 += (cpu - before) as f64 / elapsed * 1024.0;
                }
                _ => entry.2 = false,
            }
            seen.insert(c.id.clone(), (cpu, now));
        }
        previous = seen;
        let report: Vec<Value> = tasks
            .into_iter()
            .filter(|(_, (_, _, complete))| *complete)
            .map(|(arn, (cpu, mem, _))| json!({"taskArn": arn, "cpuUnits": cpu, "memoryMiB": mem}))
            .collect();
        if report.is_empty() {
            continue;
        }
        let body = json!({"cluster": cluster, "containerInstance": instance_arn, "tasks": report});
        if let Err(e) = api
            .post_json(Service::Ecs, "/agent/v1/telemetry", &body)
            .await
        {
            tracing::debug!(error = %e, "usage report not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_leaves_out_the_page_cache_on_both_cgroup_versions() {
        let v1 = json!({"cpu_stats": {"cpu_usage": {"total_usage": 5}},
                        "memory_stats": {"usage": 1000, "stats": {"total_inactive_file": 200, "cache": 300}}});
        assert_eq!(cpu_and_memory(&v1), Some((5, 800)));
        let v2 = json!({"cpu_stats": {"cpu_usage": {"total_usage": 7}},
                        "memory_stats": {"usage": 1000, "stats": {"inactive_file": 100}}});
        assert_eq!(cpu_and_memory(&v2), Some((7, 900)));
        assert_eq!(cpu_and_memory(&json!({})), None);
    }
}
