//! Leader election with fencing: controllers run on one replica at a time, and their writes carry
//! the leader's term as a transaction condition, so a deposed leader's in-flight writes fail.
//!
//! The leader holds the store key [`LEADER_KEY`], written with an etcd lease that it keeps alive;
//! the key's revision at election is the term's fencing token. A [`FencedStore`] adds "the leader
//! key is still at that revision" to every transaction it commits: once the lease expires (the
//! leader died or lost etcd) the key is deleted or rewritten by the next leader, and every later
//! commit through the old leader's `FencedStore` conflicts on [`LEADER_KEY`] instead of applying.
//!
//! With one server (SQLite, memory) [`SoloElection`] makes it the leader at once, with token 0:
//! the key never exists, so the same condition always holds.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, PutOptions, TxnOp};
use tokio::sync::watch;

use crate::{EtcdStore, Page, Record, Revision, Store, StoreError, Txn, TxnOutcome, Watch};

/// The store key the controllers' leader holds.
pub const LEADER_KEY: &str = "leader/controllers";

/// One term of leadership.
#[derive(Debug)]
pub struct Term {
    /// The leader key's revision when this replica became leader.
    pub token: Revision,
    /// Turns `true` when leadership is lost (the lease could not be renewed in time).
    pub lost: watch::Receiver<bool>,
}

/// Campaigns for the controllers' leadership.
#[async_trait]
pub trait Election: Send + Sync + Debug + 'static {
    /// Waits until this replica is the leader.
    async fn acquire(&self) -> Result<Term, StoreError>;
}

/// The only server is always the leader.
#[derive(Debug, Default)]
pub struct SoloElection {
    _never: std::sync::OnceLock<watch::Sender<bool>>,
}

#[async_trait]
impl Election for SoloElection {
    async fn acquire(&self) -> Result<Term, StoreError> {
        let tx = self._never.get_or_init(|| watch::channel(false).0);
        Ok(Term {
            token: 0,
            lost: tx.subscribe(),
        })
    }
}

/// Leadership through a lease-held key in etcd.
#[derive(Debug)]
pub struct EtcdElection {
    store: Arc<EtcdStore>,
    /// Identifies this replica in the leader key's value (for operators).
    replica: String,
    /// The lease's time to live: how long the leader key outlives a dead leader.
    ttl: Duration,
}

impl EtcdElection {
    pub fn new(store: Arc<EtcdStore>, replica: impl Into<String>, ttl: Duration) -> Self {
        Self {
            store,
            replica: replica.into(),
            ttl,
        }
    }

    async fn try_acquire(&self) -> Result<Option<Term>, StoreError> {
        let mut client = self.store.client();
        let ttl = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(5);
        let lease = client
            .lease_grant(ttl, None)
            .await
            .map_err(|e| crate::etcd::map_error("grant leader lease", e))?
            .id();
        let key = self.store.full_key(LEADER_KEY);
        let txn = etcd_client::Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![
                TxnOp::put(
                    key.clone(),
                    self.replica.clone().into_bytes(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::put(self.store.rev_key().to_owned(), Vec::new(), None),
            ]);
        let resp = client
            .txn(txn)
            .await
            .map_err(|e| crate::etcd::map_error("campaign", e))?;
        if !resp.succeeded() {
            let _ = client.lease_revoke(lease).await;
            return Ok(None);
        }
        let token = resp
            .header()
            .map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0));
        let (lost_tx, lost) = watch::channel(false);
        tokio::spawn(keep_alive(client, lease, self.ttl, lost_tx));
        tracing::info!(replica = %self.replica, token, "this replica now leads the controllers");
        Ok(Some(Term { token, lost }))
    }
}

/// Renews the lease every third of its TTL; declares the term lost when no renewal succeeded
/// for two thirds of it (before etcd can expire the key), and revokes the lease then.
async fn keep_alive(
    mut client: etcd_client::Client,
    lease: i64,
    ttl: Duration,
    lost: watch::Sender<bool>,
) {
    let every = ttl / 3;
    let mut last_ok = tokio::time::Instant::now();
    let mut keeper = None;
    loop {
        if lost.is_closed() {
            // Nobody runs under this term any more: step down.
            let _ = client.lease_revoke(lease).await;
            return;
        }
        if keeper.is_none() {
            keeper = tokio::time::timeout(every, client.lease_keep_alive(lease))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let renewed = match keeper.as_mut() {
            Some((k, stream)) => {
                let round = async {
                    k.keep_alive().await?;
                    stream.message().await
                };
                match tokio::time::timeout(every, round).await {
                    Ok(Ok(Some(resp))) if resp.ttl() > 0 => true,
                    Ok(Ok(Some(_))) => {
                        // The lease is gone: the key with it.
                        tracing::warn!(lease, "leader lease expired");
                        let _ = lost.send(true);
                        return;
                    }
                    _ => {
                        keeper = None;
                        false
                    }
                }
            }
            None => false,
        };
        if renewed {
            last_ok = tokio::time::Instant::now();
        } else if last_ok.elapsed() >= ttl * 2 / 3 {
            tracing::warn!(lease, "leader lease not renewed in time; stepping down");
            let _ = lost.send(true);
            let _ = tokio::time::timeout(every, client.lease_revoke(lease)).await;
            return;
        }
        tokio::time::sleep(every).await;
    }
}

#[async_trait]
impl Election for EtcdElection {
    async fn acquire(&self) -> Result<Term, StoreError> {
        loop {
            match self.try_acquire().await {
                Ok(Some(term)) => return Ok(term),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "campaign for leadership failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Writes the leader key for a new term held by `holder`, as an election does, and returns the
/// term's fencing token. For stores without elections (tests of fenced writers on
/// [`crate::MemoryStore`] or SQLite): claiming again deposes the previous holder.
pub async fn claim_leadership(store: &dyn Store, holder: &str) -> Result<Revision, StoreError> {
    store
        .commit(Txn::new().put(LEADER_KEY, holder.as_bytes().to_vec()))
        .await?;
    Ok(store.get(LEADER_KEY).await?.map_or(0, |r| r.revision))
}

/// A store whose every commit also requires that the leader key is still at the current term's
/// fencing token. Reads and watches pass through.
#[derive(Debug)]
pub struct FencedStore {
    inner: Arc<dyn Store>,
    token: AtomicU64,
}

impl FencedStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            token: AtomicU64::new(0),
        }
    }

    /// Starts fencing with a new term's token.
    pub fn set_token(&self, token: Revision) {
        self.token.store(token, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for FencedStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.inner.get(key).await
    }

    async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.inner.scan(prefix, start_after, limit).await
    }

    async fn commit(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let token = self.token.load(Ordering::SeqCst);
        let outcome = self
            .inner
            .commit(txn.require_revision(LEADER_KEY, token))
            .await?;
        if let TxnOutcome::Conflict { key } = &outcome
            && key == LEADER_KEY
        {
            tracing::warn!(
                token,
                "write refused: this replica no longer leads the controllers"
            );
        }
        Ok(outcome)
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }

    fn watch(&self, prefix: &str) -> Watch {
        self.inner.watch(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// The fenced writer writes this key.
        Write(u8),
        /// Another replica becomes leader (this one is deposed).
        Depose,
        /// This replica is elected again (a new term, a new token).
        Elect,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => any::<u8>().prop_map(Step::Write),
            1 => Just(Step::Depose),
            1 => Just(Step::Elect),
        ]
    }

    proptest! {
        /// Whatever the interleaving of terms, a fenced write applies exactly when its writer
        /// holds the current term, and a deposed leader's write changes nothing.
        #[test]
        fn a_deposed_leaders_writes_are_refused(steps in proptest::collection::vec(step(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
                let fenced = FencedStore::new(inner.clone());
                fenced.set_token(claim_leadership(inner.as_ref(), "me").await.unwrap());
                let mut leading = true;
                for (i, s) in steps.into_iter().enumerate() {
                    match s {
                        Step::Write(k) => {
                            let key = format!("data/{k}");
                            let before = inner.get(&key).await.unwrap();
                            let out = fenced
                                .commit(Txn::new().put(&key, i.to_string().into_bytes()))
                                .await
                                .unwrap();
                            let after = inner.get(&key).await.unwrap();
                            if leading {
                                prop_assert!(out.is_committed());
                                prop_assert_eq!(after.map(|r| r.value), Some(i.to_string().into_bytes()));
                            } else {
                                prop_assert_eq!(out, TxnOutcome::Conflict { key: LEADER_KEY.into() });
                                prop_assert_eq!(after.map(|r| r.value), before.map(|r| r.value));
                            }
                        }
                        Step::Depose => {
                            claim_leadership(inner.as_ref(), "other").await.unwrap();
                            leading = false;
                        }
                        Step::Elect => {
                            fenced.set_token(claim_leadership(inner.as_ref(), "me").await.unwrap());
                            leading = true;
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
}
