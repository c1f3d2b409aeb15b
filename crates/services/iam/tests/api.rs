//! IAM and its directory through the `QueryService` on the in-memory store, with a stand-in
//! sealer (the binary seals with the master key; tested end to end): what a reload of the store
//! finds, what the front asks of the directory, sessions and their expiry, and nothing
//! half-written when a write is refused.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use gantry_aws_proto::query::QueryRequest;
use gantry_front::{QueryService, RequestContext};
use gantry_iam::principals::SessionRefusal;
use gantry_iam::sts::AssumeRoleInput;
use gantry_iam::{IamService, Sealer};
use gantry_iam_policy::{Context, PolicySet, Principal, Request, evaluate};
use gantry_store::{MemoryStore, Store};

const ACCOUNT: &str = "123456789012";

/// A stand-in sealer: the purpose and a keyed XOR, enough to tell purposes and alterations apart.
#[derive(Debug)]
struct TestSealer;

impl Sealer for TestSealer {
    fn seal(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut out = (purpose.len() as u32).to_be_bytes().to_vec();
        out.extend(purpose.as_bytes());
        let sum: u8 = plaintext.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        out.push(sum);
        out.extend(plaintext.iter().map(|b| b ^ 0xa5));
        out
    }
    fn open(&self, purpose: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let n = u32::from_be_bytes(sealed.get(..4)?.try_into().ok()?) as usize;
        if sealed.get(4..4 + n)? != purpose.as_bytes() {
            return None;
        }
        let sum = *sealed.get(4 + n)?;
        let plain: Vec<u8> = sealed.get(5 + n..)?.iter().map(|b| b ^ 0xa5).collect();
        (plain.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == sum).then_some(plain)
    }
}

fn ctx(now: u64) -> RequestContext {
    RequestContext {
        caller: None,
        request_id: "req".into(),
        region: "us-east-1".into(),
        account_id: ACCOUNT.into(),
        access_key_id: "AKIAROOT".into(),
        now,
    }
}

async fn iam(store: Arc<dyn Store>) -> IamService {
    IamService::open(store, Arc::new(TestSealer), ACCOUNT)
        .await
        .unwrap()
}

async fn call(
    svc: &IamService,
    action: &str,
    params: &[(&str, &str)],
) -> Result<String, (String, String)> {
    let mut body = format!("Action={action}&Version=2010-05-08");
    for (k, v) in params {
        body.push('&');
        body.push_str(k);
        body.push('=');
        body.push_str(&form_encode(v));
    }
    let q = QueryRequest::parse(body.as_bytes(), None);
    svc.call(action, &q, &ctx(1_700_000_000_000))
        .await
        .map_err(|e| (e.code.to_string(), e.message))
}

fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn between<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap() + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

const ALLOW_DESCRIBE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:Describe*","Resource":"*"}]}"#;

#[tokio::test]
async fn the_directory_survives_a_reload_and_answers_the_front() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = iam(store.clone()).await;
    call(&svc, "CreateUser", &[("UserName", "Dev")])
        .await
        .unwrap();
    call(&svc, "CreateGroup", &[("GroupName", "readers")])
        .await
        .unwrap();
    call(
        &svc,
        "AddUserToGroup",
        &[("GroupName", "readers"), ("UserName", "dev")],
    )
    .await
    .unwrap();
    let pol = call(
        &svc,
        "CreatePolicy",
        &[("PolicyName", "d"), ("PolicyDocument", ALLOW_DESCRIBE)],
    )
    .await
    .unwrap();
    let arn = between(&pol, "Arn").to_owned();
    call(
        &svc,
        "AttachGroupPolicy",
        &[("GroupName", "readers"), ("PolicyArn", &arn)],
    )
    .await
    .unwrap();
    let key = call(&svc, "CreateAccessKey", &[("UserName", "Dev")])
        .await
        .unwrap();
    let id = between(&key, "AccessKeyId").to_owned();
    let secret = between(&key, "SecretAccessKey").to_owned();

    // Names are unique case-insensitively.
    let dup = call(&svc, "CreateUser", &[("UserName", "dev")])
        .await
        .unwrap_err();
    assert_eq!(dup.0, "EntityAlreadyExists");

    // The store never holds the secret in the clear.
    let page = store.scan("iam/", None, 100).await.unwrap();
    assert!(
        page.records
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.value).contains(&secret))
    );

    let reloaded = iam(store).await;
    assert_eq!(reloaded.secret_for_key(&id).unwrap(), secret);
    let p = reloaded.principal_for_key(&id).unwrap();
    assert_eq!(p.arn, format!("arn:aws:iam::{ACCOUNT}:user/Dev"));
    let policies = reloaded.policies_for(&p).unwrap();
    assert_eq!(policies.identity.len(), 1, "the group's attached policy");
    let identity: Vec<_> = policies.identity.iter().map(|a| a.as_ref()).collect();
    let allowed = |action: &str| {
        evaluate(
            &Request {
                principal: &p,
                action,
                resources: &[],
                resource_account: None,
                context: &Context::new(),
            },
            &PolicySet {
                identity: &identity,
                ..PolicySet::default()
            },
        )
        .is_allowed()
    };
    assert!(allowed("ecs:DescribeClusters"));
    assert!(!allowed("ecs:RunTask"));
}

#[tokio::test]
async fn refused_writes_leave_nothing_behind() {
    let svc = iam(Arc::new(MemoryStore::new())).await;
    call(&svc, "CreateUser", &[("UserName", "u")])
        .await
        .unwrap();
    let malformed = call(
        &svc,
        "PutUserPolicy",
        &[
            ("UserName", "u"),
            ("PolicyName", "p"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*"}]}"#,
            ),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        malformed,
        (
            "MalformedPolicyDocument".into(),
            "Policy statement must contain resources.".into()
        )
    );
    let unknown_op = call(&svc, "CreatePolicy", &[("PolicyName", "p"),
        ("PolicyDocument", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"StringEqualz":{"a:b":"c"}}}]}"#)]).await.unwrap_err();
    assert_eq!(unknown_op.0, "MalformedPolicyDocument");
    let statements: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"Effect":"Allow","Action":"ecs:DescribeClusters","Resource":"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/c{i:03}"}}"#))
        .collect();
    let big = format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    );
    let over = call(
        &svc,
        "PutUserPolicy",
        &[
            ("UserName", "u"),
            ("PolicyName", "big"),
            ("PolicyDocument", &big),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        over,
        (
            "LimitExceeded".into(),
            "Maximum policy size of 2048 bytes exceeded for user u".into()
        )
    );
    let listed = call(&svc, "ListUserPolicies", &[("UserName", "u")])
        .await
        .unwrap();
    assert!(!listed.contains("<member>"));
    let none = call(&svc, "ListPolicies", &[("Scope", "Local")])
        .await
        .unwrap();
    assert!(!none.contains("<PolicyName>p</PolicyName>"));
    // Not served: answered, never dropped.
    let e = call(
        &svc,
        "CreateLoginProfile",
        &[("UserName", "u"), ("Password", "x")],
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "NotImplemented");
}

#[tokio::test]
async fn role_sessions_expire_and_end_with_their_role() {
    let svc = iam(Arc::new(MemoryStore::new())).await;
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:user/ci"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    call(
        &svc,
        "CreateRole",
        &[("RoleName", "r"), ("AssumeRolePolicyDocument", &trust)],
    )
    .await
    .unwrap();
    call(&svc, "CreateUser", &[("UserName", "ci")])
        .await
        .unwrap();
    let ci = Principal::user(ACCOUNT, "/", "ci", "AIDAX");
    let now = 1_700_000_000_000;
    let input = AssumeRoleInput {
        role_arn: format!("arn:aws:iam::{ACCOUNT}:role/r"),
        session_name: "s".into(),
        duration_seconds: Some(900),
        ..AssumeRoleInput::default()
    };
    // Named directly by the trust policy: no identity policy needed within the account.
    let a = svc.assume_role(&ci, &[], &input, now).unwrap();
    let c = &a.credentials;
    assert_eq!(c.expiration, now + 900_000);
    let claims = svc
        .open_session(&c.access_key_id, &c.session_token, now + 899_999)
        .unwrap();
    let p = svc.session_principal(&claims).unwrap();
    assert_eq!(p.arn, format!("arn:aws:sts::{ACCOUNT}:assumed-role/r/s"));
    assert_eq!(
        svc.open_session(&c.access_key_id, &c.session_token, now + 900_000)
            .unwrap_err(),
        SessionRefusal::Expired
    );
    assert_eq!(
        svc.open_session("ASIAOTHER", &c.session_token, now)
            .unwrap_err(),
        SessionRefusal::Invalid
    );
    // Another user is not trusted.
    let other = Principal::user(ACCOUNT, "/", "other", "AIDAY");
    let denied = svc.assume_role(&other, &[], &input, now).unwrap_err();
    assert_eq!(denied.code, "AccessDenied");
    call(&svc, "DeleteRole", &[("RoleName", "r")])
        .await
        .unwrap();
    assert!(svc.session_principal(&claims).is_none());
}

#[tokio::test]
async fn policy_versions_stop_at_five_and_lists_paginate() {
    let svc = iam(Arc::new(MemoryStore::new())).await;
    let pol = call(
        &svc,
        "CreatePolicy",
        &[("PolicyName", "p"), ("PolicyDocument", ALLOW_DESCRIBE)],
    )
    .await
    .unwrap();
    let arn = between(&pol, "Arn").to_owned();
    for _ in 0..4 {
        call(
            &svc,
            "CreatePolicyVersion",
            &[("PolicyArn", &arn), ("PolicyDocument", ALLOW_DESCRIBE)],
        )
        .await
        .unwrap();
    }
    let e = call(
        &svc,
        "CreatePolicyVersion",
        &[("PolicyArn", &arn), ("PolicyDocument", ALLOW_DESCRIBE)],
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "LimitExceeded");
    for i in 0..7 {
        call(&svc, "CreateUser", &[("UserName", &format!("user{i}"))])
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut params = vec![("MaxItems", "3")];
        if let Some(m) = &marker {
            params.push(("Marker", m.as_str()));
        }
        let page = call(&svc, "ListUsers", &params).await.unwrap();
        seen.extend(
            page.split("<UserName>")
                .skip(1)
                .map(|s| s[..s.find('<').unwrap()].to_owned()),
        );
        if page.contains("<IsTruncated>true</IsTruncated>") {
            marker = Some(between(&page, "Marker").to_owned());
        } else {
            break;
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("user{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn renamed_users_and_groups_keep_their_keys_and_members() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = iam(store.clone()).await;
    call(&svc, "CreateUser", &[("UserName", "old")])
        .await
        .unwrap();
    call(&svc, "CreateGroup", &[("GroupName", "g1")])
        .await
        .unwrap();
    call(
        &svc,
        "AddUserToGroup",
        &[("GroupName", "g1"), ("UserName", "old")],
    )
    .await
    .unwrap();
    let key = call(&svc, "CreateAccessKey", &[("UserName", "old")])
        .await
        .unwrap();
    let id = between(&key, "AccessKeyId").to_owned();
    call(
        &svc,
        "UpdateUser",
        &[
            ("UserName", "old"),
            ("NewUserName", "new"),
            ("NewPath", "/team/"),
        ],
    )
    .await
    .unwrap();
    call(
        &svc,
        "UpdateGroup",
        &[("GroupName", "g1"), ("NewGroupName", "g2")],
    )
    .await
    .unwrap();
    let reloaded = iam(store).await;
    let p = reloaded.principal_for_key(&id).unwrap();
    assert_eq!(p.arn, format!("arn:aws:iam::{ACCOUNT}:user/team/new"));
    let groups = call(&reloaded, "ListGroupsForUser", &[("UserName", "new")])
        .await
        .unwrap();
    assert!(groups.contains("<GroupName>g2</GroupName>"), "{groups}");
    let gone = call(&reloaded, "GetUser", &[("UserName", "old")])
        .await
        .unwrap_err();
    assert_eq!(gone.0, "NoSuchEntity");
}

/// Whether `p` may `ecs:DescribeClusters` under the policies the directory answers for it now.
fn may_describe(svc: &IamService, p: &Principal) -> bool {
    let Some(policies) = svc.policies_for(p) else {
        return false;
    };
    let identity: Vec<_> = policies.identity.iter().map(|a| a.as_ref()).collect();
    evaluate(
        &Request {
            principal: p,
            action: "ecs:DescribeClusters",
            resources: &[],
            resource_account: None,
            context: &Context::new(),
        },
        &PolicySet {
            identity: &identity,
            permissions_boundary: policies.permissions_boundary.as_deref(),
            ..PolicySet::default()
        },
    )
    .is_allowed()
}

/// The directory keeps its answers to the front between requests; every change to the
/// directory, here or on another replica sharing the store, replaces them before the next
/// request reads them.
#[tokio::test]
async fn kept_answers_follow_every_change_at_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = iam(store.clone()).await;
    call(&svc, "CreateUser", &[("UserName", "dev")])
        .await
        .unwrap();
    let pol = call(
        &svc,
        "CreatePolicy",
        &[("PolicyName", "d"), ("PolicyDocument", ALLOW_DESCRIBE)],
    )
    .await
    .unwrap();
    let arn = between(&pol, "Arn").to_owned();
    let attach = [("UserName", "dev"), ("PolicyArn", arn.as_str())];
    call(&svc, "AttachUserPolicy", &attach).await.unwrap();
    let key = call(&svc, "CreateAccessKey", &[("UserName", "dev")])
        .await
        .unwrap();
    let id = between(&key, "AccessKeyId").to_owned();

    // A second replica on the same store, following its changes.
    let replica = Arc::new(iam(store.clone()).await);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(replica.clone().follow(stopped));
    // Let it subscribe to the store's changes before there are any.
    tokio::task::yield_now().await;

    let p = svc.principal_for_key(&id).unwrap();
    assert!(
        Arc::ptr_eq(&p, &svc.principal_for_key(&id).unwrap()),
        "kept"
    );
    assert!(may_describe(&svc, &p) && may_describe(&svc, &p));
    assert!(may_describe(
        &replica,
        &replica.principal_for_key(&id).unwrap()
    ));

    // Detached: the very next question is denied, here and (once it has reloaded) elsewhere.
    call(&svc, "DetachUserPolicy", &attach).await.unwrap();
    assert!(!may_describe(&svc, &p));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while may_describe(&replica, &p) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica never reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Attached again, then a new default version that no longer allows it.
    call(&svc, "AttachUserPolicy", &attach).await.unwrap();
    assert!(may_describe(&svc, &p));
    let list_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:List*","Resource":"*"}]}"#;
    call(
        &svc,
        "CreatePolicyVersion",
        &[
            ("PolicyArn", arn.as_str()),
            ("PolicyDocument", list_only),
            ("SetAsDefault", "true"),
        ],
    )
    .await
    .unwrap();
    assert!(!may_describe(&svc, &p));

    // A renamed user's key names the new ARN; a deactivated key names nobody.
    call(
        &svc,
        "UpdateUser",
        &[("UserName", "dev"), ("NewUserName", "ops")],
    )
    .await
    .unwrap();
    let renamed = svc.principal_for_key(&id).unwrap();
    assert_eq!(renamed.arn, format!("arn:aws:iam::{ACCOUNT}:user/ops"));
    assert!(svc.policies_for(&p).is_none(), "user dev is gone");
    call(
        &svc,
        "UpdateAccessKey",
        &[
            ("UserName", "ops"),
            ("AccessKeyId", &id),
            ("Status", "Inactive"),
        ],
    )
    .await
    .unwrap();
    assert!(svc.principal_for_key(&id).is_none());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while replica.principal_for_key(&id).is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica never reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    follower.await.unwrap();
}
