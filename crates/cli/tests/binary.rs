//! The binary's contracts: ready file, generated credentials, `gantry up` exports, SIGTERM.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use gantry_testkit::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_gantry");

#[test]
fn server_on_port_zero_writes_ready_file_and_stops_on_sigterm() {
    let mut s = TestServer::start(BIN, "server", &[("GANTRY_LOG", "warn")]).expect("server starts");
    assert!(
        s.ready.endpoint.starts_with("http://127.0.0.1:"),
        "{}",
        s.ready.endpoint
    );
    assert!(!s.ready.endpoint.ends_with(":0"));
    assert_eq!(s.ready.endpoint, format!("http://{}", s.ready.registry));
    let status = s.terminate(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[test]
fn generated_root_credentials_are_private_and_stable() {
    let mut s = TestServer::start(BIN, "server", &[]).expect("server starts");
    let path = s.data_dir.join("root-credentials.json");
    let mode = std::fs::metadata(&path)
        .expect("credentials file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let first = std::fs::read_to_string(&path).expect("read");
    let creds: serde_json::Value = serde_json::from_str(&first).expect("json");
    let key = creds["accessKeyId"].as_str().expect("key");
    assert!(key.starts_with("AKIA") && key.len() == 20, "{key}");
    assert_eq!(creds["secretAccessKey"].as_str().map(str::len), Some(40));
    s.terminate(Duration::from_secs(20)).expect("exits");
    // A restart on the same data dir keeps the same pair.
    let out = std::process::Command::new(BIN)
        .arg("server")
        .arg("--data-dir")
        .arg(&s.data_dir)
        .args(["--listen", "127.0.0.1:0", "--ready-file"])
        .arg(s.data_dir.join("r2.json"))
        .env_remove("GANTRY_ROOT_ACCESS_KEY_ID")
        .env_remove("GANTRY_ROOT_SECRET_ACCESS_KEY")
        .spawn();
    let mut child = out.expect("restart");
    gantry_testkit::wait_for_ready(
        &mut child,
        &s.data_dir.join("r2.json"),
        Duration::from_secs(30),
    )
    .expect("ready again");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(std::fs::read_to_string(&path).expect("read"), first);
}

#[test]
fn up_prints_the_exports_a_user_pastes() {
    let mut s = TestServer::start(
        BIN,
        "up",
        &[
            ("GANTRY_ROOT_ACCESS_KEY_ID", "AKIATESTKEY000000001"),
            ("GANTRY_ROOT_SECRET_ACCESS_KEY", "s3cret"),
        ],
    )
    .expect("up starts");
    let mut stdout = s.child.stdout.take().expect("stdout");
    s.terminate(Duration::from_secs(20)).expect("exits");
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("read stdout");
    assert!(
        out.contains(&format!("export AWS_ENDPOINT_URL={}\n", s.ready.endpoint)),
        "{out}"
    );
    assert!(
        out.contains("export AWS_ACCESS_KEY_ID=AKIATESTKEY000000001\n"),
        "{out}"
    );
    assert!(
        out.contains("export AWS_SECRET_ACCESS_KEY=s3cret\n"),
        "{out}"
    );
    assert!(out.contains("export AWS_REGION=us-east-1\n"), "{out}");
}

#[test]
fn half_set_credentials_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path())
        .env("GANTRY_ROOT_ACCESS_KEY_ID", "AKIAONLYTHEKEY000000")
        .env_remove("GANTRY_ROOT_SECRET_ACCESS_KEY")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("runs");
    assert!(!status.success());
}
