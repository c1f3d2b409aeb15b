//! boto3 and the AWS CLI against the Logs API behind the real HTTP front (SigV4 included), on an
//! axum server bound to 127.0.0.1:0. When python3 with boto3 and awscli is missing the test prints
//! a loud skip line, unless `GANTRY_REQUIRE_AWS_CLIENTS=1` or `GANTRY_REQUIRE_DOCKER=1` (set in CI),
//! which turn the skip into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_front::{Front, SystemClock};
use gantry_logs::LogsService;
use gantry_store::MemoryStore;

const ACCESS_KEY: &str = "AKIDLOGSTEST";
const SECRET: &str = "logs-test-secret";

fn clients_required() -> bool {
    ["GANTRY_REQUIRE_AWS_CLIENTS", "GANTRY_REQUIRE_DOCKER"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"))
}

async fn python_clients_available() -> bool {
    tokio::process::Command::new("python3")
        .args(["-c", "import boto3, awscli"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_aws_cli_drive_logs_end_to_end() {
    if !python_clients_available().await {
        assert!(
            !clients_required(),
            "python3 with boto3 and awscli is required"
        );
        eprintln!("\n*** SKIPPED: python3 with boto3 and awscli not available ***\n");
        return;
    }
    let store = Arc::new(MemoryStore::new());
    let logs = Arc::new(LogsService::new(store));
    let creds: HashMap<String, String> = HashMap::from([(ACCESS_KEY.into(), SECRET.into())]);
    let front = Arc::new(
        Front::new(Arc::new(creds), Arc::new(SystemClock), "000000000000").with_json(logs.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, front.router()).await.unwrap();
    });
    let (stop, rx) = tokio::sync::watch::channel(false);
    let retention = tokio::spawn(logs.clone().run_retention(rx));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients.py");
    let home = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("python3")
            .arg(script)
            .env("AWS_ENDPOINT_URL", format!("http://{addr}"))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", home.path().join("config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                home.path().join("credentials"),
            )
            .env("HOME", home.path())
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("client script timed out")
    .expect("python3 did not start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "client script failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("logs clients: all checks passed"));

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), retention)
        .await
        .expect("retention job stops")
        .unwrap();
    server.abort();
}
