//! One conformance suite, run against every store backend.
//!
//! Each check is a generic async fn over a `Arc<dyn Store>`; the `conformance!` macro instantiates
//! it once per backend (the etcd backend against a real one-member etcd per test). SQLite-only behaviour (reopen, group commit) and the model-based property
//! test comparing both backends follow.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use futures::FutureExt;
use gantry_store::{
    EtcdOptions, EtcdStore, Event, MemoryStore, Record, SqliteOptions, SqliteStore, Store, Txn,
    TxnOutcome, Watch,
};
use proptest::prelude::*;

mod support;

fn memory() -> (Option<tempfile::TempDir>, Arc<dyn Store>) {
    (None, Arc::new(MemoryStore::new()))
}

fn sqlite() -> (Option<tempfile::TempDir>, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("store.db"), fast()).expect("open sqlite store");
    (Some(dir), Arc::new(store))
}

/// A fresh one-member etcd and a store on it; `None` (with a loud skip) where etcd is missing.
async fn etcd() -> Result<Option<(support::EtcdCluster, Arc<dyn Store>)>> {
    if !support::etcd_available() {
        return Ok(None);
    }
    let cluster = tokio::task::spawn_blocking(|| support::EtcdCluster::start(1)).await??;
    let opts = EtcdOptions::from_url(&format!("etcd://{}/conformance", cluster.endpoints()))
        .map_err(|e| anyhow!(e))?;
    let store = EtcdStore::connect(opts).await?;
    Ok(Some((cluster, Arc::new(store))))
}

fn fast() -> SqliteOptions {
    SqliteOptions {
        durable: false,
        ..SqliteOptions::default()
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let (_dir, store) = super::memory();
                    super::$name(store).await
                }
            )*
        }
        mod sqlite_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let (_dir, store) = super::sqlite();
                    super::$name(store).await
                }
            )*
        }
        mod etcd_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let Some((_etcd, store)) = super::etcd().await? else {
                        return Ok(());
                    };
                    super::$name(store).await
                }
            )*
        }
    };
}

conformance!(
    get_returns_none_for_missing_key_and_record_for_present_one,
    put_overwrite_keeps_create_revision_and_bumps_revision,
    require_absent_fails_on_existing_key,
    stale_revision_conflicts_and_current_revision_commits,
    failed_condition_writes_nothing_in_multi_key_txn,
    delete_removes_key_and_missing_delete_is_no_error,
    scan_returns_prefix_in_key_order,
    scan_pages_through_prefix_with_limit_and_start_after,
    every_commit_gets_next_revision_even_without_mutations,
    watch_delivers_prefix_events_in_revision_order,
    events_of_a_returned_commit_are_ready_without_waiting,
    concurrent_increments_lose_no_update,
    concurrent_creates_of_one_key_commit_exactly_once,
);

fn committed(outcome: TxnOutcome) -> Result<u64> {
    match outcome {
        TxnOutcome::Committed { revision } => Ok(revision),
        TxnOutcome::Conflict { key } => Err(anyhow!("unexpected conflict on {key}")),
    }
}

async fn put(store: &dyn Store, key: &str, value: &str) -> Result<u64> {
    committed(
        store
            .commit(Txn::new().put(key, value.as_bytes().to_vec()))
            .await?,
    )
}

async fn keys(store: &dyn Store, prefix: &str) -> Result<Vec<String>> {
    let page = store.scan(prefix, None, 0).await?;
    ensure!(page.next.is_none(), "unlimited scan must not page");
    Ok(page.records.into_iter().map(|r| r.key).collect())
}

/// The next event of `watch`, failing after a few seconds.
async fn next_event(watch: &mut Watch) -> Result<Event> {
    Ok(tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .context("no event")??)
}

async fn get_returns_none_for_missing_key_and_record_for_present_one(
    store: Arc<dyn Store>,
) -> Result<()> {
    assert_eq!(store.get("cluster/default").await?, None);
    let rev = put(&*store, "cluster/default", "v1").await?;
    assert_eq!(
        store.get("cluster/default").await?,
        Some(Record {
            key: "cluster/default".into(),
            value: b"v1".to_vec(),
            revision: rev,
            create_revision: rev,
        })
    );
    assert_eq!(store.get("cluster/defaul").await?, None);
    assert_eq!(store.get("cluster/default/x").await?, None);
    Ok(())
}

async fn put_overwrite_keeps_create_revision_and_bumps_revision(
    store: Arc<dyn Store>,
) -> Result<()> {
    let first = put(&*store, "k", "one").await?;
    let second = put(&*store, "k", "two").await?;
    assert!(second > first);
    let rec = store.get("k").await?.context("k missing")?;
    assert_eq!(rec.value, b"two");
    assert_eq!(rec.revision, second);
    assert_eq!(rec.create_revision, first);
    Ok(())
}

async fn require_absent_fails_on_existing_key(store: Arc<dyn Store>) -> Result<()> {
    let created = store
        .commit(Txn::new().require_absent("k").put("k", b"1".to_vec()))
        .await?;
    let rev = committed(created)?;
    let again = store
        .commit(Txn::new().require_absent("k").put("k", b"2".to_vec()))
        .await?;
    assert_eq!(again, TxnOutcome::Conflict { key: "k".into() });
    let rec = store.get("k").await?.context("k missing")?;
    assert_eq!((rec.value.as_slice(), rec.revision), (&b"1"[..], rev));
    Ok(())
}

async fn stale_revision_conflicts_and_current_revision_commits(
    store: Arc<dyn Store>,
) -> Result<()> {
    let r1 = put(&*store, "k", "1").await?;
    let r2 = committed(
        store
            .commit(Txn::new().require_revision("k", r1).put("k", b"2".to_vec()))
            .await?,
    )?;
    let stale = store
        .commit(Txn::new().require_revision("k", r1).put("k", b"3".to_vec()))
        .await?;
    assert_eq!(stale, TxnOutcome::Conflict { key: "k".into() });
    // A revision condition on a missing key only holds for 0.
    let missing = store
        .commit(Txn::new().require_revision("nope", r2).put("nope", vec![]))
        .await?;
    assert_eq!(missing, TxnOutcome::Conflict { key: "nope".into() });
    let rec = store.get("k").await?.context("k missing")?;
    assert_eq!((rec.value.as_slice(), rec.revision), (&b"2"[..], r2));
    assert_eq!(store.get("nope").await?, None);
    Ok(())
}

async fn failed_condition_writes_nothing_in_multi_key_txn(store: Arc<dyn Store>) -> Result<()> {
    let ra = put(&*store, "a", "a0").await?;
    put(&*store, "b", "b0").await?;
    let before = store.revision().await?;
    let txn = Txn::new()
        .require_revision("a", ra)
        .require_absent("b")
        .put("a", b"a1".to_vec())
        .put("c", b"c1".to_vec())
        .delete("b");
    assert_eq!(
        store.commit(txn).await?,
        TxnOutcome::Conflict { key: "b".into() }
    );
    assert_eq!(
        store.revision().await?,
        before,
        "a conflict consumes no revision"
    );
    assert_eq!(store.get("a").await?.context("a")?.value, b"a0");
    assert!(store.get("b").await?.is_some());
    assert_eq!(store.get("c").await?, None);

    // The same transaction with holding conditions applies every mutation at one revision.
    let b = store.get("b").await?.context("b")?;
    let txn = Txn::new()
        .require_revision("a", ra)
        .require_revision("b", b.revision)
        .put("a", b"a1".to_vec())
        .put("c", b"c1".to_vec())
        .delete("b");
    let rev = committed(store.commit(txn).await?)?;
    assert_eq!(store.get("a").await?.context("a")?.revision, rev);
    assert_eq!(store.get("c").await?.context("c")?.revision, rev);
    assert_eq!(store.get("b").await?, None);
    Ok(())
}

async fn delete_removes_key_and_missing_delete_is_no_error(store: Arc<dyn Store>) -> Result<()> {
    put(&*store, "k", "v").await?;
    let mut watch = store.watch("");
    let deleted = committed(store.commit(Txn::new().delete("k")).await?)?;
    assert_eq!(store.get("k").await?, None);
    let again = committed(store.commit(Txn::new().delete("k")).await?)?;
    assert_eq!(again, deleted + 1);
    // Only the real delete produced an event.
    put(&*store, "marker", "m").await?;
    assert_eq!(
        next_event(&mut watch).await?,
        Event {
            revision: deleted,
            key: "k".into(),
            value: None
        }
    );
    assert_eq!(next_event(&mut watch).await?.key, "marker");
    // A re-created key starts a new life.
    let recreated = put(&*store, "k", "v2").await?;
    assert_eq!(
        store.get("k").await?.context("k")?.create_revision,
        recreated
    );
    Ok(())
}

async fn scan_returns_prefix_in_key_order(store: Arc<dyn Store>) -> Result<()> {
    for key in [
        "task/b/2",
        "task/a/1",
        "taskdef/x",
        "task/b/10",
        "tas",
        "task/",
        "u",
    ] {
        put(&*store, key, key).await?;
    }
    assert_eq!(
        keys(&*store, "task/").await?,
        ["task/", "task/a/1", "task/b/10", "task/b/2"]
    );
    assert_eq!(keys(&*store, "task").await?.len(), 5);
    assert_eq!(keys(&*store, "").await?.len(), 7);
    assert!(keys(&*store, "zzz").await?.is_empty());
    let page = store.scan("task/", None, 0).await?;
    assert!(page.records.iter().all(|r| r.value == r.key.as_bytes()));
    Ok(())
}

async fn scan_pages_through_prefix_with_limit_and_start_after(store: Arc<dyn Store>) -> Result<()> {
    for key in ["a/1", "a/2", "ab/1", "a", "a/3", "b/1"] {
        put(&*store, key, "v").await?;
    }
    // Limit 1, then 2: every page but the last names where to continue.
    for limit in [1, 2] {
        let mut seen = Vec::new();
        let mut start_after: Option<String> = None;
        for _ in 0..10 {
            let page = store.scan("a/", start_after.as_deref(), limit).await?;
            assert!(page.records.len() <= limit);
            seen.extend(page.records.iter().map(|r| r.key.clone()));
            match page.next {
                Some(next) => {
                    assert_eq!(Some(&next), page.records.last().map(|r| &r.key));
                    start_after = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(seen, ["a/1", "a/2", "a/3"], "limit {limit}");
    }
    // A page that exactly exhausts the prefix says so.
    assert_eq!(store.scan("a/", None, 3).await?.next, None);
    let page = store.scan("a/", Some("a/1"), 0).await?;
    assert_eq!(
        page.records
            .iter()
            .map(|r| r.key.as_str())
            .collect::<Vec<_>>(),
        ["a/2", "a/3"]
    );
    // A start_after before the prefix starts at the prefix; one past it yields nothing.
    assert_eq!(store.scan("a/", Some("0"), 0).await?.records.len(), 3);
    assert_eq!(store.scan("a/", Some("a/3"), 0).await?, Default::default());
    assert_eq!(store.scan("a/", Some("b"), 0).await?, Default::default());
    Ok(())
}

async fn every_commit_gets_next_revision_even_without_mutations(
    store: Arc<dyn Store>,
) -> Result<()> {
    let start = store.revision().await?;
    let mut last = start;
    for i in 0..5 {
        let rev = if i % 2 == 0 {
            committed(store.commit(Txn::new()).await?)?
        } else {
            put(&*store, "k", "v").await?
        };
        assert_eq!(rev, last + 1);
        assert_eq!(store.revision().await?, rev);
        last = rev;
    }
    assert_eq!(last, start + 5);
    Ok(())
}

/// `try_next` sees every event of a commit that has returned, in order, without waiting.
async fn events_of_a_returned_commit_are_ready_without_waiting(
    store: Arc<dyn Store>,
) -> Result<()> {
    let mut watch = store.watch("p/");
    ensure!(watch.try_next().is_none(), "nothing committed yet");
    let r1 = put(&*store, "p/a", "1").await?;
    put(&*store, "q/x", "filtered").await?;
    let r2 = committed(store.commit(Txn::new().delete("p/a")).await?)?;
    let got: Vec<Event> = std::iter::from_fn(|| watch.try_next())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{e}"))?;
    let want = vec![
        Event {
            revision: r1,
            key: "p/a".into(),
            value: Some(b"1".to_vec()),
        },
        Event {
            revision: r2,
            key: "p/a".into(),
            value: None,
        },
    ];
    ensure!(got == want, "got {got:?}");
    Ok(())
}

async fn watch_delivers_prefix_events_in_revision_order(store: Arc<dyn Store>) -> Result<()> {
    put(&*store, "svc/before", "ignored: committed before the watch").await?;
    let mut watch = store.watch("svc/");
    let r1 = put(&*store, "svc/a", "1").await?;
    put(&*store, "other/x", "filtered").await?;
    let r2 = committed(
        store
            .commit(
                Txn::new()
                    .put("svc/b", b"2".to_vec())
                    .delete("svc/a")
                    .put("zz", vec![]),
            )
            .await?,
    )?;
    let r3 = committed(store.commit(Txn::new().delete("svc/before")).await?)?;
    let want = [
        Event {
            revision: r1,
            key: "svc/a".into(),
            value: Some(b"1".to_vec()),
        },
        Event {
            revision: r2,
            key: "svc/b".into(),
            value: Some(b"2".to_vec()),
        },
        Event {
            revision: r2,
            key: "svc/a".into(),
            value: None,
        },
        Event {
            revision: r3,
            key: "svc/before".into(),
            value: None,
        },
    ];
    for want in want {
        assert_eq!(next_event(&mut watch).await?, want);
    }
    // Events of an acknowledged commit are already published: nothing else is pending.
    assert!(watch.next().now_or_never().is_none());
    Ok(())
}

async fn concurrent_increments_lose_no_update(store: Arc<dyn Store>) -> Result<()> {
    const TASKS: u64 = 64;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let current = store.get("counter").await?;
                let (n, rev) = match current {
                    Some(rec) => (String::from_utf8(rec.value)?.parse::<u64>()?, rec.revision),
                    None => (0, 0),
                };
                let txn = Txn::new()
                    .require_revision("counter", rev)
                    .put("counter", (n + 1).to_string().into_bytes());
                match store.commit(txn).await? {
                    TxnOutcome::Committed { .. } => return anyhow::Ok(()),
                    TxnOutcome::Conflict { .. } => tokio::task::yield_now().await,
                }
            }
        }));
    }
    for handle in handles {
        handle.await??;
    }
    let rec = store.get("counter").await?.context("counter missing")?;
    assert_eq!(String::from_utf8(rec.value)?, TASKS.to_string());
    Ok(())
}

async fn concurrent_creates_of_one_key_commit_exactly_once(store: Arc<dyn Store>) -> Result<()> {
    // Submitted together, these land in one group-commit batch on backends that batch: each
    // condition must see the writes of the transactions before it.
    let commits = (0..100u8).map(|i| {
        let store = store.clone();
        async move {
            store
                .commit(Txn::new().require_absent("lock").put("lock", vec![i]))
                .await
        }
    });
    let outcomes = futures::future::join_all(commits).await;
    let mut winners = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome? {
            TxnOutcome::Committed { revision } => winners.push((i, revision)),
            TxnOutcome::Conflict { key } => assert_eq!(key, "lock"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let rec = store.get("lock").await?.context("lock missing")?;
    assert_eq!(rec.value, [winners[0].0 as u8]);
    assert_eq!(rec.revision, winners[0].1);
    Ok(())
}

// SQLite only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reopen_keeps_data_and_revision() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())?;
    let r1 = put(&store, "a", "1").await?;
    let r2 = put(&store, "a", "2").await?;
    put(&store, "b", "1").await?;
    committed(store.commit(Txn::new().delete("b")).await?)?;
    let last = committed(store.commit(Txn::new()).await?)?;
    drop(store);

    let store = SqliteStore::open(&path, SqliteOptions::default())?;
    assert_eq!(store.revision().await?, last);
    let a = store.get("a").await?.context("a missing after reopen")?;
    assert_eq!(
        (a.value.as_slice(), a.revision, a.create_revision),
        (&b"2"[..], r2, r1)
    );
    assert_eq!(store.get("b").await?, None);
    assert_eq!(
        put(&store, "c", "1").await?,
        last + 1,
        "revisions continue after reopen"
    );
    store.close();
    assert!(matches!(
        store.commit(Txn::new()).await,
        Err(gantry_store::StoreError::Closed)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_groups_concurrent_commits_into_batches() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("store.db"), fast())?;
    let commits = (0..200).map(|i| store.commit(Txn::new().put(format!("k/{i:03}"), vec![])));
    let revisions: Vec<u64> = futures::future::join_all(commits)
        .await
        .into_iter()
        .map(|o| committed(o?))
        .collect::<Result<_>>()?;
    // Answered in submission order with consecutive revisions.
    assert_eq!(revisions, (1..=200).collect::<Vec<u64>>());
    let stats = store.stats();
    assert_eq!(stats.txns, 200);
    assert!(stats.batches < 200, "no batching happened: {stats:?}");
    Ok(())
}

// Model-based: both backends answer the same random history identically.

#[derive(Clone, Debug)]
enum Cond {
    Absent,
    /// The key's revision as read before the wave.
    Current,
    Exact(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Delete(usize),
}

#[derive(Clone, Debug)]
struct TxnSpec {
    conditions: Vec<(usize, Cond)>,
    ops: Vec<Op>,
}

const KEYS: [&str; 6] = ["a", "a/1", "a/2", "ab/1", "b/x", "b/y/z"];

fn txn_spec() -> impl Strategy<Value = TxnSpec> {
    let cond = prop_oneof![
        Just(Cond::Absent),
        Just(Cond::Current),
        (1u64..40).prop_map(Cond::Exact)
    ];
    let op = prop_oneof![
        3 => (0..KEYS.len(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0..KEYS.len()).prop_map(Op::Delete),
    ];
    (
        proptest::collection::vec((0..KEYS.len(), cond), 0..3),
        proptest::collection::vec(op, 0..4),
    )
        .prop_map(|(conditions, ops)| TxnSpec { conditions, ops })
}

async fn build(spec: &TxnSpec, reference: &dyn Store) -> Result<Txn> {
    let mut txn = Txn::new();
    for (k, cond) in &spec.conditions {
        let key = KEYS[*k];
        txn = match cond {
            Cond::Absent => txn.require_absent(key),
            Cond::Current => {
                let rev = reference.get(key).await?.map_or(0, |r| r.revision);
                txn.require_revision(key, rev)
            }
            Cond::Exact(rev) => txn.require_revision(key, *rev),
        };
    }
    for op in &spec.ops {
        txn = match op {
            Op::Put(k, v) => txn.put(KEYS[*k], vec![*v]),
            Op::Delete(k) => txn.delete(KEYS[*k]),
        };
    }
    Ok(txn)
}

fn drain(watch: &mut Watch) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    while let Some(event) = watch.next().now_or_never() {
        events.push(event?);
    }
    Ok(events)
}

/// Applies `waves` to both stores, each wave's transactions submitted together (so SQLite batches
/// them), and compares every outcome, the watch streams and the final state.
async fn same_history(waves: Vec<Vec<TxnSpec>>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sqlite = SqliteStore::open(&dir.path().join("store.db"), fast())?;
    let memory = MemoryStore::new();
    let (mut watch_m, mut watch_s) = (memory.watch("a"), sqlite.watch("a"));
    for wave in waves {
        let mut txns = Vec::new();
        for spec in &wave {
            txns.push(build(spec, &memory).await?);
        }
        let from_memory = futures::future::join_all(txns.iter().map(|t| memory.commit(t.clone())));
        let from_sqlite = futures::future::join_all(txns.iter().map(|t| sqlite.commit(t.clone())));
        let (from_memory, from_sqlite) = futures::join!(from_memory, from_sqlite);
        for ((m, s), txn) in from_memory.into_iter().zip(from_sqlite).zip(&txns) {
            ensure!(m? == s?, "outcomes differ for {txn:?}");
        }
    }
    ensure!(
        memory.revision().await? == sqlite.revision().await?,
        "revisions differ"
    );
    ensure!(
        memory.scan("", None, 0).await? == sqlite.scan("", None, 0).await?,
        "states differ"
    );
    for (prefix, limit) in [("a", 1), ("a/", 2), ("b/", 1)] {
        ensure!(
            memory.scan(prefix, None, limit).await? == sqlite.scan(prefix, None, limit).await?,
            "scan {prefix} limit {limit} differs"
        );
    }
    ensure!(
        drain(&mut watch_m)? == drain(&mut watch_s)?,
        "watch streams differ"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_matches_memory_on_random_histories(
        waves in proptest::collection::vec(proptest::collection::vec(txn_spec(), 1..8), 1..12)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        if let Err(e) = runtime.block_on(same_history(waves)) {
            return Err(TestCaseError::fail(format!("{e:#}")));
        }
    }
}
