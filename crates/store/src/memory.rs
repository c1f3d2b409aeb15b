//! An in-memory backend for fast tests. Not durable.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::{
    Condition, Event, Mutation, Page, Record, Revision, Store, StoreError, Txn, TxnOutcome, Watch,
};

#[derive(Debug, Default)]
struct State {
    revision: Revision,
    data: BTreeMap<String, Record>,
}

/// A store held in memory; loses everything when dropped.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            events: broadcast::channel(4096).0,
        }
    }

    /// How many commits some watch has not read yet (at most the feed's 4,096): the feed keeps
    /// their changes, values included, until every watch has read them, so a watch left unread
    /// keeps the store's recent writes in memory.
    pub fn unread_commits(&self) -> usize {
        self.events.len()
    }
}

/// Collects the keys under `prefix` strictly after `start_after`, at most `limit` (0: all).
pub(crate) fn page_of<'a>(iter: impl Iterator<Item = &'a Record>, limit: usize) -> Page {
    let mut records: Vec<Record> = Vec::new();
    let mut more = false;
    for rec in iter {
        if limit != 0 && records.len() == limit {
            more = true;
            break;
        }
        records.push(rec.clone());
    }
    let next = if more {
        records.last().map(|r| r.key.clone())
    } else {
        None
    };
    Page { records, next }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.state.lock().data.get(key).cloned())
    }

    async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let state = self.state.lock();
        let lower = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let iter = state
            .data
            .range::<String, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v);
        Ok(page_of(iter, limit))
    }

    async fn commit(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let mut state = self.state.lock();
        for cond in &txn.conditions {
            let Condition::Revision { key, revision } = cond;
            let current = state.data.get(key).map_or(0, |r| r.revision);
            if current != *revision {
                return Ok(TxnOutcome::Conflict { key: key.clone() });
            }
        }
        let revision = state.revision + 1;
        state.revision = revision;
        let mut events = Vec::with_capacity(txn.mutations.len());
        for m in txn.mutations {
            match m {
                Mutation::Put { key, value } => {
                    let create_revision =
                        state.data.get(&key).map_or(revision, |r| r.create_revision);
                    events.push(Event {
                        revision,
                        key: key.clone(),
                        value: Some(value.clone()),
                    });
                    state.data.insert(
                        key.clone(),
                        Record {
                            key,
                            value,
                            revision,
                            create_revision,
                        },
                    );
                }
                Mutation::Delete { key } => {
                    if state.data.remove(&key).is_some() {
                        events.push(Event {
                            revision,
                            key,
                            value: None,
                        });
                    }
                }
            }
        }
        if !events.is_empty() {
            // No subscribers is fine.
            let _ = self.events.send(Arc::new(events));
        }
        Ok(TxnOutcome::Committed { revision })
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.state.lock().revision)
    }

    fn watch(&self, prefix: &str) -> Watch {
        Watch::new(prefix, self.events.subscribe())
    }
}
