//! The HTTP front: one `POST /` (and `GET /` for query-protocol calls) for every AWS API.
//!
//! Order of work for each request: request id → body (size-limited) → protocol (awsJson1.1 when
//! `X-Amz-Target` is present, else the form-encoded family: awsQuery or its `ec2` dialect, told by
//! the service the signing name selects) → SigV4 → dispatch → AWS-shaped response.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use gantry_aws_proto::query::QueryRequest;
use gantry_aws_proto::sigv4::{self, CredentialProvider};
use gantry_aws_proto::{AwsError, constraints, ec2, json, new_request_id, query};
use tracing::Instrument;

use crate::auth::{AuthFailure, Authenticator, Authorizer, Denied, OperationInput};
use crate::context::{Clock, RequestContext};
use crate::metrics::OperationLabel;
use crate::service::{JsonService, Protocol, QueryService, ServiceSpec};

/// The request router shared by every API.
pub struct Front {
    json: HashMap<&'static str, Arc<dyn JsonService>>,
    query: HashMap<&'static str, Arc<dyn QueryService>>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    account_id: String,
    body_limit: usize,
    metrics: Arc<crate::metrics::ApiMetrics>,
    authenticator: Option<Arc<dyn Authenticator>>,
    authorizer: Option<Arc<dyn Authorizer>>,
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

/// Largest accepted API request body, for every service (the registry's `/v2/` routes stream
/// their bodies and have their own limits). The largest request of any served model is ECR's
/// `UploadLayerPart`, whose `layerPartBlob` may hold 20,971,520 bytes: 27,962,028 characters of
/// base64 in the JSON body.
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;

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
            body_limit: BODY_LIMIT,
            metrics: Arc::default(),
            authenticator: None,
            authorizer: None,
        }
    }

    /// Names the principal of each verified request (IAM users, role sessions); without it
    /// every caller is the account root.
    pub fn with_authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// Checks every call of a principal other than the root before dispatch.
    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Runs the authorizer, if any, for a non-root caller.
    async fn authorize(
        &self,
        ctx: &RequestContext,
        spec: &'static ServiceSpec,
        op: &str,
        input: OperationInput<'_>,
    ) -> Result<(), Denied> {
        match (&self.authorizer, &ctx.caller) {
            (Some(a), Some(_)) => a.authorize(ctx, spec, op, input).await,
            _ => Ok(()),
        }
    }

    /// Serves `X-Amz-Target: {prefix}.{Operation}` with `svc`, the prefix being its spec's.
    ///
    /// # Panics
    /// If the spec's protocol is not [`Protocol::Json`] or the prefix is already taken: both are
    /// wiring mistakes of the composition root, found on its first start.
    pub fn with_json(mut self, svc: Arc<dyn JsonService>) -> Self {
        let spec = svc.spec();
        let Protocol::Json { target_prefix } = spec.protocol else {
            panic!("{} is not an awsJson service", spec.iam_prefix);
        };
        let previous = self.json.insert(target_prefix, svc);
        assert!(previous.is_none(), "two services for {target_prefix}");
        self
    }

    /// Serves form-encoded requests (awsQuery or its `ec2` dialect) signed for the service's
    /// signing name with `svc`.
    ///
    /// # Panics
    /// If the spec's protocol is not [`Protocol::Query`] or [`Protocol::Ec2`], or the signing
    /// name is already taken.
    pub fn with_query(mut self, svc: Arc<dyn QueryService>) -> Self {
        let spec = svc.spec();
        assert!(
            spec.protocol.is_form_encoded(),
            "{} is not an awsQuery or ec2 service",
            spec.iam_prefix
        );
        let previous = self.query.insert(spec.signing_name, svc);
        assert!(previous.is_none(), "two services for {}", spec.signing_name);
        self
    }

    /// Every service this front serves.
    pub fn services(&self) -> Vec<&'static ServiceSpec> {
        let mut all: Vec<&'static ServiceSpec> = self
            .json
            .values()
            .map(|s| s.spec())
            .chain(self.query.values().map(|s| s.spec()))
            .collect();
        all.sort_by_key(|s| s.iam_prefix);
        all
    }

    /// The request metrics, for the composition root to register and serve.
    pub fn metrics(&self) -> Arc<crate::metrics::ApiMetrics> {
        self.metrics.clone()
    }

    /// Another body limit than [`BODY_LIMIT`] (for tests).
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The axum router answering `/`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route("/", any(handle)).with_state(self)
    }
}

/// The protocol of one request: awsJson when `X-Amz-Target` is present; otherwise awsQuery,
/// or `ec2` when the signing name the request claims belongs to an ec2-dialect service.
enum Wire {
    Json,
    Query,
    Ec2,
}

async fn handle(State(front): State<Arc<Front>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let metrics = front.metrics.clone();
    let response = dispatch(front, req).await;
    metrics.observe(
        response.extensions().get::<OperationLabel>(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `response` labelled with the operation it answered.
fn labelled(mut response: Response, service: &str, operation: &str) -> Response {
    response.extensions_mut().insert(OperationLabel {
        service: service.to_owned(),
        operation: operation.to_owned(),
    });
    response
}

async fn dispatch(front: Arc<Front>, req: Request) -> Response {
    let request_id = new_request_id();
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let span = tracing::debug_span!("api", request_id = %request_id, target = target.as_deref().unwrap_or(""));
    async move {
        let (parts, body) = req.into_parts();
        let protocol = if target.is_some() {
            Wire::Json
        } else {
            let claimed = sigv4::claimed_service(&parts);
            match claimed
                .as_deref()
                .and_then(|name| front.query.get(name))
                .map(|svc| svc.spec().protocol)
            {
                Some(Protocol::Ec2 { .. }) => Wire::Ec2,
                _ => Wire::Query,
            }
        };
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
                    Wire::Json => e.to_json_error(),
                    Wire::Query => e.to_query_error(),
                    Wire::Ec2 => e.to_ec2_error(),
                };
                return error_response(&protocol, &err, &request_id, "");
            }
        };
        // The signature covers the body as sent; a compressed body (botocore gzips large
        // requests of operations whose model allows it, such as CloudWatch's PutMetricData) is
        // decoded only after it is verified, within the same size limit.
        let body = match decode_content_encoding(&parts.headers, body, front.body_limit) {
            Ok(body) => body,
            Err(err) => return error_response(&protocol, &err, &request_id, ""),
        };
        let query_mode = parts
            .headers
            .get("x-amzn-query-mode")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let now = front.clock.now_millis();
        let caller = match &front.authenticator {
            None => None,
            Some(a) => {
                let token = session_token(&parts);
                match a.principal(
                    &verified.access_key_id,
                    token.as_deref(),
                    &verified.service,
                    &verified.region,
                    now,
                ) {
                    Ok(p) => p,
                    Err(failure) => {
                        let err = auth_failure_error(&protocol, &failure);
                        return error_response(&protocol, &err, &request_id, "");
                    }
                }
            }
        };
        let ctx = RequestContext {
            caller,
            request_id: request_id.clone(),
            region: verified.region.clone(),
            account_id: front.account_id.clone(),
            access_key_id: verified.access_key_id.clone(),
            now,
        };
        match protocol {
            Wire::Json => {
                let target = target.unwrap_or_default();
                let Some((prefix, op)) = json::parse_target(&target) else {
                    let err = AwsError::client(
                        "UnknownOperationException",
                        format!("Unknown operation {target}"),
                    );
                    return err.json_response(&request_id);
                };
                let Some(svc) = front
                    .json
                    .get(prefix)
                    .filter(|svc| svc.spec().has_operation(op))
                else {
                    let err = AwsError::client(
                        "UnknownOperationException",
                        format!("Unknown operation {target}"),
                    );
                    return err.json_response(&request_id);
                };
                if let Some(err) = json_violations(svc.spec(), op, &body) {
                    log_error(&err, op);
                    return labelled(json_error(&err, &request_id, query_mode), prefix, op);
                }
                if let Err(Denied(message)) = front
                    .authorize(&ctx, svc.spec(), op, OperationInput::Json(&body))
                    .await
                {
                    return AwsError::client("AccessDeniedException", message)
                        .json_response(&request_id);
                }
                let response = match svc.call_serialized(op, &body, &ctx).await {
                    Ok(v) => json::ok_response_serialized(v, &request_id),
                    Err(e) => {
                        log_error(&e, op);
                        json_error(&e, &request_id, query_mode)
                    }
                };
                labelled(response, prefix, op)
            }
            Wire::Query | Wire::Ec2 => {
                let q = QueryRequest::parse(&body, parts.uri.query());
                let Some(svc) = front.query.get(verified.service.as_str()) else {
                    let err = AwsError::client(
                        "InvalidAction",
                        format!("Service '{}' is not served here.", verified.service),
                    );
                    return err.query_response(&request_id, "");
                };
                let spec = svc.spec();
                match spec.protocol {
                    Protocol::Query { xmlns, version } => {
                        let Some(action) = q.action().map(str::to_owned) else {
                            let err =
                                AwsError::client("MissingAction", "Missing Action parameter.");
                            return err.query_response(&request_id, xmlns);
                        };
                        if !spec.has_operation(&action) {
                            let err = AwsError::client(
                                "InvalidAction",
                                format!("Could not find operation {action} for version {version}"),
                            );
                            return err.query_response(&request_id, xmlns);
                        }
                        if let Some(err) = query_violations(spec, &action, &q) {
                            log_error(&err, &action);
                            return labelled(
                                err.query_response(&request_id, xmlns),
                                spec.signing_name,
                                &action,
                            );
                        }
                        if let Err(Denied(message)) = front
                            .authorize(&ctx, spec, &action, OperationInput::Query(&q))
                            .await
                        {
                            return AwsError::client("AccessDenied", message)
                                .with_status(http::StatusCode::FORBIDDEN)
                                .query_response(&request_id, xmlns);
                        }
                        let response = match svc.call(&action, &q, &ctx).await {
                            Ok(xml) => query::ok_response(&action, xmlns, &xml, &request_id),
                            Err(e) => {
                                log_error(&e, &action);
                                e.query_response(&request_id, xmlns)
                            }
                        };
                        labelled(response, spec.signing_name, &action)
                    }
                    Protocol::Ec2 { xmlns, .. } => {
                        let Some(action) = q.action().map(str::to_owned) else {
                            let err = AwsError::client(
                                "MissingAction",
                                "The request must contain the parameter Action.",
                            );
                            return err.ec2_response(&request_id);
                        };
                        if !spec.has_operation(&action) {
                            let err = AwsError::client(
                                "InvalidAction",
                                format!("The action {action} is not valid for this web service."),
                            );
                            return err.ec2_response(&request_id);
                        }
                        if let Some(err) = query_violations(spec, &action, &q) {
                            log_error(&err, &action);
                            return labelled(
                                err.ec2_response(&request_id),
                                spec.signing_name,
                                &action,
                            );
                        }
                        if let Err(Denied(message)) = front
                            .authorize(&ctx, spec, &action, OperationInput::Query(&q))
                            .await
                        {
                            return AwsError::client(
                                "UnauthorizedOperation",
                                format!(
                                    "You are not authorized to perform this operation. {message}"
                                ),
                            )
                            .with_status(http::StatusCode::FORBIDDEN)
                            .ec2_response(&request_id);
                        }
                        let response = match svc.call(&action, &q, &ctx).await {
                            Ok(xml) => ec2::ok_response(&action, xmlns, &xml, &request_id),
                            Err(e) => {
                                log_error(&e, &action);
                                e.ec2_response(&request_id)
                            }
                        };
                        labelled(response, spec.signing_name, &action)
                    }
                    Protocol::Json { .. } => {
                        let err = AwsError::server("form-encoded service without a form protocol");
                        err.query_response(&request_id, "")
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// The error for an awsJson body that violates the model's constraints on `op`'s input. A body
/// that is not JSON is left to the service, which answers `SerializationException`.
fn json_violations(spec: &ServiceSpec, op: &str, body: &[u8]) -> Option<AwsError> {
    let shape = spec.constraints.input(op)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    // Most requests conform: one streaming pass tells, and only a request that may not is
    // parsed into a value for the full check and its message.
    if constraints::json_conforms(shape, body) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let found = constraints::validate_json(shape, &value);
    (!found.is_empty())
        .then(|| AwsError::client(spec.constraints.error_code, constraints::message(&found)))
}

/// The error for an awsQuery request that violates the model's constraints on `action`'s input.
fn query_violations(spec: &ServiceSpec, action: &str, req: &QueryRequest) -> Option<AwsError> {
    let shape = spec.constraints.input(action)?;
    let found = constraints::validate_query(shape, req);
    (!found.is_empty())
        .then(|| AwsError::client(spec.constraints.error_code, constraints::message(&found)))
}

/// The awsJson error response; for a client in query-compatible mode (`x-amzn-query-mode: true`,
/// sent for services that moved from awsQuery to JSON, such as CloudWatch) also the
/// `x-amzn-query-error: Code;Sender|Receiver` header the query protocol's error code comes from.
fn json_error(e: &AwsError, request_id: &str, query_mode: bool) -> Response {
    let mut response = e.json_response(request_id);
    if query_mode {
        let kind = if e.is_fault() { "Receiver" } else { "Sender" };
        if let Ok(value) = http::HeaderValue::from_str(&format!("{};{kind}", e.code)) {
            response.headers_mut().insert("x-amzn-query-error", value);
        }
    }
    response
}

/// The body with its `Content-Encoding` undone: `gzip` is decoded (up to `limit` bytes),
/// `identity` or none passes; any other encoding is refused.
fn decode_content_encoding(
    headers: &http::HeaderMap,
    body: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, AwsError> {
    use std::io::Read as _;
    let Some(encoding) = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    else {
        return Ok(body);
    };
    if !encoding.eq_ignore_ascii_case("gzip") {
        return Err(AwsError::client(
            "UnsupportedMediaType",
            format!("Content-Encoding {encoding} is not supported; send gzip or identity."),
        )
        .with_status(http::StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let read = flate2::read::GzDecoder::new(&body[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out);
    match read {
        Ok(_) if out.len() <= limit => Ok(bytes::Bytes::from(out)),
        Ok(_) => Err(AwsError::client(
            "RequestEntityTooLargeException",
            format!("Decompressed request body is larger than the limit of {limit} bytes."),
        )
        .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)),
        Err(error) => Err(AwsError::client(
            "SerializationException",
            format!("The gzip-encoded request body could not be decoded: {error}"),
        )),
    }
}

/// The session token of a request: the `X-Amz-Security-Token` header, or the presigned
/// query parameter.
fn session_token(parts: &http::request::Parts) -> Option<String> {
    if let Some(v) = parts.headers.get("x-amz-security-token") {
        return v.to_str().ok().map(str::to_owned);
    }
    let query = parts.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "X-Amz-Security-Token")
        .map(|(_, v)| v.into_owned())
}

/// The error for a signature that verified but names no principal, per protocol.
fn auth_failure_error(protocol: &Wire, failure: &AuthFailure) -> AwsError {
    let forbidden = http::StatusCode::FORBIDDEN;
    match (failure, protocol) {
        (AuthFailure::Expired, Wire::Json) => AwsError::client(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ),
        (AuthFailure::Expired, _) => AwsError::client(
            "ExpiredToken",
            "The security token included in the request is expired",
        )
        .with_status(forbidden),
        (AuthFailure::Invalid, Wire::Json) => AwsError::client(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (AuthFailure::Invalid, Wire::Query) => AwsError::client(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
        .with_status(forbidden),
        (AuthFailure::Invalid, Wire::Ec2) => AwsError::client(
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
        )
        .with_status(http::StatusCode::UNAUTHORIZED),
    }
}

fn log_error(e: &AwsError, op: &str) {
    if e.is_fault() {
        tracing::error!(op, code = %e.code, error = %e.message, "operation failed");
    } else {
        tracing::debug!(op, code = %e.code, error = %e.message, "client error");
    }
}

fn error_response(protocol: &Wire, err: &AwsError, request_id: &str, xmlns: &str) -> Response {
    match protocol {
        Wire::Json => err.json_response(request_id),
        Wire::Query => err.query_response(request_id, xmlns),
        Wire::Ec2 => err.ec2_response(request_id),
    }
}

/// A body for tests and callers that build requests by hand.
pub fn body_from(bytes: impl Into<bytes::Bytes>) -> Body {
    Body::from(bytes.into())
}
