//! Certificate Manager errors and their one mapping to AWS error codes. No message ever contains
//! a private key.

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// Why an ACM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmError {
    /// No certificate with that ARN.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The ARN is not an ACM certificate ARN of the request's account and Region.
    #[error("{0}")]
    InvalidArn(String),
    /// A member fails ACM's rules (certificate, key, chain, tags on reimport).
    #[error("{0}")]
    InvalidParameter(String),
    /// A member fails the model's constraints, or the certificate material does not parse.
    #[error("{0}")]
    Validation(String),
    /// A listing argument ACM refuses (a bad NextToken, SortBy without SortOrder).
    #[error("{0}")]
    InvalidArgs(String),
    /// A tag key or value ACM refuses.
    #[error("{0}")]
    InvalidTag(String),
    /// More than 50 tags on one certificate.
    #[error("{0}")]
    TooManyTags(String),
    /// A load balancer listener uses the certificate.
    #[error("{0}")]
    ResourceInUse(String),
    /// An operation or a member Gantry does not serve.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The request body could not be read (already AWS-shaped).
    #[error("{}", .0.message)]
    Wire(AwsError),
    /// The store failed; nothing was applied.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// KMS failed to encrypt or decrypt a private key.
    #[error("KMS failed: {0}")]
    Kms(String),
    /// Compare-and-swap kept conflicting on this store key.
    #[error("too much contention on {0}")]
    Contention(String),
}

impl AcmError {
    pub fn not_found(arn: &str) -> Self {
        Self::ResourceNotFound(format!("Could not find certificate {arn}."))
    }

    /// The AWS `__type` for this error.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::InvalidArn(_) => "InvalidArnException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::Validation(_) => "ValidationException",
            Self::InvalidArgs(_) => "InvalidArgsException",
            Self::InvalidTag(_) => "InvalidTagException",
            Self::TooManyTags(_) => "TooManyTagsException",
            Self::ResourceInUse(_) => "ResourceInUseException",
            Self::UnsupportedOperation(_) => "UnsupportedOperationException",
            Self::Wire(_) => "SerializationException",
            Self::Store(_) | Self::Kms(_) | Self::Contention(_) => "InternalFailure",
        }
    }
}

impl From<AwsError> for AcmError {
    fn from(e: AwsError) -> Self {
        Self::Wire(e)
    }
}

impl From<AcmError> for AwsError {
    fn from(e: AcmError) -> Self {
        match e {
            AcmError::Wire(w) => w,
            AcmError::Store(_) | AcmError::Kms(_) | AcmError::Contention(_) => {
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
