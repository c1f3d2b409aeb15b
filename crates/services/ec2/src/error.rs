//! EC2 errors and their one mapping to EC2's error codes.

use gantry_aws_proto::AwsError;
use gantry_store::StoreError;

/// Why an EC2 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// A named VPC does not exist.
    #[error("The vpc ID '{0}' does not exist")]
    VpcNotFound(String),
    /// A named subnet does not exist.
    #[error("The subnet ID '{0}' does not exist")]
    SubnetNotFound(String),
    /// A named security group does not exist (by id, or by name in the default VPC).
    #[error("The security group '{0}' does not exist")]
    GroupNotFound(String),
    /// A named network interface does not exist.
    #[error("The networkInterface ID '{0}' does not exist")]
    NetworkInterfaceNotFound(String),
    /// A named security group rule does not exist.
    #[error("The security group rule ID '{0}' does not exist")]
    RuleNotFound(String),
    /// An id does not have the shape of its kind (`code` is e.g. `InvalidVpcID.Malformed`).
    #[error("Invalid id: \"{id}\"")]
    Malformed { code: &'static str, id: String },
    /// A required parameter is missing.
    #[error("The request must contain the parameter {0}")]
    MissingParameter(String),
    /// A parameter value is invalid.
    #[error("{0}")]
    InvalidParameterValue(String),
    /// Parameters that cannot be given together (or a missing one of a pair).
    #[error("{0}")]
    InvalidParameterCombination(String),
    /// A parameter Gantry does not honour (IPv6, IPAM pools, outposts, ...).
    #[error("The parameter {0} is not supported by this endpoint.")]
    UnsupportedParameter(String),
    /// A VPC CIDR block outside /16../28 or not a valid block.
    #[error("The CIDR '{0}' is invalid.")]
    InvalidVpcRange(String),
    /// A subnet CIDR block outside its VPC's block, or of a size EC2 refuses.
    #[error("The CIDR '{0}' is invalid.")]
    InvalidSubnetRange(String),
    /// A subnet CIDR block overlapping another subnet of the VPC.
    #[error("The CIDR '{0}' conflicts with another subnet")]
    SubnetConflict(String),
    /// The resource is still used (subnets or groups in a VPC, interfaces in a subnet, members
    /// or referencing rules of a group).
    #[error("{0}")]
    DependencyViolation(String),
    /// CreateSecurityGroup with a name already used in the VPC.
    #[error("The security group '{name}' already exists for VPC '{vpc}'")]
    GroupDuplicate { name: String, vpc: String },
    /// CreateSecurityGroup named `default`.
    #[error("The security group '{0}' is reserved")]
    GroupReserved(String),
    /// Deleting the default security group.
    #[error("the specified group: \"{id}\" name: \"default\" cannot be deleted by a user")]
    CannotDelete { id: String },
    /// Authorize with a rule that exists already.
    #[error("the specified rule \"{0}\" already exists")]
    PermissionDuplicate(String),
    /// Revoke of rules none of which exist.
    #[error("The specified rule does not exist in this security group.")]
    PermissionNotFound,
    /// An unknown filter name.
    #[error("The filter '{0}' is invalid")]
    InvalidFilter(String),
    /// A `NextToken` Gantry did not hand out.
    #[error("Invalid pagination token")]
    InvalidPaginationToken,
    /// A subnet has no free address left.
    #[error(
        "There are not enough free addresses in subnet '{0}' to satisfy the requested number of instances."
    )]
    InsufficientFreeAddresses(String),
    /// `DryRun=true` on an operation that would have been attempted.
    #[error("Request would have succeeded, but DryRun flag is set.")]
    DryRun,
    /// An operation of the EC2 model that Gantry does not serve.
    #[error("The operation {0} is not supported by this endpoint.")]
    Unsupported(String),
    /// The store failed; the request was not applied.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// Compare-and-swap kept conflicting.
    #[error("too much contention on {0}")]
    Contention(String),
}

impl Ec2Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameterValue(msg.into())
    }

    /// EC2's error code for this error.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::VpcNotFound(_) => "InvalidVpcID.NotFound",
            Self::SubnetNotFound(_) => "InvalidSubnetID.NotFound",
            Self::GroupNotFound(_) => "InvalidGroup.NotFound",
            Self::NetworkInterfaceNotFound(_) => "InvalidNetworkInterfaceID.NotFound",
            Self::RuleNotFound(_) => "InvalidSecurityGroupRuleId.NotFound",
            Self::Malformed { code, .. } => code,
            Self::MissingParameter(_) => "MissingParameter",
            Self::InvalidParameterValue(_) => "InvalidParameterValue",
            Self::InvalidParameterCombination(_) => "InvalidParameterCombination",
            Self::UnsupportedParameter(_) => "InvalidParameter",
            Self::InvalidVpcRange(_) => "InvalidVpc.Range",
            Self::InvalidSubnetRange(_) => "InvalidSubnet.Range",
            Self::SubnetConflict(_) => "InvalidSubnet.Conflict",
            Self::DependencyViolation(_) => "DependencyViolation",
            Self::GroupDuplicate { .. } => "InvalidGroup.Duplicate",
            Self::GroupReserved(_) => "InvalidGroup.Reserved",
            Self::CannotDelete { .. } => "CannotDelete",
            Self::PermissionDuplicate(_) => "InvalidPermission.Duplicate",
            Self::PermissionNotFound => "InvalidPermission.NotFound",
            Self::InvalidFilter(_) => "InvalidParameterValue",
            Self::InvalidPaginationToken => "InvalidPaginationToken",
            Self::InsufficientFreeAddresses(_) => "InsufficientFreeAddressesInSubnet",
            Self::DryRun => "DryRunOperation",
            Self::Unsupported(_) => "UnsupportedOperation",
            Self::Store(_) | Self::Contention(_) => "InternalError",
        }
    }
}

impl From<Ec2Error> for AwsError {
    fn from(e: Ec2Error) -> Self {
        match e {
            Ec2Error::Store(_) | Ec2Error::Contention(_) => {
                tracing::error!(error = %e, "internal failure");
                let mut err = AwsError::server(
                    "An internal error has occurred; the request was not applied.",
                );
                err.code = "InternalError".into();
                err
            }
            Ec2Error::DryRun => AwsError::client(e.aws_code(), e.to_string())
                .with_status(http::StatusCode::PRECONDITION_FAILED),
            other => AwsError::client(other.aws_code(), other.to_string()),
        }
    }
}
