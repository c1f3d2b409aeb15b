//! What each served ACM operation needs from IAM, as AWS's Service Authorization Reference
//! lists it: the action and the resource type whose ARN the request names (`certificate`:
//! `arn:aws:acm:{region}:{account}:certificate/{id}`; none means `*`).

/// `(operation, IAM action, resource types)`, sorted by operation.
pub const AUTHORIZATION: &[(&str, &str, &[&str])] = &[
    (
        "AddTagsToCertificate",
        "acm:AddTagsToCertificate",
        &["certificate"],
    ),
    (
        "DeleteCertificate",
        "acm:DeleteCertificate",
        &["certificate"],
    ),
    (
        "DescribeCertificate",
        "acm:DescribeCertificate",
        &["certificate"],
    ),
    ("GetCertificate", "acm:GetCertificate", &["certificate"]),
    (
        "ImportCertificate",
        "acm:ImportCertificate",
        &["certificate"],
    ),
    ("ListCertificates", "acm:ListCertificates", &[]),
    (
        "ListTagsForCertificate",
        "acm:ListTagsForCertificate",
        &["certificate"],
    ),
    (
        "RemoveTagsFromCertificate",
        "acm:RemoveTagsFromCertificate",
        &["certificate"],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AcmOperation, AcmService};

    #[test]
    fn the_table_covers_exactly_the_served_operations_in_order() {
        assert!(AUTHORIZATION.windows(2).all(|w| w[0].0 < w[1].0));
        for op in AcmOperation::ALL {
            let listed = AUTHORIZATION.iter().any(|(o, _, _)| *o == op.as_str());
            assert_eq!(listed, AcmService::is_implemented(*op), "{op}");
        }
    }
}
