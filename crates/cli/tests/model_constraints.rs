//! The model constraint tables of every service the binary serves: generated from the installed
//! botocore (no drift), and every pattern in them usable.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::constraints::{Constraints, Pattern, Shape};
use gantry_aws_proto::query::QueryRequest;
use gantry_front::{
    Front, JsonService, Protocol, QueryService, RequestContext, ServiceSpec, SystemClock,
};

fn tables() -> [(&'static str, &'static Constraints); 12] {
    [
        ("ecs", gantry_ecs::SPEC.constraints),
        ("ecr", gantry_ecr::SPEC.constraints),
        ("logs", gantry_logs::SPEC.constraints),
        ("elbv2", gantry_elbv2::SPEC.constraints),
        ("kms", gantry_kms::SPEC.constraints),
        ("acm", gantry_acm::SPEC.constraints),
        ("secretsmanager", gantry_secretsmanager::SPEC.constraints),
        ("ssm", gantry_ssm::SPEC.constraints),
        ("codedeploy", gantry_codedeploy::SPEC.constraints),
        ("cloudwatch", gantry_cloudwatch::SPEC.constraints),
        (
            "application-autoscaling",
            gantry_autoscaling::SPEC.constraints,
        ),
        ("iam", gantry_iam::SPEC.constraints),
    ]
}

#[test]
fn the_tables_match_the_installed_botocore_models() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let has_botocore = Command::new("python3")
        .args(["-c", "import botocore"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_botocore {
        if ["GANTRY_REQUIRE_AWS_CLIENTS", "GANTRY_REQUIRE_DOCKER"]
            .iter()
            .any(|v| std::env::var(v).as_deref() == Ok("1"))
        {
            panic!("python3 with botocore is not available");
        }
        eprintln!("\n*** SKIPPED: python3 with botocore not available ***\n");
        return;
    }
    // The constraint tables, and the wire shapes of the services served on two protocols.
    for script in [
        "scripts/gen-model-constraints.py",
        "scripts/gen-wire-shapes.py",
    ] {
        let out = Command::new("python3")
            .arg(root.join(script))
            .arg("--check")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Visits every shape reachable from the table (shapes may be recursive).
fn walk(shape: &'static Shape, seen: &mut HashSet<usize>, f: &mut impl FnMut(&'static Shape)) {
    if !seen.insert(shape as *const Shape as usize) {
        return;
    }
    f(shape);
    match shape {
        Shape::Structure(members) => {
            for m in *members {
                walk(m.shape, seen, f);
            }
        }
        Shape::List { member, .. } => walk(member, seen, f),
        Shape::Map { key, value, .. } => {
            walk(key, seen, f);
            walk(value, seen, f);
        }
        _ => {}
    }
}

#[test]
fn every_pattern_of_the_models_compiles() {
    let mut broken = Vec::new();
    let mut count = 0;
    for (service, table) in tables() {
        assert!(!table.operations.is_empty(), "{service} has constraints");
        assert!(
            table.operations.windows(2).all(|w| w[0].name < w[1].name),
            "{service}: operations sorted for lookup"
        );
        let mut seen = HashSet::new();
        for op in table.operations {
            walk(op.input, &mut seen, &mut |s| {
                if let Shape::String {
                    pattern: Some(p), ..
                } = s
                {
                    count += 1;
                    if p.regex().is_none() {
                        broken.push(format!("{service}: {}", p.source));
                    }
                }
            });
        }
    }
    assert!(count > 20, "patterns found: {count}");
    assert!(
        broken.is_empty(),
        "patterns that do not compile: {broken:?}"
    );
}

/// A service the binary serves: its botocore model, its crate, its spec, and which of the
/// model's operations it serves.
struct Served {
    model: &'static str,
    crate_dir: &'static str,
    spec: &'static ServiceSpec,
    serves: fn(&str) -> bool,
}

fn all(_: &str) -> bool {
    true
}

/// Every service the binary serves, on every protocol it is served on (CloudWatch on two).
fn served() -> Vec<Served> {
    vec![
        Served {
            model: "ecs",
            crate_dir: "ecs",
            spec: &gantry_ecs::SPEC,
            serves: |op| op.parse().is_ok_and(gantry_ecs::EcsService::is_implemented),
        },
        Served {
            model: "ecr",
            crate_dir: "ecr",
            spec: &gantry_ecr::SPEC,
            serves: all,
        },
        Served {
            model: "logs",
            crate_dir: "logs",
            spec: &gantry_logs::SPEC,
            serves: |op| {
                op.parse()
                    .is_ok_and(gantry_logs::LogsService::is_implemented)
            },
        },
        Served {
            model: "elbv2",
            crate_dir: "elbv2",
            spec: &gantry_elbv2::SPEC,
            serves: |op| {
                op.parse()
                    .is_ok_and(gantry_elbv2::Elbv2Service::is_implemented)
            },
        },
        Served {
            model: "iam",
            crate_dir: "iam",
            spec: &gantry_iam::SPEC,
            serves: |op| op.parse().is_ok_and(gantry_iam::IamService::is_implemented),
        },
        Served {
            model: "sts",
            crate_dir: "sts",
            spec: &gantry_sts::SPEC,
            serves: |op| op.parse().is_ok_and(gantry_sts::StsService::is_implemented),
        },
        Served {
            model: "ec2",
            crate_dir: "ec2",
            spec: &gantry_ec2::SPEC,
            serves: |op| op.parse().is_ok_and(gantry_ec2::Ec2Service::is_implemented),
        },
        Served {
            model: "kms",
            crate_dir: "kms",
            spec: &gantry_kms::SPEC,
            serves: |op| op.parse().is_ok_and(gantry_kms::KmsService::is_implemented),
        },
        Served {
            model: "secretsmanager",
            crate_dir: "secretsmanager",
            spec: &gantry_secretsmanager::SPEC,
            serves: |op| {
                op.parse()
                    .is_ok_and(gantry_secretsmanager::SecretsManagerService::is_implemented)
            },
        },
        Served {
            model: "ssm",
            crate_dir: "ssm",
            spec: &gantry_ssm::SPEC,
            serves: |op| op.parse().is_ok_and(gantry_ssm::SsmService::is_implemented),
        },
        Served {
            model: "codedeploy",
            crate_dir: "codedeploy",
            spec: &gantry_codedeploy::SPEC,
            serves: |op| {
                op.parse()
                    .is_ok_and(gantry_codedeploy::CodeDeployService::is_implemented)
            },
        },
        Served {
            model: "cloudwatch",
            crate_dir: "cloudwatch",
            spec: &gantry_cloudwatch::SPEC,
            serves: all,
        },
        Served {
            model: "cloudwatch",
            crate_dir: "cloudwatch",
            spec: &gantry_cloudwatch::QUERY_SPEC,
            serves: all,
        },
        Served {
            model: "acm",
            crate_dir: "acm",
            spec: &gantry_acm::SPEC,
            serves: |op| op.parse().is_ok_and(gantry_acm::AcmService::is_implemented),
        },
        Served {
            model: "application-autoscaling",
            crate_dir: "autoscaling",
            spec: &gantry_autoscaling::SPEC,
            serves: all,
        },
    ]
}

/// Served operations whose model constraints the front does not check, and why: each service
/// checks these itself, in the words AWS uses for it.
const CHECKED_BY_THEIR_SERVICE: &[(&str, &str)] = &[
    // Per-event problems go to rejectedLogEventsInfo; the batch limits have CloudWatch Logs'
    // own wording.
    ("logs", "PutLogEvents"),
    // STS validates RoleSessionName, DurationSeconds, SerialNumber and tags in its handlers.
    ("sts", "AssumeRole"),
    ("sts", "GetAccessKeyInfo"),
    ("sts", "GetSessionToken"),
    // EC2 words its validation `InvalidParameterValue` (`Value ( 1 ) for parameter maxResults
    // is invalid...`), not as the validator of the other services; its handlers check.
    ("ec2", "*"),
];

fn checked_by_their_service(model: &str, op: &str) -> bool {
    CHECKED_BY_THEIR_SERVICE
        .iter()
        .any(|&(m, o)| m == model && (o == op || o == "*"))
}

#[test]
fn every_service_crate_is_listed_as_served() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../services");
    let listed: HashSet<&str> = served().iter().map(|s| s.crate_dir).collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !listed.contains(name.as_str()) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "service crates missing from this test's list: {missing:?}"
    );
}

/// Every served operation whose model input carries a constraint is in its service's table (so
/// the front checks it), or is one its service checks itself.
#[test]
fn every_served_operation_with_constraints_is_in_its_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut models: Vec<&str> = served().iter().map(|s| s.model).collect();
    models.dedup();
    let out = Command::new("python3")
        .arg(root.join("scripts/gen-model-constraints.py"))
        .arg("--constrained-operations")
        .args(&models)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        _ if std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").as_deref() == Ok("1") => {
            panic!("python3 with botocore is not available")
        }
        _ => {
            eprintln!("\n*** SKIPPED: python3 with botocore not available ***\n");
            return;
        }
    };
    let listing = String::from_utf8(out.stdout).unwrap();
    let mut checked = 0;
    let mut unchecked = Vec::new();
    for line in listing.lines() {
        let (model, op) = line.split_once(' ').unwrap();
        for s in served().iter().filter(|s| s.model == model) {
            if !(s.serves)(op) || checked_by_their_service(model, op) {
                continue;
            }
            checked += 1;
            if s.spec.constraints.input(op).is_none() {
                unchecked.push(format!("{model}:{op} ({:?})", s.spec.protocol));
            }
        }
    }
    assert!(
        checked > 200,
        "served operations with constraints: {checked}"
    );
    assert!(
        unchecked.is_empty(),
        "served operations whose constraints nothing checks: {unchecked:?}"
    );
}

/// A request value that violates a constraint of its shape.
#[derive(Debug)]
enum Bad {
    Scalar(serde_json::Value),
    Struct(&'static str, Box<Bad>),
    List(Vec<Bad>),
    Map(String, Box<Bad>),
}

/// A string the pattern does not match, if one of a few does.
fn unmatched(pattern: &Pattern) -> Option<String> {
    let re = pattern.regex()?;
    ["", " ", "!", "\u{7}", "a b", "~~~", "#{x}", "0", "a"]
        .into_iter()
        .find(|c| !re.is_match(c))
        .map(str::to_owned)
}

/// One violation of `shape`'s constraints (others may come with it), if one is easily made.
fn violate(shape: &Shape) -> Option<Bad> {
    violate_within(shape, 0)
}

/// [`violate`], looking at most `DEEPEST` members down: shapes may be recursive (ACM's
/// SearchCertificates filters nest through `AND`/`OR`/`NOT`).
fn violate_within(shape: &Shape, depth: usize) -> Option<Bad> {
    use serde_json::json;
    const LONGEST: u64 = 1 << 20;
    const DEEPEST: usize = 12;
    if depth > DEEPEST {
        return None;
    }
    let violate = |s: &Shape| violate_within(s, depth + 1);
    match shape {
        Shape::Structure(members) => members
            .iter()
            .find_map(|m| Some(Bad::Struct(m.name, Box::new(violate(m.shape)?)))),
        Shape::List { member, min, .. } => match violate(member) {
            Some(bad) => Some(Bad::List(vec![bad])),
            None if min.is_some_and(|m| m > 0) => Some(Bad::List(Vec::new())),
            None => None,
        },
        Shape::Map { key, value, .. } => {
            if let Some(Bad::Scalar(k)) = violate(key) {
                let k = k.as_str()?.to_owned();
                return Some(Bad::Map(k, Box::new(Bad::Scalar(json!("v")))));
            }
            Some(Bad::Map("k".into(), Box::new(violate(value)?)))
        }
        Shape::String { min, max, pattern } => {
            if let Some(max) = max.filter(|&m| m < LONGEST) {
                return Some(Bad::Scalar(json!("a".repeat(max as usize + 1))));
            }
            if min.is_some_and(|m| m > 0) {
                return Some(Bad::Scalar(json!("")));
            }
            pattern.and_then(unmatched).map(|s| Bad::Scalar(json!(s)))
        }
        Shape::Blob { min, max } => {
            use base64::Engine as _;
            let b64 =
                |n: u64| base64::engine::general_purpose::STANDARD.encode(vec![0u8; n as usize]);
            match (min, max) {
                (_, Some(max)) if *max < LONGEST => Some(Bad::Scalar(json!(b64(max + 1)))),
                (Some(min), _) if *min > 0 => Some(Bad::Scalar(json!(""))),
                _ => None,
            }
        }
        Shape::Integer { min, max } => match (min, max) {
            (_, Some(max)) if *max < i64::MAX => Some(Bad::Scalar(json!(max + 1))),
            (Some(min), _) if *min > i64::MIN => Some(Bad::Scalar(json!(min - 1))),
            _ => None,
        },
        Shape::Float { min, max } => match (min, max) {
            (_, Some(max)) => Some(Bad::Scalar(json!(max + 1.0))),
            (Some(min), _) => Some(Bad::Scalar(json!(min - 1.0))),
            _ => None,
        },
        Shape::Any => None,
    }
}

impl Bad {
    /// The awsJson body holding it (as the value of a structure's member).
    fn json(&self) -> serde_json::Value {
        match self {
            Bad::Scalar(v) => v.clone(),
            Bad::Struct(name, v) => serde_json::json!({ *name: v.json() }),
            Bad::List(items) => items.iter().map(Bad::json).collect(),
            Bad::Map(k, v) => serde_json::json!({ k.as_str(): v.json() }),
        }
    }

    /// The awsQuery parameters holding it under `key` (a structure's under no key).
    fn query(&self, key: &str, out: &mut Vec<(String, String)>) {
        let under = |name: &str| {
            if key.is_empty() {
                name.to_owned()
            } else {
                format!("{key}.{name}")
            }
        };
        match self {
            Bad::Scalar(serde_json::Value::String(s)) => out.push((key.to_owned(), s.clone())),
            Bad::Scalar(v) => out.push((key.to_owned(), v.to_string())),
            Bad::Struct(name, v) => v.query(&under(name), out),
            Bad::List(items) if items.is_empty() => out.push((key.to_owned(), String::new())),
            Bad::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    item.query(&under(&format!("member.{}", i + 1)), out);
                }
            }
            Bad::Map(k, v) => {
                out.push((under("entry.1.key"), k.clone()));
                v.query(&under("entry.1.value"), out);
            }
        }
    }
}

/// Stands in for a service: counts the requests that reach it.
struct Counting {
    spec: &'static ServiceSpec,
    calls: AtomicUsize,
}

#[async_trait]
impl JsonService for Counting {
    fn spec(&self) -> &'static ServiceSpec {
        self.spec
    }
    async fn call(
        &self,
        _op: &str,
        _body: &[u8],
        _ctx: &RequestContext,
    ) -> Result<serde_json::Value, AwsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(serde_json::json!({}))
    }
}

#[async_trait]
impl QueryService for Counting {
    fn spec(&self) -> &'static ServiceSpec {
        self.spec
    }
    async fn call(
        &self,
        _action: &str,
        _req: &QueryRequest,
        _ctx: &RequestContext,
    ) -> Result<String, AwsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(String::new())
    }
}

const KEY: &str = "AKIDCONSTRAINTS00001";
const SECRET: &str = "constraints-test-secret-0000000000000001";

fn signed(
    signing_name: &str,
    target: Option<&str>,
    body: String,
) -> http::Request<axum::body::Body> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let mut b = http::Request::builder()
        .method("POST")
        .uri("http://127.0.0.1/")
        .header("host", "127.0.0.1");
    b = match target {
        Some(t) => b
            .header("x-amz-target", t)
            .header("content-type", "application/x-amz-json-1.1"),
        None => b.header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
    };
    let mut req = b.body(body).unwrap();
    let identity = aws_credential_types::Credentials::new(KEY, SECRET, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(signing_name)
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let signable = SignableRequest::new(
        "POST",
        "http://127.0.0.1/",
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(req.body().as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    req.map(axum::body::Body::from)
}

/// For every operation in every served table, on every protocol: a request violating one of
/// its constraints gets the table's validation error from the front, and the service never
/// sees it.
#[tokio::test]
async fn the_front_checks_every_operation_of_every_table() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let creds: HashMap<String, String> = [(KEY.to_owned(), SECRET.to_owned())].into();
    let mut front = Front::new(Arc::new(creds), Arc::new(SystemClock), "000000000000");
    let mut services = Vec::new();
    for s in served() {
        let svc = Arc::new(Counting {
            spec: s.spec,
            calls: AtomicUsize::new(0),
        });
        front = match s.spec.protocol {
            Protocol::Json { .. } => front.with_json(svc.clone()),
            _ => front.with_query(svc.clone()),
        };
        services.push(svc);
    }
    let router = Arc::new(front).router();
    let mut tried = 0;
    let mut unmade = Vec::new();
    let mut wrong = Vec::new();
    for svc in &services {
        let spec = svc.spec;
        for op in spec.constraints.operations {
            let Some(bad) = violate(op.input) else {
                unmade.push(format!("{}:{}", spec.iam_prefix, op.name));
                continue;
            };
            let req = match spec.protocol {
                Protocol::Json { target_prefix } => signed(
                    spec.signing_name,
                    Some(&format!("{target_prefix}.{}", op.name)),
                    bad.json().to_string(),
                ),
                Protocol::Query { version, .. } | Protocol::Ec2 { version, .. } => {
                    let mut pairs = vec![
                        ("Action".to_owned(), op.name.to_owned()),
                        ("Version".to_owned(), version.to_owned()),
                    ];
                    bad.query("", &mut pairs);
                    let body = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs)
                        .finish();
                    signed(spec.signing_name, None, body)
                }
            };
            tried += 1;
            let resp = router.clone().oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            if status != 400
                || !body.contains(spec.constraints.error_code)
                || !body.contains("validation error")
            {
                wrong.push(format!(
                    "{}:{} ({bad:?}): {status} {body}",
                    spec.iam_prefix, op.name
                ));
            }
        }
        assert_eq!(
            svc.calls.load(Ordering::SeqCst),
            0,
            "{}: a violating request reached the service",
            spec.iam_prefix
        );
    }
    assert!(tried > 300, "operations tried: {tried}");
    assert!(unmade.is_empty(), "no violation made for {unmade:?}");
    assert!(wrong.is_empty(), "not refused by the front: {wrong:#?}");
}
