//! Policy evaluation per request (docs/benchmarks.md, "IAM policy evaluation").
//!
//! A user with 10 attached policies of 10 statements each, every statement with conditions
//! (string, ARN, IP address, boolean, date, a policy variable), and a request context as the
//! front builds it. Each evaluation is timed on its own (the clock read, ~20-30 ns, is
//! included); the figures are nearest-rank percentiles over all samples. Run pinned to one core:
//! `taskset -c 0 cargo run --release -p gantry-iam-policy --example bench_eval`
//! (`scripts/bench-iam.sh` does).
//!
//! Scenarios: an allowed `ecs:RunTask` (its allow is in the last policy, so every statement is
//! looked at), an implicit deny with the denial message built, an explicit deny, and the two
//! largest AWS-managed policies ECS users attach (`ReadOnlyAccess`, `AmazonECS_FullAccess`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use gantry_iam_policy::{
    Context, Decision, Policy, PolicyKind, PolicySet, Principal, Request, aws_managed_policy,
    evaluate,
};

const ACCOUNT: &str = "123456789012";
const SAMPLES: usize = 200_000;
const WARMUP: usize = 20_000;

/// Statement `s` of policy `p`: a mix of actions, resources and conditions as written in
/// practice.
fn statement(p: usize, s: usize) -> Value {
    let a = ACCOUNT;
    let (effect, action, resource, condition) = match s % 10 {
        0 => (
            "Allow",
            json!("ecs:Describe*"),
            json!(format!("arn:aws:ecs:*:{a}:cluster/team{p}-*")),
            json!({"Bool": {"aws:SecureTransport": "true"}}),
        ),
        1 => (
            "Allow",
            json!(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]),
            json!(format!("arn:aws:ecr:us-east-1:{a}:repository/team{p}/*")),
            json!({"IpAddress": {"aws:SourceIp": [format!("10.{p}.0.0/16"), "192.0.2.0/24"]}}),
        ),
        2 => (
            "Allow",
            json!("ecs:StopTask"),
            json!(format!("arn:aws:ecs:us-east-1:{a}:task/team{p}-*/*")),
            json!({"ArnEquals": {"ecs:cluster": format!("arn:aws:ecs:us-east-1:{a}:cluster/team{p}-prod")}}),
        ),
        3 => (
            "Allow",
            json!("logs:*"),
            json!(format!(
                "arn:aws:logs:us-east-1:{a}:log-group:/ecs/team{p}*"
            )),
            json!({"StringLike": {"aws:PrincipalTag/team": format!("team{p}")}}),
        ),
        4 => (
            "Allow",
            json!("iam:PassRole"),
            json!(format!("arn:aws:iam::{a}:role/team{p}-*")),
            json!({"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
        ),
        5 => (
            "Allow",
            json!(["ecs:CreateService", "ecs:UpdateService"]),
            json!(format!("arn:aws:ecs:us-east-1:{a}:service/team{p}-*/*")),
            json!({"StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}, "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}),
        ),
        6 => (
            "Allow",
            json!("iam:*AccessKey*"),
            json!(format!("arn:aws:iam::{a}:user/${{aws:username}}")),
            json!({"Bool": {"aws:MultiFactorAuthPresent": "true"}}),
        ),
        7 => (
            "Deny",
            json!("ecs:DeleteCluster"),
            json!(format!("arn:aws:ecs:*:{a}:cluster/*prod*")),
            json!({"StringNotEquals": {"aws:PrincipalTag/role": "admin"}}),
        ),
        8 => (
            "Allow",
            json!("ecs:RunTask"),
            json!(format!(
                "arn:aws:ecs:us-east-1:{a}:task-definition/team{p}-*:*"
            )),
            json!({"ArnEquals": {"ecs:cluster": format!("arn:aws:ecs:us-east-1:{a}:cluster/team{p}-dev")}, "IpAddress": {"aws:SourceIp": format!("10.{p}.0.0/16")}}),
        ),
        _ => (
            "Deny",
            json!("*"),
            json!("*"),
            json!({"BoolIfExists": {"aws:ViaAWSService": "false"}, "NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}}),
        ),
    };
    json!({"Sid": format!("P{p}S{s}"), "Effect": effect, "Action": action, "Resource": resource, "Condition": condition})
}

fn policies() -> Vec<Policy> {
    (0..10)
        .map(|p| {
            let statements: Vec<Value> = (0..10).map(|s| statement(p, s)).collect();
            let doc = json!({"Version": "2012-10-17", "Statement": statements}).to_string();
            Policy::parse(&doc, PolicyKind::Identity).expect("benchmark policy")
        })
        .collect()
}

struct Figures {
    p50: u128,
    p90: u128,
    p99: u128,
    p999: u128,
    mean: f64,
}

fn percentile(sorted: &[u128], q: f64) -> u128 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn measure(mut f: impl FnMut() -> Decision, want: Decision) -> Figures {
    for _ in 0..WARMUP {
        assert_eq!(black_box(f()), want);
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    let started = Instant::now();
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let d = black_box(f());
        samples.push(t.elapsed().as_nanos());
        assert_eq!(d, want);
    }
    let total: Duration = started.elapsed();
    samples.sort_unstable();
    Figures {
        p50: percentile(&samples, 0.50),
        p90: percentile(&samples, 0.90),
        p99: percentile(&samples, 0.99),
        p999: percentile(&samples, 0.999),
        mean: total.as_nanos() as f64 / SAMPLES as f64,
    }
}

fn report(name: &str, f: &Figures) {
    println!(
        "{name:<44} p50 {:>6} ns  p90 {:>6} ns  p99 {:>6} ns  p99.9 {:>7} ns  (mean incl. loop {:>8.0} ns)",
        f.p50, f.p90, f.p99, f.p999, f.mean
    );
}

fn main() {
    let compile_start = Instant::now();
    let policies = policies();
    let compile = compile_start.elapsed();
    let refs: Vec<&Policy> = policies.iter().collect();
    let set = PolicySet {
        identity: &refs,
        ..PolicySet::default()
    };
    let statements: usize = policies.iter().map(Policy::statement_count).sum();

    let dev = Principal::user(ACCOUNT, "/", "dev", "AIDAEXAMPLEDEV")
        .with_tag("team", "team9")
        .with_tag("role", "dev");
    let mut ctx = Context::new();
    ctx.insert("aws:SourceIp", "10.9.3.4");
    ctx.insert("aws:SecureTransport", "true");
    ctx.insert("aws:CurrentTime", "2026-12-06T10:00:00Z");
    ctx.insert("aws:EpochTime", "1796551200");
    ctx.insert("aws:RequestedRegion", "us-east-1");
    ctx.insert(
        "aws:UserAgent",
        "aws-cli/1.36.0 Python/3.11.2 Linux/6.1.0 botocore/1.35.0",
    );
    ctx.insert("aws:MultiFactorAuthPresent", "false");
    ctx.insert(
        "ecs:cluster",
        format!("arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/team9-dev"),
    );

    let allowed = [format!(
        "arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/team9-web:12"
    )];
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let other = [format!(
        "arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/other-web:1"
    )];
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    let prod = [format!(
        "arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/team3-prod"
    )];
    let prod: Vec<&str> = prod.iter().map(String::as_str).collect();

    println!(
        "{} policies, {statements} statements, parsed and compiled in {:.1} µs; {SAMPLES} samples per scenario after {WARMUP} warm-up",
        policies.len(),
        compile.as_secs_f64() * 1e6
    );

    let allow_req = Request {
        principal: &dev,
        action: "ecs:RunTask",
        resources: &allowed,
        resource_account: None,
        context: &ctx,
    };
    report(
        "allow ecs:RunTask (10x10, conditions)",
        &measure(|| evaluate(&allow_req, &set).decision, Decision::Allow),
    );

    let deny_req = Request {
        principal: &dev,
        action: "ecs:RunTask",
        resources: &other,
        resource_account: None,
        context: &ctx,
    };
    report(
        "implicit deny + denial message",
        &measure(
            || {
                let e = evaluate(&deny_req, &set);
                black_box(e.denial_message(&deny_req));
                e.decision
            },
            Decision::ImplicitDeny,
        ),
    );

    let explicit = Request {
        principal: &dev,
        action: "ecs:DeleteCluster",
        resources: &prod,
        resource_account: None,
        context: &ctx,
    };
    let denied_by = evaluate(&explicit, &set).matched.len();
    assert_eq!(
        denied_by, 10,
        "the DeleteCluster deny of every policy applies"
    );
    report(
        "explicit deny ecs:DeleteCluster",
        &measure(
            || evaluate(&explicit, &set).decision,
            Decision::ExplicitDeny,
        ),
    );

    let managed: Vec<Policy> = ["ReadOnlyAccess", "AmazonECS_FullAccess"]
        .iter()
        .map(|n| {
            aws_managed_policy(n)
                .and_then(|m| m.policy().ok())
                .expect("managed policy")
        })
        .collect();
    let managed_refs: Vec<&Policy> = managed.iter().collect();
    let managed_set = PolicySet {
        identity: &managed_refs,
        ..PolicySet::default()
    };
    let describe = [format!("arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/team9-dev")];
    let describe: Vec<&str> = describe.iter().map(String::as_str).collect();
    let managed_req = Request {
        principal: &dev,
        action: "ecs:DescribeClusters",
        resources: &describe,
        resource_account: None,
        context: &ctx,
    };
    report(
        "ReadOnlyAccess + AmazonECS_FullAccess",
        &measure(
            || evaluate(&managed_req, &managed_set).decision,
            Decision::Allow,
        ),
    );
}
