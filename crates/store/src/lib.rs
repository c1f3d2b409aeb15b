//! The control plane's state: a revisioned key-value store.
//!
//! Records are keyed by kind and id (`cluster/<name>`, `taskdef/<family>/<revision>`, ...), and each
//! carries the store revision at which it was last written. Writers read, decide, and commit a
//! [`Txn`] whose [`Condition`]s compare the revisions they read; on conflict they re-read and retry.
//! Every committed transaction gets its own, strictly increasing, store revision, and its events
//! reach [`Store::watch`] subscribers in revision order.
//!
//! Backends: [`SqliteStore`] (embedded, durable, group commit; the default), [`EtcdStore`] (several
//! server replicas on one etcd cluster) and [`MemoryStore`] (tests). All pass the same conformance
//! suite (`tests/conformance.rs`). The trait is shaped after etcd's KV API: a store revision is
//! etcd's revision, a record's revision its `mod_revision`.
//!
//! Must not depend on HTTP or Docker.

mod election;
mod etcd;
mod memory;
mod sqlite;
mod typed;

use std::fmt::Debug;

use async_trait::async_trait;

pub use election::{
    Election, EtcdElection, FencedStore, LEADER_KEY, SoloElection, Term, claim_leadership,
};
pub use etcd::{EtcdOptions, EtcdStore, EtcdTls};
pub use memory::MemoryStore;
pub use sqlite::{SqliteOptions, SqliteStats, SqliteStore};
pub use typed::{StoreExt, Versioned, decode, encode};

/// A store revision. Revision 0 means "never written".
pub type Revision = u64;

/// One stored key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    /// The store revision of the transaction that last wrote this key.
    pub revision: Revision,
    /// The store revision of the transaction that created this key.
    pub create_revision: Revision,
}

/// A precondition of a transaction, checked atomically with its mutations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key's last-write revision must equal `revision`; 0 means the key must not exist.
    Revision { key: String, revision: Revision },
}

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// Deleting a key that does not exist is not an error.
    Delete {
        key: String,
    },
}

/// An atomic, all-or-nothing set of mutations guarded by conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub conditions: Vec<Condition>,
    pub mutations: Vec<Mutation>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires that `key` does not exist.
    pub fn require_absent(mut self, key: impl Into<String>) -> Self {
        self.conditions.push(Condition::Revision {
            key: key.into(),
            revision: 0,
        });
        self
    }

    /// Requires that `key` was last written at `revision` (0: does not exist).
    pub fn require_revision(mut self, key: impl Into<String>, revision: Revision) -> Self {
        self.conditions.push(Condition::Revision {
            key: key.into(),
            revision,
        });
        self
    }

    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.mutations.push(Mutation::Put {
            key: key.into(),
            value,
        });
        self
    }

    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.mutations.push(Mutation::Delete { key: key.into() });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }
}

/// What happened to a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied durably at this revision.
    Committed { revision: Revision },
    /// A condition did not hold; nothing was written. Names the first key whose condition failed.
    Conflict { key: String },
}

impl TxnOutcome {
    pub fn is_committed(&self) -> bool {
        matches!(self, TxnOutcome::Committed { .. })
    }
}

/// One page of a prefix scan, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<Record>,
    /// The last key of this page when more records may follow; pass it as `start_after`.
    pub next: Option<String>,
}

/// A change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: Revision,
    pub key: String,
    /// The new value, or `None` when the key was deleted.
    pub value: Option<Vec<u8>>,
}

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption); the transaction was not applied.
    #[error("store backend failed: {0}")]
    Backend(String),
    /// The disk holding the store is full (or the store reached its size cap); the transaction
    /// was not applied. Reads keep working, and writes work again once space is freed.
    #[error("store storage is full: {0}")]
    StorageFull(String),
    /// A stored value could not be decoded into the expected type, or a value could not be encoded.
    #[error("stored value for {key} is not valid: {detail}")]
    Codec { key: String, detail: String },
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// The store cannot be reached right now (every etcd endpoint is down, no quorum, timeout).
    /// The request failed as a whole: a transaction was applied entirely or not at all (when the
    /// answer was lost in transit, a retry may find it applied).
    #[error("store is unavailable: {0}")]
    Unavailable(String),
    /// The transaction or record exceeds a limit of the backend (etcd's request size or its
    /// number of operations per transaction); nothing was written.
    #[error("store request too large: {0}")]
    TooLarge(String),
}

impl StoreError {
    /// Whether the write failed for want of space (retry once space is freed).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::StorageFull(_))
    }

    /// Whether the store could not be reached (retry once it is back).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Errors of a watch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    /// The subscriber fell behind and missed events; it must re-read what it watches.
    #[error("watcher lagged and missed {0} batches")]
    Lagged(u64),
    /// The store is closed.
    #[error("store is closed")]
    Closed,
}

/// A subscription to changes under a key prefix, from the moment it was created.
///
/// Backends publish batches of events, one batch per transaction (or per revision); an empty batch
/// means the backend lost part of the feed (etcd compacted the history it was resuming from) and
/// reaches the subscriber as [`WatchError::Lagged`], so it re-reads what it watches.
#[derive(Debug)]
pub struct Watch {
    prefix: String,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<Event>>>,
    pending: std::collections::VecDeque<Event>,
}

impl Watch {
    pub(crate) fn new(
        prefix: &str,
        rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<Event>>>,
    ) -> Self {
        Self {
            prefix: prefix.to_owned(),
            rx,
            pending: Default::default(),
        }
    }

    /// The next change under the prefix, in revision order.
    pub async fn next(&mut self) -> Result<Event, WatchError> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            match self.rx.recv().await {
                Ok(batch) if batch.is_empty() => return Err(WatchError::Lagged(0)),
                Ok(batch) => self.pending.extend(
                    batch
                        .iter()
                        .filter(|e| e.key.starts_with(&self.prefix))
                        .cloned(),
                ),
                Err(RecvError::Lagged(n)) => return Err(WatchError::Lagged(n)),
                Err(RecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }

    /// Drops every change that has already arrived, without copying it; for a watcher that only
    /// needs to know that something changed. Errs when the watch lagged or closed.
    pub fn skip_ready(&mut self) -> Result<usize, WatchError> {
        use tokio::sync::broadcast::error::TryRecvError;
        let mut skipped = self.pending.len();
        self.pending.clear();
        loop {
            match self.rx.try_recv() {
                Ok(_) => skipped += 1,
                Err(TryRecvError::Empty) => return Ok(skipped),
                Err(TryRecvError::Lagged(n)) => return Err(WatchError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }

    /// The next change under the prefix if one has already arrived, without waiting.
    ///
    /// Every backend publishes a transaction's events before its `commit` returns, so after a
    /// commit has returned (in this process) its events are available here.
    pub fn try_next(&mut self) -> Option<Result<Event, WatchError>> {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            match self.rx.try_recv() {
                Ok(batch) if batch.is_empty() => return Some(Err(WatchError::Lagged(0))),
                Ok(batch) => self.pending.extend(
                    batch
                        .iter()
                        .filter(|e| e.key.starts_with(&self.prefix))
                        .cloned(),
                ),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Lagged(n)) => return Some(Err(WatchError::Lagged(n))),
                Err(TryRecvError::Closed) => return Some(Err(WatchError::Closed)),
            }
        }
    }
}

/// The store interface every backend implements.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError>;

    /// Reads up to `limit` records whose key starts with `prefix`, in key order, strictly after
    /// `start_after` when given. `limit` 0 means no limit.
    async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// Applies `txn` atomically and durably if all its conditions hold.
    async fn commit(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// The revision of the last committed transaction.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Subscribes to changes under `prefix` committed after this call.
    fn watch(&self, prefix: &str) -> Watch;
}
