//! Logs errors and their one mapping to AWS error codes.

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// The message AWS uses when a log group is missing.
pub const GROUP_NOT_FOUND: &str = "The specified log group does not exist.";
/// The message AWS uses when a log stream is missing.
pub const STREAM_NOT_FOUND: &str = "The specified log stream does not exist.";

/// Why a CloudWatch Logs operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// The named log group, log stream or tagged resource does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// CreateLogGroup or CreateLogStream for a name that is taken.
    #[error("{0}")]
    ResourceAlreadyExists(String),
    /// A request parameter is missing, malformed or out of range.
    #[error("{0}")]
    InvalidParameter(String),
    /// TagResource/CreateLogGroup would leave more than 50 tags on a log group.
    #[error("{0}")]
    TooManyTags(String),
    /// StartQuery's query string does not compile; the span is in characters.
    #[error("{message}")]
    MalformedQuery {
        message: String,
        start: usize,
        end: usize,
    },
    /// A write's `expectedRevisionId` does not match the resource policy it would change.
    #[error("{0}")]
    OperationAborted(String),
    /// An account limit (saved query definitions, metric filters per group) is reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// An operation of the Logs model that Gantry does not serve.
    #[error("{0}")]
    InvalidOperation(String),
    /// The request body could not be read (already AWS-shaped).
    #[error("{}", .0.message)]
    Wire(AwsError),
    /// The store failed; the request was not applied.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// Compare-and-swap kept conflicting on this key.
    #[error("too much contention on {0}")]
    Contention(String),
    /// The read threads could not be started or a read ended without an answer.
    #[error("event reads failed: {0}")]
    Pool(String),
}

impl LogsError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameter(msg.into())
    }

    pub fn group_not_found() -> Self {
        Self::ResourceNotFound(GROUP_NOT_FOUND.to_owned())
    }

    pub fn stream_not_found() -> Self {
        Self::ResourceNotFound(STREAM_NOT_FOUND.to_owned())
    }

    /// The AWS `__type` for this error.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ResourceAlreadyExists(_) => "ResourceAlreadyExistsException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::TooManyTags(_) => "TooManyTagsException",
            Self::InvalidOperation(_) => "InvalidOperationException",
            Self::MalformedQuery { .. } => "MalformedQueryException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::OperationAborted(_) => "OperationAbortedException",
            Self::Wire(_) => "SerializationException",
            Self::Store(_) | Self::Contention(_) | Self::Pool(_) => "ServiceUnavailableException",
        }
    }
}

impl From<AwsError> for LogsError {
    fn from(e: AwsError) -> Self {
        Self::Wire(e)
    }
}

impl From<LogsError> for AwsError {
    fn from(e: LogsError) -> Self {
        match e {
            LogsError::Wire(w) => w,
            LogsError::Store(s) if s.is_storage_full() || s.is_unavailable() => {
                tracing::error!(error = %s, "request refused: store full or unavailable");
                AwsError::unavailable(
                    "ServiceUnavailableException",
                    gantry_aws_proto::store_retry_message(s.is_storage_full()),
                )
            }
            LogsError::Store(_) | LogsError::Contention(_) | LogsError::Pool(_) => {
                tracing::error!(error = %e, "internal failure");
                AwsError::client(
                    e.aws_code(),
                    "The service cannot complete the request; it was not applied.",
                )
                .with_status(http::StatusCode::INTERNAL_SERVER_ERROR)
            }
            LogsError::MalformedQuery {
                message,
                start,
                end,
            } => AwsError::client("MalformedQueryException", message.clone()).with_member(
                "queryCompileError",
                serde_json::json!({
                    "location": {"startCharOffset": start, "endCharOffset": end},
                    "message": message,
                }),
            ),
            other => AwsError::client(other.aws_code(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_400_with_model_codes() {
        let e: AwsError = LogsError::group_not_found().into();
        assert_eq!(e.status.as_u16(), 400);
        assert_eq!(e.code, "ResourceNotFoundException");
        assert_eq!(e.message, "The specified log group does not exist.");
        let e: AwsError = LogsError::invalid("bad").into();
        assert_eq!(e.code, "InvalidParameterException");
    }

    #[test]
    fn internal_failures_are_500_service_unavailable() {
        let e: AwsError = LogsError::Contention("k".into()).into();
        assert_eq!(e.status.as_u16(), 500);
        assert_eq!(e.code, "ServiceUnavailableException");
        assert!(!e.message.contains('k'));
    }

    #[test]
    fn a_full_disk_is_a_retryable_503_that_says_so() {
        let e: AwsError = LogsError::Store(StoreError::StorageFull("disk".into())).into();
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.code, "ServiceUnavailableException");
        assert!(e.message.contains("storage is full"), "{}", e.message);
    }
}
