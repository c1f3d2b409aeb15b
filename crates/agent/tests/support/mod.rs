//! Test support: a fake control plane (in-process axum on 127.0.0.1:0 that accepts any
//! signature), a FROM-scratch busybox image built per test, and a guard that removes every
//! container of the test's container instance.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gantry_agent::{AgentConfig, AgentError};
use gantry_domain::task::{AgentMessage, AgentTask, TaskStatus};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";

/// Whether Docker is usable; prints a loud skip (or panics when `GANTRY_REQUIRE_DOCKER=1`).
pub fn docker_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("GANTRY_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("{test}: Docker is required (GANTRY_REQUIRE_DOCKER=1) but not available");
        }
        eprintln!("SKIPPED: Docker not available ({test})");
    }
    ok
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Docker inspect of a container as JSON.
pub fn inspect(id: &str) -> Option<Value> {
    let out = Command::new("docker")
        .args(["inspect", id])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0).cloned()
}

/// Containers carrying label `gantry.container-instance=<arn>`.
pub fn containers_of(instance_arn: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=gantry.container-instance={instance_arn}"),
    ])
    .lines()
    .map(str::to_owned)
    .filter(|l| !l.is_empty())
    .collect()
}

pub fn docker_exec(id: &str, script: &str) -> String {
    docker(&["exec", id, "sh", "-c", script])
}

/// Builds the busybox image under a unique tag; removed by [`Env`]'s drop.
fn build_busybox(tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is needed (apt-get install -y busybox-static)");
    std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Default)]
pub struct FakeState {
    pub registrations: Vec<Value>,
    pub task_changes: Vec<Value>,
    pub container_changes: Vec<Value>,
    /// (group, stream, message)
    pub log_events: Vec<(String, String, String)>,
    pub log_groups: Vec<String>,
    pub connects: usize,
    /// (operation, SigV4 service of the credential scope) per call, `connect` for the stream.
    pub signed: Vec<(String, String)>,
    /// Tasks assigned to the instance, in order.
    pub tasks: BTreeMap<String, AgentTask>,
    subscribers: Vec<mpsc::UnboundedSender<Bytes>>,
}

/// The fake control plane.
#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    pub url: String,
    pub cluster: String,
    pub instance_arn: String,
}

fn line(m: &AgentMessage) -> Bytes {
    let mut v = serde_json::to_vec(m).unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

async fn api(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let op = target.rsplit('.').next().unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    let mut st = f.state.lock().unwrap();
    st.signed.push((op.to_owned(), signing_service(&headers)));
    match op {
        "GetAuthorizationToken" => {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode("AWS:fake-password");
            ok(json!({"authorizationData": [{
                "authorizationToken": token, "proxyEndpoint": f.url, "expiresAt": 4_102_444_800u64}]}))
        }
        "RegisterContainerInstance" => {
            st.registrations.push(v.clone());
            ok(json!({"containerInstance": {
                "containerInstanceArn": v["containerInstanceArn"].as_str().unwrap_or(&f.instance_arn),
                "attributes": v["attributes"],
            }}))
        }
        "CreateCluster" => ok(json!({"cluster": {"clusterName": v["clusterName"]}})),
        "SubmitTaskStateChange" => {
            if v["status"] == "STOPPED"
                && let Some(arn) = v["task"].as_str()
                && let Some(t) = st.tasks.get_mut(arn)
            {
                t.last_status = TaskStatus::Stopped;
            }
            st.task_changes.push(v);
            ok(json!({"acknowledgment": "ACK"}))
        }
        "SubmitContainerStateChange" => {
            st.container_changes.push(v);
            ok(json!({"acknowledgment": "ACK"}))
        }
        "CreateLogGroup" => {
            st.log_groups
                .push(v["logGroupName"].as_str().unwrap_or_default().to_owned());
            ok(json!({}))
        }
        "CreateLogStream" => {
            let g = v["logGroupName"].as_str().unwrap_or_default().to_owned();
            if st.log_groups.contains(&g) {
                ok(json!({}))
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(
                        json!({"__type": "ResourceNotFoundException", "message": "no group"}),
                    ),
                )
                    .into_response()
            }
        }
        "PutLogEvents" => {
            let g = v["logGroupName"].as_str().unwrap_or_default().to_owned();
            let s = v["logStreamName"].as_str().unwrap_or_default().to_owned();
            for e in v["logEvents"].as_array().cloned().unwrap_or_default() {
                st.log_events.push((
                    g.clone(),
                    s.clone(),
                    e["message"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            ok(json!({"nextSequenceToken": "1"}))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"__type": "UnknownOperationException", "message": op})),
        )
            .into_response(),
    }
}

/// The service in the SigV4 credential scope of a request (empty when unsigned).
fn signing_service(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or_default()
        .to_owned()
}

async fn connect(State(f): State<Fake>, headers: HeaderMap) -> Response {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    {
        let mut st = f.state.lock().unwrap();
        st.connects += 1;
        st.signed
            .push(("connect".to_owned(), signing_service(&headers)));
        let tasks: Vec<AgentTask> = st
            .tasks
            .values()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .cloned()
            .collect();
        let _ = tx.send(line(&AgentMessage::Payload {
            message_id: uuid::Uuid::new_v4().to_string(),
            full_state: true,
            tasks,
        }));
        st.subscribers.push(tx.clone());
    }
    // Only the subscriber list holds the sender: dropping it ends the stream.
    let weak = tx.downgrade();
    drop(tx);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let hb = line(&AgentMessage::Heartbeat {
                message_id: uuid::Uuid::new_v4().to_string(),
                interval_seconds: 1,
            });
            match weak.upgrade() {
                Some(tx) if tx.send(hb).is_ok() => {}
                _ => return,
            }
        }
    });
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>)));
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap()
}

impl Fake {
    pub async fn start() -> Self {
        let cluster = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let instance_arn = format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{cluster}/{}",
            uuid::Uuid::new_v4().simple()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let fake = Fake {
            state: Arc::new(Mutex::new(FakeState::default())),
            url: format!("http://{addr}"),
            cluster,
            instance_arn,
        };
        let app = Router::new()
            .route("/", post(api))
            .route("/agent/v1/connect", get(connect))
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        fake
    }

    /// Adds or changes a task and pushes it to connected agents.
    pub fn push(&self, t: AgentTask) {
        let mut st = self.state.lock().unwrap();
        st.tasks.insert(t.task_arn.clone(), t.clone());
        let msg = line(&AgentMessage::Payload {
            message_id: uuid::Uuid::new_v4().to_string(),
            full_state: false,
            tasks: vec![t],
        });
        st.subscribers.retain(|s| s.send(msg.clone()).is_ok());
    }

    /// Ends every open assignment stream.
    pub fn disconnect_all(&self) {
        self.state.lock().unwrap().subscribers.clear();
    }

    pub fn connects(&self) -> usize {
        self.state.lock().unwrap().connects
    }

    /// Sets a task's desired status to STOPPED and pushes it.
    pub fn stop(&self, arn: &str) {
        let mut t = self.state.lock().unwrap().tasks[arn].clone();
        t.desired_status = TaskStatus::Stopped;
        t.task.desired_status = TaskStatus::Stopped;
        self.push(t);
    }

    /// Forgets a task (as if it was stopped and expired while the agent was away).
    pub fn forget(&self, arn: &str) {
        self.state.lock().unwrap().tasks.remove(arn);
    }

    /// A task of `td` (a task definition JSON) assigned to this instance, desired RUNNING.
    pub fn task(&self, td: Value) -> AgentTask {
        let td: gantry_domain::task_definition::TaskDefinition =
            serde_json::from_value(td).unwrap();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/{}/{id}", self.cluster);
        let containers: Vec<Value> = td
            .container_definitions
            .iter()
            .map(|c| {
                json!({"name": c.name, "image": c.image, "lastStatus": "PENDING",
                       "essential": c.is_essential(), "networkBindings": []})
            })
            .collect();
        let task = serde_json::from_value(json!({
            "id": id, "cluster": self.cluster, "containerInstanceId": "x",
            "family": td.family, "revision": td.revision,
            "desiredStatus": "RUNNING", "lastStatus": "PENDING", "launchType": "EC2",
            "containers": containers, "group": format!("family:{}", td.family),
            "createdAt": 0, "version": 1,
        }))
        .unwrap();
        AgentTask {
            task_arn: arn,
            cluster_arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{}", self.cluster),
            container_instance_arn: self.instance_arn.clone(),
            region: REGION.into(),
            desired_status: TaskStatus::Running,
            last_status: TaskStatus::Pending,
            task,
            task_definition: td,
        }
    }

    pub fn task_changes(&self, arn: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .task_changes
            .iter()
            .filter(|v| v["task"] == arn)
            .cloned()
            .collect()
    }

    /// Waits for a task state change of `arn` with `status`; panics after `timeout`.
    pub async fn wait_status(&self, arn: &str, status: &str, timeout: Duration) -> Value {
        let st = self.clone();
        wait_for(&format!("{status} report for {arn}"), timeout, || {
            st.task_changes(arn)
                .into_iter()
                .find(|v| v["status"] == status)
        })
        .await
    }

    /// The SigV4 services `op` was signed for.
    pub fn signed_for(&self, op: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .signed
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// `host:port` of the fake (what images of Gantry's own registry start with).
    pub fn authority(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    pub fn logs(&self) -> Vec<(String, String, String)> {
        self.state.lock().unwrap().log_events.clone()
    }
}

/// Polls `f` every 100 ms until it returns Some; panics after `timeout`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One test's world: fake control plane, data dir, image, and cleanup of everything created.
pub struct Env {
    pub fake: Fake,
    pub data_dir: tempfile::TempDir,
    pub image: String,
    /// More tags of the image, removed with it.
    pub extra_tags: Vec<String>,
}

impl Env {
    pub async fn new() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "gantry_agent=info".into()),
            )
            .with_test_writer()
            .try_init();
        let fake = Fake::start().await;
        let image = format!(
            "gantry-agent-test-busybox:{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let tag = image.clone();
        tokio::task::spawn_blocking(move || build_busybox(&tag))
            .await
            .unwrap();
        Self {
            fake,
            data_dir: tempfile::tempdir().unwrap(),
            image,
            extra_tags: Vec::new(),
        }
    }

    /// Tags the test image as `tag` too.
    pub fn tag(&mut self, tag: &str) {
        docker(&["tag", &self.image, tag]);
        self.extra_tags.push(tag.to_owned());
    }

    pub fn config(&self) -> AgentConfig {
        let mut cfg = AgentConfig::new(&self.fake.url, &self.fake.cluster, self.data_dir.path());
        cfg.access_key_id = "AKIDTEST".into();
        cfg.secret_access_key = "secret".into();
        cfg.attributes = vec![("stack".into(), "test".into())];
        cfg
    }

    /// Starts the agent as a task; aborting the handle drops it abruptly (like `kill -9`).
    pub fn start_agent(&self) -> JoinHandle<Result<(), AgentError>> {
        let cfg = self.config();
        tokio::spawn(gantry_agent::run(cfg, std::future::pending::<()>()))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = containers_of(&self.fake.instance_arn);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
        for t in &self.extra_tags {
            docker(&["rmi", "-f", t]);
        }
        docker(&["rmi", "-f", &self.image]);
    }
}

/// An HTTP GET on 127.0.0.1:`port` returning the whole answer (retried for a few seconds).
pub async fn http_get(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").await?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
        };
        match tokio::time::timeout(Duration::from_secs(3), attempt).await {
            Ok(Ok(s)) if !s.is_empty() => return s,
            _ if Instant::now() > deadline => panic!("no HTTP answer on port {port}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
