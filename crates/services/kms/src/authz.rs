//! What each served KMS operation needs from IAM, as AWS's Service Authorization Reference lists
//! it: the action and the resource types whose ARNs the request names (`key`:
//! `arn:aws:kms:{region}:{account}:key/{key-id}`, `alias`: `arn:aws:kms:{region}:{account}:alias/{name}`;
//! none means `*`). The front's authorization point evaluates these against the caller's identity
//! policies; key policies are not evaluated (docs/compatibility.md). ReEncrypt needs two actions: `kms:ReEncryptFrom` on the source key (listed)
//! and `kms:ReEncryptTo` on the destination key.

/// `(operation, IAM action, resource types)`, sorted by operation.
pub const AUTHORIZATION: &[(&str, &str, &[&str])] = &[
    ("CancelKeyDeletion", "kms:CancelKeyDeletion", &["key"]),
    ("CreateAlias", "kms:CreateAlias", &["alias", "key"]),
    ("CreateKey", "kms:CreateKey", &[]),
    ("Decrypt", "kms:Decrypt", &["key"]),
    ("DeleteAlias", "kms:DeleteAlias", &["alias", "key"]),
    ("DescribeKey", "kms:DescribeKey", &["key"]),
    ("DisableKey", "kms:DisableKey", &["key"]),
    ("DisableKeyRotation", "kms:DisableKeyRotation", &["key"]),
    ("EnableKey", "kms:EnableKey", &["key"]),
    ("EnableKeyRotation", "kms:EnableKeyRotation", &["key"]),
    ("Encrypt", "kms:Encrypt", &["key"]),
    ("GenerateDataKey", "kms:GenerateDataKey", &["key"]),
    (
        "GenerateDataKeyWithoutPlaintext",
        "kms:GenerateDataKeyWithoutPlaintext",
        &["key"],
    ),
    ("GenerateRandom", "kms:GenerateRandom", &[]),
    ("GetKeyPolicy", "kms:GetKeyPolicy", &["key"]),
    ("GetKeyRotationStatus", "kms:GetKeyRotationStatus", &["key"]),
    ("ListAliases", "kms:ListAliases", &[]),
    ("ListKeyPolicies", "kms:ListKeyPolicies", &["key"]),
    ("ListKeyRotations", "kms:ListKeyRotations", &["key"]),
    ("ListKeys", "kms:ListKeys", &[]),
    ("ListResourceTags", "kms:ListResourceTags", &["key"]),
    ("PutKeyPolicy", "kms:PutKeyPolicy", &["key"]),
    ("ReEncrypt", "kms:ReEncryptFrom", &["key"]),
    ("RotateKeyOnDemand", "kms:RotateKeyOnDemand", &["key"]),
    ("ScheduleKeyDeletion", "kms:ScheduleKeyDeletion", &["key"]),
    ("TagResource", "kms:TagResource", &["key"]),
    ("UntagResource", "kms:UntagResource", &["key"]),
    ("UpdateAlias", "kms:UpdateAlias", &["alias", "key"]),
    ("UpdateKeyDescription", "kms:UpdateKeyDescription", &["key"]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KmsOperation, KmsService};

    #[test]
    fn the_table_covers_exactly_the_served_operations_in_order() {
        assert!(AUTHORIZATION.windows(2).all(|w| w[0].0 < w[1].0));
        for (op, action, _) in AUTHORIZATION {
            let parsed: KmsOperation = op.parse().expect("an operation of the model");
            assert!(KmsService::is_implemented(parsed), "{op} is not served");
            assert!(action.starts_with("kms:"));
        }
        for op in KmsOperation::ALL {
            if KmsService::is_implemented(*op) {
                assert!(
                    AUTHORIZATION.iter().any(|(o, _, _)| *o == op.as_str()),
                    "{op} has no authorization entry"
                );
            }
        }
    }
}
