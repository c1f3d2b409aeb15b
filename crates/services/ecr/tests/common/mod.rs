//! Test helpers: an in-process registry on 127.0.0.1:0 with a MemoryStore, and a plain HTTP
//! client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use gantry_ecr::{Algorithm, EcrContext, Registry, RegistryConfig, RegistryOptions};
use gantry_store::{MemoryStore, Store};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

pub const ACCESS_KEY: &str = "AKIDTESTREGISTRY";
pub const SECRET_KEY: &str = "test-secret-key";
pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "us-east-1";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub struct TestRegistry {
    pub reg: Arc<Registry>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub auth: String,
    server: AbortOnDrop,
}

/// Aborts the server task when the test registry is dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The first OCI error code of the body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

pub fn creds() -> Arc<dyn gantry_aws_proto::sigv4::CredentialProvider> {
    let mut m = HashMap::new();
    m.insert(ACCESS_KEY.to_owned(), SECRET_KEY.to_owned());
    Arc::new(m)
}

pub fn config(dir: &std::path::Path) -> RegistryConfig {
    RegistryConfig {
        data_dir: dir.to_path_buf(),
        account_id: ACCOUNT.into(),
        default_region: REGION.into(),
        token_secret: b"test-token-secret".to_vec(),
    }
}

impl TestRegistry {
    pub async fn start() -> Self {
        Self::start_with(RegistryOptions::default()).await
    }

    pub async fn start_with(options: RegistryOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        Self::start_on(dir, store, options).await
    }

    /// Starts a registry over an existing data dir and store (a "restart").
    pub async fn start_on(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        options: RegistryOptions,
    ) -> Self {
        let reg = Registry::open_with_options(config(dir.path()), store.clone(), creds(), options)
            .await
            .expect("open registry");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = reg.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let password = reg.mint_password(ACCESS_KEY, REGION);
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"))
        );
        Self {
            reg,
            addr,
            dir,
            store,
            client,
            auth,
            server: AbortOnDrop(server),
        }
    }

    /// Stops the server and returns what a restart needs.
    pub fn stop(self) -> (tempfile::TempDir, Arc<dyn Store>) {
        let TestRegistry {
            dir, store, server, ..
        } = self;
        drop(server);
        (dir, store)
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn ctx(&self) -> EcrContext {
        EcrContext {
            region: REGION.into(),
            access_key_id: ACCESS_KEY.into(),
            registry_host: self.host(),
            keys: None,
        }
    }

    pub async fn ecr(&self, op: &str, body: Value) -> Result<Value, gantry_aws_proto::AwsError> {
        self.reg
            .handle_ecr(op, body.to_string().as_bytes(), &self.ctx())
            .await
    }

    /// An ECR API call signed for `region`.
    pub async fn ecr_in(
        &self,
        region: &str,
        op: &str,
        body: Value,
    ) -> Result<Value, gantry_aws_proto::AwsError> {
        let mut ctx = self.ctx();
        ctx.region = region.into();
        self.reg
            .handle_ecr(op, body.to_string().as_bytes(), &ctx)
            .await
    }

    /// `Authorization` for `/v2/` with a password issued in `region`.
    pub fn auth_in(&self, region: &str) -> String {
        let password = self.reg.mint_password(ACCESS_KEY, region);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"))
        )
    }

    /// `GET /v2/<path>` (an OCI manifest accepted) with `auth`.
    pub async fn get_as(&self, path: &str, auth: &str) -> Resp {
        self.req_auth(
            "GET",
            &format!("/v2/{path}"),
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
            Some(auth),
        )
        .await
    }

    pub async fn create_repo(&self, name: &str) {
        self.ecr("CreateRepository", json!({"repositoryName": name}))
            .await
            .expect("create repository");
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.req_auth(method, path, headers, body, Some(&self.auth.clone()))
            .await
    }

    pub async fn req_auth(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
        auth: Option<&str>,
    ) -> Resp {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("http://{}{}", self.addr, path)
        };
        let mut b = http::Request::builder().method(method).uri(url);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body.into())).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(60), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Monolithic push of a blob; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = Algorithm::Sha256.digest(data).to_string();
        let r = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[("content-type", "application/octet-stream")],
                Bytes::copy_from_slice(data),
            )
            .await;
        assert_eq!(r.status, 201, "push blob: {:?}", r.body);
        d
    }

    /// Pushes an OCI image manifest with the given config and layers; returns (digest, body).
    pub async fn push_image(
        &self,
        repo: &str,
        reference: &str,
        layers: &[&[u8]],
    ) -> (String, String) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","n":"{}"}}"#,
            rand_hex(8)
        );
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let mut descs = Vec::new();
        for l in layers {
            let d = self.push_blob(repo, l).await;
            descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": l.len()}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": descs,
        })
        .to_string();
        let r = self
            .req(
                "PUT",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", OCI_MANIFEST)],
                manifest.clone(),
            )
            .await;
        assert_eq!(r.status, 201, "push manifest: {:?}", r.body);
        (
            r.header("docker-content-digest").unwrap_or("").to_owned(),
            manifest,
        )
    }
}

pub fn rand_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:x}", rand::random::<u8>() % 16))
        .collect()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    v
}

pub fn sha256(data: &[u8]) -> String {
    Algorithm::Sha256.digest(data).to_string()
}
