//! The control-plane side: the signed configuration stream (`GET /lb/v1/config`, reconnecting
//! with backoff), health reports (`POST /lb/v1/health`) and traffic reports
//! (`POST /lb/v1/metrics`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::{Buf, Bytes, BytesMut};
use gantry_domain::lb::{HealthReport, LbStreamMessage, UsageReport};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::LbError;

const SIGNING_NAME: &str = "elasticloadbalancing";

/// Signs and sends channel requests to the control plane. Given several endpoints (server
/// replicas), it uses one at a time and moves to the next when a connection to it fails.
#[derive(Clone)]
pub struct ControlClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoints: Arc<Vec<(String, HeaderValue)>>,
    current: Arc<AtomicUsize>,
    region: String,
    credentials: Credentials,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("endpoint", &self.target().0)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ControlClient {
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self, LbError> {
        let mut endpoints = Vec::new();
        for one in endpoint.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let one = one.trim_end_matches('/').to_owned();
            let uri: Uri = one
                .parse()
                .map_err(|e| LbError::Config(format!("invalid endpoint {one:?}: {e}")))?;
            if uri.scheme_str() != Some("http") {
                return Err(LbError::Config(format!(
                    "endpoint {one} must be http://host:port"
                )));
            }
            let authority = uri
                .authority()
                .ok_or_else(|| LbError::Config(format!("endpoint {one} has no host")))?;
            let host = HeaderValue::from_str(authority.as_str())
                .map_err(|e| LbError::Config(e.to_string()))?;
            endpoints.push((one, host));
        }
        if endpoints.is_empty() {
            return Err(LbError::Config(format!("no endpoint in {endpoint:?}")));
        }
        let mut c = HttpConnector::new();
        c.set_nodelay(true);
        c.set_connect_timeout(Some(Duration::from_secs(5)));
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(c),
            endpoints: Arc::new(endpoints),
            current: Arc::new(AtomicUsize::new(0)),
            region: region.to_owned(),
            credentials: Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "gantry-lb",
            ),
        })
    }

    /// The current endpoint, its Host header and its index.
    fn target(&self) -> (String, HeaderValue, usize) {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let (e, h) = &self.endpoints[i];
        (e.clone(), h.clone(), i)
    }

    /// After a failed connection through endpoint `i`: move to the next one.
    fn connection_failed(&self, i: usize) {
        let n = self.endpoints.len();
        if n > 1
            && self
                .current
                .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(failed = %self.endpoints[i].0, next = %self.endpoints[(i + 1) % n].0, "control plane endpoint unreachable; moving to the next");
        }
    }

    /// Sends `req` (built for endpoint `i`), moving to the next endpoint when it cannot connect.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        i: usize,
        what: &str,
    ) -> Result<http::Response<Incoming>, LbError> {
        tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| LbError::Transport(format!("{what}: no answer")))?
            .map_err(|e| {
                if e.is_connect() {
                    self.connection_failed(i);
                }
                LbError::Transport(format!("{what}: {e}"))
            })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(Request<Full<Bytes>>, usize), LbError> {
        let (endpoint, host, i) = self.target();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{endpoint}{path}"))
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| LbError::Transport(e.to_string()))?;
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| LbError::Transport(format!("signing: {e}")))?
            .into();
        let headers = req
            .headers()
            .iter()
            .map(|(n, v)| Ok((n.as_str(), v.to_str()?)))
            .collect::<Result<Vec<_>, http::header::ToStrError>>()
            .map_err(|e| LbError::Transport(format!("signing: {e}")))?;
        let signable = SignableRequest::new(
            method,
            req.uri().to_string(),
            headers.into_iter(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| LbError::Transport(format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| LbError::Transport(format!("signing: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut req);
        Ok((req, i))
    }

    /// Opens the configuration stream.
    pub async fn open_config(&self) -> Result<ConfigStream, LbError> {
        let (req, i) = self.request("GET", "/lb/v1/config", Bytes::new())?;
        let resp = self.send(req, i, "config stream").await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(LbError::Rejected(format!(
                "config stream: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(ConfigStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
        })
    }

    /// Posts a health report.
    pub async fn report(&self, report: &HealthReport) -> Result<(), LbError> {
        let body = serde_json::to_vec(report).map_err(|e| LbError::Transport(e.to_string()))?;
        self.post("/lb/v1/health", body, "health report").await
    }

    /// Posts a traffic report.
    pub async fn report_usage(&self, report: &UsageReport) -> Result<(), LbError> {
        let body = serde_json::to_vec(report).map_err(|e| LbError::Transport(e.to_string()))?;
        self.post("/lb/v1/metrics", body, "metrics report").await
    }

    async fn post(&self, path: &str, body: Vec<u8>, what: &str) -> Result<(), LbError> {
        let (req, i) = self.request("POST", path, Bytes::from(body))?;
        let resp = self.send(req, i, what).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(LbError::Rejected(format!("{what}: HTTP {status}")))
        }
    }
}

/// Newline-delimited messages of the configuration stream.
#[derive(Debug)]
pub struct ConfigStream {
    body: Incoming,
    buf: BytesMut,
}

impl ConfigStream {
    /// The next message; `Ok(None)` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<LbStreamMessage>, LbError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(i + 1);
                let line = &line[..i];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| LbError::Transport(format!("bad config line: {e}")));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(LbError::Transport(format!("config stream: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }
}
