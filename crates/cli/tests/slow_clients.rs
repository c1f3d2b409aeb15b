//! The API listener against slow clients: a thousand half-sent requests are closed within the
//! header-read timeout, and while they are held, above the connection cap, an agent opens its
//! assignment stream, a load balancer its configuration stream, and an API call is answered.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use gantry_agent::client::{ApiClient, Service};
use gantry_testkit::TestServer;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_gantry");
const ACCESS_KEY: &str = "AKIDGANTRYSLOW000001";
const SECRET_KEY: &str = "gantry-slow-client-secret-000000000000001";
const SLOW: usize = 1000;
const HEADER_TIMEOUT_S: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_in_time_and_never_starve_agents() {
    let server = TestServer::start_with_args(
        BIN,
        "server",
        &[
            "--header-read-timeout",
            &HEADER_TIMEOUT_S.to_string(),
            "--idle-timeout",
            &HEADER_TIMEOUT_S.to_string(),
            // Fewer than the slow clients: the cap itself is under attack.
            "--max-connections",
            "256",
        ],
        &[
            ("GANTRY_ROOT_ACCESS_KEY_ID", ACCESS_KEY),
            ("GANTRY_ROOT_SECRET_ACCESS_KEY", SECRET_KEY),
            ("GANTRY_LOG", "error"),
        ],
    )
    .unwrap();
    let addr = server.ready.registry.clone();

    // A thousand clients that send the start of a request head and then nothing.
    let opened = Instant::now();
    let mut slow = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {i}").as_bytes())
            .await
            .unwrap();
        slow.push(s);
    }
    let all_sent = Instant::now();

    // Meanwhile: an API call, and an agent that registers and opens its assignment stream.
    let api = ApiClient::new(&server.ready.endpoint, "us-east-1", ACCESS_KEY, SECRET_KEY).unwrap();
    api.call(
        Service::Ecs,
        "CreateCluster",
        &json!({"clusterName": "slow"}),
    )
    .await
    .unwrap();
    let doc = json!({"instanceId": "i-0123456789abcdef0", "region": "us-east-1",
                     "availabilityZone": "us-east-1a", "instanceType": "m5.large"});
    let registered = api
        .call(
            Service::Ecs,
            "RegisterContainerInstance",
            &json!({
                "cluster": "slow",
                "instanceIdentityDocument": doc.to_string(),
                "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}
                ]
            }),
        )
        .await
        .unwrap();
    let instance = registered["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stream = api
        .open_stream(&format!(
            "/agent/v1/connect?cluster=slow&containerInstance={instance}"
        ))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.frame())
        .await
        .expect("the stream speaks at once")
        .unwrap()
        .unwrap();
    assert!(first.is_data());
    // A load balancer's configuration stream, long-lived too: its first message is the full
    // configuration, sent at once.
    let mut config = api
        .open_stream_for(Service::Elbv2, "/lb/v1/config")
        .await
        .unwrap();
    let snapshot = tokio::time::timeout(Duration::from_secs(10), config.frame())
        .await
        .expect("the configuration stream speaks at once")
        .unwrap()
        .unwrap();
    let snapshot = snapshot.into_data().unwrap();
    assert!(
        String::from_utf8_lossy(&snapshot).contains(r#""type":"config""#),
        "not a configuration snapshot: {}",
        String::from_utf8_lossy(&snapshot)
    );
    let served = Instant::now();
    let described = api
        .call(
            Service::Ecs,
            "DescribeContainerInstances",
            &json!({"cluster": "slow", "containerInstances": [instance]}),
        )
        .await
        .unwrap();
    assert_eq!(
        described["containerInstances"][0]["agentConnected"],
        json!(true)
    );
    // All of that happened while the slow clients were still within their timeout.
    assert!(
        served < opened + Duration::from_secs(HEADER_TIMEOUT_S),
        "the agent and the API waited for the slow clients ({:?})",
        served - opened
    );

    // Every slow connection is closed by the server within the timeout (plus slack for a busy
    // machine): its read ends (EOF or reset) instead of waiting forever.
    let deadline = all_sent + Duration::from_secs(HEADER_TIMEOUT_S + 6);
    let mut still_open = 0;
    for mut s in slow {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            // The server answers a head it never got in full with nothing but a close; any
            // bytes would be a response to a request that was not sent.
            Ok(Ok(n)) => panic!("unexpected answer to a half-sent request: {n} bytes"),
            Err(_) => still_open += 1,
        }
    }
    assert_eq!(
        still_open, 0,
        "half-sent connections left open past the timeout"
    );

    // The agent's stream, long-lived by design, outlives the header and idle timeouts: its
    // heartbeats keep coming.
    let later = tokio::time::timeout(Duration::from_secs(15), stream.frame())
        .await
        .expect("a heartbeat after the timeouts")
        .unwrap()
        .unwrap();
    assert!(later.is_data());
    let later = tokio::time::timeout(Duration::from_secs(15), config.frame())
        .await
        .expect("a configuration heartbeat after the timeouts")
        .unwrap()
        .unwrap();
    assert!(later.is_data());
}
