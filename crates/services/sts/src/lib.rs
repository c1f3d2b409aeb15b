//! STS over the query protocol: `GetCallerIdentity` (Terraform calls it first).

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::query::{QueryRequest, XmlWriter};

use crate::context::RequestContext;
use crate::front::QueryService;

/// The STS service.
#[derive(Debug, Default)]
pub struct StsService;

impl StsService {
    pub const XMLNS: &'static str = "https://sts.amazonaws.com/doc/2011-06-15/";
}

#[async_trait]
impl QueryService for StsService {
    fn xmlns(&self) -> &'static str {
        Self::XMLNS
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
