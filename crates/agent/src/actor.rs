//! One actor per task: a tokio task owning the task's state, driving its containers from the
//! known status towards the desired one, and reporting every change in order.
//!
//! Start: report PENDING → pull images → create containers → start them in `dependsOn` order →
//! report RUNNING with network bindings. Running: watch containers (runtime events poke the
//! actor; a slow tick is the fallback); an essential container exiting stops the task, a
//! non-essential one is reported alone, health changes are reported. Stop: SIGTERM/SIGKILL per
//! `stopTimeout`, report STOPPED with a reason, let log shipping drain, remove the containers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gantry_domain::secrets::{
    ContainerSecrets, NamedValue, SecretsResponse, TaskCredentialsResponse, TaskRoleCredentials,
    has_secrets,
};
use gantry_domain::task::{AgentTask, NetworkBinding, Task, TaskStatus, effective_container};
use gantry_domain::task_definition::{ContainerDefinition, NetworkMode, TaskDefinition};
use rand::Rng as _;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cgroup::TaskSize;
use crate::checkpoint::TaskRecord;
use crate::client::{CallError, Service};
use crate::config::ImagePullBehavior;
use crate::logs::{awslogs_target, ship};
use crate::metadata::TaskDocument;
use crate::pause::{PAUSE_CONTAINER_NAME, PAUSE_IMAGE, pause_rootfs};
use crate::runtime::{ContainerState, ListedContainer, RegistryAuth, SubnetNetwork};
use crate::shared::{Report, Shared, epoch_secs, rfc3339, spawn_reporter};
use crate::spec::{
    FargateLimits, SpecInputs, TaskIdentity, VolumeSource, container_spec, labels, pause_spec,
    volume_source,
};

/// Messages to a task actor.
#[derive(Debug)]
pub enum TaskMsg {
    /// The task's record from the control plane (desired status, overrides, ...).
    Assign(Box<AgentTask>),
    /// The control plane's full state no longer lists the task: stop it.
    Unlisted,
    /// Something happened to one of the task's containers: look again.
    Poke,
}

/// Reason reported when the control plane asked for the stop.
pub const STOPPED_BY_CONTROL_PLANE: &str = "Task stopped by the control plane";
/// Reason reported when an essential container exited.
pub const ESSENTIAL_EXITED: &str = "Essential container in task exited";
/// ECS's stop reason when an essential container was killed for its memory use.
pub const OOM_KILLED: &str = "OutOfMemoryError: Container killed due to memory usage";
/// Reason reported when an awsvpc task's pause container (its network namespace) went away.
pub const NAMESPACE_LOST: &str =
    "Task network namespace lost: the pause container of the task stopped";

/// How long an awsvpc task waits for its security groups to be in place before starting.
const SECURITY_GROUPS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a pause container waits for its address to be freed by a leaving task.
const ADDRESS_WAIT: Duration = Duration::from_secs(30);

/// The pause container of an awsvpc task.
#[derive(Debug, Default)]
struct Pause {
    runtime_id: Option<String>,
    state: Option<ContainerState>,
    gone: bool,
}

impl Pause {
    fn lost(&self) -> bool {
        self.runtime_id.is_some() && (self.gone || self.state.as_ref().is_some_and(|s| !s.running))
    }
}

/// How long a container waits for its `dependsOn` conditions by default.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);
/// How often a running task is re-inspected when no event arrives.
const MONITOR_TICK: Duration = Duration::from_secs(3);
/// How often a starting task is re-inspected.
const START_TICK: Duration = Duration::from_millis(250);
/// How long stopping waits for log shipping to drain before removing containers.
const LOG_DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Nothing started yet (maybe pulling or creating).
    None,
    Running,
    Stopped,
}

#[derive(Debug)]
struct Ctr {
    def: ContainerDefinition,
    docker_name: String,
    metadata_id: String,
    runtime_id: Option<String>,
    state: Option<ContainerState>,
    /// The container vanished from the runtime.
    gone: bool,
    /// Individually reported as STOPPED (non-essential exit).
    reported_stopped: bool,
    log: Option<JoinHandle<()>>,
    /// Why the container never ran (the task failed before creating it): its `reason`.
    start_error: Option<String>,
}

impl Ctr {
    fn started(&self) -> bool {
        self.gone
            || self
                .state
                .as_ref()
                .is_some_and(|s| s.running || s.has_exited())
    }

    fn exited(&self) -> bool {
        self.gone || self.state.as_ref().is_some_and(ContainerState::has_exited)
    }

    fn running(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.running)
    }

    fn status(&self) -> &'static str {
        if self.exited() {
            "STOPPED"
        } else if self.running() {
            "RUNNING"
        } else {
            "PENDING"
        }
    }

    fn exit_code(&self) -> Option<i64> {
        self.state
            .as_ref()
            .filter(|s| s.has_exited())
            .and_then(|s| s.exit_code)
    }

    /// ECS health word when the container has a health check.
    fn health(&self) -> Option<&'static str> {
        self.def.health_check.as_ref()?;
        Some(
            match self.state.as_ref().and_then(|s| s.health.as_deref()) {
                Some("healthy") => "HEALTHY",
                Some("unhealthy") => "UNHEALTHY",
                _ => "UNKNOWN",
            },
        )
    }

    fn stop_timeout(&self, default: Duration) -> Duration {
        self.def
            .stop_timeout
            .and_then(|s| u64::try_from(s).ok())
            .map_or(default, Duration::from_secs)
    }
}

/// What adoption found for a task: its containers (by label) and its checkpoint record.
#[derive(Debug, Default)]
pub struct Adopted {
    pub containers: Vec<ListedContainer>,
    pub record: Option<TaskRecord>,
}

enum DepState {
    Ready,
    Waiting,
    Impossible(String),
}

struct TaskActor {
    sh: Arc<Shared>,
    arn: String,
    id: TaskIdentity,
    td: TaskDefinition,
    record: Task,
    desired: TaskStatus,
    known: Known,
    ctrs: Vec<Ctr>,
    digests: HashMap<String, String>,
    pull_started_at: Option<SystemTime>,
    pull_stopped_at: Option<SystemTime>,
    execution_stopped_at: Option<SystemTime>,
    stop_reason: Option<String>,
    volumes: Vec<String>,
    reports: Option<mpsc::UnboundedSender<Report>>,
    reporter: Option<JoinHandle<()>>,
    last_health: Vec<Option<&'static str>>,
    pending_final: Option<Value>,
    /// The agent is going away: leave the containers as they are.
    detached: bool,
    /// awsvpc tasks: the pause container that owns the task's network namespace.
    pause: Option<Pause>,
    /// The values of the task's `secrets`, `secretOptions` and `repositoryCredentials`, fetched
    /// from the control plane at start. Kept in memory only: never checkpointed or logged.
    secrets: Option<SecretsResponse>,
    /// Tasks with a task role: the id its containers present on the credentials endpoint.
    credentials_id: Option<String>,
    /// When the task role's credentials are to be refreshed (half their lifetime).
    credentials_refresh_at: Option<SystemTime>,
    /// Fargate tasks: Docker's `CgroupParent` of the task's cgroup, once it is named.
    cgroup_parent: Option<String>,
}

fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Starts the actor of `task`; it ends once the task is STOPPED, reported and cleaned up.
pub fn spawn_actor(
    sh: Arc<Shared>,
    task: AgentTask,
    adopted: Adopted,
) -> (mpsc::UnboundedSender<TaskMsg>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawner = sh.spawner.clone();
    let arn = task.task_arn.clone();
    let h = spawner.spawn(async move {
        let actor = TaskActor::new(sh, task, adopted);
        let span = tracing::info_span!("task", task_arn = %arn);
        tracing::Instrument::instrument(actor.run(rx), span).await;
    });
    (tx, h)
}

impl TaskActor {
    fn new(sh: Arc<Shared>, task: AgentTask, adopted: Adopted) -> Self {
        let td = task.task_definition.clone();
        let record = task.task.clone();
        let task_id = task
            .task_arn
            .rsplit('/')
            .next()
            .unwrap_or(&task.task_arn)
            .to_owned();
        let id = TaskIdentity {
            cluster_arn: task.cluster_arn.clone(),
            task_arn: task.task_arn.clone(),
            task_id,
            family: td.family.clone(),
            revision: td.revision,
            instance_arn: sh.instance_arn.clone(),
            region: sh.region.clone(),
        };
        let by_name: HashMap<&str, &ListedContainer> = adopted
            .containers
            .iter()
            .filter_map(|c| Some((c.labels.get(labels::CONTAINER_NAME)?.as_str(), c)))
            .collect();
        let rec = adopted.record.clone().unwrap_or_default();
        let ctrs: Vec<Ctr> = td
            .container_definitions
            .iter()
            .map(|d| {
                let def = effective_container(d, &record.overrides);
                let found = by_name.get(def.name.as_str());
                Ctr {
                    docker_name: crate::spec::docker_name(
                        &td.family,
                        td.revision,
                        &def.name,
                        &random_hex(16),
                    ),
                    metadata_id: found
                        .and_then(|c| c.labels.get(labels::METADATA_ID).cloned())
                        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
                    runtime_id: found
                        .map(|c| c.id.clone())
                        .or_else(|| rec.containers.get(&def.name).cloned()),
                    def,
                    state: None,
                    gone: false,
                    reported_stopped: false,
                    log: None,
                    start_error: None,
                }
            })
            .collect();
        let pause = record.network.as_ref().map(|_| Pause {
            runtime_id: adopted
                .containers
                .iter()
                .find(|c| {
                    c.labels.get(labels::CONTAINER_NAME).map(String::as_str)
                        == Some(PAUSE_CONTAINER_NAME)
                })
                .map(|c| c.id.clone())
                .or_else(|| rec.containers.get(PAUSE_CONTAINER_NAME).cloned()),
            ..Pause::default()
        });
        let (reports, reporter) = spawn_reporter(&sh);
        let n = ctrs.len();
        Self {
            arn: task.task_arn.clone(),
            desired: task.desired_status,
            known: Known::None,
            last_health: vec![None; n],
            pending_final: rec.final_report.clone(),
            volumes: rec.volumes.clone(),
            sh,
            id,
            td,
            record,
            ctrs,
            digests: HashMap::new(),
            pull_started_at: None,
            pull_stopped_at: None,
            execution_stopped_at: None,
            stop_reason: None,
            reports: Some(reports),
            reporter: Some(reporter),
            detached: false,
            pause,
            secrets: None,
            credentials_id: rec.credentials_id.clone(),
            credentials_refresh_at: None,
            cgroup_parent: rec.cgroup_parent.clone(),
        }
    }

    fn handle(&mut self, msg: Option<TaskMsg>) {
        match msg {
            Some(TaskMsg::Assign(t)) => {
                if t.desired_status == TaskStatus::Stopped {
                    self.desired = TaskStatus::Stopped;
                }
                self.record = t.task;
            }
            Some(TaskMsg::Unlisted) => self.desired = TaskStatus::Stopped,
            Some(TaskMsg::Poke) => {}
            None => self.detached = true,
        }
    }

    fn should_stop(&self) -> bool {
        self.desired == TaskStatus::Stopped || self.stop_reason.is_some()
    }

    fn fail(&mut self, reason: String) {
        tracing::warn!(reason = %reason, "task failed");
        if self.stop_reason.is_none() {
            if self.known == Known::None {
                self.sh.metrics.task_failed();
            }
            self.stop_reason = Some(reason);
        }
    }

    /// Waits for a message or `tick`, whichever comes first.
    async fn wait(&mut self, rx: &mut mpsc::UnboundedReceiver<TaskMsg>, tick: Duration) {
        tokio::select! {
            m = rx.recv() => self.handle(m),
            () = tokio::time::sleep(tick) => {}
        }
        while let Ok(m) = rx.try_recv() {
            self.handle(Some(m));
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<TaskMsg>) {
        tracing::debug!(desired = self.desired.as_str(), "task assigned");
        if let Some(body) = self.pending_final.take() {
            // Stopped before the agent restarted: the report was not acknowledged yet.
            self.known = Known::Stopped;
            self.refresh().await;
            self.remove_pause().await;
            self.send(Report::Task(body));
            self.cleanup().await;
            self.finish(&mut rx).await;
            return;
        }
        if self.ctrs.iter().any(|c| c.runtime_id.is_some()) {
            self.adopt().await;
        }
        while !self.detached {
            if self.should_stop() {
                self.stop_task().await;
                break;
            }
            match self.known {
                Known::None => self.start_task(&mut rx).await,
                Known::Running => {
                    self.wait(&mut rx, MONITOR_TICK).await;
                    if self.detached {
                        break;
                    }
                    self.monitor().await;
                }
                Known::Stopped => break,
            }
        }
        if !self.detached {
            self.finish(&mut rx).await;
        }
    }

    /// Picks up containers that already exist (agent restart).
    async fn adopt(&mut self) {
        self.refresh().await;
        let mut images: Vec<String> = self.ctrs.iter().map(|c| c.def.image.clone()).collect();
        images.dedup();
        for image in images {
            if let Ok(Some(l)) = self.sh.runtime.local_image(&image).await
                && let Some(d) = digest_of(&l.repo_digests)
            {
                self.digests.insert(image, d);
            }
        }
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].started() {
                self.spawn_log_shipper(i);
            }
        }
        let adopted = self.ctrs.iter().filter(|c| c.runtime_id.is_some()).count();
        tracing::info!(adopted, "re-adopted task containers");
        if self.credentials_id.is_some() && self.task_role().is_some() {
            // Served again under the id the containers know; a failure is retried while the
            // task runs.
            if let Err(e) = self.refresh_credentials().await {
                tracing::warn!(error = %e, "cannot fetch the task role's credentials yet");
            }
            self.credentials_containers();
        }
        if self
            .pause
            .as_ref()
            .is_some_and(|p| p.lost() || p.runtime_id.is_none())
            && self.ctrs.iter().any(Ctr::started)
        {
            tracing::info!("the pause container went away while the agent was away");
            self.fail(NAMESPACE_LOST.to_owned());
            return;
        }
        if self.ctrs.iter().all(Ctr::started) {
            if let Some(c) = self
                .ctrs
                .iter()
                .find(|c| c.def.is_essential() && c.exited())
            {
                let name = c.def.name.clone();
                tracing::info!(container = %name, "essential container exited while the agent was away");
                self.fail(ESSENTIAL_EXITED.to_owned());
                return;
            }
            self.known = Known::Running;
            self.last_health = self.ctrs.iter().map(Ctr::health).collect();
            self.report_task("RUNNING", None);
        }
        self.publish();
    }

    /// Re-inspects every container.
    async fn refresh(&mut self) {
        if let Some(p) = &mut self.pause
            && let Some(id) = p.runtime_id.clone()
        {
            match self.sh.runtime.inspect(&id).await {
                Ok(Some(s)) => p.state = Some(s),
                Ok(None) => p.gone = true,
                Err(e) => tracing::warn!(error = %e, "cannot inspect the pause container"),
            }
        }
        for c in &mut self.ctrs {
            let Some(id) = c.runtime_id.clone() else {
                continue;
            };
            match self.sh.runtime.inspect(&id).await {
                Ok(Some(s)) => {
                    c.docker_name = s.name.clone();
                    c.state = Some(s);
                }
                Ok(None) => c.gone = true,
                Err(e) => {
                    tracing::warn!(container = %c.def.name, error = %e, "cannot inspect container");
                }
            }
        }
    }

    fn spec_inputs(&self, c: &Ctr) -> SpecInputs {
        SpecInputs {
            metadata_base_bridge: self.sh.metadata_base_bridge.clone(),
            metadata_base_host: self.sh.metadata_base_host.clone(),
            metadata_id: c.metadata_id.clone(),
            name_suffix: c
                .docker_name
                .rsplit('-')
                .next()
                .unwrap_or_default()
                .to_owned(),
            hard_limits: self.sh.hard_limits.clone(),
            awsvpc_namespace: self.pause.as_ref().and_then(|p| p.runtime_id.clone()),
            fargate: if self.record.is_fargate() {
                FargateLimits::of(self.record.cpu.as_deref(), self.record.memory.as_deref())
                    .map(|f| f.with_storage(self.record.ephemeral_storage_gib))
            } else {
                None
            },
            cgroup_parent: self.cgroup_parent.clone(),
            secret_environment: self
                .secrets_of(&c.def.name)
                .map(|s| s.environment.clone())
                .unwrap_or_default(),
            default_stop_timeout: self.sh.default_stop_timeout,
            file_systems: self.sh.file_systems.clone(),
            task_credentials: match (&self.credentials_id, &self.sh.credentials_port) {
                (Some(id), Ok(port)) => Some(crate::credentials::container_variable(*port, id)),
                _ => None,
            },
        }
    }

    /// Pulls, creates and starts whatever is not yet; returns when RUNNING, failed or stopping.
    async fn start_task(&mut self, rx: &mut mpsc::UnboundedReceiver<TaskMsg>) {
        let mut fresh = false;
        let missing: Vec<usize> = (0..self.ctrs.len())
            .filter(|&i| self.ctrs[i].runtime_id.is_none())
            .collect();
        if !missing.is_empty() {
            if self.pull_started_at.is_none() {
                self.pull_started_at = Some(SystemTime::now());
                self.report_task("PENDING", None);
            }
            if self.secrets.is_none() && has_secrets(&self.td) {
                match self.fetch_secrets(rx).await {
                    Ok(Some(r)) => self.secrets = Some(r),
                    Ok(None) => return,
                    Err(reason) => {
                        for &i in &missing {
                            self.ctrs[i].start_error = Some(reason.clone());
                        }
                        self.fail(reason);
                        return;
                    }
                }
            }
            if self.credentials_refresh_at.is_none() && self.task_role().is_some() {
                match self.fetch_credentials(rx).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(reason) => {
                        for &i in &missing {
                            self.ctrs[i].start_error = Some(reason.clone());
                        }
                        self.fail(reason);
                        return;
                    }
                }
            }
            // awsvpc: the subnet's network and the pause image are made ready while the task's
            // images are.
            let mut namespace = self.record.network.clone().map(|net| {
                self.sh
                    .spawner
                    .spawn(prepare_namespace(self.sh.clone(), net))
            });
            let mut images: Vec<String> = missing
                .iter()
                .map(|&i| self.ctrs[i].def.image.clone())
                .collect();
            images.sort();
            images.dedup();
            for image in images {
                // Images of Gantry's registry are pulled as the execution role, when the task
                // has one (the instance's identity otherwise), and always checked with it.
                let mut auth = self.registry_auth(&image);
                let as_role = auth.is_none()
                    && self.execution_role().is_some()
                    && self.sh.registry_auth.is_own(&image);
                if as_role {
                    match self.execution_registry_auth(&image).await {
                        Ok(a) => auth = Some(a),
                        Err(reason) => {
                            for &i in &missing {
                                if self.ctrs[i].def.image == image {
                                    self.ctrs[i].start_error = Some(reason.clone());
                                }
                            }
                            self.fail(reason);
                            return;
                        }
                    }
                }
                let pull = ensure_image(self.sh.clone(), image.clone(), auth, as_role);
                tokio::pin!(pull);
                let r = loop {
                    tokio::select! {
                        r = &mut pull => break r,
                        m = rx.recv() => {
                            self.handle(m);
                            if self.should_stop() || self.detached {
                                return;
                            }
                        }
                    }
                };
                match r {
                    Ok(d) => {
                        if let Some(d) = d {
                            self.digests.insert(image, d);
                        }
                    }
                    Err(e) => {
                        let reason = format!("CannotPullContainerError: {e}");
                        for &i in &missing {
                            if self.ctrs[i].def.image == image {
                                self.ctrs[i].start_error = Some(reason.clone());
                            }
                        }
                        self.fail(reason);
                        return;
                    }
                }
            }
            self.pull_stopped_at = Some(SystemTime::now());
            tracing::debug!("images ready");
            while let Ok(m) = rx.try_recv() {
                self.handle(Some(m));
            }
            if self.should_stop() || self.detached {
                return;
            }
            if let Err(e) = self.prepare_cgroup() {
                self.fail(format!("ResourceInitializationError: {e}"));
                return;
            }
            // The pause container is created first (the others name it as their network
            // namespace), then started while the task's containers are created: only their
            // start needs the namespace.
            let pause_start = match namespace.take() {
                Some(prepared) => match self.create_pause(prepared).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.fail(format!("ResourceInitializationError: {e}"));
                        return;
                    }
                },
                None => None,
            };
            let sh = self.sh.clone();
            let pause_ready = async move {
                match pause_start {
                    Some((to_start, eni_id)) => start_pause(&sh, to_start, &eni_id).await,
                    None => Ok(()),
                }
            };
            let (pause_ready, created) =
                futures::future::join(pause_ready, self.create_missing(&missing)).await;
            if let Err(e) = pause_ready {
                self.fail(format!("ResourceInitializationError: {e}"));
                return;
            }
            if let Some(p) = &mut self.pause {
                p.gone = false;
                p.state = None;
            }
            if let Err(e) = self.limit_cgroup_after_pause() {
                self.fail(format!("ResourceInitializationError: {e}"));
                return;
            }
            if let Err(e) = created {
                self.fail(format!("CannotCreateContainerError: {e}"));
                return;
            }
            self.credentials_containers();
            fresh = true;
        }
        let began = Instant::now();
        loop {
            // Containers just created have no state worth a round trip to the Engine yet.
            if !std::mem::take(&mut fresh) {
                self.refresh().await;
            }
            if self.essential_exit() {
                return;
            }
            if self.should_stop() || self.detached {
                return;
            }
            let mut ready = Vec::new();
            for i in 0..self.ctrs.len() {
                if self.ctrs[i].started() {
                    continue;
                }
                match self.dep_state(i) {
                    DepState::Ready => ready.push(i),
                    DepState::Waiting => {
                        let limit = self.ctrs[i]
                            .def
                            .start_timeout
                            .and_then(|s| u64::try_from(s).ok())
                            .map_or(DEFAULT_START_TIMEOUT, Duration::from_secs);
                        if began.elapsed() > limit {
                            let name = self.ctrs[i].def.name.clone();
                            self.fail(format!(
                                "CannotStartContainerError: dependencies of container {name} were not met within {}s",
                                limit.as_secs()
                            ));
                            return;
                        }
                    }
                    DepState::Impossible(why) => {
                        self.fail(format!("CannotStartContainerError: {why}"));
                        return;
                    }
                }
            }
            if let Err(e) = self.start_ready(&ready).await {
                self.fail(format!("CannotStartContainerError: {e}"));
                return;
            }
            // Each container started was inspected right after its start.
            if self.ctrs.iter().all(Ctr::started) {
                if self.essential_exit() {
                    return;
                }
                self.known = Known::Running;
                self.last_health = self.ctrs.iter().map(Ctr::health).collect();
                self.sh.metrics.task_running();
                tracing::info!("task running");
                self.report_task("RUNNING", None);
                self.publish();
                return;
            }
            self.publish();
            self.wait(rx, START_TICK).await;
        }
    }

    /// awsvpc: the task's pause container at the task's address (once `prepared` has the
    /// subnet's network and the pause image ready). Returns the pause container to start (None:
    /// it runs already, adopted) and the task's interface, whose security groups the start
    /// waits for.
    async fn create_pause(
        &mut self,
        prepared: JoinHandle<Result<String, String>>,
    ) -> Result<(Option<String>, String), String> {
        let network = prepared
            .await
            .map_err(|e| format!("cannot prepare the task's network: {e}"))??;
        let Some(net) = self.record.network.clone() else {
            return Err("the task has no network interface".into());
        };
        let sh = self.sh.clone();
        let existing = self.pause.as_ref().and_then(|p| p.runtime_id.clone());
        if let Some(id) = existing {
            match sh.runtime.inspect(&id).await.map_err(|e| e.to_string())? {
                Some(s) if s.running => return Ok((None, net.eni_id)),
                Some(_) => {
                    let _ = sh.runtime.remove(&id).await;
                }
                None => {}
            }
        }
        let spec = pause_spec(
            &self.id,
            &net,
            &network,
            &sh.pause_image,
            &random_hex(16),
            self.cgroup_parent.clone(),
        );
        let id = sh
            .runtime
            .create(&spec)
            .await
            .map_err(|e| format!("cannot create the pause container: {e}"))?;
        tracing::debug!(docker_id = %id, "pause container created");
        let rid = id.clone();
        self.checkpoint_update(move |r| {
            r.containers.insert(PAUSE_CONTAINER_NAME.to_owned(), rid);
        });
        if let Some(p) = &mut self.pause {
            p.runtime_id = Some(id.clone());
            p.gone = false;
            p.state = None;
        }
        Ok((Some(id), net.eni_id))
    }

    /// Fargate tasks: the task's size as a cap on all its containers together. Names the
    /// task's cgroup (in the checkpoint first, so that it is removed even after a crash) and,
    /// where the agent makes it (`cgroupfs` driver), creates and limits it.
    fn prepare_cgroup(&mut self) -> Result<(), String> {
        let Some(size) = self.task_size() else {
            return Ok(());
        };
        let cg = self
            .sh
            .task_cgroups
            .as_ref()
            .map_err(|e| format!("the task's size cannot be enforced on this host: {e}"))?;
        let parent = cg.parent(&self.id.task_id);
        self.cgroup_parent = Some(parent.clone());
        self.checkpoint_update(move |r| r.cgroup_parent = Some(parent));
        if cg.limits_before_create() {
            cg.apply(&self.id.task_id, size)
                .map_err(|e| format!("cannot limit the task's cgroup: {e}"))?;
        }
        Ok(())
    }

    /// Fargate tasks under the `systemd` driver: the task's slice exists once the pause
    /// container runs in it; its limits are set before any other container is created.
    fn limit_cgroup_after_pause(&self) -> Result<(), String> {
        let (Some(size), Ok(cg)) = (self.task_size(), &self.sh.task_cgroups) else {
            return Ok(());
        };
        if cg.limits_before_create() || self.cgroup_parent.is_none() {
            return Ok(());
        }
        cg.apply(&self.id.task_id, size)
            .map_err(|e| format!("cannot limit the task's cgroup: {e}"))
    }

    /// A Fargate task's size (CPU units and memory), shared by its containers.
    fn task_size(&self) -> Option<TaskSize> {
        if !self.record.is_fargate() {
            return None;
        }
        let f = FargateLimits::of(self.record.cpu.as_deref(), self.record.memory.as_deref())?;
        Some(TaskSize {
            cpu_units: f.cpu_units,
            memory_bytes: f.memory_mib.saturating_mul(1024 * 1024),
        })
    }

    /// Removes the task's cgroup once its containers are gone.
    fn remove_cgroup(&self) {
        if self.cgroup_parent.is_none() {
            return;
        }
        if let Ok(cg) = &self.sh.task_cgroups
            && let Err(e) = cg.remove(&self.id.task_id)
        {
            tracing::warn!(error = %e, "cannot remove the task's cgroup");
        }
    }

    /// Stops (SIGKILL: it has nothing to flush) and removes the pause container.
    async fn remove_pause(&mut self) {
        let Some(id) = self.pause.as_ref().and_then(|p| p.runtime_id.clone()) else {
            return;
        };
        let rt = &self.sh.runtime;
        if let Err(e) = rt.stop(&id, Some(Duration::ZERO)).await {
            tracing::warn!(docker_id = %id, error = %e, "cannot stop the pause container");
        }
        if let Err(e) = rt.remove(&id).await {
            tracing::warn!(docker_id = %id, error = %e, "cannot remove the pause container");
        }
        if let Some(p) = &mut self.pause {
            p.gone = true;
        }
    }

    async fn create_missing(&mut self, missing: &[usize]) -> Result<(), String> {
        let siblings: BTreeMap<String, String> = self
            .ctrs
            .iter()
            .map(|c| (c.def.name.clone(), c.docker_name.clone()))
            .collect();
        let mut volumes = Vec::new();
        for v in &self.td.volumes {
            if let Ok(VolumeSource::Docker {
                name,
                task_scoped: true,
            }) = volume_source(&self.id.task_id, v, &self.sh.file_systems)
            {
                volumes.push(name);
            }
        }
        if !volumes.is_empty() {
            self.volumes = volumes.clone();
            self.checkpoint_update(|r| r.volumes = volumes);
        }
        // Docker needs a container's link targets and `volumesFrom` sources to exist when it
        // creates it (registration refuses cycles; index order is the fallback).
        let order = gantry_domain::task_definition::creation_order(&self.td)
            .unwrap_or_else(|| (0..self.ctrs.len()).collect());
        let missing: Vec<usize> = order.into_iter().filter(|i| missing.contains(i)).collect();
        for i in missing {
            let spec = container_spec(
                &self.id,
                &self.td,
                &self.ctrs[i].def,
                &self.spec_inputs(&self.ctrs[i]),
                &siblings,
            )
            .map_err(|e| e.0)?;
            let id = self.sh.runtime.create(&spec).await.map_err(|e| {
                match spec.storage_size_gib {
                    // The storage driver cannot limit a container's size: the task asked for
                    // an ephemeral storage size it would not be held to, so it does not run.
                    Some(g) if e.to_string().contains("storage-opt") => format!(
                        "ephemeralStorage of {g} GiB cannot be enforced on this host: the Docker storage driver has no per-container size limit ({e})"
                    ),
                    _ => e.to_string(),
                }
            })?;
            tracing::info!(container = %self.ctrs[i].def.name, docker_id = %id, "container created");
            let name = self.ctrs[i].def.name.clone();
            let rid = id.clone();
            self.checkpoint_update(move |r| {
                r.containers.insert(name, rid);
            });
            self.ctrs[i].runtime_id = Some(id);
        }
        Ok(())
    }

    /// The resolved values of container `name`, if the task has any.
    fn secrets_of(&self, name: &str) -> Option<&ContainerSecrets> {
        self.secrets
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == name)
    }

    /// The credentials `repositoryCredentials` gives for pulling `image`, if any.
    fn registry_auth(&self, image: &str) -> Option<RegistryAuth> {
        let c = self.ctrs.iter().find_map(|c| {
            (c.def.image == image)
                .then(|| self.secrets_of(&c.def.name)?.registry_credentials.clone())
                .flatten()
        })?;
        Some(RegistryAuth {
            username: c.username,
            password: c.password,
            server_address: crate::shared::image_registry(image)
                .unwrap_or("docker.io")
                .to_owned(),
        })
    }

    /// Fetches the task's secret values from the control plane (`/agent/v1/task-secrets`),
    /// retrying while it cannot be reached. `Ok(None)`: the task is to stop meanwhile.
    async fn fetch_secrets(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<TaskMsg>,
    ) -> Result<Option<SecretsResponse>, String> {
        const PREFIX: &str = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed:";
        let body = json!({
            "cluster": self.sh.cluster,
            "containerInstance": self.sh.instance_arn,
            "task": self.arn,
        });
        let mut delay = Duration::from_millis(250);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let e = match self
                .sh
                .api
                .post_path(Service::Ecs, "/agent/v1/task-secrets", &body)
                .await
            {
                Ok(v) => {
                    let r: SecretsResponse = serde_json::from_value(v).map_err(|e| {
                        format!("{PREFIX} invalid answer from the control plane: {e}")
                    })?;
                    return match r.failure {
                        Some(f) => Err(f.reason),
                        None => {
                            tracing::info!("task secrets fetched");
                            Ok(Some(r))
                        }
                    };
                }
                Err(e) if e.is_client_error() || attempts >= 6 => {
                    return Err(format!("{PREFIX} {e}"));
                }
                Err(e) => e,
            };
            tracing::warn!(error = %e, "cannot fetch the task's secrets yet; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                m = rx.recv() => {
                    self.handle(m);
                    if self.should_stop() || self.detached {
                        return Ok(None);
                    }
                }
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// The task's role (RunTask override, else the task definition's).
    fn task_role(&self) -> Option<&str> {
        gantry_domain::secrets::task_role_arn(&self.record.overrides, &self.td)
    }

    /// Asks the control plane for the task role's credentials once.
    async fn request_credentials(&self) -> Result<TaskCredentialsResponse, CallError> {
        self.request_role_credentials(None).await
    }

    /// Asks the control plane for a session of the task role, or with `Some("execution")` of
    /// the execution role.
    async fn request_role_credentials(
        &self,
        role: Option<&str>,
    ) -> Result<TaskCredentialsResponse, CallError> {
        let mut body = json!({
            "cluster": self.sh.cluster,
            "containerInstance": self.sh.instance_arn,
            "task": self.arn,
        });
        if let Some(r) = role {
            body["role"] = json!(r);
        }
        let v = self
            .sh
            .api
            .post_path(Service::Ecs, "/agent/v1/task-credentials", &body)
            .await?;
        serde_json::from_value(v).map_err(|e| {
            CallError::Transport(format!("invalid answer from the control plane: {e}"))
        })
    }

    /// The execution role (RunTask override, else the task definition's).
    fn execution_role(&self) -> Option<&str> {
        self.record
            .overrides
            .execution_role_arn
            .as_deref()
            .or(self.td.execution_role_arn.as_deref())
            .filter(|r| !r.is_empty())
    }

    /// Registry credentials for Gantry's own registry as the task's execution role: a session
    /// of the role from the control plane, then `ecr:GetAuthorizationToken` signed with it. The
    /// error is the task's `stoppedReason`, as ECS words it.
    async fn execution_registry_auth(&self, image: &str) -> Result<RegistryAuth, String> {
        let r = self
            .request_role_credentials(Some("execution"))
            .await
            .map_err(|e| {
                format!("CannotPullECRContainerError: cannot get the execution role's session: {e}")
            })?;
        let c = match (r.credentials, r.failure) {
            (Some(c), _) => c,
            (None, Some(f)) => return Err(f.reason),
            (None, None) => {
                return Err("CannotPullECRContainerError: no execution role session".into());
            }
        };
        let api =
            self.sh
                .api
                .with_session(&c.access_key_id, &c.secret_access_key, &c.session_token);
        match crate::shared::RegistryAuthCache::new(api)
            .for_image(image)
            .await
        {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(format!(
                "CannotPullECRContainerError: {image} is not in this registry"
            )),
            Err(CallError::Aws { code, message, .. }) => Err(format!(
                "CannotPullECRContainerError: {code}: {message} status code: 400"
            )),
            Err(e) => Err(format!("CannotPullECRContainerError: {e}")),
        }
    }

    /// Serves `c` under the task's id, and schedules the refresh at half its lifetime.
    fn serve_credentials(&mut self, c: TaskRoleCredentials) {
        let id = self
            .credentials_id
            .get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone();
        let now = SystemTime::now();
        let expires = SystemTime::UNIX_EPOCH + Duration::from_millis(c.expiration);
        let left = expires.duration_since(now).unwrap_or_default();
        self.credentials_refresh_at = Some(now + left / 2);
        self.sh.credentials.set_credentials(&id, &self.arn, c);
        self.checkpoint_update(move |r| r.credentials_id = Some(id));
    }

    /// Fetches the task role's credentials before the containers are created, retrying while
    /// the control plane cannot be reached. `Ok(false)`: the task is to stop meanwhile.
    async fn fetch_credentials(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<TaskMsg>,
    ) -> Result<bool, String> {
        if let Err(why) = &self.sh.credentials_port {
            return Err(format!(
                "ResourceInitializationError: the task role cannot be served on this container instance: {why}"
            ));
        }
        let mut delay = Duration::from_millis(250);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let e = match self.request_credentials().await {
                Ok(r) => {
                    return match (r.credentials, r.failure) {
                        (Some(c), _) => {
                            tracing::info!(role = %c.role_arn, "task role credentials fetched");
                            self.serve_credentials(c);
                            Ok(true)
                        }
                        (None, Some(f)) => Err(f.reason),
                        (None, None) => {
                            Err("ResourceInitializationError: no task role credentials".into())
                        }
                    };
                }
                Err(e) if e.is_client_error() || attempts >= 6 => {
                    return Err(format!(
                        "ResourceInitializationError: cannot fetch the task role's credentials: {e}"
                    ));
                }
                Err(e) => e,
            };
            tracing::warn!(error = %e, "cannot fetch the task role's credentials yet; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                m = rx.recv() => {
                    self.handle(m);
                    if self.should_stop() || self.detached {
                        return Ok(false);
                    }
                }
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Replaces the served credentials with fresh ones.
    async fn refresh_credentials(&mut self) -> Result<(), String> {
        let r = self
            .request_credentials()
            .await
            .map_err(|e| e.to_string())?;
        match (r.credentials, r.failure) {
            (Some(c), _) => {
                tracing::info!(role = %c.role_arn, "task role credentials refreshed");
                self.serve_credentials(c);
                Ok(())
            }
            (None, Some(f)) => Err(f.reason),
            (None, None) => Err("no credentials in the answer".into()),
        }
    }

    /// Tells the credentials endpoint which containers' addresses may use the task's id.
    fn credentials_containers(&self) {
        let Some(id) = &self.credentials_id else {
            return;
        };
        let mut ids: Vec<String> = self
            .ctrs
            .iter()
            .filter_map(|c| c.runtime_id.clone())
            .collect();
        if let Some(p) = self.pause.as_ref().and_then(|p| p.runtime_id.clone()) {
            ids.push(p);
        }
        let host = self.td.effective_network_mode() == NetworkMode::Host;
        self.sh.credentials.set_containers(id, ids, host);
    }

    fn checkpoint_update(&self, f: impl FnOnce(&mut TaskRecord)) {
        if let Err(e) = self.sh.checkpoint.update_task(&self.arn, f) {
            tracing::error!(error = %e, "cannot write checkpoint");
        }
    }

    fn dep_state(&self, i: usize) -> DepState {
        // A link implies its target runs first (Docker refuses to start a container linked to
        // one that is not running), as the ECS agent orders them.
        for link in self.ctrs[i].def.links() {
            let Some(d) = self.ctrs.iter().find(|c| c.def.name == link.container) else {
                return DepState::Impossible(format!(
                    "container {} links to unknown container {}",
                    self.ctrs[i].def.name, link.container
                ));
            };
            if d.exited() {
                return DepState::Impossible(format!(
                    "container {} links to container {}, which exited",
                    self.ctrs[i].def.name, link.container
                ));
            }
            if !d.running() {
                return DepState::Waiting;
            }
        }
        for dep in self.ctrs[i].def.depends_on.iter().flatten() {
            let Some(d) = self.ctrs.iter().find(|c| c.def.name == dep.container_name) else {
                return DepState::Impossible(format!(
                    "container {} depends on unknown container {}",
                    self.ctrs[i].def.name, dep.container_name
                ));
            };
            let ok = match dep.condition.as_str() {
                "START" => d.started(),
                "COMPLETE" => d.exited(),
                "SUCCESS" => {
                    if d.exited() && d.exit_code() != Some(0) {
                        return DepState::Impossible(format!(
                            "dependency {} of container {} exited with {:?}, SUCCESS required",
                            d.def.name,
                            self.ctrs[i].def.name,
                            d.exit_code()
                        ));
                    }
                    d.exited()
                }
                "HEALTHY" => {
                    if d.exited() {
                        return DepState::Impossible(format!(
                            "dependency {} of container {} exited before becoming HEALTHY",
                            d.def.name, self.ctrs[i].def.name
                        ));
                    }
                    d.health() == Some("HEALTHY")
                }
                other => {
                    return DepState::Impossible(format!("unknown dependsOn condition {other}"));
                }
            };
            if !ok {
                return DepState::Waiting;
            }
        }
        DepState::Ready
    }

    /// Starts the containers `ready` together; each is inspected right after its start.
    async fn start_ready(&mut self, ready: &[usize]) -> Result<(), String> {
        if ready.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::new();
        for &i in ready {
            let Some(id) = self.ctrs[i].runtime_id.clone() else {
                return Err(format!(
                    "container {} was not created",
                    self.ctrs[i].def.name
                ));
            };
            ids.push(id);
        }
        // A container may ask its metadata endpoint the moment it starts.
        self.publish();
        let rt = self.sh.runtime.clone();
        let started = futures::future::join_all(ids.into_iter().map(|id| {
            let rt = rt.clone();
            async move {
                rt.start(&id).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(rt.inspect(&id).await.ok().flatten())
            }
        }))
        .await;
        let mut first_error = None;
        for (&i, r) in ready.iter().zip(started) {
            match r {
                Ok(state) => {
                    tracing::info!(container = %self.ctrs[i].def.name, "container started");
                    if let Some(s) = state {
                        self.ctrs[i].state = Some(s);
                    }
                    self.spawn_log_shipper(i);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn spawn_log_shipper(&mut self, i: usize) {
        let c = &self.ctrs[i];
        if c.log.is_some() {
            return;
        }
        let Some(id) = c.runtime_id.clone() else {
            return;
        };
        // `secretOptions` join the driver's options for this run only (never checkpointed).
        let log_options = self
            .secrets_of(&c.def.name)
            .map(|s| s.log_options.clone())
            .unwrap_or_default();
        let def = with_log_options(&c.def, &log_options);
        let Some(target) = awslogs_target(&def, &self.id.task_id, &id) else {
            return;
        };
        let h = self.sh.spawner.spawn(ship(
            self.sh.api.clone(),
            self.sh.runtime.clone(),
            self.sh.checkpoint.clone(),
            id,
            target,
        ));
        self.ctrs[i].log = Some(h);
    }

    /// Sets the stop reason when an essential container has exited.
    fn essential_exit(&mut self) -> bool {
        if let Some(c) = self
            .ctrs
            .iter()
            .find(|c| c.def.is_essential() && c.exited())
        {
            tracing::info!(container = %c.def.name, exit_code = ?c.exit_code(), "essential container exited");
            let oom = c.state.as_ref().is_some_and(|s| s.oom_killed);
            self.fail(if oom { OOM_KILLED } else { ESSENTIAL_EXITED }.to_owned());
            return true;
        }
        false
    }

    async fn monitor(&mut self) {
        if self.credentials_id.is_some()
            && self
                .credentials_refresh_at
                .is_none_or(|at| SystemTime::now() >= at)
            && let Err(e) = self.refresh_credentials().await
        {
            tracing::warn!(error = %e, "cannot refresh the task role's credentials; retrying");
        }
        self.refresh().await;
        if self.pause.as_ref().is_some_and(Pause::lost) {
            tracing::info!("the pause container stopped: the task has lost its network");
            self.fail(NAMESPACE_LOST.to_owned());
            return;
        }
        if self.essential_exit() {
            return;
        }
        // Non-essential containers that exited (also those that did so while starting).
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].exited() && !self.ctrs[i].reported_stopped {
                self.ctrs[i].reported_stopped = true;
                let body = self.container_report(i);
                self.send(Report::Container(body));
            }
        }
        let health: Vec<Option<&'static str>> = self.ctrs.iter().map(Ctr::health).collect();
        if health != self.last_health {
            self.last_health = health;
            self.report_task("RUNNING", None);
        }
        self.publish();
    }

    async fn stop_task(&mut self) {
        let reason = self
            .stop_reason
            .clone()
            .unwrap_or_else(|| STOPPED_BY_CONTROL_PLANE.to_owned());
        tracing::info!(reason = %reason, "stopping task");
        let rt = self.sh.runtime.clone();
        // A Spot interruption's warning overrides the containers' stopTimeout.
        let grace = self.record.stop_grace_seconds.map(Duration::from_secs);
        let default_stop = self.sh.default_stop_timeout;
        let stops = self.ctrs.iter().filter(|c| c.running()).filter_map(|c| {
            let id = c.runtime_id.clone()?;
            let t = grace.unwrap_or_else(|| c.stop_timeout(default_stop));
            let rt = rt.clone();
            Some(async move {
                if let Err(e) = rt.stop(&id, Some(t)).await {
                    tracing::warn!(docker_id = %id, error = %e, "cannot stop container");
                }
            })
        });
        futures::future::join_all(stops).await;
        self.refresh().await;
        // The address goes back to the subnet with the STOPPED report: the namespace holding
        // it must be gone first.
        self.remove_pause().await;
        self.known = Known::Stopped;
        self.execution_stopped_at = Some(SystemTime::now());
        let body = self.task_body("STOPPED", Some(&reason));
        let stored = body.clone();
        self.checkpoint_update(move |r| r.final_report = Some(stored));
        self.send(Report::Task(body));
        self.publish();
        self.cleanup().await;
    }

    /// Lets log shipping drain, then removes the containers and task-scoped volumes.
    async fn cleanup(&mut self) {
        let logs: Vec<JoinHandle<()>> = self.ctrs.iter_mut().filter_map(|c| c.log.take()).collect();
        for h in logs {
            if tokio::time::timeout(LOG_DRAIN, h).await.is_err() {
                tracing::warn!("log shipping did not drain in time; it keeps retrying");
            }
        }
        // ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: the stopped containers stay for inspection.
        if !self.sh.cleanup_wait.is_zero() {
            tokio::time::sleep(self.sh.cleanup_wait).await;
        }
        let rt = self.sh.runtime.clone();
        let ids: Vec<String> = self
            .ctrs
            .iter()
            .filter_map(|c| c.runtime_id.clone())
            .collect();
        for id in ids {
            if let Err(e) = rt.stop(&id, Some(Duration::from_secs(5))).await {
                tracing::warn!(docker_id = %id, error = %e, "cannot stop container");
            }
            if let Err(e) = rt.remove(&id).await {
                tracing::warn!(docker_id = %id, error = %e, "cannot remove container");
            }
        }
        self.remove_pause().await;
        self.remove_cgroup();
        self.sh.credentials.forget_task(&self.arn);
        for v in &self.volumes {
            if let Err(e) = rt.remove_volume(v).await {
                tracing::warn!(volume = %v, error = %e, "cannot remove volume");
            }
        }
        tracing::info!("task containers removed");
    }

    /// Waits until every report was delivered, then forgets the task.
    async fn finish(&mut self, rx: &mut mpsc::UnboundedReceiver<TaskMsg>) {
        self.reports = None;
        if let Some(mut h) = self.reporter.take() {
            loop {
                tokio::select! {
                    _ = &mut h => break,
                    m = rx.recv() => {
                        if m.is_none() {
                            return;
                        }
                    }
                }
            }
        }
        if let Err(e) = self.sh.checkpoint.remove_task(&self.arn) {
            tracing::error!(error = %e, "cannot write checkpoint");
        }
        self.sh.metadata.forget(&self.arn);
        self.sh.credentials.forget_task(&self.arn);
    }

    fn send(&self, r: Report) {
        if let Some(tx) = &self.reports {
            let _ = tx.send(r);
        }
    }

    fn bindings(&self, c: &Ctr) -> Vec<NetworkBinding> {
        match self.td.effective_network_mode() {
            // awsvpc tasks are reached at their own address (`networkInterfaces`).
            NetworkMode::Awsvpc => Vec::new(),
            NetworkMode::Host => c
                .def
                .port_mappings
                .iter()
                .filter_map(|pm| {
                    let p = pm.container_port?;
                    Some(NetworkBinding {
                        bind_ip: Some("0.0.0.0".into()),
                        container_port: Some(p),
                        host_port: Some(pm.host_port.filter(|h| *h > 0).unwrap_or(p)),
                        protocol: Some(pm.protocol.clone().unwrap_or_else(|| "tcp".into())),
                    })
                })
                .collect(),
            _ => c
                .state
                .as_ref()
                .filter(|s| s.running)
                .map(|s| s.bindings.clone())
                .unwrap_or_default(),
        }
    }

    fn container_json(&self, c: &Ctr) -> Value {
        let mut v = json!({
            "containerName": c.def.name,
            "status": c.status(),
            "networkBindings": self.bindings(c).iter().map(binding_json).collect::<Vec<_>>(),
        });
        if let Some(id) = &c.runtime_id {
            v["runtimeId"] = json!(id);
        }
        if let Some(d) = self.digests.get(&c.def.image) {
            v["imageDigest"] = json!(d);
        }
        if let Some(code) = c.exit_code() {
            v["exitCode"] = json!(code);
        }
        if let Some(s) = &c.state {
            if s.oom_killed {
                v["reason"] = json!(OOM_KILLED);
            } else if let Some(e) = &s.error {
                v["reason"] = json!(e);
            }
        }
        if c.gone && c.state.is_none() {
            v["reason"] = json!("container removed outside the agent");
        }
        if let Some(e) = c.start_error.as_ref().filter(|_| c.runtime_id.is_none()) {
            v["reason"] = json!(e);
        }
        if let Some(h) = c.health() {
            v["healthStatus"] = json!(h);
        }
        v
    }

    fn task_body(&self, status: &str, reason: Option<&str>) -> Value {
        let mut v = json!({
            "cluster": self.sh.cluster,
            "task": self.arn,
            "status": status,
            "containers": self.ctrs.iter().map(|c| self.container_json(c)).collect::<Vec<_>>(),
        });
        if let Some(r) = reason {
            v["reason"] = json!(r);
        }
        for (k, t) in [
            ("pullStartedAt", self.pull_started_at),
            ("pullStoppedAt", self.pull_stopped_at),
            ("executionStoppedAt", self.execution_stopped_at),
        ] {
            if let Some(t) = t {
                v[k] = json!(epoch_secs(t));
            }
        }
        v
    }

    fn report_task(&self, status: &str, reason: Option<&str>) {
        self.send(Report::Task(self.task_body(status, reason)));
    }

    fn container_report(&self, i: usize) -> Value {
        let c = &self.ctrs[i];
        let cj = self.container_json(c);
        let mut v = json!({
            "cluster": self.sh.cluster,
            "task": self.arn,
            "containerName": c.def.name,
            "status": cj["status"],
            "networkBindings": cj["networkBindings"],
        });
        for k in ["runtimeId", "exitCode", "reason"] {
            if let Some(x) = cj.get(k) {
                v[k] = x.clone();
            }
        }
        v
    }

    fn known_word(&self) -> &'static str {
        match self.known {
            Known::None if self.pull_started_at.is_some() => "PENDING",
            Known::None => "NONE",
            Known::Running => "RUNNING",
            Known::Stopped => "STOPPED",
        }
    }

    /// Publishes the task metadata documents.
    fn publish(&self) {
        let mut task = Map::new();
        task.insert("Cluster".into(), json!(self.id.cluster_arn));
        task.insert("TaskARN".into(), json!(self.arn));
        task.insert("Family".into(), json!(self.td.family));
        task.insert("Revision".into(), json!(self.td.revision.to_string()));
        task.insert("DesiredStatus".into(), json!(self.desired.as_str()));
        task.insert("KnownStatus".into(), json!(self.known_word()));
        let mut limits = Map::new();
        if let Some(cpu) = self.record.cpu.as_deref().or(self.td.cpu.as_deref())
            && let Ok(units) = cpu.parse::<f64>()
        {
            limits.insert("CPU".into(), json!(units / 1024.0));
        }
        if let Some(mem) = self.record.memory.as_deref().or(self.td.memory.as_deref())
            && let Ok(mib) = mem.parse::<i64>()
        {
            limits.insert("Memory".into(), json!(mib));
        }
        task.insert("Limits".into(), Value::Object(limits));
        for (k, t) in [
            ("PullStartedAt", self.pull_started_at),
            ("PullStoppedAt", self.pull_stopped_at),
            ("ExecutionStoppedAt", self.execution_stopped_at),
        ] {
            if let Some(t) = t {
                task.insert(k.into(), json!(rfc3339(t)));
            }
        }
        if let Some(az) = &self.record.availability_zone {
            task.insert("AvailabilityZone".into(), json!(az));
        }
        if let Some(s) = &self.record.service_name {
            task.insert("ServiceName".into(), json!(s));
        }
        task.insert("LaunchType".into(), json!(self.record.launch_type));
        let containers = self
            .ctrs
            .iter()
            .filter_map(|c| {
                let id = c.runtime_id.clone()?;
                Some((c.metadata_id.clone(), id, self.container_metadata(c)))
            })
            .collect();
        self.sh
            .metadata
            .publish(&self.arn, TaskDocument { task, containers });
    }

    fn container_metadata(&self, c: &Ctr) -> Value {
        let s = c.state.clone().unwrap_or_default();
        let labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("gantry."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut limits = json!({"CPU": c.def.cpu});
        if let Some(m) = c.def.memory.or(c.def.memory_reservation) {
            limits["Memory"] = json!(m);
        }
        let mut v = json!({
            "DockerId": c.runtime_id,
            "Name": c.def.name,
            "DockerName": c.docker_name,
            "Image": c.def.image,
            "ImageID": s.image_id,
            "Labels": labels,
            "DesiredStatus": if self.desired == TaskStatus::Stopped { "STOPPED" } else { "RUNNING" },
            "KnownStatus": c.status(),
            "Limits": limits,
            "Type": "NORMAL",
            "Networks": match &self.record.network {
                Some(n) => vec![json!({
                    "NetworkMode": "awsvpc",
                    "IPv4Addresses": [n.private_ipv4],
                    "AttachmentIndex": 0,
                    "MACAddress": n.mac,
                    "IPv4SubnetCIDRBlock": n.subnet_cidr,
                    "PrivateDNSName": n.private_dns_name,
                    "SubnetGatewayIpv4Address": format!(
                        "{}/{}",
                        n.gateway,
                        n.subnet_cidr.split('/').nth(1).unwrap_or("32")
                    ),
                })],
                None => s.networks.iter().map(|(mode, ip)| {
                    let mode = if s.network_mode.is_empty() || s.network_mode == "default" { mode.clone() } else { s.network_mode.clone() };
                    json!({"NetworkMode": mode, "IPv4Addresses": if ip.is_empty() { vec![] } else { vec![ip.clone()] }})
                }).collect::<Vec<_>>(),
            },
            "Ports": match &self.record.network {
                // awsvpc: the container's ports on the task's own address.
                Some(_) => c.def.port_mappings.iter().filter_map(|pm| Some(json!({
                    "ContainerPort": pm.container_port?,
                    "Protocol": pm.protocol.clone().unwrap_or_else(|| "tcp".into()),
                    "HostPort": pm.container_port?,
                }))).collect::<Vec<_>>(),
                None => self.bindings(c).iter().map(|b| json!({
                    "ContainerPort": b.container_port, "Protocol": b.protocol,
                    "HostPort": b.host_port, "HostIp": b.bind_ip,
                })).collect::<Vec<_>>(),
            },
        });
        for (k, t) in [
            ("CreatedAt", &s.created_at),
            ("StartedAt", &s.started_at),
            ("FinishedAt", &s.finished_at),
        ] {
            if let Some(t) = t.as_deref().filter(|t| !t.starts_with("0001-")) {
                v[k] = json!(t);
            }
        }
        if let Some(code) = c.exit_code() {
            v["ExitCode"] = json!(code);
        }
        if let Some(h) = c.health() {
            v["Health"] = json!({"status": h});
        }
        if let Some(lc) = &c.def.log_configuration {
            v["LogDriver"] = json!(lc.log_driver);
            v["LogOptions"] = json!(lc.options.clone().unwrap_or_default());
        }
        v
    }
}

/// awsvpc: the subnet's bridge network (created on first use) and the pause image, made
/// ready together; returns the network's name.
async fn prepare_namespace(
    sh: Arc<Shared>,
    net: gantry_domain::network::EniAttachment,
) -> Result<String, String> {
    sh.netfilter
        .usable()
        .map_err(|e| format!("security groups cannot be enforced on this host: {e}"))?;
    let network = async {
        sh.runtime
            .ensure_subnet_network(&SubnetNetwork {
                subnet_id: net.subnet_id.clone(),
                vpc_id: net.vpc_id.clone(),
                cidr: net.subnet_cidr.clone(),
                gateway: net.gateway.clone(),
            })
            .await
            .map_err(|e| e.to_string())
    };
    let image = async {
        if sh.pause_image == PAUSE_IMAGE {
            let rootfs = pause_rootfs().ok_or_else(|| {
                format!(
                    "there is no built-in pause image for {}: start the agent with --pause-image",
                    std::env::consts::ARCH
                )
            })?;
            sh.runtime
                .ensure_imported_image(PAUSE_IMAGE, rootfs, &["/pause"])
                .await
                .map_err(|e| e.to_string())
        } else {
            ensure_image(sh.clone(), sh.pause_image.clone(), None, false)
                .await
                .map(|_| ())
                .map_err(|e| format!("CannotPullContainerError: {e}"))
        }
    };
    let (network, image) = futures::future::join(network, image).await;
    image?;
    network
}

/// Starts the pause container `id` (None: it runs already) and waits for the task's security
/// groups (interface `eni_id`) to be in place on this host. A task that held the address on
/// this host may still be leaving: the start is retried meanwhile.
async fn start_pause(sh: &Shared, id: Option<String>, eni_id: &str) -> Result<(), String> {
    if let Some(id) = id {
        let began = Instant::now();
        loop {
            match sh.runtime.start(&id).await {
                Ok(()) => break,
                Err(e) => {
                    let text = e.to_string();
                    if text.contains("already in use") && began.elapsed() < ADDRESS_WAIT {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    return Err(format!("cannot start the pause container: {text}"));
                }
            }
        }
        tracing::info!(docker_id = %id, "pause container started");
    }
    sh.netfilter
        .wait_applied(eni_id, SECURITY_GROUPS_TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}

/// `def` with `extra` added to its log driver's options (`secretOptions` once resolved).
fn with_log_options(def: &ContainerDefinition, extra: &[NamedValue]) -> ContainerDefinition {
    let mut def = def.clone();
    if let Some(lc) = def.log_configuration.as_mut()
        && !extra.is_empty()
    {
        let opts = lc.options.get_or_insert_with(BTreeMap::new);
        for o in extra {
            opts.insert(o.name.clone(), o.value.clone());
        }
    }
    def
}

/// Makes `image` present locally per the pull behaviour; returns its manifest digest if known.
/// `credentials` (from `repositoryCredentials`) authenticate the pull when given.
/// A pull the registry refused, in the ECS agent's words (the registry's `denied: ...` kept).
fn manifest_refused(image: &str, error: &str) -> String {
    let detail = error.find("denied: ").map_or(error, |i| &error[i..]);
    format!(
        "pull image manifest has been retried 1 time(s): failed to resolve ref {image}: {detail}"
    )
}

/// Makes `image` present locally, pulling it with `credentials` (or the instance's registry
/// token). `checked`: the credentials are the execution role's, whose right to pull is
/// re-checked against the registry even for a cached image (a refusal fails the pull).
async fn ensure_image(
    sh: Arc<Shared>,
    image: String,
    credentials: Option<RegistryAuth>,
    checked: bool,
) -> Result<Option<String>, String> {
    let image = image.as_str();
    let rt = &sh.runtime;
    let auth = match credentials {
        Some(c) => Ok(Some(c)),
        None => sh.registry_auth.for_image(image).await,
    };
    let local = rt.local_image(image).await.ok().flatten();
    let behavior = sh.pull_behavior;
    let auth = match auth {
        Ok(a) => a,
        Err(e) if local.is_some() && behavior != ImagePullBehavior::Always => {
            tracing::warn!(image, error = %e, "no registry token; using the local image");
            return Ok(local.and_then(|l| digest_of(&l.repo_digests)));
        }
        Err(e) => return Err(format!("cannot get registry credentials: {e}")),
    };
    let own = sh.registry_auth.is_own(image);
    let pull = match (&local, behavior) {
        (None, _) | (_, ImagePullBehavior::Default | ImagePullBehavior::Always) => true,
        (Some(l), ImagePullBehavior::PreferCached) => {
            own && match rt.remote_digest(image, auth.clone()).await {
                Ok(remote) => !l.repo_digests.iter().any(|d| d.ends_with(&remote)),
                Err(e) if checked => return Err(manifest_refused(image, &e.to_string())),
                Err(_) => false,
            }
        }
    };
    if !pull {
        // The image as just inspected: no second round trip to the Engine.
        return Ok(local.and_then(|l| digest_of(&l.repo_digests)));
    }
    tracing::info!(image, "pulling image");
    if let Err(e) = rt.pull(image, auth).await {
        if checked {
            return Err(manifest_refused(image, &e.to_string()));
        }
        if local.is_some() && behavior != ImagePullBehavior::Always {
            tracing::warn!(image, error = %e, "pull failed; using the local image");
        } else {
            return Err(e.to_string());
        }
    }
    Ok(rt
        .local_image(image)
        .await
        .ok()
        .flatten()
        .and_then(|l| digest_of(&l.repo_digests)))
}

/// A network binding as the ECS wire spells it (`bindIP`).
fn binding_json(b: &NetworkBinding) -> Value {
    let mut v = json!({});
    if let Some(ip) = &b.bind_ip {
        v["bindIP"] = json!(ip);
    }
    if let Some(p) = b.container_port {
        v["containerPort"] = json!(p);
    }
    if let Some(p) = b.host_port {
        v["hostPort"] = json!(p);
    }
    if let Some(p) = &b.protocol {
        v["protocol"] = json!(p);
    }
    v
}

/// The `sha256:...` manifest digest from an image's repo digests.
fn digest_of(repo_digests: &[String]) -> Option<String> {
    repo_digests
        .first()
        .and_then(|d| d.split_once('@'))
        .map(|(_, d)| d.to_owned())
}
