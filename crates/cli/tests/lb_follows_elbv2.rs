//! The whole chain: the AWS CLI configures a load balancer, `gantry lb` follows the
//! configuration stream, proxies to a backend, and its health reports reach
//! DescribeTargetHealth.

#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{ACCESS_KEY, REGION, SECRET_KEY, Server};
use gantry_domain::lb::TargetHealthState;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
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
    let server = Server::start().await;
    let (backend_port, backend) = hello_backend().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lb = server.aws(&["create-load-balancer", "--name", "e2e"]).await;
    let lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let tg = server
        .aws(&[
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
        .aws(&[
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
        .aws(&[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=1",
        ])
        .await;
    // The ECS runner's entry point.
    gantry_elbv2::register_targets(
        server.store.as_ref(),
        REGION,
        &tg_arn,
        &[("127.0.0.1".to_owned(), backend_port)],
        now(),
    )
    .await
    .unwrap();

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
        let h = gantry_elbv2::target_health(server.store.as_ref(), REGION, &tg_arn, now())
            .await
            .unwrap();
        if h[0].state == TargetHealthState::Healthy {
            break;
        }
        assert!(Instant::now() < deadline, "never reported healthy: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = server
        .aws(&["describe-target-health", "--target-group-arn", &tg_arn])
        .await;
    assert_eq!(
        health["TargetHealthDescriptions"][0]["TargetHealth"]["State"],
        "healthy"
    );

    // Deregistration: draining for 1 s, then nothing to send to (503).
    let delay = gantry_elbv2::deregister_targets(
        server.store.as_ref(),
        REGION,
        &tg_arn,
        &[("127.0.0.1".to_owned(), backend_port)],
        now(),
    )
    .await
    .unwrap();
    assert_eq!(delay, 1);
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
