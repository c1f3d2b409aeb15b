//! [`IamError`] and its one mapping to IAM's error codes and HTTP statuses.

use gantry_aws_proto::AwsError;
use gantry_iam_policy::{PolicyError, PolicySizeError};
use gantry_store::StoreError;
use http::StatusCode;

/// Failures of IAM operations; `Display` is IAM's message.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// A name, ARN or id that names nothing (404).
    #[error("{0}")]
    NoSuchEntity(String),
    /// A name already taken (409).
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// Deleting something still in use: keys, policies, memberships, attachments (409).
    #[error("{0}")]
    DeleteConflict(String),
    /// An account or per-entity quota (409).
    #[error("{0}")]
    LimitExceeded(String),
    /// A policy document that does not parse or validate (400).
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// A parameter IAM refuses (400).
    #[error("{0}")]
    InvalidInput(String),
    /// A missing or malformed parameter (400).
    #[error("{0}")]
    Validation(String),
    /// An AWS-managed policy or a service-linked role changed by hand (400).
    #[error("{0}")]
    UnmodifiableEntity(String),
    /// An operation of the model Gantry does not serve.
    #[error("{0}")]
    NotImplemented(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored record that does not decode, or another internal failure.
    #[error("{0}")]
    Internal(String),
}

impl From<PolicyError> for IamError {
    fn from(e: PolicyError) -> Self {
        IamError::MalformedPolicyDocument(e.to_string())
    }
}

impl From<PolicySizeError> for IamError {
    fn from(e: PolicySizeError) -> Self {
        IamError::LimitExceeded(e.to_string())
    }
}

impl IamError {
    pub fn validation(message: impl Into<String>) -> Self {
        IamError::Validation(message.into())
    }

    /// The AWS error code and HTTP status.
    pub fn aws_code(&self) -> (&'static str, StatusCode) {
        match self {
            IamError::NoSuchEntity(_) => ("NoSuchEntity", StatusCode::NOT_FOUND),
            IamError::EntityAlreadyExists(_) => ("EntityAlreadyExists", StatusCode::CONFLICT),
            IamError::DeleteConflict(_) => ("DeleteConflict", StatusCode::CONFLICT),
            IamError::LimitExceeded(_) => ("LimitExceeded", StatusCode::CONFLICT),
            IamError::MalformedPolicyDocument(_) => {
                ("MalformedPolicyDocument", StatusCode::BAD_REQUEST)
            }
            IamError::InvalidInput(_) => ("InvalidInput", StatusCode::BAD_REQUEST),
            IamError::Validation(_) => ("ValidationError", StatusCode::BAD_REQUEST),
            IamError::UnmodifiableEntity(_) => ("UnmodifiableEntity", StatusCode::BAD_REQUEST),
            IamError::NotImplemented(_) => ("NotImplemented", StatusCode::BAD_REQUEST),
            IamError::Store(_) | IamError::Internal(_) => {
                ("ServiceFailure", StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

impl From<IamError> for AwsError {
    fn from(e: IamError) -> Self {
        if let IamError::Store(s) = &e
            && (s.is_storage_full() || s.is_unavailable())
        {
            return AwsError::unavailable(
                "ServiceUnavailable",
                gantry_aws_proto::store_retry_message(s.is_storage_full()),
            );
        }
        let (code, status) = e.aws_code();
        if status.is_server_error() {
            tracing::error!(error = %e, "iam operation failed");
            return AwsError::client(code, "An internal error occurred.").with_status(status);
        }
        AwsError::client(code, e.to_string()).with_status(status)
    }
}
