//! The HTTP front: one `POST /` (and `GET /` for query-protocol calls) for every AWS API.
//!
//! Order of work for each request: request id → body (size-limited) → protocol (awsJson1.1 when
//! `X-Amz-Target` is present, awsQuery otherwise) → SigV4 → dispatch → AWS-shaped response.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use gantry_aws_proto::query::QueryRequest;
use gantry_aws_proto::sigv4::{self, CredentialProvider};
use gantry_aws_proto::{AwsError, json, new_request_id, query};
use tracing::Instrument;

use crate::context::{Clock, RequestContext};

/// An awsJson1.1 service (ECS, ECR, Logs, ...), selected by its `X-Amz-Target` prefix.
#[async_trait]
pub trait JsonService: Send + Sync {
    /// Runs one operation; `body` is the raw JSON request.
    async fn call(
        &self,
        op: &str,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<serde_json::Value, AwsError>;
}

/// An awsQuery service (STS, IAM, ELBv2), selected by its SigV4 signing name.
#[async_trait]
pub trait QueryService: Send + Sync {
    /// The XML namespace of responses, e.g. `https://sts.amazonaws.com/doc/2011-06-15/`.
    fn xmlns(&self) -> &'static str;

    /// Runs one action; returns the inner XML of `<{Action}Result>`.
    async fn call(
        &self,
        action: &str,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<String, AwsError>;
}

/// The request router shared by every API.
pub struct Front {
    json: HashMap<&'static str, Arc<dyn JsonService>>,
    query: HashMap<&'static str, Arc<dyn QueryService>>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    account_id: String,
    body_limit: usize,
}

impl fmt::Debug for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Front")
            .field("json", &self.json.keys().collect::<Vec<_>>())
            .field("query", &self.query.keys().collect::<Vec<_>>())
            .field("account_id", &self.account_id)
            .finish()
    }
}

/// Largest accepted API request body (the registry's `/v2/` routes have their own limits).
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

impl Front {
    pub fn new(
        creds: Arc<dyn CredentialProvider>,
        clock: Arc<dyn Clock>,
        account_id: impl Into<String>,
    ) -> Self {
        Self {
            json: HashMap::new(),
            query: HashMap::new(),
            creds,
            clock,
            account_id: account_id.into(),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Serves `X-Amz-Target: {prefix}.{Operation}` with `svc`.
    pub fn with_json(mut self, prefix: &'static str, svc: Arc<dyn JsonService>) -> Self {
        self.json.insert(prefix, svc);
        self
    }

    /// Serves query-protocol requests signed for `signing_name` with `svc`.
    pub fn with_query(mut self, signing_name: &'static str, svc: Arc<dyn QueryService>) -> Self {
        self.query.insert(signing_name, svc);
        self
    }

    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The axum router answering `/`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route("/", any(handle)).with_state(self)
    }
}

enum Protocol {
    Json,
    Query,
}

async fn handle(State(front): State<Arc<Front>>, req: Request) -> Response {
    let request_id = new_request_id();
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let span = tracing::debug_span!("api", request_id = %request_id, target = target.as_deref().unwrap_or(""));
    async move {
        let protocol = if target.is_some() {
            Protocol::Json
        } else {
            Protocol::Query
        };
        let (parts, body) = req.into_parts();
        let body = match axum::body::to_bytes(body, front.body_limit).await {
            Ok(b) => b,
            Err(_) => {
                let err = AwsError::client(
                    "RequestEntityTooLargeException",
                    format!(
                        "Request body is larger than the limit of {} bytes.",
                        front.body_limit
                    ),
                )
                .with_status(http::StatusCode::PAYLOAD_TOO_LARGE);
                return error_response(&protocol, &err, &request_id, "");
            }
        };
        let verified = match sigv4::verify(&parts, &body, front.creds.as_ref(), front.clock.now()) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "signature check failed");
                let err = match protocol {
                    Protocol::Json => e.to_json_error(),
                    Protocol::Query => e.to_query_error(),
                };
                return error_response(&protocol, &err, &request_id, "");
            }
        };
        let ctx = RequestContext {
            request_id: request_id.clone(),
            region: verified.region.clone(),
            account_id: front.account_id.clone(),
            access_key_id: verified.access_key_id.clone(),
            now: front.clock.now_millis(),
        };
        match protocol {
            Protocol::Json => {
                let target = target.unwrap_or_default();
                let Some((prefix, op)) = json::parse_target(&target) else {
                    let err = AwsError::client(
                        "UnknownOperationException",
                        format!("Unknown operation {target}"),
                    );
                    return err.json_response(&request_id);
                };
                let Some(svc) = front.json.get(prefix) else {
                    let err = AwsError::client(
                        "UnknownOperationException",
                        format!("Unknown operation {target}"),
                    );
                    return err.json_response(&request_id);
                };
                match svc.call(op, &body, &ctx).await {
                    Ok(v) => json::ok_response(&v, &request_id),
                    Err(e) => {
                        log_error(&e, op);
                        e.json_response(&request_id)
                    }
                }
            }
            Protocol::Query => {
                let q = QueryRequest::parse(&body, parts.uri.query());
                let Some(svc) = front.query.get(verified.service.as_str()) else {
                    let err = AwsError::client(
                        "InvalidAction",
                        format!("Service '{}' is not served here.", verified.service),
                    );
                    return err.query_response(&request_id, "");
                };
                let Some(action) = q.action().map(str::to_owned) else {
                    let err = AwsError::client("MissingAction", "Missing Action parameter.");
                    return err.query_response(&request_id, svc.xmlns());
                };
                match svc.call(&action, &q, &ctx).await {
                    Ok(xml) => query::ok_response(&action, svc.xmlns(), &xml, &request_id),
                    Err(e) => {
                        log_error(&e, &action);
                        e.query_response(&request_id, svc.xmlns())
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

fn log_error(e: &AwsError, op: &str) {
    if e.is_fault() {
        tracing::error!(op, code = %e.code, error = %e.message, "operation failed");
    } else {
        tracing::debug!(op, code = %e.code, error = %e.message, "client error");
    }
}

fn error_response(protocol: &Protocol, err: &AwsError, request_id: &str, xmlns: &str) -> Response {
    match protocol {
        Protocol::Json => err.json_response(request_id),
        Protocol::Query => err.query_response(request_id, xmlns),
    }
}

/// A body for tests and callers that build requests by hand.
pub fn body_from(bytes: impl Into<bytes::Bytes>) -> Body {
    Body::from(bytes.into())
}
