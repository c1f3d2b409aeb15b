//! An in-process server: the front with ELBv2 plus the lb channel, on 127.0.0.1:0.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gantry_aws_proto::sigv4::CredentialProvider;
use gantry_elbv2::Elbv2Service;
use gantry_front::{Front, SystemClock};
use gantry_store::{MemoryStore, Store};

pub const ACCESS_KEY: &str = "AKIDGANTRYTEST000001";
pub const SECRET_KEY: &str = "gantry-test-secret-key-000000000000000001";
pub const REGION: &str = "us-east-1";

pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub endpoint: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    pub home: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut map = HashMap::new();
        map.insert(ACCESS_KEY.to_owned(), SECRET_KEY.to_owned());
        let creds: Arc<dyn CredentialProvider> = Arc::new(map);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let front = Arc::new(
            Front::new(creds.clone(), Arc::new(SystemClock), "000000000000")
                .with_query(Arc::new(Elbv2Service::new(store.clone()))),
        );
        let app = front.router().merge(gantry_elbv2::lb_router(
            store.clone(),
            creds,
            Arc::new(SystemClock),
            rx.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut stop = rx;
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .unwrap();
        });
        Server {
            addr,
            store,
            endpoint: format!("http://{addr}"),
            shutdown: tx,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Environment for the AWS CLI and boto3, isolated from the user's configuration.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        let home = self.home.path().display().to_string();
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_DEFAULT_REGION".into(), REGION.into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_CONFIG_FILE".into(), format!("{home}/config")),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                format!("{home}/credentials"),
            ),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("HOME".into(), home),
        ]
    }

    /// Runs `python3 args...` with the AWS environment; returns (success, stdout, stderr).
    pub async fn python(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new("python3");
        cmd.args(args).envs(self.aws_env()).kill_on_drop(true);
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
            .await
            .expect("python finished in time")
            .expect("python runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `aws elbv2 <args> --output json`, parsed.
    pub async fn aws(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-m", "awscli", "elbv2"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--output", "json"]);
        let (ok, out, err) = self.python(&all).await;
        assert!(ok, "aws elbv2 {args:?} failed: {err}");
        if out.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from aws: {e}: {out}"))
    }

    /// `aws elbv2 <args>` expected to fail; returns stderr.
    pub async fn aws_err(&self, args: &[&str]) -> String {
        let mut all = vec!["-m", "awscli", "elbv2"];
        all.extend_from_slice(args);
        let (ok, _, err) = self.python(&all).await;
        assert!(!ok, "aws elbv2 {args:?} should have failed");
        err
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
