//! Who is calling, and whether they may: the two hooks the composition root gives the front.
//!
//! After SigV4 verification the [`Authenticator`] names the principal behind the access key
//! (and session token); after the operation-table and model-constraint checks, and before
//! dispatch, the [`Authorizer`] decides with the caller's policies. The account root (the root
//! key pair, `RequestContext::caller == None`) is never checked: it is allowed everything, as
//! on AWS. A front without hooks treats every caller as the root.

use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::query::QueryRequest;
use gantry_iam_policy::Principal;

use crate::context::RequestContext;
use crate::service::ServiceSpec;

/// Why a verified signature does not make an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The session token's session is over (`ExpiredToken`).
    Expired,
    /// The key or token names no principal any more (a deleted user, role or key).
    Invalid,
}

/// The principal behind a verified request.
pub trait Authenticator: Send + Sync {
    /// `Ok(None)` for the account root; `Ok(Some(_))` for users and sessions.
    fn principal(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        service: &str,
        region: &str,
        now_ms: u64,
    ) -> Result<Option<Arc<Principal>>, AuthFailure>;
}

/// The decoded input of an operation, as the authorizer reads it for resource names and
/// condition keys.
#[derive(Debug, Clone, Copy)]
pub enum OperationInput<'a> {
    /// An awsJson body (possibly empty or not JSON: then nothing can be read from it).
    Json(&'a [u8]),
    /// An awsQuery or ec2 request.
    Query(&'a QueryRequest),
}

/// A refused request: AWS's message (`User: arn:... is not authorized to perform: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// The single authorization point before dispatch.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// Decides whether `ctx.caller` may run `operation` of `spec` with `input`.
    async fn authorize(
        &self,
        ctx: &RequestContext,
        spec: &'static ServiceSpec,
        operation: &str,
        input: OperationInput<'_>,
    ) -> Result<(), Denied>;
}
