//! Certificate Manager (awsJson1.1, target prefix `CertificateManager`): imported certificates
//! for load balancer listeners, over the Gantry store.
//!
//! - **Import**: ImportCertificate checks that the PEM certificate, chain and private key parse
//!   and that the key matches the certificate ([`material`]); DescribeCertificate reports what
//!   the certificate says (names, validity, algorithms), `Type` `IMPORTED`, `Status` `ISSUED`
//!   (`EXPIRED` once `NotAfter` has passed) and `InUseBy` (the listeners using it, from
//!   [`CertificateUsers`]). Reimporting to an ARN replaces the material and keeps the tags.
//! - **Private keys**: encrypted through [`KeyCipher`] (the composition root implements it with
//!   `gantry-kms`, under the AWS-managed `alias/aws/acm`) with the encryption context
//!   `{"CertificateArn": arn}`. The plaintext is never stored, logged, returned by an operation
//!   or quoted in an error; [`AcmService::served_certificate`] decrypts it for the load balancer
//!   channel only.
//! - **Not served**: requesting, renewing, exporting and revoking certificates (Gantry issues
//!   none) and the account configuration answer `UnsupportedOperationException`.
//!
//! The operation table with each operation's IAM action and resource is
//! [`authz::AUTHORIZATION`]. Must not depend on Docker or any other service crate.

#[rustfmt::skip]
mod model_constraints;
pub mod authz;
mod certs;
mod error;
mod keys;
pub mod material;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_front::{JsonService, Protocol, RequestContext, ServiceSpec};
use gantry_store::Store;
use serde_json::Value;

pub use error::AcmError;

/// The `X-Amz-Target` prefix of ACM.
pub const TARGET_PREFIX: &str = "CertificateManager";

/// The AWS-managed key private keys are encrypted with.
pub const DEFAULT_KEY: &str = "alias/aws/acm";

gantry_front::operations! {
    /// Every operation of the ACM API model.
    pub enum AcmOperation {
        AddTagsToCertificate,
        DeleteCertificate,
        DescribeCertificate,
        ExportCertificate,
        GetAccountConfiguration,
        GetCertificate,
        ImportCertificate,
        ListCertificates,
        ListTagsForCertificate,
        PutAccountConfiguration,
        RemoveTagsFromCertificate,
        RenewCertificate,
        RequestCertificate,
        ResendValidationEmail,
        RevokeCertificate,
        SearchCertificates,
        UpdateCertificateOptions,
    }
}

/// How the front reaches ACM.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "acm",
    signing_name: "acm",
    protocol: Protocol::Json {
        target_prefix: TARGET_PREFIX,
    },
    operations: AcmOperation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// Why KMS refused, as its error code and message, or an internal failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFailure {
    pub code: String,
    pub message: String,
}

/// How ACM encrypts private keys. The composition root implements it over `gantry-kms` with
/// [`DEFAULT_KEY`].
#[async_trait]
pub trait KeyCipher: Send + Sync + fmt::Debug {
    /// Encrypts `plaintext` bound to `context`; returns the blob and the key's ARN.
    async fn encrypt(
        &self,
        ctx: &RequestContext,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<(Vec<u8>, String), KeyFailure>;

    /// Decrypts a blob made by [`KeyCipher::encrypt`] with the same context.
    async fn decrypt(
        &self,
        ctx: &RequestContext,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, KeyFailure>;
}

/// Who uses a certificate: the composition root answers with the load balancer listeners
/// naming it.
#[async_trait]
pub trait CertificateUsers: Send + Sync + fmt::Debug {
    /// The ARNs of the resources using `certificate_arn` in `region`.
    async fn users(&self, region: &str, certificate_arn: &str) -> Result<Vec<String>, String>;
}

/// A certificate as a load balancer serves it: the certificate followed by its chain, and the
/// private key, both PEM. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServedCertificate {
    pub arn: String,
    pub chain_pem: String,
    pub private_key_pem: String,
}

impl fmt::Debug for ServedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedCertificate")
            .field("arn", &self.arn)
            .field("private_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The ACM service.
pub struct AcmService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cipher: Arc<dyn KeyCipher>,
    pub(crate) users: Option<Arc<dyn CertificateUsers>>,
}

impl fmt::Debug for AcmService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmService")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AcmService {
    pub fn new(store: Arc<dyn Store>, cipher: Arc<dyn KeyCipher>) -> Self {
        Self {
            store,
            cipher,
            users: None,
        }
    }

    /// Answers `InUseBy` and refuses deleting a certificate in use through `users`.
    #[must_use]
    pub fn with_users(mut self, users: Arc<dyn CertificateUsers>) -> Self {
        self.users = Some(users);
        self
    }

    /// Whether Gantry serves `op` (the rest answer `UnsupportedOperationException`).
    pub fn is_implemented(op: AcmOperation) -> bool {
        use AcmOperation::*;
        matches!(
            op,
            AddTagsToCertificate
                | DeleteCertificate
                | DescribeCertificate
                | GetCertificate
                | ImportCertificate
                | ListCertificates
                | ListTagsForCertificate
                | RemoveTagsFromCertificate
        )
    }

    async fn dispatch(
        &self,
        op: AcmOperation,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Value, AcmError> {
        use AcmOperation::*;
        match op {
            ImportCertificate => certs::import(self, body, ctx).await,
            DescribeCertificate => certs::describe(self, body, ctx).await,
            ListCertificates => certs::list(self, body, ctx).await,
            GetCertificate => certs::get(self, body, ctx).await,
            DeleteCertificate => certs::delete(self, body, ctx).await,
            AddTagsToCertificate => certs::add_tags(self, body, ctx).await,
            RemoveTagsFromCertificate => certs::remove_tags(self, body, ctx).await,
            ListTagsForCertificate => certs::list_tags(self, body, ctx).await,
            other => Err(AcmError::UnsupportedOperation(format!(
                "The operation {other} is not supported by this endpoint. Gantry's ACM serves imported certificates only (ImportCertificate, DescribeCertificate, ListCertificates, GetCertificate, DeleteCertificate and tags); Gantry issues, renews, exports and revokes none."
            ))),
        }
    }

    /// Whether `arn` names a certificate of `region`.
    pub async fn exists(&self, region: &str, arn: &str) -> Result<bool, AcmError> {
        certs::exists(self, region, arn).await
    }

    /// The certificate `arn` names with its chain and decrypted private key, for the load
    /// balancer channel; `None` when there is no such certificate. `ctx` is the account's.
    pub async fn served_certificate(
        &self,
        ctx: &RequestContext,
        arn: &str,
    ) -> Result<Option<ServedCertificate>, AcmError> {
        certs::served(self, ctx, arn).await
    }
}

#[async_trait]
impl JsonService for AcmService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(&self, op: &str, body: &[u8], ctx: &RequestContext) -> Result<Value, AwsError> {
        let Ok(op) = op.parse::<AcmOperation>() else {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("Unknown operation {TARGET_PREFIX}.{op}"),
            ));
        };
        self.dispatch(op, body, ctx).await.map_err(AwsError::from)
    }
}
