//! Decoded records kept by revision, so that hot paths scanning a whole cluster (placement reads
//! every instance and task of it) decode only what changed since the last scan. The store remains
//! the truth: every scan reads the current keys and revisions; only unchanged values are reused.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gantry_store::{Revision, Store, StoreError, decode};
use serde::de::DeserializeOwned;

/// Entries beyond which the cache starts over (deleted keys are never looked up again).
const MAX_ENTRIES: usize = 500_000;

type Entry = (Revision, Arc<dyn Any + Send + Sync>);

/// A cache of decoded records keyed by store key and revision.
#[derive(Debug, Default)]
pub(crate) struct RecordCache {
    map: Mutex<HashMap<String, Entry>>,
}

impl RecordCache {
    /// Every record under `prefix`, decoded, with its revision; unchanged ones come from the cache.
    pub(crate) async fn scan<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        store: &dyn Store,
        prefix: &str,
    ) -> Result<Vec<(Revision, Arc<T>)>, StoreError> {
        let mut out = Vec::new();
        let mut start_after: Option<String> = None;
        loop {
            let page = store.scan(prefix, start_after.as_deref(), 1000).await?;
            {
                let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() > MAX_ENTRIES {
                    map.clear();
                }
                for rec in &page.records {
                    if let Some((rev, v)) = map.get(&rec.key)
                        && *rev == rec.revision
                        && let Ok(t) = v.clone().downcast::<T>()
                    {
                        out.push((rec.revision, t));
                        continue;
                    }
                    let value: Arc<T> = Arc::new(decode::<T>(rec)?.value);
                    map.insert(rec.key.clone(), (rec.revision, value.clone()));
                    out.push((rec.revision, value));
                }
            }
            match page.next {
                Some(n) => start_after = Some(n),
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::{MemoryStore, Txn};

    #[tokio::test]
    async fn reuses_unchanged_values_and_sees_changes() {
        let store = MemoryStore::new();
        store
            .commit(
                Txn::new()
                    .put("p/a", b"1".to_vec())
                    .put("p/b", b"2".to_vec()),
            )
            .await
            .unwrap();
        let cache = RecordCache::default();
        let first: Vec<(Revision, Arc<u32>)> = cache.scan(&store, "p/").await.unwrap();
        assert_eq!(
            first.iter().map(|(_, v)| **v).collect::<Vec<_>>(),
            vec![1, 2]
        );
        store
            .commit(Txn::new().put("p/b", b"3".to_vec()).delete("p/a"))
            .await
            .unwrap();
        let second: Vec<(Revision, Arc<u32>)> = cache.scan(&store, "p/").await.unwrap();
        assert_eq!(second.iter().map(|(_, v)| **v).collect::<Vec<_>>(), vec![3]);
        let again: Vec<(Revision, Arc<u32>)> = cache.scan(&store, "p/").await.unwrap();
        assert!(
            Arc::ptr_eq(&second[0].1, &again[0].1),
            "unchanged record reused"
        );
    }
}
