//! The STS side of the directory: `AssumeRole` (the trust policy and the caller's identity
//! policies evaluated together, `ExternalId`, `DurationSeconds`, session tags, session
//! policies) and `GetSessionToken`, minting [`session`](crate::session) credentials. The STS
//! service reaches these through a trait the composition root implements.

use std::sync::Arc;

use gantry_aws_proto::AwsError;
use gantry_iam_policy::{
    Context, Policy, PolicyKind, PolicySet, Principal, PrincipalKind, Request, evaluate,
};
use http::StatusCode;

use crate::IamService;
use crate::ops::{new_access_key_id, new_secret};
use crate::session::{self, SessionClaims, SessionOf};

/// Temporary credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Milliseconds since the epoch.
    pub expiration: u64,
}

/// What AssumeRole hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumedRole {
    pub credentials: IssuedCredentials,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub arn: String,
    /// `<role id>:<session>`.
    pub assumed_role_id: String,
    /// Percentage of the packed session policy and tags quota used.
    pub packed_policy_size: u32,
}

/// The parameters of AssumeRole.
#[derive(Debug, Clone, Default)]
pub struct AssumeRoleInput {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: Option<u32>,
    pub external_id: Option<String>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
}

fn access_denied(message: String) -> AwsError {
    AwsError::client("AccessDenied", message).with_status(StatusCode::FORBIDDEN)
}

fn validation(message: impl Into<String>) -> AwsError {
    AwsError::client("ValidationError", message)
}

impl IamService {
    /// AssumeRole for `caller` (with `caller_policies` its identity policies) at `now`.
    pub fn assume_role(
        &self,
        caller: &Principal,
        caller_identity: &[Arc<Policy>],
        input: &AssumeRoleInput,
        now: u64,
    ) -> Result<AssumedRole, AwsError> {
        if caller.kind == PrincipalKind::Root {
            return Err(access_denied(
                "Roles may not be assumed by root accounts.".to_owned(),
            ));
        }
        let prefix = format!("arn:aws:iam::{}:role/", self.account);
        let role_name = input
            .role_arn
            .strip_prefix(&prefix)
            .and_then(|rest| rest.rsplit('/').next())
            .filter(|n| !n.is_empty());
        let denied = || {
            access_denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                caller.arn, input.role_arn
            ))
        };
        let Some(role) = role_name.and_then(|n| self.role_for_assume(n)) else {
            return Err(denied());
        };
        if role.arn != input.role_arn {
            return Err(denied());
        }
        let max = if matches!(caller.kind, PrincipalKind::AssumedRole { .. }) {
            // Role chaining is limited to one hour.
            3600
        } else {
            role.max_session_duration
        };
        let duration = input.duration_seconds.unwrap_or(3600);
        if duration < 900 {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
            )));
        }
        if duration > max {
            return Err(validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            ));
        }
        let session_policy = match &input.policy {
            Some(doc) => {
                gantry_iam_policy::parse_document(doc, PolicyKind::Session)
                    .map_err(|e| AwsError::client("MalformedPolicyDocument", e.to_string()))?;
                Some(doc.clone())
            }
            None => None,
        };
        let mut context = Context::new();
        if let Some(x) = &input.external_id {
            context.insert("sts:ExternalId", x.clone());
        }
        context.insert("sts:RoleSessionName", input.session_name.clone());
        if let Some(s) = &input.source_identity {
            context.insert("sts:SourceIdentity", s.clone());
        }
        for (k, v) in &input.tags {
            context.insert(&format!("aws:RequestTag/{k}"), v.clone());
        }
        if !input.tags.is_empty() {
            context.set("aws:TagKeys", input.tags.iter().map(|(k, _)| k.clone()));
        }
        if !input.transitive_tag_keys.is_empty() {
            context.set("sts:TransitiveTagKeys", input.transitive_tag_keys.clone());
        }
        context.insert("aws:CurrentTime", crate::wire::date(now));
        let Some(trust) = role.trust.clone() else {
            return Err(denied());
        };
        let identity: Vec<&Policy> = caller_identity.iter().map(|p| p.as_ref()).collect();
        let resources = [input.role_arn.as_str()];
        let actions: &[&str] = if input.tags.is_empty() {
            &["sts:AssumeRole"]
        } else {
            &["sts:AssumeRole", "sts:TagSession"]
        };
        for action in actions {
            let req = Request {
                principal: caller,
                action,
                resources: &resources,
                resource_account: None,
                context: &context,
            };
            let set = PolicySet {
                identity: &identity,
                resource: Some(trust.as_ref()),
                ..PolicySet::default()
            };
            let e = evaluate(&req, &set);
            if !e.is_allowed() {
                return Err(access_denied(e.denial_message(&req).unwrap_or_else(|| {
                    format!("User: {} is not authorized", caller.arn)
                })));
            }
        }
        let packed = packed_size(session_policy.as_deref(), &input.policy_arns, &input.tags);
        if packed > 100 {
            return Err(AwsError::client(
                "PackedPolicyTooLarge",
                format!(
                    "Packed policy consumes {packed}% of allotted space, please use smaller policy."
                ),
            ));
        }
        let claims = SessionClaims {
            access_key_id: new_access_key_id("ASIA"),
            secret_access_key: new_secret(),
            expires: now + u64::from(duration) * 1000,
            of: SessionOf::Role {
                role: role.name.clone(),
                role_id: role.id.clone(),
                session_name: input.session_name.clone(),
            },
            tags: input.tags.clone(),
            policy: session_policy,
            policy_arns: input.policy_arns.clone(),
            source_key: String::new(),
        };
        let token = session::token(self.sealer.as_ref(), &claims);
        Ok(AssumedRole {
            arn: format!(
                "arn:aws:sts::{}:assumed-role/{}/{}",
                self.account, role.name, input.session_name
            ),
            assumed_role_id: format!("{}:{}", role.id, input.session_name),
            packed_policy_size: packed,
            credentials: IssuedCredentials {
                access_key_id: claims.access_key_id,
                secret_access_key: claims.secret_access_key,
                session_token: token,
                expiration: claims.expires,
            },
        })
    }

    /// A session of `role` that a service principal (ECS tasks) assumes, its trust policy
    /// having been checked by the caller: session name `session_name`, lasting `duration`
    /// seconds from `now` (at most the role's `MaxSessionDuration`).
    pub fn service_role_session(
        &self,
        role: &crate::principals::RoleForAssume,
        session_name: &str,
        duration: u32,
        now: u64,
    ) -> IssuedCredentials {
        let duration = duration.clamp(900, role.max_session_duration.max(900));
        let claims = SessionClaims {
            access_key_id: new_access_key_id("ASIA"),
            secret_access_key: new_secret(),
            expires: now + u64::from(duration) * 1000,
            of: SessionOf::Role {
                role: role.name.clone(),
                role_id: role.id.clone(),
                session_name: session_name.to_owned(),
            },
            tags: Vec::new(),
            policy: None,
            policy_arns: Vec::new(),
            source_key: String::new(),
        };
        let token = session::token(self.sealer.as_ref(), &claims);
        IssuedCredentials {
            access_key_id: claims.access_key_id,
            secret_access_key: claims.secret_access_key,
            session_token: token,
            expiration: claims.expires,
        }
    }

    /// GetSessionToken for a user or the root.
    pub fn session_token(
        &self,
        caller: &Principal,
        duration_seconds: Option<u32>,
        now: u64,
    ) -> Result<IssuedCredentials, AwsError> {
        let (of, max) = match caller.kind {
            PrincipalKind::Root => (SessionOf::Root, 3600),
            PrincipalKind::User => (
                SessionOf::User {
                    user: caller.name.clone(),
                },
                129_600,
            ),
            _ => {
                return Err(access_denied(
                    "Cannot call GetSessionToken with session credentials".to_owned(),
                ));
            }
        };
        let duration = duration_seconds.unwrap_or(if max == 3600 { 3600 } else { 43_200 });
        if !(900..=max).contains(&duration) {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and {max}"
            )));
        }
        let claims = SessionClaims {
            access_key_id: new_access_key_id("ASIA"),
            secret_access_key: new_secret(),
            expires: now + u64::from(duration) * 1000,
            of,
            tags: Vec::new(),
            policy: None,
            policy_arns: Vec::new(),
            source_key: String::new(),
        };
        let token = session::token(self.sealer.as_ref(), &claims);
        Ok(IssuedCredentials {
            access_key_id: claims.access_key_id,
            secret_access_key: claims.secret_access_key,
            session_token: token,
            expiration: claims.expires,
        })
    }
}

/// AWS's packed size: session policy, managed policy ARNs and tags against a 2,048-byte budget,
/// as a percentage.
fn packed_size(policy: Option<&str>, arns: &[String], tags: &[(String, String)]) -> u32 {
    let bytes = policy.map_or(0, gantry_iam_policy::policy_size)
        + arns.iter().map(String::len).sum::<usize>()
        + tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    ((bytes * 100).div_ceil(2048)) as u32
}
