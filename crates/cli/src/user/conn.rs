//! Where user commands send their calls, and as whom: the standard AWS chain, as the AWS CLI
//! resolves it. Endpoint: `--endpoint-url`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, the
//! profile's `endpoint_url`. Credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
//! (`AWS_SESSION_TOKEN`), else the profile (`--profile`, `AWS_PROFILE`, `default`) of the shared
//! credentials file, then of the config file. Region: `--region`, `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1`.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use gantry_agent::client::{ApiClient, CallError, Service};
use serde_json::Value;

/// Connection flags shared by the user commands.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// The Gantry endpoint (default: AWS_ENDPOINT_URL or the profile's endpoint_url).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// The region to sign for (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// The profile of ~/.aws/credentials and ~/.aws/config to use (default: AWS_PROFILE).
    #[arg(long, global = true)]
    pub profile: Option<String>,
}

/// A resolved connection: endpoint, region and a signing client.
#[derive(Debug, Clone)]
pub struct Conn {
    pub endpoint: String,
    pub region: String,
    api: ApiClient,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The sections of an INI file (`[name]` → key → value), as the AWS shared files are written.
fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_owned());
            continue;
        }
        if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            out.entry(s.clone())
                .or_default()
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

fn home_file(var: &str, default: &str) -> Option<PathBuf> {
    if let Some(p) = env(var) {
        return Some(PathBuf::from(p));
    }
    env("HOME").map(|h| PathBuf::from(h).join(default))
}

/// A profile's settings: the credentials file's `[name]` over the config file's
/// `[profile name]` (`[default]` for the default profile).
fn profile_settings(profile: &str) -> HashMap<String, String> {
    let read = |p: Option<PathBuf>| {
        p.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| parse_ini(&t))
            .unwrap_or_default()
    };
    let config = read(home_file("AWS_CONFIG_FILE", ".aws/config"));
    let credentials = read(home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"));
    let config_name = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    let mut out = config.get(&config_name).cloned().unwrap_or_default();
    if let Some(c) = credentials.get(profile) {
        out.extend(c.clone());
    }
    out
}

/// The key pair (and session token) of the standard chain: the environment's keys unless a
/// profile is named explicitly, else the profile's (`profile`, `AWS_PROFILE`, `default`).
pub fn chain_credentials(profile: Option<&str>) -> Option<(String, String, Option<String>)> {
    if profile.is_none()
        && let (Some(a), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    {
        return Some((a, s, env("AWS_SESSION_TOKEN")));
    }
    let name = profile
        .map(str::to_owned)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let settings = profile_settings(&name);
    let get = |k: &str| settings.get(k).filter(|v| !v.is_empty()).cloned();
    Some((
        get("aws_access_key_id")?,
        get("aws_secret_access_key")?,
        get("aws_session_token"),
    ))
}

impl ConnArgs {
    /// Resolves the chain; fails naming what is missing.
    pub fn connect(&self) -> anyhow::Result<Conn> {
        let profile = self
            .profile
            .clone()
            .or_else(|| env("AWS_PROFILE"))
            .unwrap_or_else(|| "default".to_owned());
        let settings = profile_settings(&profile);
        let from_profile = |k: &str| settings.get(k).filter(|v| !v.is_empty()).cloned();
        let endpoint = self
            .endpoint_url
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_ECS"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| from_profile("endpoint_url"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no endpoint: set AWS_ENDPOINT_URL (see `gantry env`) or pass --endpoint-url"
                )
            })?;
        let region = self
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| from_profile("region"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let (access_key_id, secret, token) = chain_credentials(self.profile.as_deref())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (see `gantry env`) or configure profile {profile:?}"
                )
            })?;
        let mut api = ApiClient::new(&endpoint, &region, &access_key_id, &secret)
            .map_err(|e| anyhow::anyhow!(e))?;
        if let Some(t) = token {
            api = api.with_session_token(&t);
        }
        Ok(Conn {
            endpoint: api.endpoint(),
            region,
            api,
        })
    }
}

/// A failed call, as the user reads it.
fn explain(op: &str, e: CallError) -> anyhow::Error {
    match e {
        CallError::Aws { code, message, .. } => anyhow::anyhow!("{op}: {code}: {message}"),
        CallError::Transport(m) => anyhow::anyhow!("{op}: cannot reach the server: {m}"),
    }
}

impl Conn {
    /// An ECS operation.
    pub async fn ecs(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.api
            .call(Service::Ecs, op, &body)
            .await
            .map_err(|e| explain(op, e))
    }

    /// An ECR operation; the raw error for callers that handle some codes.
    pub async fn ecr(&self, op: &str, body: Value) -> Result<Value, CallError> {
        self.api.call(Service::Ecr, op, &body).await
    }

    /// A CloudWatch Logs operation.
    pub async fn logs(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.api
            .call(Service::Logs, op, &body)
            .await
            .map_err(|e| explain(op, e))
    }

    /// An ELBv2 action; the XML answer.
    pub async fn elbv2(&self, action: &str, params: &[(&str, &str)]) -> anyhow::Result<String> {
        self.api
            .call_query(Service::Elbv2, action, "2015-12-01", params)
            .await
            .map_err(|e| explain(action, e))
    }

    /// Every cluster ARN of the region.
    pub async fn cluster_arns(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = serde_json::json!({});
            if let Some(t) = &token {
                body["nextToken"] = t.clone().into();
            }
            let page = self.ecs("ListClusters", body).await?;
            out.extend(strings(&page["clusterArns"]));
            token = page["nextToken"].as_str().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The clusters to look at: `--cluster` or all of them.
    pub async fn clusters(&self, cluster: Option<&str>) -> anyhow::Result<Vec<String>> {
        match cluster {
            Some(c) => Ok(vec![c.to_owned()]),
            None => self.cluster_arns().await,
        }
    }

    /// Every page of an ECS list operation: the `key` arrays concatenated.
    pub async fn list_all(&self, op: &str, body: Value, key: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut body = body;
        loop {
            let page = self.ecs(op, body.clone()).await?;
            out.extend(strings(&page[key]));
            match page["nextToken"].as_str() {
                Some(t) => body["nextToken"] = t.into(),
                None => return Ok(out),
            }
        }
    }

    /// DescribeTasks of `arns` in `cluster`, 100 at a time.
    pub async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let page = self
                .ecs(
                    "DescribeTasks",
                    serde_json::json!({"cluster": cluster, "tasks": chunk}),
                )
                .await?;
            out.extend(page["tasks"].as_array().cloned().unwrap_or_default());
        }
        Ok(out)
    }

    /// DescribeServices of `names` in `cluster`, 10 at a time.
    pub async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        for chunk in names.chunks(10) {
            let page = self
                .ecs(
                    "DescribeServices",
                    serde_json::json!({"cluster": cluster, "services": chunk}),
                )
                .await?;
            out.extend(page["services"].as_array().cloned().unwrap_or_default());
        }
        Ok(out)
    }

    /// A plain unauthenticated GET of `path` on the endpoint: the status, or the failure.
    pub async fn probe(&self, path: &str) -> Result<u16, String> {
        let authority = self.api.authority();
        let mut stream = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::TcpStream::connect(&authority),
        )
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut buf = [0u8; 256];
            while !head.windows(2).any(|w| w == b"\r\n") {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no answer".to_owned()),
        }
        let line = String::from_utf8_lossy(&head);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| "not an HTTP answer".to_owned())
    }
}

/// The strings of a JSON array.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The last `/`-separated part of an ARN (a cluster's or a service's name, a task's id).
pub fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_and_keys() {
        let ini = parse_ini(
            "[default]\naws_access_key_id = AK\n# comment\n[profile dev]\nregion=eu-west-1\n",
        );
        assert_eq!(ini["default"]["aws_access_key_id"], "AK");
        assert_eq!(ini["profile dev"]["region"], "eu-west-1");
    }

    #[test]
    fn short_names_of_arns() {
        assert_eq!(short("arn:aws:ecs:us-east-1:0:cluster/web"), "web");
        assert_eq!(short("arn:aws:ecs:us-east-1:0:task/web/abc"), "abc");
        assert_eq!(short("web"), "web");
    }
}
