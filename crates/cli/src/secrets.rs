//! The cross-service wiring of keys and secrets: KMS behind the ciphers Secrets Manager and
//! Parameter Store encrypt with and behind ECR's repository keys ([`KmsKeys`]), and the
//! resolution of a container's `valueFrom` ([`resolve_value_from`]) and
//! `repositoryCredentials` ([`resolve_registry_credentials`]) with the errors ECS reports.
//!
//! Service crates never depend on each other: each declares the trait it needs and this module
//! implements it over the other service.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_ecr::{KmsProblem, RepositoryKeys, SecretProblem, UpstreamCredentials, UpstreamLogin};
use gantry_ecs::task_secrets::{TaskScope, TaskSecrets};
use gantry_front::{Clock, RequestContext, SystemClock};
use gantry_iam_policy::Principal;
use gantry_kms::{KmsError, KmsService, OnBehalf};
use gantry_secretsmanager::reference::{SecretReference, json_key_value};
use gantry_secretsmanager::{SecretCipher, SecretValue, SecretsManagerService, SmError};
use gantry_ssm::{ParameterCipher, SsmError, SsmService};

/// KMS as the other services use it.
#[derive(Debug, Clone)]
pub struct KmsKeys {
    kms: Arc<KmsService>,
    account_id: String,
}

impl KmsKeys {
    pub fn new(kms: Arc<KmsService>, account_id: impl Into<String>) -> Self {
        Self {
            kms,
            account_id: account_id.into(),
        }
    }
}

/// What a caller needs on a customer managed key when Secrets Manager or Parameter Store uses
/// it for them (as AWS: Secrets Manager asks KMS for a data key, Parameter Store's standard
/// parameters are encrypted directly), with `kms:ViaService` naming the service.
const SM_WRITE: OnBehalf<'static> = OnBehalf {
    action: "kms:GenerateDataKey",
    service: "secretsmanager",
};
const SM_READ: OnBehalf<'static> = OnBehalf {
    action: "kms:Decrypt",
    service: "secretsmanager",
};
const ACM_WRITE: OnBehalf<'static> = OnBehalf {
    action: "kms:Encrypt",
    service: "acm",
};
const ACM_READ: OnBehalf<'static> = OnBehalf {
    action: "kms:Decrypt",
    service: "acm",
};
const SSM_WRITE: OnBehalf<'static> = OnBehalf {
    action: "kms:Encrypt",
    service: "ssm",
};
const SSM_READ: OnBehalf<'static> = OnBehalf {
    action: "kms:Decrypt",
    service: "ssm",
};

/// A KMS error as (code, message, whether it is KMS's own failure).
fn failure(e: KmsError) -> (String, String, bool) {
    let internal = matches!(
        e,
        KmsError::Store(_) | KmsError::Unwrap(_) | KmsError::Contention(_)
    );
    if internal {
        tracing::error!(error = %e, "KMS failed for another service");
    }
    (e.aws_code().to_owned(), e.to_string(), internal)
}

fn sm_failure(e: KmsError) -> gantry_secretsmanager::KeyFailure {
    let (code, message, internal) = failure(e);
    gantry_secretsmanager::KeyFailure {
        code,
        message,
        internal,
    }
}

fn ssm_failure(e: KmsError) -> gantry_ssm::KeyFailure {
    let (code, message, internal) = failure(e);
    gantry_ssm::KeyFailure {
        code,
        message,
        internal,
    }
}

#[async_trait]
impl SecretCipher for KmsKeys {
    async fn encrypt(
        &self,
        ctx: &RequestContext,
        key: Option<&str>,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<gantry_secretsmanager::Encrypted, gantry_secretsmanager::KeyFailure> {
        let key = key.unwrap_or(gantry_secretsmanager::DEFAULT_KEY);
        let (blob, key_arn) = self
            .kms
            .encrypt_for(ctx, &SM_WRITE, key, plaintext, context)
            .await
            .map_err(sm_failure)?;
        Ok(gantry_secretsmanager::Encrypted { blob, key_arn })
    }

    async fn decrypt(
        &self,
        ctx: &RequestContext,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, gantry_secretsmanager::KeyFailure> {
        self.kms
            .decrypt_for(ctx, &SM_READ, blob, context)
            .await
            .map(|(plain, _)| plain)
            .map_err(sm_failure)
    }

    async fn check_key(
        &self,
        ctx: &RequestContext,
        key: &str,
    ) -> Result<String, gantry_secretsmanager::KeyFailure> {
        self.kms
            .resolve_key(ctx, key)
            .await
            .map(|k| k.arn)
            .map_err(sm_failure)
    }
}

/// ACM's private keys, under the AWS-managed `alias/aws/acm`.
#[async_trait]
impl gantry_acm::KeyCipher for KmsKeys {
    async fn encrypt(
        &self,
        ctx: &RequestContext,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<(Vec<u8>, String), gantry_acm::KeyFailure> {
        self.kms
            .encrypt_for(ctx, &ACM_WRITE, gantry_acm::DEFAULT_KEY, plaintext, context)
            .await
            .map_err(acm_failure)
    }

    async fn decrypt(
        &self,
        ctx: &RequestContext,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, gantry_acm::KeyFailure> {
        self.kms
            .decrypt_for(ctx, &ACM_READ, blob, context)
            .await
            .map(|(plain, _)| plain)
            .map_err(acm_failure)
    }
}

fn acm_failure(e: KmsError) -> gantry_acm::KeyFailure {
    let (code, message, _) = failure(e);
    gantry_acm::KeyFailure { code, message }
}

#[async_trait]
impl ParameterCipher for KmsKeys {
    async fn encrypt(
        &self,
        ctx: &RequestContext,
        key: &str,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, gantry_ssm::KeyFailure> {
        self.kms
            .encrypt_for(ctx, &SSM_WRITE, key, plaintext, context)
            .await
            .map(|(blob, _)| blob)
            .map_err(ssm_failure)
    }

    async fn decrypt(
        &self,
        ctx: &RequestContext,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, gantry_ssm::KeyFailure> {
        self.kms
            .decrypt_for(ctx, &SSM_READ, blob, context)
            .await
            .map(|(plain, _)| plain)
            .map_err(ssm_failure)
    }
}

#[async_trait]
impl RepositoryKeys for KmsKeys {
    async fn key_arn(&self, region: &str, key: Option<&str>) -> Result<String, KmsProblem> {
        let ctx = RequestContext {
            caller: None,
            request_id: gantry_aws_proto::new_request_id(),
            region: region.to_owned(),
            account_id: self.account_id.clone(),
            access_key_id: String::new(),
            now: SystemClock.now_millis(),
        };
        self.kms
            .resolve_key(&ctx, key.unwrap_or("alias/aws/ecr"))
            .await
            .map(|k| k.arn)
            .map_err(|e| {
                let (code, message, _) = failure(e);
                KmsProblem { code, message }
            })
    }
}

/// Why a task's secret could not be resolved: the `stoppedReason` ECS gives the task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

const PREFIX: &str = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed:";

fn asm_error(detail: impl std::fmt::Display) -> ResolveError {
    ResolveError(format!(
        "{PREFIX} unable to retrieve secret from asm: service call has been retried 1 time(s): {detail}"
    ))
}

fn ssm_error(detail: impl std::fmt::Display) -> ResolveError {
    ResolveError(format!(
        "{PREFIX} unable to retrieve secrets from ssm: service call has been retried 1 time(s): {detail}"
    ))
}

/// An API error as the Go SDK prints it inside ECS's messages.
fn sdk_error(code: &str, message: &str, ctx: &RequestContext, status: u16) -> String {
    format!(
        "{code}: {message} status code: {status}, request id: {}",
        ctx.request_id
    )
}

fn sm_sdk_error(e: SmError, ctx: &RequestContext) -> String {
    let aws: gantry_aws_proto::AwsError = e.into();
    sdk_error(&aws.code, &aws.message, ctx, aws.status.as_u16())
}

async fn secret_string(
    sm: &SecretsManagerService,
    ctx: &RequestContext,
    r: &SecretReference,
) -> Result<String, ResolveError> {
    let secret = sm
        .get_secret_value_for(
            ctx,
            &r.secret_id,
            r.version_id.as_deref(),
            r.version_stage.as_deref(),
        )
        .await
        .map_err(|e| {
            asm_error(format!(
                "failed to fetch secret {} from secrets manager: {}",
                r.secret_id,
                sm_sdk_error(e, ctx)
            ))
        })?;
    match secret.value {
        SecretValue::String(s) => Ok(s),
        SecretValue::Binary(_) => Err(asm_error(format!(
            "secret {} holds SecretBinary; only SecretString values can be injected",
            r.secret_id
        ))),
    }
}

/// Resolves a container's `secrets[].valueFrom` (or `logConfiguration.secretOptions`) for the
/// principal of `ctx` (the task's execution role): a Secrets Manager ARN with the optional
/// `:json-key:version-stage:version-id` suffixes, or an SSM parameter name or ARN (SecureStrings
/// decrypted). The error is the `stoppedReason` ECS words for it.
pub async fn resolve_value_from(
    sm: &SecretsManagerService,
    ssm: &SsmService,
    ctx: &RequestContext,
    value_from: &str,
) -> Result<String, ResolveError> {
    if SecretReference::is_secrets_manager_arn(value_from) {
        let r = SecretReference::parse(value_from)
            .ok_or_else(|| asm_error(format!("invalid secret ARN {value_from}")))?;
        let s = secret_string(sm, ctx, &r).await?;
        return match &r.json_key {
            None => Ok(s),
            Some(k) => json_key_value(&s, k).ok_or_else(|| {
                asm_error(format!(
                    "retrieved secret from Secrets Manager did not contain json key {k}"
                ))
            }),
        };
    }
    let names = [value_from.to_owned()];
    let got = ssm
        .get_parameters_for(ctx, &names, true)
        .await
        .map_err(|e: SsmError| {
            let aws: gantry_aws_proto::AwsError = e.into();
            ssm_error(sdk_error(&aws.code, &aws.message, ctx, aws.status.as_u16()))
        })?;
    if !got.invalid.is_empty() {
        return Err(ssm_error(format!(
            "invalid parameters: {}",
            got.invalid.join(",")
        )));
    }
    got.parameters
        .into_iter()
        .next()
        .map(|p| p.value)
        .ok_or_else(|| ssm_error(format!("invalid parameters: {value_from}")))
}

/// Registry credentials from `repositoryCredentials.credentialsParameter`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Resolves `repositoryCredentials.credentialsParameter` (a secret holding
/// `{"username", "password"}`) for the principal of `ctx`.
pub async fn resolve_registry_credentials(
    sm: &SecretsManagerService,
    ctx: &RequestContext,
    credentials_parameter: &str,
) -> Result<RegistryCredentials, ResolveError> {
    let r = SecretReference::parse(credentials_parameter)
        .ok_or_else(|| asm_error(format!("invalid secret ARN {credentials_parameter}")))?;
    let s = secret_string(sm, ctx, &r).await?;
    registry_login(&s).ok_or_else(|| {
        asm_error(format!(
            "secret {credentials_parameter} is not a JSON object with \"username\" and \"password\" for registry authentication"
        ))
    })
}

/// The `{"username", "password"}` of a registry credentials secret.
fn registry_login(secret: &str) -> Option<RegistryCredentials> {
    let field = |k: &str| json_key_value(secret, k);
    Some(RegistryCredentials {
        username: field("username")?,
        password: field("password")?,
    })
}

/// ECR's reading of a pull through cache rule's `credentialArn` (as ECR's service role
/// reads it): the secret of that ARN in its region, `{"username", "password"}`, with the
/// errors ECR answers for it.
#[derive(Debug, Clone)]
pub struct PullThroughSecrets {
    sm: Arc<SecretsManagerService>,
}

impl PullThroughSecrets {
    pub fn new(sm: Arc<SecretsManagerService>) -> Self {
        Self { sm }
    }
}

#[async_trait]
impl UpstreamCredentials for PullThroughSecrets {
    async fn login(&self, arn: &str) -> Result<UpstreamLogin, SecretProblem> {
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        let (region, account) = match parts.as_slice() {
            ["arn", _, "secretsmanager", region, account, "secret", _] => (*region, *account),
            _ => {
                return Err(SecretProblem::NotFound(format!(
                    "The secret {arn} is not a Secrets Manager secret ARN"
                )));
            }
        };
        let ctx = RequestContext {
            caller: None,
            request_id: gantry_aws_proto::new_request_id(),
            region: region.to_owned(),
            account_id: account.to_owned(),
            access_key_id: String::new(),
            now: SystemClock.now_millis(),
        };
        let secret = self
            .sm
            .get_secret_value_for(&ctx, arn, None, None)
            .await
            .map_err(|e| match e {
                SmError::ResourceNotFound(_) => {
                    SecretProblem::NotFound(format!("The secret {arn} does not exist"))
                }
                SmError::DecryptionFailure(m) | SmError::AccessDenied(m) => {
                    SecretProblem::Undecryptable(format!(
                        "The secret {arn} cannot be decrypted: {m}"
                    ))
                }
                other => {
                    let aws: gantry_aws_proto::AwsError = other.into();
                    SecretProblem::Unreadable(format!(
                        "The secret {arn} cannot be read: {}: {}",
                        aws.code, aws.message
                    ))
                }
            })?;
        let unreadable = || {
            SecretProblem::Unreadable(format!(
                "The secret {arn} is not a JSON object with \"username\" and \"password\""
            ))
        };
        let SecretValue::String(s) = secret.value else {
            return Err(unreadable());
        };
        let login = registry_login(&s).ok_or_else(unreadable)?;
        Ok(UpstreamLogin {
            username: login.username,
            password: login.password,
        })
    }
}

/// An execution role's request refused by [`ExecutionRoleAuthorizer`]: the message of the
/// `AccessDeniedException` ECS quotes in the task's `stoppedReason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// The one point where a task's execution role is authorized to read what its task definition
/// references, before anything is read: `secretsmanager:GetSecretValue` on a secret,
/// `ssm:GetParameters` on a parameter (the actions the ECS agent calls with the role). The
/// server's implementation is [`crate::identity::ExecutionRoles`]: the role's identity policies
/// and permissions boundary with the secret's resource policy.
///
/// On success it answers the role session the read is then made as (`None`: no principal), so
/// that KMS checks the role against the key policy of a customer managed key (`kms:Decrypt`
/// via the service).
#[async_trait]
pub trait ExecutionRoleAuthorizer: Send + Sync {
    async fn authorize(
        &self,
        task: &TaskScope,
        action: &str,
        resource: &str,
    ) -> Result<Option<Arc<Principal>>, Denied>;

    /// A session of role `role_arn` as ECS tasks assume it for `task` (session name: the task
    /// id): the task role's credentials. Refused when the role does not trust
    /// `ecs-tasks.amazonaws.com`.
    async fn role_session(
        &self,
        task: &TaskScope,
        role_arn: &str,
    ) -> Result<gantry_domain::secrets::TaskRoleCredentials, Denied>;
}

/// ECS's [`TaskSecrets`]: the task's references resolved with [`resolve_value_from`] and
/// [`resolve_registry_credentials`], for its execution role, after [`ExecutionRoleAuthorizer`].
pub struct TaskSecretResolver {
    sm: Arc<SecretsManagerService>,
    ssm: Arc<SsmService>,
    authz: Arc<dyn ExecutionRoleAuthorizer>,
}

impl TaskSecretResolver {
    pub fn new(
        sm: Arc<SecretsManagerService>,
        ssm: Arc<SsmService>,
        authz: Arc<dyn ExecutionRoleAuthorizer>,
    ) -> Self {
        Self { sm, ssm, authz }
    }

    fn context(task: &TaskScope) -> RequestContext {
        RequestContext {
            caller: None,
            request_id: gantry_aws_proto::new_request_id(),
            region: task.region.clone(),
            account_id: task.account_id.clone(),
            access_key_id: String::new(),
            now: SystemClock.now_millis(),
        }
    }
}

/// The ARN an SSM `valueFrom` names (a name or an ARN).
fn parameter_arn(task: &TaskScope, value_from: &str) -> String {
    if value_from.starts_with("arn:") {
        return value_from.to_owned();
    }
    let name = value_from.strip_prefix('/').unwrap_or(value_from);
    format!(
        "arn:aws:ssm:{}:{}:parameter/{name}",
        task.region, task.account_id
    )
}

#[async_trait]
impl TaskSecrets for TaskSecretResolver {
    async fn value_from(&self, task: &TaskScope, value_from: &str) -> Result<String, String> {
        let mut ctx = Self::context(task);
        ctx.caller = if SecretReference::is_secrets_manager_arn(value_from) {
            let id = SecretReference::parse(value_from)
                .map_or_else(|| value_from.to_owned(), |r| r.secret_id);
            self.authz
                .authorize(task, "secretsmanager:GetSecretValue", &id)
                .await
                .map_err(|d| {
                    asm_error(format!(
                        "failed to fetch secret {id} from secrets manager: {}",
                        sdk_error("AccessDeniedException", &d.0, &ctx, 400)
                    ))
                    .0
                })?
        } else {
            let arn = parameter_arn(task, value_from);
            self.authz
                .authorize(task, "ssm:GetParameters", &arn)
                .await
                .map_err(|d| ssm_error(sdk_error("AccessDeniedException", &d.0, &ctx, 400)).0)?
        };
        resolve_value_from(&self.sm, &self.ssm, &ctx, value_from)
            .await
            .map_err(|e| e.0)
    }

    async fn registry_credentials(
        &self,
        task: &TaskScope,
        credentials_parameter: &str,
    ) -> Result<(String, String), String> {
        let mut ctx = Self::context(task);
        let id = SecretReference::parse(credentials_parameter)
            .map_or_else(|| credentials_parameter.to_owned(), |r| r.secret_id);
        ctx.caller = self
            .authz
            .authorize(task, "secretsmanager:GetSecretValue", &id)
            .await
            .map_err(|d| {
                asm_error(format!(
                    "failed to fetch secret {id} from secrets manager: {}",
                    sdk_error("AccessDeniedException", &d.0, &ctx, 400)
                ))
                .0
            })?;
        resolve_registry_credentials(&self.sm, &ctx, credentials_parameter)
            .await
            .map(|c| (c.username, c.password))
            .map_err(|e| e.0)
    }

    async fn role_credentials(
        &self,
        task: &TaskScope,
        role: &str,
    ) -> Result<gantry_domain::secrets::TaskRoleCredentials, String> {
        self.authz
            .role_session(task, role)
            .await
            .map_err(|d| format!("ResourceInitializationError: {}", d.0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gantry_front::JsonService;
    use gantry_kms::MasterKey;
    use gantry_store::MemoryStore;
    use serde_json::{Value, json};

    struct World {
        kms: Arc<KmsService>,
        sm: SecretsManagerService,
        ssm: SsmService,
    }

    fn world() -> World {
        let store = Arc::new(MemoryStore::new());
        let kms = Arc::new(KmsService::new(
            store.clone(),
            MasterKey::new(&[3u8; 32]).unwrap(),
        ));
        let keys = Arc::new(KmsKeys::new(kms.clone(), "111122223333"));
        World {
            kms: kms.clone(),
            sm: SecretsManagerService::new(store.clone(), keys.clone()),
            ssm: SsmService::new(store, keys),
        }
    }

    fn ctx() -> RequestContext {
        RequestContext {
            caller: None,
            request_id: "rid-1".into(),
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            access_key_id: "AKIA".into(),
            now: 1_700_000_000_000,
        }
    }

    async fn call(svc: &dyn JsonService, op: &str, body: Value) -> Value {
        svc.call(op, body.to_string().as_bytes(), &ctx())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn value_from_resolves_json_keys_versions_and_parameters() {
        let w = world();
        let arn = call(
            &w.sm,
            "CreateSecret",
            json!({"Name": "db", "SecretString": r#"{"password":"pw1","port":5432}"#}),
        )
        .await["ARN"]
            .as_str()
            .unwrap()
            .to_owned();
        call(
            &w.sm,
            "PutSecretValue",
            json!({"SecretId": "db", "SecretString": r#"{"password":"pw2"}"#}),
        )
        .await;
        call(
            &w.ssm,
            "PutParameter",
            json!({"Name": "/app/token", "Value": "tok", "Type": "SecureString"}),
        )
        .await;
        let c = ctx();
        let r = |v: String| {
            let (sm, ssm, c) = (&w.sm, &w.ssm, &c);
            async move { resolve_value_from(sm, ssm, c, &v).await }
        };
        assert_eq!(r(format!("{arn}:password::")).await.unwrap(), "pw2");
        assert_eq!(
            r(format!("{arn}:password:AWSPREVIOUS:")).await.unwrap(),
            "pw1"
        );
        assert_eq!(r(format!("{arn}:port:AWSPREVIOUS:")).await.unwrap(), "5432");
        assert_eq!(r(arn.clone()).await.unwrap(), r#"{"password":"pw2"}"#);
        assert_eq!(r("/app/token".into()).await.unwrap(), "tok");
        assert_eq!(
            r("arn:aws:ssm:us-east-1:111122223333:parameter/app/token".into())
                .await
                .unwrap(),
            "tok"
        );
        assert_eq!(
            r(format!("{arn}:user::")).await.unwrap_err().0,
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): retrieved secret from Secrets Manager did not contain json key user"
        );
        assert_eq!(
            r("/app/missing".into()).await.unwrap_err().0,
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): invalid parameters: /app/missing"
        );
        let missing = "arn:aws:secretsmanager:us-east-1:111122223333:secret:nope-AbCdEf";
        assert_eq!(
            r(missing.into()).await.unwrap_err().0,
            format!(
                "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {missing} from secrets manager: ResourceNotFoundException: Secrets Manager can't find the specified secret. status code: 400, request id: rid-1"
            )
        );
    }

    #[tokio::test]
    async fn a_disabled_key_fails_resolution_with_the_kms_reason() {
        let w = world();
        let key = call(w.kms.as_ref(), "CreateKey", json!({})).await["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let arn = call(
            &w.sm,
            "CreateSecret",
            json!({"Name": "k", "SecretString": "v", "KmsKeyId": key}),
        )
        .await["ARN"]
            .as_str()
            .unwrap()
            .to_owned();
        call(w.kms.as_ref(), "DisableKey", json!({"KeyId": key})).await;
        let e = resolve_value_from(&w.sm, &w.ssm, &ctx(), &arn)
            .await
            .unwrap_err();
        assert!(e.0.contains("DecryptionFailure"), "{e}");
        assert!(e.0.contains("is disabled."), "{e}");
    }

    struct AllowAll;

    #[async_trait]
    impl ExecutionRoleAuthorizer for AllowAll {
        async fn authorize(
            &self,
            _: &TaskScope,
            _: &str,
            _: &str,
        ) -> Result<Option<Arc<Principal>>, Denied> {
            Ok(None)
        }
        async fn role_session(
            &self,
            _: &TaskScope,
            role_arn: &str,
        ) -> Result<gantry_domain::secrets::TaskRoleCredentials, Denied> {
            Err(Denied(format!("cannot assume {role_arn} here")))
        }
    }

    struct DenyAll;

    #[async_trait]
    impl ExecutionRoleAuthorizer for DenyAll {
        async fn authorize(
            &self,
            task: &TaskScope,
            action: &str,
            resource: &str,
        ) -> Result<Option<Arc<Principal>>, Denied> {
            Err(Denied(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource}",
                task.execution_role_arn.as_deref().unwrap_or("none")
            )))
        }
        async fn role_session(
            &self,
            _: &TaskScope,
            role_arn: &str,
        ) -> Result<gantry_domain::secrets::TaskRoleCredentials, Denied> {
            Err(Denied(format!("cannot assume {role_arn} here")))
        }
    }

    #[tokio::test]
    async fn tasks_resolve_through_the_execution_role_hook() {
        let store = Arc::new(MemoryStore::new());
        let kms = Arc::new(KmsService::new(
            store.clone(),
            MasterKey::new(&[3u8; 32]).unwrap(),
        ));
        let keys = Arc::new(KmsKeys::new(kms, "111122223333"));
        let sm = Arc::new(SecretsManagerService::new(store.clone(), keys.clone()));
        let ssm = Arc::new(SsmService::new(store, keys));
        let arn = call(
            sm.as_ref(),
            "CreateSecret",
            json!({"Name": "reg", "SecretString": r#"{"username":"u","password":"p"}"#}),
        )
        .await["ARN"]
            .as_str()
            .unwrap()
            .to_owned();
        call(
            ssm.as_ref(),
            "PutParameter",
            json!({"Name": "/app/token", "Value": "tok", "Type": "SecureString"}),
        )
        .await;
        let task = TaskScope {
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            task_arn: "arn:aws:ecs:us-east-1:111122223333:task/c/t".into(),
            execution_role_arn: Some("arn:aws:iam::111122223333:role/exec".into()),
            task_role_arn: None,
        };
        let open = TaskSecretResolver::new(sm.clone(), ssm.clone(), Arc::new(AllowAll));
        assert_eq!(open.value_from(&task, "/app/token").await.unwrap(), "tok");
        assert_eq!(
            open.value_from(&task, &format!("{arn}:password::"))
                .await
                .unwrap(),
            "p"
        );
        assert_eq!(
            open.registry_credentials(&task, &arn).await.unwrap(),
            ("u".to_owned(), "p".to_owned())
        );
        let closed = TaskSecretResolver::new(sm, ssm, Arc::new(DenyAll));
        let e = closed.value_from(&task, &arn).await.unwrap_err();
        assert!(
            e.starts_with(&format!("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {arn} from secrets manager: AccessDeniedException: User: arn:aws:iam::111122223333:role/exec is not authorized to perform: secretsmanager:GetSecretValue on resource: {arn} status code: 400, request id: ")),
            "{e}"
        );
        let e = closed.value_from(&task, "/app/token").await.unwrap_err();
        assert!(
            e.contains("unable to retrieve secrets from ssm: service call has been retried 1 time(s): AccessDeniedException: User: arn:aws:iam::111122223333:role/exec is not authorized to perform: ssm:GetParameters on resource: arn:aws:ssm:us-east-1:111122223333:parameter/app/token"),
            "{e}"
        );
        assert!(closed.registry_credentials(&task, &arn).await.is_err());
    }

    #[tokio::test]
    async fn registry_credentials_come_from_a_json_secret() {
        let w = world();
        let arn = call(
            &w.sm,
            "CreateSecret",
            json!({"Name": "reg", "SecretString": r#"{"username":"u","password":"p"}"#}),
        )
        .await["ARN"]
            .as_str()
            .unwrap()
            .to_owned();
        let c = resolve_registry_credentials(&w.sm, &ctx(), &arn)
            .await
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        assert!(!format!("{c:?}").contains("\"p\""));
    }

    #[tokio::test]
    async fn ecr_keys_default_to_the_aws_managed_ecr_key() {
        let w = world();
        let keys = KmsKeys::new(w.kms.clone(), "111122223333");
        let arn = keys.key_arn("us-east-1", None).await.unwrap();
        let d = call(
            w.kms.as_ref(),
            "DescribeKey",
            json!({"KeyId": "alias/aws/ecr"}),
        )
        .await;
        assert_eq!(d["KeyMetadata"]["Arn"], arn);
        let e = keys
            .key_arn("us-east-1", Some("alias/none"))
            .await
            .unwrap_err();
        assert_eq!(e.code, "NotFoundException");
    }
}
