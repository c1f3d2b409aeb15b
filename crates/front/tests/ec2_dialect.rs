//! The front serves the `ec2` dialect beside awsQuery: routing by signing name, the
//! `<{Action}Response>` envelope with `requestId`, and `<Response><Errors>` for operation errors,
//! unknown actions and authentication failures.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::query::QueryRequest;
use gantry_front::{Front, Protocol, QueryService, RequestContext, ServiceSpec, SystemClock};
use http_body_util::BodyExt;
use tower::ServiceExt;

const AK: &str = "AKIDFRONTTEST0000001";
const SK: &str = "front-test-secret-000000000000000000001";

static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "ec2",
    signing_name: "ec2",
    protocol: Protocol::Ec2 {
        xmlns: "http://ec2.amazonaws.com/doc/2016-11-15/",
        version: "2016-11-15",
    },
    operations: &["DescribeVpcs", "DeleteVpc", "RunInstances"],
    constraints: &gantry_aws_proto::constraints::Constraints::NONE,
};

struct Fake;

#[async_trait]
impl QueryService for Fake {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }
    async fn call(
        &self,
        action: &str,
        req: &QueryRequest,
        _ctx: &RequestContext,
    ) -> Result<String, AwsError> {
        match action {
            "DescribeVpcs" => Ok("<vpcSet/>".into()),
            _ => Err(AwsError::client(
                "InvalidVpcID.NotFound",
                format!(
                    "The vpc ID '{}' does not exist",
                    req.get("VpcId").unwrap_or("")
                ),
            )),
        }
    }
}

fn front() -> axum::Router {
    let creds: HashMap<String, String> = HashMap::from([(AK.to_owned(), SK.to_owned())]);
    Arc::new(
        Front::new(Arc::new(creds), Arc::new(SystemClock), "000000000000")
            .with_query(Arc::new(Fake)),
    )
    .router()
}

fn signed(body: &str, secret: &str) -> http::Request<axum::body::Body> {
    let mut req = http::Request::builder()
        .method("POST")
        .uri("http://127.0.0.1/")
        .header("host", "127.0.0.1")
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body.to_owned())
        .unwrap();
    let identity = Credentials::new(AK, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("ec2")
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

async fn send(req: http::Request<axum::body::Body>) -> (u16, String) {
    let resp = front().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn success_is_an_action_response_with_request_id() {
    let (status, body) = send(signed("Action=DescribeVpcs&Version=2016-11-15", SK)).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(
            "<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>"
        ),
        "{body}"
    );
    assert!(
        body.ends_with("</requestId><vpcSet/></DescribeVpcsResponse>"),
        "{body}"
    );
    assert!(!body.contains("Result"), "{body}");
}

#[tokio::test]
async fn operation_errors_use_the_errors_envelope() {
    let (status, body) = send(signed(
        "Action=DeleteVpc&Version=2016-11-15&VpcId=vpc-9",
        SK,
    ))
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>The vpc ID &apos;vpc-9&apos; does not exist</Message></Error></Errors><RequestID>"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_actions_and_bad_credentials_answer_in_the_ec2_dialect() {
    let (status, body) = send(signed("Action=NoSuchThing&Version=2016-11-15", SK)).await;
    assert_eq!(status, 400);
    assert!(body.contains("<Code>InvalidAction</Code>"), "{body}");
    assert!(
        body.contains("The action NoSuchThing is not valid for this web service."),
        "{body}"
    );
    let (status, body) = send(signed(
        "Action=DescribeVpcs&Version=2016-11-15",
        "wrong-secret",
    ))
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("<Response><Errors><Error><Code>SignatureDoesNotMatch</Code>"),
        "{body}"
    );
}
