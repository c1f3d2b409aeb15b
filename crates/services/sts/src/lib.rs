//! STS (`sts`, API version 2011-06-15) over the query protocol: `GetCallerIdentity` (Terraform
//! calls it first). Every operation of the model is listed in [`StsOperation`].
//!
//! A service crate: depends on the front and the wire layer, never on another service.

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

/// The STS service.
#[derive(Debug, Default)]
pub struct StsService;

impl StsService {
    pub const XMLNS: &'static str = "https://sts.amazonaws.com/doc/2011-06-15/";
}

#[async_trait]
impl QueryService for StsService {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(
        &self,
        action: &str,
        _req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<String, AwsError> {
        match action {
            "GetCallerIdentity" => {
                let mut w = XmlWriter::new();
                w.leaf("Arn", &ctx.caller_arn());
                w.leaf("UserId", &ctx.account_id);
                w.leaf("Account", &ctx.account_id);
                Ok(w.finish())
            }
            other => Err(AwsError::client(
                "InvalidAction",
                format!("Could not find operation {other} for version 2011-06-15"),
            )),
        }
    }
}
