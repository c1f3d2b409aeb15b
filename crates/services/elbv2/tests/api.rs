//! The ELBv2 API through an in-process server, driven by boto3 and the AWS CLI.

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_covers_every_operation_and_error_code() {
    let server = Server::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/elbv2_boto3.py");
    let (ok, out, err) = server.python(&[script]).await;
    assert!(ok, "boto3 script failed:\n{out}\n{err}");
    assert!(out.starts_with("ok "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_creates_and_describes_unchanged() {
    let server = Server::start().await;
    let lb = server
        .aws(&[
            "create-load-balancer",
            "--name",
            "cli",
            "--subnets",
            "subnet-a",
            "subnet-b",
        ])
        .await;
    let lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(lb["LoadBalancers"][0]["State"]["Code"], "active");
    let tg = server
        .aws(&[
            "create-target-group",
            "--name",
            "cli-tg",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
            "--health-check-path",
            "/health",
        ])
        .await;
    let tg_arn = tg["TargetGroups"][0]["TargetGroupArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let listener = server
        .aws(&[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "18090",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ])
        .await;
    let l_arn = listener["Listeners"][0]["ListenerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let rule = server
        .aws(&[
            "create-rule",
            "--listener-arn",
            &l_arn,
            "--priority",
            "5",
            "--conditions",
            "Field=path-pattern,Values=/api/*",
            "--actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ])
        .await;
    assert_eq!(rule["Rules"][0]["Priority"], "5");
    server
        .aws(&[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.1,Port=8080",
        ])
        .await;
    let health = server
        .aws(&["describe-target-health", "--target-group-arn", &tg_arn])
        .await;
    let d = &health["TargetHealthDescriptions"][0];
    assert_eq!(d["Target"]["Id"], "127.0.0.1");
    assert_eq!(d["Target"]["Port"], 8080);
    assert_eq!(d["TargetHealth"]["State"], "initial");
    let rules = server
        .aws(&["describe-rules", "--listener-arn", &l_arn])
        .await;
    assert_eq!(rules["Rules"].as_array().unwrap().len(), 2);
    let err = server
        .aws_err(&["describe-target-groups", "--names", "missing"])
        .await;
    assert!(err.contains("TargetGroupNotFound"), "{err}");
    let err = server
        .aws_err(&["delete-target-group", "--target-group-arn", &tg_arn])
        .await;
    assert!(err.contains("ResourceInUse"), "{err}");
}
