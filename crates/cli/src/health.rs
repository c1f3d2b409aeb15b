//! `/healthz` and `/readyz`: unauthenticated probes for load balancers and orchestrators. They
//! answer a bare `ok` / `ready` (or `not ready` with 503) and reveal nothing else: no version,
//! no counts, no errors.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gantry_store::Store;

/// How long the store may take to answer the readiness read.
const STORE_DEADLINE: Duration = Duration::from_secs(2);

/// The probe routes over `store`.
pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(store)
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Live: the process serves HTTP.
async fn healthz() -> Response {
    plain(StatusCode::OK, "ok\n")
}

/// Ready: the store answers a read within its deadline.
async fn readyz(State(store): State<Arc<dyn Store>>) -> Response {
    match tokio::time::timeout(STORE_DEADLINE, store.revision()).await {
        Ok(Ok(_)) => plain(StatusCode::OK, "ready\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
        Err(_) => {
            tracing::warn!("readiness: the store did not answer in time");
            plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
    }
}
