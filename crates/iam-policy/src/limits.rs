//! Documented size quotas of policy documents (IAM "IAM and AWS STS quotas"). Whitespace is not
//! counted.

use crate::error::PolicySizeError;

/// Which quota a document is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicySizeLimit {
    /// A customer-managed policy (each version): 6,144 characters.
    ManagedPolicy,
    /// All inline policies of one user together: 2,048 characters.
    UserInline,
    /// All inline policies of one group together: 5,120 characters.
    GroupInline,
    /// All inline policies of one role together: 10,240 characters.
    RoleInline,
    /// A role's trust policy: 2,048 characters by default (a quota AWS can raise to 4,096).
    TrustPolicy,
}

impl PolicySizeLimit {
    /// The quota in characters, whitespace not counted.
    pub const fn max_chars(self) -> usize {
        match self {
            PolicySizeLimit::ManagedPolicy => 6_144,
            PolicySizeLimit::UserInline => 2_048,
            PolicySizeLimit::GroupInline => 5_120,
            PolicySizeLimit::RoleInline => 10_240,
            PolicySizeLimit::TrustPolicy => 2_048,
        }
    }

    /// Checks a counted size (see [`policy_size`]) against the quota. `entity` names the user,
    /// group or role for the inline quotas (IAM's message names it); it is not used otherwise.
    ///
    /// For inline policies the caller passes the total of all the entity's inline policies
    /// after the write, as IAM counts them together.
    pub fn check(self, size: usize, entity: &str) -> Result<(), PolicySizeError> {
        self.check_with_max(size, self.max_chars(), entity)
    }

    /// As [`PolicySizeLimit::check`] with a quota other than the default (a raised trust-policy
    /// quota).
    pub fn check_with_max(
        self,
        size: usize,
        max: usize,
        entity: &str,
    ) -> Result<(), PolicySizeError> {
        if size <= max {
            return Ok(());
        }
        let message = match self {
            PolicySizeLimit::ManagedPolicy => format!("Cannot exceed quota for PolicySize: {max}"),
            PolicySizeLimit::TrustPolicy => {
                format!("Cannot exceed quota for ACLSizePerRole: {max}")
            }
            PolicySizeLimit::UserInline => {
                format!("Maximum policy size of {max} bytes exceeded for user {entity}")
            }
            PolicySizeLimit::GroupInline => {
                format!("Maximum policy size of {max} bytes exceeded for group {entity}")
            }
            PolicySizeLimit::RoleInline => {
                format!("Maximum policy size of {max} bytes exceeded for role {entity}")
            }
        };
        Err(PolicySizeError::new(message))
    }
}

/// The size IAM counts for a document: its characters, whitespace excluded.
pub fn policy_size(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_not_counted() {
        assert_eq!(policy_size("{ \"a\" :\n\t1 }"), 7);
    }

    #[test]
    fn quotas_are_the_documented_ones() {
        assert_eq!(PolicySizeLimit::ManagedPolicy.max_chars(), 6144);
        assert_eq!(PolicySizeLimit::UserInline.max_chars(), 2048);
        assert_eq!(PolicySizeLimit::RoleInline.max_chars(), 10240);
        assert_eq!(PolicySizeLimit::GroupInline.max_chars(), 5120);
        assert_eq!(PolicySizeLimit::TrustPolicy.max_chars(), 2048);
    }

    #[test]
    fn over_quota_is_refused_with_iam_wording() {
        assert!(PolicySizeLimit::ManagedPolicy.check(6144, "").is_ok());
        let e = PolicySizeLimit::ManagedPolicy.check(6145, "").unwrap_err();
        assert_eq!(e.to_string(), "Cannot exceed quota for PolicySize: 6144");
        assert_eq!(e.aws_code(), "LimitExceeded");
        let e = PolicySizeLimit::UserInline.check(2049, "dev").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Maximum policy size of 2048 bytes exceeded for user dev"
        );
        let e = PolicySizeLimit::TrustPolicy.check(2049, "r").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cannot exceed quota for ACLSizePerRole: 2048"
        );
    }
}
