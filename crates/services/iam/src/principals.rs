//! What the front asks of the directory on every request: the secret and principal behind an
//! access key or a session token, and the policies that apply to a principal. All in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gantry_iam_policy::{Policy, PolicyKind, Principal, PrincipalKind};
use parking_lot::Mutex;

use crate::IamService;
use crate::model::{Directory, KeyStatus, LastUsed, managed_policy};
use crate::session::{self, SessionClaims, SessionOf};

/// The identity policies that apply to a principal.
#[derive(Debug, Clone, Default)]
pub struct PrincipalPolicies {
    /// Inline and attached policies of the user and its groups, or of the role.
    pub identity: Vec<Arc<Policy>>,
    pub permissions_boundary: Option<Arc<Policy>>,
    /// Session policies (inline and managed) of a role session.
    pub session: Vec<Arc<Policy>>,
}

/// The principal of each access key and the policies of each principal, as last computed
/// from the directory. Every change to the directory (a write here, or a reload after another
/// replica's write) calls [`Answers::invalidate`] while it holds the directory's write lock, and
/// answers are looked up and stored under its read lock, so an answer is never older than the
/// directory a request reads: a detached policy or deleted key stops counting at once.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    /// Bumped by every change to the directory.
    generation: AtomicU64,
    cache: Mutex<AnswerCache>,
}

#[derive(Debug, Default)]
struct AnswerCache {
    /// The directory generation these answers were computed at.
    generation: u64,
    /// By access key id.
    principals: HashMap<String, Arc<Principal>>,
    /// By principal ARN (the role's ARN for role sessions).
    policies: HashMap<String, Arc<PrincipalPolicies>>,
}

/// Answers kept at most; beyond that the cache starts over.
const MAX_ANSWERS: usize = 10_000;

impl Answers {
    /// Forgets every answer. Called with the directory's write lock held.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The cache, emptied first if the directory changed since it was filled. Called with the
    /// directory's read (or write) lock held, so the generation cannot move meanwhile.
    fn current(&self) -> parking_lot::MutexGuard<'_, AnswerCache> {
        let generation = self.generation.load(Ordering::Acquire);
        let mut c = self.cache.lock();
        if c.generation != generation {
            c.principals.clear();
            c.policies.clear();
            c.generation = generation;
        }
        c
    }

    fn principal(&self, access_key_id: &str) -> Option<Arc<Principal>> {
        self.current().principals.get(access_key_id).cloned()
    }

    fn keep_principal(&self, access_key_id: &str, p: &Arc<Principal>) {
        let mut c = self.current();
        if c.principals.len() >= MAX_ANSWERS {
            c.principals.clear();
        }
        c.principals.insert(access_key_id.to_owned(), p.clone());
    }

    fn policies(&self, key: &str) -> Option<Arc<PrincipalPolicies>> {
        self.current().policies.get(key).cloned()
    }

    fn keep_policies(&self, key: &str, p: &Arc<PrincipalPolicies>) {
        let mut c = self.current();
        if c.policies.len() >= MAX_ANSWERS {
            c.policies.clear();
        }
        c.policies.insert(key.to_owned(), p.clone());
    }
}

/// Why a session token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRefusal {
    /// The token does not open, or belongs to another key, or its principal is gone.
    Invalid,
    /// The session is over.
    Expired,
}

impl IamService {
    /// The secret of an active access key of a user (SigV4 verification).
    pub fn secret_for_key(&self, access_key_id: &str) -> Option<String> {
        let dir = self.dir.read();
        let k = dir.keys.get(access_key_id)?;
        if k.status != KeyStatus::Active {
            return None;
        }
        dir.secrets.get(access_key_id).cloned()
    }

    /// The user owning an active access key, as a principal.
    pub fn principal_for_key(&self, access_key_id: &str) -> Option<Arc<Principal>> {
        let dir = self.dir.read();
        if let Some(p) = self.answers.principal(access_key_id) {
            return Some(p);
        }
        let k = dir.keys.get(access_key_id)?;
        if k.status != KeyStatus::Active {
            return None;
        }
        let p = Arc::new(user_principal(&dir, &self.account, &k.user)?);
        self.answers.keep_principal(access_key_id, &p);
        Some(p)
    }

    /// Whether `access_key_id` is an access key of this account (any status).
    pub fn knows_key(&self, access_key_id: &str) -> bool {
        self.dir.read().keys.contains_key(access_key_id)
    }

    /// Records that a key signed a request (GetAccessKeyLastUsed). Kept in memory, with minute
    /// precision, and stored with the key's next write.
    pub fn record_key_use(&self, access_key_id: &str, service: &str, region: &str, now: u64) {
        let minute = now - now % 60_000;
        {
            let dir = self.dir.read();
            match dir.keys.get(access_key_id) {
                Some(k)
                    if k.last_used.as_ref().is_some_and(|l| {
                        l.date == minute && l.service == service && l.region == region
                    }) =>
                {
                    return;
                }
                None => return,
                _ => {}
            }
        }
        let mut dir = self.dir.write();
        if let Some(k) = dir.keys.get_mut(access_key_id) {
            k.last_used = Some(LastUsed {
                date: minute,
                service: service.to_owned(),
                region: region.to_owned(),
            });
        }
    }

    /// The claims of a session token presented with `access_key_id`, if it is valid at `now`.
    pub fn open_session(
        &self,
        access_key_id: &str,
        token: &str,
        now: u64,
    ) -> Result<SessionClaims, SessionRefusal> {
        let claims = session::open(self.sealer.as_ref(), token).ok_or(SessionRefusal::Invalid)?;
        if claims.access_key_id != access_key_id {
            return Err(SessionRefusal::Invalid);
        }
        if now >= claims.expires {
            return Err(SessionRefusal::Expired);
        }
        Ok(claims)
    }

    /// The principal a session acts as; `None` when its user or role no longer exists.
    pub fn session_principal(&self, claims: &SessionClaims) -> Option<Principal> {
        let dir = self.dir.read();
        let mut p = match &claims.of {
            SessionOf::Role {
                role,
                role_id,
                session_name,
            } => {
                let r = dir.roles.get(&role.to_ascii_lowercase())?;
                if &r.id != role_id {
                    return None;
                }
                let mut p =
                    Principal::assumed_role(&self.account, &r.path, &r.name, &r.id, session_name);
                for t in &r.tags {
                    p = p.with_tag(&t.key, &t.value);
                }
                p
            }
            SessionOf::User { user } => user_principal(&dir, &self.account, user)?,
            SessionOf::Root => Principal::root(&self.account),
        };
        for (k, v) in &claims.tags {
            p.tags.retain(|(key, _)| !key.eq_ignore_ascii_case(k));
            p.tags.push((k.clone(), v.clone()));
        }
        Some(p)
    }

    /// The policies of `principal`; `None` when it names no user or role of the directory.
    pub fn policies_for(&self, principal: &Principal) -> Option<Arc<PrincipalPolicies>> {
        let key = match &principal.kind {
            PrincipalKind::Root => return Some(Arc::default()),
            PrincipalKind::User => principal.arn.as_str(),
            PrincipalKind::AssumedRole { role_arn } => role_arn.as_str(),
            _ => return None,
        };
        let dir = self.dir.read();
        if let Some(p) = self.answers.policies(key) {
            return Some(p);
        }
        let p = Arc::new(self.compute_policies(&dir, principal)?);
        self.answers.keep_policies(key, &p);
        Some(p)
    }

    fn compute_policies(
        &self,
        dir: &Directory,
        principal: &Principal,
    ) -> Option<PrincipalPolicies> {
        match &principal.kind {
            PrincipalKind::Root => Some(PrincipalPolicies::default()),
            PrincipalKind::User => {
                let u = dir.users.get(&principal.name.to_ascii_lowercase())?;
                let mut out = PrincipalPolicies::default();
                push_policies(dir, &self.account, &u.policies, &mut out.identity);
                for g in &u.groups {
                    if let Some(g) = dir.groups.get(&g.to_ascii_lowercase()) {
                        push_policies(dir, &self.account, &g.policies, &mut out.identity);
                    }
                }
                out.permissions_boundary = u
                    .permissions_boundary
                    .as_deref()
                    .and_then(|arn| managed_policy(dir, &self.account, arn));
                Some(out)
            }
            PrincipalKind::AssumedRole { role_arn } => {
                let name = role_arn.rsplit('/').next()?;
                let r = dir.roles.get(&name.to_ascii_lowercase())?;
                let mut out = PrincipalPolicies::default();
                push_policies(dir, &self.account, &r.policies, &mut out.identity);
                out.permissions_boundary = r
                    .permissions_boundary
                    .as_deref()
                    .and_then(|arn| managed_policy(dir, &self.account, arn));
                Some(out)
            }
            _ => None,
        }
    }

    /// [`IamService::policies_for`] with a session's own policies added.
    pub fn policies_for_session(
        &self,
        principal: &Principal,
        claims: &SessionClaims,
    ) -> Option<PrincipalPolicies> {
        let mut out = PrincipalPolicies::clone(&*self.policies_for(principal)?);
        if let Some(doc) = &claims.policy
            && let Ok(p) = Policy::parse(doc, PolicyKind::Session)
        {
            out.session.push(Arc::new(p));
        }
        let dir = self.dir.read();
        for arn in &claims.policy_arns {
            if let Some(p) = managed_policy(&dir, &self.account, arn) {
                out.session.push(p);
            }
        }
        Some(out)
    }

    /// The trust policy of role `name` (compiled), with its ARN, id, path and session limit.
    pub fn role_for_assume(&self, name: &str) -> Option<RoleForAssume> {
        let dir = self.dir.read();
        let r = dir.roles.get(&name.to_ascii_lowercase())?;
        Some(RoleForAssume {
            name: r.name.clone(),
            path: r.path.clone(),
            id: r.id.clone(),
            arn: crate::wire::role_arn(&self.account, r),
            max_session_duration: r.max_session_duration,
            trust: r.trust_compiled.clone(),
        })
    }
}

/// A role as AssumeRole needs it.
#[derive(Debug, Clone)]
pub struct RoleForAssume {
    pub name: String,
    pub path: String,
    pub id: String,
    pub arn: String,
    pub max_session_duration: u32,
    pub trust: Option<Arc<Policy>>,
}

fn user_principal(dir: &Directory, account: &str, user: &str) -> Option<Principal> {
    let u = dir.users.get(&user.to_ascii_lowercase())?;
    let mut p = Principal::user(account, &u.path, &u.name, &u.id);
    for t in &u.tags {
        p = p.with_tag(&t.key, &t.value);
    }
    Some(p)
}

fn push_policies(
    dir: &Directory,
    account: &str,
    policies: &crate::model::Policies,
    out: &mut Vec<Arc<Policy>>,
) {
    out.extend(policies.compiled.iter().cloned());
    for arn in &policies.attached {
        if let Some(p) = managed_policy(dir, account, arn) {
            out.push(p);
        }
    }
}
