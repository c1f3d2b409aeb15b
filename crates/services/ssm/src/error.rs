//! SSM errors and their one mapping to AWS error codes. No message ever contains a SecureString
//! value.

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// Why an SSM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SsmError {
    /// The parameter does not exist.
    #[error("{0}")]
    ParameterNotFound(String),
    /// The version or label does not exist.
    #[error("{0}")]
    ParameterVersionNotFound(String),
    /// PutParameter without Overwrite for a name that exists.
    #[error(
        "The parameter already exists. To overwrite this value, set the overwrite option in the request to true."
    )]
    ParameterAlreadyExists,
    /// The oldest of 100 versions has a label, so no new version can be made.
    #[error("{0}")]
    ParameterMaxVersionLimitExceeded(String),
    /// A version would have more than 10 labels.
    #[error("{0}")]
    ParameterVersionLabelLimitExceeded(String),
    /// More than 15 levels of hierarchy.
    #[error("{0}")]
    HierarchyLevelLimitExceeded(String),
    /// Overwrite with another type.
    #[error("{0}")]
    HierarchyTypeMismatch(String),
    /// An AllowedPattern that is not a regular expression.
    #[error("{0}")]
    InvalidAllowedPattern(String),
    /// A value that does not match the parameter's AllowedPattern.
    #[error("{0}")]
    ParameterPatternMismatch(String),
    /// The KMS key of a SecureString is missing, disabled or cannot decrypt.
    #[error("{0}")]
    InvalidKeyId(String),
    /// KMS refused the caller the parameter's customer managed key.
    #[error("{0}")]
    AccessDenied(String),
    /// A member fails the model's or Parameter Store's constraints.
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidFilterKey(String),
    #[error("{0}")]
    InvalidFilterOption(String),
    #[error("{0}")]
    InvalidFilterValue(String),
    #[error("{0}")]
    InvalidNextToken(String),
    /// A tagging resource type other than `Parameter`.
    #[error("{0}")]
    InvalidResourceType(String),
    /// A tagging resource that does not exist.
    #[error("{0}")]
    InvalidResourceId(String),
    /// More than 50 tags.
    #[error("{0}")]
    TooManyTags(String),
    /// An operation or option of the SSM model Gantry does not serve.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The request body could not be read (already AWS-shaped).
    #[error("{}", .0.message)]
    Wire(AwsError),
    /// The store failed; nothing was applied.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// KMS failed for a reason of its own.
    #[error("KMS failed: {0}")]
    Kms(String),
    /// Compare-and-swap kept conflicting on this store key.
    #[error("too much contention on {0}")]
    Contention(String),
}

impl SsmError {
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }

    pub fn not_found(name: &str) -> Self {
        Self::ParameterNotFound(format!("Parameter {name} not found."))
    }

    /// The AWS `__type` for this error.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::ParameterNotFound(_) => "ParameterNotFound",
            Self::ParameterVersionNotFound(_) => "ParameterVersionNotFound",
            Self::ParameterAlreadyExists => "ParameterAlreadyExists",
            Self::ParameterMaxVersionLimitExceeded(_) => "ParameterMaxVersionLimitExceeded",
            Self::ParameterVersionLabelLimitExceeded(_) => "ParameterVersionLabelLimitExceeded",
            Self::HierarchyLevelLimitExceeded(_) => "HierarchyLevelLimitExceededException",
            Self::HierarchyTypeMismatch(_) => "HierarchyTypeMismatchException",
            Self::InvalidAllowedPattern(_) => "InvalidAllowedPatternException",
            Self::ParameterPatternMismatch(_) => "ParameterPatternMismatchException",
            Self::InvalidKeyId(_) => "InvalidKeyId",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::Validation(_) => "ValidationException",
            Self::InvalidFilterKey(_) => "InvalidFilterKey",
            Self::InvalidFilterOption(_) => "InvalidFilterOption",
            Self::InvalidFilterValue(_) => "InvalidFilterValue",
            Self::InvalidNextToken(_) => "InvalidNextToken",
            Self::InvalidResourceType(_) => "InvalidResourceType",
            Self::InvalidResourceId(_) => "InvalidResourceId",
            Self::TooManyTags(_) => "TooManyTagsError",
            Self::UnsupportedOperation(_) => "UnsupportedOperationException",
            Self::Wire(_) => "SerializationException",
            Self::Store(_) | Self::Kms(_) => "InternalServerError",
            Self::Contention(_) => "TooManyUpdates",
        }
    }
}

impl From<AwsError> for SsmError {
    fn from(e: AwsError) -> Self {
        Self::Wire(e)
    }
}

impl From<SsmError> for AwsError {
    fn from(e: SsmError) -> Self {
        match e {
            SsmError::Wire(w) => w,
            SsmError::Store(_) | SsmError::Kms(_) => {
                tracing::error!(error = %e, "internal failure");
                AwsError::client(
                    e.aws_code(),
                    "An error occurred on the server side; the request was not applied.",
                )
                .with_status(http::StatusCode::INTERNAL_SERVER_ERROR)
            }
            SsmError::Contention(_) => {
                tracing::warn!(error = %e, "parameter updated too often");
                AwsError::client(
                    e.aws_code(),
                    "There are concurrent updates for a resource that supports one update at a time.",
                )
            }
            other => AwsError::client(other.aws_code(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_model_codes() {
        let e: AwsError = SsmError::not_found("/a").into();
        assert_eq!(
            (e.status.as_u16(), e.code.as_ref()),
            (400, "ParameterNotFound")
        );
        assert_eq!(e.message, "Parameter /a not found.");
        let e: AwsError = SsmError::Kms("x".into()).into();
        assert_eq!(
            (e.status.as_u16(), e.code.as_ref()),
            (500, "InternalServerError")
        );
    }
}
