//! SigV4-signed awsJson1.1 calls to ECS and the long-lived assignment stream, over hyper-util's
//! pooled HTTP/1.1 keep-alive client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::SimError;

/// The `X-Amz-Target` prefix of ECS operations.
const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// The SigV4 signing name of ECS (the assignment stream is signed with it too).
const ECS_SIGNING_NAME: &str = "ecs";

/// A call serialized and hashed once ([`EcsClient::prepare`]), with the signature headers it
/// was last sent with.
#[derive(Debug, Clone)]
pub struct Prepared {
    target: String,
    body: Bytes,
    sha256: String,
    signed: Arc<Mutex<Option<Signed>>>,
}

/// The signature headers of a prepared call, made in one second (SigV4 dates have a second's
/// resolution: every request of that second to that endpoint is signed the same).
#[derive(Debug)]
struct Signed {
    second: u64,
    endpoint: usize,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// Signs and sends ECS calls to one of the control plane's endpoints; cheap to clone (the
/// connection pool and the endpoint in use are shared). With several endpoints (server
/// replicas), a call that cannot reach the current one moves every later call to the next.
#[derive(Clone)]
pub struct EcsClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoints: Arc<[(Uri, HeaderValue)]>,
    current: Arc<AtomicUsize>,
    region: String,
    credentials: Credentials,
    timeout: Duration,
}

impl std::fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsClient")
            .field(
                "endpoints",
                &self.endpoints.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl EcsClient {
    /// A client for `endpoint` (`http://host:port`, or several separated by commas) keeping up
    /// to `max_idle` idle keep-alive connections; every call must answer within `timeout`.
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
        max_idle: usize,
        timeout: Duration,
    ) -> Result<Self, SimError> {
        let endpoints = endpoint
            .split(',')
            .map(parse_endpoint)
            .collect::<Result<Vec<_>, _>>()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let credentials =
            Credentials::new(access_key_id, secret_access_key, None, None, "gantry-sim");
        Ok(Self {
            http,
            endpoints: endpoints.into(),
            current: Arc::new(AtomicUsize::new(0)),
            region: region.to_owned(),
            credentials,
            timeout,
        })
    }

    fn sign(&self, req: &mut Request<Full<Bytes>>, body: &[u8]) -> Result<(), SimError> {
        self.sign_with(req, SignableBody::Bytes(body))
    }

    fn sign_with(
        &self,
        req: &mut Request<Full<Bytes>>,
        body: SignableBody<'_>,
    ) -> Result<(), SimError> {
        self.sign_at(req, body, SystemTime::now())
    }

    fn sign_at(
        &self,
        req: &mut Request<Full<Bytes>>,
        body: SignableBody<'_>,
        at: SystemTime,
    ) -> Result<(), SimError> {
        let signing = |e: &dyn std::fmt::Display| SimError::Transport(format!("signing: {e}"));
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(ECS_SIGNING_NAME)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| signing(&e))?
            .into();
        let headers = req
            .headers()
            .iter()
            .map(|(n, v)| Ok((n.as_str(), v.to_str()?)))
            .collect::<Result<Vec<_>, http::header::ToStrError>>()
            .map_err(|e| signing(&e))?;
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(req.method().as_str(), uri, headers.into_iter(), body)
            .map_err(|e| signing(&e))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| signing(&e))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }

    /// Calls ECS operation `op` with the JSON `body`; the JSON answer on HTTP 200.
    pub async fn call(&self, op: &str, body: &Value) -> Result<Value, SimError> {
        let body = self.call_raw(op, body).await?;
        if body.is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&body)
            .map_err(|e| SimError::Transport(format!("{op}: invalid JSON answer: {e}")))
    }

    /// Calls ECS operation `op` with the JSON `body`; the answer's bytes on HTTP 200, not parsed
    /// (load generators that must not spend their CPU on decoding).
    pub async fn call_raw(&self, op: &str, body: &Value) -> Result<Bytes, SimError> {
        let (index, endpoint, host) = self.endpoint();
        let answer = self.call_at(op, body, endpoint, host).await;
        self.fail_over_on(index, &answer);
        answer
    }

    async fn call_at(
        &self,
        op: &str,
        body: &Value,
        endpoint: Uri,
        host: HeaderValue,
    ) -> Result<Bytes, SimError> {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let target = format!("{ECS_TARGET_PREFIX}.{op}");
        self.within(op, async {
            let answer = self
                .exchange(op, &target, bytes, None, endpoint, host)
                .await?;
            let body = answer
                .collect()
                .await
                .map_err(|e| SimError::Transport(format!("{op}: reading the answer: {e}")))?;
            Ok(body.to_bytes())
        })
        .await
    }

    /// `op` with `body`, serialized and hashed once, for a load generator that sends the same
    /// call many times (the calls of one second share one signature, the one a fresh signing
    /// would make; the server still checks each).
    pub fn prepare(&self, op: &str, body: &Value) -> Prepared {
        let body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        Prepared {
            target: format!("{ECS_TARGET_PREFIX}.{op}"),
            body,
            sha256,
            signed: Arc::default(),
        }
    }

    /// Sends a prepared call; the length of the answer on HTTP 200, its bytes read and dropped
    /// as they arrive (nothing is gathered or decoded).
    pub async fn call_prepared(&self, call: &Prepared) -> Result<usize, SimError> {
        let (index, endpoint, host) = self.endpoint();
        let what = call.target.as_str();
        self.within(what, async {
            let mut req = request(&call.target, call.body.clone(), endpoint, host)?;
            self.sign_prepared(&mut req, call, index)?;
            let mut answer = self.send(what, req).await?;
            let mut len = 0;
            while let Some(frame) = answer.frame().await {
                let frame = frame
                    .map_err(|e| SimError::Transport(format!("{what}: reading the answer: {e}")))?;
                if let Some(data) = frame.data_ref() {
                    len += data.len();
                }
            }
            Ok(len)
        })
        .await
    }

    /// Signs a prepared call: with the headers of the call's last signature when it was made in
    /// this second for this endpoint (the same signature a fresh signing would give), else
    /// freshly.
    fn sign_prepared(
        &self,
        req: &mut Request<Full<Bytes>>,
        call: &Prepared,
        endpoint: usize,
    ) -> Result<(), SimError> {
        let second = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        {
            let signed = call.signed.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = signed
                .as_ref()
                .filter(|s| s.second == second && s.endpoint == endpoint)
            {
                for (name, value) in &s.headers {
                    req.headers_mut().insert(name.clone(), value.clone());
                }
                return Ok(());
            }
        }
        let before = req.headers().clone();
        self.sign_at(
            req,
            SignableBody::Precomputed(call.sha256.clone()),
            SystemTime::UNIX_EPOCH + Duration::from_secs(second),
        )?;
        let headers = req
            .headers()
            .iter()
            .filter(|(name, value)| before.get(*name) != Some(*value))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        *call.signed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Signed {
            second,
            endpoint,
            headers,
        });
        Ok(())
    }

    /// Signs and sends one awsJson call (`sha256`: the body's hash, if already known); the
    /// answer's body on HTTP 200, the AWS error it carries otherwise.
    async fn exchange(
        &self,
        what: &str,
        target: &str,
        body: Bytes,
        sha256: Option<&str>,
        endpoint: Uri,
        host: HeaderValue,
    ) -> Result<Incoming, SimError> {
        let mut req = request(target, body.clone(), endpoint, host)?;
        match sha256 {
            Some(hash) => self.sign_with(&mut req, SignableBody::Precomputed(hash.to_owned()))?,
            None => self.sign(&mut req, &body)?,
        }
        self.send(what, req).await
    }

    /// Sends a signed call; the answer's body on HTTP 200, the AWS error it carries otherwise.
    async fn send(&self, what: &str, req: Request<Full<Bytes>>) -> Result<Incoming, SimError> {
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| SimError::Transport(format!("{what}: {e}")))?;
        let status = resp.status();
        if status == StatusCode::OK {
            return Ok(resp.into_body());
        }
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| SimError::Transport(format!("{what}: reading the answer: {e}")))?;
        Err(aws_error(status, &headers, &body.to_bytes()))
    }

    /// `work`, unless it takes longer than the client's timeout.
    async fn within<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, SimError>>,
    ) -> Result<T, SimError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                SimError::Transport(format!("{what}: no answer within {:?}", self.timeout))
            })?
    }

    /// Opens the signed `GET {endpoint}{path_and_query}` and returns the body stream once the
    /// server answered 200.
    pub async fn open_stream(&self, path_and_query: &str) -> Result<Incoming, SimError> {
        let (index, endpoint, host) = self.endpoint();
        let opened = self.open_stream_at(path_and_query, endpoint, host).await;
        self.fail_over_on(index, &opened);
        opened
    }

    /// The endpoint in use: its index, URI and `Host` header.
    fn endpoint(&self) -> (usize, Uri, HeaderValue) {
        let index = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let (uri, host) = &self.endpoints[index];
        (index, uri.clone(), host.clone())
    }

    /// Moves to the next endpoint when the one at `index` could not be reached or is
    /// unavailable (unless another call already moved on).
    fn fail_over_on<T>(&self, index: usize, answer: &Result<T, SimError>) {
        let unreachable = match answer {
            Err(SimError::Transport(_)) => true,
            Err(SimError::Aws { status, .. }) => *status == 502 || *status == 503,
            _ => false,
        };
        if unreachable && self.endpoints.len() > 1 {
            let next = (index + 1) % self.endpoints.len();
            if self
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::info!(from = %self.endpoints[index].0, to = %self.endpoints[next].0, "control plane endpoint unreachable, moving to the next");
            }
        }
    }

    async fn open_stream_at(
        &self,
        path_and_query: &str,
        endpoint: Uri,
        host: HeaderValue,
    ) -> Result<Incoming, SimError> {
        let base = endpoint.to_string();
        let uri: Uri = format!("{}{path_and_query}", base.trim_end_matches('/'))
            .parse()
            .map_err(|e| SimError::Transport(format!("invalid stream URI: {e}")))?;
        let mut req = Request::builder()
            .method("GET")
            .uri(uri)
            .header(http::header::HOST, host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| SimError::Transport(e.to_string()))?;
        self.sign(&mut req, b"")?;
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| SimError::Transport("connect: no answer in time".into()))?
            .map_err(|e| SimError::Transport(format!("connect: {e}")))?;
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
        Err(aws_error(status, &headers, &body))
    }
}

/// One endpoint: its URI (`http://host:port`) and `Host` header.
/// An unsigned awsJson call to `endpoint`.
fn request(
    target: &str,
    body: Bytes,
    endpoint: Uri,
    host: HeaderValue,
) -> Result<Request<Full<Bytes>>, SimError> {
    Request::builder()
        .method("POST")
        .uri(endpoint)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .body(Full::new(body))
        .map_err(|e| SimError::Transport(e.to_string()))
}

fn parse_endpoint(endpoint: &str) -> Result<(Uri, HeaderValue), SimError> {
    let invalid = |why: String| SimError::InvalidConfig(why);
    let endpoint: Uri = endpoint
        .trim()
        .trim_end_matches('/')
        .parse()
        .map_err(|e| invalid(format!("invalid endpoint {endpoint:?}: {e}")))?;
    if endpoint.scheme_str() != Some("http") {
        return Err(invalid(format!(
            "endpoint {endpoint} must be http://host:port"
        )));
    }
    let authority = endpoint
        .authority()
        .ok_or_else(|| invalid(format!("endpoint {endpoint} has no host")))?;
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|e| invalid(format!("endpoint {endpoint}: {e}")))?;
    Ok((endpoint, host))
}

/// The AWS error of a non-200 awsJson answer (`__type` or `x-amzn-ErrorType`, and `message`).
fn aws_error(status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> SimError {
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
    SimError::Aws {
        status: status.as_u16(),
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_errors_take_the_code_from_type_or_header() {
        let e = aws_error(
            StatusCode::BAD_REQUEST,
            &http::HeaderMap::new(),
            br#"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"gone"}"#,
        );
        assert_eq!(e.code(), Some("ClusterNotFoundException"));
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-amzn-errortype",
            HeaderValue::from_static("ThrottlingException:http://x"),
        );
        let e = aws_error(StatusCode::BAD_REQUEST, &h, b"");
        assert_eq!(e.code(), Some("ThrottlingException"));
        assert!(e.is_retryable());
    }

    #[test]
    fn endpoints_must_be_plain_http() {
        let c = |e: &str| EcsClient::new(e, "us-east-1", "AK", "SK", 1, Duration::from_secs(1));
        assert!(c("http://127.0.0.1:4510/").is_ok());
        assert!(matches!(
            c("https://127.0.0.1:4510"),
            Err(SimError::InvalidConfig(_))
        ));
        assert!(matches!(c("not a uri"), Err(SimError::InvalidConfig(_))));
        assert!(c("http://127.0.0.1:1,http://127.0.0.1:2").is_ok());
        assert!(matches!(
            c("http://127.0.0.1:1,https://127.0.0.1:2"),
            Err(SimError::InvalidConfig(_))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_moves_calls_to_the_next() {
        // Port 1 on loopback refuses connections; the second endpoint is a listener that
        // answers every request with an empty JSON object.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                });
            }
        });
        let c = EcsClient::new(
            &format!("http://127.0.0.1:1,http://127.0.0.1:{port}"),
            "us-east-1",
            "AK",
            "SK",
            0,
            Duration::from_secs(5),
        )
        .unwrap();
        let first = c.call("ListClusters", &serde_json::json!({})).await;
        assert!(matches!(first, Err(SimError::Transport(_))), "{first:?}");
        let second = c.call("ListClusters", &serde_json::json!({})).await;
        assert_eq!(second.unwrap(), serde_json::json!({}));
    }
}
