//! What each served Secrets Manager operation needs from IAM, as AWS's Service Authorization
//! Reference lists it: the action and the resource types whose ARNs the request names (`Secret`:
//! `arn:aws:secretsmanager:{region}:{account}:secret:{name}-{suffix}`, the secret `SecretId`
//! resolves to, or for CreateSecret the ARN it will get; none means `*`). The secret's resource
//! policy takes part in the decision; reading or writing a value also needs `kms:Decrypt` /
//! `kms:GenerateDataKey` on a customer-managed key, checked by KMS.

/// `(operation, IAM action, resource types)`, sorted by operation.
pub const AUTHORIZATION: &[(&str, &str, &[&str])] = &[
    (
        "BatchGetSecretValue",
        "secretsmanager:BatchGetSecretValue",
        &[],
    ),
    ("CreateSecret", "secretsmanager:CreateSecret", &["Secret"]),
    (
        "DeleteResourcePolicy",
        "secretsmanager:DeleteResourcePolicy",
        &["Secret"],
    ),
    ("DeleteSecret", "secretsmanager:DeleteSecret", &["Secret"]),
    (
        "DescribeSecret",
        "secretsmanager:DescribeSecret",
        &["Secret"],
    ),
    ("GetRandomPassword", "secretsmanager:GetRandomPassword", &[]),
    (
        "GetResourcePolicy",
        "secretsmanager:GetResourcePolicy",
        &["Secret"],
    ),
    (
        "GetSecretValue",
        "secretsmanager:GetSecretValue",
        &["Secret"],
    ),
    (
        "ListSecretVersionIds",
        "secretsmanager:ListSecretVersionIds",
        &["Secret"],
    ),
    ("ListSecrets", "secretsmanager:ListSecrets", &[]),
    (
        "PutResourcePolicy",
        "secretsmanager:PutResourcePolicy",
        &["Secret"],
    ),
    (
        "PutSecretValue",
        "secretsmanager:PutSecretValue",
        &["Secret"],
    ),
    ("RestoreSecret", "secretsmanager:RestoreSecret", &["Secret"]),
    ("TagResource", "secretsmanager:TagResource", &["Secret"]),
    ("UntagResource", "secretsmanager:UntagResource", &["Secret"]),
    ("UpdateSecret", "secretsmanager:UpdateSecret", &["Secret"]),
    (
        "UpdateSecretVersionStage",
        "secretsmanager:UpdateSecretVersionStage",
        &["Secret"],
    ),
    (
        "ValidateResourcePolicy",
        "secretsmanager:ValidateResourcePolicy",
        &["Secret"],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SecretsManagerService, SmOperation};

    #[test]
    fn the_table_covers_exactly_the_served_operations_in_order() {
        assert!(AUTHORIZATION.windows(2).all(|w| w[0].0 < w[1].0));
        for op in SmOperation::ALL {
            let listed = AUTHORIZATION.iter().any(|(o, _, _)| *o == op.as_str());
            assert_eq!(listed, SecretsManagerService::is_implemented(*op), "{op}");
        }
    }
}
