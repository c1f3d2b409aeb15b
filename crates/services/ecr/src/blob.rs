//! Blob storage: content-addressed blobs and resumable upload sessions.
//!
//! [`BlobStore`] is the seam between the registry and its bytes ([`crate::S3BlobStore`] keeps
//! them in an S3-compatible bucket); [`FsBlobStore`] keeps everything under one directory on one filesystem:
//!
//! ```text
//! blobs/<alg>/<hex[0..2]>/<hex>      finished blobs, immutable, named by their digest
//! uploads/<id>/data                  the bytes received so far (its length is the offset)
//! uploads/<id>/meta.json             which repository the session belongs to, when it started
//! ```
//!
//! An upload is appended to `uploads/<id>/data` while it is hashed; on commit the bytes are
//! verified against the client's digest, fsync'd, then renamed into `blobs/`, and the directory is
//! fsync'd. A crash therefore never leaves a partial file under `blobs/`. Sessions live on disk, so
//! they survive a restart; the running hash state is cached in memory and recomputed from the
//! partial file when missing (after a restart or a dropped connection).
//!
//! Speed: a body is hashed by the request task as it arrives and written by a blocking thread in
//! parallel, without copies; writeback starts every [`WRITEBACK_EVERY`] bytes during the upload,
//! so the fsync at commit has little left to do. Downloads read ahead of the socket on blocking
//! threads. (`scripts/bench-registry.sh` measures both; `docs/benchmarks.md` has the figures.)

use std::collections::HashMap;
use std::fmt::Debug;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::RegistryError;

/// A stream of body chunks (request bodies in, blob contents out).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>>;

/// Size and last-modified time of a stored blob or upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    pub modified: SystemTime,
}

/// What an upload session remembers besides its bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UploadMeta {
    pub repository: String,
    /// The repository's region (absent in sessions of versions before regions: the server's
    /// default region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Seconds since the epoch.
    pub created_at: f64,
    /// The access key that started the session (absent in sessions of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// The state of an upload session.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadStatus {
    pub meta: UploadMeta,
    /// Bytes received so far.
    pub offset: u64,
    /// Last time bytes were received (or the session was created).
    pub modified: SystemTime,
}

/// Content-addressed blob storage with upload sessions.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug + 'static {
    /// Size and mtime of a blob, `None` when it is not stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, RegistryError>;
    /// Streams `len` bytes of a blob starting at `start`.
    async fn read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, RegistryError>;
    /// Reads a whole (small) blob into memory.
    async fn read_all(&self, digest: &Digest) -> Result<Bytes, RegistryError>;
    /// Deletes a blob; `false` when it was not there.
    async fn delete(&self, digest: &Digest) -> Result<bool, RegistryError>;
    /// Every stored blob.
    async fn list(&self) -> Result<Vec<(Digest, BlobInfo)>, RegistryError>;
    /// Marks a stored blob as recently used (for the GC grace period).
    async fn touch(&self, digest: &Digest) -> Result<(), RegistryError>;

    /// Starts an empty upload session.
    async fn upload_create(&self, id: &str, meta: UploadMeta) -> Result<(), RegistryError>;
    /// The session's state, `None` when it does not exist.
    async fn upload_status(&self, id: &str) -> Result<Option<UploadStatus>, RegistryError>;
    /// Appends a body to the session. `start`, when given, must equal the current offset
    /// (else [`RegistryError::RangeInvalid`]). Returns the new offset. Bytes received before a
    /// body error stay in the session, so the client can resume after them.
    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError>;
    /// Verifies the session's bytes against `expected` and moves them into place as that blob
    /// (deduplicating with an existing copy). The session is gone afterwards, also on a digest
    /// mismatch. Returns the blob size.
    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64, RegistryError>;
    /// Cancels a session; `false` when it did not exist.
    async fn upload_delete(&self, id: &str) -> Result<bool, RegistryError>;
    /// Every session id with its state.
    async fn upload_list(&self) -> Result<Vec<(String, UploadStatus)>, RegistryError>;
    /// Deletes a session when it received nothing since `cutoff` (checked under the session's
    /// lock, so an active upload is never purged). Returns whether it was deleted.
    async fn upload_purge_if_idle(
        &self,
        id: &str,
        cutoff: SystemTime,
    ) -> Result<bool, RegistryError>;
}

/// Per-session state kept in memory: a lock serializing writers, and the hash of the bytes
/// received so far (valid when its offset equals the file length).
#[derive(Debug, Default)]
struct Session {
    hashed: Option<(u64, Hasher)>,
}

/// The filesystem [`BlobStore`].
#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

/// Chunk size of blob reads (and of re-hashing a partial upload).
const READ_CHUNK: usize = 1 << 20;
/// Chunks read ahead of a blob download.
const READ_AHEAD_CHUNKS: usize = 4;
/// Body chunks (hyper hands out up to ~400 KiB each) queued between the socket and the thread
/// writing an upload.
const PIPELINE_CHUNKS: usize = 16;
/// Bytes of an upload after which writeback of what was received so far starts.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Mode of the store's directories: its owner's only.
const DIR_MODE: u32 = 0o700;
/// Mode of blobs and upload files: its owner's only, whatever the umask.
const FILE_MODE: u32 = 0o600;

/// `mkdir -p` with mode 0700 for what it creates.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Creates (or truncates) a file with mode 0600.
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl FsBlobStore {
    /// Opens (creating when needed) the store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        let root = root.into();
        create_private_dir(&root.join("blobs"))?;
        create_private_dir(&root.join("uploads"))?;
        // Leftovers of session creation interrupted by a crash.
        for entry in std::fs::read_dir(root.join("uploads"))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Self {
            root,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_dir(&self, id: &str) -> Result<PathBuf, RegistryError> {
        if !valid_upload_id(id) {
            return Err(RegistryError::BlobUploadUnknown(id.to_owned()));
        }
        Ok(self.root.join("uploads").join(id))
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
}

/// Hashes the first `len` bytes of a file (resuming a session whose hash state is not cached).
fn hash_file(path: &Path, alg: Algorithm, len: Option<u64>) -> std::io::Result<(Hasher, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = alg.hasher();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let want = match len {
            Some(l) => (l - total).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        if want == 0 {
            break;
        }
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((h, total))
}

/// Appends every chunk received on `rx` to the file at `path`; returns the bytes written.
///
/// Every [`WRITEBACK_EVERY`] bytes a helper thread starts flushing what was written so far
/// (`fdatasync` on a second handle), so that the disk works while the body is still arriving
/// and the fsync at commit finds little left to write.
fn append_chunks(path: &Path, mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> std::io::Result<u64> {
    let mut file = std::fs::File::options().append(true).open(path)?;
    let mut written = 0u64;
    let mut unflushed = 0u64;
    std::thread::scope(|scope| {
        let mut flusher: Option<std::sync::mpsc::SyncSender<()>> = None;
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all(&chunk)?;
            written += chunk.len() as u64;
            unflushed += chunk.len() as u64;
            if unflushed < WRITEBACK_EVERY {
                continue;
            }
            unflushed = 0;
            if flusher.is_none() {
                let handle = file.try_clone()?;
                // One pending request is enough: a flush covers everything before it.
                let (tx, requests) = std::sync::mpsc::sync_channel::<()>(1);
                scope.spawn(move || {
                    while requests.recv().is_ok() {
                        if let Err(error) = handle.sync_data() {
                            // Only an early start: the fsync at commit is the one that reports.
                            tracing::debug!(%error, "early writeback of an upload failed");
                        }
                    }
                });
                flusher = Some(tx);
            }
            if let Some(tx) = &flusher {
                let _ = tx.try_send(());
            }
        }
        Ok(written)
    })
}

/// Sends `len` bytes of `file` to `tx`, in chunks read on blocking threads, until done, an
/// error (sent as the last item), or the receiver going away.
async fn read_ahead(
    file: std::fs::File,
    len: u64,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut file = Some(file);
    let mut left = len;
    while let Some(mut f) = file.take()
        && left > 0
    {
        let want = left.min(READ_CHUNK as u64) as usize;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(want);
            let n = (&mut f).take(want as u64).read_to_end(&mut buf);
            (f, buf, n)
        })
        .await;
        let item = match read {
            Ok((f, buf, Ok(n))) if n == want => {
                file = Some(f);
                Ok(Bytes::from(buf))
            }
            Ok((_, _, Ok(_))) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob shorter than expected",
            )),
            Ok((_, _, Err(e))) => Err(e),
            Err(e) => Err(std::io::Error::other(format!("blob reader failed: {e}"))),
        };
        if tx.send(item).await.is_err() {
            return;
        }
        left -= want as u64;
    }
}

fn fsync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn not_found_is_none<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Internal(format!("blocking task failed: {e}")))?
        .map_err(RegistryError::Io)
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, RegistryError> {
        let md = not_found_is_none(tokio::fs::metadata(self.blob_path(digest)).await)?;
        Ok(md.map(|m| BlobInfo {
            size: m.len(),
            modified: m.modified().unwrap_or(SystemTime::now()),
        }))
    }

    async fn read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, RegistryError> {
        let path = self.blob_path(digest);
        let opened = blocking(move || {
            let Some(mut file) = not_found_is_none(std::fs::File::open(&path))? else {
                return Ok(None);
            };
            if start > 0 {
                file.seek(std::io::SeekFrom::Start(start))?;
            }
            Ok(Some(file))
        })
        .await?;
        let Some(file) = opened else {
            return Err(RegistryError::BlobUnknown(digest.to_string()));
        };
        // Reads run ahead of the socket: while the connection sends one chunk, the next ones
        // are read on blocking threads. The reading task ends when the receiver goes away.
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
        tokio::spawn(read_ahead(file, len, tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    async fn read_all(&self, digest: &Digest) -> Result<Bytes, RegistryError> {
        match not_found_is_none(tokio::fs::read(self.blob_path(digest)).await)? {
            Some(v) => Ok(Bytes::from(v)),
            None => Err(RegistryError::BlobUnknown(digest.to_string())),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, RegistryError> {
        Ok(not_found_is_none(tokio::fs::remove_file(self.blob_path(digest)).await)?.is_some())
    }

    async fn list(&self) -> Result<Vec<(Digest, BlobInfo)>, RegistryError> {
        let root = self.root.join("blobs");
        blocking(move || {
            let mut out = Vec::new();
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                let Some(dirs) = not_found_is_none(std::fs::read_dir(root.join(alg.as_str())))?
                else {
                    continue;
                };
                for dir in dirs {
                    let dir = dir?;
                    let Some(files) = not_found_is_none(std::fs::read_dir(dir.path()))? else {
                        continue;
                    };
                    for f in files {
                        let f = f?;
                        let name = f.file_name().to_string_lossy().into_owned();
                        let Ok(d) = format!("{}:{name}", alg.as_str()).parse::<Digest>() else {
                            continue;
                        };
                        let Some(md) = not_found_is_none(f.metadata())? else {
                            continue;
                        };
                        out.push((
                            d,
                            BlobInfo {
                                size: md.len(),
                                modified: md.modified().unwrap_or(SystemTime::now()),
                            },
                        ));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn touch(&self, digest: &Digest) -> Result<(), RegistryError> {
        let path = self.blob_path(digest);
        blocking(move || {
            let f = std::fs::File::options().write(true).open(&path)?;
            f.set_modified(SystemTime::now())
        })
        .await
    }

    async fn upload_create(&self, id: &str, meta: UploadMeta) -> Result<(), RegistryError> {
        let dir = self.upload_dir(id)?;
        let tmp = self.root.join("uploads").join(format!(".tmp-{id}"));
        let meta = serde_json::to_vec(&meta).map_err(|e| RegistryError::Internal(e.to_string()))?;
        blocking(move || {
            create_private_dir(&tmp)?;
            create_private_file(&tmp.join("meta.json"))?.write_all(&meta)?;
            create_private_file(&tmp.join("data"))?;
            std::fs::rename(&tmp, &dir)?;
            Ok(())
        })
        .await
    }

    async fn upload_status(&self, id: &str) -> Result<Option<UploadStatus>, RegistryError> {
        let dir = self.upload_dir(id)?;
        blocking(move || {
            let Some(meta) = not_found_is_none(std::fs::read(dir.join("meta.json")))? else {
                return Ok(None);
            };
            let Some(md) = not_found_is_none(std::fs::metadata(dir.join("data")))? else {
                return Ok(None);
            };
            let meta: UploadMeta = serde_json::from_slice(&meta)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            Ok(Some(UploadStatus {
                meta,
                offset: md.len(),
                modified: md.modified().unwrap_or(SystemTime::now()),
            }))
        })
        .await
    }

    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        mut body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let data = self.upload_dir(id)?.join("data");
        let session = self.session(id);
        let mut state = session.lock_owned().await;
        let Some(md) = not_found_is_none(tokio::fs::metadata(&data).await)? else {
            drop(state);
            self.forget_session(id);
            return Err(RegistryError::BlobUploadUnknown(id.to_owned()));
        };
        let offset = md.len();
        if let Some(start) = start
            && start != offset
        {
            return Err(RegistryError::RangeInvalid { offset, got: start });
        }
        let mut hasher = match state.hashed.take() {
            Some((at, h)) if at == offset => h,
            _ => {
                let path = data.clone();
                blocking(move || hash_file(&path, Algorithm::Sha256, Some(offset)))
                    .await?
                    .0
            }
        };
        // This task reads the socket and hashes each chunk as it arrives (hyper hands out at
        // most ~400 KiB at a time: ~0.2 ms of SHA-NI), while a blocking thread writes the
        // chunks, shared (`Bytes`) and never copied. Hashing here rather than on a second
        // thread measured faster and cheaper: fewer wake-ups, and the socket is read on the
        // core that hashes. The writer holds the session's lock: if this request is dropped
        // mid-body, the lock is released only after its last write, so the next append of the
        // session never races with it.
        let (write_tx, write_rx) = tokio::sync::mpsc::channel::<Bytes>(PIPELINE_CHUNKS);
        let path = data.clone();
        let writing = tokio::task::spawn_blocking(move || (append_chunks(&path, write_rx), state));
        let mut body_error = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    hasher.update(&chunk);
                    // A closed channel means the writer failed; it reports why below.
                    if write_tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        drop(write_tx);
        let (written, mut state) = writing
            .await
            .map_err(|e| RegistryError::Internal(format!("upload writer failed: {e}")))?;
        // On a failure the file holds an unknown prefix of the body; the cached hash stays
        // empty, so the next append re-hashes what is on disk.
        let written = written?;
        let new_offset = offset + written;
        state.hashed = Some((new_offset, hasher));
        if let Some(e) = body_error {
            tracing::debug!(upload = id, offset = new_offset, error = %e, "upload body ended early");
            return Err(RegistryError::Io(e));
        }
        Ok(new_offset)
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64, RegistryError> {
        let dir = self.upload_dir(id)?;
        let session = self.session(id);
        let mut state = session.lock().await;
        let data = dir.join("data");
        let Some(md) = not_found_is_none(tokio::fs::metadata(&data).await)? else {
            drop(state);
            self.forget_session(id);
            return Err(RegistryError::BlobUploadUnknown(id.to_owned()));
        };
        let size = md.len();
        let cached = state.hashed.take();
        let alg = expected.algorithm();
        let dest = self.blob_path(expected);
        let expected_c = expected.clone();
        let result = blocking(move || {
            let actual = match cached {
                Some((at, h)) if at == size && h.algorithm() == alg => h.finish(),
                _ => hash_file(&data, alg, None)?.0.finish(),
            };
            if actual != expected_c {
                std::fs::remove_dir_all(&dir)?;
                return Ok(Err(actual));
            }
            std::fs::File::open(&data)?.sync_all()?;
            let parent = dest.parent().map(Path::to_path_buf).unwrap_or_default();
            create_private_dir(&parent)?;
            if std::fs::metadata(&dest).is_ok() {
                // Already stored: keep the existing copy, refresh its age for the GC.
                let f = std::fs::File::options().write(true).open(&dest)?;
                f.set_modified(SystemTime::now())?;
            } else {
                std::fs::rename(&data, &dest)?;
                fsync_dir(&parent)?;
            }
            std::fs::remove_dir_all(&dir)?;
            Ok(Ok(()))
        })
        .await;
        drop(state);
        self.forget_session(id);
        match result? {
            Ok(()) => Ok(size),
            Err(actual) => Err(RegistryError::BlobDigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            }),
        }
    }

    async fn upload_delete(&self, id: &str) -> Result<bool, RegistryError> {
        let dir = self.upload_dir(id)?;
        let session = self.session(id);
        let state = session.lock().await;
        let removed = not_found_is_none(tokio::fs::remove_dir_all(&dir).await)?.is_some();
        drop(state);
        self.forget_session(id);
        Ok(removed)
    }

    async fn upload_list(&self) -> Result<Vec<(String, UploadStatus)>, RegistryError> {
        let root = self.root.join("uploads");
        let ids = blocking(move || {
            let mut ids = Vec::new();
            for entry in std::fs::read_dir(&root)? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if valid_upload_id(&name) {
                    ids.push(name);
                }
            }
            Ok(ids)
        })
        .await?;
        let mut out = Vec::new();
        for id in ids {
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
        let dir = self.upload_dir(id)?;
        let session = self.session(id);
        let state = session.lock().await;
        let md = not_found_is_none(tokio::fs::metadata(dir.join("data")).await)?;
        let idle = md
            .as_ref()
            .is_none_or(|m| m.modified().map(|t| t < cutoff).unwrap_or(true));
        let removed = idle && not_found_is_none(tokio::fs::remove_dir_all(&dir).await)?.is_some();
        drop(state);
        if removed || md.is_none() {
            self.forget_session(id);
        }
        Ok(removed)
    }
}
