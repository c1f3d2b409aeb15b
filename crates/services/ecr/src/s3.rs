//! The S3-compatible [`BlobStore`]: blobs and upload sessions as objects in one bucket, shared by
//! every server replica.
//!
//! ```text
//! <prefix>/blobs/<alg>/<hex>                 finished blobs, immutable, named by their digest
//! <prefix>/touched/<alg>/<hex>               empty marker: last use of a blob (GC grace period)
//! <prefix>/uploads/<id>/meta.json            the session's repository, client and start time
//! <prefix>/uploads/<id>/<offset, 20 digits>  one object per append, holding the bytes it brought
//! ```
//!
//! An upload session lives entirely in the bucket, so any replica can continue it: its offset is
//! the sum of its part objects' sizes. Each append streams its body into one part object (S3
//! multipart upload beyond 8 MiB, so a large layer never sits in memory). On commit the parts are
//! read back in order and streamed into the blob's key with a multipart upload while being hashed;
//! the upload is completed, making the blob visible, only when the digest matches, and aborted
//! otherwise. When a session has a single part whose digest was computed as it arrived (the usual
//! monolithic `docker push`), the commit is a server-side copy instead.
//!
//! Objects are immutable in S3, so "touch" writes a marker object whose modification time the GC
//! reads beside the blob's own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;

use crate::blob::{BlobInfo, BlobStore, ByteStream, UploadMeta, UploadStatus};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::RegistryError;

/// Buffer of a streamed object write; beyond it the write becomes an S3 multipart upload with
/// parts of this size (S3 wants at least 5 MiB per part but the last).
const PART_SIZE: usize = 8 << 20;

/// Parallel part uploads of one object write.
const PART_CONCURRENCY: usize = 4;

/// Where and how to reach the bucket: `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without slashes at either end; empty for the bucket root.
    pub prefix: String,
    /// An S3-compatible endpoint (`http://host:port`); AWS S3 when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`.
    pub fn from_url(url: &str) -> Result<S3Config, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("blob store url {url:?} must start with s3://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "bucket {bucket:?} in {url:?} is not a valid bucket name (3 to 63 lowercase letters, digits, hyphens, dots)"
            ));
        }
        let mut cfg = S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            region: None,
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "endpoint" => cfg.endpoint = Some(v.into_owned()),
                "region" => cfg.region = Some(v.into_owned()),
                other => {
                    return Err(format!(
                        "unknown option {other:?} in {url:?} (known: endpoint, region)"
                    ));
                }
            }
        }
        Ok(cfg)
    }
}

/// Per-session state of this replica: a lock serializing its writers, and the digest of the
/// session's single part when it was hashed on arrival.
#[derive(Debug, Default)]
struct Session {
    single_part: Option<(u64, Digest)>,
}

/// Blobs and upload sessions in an S3-compatible bucket.
#[derive(Debug)]
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

fn s3_error(context: &str, e: object_store::Error) -> RegistryError {
    RegistryError::Io(std::io::Error::other(format!("{context}: {e}")))
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn valid_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl S3BlobStore {
    /// Connects with credentials from the standard chain (environment, web identity, instance
    /// metadata) and checks that the bucket answers.
    pub async fn open(cfg: &S3Config) -> Result<S3BlobStore, RegistryError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &cfg.region {
            builder = builder.with_region(region);
        }
        let store = builder
            .build()
            .map_err(|e| s3_error(&format!("configuring bucket {}", cfg.bucket), e))?;
        let this = Self::with_store(Arc::new(store), &cfg.prefix);
        // One listing proves the endpoint, the credentials and the bucket.
        this.store
            .list_with_delimiter(Some(&this.path("uploads")))
            .await
            .map_err(|e| s3_error(&format!("bucket {} cannot be listed", cfg.bucket), e))?;
        Ok(this)
    }

    /// A store over any [`ObjectStore`] (tests use object_store's in-memory one).
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str) -> S3BlobStore {
        S3BlobStore {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_path(&self, d: &Digest) -> Path {
        self.path(&format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
    }

    fn touched_path(&self, d: &Digest) -> Path {
        self.path(&format!("touched/{}/{}", d.algorithm().as_str(), d.hex()))
    }

    fn upload_dir(&self, id: &str) -> Result<Path, RegistryError> {
        if !valid_upload_id(id) {
            return Err(RegistryError::BlobUploadUnknown(id.to_owned()));
        }
        Ok(self.path(&format!("uploads/{id}")))
    }

    fn session(&self, id: &str) -> Arc<tokio::sync::Mutex<Session>> {
        self.sessions
            .lock()
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    fn forget_session(&self, id: &str) {
        self.sessions.lock().remove(id);
    }

    async fn head(&self, path: &Path) -> Result<Option<object_store::ObjectMeta>, RegistryError> {
        match self.store.head(path).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_error(&format!("head {path}"), e)),
        }
    }

    /// The session's meta object and its parts (offset, size, modified) in offset order; `None`
    /// when the session does not exist.
    async fn parts(
        &self,
        id: &str,
    ) -> Result<Option<(UploadMeta, SystemTime, Vec<(u64, u64, SystemTime)>)>, RegistryError> {
        let dir = self.upload_dir(id)?;
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| s3_error(&format!("listing upload {id}"), e))?;
        let mut meta_at = None;
        let mut parts = Vec::new();
        for object in &listed {
            match object.location.filename() {
                Some("meta.json") => meta_at = Some(SystemTime::from(object.last_modified)),
                Some(name) => {
                    if let Ok(offset) = name.parse::<u64>() {
                        parts.push((offset, object.size, SystemTime::from(object.last_modified)));
                    }
                }
                None => {}
            }
        }
        let Some(meta_at) = meta_at else {
            return Ok(None);
        };
        let raw = match self.store.get(&dir.clone().join("meta.json")).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| s3_error(&format!("reading upload {id}"), e))?,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(s3_error(&format!("reading upload {id}"), e)),
        };
        let meta: UploadMeta = serde_json::from_slice(&raw)
            .map_err(|e| RegistryError::Internal(format!("upload {id} meta: {e}")))?;
        parts.sort_by_key(|p| p.0);
        // Parts must tile the session from 0; a part that does not continue the previous one is
        // the remnant of a failed append and is ignored.
        let mut contiguous = Vec::with_capacity(parts.len());
        let mut next = 0;
        for part in parts {
            if part.0 == next && part.1 > 0 {
                next += part.1;
                contiguous.push(part);
            }
        }
        Ok(Some((meta, meta_at, contiguous)))
    }

    /// Streams `body` into a new object at `path`; returns the bytes written, and the error of
    /// the body if it ended early (what arrived before it is kept).
    async fn write_stream(
        &self,
        path: Path,
        mut body: ByteStream,
        hasher: &mut Option<Hasher>,
    ) -> Result<(u64, Option<std::io::Error>), RegistryError> {
        let mut writer = BufWriter::with_capacity(self.store.clone(), path.clone(), PART_SIZE)
            .with_max_concurrency(PART_CONCURRENCY);
        let mut written = 0u64;
        let mut body_error = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    written += chunk.len() as u64;
                    if let Err(e) = writer.put(chunk).await {
                        let _ = writer.abort().await;
                        return Err(s3_error(&format!("writing {path}"), e));
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        if written == 0 {
            let _ = writer.abort().await;
            return Ok((0, body_error));
        }
        writer.shutdown().await.map_err(|e| {
            RegistryError::Io(std::io::Error::other(format!("writing {path}: {e}")))
        })?;
        Ok((written, body_error))
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, RegistryError> {
        Ok(self.head(&self.blob_path(digest)).await?.map(|m| BlobInfo {
            size: m.size,
            modified: SystemTime::from(m.last_modified),
        }))
    }

    async fn read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, RegistryError> {
        let path = self.blob_path(digest);
        if len == 0 {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + len)),
            ..Default::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => {
                return Err(RegistryError::BlobUnknown(digest.to_string()));
            }
            Err(e) => return Err(s3_error(&format!("reading {path}"), e)),
        };
        Ok(Box::pin(
            result
                .into_stream()
                .map_err(|e| std::io::Error::other(e.to_string())),
        ))
    }

    async fn read_all(&self, digest: &Digest) -> Result<Bytes, RegistryError> {
        let path = self.blob_path(digest);
        match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| s3_error(&format!("reading {path}"), e)),
            Err(e) if is_not_found(&e) => Err(RegistryError::BlobUnknown(digest.to_string())),
            Err(e) => Err(s3_error(&format!("reading {path}"), e)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let path = self.blob_path(digest);
        let existed = self.head(&path).await?.is_some();
        for p in [path, self.touched_path(digest)] {
            match self.store.delete(&p).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(s3_error(&format!("deleting {p}"), e)),
            }
        }
        Ok(existed)
    }

    async fn list(&self) -> Result<Vec<(Digest, BlobInfo)>, RegistryError> {
        let mut touched: HashMap<String, SystemTime> = HashMap::new();
        let mut markers = self.store.list(Some(&self.path("touched")));
        while let Some(m) = markers.next().await {
            let m = m.map_err(|e| s3_error("listing blob markers", e))?;
            touched.insert(
                digest_of(&m.location).unwrap_or_default(),
                SystemTime::from(m.last_modified),
            );
        }
        let mut out = Vec::new();
        let mut blobs = self.store.list(Some(&self.path("blobs")));
        while let Some(m) = blobs.next().await {
            let m = m.map_err(|e| s3_error("listing blobs", e))?;
            let Some(name) = digest_of(&m.location) else {
                continue;
            };
            let Ok(d) = name.parse::<Digest>() else {
                continue;
            };
            let mut modified = SystemTime::from(m.last_modified);
            if let Some(t) = touched.get(&name) {
                modified = modified.max(*t);
            }
            out.push((
                d,
                BlobInfo {
                    size: m.size,
                    modified,
                },
            ));
        }
        Ok(out)
    }

    async fn touch(&self, digest: &Digest) -> Result<(), RegistryError> {
        let path = self.touched_path(digest);
        self.store
            .put(&path, PutPayload::new())
            .await
            .map_err(|e| s3_error(&format!("writing {path}"), e))?;
        Ok(())
    }

    async fn upload_create(&self, id: &str, meta: UploadMeta) -> Result<(), RegistryError> {
        let dir = self.upload_dir(id)?;
        let raw = serde_json::to_vec(&meta).map_err(|e| RegistryError::Internal(e.to_string()))?;
        self.store
            .put(&dir.clone().join("meta.json"), PutPayload::from(raw))
            .await
            .map_err(|e| s3_error(&format!("creating upload {id}"), e))?;
        Ok(())
    }

    async fn upload_status(&self, id: &str) -> Result<Option<UploadStatus>, RegistryError> {
        Ok(self.parts(id).await?.map(|(meta, meta_at, parts)| {
            let offset = parts.last().map_or(0, |p| p.0 + p.1);
            let modified = parts
                .iter()
                .map(|p| p.2)
                .max()
                .unwrap_or(meta_at)
                .max(meta_at);
            UploadStatus {
                meta,
                offset,
                modified,
            }
        }))
    }

    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let dir = self.upload_dir(id)?;
        let session = self.session(id);
        let mut state = session.lock_owned().await;
        let Some((_, _, parts)) = self.parts(id).await? else {
            drop(state);
            self.forget_session(id);
            return Err(RegistryError::BlobUploadUnknown(id.to_owned()));
        };
        let offset = parts.last().map_or(0, |p| p.0 + p.1);
        if let Some(start) = start
            && start != offset
        {
            return Err(RegistryError::RangeInvalid { offset, got: start });
        }
        // The first part is hashed as it arrives: a session of one part commits by copy.
        let mut hasher = (offset == 0).then(|| Algorithm::Sha256.hasher());
        let part = dir.clone().join(format!("{offset:020}"));
        let (written, body_error) = self.write_stream(part, body, &mut hasher).await?;
        state.single_part = match hasher {
            Some(h) if written > 0 && body_error.is_none() => Some((written, h.finish())),
            _ => None,
        };
        let new_offset = offset + written;
        if let Some(e) = body_error {
            tracing::debug!(upload = id, offset = new_offset, error = %e, "upload body ended early");
            return Err(RegistryError::Io(e));
        }
        Ok(new_offset)
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64, RegistryError> {
        let dir = self.upload_dir(id)?;
        let session = self.session(id);
        let state = session.lock().await;
        let Some((_, _, parts)) = self.parts(id).await? else {
            drop(state);
            self.forget_session(id);
            return Err(RegistryError::BlobUploadUnknown(id.to_owned()));
        };
        let size = parts.last().map_or(0, |p| p.0 + p.1);
        let dest = self.blob_path(expected);
        let result = match (&state.single_part, parts.as_slice()) {
            (Some((len, digest)), [(0, part_len, _)]) if len == part_len => {
                if digest == expected {
                    let part = dir.clone().join(format!("{:020}", 0));
                    self.store
                        .copy(&part, &dest)
                        .await
                        .map_err(|e| s3_error(&format!("copying upload {id} to {dest}"), e))?;
                    Ok(())
                } else {
                    Err(digest.clone())
                }
            }
            _ => self.concatenate(&dir, &parts, &dest, expected).await?,
        };
        drop(state);
        // The session is gone afterwards, also on a digest mismatch.
        self.remove_session_objects(id).await?;
        self.forget_session(id);
        match result {
            Ok(()) => {
                self.touch(expected).await?;
                Ok(size)
            }
            Err(actual) => Err(RegistryError::BlobDigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            }),
        }
    }

    async fn upload_delete(&self, id: &str) -> Result<bool, RegistryError> {
        let session = self.session(id);
        let state = session.lock().await;
        let existed = self.parts(id).await?.is_some();
        self.remove_session_objects(id).await?;
        drop(state);
        self.forget_session(id);
        Ok(existed)
    }

    async fn upload_list(&self) -> Result<Vec<(String, UploadStatus)>, RegistryError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path("uploads")))
            .await
            .map_err(|e| s3_error("listing uploads", e))?;
        let mut out = Vec::new();
        for dir in listed.common_prefixes {
            let Some(id) = dir.filename().map(str::to_owned) else {
                continue;
            };
            if !valid_upload_id(&id) {
                continue;
            }
            if let Some(st) = self.upload_status(&id).await? {
                out.push((id, st));
            }
        }
        Ok(out)
    }

    async fn upload_purge_if_idle(
        &self,
        id: &str,
        cutoff: SystemTime,
    ) -> Result<bool, RegistryError> {
        let session = self.session(id);
        let state = session.lock().await;
        let status = self.upload_status(id).await?;
        let idle = status.as_ref().is_none_or(|s| s.modified < cutoff);
        let removed = idle && status.is_some();
        if idle {
            self.remove_session_objects(id).await?;
        }
        drop(state);
        if idle {
            self.forget_session(id);
        }
        Ok(removed)
    }
}

/// `sha256:<hex>` from `.../<alg>/<hex>`.
fn digest_of(location: &Path) -> Option<String> {
    let mut parts: Vec<&str> = location.as_ref().rsplitn(3, '/').collect();
    if parts.len() < 2 {
        return None;
    }
    let hex = parts.remove(0);
    let alg = parts.remove(0);
    Some(format!("{alg}:{hex}"))
}

impl S3BlobStore {
    /// Streams the parts in order into `dest` while hashing; completes the write only when the
    /// digest matches (`Ok(Ok(()))`), else aborts it and returns the actual digest.
    async fn concatenate(
        &self,
        dir: &Path,
        parts: &[(u64, u64, SystemTime)],
        dest: &Path,
        expected: &Digest,
    ) -> Result<Result<(), Digest>, RegistryError> {
        let mut hasher = expected.algorithm().hasher();
        let mut writer = BufWriter::with_capacity(self.store.clone(), dest.clone(), PART_SIZE)
            .with_max_concurrency(PART_CONCURRENCY);
        for (offset, _, _) in parts {
            let part = dir.clone().join(format!("{offset:020}"));
            let mut stream = match self.store.get(&part).await {
                Ok(r) => r.into_stream(),
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(s3_error(&format!("reading {part}"), e));
                }
            };
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(s3_error(&format!("reading {part}"), e));
                    }
                };
                hasher.update(&chunk);
                if let Err(e) = writer.put(chunk).await {
                    let _ = writer.abort().await;
                    return Err(s3_error(&format!("writing {dest}"), e));
                }
            }
        }
        let actual = hasher.finish();
        if &actual != expected {
            let _ = writer.abort().await;
            return Ok(Err(actual));
        }
        writer.shutdown().await.map_err(|e| {
            RegistryError::Io(std::io::Error::other(format!("writing {dest}: {e}")))
        })?;
        Ok(Ok(()))
    }

    async fn remove_session_objects(&self, id: &str) -> Result<(), RegistryError> {
        let dir = self.upload_dir(id)?;
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| s3_error(&format!("listing upload {id}"), e))?;
        for object in listed {
            match self.store.delete(&object.location).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(s3_error(&format!("deleting {}", object.location), e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&[u8]]) -> ByteStream {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    fn meta() -> UploadMeta {
        UploadMeta {
            repository: "app".into(),
            region: None,
            created_at: 1.0,
            client: Some("AKIA".into()),
        }
    }

    async fn read(store: &S3BlobStore, d: &Digest, start: u64, len: u64) -> Vec<u8> {
        let chunks: Vec<Bytes> = store
            .read(d, start, len)
            .await
            .expect("read")
            .try_collect()
            .await
            .expect("stream");
        chunks.concat()
    }

    /// Two replicas over one bucket: a session started on one continues and commits on the
    /// other, and the blob is readable from both.
    #[tokio::test]
    async fn an_upload_session_continues_on_another_replica() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let one = S3BlobStore::with_store(bucket.clone(), "reg");
        let two = S3BlobStore::with_store(bucket.clone(), "/reg/");
        one.upload_create("u1", meta()).await.expect("create");
        assert_eq!(
            one.upload_append("u1", None, body(&[b"hello ", b"wor"]))
                .await
                .expect("append"),
            9
        );
        let status = two
            .upload_status("u1")
            .await
            .expect("status")
            .expect("exists");
        assert_eq!((status.offset, status.meta), (9, meta()));
        match two.upload_append("u1", Some(3), body(&[b"x"])).await {
            Err(RegistryError::RangeInvalid { offset: 9, got: 3 }) => {}
            other => panic!("want RangeInvalid, got {other:?}"),
        }
        assert_eq!(
            two.upload_append("u1", Some(9), body(&[b"ld"]))
                .await
                .expect("append"),
            11
        );
        let d = Algorithm::Sha256.digest(b"hello world");
        assert_eq!(two.upload_commit("u1", &d).await.expect("commit"), 11);
        assert!(
            one.upload_status("u1").await.expect("status").is_none(),
            "session gone"
        );
        assert_eq!(
            one.read_all(&d).await.expect("read_all"),
            &b"hello world"[..]
        );
        assert_eq!(read(&one, &d, 6, 5).await, b"world");
        assert_eq!(one.stat(&d).await.expect("stat").expect("stored").size, 11);
        let listed = two.list().await.expect("list");
        assert_eq!(
            listed
                .iter()
                .map(|(d, i)| (d.clone(), i.size))
                .collect::<Vec<_>>(),
            [(d.clone(), 11)]
        );
        assert!(two.delete(&d).await.expect("delete"));
        assert!(one.stat(&d).await.expect("stat").is_none());
        assert!(!one.delete(&d).await.expect("delete again"));
    }

    /// A digest mismatch leaves nothing visible, on both commit paths (one part: copy; several
    /// parts: streamed concatenation), and ends the session.
    #[tokio::test]
    async fn a_wrong_digest_never_becomes_visible() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = S3BlobStore::with_store(bucket.clone(), "");
        let claimed = Algorithm::Sha256.digest(b"what the client claims");
        for (id, parts) in [
            ("one", vec![&b"actual bytes"[..]]),
            ("two", vec![&b"actual "[..], &b"bytes"[..]]),
        ] {
            store.upload_create(id, meta()).await.expect("create");
            for part in parts {
                store
                    .upload_append(id, None, body(&[part]))
                    .await
                    .expect("append");
            }
            match store.upload_commit(id, &claimed).await {
                Err(RegistryError::BlobDigestMismatch { actual, .. }) => {
                    assert_eq!(
                        actual,
                        Algorithm::Sha256.digest(b"actual bytes").to_string()
                    )
                }
                other => panic!("want a mismatch, got {other:?}"),
            }
            assert!(store.stat(&claimed).await.expect("stat").is_none(), "{id}");
            assert!(
                store.upload_status(id).await.expect("status").is_none(),
                "{id}"
            );
        }
        let left: Vec<_> = bucket.list(None).try_collect().await.expect("list");
        assert!(left.is_empty(), "objects left behind: {left:?}");
    }

    /// A layer larger than one part goes through a multipart upload, both on append and on
    /// the concatenating commit.
    #[tokio::test]
    async fn large_layers_stream_through_multipart_uploads() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = S3BlobStore::with_store(bucket, "p");
        let data: Vec<u8> = (0..(PART_SIZE * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        let d = Algorithm::Sha256.digest(&data);
        store.upload_create("big", meta()).await.expect("create");
        let (a, b) = data.split_at(PART_SIZE + 7);
        let chunks_a: Vec<&[u8]> = a.chunks(400 << 10).collect();
        store
            .upload_append("big", None, body(&chunks_a))
            .await
            .expect("append a");
        let chunks_b: Vec<&[u8]> = b.chunks(400 << 10).collect();
        let end = store
            .upload_append("big", None, body(&chunks_b))
            .await
            .expect("append b");
        assert_eq!(end, data.len() as u64);
        assert_eq!(
            store.upload_commit("big", &d).await.expect("commit"),
            data.len() as u64
        );
        assert_eq!(read(&store, &d, 0, data.len() as u64).await, data);
    }

    /// Idle sessions are purged, active ones kept; touch refreshes a blob's age for the GC.
    #[tokio::test]
    async fn purge_and_touch() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = S3BlobStore::with_store(bucket, "");
        store.upload_create("old", meta()).await.expect("create");
        store.upload_create("new", meta()).await.expect("create");
        let ids: Vec<String> = store
            .upload_list()
            .await
            .expect("list")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["new", "old"]);
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        assert!(
            !store
                .upload_purge_if_idle("new", past)
                .await
                .expect("purge")
        );
        let future = SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(
            store
                .upload_purge_if_idle("old", future)
                .await
                .expect("purge")
        );
        assert!(store.upload_status("old").await.expect("status").is_none());
        assert!(store.upload_status("new").await.expect("status").is_some());

        store.upload_create("t", meta()).await.expect("create");
        store
            .upload_append("t", None, body(&[b"x"]))
            .await
            .expect("append");
        let d = Algorithm::Sha256.digest(b"x");
        store.upload_commit("t", &d).await.expect("commit");
        let before = store.list().await.expect("list")[0].1.modified;
        store.touch(&d).await.expect("touch");
        assert!(store.list().await.expect("list")[0].1.modified >= before);
    }

    #[test]
    fn parses_blob_store_urls() {
        let c = S3Config::from_url(
            "s3://images/reg/prod?endpoint=http://127.0.0.1:9000&region=eu-west-1",
        )
        .expect("valid");
        assert_eq!(c.bucket, "images");
        assert_eq!(c.prefix, "reg/prod");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        let c = S3Config::from_url("s3://images").expect("bucket only");
        assert_eq!((c.prefix.as_str(), c.endpoint), ("", None));
        for bad in [
            "file:///x",
            "s3://",
            "s3://Upper",
            "s3://ok-bucket?color=blue",
        ] {
            assert!(S3Config::from_url(bad).is_err(), "{bad}");
        }
    }
}
