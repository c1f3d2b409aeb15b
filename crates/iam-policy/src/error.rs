//! Errors of policy documents, worded as IAM words them.

/// Why a policy document was refused. `Display` is IAM's message, word for word; the AWS error
/// code is [`PolicyError::aws_code`] (`MalformedPolicyDocument`). Services whose resource
/// policies answer with another code (ECR's `SetRepositoryPolicy` answers
/// `InvalidParameterException`) map it themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not JSON, or not shaped as a policy: not an object, an unknown element, a
    /// value of the wrong type, no statement, an unknown `Version`, an unknown condition
    /// operator, both `Action` and `NotAction`, ...
    #[error("Syntax errors in policy.")]
    Syntax,
    /// An IAM-stored policy (identity, permissions boundary, session) whose `Version` is missing
    /// or `2008-10-17`.
    #[error("Policy document must be version 2012-10-17 or greater.")]
    Version,
    /// An `Effect` that is not exactly `Allow` or `Deny`, a date IAM cannot read in a `Date*`
    /// condition, or a resource with `::` and fewer than five colons.
    #[error("The policy failed legacy parsing")]
    LegacyParsing,
    /// Two statements with the same `Sid`.
    #[error("Statement IDs (SID) in a single policy must be unique.")]
    DuplicateSid,
    /// A `Sid` with characters other than letters and digits in a policy IAM stores.
    #[error(
        "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*"
    )]
    SidNotAlphanumeric,
    /// A statement with no `Action`/`NotAction`, or an empty list.
    #[error("Policy statement must contain actions.")]
    MissingActions,
    /// A statement of an identity-based policy with no `Resource`/`NotResource`, or an empty
    /// list.
    #[error("Policy statement must contain resources.")]
    MissingResources,
    /// `Principal` or `NotPrincipal` in an identity-based, permissions-boundary or session
    /// policy.
    #[error("Policy document should not specify a principal.")]
    PrincipalNotAllowed,
    /// A statement of a resource-based or trust policy without `Principal`/`NotPrincipal`, or a
    /// resource-based policy statement without `Effect`.
    #[error("Missing required field {0}")]
    MissingField(&'static str),
    /// An element a trust policy may not have (`Resource`, `NotResource`).
    #[error("Has prohibited field {0}")]
    ProhibitedField(&'static str),
    /// A principal that is not `*`, an account id, an IAM or STS ARN, or a service name.
    #[error("Invalid principal in policy: \"{kind}\":\"{value}\"")]
    InvalidPrincipal {
        /// `AWS`, `Service`, `Federated` or `CanonicalUser`.
        kind: String,
        /// The offending value.
        value: String,
    },
    /// A resource that is not `*` or a well-formed ARN; the message names it as IAM does.
    #[error("{0}")]
    InvalidResource(String),
    /// An action or condition key without a service prefix.
    #[error("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.")]
    MissingVendor,
    /// An action with more than one colon.
    #[error("Actions/Condition can contain only one colon.")]
    TooManyColons,
    /// A service prefix with characters other than letters, digits, `-` and `.`.
    #[error("Vendor {0} is not valid")]
    InvalidVendor(String),
}

impl PolicyError {
    /// The AWS error code IAM and STS answer with.
    pub fn aws_code(&self) -> &'static str {
        "MalformedPolicyDocument"
    }
}

/// A policy document over its size quota; `Display` is IAM's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicySizeError {
    message: String,
}

impl PolicySizeError {
    pub(crate) fn new(message: String) -> Self {
        PolicySizeError { message }
    }

    /// The AWS error code (`LimitExceeded`).
    pub fn aws_code(&self) -> &'static str {
        "LimitExceeded"
    }
}
