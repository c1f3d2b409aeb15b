//! `GET /metrics` on the server's listener: the Prometheus (OpenMetrics text) exposition of the
//! API front's request metrics. Scrapers authenticate with HTTP Basic, the root access key id as
//! user and its secret as password (Prometheus' `basic_auth`), like every other route.
//!
//! `gantry agent` and `gantry lb` serve theirs on a listener of their own (`--metrics-listen`),
//! without authentication, as node exporters do: the operator binds it to a private address.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use gantry_aws_proto::sigv4::CredentialProvider;
use gantry_front::ApiMetrics;
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq as _;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Exposition {
    registry: Registry,
    creds: Arc<dyn CredentialProvider>,
}

/// The `/metrics` route over `metrics`.
pub fn router(metrics: &ApiMetrics, creds: Arc<dyn CredentialProvider>) -> Router {
    let mut registry = Registry::with_prefix("gantry");
    metrics.register(&mut registry);
    Router::new()
        .route("/metrics", get(serve))
        .with_state(Arc::new(Exposition { registry, creds }))
}

fn authorized(req: &Request, creds: &dyn CredentialProvider) -> bool {
    let Some(encoded) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((id, secret)) = text.split_once(':') else {
        return false;
    };
    creds
        .secret_access_key(id)
        .is_some_and(|want| bool::from(want.as_bytes().ct_eq(secret.as_bytes())))
}

async fn serve(State(e): State<Arc<Exposition>>, req: Request) -> Response {
    if !authorized(&req, e.creds.as_ref()) {
        let mut r = Response::new(Body::from("authentication required\n"));
        *r.status_mut() = http::StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"gantry\""),
        );
        return r;
    }
    exposition(&e.registry)
}

/// Binds `addr` and serves `GET /metrics` there, unauthenticated, with what `register` adds
/// (prefixed `gantry_`), for as long as the process runs. Logs the bound address.
pub async fn serve_open(
    addr: std::net::SocketAddr,
    role: &'static str,
    register: impl FnOnce(&mut Registry),
) -> anyhow::Result<()> {
    let mut registry = Registry::with_prefix("gantry");
    register(&mut registry);
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{role} metrics listener on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(serve_registry))
        .with_state(registry);
    tracing::info!(addr = %bound, "{role} metrics listening");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics listener stopped");
        }
    });
    Ok(())
}

async fn serve_registry(State(registry): State<Arc<Registry>>) -> Response {
    exposition(&registry)
}

fn exposition(registry: &Registry) -> Response {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(%error, "metrics exposition failed");
        let mut r = Response::new(Body::from("metrics unavailable\n"));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    }
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}
