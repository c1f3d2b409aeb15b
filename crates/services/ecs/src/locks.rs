//! Per-key async locks, so that writers of one record (e.g. one task definition family) queue
//! instead of spinning on compare-and-swap conflicts. The store's compare-and-swap still guards
//! correctness across processes; these locks only avoid wasted work within one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A map of named async mutexes; entries are dropped when no one holds or waits for them.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds one key's lock until dropped.
#[derive(Debug)]
pub struct KeyGuard {
    _guard: OwnedMutexGuard<()>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            // Drop entries nobody references any more (only the map holds them).
            if map.len() > 1024 {
                map.retain(|_, v| Arc::strong_count(v) > 1);
            }
            map.entry(key.to_owned()).or_default().clone()
        };
        KeyGuard {
            _guard: m.lock_owned().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_is_exclusive_other_keys_are_not() {
        let locks = KeyedLocks::default();
        let a = locks.lock("a").await;
        let _b = locks.lock("b").await;
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock("a")).await;
        assert!(pending.is_err(), "second holder of 'a' must wait");
        drop(a);
        let _a2 = locks.lock("a").await;
    }
}
