//! Secrets Manager (awsJson1.1, target prefix `secretsmanager`): secrets with versions and staging
//! labels, encrypted at rest with the secret's KMS key, recovery windows, resource policies, tags
//! and random passwords, over the Gantry store.
//!
//! - **Records**: one per secret (metadata and the version index: labels, dates, the KMS key of
//!   each version) and one per version holding only its ciphertext. Every write (a new version,
//!   its labels, outdated versions removed) is one compare-and-swap transaction: acknowledged
//!   means durable, a failure leaves nothing half-written.
//! - **Encryption**: each value is encrypted through [`SecretCipher`] (the composition root
//!   implements it with `gantry-kms`; service crates never depend on each other) with the
//!   encryption context `{"SecretARN": arn, "SecretVersionId": id}`, under the secret's key or
//!   the AWS-managed `alias/aws/secretsmanager` (created on first use). Plaintext is never
//!   stored, logged, or quoted in an error.
//! - **Identifiers**: ARNs end with AWS's random 6-character suffix; `SecretId` takes the name,
//!   the partial ARN (without the suffix) or the full ARN ([`wire::secret_ref`]).
//! - **Deletion**: DeleteSecret waits 7-30 days (RestoreSecret undoes it) or deletes at once with
//!   `ForceDeleteWithoutRecovery`; [`SecretsManagerService::run_maintenance`] removes secrets
//!   whose window is over (reads treat them as gone before it runs).
//! - **For tasks**: [`SecretsManagerService::get_secret_value_for`] is GetSecretValue as a
//!   function, and [`reference::SecretReference`] parses ECS's `valueFrom`
//!   (`arn:...:secret:name-XXXXXX:json-key:version-stage:version-id`).
//!
//! Every operation of the model is listed in [`SmOperation`]; rotation and replication answer
//! `InvalidRequestException` saying Gantry does not run them. The operation table with each
//! operation's IAM action and resource is [`authz::AUTHORIZATION`].
//!
//! Must not depend on Docker or any other service crate.

#[rustfmt::skip]
mod model_constraints;
pub mod authz;
mod error;
mod keys;
mod model;
mod password;
mod policy;
pub mod reference;
mod secrets;
mod stages;
mod values;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_front::{Clock, JsonService, Protocol, RequestContext, ServiceSpec, SystemClock};
use gantry_store::Store;
use serde_json::Value;

pub use error::SmError;
pub use values::ResolvedSecret;
pub use wire::SecretValue;

/// The `X-Amz-Target` prefix of Secrets Manager.
pub const TARGET_PREFIX: &str = "secretsmanager";

/// The AWS-managed key secrets use when they name none.
pub const DEFAULT_KEY: &str = "alias/aws/secretsmanager";

/// How often the maintenance job runs unless configured otherwise.
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

gantry_front::operations! {
    /// Every operation of the Secrets Manager API model.
    pub enum SmOperation {
        BatchGetSecretValue,
        CancelRotateSecret,
        CreateSecret,
        DeleteResourcePolicy,
        DeleteSecret,
        DescribeSecret,
        GetRandomPassword,
        GetResourcePolicy,
        GetSecretValue,
        ListSecretVersionIds,
        ListSecrets,
        PutResourcePolicy,
        PutSecretValue,
        RemoveRegionsFromReplication,
        ReplicateSecretToRegions,
        RestoreSecret,
        RotateSecret,
        StopReplicationToReplica,
        TagResource,
        UntagResource,
        UpdateSecret,
        UpdateSecretVersionStage,
        ValidateResourcePolicy,
    }
}

/// How the front reaches Secrets Manager.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "secretsmanager",
    signing_name: "secretsmanager",
    protocol: Protocol::Json {
        target_prefix: TARGET_PREFIX,
    },
    operations: SmOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// An encryption context: `SecretARN` and `SecretVersionId`.
pub type EncryptionContext = BTreeMap<String, String>;

/// A value encrypted by KMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The ciphertext blob (it names its key).
    pub blob: Vec<u8>,
    /// The ARN of the key that encrypted it.
    pub key_arn: String,
}

/// Why KMS refused: its error code and message (`DisabledException`, "arn:... is disabled."),
/// or an internal failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFailure {
    pub code: String,
    pub message: String,
    /// The failure is KMS's own (its store), not the key's state or the caller's input.
    pub internal: bool,
}

/// How Secrets Manager uses KMS keys. The composition root implements it over `gantry-kms`.
#[async_trait]
pub trait SecretCipher: Send + Sync + fmt::Debug {
    /// Encrypts `plaintext` with `key` (a key id, key ARN, alias name or alias ARN; `None` for
    /// [`DEFAULT_KEY`], created on first use) bound to `context`.
    async fn encrypt(
        &self,
        ctx: &RequestContext,
        key: Option<&str>,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KeyFailure>;

    /// Decrypts a blob made by [`SecretCipher::encrypt`] with the same context.
    async fn decrypt(
        &self,
        ctx: &RequestContext,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KeyFailure>;

    /// Checks that `key` names an enabled key; returns its key ARN.
    async fn check_key(&self, ctx: &RequestContext, key: &str) -> Result<String, KeyFailure>;
}

/// The Secrets Manager service.
pub struct SecretsManagerService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cipher: Arc<dyn SecretCipher>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) locks: Arc<wire::SecretLocks>,
    pub(crate) maintenance_interval: Duration,
}

impl fmt::Debug for SecretsManagerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerService")
            .field("store", &self.store)
            .field("cipher", &self.cipher)
            .finish()
    }
}

impl SecretsManagerService {
    pub fn new(store: Arc<dyn Store>, cipher: Arc<dyn SecretCipher>) -> Self {
        Self {
            store,
            cipher,
            clock: Arc::new(SystemClock),
            locks: Arc::default(),
            maintenance_interval: DEFAULT_MAINTENANCE_INTERVAL,
        }
    }

    /// The same service writing through `store`: the leader's maintenance job runs on a copy
    /// writing through the fenced store, so a deposed leader's writes are refused.
    #[must_use]
    pub fn writing_through(&self, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cipher: self.cipher.clone(),
            clock: self.clock.clone(),
            locks: self.locks.clone(),
            maintenance_interval: self.maintenance_interval,
        }
    }

    /// Uses `clock` for the maintenance job's notion of now.
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

    /// Whether Gantry serves `op` fully (the rest answer `InvalidRequestException`).
    pub fn is_implemented(op: SmOperation) -> bool {
        use SmOperation::*;
        !matches!(
            op,
            RotateSecret
                | CancelRotateSecret
                | ReplicateSecretToRegions
                | RemoveRegionsFromReplication
                | StopReplicationToReplica
        )
    }

    async fn dispatch(
        &self,
        op: SmOperation,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, SmError> {
        use SmOperation::*;
        match op {
            CreateSecret => secrets::create(self, body, ctx).await,
            DescribeSecret => secrets::describe(self, body, ctx).await,
            ListSecrets => secrets::list(self, body, ctx).await,
            UpdateSecret => secrets::update(self, body, ctx).await,
            DeleteSecret => secrets::delete(self, body, ctx).await,
            RestoreSecret => secrets::restore(self, body, ctx).await,
            TagResource => secrets::tag(self, body, ctx).await,
            UntagResource => secrets::untag(self, body, ctx).await,
            GetSecretValue => values::get(self, body, ctx).await,
            BatchGetSecretValue => values::batch_get(self, body, ctx).await,
            PutSecretValue => values::put(self, body, ctx).await,
            UpdateSecretVersionStage => values::update_stage(self, body, ctx).await,
            ListSecretVersionIds => values::list_versions(self, body, ctx).await,
            PutResourcePolicy => policy::put(self, body, ctx).await,
            GetResourcePolicy => policy::get(self, body, ctx).await,
            DeleteResourcePolicy => policy::delete(self, body, ctx).await,
            ValidateResourcePolicy => policy::validate(self, body, ctx).await,
            GetRandomPassword => password::get_random_password(body),
            RotateSecret | CancelRotateSecret => {
                secrets::unsupported(self, body, ctx, "Rotation").await
            }
            ReplicateSecretToRegions | RemoveRegionsFromReplication | StopReplicationToReplica => {
                secrets::unsupported(self, body, ctx, "Replication").await
            }
        }
    }

    /// GetSecretValue as a function: the value of `secret_id` (name, partial or full ARN) at
    /// `version_id` and/or `version_stage` (default `AWSCURRENT`), decrypted, with the errors
    /// GetSecretValue answers. For resolving a task's `secrets` and `repositoryCredentials`.
    pub async fn get_secret_value_for(
        &self,
        ctx: &RequestContext,
        secret_id: &str,
        version_id: Option<&str>,
        version_stage: Option<&str>,
    ) -> Result<ResolvedSecret, SmError> {
        values::read(self, ctx, secret_id, version_id, version_stage).await
    }

    /// The full ARN and resource policy of `secret_id` (name, partial or full ARN), for the
    /// authorization point; `None` when no such secret exists.
    pub async fn resource_of(
        &self,
        ctx: &RequestContext,
        secret_id: &str,
    ) -> Result<Option<(String, Option<String>)>, SmError> {
        match wire::load_secret(self, ctx, secret_id).await {
            Ok(s) => Ok(Some((s.value.arn, s.value.policy))),
            Err(SmError::ResourceNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes every secret whose recovery window is over as of `now`; returns how many.
    pub async fn maintain(&self, now: u64) -> Result<usize, SmError> {
        secrets::purge_expired(self, now).await
    }

    /// Runs [`SecretsManagerService::maintain`] every interval until `shutdown` turns true.
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
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "secrets deleted at the end of their recovery window"),
                        Err(error) => tracing::warn!(%error, "Secrets Manager maintenance failed; retrying next interval"),
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
impl JsonService for SecretsManagerService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        let Ok(op) = op.parse::<SmOperation>() else {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("Unknown operation {TARGET_PREFIX}.{op}"),
            ));
        };
        self.dispatch(op, body, ctx).await.map_err(AwsError::from)
    }
}
