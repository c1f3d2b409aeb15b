//! The IAM policy language for Gantry: what a policy document says, and whether a request is
//! allowed under the policies that apply to it.
//!
//! Pure: no I/O, no clock (the request time comes in as `aws:CurrentTime` in the [`Context`]), no
//! global state. Must not depend on tokio, HTTP, a database, Docker or any other Gantry crate;
//! the IAM and STS APIs store documents and call [`PolicyDocument::parse`] on write, and the
//! front's authorization point compiles them ([`Policy`]) and calls [`evaluate`] before dispatch.
//!
//! # What it does
//! - **Documents** ([`PolicyDocument::parse`]): `Version` (`2012-10-17`, `2008-10-17`), `Id`,
//!   `Statement` (object or array), `Sid`, `Effect`, `Action`/`NotAction`,
//!   `Resource`/`NotResource`, `Principal`/`NotPrincipal` (`*`, `AWS`, `Service`, `Federated`,
//!   `CanonicalUser`), `Condition`, validated for a [`PolicyKind`] (identity, resource, trust,
//!   session, permissions boundary) with IAM's `MalformedPolicyDocument` messages
//!   ([`PolicyError`]). Size quotas: [`PolicySizeLimit`] and [`policy_size`].
//! - **Compiled policies** ([`Policy`]): actions pre-split and case-insensitive, ARNs matched
//!   segment by segment and case-sensitively, `*` and `?` wildcards, condition values parsed
//!   once.
//! - **Conditions**: every documented operator, `...IfExists`, `ForAnyValue:`/`ForAllValues:`,
//!   AND across keys and operators, OR across values (NOR for negated operators), case-insensitive
//!   keys, policy variables with defaults and `${*}`, `${?}`, `${$}` (see [`ConditionOperator`]).
//! - **Evaluation** ([`evaluate`]): AWS's "Policy evaluation logic" with identity-based,
//!   resource-based, permissions-boundary and session policies, same-account and cross-account,
//!   role trust policies; the [`Evaluation`] says which policy type decided, which statements
//!   matched, and words the denial as AWS does ([`Evaluation::denial_message`]).
//! - **AWS-managed policies** ECS users attach, with their real documents
//!   ([`AWS_MANAGED_POLICIES`], [`aws_managed_policy`]).
//!
//! # Example
//! ```
//! use gantry_iam_policy::{evaluate, Context, Decision, Policy, PolicyKind, PolicySet, Principal, Request};
//!
//! let policy = Policy::parse(
//!     r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:RunTask",
//!         "Resource":"*","Condition":{"ArnEquals":{"ecs:cluster":
//!         "arn:aws:ecs:us-east-1:123456789012:cluster/dev"}}}]}"#,
//!     PolicyKind::Identity,
//! )
//! .unwrap();
//! let dev = Principal::user("123456789012", "/", "dev", "AIDAEXAMPLE");
//! let ctx = Context::new().with("ecs:cluster", "arn:aws:ecs:us-east-1:123456789012:cluster/prod");
//! let request = Request {
//!     principal: &dev,
//!     action: "ecs:RunTask",
//!     resources: &["arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"],
//!     resource_account: None,
//!     context: &ctx,
//! };
//! let result = evaluate(&request, &PolicySet { identity: &[&policy], ..PolicySet::default() });
//! assert_eq!(result.decision, Decision::ImplicitDeny);
//! assert_eq!(
//!     result.denial_message(&request).unwrap(),
//!     "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ecs:RunTask on \
//!      resource: arn:aws:ecs:us-east-1:123456789012:task-definition/web:1 because no \
//!      identity-based policy allows the ecs:RunTask action"
//! );
//! ```

mod condition;
mod document;
mod error;
mod eval;
mod glob;
mod limits;
mod managed;
mod policy;
mod vars;

pub use condition::{ConditionOperator, OperatorSpec, SetQualifier, parse_date};
pub use document::{
    ConditionEntry, Effect, PolicyDocument, PolicyKind, PolicyVersion, PrincipalType, Principals,
    Statement,
};
pub use error::{PolicyError, PolicySizeError};
pub use eval::{
    Context, Decision, Evaluation, MatchedStatement, PolicySet, PolicyType, Principal,
    PrincipalKind, Request, evaluate,
};
pub use limits::{PolicySizeLimit, policy_size};
pub use managed::{AWS_MANAGED_POLICIES, ManagedPolicy, aws_managed_policy};
pub use policy::Policy;

/// Parses and validates `json` as a policy of `kind` (the check the IAM API runs on every
/// write). Same as [`PolicyDocument::parse`].
pub fn parse_document(json: &str, kind: PolicyKind) -> Result<PolicyDocument, PolicyError> {
    PolicyDocument::parse(json, kind)
}
