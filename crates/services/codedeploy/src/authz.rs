//! The CodeDeploy operations Gantry serves with the IAM action each authorizes, as AWS's
//! Service Authorization Reference lists it (the generated `crates/cli/src/authz_table.rs`
//! holds their resource types: `application`, `deploymentconfig`).

/// `(operation, IAM action)`, sorted by operation.
pub const AUTHORIZATION: &[(&str, &str)] = &[
    ("BatchGetApplications", "codedeploy:BatchGetApplications"),
    (
        "BatchGetDeploymentGroups",
        "codedeploy:BatchGetDeploymentGroups",
    ),
    ("BatchGetDeployments", "codedeploy:BatchGetDeployments"),
    ("ContinueDeployment", "codedeploy:ContinueDeployment"),
    ("CreateApplication", "codedeploy:CreateApplication"),
    ("CreateDeployment", "codedeploy:CreateDeployment"),
    (
        "CreateDeploymentConfig",
        "codedeploy:CreateDeploymentConfig",
    ),
    ("CreateDeploymentGroup", "codedeploy:CreateDeploymentGroup"),
    ("DeleteApplication", "codedeploy:DeleteApplication"),
    (
        "DeleteDeploymentConfig",
        "codedeploy:DeleteDeploymentConfig",
    ),
    ("DeleteDeploymentGroup", "codedeploy:DeleteDeploymentGroup"),
    ("GetApplication", "codedeploy:GetApplication"),
    ("GetDeployment", "codedeploy:GetDeployment"),
    ("GetDeploymentConfig", "codedeploy:GetDeploymentConfig"),
    ("GetDeploymentGroup", "codedeploy:GetDeploymentGroup"),
    ("GetDeploymentTarget", "codedeploy:GetDeploymentTarget"),
    ("ListApplications", "codedeploy:ListApplications"),
    ("ListDeploymentConfigs", "codedeploy:ListDeploymentConfigs"),
    ("ListDeploymentGroups", "codedeploy:ListDeploymentGroups"),
    ("ListDeploymentTargets", "codedeploy:ListDeploymentTargets"),
    ("ListDeployments", "codedeploy:ListDeployments"),
    ("StopDeployment", "codedeploy:StopDeployment"),
    ("UpdateDeploymentGroup", "codedeploy:UpdateDeploymentGroup"),
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
