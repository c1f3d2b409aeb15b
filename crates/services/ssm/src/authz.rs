//! What each served Parameter Store operation needs from IAM, as AWS's Service Authorization
//! Reference lists it: the action and the resource types whose ARNs the request names
//! (`parameter`: `arn:aws:ssm:{region}:{account}:parameter/{name without its leading slash}`; for
//! GetParametersByPath the path's ARN; none means `*`). Reading a SecureString with decryption
//! also needs `kms:Decrypt` on a customer-managed key, checked by KMS.

/// `(operation, IAM action, resource types)`, sorted by operation.
pub const AUTHORIZATION: &[(&str, &str, &[&str])] = &[
    ("AddTagsToResource", "ssm:AddTagsToResource", &["parameter"]),
    ("DeleteParameter", "ssm:DeleteParameter", &["parameter"]),
    ("DeleteParameters", "ssm:DeleteParameters", &["parameter"]),
    ("DescribeParameters", "ssm:DescribeParameters", &[]),
    ("GetParameter", "ssm:GetParameter", &["parameter"]),
    (
        "GetParameterHistory",
        "ssm:GetParameterHistory",
        &["parameter"],
    ),
    ("GetParameters", "ssm:GetParameters", &["parameter"]),
    (
        "GetParametersByPath",
        "ssm:GetParametersByPath",
        &["parameter"],
    ),
    (
        "LabelParameterVersion",
        "ssm:LabelParameterVersion",
        &["parameter"],
    ),
    (
        "ListTagsForResource",
        "ssm:ListTagsForResource",
        &["parameter"],
    ),
    ("PutParameter", "ssm:PutParameter", &["parameter"]),
    (
        "RemoveTagsFromResource",
        "ssm:RemoveTagsFromResource",
        &["parameter"],
    ),
    (
        "UnlabelParameterVersion",
        "ssm:UnlabelParameterVersion",
        &["parameter"],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SsmOperation;

    #[test]
    fn the_table_is_sorted_and_names_operations_of_the_model() {
        assert!(AUTHORIZATION.windows(2).all(|w| w[0].0 < w[1].0));
        for (op, action, _) in AUTHORIZATION {
            assert!(op.parse::<SsmOperation>().is_ok(), "{op}");
            assert_eq!(action.strip_prefix("ssm:"), Some(*op));
        }
        assert_eq!(SsmOperation::ALL.len(), 146);
    }
}
