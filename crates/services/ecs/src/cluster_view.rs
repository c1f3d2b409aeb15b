//! A cluster as placement sees it, kept in memory and current from the store's change feed.
//!
//! The view holds every container instance of one cluster that is not INACTIVE (its stored record,
//! the revision it was read at, and its scheduler [`InstanceView`]), and the group of every task
//! that holds resources on an instance (for `distinctInstance`, spread and `task:group`). It is
//! built once from a scan and then follows two store watches (instances and tasks of the cluster).
//!
//! The view is only an input to decisions: every commit built from it compares the revisions of
//! the instance records it changes, so a stale view (another process wrote, the feed has not
//! arrived yet) costs a conflict and a retry, never an over-committed instance. After a conflict,
//! [`ClusterView::refresh_key`] re-reads the conflicting record directly, so the view does not
//! depend on the feed for correctness.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use gantry_domain::container_instance::{ContainerInstance, ContainerInstanceStatus};
use gantry_domain::task::{Task, TaskStatus};
use gantry_scheduler::{InstanceView, StaticIndex, same_statics};
use gantry_store::{Event, Record, Revision, Store, StoreError, Watch, WatchError, decode};

use crate::{keys, placement};

/// One stored instance: its record and the revision that record was read at.
#[derive(Debug, Clone)]
pub(crate) struct InstanceEntry {
    pub revision: Revision,
    pub record: Arc<ContainerInstance>,
}

/// A task in the view: its record, and the instance it holds resources on with its group.
#[derive(Debug, Clone)]
struct TaskEntry {
    revision: Revision,
    /// `(instance id, group)` while the task is not STOPPED and has an instance.
    holds: Option<(String, String)>,
    task: Option<Arc<Task>>,
    /// The task's DescribeTasks member, serialized on first use; an entry is replaced with a new
    /// cell whenever the task changes, so the bytes always match `task`.
    wire: WireCell,
}

/// A task's serialized DescribeTasks member (without tags), shared so it can be filled outside
/// the view's lock.
pub(crate) type WireCell = Arc<std::sync::OnceLock<Arc<[u8]>>>;

/// A task the view holds, as [`ClusterView::task_for_describe`] gives it.
pub(crate) enum Held {
    /// The task's DescribeTasks member, serialized.
    Serialized(Arc<[u8]>),
    /// The task's record and the cell its serialized member goes into.
    Task(Arc<Task>, WireCell),
}

/// The in-memory view of one cluster (see the module documentation).
#[derive(Debug)]
pub(crate) struct ClusterView {
    instance_prefix: String,
    task_prefix: String,
    /// The platform cluster's view: its hosts run the Fargate tasks of every cluster of the
    /// region, so it follows all of them (keyed `cluster/id`).
    platform: bool,
    instance_watch: Watch,
    task_watch: Watch,
    /// The cluster record's key and a watch on it (also delivering other clusters whose names
    /// begin with this one's, ignored).
    cluster_key: String,
    cluster_watch: Watch,
    /// The revision of the cluster record last applied, and whether it is ACTIVE (false when
    /// absent).
    cluster_active: (Revision, bool),
    /// Instances not INACTIVE, in no particular order; `views[i]` is the scheduler view of
    /// `entries[i]`.
    entries: Vec<InstanceEntry>,
    views: Vec<InstanceView>,
    index: HashMap<String, usize>,
    /// The instance ids in order (ARN order), for paging.
    sorted: BTreeSet<String>,
    /// Revisions of deleted or INACTIVE instance records (so an older event cannot bring them
    /// back).
    gone: HashMap<String, Revision>,
    /// Every task of the cluster, by id (ARN order).
    tasks: BTreeMap<String, TaskEntry>,
    /// Groups of the tasks holding resources on each instance (also for instances not yet seen).
    groups: HashMap<String, Vec<String>>,
    /// The highest revision applied from the feed or a read.
    revision: Revision,
    /// What the last placer derived from the instances' static properties; dropped whenever an
    /// instance comes, goes or changes one of them.
    placer_index: Option<StaticIndex>,
}

fn id_of<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix).filter(|id| !id.contains('/'))
}

fn remove_one(v: &mut Vec<String>, item: &str) {
    if let Some(pos) = v.iter().position(|g| g == item) {
        v.swap_remove(pos);
    }
}

impl ClusterView {
    /// Reads the cluster's instances and tasks and starts following the feed.
    pub(crate) async fn load(
        store: &dyn Store,
        region: &str,
        cluster: &str,
    ) -> Result<Self, StoreError> {
        let mut lagged = 0;
        loop {
            match Self::try_load(store, region, cluster).await? {
                Ok(view) => return Ok(view),
                Err(e) if lagged < 3 => {
                    lagged += 1;
                    tracing::debug!(error = %e, "change feed lagged while reading the cluster; reading again");
                }
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "reading cluster {cluster}: the change feed kept lagging ({e})"
                    )));
                }
            }
        }
    }

    async fn try_load(
        store: &dyn Store,
        region: &str,
        cluster: &str,
    ) -> Result<Result<Self, WatchError>, StoreError> {
        let instance_prefix = keys::container_instances(region, cluster);
        let platform = cluster == gantry_domain::cluster::FARGATE_PLATFORM_CLUSTER;
        let task_prefix = if platform {
            format!("ecs/{region}/task/")
        } else {
            keys::tasks(region, cluster)
        };
        // Watch first, then read: every change after the read's start arrives on the watches.
        let instance_watch = store.watch(&instance_prefix);
        let task_watch = store.watch(&task_prefix);
        let cluster_key = keys::cluster(region, cluster);
        let cluster_watch = store.watch(&cluster_key);
        let cluster_active = match store.get(&cluster_key).await? {
            Some(rec) => (rec.revision, cluster_is_active(Some(&rec.value))),
            None => (0, false),
        };
        let mut view = Self {
            instance_prefix,
            task_prefix,
            platform,
            instance_watch,
            task_watch,
            cluster_key,
            cluster_watch,
            cluster_active,
            entries: Vec::new(),
            views: Vec::new(),
            index: HashMap::new(),
            sorted: BTreeSet::new(),
            gone: HashMap::new(),
            tasks: BTreeMap::new(),
            groups: HashMap::new(),
            revision: 0,
            placer_index: None,
        };
        let prefix = view.task_prefix.clone();
        scan_each(store, &prefix, |rec| {
            view.apply_task(&rec.key, Some(rec), rec.revision)
        })
        .await?;
        let prefix = view.instance_prefix.clone();
        scan_each(store, &prefix, |rec| {
            view.apply_instance(&rec.key, Some(rec), rec.revision)
        })
        .await?;
        Ok(view.catch_up_feed().map(|()| view))
    }

    /// Applies every change the feed has delivered so far. After it, the view reflects every
    /// commit that returned before the call. A watch that fell behind is answered with a full
    /// re-read.
    pub(crate) async fn catch_up(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        match self.catch_up_feed() {
            Ok(()) => Ok(()),
            Err(lag) => {
                tracing::debug!(cluster = %self.instance_prefix, %lag, "cluster view lagged; re-reading");
                let (region, cluster) = self.region_cluster();
                *self = Self::load(store, &region, &cluster).await?;
                Ok(())
            }
        }
    }

    /// Applies what the feed has delivered so far; false when the feed lagged or closed (the view
    /// is then no longer current and must be read again).
    pub(crate) fn drain_feed(&mut self) -> bool {
        self.catch_up_feed().is_ok()
    }

    fn region_cluster(&self) -> (String, String) {
        // ecs/<region>/instance/<cluster>/
        let mut parts = self.instance_prefix.split('/');
        let _ = parts.next();
        let region = parts.next().unwrap_or_default().to_owned();
        let _ = parts.next();
        let cluster = parts.next().unwrap_or_default().to_owned();
        (region, cluster)
    }

    fn catch_up_feed(&mut self) -> Result<(), WatchError> {
        while let Some(ev) = self.instance_watch.try_next() {
            let ev = ev?;
            self.apply_instance_event(ev);
        }
        while let Some(ev) = self.task_watch.try_next() {
            let ev = ev?;
            self.apply_task_event(ev);
        }
        while let Some(ev) = self.cluster_watch.try_next() {
            let ev = ev?;
            if ev.key == self.cluster_key && ev.revision > self.cluster_active.0 {
                self.cluster_active = (ev.revision, cluster_is_active(ev.value.as_deref()));
            }
        }
        Ok(())
    }

    fn apply_instance_event(&mut self, ev: Event) {
        let rec = ev.value.map(|value| Record {
            key: ev.key.clone(),
            value,
            revision: ev.revision,
            create_revision: 0,
        });
        self.apply_instance(&ev.key, rec.as_ref(), ev.revision);
    }

    fn apply_task_event(&mut self, ev: Event) {
        let rec = ev.value.map(|value| Record {
            key: ev.key.clone(),
            value,
            revision: ev.revision,
            create_revision: 0,
        });
        self.apply_task(&ev.key, rec.as_ref(), ev.revision);
    }

    /// Re-reads one record the view may hold a stale copy of (the key a commit conflicted on).
    pub(crate) async fn refresh_key(
        &mut self,
        store: &dyn Store,
        key: &str,
    ) -> Result<(), StoreError> {
        let is_instance = id_of(&self.instance_prefix, key).is_some();
        let is_task = id_of(&self.task_prefix, key).is_some();
        if !is_instance && !is_task {
            return Ok(());
        }
        // A deletion is recorded at the revision the store had before the read.
        let before = store.revision().await?;
        let rec = store.get(key).await?;
        let revision = rec.as_ref().map_or(before, |r| r.revision);
        if is_instance {
            self.apply_instance(key, rec.as_ref(), revision);
        } else {
            self.apply_task(key, rec.as_ref(), revision);
        }
        Ok(())
    }

    fn apply_instance(&mut self, key: &str, rec: Option<&Record>, revision: Revision) {
        let Some(id) = id_of(&self.instance_prefix, key) else {
            return;
        };
        self.revision = self.revision.max(revision);
        let known = self
            .index
            .get(id)
            .map(|&i| self.entries[i].revision)
            .or_else(|| self.gone.get(id).copied())
            .unwrap_or(0);
        if revision <= known {
            return;
        }
        let decoded = rec.and_then(|r| match decode::<ContainerInstance>(r) {
            Ok(v) => Some(Arc::new(v.value)),
            Err(e) => {
                tracing::warn!(key, error = %e, "container instance record not readable; left out of placement");
                None
            }
        });
        self.set_instance(id, decoded, revision);
    }

    /// Records what a commit of this process wrote, as written: the feed's copies of these
    /// records (same revision) are then skipped without being decoded again.
    pub(crate) fn apply_committed(
        &mut self,
        revision: Revision,
        instances: Vec<(String, Arc<ContainerInstance>)>,
        tasks: Vec<(String, Arc<Task>)>,
    ) {
        // Tasks first, as a load does: an instance's view takes the groups of its tasks.
        for (key, task) in tasks {
            self.apply_task_value(&key, Some(task), false, revision);
        }
        for (key, ci) in instances {
            let Some(id) = id_of(&self.instance_prefix, &key).map(str::to_owned) else {
                continue;
            };
            self.revision = self.revision.max(revision);
            let known = self
                .index
                .get(id.as_str())
                .map(|&i| self.entries[i].revision)
                .or_else(|| self.gone.get(id.as_str()).copied())
                .unwrap_or(0);
            if revision > known {
                self.set_instance(&id, Some(ci), revision);
            }
        }
    }

    fn set_instance(
        &mut self,
        id: &str,
        decoded: Option<Arc<ContainerInstance>>,
        revision: Revision,
    ) {
        match decoded.filter(|ci| ci.status != ContainerInstanceStatus::Inactive) {
            Some(ci) => {
                self.gone.remove(id);
                let groups = self.groups.get(id).cloned().unwrap_or_default();
                let view = placement::view_of(&ci, groups);
                let entry = InstanceEntry {
                    revision,
                    record: ci,
                };
                match self.index.get(id) {
                    Some(&i) => {
                        if !same_statics(&self.views[i], &view) {
                            self.placer_index = None;
                        }
                        self.entries[i] = entry;
                        self.views[i] = view;
                    }
                    None => {
                        self.placer_index = None;
                        self.sorted.insert(id.to_owned());
                        self.index.insert(id.to_owned(), self.entries.len());
                        self.entries.push(entry);
                        self.views.push(view);
                    }
                }
            }
            None => {
                self.gone.insert(id.to_owned(), revision);
                if let Some(i) = self.index.remove(id) {
                    self.placer_index = None;
                    self.sorted.remove(id);
                    self.entries.swap_remove(i);
                    self.views.swap_remove(i);
                    if i < self.entries.len() {
                        let moved = self.entries[i].record.id.clone();
                        self.index.insert(moved, i);
                    }
                }
            }
        }
    }

    fn apply_task(&mut self, key: &str, rec: Option<&Record>, revision: Revision) {
        if self.task_id(key).is_none() {
            return;
        }
        let known = self.task_id(key).and_then(|id| self.tasks.get(id));
        if known.is_some_and(|o| revision <= o.revision) {
            self.revision = self.revision.max(revision);
            return;
        }
        let task = rec.and_then(|r| match decode::<Task>(r) {
            Ok(t) => Some(Arc::new(t.value)),
            Err(e) => {
                tracing::warn!(key, error = %e, "task record not readable; left out of placement");
                None
            }
        });
        self.apply_task_value(key, task, rec.is_none(), revision);
    }

    /// The id a task key has in this view (`cluster/id` in the platform's view).
    fn task_id<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.platform {
            key.strip_prefix(&self.task_prefix)
                .filter(|id| id.matches('/').count() == 1)
        } else {
            id_of(&self.task_prefix, key)
        }
    }

    /// Applies a task's record at `revision` (`None` and not `deleted`: unreadable, it holds
    /// nothing).
    fn apply_task_value(
        &mut self,
        key: &str,
        task: Option<Arc<Task>>,
        deleted: bool,
        revision: Revision,
    ) {
        let Some(id) = self.task_id(key) else {
            return;
        };
        self.revision = self.revision.max(revision);
        let old = self.tasks.get(id);
        if old.is_some_and(|o| revision <= o.revision) {
            return;
        }
        if self.platform && task.as_ref().is_some_and(|t| !t.is_fargate()) {
            // Other clusters' EC2 tasks are not on the platform's hosts.
            return;
        }
        let holds = task.as_ref().and_then(|t| match &t.container_instance_id {
            Some(ci) if t.last_status != TaskStatus::Stopped => Some((ci.clone(), t.group.clone())),
            _ => None,
        });
        let old_holds = old.and_then(|o| o.holds.clone());
        if old_holds != holds {
            if let Some((ci, group)) = &old_holds {
                if let Some(g) = self.groups.get_mut(ci) {
                    remove_one(g, group);
                    if g.is_empty() {
                        self.groups.remove(ci);
                    }
                }
                if let Some(&i) = self.index.get(ci) {
                    remove_one(&mut self.views[i].task_groups, group);
                }
            }
            if let Some((ci, group)) = &holds {
                self.groups
                    .entry(ci.clone())
                    .or_default()
                    .push(group.clone());
                if let Some(&i) = self.index.get(ci) {
                    self.views[i].task_groups.push(group.clone());
                }
            }
        }
        if deleted {
            // Deleted: nothing to remember beyond the revision check, which no older event of a
            // deleted task can need (events arrive in order).
            self.tasks.remove(id);
        } else {
            self.tasks.insert(
                id.to_owned(),
                TaskEntry {
                    revision,
                    holds,
                    task,
                    wire: WireCell::default(),
                },
            );
        }
    }

    /// What the last placer over [`Self::views`] derived from the instances' static properties,
    /// if they have not changed since (empty otherwise); hand it back with
    /// [`Self::keep_placer_index`].
    pub(crate) fn take_placer_index(&mut self) -> StaticIndex {
        self.placer_index.take().unwrap_or_default()
    }

    /// Keeps a placer's index over the current [`Self::views`] for the next placer.
    pub(crate) fn keep_placer_index(&mut self, index: StaticIndex) {
        self.placer_index = Some(index);
    }

    /// Scheduler views of the instances, index-aligned with [`Self::entries`].
    pub(crate) fn views(&self) -> &[InstanceView] {
        &self.views
    }

    pub(crate) fn entries(&self) -> &[InstanceEntry] {
        &self.entries
    }

    /// The index of an instance by id.
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Indexes of the instances in id order, starting after the id `after`.
    pub(crate) fn in_order_after<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = usize> + 'a {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.sorted
            .range::<str, _>((lower, Bound::Unbounded))
            .filter_map(|id| self.index.get(id).copied())
    }

    /// The cluster's tasks in id order, starting after the id `after`.
    pub(crate) fn tasks_after<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Task)> + 'a {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.tasks
            .range::<str, _>((lower, Bound::Unbounded))
            .filter_map(|(id, e)| e.task.as_deref().map(|t| (id.as_str(), t)))
    }

    /// Every task of the cluster, in id order, shared.
    pub(crate) fn task_records(&self) -> impl Iterator<Item = &Arc<Task>> + '_ {
        self.tasks.values().filter_map(|e| e.task.as_ref())
    }

    /// A task as the view holds it, with the revision it was read at.
    pub(crate) fn task(&self, id: &str) -> Option<(Revision, Arc<Task>)> {
        let e = self.tasks.get(id)?;
        e.task.clone().map(|t| (e.revision, t))
    }

    /// `f` of the serialized DescribeTasks members of the tasks `ids`, in order, borrowed from
    /// the view; `None` unless the view holds every one of them with its member made.
    pub(crate) fn with_serialized<'i, R>(
        &self,
        ids: impl Iterator<Item = &'i str>,
        f: impl FnOnce(&[&[u8]]) -> R,
    ) -> Option<R> {
        let members = ids
            .map(|id| {
                let e = self.tasks.get(id)?;
                e.task.as_ref()?;
                e.wire.get().map(|bytes| &bytes[..])
            })
            .collect::<Option<Vec<&[u8]>>>()?;
        Some(f(&members))
    }

    /// A task as DescribeTasks needs it: its serialized member when `serialized` is wanted and
    /// already made (one reference count, the record untouched), else the record with the cell
    /// its member is kept in.
    pub(crate) fn task_for_describe(&self, id: &str, serialized: bool) -> Option<Held> {
        let e = self.tasks.get(id)?;
        let task = e.task.as_ref()?;
        if serialized && let Some(bytes) = e.wire.get() {
            return Some(Held::Serialized(bytes.clone()));
        }
        Some(Held::Task(task.clone(), e.wire.clone()))
    }

    /// Whether the cluster's record is ACTIVE, as of every commit the view reflects.
    pub(crate) fn cluster_active(&self) -> bool {
        self.cluster_active.1
    }

    /// The highest store revision the view has applied.
    #[allow(dead_code)]
    pub(crate) fn revision(&self) -> Revision {
        self.revision
    }
}

/// Whether a cluster record (its stored bytes) is ACTIVE; an absent or unreadable one is not.
fn cluster_is_active(value: Option<&[u8]>) -> bool {
    use gantry_domain::cluster::{Cluster, ClusterStatus};
    value
        .and_then(|v| serde_json::from_slice::<Cluster>(v).ok())
        .is_some_and(|c| c.status == ClusterStatus::Active)
}

async fn scan_each(
    store: &dyn Store,
    prefix: &str,
    mut f: impl FnMut(&Record),
) -> Result<(), StoreError> {
    let mut start_after: Option<String> = None;
    loop {
        let page = store.scan(prefix, start_after.as_deref(), 1000).await?;
        for rec in &page.records {
            f(rec);
        }
        match page.next {
            Some(n) => start_after = Some(n),
            None => return Ok(()),
        }
    }
}
