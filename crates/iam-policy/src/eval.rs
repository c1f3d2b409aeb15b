//! Evaluation: AWS's "Policy evaluation logic", over compiled policies.
//!
//! 1. An explicit `Deny` in any applicable policy (identity-based, resource-based, permissions
//!    boundary, session) decides.
//! 2. The account root is allowed within its account (identity policies, boundaries and session
//!    policies do not apply to it); a service principal needs the resource-based policy.
//! 3. Within one account, an `Allow` from the identity-based policies — intersected with the
//!    permissions boundary if there is one, and for sessions with the session policies if any
//!    were passed (a federated user session needs one) — OR from the resource-based policy
//!    grants. How far a resource-based `Allow` reaches depends on how it names the caller (AWS's
//!    table "Resource-based policies and implicit denies in other policy types"):
//!    - the caller's own ARN (IAM user, role session, federated user session), or `*`: granted
//!      even when identity policies, boundary and session policies have no `Allow`;
//!    - the role of a role session, or the IAM user behind a federated user session: granted
//!      unless the permissions boundary or a session policy lacks an `Allow`;
//!    - the account: delegates to the identity-based policies (grants nothing by itself).
//! 4. A role trust policy must always allow (`sts:AssumeRole` and friends): the trust policy
//!    AND the caller's side; naming the caller directly is enough within the account.
//! 5. Across accounts both sides must allow: the caller's identity chain (3) AND the resource
//!    policy (any way of naming the caller, the account included).
//!
//! Several resources in one request are evaluated one by one; the request is allowed when every
//! one is, and the first denied one is reported.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::document::{Effect, PolicyKind};
use crate::policy::{CallerIds, Policy, PrincipalMatch};
use crate::vars::{CtxValue, Lookup, Values};

/// The kind of principal making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The account root user (`arn:aws:iam::<account>:root`).
    Root,
    /// An IAM user.
    User,
    /// A role session (`arn:aws:sts::<account>:assumed-role/<role>/<session>`); `role_arn` is the
    /// role's IAM ARN with its path.
    AssumedRole { role_arn: String },
    /// A federated user session (`GetFederationToken`); `user_arn` is the IAM user who federated.
    FederatedUser { user_arn: String },
    /// An AWS service principal (`ecs-tasks.amazonaws.com`), named by `Principal::name`.
    Service,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The caller's ARN as it appears in denial messages and `aws:PrincipalArn`-style checks:
    /// user ARN, session ARN, root ARN, or the service name for services.
    pub arn: String,
    /// The caller's account id (empty for services).
    pub account: String,
    pub kind: PrincipalKind,
    /// `aws:userid`: `AIDA…` for users, `<role-id>:<session>` for role sessions, the account id
    /// for root.
    pub user_id: String,
    /// The friendly name: user name (`aws:username`), session name, or service name.
    pub name: String,
    /// Principal tags (`aws:PrincipalTag/<key>`), keys compared case-insensitively.
    pub tags: Vec<(String, String)>,
}

impl Principal {
    /// The root user of `account`.
    pub fn root(account: &str) -> Self {
        Principal {
            arn: format!("arn:aws:iam::{account}:root"),
            account: account.to_string(),
            kind: PrincipalKind::Root,
            user_id: account.to_string(),
            name: String::new(),
            tags: Vec::new(),
        }
    }

    /// The IAM user `name` at `path` (`/` or `/dev/`) in `account`, with its unique id.
    pub fn user(account: &str, path: &str, name: &str, user_id: &str) -> Self {
        Principal {
            arn: format!("arn:aws:iam::{account}:user{path}{name}"),
            account: account.to_string(),
            kind: PrincipalKind::User,
            user_id: user_id.to_string(),
            name: name.to_string(),
            tags: Vec::new(),
        }
    }

    /// A session `session` of role `role_name` at `path`, whose unique id is `role_id`.
    pub fn assumed_role(
        account: &str,
        path: &str,
        role_name: &str,
        role_id: &str,
        session: &str,
    ) -> Self {
        Principal {
            arn: format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
            account: account.to_string(),
            kind: PrincipalKind::AssumedRole {
                role_arn: format!("arn:aws:iam::{account}:role{path}{role_name}"),
            },
            user_id: format!("{role_id}:{session}"),
            name: session.to_string(),
            tags: Vec::new(),
        }
    }

    /// A service principal such as `ecs-tasks.amazonaws.com`.
    pub fn service(name: &str) -> Self {
        Principal {
            arn: name.to_string(),
            account: String::new(),
            kind: PrincipalKind::Service,
            user_id: String::new(),
            name: name.to_string(),
            tags: Vec::new(),
        }
    }

    /// Adds a principal tag.
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.to_string(), value.to_string()));
        self
    }

    /// `aws:PrincipalType`.
    pub fn principal_type(&self) -> &'static str {
        match self.kind {
            PrincipalKind::Root => "Account",
            PrincipalKind::User => "User",
            PrincipalKind::AssumedRole { .. } => "AssumedRole",
            PrincipalKind::FederatedUser { .. } => "FederatedUser",
            PrincipalKind::Service => "Service",
        }
    }

    fn is_session(&self) -> bool {
        matches!(
            self.kind,
            PrincipalKind::AssumedRole { .. } | PrincipalKind::FederatedUser { .. }
        )
    }

    fn caller_ids(&self) -> CallerIds<'_> {
        CallerIds {
            arn: &self.arn,
            account: &self.account,
            underlying_arn: match &self.kind {
                PrincipalKind::AssumedRole { role_arn } => Some(role_arn),
                PrincipalKind::FederatedUser { user_arn } => Some(user_arn),
                _ => None,
            },
            service: matches!(self.kind, PrincipalKind::Service).then_some(self.name.as_str()),
        }
    }
}

/// The request context: condition keys and their values. Keys are case-insensitive; a key may
/// hold several values (`aws:TagKeys`). Keys derived from the principal (`aws:username`,
/// `aws:userid`, `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalType`,
/// `aws:PrincipalTag/*`, `aws:PrincipalServiceName`) come from [`Principal`] and are not read
/// from here.
///
/// Keys may also be deferred ([`Context::deferred`]): computed the first time evaluation (or
/// [`Context::get`], [`Context::keys`]) looks at a key that is not set directly, so a request
/// whose applicable statements have no conditions never builds them.
#[derive(Clone, Default)]
pub struct Context {
    values: HashMap<String, Vec<CtxValue>>,
    deferred: Option<Arc<Deferred>>,
}

type Fill = dyn Fn(&mut Context) + Send + Sync;

/// Keys computed on first use; shared by clones of the context.
struct Deferred {
    fill: Box<Fill>,
    values: OnceLock<HashMap<String, Vec<CtxValue>>>,
}

impl Deferred {
    fn values(&self) -> &HashMap<String, Vec<CtxValue>> {
        self.values.get_or_init(|| {
            let mut c = Context::new();
            (self.fill)(&mut c);
            // Keys the fill itself deferred are computed now too.
            let mut values = c.values;
            if let Some(d) = c.deferred {
                for (k, v) in d.values() {
                    values.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            values
        })
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("values", &self.values)
            .field(
                "deferred",
                &self
                    .deferred
                    .as_ref()
                    .map(|d| d.values.get().map(HashMap::len)),
            )
            .finish()
    }
}

impl PartialEq for Context {
    /// The same keys with the same values (deferred keys computed).
    fn eq(&self, other: &Self) -> bool {
        fn sorted_keys(c: &Context) -> Vec<&str> {
            let mut k: Vec<&str> = c.keys().collect();
            k.sort_unstable();
            k
        }
        sorted_keys(self) == sorted_keys(other)
            && self.keys().all(|k| self.get_lower(k) == other.get_lower(k))
    }
}

impl Eq for Context {}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` to `key`.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(CtxValue::new(value.into()));
    }

    /// Sets `key` to `values` (possibly none: a key present with no value).
    pub fn set<I, V>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        self.values.insert(
            key.to_ascii_lowercase(),
            values
                .into_iter()
                .map(|v| CtxValue::new(v.into()))
                .collect(),
        );
    }

    /// Builder form of [`Context::insert`].
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Defers keys to their first use: `fill` runs at most once, on a fresh context, the first
    /// time a key not set directly on this one is looked up (keys set directly win over the
    /// ones `fill` sets). Replaces an earlier deferral.
    pub fn deferred(mut self, fill: impl Fn(&mut Context) + Send + Sync + 'static) -> Self {
        self.deferred = Some(Arc::new(Deferred {
            fill: Box::new(fill),
            values: OnceLock::new(),
        }));
        self
    }

    /// The values of `key`, if present.
    pub fn get(&self, key: &str) -> Option<Vec<&str>> {
        self.get_lower(&key.to_ascii_lowercase())
            .map(|v| v.iter().map(|c| c.text.as_str()).collect())
    }

    /// The keys present, lowercased (deferred ones computed).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let deferred = self
            .deferred
            .as_ref()
            .map(|d| d.values().keys().filter(|k| !self.values.contains_key(*k)));
        self.values
            .keys()
            .chain(deferred.into_iter().flatten())
            .map(String::as_str)
    }

    fn get_lower(&self, key: &str) -> Option<&[CtxValue]> {
        match self.values.get(key) {
            Some(v) => Some(v),
            None => self.deferred.as_ref()?.values().get(key),
        }
        .map(Vec::as_slice)
    }
}

/// One authorization request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    /// `service:Operation`, e.g. `ecs:RunTask`.
    pub action: &'a str,
    /// The resource ARNs the action touches; none means `*` (actions without a resource type).
    pub resources: &'a [&'a str],
    /// The account owning the resources; `None` means the principal's account.
    pub resource_account: Option<&'a str>,
    pub context: &'a Context,
}

/// The policies that apply to a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicySet<'a> {
    /// The principal's identity-based policies: inline and attached, of the user and its groups,
    /// or of the role.
    pub identity: &'a [&'a Policy],
    /// The resource's policy (repository policy, registry policy, secret policy), or the role's
    /// trust policy for `sts:AssumeRole` (a policy of [`PolicyKind::Trust`]).
    pub resource: Option<&'a Policy>,
    /// The user's or role's permissions boundary.
    pub permissions_boundary: Option<&'a Policy>,
    /// Session policies passed when the session was created (inline and managed).
    pub session: &'a [&'a Policy],
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// The type of policy that decided, as AWS names it in denial messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyType {
    IdentityBased,
    ResourceBased,
    PermissionsBoundary,
    SessionPolicy,
    RoleTrust,
}

impl PolicyType {
    /// The phrase in denial messages (`identity-based policy`, `permissions boundary`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::IdentityBased => "identity-based policy",
            PolicyType::ResourceBased => "resource-based policy",
            PolicyType::PermissionsBoundary => "permissions boundary",
            PolicyType::SessionPolicy => "session policy",
            PolicyType::RoleTrust => "role trust policy",
        }
    }

    fn with_article(self) -> &'static str {
        match self {
            PolicyType::IdentityBased => "an identity-based policy",
            PolicyType::ResourceBased => "a resource-based policy",
            PolicyType::PermissionsBoundary => "a permissions boundary",
            PolicyType::SessionPolicy => "a session policy",
            PolicyType::RoleTrust => "the role trust policy",
        }
    }
}

/// A statement that decided: the allowing statements of an `Allow`, the denying ones of an
/// `ExplicitDeny`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedStatement {
    pub policy_type: PolicyType,
    /// Index into the slice of that type in [`PolicySet`] (0 for the resource policy and the
    /// boundary).
    pub policy_index: usize,
    pub statement_index: usize,
    pub sid: Option<String>,
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    /// The policy type that decided; `None` when the account root was allowed by default.
    pub policy_type: Option<PolicyType>,
    /// The statements that decided (empty for implicit denies and the root's default allow).
    pub matched: Vec<MatchedStatement>,
    /// The index in [`Request::resources`] of the resource that decided (the first denied one);
    /// `None` when the request named no resource (`*`).
    pub resource_index: Option<usize>,
}

impl Evaluation {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allow
    }

    /// AWS's message for a denied request, e.g. `User: arn:aws:iam::123456789012:user/dev is not
    /// authorized to perform: ecs:RunTask on resource: arn:aws:ecs:...:task-definition/web:1
    /// because no identity-based policy allows the ecs:RunTask action`. `None` when allowed.
    pub fn denial_message(&self, request: &Request<'_>) -> Option<String> {
        let policy_type = self.policy_type?;
        let resource = self
            .resource_index
            .and_then(|i| request.resources.get(i).copied())
            .unwrap_or("*");
        let on = if resource == "*" {
            String::new()
        } else {
            format!(" on resource: {resource}")
        };
        let head = format!(
            "User: {} is not authorized to perform: {}{on}",
            request.principal.arn, request.action
        );
        match self.decision {
            Decision::Allow => None,
            Decision::ExplicitDeny => Some(format!(
                "{head} with an explicit deny in {}",
                policy_type.with_article()
            )),
            Decision::ImplicitDeny => Some(format!(
                "{head} because no {} allows the {} action",
                policy_type.as_str(),
                request.action
            )),
        }
    }
}

/// Where condition keys and policy variables are looked up: the principal first, then the
/// request context.
struct Env<'a> {
    principal: &'a Principal,
    context: &'a Context,
}

impl Lookup for Env<'_> {
    fn lookup(&self, key: &str) -> Option<Values<'_>> {
        let p = self.principal;
        match key {
            "aws:username" => {
                (p.kind == PrincipalKind::User).then_some(Values::One(p.name.as_str()))
            }
            "aws:userid" => (!p.user_id.is_empty()).then_some(Values::One(p.user_id.as_str())),
            "aws:principalarn" => match &p.kind {
                PrincipalKind::AssumedRole { role_arn } => Some(Values::One(role_arn)),
                PrincipalKind::Service => None,
                _ => Some(Values::One(p.arn.as_str())),
            },
            "aws:principalaccount" => {
                (!p.account.is_empty()).then_some(Values::One(p.account.as_str()))
            }
            "aws:principaltype" => Some(Values::One(p.principal_type())),
            "aws:principalservicename" => {
                (p.kind == PrincipalKind::Service).then_some(Values::One(p.name.as_str()))
            }
            _ => {
                if let Some(tag) = key.strip_prefix("aws:principaltag/") {
                    return p
                        .tags
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(tag))
                        .map(|(_, v)| Values::One(v.as_str()));
                }
                self.context.get_lower(key).map(Values::Many)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    allow: bool,
    deny: bool,
    /// For resource-based policies: the strongest way an `Allow` names the caller.
    best: Option<PrincipalMatch>,
}

/// A statement that applied, recorded while scanning so that the deciding ones can be
/// reported without a second pass.
#[derive(Debug, Clone, Copy)]
struct Hit {
    policy_type: PolicyType,
    policy_index: usize,
    statement_index: usize,
    effect: Effect,
}

struct Target<'a> {
    service: &'a str,
    operation: &'a str,
    resource: &'a str,
    env: &'a Env<'a>,
    caller: &'a CallerIds<'a>,
}

/// Scans one policy. For resource-based policies (`with_principal`) a statement applies only
/// when its principal element names the caller.
fn scan(
    policy: &Policy,
    t: &Target<'_>,
    with_principal: bool,
    policy_type: PolicyType,
    policy_index: usize,
    hits: &mut Vec<Hit>,
) -> Scan {
    let mut s = Scan::default();
    for (i, st) in policy.statements().iter().enumerate() {
        let named = if with_principal {
            match &st.principal {
                Some(p) => p.matches(t.caller),
                None => PrincipalMatch::None,
            }
        } else {
            PrincipalMatch::Direct
        };
        if named == PrincipalMatch::None || !st.applies(t.service, t.operation, t.resource, t.env) {
            continue;
        }
        match st.effect {
            Effect::Deny => s.deny = true,
            Effect::Allow => {
                s.allow = true;
                s.best = s.best.max(Some(named));
            }
        }
        hits.push(Hit {
            policy_type,
            policy_index,
            statement_index: i,
            effect: st.effect,
        });
    }
    s
}

fn scan_all(
    policies: &[&Policy],
    t: &Target<'_>,
    policy_type: PolicyType,
    hits: &mut Vec<Hit>,
) -> Scan {
    let mut out = Scan::default();
    for (i, p) in policies.iter().enumerate() {
        let s = scan(p, t, false, policy_type, i, hits);
        out.allow |= s.allow;
        out.deny |= s.deny;
    }
    out
}

/// One resource's outcome.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    decision: Decision,
    policy_type: Option<PolicyType>,
}

fn outcome(decision: Decision, policy_type: PolicyType) -> Outcome {
    Outcome {
        decision,
        policy_type: Some(policy_type),
    }
}

fn evaluate_resource(
    request: &Request<'_>,
    policies: &PolicySet<'_>,
    t: &Target<'_>,
    hits: &mut Vec<Hit>,
) -> Outcome {
    let p = request.principal;
    let resource_type = match policies.resource.map(Policy::kind) {
        Some(PolicyKind::Trust) => PolicyType::RoleTrust,
        _ => PolicyType::ResourceBased,
    };
    let trust = resource_type == PolicyType::RoleTrust;
    let subject = !matches!(p.kind, PrincipalKind::Root | PrincipalKind::Service);
    let none = Scan::default();
    let id = if subject {
        scan_all(policies.identity, t, PolicyType::IdentityBased, hits)
    } else {
        none
    };
    let rp = policies
        .resource
        .map_or(none, |r| scan(r, t, true, resource_type, 0, hits));
    let pb = match policies.permissions_boundary {
        Some(b) if subject => Some(scan(b, t, false, PolicyType::PermissionsBoundary, 0, hits)),
        _ => None,
    };
    let sp = if subject && p.is_session() && !policies.session.is_empty() {
        Some(scan_all(
            policies.session,
            t,
            PolicyType::SessionPolicy,
            hits,
        ))
    } else {
        None
    };

    if id.deny {
        return outcome(Decision::ExplicitDeny, PolicyType::IdentityBased);
    }
    if rp.deny {
        return outcome(Decision::ExplicitDeny, resource_type);
    }
    if pb.is_some_and(|s| s.deny) {
        return outcome(Decision::ExplicitDeny, PolicyType::PermissionsBoundary);
    }
    if sp.is_some_and(|s| s.deny) {
        return outcome(Decision::ExplicitDeny, PolicyType::SessionPolicy);
    }

    let same_account = request.resource_account.is_none_or(|a| a == p.account);
    let named = rp.best.unwrap_or(PrincipalMatch::None);
    match p.kind {
        PrincipalKind::Root if same_account && !trust => {
            return Outcome {
                decision: Decision::Allow,
                policy_type: None,
            };
        }
        PrincipalKind::Root | PrincipalKind::Service => {
            return if named != PrincipalMatch::None {
                outcome(Decision::Allow, resource_type)
            } else {
                outcome(Decision::ImplicitDeny, resource_type)
            };
        }
        _ => {}
    }

    let boundary_ok = pb.is_none_or(|s| s.allow);
    let session_ok = match p.kind {
        PrincipalKind::AssumedRole { .. } => sp.is_none_or(|s| s.allow),
        PrincipalKind::FederatedUser { .. } => sp.is_some_and(|s| s.allow),
        _ => true,
    };
    let limits_fail = if !boundary_ok {
        Some(PolicyType::PermissionsBoundary)
    } else if !session_ok {
        Some(PolicyType::SessionPolicy)
    } else {
        None
    };
    let chain_fail = if id.allow {
        limits_fail
    } else {
        Some(PolicyType::IdentityBased)
    };

    if !same_account {
        if let Some(f) = chain_fail {
            return outcome(Decision::ImplicitDeny, f);
        }
        return if named == PrincipalMatch::None {
            outcome(Decision::ImplicitDeny, resource_type)
        } else {
            outcome(Decision::Allow, resource_type)
        };
    }
    if trust && named == PrincipalMatch::None {
        return outcome(Decision::ImplicitDeny, resource_type);
    }
    match named {
        PrincipalMatch::Direct => return outcome(Decision::Allow, resource_type),
        PrincipalMatch::Underlying if limits_fail.is_none() => {
            return outcome(Decision::Allow, resource_type);
        }
        _ => {}
    }
    match (chain_fail, named) {
        (None, _) => outcome(Decision::Allow, PolicyType::IdentityBased),
        (Some(_), PrincipalMatch::Underlying) => outcome(
            Decision::ImplicitDeny,
            limits_fail.unwrap_or(PolicyType::IdentityBased),
        ),
        (Some(f), _) => outcome(Decision::ImplicitDeny, f),
    }
}

/// The recorded statements of the deciding type and effect, with their `Sid`s.
fn matched(
    policies: &PolicySet<'_>,
    hits: &[Hit],
    policy_type: PolicyType,
    effect: Effect,
) -> Vec<MatchedStatement> {
    hits.iter()
        .filter(|h| h.policy_type == policy_type && h.effect == effect)
        .map(|h| {
            let policy = match policy_type {
                PolicyType::IdentityBased => policies.identity.get(h.policy_index).copied(),
                PolicyType::ResourceBased | PolicyType::RoleTrust => policies.resource,
                PolicyType::PermissionsBoundary => policies.permissions_boundary,
                PolicyType::SessionPolicy => policies.session.get(h.policy_index).copied(),
            };
            MatchedStatement {
                policy_type,
                policy_index: h.policy_index,
                statement_index: h.statement_index,
                sid: policy
                    .and_then(|p| p.sid(h.statement_index))
                    .map(str::to_string),
            }
        })
        .collect()
}

/// Decides `request` under `policies`.
pub fn evaluate(request: &Request<'_>, policies: &PolicySet<'_>) -> Evaluation {
    let (service, operation) = request
        .action
        .split_once(':')
        .unwrap_or((request.action, ""));
    let env = Env {
        principal: request.principal,
        context: request.context,
    };
    let caller = request.principal.caller_ids();
    let star: [&str; 1] = ["*"];
    let (resources, named) = if request.resources.is_empty() {
        (&star[..], false)
    } else {
        (request.resources, true)
    };
    let mut hits = Vec::new();
    let mut decided: Option<(usize, Outcome, Vec<Hit>)> = None;
    for (i, resource) in resources.iter().enumerate() {
        let t = Target {
            service,
            operation,
            resource,
            env: &env,
            caller: &caller,
        };
        hits.clear();
        let o = evaluate_resource(request, policies, &t, &mut hits);
        let replace = match (&decided, o.decision) {
            (None, _) => true,
            (_, Decision::ExplicitDeny) => true,
            (Some((_, prev, _)), Decision::ImplicitDeny) => prev.decision == Decision::Allow,
            _ => false,
        };
        if replace {
            decided = Some((i, o, std::mem::take(&mut hits)));
        }
        if o.decision == Decision::ExplicitDeny {
            break;
        }
    }
    let Some((index, o, hits)) = decided else {
        // There is always at least one resource, so this is not reached.
        return Evaluation {
            decision: Decision::ImplicitDeny,
            policy_type: Some(PolicyType::IdentityBased),
            matched: Vec::new(),
            resource_index: None,
        };
    };
    let matched = match (o.decision, o.policy_type) {
        (Decision::ImplicitDeny, _) | (_, None) => Vec::new(),
        (Decision::Allow, Some(pt)) => matched(policies, &hits, pt, Effect::Allow),
        (Decision::ExplicitDeny, Some(pt)) => matched(policies, &hits, pt, Effect::Deny),
    };
    Evaluation {
        decision: o.decision,
        policy_type: o.policy_type,
        matched,
        resource_index: named.then_some(index),
    }
}
