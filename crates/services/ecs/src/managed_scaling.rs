//! Managed scaling of host pools: every `interval`, for each ACTIVE Auto Scaling group provider
//! with `managedScaling.status = ENABLED` that a cluster uses and a [`PoolProvisioner`] serves,
//! the pool's instances, their tasks and the services waiting for capacity go through the pure
//! [`gantry_controller::managed_scaling::assess`]; its `CapacityProviderReservation` is
//! published (`AWS/ECS/ManagedScaling`, dimensions `CapacityProviderName`, `ClusterName`) and the
//! pool moves towards its desired count through the provisioner:
//! - **Out** at once (one datapoint above the target, as ECS's high alarm), then not again until
//!   the launched instances have registered or `instanceWarmupPeriod` has passed.
//! - **In** after `scale_in_periods` consecutive assessments that want fewer instances (ECS's low
//!   alarm: 15 one-minute datapoints), and only by instances that run no task: each is set
//!   DRAINING first (managed draining), removed by the provisioner, then deregistered.
//!
//! A waiting task is one a service wants and does not have (desired count minus its tasks that
//! are not STOPPED), sized by its PRIMARY deployment's task definition and shared out by the
//! service's strategy weights when it names several providers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gantry_controller::managed_scaling::{
    Assessment, PoolInstance, ScalingSettings, TaskNeed, assess,
};
use gantry_domain::capacity::{CapacityProvider, POOL_ATTRIBUTE, ProviderStatus};
use gantry_domain::cluster::{Cluster, ClusterStatus};
use gantry_domain::container_instance::{Attribute, ContainerInstance, ContainerInstanceStatus};
use gantry_domain::service::{Service, ServiceStatus};
use gantry_domain::task::{Task, TaskStatus};
use gantry_domain::task_definition::TaskDefinition;
use gantry_front::{Clock, JsonService, RequestContext};
use gantry_store::{StoreError, StoreExt};

use crate::telemetry::{MetricSample, MetricsSink};
use crate::{EcsService, keys};

/// An instance the provisioner is asked to remove.
#[derive(Debug, Clone)]
pub struct RemovedInstance {
    pub container_instance_id: String,
    pub ec2_instance_id: String,
    pub attributes: Vec<Attribute>,
}

/// What a provisioner is asked to do: bring `pool` to `desired` instances, removing exactly the
/// instances named in `remove` when it shrinks.
#[derive(Debug, Clone)]
pub struct ScaleRequest {
    pub region: String,
    pub cluster: String,
    pub provider: String,
    pub pool: String,
    pub current: usize,
    pub desired: usize,
    pub remove: Vec<RemovedInstance>,
}

/// Starts and stops a pool's instances (configured per pool on the server).
#[async_trait]
pub trait PoolProvisioner: Send + Sync {
    /// Whether this provisioner serves `pool`.
    fn serves(&self, pool: &str) -> bool;
    /// Acts on the request; `Ok` carries a description of what was done, `Err` why it failed.
    async fn scale(&self, req: &ScaleRequest) -> Result<String, String>;
}

/// Timing of managed scaling.
#[derive(Debug, Clone, Copy)]
pub struct ManagedScalingTiming {
    /// Between assessments (ECS: one minute).
    pub interval: Duration,
    /// Consecutive assessments wanting fewer instances before a scale-in (ECS: 15).
    pub scale_in_periods: u32,
}

impl Default for ManagedScalingTiming {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            scale_in_periods: 15,
        }
    }
}

/// One scaling action taken, as kept for `activities`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingActivity {
    pub provider: String,
    pub cluster: String,
    pub at_ms: u64,
    pub from: usize,
    pub to: usize,
    pub cause: String,
    pub outcome: Result<String, String>,
}

#[derive(Debug, Default)]
struct PoolState {
    low_periods: u32,
    /// A scale-out in flight: the count asked for and when.
    launching: Option<(usize, u64)>,
}

/// The managed-scaling loop (see the module documentation).
pub struct ManagedScaling {
    ecs: Arc<EcsService>,
    provisioner: Arc<dyn PoolProvisioner>,
    sink: Arc<dyn MetricsSink>,
    clock: Arc<dyn Clock>,
    account_id: String,
    region: String,
    timing: ManagedScalingTiming,
    state: std::sync::Mutex<HashMap<String, PoolState>>,
    activities: std::sync::Mutex<Vec<ScalingActivity>>,
}

impl std::fmt::Debug for ManagedScaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedScaling")
            .field("region", &self.region)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// The most activities kept in memory.
const ACTIVITY_LIMIT: usize = 100;

impl ManagedScaling {
    pub fn new(
        ecs: Arc<EcsService>,
        provisioner: Arc<dyn PoolProvisioner>,
        sink: Arc<dyn MetricsSink>,
        clock: Arc<dyn Clock>,
        account_id: impl Into<String>,
        region: impl Into<String>,
        timing: ManagedScalingTiming,
    ) -> Self {
        Self {
            ecs,
            provisioner,
            sink,
            clock,
            account_id: account_id.into(),
            region: region.into(),
            timing,
            state: Default::default(),
            activities: Default::default(),
        }
    }

    /// The scaling actions taken so far (the latest 100), oldest first.
    pub fn activities(&self) -> Vec<ScalingActivity> {
        self.activities
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "managed scaling pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.interval) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    fn context(&self) -> RequestContext {
        RequestContext {
            caller: None,
            request_id: gantry_aws_proto::new_request_id(),
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            access_key_id: String::new(),
            now: self.clock.now_millis(),
        }
    }

    /// One assessment of every managed pool.
    pub async fn pass(&self) -> Result<(), StoreError> {
        let store = &self.ecs.store;
        let region = &self.region;
        let providers: Vec<CapacityProvider> = store
            .scan_all_typed::<CapacityProvider>(&keys::capacity_providers(region))
            .await?
            .into_iter()
            .map(|v| v.value)
            .filter(|p| {
                p.status == ProviderStatus::Active
                    && p.auto_scaling_group_provider["managedScaling"]["status"] == "ENABLED"
                    && self.provisioner.serves(&p.pool)
            })
            .collect();
        if providers.is_empty() {
            return Ok(());
        }
        let clusters: Vec<Cluster> = store
            .scan_all_typed::<Cluster>(&keys::clusters(region))
            .await?
            .into_iter()
            .map(|v| v.value)
            .filter(|c| c.status == ClusterStatus::Active)
            .collect();
        for p in &providers {
            // The first cluster (by name) that uses the provider owns its pool.
            let Some(cluster) = clusters
                .iter()
                .find(|c| c.capacity_providers.iter().any(|n| n == &p.name))
            else {
                continue;
            };
            if let Err(e) = self.assess_pool(p, &cluster.name).await {
                tracing::warn!(provider = %p.name, cluster = %cluster.name, error = %e, "managed scaling of the pool failed");
            }
        }
        Ok(())
    }

    async fn assess_pool(&self, p: &CapacityProvider, cluster: &str) -> Result<(), StoreError> {
        let store = &self.ecs.store;
        let region = &self.region;
        let instances: Vec<ContainerInstance> = store
            .scan_all_typed::<ContainerInstance>(&keys::container_instances(region, cluster))
            .await?
            .into_iter()
            .map(|v| v.value)
            .filter(|ci| {
                ci.status != ContainerInstanceStatus::Inactive
                    && ci.attribute(POOL_ATTRIBUTE) == Some(p.pool.as_str())
            })
            .collect();
        let tasks: Vec<Task> = store
            .scan_all_typed::<Task>(&keys::tasks(region, cluster))
            .await?
            .into_iter()
            .map(|v| v.value)
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .collect();
        let mut per_instance: HashMap<&str, usize> = HashMap::new();
        let mut per_service: HashMap<&str, i64> = HashMap::new();
        for t in &tasks {
            if let Some(ci) = &t.container_instance_id {
                *per_instance.entry(ci.as_str()).or_default() += 1;
            }
            if let Some(s) = &t.service_name {
                *per_service.entry(s.as_str()).or_default() += 1;
            }
        }
        let pool: Vec<PoolInstance> = instances
            .iter()
            .map(|ci| {
                let registered = |name: &str| {
                    ci.registered_resources
                        .iter()
                        .find(|r| r.name == name)
                        .and_then(|r| r.integer_value)
                        .unwrap_or(0)
                };
                let (cpu, memory) = (registered("CPU"), registered("MEMORY"));
                PoolInstance {
                    id: ci.id.clone(),
                    cpu,
                    memory,
                    remaining_cpu: cpu - ci.reserved_cpu,
                    remaining_memory: memory - ci.reserved_memory,
                    tasks: per_instance.get(ci.id.as_str()).copied().unwrap_or(0),
                    placeable: ci.status == ContainerInstanceStatus::Active && ci.agent_connected,
                }
            })
            .collect();
        let waiting = self.waiting_tasks(&p.name, cluster, &per_service).await?;
        let ms = &p.auto_scaling_group_provider["managedScaling"];
        let num = |k: &str, d: u32| ms[k].as_u64().map(|v| v as u32).unwrap_or(d);
        let settings = ScalingSettings {
            target_capacity: num("targetCapacity", 100),
            minimum_step: num("minimumScalingStepSize", 1),
            maximum_step: num("maximumScalingStepSize", 10_000),
        };
        let warmup_ms = u64::from(num("instanceWarmupPeriod", 300)) * 1000;
        let a = assess(&pool, &waiting, settings);
        let now = self.clock.now_millis();
        self.publish(&p.name, cluster, &a, now).await;
        tracing::debug!(provider = %p.name, cluster, instances = a.instances, needed = a.needed, reservation = a.reservation, desired = a.desired, "managed scaling assessed");

        let scale_in = {
            let mut states = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let st = states.entry(p.name.clone()).or_default();
            if let Some((asked, at)) = st.launching
                && (a.instances >= asked || now.saturating_sub(at) >= warmup_ms)
            {
                st.launching = None;
            }
            if a.desired > a.instances {
                st.low_periods = 0;
                if st.launching.is_some() {
                    return Ok(());
                }
                st.launching = Some((a.desired, now));
                false
            } else if a.desired < a.instances && !a.remove.is_empty() {
                st.low_periods += 1;
                if st.low_periods < self.timing.scale_in_periods.max(1) {
                    return Ok(());
                }
                st.low_periods = 0;
                true
            } else {
                st.low_periods = 0;
                return Ok(());
            }
        };
        let mut req = ScaleRequest {
            region: region.clone(),
            cluster: cluster.to_owned(),
            provider: p.name.clone(),
            pool: p.pool.clone(),
            current: a.instances,
            desired: a.desired,
            remove: Vec::new(),
        };
        let cause = if scale_in {
            for id in &a.remove {
                if let Some(ci) = instances.iter().find(|ci| &ci.id == id) {
                    req.remove.push(RemovedInstance {
                        container_instance_id: ci.id.clone(),
                        ec2_instance_id: ci.ec2_instance_id.clone(),
                        attributes: ci.attributes.clone(),
                    });
                }
            }
            // Managed draining: no task lands on them while they go.
            let ids: Vec<&str> = req
                .remove
                .iter()
                .map(|r| r.container_instance_id.as_str())
                .collect();
            self.call(
                "UpdateContainerInstancesState",
                serde_json::json!({"cluster": cluster, "containerInstances": ids, "status": "DRAINING"}),
            )
            .await;
            format!(
                "CapacityProviderReservation {:.0} below the target capacity {} for {} assessments: removing {} instance(s) that run no task",
                a.reservation,
                settings.target_capacity,
                self.timing.scale_in_periods.max(1),
                req.remove.len()
            )
        } else {
            format!(
                "CapacityProviderReservation {:.0} above the target capacity {}: {} instance(s) needed for the tasks running and waiting",
                a.reservation, settings.target_capacity, a.needed
            )
        };
        let outcome = self.provisioner.scale(&req).await;
        match &outcome {
            Ok(what) => {
                tracing::info!(provider = %p.name, cluster, from = a.instances, to = a.desired, outcome = %what, "{cause}");
                if scale_in {
                    for r in &req.remove {
                        self.call(
                            "DeregisterContainerInstance",
                            serde_json::json!({"cluster": cluster, "containerInstance": r.container_instance_id, "force": true}),
                        )
                        .await;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(provider = %p.name, cluster, from = a.instances, to = a.desired, error = %e, "{cause}: the provisioner failed");
                if !scale_in {
                    // Try again at the next assessment.
                    let mut states = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(st) = states.get_mut(&p.name) {
                        st.launching = None;
                    }
                }
            }
        }
        let mut acts = self.activities.lock().unwrap_or_else(|e| e.into_inner());
        acts.push(ScalingActivity {
            provider: p.name.clone(),
            cluster: cluster.to_owned(),
            at_ms: now,
            from: a.instances,
            to: a.desired,
            cause,
            outcome,
        });
        if acts.len() > ACTIVITY_LIMIT {
            let excess = acts.len() - ACTIVITY_LIMIT;
            acts.drain(..excess);
        }
        Ok(())
    }

    async fn call(&self, op: &str, body: serde_json::Value) {
        let ctx = self.context();
        if let Err(e) =
            JsonService::call(self.ecs.as_ref(), op, body.to_string().as_bytes(), &ctx).await
        {
            tracing::warn!(op, error = %e.message, "managed scaling: ECS call failed");
        }
    }

    /// The tasks the cluster's services want on this provider and do not have yet.
    async fn waiting_tasks(
        &self,
        provider: &str,
        cluster: &str,
        live: &HashMap<&str, i64>,
    ) -> Result<Vec<TaskNeed>, StoreError> {
        let store = &self.ecs.store;
        let services = store
            .scan_all_typed::<Service>(&keys::services(&self.region, cluster))
            .await?;
        let mut out = Vec::new();
        for s in services.into_iter().map(|v| v.value) {
            if s.status != ServiceStatus::Active {
                continue;
            }
            let Some(item) = s
                .capacity_provider_strategy
                .iter()
                .find(|i| i.capacity_provider == provider)
            else {
                continue;
            };
            let short = s.desired_count - live.get(s.name.as_str()).copied().unwrap_or(0);
            if short <= 0 {
                continue;
            }
            let total: u32 = s.capacity_provider_strategy.iter().map(|i| i.weight).sum();
            let share = if s.capacity_provider_strategy.len() <= 1 || total == 0 {
                short
            } else {
                (short * i64::from(item.weight) + i64::from(total) - 1) / i64::from(total)
            };
            let Some(d) = s.primary() else { continue };
            let Some(td) = store
                .get_typed::<TaskDefinition>(&keys::task_definition(
                    &self.region,
                    &d.family,
                    d.revision,
                ))
                .await?
            else {
                continue;
            };
            let need = gantry_domain::task::required_resources(&td.value, &Default::default());
            for _ in 0..share {
                out.push(TaskNeed {
                    cpu: need.cpu,
                    memory: need.memory,
                });
            }
        }
        Ok(out)
    }

    async fn publish(&self, provider: &str, cluster: &str, a: &Assessment, now_ms: u64) {
        let sample = MetricSample {
            namespace: "AWS/ECS/ManagedScaling",
            name: "CapacityProviderReservation",
            dimensions: vec![
                ("CapacityProviderName".to_owned(), provider.to_owned()),
                ("ClusterName".to_owned(), cluster.to_owned()),
            ],
            timestamp: (now_ms / 1000) as i64,
            value: a.reservation,
            unit: "Percent",
        };
        if let Err(e) = self.sink.publish(&self.region, vec![sample], now_ms).await {
            tracing::warn!(provider, cluster, error = %e.message, "publishing CapacityProviderReservation failed");
        }
    }
}
