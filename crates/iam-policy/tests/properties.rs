//! Property tests: the engine against a small independent reference model of AWS's evaluation
//! logic, against the `iam-rs` crate (an oracle, pinned, dev-only) where both support the
//! features, and "an error, never a panic" on arbitrary input.

use std::collections::BTreeMap;

use gantry_iam_policy::{
    Context, Decision, Policy, PolicyDocument, PolicyKind, PolicySet, Principal, Request, evaluate,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const ME: &str = "111111111111";
const THEM: &str = "222222222222";
const ME_ARN: &str = "arn:aws:iam::111111111111:user/dev";
const SESSION_ARN: &str = "arn:aws:sts::111111111111:assumed-role/app/s1";
const ROLE_ARN: &str = "arn:aws:iam::111111111111:role/app";

const ACTIONS: [&str; 5] = [
    "ecs:RunTask",
    "ecs:StopTask",
    "ecs:DescribeClusters",
    "ecr:BatchGetImage",
    "ecr:PutImage",
];
const ACTION_PATTERNS: [&str; 9] = [
    "*",
    "ecs:*",
    "ecs:Run*",
    "ECS:runtask",
    "ecr:Batch?etImage",
    "ecr:*Image",
    "ecs:Describe*",
    "ecr:PutImage",
    "ecs:StopTask",
];
const RESOURCES: [&str; 4] = [
    "arn:aws:ecs:us-east-1:111111111111:cluster/a",
    "arn:aws:ecs:us-east-1:111111111111:cluster/ab",
    "arn:aws:ecs:eu-west-1:222222222222:cluster/b",
    "arn:aws:ecs:us-east-1:222222222222:cluster/A",
];
const RESOURCE_PATTERNS: [&str; 7] = [
    "*",
    "arn:aws:ecs:*:111111111111:cluster/a*",
    "arn:aws:ecs:us-east-1:*:cluster/?",
    "arn:aws:ecs:eu-west-1:222222222222:cluster/b",
    "arn:aws:ecs:*:*:cluster/*",
    "arn:aws:ecs:us-east-1:111111111111:cluster/ab",
    "arn:aws:ecs:*:*:cluster/a",
];
const ENVS: [&str; 3] = ["prod", "dev", "d*"];

// ---------------------------------------------------------------- the reference model

#[derive(Debug, Clone)]
struct Cond {
    op: &'static str,
    if_exists: bool,
    key: &'static str,
    values: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Prin {
    /// The caller's own ARN (user or role session).
    Me,
    /// The role of the calling session (another role's ARN for a user caller).
    MyRole,
    MyAccount,
    Star,
    Other,
}

#[derive(Debug, Clone)]
struct St {
    deny: bool,
    not_action: bool,
    actions: Vec<&'static str>,
    not_resource: bool,
    resources: Vec<&'static str>,
    conds: Vec<Cond>,
    principal: Option<Prin>,
}

/// `*` and `?` over characters, written independently of the engine (plain recursion).
fn model_glob(p: &[char], t: &[char]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some('*'), _) => model_glob(&p[1..], t) || (!t.is_empty() && model_glob(p, &t[1..])),
        (Some('?'), Some(_)) => model_glob(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => model_glob(&p[1..], &t[1..]),
        _ => false,
    }
}

fn glob_str(p: &str, t: &str) -> bool {
    let p: Vec<char> = p.chars().collect();
    let t: Vec<char> = t.chars().collect();
    model_glob(&p, &t)
}

fn model_cond(c: &Cond, ctx: &BTreeMap<&str, &str>) -> bool {
    let Some(v) = ctx.get(c.key) else {
        return c.if_exists || c.op.contains("Not");
    };
    match c.op {
        "StringEquals" => c.values.contains(v),
        "StringNotEquals" => !c.values.contains(v),
        "StringLike" => c.values.iter().any(|p| glob_str(p, v)),
        "StringNotLike" => !c.values.iter().any(|p| glob_str(p, v)),
        "NumericLessThan" => match v.parse::<f64>() {
            Ok(n) => c
                .values
                .iter()
                .any(|p| p.parse::<f64>().is_ok_and(|p| n < p)),
            Err(_) => false,
        },
        "Bool" => c.values.iter().any(|p| p.eq_ignore_ascii_case(v)),
        other => panic!("model has no operator {other}"),
    }
}

fn model_applies(s: &St, action: &str, resource: &str, ctx: &BTreeMap<&str, &str>) -> bool {
    let a = action.to_lowercase();
    let listed_a = s.actions.iter().any(|p| glob_str(&p.to_lowercase(), &a));
    let listed_r = s.resources.iter().any(|p| glob_str(p, resource));
    listed_a != s.not_action
        && listed_r != s.not_resource
        && s.conds.iter().all(|c| model_cond(c, ctx))
}

/// The policies of one request in the model.
struct ModelSet<'a> {
    identity: &'a [Vec<St>],
    boundary: Option<&'a Vec<St>>,
    session: Option<&'a Vec<St>>,
    resource: Option<&'a Vec<St>>,
}

/// AWS's logic as the documentation states it: an explicit deny anywhere wins; within the
/// account the identity policies (within the boundary, and for a role session within its
/// session policies) OR a resource policy naming the caller directly (`*` too) grant, a
/// resource policy naming the session's role grants within the boundary and session policies,
/// and naming the account delegates to the identity policies; across accounts both sides must
/// allow.
fn model_decide(
    set: &ModelSet<'_>,
    session_caller: bool,
    same_account: bool,
    action: &str,
    res: &str,
    ctx: &BTreeMap<&str, &str>,
) -> Decision {
    let named = |s: &St| match s.principal {
        Some(Prin::Me | Prin::Star) => 3,
        Some(Prin::MyRole) if session_caller => 2,
        Some(Prin::MyAccount) => 1,
        _ => 0,
    };
    let applies = |s: &&St| model_applies(s, action, res, ctx);
    let id: Vec<&St> = set.identity.iter().flatten().filter(applies).collect();
    let pb: Option<Vec<&St>> = set.boundary.map(|b| b.iter().filter(applies).collect());
    let sp: Option<Vec<&St>> = set
        .session
        .filter(|_| session_caller)
        .map(|b| b.iter().filter(applies).collect());
    let rp: Vec<&St> = set
        .resource
        .into_iter()
        .flatten()
        .filter(applies)
        .filter(|s| named(s) > 0)
        .collect();
    let any_deny = |v: &[&St]| v.iter().any(|s| s.deny);
    let any_allow = |v: &[&St]| v.iter().any(|s| !s.deny);
    if any_deny(&id)
        || any_deny(&rp)
        || pb.as_deref().is_some_and(any_deny)
        || sp.as_deref().is_some_and(any_deny)
    {
        return Decision::ExplicitDeny;
    }
    let pb_ok = pb.as_deref().is_none_or(any_allow);
    let sp_ok = sp.as_deref().is_none_or(any_allow);
    let chain = any_allow(&id) && pb_ok && sp_ok;
    let best = rp
        .iter()
        .filter(|s| !s.deny)
        .map(|s| named(s))
        .max()
        .unwrap_or(0);
    let allowed = if same_account {
        chain || best == 3 || (best == 2 && pb_ok && sp_ok)
    } else {
        chain && best > 0
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

// ---------------------------------------------------------------- rendering to JSON

fn list(v: &[&str]) -> Value {
    if v.len() == 1 { json!(v[0]) } else { json!(v) }
}

fn render(statements: &[St], session_caller: bool) -> String {
    let sts: Vec<Value> = statements
        .iter()
        .map(|s| {
            let mut o = serde_json::Map::new();
            o.insert(
                "Effect".into(),
                json!(if s.deny { "Deny" } else { "Allow" }),
            );
            o.insert(
                if s.not_action { "NotAction" } else { "Action" }.into(),
                list(&s.actions),
            );
            o.insert(
                if s.not_resource {
                    "NotResource"
                } else {
                    "Resource"
                }
                .into(),
                list(&s.resources),
            );
            if let Some(p) = s.principal {
                let v = match p {
                    Prin::Me => json!({"AWS": if session_caller { SESSION_ARN } else { ME_ARN }}),
                    Prin::MyRole => json!({"AWS": ROLE_ARN}),
                    Prin::MyAccount => json!({"AWS": ME}),
                    Prin::Star => json!("*"),
                    Prin::Other => json!({"AWS": "arn:aws:iam::333333333333:user/x"}),
                };
                o.insert("Principal".into(), v);
            }
            if !s.conds.is_empty() {
                let mut c = serde_json::Map::new();
                for cond in &s.conds {
                    let op = if cond.if_exists {
                        format!("{}IfExists", cond.op)
                    } else {
                        cond.op.to_string()
                    };
                    let block = c.entry(op).or_insert_with(|| json!({}));
                    block[cond.key] = list(&cond.values);
                }
                o.insert("Condition".into(), Value::Object(c));
            }
            Value::Object(o)
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": sts}).to_string()
}

// ---------------------------------------------------------------- generators

/// `strict`: only values `iam-rs` accepts (it refuses `TRUE` in `Bool`).
fn cond_strategy(
    negations: bool,
    if_exists: bool,
    multi_negated: bool,
    strict: bool,
) -> impl Strategy<Value = Cond> {
    let ops: Vec<&'static str> = if negations {
        vec![
            "StringEquals",
            "StringNotEquals",
            "StringLike",
            "StringNotLike",
            "NumericLessThan",
            "Bool",
        ]
    } else {
        vec!["StringEquals", "StringLike", "NumericLessThan", "Bool"]
    };
    (
        prop::sample::select(ops),
        any::<bool>(),
        prop::collection::vec(0usize..3, 1..3),
    )
        .prop_map(move |(op, ie, idx)| {
            let (key, pool): (&'static str, &[&'static str]) = match op {
                "NumericLessThan" => ("k:n", &["5", "10", "1.5"]),
                "Bool" if strict => ("k:flag", &["true", "false", "false"]),
                "Bool" => ("k:flag", &["true", "false", "TRUE"]),
                _ => ("k:env", &ENVS),
            };
            let mut values: Vec<&'static str> = idx.iter().map(|i| pool[*i]).collect();
            if op.contains("Not") && !multi_negated {
                values.truncate(1);
            }
            Cond {
                op,
                if_exists: if_exists && ie,
                key,
                values,
            }
        })
}

fn statement_strategy(principal: bool, cond: BoxedStrategy<Cond>) -> impl Strategy<Value = St> {
    (
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::collection::vec(prop::sample::select(&ACTION_PATTERNS[..]), 1..3),
        prop::bool::weighted(0.2),
        prop::collection::vec(prop::sample::select(&RESOURCE_PATTERNS[..]), 1..3),
        prop::collection::vec(cond, 0..3),
        prop::sample::select(vec![
            Prin::Me,
            Prin::MyRole,
            Prin::MyAccount,
            Prin::Star,
            Prin::Other,
        ]),
    )
        .prop_map(
            move |(deny, not_action, actions, not_resource, resources, mut conds, p)| {
                // One operator names a key once in a document.
                let mut seen = std::collections::HashSet::new();
                conds.retain(|c| seen.insert((c.op, c.if_exists, c.key)));
                St {
                    deny,
                    not_action,
                    actions,
                    not_resource,
                    resources,
                    conds,
                    principal: principal.then_some(p),
                }
            },
        )
}

fn context_strategy(strict: bool) -> impl Strategy<Value = BTreeMap<&'static str, &'static str>> {
    let (numbers, flags) = if strict {
        (vec!["3", "7", "10"], vec!["true", "false"])
    } else {
        (vec!["3", "7", "10", "x"], vec!["true", "false", "True"])
    };
    (
        prop::option::of(prop::sample::select(vec!["prod", "dev", "d*", "staging"])),
        prop::option::of(prop::sample::select(numbers)),
        prop::option::of(prop::sample::select(flags)),
    )
        .prop_map(|(env, n, flag)| {
            let mut m = BTreeMap::new();
            if let Some(v) = env {
                m.insert("k:env", v);
            }
            if let Some(v) = n {
                m.insert("k:n", v);
            }
            if let Some(v) = flag {
                m.insert("k:flag", v);
            }
            m
        })
}

fn to_context(m: &BTreeMap<&str, &str>) -> Context {
    let mut c = Context::new();
    for (k, v) in m {
        c.insert(k, *v);
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The engine decides as the reference model on generated policies, callers, requests and
    /// contexts.
    #[test]
    fn engine_agrees_with_the_reference_model(
        identity in prop::collection::vec(prop::collection::vec(statement_strategy(false, cond_strategy(true, true, true, false).boxed()), 1..4), 0..3),
        boundary in prop::option::weighted(0.3, prop::collection::vec(statement_strategy(false, cond_strategy(true, true, true, false).boxed()), 1..3)),
        session in prop::option::weighted(0.3, prop::collection::vec(statement_strategy(false, cond_strategy(true, true, true, false).boxed()), 1..3)),
        resource_policy in prop::option::weighted(0.5, prop::collection::vec(statement_strategy(true, cond_strategy(true, true, true, false).boxed()), 1..3)),
        session_caller in any::<bool>(),
        action in prop::sample::select(&ACTIONS[..]),
        resource in prop::sample::select(&RESOURCES[..]),
        same_account in any::<bool>(),
        ctx in context_strategy(false),
    ) {
        let compile = |s: &Vec<St>, kind: PolicyKind| Policy::parse(&render(s, session_caller), kind).unwrap();
        let id_policies: Vec<Policy> = identity.iter().map(|s| compile(s, PolicyKind::Identity)).collect();
        let id_refs: Vec<&Policy> = id_policies.iter().collect();
        let pb = boundary.as_ref().map(|s| compile(s, PolicyKind::PermissionsBoundary));
        let sp: Vec<Policy> = session.iter().map(|s| compile(s, PolicyKind::Session)).collect();
        let sp_refs: Vec<&Policy> = sp.iter().collect();
        let rp = resource_policy.as_ref().map(|s| compile(s, PolicyKind::Resource));
        let principal = if session_caller {
            Principal::assumed_role(ME, "/", "app", "AROAAPP", "s1")
        } else {
            Principal::user(ME, "/", "dev", "AIDADEV")
        };
        let context = to_context(&ctx);
        let request = Request {
            principal: &principal,
            action,
            resources: &[resource],
            resource_account: Some(if same_account { ME } else { THEM }),
            context: &context,
        };
        let got = evaluate(&request, &PolicySet { identity: &id_refs, resource: rp.as_ref(), permissions_boundary: pb.as_ref(), session: &sp_refs });
        let set = ModelSet { identity: &identity, boundary: boundary.as_ref(), session: session.as_ref(), resource: resource_policy.as_ref() };
        let want = model_decide(&set, session_caller, same_account, action, resource, &ctx);
        prop_assert_eq!(got.decision, want);
        prop_assert_eq!(got.denial_message(&request).is_some(), want != Decision::Allow);
    }
}

// ---------------------------------------------------------------- differential: iam-rs

fn iam_rs_decision(
    json: &str,
    action: &str,
    resource: &str,
    ctx: &BTreeMap<&str, &str>,
) -> Decision {
    let policy = iam_rs::IAMPolicy::from_json(json).expect("iam-rs parses the document");
    let mut context = iam_rs::Context::new();
    // iam-rs types its context values; AWS's request context holds the same values as text.
    for (k, v) in ctx {
        context = match (*k, v.parse::<bool>(), v.parse::<f64>()) {
            ("k:flag", Ok(b), _) => context.with_boolean(*k, b),
            ("k:n", _, Ok(n)) => context.with_number(*k, n),
            _ => context.with_string(*k, *v),
        };
    }
    let request = iam_rs::IAMRequest::new_with_context(
        iam_rs::Principal::Aws(iam_rs::PrincipalId::String(ME_ARN.to_string())),
        action,
        iam_rs::Arn::parse(resource).expect("resource ARN"),
        context,
    );
    match iam_rs::PolicyEvaluator::with_policies(vec![policy])
        .evaluate(&request)
        .expect("iam-rs evaluates")
        .decision
    {
        iam_rs::Decision::Allow => Decision::Allow,
        iam_rs::Decision::Deny => Decision::ExplicitDeny,
        iam_rs::Decision::NotApplicable => Decision::ImplicitDeny,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Identity policies with actions, resources, their negations, wildcards, and string,
    /// numeric and boolean conditions (negated, several values, `...IfExists`, absent keys)
    /// decide the same in both engines. Left out: `Bool` values in other cases than `true` and
    /// `false`, which `iam-rs` 0.8.0 refuses and IAM accepts, and non-numeric values of numeric
    /// keys, which `iam-rs` refuses to evaluate.
    #[test]
    fn engine_agrees_with_iam_rs(
        statements in prop::collection::vec(statement_strategy(false, cond_strategy(true, true, true, true).boxed()), 1..5),
        action in prop::sample::select(&ACTIONS[..]),
        resource in prop::sample::select(&RESOURCES[..]),
        ctx in context_strategy(true),
    ) {
        let json = render(&statements, false);
        let ours = Policy::parse(&json, PolicyKind::Identity).unwrap();
        let principal = Principal::user(ME, "/", "dev", "AIDADEV");
        let context = to_context(&ctx);
        let request = Request { principal: &principal, action, resources: &[resource], resource_account: None, context: &context };
        let got = evaluate(&request, &PolicySet { identity: &[&ours], ..PolicySet::default() }).decision;
        prop_assert_eq!(got, iam_rs_decision(&json, action, resource, &ctx), "{}", json);
    }
}

// ---------------------------------------------------------------- never panic

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "*",
            "Allow",
            "Deny",
            "allow",
            "2012-10-17",
            "2008-10-17",
            "ecs:RunTask",
            "ecs:*",
            "RunTask",
            "a:b:c",
            "arn:aws:ecs:*:*:cluster/*",
            "arn:aws::x",
            "arn:aws:iam::123456789012:user/dev",
            "123456789012",
            "${aws:username}",
            "${aws:x, 'd'}",
            "${",
            "${*}",
            "10.0.0.0/8",
            "2026-01-01",
            "true",
            "",
        ])
        .prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ];
    let keys = prop::sample::select(vec![
        "Version",
        "Id",
        "Statement",
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Principal",
        "NotPrincipal",
        "Condition",
        "AWS",
        "Service",
        "StringEquals",
        "ForAllValues:StringLikeIfExists",
        "Null",
        "IpAddress",
        "DateLessThan",
        "NumericGreaterThan",
        "aws:SourceIp",
        "k:n",
        "Bogus",
    ]);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary JSON-shaped input is refused with an error or accepted; accepted documents
    /// evaluate; nothing panics.
    #[test]
    fn arbitrary_documents_error_and_never_panic(doc in arb_json(), kind in prop::sample::select(vec![
        PolicyKind::Identity, PolicyKind::Resource, PolicyKind::Trust, PolicyKind::Session, PolicyKind::PermissionsBoundary,
    ])) {
        let text = doc.to_string();
        if let Ok(parsed) = PolicyDocument::parse(&text, kind) {
            let policy = Policy::compile(&parsed);
            let principal = Principal::user(ME, "/", "dev", "AIDADEV");
            let context = Context::new().with("aws:SourceIp", "10.1.2.3").with("k:n", "4");
            let request = Request { principal: &principal, action: "ecs:RunTask", resources: &[RESOURCES[0]], resource_account: None, context: &context };
            let set = match kind {
                PolicyKind::Resource | PolicyKind::Trust => PolicySet { resource: Some(&policy), ..PolicySet::default() },
                _ => PolicySet { identity: &[&policy], ..PolicySet::default() },
            };
            let _ = evaluate(&request, &set).denial_message(&request);
        }
    }

    /// Arbitrary text, JSON or not.
    #[test]
    fn arbitrary_text_errors_and_never_panics(text in ".{0,200}") {
        let parsed = PolicyDocument::parse(&text, PolicyKind::Identity);
        let looks_like_object = text.trim_start().starts_with('{');
        prop_assert!(parsed.is_err() || looks_like_object, "accepted {:?}", text);
    }
}
