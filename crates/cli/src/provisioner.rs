//! Pool provisioners for managed scaling (`gantry server --pool-provisioner NAME=KIND`):
//! - `NAME=local`: agents started and stopped inside the server's process, each joining the
//!   pool's cluster with `gantry.pool=NAME` and its own data dir under `DATA_DIR/pools/`;
//! - `NAME=exec:COMMAND`: `sh -c 'COMMAND "$@"' gantry-provisioner NAME DESIRED`, with the
//!   instances to remove in `GANTRY_REMOVE_INSTANCES` (EC2 instance ids, space-separated) and
//!   `GANTRY_REMOVE_CONTAINER_INSTANCES` (container instance ids), the cluster in
//!   `GANTRY_CLUSTER`; exit status 0 is success, its last line of output the outcome;
//! - `NAME=webhook:URL` (`http://` only): `POST URL` with the JSON `{"pool", "desired",
//!   "current", "cluster", "capacityProvider", "removeInstances": [{"ec2InstanceId",
//!   "containerInstanceId"}]}`; a 2xx answer is success, the first line of its body the outcome.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use gantry_ecs::managed_scaling::{PoolProvisioner, ScaleRequest};

use crate::datadir::{self, DataDirLock};

/// The attribute naming a local agent (`NAME-N`).
pub const LOCAL_INSTANCE_ATTRIBUTE: &str = "gantry.local-instance";

/// How long an exec provisioner's command may run.
const EXEC_DEADLINE: Duration = Duration::from_secs(300);
/// How long a local agent gets to stop.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// One pool's provisioner, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionerKind {
    Local,
    Exec(String),
    Webhook(http::Uri),
}

/// Parses `NAME=local` or `NAME=exec:COMMAND`.
pub fn parse(raw: &str) -> anyhow::Result<(String, ProvisionerKind)> {
    let (name, kind) = raw.split_once('=').ok_or_else(|| {
        anyhow::anyhow!(
            "--pool-provisioner {raw:?}: expected NAME=local, NAME=exec:COMMAND or NAME=webhook:URL"
        )
    })?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        anyhow::bail!(
            "--pool-provisioner {raw:?}: a pool name is 1 to 64 letters, digits, hyphens and underscores"
        );
    }
    let kind = if kind == "local" {
        ProvisionerKind::Local
    } else if let Some(cmd) = kind.strip_prefix("exec:").filter(|c| !c.trim().is_empty()) {
        ProvisionerKind::Exec(cmd.to_owned())
    } else if let Some(url) = kind.strip_prefix("webhook:") {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("--pool-provisioner {raw:?}: invalid URL {url:?}: {e}"))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(_)) => ProvisionerKind::Webhook(uri),
            (Some("https"), _) => anyhow::bail!(
                "--pool-provisioner {raw:?}: https webhooks are not supported; give an http:// URL (a local TLS proxy can forward it)"
            ),
            _ => anyhow::bail!(
                "--pool-provisioner {raw:?}: the webhook URL must be http://HOST[:PORT]/PATH"
            ),
        }
    } else {
        anyhow::bail!(
            "--pool-provisioner {raw:?}: expected local, exec:COMMAND or webhook:URL after '='"
        );
    };
    Ok((name.to_owned(), kind))
}

/// What a local agent needs to start.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

struct LocalAgent {
    name: String,
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
    _lock: DataDirLock,
}

/// The provisioners of every configured pool.
pub struct Provisioners {
    pools: HashMap<String, ProvisionerKind>,
    local: Option<LocalSettings>,
    agents: tokio::sync::Mutex<HashMap<String, Vec<LocalAgent>>>,
    next: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Provisioners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioners")
            .field("pools", &self.pools)
            .finish_non_exhaustive()
    }
}

impl Provisioners {
    pub fn new(pools: HashMap<String, ProvisionerKind>, local: LocalSettings) -> Self {
        Self {
            pools,
            local: Some(local),
            agents: Default::default(),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Starts again the local agents of an earlier run (their data dirs under `DATA_DIR/pools/`),
    /// so their instances reconnect and re-adopt their tasks.
    pub async fn resume(&self) {
        let Some(settings) = &self.local else { return };
        let Ok(entries) = std::fs::read_dir(settings.data_dir.join("pools")) else {
            return;
        };
        let mut agents = self.agents.lock().await;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((pool, n)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            if self.pools.get(pool) != Some(&ProvisionerKind::Local) {
                continue;
            }
            let Ok(cluster) = std::fs::read_to_string(entry.path().join(CLUSTER_FILE)) else {
                continue;
            };
            self.next
                .fetch_max(n + 1, std::sync::atomic::Ordering::Relaxed);
            match start_agent(settings, pool, &name, cluster.trim(), entry.path()) {
                Ok(a) => {
                    tracing::info!(agent = %name, pool, "local pool agent resumed");
                    agents.entry(pool.to_owned()).or_default().push(a);
                }
                Err(e) => tracing::warn!(agent = %name, error = %e, "resuming a local pool agent"),
            }
        }
    }

    /// Stops every local agent (server shutdown).
    pub async fn stop_all(&self) {
        let mut agents = self.agents.lock().await;
        for (_, list) in agents.drain() {
            for a in list {
                stop_agent(a).await;
            }
        }
    }

    async fn scale_local(&self, req: &ScaleRequest) -> Result<String, String> {
        let settings = self
            .local
            .as_ref()
            .ok_or_else(|| "no local settings".to_owned())?;
        let mut agents = self.agents.lock().await;
        let list = agents.entry(req.pool.clone()).or_default();
        if req.desired > req.current {
            let mut started = Vec::new();
            for _ in req.current..req.desired {
                let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = format!("{}-{n}", req.pool);
                let dir = settings.data_dir.join("pools").join(&name);
                datadir::prepare(&dir).map_err(|e| format!("{name}: {e:#}"))?;
                std::fs::write(dir.join(CLUSTER_FILE), &req.cluster)
                    .map_err(|e| format!("{name}: writing its cluster: {e}"))?;
                list.push(start_agent(settings, &req.pool, &name, &req.cluster, dir)?);
                started.push(name);
            }
            return Ok(format!("started local agents {}", started.join(", ")));
        }
        let mut stopped = Vec::new();
        for r in &req.remove {
            let Some(name) = r
                .attributes
                .iter()
                .find(|a| a.name == LOCAL_INSTANCE_ATTRIBUTE)
                .and_then(|a| a.value.clone())
            else {
                return Err(format!(
                    "container instance {} was not started by the local provisioner",
                    r.container_instance_id
                ));
            };
            if let Some(pos) = list.iter().position(|a| a.name == name) {
                stop_agent(list.swap_remove(pos)).await;
            }
            // Its checkpoint goes with it: the instance is deregistered next.
            let dir = settings.data_dir.join("pools").join(&name);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(agent = %name, error = %e, "removing a stopped local agent's data dir");
            }
            stopped.push(name);
        }
        Ok(format!("stopped local agents {}", stopped.join(", ")))
    }
}

/// The file in a local agent's data dir naming the cluster it joins.
const CLUSTER_FILE: &str = "pool-cluster";

fn start_agent(
    settings: &LocalSettings,
    pool: &str,
    name: &str,
    cluster: &str,
    dir: PathBuf,
) -> Result<LocalAgent, String> {
    let lock = DataDirLock::acquire(&dir, "agent").map_err(|e| format!("{name}: {e:#}"))?;
    let mut cfg = gantry_agent::AgentConfig::new(settings.endpoint.clone(), cluster, dir);
    cfg.attributes.push((
        gantry_domain::capacity::POOL_ATTRIBUTE.to_owned(),
        pool.to_owned(),
    ));
    cfg.attributes
        .push((LOCAL_INSTANCE_ATTRIBUTE.to_owned(), name.to_owned()));
    cfg.access_key_id = settings.access_key_id.clone();
    cfg.secret_access_key = settings.secret_access_key.clone();
    cfg.region = settings.region.clone();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let agent_name = name.to_owned();
    let handle = tokio::spawn(async move {
        let until = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = gantry_agent::run(cfg, until).await {
            tracing::error!(agent = %agent_name, error = %e, "local pool agent stopped");
        }
    });
    Ok(LocalAgent {
        name: name.to_owned(),
        stop,
        handle,
        _lock: lock,
    })
}

async fn stop_agent(a: LocalAgent) {
    let _ = a.stop.send(true);
    let mut handle = a.handle;
    if tokio::time::timeout(STOP_DEADLINE, &mut handle)
        .await
        .is_err()
    {
        tracing::warn!(agent = %a.name, "local pool agent did not stop in time; aborting it");
        handle.abort();
    }
}

async fn scale_exec(command: &str, req: &ScaleRequest) -> Result<String, String> {
    let remove_ec2: Vec<&str> = req
        .remove
        .iter()
        .map(|r| r.ec2_instance_id.as_str())
        .collect();
    let remove_ci: Vec<&str> = req
        .remove
        .iter()
        .map(|r| r.container_instance_id.as_str())
        .collect();
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg("gantry-provisioner")
        .arg(&req.pool)
        .arg(req.desired.to_string())
        .env("GANTRY_CLUSTER", &req.cluster)
        .env("GANTRY_REMOVE_INSTANCES", remove_ec2.join(" "))
        .env("GANTRY_REMOVE_CONTAINER_INSTANCES", remove_ci.join(" "))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the provisioner command: {e}"))?;
    let out = match tokio::time::timeout(EXEC_DEADLINE, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("running the provisioner command: {e}")),
        Err(_) => {
            return Err(format!(
                "the provisioner command did not finish within {}s",
                EXEC_DEADLINE.as_secs()
            ));
        }
    };
    let last_line = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.chars().take(500).collect::<String>())
            .unwrap_or_default()
    };
    if out.status.success() {
        Ok(last_line(&out.stdout))
    } else {
        Err(format!("{}: {}", out.status, last_line(&out.stderr)))
    }
}

/// How long a webhook may take to answer.
const WEBHOOK_DEADLINE: Duration = Duration::from_secs(60);

async fn scale_webhook(uri: &http::Uri, req: &ScaleRequest) -> Result<String, String> {
    use http_body_util::BodyExt as _;
    let body = serde_json::json!({
        "pool": req.pool,
        "desired": req.desired,
        "current": req.current,
        "cluster": req.cluster,
        "capacityProvider": req.provider,
        "removeInstances": req.remove.iter().map(|r| serde_json::json!({
            "ec2InstanceId": r.ec2_instance_id,
            "containerInstanceId": r.container_instance_id,
        })).collect::<Vec<_>>(),
    });
    let request = http::Request::post(uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "gantry-provisioner")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| format!("building the webhook request: {e}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("calling the webhook {uri}: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the webhook's answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(WEBHOOK_DEADLINE, exchange)
        .await
        .map_err(|_| {
            format!(
                "the webhook {uri} did not answer within {}s",
                WEBHOOK_DEADLINE.as_secs()
            )
        })??;
    let first_line = String::from_utf8_lossy(&bytes)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.chars().take(500).collect::<String>())
        .unwrap_or_default();
    if status.is_success() {
        Ok(if first_line.is_empty() {
            format!("webhook answered {status}")
        } else {
            first_line
        })
    } else {
        Err(format!("webhook answered {status}: {first_line}"))
    }
}

#[async_trait::async_trait]
impl PoolProvisioner for Provisioners {
    fn serves(&self, pool: &str) -> bool {
        self.pools.contains_key(pool)
    }

    async fn scale(&self, req: &ScaleRequest) -> Result<String, String> {
        match self.pools.get(&req.pool) {
            Some(ProvisionerKind::Local) => self.scale_local(req).await,
            Some(ProvisionerKind::Exec(cmd)) => scale_exec(cmd, req).await,
            Some(ProvisionerKind::Webhook(uri)) => scale_webhook(uri, req).await,
            None => Err(format!("no provisioner for pool {}", req.pool)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_and_exec_and_refuses_the_rest() {
        assert_eq!(
            parse("web=local").unwrap(),
            ("web".into(), ProvisionerKind::Local)
        );
        assert_eq!(
            parse("web=exec:/usr/local/bin/scale --fast").unwrap(),
            (
                "web".into(),
                ProvisionerKind::Exec("/usr/local/bin/scale --fast".into())
            )
        );
        assert_eq!(
            parse("web=webhook:http://127.0.0.1:9/scale").unwrap(),
            (
                "web".into(),
                ProvisionerKind::Webhook("http://127.0.0.1:9/scale".parse().unwrap())
            )
        );
        assert!(
            parse("web=webhook:https://x/")
                .unwrap_err()
                .to_string()
                .contains("https")
        );
        assert!(parse("web=webhook:not a url").is_err());
        assert!(parse("web=webhook:/relative").is_err());
        assert!(parse("web").is_err());
        assert!(parse("w b=local").is_err());
        assert!(parse("web=exec:").is_err());
        assert!(parse("web=cloud").is_err());
    }

    #[tokio::test]
    async fn exec_passes_pool_desired_count_and_removals() {
        let req = ScaleRequest {
            region: "us-east-1".into(),
            cluster: "c1".into(),
            provider: "p".into(),
            pool: "web".into(),
            current: 3,
            desired: 2,
            remove: vec![gantry_ecs::managed_scaling::RemovedInstance {
                container_instance_id: "ci1".into(),
                ec2_instance_id: "i-1".into(),
                attributes: vec![],
            }],
        };
        let out = scale_exec("printf 'pool=%s desired=%s cluster=%s remove=%s\\n'", &req).await;
        // printf's format consumes "$@" as pool and desired; the env goes through a second call.
        assert_eq!(out.unwrap(), "pool=web desired=2 cluster= remove=");
        let out = scale_exec(
            "f() { echo \"$1 $2 $GANTRY_CLUSTER $GANTRY_REMOVE_INSTANCES\"; }; f",
            &req,
        )
        .await;
        assert_eq!(out.unwrap(), "web 2 c1 i-1");
        let err = scale_exec("f() { echo nope >&2; exit 3; }; f", &req)
            .await
            .unwrap_err();
        assert!(err.contains("nope") && err.contains('3'), "{err}");
    }

    /// Serves one HTTP exchange on a free port: answers `status` and `body`, hands back the
    /// request it read.
    async fn one_shot_server(
        status: u16,
        body: &'static str,
    ) -> (String, tokio::sync::oneshot::Receiver<String>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Head, then as much body as Content-Length says.
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if rest.len() >= len || n == 0 {
                        break;
                    }
                }
            }
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        (format!("http://{addr}/scale"), rx)
    }

    fn request(desired: usize) -> ScaleRequest {
        ScaleRequest {
            region: "us-east-1".into(),
            cluster: "c1".into(),
            provider: "cp".into(),
            pool: "web".into(),
            current: 3,
            desired,
            remove: vec![gantry_ecs::managed_scaling::RemovedInstance {
                container_instance_id: "ci1".into(),
                ec2_instance_id: "i-1".into(),
                attributes: vec![],
            }],
        }
    }

    #[tokio::test]
    async fn webhook_posts_pool_and_desired_count_and_reports_the_answer() {
        let (url, seen) = one_shot_server(200, "asked the cloud for 2 instances\nmore").await;
        let out = scale_webhook(&url.parse().unwrap(), &request(2)).await;
        assert_eq!(out.unwrap(), "asked the cloud for 2 instances");
        let raw = seen.await.unwrap();
        assert!(raw.starts_with("POST /scale HTTP/1.1\r\n"), "{raw}");
        assert!(
            raw.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{raw}"
        );
        let (_, body) = raw.split_once("\r\n\r\n").unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["pool"], "web");
        assert_eq!(json["desired"], 2);
        assert_eq!(json["current"], 3);
        assert_eq!(json["cluster"], "c1");
        assert_eq!(json["removeInstances"][0]["ec2InstanceId"], "i-1");

        let (url, _) = one_shot_server(503, "quota exceeded").await;
        let err = scale_webhook(&url.parse().unwrap(), &request(5))
            .await
            .unwrap_err();
        assert!(
            err.contains("503") && err.contains("quota exceeded"),
            "{err}"
        );

        // Nothing listens: the failure names the URL.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url: http::Uri = format!("http://127.0.0.1:{port}/x").parse().unwrap();
        let err = scale_webhook(&url, &request(5)).await.unwrap_err();
        assert!(err.contains(&url.to_string()), "{err}");
    }
}
