//! The CodeDeploy operations Gantry serves with the IAM action each authorizes, as AWS's
//! Service Authorization Reference lists it (the generated `crates/cli/src/authz_table.rs`
//! holds their resource types: `application`, `deploymentconfig`).

/// `(operation, IAM action)`, sorted by operation.
pub const AUTHORIZATION: &[(&str, &str)] = &[
    ("BatchGetApplications", "codedeploy:BatchGetApplications"),
    ("CreateApplication", "codedeploy:CreateApplication"),
    (
        "CreateDeploymentConfig",
        "codedeploy:CreateDeploymentConfig",
    ),
    ("DeleteApplication", "codedeploy:DeleteApplication"),
    (
        "DeleteDeploymentConfig",
        "codedeploy:DeleteDeploymentConfig",
    ),
    ("GetApplication", "codedeploy:GetApplication"),
    ("GetDeploymentConfig", "codedeploy:GetDeploymentConfig"),
    ("ListApplications", "codedeploy:ListApplications"),
    ("ListDeploymentConfigs", "codedeploy:ListDeploymentConfigs"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CodeDeployOperation;

    #[test]
    fn the_table_is_sorted_and_names_operations_of_the_model() {
        assert!(AUTHORIZATION.windows(2).all(|w| w[0].0 < w[1].0));
        for (op, action) in AUTHORIZATION {
            assert!(op.parse::<CodeDeployOperation>().is_ok(), "{op}");
            assert_eq!(action.strip_prefix("codedeploy:"), Some(*op));
        }
        assert_eq!(CodeDeployOperation::ALL.len(), 47);
    }
}
