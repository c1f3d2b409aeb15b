//! Real etcd members for tests: each on free loopback ports with its data in a temp dir, killed
//! when dropped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether etcd tests run here: `etcd` is installed, or the run requires it
/// (`GANTRY_REQUIRE_ETCD=1`, set by `scripts/test`) and fails without it.
pub fn etcd_available() -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("GANTRY_REQUIRE_ETCD").as_deref() != Ok("1"),
            "etcd is required (GANTRY_REQUIRE_ETCD=1) but the etcd binary is missing: apt-get install etcd-server"
        );
        eprintln!("SKIPPED: etcd is not installed (apt-get install etcd-server)");
    }
    found
}

/// One etcd member.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Kills the member with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cluster of `n` etcd members on loopback.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
    initial_cluster: String,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> Result<EtcdCluster> {
        let dir = tempfile::tempdir()?;
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            dir,
            initial_cluster,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    /// (Re)starts member `i` on its ports and data dir.
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name)))?;
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start etcd")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Every member's `host:port`, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits (bounded) until every running member reports healthy through etcd's `/health`.
    pub fn wait_healthy(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            loop {
                if health(m.client_port) {
                    break;
                }
                if Instant::now() > deadline {
                    let log =
                        std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                            .unwrap_or_default();
                    bail!("etcd member {} did not become healthy:\n{log}", m.name);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

/// GET /health on a member's client port: `{"health":"true"}` once it has a leader.
fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
