//! etcd-only behaviour of `EtcdStore`, against real etcd members: several stores (replicas) on one
//! etcd see each other's writes through their change feeds, etcd's request limits give a clear
//! error, and an unreachable etcd gives `Unavailable` then full service once it is back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use gantry_store::{EtcdOptions, EtcdStore, Store, StoreError, Txn, TxnOutcome};

mod support;

fn options(cluster: &support::EtcdCluster, prefix: &str) -> Result<EtcdOptions> {
    let mut opts = EtcdOptions::from_url(&format!("etcd://{}/{prefix}", cluster.endpoints()))
        .map_err(|e| anyhow!(e))?;
    opts.request_timeout = Duration::from_secs(2);
    Ok(opts)
}

async fn start(n: usize) -> Result<Option<support::EtcdCluster>> {
    if !support::etcd_available() {
        return Ok(None);
    }
    Ok(Some(
        tokio::task::spawn_blocking(move || support::EtcdCluster::start(n)).await??,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_see_each_others_writes_through_their_feeds() -> Result<()> {
    let Some(cluster) = start(1).await? else {
        return Ok(());
    };
    let a = EtcdStore::connect(options(&cluster, "shared")?).await?;
    let b = EtcdStore::connect(options(&cluster, "shared")?).await?;
    let other = EtcdStore::connect(options(&cluster, "elsewhere")?).await?;
    let mut watch_b = b.watch("ecs/");
    let rev = match a
        .commit(Txn::new().put("ecs/task/1", b"x".to_vec()))
        .await?
    {
        TxnOutcome::Committed { revision } => revision,
        c => anyhow::bail!("{c:?}"),
    };
    other
        .commit(Txn::new().put("ecs/task/2", b"hidden".to_vec()))
        .await?;
    let event = tokio::time::timeout(Duration::from_secs(5), watch_b.next())
        .await
        .context("no event on the other replica")??;
    ensure!(
        event.key == "ecs/task/1" && event.revision == rev,
        "{event:?}"
    );
    let rec = b.get("ecs/task/1").await?.context("missing on b")?;
    ensure!(rec.revision == rev);
    // A compare-and-swap by b on what a wrote works, and a stale one from a conflicts.
    let out = b
        .commit(
            Txn::new()
                .require_revision("ecs/task/1", rev)
                .put("ecs/task/1", b"y".to_vec()),
        )
        .await?;
    ensure!(out.is_committed(), "{out:?}");
    let stale = a
        .commit(
            Txn::new()
                .require_revision("ecs/task/1", rev)
                .put("ecs/task/1", b"z".to_vec()),
        )
        .await?;
    ensure!(
        stale
            == TxnOutcome::Conflict {
                key: "ecs/task/1".into()
            }
    );
    // Prefixes isolate installations sharing one etcd.
    ensure!(a.scan("", None, 0).await?.records.len() == 1);
    ensure!(other.get("ecs/task/1").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_beyond_etcd_limits_are_refused_whole_with_a_clear_error() -> Result<()> {
    let Some(cluster) = start(1).await? else {
        return Ok(());
    };
    let store = EtcdStore::connect(options(&cluster, "limits")?).await?;
    let before = store.revision().await?;
    let big = Txn::new()
        .put("small", b"1".to_vec())
        .put("big", vec![b'x'; 2 * 1024 * 1024]);
    match store.commit(big).await {
        Err(StoreError::TooLarge(m)) => {
            ensure!(m.contains("big") && m.contains("request limit"), "{m}")
        }
        other => anyhow::bail!("want TooLarge, got {other:?}"),
    }
    let mut many = Txn::new();
    for i in 0..200 {
        many = many.put(format!("k/{i}"), vec![]);
    }
    match store.commit(many).await {
        Err(StoreError::TooLarge(m)) => ensure!(m.contains("operations"), "{m}"),
        other => anyhow::bail!("want TooLarge, got {other:?}"),
    }
    ensure!(store.get("small").await?.is_none(), "nothing half-applied");
    ensure!(store.revision().await? == before);
    // Up to the limits, writes pass (etcd's own limit is the final word).
    let ok = store
        .commit(Txn::new().put("big", vec![b'x'; 1024 * 1024]))
        .await?;
    ensure!(ok.is_committed(), "{ok:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_is_unavailable_and_service_resumes_when_it_is_back() -> Result<()> {
    // At start-up: nothing listens.
    let port = support::free_port()?;
    let mut opts =
        EtcdOptions::from_url(&format!("etcd://127.0.0.1:{port}")).map_err(|e| anyhow!(e))?;
    opts.request_timeout = Duration::from_secs(1);
    match EtcdStore::connect(opts).await {
        Err(e @ StoreError::Unavailable(_)) => {
            ensure!(e.to_string().contains(&port.to_string()), "{e}")
        }
        other => anyhow::bail!("want Unavailable, got {other:?}"),
    }

    let Some(mut cluster) = start(1).await? else {
        return Ok(());
    };
    let store = Arc::new(EtcdStore::connect(options(&cluster, "outage")?).await?);
    let mut watch = store.watch("");
    store
        .commit(Txn::new().put("before", b"1".to_vec()))
        .await?;
    ensure!(watch.next().await?.key == "before");

    cluster.members[0].kill();
    match store.commit(Txn::new().put("during", b"1".to_vec())).await {
        Err(e) => ensure!(e.is_unavailable(), "want Unavailable, got {e:?}"),
        Ok(o) => anyhow::bail!("commit succeeded with etcd down: {o:?}"),
    }
    match store.get("before").await {
        Err(e) => ensure!(e.is_unavailable(), "want Unavailable, got {e:?}"),
        Ok(r) => anyhow::bail!("read succeeded with etcd down: {r:?}"),
    }

    cluster.spawn(0)?;
    tokio::task::block_in_place(|| cluster.wait_healthy())?;
    // Full service once it is back (the client reconnects on its own), and the change feed
    // resumes where it stopped.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match store.commit(Txn::new().put("after", b"1".to_vec())).await {
            Ok(o) if o.is_committed() => break,
            Ok(o) => anyhow::bail!("{o:?}"),
            Err(e) if e.is_unavailable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
    let next = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .context("feed did not resume")??;
    ensure!(next.key == "after", "{next:?}");
    ensure!(
        store.get("during").await?.is_none(),
        "the failed write is absent"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_a_deposed_leaders_writes_are_fenced() -> Result<()> {
    use gantry_store::{Election, EtcdElection, FencedStore, LEADER_KEY};
    let Some(cluster) = start(1).await? else {
        return Ok(());
    };
    let a = Arc::new(EtcdStore::connect(options(&cluster, "election")?).await?);
    let b = Arc::new(EtcdStore::connect(options(&cluster, "election")?).await?);
    let ttl = Duration::from_secs(2);
    let (elect_a, elect_b) = (
        EtcdElection::new(a.clone(), "a", ttl),
        EtcdElection::new(b.clone(), "b", ttl),
    );
    let term_a = elect_a.acquire().await?;
    let fenced_a = FencedStore::new(a.clone());
    fenced_a.set_token(term_a.token);
    ensure!(
        fenced_a
            .commit(Txn::new().put("svc/x", b"a1".to_vec()))
            .await?
            .is_committed()
    );

    // b campaigns while a leads: it waits.
    let b_campaign = tokio::spawn(async move { elect_b.acquire().await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    ensure!(!b_campaign.is_finished(), "two leaders at once");
    ensure!(a.get(LEADER_KEY).await?.context("leader key")?.value == b"a");

    // a's term ends (its holder went away): b takes over within the lease's lifetime.
    drop(term_a);
    let term_b = tokio::time::timeout(Duration::from_secs(10), b_campaign)
        .await
        .context("b never became leader")???;
    ensure!(term_b.token > 0);
    let fenced_b = FencedStore::new(b.clone());
    fenced_b.set_token(term_b.token);
    ensure!(
        fenced_b
            .commit(Txn::new().put("svc/x", b"b1".to_vec()))
            .await?
            .is_committed()
    );
    // A write still in flight from a, under its old term, fails instead of applying.
    let late = fenced_a
        .commit(Txn::new().put("svc/x", b"a2".to_vec()))
        .await?;
    ensure!(
        late == TxnOutcome::Conflict {
            key: LEADER_KEY.into()
        },
        "{late:?}"
    );
    ensure!(b.get("svc/x").await?.context("svc/x")?.value == b"b1");
    Ok(())
}
