//! IAM's records as stored (`iam/<kind>/<lowercased name>`, access keys by id) and the
//! in-memory [`Directory`] built from them: every entity with its policies compiled once, so
//! the front authenticates and authorizes a request without touching the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use gantry_iam_policy::{Policy, PolicyKind, aws_managed_policy};
use serde::{Deserialize, Serialize};

/// A tag on a user, role, policy or instance profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// The identity policies of a user, group or role: inline (name → document, as sent) and
/// attached managed policy ARNs (in attachment order).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Policies {
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: Vec<String>,
    /// Compiled inline documents, rebuilt by [`Policies::compile`].
    #[serde(skip)]
    pub compiled: Vec<Arc<Policy>>,
}

impl Policies {
    /// Compiles the inline documents (they were validated when written).
    pub fn compile(&mut self) {
        self.compiled = self
            .inline
            .values()
            .filter_map(|doc| Policy::parse(doc, PolicyKind::Identity).ok().map(Arc::new))
            .collect();
    }
}

/// An IAM user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub path: String,
    /// `AIDA…`.
    pub id: String,
    pub create_date: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub policies: Policies,
    /// Names of the groups the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub permissions_boundary: Option<String>,
}

/// An IAM group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub path: String,
    /// `AGPA…`.
    pub id: String,
    pub create_date: u64,
    #[serde(default)]
    pub policies: Policies,
}

/// An IAM role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub path: String,
    /// `AROA…`.
    pub id: String,
    pub create_date: u64,
    /// The trust policy, as sent.
    pub trust_policy: String,
    #[serde(default)]
    pub description: Option<String>,
    pub max_session_duration: u32,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub policies: Policies,
    #[serde(default)]
    pub permissions_boundary: Option<String>,
    /// Set for roles made by CreateServiceLinkedRole: their service principal.
    #[serde(default)]
    pub service_linked: Option<String>,
    #[serde(skip)]
    pub trust_compiled: Option<Arc<Policy>>,
}

impl Role {
    pub fn compile(&mut self) {
        self.policies.compile();
        self.trust_compiled = Policy::parse(&self.trust_policy, PolicyKind::Trust)
            .ok()
            .map(Arc::new);
    }
}

/// One version of a customer-managed policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `v1`, `v2`, ...
    pub id: String,
    pub document: String,
    pub create_date: u64,
}

/// A customer-managed policy with its versions (at most five).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagedPolicy {
    pub name: String,
    pub path: String,
    /// `ANPA…`.
    pub id: String,
    pub create_date: u64,
    pub update_date: u64,
    #[serde(default)]
    pub description: Option<String>,
    pub default_version: String,
    pub versions: Vec<PolicyVersion>,
    /// The number the next version gets.
    pub next_version: u32,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(skip)]
    pub compiled: Option<Arc<Policy>>,
}

impl ManagedPolicy {
    pub fn arn(&self, account: &str) -> String {
        format!("arn:aws:iam::{account}:policy{}{}", self.path, self.name)
    }

    pub fn default_document(&self) -> &str {
        self.versions
            .iter()
            .find(|v| v.id == self.default_version)
            .map_or("", |v| v.document.as_str())
    }

    pub fn compile(&mut self) {
        self.compiled = Policy::parse(self.default_document(), PolicyKind::Identity)
            .ok()
            .map(Arc::new);
    }
}

/// `Active` or `Inactive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Active" => Some(KeyStatus::Active),
            "Inactive" => Some(KeyStatus::Inactive),
            _ => None,
        }
    }
}

/// When and where an access key was last used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUsed {
    pub date: u64,
    pub service: String,
    pub region: String,
}

/// An access key of a user. The secret is stored sealed by the [`crate::Sealer`] only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKey {
    /// `AKIA…`.
    pub id: String,
    pub user: String,
    pub status: KeyStatus,
    pub create_date: u64,
    /// The secret, sealed (base64).
    pub sealed_secret: String,
    #[serde(default)]
    pub last_used: Option<LastUsed>,
}

/// An instance profile: a container for one role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceProfile {
    pub name: String,
    pub path: String,
    /// `AIPA…`.
    pub id: String,
    pub create_date: u64,
    /// Role names (at most one).
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// Every IAM entity of the account, in memory. Keys are lowercased names (IAM names are unique
/// case-insensitively), access keys by id.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    pub roles: BTreeMap<String, Role>,
    pub policies: BTreeMap<String, ManagedPolicy>,
    pub keys: BTreeMap<String, AccessKey>,
    /// Opened secrets of the access keys, by key id.
    pub secrets: BTreeMap<String, String>,
    pub profiles: BTreeMap<String, InstanceProfile>,
}

/// The compiled policy of a managed policy ARN: customer-managed from the directory,
/// AWS-managed from the ones Gantry ships.
pub fn managed_policy(dir: &Directory, account: &str, arn: &str) -> Option<Arc<Policy>> {
    if let Some(p) = aws_managed(arn) {
        return Some(p);
    }
    let name = arn.rsplit('/').next()?;
    let p = dir.policies.get(&name.to_ascii_lowercase())?;
    (p.arn(account) == arn).then(|| p.compiled.clone())?
}

fn aws_managed(arn: &str) -> Option<Arc<Policy>> {
    use std::sync::OnceLock;
    static COMPILED: OnceLock<BTreeMap<&'static str, Arc<Policy>>> = OnceLock::new();
    let all = COMPILED.get_or_init(|| {
        gantry_iam_policy::AWS_MANAGED_POLICIES
            .iter()
            .filter_map(|m| Some((m.arn, Arc::new(m.policy().ok()?))))
            .collect()
    });
    all.get(arn).cloned()
}

/// Whether `arn` is an AWS-managed policy Gantry ships.
pub fn is_aws_managed(arn: &str) -> bool {
    aws_managed_policy(arn).is_some() && arn.starts_with("arn:aws:iam::aws:policy/")
}
