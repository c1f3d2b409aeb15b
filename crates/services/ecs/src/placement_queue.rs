//! The placement queue of each cluster: RunTask, StartTask and the service runner's launches
//! enqueue their requests, and whoever holds the cluster's queue drains everything waiting into one
//! [`Placer`] pass over the cluster's in-memory view ([`ClusterView`]) and one store transaction
//! (group commit). Each caller is answered with its own tasks and failures.
//!
//! - Order: requests are taken first in, first out; a batch stops at the first request that cannot
//!   join it, so no request is overtaken.
//! - A request is never split: its tasks are all in the one transaction of its batch, and what
//!   could not be placed is in its own `failures`.
//! - Requests with an awsvpc network configuration and StartTask requests are placed in a batch of
//!   their own (interface planning and named instances are decided per call).
//! - The transaction compares the revision of every instance record it changes, so a stale view
//!   (another writer) is a conflict: the view is refreshed and the whole batch placed again. The
//!   store stays the guard against over-commit, across processes.
//! - There is no separate worker task: the first caller to take the queue's lock places for
//!   everyone waiting. The commit itself runs in its own task, so a caller that goes away (client
//!   disconnect) never leaves the others unanswered: unplaced requests go back to the queue, and a
//!   commit in flight answers its callers itself.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use gantry_domain::Arn;
use gantry_domain::container_instance::ContainerInstance;
use gantry_domain::task::TaskStatus;
use gantry_domain::task::{Reservation, Task, account_transition};
use gantry_domain::task_definition::TaskDefinition;
use gantry_front::RequestContext;
use gantry_scheduler::{PlacementRequest, PlacementResult, Placer, SchedRng};
use gantry_store::{Revision, StoreError, StoreExt, Txn, TxnOutcome, encode};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

use crate::cluster_view::ClusterView;
use crate::task_network::{self, ResolvedNetwork};
use crate::tasks::{self, RunTaskRequest};
use crate::wire::{MAX_CAS_ATTEMPTS, failure};
use crate::{EcsError, EcsService, keys};

/// At most this many tasks are placed in one batch (one store transaction).
const MAX_BATCH_TASKS: usize = 1000;

/// How often a cluster view nobody is using reads what its change feed has delivered. The store
/// keeps each commit's changes, values included, until every watch has read them, and a view
/// reads its watches only when it is used: an idle view would keep up to 4,096 commits of the
/// whole store alive (1.25 GiB after 1 GiB of log events went through a server with one idle
/// cluster view; docs/benchmarks.md, "CloudWatch Logs reads").
const IDLE_DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// One launch request, resolved and validated.
pub(crate) struct Launch {
    pub ctx: RequestContext,
    pub req: RunTaskRequest,
    /// StartTask: `req.container_instances` name the instances.
    pub start: bool,
    pub cluster: String,
    pub td: TaskDefinition,
    pub need: Reservation,
    /// The scheduler request (`count` is 1 for StartTask, which places per named instance).
    pub request: PlacementRequest,
    pub network: Option<ResolvedNetwork>,
    pub token_key: Option<String>,
    /// Fargate: the tasks are recorded under `cluster` but placed on the instances of
    /// `host_cluster` (the hidden platform cluster), whose ARNs are never shown.
    pub fargate: bool,
    pub host_cluster: String,
    pub ephemeral_storage: Option<u32>,
}

/// A request's tasks and failures.
type Outcome = (Vec<Task>, Vec<Value>);

/// A change of one task's state, applied to the task read at batch time.
pub(crate) type Change = Box<dyn Fn(&mut Task) -> Result<(), EcsError> + Send + Sync>;

/// A task state change (agent reports, StopTask, the service runner): it changes the counts and
/// reservations of the task's instance, so it goes through the same queue and transaction as the
/// placements on that instance instead of racing them.
pub(crate) struct Move {
    pub ctx: RequestContext,
    pub reference: String,
    pub change: Change,
}

enum Work {
    Launch(Box<Launch>),
    Move(Move),
}

enum Done {
    Launched(Outcome),
    Moved(Box<Task>),
}

type Answer = Result<Done, EcsError>;

struct Job {
    work: Work,
    /// `None` once answered.
    reply: Option<oneshot::Sender<Answer>>,
    attempts: usize,
}

impl Job {
    fn answer(&mut self, answer: Answer) {
        if let Some(reply) = self.reply.take() {
            // The caller may have gone away; what was committed stands.
            let _ = reply.send(answer);
        }
    }

    fn alone(&self) -> bool {
        match &self.work {
            Work::Launch(l) => l.start || l.network.is_some(),
            Work::Move(_) => false,
        }
    }

    fn tasks(&self) -> usize {
        match &self.work {
            Work::Launch(l) if l.start => l.req.container_instances.len(),
            Work::Launch(l) => l.request.count as usize,
            Work::Move(_) => 1,
        }
    }

    fn token_key(&self) -> Option<&String> {
        match &self.work {
            Work::Launch(l) => l.token_key.as_ref(),
            Work::Move(_) => None,
        }
    }

    /// Whether the request may be dropped when its caller has gone away before anything was
    /// decided (a RunTask nobody waits for and nobody can find again).
    fn droppable(&self) -> bool {
        match &self.work {
            Work::Launch(l) => l.token_key.is_none() && l.req.service.is_none(),
            Work::Move(_) => false,
        }
    }
}

/// The queues of every cluster this process has placed in.
#[derive(Debug, Default)]
pub(crate) struct PlacementQueues {
    map: Mutex<HashMap<String, Arc<ClusterQueue>>>,
}

impl PlacementQueues {
    /// Runs `f` on the cluster's view, current with every commit acknowledged before the call
    /// (it waits for a placement batch in progress).
    pub(crate) async fn read<R>(
        &self,
        svc: &EcsService,
        region: &str,
        cluster: &str,
        f: impl FnOnce(&ClusterView) -> R,
    ) -> Result<R, EcsError> {
        read_view(svc, &self.queue(region, cluster), f).await
    }

    /// [`read`](Self::read) for an operation on an ACTIVE cluster: `ClusterNotFoundException`
    /// otherwise. A cluster with a view is checked against the view (which follows the cluster
    /// record as it follows the tasks); one without is first read from the store, so a call
    /// naming a cluster that does not exist makes no view.
    pub(crate) async fn read_active<R>(
        &self,
        svc: &EcsService,
        ctx: &RequestContext,
        cluster: &str,
        f: impl FnOnce(&ClusterView) -> R,
    ) -> Result<R, EcsError> {
        let queue = match self.existing_queue(&ctx.region, cluster) {
            Some(queue) => queue,
            None => {
                crate::wire::active_cluster(svc, ctx, cluster).await?;
                self.queue(&ctx.region, cluster)
            }
        };
        read_view(svc, &queue, |view| view.cluster_active().then(|| f(view)))
            .await?
            .ok_or(EcsError::ClusterNotFound)
    }

    fn existing_queue(&self, region: &str, cluster: &str) -> Option<Arc<ClusterQueue>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&format!("{region}/{cluster}")).cloned()
    }

    fn queue(&self, region: &str, cluster: &str) -> Arc<ClusterQueue> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(format!("{region}/{cluster}"))
            .or_insert_with(|| {
                let queue = Arc::new(ClusterQueue {
                    region: region.to_owned(),
                    cluster: cluster.to_owned(),
                    pending: Mutex::default(),
                    view: tokio::sync::Mutex::new(None),
                    requeued: Notify::new(),
                    batch_cap: std::sync::atomic::AtomicUsize::new(MAX_BATCH_TASKS),
                });
                drain_while_idle(&queue);
                queue
            })
            .clone()
    }
}

/// Runs `f` on the queue's view, current with every commit acknowledged before the call (it
/// waits for a placement batch in progress).
async fn read_view<R>(
    svc: &EcsService,
    queue: &ClusterQueue,
    f: impl FnOnce(&ClusterView) -> R,
) -> Result<R, EcsError> {
    let mut slot = queue.view.lock().await;
    match slot.as_mut() {
        Some(view) => view.catch_up(svc.store.as_ref()).await?,
        None => {
            let view = ClusterView::load(svc.store.as_ref(), &queue.region, &queue.cluster).await?;
            *slot = Some(view);
        }
    }
    match slot.as_ref() {
        Some(view) => Ok(f(view)),
        None => Err(EcsError::Internal("cluster view missing".into())),
    }
}

/// Keeps the queue's view reading its feed while nobody uses it (see [`IDLE_DRAIN`]); a view
/// whose feed lagged or closed meanwhile is dropped, and read again when next used.
fn drain_while_idle(queue: &Arc<ClusterQueue>) {
    let weak = Arc::downgrade(queue);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(IDLE_DRAIN);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(queue) = weak.upgrade() else { return };
            // A view in use is read by its user.
            let Ok(mut slot) = queue.view.try_lock() else {
                continue;
            };
            if slot.as_mut().is_some_and(|view| !view.drain_feed()) {
                *slot = None;
            }
        }
    });
}

struct ClusterQueue {
    region: String,
    cluster: String,
    pending: Mutex<VecDeque<Job>>,
    /// The cluster's view, held by the caller placing for everyone.
    view: tokio::sync::Mutex<Option<ClusterView>>,
    /// Signalled when requests go back to the queue.
    requeued: Notify,
    /// At most this many tasks per batch: `MAX_BATCH_TASKS`, lowered when a batch's transaction
    /// exceeded a limit of the store (etcd's operations per transaction).
    batch_cap: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for ClusterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterQueue")
            .field("region", &self.region)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl ClusterQueue {
    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The requests of the next batch, in arrival order.
    fn take_batch(&self) -> Vec<Job> {
        let mut pending = self.pending();
        let mut batch: Vec<Job> = Vec::new();
        let mut tasks = 0;
        let mut tokens = HashSet::new();
        while let Some(job) = pending.front() {
            if job.reply.as_ref().is_some_and(oneshot::Sender::is_closed) && job.droppable() {
                // The caller went away before anything was decided: nothing to do for it.
                pending.pop_front();
                continue;
            }
            let fits = if batch.is_empty() {
                true
            } else {
                !job.alone()
                    && !batch[0].alone()
                    && tasks + job.tasks() <= self.batch_cap.load(Ordering::Relaxed)
                    && job.token_key().is_none_or(|t| !tokens.contains(t))
            };
            if !fits {
                break;
            }
            let Some(job) = pending.pop_front() else {
                break;
            };
            tasks += job.tasks();
            if let Some(t) = job.token_key() {
                tokens.insert(t.clone());
            }
            batch.push(job);
        }
        batch
    }

    /// Puts unanswered requests back at the head of the queue, in their order.
    /// A batch of `tasks` tasks was too large for one transaction of the store: later batches
    /// hold at most half as many (never fewer than one request).
    fn shrink_batches(&self, tasks: usize) {
        let cap = (tasks / 2).max(1);
        let before = self.batch_cap.fetch_min(cap, Ordering::Relaxed);
        if cap < before {
            tracing::info!(
                cluster = %self.cluster,
                tasks_per_batch = cap,
                "placement batches were too large for one store transaction; batches now hold fewer tasks"
            );
        }
    }

    fn requeue(&self, jobs: Vec<Job>) {
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| j.reply.is_some()).collect();
        if jobs.is_empty() {
            return;
        }
        {
            let mut pending = self.pending();
            for job in jobs.into_iter().rev() {
                pending.push_front(job);
            }
        }
        self.requeued.notify_waiters();
    }
}

/// Requests taken from the queue; the ones still unanswered go back to it if the caller placing
/// them goes away.
struct Taken<'q> {
    jobs: Vec<Job>,
    queue: &'q ClusterQueue,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.queue.requeue(std::mem::take(&mut self.jobs));
    }
}

/// Places `launch` through its cluster's queue and waits for its answer.
pub(crate) async fn submit(
    svc: &EcsService,
    launch: Launch,
) -> Result<(Vec<Task>, Vec<Value>, TaskDefinition), EcsError> {
    let td = launch.td.clone();
    // A launch is placed through the queue of the cluster whose instances it uses.
    let (region, cluster) = (launch.ctx.region.clone(), launch.host_cluster.clone());
    match enqueue(svc, &region, &cluster, Work::Launch(Box::new(launch))).await? {
        Done::Launched((tasks, failures)) => Ok((tasks, failures, td)),
        Done::Moved(_) => Err(EcsError::Internal("unexpected placement answer".into())),
    }
}

/// Applies `change` to a task (and its instance's counts and reservations) through the task's
/// cluster queue; the task after the change.
pub(crate) async fn transition(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    reference: &str,
    change: Change,
) -> Result<Task, EcsError> {
    let work = Work::Move(Move {
        ctx: ctx.clone(),
        reference: reference.to_owned(),
        change,
    });
    match enqueue(svc, &ctx.region, cluster, work).await? {
        Done::Moved(t) => Ok(*t),
        Done::Launched(_) => Err(EcsError::Internal("unexpected transition answer".into())),
    }
}

async fn enqueue(svc: &EcsService, region: &str, cluster: &str, work: Work) -> Answer {
    let queue = svc.placement.queue(region, cluster);
    let (tx, mut rx) = oneshot::channel();
    queue.pending().push_back(Job {
        work,
        reply: Some(tx),
        attempts: 0,
    });
    let finish = |answer: Result<Answer, oneshot::error::RecvError>| {
        answer
            .map_err(|_| EcsError::Internal("the placement of this request was abandoned".into()))?
    };
    loop {
        let requeued = queue.requeued.notified();
        tokio::pin!(requeued);
        requeued.as_mut().enable();
        let placed_any = tokio::select! {
            biased;
            answer = &mut rx => return finish(answer),
            mut view = queue.view.lock() => {
                // Answered while waiting for the lock: leave the next batch to those waiting.
                match rx.try_recv() {
                    Ok(answer) => return answer,
                    Err(oneshot::error::TryRecvError::Closed) => {
                        return Err(abandoned());
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
                // One batch, then the lock goes to the next caller waiting (first come, first
                // served), so that no caller places for others indefinitely.
                place_next(svc, &queue, &mut view).await
            }
        };
        if !placed_any {
            // Our request is in a commit another caller started: wait for its answer, or for it
            // to come back to the queue.
            tokio::select! {
                biased;
                answer = &mut rx => return finish(answer),
                () = &mut requeued => {}
            }
        }
    }
}

fn abandoned() -> EcsError {
    EcsError::Internal("the placement of this request was abandoned".into())
}

/// Places the next batch. Returns whether there was anything to place.
async fn place_next(
    svc: &EcsService,
    queue: &ClusterQueue,
    slot: &mut Option<ClusterView>,
) -> bool {
    let jobs = queue.take_batch();
    if jobs.is_empty() {
        return false;
    }
    let mut batch = Taken { jobs, queue };
    let ready = match slot {
        Some(view) => view.catch_up(svc.store.as_ref()).await,
        None => ClusterView::load(svc.store.as_ref(), &queue.region, &queue.cluster)
            .await
            .map(|v| *slot = Some(v)),
    };
    let Some(view) = slot.as_mut().filter(|_| ready.is_ok()) else {
        let e = EcsError::from(ready.err().unwrap_or(StoreError::Closed));
        *slot = None;
        for job in &mut batch.jobs {
            job.answer(Err(replicate(&e)));
        }
        return true;
    };
    place_batch(svc, view, &mut batch).await;
    true
}

/// An error for each of several callers (errors are not `Clone`).
fn replicate(e: &EcsError) -> EcsError {
    match e {
        EcsError::Store(StoreError::StorageFull(m)) => {
            EcsError::Store(StoreError::StorageFull(m.clone()))
        }
        EcsError::Store(StoreError::Unavailable(m)) => {
            EcsError::Store(StoreError::Unavailable(m.clone()))
        }
        EcsError::Store(s) => EcsError::Store(StoreError::Backend(s.to_string())),
        EcsError::Contention(k) => EcsError::Contention(k.clone()),
        EcsError::InvalidParameter(m) => EcsError::InvalidParameter(m.clone()),
        EcsError::Client(m) => EcsError::Client(m.clone()),
        other => EcsError::Internal(other.to_string()),
    }
}

/// What one request adds to the batch's transaction.
struct Part {
    txn: Txn,
    tasks: Vec<Task>,
    failures: Vec<Value>,
}

async fn place_batch(svc: &EcsService, view: &mut ClusterView, batch: &mut Taken<'_>) {
    let (region, cluster) = (batch.queue.region.clone(), batch.queue.cluster.clone());
    // Calls seen before answer with what they created then.
    for job in &mut batch.jobs {
        if let Work::Launch(l) = &job.work
            && let Some(k) = &l.token_key
        {
            match tasks::replay_client_token(svc, &l.ctx, &l.cluster, k).await {
                Ok(Some(answer)) => job.answer(Ok(Done::Launched(answer))),
                Ok(None) => {}
                Err(e) => job.answer(Err(e)),
            }
        }
    }
    let seed = batch.jobs.first().map_or(0, |j| match &j.work {
        Work::Launch(l) => l.ctx.now,
        Work::Move(m) => m.ctx.now,
    });
    let mut rng = SchedRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
    // A batch of state changes only (agent reports) places nothing: no placer to index.
    let mut index = batch
        .jobs
        .iter()
        .any(|j| matches!(j.work, Work::Launch(_)))
        .then(|| view.take_placer_index());
    let mut placer = index
        .take()
        .map(|index| Placer::with_index(view.views(), index));
    let mut book = Bookkeeping::default();
    let mut txn = Txn::new();
    let mut parts: Vec<Option<Done>> = Vec::with_capacity(batch.jobs.len());
    let mut deferred = Vec::new();
    for (i, job) in batch.jobs.iter_mut().enumerate() {
        if job.reply.is_none() {
            parts.push(None);
            continue;
        }
        let part = match &job.work {
            Work::Launch(l) if view.views().is_empty() && l.fargate => {
                let failures = (0..job_tasks(l))
                    .map(|_| failure("", tasks::FARGATE_CAPACITY_UNAVAILABLE, None))
                    .collect();
                Ok(Some(Done::Launched((Vec::new(), failures))))
            }
            Work::Launch(_) if view.views().is_empty() => Err(EcsError::invalid(
                "No Container Instances were found in your cluster.",
            )),
            Work::Launch(l) => {
                let placer = placer.get_or_insert_with(|| Placer::new(view.views()));
                place_one(svc, view, placer, &mut rng, l, &mut book.touched)
                    .await
                    .map(|part| {
                        txn = task_network::merge(std::mem::take(&mut txn), part.txn);
                        Some(Done::Launched((part.tasks, part.failures)))
                    })
            }
            Work::Move(m) => match move_one(svc, view, &region, &cluster, m, &mut book).await {
                Ok(MoveStep::Done(t)) => Ok(Some(Done::Moved(t))),
                Ok(MoveStep::Later) => {
                    deferred.push(i);
                    Ok(None)
                }
                Err(e) => Err(e),
            },
        };
        match part {
            Ok(p) => parts.push(p),
            Err(e) => {
                job.answer(Err(e));
                parts.push(None);
            }
        }
    }
    if let Some(placer) = placer {
        let index = placer.into_index();
        view.keep_placer_index(index);
    }
    match book.finish(view, &region, &cluster) {
        Ok(more) => txn = task_network::merge(txn, more),
        Err(e) => {
            for job in &mut batch.jobs {
                job.answer(Err(replicate(&e)));
            }
            return;
        }
    }
    let mut waiting: Vec<(Job, Done)> = Vec::new();
    let mut later = Vec::new();
    for (i, (job, part)) in std::mem::take(&mut batch.jobs)
        .into_iter()
        .zip(parts)
        .enumerate()
    {
        match part {
            Some(done) if job.reply.is_some() => waiting.push((job, done)),
            None if deferred.contains(&i) => later.push(job),
            _ => {}
        }
    }
    // Requests that must wait for the next batch go back to the head of the queue.
    batch.queue.requeue(later);
    // What the view records once the commit is in, as written (no decoding of the feed's copies).
    let mut written_tasks: Vec<(String, Arc<Task>)> = Vec::new();
    for (job, done) in &waiting {
        if let (Work::Launch(l), Done::Launched((tasks, _))) = (&job.work, done) {
            for t in tasks {
                written_tasks.push((keys::task(&region, &l.cluster, &t.id), Arc::new(t.clone())));
            }
        }
    }
    written_tasks.extend(
        std::mem::take(&mut book.moved)
            .into_iter()
            .map(|(key, (_, t))| (key, Arc::new(t))),
    );
    let written_instances: Vec<(String, Arc<ContainerInstance>)> =
        std::mem::take(&mut book.touched)
            .into_values()
            .map(|ci| {
                (
                    keys::container_instance(&region, &cluster, &ci.id),
                    Arc::new(ci),
                )
            })
            .collect();
    if txn.is_empty() {
        for (mut job, done) in waiting {
            job.answer(Ok(done));
        }
        return;
    }
    // The commit answers its callers itself, even if this caller goes away meanwhile.
    let store = svc.store.clone();
    let queue = svc.placement.queue(&region, &cluster);
    let commit = tokio::spawn(async move {
        match store.commit(txn).await {
            Ok(TxnOutcome::Committed { revision }) => {
                for (mut job, done) in waiting {
                    job.answer(Ok(done));
                }
                Ok(revision)
            }
            Ok(TxnOutcome::Conflict { key }) => {
                let mut again = Vec::new();
                for (mut job, _) in waiting {
                    job.attempts += 1;
                    if job.attempts >= MAX_CAS_ATTEMPTS {
                        job.answer(Err(EcsError::Contention(key.clone())));
                    } else {
                        again.push(job);
                    }
                }
                queue.requeue(again);
                Err(Some(key))
            }
            Err(StoreError::TooLarge(m)) if waiting.len() > 1 => {
                // Nothing was written: place the same requests again in smaller batches.
                tracing::debug!(error = %m, "placement batch too large for the store");
                let tasks = waiting.iter().map(|(job, _)| job.tasks()).sum();
                queue.shrink_batches(tasks);
                queue.requeue(waiting.into_iter().map(|(job, _)| job).collect());
                Err(None)
            }
            Err(e) => {
                let e = EcsError::from(e);
                for (mut job, _) in waiting {
                    job.answer(Err(replicate(&e)));
                }
                Err(None)
            }
        }
    });
    let outcome = commit.await;
    if let Ok(Ok(revision)) = outcome {
        view.apply_committed(revision, written_instances, written_tasks);
    } else if let Ok(Err(Some(key))) = outcome {
        // The view was stale: catch up, and read the conflicting record itself in case its change
        // has not reached the feed.
        let store = svc.store.as_ref();
        let refreshed = match view.catch_up(store).await {
            Ok(()) => view.refresh_key(store, &key).await,
            Err(e) => Err(e),
        };
        if let Err(e) = refreshed {
            tracing::warn!(error = %e, "cluster view refresh after a conflict failed");
        }
    }
}

/// The instance and task records a batch changes, each written once with the revision it was
/// read at.
#[derive(Default)]
struct Bookkeeping {
    /// Instances of the view, by index.
    touched: BTreeMap<usize, ContainerInstance>,
    /// Instances not in the view (INACTIVE), by key: revision read, record.
    others: BTreeMap<String, (Revision, ContainerInstance)>,
    /// Tasks changed, by key: revision read, record as changed so far in this batch.
    moved: BTreeMap<String, (Revision, Task)>,
    /// Whether a task's network interface is released in this batch, and the release.
    released: bool,
    release: Txn,
}

impl Bookkeeping {
    fn finish(&mut self, view: &ClusterView, region: &str, cluster: &str) -> Result<Txn, EcsError> {
        let mut txn = std::mem::take(&mut self.release);
        for (idx, ci) in &self.touched {
            let key = keys::container_instance(region, cluster, &ci.id);
            let value = encode(&key, ci)?;
            txn = txn
                .require_revision(&key, view.entries()[*idx].revision)
                .put(&key, value);
        }
        for (key, (revision, ci)) in &self.others {
            txn = txn
                .require_revision(key, *revision)
                .put(key, encode(key, ci)?);
        }
        for (key, (revision, t)) in &self.moved {
            txn = txn
                .require_revision(key, *revision)
                .put(key, encode(key, t)?);
        }
        Ok(txn)
    }
}

enum MoveStep {
    Done(Box<Task>),
    /// Needs a batch of its own kind (a second interface release).
    Later,
}

/// Applies one task state change on top of the batch's earlier changes.
async fn move_one(
    svc: &EcsService,
    view: &ClusterView,
    region: &str,
    cluster: &str,
    m: &Move,
    book: &mut Bookkeeping,
) -> Result<MoveStep, EcsError> {
    let id = tasks::task_id(&m.reference);
    let key = keys::task(region, cluster, &id);
    // The view's copy is as good as a read: the commit compares the task's revision.
    let (revision, cur) = match book.moved.get(&key) {
        Some((r, t)) => (*r, Arc::new(t.clone())),
        None => match view.task(&id) {
            Some((r, t)) => (r, t),
            None => match svc.store.get_typed::<Task>(&key).await? {
                Some(v) => (v.revision, Arc::new(v.value)),
                None => return Err(EcsError::invalid("The referenced task was not found.")),
            },
        },
    };
    let before = cur.last_status;
    let mut t = (*cur).clone();
    (m.change)(&mut t)?;
    if t == *cur {
        return Ok(MoveStep::Done(Box::new(t)));
    }
    t.version += 1;
    if before != TaskStatus::Stopped && t.last_status == TaskStatus::Stopped && t.network.is_some()
    {
        // The task's interface and address go with its STOPPED record; one release per batch,
        // as releases of one subnet are planned from the same read.
        if book.released {
            return Ok(MoveStep::Later);
        }
        let release = task_network::release(svc, &m.ctx, &t).await?;
        book.released = true;
        book.release = release;
    }
    if before != t.last_status
        && let Some(ci_id) = &t.container_instance_id
    {
        // A Fargate task's instance is in the platform cluster, outside this view.
        let in_view = if t.host_cluster() == cluster {
            view.position(ci_id)
        } else {
            None
        };
        match in_view {
            Some(idx) => {
                let ci = book
                    .touched
                    .entry(idx)
                    .or_insert_with(|| (*view.entries()[idx].record).clone());
                account_transition(ci, &t.reservation, Some(before), t.last_status);
            }
            None => {
                let ci_key = keys::container_instance(region, t.host_cluster(), ci_id);
                if !book.others.contains_key(&ci_key)
                    && let Some(ci) = svc.store.get_typed::<ContainerInstance>(&ci_key).await?
                {
                    book.others.insert(ci_key.clone(), (ci.revision, ci.value));
                }
                if let Some((_, ci)) = book.others.get_mut(&ci_key) {
                    account_transition(ci, &t.reservation, Some(before), t.last_status);
                }
            }
        }
    }
    book.moved.insert(key, (revision, t.clone()));
    Ok(MoveStep::Done(Box::new(t)))
}

/// A task not placed: the closest instance's ARN, the reason, the detail.
type Unplaced = (String, String, Option<String>);

/// What `failures[].detail` says beyond the reason: for `ATTRIBUTE`, the required attributes
/// the closest instance lacks, and whether Gantry can offer them at all.
fn failure_detail(
    request: &PlacementRequest,
    closest: Option<&gantry_scheduler::InstanceView>,
    reason: gantry_scheduler::FailureReason,
) -> Option<String> {
    if reason != gantry_scheduler::FailureReason::Attribute {
        return None;
    }
    let instance = closest?;
    let missing: Vec<String> = request
        .requires_attributes
        .iter()
        .filter(|r| {
            !instance
                .attributes
                .iter()
                .any(|(n, v)| *n == r.name && (r.value.is_none() || r.value == *v))
        })
        .map(|r| r.name.clone())
        .collect();
    (!missing.is_empty()).then(|| gantry_domain::capability::missing_attributes_detail(&missing))
}

fn job_tasks(l: &Launch) -> usize {
    if l.start {
        l.req.container_instances.len()
    } else {
        l.request.count as usize
    }
}

/// Places one request against the view (and the batch's earlier placements), building its part of
/// the transaction and recording its reservations in `touched`.
async fn place_one(
    svc: &EcsService,
    view: &ClusterView,
    placer: &mut Placer<'_>,
    rng: &mut SchedRng,
    l: &Launch,
    touched: &mut BTreeMap<usize, ContainerInstance>,
) -> Result<Part, EcsError> {
    let ctx = &l.ctx;
    let entries = view.entries();
    // The platform's hosts are never named to users.
    let instance_arn = |idx: usize| {
        if l.fargate {
            return String::new();
        }
        Arn::container_instance(
            &ctx.region,
            &ctx.account_id,
            &l.cluster,
            &entries[idx].record.id,
        )
        .to_string()
    };
    let picks: Vec<Result<usize, Unplaced>> = if l.start {
        // StartTask names the instances: only feasibility applies, no constraints.
        let mut request = l.request.clone();
        request.constraints = vec![];
        request.strategy = vec![];
        request.count = 1;
        let mut local: BTreeMap<usize, gantry_scheduler::InstanceView> = BTreeMap::new();
        let mut out = Vec::new();
        for r in &l.req.container_instances {
            let id = gantry_domain::arn::container_instance_id_from_ref(r).unwrap_or_default();
            let Some(idx) = view.position(&id) else {
                let arn = if r.starts_with("arn:") {
                    r.clone()
                } else {
                    Arn::container_instance(&ctx.region, &ctx.account_id, &l.cluster, r).to_string()
                };
                out.push(Err((arn, "MISSING".to_owned(), None)));
                continue;
            };
            let one = local
                .entry(idx)
                .or_insert_with(|| view.views()[idx].clone());
            let res = gantry_scheduler::place(&request, std::slice::from_ref(one), rng);
            match res.into_iter().next() {
                Some(PlacementResult::Placed { .. }) => {
                    tasks::reserve_in_view(one, &request.task, &request.group);
                    out.push(Ok(idx));
                }
                Some(PlacementResult::Failed(f)) => out.push(Err((
                    instance_arn(idx),
                    f.reason.as_str().to_owned(),
                    failure_detail(&request, Some(&*one), f.reason),
                ))),
                None => out.push(Err((instance_arn(idx), "RESOURCE:CPU".to_owned(), None))),
            }
        }
        out
    } else {
        placer
            .place(&l.request, rng)
            .into_iter()
            .map(|r| match r {
                PlacementResult::Placed { instance } => Ok(instance),
                PlacementResult::Failed(_) if l.fargate => Err((
                    String::new(),
                    tasks::FARGATE_CAPACITY_UNAVAILABLE.to_owned(),
                    None,
                )),
                PlacementResult::Failed(f) => Err((
                    f.closest.map(instance_arn).unwrap_or_default(),
                    f.reason.as_str().to_owned(),
                    failure_detail(
                        &l.request,
                        f.closest.and_then(|i| view.views().get(i)),
                        f.reason,
                    ),
                )),
            })
            .collect()
    };
    let mut failures = Vec::new();
    let mut placed: Vec<(usize, Task)> = Vec::new();
    for pick in picks {
        match pick {
            Ok(idx) => {
                let mut task = tasks::new_task(
                    svc,
                    ctx,
                    &l.cluster,
                    &l.td,
                    &l.req,
                    &entries[idx].record,
                    l.need.clone(),
                );
                task.ephemeral_storage_gib = l.ephemeral_storage;
                placed.push((idx, task));
            }
            Err((arn, reason, detail)) => failures.push(failure(&arn, &reason, detail.as_deref())),
        }
    }
    let mut txn = Txn::new();
    if let Some(n) = &l.network {
        // One interface per task, planned in this transaction; a task whose subnets have no free
        // address is not launched.
        let pairs: Vec<(&ContainerInstance, &Task)> = placed
            .iter()
            .map(|(idx, t)| (&*entries[*idx].record, t))
            .collect();
        let (eni_txn, grants) = task_network::plan(svc, ctx, n, &pairs).await?;
        txn = task_network::merge(txn, eni_txn);
        let mut kept = Vec::new();
        for ((idx, mut task), grant) in placed.into_iter().zip(grants) {
            match grant {
                Ok(att) => {
                    // The task is in its subnet's zone (on a host serving every zone, the
                    // host's own zone may differ).
                    if let Some(s) = n.subnets.iter().find(|s| s.id == att.subnet_id) {
                        task.availability_zone = Some(s.availability_zone.clone());
                    }
                    task.network = Some(att);
                    kept.push((idx, task));
                }
                Err(reason) => failures.push(failure(&instance_arn(idx), &reason, None)),
            }
        }
        placed = kept;
    }
    // Everything that can fail comes before the reservations are recorded.
    let mut puts = Vec::with_capacity(placed.len());
    for (_, task) in &placed {
        let key = keys::task(&ctx.region, &l.cluster, &task.id);
        let value = encode(&key, task)?;
        puts.push((key, value));
    }
    let tasks: Vec<Task> = placed.iter().map(|(_, t)| t.clone()).collect();
    if let Some(k) = &l.token_key {
        let rec = tasks::client_token_record(&tasks, &failures);
        txn = txn.require_absent(k).put(k, encode(k, &rec)?);
    }
    for ((key, value), (idx, task)) in puts.into_iter().zip(&placed) {
        let ci = touched
            .entry(*idx)
            .or_insert_with(|| (*entries[*idx].record).clone());
        account_transition(ci, &task.reservation, None, task.last_status);
        txn = txn.require_absent(&key).put(&key, value);
    }
    Ok(Part {
        txn,
        tasks,
        failures,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
    use gantry_domain::task::{Task, TaskStatus};
    use gantry_front::{RandomIds, RequestContext};
    use gantry_store::{
        MemoryStore, Revision, Store, StoreError, StoreExt, Txn, TxnOutcome, encode,
    };
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::{EcsOperation, EcsService, keys, placement};

    const REGION: &str = "us-east-1";
    const CLUSTER: &str = "c";

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            region: REGION.into(),
            account_id: "000000000000".into(),
            access_key_id: "AKID".into(),
            now: 1_700_000_000_000,
            caller: None,
        }
    }

    async fn call(svc: &EcsService, op: EcsOperation, body: Value) -> Result<Value, String> {
        svc.dispatch(op, body.to_string().as_bytes(), &ctx())
            .await
            .map_err(|e| e.to_string())
    }

    async fn register(svc: &EcsService, zone: u8, memory: i64) -> String {
        let v = call(
            svc,
            EcsOperation::RegisterContainerInstance,
            json!({
                "cluster": CLUSTER,
                "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
                ],
                "attributes": [{"name": "ecs.availability-zone", "value": format!("us-east-1{}", (b'a' + zone % 3) as char)}],
            }),
        )
        .await
        .unwrap();
        v["containerInstance"]["containerInstanceArn"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    }

    async fn setup(store: &Arc<MemoryStore>, instances: &[i64]) -> (EcsService, EcsService) {
        let a = EcsService::new(store.clone(), Arc::new(RandomIds));
        let b = EcsService::new(store.clone(), Arc::new(RandomIds));
        call(
            &a,
            EcsOperation::CreateCluster,
            json!({"clusterName": CLUSTER}),
        )
        .await
        .unwrap();
        call(
            &a,
            EcsOperation::RegisterTaskDefinition,
            json!({"family": "t", "containerDefinitions": [
                {"name": "c", "image": "busybox", "cpu": 128, "memory": 256}]}),
        )
        .await
        .unwrap();
        for (i, m) in instances.iter().enumerate() {
            register(&a, i as u8, *m).await;
        }
        (a, b)
    }

    /// Instance id → (revision, remaining CPU, remaining memory, sorted task groups).
    type Snapshot = BTreeMap<String, (u64, i64, i64, Vec<String>)>;

    fn snapshot_of(views: &[gantry_scheduler::InstanceView], revs: &[u64]) -> Snapshot {
        views
            .iter()
            .zip(revs)
            .map(|(v, r)| {
                let mut g = v.task_groups.clone();
                g.sort();
                (v.id.clone(), (*r, v.remaining_cpu, v.remaining_memory, g))
            })
            .collect()
    }

    /// What the view must equal: computed from a fresh read of the store.
    async fn fresh(store: &dyn Store) -> Snapshot {
        let tasks = store
            .scan_all_typed::<Task>(&keys::tasks(REGION, CLUSTER))
            .await
            .unwrap();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in tasks.iter().map(|t| &t.value) {
            if let (Some(ci), true) = (
                &t.container_instance_id,
                t.last_status != TaskStatus::Stopped,
            ) {
                groups.entry(ci.clone()).or_default().push(t.group.clone());
            }
        }
        let instances = store
            .scan_all_typed::<ContainerInstance>(&keys::container_instances(REGION, CLUSTER))
            .await
            .unwrap();
        let live: Vec<_> = instances
            .into_iter()
            .filter(|i| i.value.status != ContainerInstanceStatus::Inactive)
            .collect();
        let views: Vec<_> = live
            .iter()
            .map(|i| {
                placement::view_of(
                    &i.value,
                    groups.get(&i.value.id).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let revs: Vec<u64> = live.iter().map(|i| i.revision).collect();
        snapshot_of(&views, &revs)
    }

    async fn view_snapshot(svc: &EcsService) -> Option<Snapshot> {
        let q = svc.placement.queue(REGION, CLUSTER);
        let mut slot = q.view.lock().await;
        let view = slot.as_mut()?;
        view.catch_up(svc.store.as_ref()).await.unwrap();
        let revs: Vec<u64> = view.entries().iter().map(|e| e.revision).collect();
        Some(snapshot_of(view.views(), &revs))
    }

    /// No instance holds more than it registered, and what each holds is exactly what its
    /// non-STOPPED tasks reserve.
    async fn check_no_overcommit(store: &dyn Store) {
        let tasks = store
            .scan_all_typed::<Task>(&keys::tasks(REGION, CLUSTER))
            .await
            .unwrap();
        let instances = store
            .scan_all_typed::<ContainerInstance>(&keys::container_instances(REGION, CLUSTER))
            .await
            .unwrap();
        for ci in instances.iter().map(|i| &i.value) {
            let registered = |n: &str| {
                ci.registered_resources
                    .iter()
                    .find(|r| r.name == n)
                    .and_then(|r| r.integer_value)
                    .unwrap()
            };
            let (mut cpu, mut mem) = (0, 0);
            for t in tasks.iter().map(|t| &t.value) {
                if t.container_instance_id.as_deref() == Some(&ci.id)
                    && t.last_status != TaskStatus::Stopped
                {
                    cpu += t.reservation.cpu;
                    mem += t.reservation.memory;
                }
            }
            assert_eq!(
                (ci.reserved_cpu, ci.reserved_memory),
                (cpu, mem),
                "instance {} bookkeeping",
                ci.id
            );
            assert!(
                ci.reserved_cpu <= registered("CPU"),
                "instance {} over-committed on CPU",
                ci.id
            );
            assert!(
                ci.reserved_memory <= registered("MEMORY"),
                "instance {} over-committed on memory",
                ci.id
            );
        }
    }

    /// ListTasks (paged, from the view) lists exactly the tasks a fresh read finds.
    async fn check_list_tasks(store: &dyn Store, svc: &EcsService) {
        let tasks = store
            .scan_all_typed::<Task>(&keys::tasks(REGION, CLUSTER))
            .await
            .unwrap();
        for (status, wanted) in [
            ("RUNNING", TaskStatus::Running),
            ("STOPPED", TaskStatus::Stopped),
        ] {
            let mut want: Vec<String> = tasks
                .iter()
                .filter(|t| t.value.desired_status == wanted)
                .map(|t| t.value.id.clone())
                .collect();
            want.sort();
            let mut got = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut body =
                    json!({"cluster": CLUSTER, "desiredStatus": status, "maxResults": 3});
                if let Some(t) = &token {
                    body["nextToken"] = json!(t);
                }
                let v = call(svc, EcsOperation::ListTasks, body).await.unwrap();
                got.extend(
                    v["taskArns"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_owned()),
                );
                match v["nextToken"].as_str() {
                    Some(t) => token = Some(t.to_owned()),
                    None => break,
                }
            }
            assert_eq!(got, want, "ListTasks desiredStatus {status}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// RunTask through the first (true) or second server, with `count` and binpack.
        Run { first: bool, count: u8 },
        /// The agent reports a task STOPPED (through the second server).
        Stop { pick: usize },
        /// The agent reports a task RUNNING (through the first server).
        Running { pick: usize },
        /// A new instance joins (through the second server).
        Register { memory: i64 },
        /// An instance is deregistered with force (through the second server).
        Deregister { pick: usize },
        /// A writer outside ECS's code paths touches an instance record (attribute added).
        Raw { pick: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<bool>(), 1u8..=10).prop_map(|(first, count)| Op::Run { first, count }),
            2 => any::<usize>().prop_map(|pick| Op::Stop { pick }),
            2 => any::<usize>().prop_map(|pick| Op::Running { pick }),
            1 => (1i64..4).prop_map(|m| Op::Register { memory: m * 512 }),
            1 => any::<usize>().prop_map(|pick| Op::Deregister { pick }),
            1 => any::<usize>().prop_map(|pick| Op::Raw { pick }),
        ]
    }

    async fn run_op(store: &Arc<MemoryStore>, a: &EcsService, b: &EcsService, op: Op) {
        let task_ids = || async {
            store
                .scan_all_typed::<Task>(&keys::tasks(REGION, CLUSTER))
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.value.id)
                .collect::<Vec<_>>()
        };
        let instance_ids = || async {
            store
                .scan_all_typed::<ContainerInstance>(&keys::container_instances(REGION, CLUSTER))
                .await
                .unwrap()
                .into_iter()
                .filter(|i| i.value.status != ContainerInstanceStatus::Inactive)
                .map(|i| i.value.id)
                .collect::<Vec<_>>()
        };
        match op {
            Op::Run { first, count } => {
                let svc = if first { a } else { b };
                let r = call(
                    svc,
                    EcsOperation::RunTask,
                    json!({"cluster": CLUSTER, "taskDefinition": "t", "count": count,
                        "placementStrategy": [{"type": "binpack", "field": "memory"}]}),
                )
                .await;
                if let Ok(v) = r {
                    let placed = v["tasks"].as_array().unwrap().len();
                    let failed = v["failures"].as_array().unwrap().len();
                    assert_eq!(placed + failed, usize::from(count), "{v}");
                }
            }
            Op::Stop { pick } | Op::Running { pick } => {
                let ids = task_ids().await;
                if ids.is_empty() {
                    return;
                }
                let (svc, status) = match op {
                    Op::Stop { .. } => (b, "STOPPED"),
                    _ => (a, "RUNNING"),
                };
                call(
                    svc,
                    EcsOperation::SubmitTaskStateChange,
                    json!({"cluster": CLUSTER, "task": ids[pick % ids.len()], "status": status}),
                )
                .await
                .unwrap();
            }
            Op::Register { memory } => {
                register(b, 0, memory).await;
            }
            Op::Deregister { pick } => {
                let ids = instance_ids().await;
                if ids.len() > 1 {
                    call(
                        b,
                        EcsOperation::DeregisterContainerInstance,
                        json!({"cluster": CLUSTER, "containerInstance": ids[pick % ids.len()], "force": true}),
                    )
                    .await
                    .unwrap();
                }
            }
            Op::Raw { pick } => {
                let ids = instance_ids().await;
                let key = keys::container_instance(REGION, CLUSTER, &ids[pick % ids.len()]);
                let cur = store
                    .get_typed::<ContainerInstance>(&key)
                    .await
                    .unwrap()
                    .unwrap();
                let mut ci = cur.value;
                ci.attributes
                    .push(gantry_domain::container_instance::Attribute {
                        name: format!("raw{}", ci.attributes.len()),
                        value: Some("x".into()),
                    });
                let txn = Txn::new()
                    .require_revision(&key, cur.revision)
                    .put(&key, encode(&key, &ci).unwrap());
                let _ = store.commit(txn).await.unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// After any interleaving of placements from two servers sharing one store, agent reports,
        /// registrations, deregistrations and writes from outside ECS's code, each server's
        /// cluster view equals a fresh read of the store, and no instance is over-committed.
        #[test]
        fn view_matches_store_and_never_overcommits(
            memories in proptest::collection::vec(1i64..5, 1..6),
            rounds in proptest::collection::vec(proptest::collection::vec(op(), 1..8), 1..6),
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let store = Arc::new(MemoryStore::new());
                let memories: Vec<i64> = memories.iter().map(|m| m * 512).collect();
                let (a, b) = setup(&store, &memories).await;
                for round in rounds {
                    // The operations of a round run concurrently.
                    let ops = round.into_iter().map(|o| run_op(&store, &a, &b, o));
                    futures::future::join_all(ops).await;
                    check_no_overcommit(store.as_ref()).await;
                    let want = fresh(store.as_ref()).await;
                    for svc in [&a, &b] {
                        if let Some(got) = view_snapshot(svc).await {
                            assert_eq!(got, want);
                        }
                    }
                    check_list_tasks(store.as_ref(), &b).await;
                }
            });
        }
    }

    /// A cluster view nobody uses still reads its feed, so the store does not keep the commits
    /// of other services (log chunks, metric batches) for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_view_keeps_no_unread_commits() {
        let store = Arc::new(MemoryStore::new());
        let (a, _b) = setup(&store, &[4]).await;
        // The view exists once something reads it.
        let listed = call(&a, EcsOperation::ListTasks, json!({"cluster": CLUSTER})).await;
        assert!(listed.is_ok(), "{listed:?}");
        assert!(view_snapshot(&a).await.is_some());
        for i in 0..50 {
            let txn = Txn::new().put(format!("logs/other/{i}"), vec![0u8; 4096]);
            store.commit(txn).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.unread_commits() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} commits still unread by an idle view",
                store.unread_commits()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Still current afterwards.
        assert!(view_snapshot(&a).await.is_some());
    }

    /// DescribeTasks checks the cluster against the view once the cluster has one: a cluster
    /// made INACTIVE or deleted by another writer is not found at once, one made ACTIVE again
    /// is, and a cluster whose name begins with this one's changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn describe_tasks_follows_the_cluster_record_through_the_view() {
        use gantry_domain::cluster::{Cluster, ClusterStatus};
        let store = Arc::new(MemoryStore::new());
        let (a, b) = setup(&store, &[1024]).await;
        let run = call(
            &a,
            EcsOperation::RunTask,
            json!({"cluster": CLUSTER, "taskDefinition": "t"}),
        )
        .await
        .unwrap();
        let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_owned();
        let describe = || {
            call(
                &a,
                EcsOperation::DescribeTasks,
                json!({"cluster": CLUSTER, "tasks": [arn]}),
            )
        };
        // The first answer serializes the member; later ones are copied from the view whole,
        // the same bytes. A list with a task the view lacks takes the general path.
        let first = describe().await.unwrap();
        assert_eq!(first["tasks"][0]["taskArn"], json!(arn));
        assert_eq!(describe().await.unwrap(), first);
        let mixed = call(
            &a,
            EcsOperation::DescribeTasks,
            json!({"cluster": CLUSTER, "tasks": [arn, "0".repeat(32), arn]}),
        )
        .await
        .unwrap();
        assert_eq!(mixed["tasks"].as_array().unwrap().len(), 2);
        assert_eq!(mixed["tasks"][1], first["tasks"][0]);
        assert_eq!(mixed["failures"][0]["reason"], json!("MISSING"));
        assert!(view_snapshot(&a).await.is_some());
        // A neighbour named with this cluster's name as prefix, made and deleted by the other
        // writer.
        let other = format!("{CLUSTER}2");
        call(
            &b,
            EcsOperation::CreateCluster,
            json!({"clusterName": other}),
        )
        .await
        .unwrap();
        call(&b, EcsOperation::DeleteCluster, json!({"cluster": other}))
            .await
            .unwrap();
        assert_eq!(
            describe().await.unwrap()["tasks"].as_array().unwrap().len(),
            1
        );
        // The other writer makes the cluster INACTIVE, then ACTIVE, then deletes its record.
        let key = keys::cluster(REGION, CLUSTER);
        let current = store.get_typed::<Cluster>(&key).await.unwrap().unwrap();
        let mut inactive = current.value.clone();
        inactive.status = ClusterStatus::Inactive;
        store
            .commit(Txn::new().put(key.clone(), encode(&key, &inactive).unwrap()))
            .await
            .unwrap();
        let err = describe().await.unwrap_err();
        assert!(err.contains("Cluster not found"), "{err}");
        store
            .commit(Txn::new().put(key.clone(), encode(&key, &current.value).unwrap()))
            .await
            .unwrap();
        assert_eq!(
            describe().await.unwrap()["tasks"].as_array().unwrap().len(),
            1
        );
        store.commit(Txn::new().delete(key.clone())).await.unwrap();
        let err = describe().await.unwrap_err();
        assert!(err.contains("Cluster not found"), "{err}");
        // A cluster that never existed makes no view.
        let err = call(
            &a,
            EcsOperation::DescribeTasks,
            json!({"cluster": "nope", "tasks": ["x"]}),
        )
        .await
        .unwrap_err();
        assert!(err.contains("Cluster not found"), "{err}");
        assert!(a.placement.existing_queue(REGION, "nope").is_none());
    }

    /// Many concurrent calls on a small cluster: everything asked for is either placed or in
    /// `failures`, capacity is used to the last task, and nothing is over-committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_fill_the_cluster_exactly() {
        let store = Arc::new(MemoryStore::new());
        // 4 instances × 1024 MiB = 16 tasks of 256 MiB.
        let (a, b) = setup(&store, &[1024, 1024, 1024, 1024]).await;
        let calls = (0..20).map(|i| {
            let svc = if i % 2 == 0 { &a } else { &b };
            call(
                svc,
                EcsOperation::RunTask,
                json!({"cluster": CLUSTER, "taskDefinition": "t", "count": 3}),
            )
        });
        let answers = futures::future::join_all(calls).await;
        let mut placed = 0;
        let mut failed = 0;
        for v in answers {
            let v = v.unwrap();
            placed += v["tasks"].as_array().unwrap().len();
            failed += v["failures"].as_array().unwrap().len();
        }
        assert_eq!(placed, 16);
        assert_eq!(failed, 60 - 16);
        check_no_overcommit(store.as_ref()).await;
        assert_eq!(
            view_snapshot(&a).await.unwrap(),
            fresh(store.as_ref()).await
        );
    }

    /// A store that refuses transactions of more than 24 mutations or conditions, as etcd refuses
    /// more than 128 operations in one transaction.
    #[derive(Debug)]
    struct Limited(Arc<MemoryStore>);

    #[async_trait::async_trait]
    impl Store for Limited {
        async fn get(&self, key: &str) -> Result<Option<gantry_store::Record>, StoreError> {
            self.0.get(key).await
        }
        async fn scan(
            &self,
            prefix: &str,
            start_after: Option<&str>,
            limit: usize,
        ) -> Result<gantry_store::Page, StoreError> {
            self.0.scan(prefix, start_after, limit).await
        }
        async fn commit(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
            if txn.mutations.len() > 24 || txn.conditions.len() > 24 {
                return Err(StoreError::TooLarge(format!(
                    "{} writes and {} conditions",
                    txn.mutations.len(),
                    txn.conditions.len()
                )));
            }
            self.0.commit(txn).await
        }
        async fn revision(&self) -> Result<Revision, StoreError> {
            self.0.revision().await
        }
        fn watch(&self, prefix: &str) -> gantry_store::Watch {
            self.0.watch(prefix)
        }
    }

    /// Concurrent calls whose batch would exceed the store's transaction limit are placed in
    /// smaller batches: every call succeeds and nothing is over-committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_too_large_for_the_store_are_placed_in_smaller_ones() {
        let memory = Arc::new(MemoryStore::new());
        let store: Arc<dyn Store> = Arc::new(Limited(memory.clone()));
        let svc = EcsService::new(store.clone(), Arc::new(RandomIds));
        call(
            &svc,
            EcsOperation::CreateCluster,
            json!({"clusterName": CLUSTER}),
        )
        .await
        .unwrap();
        call(
            &svc,
            EcsOperation::RegisterTaskDefinition,
            json!({"family": "t", "containerDefinitions": [
                {"name": "c", "image": "busybox", "cpu": 16, "memory": 16}]}),
        )
        .await
        .unwrap();
        for i in 0..4 {
            register(&svc, i, 8192).await;
        }
        let calls = (0..24).map(|_| {
            call(
                &svc,
                EcsOperation::RunTask,
                json!({"cluster": CLUSTER, "taskDefinition": "t", "count": 5}),
            )
        });
        let answers = futures::future::join_all(calls).await;
        let mut placed = 0;
        for v in answers {
            let v = v.expect("every call succeeds");
            assert_eq!(v["failures"].as_array().unwrap().len(), 0, "{v}");
            placed += v["tasks"].as_array().unwrap().len();
        }
        assert_eq!(placed, 120);
        check_no_overcommit(memory.as_ref()).await;
    }

    /// A repeated clientToken answers with the first call's tasks, also when both calls wait in
    /// the same batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_token_in_one_batch_places_once() {
        let store = Arc::new(MemoryStore::new());
        let (a, _b) = setup(&store, &[4096]).await;
        let body =
            json!({"cluster": CLUSTER, "taskDefinition": "t", "count": 2, "clientToken": "tok"});
        let answers = futures::future::join_all(
            (0..4).map(|_| call(&a, EcsOperation::RunTask, body.clone())),
        )
        .await;
        let first: Vec<Value> = answers[0].as_ref().unwrap()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["taskArn"].clone())
            .collect();
        assert_eq!(first.len(), 2);
        for v in &answers {
            let arns: Vec<Value> = v.as_ref().unwrap()["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["taskArn"].clone())
                .collect();
            assert_eq!(arns, first);
        }
        let all = store
            .scan_all_typed::<Task>(&keys::tasks(REGION, CLUSTER))
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
    }

    async fn list_all(svc: &EcsService, filter: &str, page: u32) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"cluster": CLUSTER, "filter": filter, "maxResults": page});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let v = call(svc, EcsOperation::ListContainerInstances, body)
                .await
                .unwrap();
            let arns = v["containerInstanceArns"].as_array().unwrap();
            assert!(arns.len() <= page as usize);
            out.extend(arns.iter().map(|a| a.as_str().unwrap().to_owned()));
            match v["nextToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => return out,
            }
        }
    }

    /// ListContainerInstances --filter answers from the view, in ARN order, page by page, and sees
    /// task groups placed a moment before (through the other server too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_container_instances_filters_and_pages_from_the_view() {
        let store = Arc::new(MemoryStore::new());
        let (a, b) = setup(&store, &[1024; 7]).await;
        let zone_a = list_all(&a, "attribute:ecs.availability-zone == us-east-1a", 2).await;
        assert_eq!(zone_a.len(), 3, "instances 0, 3 and 6 are in zone a");
        let mut sorted = zone_a.clone();
        sorted.sort();
        assert_eq!(zone_a, sorted, "ARN order");
        assert_eq!(list_all(&a, "", 3).await.len(), 7);
        call(
            &b,
            EcsOperation::RunTask,
            json!({"cluster": CLUSTER, "taskDefinition": "t", "count": 1}),
        )
        .await
        .unwrap();
        let with_task = list_all(&a, "task:group == family:t", 1).await;
        assert_eq!(with_task.len(), 1);
        let bad = call(
            &a,
            EcsOperation::ListContainerInstances,
            json!({"cluster": CLUSTER, "nextToken": "nope"}),
        )
        .await;
        assert!(bad.unwrap_err().contains("nextToken"));
    }
}
