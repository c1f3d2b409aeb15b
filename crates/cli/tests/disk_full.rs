//! A full disk, for real: the server's data dir is a 24 MiB tmpfs (mounted in a user and mount
//! namespace of its own, so no root is needed). Once an upload fills it, the registry answers
//! `UNAVAILABLE` (503) and the APIs a retryable 503 naming the cause, reads keep working, and
//! freeing space brings writes back without a restart.
//!
//! Needs `unshare` with unprivileged user namespaces; without them the test says SKIPPED loudly
//! (and fails under `GANTRY_REQUIRE_DOCKER=1`, which CI sets: CI machines have them).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use gantry_agent::client::{ApiClient, CallError, Service};
use serde_json::json;
use sha2::Digest as _;

const BIN: &str = env!("CARGO_BIN_EXE_gantry");
const ACCESS_KEY: &str = "AKIDGANTRYFULL000001";
const SECRET_KEY: &str = "gantry-disk-full-secret-00000000000000001";

fn namespaces_available() -> bool {
    Command::new("unshare")
        .args(["-Urm", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One HTTP/1.1 exchange; returns (status, whole response as text).
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCESS_KEY}:{SECRET_KEY}"));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The server may answer (and close) before it has read the whole body: it has no room for it.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn header(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn assert_storage_full(e: &CallError, code: &str) {
    match e {
        CallError::Aws {
            status,
            code: c,
            message,
        } => {
            assert_eq!(*status, 503, "{e}");
            assert_eq!(c, code, "{e}");
            assert!(message.contains("storage is full"), "{e}");
        }
        other => panic!("expected a 503 {code}, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_retryable_errors_keeps_reads_and_recovers() {
    if !namespaces_available() {
        if std::env::var("GANTRY_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("unshare -Urm is not available and GANTRY_REQUIRE_DOCKER=1");
        }
        eprintln!("\n*** SKIPPED: unshare -Urm (user namespaces) not available ***\n");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let ready = tmp.path().join("ready.json");
    let mut child = Command::new("unshare")
        .args([
            "-Urm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=24m,mode=700 tmpfs \"$1\" && shift && exec \"$@\"",
            "sh",
        ])
        .arg(&data)
        .args([BIN, "server", "--data-dir"])
        .arg(&data)
        // The registry part signs in with the root key pair as Basic credentials.
        .args([
            "--registry-root-basic-auth",
            "--listen",
            "127.0.0.1:0",
            "--ready-file",
        ])
        .arg(&ready)
        .env("GANTRY_ROOT_ACCESS_KEY_ID", ACCESS_KEY)
        .env("GANTRY_ROOT_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("GANTRY_LOG", "error")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let info = gantry_testkit::wait_for_ready(&mut child, &ready, Duration::from_secs(30)).unwrap();
    let addr = info.registry.clone();
    let api = ApiClient::new(&info.endpoint, "us-east-1", ACCESS_KEY, SECRET_KEY).unwrap();

    // Before: a repository with a layer, a cluster, a log group.
    api.call(
        Service::Ecr,
        "CreateRepository",
        &json!({"repositoryName": "full/app"}),
    )
    .await
    .unwrap();
    let blob = vec![42u8; 64 * 1024];
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)));
    let (status, text) = http(
        &addr,
        "POST",
        &format!("/v2/full/app/blobs/uploads/?digest={digest}"),
        &blob,
    );
    assert_eq!(status, 201, "{text}");
    api.call(
        Service::Ecs,
        "CreateCluster",
        &json!({"clusterName": "before"}),
    )
    .await
    .unwrap();

    // An upload that fills the disk: its chunks go in until there is no room left.
    let (status, text) = http(&addr, "POST", "/v2/full/app/blobs/uploads/", b"");
    assert_eq!(status, 202, "{text}");
    let location = header(&text, "location");
    let chunk = vec![1u8; 256 * 1024];
    let refused = loop {
        let (status, text) = http(&addr, "PATCH", &location, &chunk);
        if status != 202 {
            break (status, text);
        }
    };
    assert_eq!(refused.0, 503, "{}", refused.1);
    let body = refused
        .1
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let oci: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(oci["errors"][0]["code"], "UNAVAILABLE", "{body}");
    assert!(
        oci["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("storage is full"),
        "{body}"
    );

    // The APIs: writes are refused with a retryable error naming the cause once SQLite cannot
    // grow its write-ahead log (it may first reuse room it already has).
    let mut refused_write = None;
    for i in 0..2000 {
        let name = format!("{i:04}-{}", "x".repeat(200));
        match api
            .call(
                Service::Ecs,
                "CreateCluster",
                &json!({"clusterName": &name[..255.min(name.len())],
                        "tags": (0..40).map(|t| json!({"key": format!("k{t}"), "value": "v".repeat(250)})).collect::<Vec<_>>()}),
            )
            .await
        {
            Ok(_) => {}
            Err(e) => {
                refused_write = Some(e);
                break;
            }
        }
    }
    let refused_write = refused_write.expect("a write refused on the full disk");
    assert_storage_full(&refused_write, "ServerException");
    let logs = api
        .call(
            Service::Logs,
            "CreateLogGroup",
            &json!({"logGroupName": "/full"}),
        )
        .await
        .unwrap_err();
    assert_storage_full(&logs, "ServiceUnavailableException");

    // Reads keep working: the API, and the registry.
    let clusters = api
        .call(
            Service::Ecs,
            "DescribeClusters",
            &json!({"clusters": ["before"]}),
        )
        .await
        .unwrap();
    assert_eq!(clusters["clusters"][0]["clusterName"], "before");
    let (status, text) = http(&addr, "GET", &format!("/v2/full/app/blobs/{digest}"), b"");
    assert_eq!(status, 200, "{}", &text[..200.min(text.len())]);

    // Freeing the space (cancelling the upload) brings writes back, without a restart.
    let (status, text) = http(&addr, "DELETE", &location, b"");
    assert_eq!(status, 204, "{text}");
    api.call(
        Service::Ecs,
        "CreateCluster",
        &json!({"clusterName": "after"}),
    )
    .await
    .unwrap();
    api.call(
        Service::Logs,
        "CreateLogGroup",
        &json!({"logGroupName": "/after"}),
    )
    .await
    .unwrap();
    let (status, text) = http(&addr, "POST", "/v2/full/app/blobs/uploads/", b"");
    assert_eq!(status, 202, "{text}");
    let (status, text) = http(&addr, "PATCH", &header(&text, "location"), &chunk);
    assert_eq!(status, 202, "{text}");

    let _ = child.kill();
    let _ = child.wait();
}
