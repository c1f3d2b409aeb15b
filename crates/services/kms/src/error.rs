//! KMS errors and their one mapping to AWS error codes.

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// Why a KMS operation failed. Each message is KMS's, naming the key, alias or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The key or alias does not exist (or a key id is not one KMS could have issued).
    #[error("{0}")]
    NotFound(String),
    /// The key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// The key's state does not allow the operation (pending deletion, not pending deletion).
    #[error("{0}")]
    InvalidState(String),
    /// The ciphertext is not one of this region's KMS keys, was altered, or its encryption context
    /// differs.
    #[error("{0}")]
    InvalidCiphertext(String),
    /// Decrypt named a key that is not the one that sealed the ciphertext.
    #[error("{0}")]
    IncorrectKey(String),
    /// An ARN that is not a KMS key or alias ARN.
    #[error("{0}")]
    InvalidArn(String),
    /// A member out of its model's bounds, or a combination KMS refuses.
    #[error("{0}")]
    Validation(String),
    /// CreateAlias with a name that is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// An alias name that is malformed or in the reserved `alias/aws/` namespace.
    #[error("{0}")]
    InvalidAliasName(String),
    /// A key policy that is not a valid resource policy, or that would lock the caller out.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// More tags than a key may carry, or an alias count over the quota.
    #[error("{0}")]
    LimitExceeded(String),
    /// A tag key or value KMS refuses.
    #[error("{0}")]
    Tag(String),
    /// A marker not made by this service.
    #[error("{0}")]
    InvalidMarker(String),
    /// An encryption algorithm a symmetric key does not have.
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// A grant token: Gantry issues no grants.
    #[error("{0}")]
    InvalidGrantToken(String),
    /// A feature of the model Gantry does not offer (asymmetric and HMAC keys, custom key
    /// stores, imported material, multi-Region keys, recipients) or an operation it does not
    /// serve.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// An AWS-managed key's policy allows the account to read it, not to change it.
    #[error("{0}")]
    AccessDenied(String),
    /// DryRun was set and the request would have succeeded.
    #[error("The request would have succeeded, but the DryRun option is set.")]
    DryRun,
    /// The request body could not be read (already AWS-shaped).
    #[error("{}", .0.message)]
    Wire(AwsError),
    /// The store failed; nothing was applied.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// Key material that does not unwrap with the master key: the data dir's `master-key` file is
    /// not the one the key was created with, or the record was altered.
    #[error("key material of {0} does not unwrap with the master key")]
    Unwrap(String),
    /// Compare-and-swap kept conflicting on this store key.
    #[error("too much contention on {0}")]
    Contention(String),
}

impl KmsError {
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }

    /// The AWS `__type` for this error.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFoundException",
            Self::Disabled(_) => "DisabledException",
            Self::InvalidState(_) => "KMSInvalidStateException",
            Self::InvalidCiphertext(_) => "InvalidCiphertextException",
            Self::IncorrectKey(_) => "IncorrectKeyException",
            Self::InvalidArn(_) => "InvalidArnException",
            Self::Validation(_) => "ValidationException",
            Self::AlreadyExists(_) => "AlreadyExistsException",
            Self::InvalidAliasName(_) => "InvalidAliasNameException",
            Self::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::Tag(_) => "TagException",
            Self::InvalidMarker(_) => "InvalidMarkerException",
            Self::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            Self::InvalidGrantToken(_) => "InvalidGrantTokenException",
            Self::UnsupportedOperation(_) => "UnsupportedOperationException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::DryRun => "DryRunOperationException",
            Self::Wire(_) => "SerializationException",
            Self::Store(_) | Self::Unwrap(_) | Self::Contention(_) => "KMSInternalException",
        }
    }
}

impl From<AwsError> for KmsError {
    fn from(e: AwsError) -> Self {
        Self::Wire(e)
    }
}

impl From<KmsError> for AwsError {
    fn from(e: KmsError) -> Self {
        match e {
            KmsError::Wire(w) => w,
            KmsError::Store(_) | KmsError::Unwrap(_) | KmsError::Contention(_) => {
                tracing::error!(error = %e, "internal failure");
                AwsError::client(
                    e.aws_code(),
                    "The request was not applied because of an internal error.",
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
        let e: AwsError = KmsError::Disabled("arn:aws:kms:r:1:key/k is disabled.".into()).into();
        assert_eq!(
            (e.status.as_u16(), e.code.as_ref()),
            (400, "DisabledException")
        );
        let e: AwsError = KmsError::DryRun.into();
        assert_eq!(e.code, "DryRunOperationException");
    }

    #[test]
    fn internal_failures_are_500_without_detail() {
        let e: AwsError = KmsError::Unwrap("arn:k".into()).into();
        assert_eq!(
            (e.status.as_u16(), e.code.as_ref()),
            (500, "KMSInternalException")
        );
        assert!(!e.message.contains("arn:k"));
    }
}
