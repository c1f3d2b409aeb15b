//! [`Elbv2Error`] and its one mapping to AWS error codes (the `error.code` of each error shape of
//! the botocore model, HTTP 400 unless noted).

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// Failures of ELBv2 operations.
#[derive(Debug, thiserror::Error)]
pub enum Elbv2Error {
    /// An ARN or name names no load balancer.
    #[error("load balancer '{0}' not found")]
    LoadBalancerNotFound(String),
    /// An ARN or name names no target group.
    #[error("target group '{0}' not found")]
    TargetGroupNotFound(String),
    /// An ARN names no listener.
    #[error("listener '{0}' not found")]
    ListenerNotFound(String),
    /// An ARN names no rule.
    #[error("rule '{0}' not found")]
    RuleNotFound(String),
    /// CreateLoadBalancer with a name taken by another load balancer of another type.
    #[error("a load balancer with the name '{0}' already exists")]
    DuplicateLoadBalancerName(String),
    /// CreateTargetGroup with a name taken by a target group with other settings.
    #[error("a target group with the name '{0}' already exists")]
    DuplicateTargetGroupName(String),
    /// A second listener on the same port of a load balancer.
    #[error("a listener already exists on port {0}")]
    DuplicateListener(u16),
    /// Two rules of a listener with one priority.
    #[error("priority '{0}' is currently in use")]
    PriorityInUse(u32),
    /// A target that cannot be registered, or that is not registered.
    #[error("{0}")]
    InvalidTarget(String),
    /// Deleting something still used (a target group behind a listener, ...).
    #[error("{0}")]
    ResourceInUse(String),
    /// A parameter is missing or malformed.
    #[error("{0}")]
    Validation(String),
    /// A combination of settings is not valid.
    #[error("{0}")]
    InvalidConfiguration(String),
    /// An action is malformed.
    #[error("{0}")]
    InvalidAction(String),
    /// Forwarding to a target group whose protocol does not fit the listener.
    #[error("{0}")]
    IncompatibleProtocols(String),
    /// Not allowed (deletion protection, the default rule, an operation Gantry does not serve).
    #[error("{0}")]
    OperationNotPermitted(String),
    /// A protocol Gantry does not serve.
    #[error("{0}")]
    UnsupportedProtocol(String),
    /// A subnet EC2 does not know.
    #[error("The subnet ID '{0}' is not valid")]
    SubnetNotFound(String),
    /// A security group EC2 does not know, or of another VPC.
    #[error("One or more security groups are invalid")]
    InvalidSecurityGroup,
    /// AddTags with a key twice.
    #[error("tag key '{0}' is duplicated")]
    DuplicateTagKeys(String),
    /// More than 50 tags on a resource.
    #[error("too many tags: {0}")]
    TooManyTags(String),
    /// A listener certificate ARN names no ACM certificate.
    #[error("Certificate '{0}' not found")]
    CertificateNotFound(String),
    /// A security policy Gantry does not serve.
    #[error("SSL policy '{0}' not found")]
    SslPolicyNotFound(String),
    /// More certificates on a listener than allowed.
    #[error("{0}")]
    TooManyCertificates(String),
    /// A subnet that cannot hold the load balancer as asked.
    #[error("{0}")]
    InvalidSubnet(String),
    /// An account limit of [`crate::limits`] reached.
    #[error("{0}")]
    TooManyLoadBalancers(String),
    #[error("{0}")]
    TooManyTargetGroups(String),
    #[error("{0}")]
    TooManyListeners(String),
    #[error("{0}")]
    TooManyRules(String),
    /// An ALPN policy Gantry does not apply.
    #[error("{0}")]
    AlpnPolicyNotSupported(String),
    /// The certificates could not be looked up.
    #[error("certificate lookup failed: {0}")]
    CertificateLookup(String),
    /// The action is not an ELBv2 operation at all.
    #[error("unknown action {0}")]
    UnknownAction(String),
    /// Compare-and-swap kept conflicting on this key.
    #[error("too much contention on {0}")]
    Contention(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Elbv2Error {
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }

    /// The AWS error code (the model's `error.code`).
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::LoadBalancerNotFound(_) => "LoadBalancerNotFound",
            Self::TargetGroupNotFound(_) => "TargetGroupNotFound",
            Self::ListenerNotFound(_) => "ListenerNotFound",
            Self::RuleNotFound(_) => "RuleNotFound",
            Self::DuplicateLoadBalancerName(_) => "DuplicateLoadBalancerName",
            Self::DuplicateTargetGroupName(_) => "DuplicateTargetGroupName",
            Self::DuplicateListener(_) => "DuplicateListener",
            Self::PriorityInUse(_) => "PriorityInUse",
            Self::InvalidTarget(_) => "InvalidTarget",
            Self::ResourceInUse(_) => "ResourceInUse",
            Self::Validation(_) => "ValidationError",
            Self::InvalidConfiguration(_) => "InvalidConfigurationRequest",
            Self::InvalidAction(_) => "InvalidLoadBalancerAction",
            Self::IncompatibleProtocols(_) => "IncompatibleProtocols",
            Self::OperationNotPermitted(_) => "OperationNotPermitted",
            Self::UnsupportedProtocol(_) => "UnsupportedProtocol",
            Self::DuplicateTagKeys(_) => "DuplicateTagKeys",
            Self::SubnetNotFound(_) => "SubnetNotFound",
            Self::InvalidSecurityGroup => "InvalidSecurityGroup",
            Self::TooManyTags(_) => "TooManyTags",
            Self::UnknownAction(_) => "InvalidAction",
            Self::CertificateNotFound(_) => "CertificateNotFound",
            Self::SslPolicyNotFound(_) => "SSLPolicyNotFound",
            Self::TooManyCertificates(_) => "TooManyCertificates",
            Self::InvalidSubnet(_) => "InvalidSubnet",
            Self::TooManyLoadBalancers(_) => "TooManyLoadBalancers",
            Self::TooManyTargetGroups(_) => "TooManyTargetGroups",
            Self::TooManyListeners(_) => "TooManyListeners",
            Self::TooManyRules(_) => "TooManyRules",
            Self::AlpnPolicyNotSupported(_) => "ALPNPolicyNotFound",
            Self::CertificateLookup(_) => "ServerException",
            Self::Contention(_) => "PriorRequestNotComplete",
            Self::Store(_) => "ServerException",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::LoadBalancerNotFound(a) => format!("One or more load balancers not found: '{a}'"),
            Self::TargetGroupNotFound(a) => format!("One or more target groups not found: '{a}'"),
            Self::ListenerNotFound(a) => format!("One or more listeners not found: '{a}'"),
            Self::RuleNotFound(a) => format!("One or more rules not found: '{a}'"),
            Self::DuplicateLoadBalancerName(n) => {
                format!(
                    "A load balancer with the same name '{n}' exists, but with different settings"
                )
            }
            Self::DuplicateTargetGroupName(n) => {
                format!(
                    "A target group with the same name '{n}' exists, but with different settings"
                )
            }
            Self::DuplicateListener(p) => format!("A listener already exists on port {p}"),
            Self::PriorityInUse(p) => format!("Priority '{p}' is currently in use"),
            Self::UnknownAction(a) => {
                format!("Could not find operation {a} for version 2015-12-01")
            }
            Self::Contention(_) => "Too many concurrent changes to this resource; retry.".into(),
            other => other.to_string(),
        }
    }
}

impl From<Elbv2Error> for AwsError {
    fn from(e: Elbv2Error) -> Self {
        match &e {
            Elbv2Error::Store(inner) if inner.is_storage_full() || inner.is_unavailable() => {
                tracing::error!(error = %inner, "request refused: store full or unavailable");
                AwsError::unavailable(
                    "ServiceUnavailable",
                    gantry_aws_proto::store_retry_message(inner.is_storage_full()),
                )
            }
            Elbv2Error::Store(inner) => {
                tracing::error!(error = %inner, "elbv2 store failure");
                AwsError::server("An internal error occurred; retry the request.")
            }
            Elbv2Error::CertificateLookup(inner) => {
                tracing::error!(error = %inner, "elbv2 certificate lookup failure");
                AwsError::server("An internal error occurred; retry the request.")
            }
            Elbv2Error::Contention(key) => {
                tracing::warn!(key = %key, "elbv2 compare-and-swap kept conflicting");
                AwsError::client(e.aws_code(), e.message())
                    .with_status(http::StatusCode::TOO_MANY_REQUESTS)
            }
            _ => AwsError::client(e.aws_code(), e.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_a_retryable_503_service_unavailable() {
        let e: AwsError = Elbv2Error::Store(StoreError::StorageFull("disk".into())).into();
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.code, "ServiceUnavailable");
        assert!(e.message.contains("storage is full"), "{}", e.message);
    }
}
