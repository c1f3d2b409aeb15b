//! The SQLite backend: one file in WAL mode, a single writer thread doing group commit, and a small
//! pool of read-only connections.
//!
//! Every [`Store::commit`] is sent to the writer thread, which drains whatever is queued (up to
//! [`SqliteOptions::max_batch`] transactions), applies them in arrival order inside ONE SQLite
//! transaction (each checking its conditions against the state left by the earlier ones, each
//! getting its own revision) and commits once, so the whole batch costs one fsync. Only then are
//! the events published and the callers answered: nothing is acknowledged before it is durable, and
//! the events of an acknowledged commit are already published when `commit` returns.
//!
//! Reads use pooled read-only connections; WAL lets them proceed beside the writer, and a read
//! started after a commit was acknowledged sees it. A point read (`get`) runs on the caller's
//! thread: it touches a few B-tree pages, cached after the first use, and a hop to another thread
//! costs more than the read. Scans run in place (`block_in_place`) on a multi-threaded runtime,
//! else on `spawn_blocking` threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{broadcast, oneshot};

use crate::{
    Condition, Event, Mutation, Page, Record, Revision, Store, StoreError, Txn, TxnOutcome, Watch,
};

/// How long a connection waits on a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB, as `PRAGMA cache_size` takes it (negative).
const WRITER_CACHE_KIB: i64 = -32 * 1024;

/// How many batches of events a watcher may fall behind before it lags.
const WATCH_CAPACITY: usize = 4096;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL,
        revision INTEGER NOT NULL,
        create_revision INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        revision INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO meta (id, revision) VALUES (0, 0);
";

const GET: &str = "SELECT value, revision, create_revision FROM kv WHERE key = ?1";
const GET_REVISION: &str = "SELECT revision FROM kv WHERE key = ?1";
const SCAN_FROM: &str =
    "SELECT key, value, revision, create_revision FROM kv WHERE key >= ?1 ORDER BY key";
const SCAN_AFTER: &str =
    "SELECT key, value, revision, create_revision FROM kv WHERE key > ?1 ORDER BY key";
const PUT: &str = "INSERT INTO kv (key, value, revision, create_revision) VALUES (?1, ?2, ?3, ?3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision";
const DELETE: &str = "DELETE FROM kv WHERE key = ?1";
const META_REVISION: &str = "SELECT revision FROM meta WHERE id = 0";
const SET_META_REVISION: &str = "UPDATE meta SET revision = ?1 WHERE id = 0";

/// Settings of a [`SqliteStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// `true`: every acknowledged commit survives power loss (`synchronous=FULL`). `false`:
    /// `synchronous=NORMAL`, which survives a crash of the process but not of the machine; for
    /// tests.
    pub durable: bool,
    /// The most transactions the writer applies in one SQLite transaction (one fsync).
    pub max_batch: usize,
    /// How many idle read-only connections are kept for reuse.
    pub readers: usize,
    /// Caps the database at this many pages (SQLite's `max_page_count`); a write beyond fails
    /// with [`StoreError::StorageFull`] as on a full disk. `None`: only the disk limits it.
    pub max_page_count: Option<u32>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durable: true,
            max_batch: 1024,
            readers: 4,
            max_page_count: None,
        }
    }
}

/// Counters of the writer thread, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SqliteStats {
    /// SQLite transactions committed by the writer (each one fsync when durable).
    pub batches: u64,
    /// Store transactions answered by those batches (committed or conflicting).
    pub txns: u64,
}

/// A durable store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Msg>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    shared: Arc<Shared>,
    readers: Arc<Readers>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("revision", &self.shared.revision.load(Ordering::Acquire))
            .field("closed", &self.closed.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

/// State the writer thread publishes to the store's handles.
#[derive(Debug, Default)]
struct Shared {
    /// The revision of the last durable commit.
    revision: AtomicU64,
    batches: AtomicU64,
    txns: AtomicU64,
}

/// A message to the writer thread.
enum Msg {
    Commit {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnOutcome, StoreError>>,
    },
    /// Finish what was queued before this message, then stop.
    Close,
}

/// Creates the database file with mode 0600 when missing, and brings it and its WAL and
/// shared-memory files down to 0600 when they allow more.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for file in [path.to_path_buf(), PathBuf::from(wal), PathBuf::from(shm)] {
        match std::fs::metadata(&file) {
            Ok(md) if md.mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn backend(context: &str, e: rusqlite::Error) -> StoreError {
    let detail = format!("{context}: {e}");
    if is_full(&e) {
        StoreError::StorageFull(detail)
    } else {
        StoreError::Backend(detail)
    }
}

/// Whether SQLite failed for want of space: `SQLITE_FULL` (the disk refused a write with
/// ENOSPC, or the database reached `max_page_count`).
fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and starts its writer thread.
    ///
    /// The database file is created with mode 0600 whatever the umask, and an existing one (with
    /// its WAL and shared-memory files) is tightened to 0600: SQLite gives the WAL and
    /// shared-memory files the database file's mode, so none of them is readable by other users.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let display = path.display();
        make_private(path).map_err(|e| StoreError::Backend(format!("open {display}: {e}")))?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| backend(&format!("open {display}"), e))?;
        let setup = |conn: &Connection| -> rusqlite::Result<(String, Revision)> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(
                None,
                "synchronous",
                if opts.durable { "FULL" } else { "NORMAL" },
            )?;
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            conn.pragma_update(None, "temp_store", "MEMORY")?;
            conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
            conn.execute_batch(SCHEMA)?;
            if let Some(pages) = opts.max_page_count {
                let _: u64 =
                    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                        r.get(0)
                    })?;
            }
            Ok((mode, conn.query_row(META_REVISION, [], |r| r.get(0))?))
        };
        let (mode, revision) =
            setup(&conn).map_err(|e| backend(&format!("set up {display}"), e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "set up {display}: journal_mode is {mode}, WAL is required"
            )));
        }

        let shared = Arc::new(Shared {
            revision: AtomicU64::new(revision),
            ..Default::default()
        });
        let events = broadcast::channel(WATCH_CAPACITY).0;
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            rx,
            revision,
            max_batch: opts.max_batch.max(1),
            shared: shared.clone(),
            events: events.clone(),
        };
        let writer_thread = std::thread::Builder::new()
            .name("gantry-store-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Backend(format!("start writer thread for {display}: {e}")))?;
        let readers = Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            max_idle: opts.readers,
        });
        tracing::debug!(path = %path.display(), revision, durable = opts.durable, "store opened");
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: tx,
            writer_thread: Mutex::new(Some(writer_thread)),
            closed: AtomicBool::new(false),
            shared,
            readers,
            events,
        })
    }

    /// Stops accepting work, lets the writer finish the transactions already queued, and waits for
    /// it to stop. Blocks for at most one batch. Later calls return [`StoreError::Closed`].
    /// Dropping the store does the same.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // The writer may already be gone (it stops on its own only if it panicked).
        let _ = self.writer.send(Msg::Close);
        if let Some(handle) = self.writer_thread.lock().take()
            && handle.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "store writer thread panicked");
        }
        self.readers.idle.lock().clear();
    }

    /// Counters of the writer thread since the store was opened.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            txns: self.shared.txns.load(Ordering::Relaxed),
        }
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.check_open()?;
        let readers = self.readers.clone();
        // Short reads run in place on a multi-threaded runtime (a hop to the blocking pool costs
        // more than the read itself); elsewhere they go to the blocking pool.
        if tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        {
            return tokio::task::block_in_place(move || readers.with(f));
        }
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.check_open()?;
        // On the caller's thread (see the module's documentation): under DescribeTasks load,
        // handing each point read to another thread cost a quarter of the server's CPU in thread
        // switches and wake-ups.
        self.readers.with(|conn| {
            conn.prepare_cached(GET)?
                .query_row([key], |r| {
                    Ok(Record {
                        key: key.to_owned(),
                        value: r.get(0)?,
                        revision: r.get(1)?,
                        create_revision: r.get(2)?,
                    })
                })
                .optional()
        })
    }

    async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let prefix = prefix.to_owned();
        let (sql, lower) = match start_after {
            Some(k) if k >= prefix.as_str() => (SCAN_AFTER, k.to_owned()),
            _ => (SCAN_FROM, prefix.clone()),
        };
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query([&lower])?;
            let mut records = Vec::new();
            let mut more = false;
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                if !key.starts_with(&prefix) {
                    break;
                }
                if limit != 0 && records.len() == limit {
                    more = true;
                    break;
                }
                records.push(Record {
                    key,
                    value: row.get(1)?,
                    revision: row.get(2)?,
                    create_revision: row.get(3)?,
                });
            }
            let next = if more {
                records.last().map(|r: &Record| r.key.clone())
            } else {
                None
            };
            Ok(Page { records, next })
        })
        .await
    }

    async fn commit(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.check_open()?;
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Msg::Commit { txn, reply })
            .map_err(|_| StoreError::Closed)?;
        // The writer drops the reply sender unanswered only when it stops.
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.check_open()?;
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    fn watch(&self, prefix: &str) -> Watch {
        Watch::new(prefix, self.events.subscribe())
    }
}

/// Idle read-only connections, opened on demand.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Readers {
    /// Runs `f` on a pooled connection, in one implicit read transaction.
    fn with<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let pooled = self.idle.lock().pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.open()?,
        };
        let out = f(&conn).map_err(|e| backend(&format!("read {}", self.path.display()), e))?;
        let mut idle = self.idle.lock();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        Ok(out)
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|conn| {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            Ok(conn)
        })
        .map_err(|e| backend(&format!("open reader on {}", self.path.display()), e))?;
        Ok(conn)
    }
}

/// The writer thread: owns the only read-write connection.
struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    /// The revision of the last durable commit.
    revision: Revision,
    max_batch: usize,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

/// A batch's work, before it is known to be durable.
struct Applied {
    outcomes: Vec<Result<TxnOutcome, StoreError>>,
    events: Vec<Event>,
    revision: Revision,
}

impl Writer {
    fn run(mut self) {
        let mut txns = Vec::with_capacity(self.max_batch);
        let mut replies = Vec::with_capacity(self.max_batch);
        let mut closing = false;
        while !closing {
            match self.rx.recv() {
                Ok(Msg::Commit { txn, reply }) => {
                    txns.push(txn);
                    replies.push(reply);
                }
                Ok(Msg::Close) | Err(mpsc::RecvError) => break,
            }
            while txns.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(Msg::Commit { txn, reply }) => {
                        txns.push(txn);
                        replies.push(reply);
                    }
                    Ok(Msg::Close) => {
                        closing = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(std::mem::take(&mut txns), &mut replies);
        }
        // Commits queued after Close are dropped with the receiver; their callers get `Closed`.
    }

    /// Applies `txns` in one SQLite transaction and answers `replies` (same order) once the
    /// outcome is durable.
    fn commit_batch(
        &mut self,
        txns: Vec<Txn>,
        replies: &mut Vec<oneshot::Sender<Result<TxnOutcome, StoreError>>>,
    ) {
        let count = txns.len();
        match self.apply(txns) {
            Ok(applied) => {
                self.revision = applied.revision;
                self.shared
                    .revision
                    .store(applied.revision, Ordering::Release);
                self.shared.batches.fetch_add(1, Ordering::Relaxed);
                self.shared.txns.fetch_add(count as u64, Ordering::Relaxed);
                if !applied.events.is_empty() {
                    // No subscribers is fine.
                    let _ = self.events.send(Arc::new(applied.events));
                }
                for (reply, outcome) in replies.drain(..).zip(applied.outcomes) {
                    // The caller may have given up waiting; the outcome stands.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                if is_full(&e) {
                    tracing::error!(error = %e, txns = count, "store batch not committed: storage is full; free space on the data dir's disk");
                } else {
                    tracing::error!(error = %e, txns = count, "store batch commit failed");
                }
                if !self.conn.is_autocommit()
                    && let Err(e) = self.conn.execute_batch("ROLLBACK")
                {
                    tracing::error!(error = %e, "store batch rollback failed");
                }
                // Should the failed COMMIT have reached the disk after all, keep revisions
                // increasing past it.
                match self
                    .conn
                    .query_row(META_REVISION, [], |r| r.get::<_, Revision>(0))
                {
                    Ok(durable) => {
                        self.revision = self.revision.max(durable);
                        self.shared.revision.store(self.revision, Ordering::Release);
                    }
                    Err(e) => tracing::error!(error = %e, "store revision reload failed"),
                }
                let full = is_full(&e);
                let detail = format!("commit batch of {count} transactions: {e}");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(if full {
                        StoreError::StorageFull(detail.clone())
                    } else {
                        StoreError::Backend(detail.clone())
                    }));
                }
            }
        }
    }

    /// Runs the batch up to and including COMMIT. An error means nothing of it is acknowledged.
    fn apply(&self, txns: Vec<Txn>) -> rusqlite::Result<Applied> {
        let conn = &self.conn;
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let mut applied = Applied {
            outcomes: Vec::with_capacity(txns.len()),
            events: Vec::new(),
            revision: self.revision,
        };
        for txn in txns {
            let outcome = self.apply_one(txn, &mut applied)?;
            applied.outcomes.push(outcome);
        }
        if applied.revision != self.revision {
            conn.prepare_cached(SET_META_REVISION)?
                .execute([applied.revision])?;
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(applied)
    }

    /// Checks and applies one transaction inside the batch. `Err` aborts the whole batch; a
    /// transaction that fails on its own is rolled back to its savepoint and answered `Backend`.
    fn apply_one(
        &self,
        txn: Txn,
        applied: &mut Applied,
    ) -> rusqlite::Result<Result<TxnOutcome, StoreError>> {
        let conn = &self.conn;
        for Condition::Revision { key, revision } in &txn.conditions {
            let current: Revision = conn
                .prepare_cached(GET_REVISION)?
                .query_row([key], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            if current != *revision {
                return Ok(Ok(TxnOutcome::Conflict { key: key.clone() }));
            }
        }
        let revision = applied.revision + 1;
        let mark = applied.events.len();
        conn.prepare_cached("SAVEPOINT txn")?.execute([])?;
        match write_mutations(conn, txn.mutations, revision, &mut applied.events) {
            Ok(()) => {
                conn.prepare_cached("RELEASE txn")?.execute([])?;
                applied.revision = revision;
                Ok(Ok(TxnOutcome::Committed { revision }))
            }
            Err(e) => {
                applied.events.truncate(mark);
                if conn.is_autocommit() {
                    // SQLite rolled back the whole batch on its own (I/O error, disk full).
                    return Err(e);
                }
                conn.execute_batch("ROLLBACK TO txn; RELEASE txn")?;
                tracing::warn!(error = %e, "store transaction failed and was rolled back");
                Ok(Err(backend("apply transaction", e)))
            }
        }
    }
}

fn write_mutations(
    conn: &Connection,
    mutations: Vec<Mutation>,
    revision: Revision,
    events: &mut Vec<Event>,
) -> rusqlite::Result<()> {
    for mutation in mutations {
        match mutation {
            Mutation::Put { key, value } => {
                conn.prepare_cached(PUT)?
                    .execute(rusqlite::params![key, value, revision])?;
                events.push(Event {
                    revision,
                    key,
                    value: Some(value),
                });
            }
            Mutation::Delete { key } => {
                if conn.prepare_cached(DELETE)?.execute([&key])? > 0 {
                    events.push(Event {
                        revision,
                        key,
                        value: None,
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[tokio::test]
    async fn database_wal_and_shm_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        store
            .commit(Txn::new().put("k", b"v".to_vec()))
            .await
            .unwrap();
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            assert_eq!(mode(&tmp.path().join(f)), 0o600, "{f}");
        }
        store.close();
        // Files an older version left readable are tightened on open.
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let p = tmp.path().join(f);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(store.get("k").await.unwrap().unwrap().value, b"v");
    }

    #[tokio::test]
    async fn a_full_store_refuses_writes_keeps_reads_and_recovers_when_space_is_freed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &tmp.path().join("state.db"),
            SqliteOptions {
                max_page_count: Some(64),
                ..Default::default()
            },
        )
        .unwrap();
        let value = vec![7u8; 3000];
        let mut written = 0;
        let full = loop {
            match store
                .commit(Txn::new().put(format!("k/{written:05}"), value.clone()))
                .await
            {
                Ok(outcome) => {
                    assert!(outcome.is_committed());
                    written += 1;
                    assert!(written < 1000, "the cap never filled");
                }
                Err(e) => break e,
            }
        };
        assert!(full.is_storage_full(), "{full:?}");
        assert!(written > 0);
        // Reads keep working, and what was acknowledged is all there.
        let page = store.scan("k/", None, 0).await.unwrap();
        assert_eq!(page.records.len(), written);
        // Freeing space (deleting records frees their pages) lets writes through again, on the
        // same store, without reopening it.
        let mut txn = Txn::new();
        for i in 0..written / 2 {
            txn = txn.delete(format!("k/{i:05}"));
        }
        assert!(store.commit(txn).await.unwrap().is_committed());
        assert!(
            store
                .commit(Txn::new().put("k/after", value.clone()))
                .await
                .unwrap()
                .is_committed()
        );
        assert!(store.get("k/after").await.unwrap().is_some());
    }
}
