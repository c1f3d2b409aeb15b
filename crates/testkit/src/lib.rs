//! Test fixtures: start the real `gantry` binary on port 0 in a temporary directory, wait for its
//! ready file, and stop it. Used by the binary's integration tests; the end-to-end suites with the
//! AWS CLI and boto3 live in `tests/e2e` and follow the same contract.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

/// What the server writes to `--ready-file` once it serves.
#[derive(Debug, Clone, Deserialize)]
pub struct Ready {
    pub endpoint: String,
    pub registry: String,
}

/// A running `gantry` process; killed when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub child: Child,
    pub ready: Ready,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// Waits until `path` exists and parses, or the process exits, or `timeout` passes.
pub fn wait_for_ready(child: &mut Child, path: &Path, timeout: Duration) -> anyhow::Result<Ready> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(r) = serde_json::from_str::<Ready>(&text)
        {
            return Ok(r);
        }
        if let Some(status) = child.try_wait()? {
            bail!("gantry exited before it was ready: {status}");
        }
        if Instant::now() > deadline {
            bail!("gantry was not ready within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl TestServer {
    /// Starts `bin <role> --data-dir TMP/data --listen 127.0.0.1:0 --ready-file TMP/ready.json`.
    pub fn start(bin: &str, role: &str, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with_args(bin, role, &[], envs)
    }

    /// Like [`TestServer::start`], with more flags after the standard ones.
    pub fn start_with_args(
        bin: &str,
        role: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let ready_path = tmp.path().join("ready.json");
        let mut cmd = Command::new(bin);
        cmd.arg(role)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready_path)
            .args(args)
            .env_remove("GANTRY_ROOT_ACCESS_KEY_ID")
            .env_remove("GANTRY_ROOT_SECRET_ACCESS_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {bin}"))?;
        let ready = wait_for_ready(&mut child, &ready_path, Duration::from_secs(30))?;
        Ok(Self {
            child,
            ready,
            data_dir,
            _tmp: Some(tmp),
        })
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("gantry did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
