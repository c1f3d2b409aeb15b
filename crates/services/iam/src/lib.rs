//! IAM (`iam`, API version 2010-05-08) over the awsQuery protocol, and the directory of
//! principals the front authenticates and authorizes requests with.
//!
//! - [`IamService`]: a [`QueryService`] for the front. Users, groups and membership, access keys
//!   (the secret is returned once by CreateAccessKey and stored sealed by the [`Sealer`] the
//!   composition root gives, never returned again), roles with trust policies, customer-managed
//!   policies with at most five versions, inline policies, attachments, instance profiles,
//!   `CreateServiceLinkedRole` for ECS, tags, `GetAccountAuthorizationDetails`,
//!   `SimulatePrincipalPolicy`, `Marker` pagination. Documents are validated by
//!   `gantry-iam-policy` on write (`MalformedPolicyDocument`, the size quotas). IAM is global:
//!   ARNs carry no region. Every operation of the model is listed in [`IamOperation`]; the
//!   others answer `NotImplemented`.
//! - The directory ([`model::Directory`]): every entity in memory with its policies compiled,
//!   written through to the store (`iam/<kind>/<lowercased name>`, `iam/key/<id>`), so that
//!   [`IamService::principal_for_key`] and [`IamService::policies_for`] answer without I/O.
//! - Sessions ([`session`]): the temporary credentials STS hands out (`ASIA…` with a session
//!   token that seals the session, so any server with the same master key verifies it).
//!
//! A service crate: depends on the front, the wire layer, the store and the policy language,
//! never on another service. Must not depend on Docker.

#[rustfmt::skip]
mod model_constraints;
mod error;
pub mod model;
mod ops;
pub mod principals;
pub mod session;
pub mod sts;
pub mod wire;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::query::QueryRequest;
use gantry_front::{Protocol, QueryService, RequestContext, ServiceSpec};
use gantry_store::{Store, Txn};
use parking_lot::RwLock;

pub use error::IamError;
use model::{AccessKey, Directory, Group, InstanceProfile, ManagedPolicy, Role, User};
use wire::Params;

/// The XML namespace of IAM responses.
pub const XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

gantry_front::operations! {
/// Every operation of the IAM API model.
pub enum IamOperation {
AcceptDelegationRequest, AddClientIDToOpenIDConnectProvider, AddRoleToInstanceProfile,
AddUserToGroup, AssociateDelegationRequest, AttachGroupPolicy, AttachRolePolicy,
AttachUserPolicy, ChangePassword, CreateAccessKey, CreateAccountAlias, CreateDelegationRequest,
CreateGroup, CreateInstanceProfile, CreateLoginProfile, CreateOpenIDConnectProvider,
CreatePolicy, CreatePolicyVersion, CreateRole, CreateSAMLProvider, CreateServiceLinkedRole,
CreateServiceSpecificCredential, CreateUser, CreateVirtualMFADevice, DeactivateMFADevice,
DeleteAccessKey, DeleteAccountAlias, DeleteAccountPasswordPolicy, DeleteGroup,
DeleteGroupPolicy, DeleteInstanceProfile, DeleteLoginProfile, DeleteOpenIDConnectProvider,
DeletePolicy, DeletePolicyVersion, DeleteRole, DeleteRolePermissionsBoundary, DeleteRolePolicy,
DeleteSAMLProvider, DeleteSSHPublicKey, DeleteServerCertificate, DeleteServiceLinkedRole,
DeleteServiceSpecificCredential, DeleteSigningCertificate, DeleteUser,
DeleteUserPermissionsBoundary, DeleteUserPolicy, DeleteVirtualMFADevice, DetachGroupPolicy,
DetachRolePolicy, DetachUserPolicy, DisableOrganizationsRootCredentialsManagement,
DisableOrganizationsRootSessions, DisableOutboundWebIdentityFederation, EnableMFADevice,
EnableOrganizationsRootCredentialsManagement, EnableOrganizationsRootSessions,
EnableOutboundWebIdentityFederation, GenerateCredentialReport,
GenerateOrganizationsAccessReport, GenerateServiceLastAccessedDetails, GetAccessKeyLastUsed,
GetAccountAuthorizationDetails, GetAccountPasswordPolicy, GetAccountSummary,
GetContextKeysForCustomPolicy, GetContextKeysForPrincipalPolicy, GetCredentialReport,
GetDelegationRequest, GetGroup, GetGroupPolicy, GetHumanReadableSummary, GetInstanceProfile,
GetLoginProfile, GetMFADevice, GetOpenIDConnectProvider, GetOrganizationsAccessReport,
GetOutboundWebIdentityFederationInfo, GetPolicy, GetPolicyVersion, GetRole, GetRolePolicy,
GetSAMLProvider, GetSSHPublicKey, GetServerCertificate, GetServiceLastAccessedDetails,
GetServiceLastAccessedDetailsWithEntities, GetServiceLinkedRoleDeletionStatus, GetUser,
GetUserPolicy, ListAccessKeys, ListAccountAliases, ListAttachedGroupPolicies,
ListAttachedRolePolicies, ListAttachedUserPolicies, ListDelegationRequests,
ListEntitiesForPolicy, ListGroupPolicies, ListGroups, ListGroupsForUser,
ListInstanceProfileTags, ListInstanceProfiles, ListInstanceProfilesForRole, ListMFADeviceTags,
ListMFADevices, ListOpenIDConnectProviderTags, ListOpenIDConnectProviders,
ListOrganizationsFeatures, ListPolicies, ListPoliciesGrantingServiceAccess, ListPolicyTags,
ListPolicyVersions, ListRolePolicies, ListRoleTags, ListRoles, ListSAMLProviderTags,
ListSAMLProviders, ListSSHPublicKeys, ListServerCertificateTags, ListServerCertificates,
ListServiceSpecificCredentials, ListSigningCertificates, ListUserPolicies, ListUserTags,
ListUsers, ListVirtualMFADevices, PutGroupPolicy, PutRolePermissionsBoundary, PutRolePolicy,
PutUserPermissionsBoundary, PutUserPolicy, RejectDelegationRequest,
RemoveClientIDFromOpenIDConnectProvider, RemoveRoleFromInstanceProfile, RemoveUserFromGroup,
ResetServiceSpecificCredential, ResyncMFADevice, SendDelegationToken, SetDefaultPolicyVersion,
SetSecurityTokenServicePreferences, SimulateCustomPolicy, SimulatePrincipalPolicy,
TagInstanceProfile, TagMFADevice, TagOpenIDConnectProvider, TagPolicy, TagRole,
TagSAMLProvider, TagServerCertificate, TagUser, UntagInstanceProfile, UntagMFADevice,
UntagOpenIDConnectProvider, UntagPolicy, UntagRole, UntagSAMLProvider,
UntagServerCertificate, UntagUser, UpdateAccessKey, UpdateAccountPasswordPolicy,
UpdateAssumeRolePolicy, UpdateDelegationRequest, UpdateGroup, UpdateLoginProfile,
UpdateOpenIDConnectProviderThumbprint, UpdateRole, UpdateRoleDescription, UpdateSAMLProvider,
UpdateSSHPublicKey, UpdateServerCertificate, UpdateServiceSpecificCredential,
UpdateSigningCertificate, UpdateUser, UploadSSHPublicKey, UploadServerCertificate,
UploadSigningCertificate,
}
}

/// How the front reaches IAM.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "iam",
    signing_name: "iam",
    protocol: Protocol::Query {
        xmlns: XMLNS,
        version: "2010-05-08",
    },
    operations: IamOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// Seals secrets at rest (access key secrets) and session tokens, bound to a purpose string
/// (associated data). The composition root implements it with the data dir's master key.
pub trait Sealer: Send + Sync + fmt::Debug {
    fn seal(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8>;
    /// `None` when the bytes were not sealed by this sealer for `purpose`, or were altered.
    fn open(&self, purpose: &str, sealed: &[u8]) -> Option<Vec<u8>>;
}

/// One write to the directory and the store.
#[derive(Debug)]
pub(crate) enum Change {
    User(User),
    DeleteUser(String),
    Group(Group),
    DeleteGroup(String),
    Role(Role),
    DeleteRole(String),
    Policy(ManagedPolicy),
    DeletePolicy(String),
    Key(AccessKey, Option<String>),
    DeleteKey(String),
    Profile(InstanceProfile),
    DeleteProfile(String),
}

pub(crate) const PREFIX: &str = "iam/";

fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The IAM API and the account's directory of principals.
pub struct IamService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sealer: Arc<dyn Sealer>,
    pub(crate) account: String,
    pub(crate) dir: RwLock<Directory>,
    /// Serialises writes: each reads the directory, commits, then applies.
    pub(crate) write: tokio::sync::Mutex<()>,
    /// What the front asks on every request (the principal of an access key, the policies of
    /// a principal), kept while the directory does not change (`principals.rs`).
    pub(crate) answers: principals::Answers,
}

impl fmt::Debug for IamService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamService")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl IamService {
    /// Loads the directory of `account` from the store.
    pub async fn open(
        store: Arc<dyn Store>,
        sealer: Arc<dyn Sealer>,
        account: impl Into<String>,
    ) -> Result<Self, IamError> {
        let dir = load_directory(store.as_ref(), sealer.as_ref()).await?;
        Ok(Self {
            store,
            sealer,
            account: account.into(),
            dir: RwLock::new(dir),
            write: tokio::sync::Mutex::new(()),
            answers: principals::Answers::default(),
        })
    }

    /// The account these principals belong to.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Keeps the directory current with what other server replicas write: reloads it whenever
    /// the store reports a change under `iam/`, until `shutdown`. Only needed when several
    /// servers share the store.
    pub async fn follow(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut watch = self.store.watch(PREFIX);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                event = watch.next() => {
                    if let Err(gantry_store::WatchError::Closed) = event {
                        return;
                    }
                }
            }
            // One reload for everything that arrived meanwhile.
            while let Some(Ok(_)) = watch.try_next() {}
            let _writing = self.write.lock().await;
            match load_directory(self.store.as_ref(), self.sealer.as_ref()).await {
                Ok(dir) => {
                    let mut current = self.dir.write();
                    *current = dir;
                    self.answers.invalidate();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reloading IAM after a change elsewhere failed")
                }
            }
        }
    }

    /// Commits `changes` in one transaction, then applies them to the directory. Callers hold
    /// `self.write`.
    pub(crate) async fn apply(&self, changes: Vec<Change>) -> Result<(), IamError> {
        let mut txn = Txn::new();
        for c in &changes {
            txn = match c {
                Change::User(u) => txn.put(format!("{PREFIX}user/{}", lower(&u.name)), enc(u)),
                Change::DeleteUser(n) => txn.delete(format!("{PREFIX}user/{}", lower(n))),
                Change::Group(g) => txn.put(format!("{PREFIX}group/{}", lower(&g.name)), enc(g)),
                Change::DeleteGroup(n) => txn.delete(format!("{PREFIX}group/{}", lower(n))),
                Change::Role(r) => txn.put(format!("{PREFIX}role/{}", lower(&r.name)), enc(r)),
                Change::DeleteRole(n) => txn.delete(format!("{PREFIX}role/{}", lower(n))),
                Change::Policy(p) => txn.put(format!("{PREFIX}policy/{}", lower(&p.name)), enc(p)),
                Change::DeletePolicy(n) => txn.delete(format!("{PREFIX}policy/{}", lower(n))),
                Change::Key(k, _) => txn.put(format!("{PREFIX}key/{}", k.id), enc(k)),
                Change::DeleteKey(id) => txn.delete(format!("{PREFIX}key/{id}")),
                Change::Profile(p) => {
                    txn.put(format!("{PREFIX}profile/{}", lower(&p.name)), enc(p))
                }
                Change::DeleteProfile(n) => txn.delete(format!("{PREFIX}profile/{}", lower(n))),
            };
        }
        self.store.commit(txn).await?;
        let mut dir = self.dir.write();
        // Under the write lock: no reader sees the new directory with the old answers.
        self.answers.invalidate();
        for c in changes {
            match c {
                Change::User(mut u) => {
                    u.policies.compile();
                    dir.users.insert(lower(&u.name), u);
                }
                Change::DeleteUser(n) => {
                    dir.users.remove(&lower(&n));
                }
                Change::Group(mut g) => {
                    g.policies.compile();
                    dir.groups.insert(lower(&g.name), g);
                }
                Change::DeleteGroup(n) => {
                    dir.groups.remove(&lower(&n));
                }
                Change::Role(mut r) => {
                    r.compile();
                    dir.roles.insert(lower(&r.name), r);
                }
                Change::DeleteRole(n) => {
                    dir.roles.remove(&lower(&n));
                }
                Change::Policy(mut p) => {
                    p.compile();
                    dir.policies.insert(lower(&p.name), p);
                }
                Change::DeletePolicy(n) => {
                    dir.policies.remove(&lower(&n));
                }
                Change::Key(k, secret) => {
                    if let Some(s) = secret {
                        dir.secrets.insert(k.id.clone(), s);
                    }
                    dir.keys.insert(k.id.clone(), k);
                }
                Change::DeleteKey(id) => {
                    dir.keys.remove(&id);
                    dir.secrets.remove(&id);
                }
                Change::Profile(p) => {
                    dir.profiles.insert(lower(&p.name), p);
                }
                Change::DeleteProfile(n) => {
                    dir.profiles.remove(&lower(&n));
                }
            }
        }
        Ok(())
    }

    /// Whether Gantry serves `op` (the others answer `NotImplemented`).
    pub fn is_implemented(op: IamOperation) -> bool {
        ops::SERVED.contains(&op)
    }

    async fn dispatch(
        &self,
        op: IamOperation,
        p: &Params,
        ctx: &RequestContext,
    ) -> Result<String, IamError> {
        ops::dispatch(self, op, p, ctx).await
    }
}

/// A record as stored (JSON).
fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

pub(crate) fn key_purpose(id: &str) -> String {
    format!("iam-access-key-secret:{id}")
}

fn open_secret(sealer: &dyn Sealer, k: &AccessKey) -> Option<String> {
    use base64::Engine;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&k.sealed_secret)
        .ok()?;
    String::from_utf8(sealer.open(&key_purpose(&k.id), &sealed)?).ok()
}

#[async_trait]
impl QueryService for IamService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(
        &self,
        action: &str,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<String, AwsError> {
        let op: IamOperation = action.parse().map_err(|_| {
            AwsError::client(
                "InvalidAction",
                format!("Could not find operation {action} for version 2010-05-08"),
            )
        })?;
        let p = Params::from_request(req);
        self.dispatch(op, &p, ctx).await.map_err(AwsError::from)
    }
}

/// Reads every IAM record into a directory.
async fn load_directory(store: &dyn Store, sealer: &dyn Sealer) -> Result<Directory, IamError> {
    let mut dir = Directory::default();
    let mut after: Option<String> = None;
    loop {
        let page = store.scan(PREFIX, after.as_deref(), 1000).await?;
        for rec in &page.records {
            let rest = &rec.key[PREFIX.len()..];
            let Some((kind, name)) = rest.split_once('/') else {
                continue;
            };
            let bad = |e: serde_json::Error| IamError::Internal(format!("{}: {e}", rec.key));
            match kind {
                "user" => {
                    let mut u: User = serde_json::from_slice(&rec.value).map_err(bad)?;
                    u.policies.compile();
                    dir.users.insert(name.to_owned(), u);
                }
                "group" => {
                    let mut g: Group = serde_json::from_slice(&rec.value).map_err(bad)?;
                    g.policies.compile();
                    dir.groups.insert(name.to_owned(), g);
                }
                "role" => {
                    let mut r: Role = serde_json::from_slice(&rec.value).map_err(bad)?;
                    r.compile();
                    dir.roles.insert(name.to_owned(), r);
                }
                "policy" => {
                    let mut p: ManagedPolicy = serde_json::from_slice(&rec.value).map_err(bad)?;
                    p.compile();
                    dir.policies.insert(name.to_owned(), p);
                }
                "key" => {
                    let k: AccessKey = serde_json::from_slice(&rec.value).map_err(bad)?;
                    match open_secret(sealer, &k) {
                        Some(s) => {
                            dir.secrets.insert(k.id.clone(), s);
                        }
                        None => tracing::error!(
                            access_key_id = %k.id,
                            "an access key's secret does not open with this data dir's master key"
                        ),
                    }
                    dir.keys.insert(name.to_owned(), k);
                }
                "profile" => {
                    let p: InstanceProfile = serde_json::from_slice(&rec.value).map_err(bad)?;
                    dir.profiles.insert(name.to_owned(), p);
                }
                _ => {}
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok(dir)
}
