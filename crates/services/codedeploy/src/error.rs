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
