//! Gantry's image registry: the OCI distribution API (`/v2/`, what `docker push`/`pull` and
//! `skopeo` speak) and the ECR JSON API (`AmazonEC2ContainerRegistry_V20150921`) over one image
//! store.
//!
//! * Metadata (repositories, manifests stored byte-exact, tags, repository→blob links,
//!   referrers) lives in the [`gantry_store::Store`] under `ecr/...`, written with
//!   compare-and-swap transactions (see `meta.rs` for the key layout).
//! * Blob bytes live in a [`BlobStore`]: [`FsBlobStore`] on the local filesystem (the default:
//!   content addressed, uploads hashed while streamed, verified, fsync'd and renamed into place),
//!   or [`S3BlobStore`] in an S3-compatible bucket shared by several server replicas.
//! * One authorization point ([`auth::authorize`]) for every route and operation.
//! * [`Registry::run_maintenance`] purges abandoned upload sessions and collects unreferenced
//!   blobs after a grace period.
//!
//! * Pull through cache rules fetch images from an upstream registry on first pull, into
//!   repositories created from repository creation templates (`pull_through.rs`).
//!
//! * [`EcrService`] serves the ECR JSON API to the front.
//!
//! A service crate: depends on the front, the wire layer and the store, never on another service
//! crate. Must not depend on Docker.

pub mod auth;
pub mod blob;
#[rustfmt::skip]
mod model_constraints;
mod core;
pub mod digest;
mod ecr;
mod error;
mod gc;
mod http_api;
mod lifecycle;
pub mod manifest;
mod meta;
mod pull_through;
mod replication;
pub mod s3;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::sigv4::CredentialProvider;
use gantry_front::{JsonService, Protocol, RequestContext, ServiceSpec};
use gantry_store::{Store, Txn};

pub use crate::auth::{Principal, RegistryAction, TokenSigner, authorize};
pub use crate::blob::{BlobStore, FsBlobStore};
pub use crate::core::Reference;
pub use crate::digest::{Algorithm, Digest};
pub use crate::ecr::{
    IMPLEMENTED_OPERATIONS as ECR_IMPLEMENTED_OPERATIONS, MODEL_OPERATIONS as ECR_MODEL_OPERATIONS,
};
pub use crate::error::RegistryError;
pub use crate::gc::GcReport;
pub use crate::pull_through::{SecretProblem, UpstreamCredentials, UpstreamLogin};
pub use crate::s3::{S3BlobStore, S3Config};

/// Open upload sessions: id → (repository, client).
type UploadIndex = std::collections::HashMap<String, (String, Option<String>)>;

/// Static configuration of the registry.
#[derive(Clone)]
pub struct RegistryConfig {
    /// Blobs and upload sessions live under this directory.
    pub data_dir: PathBuf,
    /// The AWS account id (`registryId`).
    pub account_id: String,
    /// The server's region: where records written before regions live, and the region of a
    /// `/v2/` request that names none (see `http_api.rs`).
    pub default_region: String,
    /// Server-wide secret keying the registry passwords; stable across restarts.
    pub token_secret: Vec<u8>,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("data_dir", &self.data_dir)
            .field("account_id", &self.account_id)
            .field("default_region", &self.default_region)
            .field("token_secret", &"<redacted>")
            .finish()
    }
}

/// Tunables with production defaults; tests shorten them.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Upload sessions idle for longer are purged (at start-up and by every maintenance pass).
    pub upload_ttl: Duration,
    /// Blobs (and repository links) younger than this are never collected.
    pub gc_grace: Duration,
    /// Time between two maintenance passes.
    pub maintenance_interval: Duration,
    /// The most upload sessions open at once in one repository.
    pub max_uploads_per_repository: usize,
    /// The most upload sessions open at once for one client (access key).
    pub max_uploads_per_client: usize,
    /// The largest blob an upload may grow to (ECR's maximum layer size, 52,000 MiB).
    pub max_blob_bytes: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            upload_ttl: Duration::from_secs(3600),
            gc_grace: Duration::from_secs(3600),
            maintenance_interval: Duration::from_secs(600),
            max_uploads_per_repository: 512,
            max_uploads_per_client: 1024,
            max_blob_bytes: manifest::MAX_LAYER_BYTES,
        }
    }
}

/// The `X-Amz-Target` prefix of ECR.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921";

/// How the front reaches the ECR JSON API.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "ecr",
    signing_name: "ecr",
    protocol: Protocol::Json {
        target_prefix: TARGET_PREFIX,
    },
    operations: ECR_MODEL_OPERATIONS,
    constraints: &model_constraints::CONSTRAINTS,
};

/// Why KMS refused a repository's key: its error code (`NotFoundException`, `DisabledException`,
/// ...) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsProblem {
    pub code: String,
    pub message: String,
}

/// How ECR names the KMS key of a repository created with `encryptionType` `KMS` or `KMS_DSSE`.
/// The composition root implements it over the KMS service.
#[async_trait]
pub trait RepositoryKeys: Send + Sync + std::fmt::Debug {
    /// The ARN of the enabled key `key` names (alias, key id or ARN) in `region`; `None` is the
    /// AWS-managed `alias/aws/ecr`, created on first use.
    async fn key_arn(&self, region: &str, key: Option<&str>) -> Result<String, KmsProblem>;
}

/// The ECR JSON API over a [`Registry`], which shares its image store with `/v2/`.
#[derive(Debug)]
pub struct EcrService {
    registry: Arc<Registry>,
    /// `host:port` at which `/v2/` is reachable.
    registry_host: String,
    keys: Option<Arc<dyn RepositoryKeys>>,
}

impl EcrService {
    pub fn new(registry: Arc<Registry>, registry_host: impl Into<String>) -> Self {
        Self {
            registry,
            registry_host: registry_host.into(),
            keys: None,
        }
    }

    /// Resolves the KMS keys of repositories with KMS encryption through `keys` (without it the
    /// key is recorded as given).
    #[must_use]
    pub fn with_repository_keys(mut self, keys: Arc<dyn RepositoryKeys>) -> Self {
        self.keys = Some(keys);
        self
    }
}

#[async_trait]
impl JsonService for EcrService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(
        &self,
        op: &str,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<serde_json::Value, AwsError> {
        let ecr = EcrContext {
            region: ctx.region.clone(),
            access_key_id: ctx.access_key_id.clone(),
            registry_host: self.registry_host.clone(),
            keys: self.keys.clone(),
        };
        self.registry.handle_ecr(op, body, &ecr).await
    }
}

/// Per-call context of an ECR JSON API request.
#[derive(Clone, Debug)]
pub struct EcrContext {
    /// Region from the SigV4 scope.
    pub region: String,
    /// The (already SigV4-verified) caller.
    pub access_key_id: String,
    /// host:port where /v2/ is reachable, e.g. "127.0.0.1:40123".
    pub registry_host: String,
    /// Resolves repository KMS keys, when KMS is wired.
    pub keys: Option<Arc<dyn RepositoryKeys>>,
}

/// The registry. Cheap to share as `Arc<Registry>`.
pub struct Registry {
    cfg: RegistryConfig,
    options: RegistryOptions,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    creds: Arc<dyn CredentialProvider>,
    signer: TokenSigner,
    blob_locks: Vec<tokio::sync::Mutex<()>>,
    /// Open upload sessions: id → (repository, client). `None` until first loaded from the blob
    /// store; reloaded from it whenever a cap is reached, so sessions that ended without this
    /// index hearing of it never count against a cap for long.
    uploads: parking_lot::Mutex<Option<UploadIndex>>,
    /// The IAM check of every `/v2/` route, when identity is wired.
    authorizer: std::sync::OnceLock<Arc<dyn RegistryAuthorizer>>,
    /// What the maintenance job (the leader's) writes through when set: the fenced store with
    /// several replicas. Unset, the registry's own store.
    controller_store: std::sync::OnceLock<Arc<dyn Store>>,
    /// Pull through cache: upstream secrets, HTTP client, fetch locks.
    pull_through: pull_through::PullThrough,
    /// Woken by pushes that queued replication jobs.
    replication_wake: tokio::sync::Notify,
}

/// The IAM check of the `/v2/` routes (implemented by the composition root over the IAM
/// directory): whether the principal a registry client authenticated as (an access key id,
/// directly or through a `GetAuthorizationToken` password) may perform `action` (`ecr:...`) on
/// `repository` of `region` (`None`: registry-wide). Checked on every request, so a token stops working
/// when its user's key is deleted or its policies no longer allow. `Err` carries AWS's denial
/// message.
#[async_trait::async_trait]
pub trait RegistryAuthorizer: Send + Sync {
    async fn authorize(
        &self,
        access_key_id: &str,
        region: &str,
        action: &str,
        repository: Option<&str>,
    ) -> Result<(), String>;
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("cfg", &self.cfg)
            .field("options", &self.options)
            .field("store", &self.store)
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

const BLOB_LOCK_STRIPES: usize = 64;

impl Registry {
    /// Opens the registry with default options and a filesystem blob store under
    /// `cfg.data_dir`.
    pub async fn open(
        cfg: RegistryConfig,
        store: Arc<dyn Store>,
        creds: Arc<dyn CredentialProvider>,
    ) -> Result<Arc<Self>, RegistryError> {
        Self::open_with_options(cfg, store, creds, RegistryOptions::default()).await
    }

    /// Like [`Registry::open`], with explicit tunables.
    pub async fn open_with_options(
        cfg: RegistryConfig,
        store: Arc<dyn Store>,
        creds: Arc<dyn CredentialProvider>,
        options: RegistryOptions,
    ) -> Result<Arc<Self>, RegistryError> {
        let dir = cfg.data_dir.clone();
        let blobs = tokio::task::spawn_blocking(move || FsBlobStore::open(dir))
            .await
            .map_err(|e| RegistryError::Internal(format!("opening blob store: {e}")))??;
        Self::open_on(cfg, store, creds, Arc::new(blobs), options).await
    }

    /// Opens the registry over `blobs` (the filesystem or an S3 bucket): purges abandoned upload
    /// sessions and loads the open ones.
    pub async fn open_on(
        cfg: RegistryConfig,
        store: Arc<dyn Store>,
        creds: Arc<dyn CredentialProvider>,
        blobs: Arc<dyn BlobStore>,
        options: RegistryOptions,
    ) -> Result<Arc<Self>, RegistryError> {
        let reg = Self::with_blob_store(cfg, store, creds, blobs, options);
        // Records written before repositories belonged to a region are the default region's.
        let moved = meta::migrate_unscoped(reg.store.as_ref(), &reg.cfg.default_region).await?;
        if moved > 0 {
            tracing::info!(moved, region = %reg.cfg.default_region, "registry records moved into the default region");
        }
        // Sessions abandoned before this start (a crash, a client that went away) are purged now,
        // not at the first maintenance pass.
        let purged = reg.purge_uploads().await?;
        if purged > 0 {
            tracing::info!(purged, "abandoned upload sessions purged at start-up");
        }
        reg.reload_uploads().await?;
        Ok(reg)
    }

    /// Builds a registry over any [`BlobStore`].
    pub fn with_blob_store(
        cfg: RegistryConfig,
        store: Arc<dyn Store>,
        creds: Arc<dyn CredentialProvider>,
        blobs: Arc<dyn BlobStore>,
        options: RegistryOptions,
    ) -> Arc<Self> {
        let signer = TokenSigner::new(cfg.token_secret.clone());
        Arc::new(Self {
            cfg,
            options,
            store,
            blobs,
            creds,
            signer,
            blob_locks: (0..BLOB_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            uploads: parking_lot::Mutex::new(None),
            authorizer: std::sync::OnceLock::new(),
            controller_store: std::sync::OnceLock::new(),
            pull_through: pull_through::PullThrough::default(),
            replication_wake: tokio::sync::Notify::new(),
        })
    }

    /// Checks every `/v2/` request with `authorizer` (set once, at wiring).
    pub fn set_authorizer(&self, authorizer: Arc<dyn RegistryAuthorizer>) {
        let _ = self.authorizer.set(authorizer);
    }

    /// Makes the maintenance job (garbage collection, lifecycle policies) write through
    /// `store`, the leader's fenced store, so a deposed leader's writes are refused and it
    /// deletes no blob or image once another replica leads. Only the first call counts.
    pub fn set_controller_store(&self, store: Arc<dyn Store>) {
        let _ = self.controller_store.set(store);
    }

    pub(crate) fn controller_store(&self) -> &Arc<dyn Store> {
        self.controller_store.get().unwrap_or(&self.store)
    }

    /// Whether the maintenance job may still act: an empty transaction through the
    /// controllers' store commits (with a fenced store: this replica still leads).
    pub(crate) async fn still_leading(&self) -> Result<bool, RegistryError> {
        if self.controller_store.get().is_none() {
            return Ok(true);
        }
        Ok(self
            .controller_store()
            .commit(Txn::new())
            .await?
            .is_committed())
    }

    /// The repository policy of `name` in `region`, if the repository exists and has one.
    pub async fn repository_policy(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<String>, RegistryError> {
        let Some(rec) = self.store.get(&meta::repo_key(region, name)).await? else {
            return Ok(None);
        };
        let repo: gantry_store::Versioned<meta::RepoRecord> = gantry_store::decode(&rec)
            .map_err(|e| RegistryError::Internal(format!("repository record {name}: {e}")))?;
        Ok(repo.value.policy)
    }

    /// The axum router serving `/v2/` and `/v2/{*rest}`.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        http_api::router(self.clone())
    }

    /// One ECR JSON API call; `op` is the operation name, `body` the raw JSON body.
    pub async fn handle_ecr(
        &self,
        op: &str,
        body: &[u8],
        ctx: &EcrContext,
    ) -> Result<serde_json::Value, AwsError> {
        ecr::handle(self, op, body, ctx).await
    }

    /// Background maintenance until `shutdown` turns true: purges upload sessions idle past
    /// the TTL and collects unreferenced blobs past the grace period.
    pub async fn run_maintenance(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.maintenance_pass().await {
                Ok(report) => tracing::debug!(?report, "registry maintenance done"),
                Err(error) => tracing::warn!(%error, "registry maintenance failed; will retry"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.options.maintenance_interval) => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
        }
    }

    /// The replication worker until `shutdown` turns true: runs the pending replication jobs
    /// at once (those a crash left), then whenever a push queues one, and retries the jobs a
    /// transient failure kept every `retry`.
    pub async fn run_replication(
        self: Arc<Self>,
        retry: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.replicate_pending().await {
                Ok(0) => {}
                Ok(ended) => tracing::debug!(ended, "replication jobs done"),
                Err(error) => tracing::warn!(%error, "replication pass failed; will retry"),
            }
            tokio::select! {
                _ = self.replication_wake.notified() => {}
                _ = tokio::time::sleep(retry) => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
        }
    }

    /// One maintenance pass (upload purge, lifecycle policies, then GC); exposed for tests and
    /// admin tools.
    pub async fn maintenance_pass(&self) -> Result<GcReport, RegistryError> {
        let purged = self.purge_uploads().await?;
        let expired = self.apply_all_lifecycles().await?;
        let mut report = self.collect_garbage().await?;
        report.uploads_purged = purged;
        report.images_expired = expired;
        Ok(report)
    }

    /// A registry password for `principal` in `region` (what `GetAuthorizationToken` signed
    /// for `region` hands out, without the `AWS:` prefix and base64), valid for 12 hours.
    pub fn mint_password(&self, principal: &str, region: &str) -> String {
        self.signer
            .mint(principal, region, unix_now() + auth::TOKEN_VALIDITY_SECS)
    }

    /// The blob store (for tests and tools).
    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    fn blob_lock(&self, d: &Digest) -> &tokio::sync::Mutex<()> {
        let idx = u8::from_str_radix(&d.hex()[..2], 16).unwrap_or(0) as usize % BLOB_LOCK_STRIPES;
        &self.blob_locks[idx]
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
