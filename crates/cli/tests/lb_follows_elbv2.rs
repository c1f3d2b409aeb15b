//! The whole chain: the AWS CLI configures a load balancer on the real `gantry server`, the load
//! balancer (`gantry_lb::run`, what `gantry lb` runs) follows the configuration stream, proxies
//! to a backend, and its health reports reach DescribeTargetHealth.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gantry_testkit::TestServer;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

const BIN: &str = env!("CARGO_BIN_EXE_gantry");
const ACCESS_KEY: &str = "AKIDGANTRYTEST000001";
const SECRET_KEY: &str = "gantry-test-secret-key-000000000000000001";
const REGION: &str = "us-east-1";

/// The real server with known root credentials, and `aws elbv2` against it.
struct Server {
    _server: TestServer,
    endpoint: String,
    home: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let server = TestServer::start(
            BIN,
            "server",
            &[
                ("GANTRY_ROOT_ACCESS_KEY_ID", ACCESS_KEY),
                ("GANTRY_ROOT_SECRET_ACCESS_KEY", SECRET_KEY),
            ],
        )
        .unwrap();
        let endpoint = server.ready.endpoint.clone();
        Server {
            _server: server,
            endpoint,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// `aws elbv2 <args> --output json` (the pip AWS CLI, isolated from the user's
    /// configuration), parsed.
    async fn elbv2(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["elbv2"];
        all.extend_from_slice(args);
        self.cli(&all).await
    }

    /// Runs the AWS CLI with `args` (service first) and parses its JSON output.
    async fn cli(&self, args: &[&str]) -> serde_json::Value {
        let home = self.home.path().display().to_string();
        let mut cmd = tokio::process::Command::new("python3");
        cmd.args(["-m", "awscli"])
            .args(args)
            .args(["--output", "json"])
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_REGION", REGION)
            .env("AWS_CONFIG_FILE", format!("{home}/config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", format!("{home}/credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", &home)
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("aws finished in time")
            .expect("aws runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "aws elbv2 {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stdout.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON from aws: {e}: {stdout}"))
    }

    async fn target_state(&self, tg_arn: &str) -> String {
        let h = self
            .elbv2(&["describe-target-health", "--target-group-arn", tg_arn])
            .await;
        h["TargetHealthDescriptions"][0]["TargetHealth"]["State"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn hello_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("hello"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (port, task)
}

async fn get(port: u16) -> Option<(u16, String)> {
    let c: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = hyper::Request::get(format!("http://127.0.0.1:{port}/"))
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), c.request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_configures_gantry_lb_and_health_flows_back() {
    let server = Server::start();
    let (backend_port, backend) = hello_backend().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // An application load balancer lives in two zones' subnets: the default VPC's.
    let subnets = server
        .cli(&[
            "ec2",
            "describe-subnets",
            "--filters",
            "Name=default-for-az,Values=true",
        ])
        .await;
    let ids: Vec<String> = subnets["Subnets"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|s| s["SubnetId"].as_str().unwrap().to_owned())
        .collect();
    let lb = server
        .elbv2(&[
            "create-load-balancer",
            "--name",
            "e2e",
            "--subnets",
            &ids[0],
            &ids[1],
        ])
        .await;
    assert_eq!(
        lb["LoadBalancers"][0]["AvailabilityZones"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let tg = server
        .elbv2(&[
            "create-target-group",
            "--name",
            "e2e",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--target-type",
            "ip",
            "--health-check-path",
            "/",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
        ])
        .await;
    let tg_arn = tg["TargetGroups"][0]["TargetGroupArn"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .elbv2(&[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ])
        .await;
    server
        .elbv2(&[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=5",
        ])
        .await;
    let target = format!("Id=127.0.0.1,Port={backend_port}");
    server
        .elbv2(&[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &target,
        ])
        .await;

    let mut settings = gantry_lb::LbSettings::new(server.endpoint.clone());
    settings.access_key_id = ACCESS_KEY.into();
    settings.secret_access_key = SECRET_KEY.into();
    settings.region = REGION.into();
    settings.proxy_id = Some("e2e-proxy".into());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let lb_task = tokio::spawn(gantry_lb::run(settings, async move {
        let _ = stop_rx.await;
    }));

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((200, body)) = get(port).await {
            assert_eq!(body, "hello");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the load balancer never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let state = server.target_state(&tg_arn).await;
        if state == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "never reported healthy: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Deregistration: draining for 5 s (longer than an AWS CLI call on a busy host), then
    // nothing to send to (503).
    server
        .elbv2(&[
            "deregister-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &target,
        ])
        .await;
    assert_eq!(server.target_state(&tg_arn).await, "draining");
    loop {
        if let Some((503, _)) = get(port).await {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "still routing after deregistration"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), lb_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    backend.abort();
}

/// A listener whose port is taken is not shown `active`: DescribeLoadBalancers reports the
/// load balancer `failed` with the proxy's error until the port frees, then `active`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_be_opened_is_reported() {
    let server = Server::start();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let subnets = server
        .cli(&[
            "ec2",
            "describe-subnets",
            "--filters",
            "Name=default-for-az,Values=true",
        ])
        .await;
    let ids: Vec<String> = subnets["Subnets"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|s| s["SubnetId"].as_str().unwrap().to_owned())
        .collect();
    let lb = server
        .elbv2(&[
            "create-load-balancer",
            "--name",
            "taken",
            "--subnets",
            &ids[0],
            &ids[1],
        ])
        .await;
    let lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .elbv2(&[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            "Type=fixed-response,FixedResponseConfig={StatusCode=200}",
        ])
        .await;
    let mut settings = gantry_lb::LbSettings::new(server.endpoint.clone());
    settings.access_key_id = ACCESS_KEY.into();
    settings.secret_access_key = SECRET_KEY.into();
    settings.region = REGION.into();
    settings.proxy_id = Some("taken-proxy".into());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let lb_task = tokio::spawn(gantry_lb::run(settings, async move {
        let _ = stop_rx.await;
    }));
    let state = || async {
        let d = server
            .elbv2(&["describe-load-balancers", "--names", "taken"])
            .await;
        d["LoadBalancers"][0]["State"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = state().await;
        if s["Code"] == "failed" {
            let reason = s["Reason"].as_str().unwrap();
            assert!(
                reason.contains(&format!("cannot open port {port}"))
                    && reason.contains("taken-proxy"),
                "{reason}"
            );
            break;
        }
        assert_eq!(s["Code"], "active");
        assert!(Instant::now() < deadline, "the failure was never reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The port frees: the proxy opens it on its next attempt and the state clears.
    drop(holder);
    loop {
        let s = state().await;
        if s["Code"] == "active" {
            assert!(s.get("Reason").is_none(), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(port).await.map(|r| r.0), Some(200));
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), lb_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
