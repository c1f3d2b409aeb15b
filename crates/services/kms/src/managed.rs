//! AWS-managed keys: `alias/aws/acm`, `alias/aws/secretsmanager`, `alias/aws/ssm` and `alias/aws/ecr`, created on
//! first use (as AWS creates them when a service first needs one), with `KeyManager` `AWS`, the
//! service's key policy and yearly rotation. ListAliases shows their aliases before they exist,
//! without a `TargetKeyId`, as KMS does.

use std::collections::BTreeMap;

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, TxnOutcome, Versioned, encode};

use crate::model::{
    AliasRecord, DAY_MS, KeyManager, KeyRecord, KeyState, Material, Origin, Rotation, key_arn,
};
use crate::wire::b64;
use crate::{KmsError, KmsService, keys, policy};

/// An AWS-managed key Gantry knows how to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedKey {
    /// `alias/aws/...`.
    pub alias: &'static str,
    /// The owning service's endpoint prefix (`kms:ViaService`).
    pub service: &'static str,
    /// The owning service's name in the policy's statement id.
    pub service_name: &'static str,
    pub description: &'static str,
}

/// Every AWS-managed key Gantry creates.
pub const MANAGED_KEYS: &[ManagedKey] = &[
    ManagedKey {
        alias: "alias/aws/acm",
        service: "acm",
        service_name: "AWS Certificate Manager",
        description: "Default key that protects my ACM private keys when no other key is defined",
    },
    ManagedKey {
        alias: "alias/aws/ecr",
        service: "ecr",
        service_name: "Amazon ECR",
        description: "Default key that protects my ECR data when no other key is defined",
    },
    ManagedKey {
        alias: "alias/aws/secretsmanager",
        service: "secretsmanager",
        service_name: "AWS Secrets Manager",
        description: "Default key that protects my Secrets Manager data when no other key is defined",
    },
    ManagedKey {
        alias: "alias/aws/ssm",
        service: "ssm",
        service_name: "AWS Systems Manager",
        description: "Default key that protects my SSM parameters when no other key is defined",
    },
];

/// The managed key an alias names, if it is one.
pub fn managed_key(alias: &str) -> Option<&'static ManagedKey> {
    MANAGED_KEYS.iter().find(|m| m.alias == alias)
}

/// How often AWS rotates AWS-managed keys.
const MANAGED_ROTATION_DAYS: u32 = 365;

/// The denial a change to an AWS-managed key gets: its policy allows the account to read it only.
pub fn denied(ctx: &RequestContext, action: &str, key_arn: &str) -> KmsError {
    KmsError::AccessDenied(format!(
        "User: {} is not authorized to perform: {action} on resource: {key_arn} because no resource-based policy allows the {action} action",
        ctx.caller_arn()
    ))
}

/// A new key record with its first material version.
pub fn new_key(
    svc: &KmsService,
    ctx: &RequestContext,
    description: String,
    manager: KeyManager,
    policy: String,
    tags: BTreeMap<String, String>,
) -> KeyRecord {
    let key_id = uuid::Uuid::new_v4().to_string();
    let arn = key_arn(&ctx.region, &ctx.account_id, &key_id);
    let wrapped = svc.master.new_material(&arn, 1);
    KeyRecord {
        key_id,
        account_id: ctx.account_id.clone(),
        creation_ms: ctx.now,
        description,
        manager,
        state: KeyState::Enabled,
        deletion_ms: None,
        pending_window_days: None,
        policy,
        tags,
        materials: vec![Material {
            version: 1,
            id: hex::encode(crate::crypto::random_bytes(32)),
            wrapped: b64(&wrapped),
            created_ms: ctx.now,
            origin: Origin::Created,
        }],
        rotation: (manager == KeyManager::Aws).then_some(Rotation {
            period_days: MANAGED_ROTATION_DAYS,
            next_rotation_ms: ctx.now + u64::from(MANAGED_ROTATION_DAYS) * DAY_MS,
        }),
        arn,
    }
}

/// The key behind AWS-managed alias `m`, created (key and alias in one transaction) if this is
/// its first use in the region.
pub async fn ensure(
    svc: &KmsService,
    ctx: &RequestContext,
    m: &ManagedKey,
) -> Result<Versioned<KeyRecord>, KmsError> {
    let alias_key = keys::alias(&ctx.region, m.alias);
    for _ in 0..8 {
        if let Some(alias) = svc.store.get_typed::<AliasRecord>(&alias_key).await? {
            let key_key = keys::key(&ctx.region, &alias.value.target_key_id);
            if let Some(key) = svc.store.get_typed::<KeyRecord>(&key_key).await? {
                return Ok(key);
            }
            return Err(crate::wire::key_not_found(ctx, &alias.value.target_key_id));
        }
        let key = new_key(
            svc,
            ctx,
            m.description.to_owned(),
            KeyManager::Aws,
            policy::managed_policy(&ctx.account_id, &ctx.region, m.service, m.service_name),
            BTreeMap::new(),
        );
        let alias = AliasRecord {
            name: m.alias.to_owned(),
            target_key_id: key.key_id.clone(),
            created_ms: ctx.now,
            updated_ms: ctx.now,
        };
        let key_key = keys::key(&ctx.region, &key.key_id);
        let txn = Txn::new()
            .require_absent(&alias_key)
            .put(&key_key, encode(&key_key, &key)?)
            .put(&alias_key, encode(&alias_key, &alias)?);
        match svc.store.commit(txn).await? {
            TxnOutcome::Committed { revision } => {
                tracing::info!(alias = m.alias, key_id = %key.key_id, region = %ctx.region, "AWS-managed key created");
                return Ok(Versioned {
                    value: key,
                    revision,
                });
            }
            // Another request created it first: use theirs.
            TxnOutcome::Conflict { .. } => continue,
        }
    }
    Err(KmsError::Contention(alias_key))
}
