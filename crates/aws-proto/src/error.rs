//! [`AwsError`]: the error envelope shared by the `awsJson1.1` and `awsQuery` protocols.

use std::borrow::Cow;

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;

use crate::query::XmlWriter;
use crate::{REQUEST_ID_HEADER, set_header};

/// The message of every "storage full" answer: what happened, that nothing was applied, and
/// what makes a retry succeed.
pub const STORAGE_FULL_MESSAGE: &str = "The server's storage is full (no space left on its disk), \
     so the request was not applied. Retry after space is freed on the server.";

/// The message of every "store unavailable" answer (the state store, e.g. etcd, cannot be
/// reached): the request failed as a whole, and a retry succeeds once the store is back.
pub const STORE_UNAVAILABLE_MESSAGE: &str = "The server cannot reach its state store right now, \
     so the request failed as a whole. Retry shortly.";

/// The message of a retryable store failure: storage full (`full`) or store unavailable.
pub fn store_retry_message(full: bool) -> &'static str {
    if full {
        STORAGE_FULL_MESSAGE
    } else {
        STORE_UNAVAILABLE_MESSAGE
    }
}

/// An error as an AWS client sees it: an HTTP status, an error code (the `__type` of
/// `awsJson1.1`, the `<Code>` of `awsQuery`) and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// HTTP status of the response; 4xx for client errors, 5xx for faults.
    pub status: StatusCode,
    /// AWS error code, e.g. `ClusterNotFoundException` or `ValidationError`.
    pub code: Cow<'static, str>,
    /// Message shown to the user.
    pub message: String,
    /// Further members of the error shape (e.g. Logs' `queryCompileError`), in the JSON body.
    pub members: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl AwsError {
    /// A client error (HTTP 400) with the given code.
    pub fn client(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: code.into(),
            message: message.into(),
            members: None,
        }
    }

    /// An internal failure: HTTP 500, code `ServerException`. Log the detail where it happens and
    /// keep the message free of internals.
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: Cow::Borrowed("ServerException"),
            message: message.into(),
            members: None,
        }
    }

    /// A temporary fault (HTTP 503) with the service's own code for it: the request was not
    /// applied and may succeed when retried. AWS SDKs retry 503 in every retry mode (legacy,
    /// standard, adaptive), the AWS CLI included.
    pub fn unavailable(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: code.into(),
            message: message.into(),
            members: None,
        }
    }

    /// The same error with a further member of its shape (JSON protocols only).
    #[must_use]
    pub fn with_member(mut self, name: &str, value: serde_json::Value) -> Self {
        self.members
            .get_or_insert_with(Default::default)
            .insert(name.to_owned(), value);
        self
    }

    /// The same error with another HTTP status.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Whether this is the server's fault (status >= 500) rather than the caller's.
    pub fn is_fault(&self) -> bool {
        self.status.is_server_error() || self.status.as_u16() >= 600
    }

    /// The `awsJson1.1` error response: body `{"__type": code, "message": message}`, headers
    /// `x-amzn-RequestId`, `x-amzn-ErrorType: code` and `content-type:
    /// application/x-amz-json-1.1`.
    pub fn json_response(&self, request_id: &str) -> Response {
        let mut body = serde_json::json!({ "__type": self.code, "message": self.message });
        if let (Some(members), Some(obj)) = (&self.members, body.as_object_mut()) {
            for (k, v) in members.iter() {
                obj.insert(k.clone(), v.clone());
            }
        }
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = self.status;
        set_header(&mut response, "content-type", crate::json::CONTENT_TYPE);
        set_header(&mut response, REQUEST_ID_HEADER, request_id);
        set_header(&mut response, "x-amzn-errortype", &self.code);
        response
    }

    /// The `awsQuery` error response:
    /// `<ErrorResponse xmlns=NS><Error><Type>Sender|Receiver</Type><Code/><Message/></Error>
    /// <RequestId/></ErrorResponse>` with `content-type: text/xml` and `x-amzn-RequestId`.
    pub fn query_response(&self, request_id: &str, xmlns: &str) -> Response {
        let mut xml = XmlWriter::new();
        xml.open_with_xmlns("ErrorResponse", xmlns);
        xml.open("Error");
        xml.leaf(
            "Type",
            if self.is_fault() {
                "Receiver"
            } else {
                "Sender"
            },
        );
        xml.leaf("Code", &self.code);
        xml.leaf("Message", &self.message);
        xml.close("Error");
        xml.leaf("RequestId", request_id);
        xml.close("ErrorResponse");
        let mut response = Response::new(Body::from(xml.finish()));
        *response.status_mut() = self.status;
        set_header(&mut response, "content-type", crate::query::CONTENT_TYPE);
        set_header(&mut response, REQUEST_ID_HEADER, request_id);
        response
    }

    /// The `ec2` protocol's error response: `<Response><Errors><Error><Code/><Message/></Error>
    /// </Errors><RequestID/></Response>` with `content-type: text/xml;charset=UTF-8` and
    /// `x-amzn-RequestId`.
    pub fn ec2_response(&self, request_id: &str) -> Response {
        let mut xml = XmlWriter::new();
        xml.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        xml.open("Response");
        xml.open("Errors");
        xml.open("Error");
        xml.leaf("Code", &self.code);
        xml.leaf("Message", &self.message);
        xml.close("Error");
        xml.close("Errors");
        xml.leaf("RequestID", request_id);
        xml.close("Response");
        let mut response = Response::new(Body::from(xml.finish()));
        *response.status_mut() = self.status;
        set_header(&mut response, "content-type", crate::ec2::CONTENT_TYPE);
        set_header(&mut response, REQUEST_ID_HEADER, request_id);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn constructors_set_status_and_fault() {
        let client = AwsError::client("ClusterNotFoundException", "cluster not found");
        assert_eq!(client.status, StatusCode::BAD_REQUEST);
        assert!(!client.is_fault());
        let server = AwsError::server("boom");
        assert_eq!(server.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(server.code, "ServerException");
        assert!(server.is_fault());
        let throttled = AwsError::client("ThrottlingException", "slow down")
            .with_status(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(!throttled.is_fault());
        assert!(
            AwsError::client("X", "y")
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .is_fault()
        );
        assert_eq!(
            client.to_string(),
            "ClusterNotFoundException: cluster not found"
        );
    }

    #[tokio::test]
    async fn json_response_has_type_message_and_headers() {
        let response = AwsError::client("ClusterNotFoundException", "Cluster not found.")
            .json_response("req-1");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/x-amz-json-1.1");
        assert_eq!(headers["x-amzn-requestid"], "req-1");
        assert_eq!(headers["x-amzn-errortype"], "ClusterNotFoundException");
        let body: serde_json::Value = serde_json::from_str(&body_of(response).await).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"__type": "ClusterNotFoundException", "message": "Cluster not found."})
        );
    }

    #[tokio::test]
    async fn query_response_is_sender_for_client_errors() {
        let response = AwsError::client("TargetGroupNotFound", "group <tg> & co").query_response(
            "req-2",
            "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["content-type"], "text/xml");
        assert_eq!(response.headers()["x-amzn-requestid"], "req-2");
        assert_eq!(
            body_of(response).await,
            "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
             <Error><Type>Sender</Type><Code>TargetGroupNotFound</Code>\
             <Message>group &lt;tg&gt; &amp; co</Message></Error>\
             <RequestId>req-2</RequestId></ErrorResponse>"
        );
    }

    #[tokio::test]
    async fn query_response_is_receiver_for_faults() {
        let response = AwsError::server("internal error").query_response("r", "urn:x");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(response).await;
        assert!(body.contains("<Type>Receiver</Type><Code>ServerException</Code>"));
    }

    #[tokio::test]
    async fn ec2_response_uses_the_errors_envelope() {
        let response =
            AwsError::client("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist")
                .ec2_response("req-3");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["x-amzn-requestid"], "req-3");
        assert_eq!(
            body_of(response).await,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
             <Code>InvalidVpcID.NotFound</Code><Message>The vpc ID &apos;vpc-1&apos; does not exist</Message>\
             </Error></Errors><RequestID>req-3</RequestID></Response>"
        );
    }
}
