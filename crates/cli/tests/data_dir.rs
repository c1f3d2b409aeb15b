//! The data dir as the real binary leaves it: private to its owner whatever the umask (the
//! database, its WAL and shared memory, blobs, upload sessions, credentials, secrets, the agent's
//! checkpoint), tightened when an older version left it open, and held by one process at a time.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

const BIN: &str = env!("CARGO_BIN_EXE_gantry");

/// `gantry <args>` under `umask 000`, the most permissive there is.
fn spawn_permissive(args: &[&str], data_dir: &Path, ready: &Path) -> Child {
    Command::new("sh")
        .args(["-c", "umask 000 && exec \"$@\"", "sh", BIN])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--ready-file"])
        .arg(ready)
        .env_remove("GANTRY_ROOT_ACCESS_KEY_ID")
        .env_remove("GANTRY_ROOT_SECRET_ACCESS_KEY")
        .env("GANTRY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One HTTP/1.1 exchange on a fresh connection; returns (status, headers text).
fn http(addr: &str, method: &str, path: &str, auth: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every entry under `dir` (the dir included) with a mode other users can use.
fn open_to_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut wrong = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let md = std::fs::metadata(&d).unwrap();
        if md.mode() & 0o777 != 0o700 {
            wrong.push((d.clone(), md.mode() & 0o777));
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                pending.push(e.path());
            } else if md.is_file() && md.mode() & 0o777 != 0o600 {
                wrong.push((e.path(), md.mode() & 0o777));
            }
        }
    }
    wrong
}

#[test]
fn every_data_file_is_private_under_a_permissive_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ready = tmp.path().join("ready.json");
    let with_agent = docker_available();
    if !with_agent {
        if std::env::var("GANTRY_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("Docker is not available and GANTRY_REQUIRE_DOCKER=1");
        }
        eprintln!("\n*** SKIPPED (agent checkpoint part): Docker not available ***\n");
    }
    // The registry part signs in with the root key pair as Basic credentials.
    let mut args = vec!["up", "--no-lb", "--registry-root-basic-auth"];
    if !with_agent {
        args.push("--no-agent");
    }
    let mut child = spawn_permissive(&args, &data, &ready);
    let info = gantry_testkit::wait_for_ready(&mut child, &ready, Duration::from_secs(30)).unwrap();
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("root-credentials.json")).unwrap())
            .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        creds["accessKeyId"].as_str().unwrap(),
        creds["secretAccessKey"].as_str().unwrap()
    ));
    let addr = info.registry.clone();

    // The registry: a repository (a store write), a finished blob, and an upload left open.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = gantry_agent::client::ApiClient::new(
        &info.endpoint,
        "us-east-1",
        creds["accessKeyId"].as_str().unwrap(),
        creds["secretAccessKey"].as_str().unwrap(),
    )
    .unwrap();
    rt.block_on(api.call(
        gantry_agent::client::Service::Ecr,
        "CreateRepository",
        &serde_json::json!({"repositoryName": "private/app"}),
    ))
    .unwrap();
    let blob = b"layer bytes".to_vec();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)));
    let (status, text) = http(
        &addr,
        "POST",
        &format!("/v2/private/app/blobs/uploads/?digest={digest}"),
        &auth,
        &blob,
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = http(&addr, "POST", "/v2/private/app/blobs/uploads/", &auth, b"");
    assert_eq!(status, 202, "{text}");
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_owned();
    let (status, text) = http(&addr, "PATCH", &location, &auth, b"half a layer");
    assert_eq!(status, 202, "{text}");

    if with_agent {
        let checkpoint = data.join("agent/agent-checkpoint.json");
        wait_for("the agent's checkpoint", Duration::from_secs(60), || {
            checkpoint.exists()
        });
    }
    let wrong = open_to_others(&data);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(wrong.is_empty(), "readable by others: {wrong:?}");
    for f in [
        "state.db",
        "state.db-wal",
        "state.db-shm",
        "root-credentials.json",
        "registry-token-secret",
        "gantry.lock",
    ] {
        assert!(data.join(f).exists(), "{f} was checked");
    }
}

#[test]
fn an_open_data_dir_is_tightened_on_start_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("registry/uploads")).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("registry-token-secret"), [7u8; 32]).unwrap();
    std::fs::set_permissions(
        data.join("registry-token-secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let ready = tmp.path().join("ready.json");
    let mut child = spawn_permissive(&["server"], &data, &ready);
    gantry_testkit::wait_for_ready(&mut child, &ready, Duration::from_secs(30)).unwrap();
    let wrong = open_to_others(&data);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.wait();
    assert!(wrong.is_empty(), "readable by others: {wrong:?}");
    assert!(
        stderr.contains("permissions were tightened") && stderr.contains("from=755"),
        "{stderr}"
    );
}

#[test]
fn a_second_server_on_one_data_dir_refuses_and_names_the_first() {
    let mut first = gantry_testkit::TestServer::start(BIN, "server", &[]).unwrap();
    let out = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&first.data_dir)
        .env_remove("GANTRY_ROOT_ACCESS_KEY_ID")
        .env_remove("GANTRY_ROOT_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pid {} server", first.child.id())) && stderr.contains("in use"),
        "{stderr}"
    );
    // Once the first is gone, the data dir is free again.
    first.terminate(Duration::from_secs(20)).unwrap();
    let ready = first.data_dir.join("again.json");
    let mut again = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&first.data_dir)
        .arg("--ready-file")
        .arg(&ready)
        .env_remove("GANTRY_ROOT_ACCESS_KEY_ID")
        .env_remove("GANTRY_ROOT_SECRET_ACCESS_KEY")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = gantry_testkit::wait_for_ready(&mut again, &ready, Duration::from_secs(30));
    let _ = again.kill();
    let _ = again.wait();
    started.unwrap();
}

#[test]
fn an_agent_on_a_data_dir_in_use_refuses_and_names_the_holder() {
    // `gantry up` holds its agent's data dir (DATA/agent) whether or not Docker is there.
    let up = gantry_testkit::TestServer::start(
        BIN,
        "up",
        &[
            ("GANTRY_ROOT_ACCESS_KEY_ID", "AKIATESTKEY000000002"),
            ("GANTRY_ROOT_SECRET_ACCESS_KEY", "s3cret"),
        ],
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["agent", "--cluster", "default", "--endpoint"])
        .arg(&up.ready.endpoint)
        .arg("--data-dir")
        .arg(up.data_dir.join("agent"))
        .env("GANTRY_ROOT_ACCESS_KEY_ID", "AKIATESTKEY000000002")
        .env("GANTRY_ROOT_SECRET_ACCESS_KEY", "s3cret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pid {} agent", up.child.id())),
        "{stderr}"
    );
}
