//! CloudWatch's errors, with the codes of its query protocol (the JSON protocol carries the same
//! codes, in query-compatible mode also in `x-amzn-query-error`).

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// `InvalidParameterValue` with `message`.
pub fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterValue", message)
}

/// `InvalidParameterValue`: `The value V for parameter P is invalid.`
pub fn invalid_value(value: &str, param: &str) -> AwsError {
    invalid(format!(
        "The value {value} for parameter {param} is invalid."
    ))
}

/// `MissingParameter`: `The parameter P is required.`
pub fn missing(param: &str) -> AwsError {
    AwsError::client(
        "MissingParameter",
        format!("The parameter {param} is required."),
    )
}

/// `InvalidParameterCombination` with `message`.
pub fn combination(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterCombination", message)
}

/// `ResourceNotFound` with `message`.
pub fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::client("ResourceNotFound", message).with_status(http_status(404))
}

fn http_status(code: u16) -> http::StatusCode {
    http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_REQUEST)
}

/// A store failure: a full disk is a retryable `ServiceUnavailable`, anything else an internal
/// failure (`InternalServiceError`); the request was not applied in either case.
pub fn store(e: StoreError) -> AwsError {
    if e.is_storage_full() || e.is_unavailable() {
        tracing::error!(error = %e, "request refused: store full or unavailable");
        AwsError::unavailable(
            "ServiceUnavailable",
            gantry_aws_proto::store_retry_message(e.is_storage_full()),
        )
    } else {
        tracing::error!(error = %e, "store failure");
        AwsError::client(
            "InternalServiceError",
            "The service cannot complete the request; it was not applied.",
        )
        .with_status(http_status(500))
    }
}
