//! SSM Parameter Store (awsJson1.1, target prefix `AmazonSSM`, signing name `ssm`): String,
//! StringList and SecureString parameters with versions (up to 100), labels, hierarchies,
//! tiers, descriptions, allowed patterns and tags, over the Gantry store.
//!
//! - **Records**: one per parameter (every version's metadata and labels) and one per version
//!   holding its value; a SecureString value is only ever stored as KMS ciphertext, encrypted
//!   through [`ParameterCipher`] (the composition root implements it with `gantry-kms`; service
//!   crates never depend on each other) with the encryption context
//!   `{"PARAMETER_ARN": arn}`, under the parameter's key or the AWS-managed `alias/aws/ssm`
//!   (created on first use). Every write is one compare-and-swap transaction.
//! - **Reads** take `name`, `name:version`, `name:label` or the parameter's ARN; a SecureString
//!   is answered as ciphertext unless `WithDecryption` is set.
//! - **For tasks**: [`SsmService::get_parameters_for`] is GetParameters as a function (what the
//!   ECS agent calls for a container's `secrets`).
//!
//! Every operation of the SSM model is listed in [`SsmOperation`]; Gantry serves Parameter
//! Store and answers every other operation (documents, commands, sessions, patching,
//! automation, ...) with `UnsupportedOperationException`. The operation table with each
//! operation's IAM action and resource is [`authz::AUTHORIZATION`].
//!
//! Must not depend on Docker or any other service crate.

#[rustfmt::skip]
mod model_constraints;
pub mod authz;
mod error;
mod labels;
mod model;
mod params;
mod tags;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_front::{JsonService, Protocol, RequestContext, ServiceSpec};
use gantry_store::Store;
use serde_json::Value;

pub use error::SsmError;
pub use model::ParameterType;
pub use params::{GetParametersResult, ResolvedParameter};

/// The `X-Amz-Target` prefix of SSM.
pub const TARGET_PREFIX: &str = "AmazonSSM";

/// The AWS-managed key SecureStrings use when they name none.
pub const DEFAULT_KEY: &str = "alias/aws/ssm";

gantry_front::operations! {
    /// Every operation of the SSM API model.
    pub enum SsmOperation {
        AddTagsToResource,
        AssociateOpsItemRelatedItem,
        CancelCommand,
        CancelMaintenanceWindowExecution,
        CreateActivation,
        CreateAssociation,
        CreateAssociationBatch,
        CreateDocument,
        CreateMaintenanceWindow,
        CreateOpsItem,
        CreateOpsMetadata,
        CreatePatchBaseline,
        CreateResourceDataSync,
        DeleteActivation,
        DeleteAssociation,
        DeleteDocument,
        DeleteInventory,
        DeleteMaintenanceWindow,
        DeleteOpsItem,
        DeleteOpsMetadata,
        DeleteParameter,
        DeleteParameters,
        DeletePatchBaseline,
        DeleteResourceDataSync,
        DeleteResourcePolicy,
        DeregisterManagedInstance,
        DeregisterPatchBaselineForPatchGroup,
        DeregisterTargetFromMaintenanceWindow,
        DeregisterTaskFromMaintenanceWindow,
        DescribeActivations,
        DescribeAssociation,
        DescribeAssociationExecutionTargets,
        DescribeAssociationExecutions,
        DescribeAutomationExecutions,
        DescribeAutomationStepExecutions,
        DescribeAvailablePatches,
        DescribeDocument,
        DescribeDocumentPermission,
        DescribeEffectiveInstanceAssociations,
        DescribeEffectivePatchesForPatchBaseline,
        DescribeInstanceAssociationsStatus,
        DescribeInstanceInformation,
        DescribeInstancePatchStates,
        DescribeInstancePatchStatesForPatchGroup,
        DescribeInstancePatches,
        DescribeInstanceProperties,
        DescribeInventoryDeletions,
        DescribeMaintenanceWindowExecutionTaskInvocations,
        DescribeMaintenanceWindowExecutionTasks,
        DescribeMaintenanceWindowExecutions,
        DescribeMaintenanceWindowSchedule,
        DescribeMaintenanceWindowTargets,
        DescribeMaintenanceWindowTasks,
        DescribeMaintenanceWindows,
        DescribeMaintenanceWindowsForTarget,
        DescribeOpsItems,
        DescribeParameters,
        DescribePatchBaselines,
        DescribePatchGroupState,
        DescribePatchGroups,
        DescribePatchProperties,
        DescribeSessions,
        DisassociateOpsItemRelatedItem,
        GetAccessToken,
        GetAutomationExecution,
        GetCalendarState,
        GetCommandInvocation,
        GetConnectionStatus,
        GetDefaultPatchBaseline,
        GetDeployablePatchSnapshotForInstance,
        GetDocument,
        GetExecutionPreview,
        GetInventory,
        GetInventorySchema,
        GetMaintenanceWindow,
        GetMaintenanceWindowExecution,
        GetMaintenanceWindowExecutionTask,
        GetMaintenanceWindowExecutionTaskInvocation,
        GetMaintenanceWindowTask,
        GetOpsItem,
        GetOpsMetadata,
        GetOpsSummary,
        GetParameter,
        GetParameterHistory,
        GetParameters,
        GetParametersByPath,
        GetPatchBaseline,
        GetPatchBaselineForPatchGroup,
        GetResourcePolicies,
        GetServiceSetting,
        LabelParameterVersion,
        ListAssociationVersions,
        ListAssociations,
        ListCommandInvocations,
        ListCommands,
        ListComplianceItems,
        ListComplianceSummaries,
        ListDocumentMetadataHistory,
        ListDocumentVersions,
        ListDocuments,
        ListInventoryEntries,
        ListNodes,
        ListNodesSummary,
        ListOpsItemEvents,
        ListOpsItemRelatedItems,
        ListOpsMetadata,
        ListResourceComplianceSummaries,
        ListResourceDataSync,
        ListTagsForResource,
        ModifyDocumentPermission,
        PutComplianceItems,
        PutInventory,
        PutParameter,
        PutResourcePolicy,
        RegisterDefaultPatchBaseline,
        RegisterPatchBaselineForPatchGroup,
        RegisterTargetWithMaintenanceWindow,
        RegisterTaskWithMaintenanceWindow,
        RemoveTagsFromResource,
        ResetServiceSetting,
        ResumeSession,
        SendAutomationSignal,
        SendCommand,
        StartAccessRequest,
        StartAssociationsOnce,
        StartAutomationExecution,
        StartChangeRequestExecution,
        StartExecutionPreview,
        StartSession,
        StopAutomationExecution,
        TerminateSession,
        UnlabelParameterVersion,
        UpdateAssociation,
        UpdateAssociationStatus,
        UpdateDocument,
        UpdateDocumentDefaultVersion,
        UpdateDocumentMetadata,
        UpdateMaintenanceWindow,
        UpdateMaintenanceWindowTarget,
        UpdateMaintenanceWindowTask,
        UpdateManagedInstanceRole,
        UpdateOpsItem,
        UpdateOpsMetadata,
        UpdatePatchBaseline,
        UpdateResourceDataSync,
        UpdateServiceSetting,
    }
}

/// How the front reaches SSM.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "ssm",
    signing_name: "ssm",
    protocol: Protocol::Json {
        target_prefix: TARGET_PREFIX,
    },
    operations: SsmOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// An encryption context: `PARAMETER_ARN`.
pub type EncryptionContext = BTreeMap<String, String>;

/// Why KMS refused: its error code and message, or an internal failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFailure {
    pub code: String,
    pub message: String,
    /// The failure is KMS's own (its store), not the key's state or the caller's input.
    pub internal: bool,
}

/// How Parameter Store uses KMS keys. The composition root implements it over `gantry-kms`.
#[async_trait]
pub trait ParameterCipher: Send + Sync + fmt::Debug {
    /// Encrypts `plaintext` with `key` (key id, key ARN, alias name or alias ARN;
    /// [`DEFAULT_KEY`] is created on first use) bound to `context`; returns the ciphertext blob.
    async fn encrypt(
        &self,
        ctx: &RequestContext,
        key: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KeyFailure>;

    /// Decrypts a blob made by [`ParameterCipher::encrypt`] with the same context.
    async fn decrypt(
        &self,
        ctx: &RequestContext,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KeyFailure>;
}

/// The SSM service (Parameter Store).
pub struct SsmService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cipher: Arc<dyn ParameterCipher>,
    pub(crate) locks: wire::ParameterLocks,
}

impl fmt::Debug for SsmService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsmService")
            .field("store", &self.store)
            .field("cipher", &self.cipher)
            .finish()
    }
}

impl SsmService {
    pub fn new(store: Arc<dyn Store>, cipher: Arc<dyn ParameterCipher>) -> Self {
        Self {
            store,
            cipher,
            locks: wire::ParameterLocks::default(),
        }
    }

    /// Whether Gantry serves `op` (the rest answer `UnsupportedOperationException`).
    pub fn is_implemented(op: SsmOperation) -> bool {
        authz::AUTHORIZATION
            .binary_search_by(|(o, _, _)| o.cmp(&op.as_str()))
            .is_ok()
    }

    async fn dispatch(
        &self,
        op: SsmOperation,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, SsmError> {
        use SsmOperation::*;
        match op {
            PutParameter => params::put(self, body, ctx).await,
            GetParameter => params::get(self, body, ctx).await,
            GetParameters => params::get_many(self, body, ctx).await,
            GetParametersByPath => params::get_by_path(self, body, ctx).await,
            DeleteParameter => params::delete(self, body, ctx).await,
            DeleteParameters => params::delete_many(self, body, ctx).await,
            DescribeParameters => params::describe(self, body, ctx).await,
            GetParameterHistory => params::history(self, body, ctx).await,
            LabelParameterVersion => labels::label(self, body, ctx).await,
            UnlabelParameterVersion => labels::unlabel(self, body, ctx).await,
            AddTagsToResource => tags::add(self, body, ctx).await,
            RemoveTagsFromResource => tags::remove(self, body, ctx).await,
            ListTagsForResource => tags::list(self, body, ctx).await,
            other => Err(SsmError::UnsupportedOperation(format!(
                "The operation {other} is not supported by this endpoint. Of SSM, Gantry serves Parameter Store only (parameters, versions, labels, tags)."
            ))),
        }
    }

    /// GetParameters as a function: `names` (names, `name:version`, `name:label` or ARNs) with
    /// SecureStrings decrypted when `with_decryption`; names that do not exist come back in
    /// `invalid`. For resolving a task's `secrets`.
    pub async fn get_parameters_for(
        &self,
        ctx: &RequestContext,
        names: &[String],
        with_decryption: bool,
    ) -> Result<GetParametersResult, SsmError> {
        params::read_many(self, ctx, names, with_decryption).await
    }
}

#[async_trait]
impl JsonService for SsmService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        let Ok(op) = op.parse::<SsmOperation>() else {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("Unknown operation {TARGET_PREFIX}.{op}"),
            ));
        };
        self.dispatch(op, body, ctx).await.map_err(AwsError::from)
    }
}
