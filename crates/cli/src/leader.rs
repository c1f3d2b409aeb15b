//! Controllers that must run once per installation (service runner and instance liveness,
//! retention, garbage collection, alarms, scheduled scaling) run on the elected leader only.
//!
//! With one server the election is immediate ([`gantry_store::SoloElection`]) and the controllers
//! start at once, as they always did. On etcd, every replica campaigns; the leader starts the
//! controllers under a fresh shutdown signal and stops them when its term ends (lease lost) or
//! the server stops, then campaigns again. Writes of the service runner and the stopped-task
//! collection go through a [`FencedStore`] carrying the term's token.

use std::sync::Arc;

use gantry_store::{Election, FencedStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

type Start = Box<dyn Fn(watch::Receiver<bool>) -> JoinHandle<()> + Send + Sync>;

/// The leader-only controllers of this server.
#[derive(Default)]
pub struct Controllers {
    starts: Vec<(&'static str, Start)>,
}

impl std::fmt::Debug for Controllers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.starts.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Controllers {
    /// Adds a controller: `start` spawns it with the signal that stops it.
    pub fn add(
        &mut self,
        name: &'static str,
        start: impl Fn(watch::Receiver<bool>) -> JoinHandle<()> + Send + Sync + 'static,
    ) {
        self.starts.push((name, Box::new(start)));
    }

    /// Runs the controllers whenever this replica leads, until `shutdown`.
    pub async fn run(
        self,
        election: Arc<dyn Election>,
        fenced: Arc<FencedStore>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let term = tokio::select! {
                term = election.acquire() => term,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let mut term = match term {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "leader election failed");
                    return;
                }
            };
            fenced.set_token(term.token);
            let (stop_tx, stop_rx) = watch::channel(false);
            let handles: Vec<(&'static str, JoinHandle<()>)> = self
                .starts
                .iter()
                .map(|(name, start)| (*name, start(stop_rx.clone())))
                .collect();
            tracing::info!(token = term.token, controllers = ?self, "controllers started on this replica");
            let stopping = tokio::select! {
                _ = term.lost.wait_for(|l| *l) => false,
                _ = shutdown.wait_for(|s| *s) => true,
            };
            let _ = stop_tx.send(true);
            for (name, handle) in handles {
                if tokio::time::timeout(std::time::Duration::from_secs(10), handle)
                    .await
                    .is_err()
                {
                    tracing::warn!(controller = name, "controller did not stop in time");
                }
            }
            // Dropping the term releases the leadership (the lease is revoked).
            drop(term);
            if stopping {
                return;
            }
            tracing::warn!("leadership lost; controllers stopped, campaigning again");
        }
    }
}
