//! CodeDeploy for the ECS compute platform (awsJson1.1, target prefix `CodeDeploy_20141006`,
//! signing name `codedeploy`): applications, deployment configurations, deployment groups and
//! blue/green deployments of ECS services, over the Gantry store.
//!
//! - **Applications** (`computePlatform` `ECS`): create, get, batch get, list, delete. The
//!   `Server` and `Lambda` platforms answer `InvalidComputePlatformException`.
//! - **Deployment configurations**: the predefined ECS ones (`CodeDeployDefault.ECSAllAtOnce`,
//!   `ECSLinear10PercentEvery1Minutes`/`3Minutes`, `ECSCanary10Percent5Minutes`/`15Minutes`)
//!   and custom ECS ones with a `TimeBasedCanary`, `TimeBasedLinear` or `AllAtOnce`
//!   `trafficRoutingConfig`, validated as CodeDeploy validates them.
//!
//! - **Deployment groups** (`groups.rs`): one ECS service with the CODE_DEPLOY deployment
//!   controller, a target group pair with its production (and test) listener, the blue/green
//!   settings (`terminationWaitTimeInMinutes`, `deploymentReadyOption`) and automatic rollback.
//! - **Deployments** (`deployments.rs`): CreateDeployment with an AppSpec (`appspec.rs`, YAML or
//!   JSON), Get/BatchGet/List, StopDeployment with rollback, ContinueDeployment, the ECS
//!   deployment target; the [`DeploymentRunner`] (`runner.rs`) creates the replacement task set,
//!   shifts the listeners' weights as the configuration says and removes the original.
//!
//! ECS and ELBv2 are reached through the [`Platform`] trait, which the composition root
//! implements. Every operation of the CodeDeploy model is listed in [`CodeDeployOperation`];
//! the operations Gantry does not serve (on-premises instances, revisions, GitHub tokens, tags,
//! lifecycle hook status) answer `UnsupportedOperationException`. The operation table with each
//! operation's IAM action is [`authz::AUTHORIZATION`].
//!
//! Must not depend on Docker or any other service crate.

#[rustfmt::skip]
pub mod model_constraints;
mod apps;
mod appspec;
pub mod authz;
mod configs;
mod deployments;
mod error;
mod groups;
pub mod platform;
pub mod runner;
mod wire;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_front::{JsonService, Protocol, RequestContext, ServiceSpec};
use gantry_store::Store;
use serde_json::Value;

pub use error::CodeDeployError;
pub use platform::{Platform, PlatformError};
pub use runner::DeploymentRunner;

/// The `X-Amz-Target` prefix of CodeDeploy.
pub const TARGET_PREFIX: &str = "CodeDeploy_20141006";

gantry_front::operations! {
    /// Every operation of the CodeDeploy API model.
    pub enum CodeDeployOperation {
        AddTagsToOnPremisesInstances,
        BatchGetApplicationRevisions,
        BatchGetApplications,
        BatchGetDeploymentGroups,
        BatchGetDeploymentInstances,
        BatchGetDeploymentTargets,
        BatchGetDeployments,
        BatchGetOnPremisesInstances,
        ContinueDeployment,
        CreateApplication,
        CreateDeployment,
        CreateDeploymentConfig,
        CreateDeploymentGroup,
        DeleteApplication,
        DeleteDeploymentConfig,
        DeleteDeploymentGroup,
        DeleteGitHubAccountToken,
        DeleteResourcesByExternalId,
        DeregisterOnPremisesInstance,
        GetApplication,
        GetApplicationRevision,
        GetDeployment,
        GetDeploymentConfig,
        GetDeploymentGroup,
        GetDeploymentInstance,
        GetDeploymentTarget,
        GetOnPremisesInstance,
        ListApplicationRevisions,
        ListApplications,
        ListDeploymentConfigs,
        ListDeploymentGroups,
        ListDeploymentInstances,
        ListDeploymentTargets,
        ListDeployments,
        ListGitHubAccountTokenNames,
        ListOnPremisesInstances,
        ListTagsForResource,
        PutLifecycleEventHookExecutionStatus,
        RegisterApplicationRevision,
        RegisterOnPremisesInstance,
        RemoveTagsFromOnPremisesInstances,
        SkipWaitTimeForInstanceTermination,
        StopDeployment,
        TagResource,
        UntagResource,
        UpdateApplication,
        UpdateDeploymentGroup,
    }
}

/// How the front reaches CodeDeploy.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "codedeploy",
    signing_name: "codedeploy",
    protocol: Protocol::Json {
        target_prefix: TARGET_PREFIX,
    },
    operations: CodeDeployOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// The CodeDeploy service.
pub struct CodeDeployService {
    pub(crate) store: Arc<dyn Store>,
    platform: Option<Arc<dyn Platform>>,
}

impl fmt::Debug for CodeDeployService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeDeployService")
            .field("store", &self.store)
            .field("platform", &self.platform.is_some())
            .finish()
    }
}

impl CodeDeployService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            platform: None,
        }
    }

    /// Connects deployment groups and deployments to ECS and ELBv2.
    pub fn with_platform(mut self, platform: Arc<dyn Platform>) -> Self {
        self.platform = Some(platform);
        self
    }

    pub(crate) fn platform(&self) -> Result<&Arc<dyn Platform>, CodeDeployError> {
        self.platform.as_ref().ok_or_else(|| {
            CodeDeployError::UnsupportedOperation(
                "This server runs CodeDeploy without ECS and ELBv2: deployment groups and deployments are not available.".to_owned(),
            )
        })
    }

    /// Whether Gantry serves `op` (the rest answer `UnsupportedOperationException`).
    pub fn is_implemented(op: CodeDeployOperation) -> bool {
        authz::AUTHORIZATION
            .binary_search_by(|(o, _)| o.cmp(&op.as_str()))
            .is_ok()
    }

    async fn dispatch(
        &self,
        op: CodeDeployOperation,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, CodeDeployError> {
        use CodeDeployOperation::*;
        match op {
            CreateApplication => apps::create(self, body, ctx).await,
            GetApplication => apps::get(self, body, ctx).await,
            BatchGetApplications => apps::batch_get(self, body, ctx).await,
            ListApplications => apps::list(self, body, ctx).await,
            DeleteApplication => apps::delete(self, body, ctx).await,
            CreateDeploymentConfig => configs::create(self, body, ctx).await,
            GetDeploymentConfig => configs::get(self, body, ctx).await,
            ListDeploymentConfigs => configs::list(self, body, ctx).await,
            DeleteDeploymentConfig => configs::delete(self, body, ctx).await,
            CreateDeploymentGroup => groups::create(self, body, ctx).await,
            GetDeploymentGroup => groups::get(self, body, ctx).await,
            BatchGetDeploymentGroups => groups::batch_get(self, body, ctx).await,
            ListDeploymentGroups => groups::list(self, body, ctx).await,
            UpdateDeploymentGroup => groups::update(self, body, ctx).await,
            DeleteDeploymentGroup => groups::delete(self, body, ctx).await,
            CreateDeployment => deployments::create(self, body, ctx).await,
            GetDeployment => deployments::get(self, body, ctx).await,
            BatchGetDeployments => deployments::batch_get(self, body, ctx).await,
            ListDeployments => deployments::list(self, body, ctx).await,
            StopDeployment => deployments::stop(self, body, ctx).await,
            ContinueDeployment => deployments::continue_deployment(self, body, ctx).await,
            GetDeploymentTarget => deployments::get_target(self, body, ctx).await,
            ListDeploymentTargets => deployments::list_targets(self, body, ctx).await,
            other => Err(CodeDeployError::UnsupportedOperation(format!(
                "The operation {other} is not supported by this endpoint. Of CodeDeploy, Gantry serves applications, deployment configurations, deployment groups and deployments for the ECS compute platform."
            ))),
        }
    }
}

#[async_trait]
impl JsonService for CodeDeployService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        let Ok(op) = op.parse::<CodeDeployOperation>() else {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("Unknown operation {TARGET_PREFIX}.{op}"),
            ));
        };
        self.dispatch(op, body, ctx).await.map_err(AwsError::from)
    }
}
