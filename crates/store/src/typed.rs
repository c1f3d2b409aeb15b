//! Typed records: values are JSON documents of serde types.

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};

use crate::{Record, Revision, Store, StoreError};

/// A decoded value with the revision it was read at (for compare-and-swap).
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: Revision,
}

/// Encodes a value for storage.
pub fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Codec {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// Decodes a stored record.
pub fn decode<T: DeserializeOwned>(record: &Record) -> Result<Versioned<T>, StoreError> {
    let value = serde_json::from_slice(&record.value).map_err(|e| StoreError::Codec {
        key: record.key.clone(),
        detail: e.to_string(),
    })?;
    Ok(Versioned {
        value,
        revision: record.revision,
    })
}

/// Typed reads on any store.
#[async_trait]
pub trait StoreExt: Store {
    /// Reads and decodes one key.
    async fn get_typed<T: DeserializeOwned + Send>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        match self.get(key).await? {
            Some(rec) => decode(&rec).map(Some),
            None => Ok(None),
        }
    }

    /// Reads and decodes every record under `prefix`, in key order.
    async fn scan_all_typed<T: DeserializeOwned + Send>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        let mut out = Vec::new();
        let mut start_after: Option<String> = None;
        loop {
            let page = self.scan(prefix, start_after.as_deref(), 1000).await?;
            for rec in &page.records {
                out.push(decode(rec)?);
            }
            match page.next {
                Some(next) => start_after = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
