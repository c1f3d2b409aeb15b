//! The control-plane loop: keeps services at their desired state with the pure reconciler
//! (`gantry_controller::service::reconcile`), and watches instance liveness.
//!
//! Every second, and right after any change under `ecs/`, for every cluster:
//! 1. **Liveness**: tasks on an instance whose agent has been away longer than `lost_after` are
//!    marked STOPPED (`InfrastructureHealth`, "host lost"), so their services replace them
//!    elsewhere. ECS leaves them RUNNING forever; a returning agent gets the full task state and
//!    stops what it is no longer meant to run (the fence).
//! 2. **Services**: each ACTIVE or DRAINING service is reconciled; the plan's service record is
//!    committed with compare-and-swap first (a conflict drops the plan), then its stops and
//!    launches are applied, and the "started"/"stopped"/"unable to place" events written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_controller::service::{
    Health, IdSource, InstanceView as CtlInstance, Plan, TaskView, reconcile,
};
use gantry_domain::cluster::{Cluster, ClusterStatus, FARGATE_PLATFORM_CLUSTER};
use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
use gantry_domain::service::{SchedulingStrategy, Service, ServiceStatus};
use gantry_domain::task::{Task, TaskStatus, stop_code};
use gantry_domain::task_definition::TaskDefinition;
use gantry_store::{StoreExt, Txn, WatchError, encode};

use crate::{EcsError, EcsService, keys, placement, service_lb, services, task_definitions, tasks};
use gantry_front::{Clock, RequestContext};

/// Timing of instance liveness.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// How long a dropped agent connection may stay away before the instance is DISCONNECTED.
    pub heartbeat_grace: Duration,
    /// How long a DISCONNECTED instance may stay away before its tasks are marked lost.
    pub lost_after: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            heartbeat_grace: Duration::from_secs(15),
            lost_after: Duration::from_secs(60),
        }
    }
}

/// The CloudWatch alarms deployments watch (`deploymentConfiguration.alarms`), implemented by
/// the composition root over CloudWatch.
#[async_trait::async_trait]
pub trait DeploymentAlarms: Send + Sync {
    /// Which of `names` are in the ALARM state now.
    async fn in_alarm(&self, region: &str, names: &[String]) -> Result<Vec<String>, String>;
}

/// Runs services and liveness for every cluster of every region.
pub struct ServiceRunner {
    ecs: Arc<EcsService>,
    target_groups: Option<Arc<dyn service_lb::TargetGroups>>,
    alarms: Option<Arc<dyn DeploymentAlarms>>,
    /// How long one minute of bake times and hook timeouts lasts (a minute, but for tests).
    bake_minute: Duration,
    clock: Arc<dyn Clock>,
    account_id: String,
    liveness: Liveness,
    /// When instances were last checked for lost agents.
    liveness_checked: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often a pass checks every cluster's instances for agents gone longer than
/// [`Liveness::lost_after`].
const LIVENESS_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for ServiceRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRunner")
            .field("liveness", &self.liveness)
            .finish()
    }
}

pub(crate) struct Ids<'a>(pub(crate) &'a EcsService);

impl IdSource for Ids<'_> {
    fn deployment_id(&mut self) -> String {
        services::deployment_id(self.0)
    }
    fn event_id(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// ECS's wording of why the closest instance did not fit.
fn placement_detail(reason: &str) -> &'static str {
    match reason {
        "RESOURCE:CPU" => "has insufficient CPU units available",
        "RESOURCE:MEMORY" => "has insufficient memory available",
        "RESOURCE:PORTS" => "is already using a port required by your task",
        "RESOURCE:ENI" => "has no network interface left for a task using the awsvpc network mode",
        "ATTRIBUTE" => "is missing an attribute required by your task",
        "AGENT" => "has an agent that is disconnected",
        _ => "does not satisfy the placement constraints of your task",
    }
}

impl ServiceRunner {
    pub fn new(
        ecs: Arc<EcsService>,
        clock: Arc<dyn Clock>,
        account_id: impl Into<String>,
        liveness: Liveness,
    ) -> Self {
        Self {
            ecs,
            target_groups: None,
            alarms: None,
            bake_minute: Duration::from_secs(60),
            clock,
            account_id: account_id.into(),
            liveness,
            liveness_checked: Default::default(),
        }
    }

    /// Connects services' `loadBalancers` to the target groups.
    pub fn with_target_groups(mut self, groups: Arc<dyn service_lb::TargetGroups>) -> Self {
        self.target_groups = Some(groups);
        self
    }

    /// Watches deployments' CloudWatch alarms.
    pub fn with_alarms(mut self, alarms: Arc<dyn DeploymentAlarms>) -> Self {
        self.alarms = Some(alarms);
        self
    }

    /// How long one minute of `bakeTimeInMinutes`, the step and canary bake times and hook
    /// timeouts lasts (60 s unless a test shortens it).
    pub fn with_bake_minute(mut self, minute: Duration) -> Self {
        self.bake_minute = minute;
        self
    }

    /// Commits a record `shift::advance` decided, with compare-and-swap on the version read.
    async fn commit_advanced(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        before: &Service,
        updated: &Service,
    ) -> Result<(), EcsError> {
        let key = keys::service(&ctx.region, cluster, &before.name);
        let Some(cur) = self.ecs.store.get_typed::<Service>(&key).await? else {
            return Ok(());
        };
        if cur.value.version != before.version {
            return Ok(());
        }
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, updated)?);
        if self.ecs.store.commit(txn).await?.is_committed() {
            crate::service_deployments::record(&self.ecs, ctx, Some(before), updated).await?;
        }
        Ok(())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut watch = self.ecs.store.watch("ecs/");
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "service reconcile pass failed");
            }
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(tick);
            tokio::select! {
                _ = &mut tick => {}
                ev = watch.next() => {
                    // Let a burst of changes land before reconciling again, then take them all
                    // as one: the pass reads the current state.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let skipped = watch.skip_ready();
                    if matches!(ev, Err(WatchError::Lagged(_)))
                        || matches!(skipped, Err(WatchError::Lagged(_)))
                    {
                        watch = self.ecs.store.watch("ecs/");
                    }
                }
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    fn ctx(&self, region: &str) -> RequestContext {
        RequestContext {
            caller: None,
            request_id: "service-scheduler".into(),
            region: region.to_owned(),
            account_id: self.account_id.clone(),
            access_key_id: String::new(),
            now: self.clock.now_millis(),
        }
    }

    /// One pass over every ACTIVE cluster.
    pub async fn pass(&self) -> Result<(), EcsError> {
        let check_liveness = {
            let mut last = self
                .liveness_checked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= LIVENESS_INTERVAL);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        let clusters = self.active_clusters().await?;
        if check_liveness {
            let mut regions: Vec<&str> = clusters.iter().map(|(r, _)| r.as_str()).collect();
            regions.sort_unstable();
            regions.dedup();
            for region in regions {
                let ctx = self.ctx(region);
                if let Err(e) = self.platform_pass(&ctx).await {
                    tracing::warn!(region, error = %e, "platform liveness pass failed");
                }
            }
        }
        for (region, cluster) in clusters {
            let ctx = self.ctx(&region);
            if let Err(e) = self.cluster_pass(&ctx, &cluster, check_liveness).await {
                tracing::warn!(cluster, error = %e, "cluster reconcile failed");
            }
        }
        Ok(())
    }

    /// The platform's Fargate hosts of a region (any status but INACTIVE).
    async fn platform_instances(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<Arc<ContainerInstance>>, EcsError> {
        Ok(self
            .ecs
            .cache
            .scan::<ContainerInstance>(
                self.ecs.store.as_ref(),
                &keys::container_instances(&ctx.region, FARGATE_PLATFORM_CLUSTER),
            )
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Liveness of the platform's hosts: the Fargate tasks (of any cluster) of a host away
    /// longer than `lost_after` are marked STOPPED, so their services replace them.
    async fn platform_pass(&self, ctx: &RequestContext) -> Result<(), EcsError> {
        let instances = self.platform_instances(ctx).await?;
        let now = self.clock.now_millis();
        let lost_after = self.liveness.lost_after.as_millis() as u64;
        let lost: Vec<&Arc<ContainerInstance>> = instances
            .iter()
            .filter(|ci| lost(ci, now, lost_after))
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        let tasks: Vec<Arc<Task>> = self
            .ecs
            .store
            .scan_all_typed::<Task>(&format!("ecs/{}/task/", ctx.region))
            .await?
            .into_iter()
            .map(|v| v.value)
            .filter(|t| t.is_fargate() && t.last_status != TaskStatus::Stopped)
            .map(Arc::new)
            .collect();
        let mut by_cluster: HashMap<String, Vec<Arc<Task>>> = HashMap::new();
        for t in tasks {
            by_cluster.entry(t.cluster.clone()).or_default().push(t);
        }
        let lost: Vec<Arc<ContainerInstance>> = lost.into_iter().cloned().collect();
        for (cluster, tasks) in by_cluster {
            self.mark_lost(ctx, &cluster, &lost, &tasks).await?;
        }
        Ok(())
    }

    /// Every ACTIVE cluster of every region, reading only cluster records: the scan jumps from one
    /// region's keys to the next instead of reading every record under `ecs/`.
    async fn active_clusters(&self) -> Result<Vec<(String, String)>, EcsError> {
        let store = &self.ecs.store;
        let mut clusters = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.scan("ecs/", after.as_deref(), 1).await?;
            let Some(rec) = page.records.first() else {
                return Ok(clusters);
            };
            let region = rec.key.split('/').nth(1).unwrap_or_default().to_owned();
            for c in store
                .scan_all_typed::<Cluster>(&keys::clusters(&region))
                .await?
            {
                if c.value.status == ClusterStatus::Active {
                    clusters.push((region.clone(), c.value.name));
                }
            }
            // Past every key of this region (keys are UTF-8; U+10FFFF sorts after all of them).
            after = Some(format!("ecs/{region}/\u{10FFFF}"));
        }
    }

    /// Reconciles the services of one cluster, and marks the tasks of long-lost instances lost
    /// when `check_liveness` (at most every [`LIVENESS_INTERVAL`]: a cluster without services is
    /// not read on every store change).
    async fn cluster_pass(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        check_liveness: bool,
    ) -> Result<(), EcsError> {
        let store = &self.ecs.store;
        let (mut services, inactive): (Vec<Service>, Vec<Service>) = store
            .scan_all_typed::<Service>(&keys::services(&ctx.region, cluster))
            .await?
            .into_iter()
            .map(|v| v.value)
            .partition(|s| s.status != ServiceStatus::Inactive);
        if services.is_empty() && inactive.is_empty() && !check_liveness {
            return Ok(());
        }
        // The cluster's instances and tasks from its in-memory view (current with every commit
        // acknowledged before this pass), shared, not copied.
        let (mut instances, all_tasks, orphaned) = self
            .ecs
            .placement
            .read(&self.ecs, &ctx.region, cluster, |view| {
                let instances: Vec<Arc<ContainerInstance>> =
                    view.entries().iter().map(|e| e.record.clone()).collect();
                // The platform's view also follows the Fargate tasks of every cluster: only the
                // cluster's own tasks are its business here.
                let tasks: Vec<Arc<Task>> = view
                    .task_records()
                    .filter(|t| t.cluster == cluster)
                    .cloned()
                    .collect();
                // Instances the view leaves out (INACTIVE) that still hold live tasks.
                let mut orphaned: Vec<String> = tasks
                    .iter()
                    .filter(|t| t.last_status != TaskStatus::Stopped && t.host_cluster() == cluster)
                    .filter_map(|t| t.container_instance_id.clone())
                    .filter(|id| view.position(id).is_none())
                    .collect();
                orphaned.sort_unstable();
                orphaned.dedup();
                (instances, tasks, orphaned)
            })
            .await?;
        for id in orphaned {
            if let Some(ci) = store
                .get_typed::<ContainerInstance>(&keys::container_instance(
                    &ctx.region,
                    cluster,
                    &id,
                ))
                .await?
            {
                instances.push(Arc::new(ci.value));
            }
        }
        let now = self.clock.now_millis();
        let lost_after = self.liveness.lost_after.as_millis() as u64;
        let fargate_services = services.iter().any(|s| s.launch_type == "FARGATE");
        let platform: Vec<Arc<ContainerInstance>> = if fargate_services {
            self.platform_instances(ctx).await?
        } else {
            Vec::new()
        };
        let any_lost = check_liveness && instances.iter().any(|ci| lost(ci, now, lost_after));
        if services.is_empty() && inactive.is_empty() && !any_lost {
            return Ok(()); // nothing to reconcile
        }
        // An INACTIVE service whose tasks are not all stopped (a record left so by an earlier
        // version, which made a deleted service INACTIVE while its tasks were still draining
        // from their target groups) is reconciled until they are: its stops are finished.
        services.extend(inactive.into_iter().filter(|s| {
            all_tasks.iter().any(|t| {
                t.service_name.as_deref() == Some(s.name.as_str())
                    && t.last_status != TaskStatus::Stopped
            })
        }));
        if any_lost {
            self.mark_lost(ctx, cluster, &instances, &all_tasks).await?;
        }
        if services.is_empty() {
            return Ok(());
        }
        let mut defs: HashMap<(String, u32), Option<TaskDefinition>> = HashMap::new();
        // Live REPLICA tasks per instance ("DAEMON tasks are stopped last").
        let mut replica_on: HashMap<String, usize> = HashMap::new();
        let daemon_names: Vec<&str> = services
            .iter()
            .filter(|s| s.scheduling_strategy == SchedulingStrategy::Daemon)
            .map(|s| s.name.as_str())
            .collect();
        for t in &all_tasks {
            let live =
                t.desired_status != TaskStatus::Stopped && t.last_status != TaskStatus::Stopped;
            let daemon = t
                .service_name
                .as_deref()
                .is_some_and(|n| daemon_names.contains(&n));
            if live
                && !daemon
                && let Some(i) = &t.container_instance_id
            {
                *replica_on.entry(i.clone()).or_default() += 1;
            }
        }
        // DAEMON services are placed first.
        let mut ordered: Vec<&Service> = services.iter().collect();
        ordered.sort_by_key(|s| gantry_controller::service::placement_priority(s));
        let by_id: HashMap<&str, &ContainerInstance> = instances
            .iter()
            .chain(platform.iter())
            .map(|i| (i.id.as_str(), &**i))
            .collect();
        for s in ordered {
            let service_tasks: Vec<&Task> = all_tasks
                .iter()
                .map(|t| &**t)
                .filter(|t| t.service_name.as_deref() == Some(s.name.as_str()))
                .collect();
            let behind_lb = self.target_groups.is_some() && service_lb::has_load_balancers(s);
            let (lb, lb_events) = match &self.target_groups {
                Some(groups) if behind_lb => {
                    match service_lb::sync(
                        &self.ecs,
                        groups.as_ref(),
                        ctx,
                        cluster,
                        s,
                        &service_tasks,
                        &by_id,
                    )
                    .await
                    {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(service = %s.name, error = %e, "load balancer sync failed");
                            Default::default()
                        }
                    }
                }
                _ => Default::default(),
            };
            if !lb_events.is_empty() {
                self.append_events(
                    ctx,
                    &keys::service(&ctx.region, cluster, &s.name),
                    lb_events,
                )
                .await?;
            }
            let mut views = Vec::new();
            for t in &service_tasks {
                let k = (t.family.clone(), t.revision);
                if !defs.contains_key(&k) {
                    let d = task_definitions::get_revision(&self.ecs, ctx, &k.0, k.1).await?;
                    defs.insert(k.clone(), d);
                }
                let container = Health::of_task(t, defs.get(&k).and_then(Option::as_ref));
                // A task the scheduler replaced for failing its target group's health checks
                // keeps that health once stopped (the circuit breaker counts it).
                let failed_elb = t.desired_status == TaskStatus::Stopped
                    && t.stopped_reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with("Task failed ELB health checks"));
                let health = if failed_elb {
                    Health::Unhealthy
                } else if behind_lb {
                    service_lb::combine(
                        container,
                        lb.health.get(&t.id).copied(),
                        t.last_status == TaskStatus::Deactivating,
                    )
                } else {
                    container
                };
                views.push(TaskView::from_task(t, health));
            }
            let constraints = placement::constraints(&s.placement_constraints).unwrap_or_default();
            let member_of: Vec<gantry_scheduler::Expr> = constraints
                .iter()
                .filter_map(|c| match c {
                    gantry_scheduler::PlacementConstraint::MemberOf(e) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            // Fargate services run on the platform's hosts, not the cluster's instances.
            let hosts = if s.launch_type == "FARGATE" {
                &platform
            } else {
                &instances
            };
            let inst_views: Vec<CtlInstance> = hosts
                .iter()
                .filter(|i| i.status != ContainerInstanceStatus::Inactive)
                .map(|i| {
                    // Eligibility only matters to DAEMON services; building the scheduler view of
                    // every instance for a REPLICA service would be wasted on each pass.
                    let eligible = s.scheduling_strategy != SchedulingStrategy::Daemon
                        || member_of.is_empty()
                        || {
                            let view = placement::view_of(i, vec![]);
                            member_of.iter().all(|e| e.matches(&view))
                        };
                    CtlInstance::from_instance(
                        i,
                        eligible,
                        replica_on.get(&i.id).copied().unwrap_or(0),
                    )
                })
                .collect();
            let now = self.clock.now_millis();
            if s.uses_task_sets() {
                let plan = gantry_controller::service::task_sets::plan(s, &views, now);
                if !plan.is_empty()
                    && let Err(e) = self.apply(ctx, cluster, s, plan, &lb, &service_tasks).await
                {
                    tracing::warn!(service = %s.name, error = %e, "applying the task set plan failed");
                }
                continue;
            }
            if let (Some(groups), true) = (&self.target_groups, behind_lb)
                && s.advanced_lb().is_some()
                && let Err(e) = service_lb::apply_weights(groups.as_ref(), &ctx.region, s).await
            {
                tracing::warn!(service = %s.name, error = %e, "setting listener rule weights failed");
            }
            let in_alarm = match (&self.alarms, s.deployment_configuration.alarms()) {
                (Some(a), Some((names, _)))
                    if !names.is_empty()
                        && s.primary().is_some_and(|p| {
                            p.rollout_state == gantry_domain::service::RolloutState::InProgress
                        }) =>
                {
                    a.in_alarm(&ctx.region, &names).await.unwrap_or_else(|e| {
                        tracing::warn!(service = %s.name, error = %e, "reading deployment alarms failed");
                        Vec::new()
                    })
                }
                _ => Vec::new(),
            };
            let minute_ms = u64::try_from(self.bake_minute.as_millis()).unwrap_or(60_000);
            if let Some(updated) = gantry_controller::service::shift::advance(
                s,
                &views,
                now,
                minute_ms,
                &in_alarm,
                &mut Ids(&self.ecs),
            ) {
                // Reconciled on the next pass, which the commit's change starts.
                if let Err(e) = self.commit_advanced(ctx, cluster, s, &updated).await {
                    tracing::warn!(service = %s.name, error = %e, "advancing the deployment failed");
                }
                continue;
            }
            let plan = reconcile(s, &views, &inst_views, now, &mut Ids(&self.ecs));
            if plan.is_empty() {
                continue;
            }
            if let Err(e) = self.apply(ctx, cluster, s, plan, &lb, &service_tasks).await {
                tracing::warn!(service = %s.name, error = %e, "applying the service plan failed");
            }
        }
        Ok(())
    }

    /// Marks the live tasks of instances away longer than `lost_after` as STOPPED.
    /// Stops the tasks of lost instances (see [`lost`]): nothing will report on them again.
    async fn mark_lost(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        instances: &[Arc<ContainerInstance>],
        all_tasks: &[Arc<Task>],
    ) -> Result<(), EcsError> {
        let now = self.clock.now_millis();
        let lost_after = self.liveness.lost_after.as_millis() as u64;
        for ci in instances {
            if !lost(ci, now, lost_after) {
                continue;
            }
            for t in all_tasks.iter().filter(|t| {
                t.container_instance_id.as_deref() == Some(ci.id.as_str())
                    && t.last_status != TaskStatus::Stopped
            }) {
                let reason = if ci.status == ContainerInstanceStatus::Inactive {
                    format!("Container instance {} was deregistered", ci.id)
                } else {
                    format!(
                        "Host lost: the agent of container instance {} has been disconnected for more than {} seconds",
                        ci.id,
                        self.liveness.lost_after.as_secs()
                    )
                };
                tasks::transition(&self.ecs, ctx, cluster, &t.id, move |task| {
                    if task.last_status == TaskStatus::Stopped {
                        return Ok(());
                    }
                    task.desired_status = TaskStatus::Stopped;
                    task.last_status = TaskStatus::Stopped;
                    task.stop_code = Some(stop_code::INFRASTRUCTURE_HEALTH.to_owned());
                    task.stopped_reason = Some(reason.clone());
                    task.stopping_at.get_or_insert(now);
                    task.stopped_at = Some(now);
                    task.execution_stopped_at = Some(now);
                    for c in &mut task.containers {
                        c.last_status = "STOPPED".into();
                    }
                    Ok(())
                })
                .await?;
                tracing::warn!(task = %t.id, instance = %ci.id, "task marked lost with its host");
            }
        }
        Ok(())
    }

    async fn apply(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        s: &Service,
        plan: Plan,
        lb: &service_lb::LbState,
        service_tasks: &[&Task],
    ) -> Result<(), EcsError> {
        let key = keys::service(&ctx.region, cluster, &s.name);
        // Commit the decided record first; a conflict means someone changed the service.
        let current = match &plan.service {
            Some(updated) => {
                let Some(cur) = self.ecs.store.get_typed::<Service>(&key).await? else {
                    return Ok(());
                };
                if cur.value.version != s.version {
                    return Ok(());
                }
                let txn = Txn::new()
                    .require_revision(&key, cur.revision)
                    .put(&key, encode(&key, updated)?);
                if !self.ecs.store.commit(txn).await?.is_committed() {
                    return Ok(());
                }
                crate::service_deployments::record(&self.ecs, ctx, Some(s), updated).await?;
                updated.clone()
            }
            None => s.clone(),
        };
        let mut events: Vec<String> = Vec::new();
        let mut stopped = Vec::new();
        let behind_lb = self.target_groups.is_some() && service_lb::has_load_balancers(s);
        for stop in &plan.stops {
            let task = service_tasks.iter().find(|t| t.id == stop.task_id);
            if task.is_some_and(|t| t.last_status == TaskStatus::Deactivating) {
                continue; // already leaving: stopped once its deregistration delay is over
            }
            let reason = match lb.unhealthy_in.get(&stop.task_id) {
                Some(tg) if stop.kind == gantry_controller::service::StopKind::Unhealthy => {
                    format!("Task failed ELB health checks in (target-group {tg})")
                }
                _ => stop.reason.clone(),
            };
            let serving = task.is_some_and(|t| t.last_status == TaskStatus::Running);
            let result = if behind_lb && serving {
                service_lb::begin_stop(&self.ecs, ctx, cluster, &stop.task_id, &reason).await
            } else {
                tasks::request_stop(
                    &self.ecs,
                    ctx,
                    cluster,
                    &stop.task_id,
                    stop_code::SERVICE_SCHEDULER_INITIATED,
                    &reason,
                )
                .await
                .map(|_| ())
            };
            match result {
                Ok(()) => stopped.push(stop.task_id.clone()),
                Err(e) => tracing::warn!(task = %stop.task_id, error = %e, "stop failed"),
            }
        }
        if !stopped.is_empty() {
            events.push(format!(
                "(service {}) has stopped {} running tasks: {}.",
                s.name,
                stopped.len(),
                stopped
                    .iter()
                    .map(|t| format!("(task {})", t))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        for launch in &plan.launches {
            // A task set launches as a deployment of a service with the task set's settings.
            let from_set = current
                .task_sets
                .iter()
                .find(|t| t.id == launch.deployment_id)
                .map(|ts| {
                    let mut base = current.clone();
                    base.launch_type = ts.launch_type.clone();
                    base.network_configuration = ts.network_configuration.clone();
                    base.platform_version = ts.platform_version.clone();
                    base.capacity_provider_strategy = ts.capacity_provider_strategy.clone();
                    let d = gantry_domain::service::Deployment {
                        id: ts.id.clone(),
                        status: gantry_domain::service::DeploymentStatus::Active,
                        family: ts.family.clone(),
                        revision: ts.revision,
                        desired_count: ts.computed_desired(current.desired_count),
                        failed_tasks: 0,
                        reached_running: false,
                        created_at: ts.created_at,
                        updated_at: ts.updated_at,
                        rollout_state: gantry_domain::service::RolloutState::InProgress,
                        rollout_state_reason: None,
                        launch_type: ts.launch_type.clone(),
                        network_configuration: ts.network_configuration.clone(),
                    };
                    (base, d)
                });
            let found = current
                .deployments
                .iter()
                .find(|d| d.id == launch.deployment_id)
                .map(|d| (current.clone(), d.clone()))
                .or(from_set);
            let Some((current, d)) = found else {
                continue;
            };
            let d = &d;
            // The service's live tasks on each provider of its strategy, so a launch keeps the
            // strategy's split.
            let existing: Vec<u64> = current
                .capacity_provider_strategy
                .iter()
                .map(|item| {
                    service_tasks
                        .iter()
                        .filter(|t| {
                            t.desired_status != TaskStatus::Stopped
                                && t.last_status != TaskStatus::Stopped
                                && t.capacity_provider_name.as_deref()
                                    == Some(item.capacity_provider.as_str())
                        })
                        .count() as u64
                })
                .collect();
            let req = tasks::RunTaskRequest::for_service(
                &current,
                d,
                launch.count,
                launch.instance_id.clone(),
                existing,
            );
            let start = launch.instance_id.is_some();
            match tasks::launch_any(&self.ecs, ctx, &req, start).await {
                Ok((started, failures, _)) => {
                    if !started.is_empty() {
                        events.push(format!(
                            "(service {}) has started {} tasks: {}.",
                            s.name,
                            started.len(),
                            started.iter().map(|t| format!("(task {})", t.id)).collect::<Vec<_>>().join(" ")
                        ));
                    }
                    if let Some(f) = failures.first() {
                        let reason = f.get("reason").and_then(|v| v.as_str()).unwrap_or("");
                        if reason == tasks::FARGATE_CAPACITY_UNAVAILABLE {
                            events.push(format!(
                                "(service {}) was unable to place a task. Reason: {reason}.",
                                s.name
                            ));
                            continue;
                        }
                        let arn = f.get("arn").and_then(|v| v.as_str()).unwrap_or("");
                        let instance = arn.rsplit('/').next().unwrap_or(arn);
                        // Gantry's addition: which requirement no instance meets.
                        let detail = f
                            .get("detail")
                            .and_then(|v| v.as_str())
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default();
                        events.push(format!(
                            "(service {}) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance {}) {}{detail}. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
                            s.name,
                            instance,
                            placement_detail(reason)
                        ));
                    }
                }
                Err(EcsError::InvalidParameter(m)) => events.push(format!(
                    "(service {}) was unable to place a task because no container instance met all of its requirements. Reason: {m}",
                    s.name
                )),
                Err(e) => return Err(e),
            }
        }
        if !events.is_empty() {
            self.append_events(ctx, &key, events).await?;
        }
        Ok(())
    }

    /// Adds events to a service, newest first, skipping a repeat of the newest one.
    async fn append_events(
        &self,
        ctx: &RequestContext,
        key: &str,
        events: Vec<String>,
    ) -> Result<(), EcsError> {
        crate::wire::commit_with_retry(self.ecs.store.as_ref(), || async {
            let Some(cur) = self.ecs.store.get_typed::<Service>(key).await? else {
                return Ok((Txn::new(), ()));
            };
            let mut s = cur.value.clone();
            let mut changed = false;
            for e in &events {
                if s.events.first().is_some_and(|x| &x.message == e) {
                    continue;
                }
                s.push_event(uuid::Uuid::new_v4().to_string(), ctx.now, e.clone());
                changed = true;
            }
            if !changed {
                return Ok((Txn::new(), ()));
            }
            let txn = Txn::new()
                .require_revision(key, cur.revision)
                .put(key, encode(key, &s)?);
            Ok((txn, ()))
        })
        .await
    }
}

/// Whether the tasks of `ci` are lost: its agent has been away for `lost_after`, or it was
/// deregistered (with `force`) while tasks were counted on it. A deregistered instance's agent
/// cannot reconnect, so its tasks, PROVISIONING ones included, would otherwise never stop.
fn lost(ci: &ContainerInstance, now: u64, lost_after: u64) -> bool {
    if ci.status == ContainerInstanceStatus::Inactive {
        return ci.running_tasks_count + ci.pending_tasks_count > 0;
    }
    !ci.agent_connected && ci.disconnected_at.is_some_and(|d| d + lost_after <= now)
}
