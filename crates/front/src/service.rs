//! What a service is to the front: how requests reach it, which operations its model has, and the
//! traits it implements (one per protocol family, both called through [`crate::Front`]'s single
//! operation-level dispatch).

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::constraints::Constraints;
use gantry_aws_proto::query::QueryRequest;

use crate::context::RequestContext;

/// The wire protocol of a service, as its model's `metadata.protocol` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson 1.0 or 1.1: `POST /` with `X-Amz-Target: {target_prefix}.{Operation}`.
    Json {
        /// The `X-Amz-Target` prefix, e.g. `AmazonEC2ContainerServiceV20141113`.
        target_prefix: &'static str,
    },
    /// awsQuery: form-encoded `Action=...&Version=...`, XML responses; routed by signing name.
    Query {
        /// The XML namespace of responses, e.g. `https://sts.amazonaws.com/doc/2011-06-15/`.
        xmlns: &'static str,
        /// The model's API version, e.g. `2011-06-15`.
        version: &'static str,
    },
    /// `ec2`, EC2's dialect of awsQuery: the same form-encoded requests (lists as `Name.N`),
    /// `<{Action}Response>` with a `requestId` member and no `Result` wrapper, errors in a
    /// `<Response><Errors>` envelope. Routed by signing name like awsQuery.
    Ec2 {
        /// The XML namespace of responses, `http://ec2.amazonaws.com/doc/2016-11-15/`.
        xmlns: &'static str,
        /// The model's API version, `2016-11-15`.
        version: &'static str,
    },
}

impl Protocol {
    /// Whether requests arrive form-encoded and are routed by signing name (awsQuery and ec2).
    pub fn is_form_encoded(&self) -> bool {
        matches!(self, Self::Query { .. } | Self::Ec2 { .. })
    }
}

/// A service as the front routes to it.
#[derive(Debug)]
pub struct ServiceSpec {
    /// The service prefix of its IAM actions and ARNs: `ecs`, `ecr`, `logs`,
    /// `elasticloadbalancing`, `sts`, ...
    pub iam_prefix: &'static str,
    /// The SigV4 signing name clients use for it.
    pub signing_name: &'static str,
    pub protocol: Protocol,
    /// Every operation of the service's model, served or not. The front answers a name outside
    /// this table with the protocol's unknown-operation error; the service answers the ones it
    /// does not serve.
    pub operations: &'static [&'static str],
    /// The length, count, range and pattern constraints of the model's operation inputs
    /// (generated from the model into the service crate; [`Constraints::NONE`] for none). The
    /// front rejects a request that violates them before the service sees it.
    pub constraints: &'static Constraints,
}

impl ServiceSpec {
    /// Whether `op` is an operation of the model.
    pub fn has_operation(&self, op: &str) -> bool {
        self.operations.contains(&op)
    }
}

/// A service on the awsJson protocols (ECS, ECR, Logs, ...).
#[async_trait]
pub trait JsonService: Send + Sync {
    /// How the front reaches this service; its protocol is [`Protocol::Json`].
    fn spec(&self) -> &'static ServiceSpec;

    /// Runs one operation of the model; `body` is the raw JSON request.
    async fn call(
        &self,
        op: &str,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<serde_json::Value, AwsError>;

    /// [`Self::call`] answering the serialized JSON body, which is what the front sends. A
    /// service that keeps parts of its answers serialized (ECS's DescribeTasks keeps each task's)
    /// overrides it to skip building and serializing a [`serde_json::Value`].
    async fn call_serialized(
        &self,
        op: &str,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Vec<u8>, AwsError> {
        self.call(op, body, ctx)
            .await
            .map(|v| v.to_string().into_bytes())
    }
}

/// A service on the awsQuery protocol (STS, ELBv2, IAM, ...) or its `ec2` dialect.
#[async_trait]
pub trait QueryService: Send + Sync {
    /// How the front reaches this service; its protocol is [`Protocol::Query`] or
    /// [`Protocol::Ec2`].
    fn spec(&self) -> &'static ServiceSpec;

    /// Runs one action of the model; returns the inner XML of `<{Action}Result>` (awsQuery) or
    /// the members of `<{Action}Response>` after `requestId` (ec2).
    async fn call(
        &self,
        action: &str,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<String, AwsError>;
}

/// Declares a service's operation table: an enum with one variant per operation of its AWS model,
/// `ALL`, `NAMES` (for [`ServiceSpec::operations`]), `as_str`, `FromStr` and `Display`.
///
/// ```
/// gantry_front::operations! {
///     /// Every operation of the STS model.
///     pub enum StsOperation { AssumeRole, GetCallerIdentity, }
/// }
/// assert_eq!("AssumeRole".parse::<StsOperation>(), Ok(StsOperation::AssumeRole));
/// assert_eq!(StsOperation::NAMES, &["AssumeRole", "GetCallerIdentity"]);
/// ```
#[macro_export]
macro_rules! operations {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($op:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($op,)* }

        impl $name {
            /// Every operation, in model order.
            pub const ALL: &'static [$name] = &[$($name::$op,)*];
            /// Every operation's name, in model order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($op),)*];

            /// The operation's name as the model spells it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$op => stringify!($op),)* }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> ::std::result::Result<Self, ()> {
                match s { $(stringify!($op) => Ok($name::$op),)* _ => Err(()) }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
