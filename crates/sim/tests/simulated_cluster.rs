//! The real `gantry server` binary on port 0 with 20 simulated instances, driven by boto3
//! (`drive.py` beside this file) with the AWS waiters as assertions.
//!
//! Needs the binary: `cargo build -p gantry` (found beside this test's own target dir, or at
//! `GANTRY_BIN`), and python3 with boto3. A missing prerequisite fails the test, loudly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_sim::{SimConfig, Simulator};
use gantry_testkit::TestServer;

const ACCESS_KEY: &str = "AKIASIMTEST000000001";
const SECRET_KEY: &str = "sim-test-secret";
const INSTANCES: usize = 20;

/// `GANTRY_BIN`, else `<target>/<profile>/gantry` of the target dir this test was built in.
fn gantry_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GANTRY_BIN") {
        return PathBuf::from(p);
    }
    // <target>/<profile>/deps/simulated_cluster-<hash>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary inside <target>/<profile>/deps");
    let bin = profile_dir.join("gantry");
    assert!(
        bin.exists(),
        "the gantry binary is missing at {}: run `cargo build -p gantry` with the same target dir \
         first, or set GANTRY_BIN",
        bin.display()
    );
    bin
}

struct Cluster {
    server: TestServer,
    sim: Simulator,
    name: String,
}

async fn cluster(name: &str) -> Cluster {
    let bin = gantry_bin();
    let server = TestServer::start(
        bin.to_str().expect("utf-8 path"),
        "server",
        &[
            ("GANTRY_ROOT_ACCESS_KEY_ID", ACCESS_KEY),
            ("GANTRY_ROOT_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    )
    .expect("gantry server starts");
    let mut cfg = SimConfig::new(
        server.ready.endpoint.clone(),
        name,
        INSTANCES,
        ACCESS_KEY,
        SECRET_KEY,
    );
    cfg.seed = 42;
    let sim = Simulator::start(cfg).await.expect("simulator starts");
    let p = sim
        .wait_connected(Duration::from_secs(60))
        .await
        .expect("all simulated instances register and connect");
    assert_eq!(p.registered, INSTANCES as u64);
    Cluster {
        server,
        sim,
        name: name.to_owned(),
    }
}

/// Runs `drive.py <scenario>` against the cluster; panics with its output when it fails.
async fn drive(c: &Cluster, scenario: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drive.py");
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(scenario)
        .env("GANTRY_ENDPOINT", &c.server.ready.endpoint)
        .env("GANTRY_CLUSTER", &c.name)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("drive.py finishes within 180 s")
        .expect("python3 runs (python3 with boto3 is required)");
    let text = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "drive.py {scenario} failed\n{text}");
    println!("{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_task_runs_on_simulated_instances_and_stop_task_stops() {
    let c = cluster("sim-tasks").await;
    drive(&c, "tasks").await;
    let p = c.sim.progress();
    assert_eq!(p.reported_running, 10, "{p:?}");
    assert_eq!(p.reported_stopped, 10, "{p:?}");
    assert_eq!(p.report_failures, 0, "{p:?}");
    assert_eq!(p.connected, INSTANCES as u64, "{p:?}");
    c.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_of_six_reaches_steady_state_on_simulated_instances() {
    let c = cluster("sim-service").await;
    drive(&c, "service").await;
    let p = c.sim.progress();
    assert!(p.reported_running >= 6, "{p:?}");
    assert_eq!(p.report_failures, 0, "{p:?}");
    c.sim.stop().await;
}
