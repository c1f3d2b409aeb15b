//! Evaluation tables taken from AWS's documentation ("Policy evaluation logic", "Troubleshooting
//! access denied error messages", the condition-operator and policy-variable pages) and the
//! AWS-managed policies.

use gantry_iam_policy::{
    AWS_MANAGED_POLICIES, Context, Decision, Evaluation, Policy, PolicyKind, PolicySet, PolicyType,
    Principal, PrincipalKind, Request, aws_managed_policy, evaluate,
};

const ACCOUNT: &str = "123456789012";
const OTHER: &str = "210987654321";

fn identity(json: &str) -> Policy {
    Policy::parse(json, PolicyKind::Identity).expect("identity policy")
}

fn resource(json: &str) -> Policy {
    Policy::parse(json, PolicyKind::Resource).expect("resource policy")
}

fn allow(action: &str, resource: &str) -> Policy {
    identity(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"A","Effect":"Allow","Action":"{action}","Resource":"{resource}"}}]}}"#
    ))
}

fn deny(action: &str, resource: &str) -> Policy {
    identity(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"D","Effect":"Deny","Action":"{action}","Resource":"{resource}"}}]}}"#
    ))
}

fn dev() -> Principal {
    Principal::user(ACCOUNT, "/", "dev", "AIDAEXAMPLEDEV")
}

fn run(
    principal: &Principal,
    action: &str,
    resources: &[&str],
    ctx: &Context,
    set: &PolicySet<'_>,
) -> (Evaluation, Option<String>) {
    let request = Request {
        principal,
        action,
        resources,
        resource_account: None,
        context: ctx,
    };
    let e = evaluate(&request, set);
    let m = e.denial_message(&request);
    (e, m)
}

const TASK_DEF: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1";

#[test]
fn no_policy_is_an_implicit_deny_worded_as_aws() {
    let (e, m) = run(
        &dev(),
        "ecs:RunTask",
        &[TASK_DEF],
        &Context::new(),
        &PolicySet::default(),
    );
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert_eq!(e.policy_type, Some(PolicyType::IdentityBased));
    assert_eq!(
        m.as_deref(),
        Some(
            "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ecs:RunTask on resource: arn:aws:ecs:us-east-1:123456789012:task-definition/web:1 because no identity-based policy allows the ecs:RunTask action"
        )
    );
}

#[test]
fn explicit_deny_beats_allow_and_names_the_statement() {
    let a = allow("ecs:*", "*");
    let d = deny("ecs:RunTask", "*");
    let (e, m) = run(
        &dev(),
        "ecs:RunTask",
        &[TASK_DEF],
        &Context::new(),
        &PolicySet {
            identity: &[&a, &d],
            ..Default::default()
        },
    );
    assert_eq!(e.decision, Decision::ExplicitDeny);
    assert_eq!(e.matched.len(), 1);
    assert_eq!(e.matched[0].sid.as_deref(), Some("D"));
    assert_eq!(e.matched[0].policy_index, 1);
    assert_eq!(
        m.as_deref(),
        Some(
            "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ecs:RunTask on resource: arn:aws:ecs:us-east-1:123456789012:task-definition/web:1 with an explicit deny in an identity-based policy"
        )
    );
    let (e, _) = run(
        &dev(),
        "ecs:ListClusters",
        &[],
        &Context::new(),
        &PolicySet {
            identity: &[&a, &d],
            ..Default::default()
        },
    );
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(e.matched[0].sid.as_deref(), Some("A"));
}

#[test]
fn actions_without_resources_omit_the_resource_in_the_message() {
    let (_, m) = run(
        &dev(),
        "codecommit:ListRepositories",
        &[],
        &Context::new(),
        &PolicySet::default(),
    );
    assert_eq!(
        m.as_deref(),
        Some(
            "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: codecommit:ListRepositories because no identity-based policy allows the codecommit:ListRepositories action"
        )
    );
}

/// The example of "Policy evaluation logic": Carlos's policy and his bucket's policy.
#[test]
fn carlos_and_his_buckets() {
    let carlos = Principal::user(ACCOUNT, "/", "carlossalazar", "AIDACARLOS");
    let id = identity(
        r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"AllowS3ListRead","Effect":"Allow","Action":["s3:GetBucketLocation","s3:GetAccountPublicAccessBlock","s3:ListAccessPoints","s3:ListAllMyBuckets"],"Resource":"arn:aws:s3:::*"},
        {"Sid":"AllowS3Self","Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::carlossalazar/*","arn:aws:s3:::carlossalazar"]},
        {"Sid":"DenyS3Logs","Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::*log*"}]}"#,
    );
    let bucket = resource(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/carlossalazar"},"Action":"s3:*","Resource":["arn:aws:s3:::carlossalazar/*","arn:aws:s3:::carlossalazar"]}]}"#,
    );
    let set = PolicySet {
        identity: &[&id],
        resource: Some(&bucket),
        ..Default::default()
    };
    let (e, _) = run(
        &carlos,
        "s3:PutObject",
        &["arn:aws:s3:::carlossalazar-logs/f"],
        &Context::new(),
        &set,
    );
    assert_eq!(e.decision, Decision::ExplicitDeny);
    assert_eq!(e.matched[0].sid.as_deref(), Some("DenyS3Logs"));
    let (e, _) = run(
        &carlos,
        "s3:PutObject",
        &["arn:aws:s3:::carlossalazar/f"],
        &Context::new(),
        &set,
    );
    assert_eq!(e.decision, Decision::Allow);
    // Either side alone is enough within the account.
    let (e, _) = run(
        &carlos,
        "s3:PutObject",
        &["arn:aws:s3:::carlossalazar/f"],
        &Context::new(),
        &PolicySet {
            resource: Some(&bucket),
            ..Default::default()
        },
    );
    assert_eq!(
        (e.decision, e.policy_type),
        (Decision::Allow, Some(PolicyType::ResourceBased))
    );
    let (e, _) = run(
        &carlos,
        "s3:PutObject",
        &["arn:aws:s3:::carlossalazar/f"],
        &Context::new(),
        &PolicySet {
            identity: &[&id],
            ..Default::default()
        },
    );
    assert_eq!(
        (e.decision, e.policy_type),
        (Decision::Allow, Some(PolicyType::IdentityBased))
    );
}

/// "The difference between explicit and implicit denies": `iam:Get*`/`iam:List*` allowed,
/// `iam:*Report` denied.
#[test]
fn explicit_and_implicit_denies_example() {
    let p = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"AllowGetList","Effect":"Allow","Action":["iam:Get*","iam:List*"],"Resource":"*"},{"Sid":"DenyReports","Effect":"Deny","Action":"iam:*Report","Resource":"*"}]}"#,
    );
    let set = PolicySet {
        identity: &[&p],
        ..Default::default()
    };
    let d = |action: &str| run(&dev(), action, &[], &Context::new(), &set).0.decision;
    assert_eq!(d("iam:GetUser"), Decision::Allow);
    assert_eq!(d("IAM:listusers"), Decision::Allow);
    assert_eq!(d("iam:CreatePolicy"), Decision::ImplicitDeny);
    assert_eq!(
        d("iam:GetOrganizationsAccessReport"),
        Decision::ExplicitDeny
    );
    assert_eq!(d("iam:GenerateCredentialReport"), Decision::ExplicitDeny);
}

#[test]
fn permissions_boundary_intersects_identity_policies() {
    let id = allow("ecs:*", "*");
    let boundary = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:Describe*","Resource":"*"}]}"#,
        PolicyKind::PermissionsBoundary,
    )
    .unwrap();
    let set = PolicySet {
        identity: &[&id],
        permissions_boundary: Some(&boundary),
        ..Default::default()
    };
    let (e, _) = run(&dev(), "ecs:DescribeClusters", &[], &Context::new(), &set);
    assert_eq!(e.decision, Decision::Allow);
    let (e, m) = run(&dev(), "ecs:RunTask", &[TASK_DEF], &Context::new(), &set);
    assert_eq!(
        (e.decision, e.policy_type),
        (
            Decision::ImplicitDeny,
            Some(PolicyType::PermissionsBoundary)
        )
    );
    assert!(
        m.unwrap()
            .ends_with("because no permissions boundary allows the ecs:RunTask action")
    );
    let deny_boundary = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"ecs:RunTask","Resource":"*"}]}"#,
        PolicyKind::PermissionsBoundary,
    )
    .unwrap();
    let set = PolicySet {
        identity: &[&id],
        permissions_boundary: Some(&deny_boundary),
        ..Default::default()
    };
    let (_, m) = run(&dev(), "ecs:RunTask", &[TASK_DEF], &Context::new(), &set);
    assert!(
        m.unwrap()
            .ends_with("with an explicit deny in a permissions boundary")
    );
}

fn session_of(role: &str) -> Principal {
    Principal::assumed_role(ACCOUNT, "/", role, "AROAEXAMPLE", "task-1")
}

#[test]
fn session_policies_intersect_for_role_sessions() {
    let role_policy = allow("ecs:*", "*");
    let session = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:List*","Resource":"*"}]}"#,
        PolicyKind::Session,
    )
    .unwrap();
    let p = session_of("app");
    let set = PolicySet {
        identity: &[&role_policy],
        session: &[&session],
        ..Default::default()
    };
    assert_eq!(
        run(&p, "ecs:ListTasks", &[], &Context::new(), &set)
            .0
            .decision,
        Decision::Allow
    );
    let (e, m) = run(&p, "ecs:StopTask", &[], &Context::new(), &set);
    assert_eq!(
        (e.decision, e.policy_type),
        (Decision::ImplicitDeny, Some(PolicyType::SessionPolicy))
    );
    assert_eq!(
        m.as_deref(),
        Some(
            "User: arn:aws:sts::123456789012:assumed-role/app/task-1 is not authorized to perform: ecs:StopTask because no session policy allows the ecs:StopTask action"
        )
    );
    // Without session policies a role session has its role's permissions.
    let set = PolicySet {
        identity: &[&role_policy],
        ..Default::default()
    };
    assert_eq!(
        run(&p, "ecs:StopTask", &[], &Context::new(), &set)
            .0
            .decision,
        Decision::Allow
    );
}

/// AWS's table "Resource-based policies and implicit denies in other policy types (same
/// account)".
#[test]
fn resource_policies_reach_depends_on_how_they_name_the_caller() {
    let repo = "arn:aws:ecr:us-east-1:123456789012:repository/web";
    let grant = |principal: &str| {
        resource(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Pull","Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"ecr:BatchGetImage"}}]}}"#
        ))
    };
    let boundary = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#,
        PolicyKind::PermissionsBoundary,
    )
    .unwrap();
    let session_policy = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#,
        PolicyKind::Session,
    )
    .unwrap();
    let session = session_of("app");
    let user = dev();
    let decide = |p: &Principal, rp: &Policy, boundary: Option<&Policy>, sessions: &[&Policy]| {
        run(
            p,
            "ecr:BatchGetImage",
            &[repo],
            &Context::new(),
            &PolicySet {
                resource: Some(rp),
                permissions_boundary: boundary,
                session: sessions,
                ..Default::default()
            },
        )
        .0
        .decision
    };
    // IAM role ARN: no identity policy needed, but limited by boundary and session policy.
    let by_role = grant("arn:aws:iam::123456789012:role/app");
    assert_eq!(decide(&session, &by_role, None, &[]), Decision::Allow);
    assert_eq!(
        decide(&session, &by_role, Some(&boundary), &[]),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decide(&session, &by_role, None, &[&session_policy]),
        Decision::ImplicitDeny
    );
    // Role session ARN: not limited by anything.
    let by_session = grant("arn:aws:sts::123456789012:assumed-role/app/task-1");
    assert_eq!(
        decide(&session, &by_session, Some(&boundary), &[&session_policy]),
        Decision::Allow
    );
    // IAM user ARN: not limited by identity policies or boundary.
    let by_user = grant("arn:aws:iam::123456789012:user/dev");
    assert_eq!(
        decide(&user, &by_user, Some(&boundary), &[]),
        Decision::Allow
    );
    // The account: delegates to identity-based policies.
    let by_account = grant(ACCOUNT);
    let (e, m) = run(
        &user,
        "ecr:BatchGetImage",
        &[repo],
        &Context::new(),
        &PolicySet {
            resource: Some(&by_account),
            ..Default::default()
        },
    );
    assert_eq!(
        (e.decision, e.policy_type),
        (Decision::ImplicitDeny, Some(PolicyType::IdentityBased))
    );
    assert!(
        m.unwrap()
            .ends_with("because no identity-based policy allows the ecr:BatchGetImage action")
    );
    let id = allow("ecr:BatchGetImage", "*");
    let (e, _) = run(
        &user,
        "ecr:BatchGetImage",
        &[repo],
        &Context::new(),
        &PolicySet {
            identity: &[&id],
            resource: Some(&by_account),
            ..Default::default()
        },
    );
    assert_eq!(e.decision, Decision::Allow);
    // Everyone.
    let by_star = resource(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"}]}"#,
    );
    assert_eq!(
        decide(&user, &by_star, Some(&boundary), &[]),
        Decision::Allow
    );
}

#[test]
fn resource_policy_explicit_deny_wins_even_for_root() {
    let repo = "arn:aws:ecr:us-east-1:123456789012:repository/web";
    let rp = resource(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"ecr:DeleteRepository"}]}"#,
    );
    let root = Principal::root(ACCOUNT);
    let (e, m) = run(
        &root,
        "ecr:DeleteRepository",
        &[repo],
        &Context::new(),
        &PolicySet {
            resource: Some(&rp),
            ..Default::default()
        },
    );
    assert_eq!(e.decision, Decision::ExplicitDeny);
    assert_eq!(
        m.as_deref(),
        Some(
            "User: arn:aws:iam::123456789012:root is not authorized to perform: ecr:DeleteRepository on resource: arn:aws:ecr:us-east-1:123456789012:repository/web with an explicit deny in a resource-based policy"
        )
    );
    // Root needs no identity policy in its account.
    let (e, _) = run(
        &root,
        "ecr:DescribeRepositories",
        &[repo],
        &Context::new(),
        &PolicySet {
            resource: Some(&rp),
            ..Default::default()
        },
    );
    assert_eq!((e.decision, e.policy_type), (Decision::Allow, None));
}

#[test]
fn cross_account_needs_both_sides() {
    let repo = "arn:aws:ecr:us-east-1:210987654321:repository/shared";
    let id = allow("ecr:BatchGetImage", "*");
    let rp = resource(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"ecr:BatchGetImage"}}]}}"#
    ));
    let user = dev();
    let ctx = Context::new();
    let decide = |set: PolicySet<'_>| {
        let request = Request {
            principal: &user,
            action: "ecr:BatchGetImage",
            resources: &[repo],
            resource_account: Some(OTHER),
            context: &ctx,
        };
        let e = evaluate(&request, &set);
        (e.decision, e.policy_type, e.denial_message(&request))
    };
    assert_eq!(
        decide(PolicySet {
            identity: &[&id],
            resource: Some(&rp),
            ..Default::default()
        })
        .0,
        Decision::Allow
    );
    let (d, t, m) = decide(PolicySet {
        identity: &[&id],
        ..Default::default()
    });
    assert_eq!(
        (d, t),
        (Decision::ImplicitDeny, Some(PolicyType::ResourceBased))
    );
    assert!(
        m.unwrap()
            .ends_with("because no resource-based policy allows the ecr:BatchGetImage action")
    );
    let (d, t, _) = decide(PolicySet {
        resource: Some(&rp),
        ..Default::default()
    });
    assert_eq!(
        (d, t),
        (Decision::ImplicitDeny, Some(PolicyType::IdentityBased))
    );
    // The other account's root gets nothing from its own root status.
    let root = Principal::root(ACCOUNT);
    let request = Request {
        principal: &root,
        action: "ecr:BatchGetImage",
        resources: &[repo],
        resource_account: Some(OTHER),
        context: &ctx,
    };
    assert_eq!(
        evaluate(&request, &PolicySet::default()).decision,
        Decision::ImplicitDeny
    );
    assert_eq!(
        evaluate(
            &request,
            &PolicySet {
                resource: Some(&rp),
                ..Default::default()
            }
        )
        .decision,
        Decision::Allow
    );
}

#[test]
fn role_trust_policies_must_allow() {
    let role = "arn:aws:iam::123456789012:role/app";
    let trust = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com","AWS":"arn:aws:iam::123456789012:user/dev"},"Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"secret-ish"}}}]}"#,
        PolicyKind::Trust,
    )
    .unwrap();
    let ctx = Context::new();
    let set = PolicySet {
        resource: Some(&trust),
        ..Default::default()
    };
    // Named directly: no identity policy needed in the account.
    assert_eq!(
        run(&dev(), "sts:AssumeRole", &[role], &ctx, &set)
            .0
            .decision,
        Decision::Allow
    );
    // The service.
    let svc = Principal::service("ecs-tasks.amazonaws.com");
    assert_eq!(
        run(&svc, "sts:AssumeRole", &[role], &ctx, &set).0.decision,
        Decision::Allow
    );
    let other_svc = Principal::service("lambda.amazonaws.com");
    let (e, m) = run(&other_svc, "sts:AssumeRole", &[role], &ctx, &set);
    assert_eq!(
        (e.decision, e.policy_type),
        (Decision::ImplicitDeny, Some(PolicyType::RoleTrust))
    );
    assert!(
        m.unwrap()
            .ends_with("because no role trust policy allows the sts:AssumeRole action")
    );
    // Through the account: the external id and an identity policy are both needed.
    let ops = Principal::user(ACCOUNT, "/", "ops", "AIDAOPS");
    let id = allow("sts:AssumeRole", role);
    let with_id = PolicySet {
        identity: &[&id],
        resource: Some(&trust),
        ..Default::default()
    };
    assert_eq!(
        run(&ops, "sts:AssumeRole", &[role], &ctx, &with_id)
            .0
            .decision,
        Decision::ImplicitDeny
    );
    let ext = Context::new().with("sts:ExternalId", "secret-ish");
    assert_eq!(
        run(&ops, "sts:AssumeRole", &[role], &ext, &set).0.decision,
        Decision::ImplicitDeny
    );
    assert_eq!(
        run(&ops, "sts:AssumeRole", &[role], &ext, &with_id)
            .0
            .decision,
        Decision::Allow
    );
    // Identity allow alone is not enough for a trust policy.
    let nobody = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        PolicyKind::Trust,
    )
    .unwrap();
    let (e, _) = run(
        &ops,
        "sts:AssumeRole",
        &[role],
        &ctx,
        &PolicySet {
            identity: &[&id],
            resource: Some(&nobody),
            ..Default::default()
        },
    );
    assert_eq!(e.policy_type, Some(PolicyType::RoleTrust));
}

#[test]
fn conditions_from_the_issue_cluster_scoped_run_task() {
    let p = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:RunTask","Resource":"*","Condition":{"ArnEquals":{"ecs:cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/dev"}}}]}"#,
    );
    let set = PolicySet {
        identity: &[&p],
        ..Default::default()
    };
    let on = |cluster: &str| {
        let ctx = Context::new().with(
            "ECS:Cluster",
            format!("arn:aws:ecs:us-east-1:123456789012:cluster/{cluster}"),
        );
        run(&dev(), "ecs:RunTask", &[TASK_DEF], &ctx, &set)
            .0
            .decision
    };
    assert_eq!(on("dev"), Decision::Allow);
    assert_eq!(on("prod"), Decision::ImplicitDeny);
    assert_eq!(
        run(&dev(), "ecs:RunTask", &[TASK_DEF], &Context::new(), &set)
            .0
            .decision,
        Decision::ImplicitDeny
    );
}

#[test]
fn policy_variables_from_the_principal() {
    let p = identity(
        r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"iam:*AccessKey*","Resource":"arn:aws:iam::123456789012:user/${aws:username}"},
        {"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:*:123456789012:repository/${aws:PrincipalTag/team}/*"},
        {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::home","Condition":{"StringLike":{"s3:prefix":"${aws:username}/*"}}}]}"#,
    );
    let set = PolicySet {
        identity: &[&p],
        ..Default::default()
    };
    let user = dev().with_tag("Team", "web");
    let ctx = Context::new();
    let d = |p: &Principal, action: &str, res: &str, ctx: &Context| {
        run(p, action, &[res], ctx, &set).0.decision
    };
    assert_eq!(
        d(
            &user,
            "iam:CreateAccessKey",
            "arn:aws:iam::123456789012:user/dev",
            &ctx
        ),
        Decision::Allow
    );
    assert_eq!(
        d(
            &user,
            "iam:CreateAccessKey",
            "arn:aws:iam::123456789012:user/ops",
            &ctx
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(
        d(
            &user,
            "ecr:PutImage",
            "arn:aws:ecr:us-east-1:123456789012:repository/web/api",
            &ctx
        ),
        Decision::Allow
    );
    assert_eq!(
        d(
            &user,
            "ecr:PutImage",
            "arn:aws:ecr:us-east-1:123456789012:repository/db/api",
            &ctx
        ),
        Decision::ImplicitDeny
    );
    let prefix = Context::new().with("s3:prefix", "dev/notes");
    assert_eq!(
        d(&user, "s3:ListBucket", "arn:aws:s3:::home", &prefix),
        Decision::Allow
    );
    // A role session has no aws:username: the variable does not resolve and nothing matches.
    let s = session_of("dev");
    assert_eq!(
        d(
            &s,
            "iam:CreateAccessKey",
            "arn:aws:iam::123456789012:user/dev",
            &ctx
        ),
        Decision::ImplicitDeny
    );
}

#[test]
fn source_ip_and_secure_transport() {
    let p = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},
        {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32"]}}},
        {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
    );
    let set = PolicySet {
        identity: &[&p],
        ..Default::default()
    };
    let d = |ip: &str, tls: &str| {
        let ctx = Context::new()
            .with("aws:SourceIp", ip)
            .with("aws:SecureTransport", tls);
        run(&dev(), "ecs:ListClusters", &[], &ctx, &set).0.decision
    };
    assert_eq!(d("192.0.2.10", "true"), Decision::Allow);
    assert_eq!(d("2001:db8::7", "true"), Decision::Allow);
    assert_eq!(d("203.0.113.1", "true"), Decision::ExplicitDeny);
    assert_eq!(d("192.0.2.10", "false"), Decision::ExplicitDeny);
}

#[test]
fn every_resource_of_a_request_must_be_allowed() {
    let p = allow(
        "ecs:DescribeTasks",
        "arn:aws:ecs:us-east-1:123456789012:task/dev/*",
    );
    let set = PolicySet {
        identity: &[&p],
        ..Default::default()
    };
    let a = "arn:aws:ecs:us-east-1:123456789012:task/dev/1";
    let b = "arn:aws:ecs:us-east-1:123456789012:task/prod/2";
    let (e, m) = run(&dev(), "ecs:DescribeTasks", &[a, b], &Context::new(), &set);
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert_eq!(e.resource_index, Some(1));
    assert!(m.unwrap().contains(&format!("on resource: {b} because")));
    assert_eq!(
        run(&dev(), "ecs:DescribeTasks", &[a], &Context::new(), &set)
            .0
            .decision,
        Decision::Allow
    );
}

#[test]
fn not_action_and_not_resource() {
    let p = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"iam:*","NotResource":"arn:aws:ecs:*:*:cluster/prod"}]}"#,
    );
    let set = PolicySet {
        identity: &[&p],
        ..Default::default()
    };
    let d = |action: &str, res: &str| {
        run(&dev(), action, &[res], &Context::new(), &set)
            .0
            .decision
    };
    assert_eq!(
        d(
            "ecs:DeleteCluster",
            "arn:aws:ecs:us-east-1:123456789012:cluster/dev"
        ),
        Decision::Allow
    );
    assert_eq!(
        d(
            "ecs:DeleteCluster",
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(
        d("iam:CreateUser", "arn:aws:iam::123456789012:user/x"),
        Decision::ImplicitDeny
    );
}

#[test]
fn every_managed_policy_parses_and_has_its_arn() {
    assert_eq!(AWS_MANAGED_POLICIES.len(), 11);
    for m in AWS_MANAGED_POLICIES {
        let policy = m.policy().unwrap_or_else(|e| panic!("{}: {e}", m.name));
        assert!(policy.statement_count() > 0, "{}", m.name);
        assert_eq!(
            m.arn,
            format!("arn:aws:iam::aws:policy{}{}", m.path, m.name)
        );
        assert!(!m.description.is_empty());
    }
    assert_eq!(
        aws_managed_policy("AmazonECSTaskExecutionRolePolicy")
            .unwrap()
            .arn,
        "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    );
    assert_eq!(
        aws_managed_policy(
            "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
        )
        .unwrap()
        .name,
        "AmazonEC2ContainerServiceforEC2Role"
    );
    assert!(aws_managed_policy("ReadOnlyAccess").unwrap().document.len() > 100_000);
}

#[test]
fn managed_policies_grant_what_their_names_say() {
    let get = |name: &str| aws_managed_policy(name).unwrap().policy().unwrap();
    let repo = "arn:aws:ecr:us-east-1:123456789012:repository/web";
    let ctx = Context::new();
    let d = |p: &Policy, action: &str, res: &[&str]| {
        run(
            &dev(),
            action,
            res,
            &ctx,
            &PolicySet {
                identity: &[p],
                ..Default::default()
            },
        )
        .0
        .decision
    };

    let ro = get("AmazonEC2ContainerRegistryReadOnly");
    assert_eq!(d(&ro, "ecr:BatchGetImage", &[repo]), Decision::Allow);
    assert_eq!(d(&ro, "ecr:GetAuthorizationToken", &[]), Decision::Allow);
    assert_eq!(d(&ro, "ecr:PutImage", &[repo]), Decision::ImplicitDeny);
    assert_eq!(d(&ro, "ecs:RunTask", &[TASK_DEF]), Decision::ImplicitDeny);

    let pu = get("AmazonEC2ContainerRegistryPowerUser");
    assert_eq!(d(&pu, "ecr:PutImage", &[repo]), Decision::Allow);
    assert_eq!(
        d(&pu, "ecr:DeleteRepository", &[repo]),
        Decision::ImplicitDeny
    );

    let admin = get("AdministratorAccess");
    assert_eq!(
        d(
            &admin,
            "iam:CreateUser",
            &["arn:aws:iam::123456789012:user/x"]
        ),
        Decision::Allow
    );

    let power = get("PowerUserAccess");
    assert_eq!(d(&power, "ecs:RunTask", &[TASK_DEF]), Decision::Allow);
    assert_eq!(
        d(
            &power,
            "iam:CreateUser",
            &["arn:aws:iam::123456789012:user/x"]
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(d(&power, "iam:ListRoles", &[]), Decision::Allow);

    let read = get("ReadOnlyAccess");
    assert_eq!(
        d(
            &read,
            "ecs:DescribeClusters",
            &["arn:aws:ecs:us-east-1:123456789012:cluster/x"]
        ),
        Decision::Allow
    );
    assert_eq!(d(&read, "ecs:RunTask", &[TASK_DEF]), Decision::ImplicitDeny);

    let exec = get("AmazonECSTaskExecutionRolePolicy");
    assert_eq!(
        d(
            &exec,
            "logs:PutLogEvents",
            &["arn:aws:logs:us-east-1:123456789012:log-group:g:log-stream:s"]
        ),
        Decision::Allow
    );

    // AmazonECS_FullAccess lets a caller pass only ECS-bound roles.
    let ecs = get("AmazonECS_FullAccess");
    assert_eq!(d(&ecs, "ecs:CreateCluster", &[]), Decision::Allow);
    let role = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole";
    let pass = |service: &str| {
        let ctx = Context::new().with("iam:PassedToService", service);
        run(
            &dev(),
            "iam:PassRole",
            &[role],
            &ctx,
            &PolicySet {
                identity: &[&ecs],
                ..Default::default()
            },
        )
        .0
        .decision
    };
    assert_eq!(pass("ecs-tasks.amazonaws.com"), Decision::Allow);
    assert_eq!(pass("lambda.amazonaws.com"), Decision::ImplicitDeny);
}

#[test]
fn principal_kinds_expose_their_keys() {
    let s = session_of("app");
    assert_eq!(s.principal_type(), "AssumedRole");
    assert_eq!(s.user_id, "AROAEXAMPLE:task-1");
    assert!(
        matches!(&s.kind, PrincipalKind::AssumedRole { role_arn } if role_arn == "arn:aws:iam::123456789012:role/app")
    );
    // aws:PrincipalArn of a role session is the role's ARN.
    let p = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:role/app"},"StringEquals":{"aws:PrincipalType":"AssumedRole","aws:PrincipalAccount":"123456789012"}}}]}"#,
    );
    let set = PolicySet {
        identity: &[&p],
        ..Default::default()
    };
    assert_eq!(
        run(&s, "ecs:ListTasks", &[], &Context::new(), &set)
            .0
            .decision,
        Decision::Allow
    );
    assert_eq!(
        run(&dev(), "ecs:ListTasks", &[], &Context::new(), &set)
            .0
            .decision,
        Decision::ImplicitDeny
    );
}

/// Deferred keys are computed once, only when a statement that applies to the action looks at
/// the context, and then take part as keys set directly do.
#[test]
fn deferred_context_keys_are_computed_on_first_use_only() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fills = Arc::new(AtomicUsize::new(0));
    let counted = fills.clone();
    let ctx = Context::new()
        .with(
            "ecs:cluster",
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
        )
        .deferred(move |c| {
            counted.fetch_add(1, Ordering::SeqCst);
            c.insert("aws:RequestedRegion", "eu-west-1");
            c.insert("ecs:cluster", "shadowed");
        });
    let p = identity(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"ecs:Describe*","Resource":"*"},
            {"Effect":"Deny","Action":"ecs:RunTask","Resource":"*",
             "Condition":{"StringNotEquals":{"aws:RequestedRegion":"us-east-1"}}},
            {"Effect":"Allow","Action":"ecs:RunTask","Resource":"*",
             "Condition":{"ArnEquals":{"ecs:cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/prod"}}}]}"#,
    );
    let set = PolicySet {
        identity: &[&p],
        ..PolicySet::default()
    };
    let (e, _) = run(&dev(), "ecs:DescribeClusters", &[], &ctx, &set);
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(
        fills.load(Ordering::SeqCst),
        0,
        "no condition was evaluated"
    );
    let (e, _) = run(&dev(), "ecs:RunTask", &[], &ctx, &set);
    assert_eq!(e.decision, Decision::ExplicitDeny);
    let (e, _) = run(&dev(), "ecs:RunTask", &[], &ctx.clone(), &set);
    assert_eq!(e.decision, Decision::ExplicitDeny);
    assert_eq!(
        fills.load(Ordering::SeqCst),
        1,
        "computed once, shared by clones"
    );
    // Keys set directly win; deferred ones are listed and read like the others.
    assert_eq!(
        ctx.get("ECS:Cluster").unwrap(),
        ["arn:aws:ecs:us-east-1:123456789012:cluster/prod"]
    );
    assert_eq!(ctx.get("aws:requestedregion").unwrap(), ["eu-west-1"]);
    let mut keys: Vec<&str> = ctx.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["aws:requestedregion", "ecs:cluster"]);
    let eager = Context::new()
        .with(
            "ecs:cluster",
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
        )
        .with("aws:RequestedRegion", "eu-west-1");
    assert_eq!(ctx, eager);
}
