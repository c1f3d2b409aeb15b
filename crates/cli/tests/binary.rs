//! The binary's contracts: ready file, generated credentials, `gantry up` exports, SIGTERM, a
//! bounded shutdown and the second signal.

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

/// `gantry up` (local agent and load balancer included) with a request stuck mid-body, so the
/// API cannot finish draining on its own.
fn up_with_a_stuck_request(shutdown_timeout: &str) -> (TestServer, std::net::TcpStream) {
    use std::io::Write;
    let s = TestServer::start_with_args(
        BIN,
        "up",
        &["--shutdown-timeout", shutdown_timeout],
        &[
            ("GANTRY_ROOT_ACCESS_KEY_ID", "AKIATESTKEY000000003"),
            ("GANTRY_ROOT_SECRET_ACCESS_KEY", "s3cret"),
        ],
    )
    .expect("up starts");
    let mut stuck = std::net::TcpStream::connect(&s.ready.registry).expect("connect");
    write!(
        stuck,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly the start of it"
    )
    .expect("write");
    // The server has the request (its head at least) before the signal.
    std::thread::sleep(Duration::from_millis(200));
    (s, stuck)
}

fn signal(s: &TestServer, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &s.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(s: &mut TestServer, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            return Some(st);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn up_stops_within_its_shutdown_deadline_despite_a_stuck_request() {
    let (mut s, _stuck) = up_with_a_stuck_request("2");
    signal(&s, "INT");
    // Two seconds for every part at once, then the store; the rest is slack for a busy machine.
    let status = wait_exit(&mut s, Duration::from_secs(12)).expect("exits within its deadline");
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let (mut s, _stuck) = up_with_a_stuck_request("300");
    signal(&s, "INT");
    assert!(
        wait_exit(&mut s, Duration::from_millis(500)).is_none(),
        "still draining after the first signal"
    );
    signal(&s, "INT");
    let status = wait_exit(&mut s, Duration::from_secs(5)).expect("exits on the second signal");
    assert_eq!(status.code(), Some(130), "{status}");
}
