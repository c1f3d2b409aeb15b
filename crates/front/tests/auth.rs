//! The front's identity hooks: the `Authenticator` names the caller (or refuses an expired or
//! unknown session with each protocol's error), and the `Authorizer` runs before dispatch for
//! every caller but the root, its denial worded per protocol (`AccessDeniedException`,
//! `AccessDenied` 403, `UnauthorizedOperation` 403) and the service never reached.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::query::QueryRequest;
use gantry_front::{
    AuthFailure, Authenticator, Authorizer, Denied, Front, JsonService, OperationInput, Protocol,
    QueryService, RequestContext, ServiceSpec, SystemClock,
};
use gantry_iam_policy::Principal;
use http_body_util::BodyExt;
use tower::ServiceExt;

const ROOT: &str = "AKIDROOT000000000001";
const USER: &str = "AKIDUSER000000000001";
const EXPIRED: &str = "ASIAEXPIRED000000001";
const SK: &str = "front-test-secret-000000000000000000001";

static JSON_SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "ecs",
    signing_name: "ecs",
    protocol: Protocol::Json {
        target_prefix: "AmazonEC2ContainerServiceV20141113",
    },
    operations: &["ListClusters", "RunTask"],
    constraints: &gantry_aws_proto::constraints::Constraints::NONE,
};

static QUERY_SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "iam",
    signing_name: "iam",
    protocol: Protocol::Query {
        xmlns: "https://iam.amazonaws.com/doc/2010-05-08/",
        version: "2010-05-08",
    },
    operations: &["ListUsers"],
    constraints: &gantry_aws_proto::constraints::Constraints::NONE,
};

static EC2_SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "ec2",
    signing_name: "ec2",
    protocol: Protocol::Ec2 {
        xmlns: "http://ec2.amazonaws.com/doc/2016-11-15/",
        version: "2016-11-15",
    },
    operations: &["DescribeVpcs"],
    constraints: &gantry_aws_proto::constraints::Constraints::NONE,
};

/// Counts calls that reach a service, and echoes the caller.
#[derive(Default)]
struct Echo {
    calls: AtomicUsize,
    spec: Option<&'static ServiceSpec>,
}

#[async_trait]
impl JsonService for Echo {
    fn spec(&self) -> &'static ServiceSpec {
        &JSON_SPEC
    }
    async fn call(
        &self,
        _op: &str,
        _body: &[u8],
        ctx: &RequestContext,
    ) -> Result<serde_json::Value, AwsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(serde_json::json!({"caller": ctx.caller_arn()}))
    }
}

#[async_trait]
impl QueryService for Echo {
    fn spec(&self) -> &'static ServiceSpec {
        self.spec.unwrap()
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

struct Ids;

impl Authenticator for Ids {
    fn principal(
        &self,
        access_key_id: &str,
        _token: Option<&str>,
        _service: &str,
        _region: &str,
        _now: u64,
    ) -> Result<Option<Arc<Principal>>, AuthFailure> {
        match access_key_id {
            ROOT => Ok(None),
            USER => Ok(Some(Arc::new(Principal::user(
                "000000000000",
                "/",
                "dev",
                "AIDADEV",
            )))),
            EXPIRED => Err(AuthFailure::Expired),
            _ => Err(AuthFailure::Invalid),
        }
    }
}

/// Allows `ecs:ListClusters` only.
struct OnlyListClusters;

#[async_trait]
impl Authorizer for OnlyListClusters {
    async fn authorize(
        &self,
        ctx: &RequestContext,
        spec: &'static ServiceSpec,
        op: &str,
        _input: OperationInput<'_>,
    ) -> Result<(), Denied> {
        let action = format!("{}:{op}", spec.iam_prefix);
        if action == "ecs:ListClusters" {
            return Ok(());
        }
        Err(Denied(format!(
            "User: {} is not authorized to perform: {action}",
            ctx.caller_arn()
        )))
    }
}

struct Setup {
    router: axum::Router,
    json: Arc<Echo>,
    query: Arc<Echo>,
    ec2: Arc<Echo>,
}

fn setup() -> Setup {
    let creds: HashMap<String, String> = [ROOT, USER, EXPIRED]
        .into_iter()
        .map(|k| (k.to_owned(), SK.to_owned()))
        .collect();
    let json = Arc::new(Echo::default());
    let query = Arc::new(Echo {
        spec: Some(&QUERY_SPEC),
        ..Echo::default()
    });
    let ec2 = Arc::new(Echo {
        spec: Some(&EC2_SPEC),
        ..Echo::default()
    });
    let router = Arc::new(
        Front::new(Arc::new(creds), Arc::new(SystemClock), "000000000000")
            .with_json(json.clone())
            .with_query(query.clone())
            .with_query(ec2.clone())
            .with_authenticator(Arc::new(Ids))
            .with_authorizer(Arc::new(OnlyListClusters)),
    )
    .router();
    Setup {
        router,
        json,
        query,
        ec2,
    }
}

fn signed(
    service: &str,
    key: &str,
    target: Option<&str>,
    body: &str,
) -> http::Request<axum::body::Body> {
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
    let mut req = b.body(body.to_owned()).unwrap();
    let identity = Credentials::new(key, SK, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(SystemTime::now())
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
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    req.map(axum::body::Body::from)
}

async fn send(router: &axum::Router, req: http::Request<axum::body::Body>) -> (u16, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

const RUN_TASK: &str = "AmazonEC2ContainerServiceV20141113.RunTask";
const LIST_CLUSTERS: &str = "AmazonEC2ContainerServiceV20141113.ListClusters";

#[tokio::test]
async fn the_root_is_never_checked_and_a_user_is_named_and_checked() {
    let s = setup();
    let (status, body) = send(&s.router, signed("ecs", ROOT, Some(RUN_TASK), "{}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("arn:aws:iam::000000000000:root"), "{body}");
    let (status, body) = send(&s.router, signed("ecs", USER, Some(LIST_CLUSTERS), "{}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("arn:aws:iam::000000000000:user/dev"),
        "{body}"
    );
    assert_eq!(s.json.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn denials_are_worded_per_protocol_and_never_reach_the_service() {
    let s = setup();
    let (status, body) = send(&s.router, signed("ecs", USER, Some(RUN_TASK), "{}")).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("\"__type\":\"AccessDeniedException\""),
        "{body}"
    );
    assert!(
        body.contains(
            "User: arn:aws:iam::000000000000:user/dev is not authorized to perform: ecs:RunTask"
        ),
        "{body}"
    );
    let (status, body) = send(
        &s.router,
        signed("iam", USER, None, "Action=ListUsers&Version=2010-05-08"),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    let (status, body) = send(
        &s.router,
        signed("ec2", USER, None, "Action=DescribeVpcs&Version=2016-11-15"),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("<Code>UnauthorizedOperation</Code>"),
        "{body}"
    );
    assert!(
        body.contains("You are not authorized to perform this operation. User: "),
        "{body}"
    );
    assert_eq!(s.json.calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.query.calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.ec2.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_sessions_answer_expired_token_per_protocol() {
    let s = setup();
    let (status, body) = send(&s.router, signed("ecs", EXPIRED, Some(LIST_CLUSTERS), "{}")).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("\"__type\":\"ExpiredTokenException\""),
        "{body}"
    );
    assert!(
        body.contains("The security token included in the request is expired"),
        "{body}"
    );
    let (status, body) = send(
        &s.router,
        signed("iam", EXPIRED, None, "Action=ListUsers&Version=2010-05-08"),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("<Code>ExpiredToken</Code>"), "{body}");
    assert_eq!(s.json.calls.load(Ordering::SeqCst), 0);
}
