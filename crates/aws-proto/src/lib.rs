//! The AWS wire layer of Gantry.
//!
//! This crate owns everything that is the same for every AWS-compatible API Gantry serves and
//! nothing that is specific to one of them:
//!
//! * [`sigv4`]: verification of AWS Signature Version 4 (header and presigned query forms);
//! * [`json`]: the `awsJson1.1` protocol (`X-Amz-Target` dispatch, request bodies, responses);
//! * [`query`]: the `awsQuery` protocol (form-encoded requests, XML responses);
//! * [`ec2`]: the `ec2` protocol, EC2's dialect of awsQuery (`Name.N` lists, `Filter.N`,
//!   `<{Action}Response>` with `requestId`, the `<Response><Errors>` envelope);
//! * [`error`]: [`AwsError`], the error envelope of the three protocols;
//! * [`constraints`]: the length, count, range and pattern constraints of the models, checked on
//!   the wire with AWS's wording (the tables are generated into each service crate);
//! * [`pagination`]: opaque `nextToken` values and the two timestamp encodings AWS uses;
//! * [`new_request_id`]: the request ids echoed in `x-amzn-RequestId`.
//!
//! It must not depend on any other Gantry crate, and it knows nothing of ECS, ECR or any other
//! service: service crates build on it, never the reverse. Wire structs of a service (camelCase,
//! everything optional) belong in that service's API crate, not here.

pub mod constraints;
pub mod ec2;
pub mod error;
pub mod json;
pub mod pagination;
pub mod query;
pub mod sigv4;

pub use error::{AwsError, STORAGE_FULL_MESSAGE, STORE_UNAVAILABLE_MESSAGE, store_retry_message};

/// A fresh request id (a random UUID v4 string) for `x-amzn-RequestId` and error bodies.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Inserts a header if `value` is a valid header value; values we produce are, so a failure
/// only drops the header (it never aborts a response).
pub(crate) fn set_header(response: &mut axum::response::Response, name: &'static str, value: &str) {
    match http::HeaderValue::from_str(value) {
        Ok(value) => {
            response
                .headers_mut()
                .insert(http::HeaderName::from_static(name), value);
        }
        Err(error) => {
            tracing::warn!(header = name, %error, "dropping invalid response header value");
        }
    }
}

/// Name of the request id header botocore copies into `ResponseMetadata.RequestId`.
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_uuid_v4_and_unique() {
        let a = super::new_request_id();
        let b = super::new_request_id();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).expect("uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a.len(), 36);
    }
}
