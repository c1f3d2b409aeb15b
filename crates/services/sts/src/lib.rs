//! STS (`sts`, API version 2011-06-15) over the query protocol: `GetCallerIdentity` for every
//! principal kind, `AssumeRole`, `GetSessionToken` and `GetAccessKeyInfo`. Every operation of
//! the model is listed in [`StsOperation`]; the federation operations answer
//! `InvalidAction`-style refusals naming them.
//!
//! Sessions are minted by the directory of principals, which this crate reaches through the
//! [`Sessions`] trait (implemented by the composition root over the IAM crate).
//!
//! A service crate: depends on the front and the wire layer, never on another service.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::query::{QueryRequest, XmlWriter};
use gantry_front::{Protocol, QueryService, RequestContext, ServiceSpec};

gantry_front::operations! {
    /// Every operation of the STS API model.
    pub enum StsOperation {
        AssumeRole,
        AssumeRoleWithSAML,
        AssumeRoleWithWebIdentity,
        AssumeRoot,
        DecodeAuthorizationMessage,
        GetAccessKeyInfo,
        GetCallerIdentity,
        GetDelegatedAccessToken,
        GetFederationToken,
        GetSessionToken,
        GetWebIdentityToken,
    }
}

/// How the front reaches STS.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "sts",
    signing_name: "sts",
    protocol: Protocol::Query {
        xmlns: StsService::XMLNS,
        version: "2011-06-15",
    },
    operations: StsOperation::NAMES,
    constraints: &gantry_aws_proto::constraints::Constraints::NONE,
};

/// Temporary credentials as STS returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Milliseconds since the epoch.
    pub expiration: u64,
}

/// The result of AssumeRole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumedRole {
    pub credentials: Credentials,
    pub arn: String,
    pub assumed_role_id: String,
    pub packed_policy_size: u32,
}

/// The parameters of AssumeRole, read from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssumeRoleRequest {
    pub role_arn: String,
    pub role_session_name: String,
    pub duration_seconds: Option<u32>,
    pub external_id: Option<String>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
}

/// Where sessions come from (the directory of principals).
#[async_trait]
pub trait Sessions: Send + Sync + fmt::Debug {
    async fn assume_role(
        &self,
        ctx: &RequestContext,
        request: &AssumeRoleRequest,
    ) -> Result<AssumedRole, AwsError>;
    async fn session_token(
        &self,
        ctx: &RequestContext,
        duration_seconds: Option<u32>,
    ) -> Result<Credentials, AwsError>;
}

/// The STS service.
#[derive(Debug, Default)]
pub struct StsService {
    sessions: Option<Arc<dyn Sessions>>,
}

impl StsService {
    pub const XMLNS: &'static str = "https://sts.amazonaws.com/doc/2011-06-15/";

    /// STS minting sessions with `sessions`.
    pub fn new(sessions: Arc<dyn Sessions>) -> Self {
        Self {
            sessions: Some(sessions),
        }
    }

    /// Whether Gantry serves `op`.
    pub fn is_implemented(op: StsOperation) -> bool {
        matches!(
            op,
            StsOperation::AssumeRole
                | StsOperation::GetAccessKeyInfo
                | StsOperation::GetCallerIdentity
                | StsOperation::GetSessionToken
        )
    }

    fn sessions(&self) -> Result<&dyn Sessions, AwsError> {
        self.sessions.as_deref().ok_or_else(|| {
            AwsError::client(
                "InvalidAction",
                "This server does not issue temporary credentials.",
            )
        })
    }
}

fn iso(ms: u64) -> String {
    gantry_aws_proto::pagination::iso8601(UNIX_EPOCH + Duration::from_millis(ms))
}

fn write_credentials(w: &mut XmlWriter, c: &Credentials) {
    w.open("Credentials");
    w.leaf("AccessKeyId", &c.access_key_id);
    w.leaf("SecretAccessKey", &c.secret_access_key);
    w.leaf("SessionToken", &c.session_token);
    w.leaf("Expiration", &iso(c.expiration));
    w.close("Credentials");
}

fn missing(member: &str) -> AwsError {
    AwsError::client(
        "ValidationError",
        format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ),
    )
}

fn duration(req: &QueryRequest) -> Result<Option<u32>, AwsError> {
    req.get("DurationSeconds")
        .map(|v| {
            v.parse::<u32>().map_err(|_| {
                AwsError::client(
                    "ValidationError",
                    format!("Value '{v}' at 'durationSeconds' is not a valid integer"),
                )
            })
        })
        .transpose()
}

/// `RoleSessionName`: 2-64 characters of `[\w+=,.@-]`.
fn check_session_name(name: &str) -> Result<(), AwsError> {
    let ok = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AwsError::client(
            "ValidationError",
            format!(
                "1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            ),
        ))
    }
}

#[async_trait]
impl QueryService for StsService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(
        &self,
        action: &str,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<String, AwsError> {
        let mut w = XmlWriter::new();
        match action {
            "GetCallerIdentity" => {
                let (user_id, arn) = match &ctx.caller {
                    Some(p) => (p.user_id.clone(), p.arn.clone()),
                    None => (ctx.account_id.clone(), ctx.caller_arn()),
                };
                w.leaf("UserId", &user_id);
                w.leaf("Account", &ctx.account_id);
                w.leaf("Arn", &arn);
            }
            "GetAccessKeyInfo" => {
                let key = req
                    .get("AccessKeyId")
                    .ok_or_else(|| missing("accessKeyId"))?;
                if key.len() < 16 {
                    return Err(AwsError::client(
                        "ValidationError",
                        format!(
                            "1 validation error detected: Value '{key}' at 'accessKeyId' failed to satisfy constraint: Member must have length greater than or equal to 16"
                        ),
                    ));
                }
                // One account per server: every key it issues belongs to it.
                w.leaf("Account", &ctx.account_id);
            }
            "AssumeRole" => {
                let role_arn = req.get("RoleArn").ok_or_else(|| missing("roleArn"))?;
                let name = req
                    .get("RoleSessionName")
                    .ok_or_else(|| missing("roleSessionName"))?;
                check_session_name(name)?;
                let tags = req
                    .structs("Tags")
                    .into_iter()
                    .map(|t| {
                        (
                            t.get("Key").cloned().unwrap_or_default(),
                            t.get("Value").cloned().unwrap_or_default(),
                        )
                    })
                    .collect::<Vec<_>>();
                if tags.len() > 50 {
                    return Err(AwsError::client(
                        "ValidationError",
                        "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50",
                    ));
                }
                let request = AssumeRoleRequest {
                    role_arn: role_arn.to_owned(),
                    role_session_name: name.to_owned(),
                    duration_seconds: duration(req)?,
                    external_id: req.get("ExternalId").map(str::to_owned),
                    policy: req.get("Policy").map(str::to_owned),
                    policy_arns: req
                        .structs("PolicyArns")
                        .into_iter()
                        .filter_map(|p| p.get("arn").cloned())
                        .collect(),
                    tags,
                    transitive_tag_keys: req.list("TransitiveTagKeys"),
                    source_identity: req.get("SourceIdentity").map(str::to_owned),
                };
                for unsupported in [
                    "SerialNumber",
                    "TokenCode",
                    "ProvidedContexts.member.1.ProviderArn",
                ] {
                    if req.get(unsupported).is_some() {
                        return Err(AwsError::client(
                            "ValidationError",
                            format!(
                                "Gantry does not support {unsupported} in AssumeRole (MFA and trusted context providers are not available)."
                            ),
                        ));
                    }
                }
                let r = self.sessions()?.assume_role(ctx, &request).await?;
                write_credentials(&mut w, &r.credentials);
                w.open("AssumedRoleUser");
                w.leaf("AssumedRoleId", &r.assumed_role_id);
                w.leaf("Arn", &r.arn);
                w.close("AssumedRoleUser");
                w.leaf("PackedPolicySize", &r.packed_policy_size.to_string());
                if let Some(s) = &request.source_identity {
                    w.leaf("SourceIdentity", s);
                }
            }
            "GetSessionToken" => {
                if req.get("SerialNumber").is_some() || req.get("TokenCode").is_some() {
                    return Err(AwsError::client(
                        "ValidationError",
                        "Gantry does not support MFA (SerialNumber, TokenCode) in GetSessionToken.",
                    ));
                }
                let c = self.sessions()?.session_token(ctx, duration(req)?).await?;
                write_credentials(&mut w, &c);
            }
            other => {
                return Err(AwsError::client(
                    "InvalidAction",
                    format!(
                        "The operation {other} is not supported by this endpoint. Federation is not available."
                    ),
                ));
            }
        }
        Ok(w.finish())
    }
}
