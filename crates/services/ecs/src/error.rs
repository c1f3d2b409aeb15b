//! ECS errors and their one mapping to AWS error codes.

use gantry_aws_proto::AwsError;
use gantry_domain::ValidationError;
use gantry_store::StoreError;

/// Why an ECS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    /// The named cluster does not exist (or is INACTIVE where an ACTIVE one is needed).
    #[error("Cluster not found.")]
    ClusterNotFound,
    /// A request parameter is invalid.
    #[error("{0}")]
    InvalidParameter(String),
    /// The request cannot be served as asked (task definition content, unknown task definition).
    #[error("{0}")]
    Client(String),
    /// DeleteCluster while container instances are registered.
    #[error("The Cluster cannot be deleted while Container Instances are active or draining.")]
    ClusterContainsContainerInstances,
    /// DeleteCluster while services are active.
    #[error("The Cluster cannot be deleted while Services are active.")]
    ClusterContainsServices,
    /// DeleteCluster while tasks are running or pending.
    #[error("The Cluster cannot be deleted while Tasks are active.")]
    ClusterContainsTasks,
    /// The named service does not exist.
    #[error("Service not found.")]
    ServiceNotFound,
    /// The service is DRAINING or INACTIVE.
    #[error("Service was not ACTIVE.")]
    ServiceNotActive,
    /// A tagged resource does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The target of an attribute operation does not exist.
    #[error("{0}")]
    TargetNotFound(String),
    /// Too many attributes on one resource.
    #[error("{0}")]
    AttributeLimitExceeded(String),
    /// The resource is in use (a capacity provider a task or service uses).
    #[error("{0}")]
    ResourceInUse(String),
    /// The service deployment an ARN names does not exist.
    #[error("{0}")]
    ServiceDeploymentNotFound(String),
    /// The task set a request names does not exist.
    #[error("{0}")]
    TaskSetNotFound(String),
    /// The service deployment is not in a state the operation applies to.
    #[error("{0}")]
    Conflict(String),
    /// UpdateContainerAgent: agents are updated with the binary, not by the control plane.
    #[error("{0}")]
    NoUpdateAvailable(String),
    /// An operation of the ECS model that is not served.
    #[error("{0}")]
    Unsupported(String),
    /// The request body could not be read (already AWS-shaped).
    #[error("{}", .0.message)]
    Wire(AwsError),
    /// The store failed; the request was not applied.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// Compare-and-swap kept conflicting.
    #[error("too much contention on {0}")]
    Contention(String),
    /// A service the operation depends on failed (EC2's records, through the composition root).
    #[error("internal failure: {0}")]
    Internal(String),
}

impl EcsError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameter(msg.into())
    }

    pub fn client(msg: impl Into<String>) -> Self {
        Self::Client(msg.into())
    }

    /// The AWS `__type` for this error.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::ClusterNotFound => "ClusterNotFoundException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::Client(_) => "ClientException",
            Self::ClusterContainsContainerInstances => "ClusterContainsContainerInstancesException",
            Self::ClusterContainsServices => "ClusterContainsServicesException",
            Self::ClusterContainsTasks => "ClusterContainsTasksException",
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ServiceNotFound => "ServiceNotFoundException",
            Self::ServiceNotActive => "ServiceNotActiveException",
            Self::TargetNotFound(_) => "TargetNotFoundException",
            Self::AttributeLimitExceeded(_) => "AttributeLimitExceededException",
            Self::Unsupported(_) => "UnsupportedFeatureException",
            Self::NoUpdateAvailable(_) => "NoUpdateAvailableException",
            Self::ServiceDeploymentNotFound(_) => "ServiceDeploymentNotFoundException",
            Self::Conflict(_) => "ConflictException",
            Self::TaskSetNotFound(_) => "TaskSetNotFoundException",
            Self::ResourceInUse(_) => "ResourceInUseException",
            Self::Wire(_) => "SerializationException",
            Self::Store(_) | Self::Contention(_) | Self::Internal(_) => "ServerException",
        }
    }
}

impl From<ValidationError> for EcsError {
    fn from(e: ValidationError) -> Self {
        match e {
            ValidationError::Client(m) => Self::Client(m),
            ValidationError::InvalidParameter(m) => Self::InvalidParameter(m),
        }
    }
}

impl From<AwsError> for EcsError {
    fn from(e: AwsError) -> Self {
        Self::Wire(e)
    }
}

impl From<EcsError> for AwsError {
    fn from(e: EcsError) -> Self {
        match e {
            EcsError::Wire(w) => w,
            EcsError::Store(s) if s.is_storage_full() || s.is_unavailable() => {
                tracing::error!(error = %s, "request refused: store full or unavailable");
                AwsError::unavailable(
                    "ServerException",
                    gantry_aws_proto::store_retry_message(s.is_storage_full()),
                )
            }
            EcsError::Store(_) | EcsError::Contention(_) | EcsError::Internal(_) => {
                tracing::error!(error = %e, "internal failure");
                AwsError::server("An internal error occurred; the request was not applied.")
            }
            other => AwsError::client(other.aws_code(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_a_retryable_503_that_says_so() {
        let e: AwsError = EcsError::Store(StoreError::StorageFull("disk".into())).into();
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.code, "ServerException");
        assert!(e.message.contains("storage is full"), "{}", e.message);
        let other: AwsError = EcsError::Store(StoreError::Backend("io".into())).into();
        assert_eq!(other.status.as_u16(), 500);
    }
}
