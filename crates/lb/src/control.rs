//! The control-plane side: the signed configuration stream (`GET /lb/v1/config`, reconnecting
//! with backoff) and health reports (`POST /lb/v1/health`).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::{Buf, Bytes, BytesMut};
use gantry_domain::lb::{HealthReport, LbStreamMessage};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::LbError;

const SIGNING_NAME: &str = "elasticloadbalancing";

/// Signs and sends channel requests to the control plane.
#[derive(Clone)]
pub struct ControlClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoint: String,
    host: HeaderValue,
    region: String,
    credentials: Credentials,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("endpoint", &self.endpoint)
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
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| LbError::Config(format!("invalid endpoint {endpoint:?}: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(LbError::Config(format!(
                "endpoint {endpoint} must be http://host:port"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| LbError::Config(format!("endpoint {endpoint} has no host")))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| LbError::Config(e.to_string()))?;
        let mut c = HttpConnector::new();
        c.set_nodelay(true);
        c.set_connect_timeout(Some(Duration::from_secs(5)));
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(c),
            endpoint,
            host,
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

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, LbError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint))
            .header(http::header::HOST, self.host.clone())
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
        Ok(req)
    }

    /// Opens the configuration stream.
    pub async fn open_config(&self) -> Result<ConfigStream, LbError> {
        let req = self.request("GET", "/lb/v1/config", Bytes::new())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| LbError::Transport("config stream: no answer".into()))?
            .map_err(|e| LbError::Transport(format!("config stream: {e}")))?;
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
        let body =
            Bytes::from(serde_json::to_vec(report).map_err(|e| LbError::Transport(e.to_string()))?);
        let req = self.request("POST", "/lb/v1/health", body)?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| LbError::Transport("health report: no answer".into()))?
            .map_err(|e| LbError::Transport(format!("health report: {e}")))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(LbError::Rejected(format!("health report: HTTP {status}")))
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
