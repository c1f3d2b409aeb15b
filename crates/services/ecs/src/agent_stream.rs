//! The control plane → agent assignment stream: `GET /agent/v1/connect?cluster=C&containerInstance=ARN`,
//! SigV4-signed like any API call, answered with newline-delimited JSON [`AgentMessage`]s:
//! first the instance's full task state, then every change of a task's desired state, and a
//! heartbeat every few seconds. The instance is `agentConnected` while its latest stream is open.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use gantry_aws_proto::sigv4::{self, CredentialProvider};
use gantry_aws_proto::{AwsError, new_request_id};
use gantry_domain::Arn;
use gantry_domain::arn::container_instance_id_from_ref;
use gantry_domain::cluster::FARGATE_PLATFORM_CLUSTER;
use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
use gantry_domain::task::{AgentMessage, AgentTask, Task, TaskStatus};
use gantry_domain::task_definition::TaskDefinition;
use gantry_store::{Revision, Store, StoreExt, Txn, WatchError, encode};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::keys;
use gantry_front::Clock;

/// Serves agent connections.
pub struct AgentStreams {
    store: Arc<dyn Store>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    account_id: String,
    heartbeat: Duration,
    /// How long a dropped connection may stay away before the instance counts as disconnected
    /// (an agent restart within it changes nothing).
    grace: Duration,
    /// The latest connection per instance id; only it may mark the instance disconnected.
    sessions: std::sync::Mutex<HashMap<String, u64>>,
    next_session: AtomicU64,
    /// Ends every stream when it turns true (graceful shutdown waits for open responses).
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Where the dispatcher sends each instance's task changes: one store watch for all
    /// connections, each change decoded once.
    routes: std::sync::Mutex<HashMap<String, Route>>,
    dispatcher_started: std::sync::atomic::AtomicBool,
    /// Held while a connection claims its instance and while [`Self::expire_earlier_connections`]
    /// looks at one, so that an agent reconnecting at that moment is never marked disconnected.
    claim: tokio::sync::Mutex<()>,
    /// Resolves the secrets agents fetch at task start (`/agent/v1/task-secrets`).
    secrets: Option<Arc<dyn crate::task_secrets::TaskSecrets>>,
    /// The tasks on each instance, kept by the dispatcher, for full-state answers without a
    /// scan of the cluster's tasks.
    index: std::sync::Mutex<TaskIndex>,
    /// One cluster's index is read from the store at a time (a resync of every stream at once
    /// reads each cluster once).
    loading: tokio::sync::Mutex<()>,
}

/// Task ids by instance for the clusters read so far (see [`AgentStreams::task_ids_on`]).
#[derive(Default)]
struct TaskIndex {
    clusters: HashMap<String, ClusterTasks>,
}

#[derive(Default)]
struct ClusterTasks {
    /// Task id → (revision, instance while the task is not STOPPED).
    tasks: HashMap<String, (Revision, Option<String>)>,
    on: HashMap<String, std::collections::HashSet<String>>,
    /// Whether the cluster's tasks have been read into the index. Until then the index holds
    /// only the changes the dispatcher saw since the read began, and answers nobody: a host
    /// told its tasks from it would stop every task it is not told of.
    loaded: bool,
}

impl ClusterTasks {
    fn apply(&mut self, id: &str, revision: Revision, instance: Option<String>, deleted: bool) {
        let old = self.tasks.get(id);
        if old.is_some_and(|(r, _)| *r >= revision) {
            return;
        }
        if let Some((_, Some(prev))) = old
            && let Some(set) = self.on.get_mut(prev)
        {
            set.remove(id);
            if set.is_empty() {
                self.on.remove(prev);
            }
        }
        if let Some(i) = &instance {
            self.on.entry(i.clone()).or_default().insert(id.to_owned());
        }
        if deleted {
            self.tasks.remove(id);
        } else {
            self.tasks.insert(id.to_owned(), (revision, instance));
        }
    }
}

/// The instance a task holds while it is not STOPPED.
fn live_instance(t: &Task) -> Option<String> {
    t.container_instance_id
        .clone()
        .filter(|_| t.last_status != TaskStatus::Stopped)
}

/// One connected instance's inbox.
struct Route {
    session: u64,
    tx: mpsc::Sender<Arc<Task>>,
    /// Set when changes were dropped (inbox full, or the dispatcher lagged): resend full state.
    resync: Arc<std::sync::atomic::AtomicBool>,
}

/// Capacity of an instance's inbox before it falls back to a full resync.
const INBOX: usize = 1024;

fn route_key(region: &str, cluster: &str, instance_id: &str) -> String {
    format!("{region}/{cluster}/{instance_id}")
}

impl std::fmt::Debug for AgentStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStreams")
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectQuery {
    cluster: Option<String>,
    container_instance: Option<String>,
}

/// Who is connected, for the pump.
struct Session {
    region: String,
    cluster: String,
    instance_id: String,
    instance_arn: String,
    id: u64,
}

impl AgentStreams {
    pub fn new(
        store: Arc<dyn Store>,
        creds: Arc<dyn CredentialProvider>,
        clock: Arc<dyn Clock>,
        account_id: impl Into<String>,
    ) -> Self {
        Self {
            store,
            creds,
            clock,
            account_id: account_id.into(),
            heartbeat: Duration::from_secs(5),
            grace: Duration::from_secs(15),
            sessions: Default::default(),
            next_session: AtomicU64::new(1),
            shutdown: tokio::sync::watch::channel(false).1,
            routes: Default::default(),
            dispatcher_started: std::sync::atomic::AtomicBool::new(false),
            claim: tokio::sync::Mutex::new(()),
            index: Default::default(),
            loading: tokio::sync::Mutex::new(()),
            secrets: None,
        }
    }

    /// Liveness across a restart of the control plane: an instance recorded `agentConnected` by
    /// an earlier run whose agent has not reconnected within the grace after this server's
    /// start is marked disconnected as of the start (placement skips it, and its tasks count as
    /// lost from then). Returns how many instances were marked.
    pub async fn expire_earlier_connections(self: Arc<Self>) -> usize {
        let started = self.clock.now_millis();
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(self.grace) => {}
            () = stopped(&mut shutdown) => return 0,
        }
        let mut marked = 0;
        // Only the instances are read: each region's `ecs/<region>/instance/` in turn, the next
        // region found as the first ECS key past the previous region's (its tasks, services and
        // task definitions, far more than its instances, are skipped unread).
        let mut past_region: Option<String> = None;
        loop {
            let first = match self.store.scan("ecs/", past_region.as_deref(), 1).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read container instances");
                    return marked;
                }
            };
            let Some(key) = first.records.into_iter().next().map(|r| r.key) else {
                return marked;
            };
            let Some((region, _)) = key
                .strip_prefix("ecs/")
                .and_then(|rest| rest.split_once('/'))
            else {
                past_region = Some(key); // not a region's key: step past it
                continue;
            };
            marked += self.expire_in(region, started).await;
            // '0' follows '/': every key of this region sorts before `ecs/<region>0`, and every
            // key of a region whose name merely starts with this one's sorts after it.
            past_region = Some(format!("ecs/{region}0"));
        }
    }

    /// [`Self::expire_earlier_connections`] for the instances of one region.
    async fn expire_in(&self, region: &str, started: u64) -> usize {
        let prefix = format!("ecs/{region}/instance/");
        let mut marked = 0;
        let mut start_after: Option<String> = None;
        loop {
            let page = match self.store.scan(&prefix, start_after.as_deref(), 1000).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read container instances");
                    return marked;
                }
            };
            for rec in &page.records {
                let Ok(ci) = gantry_store::decode::<ContainerInstance>(rec) else {
                    continue;
                };
                if !ci.value.agent_connected {
                    continue;
                }
                let _claim = self.claim.lock().await;
                let reconnected = self
                    .sessions
                    .lock()
                    .map(|m| m.contains_key(&ci.value.id))
                    .unwrap_or(true);
                if reconnected {
                    continue;
                }
                let mut next = ci.value.clone();
                next.agent_connected = false;
                next.disconnected_at = Some(started);
                next.version += 1;
                let Ok(bytes) = encode(&rec.key, &next) else {
                    continue;
                };
                let txn = Txn::new()
                    .require_revision(&rec.key, ci.revision)
                    .put(&rec.key, bytes);
                // A conflict means the record changed meanwhile (a reconnect, a deregistration):
                // it is current, leave it.
                if let Ok(o) = self.store.commit(txn).await
                    && o.is_committed()
                {
                    marked += 1;
                    tracing::warn!(
                        instance = %next.id,
                        "agent did not reconnect after the control plane started: instance disconnected"
                    );
                }
            }
            match page.next {
                Some(n) => start_after = Some(n),
                None => return marked,
            }
        }
    }

    /// Routes every task change to the inbox of the instance it is assigned to.
    async fn dispatch(self: Arc<Self>, mut watch: gantry_store::Watch) {
        loop {
            match watch.next().await {
                Ok(ev) => {
                    // ecs/<region>/task/<cluster>/<id>
                    let mut parts = ev.key.split('/');
                    let (Some("ecs"), Some(region), Some("task"), Some(cluster)) =
                        (parts.next(), parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let task_id = parts.next().unwrap_or_default();
                    let cluster_key = format!("{region}/{cluster}");
                    let Some(value) = ev.value else {
                        if let Ok(mut index) = self.index.lock()
                            && let Some(c) = index.clusters.get_mut(&cluster_key)
                        {
                            c.apply(task_id, ev.revision, None, true);
                        }
                        continue;
                    };
                    let Ok(t) = serde_json::from_slice::<Task>(&value) else {
                        continue;
                    };
                    if let Ok(mut index) = self.index.lock()
                        && let Some(c) = index.clusters.get_mut(&cluster_key)
                    {
                        c.apply(&t.id, ev.revision, live_instance(&t), false);
                    }
                    let Some(instance) = t.container_instance_id.as_deref() else {
                        continue;
                    };
                    // Fargate tasks of every cluster go to the platform's hosts.
                    let key = route_key(region, t.host_cluster(), instance);
                    let Ok(routes) = self.routes.lock() else {
                        return;
                    };
                    if let Some(r) = routes.get(&key)
                        && r.tx.try_send(Arc::new(t)).is_err()
                    {
                        r.resync.store(true, Ordering::Relaxed);
                    }
                }
                Err(WatchError::Lagged(_)) => {
                    watch = self.store.watch("ecs/");
                    if let Ok(mut index) = self.index.lock() {
                        // Changes were missed: every cluster is read again when next needed.
                        index.clusters.clear();
                    }
                    if let Ok(routes) = self.routes.lock() {
                        for r in routes.values() {
                            r.resync.store(true, Ordering::Relaxed);
                        }
                    }
                }
                Err(WatchError::Closed) => return,
            }
        }
    }

    /// How long a dropped connection may stay away before the instance is DISCONNECTED.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Streams end when `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Agents fetch their tasks' secrets through `secrets` ([`crate::task_secrets`]).
    pub fn with_secrets(mut self, secrets: Arc<dyn crate::task_secrets::TaskSecrets>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/agent/v1/connect", get(connect))
            .route(
                "/agent/v1/task-secrets",
                axum::routing::post(crate::task_secrets::serve),
            )
            .route(
                "/agent/v1/task-credentials",
                axum::routing::post(crate::task_secrets::serve_credentials),
            )
            .with_state(self)
    }

    pub(crate) fn creds(&self) -> &dyn CredentialProvider {
        self.creds.as_ref()
    }

    pub(crate) fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub(crate) fn account(&self) -> &str {
        &self.account_id
    }

    pub(crate) fn secrets(&self) -> Option<&Arc<dyn crate::task_secrets::TaskSecrets>> {
        self.secrets.as_ref()
    }

    async fn set_connected(&self, s: &Session, connected: bool) -> Result<(), AwsError> {
        let key = keys::container_instance(&s.region, &s.cluster, &s.instance_id);
        for _ in 0..32 {
            if !connected {
                let current = self
                    .sessions
                    .lock()
                    .map(|m| m.get(&s.instance_id).copied())
                    .unwrap_or(None);
                if current != Some(s.id) {
                    return Ok(()); // a newer connection owns the instance now
                }
            }
            let Some(cur) = self
                .store
                .get_typed::<ContainerInstance>(&key)
                .await
                .map_err(|e| AwsError::server(e.to_string()))?
            else {
                return Ok(());
            };
            if cur.value.agent_connected == connected {
                return Ok(());
            }
            let mut ci = cur.value.clone();
            ci.agent_connected = connected;
            ci.disconnected_at = if connected {
                None
            } else {
                Some(self.clock.now_millis())
            };
            ci.version += 1;
            let bytes = encode(&key, &ci).map_err(|e| AwsError::server(e.to_string()))?;
            let txn = Txn::new()
                .require_revision(&key, cur.revision)
                .put(&key, bytes);
            match self.store.commit(txn).await {
                Ok(o) if o.is_committed() => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(AwsError::server(e.to_string())),
            }
        }
        Err(AwsError::server(
            "too much contention on the container instance",
        ))
    }

    fn agent_task(&self, s: &Session, t: &Task, td: &TaskDefinition) -> AgentTask {
        AgentTask {
            task_arn: Arn::task(&s.region, &self.account_id, &t.cluster, &t.id).to_string(),
            cluster_arn: Arn::cluster(&s.region, &self.account_id, &t.cluster).to_string(),
            container_instance_arn: s.instance_arn.clone(),
            region: s.region.clone(),
            desired_status: t.desired_status,
            last_status: t.last_status,
            task: t.clone(),
            task_definition: td.clone(),
        }
    }

    async fn definition(
        &self,
        s: &Session,
        cache: &mut HashMap<(String, u32), TaskDefinition>,
        t: &Task,
    ) -> Option<TaskDefinition> {
        let k = (t.family.clone(), t.revision);
        if let Some(td) = cache.get(&k) {
            return Some(td.clone());
        }
        let td = self
            .store
            .get_typed::<TaskDefinition>(&keys::task_definition(&s.region, &t.family, t.revision))
            .await
            .ok()
            .flatten()?
            .value;
        cache.insert(k, td.clone());
        Some(td)
    }

    /// The ids of the tasks on the session's instance that are not STOPPED (possibly a few
    /// more: callers read each task and check). The first call for a cluster reads its tasks;
    /// from then on the dispatcher keeps the index.
    async fn task_ids_on(&self, s: &Session) -> Option<Vec<String>> {
        let cluster_key = format!("{}/{}", s.region, s.cluster);
        let ids_of = |c: &ClusterTasks| {
            c.on.get(&s.instance_id)
                .map(|set| set.iter().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        if let Some(c) = self.index.lock().ok()?.clusters.get(&cluster_key)
            && c.loaded
        {
            return Some(ids_of(c));
        }
        let _loading = self.loading.lock().await;
        {
            let mut index = self.index.lock().ok()?;
            if let Some(c) = index.clusters.get(&cluster_key)
                && c.loaded
            {
                return Some(ids_of(c));
            }
            // From here on the dispatcher records this cluster's changes; the read below fills
            // in the rest (the newer revision of each task wins).
            index
                .clusters
                .insert(cluster_key.clone(), ClusterTasks::default());
        }
        let tasks = self
            .store
            .scan_all_typed::<Task>(&keys::tasks(&s.region, &s.cluster))
            .await;
        let mut index = self.index.lock().ok()?;
        let Ok(tasks) = tasks else {
            index.clusters.remove(&cluster_key);
            return None;
        };
        match index.clusters.get_mut(&cluster_key) {
            Some(c) => {
                for t in tasks {
                    c.apply(&t.value.id, t.revision, live_instance(&t.value), false);
                }
                c.loaded = true;
                Some(ids_of(c))
            }
            // The dispatcher missed changes meanwhile and dropped the index: answer from the read.
            None => Some(
                tasks
                    .into_iter()
                    .filter(|t| live_instance(&t.value).as_deref() == Some(s.instance_id.as_str()))
                    .map(|t| t.value.id)
                    .collect(),
            ),
        }
    }

    /// The instance's tasks that are not STOPPED yet.
    async fn full_state(
        &self,
        s: &Session,
        cache: &mut HashMap<(String, u32), TaskDefinition>,
        sent: &mut HashMap<String, TaskStatus>,
    ) -> Option<AgentMessage> {
        // A platform host runs the Fargate tasks of every cluster of the region: it reads them
        // all; other hosts read their tasks through the per-instance index.
        let tasks: Vec<Task> = if s.cluster == FARGATE_PLATFORM_CLUSTER {
            let prefix = format!("ecs/{}/task/", s.region);
            let mut tasks: Vec<Task> = self
                .store
                .scan_all_typed::<Task>(&prefix)
                .await
                .ok()?
                .into_iter()
                .map(|v| v.value)
                .collect();
            tasks.sort_by(|a, b| a.id.cmp(&b.id));
            tasks
        } else {
            let mut ids = self.task_ids_on(s).await?;
            ids.sort();
            let mut tasks = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(t) = self
                    .store
                    .get_typed::<Task>(&keys::task(&s.region, &s.cluster, &id))
                    .await
                    .ok()?
                {
                    tasks.push(t.value);
                }
            }
            tasks
        };
        let mut out = Vec::new();
        sent.clear();
        for t in tasks {
            if t.container_instance_id.as_deref() != Some(s.instance_id.as_str())
                || t.host_cluster() != s.cluster
                || t.last_status == TaskStatus::Stopped
            {
                continue;
            }
            if let Some(td) = self.definition(s, cache, &t).await {
                sent.insert(t.id.clone(), t.desired_status);
                out.push(self.agent_task(s, &t, &td));
            }
        }
        Some(AgentMessage::Payload {
            message_id: new_request_id(),
            full_state: true,
            tasks: out,
        })
    }

    async fn pump(
        self: Arc<Self>,
        s: Session,
        mut inbox: mpsc::Receiver<Arc<Task>>,
        resync: Arc<std::sync::atomic::AtomicBool>,
        tx: mpsc::Sender<Bytes>,
    ) {
        // The pump lives as long as the connection (one per instance): what it awaits seldom
        // (full state, a task definition read) is boxed, so its resting state stays small.
        let mut cache = HashMap::new();
        let mut sent: HashMap<String, TaskStatus> = HashMap::new();
        let mut shutdown = self.shutdown.clone();
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.tick().await;
        let send = |m: &AgentMessage| {
            let mut line = serde_json::to_vec(m).unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        };
        let mut ok = match Box::pin(self.full_state(&s, &mut cache, &mut sent)).await {
            Some(m) => tx.send(send(&m)).await.is_ok(),
            None => false,
        };
        while ok {
            if resync.swap(false, Ordering::Relaxed) {
                ok = match Box::pin(self.full_state(&s, &mut cache, &mut sent)).await {
                    Some(m) => tx.send(send(&m)).await.is_ok(),
                    None => false,
                };
                continue;
            }
            tokio::select! {
                _ = stopped(&mut shutdown) => ok = false,
                t = inbox.recv() => match t {
                    Some(t) => {
                        // Only new tasks and changes of the desired status concern the agent.
                        if sent.get(&t.id) == Some(&t.desired_status) {
                            continue;
                        }
                        let Some(td) = Box::pin(self.definition(&s, &mut cache, &t)).await else { continue };
                        sent.insert(t.id.clone(), t.desired_status);
                        let m = AgentMessage::Payload {
                            message_id: new_request_id(),
                            full_state: false,
                            tasks: vec![self.agent_task(&s, &t, &td)],
                        };
                        ok = tx.send(send(&m)).await.is_ok();
                    }
                    None => ok = false,
                },
                _ = tick.tick() => {
                    let m = AgentMessage::Heartbeat {
                        message_id: new_request_id(),
                        interval_seconds: self.heartbeat.as_secs().max(1),
                    };
                    ok = tx.send(send(&m)).await.is_ok();
                }
            }
        }
        if let Ok(mut routes) = self.routes.lock() {
            let key = route_key(&s.region, &s.cluster, &s.instance_id);
            if routes.get(&key).is_some_and(|r| r.session == s.id) {
                routes.remove(&key);
            }
        }
        tracing::info!(instance = %s.instance_arn, "agent connection closed");
        if *self.shutdown.borrow() {
            return; // the control plane is stopping: that says nothing about the agent
        }
        // An agent that reconnects within the grace keeps its instance CONNECTED.
        tokio::time::sleep(self.grace).await;
        if let Err(e) = Box::pin(self.set_connected(&s, false)).await {
            tracing::warn!(error = %e.message, "could not mark the instance disconnected");
        }
    }
}

async fn connect(
    State(streams): State<Arc<AgentStreams>>,
    Query(q): Query<ConnectQuery>,
    req: Request,
) -> Response {
    let request_id = new_request_id();
    let (parts, _body) = req.into_parts();
    let verified = match sigv4::verify(&parts, b"", streams.creds.as_ref(), streams.clock.now()) {
        Ok(v) => v,
        Err(e) => return e.to_json_error().json_response(&request_id),
    };
    let cluster = q.cluster.unwrap_or_else(|| "default".into());
    let cluster = gantry_domain::arn::cluster_name_from_ref(&cluster).unwrap_or(cluster);
    let Some(instance_ref) = q.container_instance else {
        return AwsError::client(
            "InvalidParameterException",
            "containerInstance is required.",
        )
        .json_response(&request_id);
    };
    let instance_id = container_instance_id_from_ref(&instance_ref).unwrap_or(instance_ref);
    let key = keys::container_instance(&verified.region, &cluster, &instance_id);
    let ci = match streams.store.get_typed::<ContainerInstance>(&key).await {
        Ok(Some(ci)) if ci.value.status != ContainerInstanceStatus::Inactive => ci.value,
        Ok(_) => {
            return AwsError::client(
                "InvalidParameterException",
                format!("Container instance {instance_id} is not registered in cluster {cluster}."),
            )
            .json_response(&request_id);
        }
        Err(e) => return AwsError::server(e.to_string()).json_response(&request_id),
    };
    let claim = streams.claim.lock().await;
    let id = streams.next_session.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut m) = streams.sessions.lock() {
        m.insert(instance_id.clone(), id);
    }
    let session = Session {
        instance_arn: Arn::container_instance(
            &verified.region,
            &streams.account_id,
            &cluster,
            &ci.id,
        )
        .to_string(),
        region: verified.region,
        cluster,
        instance_id,
        id,
    };
    let connected = streams.set_connected(&session, true).await;
    drop(claim);
    if let Err(e) = connected {
        return e.json_response(&request_id);
    }
    tracing::info!(instance = %session.instance_arn, "agent connected");
    if !streams.dispatcher_started.swap(true, Ordering::SeqCst) {
        // The watch is taken here, before any full state is read.
        let watch = streams.store.watch("ecs/");
        tokio::spawn(streams.clone().dispatch(watch));
    }
    // Subscribe before the pump reads the full state, so no change falls in between.
    let (inbox_tx, inbox_rx) = mpsc::channel::<Arc<Task>>(INBOX);
    let resync = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Ok(mut routes) = streams.routes.lock() {
        routes.insert(
            route_key(&session.region, &session.cluster, &session.instance_id),
            Route {
                session: session.id,
                tx: inbox_tx,
                resync: resync.clone(),
            },
        );
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(streams.clone().pump(session, inbox_rx, resync, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .header("x-amzn-RequestId", request_id)
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Resolves once `rx` holds true (or its sender is gone).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use gantry_domain::container_instance::ContainerInstance;
    use gantry_front::{RandomIds, RequestContext, SystemClock};
    use gantry_store::{MemoryStore, Store, StoreExt, Txn, encode};
    use serde_json::json;

    use super::{AgentStreams, Session};
    use crate::{EcsOperation, EcsService, keys};

    /// A store whose scans wait, once they have begun, until the test opens the gate.
    #[derive(Debug)]
    struct GatedScans {
        inner: Arc<MemoryStore>,
        entered: tokio::sync::Notify,
        open: tokio::sync::watch::Receiver<bool>,
    }

    #[async_trait::async_trait]
    impl Store for GatedScans {
        async fn get(
            &self,
            key: &str,
        ) -> Result<Option<gantry_store::Record>, gantry_store::StoreError> {
            self.inner.get(key).await
        }
        async fn scan(
            &self,
            prefix: &str,
            start_after: Option<&str>,
            limit: usize,
        ) -> Result<gantry_store::Page, gantry_store::StoreError> {
            self.entered.notify_one();
            let mut open = self.open.clone();
            open.wait_for(|o| *o).await.expect("gate kept");
            self.inner.scan(prefix, start_after, limit).await
        }
        async fn commit(
            &self,
            txn: Txn,
        ) -> Result<gantry_store::TxnOutcome, gantry_store::StoreError> {
            self.inner.commit(txn).await
        }
        async fn revision(&self) -> Result<gantry_store::Revision, gantry_store::StoreError> {
            self.inner.revision().await
        }
        fn watch(&self, prefix: &str) -> gantry_store::Watch {
            self.inner.watch(prefix)
        }
    }

    async fn register(svc: &EcsService, region: &str) -> String {
        let v = call(
            svc,
            region,
            EcsOperation::RegisterContainerInstance,
            json!({"cluster": "c", "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]}),
        )
        .await;
        let arn = v["containerInstance"]["containerInstanceArn"]
            .as_str()
            .unwrap();
        arn.rsplit('/').next().unwrap().to_owned()
    }

    fn session(instance_id: &str, id: u64) -> Session {
        Session {
            region: "us-east-1".into(),
            cluster: "c".into(),
            instance_id: instance_id.into(),
            instance_arn: format!(
                "arn:aws:ecs:us-east-1:000000000000:container-instance/c/{instance_id}"
            ),
            id,
        }
    }

    /// Hosts reconnecting together after a restart: while one host's stream reads the
    /// cluster's tasks into the index, another host's full state is not answered from the
    /// half-filled index (it was answered empty, and that host stopped all its tasks).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_state_waits_for_the_index_being_read() {
        let memory = Arc::new(MemoryStore::new());
        let svc = EcsService::new(memory.clone(), Arc::new(RandomIds));
        call(
            &svc,
            "us-east-1",
            EcsOperation::CreateCluster,
            json!({"clusterName": "c"}),
        )
        .await;
        call(
            &svc,
            "us-east-1",
            EcsOperation::RegisterTaskDefinition,
            json!({"family": "t", "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 256}]}),
        )
        .await;
        let first = register(&svc, "us-east-1").await;
        let run = call(
            &svc,
            "us-east-1",
            EcsOperation::RunTask,
            json!({"cluster": "c", "taskDefinition": "t", "count": 2}),
        )
        .await;
        let mut want: Vec<String> = run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t["taskArn"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        want.sort();
        assert_eq!(want.len(), 2, "{run}");
        let second = register(&svc, "us-east-1").await;

        let (open_tx, open) = tokio::sync::watch::channel(false);
        let gated = Arc::new(GatedScans {
            inner: memory,
            entered: tokio::sync::Notify::new(),
            open,
        });
        let streams = Arc::new(AgentStreams::new(
            gated.clone() as Arc<dyn Store>,
            Arc::new(HashMap::<String, String>::new()),
            Arc::new(SystemClock),
            "000000000000",
        ));
        // The second host's stream begins reading the cluster's tasks and is held there.
        let reader = {
            let streams = streams.clone();
            let s = session(&second, 2);
            tokio::spawn(async move { streams.task_ids_on(&s).await })
        };
        gated.entered.notified().await;
        // The first host must not be answered meanwhile.
        let early = tokio::time::timeout(
            Duration::from_millis(300),
            streams.task_ids_on(&session(&first, 1)),
        )
        .await;
        assert!(
            early.is_err(),
            "answered from the index being read: {early:?}"
        );
        open_tx.send(true).unwrap();
        assert_eq!(reader.await.unwrap(), Some(vec![]));
        let mut got = streams.task_ids_on(&session(&first, 1)).await.unwrap();
        got.sort();
        assert_eq!(got, want);
    }

    fn ctx(region: &str) -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            region: region.into(),
            account_id: "000000000000".into(),
            access_key_id: "AKID".into(),
            now: 1_700_000_000_000,
            caller: None,
        }
    }

    async fn call(
        svc: &EcsService,
        region: &str,
        op: EcsOperation,
        body: serde_json::Value,
    ) -> serde_json::Value {
        svc.dispatch(op, body.to_string().as_bytes(), &ctx(region))
            .await
            .unwrap()
    }

    /// After a restart, instances an earlier run recorded connected are marked disconnected in
    /// every region, including one whose name begins with another's; the tasks and task
    /// definitions beside them (skipped by the scan) change nothing.
    #[tokio::test]
    async fn earlier_connections_expire_in_every_region() {
        let store = Arc::new(MemoryStore::new());
        let svc = EcsService::new(store.clone(), Arc::new(RandomIds));
        let mut instances = Vec::new();
        for region in ["eu-west-1", "us-east-1", "us-east-10"] {
            call(
                &svc,
                region,
                EcsOperation::CreateCluster,
                json!({"clusterName": "c"}),
            )
            .await;
            call(
                &svc,
                region,
                EcsOperation::RegisterTaskDefinition,
                json!({"family": "t", "containerDefinitions": [
                    {"name": "c", "image": "busybox", "memory": 256}]}),
            )
            .await;
            for connected in [true, false] {
                let id = register(&svc, region).await;
                let key = keys::container_instance(region, "c", &id);
                let rec = store
                    .get_typed::<ContainerInstance>(&key)
                    .await
                    .unwrap()
                    .unwrap();
                let mut ci = rec.value;
                ci.agent_connected = connected;
                let txn = Txn::new().put(&key, encode(&key, &ci).unwrap());
                assert!(store.commit(txn).await.unwrap().is_committed());
                instances.push((key, connected));
            }
            call(
                &svc,
                region,
                EcsOperation::RunTask,
                json!({"cluster": "c", "taskDefinition": "t"}),
            )
            .await;
        }

        // A key under `ecs/` that names no region is stepped over.
        let stray = Txn::new().put("ecs/stray", b"{}".to_vec());
        assert!(store.commit(stray).await.unwrap().is_committed());
        let streams = Arc::new(
            AgentStreams::new(
                store.clone() as Arc<dyn Store>,
                Arc::new(HashMap::<String, String>::new()),
                Arc::new(SystemClock),
                "000000000000",
            )
            .with_grace(Duration::ZERO),
        );
        assert_eq!(streams.clone().expire_earlier_connections().await, 3);
        for (key, was_connected) in instances {
            let ci = store
                .get_typed::<ContainerInstance>(&key)
                .await
                .unwrap()
                .unwrap()
                .value;
            assert!(!ci.agent_connected, "{key} still connected");
            assert_eq!(ci.disconnected_at.is_some(), was_connected, "{key}");
        }
    }
}
