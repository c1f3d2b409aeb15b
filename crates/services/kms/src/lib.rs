//! KMS (awsJson1.1, target prefix `TrentService`, signing name `kms`): symmetric encryption keys,
//! aliases, key policies, tags, rotation and scheduled deletion, over the Gantry store.
//!
//! - **Keys** are XChaCha20-Poly1305 keys (32 random bytes per key material version). Material is
//!   stored wrapped by the data dir's master key ([`MasterKey`], a 0600 file the composition root
//!   loads), never in the clear; a rotation adds a version and old ciphertexts keep opening.
//! - **Ciphertext blobs** name their key and material version, and bind the encryption context
//!   as associated data ([`crypto`]).
//! - **AWS-managed keys** (`alias/aws/acm`, `alias/aws/secretsmanager`, `alias/aws/ssm`, `alias/aws/ecr`) are
//!   created on first use by the service that needs one ([`KmsService::encrypt_for`],
//!   [`KmsService::resolve_key`]), with `KeyManager` `AWS`, the service's key policy and yearly
//!   rotation.
//! - **Deletion**: ScheduleKeyDeletion waits 7-30 days; [`KmsService::run_maintenance`] deletes
//!   keys whose waiting period is over (and their aliases), and rotates keys on their schedule.
//! - **Key policies** are validated as resource policies by `gantry-iam-policy` and evaluated
//!   before every operation that acts on a key, through the [`KeyAuthorizer`] the composition
//!   root installs; the operation table with each operation's IAM action and
//!   resource is [`authz::AUTHORIZATION`].
//!
//! Every operation of the model is listed in [`KmsOperation`]; those Gantry does not serve
//! (asymmetric and HMAC keys, grants, custom key stores, imported material, multi-Region keys)
//! answer `UnsupportedOperationException`.
//!
//! Other services use keys only through the composition root, which implements their traits with
//! [`KmsService::encrypt_for`], [`KmsService::decrypt_for`] and [`KmsService::resolve_key`]. Must
//! not depend on Docker or any other service.

#[rustfmt::skip]
mod model_constraints;
mod aliases;
pub mod authz;
mod cipher_ops;
pub mod crypto;
mod error;
mod key_access;
mod key_ops;
mod keys;
mod managed;
mod model;
mod policy;
mod tags;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_front::{Clock, JsonService, Protocol, RequestContext, ServiceSpec, SystemClock};
use gantry_store::Store;
use serde_json::Value;

pub use crypto::{BadMasterKey, MasterKey};
pub use error::KmsError;
pub use key_access::{KeyAccess, KeyAuthorizer, OnBehalf, decided_by_key_policy};
pub use managed::{MANAGED_KEYS, ManagedKey};
pub use policy::default_policy;

/// The `X-Amz-Target` prefix of KMS.
pub const TARGET_PREFIX: &str = "TrentService";

/// How often the maintenance job runs unless configured otherwise.
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

gantry_front::operations! {
    /// Every operation of the KMS API model.
    pub enum KmsOperation {
        CancelKeyDeletion,
        ConnectCustomKeyStore,
        CreateAlias,
        CreateCustomKeyStore,
        CreateGrant,
        CreateKey,
        Decrypt,
        DeleteAlias,
        DeleteCustomKeyStore,
        DeleteImportedKeyMaterial,
        DeriveSharedSecret,
        DescribeCustomKeyStores,
        DescribeKey,
        DisableKey,
        DisableKeyRotation,
        DisconnectCustomKeyStore,
        EnableKey,
        EnableKeyRotation,
        Encrypt,
        GenerateDataKey,
        GenerateDataKeyPair,
        GenerateDataKeyPairWithoutPlaintext,
        GenerateDataKeyWithoutPlaintext,
        GenerateMac,
        GenerateRandom,
        GetKeyLastUsage,
        GetKeyPolicy,
        GetKeyRotationStatus,
        GetParametersForImport,
        GetPublicKey,
        ImportKeyMaterial,
        ListAliases,
        ListGrants,
        ListKeyPolicies,
        ListKeyRotations,
        ListKeys,
        ListResourceTags,
        ListRetirableGrants,
        PutKeyPolicy,
        ReEncrypt,
        ReplicateKey,
        RetireGrant,
        RevokeGrant,
        RotateKeyOnDemand,
        ScheduleKeyDeletion,
        Sign,
        TagResource,
        UntagResource,
        UpdateAlias,
        UpdateCustomKeyStore,
        UpdateKeyDescription,
        UpdatePrimaryRegion,
        Verify,
        VerifyMac,
    }
}

/// How the front reaches KMS.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "kms",
    signing_name: "kms",
    protocol: Protocol::Json {
        target_prefix: TARGET_PREFIX,
    },
    operations: KmsOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// A key made usable for another service: its ARN and whether AWS manages it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    pub key_id: String,
    pub arn: String,
    pub aws_managed: bool,
}

/// The KMS service: records in the store, key material under the master key.
pub struct KmsService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) master: MasterKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) maintenance_interval: Duration,
    /// Decides key access with key policies (installed once by the composition root).
    pub(crate) key_authorizer: std::sync::OnceLock<Arc<dyn KeyAuthorizer>>,
}

impl fmt::Debug for KmsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsService")
            .field("store", &self.store)
            .field("maintenance_interval", &self.maintenance_interval)
            .finish()
    }
}

impl KmsService {
    pub fn new(store: Arc<dyn Store>, master: MasterKey) -> Self {
        Self {
            store,
            master,
            clock: Arc::new(SystemClock),
            maintenance_interval: DEFAULT_MAINTENANCE_INTERVAL,
            key_authorizer: std::sync::OnceLock::new(),
        }
    }

    /// Installs the authorizer that evaluates key policies for callers other than the account
    /// root (see [`KeyAuthorizer`]); the first one installed stays.
    pub fn set_key_authorizer(&self, authorizer: Arc<dyn KeyAuthorizer>) {
        let _ = self.key_authorizer.set(authorizer);
    }

    /// The same service writing through `store`: the leader's maintenance job runs on a copy
    /// writing through the fenced store, so a deposed leader's writes are refused.
    #[must_use]
    pub fn writing_through(&self, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            master: self.master.clone(),
            clock: self.clock.clone(),
            maintenance_interval: self.maintenance_interval,
            key_authorizer: self.key_authorizer.clone(),
        }
    }

    /// Uses `clock` for the maintenance job's notion of now (requests use their own `now`).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs the maintenance job every `interval`.
    #[must_use]
    pub fn with_maintenance_interval(mut self, interval: Duration) -> Self {
        self.maintenance_interval = interval;
        self
    }

    /// Whether Gantry serves `op` (the rest answer `UnsupportedOperationException`).
    pub fn is_implemented(op: KmsOperation) -> bool {
        authz::AUTHORIZATION
            .binary_search_by(|(o, _, _)| o.cmp(&op.as_str()))
            .is_ok()
    }

    async fn dispatch(
        &self,
        op: KmsOperation,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, KmsError> {
        use KmsOperation::*;
        match op {
            CreateKey => key_ops::create(self, body, ctx).await,
            DescribeKey => key_ops::describe(self, body, ctx).await,
            ListKeys => key_ops::list(self, body, ctx).await,
            EnableKey => key_ops::enable(self, body, ctx).await,
            DisableKey => key_ops::disable(self, body, ctx).await,
            ScheduleKeyDeletion => key_ops::schedule_deletion(self, body, ctx).await,
            CancelKeyDeletion => key_ops::cancel_deletion(self, body, ctx).await,
            UpdateKeyDescription => key_ops::update_description(self, body, ctx).await,
            EnableKeyRotation => key_ops::enable_rotation(self, body, ctx).await,
            DisableKeyRotation => key_ops::disable_rotation(self, body, ctx).await,
            GetKeyRotationStatus => key_ops::rotation_status(self, body, ctx).await,
            RotateKeyOnDemand => key_ops::rotate_on_demand(self, body, ctx).await,
            ListKeyRotations => key_ops::list_rotations(self, body, ctx).await,
            CreateAlias => aliases::create(self, body, ctx).await,
            UpdateAlias => aliases::update(self, body, ctx).await,
            DeleteAlias => aliases::delete(self, body, ctx).await,
            ListAliases => aliases::list(self, body, ctx).await,
            Encrypt => cipher_ops::encrypt(self, body, ctx).await,
            Decrypt => cipher_ops::decrypt(self, body, ctx).await,
            ReEncrypt => cipher_ops::re_encrypt(self, body, ctx).await,
            GenerateDataKey => cipher_ops::generate_data_key_with_plaintext(self, body, ctx).await,
            GenerateDataKeyWithoutPlaintext => {
                cipher_ops::generate_data_key_without_plaintext(self, body, ctx).await
            }
            GenerateRandom => cipher_ops::generate_random(body).await,
            GetKeyPolicy => policy::get(self, body, ctx).await,
            PutKeyPolicy => policy::put(self, body, ctx).await,
            ListKeyPolicies => policy::list(self, body, ctx).await,
            TagResource => tags::tag(self, body, ctx).await,
            UntagResource => tags::untag(self, body, ctx).await,
            ListResourceTags => tags::list(self, body, ctx).await,
            other => Err(KmsError::UnsupportedOperation(format!(
                "The operation {other} is not supported by this endpoint. Gantry's KMS offers symmetric encryption keys without grants, custom key stores, imported key material or multi-Region keys."
            ))),
        }
    }

    /// The key `key` names (key id, key ARN, alias name or alias ARN) in the request's region,
    /// enabled. An AWS-managed alias (`alias/aws/...`) that does not exist yet is created, as
    /// AWS creates it when a service first needs it.
    pub async fn resolve_key(
        &self,
        ctx: &RequestContext,
        key: &str,
    ) -> Result<ResolvedKey, KmsError> {
        let record = self.usable_key(ctx, key).await?;
        Ok(ResolvedKey {
            key_id: record.key_id,
            arn: record.arn,
            aws_managed: record.manager == model::KeyManager::Aws,
        })
    }

    async fn usable_key(
        &self,
        ctx: &RequestContext,
        key: &str,
    ) -> Result<model::KeyRecord, KmsError> {
        let r = wire::key_ref(ctx, key, true)?;
        let record = match &r {
            wire::KeyRef::Alias(name) => match managed::managed_key(name) {
                Some(m) => managed::ensure(self, ctx, m).await?.value,
                None => wire::load_key(self, ctx, &r).await?.value,
            },
            wire::KeyRef::Id(_) => wire::load_key(self, ctx, &r).await?.value,
        };
        wire::usable(&record)?;
        Ok(record)
    }

    /// Encrypts `plaintext` (any size) with `key` (see [`KmsService::resolve_key`]) bound to
    /// `context`, for a service storing a value at rest on behalf of the caller of `ctx`, who
    /// must be allowed `on_behalf.action` on a customer managed key. Returns the ciphertext blob
    /// and the key's ARN.
    pub async fn encrypt_for(
        &self,
        ctx: &RequestContext,
        on_behalf: &OnBehalf<'_>,
        key: &str,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let record = self.usable_key(ctx, key).await?;
        key_access::check_on_behalf(self, ctx, &record, on_behalf)?;
        let (blob, _) = cipher_ops::seal(self, &record, plaintext, context)?;
        Ok((blob, record.arn))
    }

    /// Decrypts a blob made by [`KmsService::encrypt_for`] (or Encrypt) with the same context.
    /// The caller of `ctx` must be allowed `on_behalf.action` on a customer managed key.
    /// Returns the plaintext and the key's ARN.
    pub async fn decrypt_for(
        &self,
        ctx: &RequestContext,
        on_behalf: &OnBehalf<'_>,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let (parsed, key) = cipher_ops::key_of_blob(self, ctx, blob).await?;
        key_access::check_on_behalf(self, ctx, &key, on_behalf)?;
        let (plain, _) = cipher_ops::open(self, &key, &parsed, context)?;
        Ok((plain, key.arn))
    }

    /// Deletes keys whose deletion date has passed and rotates keys due for rotation, as of `now`
    /// (epoch ms). Returns (deleted, rotated).
    pub async fn maintain(&self, now: u64) -> Result<(usize, usize), KmsError> {
        key_ops::maintain(self, now).await
    }

    /// Runs [`KmsService::maintain`] every interval until `shutdown` turns true (or its sender
    /// is dropped).
    pub async fn run_maintenance(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.maintenance_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = tick.tick() => {
                    match self.maintain(self.clock.now_millis()).await {
                        Ok((0, 0)) => {}
                        Ok((deleted, rotated)) => tracing::debug!(deleted, rotated, "KMS maintenance"),
                        Err(error) => tracing::warn!(%error, "KMS maintenance failed; retrying next interval"),
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[async_trait]
impl JsonService for KmsService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        let Ok(op) = op.parse::<KmsOperation>() else {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("Unknown operation {TARGET_PREFIX}.{op}"),
            ));
        };
        key_access::check_request(self, op, body, ctx)
            .await
            .map_err(AwsError::from)?;
        self.dispatch(op, body, ctx).await.map_err(AwsError::from)
    }
}
