//! Task metadata endpoint v4 (and the same documents under v3): `/v4/<id>`, `/v4/<id>/task`,
//! `/v4/<id>/stats`, `/v4/<id>/task/stats`, where `<id>` is an unguessable per-container id
//! injected as `ECS_CONTAINER_METADATA_URI_V4`. Task actors publish their documents here; stats
//! are sampled from the runtime on request. The same listeners serve the task protection
//! endpoint (`crate::task_protection`) under `ECS_AGENT_URI` (`/api/<id>`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::runtime::ContainerRuntime;

/// The documents of one task as its actor last published them.
#[derive(Debug, Clone, Default)]
pub struct TaskDocument {
    /// The v4 task JSON without `Containers`.
    pub task: Map<String, Value>,
    /// (metadata id, Docker id, v4 container JSON) per container that exists.
    pub containers: Vec<(String, String, Value)>,
}

#[derive(Debug, Default)]
struct Inner {
    /// metadata id → task ARN.
    ids: HashMap<String, String>,
    tasks: HashMap<String, TaskDocument>,
}

/// What the endpoint serves; shared between task actors and the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct MetadataRegistry {
    inner: Arc<Mutex<Inner>>,
}

impl MetadataRegistry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the documents of task `arn`.
    pub fn publish(&self, arn: &str, doc: TaskDocument) {
        let mut inner = self.lock();
        inner.ids.retain(|_, t| t != arn);
        for (mid, _, _) in &doc.containers {
            inner.ids.insert(mid.clone(), arn.to_owned());
        }
        inner.tasks.insert(arn.to_owned(), doc);
    }

    /// Forgets task `arn`.
    pub fn forget(&self, arn: &str) {
        let mut inner = self.lock();
        inner.ids.retain(|_, t| t != arn);
        inner.tasks.remove(arn);
    }

    /// The ARN of the task whose container has metadata id `metadata_id`.
    pub fn task_arn(&self, metadata_id: &str) -> Option<String> {
        self.lock().ids.get(metadata_id).cloned()
    }

    fn lookup(&self, metadata_id: &str) -> Option<(String, TaskDocument)> {
        let inner = self.lock();
        let arn = inner.ids.get(metadata_id)?;
        Some((metadata_id.to_owned(), inner.tasks.get(arn)?.clone()))
    }
}

#[derive(Clone)]
struct AppState {
    registry: MetadataRegistry,
    runtime: Arc<dyn ContainerRuntime>,
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "metadata: unknown container id"})),
    )
        .into_response()
}

fn task_json(doc: &TaskDocument) -> Value {
    let mut t = doc.task.clone();
    t.insert(
        "Containers".into(),
        Value::Array(doc.containers.iter().map(|(_, _, c)| c.clone()).collect()),
    );
    Value::Object(t)
}

async fn container(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.registry.lookup(&id) {
        Some((mid, doc)) => doc
            .containers
            .iter()
            .find(|(m, _, _)| *m == mid)
            .map(|(_, _, c)| Json(c.clone()).into_response())
            .unwrap_or_else(not_found),
        None => not_found(),
    }
}

async fn task(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.registry.lookup(&id) {
        Some((_, doc)) => Json(task_json(&doc)).into_response(),
        None => not_found(),
    }
}

async fn container_stats(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Some((mid, doc)) = s.registry.lookup(&id) else {
        return not_found();
    };
    let Some((_, docker_id, _)) = doc.containers.iter().find(|(m, _, _)| *m == mid) else {
        return not_found();
    };
    match s.runtime.stats(docker_id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn task_stats(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Some((_, doc)) = s.registry.lookup(&id) else {
        return not_found();
    };
    let samples = futures::future::join_all(doc.containers.iter().map(|(_, docker_id, _)| {
        let rt = s.runtime.clone();
        let docker_id = docker_id.clone();
        async move {
            let v = rt.stats(&docker_id).await.unwrap_or(Value::Null);
            (docker_id, v)
        }
    }))
    .await;
    Json(Value::Object(samples.into_iter().collect())).into_response()
}

/// The metadata routes, for a listener that serves more than them.
pub fn app(registry: MetadataRegistry, runtime: Arc<dyn ContainerRuntime>) -> Router {
    router(AppState { registry, runtime })
}

fn router(state: AppState) -> Router {
    let mut r = Router::new();
    for v in ["v3", "v4"] {
        r = r
            .route(&format!("/{v}/{{id}}"), get(container))
            .route(&format!("/{v}/{{id}}/task"), get(task))
            .route(&format!("/{v}/{{id}}/stats"), get(container_stats))
            .route(&format!("/{v}/{{id}}/task/stats"), get(task_stats));
    }
    r.with_state(state)
}

/// One server future per listener (the caller spawns them), serving the metadata routes and
/// `more` (the task protection endpoint).
pub fn serve(
    listeners: Vec<tokio::net::TcpListener>,
    registry: MetadataRegistry,
    runtime: Arc<dyn ContainerRuntime>,
    more: Router,
) -> Vec<futures::future::BoxFuture<'static, ()>> {
    let app = router(AppState { registry, runtime }).merge(more);
    listeners
        .into_iter()
        .map(|l| {
            let fut: futures::future::BoxFuture<'static, ()> =
                Box::pin(serve_router(l, app.clone()));
            fut
        })
        .collect()
}

/// Serves `app` on `listener` until the listener fails, with each caller's address as
/// `ConnectInfo<SocketAddr>`. HTTP/1 half-closed connections are
/// answered: a client that sends its request and shuts down its write side (`nc`, `curl
/// --http1.0` piped from a file) still gets the response rather than a dropped connection.
pub async fn serve_router(listener: tokio::net::TcpListener, app: Router) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().half_close(true);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) if is_transient_accept_error(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(?addr, error = %e, "metadata endpoint stopped");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        // Handlers see the caller's address (the credentials endpoint checks it).
        let service = TowerToHyperService::new(
            app.clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        tokio::spawn(async move {
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metadata connection ended with an error");
            }
        });
    }
}

/// Errors of `accept` that concern one connection or a passing shortage (file descriptors),
/// not the listener.
fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 23 || c == 24) // ENFILE, EMFILE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_maps_ids_to_task_documents() {
        let r = MetadataRegistry::default();
        let mut task = Map::new();
        task.insert("TaskARN".into(), json!("arn:t1"));
        r.publish(
            "arn:t1",
            TaskDocument {
                task,
                containers: vec![("m1".into(), "d1".into(), json!({"Name": "app"}))],
            },
        );
        let (_, doc) = r.lookup("m1").expect("known");
        let v = task_json(&doc);
        assert_eq!(v["TaskARN"], "arn:t1");
        assert_eq!(v["Containers"][0]["Name"], "app");
        assert!(r.lookup("m2").is_none());
        r.forget("arn:t1");
        assert!(r.lookup("m1").is_none());
    }

    /// A client that half-closes after its request (busybox `nc`) still gets the answer, even
    /// when the answer takes a while (a loaded host, a stats call to the engine).
    #[tokio::test]
    async fn answers_clients_that_half_close_after_the_request() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let app = Router::new().route(
            "/v4/m1/task",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                Json(json!({"TaskARN": "arn:t1"}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_router(listener, app));
        for _ in 0..5 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /v4/m1/task HTTP/1.0\r\n\r\n")
                .await
                .unwrap();
            s.shutdown().await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            assert!(
                out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
                "{out:?}"
            );
            assert!(out.contains("\"TaskARN\":\"arn:t1\""), "{out:?}");
        }
    }
}
