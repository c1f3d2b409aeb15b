//! The ECS API (`AmazonEC2ContainerServiceV20141113`): every operation of the model is listed in
//! [`EcsOperation`]; the implemented ones live in one module per resource. Beside the API:
//!
//! - [`agent_stream`]: the assignment stream agents hold open (`GET /agent/v1/connect`);
//! - [`service_runner`]: the controller loop that applies the service reconciler's plans, launching
//!   and stopping tasks through the same code as RunTask and StopTask, and instance liveness;
//! - [`service_lb`]: load-balancer registration of service tasks, over the [`service_lb::TargetGroups`]
//!   trait the composition root implements (this crate never depends on the ELBv2 crate);
//! - [`task_network`]: awsvpc tasks' network configuration and interfaces, over the
//!   [`task_network::TaskNetworks`] trait the composition root implements over EC2.
//!
//! A service crate: depends on the front, the wire layer, the domain, the store, the scheduler and
//! the controller; never on another service crate, Docker or the load balancer.

pub mod admin;
pub mod agent_stream;
#[rustfmt::skip]
mod model_constraints;
mod cache;
mod capacity_providers;
mod cluster_view;
mod clusters;
mod container_instances;
mod deployment_strategy;
mod error;
pub(crate) mod keys;
mod locks;
pub mod managed_scaling;
mod placement;
mod placement_queue;
mod service_deployments;
pub mod service_lb;
pub mod service_runner;
mod services;
mod tags;
mod task_definitions;
pub mod task_network;
pub mod task_secrets;
mod task_sets;
mod tasks;
pub mod telemetry;
mod wire;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_front::{IdGen, JsonService, Protocol, RequestContext, ServiceSpec};
use gantry_store::Store;
use serde_json::Value;

pub use error::EcsError;

use crate::locks::KeyedLocks;

/// The `X-Amz-Target` prefix of ECS.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// How the front reaches ECS.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "ecs",
    signing_name: "ecs",
    protocol: Protocol::Json {
        target_prefix: TARGET_PREFIX,
    },
    operations: EcsOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

gantry_front::operations! {
/// Every operation of the ECS API model.
pub enum EcsOperation {
AssociateGatewayWithCluster,
ContinueServiceDeployment,
CreateCapacityProvider,
CreateCluster,
CreateDaemon,
CreateExpressGatewayService,
CreateGateway,
CreateService,
CreateTaskSet,
DeleteAccountSetting,
DeleteAttributes,
DeleteCapacityProvider,
DeleteCluster,
DeleteDaemon,
DeleteDaemonTaskDefinition,
DeleteExpressGatewayService,
DeleteGateway,
DeleteService,
DeleteTaskDefinitions,
DeleteTaskSet,
DeregisterContainerInstance,
DeregisterTaskDefinition,
DescribeCapacityProviders,
DescribeClusters,
DescribeContainerInstances,
DescribeDaemon,
DescribeDaemonDeployments,
DescribeDaemonRevisions,
DescribeDaemonTaskDefinition,
DescribeExpressGatewayService,
DescribeGateway,
DescribeGatewayResources,
DescribeGatewayRoute,
DescribeServiceDeployments,
DescribeServiceRevisions,
DescribeServices,
DescribeTaskDefinition,
DescribeTaskSets,
DescribeTasks,
DisassociateGatewayFromCluster,
DiscoverPollEndpoint,
ExecuteCommand,
GetTaskProtection,
ListAccountSettings,
ListAttributes,
ListClusters,
ListContainerInstances,
ListDaemonDeployments,
ListDaemonTaskDefinitions,
ListDaemons,
ListGatewayClusterAssociations,
ListGatewayRoutes,
ListGateways,
ListServiceDeployments,
ListServices,
ListServicesByNamespace,
ListTagsForResource,
ListTaskDefinitionFamilies,
ListTaskDefinitions,
ListTasks,
PutAccountSetting,
PutAccountSettingDefault,
PutAttributes,
PutClusterCapacityProviders,
RegisterContainerInstance,
RegisterDaemonTaskDefinition,
RegisterTaskDefinition,
RunTask,
StartTask,
StopServiceDeployment,
StopTask,
SubmitAttachmentStateChanges,
SubmitContainerStateChange,
SubmitTaskStateChange,
TagResource,
UntagResource,
UpdateCapacityProvider,
UpdateCluster,
UpdateClusterSettings,
UpdateContainerAgent,
UpdateContainerInstancesState,
UpdateDaemon,
UpdateExpressGatewayService,
UpdateGateway,
UpdateService,
UpdateServicePrimaryTaskSet,
UpdateTaskProtection,
UpdateTaskSet,
}
}

/// The ECS service: state in the store, ids from the generator.
pub struct EcsService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ids: Arc<dyn IdGen>,
    pub(crate) locks: KeyedLocks,
    /// Decoded container instances and tasks, reused while their revision is unchanged.
    pub(crate) cache: cache::RecordCache,
    /// Each cluster's placement queue and in-memory view.
    pub(crate) placement: placement_queue::PlacementQueues,
    /// EC2's subnets, groups and interfaces, for awsvpc tasks.
    pub(crate) networks: Option<Arc<dyn task_network::TaskNetworks>>,
    /// ELBv2's target groups, for CreateService/UpdateService checks.
    pub(crate) target_groups: Option<Arc<dyn service_lb::TargetGroups>>,
    /// Host paths and privileged settings RegisterTaskDefinition accepts.
    pub(crate) host_access: gantry_domain::task_definition::HostAccess,
}

impl fmt::Debug for EcsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsService")
            .field("store", &self.store)
            .finish()
    }
}

impl EcsService {
    pub fn new(store: Arc<dyn Store>, ids: Arc<dyn IdGen>) -> Self {
        Self {
            store,
            ids,
            locks: KeyedLocks::default(),
            cache: Default::default(),
            placement: Default::default(),
            networks: None,
            target_groups: None,
            host_access: Default::default(),
        }
    }

    /// What task definitions may take from the host (default: Docker volumes only).
    pub fn with_host_access(mut self, access: gantry_domain::task_definition::HostAccess) -> Self {
        self.host_access = access;
        self
    }

    /// Checks services' `loadBalancers` against ELBv2's target groups.
    pub fn with_target_groups(mut self, groups: Arc<dyn service_lb::TargetGroups>) -> Self {
        self.target_groups = Some(groups);
        self
    }

    /// Serves the awsvpc network mode with EC2's subnets, groups and interfaces.
    pub fn with_networks(mut self, networks: Arc<dyn task_network::TaskNetworks>) -> Self {
        self.networks = Some(networks);
        self
    }

    /// Whether Gantry serves `op` (the rest answer `UnsupportedFeatureException`).
    pub fn is_implemented(op: EcsOperation) -> bool {
        use EcsOperation::*;
        matches!(
            op,
            CreateCluster
                | DescribeClusters
                | ListClusters
                | DeleteCluster
                | UpdateCluster
                | UpdateClusterSettings
                | RegisterTaskDefinition
                | DescribeTaskDefinition
                | ListTaskDefinitions
                | ListTaskDefinitionFamilies
                | DeregisterTaskDefinition
                | DeleteTaskDefinitions
                | RegisterContainerInstance
                | DeregisterContainerInstance
                | DescribeContainerInstances
                | ListContainerInstances
                | UpdateContainerInstancesState
                | PutAttributes
                | DeleteAttributes
                | ListAttributes
                | TagResource
                | UntagResource
                | ListTagsForResource
                | RunTask
                | StartTask
                | StopTask
                | DescribeTasks
                | ListTasks
                | SubmitTaskStateChange
                | SubmitContainerStateChange
                | CreateService
                | UpdateService
                | DeleteService
                | DescribeServices
                | ListServices
                | ListServiceDeployments
                | DescribeServiceDeployments
                | StopServiceDeployment
                | ContinueServiceDeployment
                | CreateTaskSet
                | UpdateTaskSet
                | DeleteTaskSet
                | DescribeTaskSets
                | UpdateServicePrimaryTaskSet
                | DescribeCapacityProviders
                | PutClusterCapacityProviders
                | CreateCapacityProvider
                | UpdateCapacityProvider
                | DeleteCapacityProvider
        )
    }

    async fn dispatch(
        &self,
        op: EcsOperation,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, EcsError> {
        use EcsOperation::*;
        match op {
            CreateCluster => clusters::create(self, body, ctx).await,
            DescribeClusters => clusters::describe(self, body, ctx).await,
            ListClusters => clusters::list(self, body, ctx).await,
            DeleteCluster => clusters::delete(self, body, ctx).await,
            UpdateCluster => clusters::update(self, body, ctx).await,
            UpdateClusterSettings => clusters::update_settings(self, body, ctx).await,
            RegisterTaskDefinition => task_definitions::register(self, body, ctx).await,
            DescribeTaskDefinition => task_definitions::describe(self, body, ctx).await,
            ListTaskDefinitions => task_definitions::list(self, body, ctx).await,
            ListTaskDefinitionFamilies => task_definitions::list_families(self, body, ctx).await,
            DeregisterTaskDefinition => task_definitions::deregister(self, body, ctx).await,
            DeleteTaskDefinitions => task_definitions::delete(self, body, ctx).await,
            RegisterContainerInstance => container_instances::register(self, body, ctx).await,
            DeregisterContainerInstance => container_instances::deregister(self, body, ctx).await,
            DescribeContainerInstances => container_instances::describe(self, body, ctx).await,
            ListContainerInstances => container_instances::list(self, body, ctx).await,
            UpdateContainerInstancesState => {
                container_instances::update_state(self, body, ctx).await
            }
            PutAttributes => container_instances::put_attributes_op(self, body, ctx).await,
            DeleteAttributes => container_instances::delete_attributes(self, body, ctx).await,
            ListAttributes => container_instances::list_attributes(self, body, ctx).await,
            TagResource => tags::tag(self, body, ctx).await,
            UntagResource => tags::untag(self, body, ctx).await,
            ListTagsForResource => tags::list(self, body, ctx).await,
            RunTask => tasks::run(self, body, ctx).await,
            StartTask => tasks::start(self, body, ctx).await,
            StopTask => tasks::stop(self, body, ctx).await,
            DescribeTasks => tasks::describe(self, body, ctx).await,
            ListTasks => tasks::list(self, body, ctx).await,
            SubmitTaskStateChange => tasks::submit_task_state_change(self, body, ctx).await,
            SubmitContainerStateChange => {
                tasks::submit_container_state_change(self, body, ctx).await
            }
            CreateService => services::create(self, body, ctx).await,
            UpdateService => services::update(self, body, ctx).await,
            DeleteService => services::delete(self, body, ctx).await,
            DescribeServices => services::describe(self, body, ctx).await,
            ListServices => services::list(self, body, ctx).await,
            ListServiceDeployments => service_deployments::list(self, body, ctx).await,
            DescribeServiceDeployments => service_deployments::describe(self, body, ctx).await,
            StopServiceDeployment => service_deployments::stop(self, body, ctx).await,
            ContinueServiceDeployment => service_deployments::continue_(self, body, ctx).await,
            CreateTaskSet => task_sets::create(self, body, ctx).await,
            UpdateTaskSet => task_sets::update(self, body, ctx).await,
            DeleteTaskSet => task_sets::delete(self, body, ctx).await,
            DescribeTaskSets => task_sets::describe(self, body, ctx).await,
            UpdateServicePrimaryTaskSet => task_sets::update_primary(self, body, ctx).await,
            DescribeCapacityProviders => capacity_providers::describe(self, body, ctx).await,
            PutClusterCapacityProviders => capacity_providers::put_cluster(self, body, ctx).await,
            CreateCapacityProvider => capacity_providers::create(self, body, ctx).await,
            UpdateCapacityProvider => capacity_providers::update(self, body, ctx).await,
            DeleteCapacityProvider => capacity_providers::delete(self, body, ctx).await,
            other => Err(EcsError::Unsupported(format!(
                "The operation {other} is not supported by this endpoint."
            ))),
        }
    }
}

impl EcsService {
    /// The task-set operations as CodeDeploy calls them on a service with the CODE_DEPLOY
    /// deployment controller (what the task-set API refuses to other callers):
    /// `CreateTaskSet`, `UpdateTaskSet`, `DeleteTaskSet`, `DescribeTaskSets`,
    /// `UpdateServicePrimaryTaskSet`, and `DescribeServices`. The composition root gives this to
    /// CodeDeploy; it is not reachable over the wire.
    pub async fn call_as_code_deploy(
        &self,
        op: &str,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, AwsError> {
        use EcsOperation::*;
        let result = match op.parse::<EcsOperation>() {
            Ok(CreateTaskSet) => task_sets::create_as_code_deploy(self, body, ctx).await,
            Ok(UpdateTaskSet) => task_sets::update_as_code_deploy(self, body, ctx).await,
            Ok(DeleteTaskSet) => task_sets::delete_as_code_deploy(self, body, ctx).await,
            Ok(DescribeTaskSets) => task_sets::describe_as_code_deploy(self, body, ctx).await,
            Ok(UpdateServicePrimaryTaskSet) => {
                task_sets::update_primary_as_code_deploy(self, body, ctx).await
            }
            Ok(DescribeServices) => services::describe(self, body, ctx).await,
            _ => Err(EcsError::Unsupported(format!(
                "{op} is not one of the operations CodeDeploy calls."
            ))),
        };
        result.map_err(AwsError::from)
    }
}

#[async_trait]
impl JsonService for EcsService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        let Ok(op) = op.parse::<EcsOperation>() else {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("Unknown operation {TARGET_PREFIX}.{op}"),
            ));
        };
        self.dispatch(op, body, ctx).await.map_err(AwsError::from)
    }

    async fn call_serialized(
        &self,
        op: &str,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Vec<u8>, AwsError> {
        if op == "DescribeTasks" {
            return tasks::describe_serialized(self, body, ctx)
                .await
                .map_err(AwsError::from);
        }
        self.call(op, body, ctx)
            .await
            .map(|v| v.to_string().into_bytes())
    }
}

/// The availability zones the container instances of `region` report (any cluster, any status
/// but INACTIVE), for the default subnets EC2 keeps one per zone.
pub async fn availability_zones(
    store: &dyn Store,
    region: &str,
) -> Result<Vec<String>, gantry_store::StoreError> {
    use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
    use gantry_store::StoreExt;
    let mut zones: Vec<String> = store
        .scan_all_typed::<ContainerInstance>(&format!("ecs/{region}/instance/"))
        .await?
        .into_iter()
        .filter(|ci| ci.value.status != ContainerInstanceStatus::Inactive)
        .filter_map(|ci| {
            ci.value
                .attribute("ecs.availability-zone")
                .map(str::to_owned)
        })
        .collect();
    zones.sort();
    zones.dedup();
    Ok(zones)
}

/// Removes STOPPED tasks whose `stoppedAt` is older than `retention_ms` (ECS keeps stopped tasks
/// describable for at least an hour). Returns how many were removed.
pub async fn collect_stopped_tasks(
    store: &dyn Store,
    now_ms: u64,
    retention_ms: u64,
) -> Result<usize, gantry_store::StoreError> {
    use gantry_domain::task::{Task, TaskStatus};
    let mut removed = 0;
    let mut start_after: Option<String> = None;
    loop {
        let page = store.scan("ecs/", start_after.as_deref(), 1000).await?;
        for rec in &page.records {
            // ecs/<region>/task/<cluster>/<id>
            if rec.key.split('/').nth(2) != Some("task") {
                continue;
            }
            let Ok(t) = gantry_store::decode::<Task>(rec) else {
                continue;
            };
            let expired = t.value.last_status == TaskStatus::Stopped
                && t.value
                    .stopped_at
                    .is_some_and(|s| s + retention_ms < now_ms);
            if expired {
                let txn = gantry_store::Txn::new()
                    .require_revision(&rec.key, rec.revision)
                    .delete(&rec.key);
                if store.commit(txn).await?.is_committed() {
                    removed += 1;
                }
            }
        }
        match page.next {
            Some(n) => start_after = Some(n),
            None => return Ok(removed),
        }
    }
}
