//! A SigV4-signing awsJson1.1 client (ECS unless told otherwise) over a pooled HTTP/1.1
//! keep-alive connection pool.

use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The `X-Amz-Target` prefix of ECS operations.
pub const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// The SigV4 signing name of ECS.
pub const ECS_SIGNING_NAME: &str = "ecs";

/// The answer to one call: status and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Signs and sends ECS JSON calls; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct EcsClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoint: Uri,
    host: HeaderValue,
    region: String,
    credentials: Credentials,
    timeout: Duration,
    target_prefix: String,
    signing_name: String,
}

impl EcsClient {
    /// A client for `endpoint` (`http://host:port`) keeping up to `max_idle` connections open.
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
        max_idle: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint: Uri = endpoint
            .parse()
            .with_context(|| format!("invalid endpoint {endpoint:?}"))?;
        anyhow::ensure!(
            endpoint.scheme_str() == Some("http"),
            "endpoint {endpoint} must be http://host:port"
        );
        let authority = endpoint
            .authority()
            .ok_or_else(|| anyhow!("endpoint {endpoint} has no host"))?;
        let host = HeaderValue::from_str(authority.as_str())?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        let credentials =
            Credentials::new(access_key_id, secret_access_key, None, None, "gantry-bench");
        Ok(Self {
            http,
            endpoint,
            host,
            region: region.to_owned(),
            credentials,
            timeout,
            target_prefix: ECS_TARGET_PREFIX.to_owned(),
            signing_name: ECS_SIGNING_NAME.to_owned(),
        })
    }

    /// The same client for another awsJson1.1 service (e.g. CloudWatch Logs: `Logs_20140328`,
    /// signed as `logs`).
    pub fn with_service(mut self, target_prefix: &str, signing_name: &str) -> Self {
        self.target_prefix = target_prefix.to_owned();
        self.signing_name = signing_name.to_owned();
        self
    }

    /// Calls operation `op` with the JSON `body`, signed at the current time.
    pub async fn call(&self, op: &str, body: Bytes) -> anyhow::Result<Answer> {
        let req = self.signed(op, body)?;
        let work = async {
            let resp = self.http.request(req).await.context("sending request")?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .context("reading response body")?
                .to_bytes();
            anyhow::Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| anyhow!("{op}: no answer within {:?}", self.timeout))?
    }

    fn signed(&self, op: &str, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::builder()
            .method("POST")
            .uri(self.endpoint.clone())
            .header(http::header::HOST, self.host.clone())
            .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .header("x-amz-target", format!("{}.{op}", self.target_prefix))
            .body(Full::new(body.clone()))?;
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let headers = req
            .headers()
            .iter()
            .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
            .collect::<Result<Vec<_>, http::header::ToStrError>>()?;
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.to_string(),
            headers.into_iter(),
            SignableBody::Bytes(&body),
        )?;
        let (instructions, _signature) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(&mut req);
        Ok(req)
    }
}
