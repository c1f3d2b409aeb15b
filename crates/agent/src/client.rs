//! SigV4-signed calls to the control plane: awsJson1.1 operations (ECS, ECR, Logs) and the
//! long-lived assignment stream, over hyper-util's pooled HTTP/1.1 client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// An AWS service the agent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ecs,
    Ecr,
    Logs,
    /// Only for the network-policy stream (EC2 has no awsJson operations).
    Ec2,
    /// ELBv2 (awsQuery, through [`ApiClient::call_query`]).
    Elbv2,
    /// STS (awsQuery): who a key pair is.
    Sts,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Self::Ecs => "ecs",
            Self::Ecr => "ecr",
            Self::Logs => "logs",
            Self::Ec2 => "ec2",
            Self::Elbv2 => "elasticloadbalancing",
            Self::Sts => "sts",
        }
    }

    fn target_prefix(self) -> &'static str {
        match self {
            Self::Ecs => "AmazonEC2ContainerServiceV20141113",
            Self::Ecr => "AmazonEC2ContainerRegistry_V20150921",
            Self::Logs => "Logs_20140328",
            Self::Ec2 | Self::Elbv2 | Self::Sts => "",
        }
    }
}

/// Failures of a call to the control plane.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The server could not be reached, or did not answer in time.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with an AWS error.
    #[error("{code} (HTTP {status}): {message}")]
    Aws {
        status: u16,
        code: String,
        message: String,
    },
}

impl CallError {
    /// The AWS error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Aws { code, .. } => Some(code),
            Self::Transport(_) => None,
        }
    }

    /// Whether the server rejected the request itself (HTTP 4xx, not throttling or auth).
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Aws { status, code, .. }
            if (400..500).contains(status)
                && !code.contains("Throttl")
                && *status != 429
                && *status != 403)
    }
}

/// Percent-encodes a form value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Extracts the AWS error code from an awsJson error answer.
fn error_code(headers: &http::HeaderMap, body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let raw = headers
        .get("x-amzn-errortype")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| v.get("__type").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "UnknownError".to_owned());
    let code = raw.rsplit('#').next().unwrap_or(&raw);
    let code = code.split(':').next().unwrap_or(code).to_owned();
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    (code, message)
}

/// The Host header for `uri`.
fn host_of(uri: &Uri) -> Result<HeaderValue, CallError> {
    let authority = uri
        .authority()
        .ok_or_else(|| CallError::Transport(format!("endpoint {uri} has no host")))?;
    HeaderValue::from_str(authority.as_str()).map_err(|e| CallError::Transport(e.to_string()))
}

/// Signs and sends requests to the control plane; cheap to clone (the pool is shared).
///
/// Given several endpoints (replicas of the control plane), it talks to one at a time and moves
/// to the next when a connection to the current one fails, so a dead replica costs a retry.
#[derive(Clone)]
pub struct ApiClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoints: Arc<Vec<(Uri, HeaderValue)>>,
    current: Arc<AtomicUsize>,
    region: String,
    credentials: Credentials,
    timeout: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("endpoint", &self.target().0)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `endpoint`: `http://host:port`, or several separated by commas.
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self, String> {
        let mut endpoints = Vec::new();
        for one in endpoint.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let uri: Uri = one
                .trim_end_matches('/')
                .parse()
                .map_err(|e| format!("invalid endpoint {one:?}: {e}"))?;
            if uri.scheme_str() != Some("http") {
                return Err(format!("endpoint {uri} must be http://host:port"));
            }
            let authority = uri
                .authority()
                .ok_or_else(|| format!("endpoint {uri} has no host"))?;
            let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
            endpoints.push((uri, host));
        }
        if endpoints.is_empty() {
            return Err(format!("no endpoint in {endpoint:?}"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let credentials =
            Credentials::new(access_key_id, secret_access_key, None, None, "gantry-agent");
        Ok(Self {
            http,
            endpoints: Arc::new(endpoints),
            current: Arc::new(AtomicUsize::new(0)),
            region: region.to_owned(),
            credentials,
            timeout: Duration::from_secs(30),
        })
    }

    /// The same client signing with a session token too (temporary credentials).
    pub fn with_session_token(mut self, token: &str) -> Self {
        self.credentials = Credentials::new(
            self.credentials.access_key_id(),
            self.credentials.secret_access_key(),
            Some(token.to_owned()),
            None,
            "gantry",
        );
        self
    }

    /// The same endpoint (and connection pool) signing with session credentials: an
    /// execution role's, for what the agent does on its task's behalf.
    pub fn with_session(&self, access_key_id: &str, secret_access_key: &str, token: &str) -> Self {
        let mut c = self.clone();
        c.credentials = Credentials::new(
            access_key_id,
            secret_access_key,
            Some(token.to_owned()),
            None,
            "gantry-task-role",
        );
        c
    }

    /// `host:port` of the current endpoint.
    pub fn authority(&self) -> String {
        self.target()
            .0
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default()
    }

    /// `host:port` of every endpoint (what images from Gantry's own registry start with).
    pub fn authorities(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .filter_map(|(uri, _)| uri.authority().map(|a| a.as_str().to_owned()))
            .collect()
    }

    /// The current endpoint URL without a trailing slash.
    pub fn endpoint(&self) -> String {
        self.target().0.to_string().trim_end_matches('/').to_owned()
    }

    /// The current endpoint and its Host header.
    fn target(&self) -> (Uri, HeaderValue) {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        self.endpoints[i].clone()
    }

    /// After a failed connection to `uri`: the next request goes to the next endpoint (unless
    /// another request already moved on).
    fn connection_failed(&self, uri: &Uri) {
        let n = self.endpoints.len();
        if n < 2 {
            return;
        }
        let i = self.current.load(Ordering::Relaxed) % n;
        if self.endpoints[i].0.authority() == uri.authority() {
            let _ =
                self.current
                    .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
            tracing::warn!(failed = %uri, next = %self.endpoints[(i + 1) % n].0, "control plane endpoint unreachable; moving to the next");
        }
    }

    fn sign(
        &self,
        service: Service,
        req: &mut Request<Full<Bytes>>,
        body: &[u8],
    ) -> Result<(), CallError> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service.signing_name())
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CallError::Transport(format!("signing: {e}")))?
            .into();
        let headers = req
            .headers()
            .iter()
            .map(|(n, v)| Ok((n.as_str(), v.to_str()?)))
            .collect::<Result<Vec<_>, http::header::ToStrError>>()
            .map_err(|e| CallError::Transport(format!("signing: {e}")))?;
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            uri,
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| CallError::Transport(format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| CallError::Transport(format!("signing: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }

    /// Calls `service` operation `op` with JSON `body`; the JSON answer on HTTP 200.
    pub async fn call(&self, service: Service, op: &str, body: &Value) -> Result<Value, CallError> {
        let target = format!("{}.{op}", service.target_prefix());
        let base: Uri = self
            .endpoint()
            .parse()
            .map_err(|e| CallError::Transport(format!("invalid URI: {e}")))?;
        self.post(service, base, Some(target), op, body).await
    }

    /// `POST {endpoint}{path}` with JSON `body`, signed for `service`; the JSON answer on HTTP
    /// 200. For the control plane's agent channels (`/agent/v1/...`).
    pub async fn post_path(
        &self,
        service: Service,
        path: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let uri: Uri = format!("{}{path}", self.endpoint())
            .parse()
            .map_err(|e| CallError::Transport(format!("invalid URI: {e}")))?;
        self.post(service, uri, None, path, body).await
    }

    async fn post(
        &self,
        service: Service,
        uri: Uri,
        target: Option<String>,
        op: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let host = host_of(&uri)?;
        let (status, headers, body) = self
            .exchange(
                service,
                (uri, host),
                "application/x-amz-json-1.1",
                target,
                bytes,
                op,
            )
            .await?;
        if status == StatusCode::OK {
            if body.is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_slice(&body)
                .map_err(|e| CallError::Transport(format!("{op}: invalid JSON answer: {e}")));
        }
        let (code, message) = error_code(&headers, &body);
        Err(CallError::Aws {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// Sends one signed `POST` of `bytes` to `to` (URI and Host header) and reads the whole
    /// answer within the client's timeout; a failed connection moves the client to its next
    /// endpoint. `what` names the call in errors.
    async fn exchange(
        &self,
        service: Service,
        to: (Uri, HeaderValue),
        content_type: &'static str,
        target: Option<String>,
        bytes: Bytes,
        what: &str,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), CallError> {
        let (uri, host) = to;
        let sent_to = uri.clone();
        let mut builder = Request::builder()
            .method("POST")
            .uri(uri)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, content_type);
        if let Some(t) = target {
            builder = builder.header("x-amz-target", t);
        }
        let mut req = builder
            .body(Full::new(bytes.clone()))
            .map_err(|e| CallError::Transport(e.to_string()))?;
        self.sign(service, &mut req, &bytes)?;
        let work = async {
            let resp = self.http.request(req).await.map_err(|e| {
                if e.is_connect() {
                    self.connection_failed(&sent_to);
                }
                CallError::Transport(format!("{what}: {e}"))
            })?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::Transport(format!("{what}: reading answer: {e}")))?
                .to_bytes();
            Ok((status, headers, body))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                CallError::Transport(format!("{what}: no answer within {:?}", self.timeout))
            })?
    }

    /// Calls an awsQuery `action` of `service` (`version` its API version) with form
    /// `params`; the XML answer on HTTP 200.
    pub async fn call_query(
        &self,
        service: Service,
        action: &str,
        version: &str,
        params: &[(&str, &str)],
    ) -> Result<String, CallError> {
        let mut form = format!("Action={}&Version={}", encode(action), encode(version));
        for (k, v) in params {
            form.push('&');
            form.push_str(&encode(k));
            form.push('=');
            form.push_str(&encode(v));
        }
        let bytes = Bytes::from(form.into_bytes());
        let (status, _, body) = self
            .exchange(
                service,
                self.target(),
                "application/x-www-form-urlencoded; charset=utf-8",
                None,
                bytes,
                action,
            )
            .await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status == StatusCode::OK {
            return Ok(text);
        }
        let element = |name: &str| {
            let open = format!("<{name}>");
            let start = text.find(&open)? + open.len();
            let end = text[start..].find(&format!("</{name}>"))? + start;
            Some(text[start..end].to_owned())
        };
        Err(CallError::Aws {
            status: status.as_u16(),
            code: element("Code").unwrap_or_else(|| "UnknownError".to_owned()),
            message: element("Message").unwrap_or_default(),
        })
    }

    /// A signed `POST {endpoint}{path}` (signed for `service`) of a JSON body; on HTTP 2xx the
    /// JSON answer, `Value::Null` for an empty body.
    pub async fn post_json(
        &self,
        service: Service,
        path: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let uri: Uri = format!("{}{path}", self.endpoint())
            .parse()
            .map_err(|e| CallError::Transport(format!("invalid URI: {e}")))?;
        let host = host_of(&uri)?;
        let (status, headers, body) = self
            .exchange(service, (uri, host), "application/json", None, bytes, path)
            .await?;
        if status.is_success() {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body)
                .map_err(|e| CallError::Transport(format!("{path}: invalid JSON answer: {e}")));
        }
        let (code, message) = error_code(&headers, &body);
        Err(CallError::Aws {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// Opens a signed `GET {endpoint}{path_and_query}` (service `ecs`) and returns the body
    /// stream once the server answered 200.
    pub async fn open_stream(&self, path_and_query: &str) -> Result<Incoming, CallError> {
        self.open_stream_for(Service::Ecs, path_and_query).await
    }

    /// [`Self::open_stream`] signed for `service`.
    pub async fn open_stream_for(
        &self,
        service: Service,
        path_and_query: &str,
    ) -> Result<Incoming, CallError> {
        let uri: Uri = format!("{}{path_and_query}", self.endpoint())
            .parse()
            .map_err(|e| CallError::Transport(format!("invalid stream URI: {e}")))?;
        let host = host_of(&uri)?;
        let sent_to = uri.clone();
        let mut req = Request::builder()
            .method("GET")
            .uri(uri)
            .header(http::header::HOST, host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| CallError::Transport(e.to_string()))?;
        self.sign(service, &mut req, b"")?;
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| CallError::Transport("connect: no answer".into()))?
            .map_err(|e| {
                if e.is_connect() {
                    self.connection_failed(&sent_to);
                }
                CallError::Transport(format!("connect: {e}"))
            })?;
        let status = resp.status();
        if status == StatusCode::OK {
            return Ok(resp.into_body());
        }
        let headers = resp.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let (code, message) = error_code(&headers, &body);
        Err(CallError::Aws {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_come_from_type_or_header() {
        let (c, m) = error_code(
            &http::HeaderMap::new(),
            br#"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"gone"}"#,
        );
        assert_eq!(
            (c.as_str(), m.as_str()),
            ("ClusterNotFoundException", "gone")
        );
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-amzn-errortype",
            HeaderValue::from_static("InvalidParameterException:http://x"),
        );
        assert_eq!(error_code(&h, b"").0, "InvalidParameterException");
    }

    #[test]
    fn client_errors_exclude_throttling_and_auth() {
        let e = |status, code: &str| CallError::Aws {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(e(400, "InvalidParameterException").is_client_error());
        assert!(!e(400, "ThrottlingException").is_client_error());
        assert!(!e(403, "InvalidSignatureException").is_client_error());
        assert!(!e(500, "ServerException").is_client_error());
        assert!(!CallError::Transport("x".into()).is_client_error());
    }
}
