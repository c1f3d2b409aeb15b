//! The AWS-managed policies that ECS users attach, with their real documents (each the default
//! version AWS serves, as of the version id recorded here), stored as data files in `managed/`.
//!
//! Each `managed/<name>.json` is the policy's default version as `aws iam get-policy-version`
//! returns it (statement elements in AWS's order, `Action` lists in AWS's order); to refresh one,
//! replace the file with the new default version's document and update `default_version_id`
//! and `update_date` below.
//!
//! AWS-managed policies live in the `aws` account: `arn:aws:iam::aws:policy<path><name>`; some
//! are under `/service-role/`. They are not subject to the customer-managed size quota
//! (`ReadOnlyAccess` is far larger than 6,144 characters).

use crate::document::PolicyKind;
use crate::error::PolicyError;
use crate::policy::Policy;

/// One AWS-managed policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedPolicy {
    /// `PolicyName`.
    pub name: &'static str,
    /// `Path` (`/` or `/service-role/`).
    pub path: &'static str,
    /// `Arn`: `arn:aws:iam::aws:policy<path><name>`.
    pub arn: &'static str,
    /// `Description`, as AWS writes it.
    pub description: &'static str,
    /// `DefaultVersionId` of the document stored here.
    pub default_version_id: &'static str,
    /// `CreateDate` (ISO 8601, UTC).
    pub create_date: &'static str,
    /// `UpdateDate` of the default version (ISO 8601, UTC).
    pub update_date: &'static str,
    /// The policy document (JSON).
    pub document: &'static str,
}

impl ManagedPolicy {
    /// Parses and compiles the document as an identity-based policy.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        Policy::parse(self.document, PolicyKind::Identity)
    }
}

/// Every AWS-managed policy Gantry ships.
pub const AWS_MANAGED_POLICIES: &[ManagedPolicy] = &[
    ManagedPolicy {
        name: "AdministratorAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AdministratorAccess",
        description: "Provides full access to AWS services and resources.",
        default_version_id: "v1",
        create_date: "2015-02-06T18:39:46Z",
        update_date: "2015-02-06T18:39:46Z",
        document: include_str!("../managed/AdministratorAccess.json"),
    },
    ManagedPolicy {
        name: "PowerUserAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/PowerUserAccess",
        description: "Provides full access to AWS services and resources, but does not allow management of Users and groups.",
        default_version_id: "v12",
        create_date: "2015-02-06T18:39:47Z",
        update_date: "2026-02-12T17:59:14Z",
        document: include_str!("../managed/PowerUserAccess.json"),
    },
    ManagedPolicy {
        name: "ReadOnlyAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/ReadOnlyAccess",
        description: "Provides read-only access to AWS services and resources.",
        default_version_id: "v191",
        create_date: "2015-02-06T18:39:48Z",
        update_date: "2026-10-30T17:27:08Z",
        document: include_str!("../managed/ReadOnlyAccess.json"),
    },
    ManagedPolicy {
        name: "AmazonECS_FullAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AmazonECS_FullAccess",
        description: "Provides administrative access to Amazon ECS resources and enables ECS features through access to other AWS service resources, including VPCs, Auto Scaling groups, and CloudFormation stacks.",
        default_version_id: "v22",
        create_date: "2017-11-07T21:36:54Z",
        update_date: "2026-09-02T14:47:07Z",
        document: include_str!("../managed/AmazonECS_FullAccess.json"),
    },
    ManagedPolicy {
        name: "AmazonECSTaskExecutionRolePolicy",
        path: "/service-role/",
        arn: "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
        description: "Provides access to other AWS service resources that are required to run Amazon ECS tasks",
        default_version_id: "v1",
        create_date: "2017-11-16T18:48:22Z",
        update_date: "2017-11-16T18:48:22Z",
        document: include_str!("../managed/AmazonECSTaskExecutionRolePolicy.json"),
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryFullAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess",
        description: "Provides administrative access to Amazon ECR resources",
        default_version_id: "v3",
        create_date: "2015-12-21T17:06:48Z",
        update_date: "2020-12-05T00:04:19Z",
        document: include_str!("../managed/AmazonEC2ContainerRegistryFullAccess.json"),
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryPowerUser",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser",
        description: "Provides full access to Amazon EC2 Container Registry repositories, but does not allow repository deletion or policy changes.",
        default_version_id: "v3",
        create_date: "2015-12-21T17:05:33Z",
        update_date: "2019-12-10T20:48:08Z",
        document: include_str!("../managed/AmazonEC2ContainerRegistryPowerUser.json"),
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerRegistryReadOnly",
        path: "/",
        arn: "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        description: "Provides read-only access to Amazon EC2 Container Registry repositories.",
        default_version_id: "v3",
        create_date: "2015-12-21T17:04:15Z",
        update_date: "2019-12-10T20:56:32Z",
        document: include_str!("../managed/AmazonEC2ContainerRegistryReadOnly.json"),
    },
    ManagedPolicy {
        name: "AmazonEC2ContainerServiceforEC2Role",
        path: "/service-role/",
        arn: "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
        description: "Default policy for the Amazon EC2 Role for Amazon EC2 Container Service.",
        default_version_id: "v10",
        create_date: "2015-03-19T18:45:18Z",
        update_date: "2026-02-12T17:59:52Z",
        document: include_str!("../managed/AmazonEC2ContainerServiceforEC2Role.json"),
    },
    ManagedPolicy {
        name: "CloudWatchLogsFullAccess",
        path: "/",
        arn: "arn:aws:iam::aws:policy/CloudWatchLogsFullAccess",
        description: "Provides full access to CloudWatch Logs",
        default_version_id: "v8",
        create_date: "2015-02-06T18:40:02Z",
        update_date: "2026-02-12T18:00:33Z",
        document: include_str!("../managed/CloudWatchLogsFullAccess.json"),
    },
    ManagedPolicy {
        name: "SecretsManagerReadWrite",
        path: "/",
        arn: "arn:aws:iam::aws:policy/SecretsManagerReadWrite",
        description: "Provides read/write access to AWS Secrets Manager via the AWS Management Console. Note: this exludes IAM actions, so combine with IAMFullAccess if rotation configuration is required.",
        default_version_id: "v6",
        create_date: "2018-04-04T18:05:29Z",
        update_date: "2026-08-25T23:37:10Z",
        document: include_str!("../managed/SecretsManagerReadWrite.json"),
    },
];

/// The AWS-managed policy with this ARN or name.
pub fn aws_managed_policy(arn_or_name: &str) -> Option<&'static ManagedPolicy> {
    AWS_MANAGED_POLICIES
        .iter()
        .find(|p| p.arn == arn_or_name || p.name == arn_or_name)
}
