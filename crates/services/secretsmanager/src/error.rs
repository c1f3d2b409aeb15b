//! Secrets Manager errors and their one mapping to AWS error codes. No message ever contains a
//! secret value.

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// "Secrets Manager can't find the specified secret."
pub const SECRET_NOT_FOUND: &str = "Secrets Manager can't find the specified secret.";
/// The answer for operations on a secret scheduled for deletion.
pub const MARKED_FOR_DELETION: &str =
    "You can't perform this operation on the secret because it was marked for deletion.";

/// Why a Secrets Manager operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SmError {
    /// The secret, version or staging label does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// A member is invalid for Secrets Manager's rules (recovery window, labels, tokens, ...).
    #[error("{0}")]
    InvalidParameter(String),
    /// The request does not fit the secret's state (scheduled for deletion, unsupported
    /// rotation or replication, both or neither of SecretString and SecretBinary).
    #[error("{0}")]
    InvalidRequest(String),
    /// A member fails the model's constraints (length, pattern, enum).
    #[error("{0}")]
    Validation(String),
    /// A secret with the name exists, or a version id is taken by another value.
    #[error("{0}")]
    ResourceExists(String),
    /// A quota: tags, staging labels.
    #[error("{0}")]
    LimitExceeded(String),
    /// The KMS key could not encrypt (missing, disabled, pending deletion).
    #[error("{0}")]
    EncryptionFailure(String),
    /// The KMS key could not decrypt.
    #[error("{0}")]
    DecryptionFailure(String),
    /// The caller may not use the secret's customer managed KMS key.
    #[error("{0}")]
    AccessDenied(String),
    /// A resource policy that is not a valid resource-based policy.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// BlockPublicPolicy with a policy that grants public access.
    #[error("{0}")]
    PublicPolicy(String),
    /// A NextToken not made by this service.
    #[error("{0}")]
    InvalidNextToken(String),
    /// The request body could not be read (already AWS-shaped).
    #[error("{}", .0.message)]
    Wire(AwsError),
    /// The store failed; nothing was applied.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// KMS failed for a reason of its own (not the key's state).
    #[error("KMS failed: {0}")]
    Kms(String),
    /// Compare-and-swap kept conflicting on this store key.
    #[error("too much contention on {0}")]
    Contention(String),
}

impl SmError {
    pub fn not_found() -> Self {
        Self::ResourceNotFound(SECRET_NOT_FOUND.to_owned())
    }

    pub fn marked_for_deletion() -> Self {
        Self::InvalidRequest(MARKED_FOR_DELETION.to_owned())
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameter(msg.into())
    }

    /// The AWS `__type` for this error.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::InvalidRequest(_) => "InvalidRequestException",
            Self::Validation(_) => "ValidationException",
            Self::ResourceExists(_) => "ResourceExistsException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::EncryptionFailure(_) => "EncryptionFailure",
            Self::DecryptionFailure(_) => "DecryptionFailure",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            Self::PublicPolicy(_) => "PublicPolicyException",
            Self::InvalidNextToken(_) => "InvalidNextTokenException",
            Self::Wire(_) => "SerializationException",
            Self::Store(_) | Self::Kms(_) | Self::Contention(_) => "InternalServiceError",
        }
    }
}

impl From<AwsError> for SmError {
    fn from(e: AwsError) -> Self {
        Self::Wire(e)
    }
}

impl From<SmError> for AwsError {
    fn from(e: SmError) -> Self {
        match e {
            SmError::Wire(w) => w,
            SmError::Store(_) | SmError::Kms(_) | SmError::Contention(_) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_400_with_model_codes() {
        let e: AwsError = SmError::marked_for_deletion().into();
        assert_eq!(
            (e.status.as_u16(), e.code.as_ref()),
            (400, "InvalidRequestException")
        );
        assert_eq!(e.message, MARKED_FOR_DELETION);
        let e: AwsError = SmError::not_found().into();
        assert_eq!(e.code, "ResourceNotFoundException");
    }

    #[test]
    fn internal_failures_are_500() {
        let e: AwsError = SmError::Contention("secretsmanager/x".into()).into();
        assert_eq!(
            (e.status.as_u16(), e.code.as_ref()),
            (500, "InternalServiceError")
        );
        assert!(!e.message.contains("secretsmanager/x"));
    }
}
