//! CodeDeploy errors and their one mapping to AWS error codes.

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// Why a CodeDeploy operation failed. Each variant carries CodeDeploy's message.
#[derive(Debug, thiserror::Error)]
pub enum CodeDeployError {
    #[error("{0}")]
    ApplicationNameRequired(String),
    #[error("{0}")]
    ApplicationAlreadyExists(String),
    #[error("{0}")]
    ApplicationDoesNotExist(String),
    #[error("{0}")]
    InvalidComputePlatform(String),
    #[error("{0}")]
    InvalidTagsToAdd(String),
    #[error("{0}")]
    BatchLimitExceeded(String),
    #[error("{0}")]
    DeploymentConfigNameRequired(String),
    #[error("{0}")]
    DeploymentConfigAlreadyExists(String),
    #[error("{0}")]
    DeploymentConfigDoesNotExist(String),
    #[error("{0}")]
    InvalidMinimumHealthyHostValue(String),
    #[error("{0}")]
    InvalidTrafficRoutingConfiguration(String),
    #[error("{0}")]
    InvalidZonalDeploymentConfiguration(String),
    #[error("{0}")]
    InvalidOperation(String),
    #[error("{0}")]
    InvalidNextToken(String),
    /// When a deployment group name is missing.
    #[error("{0}")]
    DeploymentGroupNameRequired(String),
    /// When a deployment group of that name exists in the application.
    #[error("{0}")]
    DeploymentGroupAlreadyExists(String),
    /// When no deployment group of that name in the application.
    #[error("{0}")]
    DeploymentGroupDoesNotExist(String),
    /// When the ECS service named is missing, not CODE_DEPLOY, or already in a deployment group.
    #[error("{0}")]
    InvalidEcsService(String),
    /// When the ECS service already belongs to another deployment group.
    #[error("{0}")]
    EcsServiceMappingLimitExceeded(String),
    /// When the target group pair or its listeners are wrong.
    #[error("{0}")]
    InvalidTargetGroupPair(String),
    /// When loadBalancerInfo is missing or has members the ECS platform does not take.
    #[error("{0}")]
    InvalidLoadBalancerInfo(String),
    /// When deploymentStyle is not BLUE_GREEN with WITH_TRAFFIC_CONTROL.
    #[error("{0}")]
    InvalidDeploymentStyle(String),
    /// When blueGreenDeploymentConfiguration is missing or out of range.
    #[error("{0}")]
    InvalidBlueGreenDeploymentConfiguration(String),
    /// When autoRollbackConfiguration names unknown events or none.
    #[error("{0}")]
    InvalidAutoRollbackConfig(String),
    /// When serviceRoleArn is missing.
    #[error("{0}")]
    RoleRequired(String),
    /// When serviceRoleArn is not an IAM role ARN.
    #[error("{0}")]
    InvalidRole(String),
    /// When EC2 tag filters were given (EC2/on-premises platform only).
    #[error("{0}")]
    InvalidEc2Tag(String),
    /// When Auto Scaling groups were given (EC2 platform only).
    #[error("{0}")]
    InvalidAutoScalingGroup(String),
    /// When on-premises tag filters were given.
    #[error("{0}")]
    InvalidTag(String),
    /// When trigger configurations were given (not served).
    #[error("{0}")]
    InvalidTriggerConfig(String),
    /// When an enabled alarm configuration was given (not served).
    #[error("{0}")]
    InvalidAlarmConfig(String),
    /// When CreateDeployment without a revision.
    #[error("{0}")]
    RevisionRequired(String),
    /// When the revision is not an AppSpec Gantry can run.
    #[error("{0}")]
    InvalidRevision(String),
    /// When the description is over 512 characters.
    #[error("{0}")]
    DescriptionTooLong(String),
    /// When the deployment group already has an active deployment.
    #[error("{0}")]
    DeploymentLimitExceeded(String),
    /// When a deployment id is missing.
    #[error("{0}")]
    DeploymentIdRequired(String),
    /// When a deployment id is malformed.
    #[error("{0}")]
    InvalidDeploymentId(String),
    /// When no deployment has that id.
    #[error("{0}")]
    DeploymentDoesNotExist(String),
    /// When the deployment has finished.
    #[error("{0}")]
    DeploymentAlreadyCompleted(String),
    /// When ContinueDeployment on a deployment that is not waiting.
    #[error("{0}")]
    DeploymentIsNotInReadyState(String),
    /// When deploymentWaitType is not READY_WAIT or TERMINATION_WAIT.
    #[error("{0}")]
    InvalidDeploymentWaitType(String),
    /// When includeOnlyStatuses names an unknown status.
    #[error("{0}")]
    InvalidDeploymentStatus(String),
    /// When createTimeRange has start after end.
    #[error("{0}")]
    InvalidTimeRange(String),
    /// When the deployment has no target yet.
    #[error("{0}")]
    DeploymentNotStarted(String),
    /// When a target id is missing.
    #[error("{0}")]
    DeploymentTargetIdRequired(String),
    /// When the deployment has no target of that id.
    #[error("{0}")]
    DeploymentTargetDoesNotExist(String),
    /// When an input the ECS compute platform does not take.
    #[error("{0}")]
    InvalidInput(String),
    /// An operation of the CodeDeploy model Gantry does not serve.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The request body could not be read (already AWS-shaped).
    #[error("{}", .0.message)]
    Wire(AwsError),
    /// The store failed; nothing was applied.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
}

impl CodeDeployError {
    /// The AWS `__type` for this error.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::ApplicationNameRequired(_) => "ApplicationNameRequiredException",
            Self::ApplicationAlreadyExists(_) => "ApplicationAlreadyExistsException",
            Self::ApplicationDoesNotExist(_) => "ApplicationDoesNotExistException",
            Self::InvalidComputePlatform(_) => "InvalidComputePlatformException",
            Self::InvalidTagsToAdd(_) => "InvalidTagsToAddException",
            Self::BatchLimitExceeded(_) => "BatchLimitExceededException",
            Self::DeploymentConfigNameRequired(_) => "DeploymentConfigNameRequiredException",
            Self::DeploymentConfigAlreadyExists(_) => "DeploymentConfigAlreadyExistsException",
            Self::DeploymentConfigDoesNotExist(_) => "DeploymentConfigDoesNotExistException",
            Self::InvalidMinimumHealthyHostValue(_) => "InvalidMinimumHealthyHostValueException",
            Self::InvalidTrafficRoutingConfiguration(_) => {
                "InvalidTrafficRoutingConfigurationException"
            }
            Self::InvalidZonalDeploymentConfiguration(_) => {
                "InvalidZonalDeploymentConfigurationException"
            }
            Self::InvalidOperation(_) => "InvalidOperationException",
            Self::InvalidNextToken(_) => "InvalidNextTokenException",
            Self::DeploymentGroupNameRequired(_) => "DeploymentGroupNameRequiredException",
            Self::DeploymentGroupAlreadyExists(_) => "DeploymentGroupAlreadyExistsException",
            Self::DeploymentGroupDoesNotExist(_) => "DeploymentGroupDoesNotExistException",
            Self::InvalidEcsService(_) => "InvalidECSServiceException",
            Self::EcsServiceMappingLimitExceeded(_) => "ECSServiceMappingLimitExceededException",
            Self::InvalidTargetGroupPair(_) => "InvalidTargetGroupPairException",
            Self::InvalidLoadBalancerInfo(_) => "InvalidLoadBalancerInfoException",
            Self::InvalidDeploymentStyle(_) => "InvalidDeploymentStyleException",
            Self::InvalidBlueGreenDeploymentConfiguration(_) => {
                "InvalidBlueGreenDeploymentConfigurationException"
            }
            Self::InvalidAutoRollbackConfig(_) => "InvalidAutoRollbackConfigException",
            Self::RoleRequired(_) => "RoleRequiredException",
            Self::InvalidRole(_) => "InvalidRoleException",
            Self::InvalidEc2Tag(_) => "InvalidEC2TagException",
            Self::InvalidAutoScalingGroup(_) => "InvalidAutoScalingGroupException",
            Self::InvalidTag(_) => "InvalidTagException",
            Self::InvalidTriggerConfig(_) => "InvalidTriggerConfigException",
            Self::InvalidAlarmConfig(_) => "InvalidAlarmConfigException",
            Self::RevisionRequired(_) => "RevisionRequiredException",
            Self::InvalidRevision(_) => "InvalidRevisionException",
            Self::DescriptionTooLong(_) => "DescriptionTooLongException",
            Self::DeploymentLimitExceeded(_) => "DeploymentLimitExceededException",
            Self::DeploymentIdRequired(_) => "DeploymentIdRequiredException",
            Self::InvalidDeploymentId(_) => "InvalidDeploymentIdException",
            Self::DeploymentDoesNotExist(_) => "DeploymentDoesNotExistException",
            Self::DeploymentAlreadyCompleted(_) => "DeploymentAlreadyCompletedException",
            Self::DeploymentIsNotInReadyState(_) => "DeploymentIsNotInReadyStateException",
            Self::InvalidDeploymentWaitType(_) => "InvalidDeploymentWaitTypeException",
            Self::InvalidDeploymentStatus(_) => "InvalidDeploymentStatusException",
            Self::InvalidTimeRange(_) => "InvalidTimeRangeException",
            Self::DeploymentNotStarted(_) => "DeploymentNotStartedException",
            Self::DeploymentTargetIdRequired(_) => "DeploymentTargetIdRequiredException",
            Self::DeploymentTargetDoesNotExist(_) => "DeploymentTargetDoesNotExistException",
            Self::InvalidInput(_) => "InvalidInputException",
            Self::UnsupportedOperation(_) => "UnsupportedOperationException",
            Self::Wire(_) => "SerializationException",
            Self::Store(_) => "InternalFailure",
        }
    }
}

impl From<AwsError> for CodeDeployError {
    fn from(e: AwsError) -> Self {
        Self::Wire(e)
    }
}

impl From<CodeDeployError> for AwsError {
    fn from(e: CodeDeployError) -> Self {
        match e {
            CodeDeployError::Wire(w) => w,
            CodeDeployError::Store(_) => {
                tracing::error!(error = %e, "internal failure");
                AwsError::client(
                    e.aws_code(),
                    "An error occurred on the server side; the request was not applied.",
                )
                .with_status(http::StatusCode::INTERNAL_SERVER_ERROR)
            }
            other => AwsError::client(other.aws_code(), other.to_string()),
        }
    }
}
