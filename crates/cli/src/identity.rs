//! Identity for the whole server: who signed a request (the root key pair, an IAM user's access
//! key, or a session from STS) and whether the caller may run the operation, implemented over
//! the IAM crate's in-memory directory and `gantry-iam-policy`'s evaluator. The front calls
//! [`Identity`] as its `CredentialProvider`, `Authenticator` and `Authorizer`; STS mints
//! sessions through [`IamSessions`]. The root key is allowed everything, as the account root is
//! on AWS, so a server with no IAM users behaves as before.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::sigv4::CredentialProvider;
use gantry_front::{
    AuthFailure, Authenticator, Authorizer, Denied, OperationInput, RequestContext, ServiceSpec,
};
use gantry_iam::IamService;
use gantry_iam::principals::{PrincipalPolicies, SessionRefusal};
use gantry_iam_policy::{Policy, PolicySet, Principal, PrincipalKind, Request, evaluate};
use gantry_kms::MasterKey;
use parking_lot::Mutex;

use crate::authz;
use crate::credentials::RootCredentials;

/// Seals IAM's secrets and STS's session tokens with the data dir's master key.
#[derive(Debug)]
pub struct MasterSealer(pub MasterKey);

impl gantry_iam::Sealer for MasterSealer {
    fn seal(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        self.0.seal_for(purpose, plaintext)
    }

    fn open(&self, purpose: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.open_for(purpose, sealed).ok()
    }
}

/// The session policies of live sessions, by their access key id (filled on authentication).
#[derive(Debug, Default)]
struct SessionPolicies {
    by_key: HashMap<String, LiveSession>,
}

/// A session seen on an API request: its principal (for registry passwords minted from it) and
/// its session policies, until it expires.
#[derive(Debug, Clone)]
struct LiveSession {
    expires: u64,
    principal: Arc<Principal>,
    policies: Arc<Vec<Arc<Policy>>>,
}

/// Authentication and authorization over the root credentials and the IAM directory.
#[derive(Debug)]
pub struct Identity {
    root: Arc<RootCredentials>,
    iam: Arc<IamService>,
    sessions: Mutex<SessionPolicies>,
    /// Resource-based policies (ECR repository policies), looked up by the composition root.
    resource_policies: Option<Arc<dyn ResourcePolicies>>,
    /// The server's region: the request context of the agents' channels, which are checked
    /// without a SigV4 region of their own. (A `/v2/` request's region comes with it.)
    region: String,
}

/// A resource as the authorization point evaluates it: its full ARN (a secret named by name
/// has a random suffix in its ARN) and its resource-based policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedResource {
    pub arn: String,
    pub policy: Option<String>,
}

/// Where resource-based policies come from (ECR repository policies, secret policies).
#[async_trait]
pub trait ResourcePolicies: Send + Sync + std::fmt::Debug {
    /// The resource `resource` (an ARN as read from the request) names, if this source knows
    /// it.
    async fn resolve(
        &self,
        prefix: &str,
        ctx: &RequestContext,
        resource: &str,
    ) -> Option<ResolvedResource>;
}

impl Identity {
    pub fn new(root: Arc<RootCredentials>, iam: Arc<IamService>, region: &str) -> Self {
        Self {
            root,
            iam,
            sessions: Mutex::new(SessionPolicies::default()),
            resource_policies: None,
            region: region.to_owned(),
        }
    }

    pub fn with_resource_policies(mut self, r: Arc<dyn ResourcePolicies>) -> Self {
        self.resource_policies = Some(r);
        self
    }

    pub fn iam(&self) -> &Arc<IamService> {
        &self.iam
    }

    /// The principal behind an access key id and optional session token, checked at `now`.
    pub fn resolve(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        now: u64,
    ) -> Result<Option<Arc<Principal>>, AuthFailure> {
        if access_key_id == self.root.access_key_id {
            return Ok(None);
        }
        if let Some(token) = session_token.filter(|_| access_key_id.starts_with("ASIA")) {
            let claims = self
                .iam
                .open_session(access_key_id, token, now)
                .map_err(|r| match r {
                    SessionRefusal::Expired => AuthFailure::Expired,
                    SessionRefusal::Invalid => AuthFailure::Invalid,
                })?;
            let principal = self
                .iam
                .session_principal(&claims)
                .ok_or(AuthFailure::Invalid)?;
            if principal.kind == PrincipalKind::Root {
                return Ok(None);
            }
            let principal = Arc::new(principal);
            let policies = if claims.policy.is_some() || !claims.policy_arns.is_empty() {
                self.iam
                    .policies_for_session(&principal, &claims)
                    .map(|p| p.session)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let mut s = self.sessions.lock();
            if s.by_key.len() > 10_000 {
                s.by_key.retain(|_, l| l.expires > now);
            }
            s.by_key.insert(
                access_key_id.to_owned(),
                LiveSession {
                    expires: claims.expires,
                    principal: principal.clone(),
                    policies: Arc::new(policies),
                },
            );
            return Ok(Some(principal));
        }
        self.iam
            .principal_for_key(access_key_id)
            .map(Some)
            .ok_or(AuthFailure::Invalid)
    }

    /// The identity, boundary and session policies of the caller of `ctx`; `None` when its
    /// user or role is gone.
    pub fn policies(&self, ctx: &RequestContext, principal: &Principal) -> Option<CallerPolicies> {
        let principal_policies = self.iam.policies_for(principal)?;
        // Only sessions have session policies.
        let session = if ctx.access_key_id.starts_with("ASIA") {
            self.sessions
                .lock()
                .by_key
                .get(&ctx.access_key_id)
                .filter(|l| !l.policies.is_empty())
                .map(|l| l.policies.clone())
        } else {
            None
        };
        Some(CallerPolicies {
            principal: principal_policies,
            session,
        })
    }
}

/// The policies that apply to one caller.
#[derive(Debug, Clone)]
pub struct CallerPolicies {
    /// Identity policies and permissions boundary, as the directory keeps them.
    pub principal: Arc<PrincipalPolicies>,
    pub session: Option<Arc<Vec<Arc<Policy>>>>,
}

impl CallerPolicies {
    /// Evaluates one request against these policies and `resource_policy`.
    pub fn evaluate(
        &self,
        request: &Request<'_>,
        resource_policy: Option<&Policy>,
    ) -> gantry_iam_policy::Evaluation {
        let identity: Vec<&Policy> = self.principal.identity.iter().map(|p| p.as_ref()).collect();
        let session: Vec<&Policy> = self
            .session
            .as_ref()
            .map(|s| s.iter().map(|p| p.as_ref()).collect())
            .unwrap_or_default();
        evaluate(
            request,
            &PolicySet {
                identity: &identity,
                resource: resource_policy,
                permissions_boundary: self.principal.permissions_boundary.as_deref(),
                session: &session,
            },
        )
    }
}

impl CredentialProvider for Identity {
    /// Long-term keys take no session token and session keys need one, as on AWS.
    fn accepts_session_token(&self, access_key_id: &str, session_token: Option<&str>) -> bool {
        access_key_id.starts_with("ASIA") == session_token.is_some()
    }

    fn secret_access_key(&self, access_key_id: &str) -> Option<String> {
        if access_key_id == self.root.access_key_id {
            return Some(self.root.secret_access_key.clone());
        }
        self.iam.secret_for_key(access_key_id)
    }

    fn secret_with_session_token(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Option<String> {
        match session_token {
            Some(token) if access_key_id.starts_with("ASIA") => {
                // Expiry is checked after the signature, to answer ExpiredToken.
                self.iam
                    .open_session(access_key_id, token, 0)
                    .ok()
                    .map(|c| c.secret_access_key)
            }
            _ => self.secret_access_key(access_key_id),
        }
    }
}

impl Authenticator for Identity {
    fn principal(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        service: &str,
        region: &str,
        now_ms: u64,
    ) -> Result<Option<Arc<Principal>>, AuthFailure> {
        let p = self.resolve(access_key_id, session_token, now_ms)?;
        if p.is_some() && access_key_id.starts_with("AKIA") {
            self.iam
                .record_key_use(access_key_id, service, region, now_ms);
        }
        Ok(p)
    }
}

#[async_trait]
impl Authorizer for Identity {
    async fn authorize(
        &self,
        ctx: &RequestContext,
        spec: &'static ServiceSpec,
        operation: &str,
        input: OperationInput<'_>,
    ) -> Result<(), Denied> {
        let Some(principal) = ctx.caller.as_deref() else {
            return Ok(());
        };
        // KMS decides key operations itself, with the key policy (crate::kms_authz).
        if spec.iam_prefix == "kms" && gantry_kms::decided_by_key_policy(operation) {
            return Ok(());
        }
        let checks = authz::checks(spec.iam_prefix, operation, ctx, input);
        if checks.is_empty() {
            return Ok(());
        }
        let policies = self.policies(ctx, principal);
        for check in &checks {
            // A resource-based policy takes part when the (one) resource has one.
            let mut resolved_arn = None;
            let mut resource_policy = None;
            if let (Some(rp), [resource]) = (&self.resource_policies, check.resources.as_slice())
                && let Some(r) = rp.resolve(spec.iam_prefix, ctx, resource).await
            {
                resolved_arn = Some(r.arn);
                resource_policy = r.policy.and_then(|doc| {
                    Policy::parse(&doc, gantry_iam_policy::PolicyKind::Resource).ok()
                });
            }
            let resources: Vec<&str> = match &resolved_arn {
                Some(arn) => vec![arn.as_str()],
                None => check.resources.iter().map(String::as_str).collect(),
            };
            let request = Request {
                principal,
                action: &check.action,
                resources: &resources,
                resource_account: None,
                context: &check.context,
            };
            let Some(policies) = &policies else {
                return Err(Denied(format!(
                    "User: {} is not authorized to perform: {} because no identity-based policy allows the {} action",
                    principal.arn, check.action, check.action
                )));
            };
            let e = policies.evaluate(&request, resource_policy.as_ref());
            if !e.is_allowed() {
                return Err(Denied(e.denial_message(&request).unwrap_or_else(|| {
                    format!(
                        "User: {} is not authorized to perform: {}",
                        principal.arn, check.action
                    )
                })));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl gantry_ecr::RegistryAuthorizer for Identity {
    async fn authorize(
        &self,
        access_key_id: &str,
        region: &str,
        action: &str,
        repository: Option<&str>,
    ) -> Result<(), String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // The principal the password or key names, re-checked now.
        let principal = if access_key_id == self.root.access_key_id {
            return Ok(());
        } else if access_key_id.starts_with("ASIA") {
            let live = self.sessions.lock().by_key.get(access_key_id).cloned();
            match live {
                Some(l) if l.expires > now => l.principal,
                _ => {
                    return Err(format!(
                        "The session of access key {access_key_id} is no longer valid"
                    ));
                }
            }
        } else {
            match self.iam.principal_for_key(access_key_id) {
                Some(p) => p,
                None => {
                    return Err(format!(
                        "The access key {access_key_id} that minted these credentials is no longer valid"
                    ));
                }
            }
        };
        let ctx = RequestContext {
            caller: Some(principal.clone()),
            request_id: String::new(),
            region: region.to_owned(),
            account_id: self.iam.account().to_owned(),
            access_key_id: access_key_id.to_owned(),
            now,
        };
        let resource = repository
            .map(|r| format!("arn:aws:ecr:{region}:{}:repository/{r}", self.iam.account()));
        let resources: Vec<&str> = resource.iter().map(String::as_str).collect();
        let context = authz::base_context(&ctx);
        let request = Request {
            principal: &principal,
            action,
            resources: &resources,
            resource_account: None,
            context: &context,
        };
        let Some(policies) = self.policies(&ctx, &principal) else {
            return Err(format!(
                "User: {} is not authorized to perform: {action}",
                principal.arn
            ));
        };
        let mut resource_policy = None;
        if let (Some(rp), Some(r)) = (&self.resource_policies, &resource)
            && let Some(doc) = rp.resolve("ecr", &ctx, r).await.and_then(|r| r.policy)
        {
            resource_policy = Policy::parse(&doc, gantry_iam_policy::PolicyKind::Resource).ok();
        }
        let e = policies.evaluate(&request, resource_policy.as_ref());
        if e.is_allowed() {
            Ok(())
        } else {
            Err(e.denial_message(&request).unwrap_or_else(|| {
                format!(
                    "User: {} is not authorized to perform: {action}",
                    principal.arn
                )
            }))
        }
    }
}

/// How long a task role session lasts (the role's `MaxSessionDuration` caps it); agents
/// refresh it well before it ends.
const TASK_ROLE_SESSION_SECONDS: u32 = 6 * 3600;

/// Task execution roles as the principals that read a task's secrets: a session of the role
/// named by the task's `executionRoleArn` (session name = the task id), evaluated with the
/// role's identity policies, its permissions boundary and the resource's policy (a secret's).
#[derive(Debug)]
pub struct ExecutionRoles {
    pub identity: Arc<Identity>,
}

impl ExecutionRoles {
    /// Role `role_arn` of this account, if it exists and its trust policy lets ECS tasks
    /// (`ecs-tasks.amazonaws.com`) assume it.
    fn assumable(
        &self,
        role_arn: &str,
    ) -> Result<gantry_iam::principals::RoleForAssume, crate::secrets::Denied> {
        let iam = self.identity.iam();
        // `arn:aws:iam::<account>:role[/path/]<name>` of this account, naming a role that exists.
        let name = role_arn
            .strip_prefix(&format!("arn:aws:iam::{}:role/", iam.account()))
            .and_then(|rest| rest.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Self::cannot_assume(role_arn))?;
        let role = iam
            .role_for_assume(name)
            .filter(|r| r.arn == role_arn)
            .ok_or_else(|| Self::cannot_assume(role_arn))?;
        let service = Principal::service("ecs-tasks.amazonaws.com");
        let trusted = role.trust.as_deref().is_some_and(|trust| {
            let context = gantry_iam_policy::Context::default();
            let resources = [role.arn.as_str()];
            let req = Request {
                principal: &service,
                action: "sts:AssumeRole",
                resources: &resources,
                resource_account: None,
                context: &context,
            };
            evaluate(
                &req,
                &PolicySet {
                    resource: Some(trust),
                    ..PolicySet::default()
                },
            )
            .is_allowed()
        });
        if trusted {
            Ok(role)
        } else {
            Err(Self::cannot_assume(role_arn))
        }
    }

    fn cannot_assume(role_arn: &str) -> crate::secrets::Denied {
        crate::secrets::Denied(format!(
            "ECS was unable to assume the role '{role_arn}' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."
        ))
    }
}

#[async_trait]
impl crate::secrets::ExecutionRoleAuthorizer for ExecutionRoles {
    async fn authorize(
        &self,
        task: &gantry_ecs::task_secrets::TaskScope,
        action: &str,
        resource: &str,
    ) -> Result<Option<Arc<Principal>>, crate::secrets::Denied> {
        let iam = self.identity.iam();
        let role_arn = task.execution_role_arn.as_deref().unwrap_or_default();
        let role = self.assumable(role_arn)?;
        let task_id = task.task_arn.rsplit('/').next().unwrap_or_default();
        let principal = Arc::new(Principal::assumed_role(
            iam.account(),
            &role.path,
            &role.name,
            &role.id,
            task_id,
        ));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ctx = RequestContext {
            caller: Some(principal.clone()),
            request_id: String::new(),
            region: task.region.clone(),
            account_id: task.account_id.clone(),
            access_key_id: String::new(),
            now,
        };
        let policies = self
            .identity
            .policies(&ctx, &principal)
            .ok_or_else(|| Self::cannot_assume(role_arn))?;
        let prefix = action.split(':').next().unwrap_or_default();
        let mut arn = resource.to_owned();
        let mut resource_policy = None;
        if let Some(rp) = &self.identity.resource_policies
            && let Some(r) = rp.resolve(prefix, &ctx, resource).await
        {
            arn = r.arn;
            resource_policy = r
                .policy
                .and_then(|doc| Policy::parse(&doc, gantry_iam_policy::PolicyKind::Resource).ok());
        }
        let resources = [arn.as_str()];
        let context = authz::base_context(&ctx);
        let request = Request {
            principal: &principal,
            action,
            resources: &resources,
            resource_account: None,
            context: &context,
        };
        let e = policies.evaluate(&request, resource_policy.as_ref());
        if e.is_allowed() {
            return Ok(Some(principal));
        }
        Err(crate::secrets::Denied(
            e.denial_message(&request).unwrap_or_else(|| {
                format!(
                    "User: {} is not authorized to perform: {action} on resource: {arn}",
                    principal.arn
                )
            }),
        ))
    }

    async fn role_session(
        &self,
        task: &gantry_ecs::task_secrets::TaskScope,
        role_arn: &str,
    ) -> Result<gantry_domain::secrets::TaskRoleCredentials, crate::secrets::Denied> {
        let role = self.assumable(role_arn)?;
        let task_id = task.task_arn.rsplit('/').next().unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let c = self.identity.iam().service_role_session(
            &role,
            task_id,
            TASK_ROLE_SESSION_SECONDS,
            now,
        );
        Ok(gantry_domain::secrets::TaskRoleCredentials {
            role_arn: role.arn,
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            expiration: c.expiration,
        })
    }
}

/// The credentials the agents' channels accept (the assignment stream, task secrets and
/// credentials, telemetry, the network policy): the root key, or an IAM principal (an instance's
/// user or role session) whose policies allow `action` as ECS's instance role does
/// (`AmazonEC2ContainerServiceforEC2Role` grants `ecs:Poll` and `ecs:StartTelemetrySession`).
/// Other keys are unknown to these channels.
#[derive(Debug)]
pub struct AgentChannelCredentials {
    pub identity: Arc<Identity>,
    pub action: &'static str,
}

impl AgentChannelCredentials {
    fn allowed(&self, access_key_id: &str, session_token: Option<&str>) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let principal = match self.identity.resolve(access_key_id, session_token, now) {
            Ok(None) => return true,
            Ok(Some(p)) => p,
            Err(_) => return false,
        };
        let ctx = RequestContext {
            caller: Some(principal.clone()),
            request_id: String::new(),
            region: self.identity.region.clone(),
            account_id: self.identity.iam.account().to_owned(),
            access_key_id: access_key_id.to_owned(),
            now,
        };
        let Some(policies) = self.identity.policies(&ctx, &principal) else {
            return false;
        };
        let context = authz::base_context(&ctx);
        let resources = ["*"];
        let request = Request {
            principal: &principal,
            action: self.action,
            resources: &resources,
            resource_account: None,
            context: &context,
        };
        let allowed = policies.evaluate(&request, None).is_allowed();
        if !allowed {
            tracing::info!(principal = %principal.arn, action = self.action, "agent channel refused: not allowed");
        }
        allowed
    }
}

impl CredentialProvider for AgentChannelCredentials {
    fn accepts_session_token(&self, access_key_id: &str, session_token: Option<&str>) -> bool {
        self.identity
            .accepts_session_token(access_key_id, session_token)
    }

    fn secret_access_key(&self, access_key_id: &str) -> Option<String> {
        if !self.allowed(access_key_id, None) {
            return None;
        }
        self.identity.secret_access_key(access_key_id)
    }

    fn secret_with_session_token(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Option<String> {
        if !self.allowed(access_key_id, session_token) {
            return None;
        }
        self.identity
            .secret_with_session_token(access_key_id, session_token)
    }
}

/// ECR repository policies and Secrets Manager secret policies as resource-based policies.
#[derive(Debug)]
pub struct StoredResourcePolicies {
    pub registry: Arc<gantry_ecr::Registry>,
    pub secrets: Arc<gantry_secretsmanager::SecretsManagerService>,
}

#[async_trait]
impl ResourcePolicies for StoredResourcePolicies {
    async fn resolve(
        &self,
        prefix: &str,
        ctx: &RequestContext,
        resource: &str,
    ) -> Option<ResolvedResource> {
        match prefix {
            "ecr" => {
                // arn:aws:ecr:<region>:<account>:repository/<name>
                let (head, name) = resource.split_once(":repository/")?;
                let region = head.split(':').nth(3)?;
                match self.registry.repository_policy(region, name).await {
                    Ok(policy) => Some(ResolvedResource {
                        arn: resource.to_owned(),
                        policy,
                    }),
                    Err(e) => {
                        tracing::warn!(repository = name, error = %e, "reading a repository policy");
                        None
                    }
                }
            }
            "secretsmanager" => {
                // The ARN read from the request: built from a name, or given (full or partial).
                if resource.contains('*') || !resource.contains(":secret:") {
                    return None;
                }
                match self.secrets.resource_of(ctx, resource).await {
                    Ok(Some((arn, policy))) => Some(ResolvedResource { arn, policy }),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading a secret's policy");
                        None
                    }
                }
            }
            _ => None,
        }
    }
}

/// STS's sessions, minted by the IAM directory.
#[derive(Debug)]
pub struct IamSessions {
    pub identity: Arc<Identity>,
}

#[async_trait]
impl gantry_sts::Sessions for IamSessions {
    async fn assume_role(
        &self,
        ctx: &RequestContext,
        r: &gantry_sts::AssumeRoleRequest,
    ) -> Result<gantry_sts::AssumedRole, AwsError> {
        let principal = ctx.principal();
        let identity = match ctx.caller.as_deref() {
            Some(p) => self
                .identity
                .policies(ctx, p)
                .map(|c| c.principal.identity.clone())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let input = gantry_iam::sts::AssumeRoleInput {
            role_arn: r.role_arn.clone(),
            session_name: r.role_session_name.clone(),
            duration_seconds: r.duration_seconds,
            external_id: r.external_id.clone(),
            policy: r.policy.clone(),
            policy_arns: r.policy_arns.clone(),
            tags: r.tags.clone(),
            transitive_tag_keys: r.transitive_tag_keys.clone(),
            source_identity: r.source_identity.clone(),
        };
        let a = self
            .identity
            .iam()
            .assume_role(&principal, &identity, &input, ctx.now)?;
        Ok(gantry_sts::AssumedRole {
            credentials: gantry_sts::Credentials {
                access_key_id: a.credentials.access_key_id,
                secret_access_key: a.credentials.secret_access_key,
                session_token: a.credentials.session_token,
                expiration: a.credentials.expiration,
            },
            arn: a.arn,
            assumed_role_id: a.assumed_role_id,
            packed_policy_size: a.packed_policy_size,
        })
    }

    async fn session_token(
        &self,
        ctx: &RequestContext,
        duration_seconds: Option<u32>,
    ) -> Result<gantry_sts::Credentials, AwsError> {
        if ctx.access_key_id.starts_with("ASIA") {
            return Err(AwsError::client(
                "AccessDenied",
                "Cannot call GetSessionToken with session credentials",
            )
            .with_status(http::StatusCode::FORBIDDEN));
        }
        let c = self
            .identity
            .iam()
            .session_token(&ctx.principal(), duration_seconds, ctx.now)?;
        Ok(gantry_sts::Credentials {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            expiration: c.expiration,
        })
    }
}

/// The registry's Basic credentials: those of an [`Identity`] built after the registry (whose
/// repository policies the identity reads), set once at wiring (until then it knows no key);
/// the root key pair only when `allow_root` (`--registry-root-basic-auth`).
#[derive(Default)]
pub struct LateCredentials {
    creds: std::sync::OnceLock<Arc<dyn CredentialProvider>>,
    root_access_key_id: String,
    allow_root: bool,
}

impl std::fmt::Debug for LateCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LateCredentials")
    }
}

impl LateCredentials {
    pub fn new(root_access_key_id: &str, allow_root: bool) -> Self {
        Self {
            creds: std::sync::OnceLock::new(),
            root_access_key_id: root_access_key_id.to_owned(),
            allow_root,
        }
    }

    pub fn set(&self, creds: Arc<dyn CredentialProvider>) {
        let _ = self.creds.set(creds);
    }
}

impl CredentialProvider for LateCredentials {
    fn secret_access_key(&self, access_key_id: &str) -> Option<String> {
        if access_key_id == self.root_access_key_id && !self.allow_root {
            return None;
        }
        self.creds.get()?.secret_access_key(access_key_id)
    }

    fn secret_with_session_token(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Option<String> {
        if access_key_id == self.root_access_key_id && !self.allow_root {
            return None;
        }
        self.creds
            .get()?
            .secret_with_session_token(access_key_id, session_token)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::secrets::ExecutionRoleAuthorizer;
    use gantry_aws_proto::query::QueryRequest;
    use gantry_ecs::task_secrets::TaskScope;
    use gantry_front::QueryService;
    use gantry_store::MemoryStore;

    const ACCOUNT: &str = "111122223333";

    /// Calls an IAM query action as the account's root (the tests' way to set up users,
    /// policies and keys).
    pub(crate) async fn iam_call(iam: &IamService, action: &str, params: &[(&str, &str)]) {
        let mut body = format!("Action={action}&Version=2010-05-08");
        for (k, v) in params {
            let enc: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            body.push_str(&format!("&{k}={enc}"));
        }
        let ctx = RequestContext {
            caller: None,
            request_id: "r".into(),
            region: "us-east-1".into(),
            account_id: ACCOUNT.into(),
            access_key_id: "AKIAROOT".into(),
            now: 1_700_000_000_000,
        };
        iam.call(action, &QueryRequest::parse(body.as_bytes(), None), &ctx)
            .await
            .unwrap();
    }

    fn task(role: &str) -> TaskScope {
        TaskScope {
            region: "us-east-1".into(),
            account_id: ACCOUNT.into(),
            task_arn: format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/c/0123abcd"),
            execution_role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/{role}")),
            task_role_arn: None,
        }
    }

    #[tokio::test]
    async fn execution_roles_are_evaluated_with_their_policies_and_trust() {
        let iam = Arc::new(
            IamService::open(
                Arc::new(MemoryStore::new()),
                Arc::new(MasterSealer(MasterKey::new(&[7u8; 32]).unwrap())),
                ACCOUNT,
            )
            .await
            .unwrap(),
        );
        let trust = |service: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{service}"}},"Action":"sts:AssumeRole"}}]}}"#
            )
        };
        let ecs_trust = trust("ecs-tasks.amazonaws.com");
        iam_call(
            &iam,
            "CreateRole",
            &[
                ("RoleName", "exec"),
                ("AssumeRolePolicyDocument", &ecs_trust),
            ],
        )
        .await;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:GetParameters","Resource":"arn:aws:ssm:us-east-1:111122223333:parameter/app/*"}]}"#;
        iam_call(
            &iam,
            "PutRolePolicy",
            &[
                ("RoleName", "exec"),
                ("PolicyName", "p"),
                ("PolicyDocument", policy),
            ],
        )
        .await;
        let ec2_trust = trust("ec2.amazonaws.com");
        iam_call(
            &iam,
            "CreateRole",
            &[
                ("RoleName", "ec2"),
                ("AssumeRolePolicyDocument", &ec2_trust),
            ],
        )
        .await;
        let identity = Arc::new(Identity::new(
            Arc::new(RootCredentials {
                access_key_id: "AKIAROOT".into(),
                secret_access_key: "s".into(),
            }),
            iam,
            "us-east-1",
        ));
        let roles = ExecutionRoles { identity };
        let param = format!("arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/app/token");
        roles
            .authorize(&task("exec"), "ssm:GetParameters", &param)
            .await
            .unwrap();
        let other = format!("arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/ops/token");
        let e = roles
            .authorize(&task("exec"), "ssm:GetParameters", &other)
            .await
            .unwrap_err();
        assert!(
            e.0.starts_with(&format!(
                "User: arn:aws:sts::{ACCOUNT}:assumed-role/exec/0123abcd is not authorized to perform: ssm:GetParameters on resource: {other}"
            )),
            "{}",
            e.0
        );
        let secret = format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:db-AbCdEf");
        assert!(
            roles
                .authorize(&task("exec"), "secretsmanager:GetSecretValue", &secret)
                .await
                .is_err()
        );
        for role in ["ec2", "ghost"] {
            let e = roles
                .authorize(&task(role), "ssm:GetParameters", &param)
                .await
                .unwrap_err();
            assert!(
                e.0.starts_with(
                    "ECS was unable to assume the role 'arn:aws:iam::111122223333:role/"
                ),
                "{}",
                e.0
            );
        }
        // Task role sessions: for roles ECS tasks may assume only, named after the task.
        let exec_arn = format!("arn:aws:iam::{ACCOUNT}:role/exec");
        let c = roles.role_session(&task("exec"), &exec_arn).await.unwrap();
        assert!(c.access_key_id.starts_with("ASIA") && c.role_arn == exec_arn);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(c.expiration > now && c.expiration <= now + 3600 * 1000 + 1000);
        let p = roles
            .identity
            .resolve(&c.access_key_id, Some(&c.session_token), now)
            .unwrap()
            .unwrap();
        assert_eq!(
            p.arn,
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/exec/0123abcd")
        );
        assert!(matches!(
            roles
                .identity
                .resolve(&c.access_key_id, Some(&c.session_token), c.expiration + 1),
            Err(AuthFailure::Expired)
        ));
        let ec2_arn = format!("arn:aws:iam::{ACCOUNT}:role/ec2");
        let e = roles
            .role_session(&task("exec"), &ec2_arn)
            .await
            .unwrap_err();
        assert!(
            e.0.starts_with("ECS was unable to assume the role"),
            "{}",
            e.0
        );

        let mut foreign = task("exec");
        foreign.execution_role_arn = Some("arn:aws:iam::999999999999:role/exec".into());
        assert!(
            roles
                .authorize(&foreign, "ssm:GetParameters", &param)
                .await
                .is_err()
        );
    }
}
