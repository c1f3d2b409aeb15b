//! The task credentials endpoint: `GET /v2/credentials/<id>` (and the v1 form
//! `/v1/credentials?id=<id>`) on `169.254.170.2`, answering the session credentials of a task's
//! role to that task's containers only.
//!
//! No iptables rule is needed: the agent puts `169.254.170.2/32` on a bridge it owns
//! ([`CREDENTIALS_BRIDGE`]), so containers on any bridge reach the address through their gateway
//! and the server sees their own source address. A request is answered only when its source
//! address is one of the task's containers' (for awsvpc tasks, its pause container's); a
//! host-network task's containers come from the host itself. Everything else, an unknown id
//! included, gets the same `InvalidIdInRequest` answer.
//!
//! Port 80 is the SDKs' default (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`); a second agent on
//! the same host finds it taken and serves on another port of the same address, which its tasks
//! get as `AWS_CONTAINER_CREDENTIALS_FULL_URI` (SDKs accept `169.254.170.2` at any port).
//!
//! Credentials live in memory only, are replaced when the agent refreshes them and are
//! forgotten when the task stops; they are never logged or checkpointed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gantry_domain::secrets::TaskRoleCredentials;
use serde_json::json;

use crate::runtime::ContainerRuntime;

/// The address SDKs fetch `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` from.
pub const CREDENTIALS_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);

/// The Linux bridge that carries [`CREDENTIALS_ADDRESS`] on this host (shared by the agents of
/// one host; created by the first).
pub const CREDENTIALS_BRIDGE: &str = "gantry-creds";

/// One task's credentials as the endpoint serves them.
#[derive(Clone)]
struct Entry {
    task_arn: String,
    credentials: Option<TaskRoleCredentials>,
    /// Docker ids of the containers whose addresses may ask (the pause container for awsvpc).
    runtime_ids: Vec<String>,
    /// Their addresses, as last inspected.
    addresses: Vec<IpAddr>,
    /// Host-network task: its containers ask from the host's own addresses.
    host_network: bool,
}

/// Credentials by id; shared between task actors and the HTTP server.
#[derive(Clone, Default)]
pub struct CredentialsRegistry {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

impl std::fmt::Debug for CredentialsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsRegistry")
            .finish_non_exhaustive()
    }
}

impl CredentialsRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (or replaces, on refresh) the credentials of id `id`, owned by task `task_arn`.
    pub fn set_credentials(&self, id: &str, task_arn: &str, credentials: TaskRoleCredentials) {
        let mut inner = self.lock();
        let e = inner.entry(id.to_owned()).or_insert_with(|| Entry {
            task_arn: task_arn.to_owned(),
            credentials: None,
            runtime_ids: Vec::new(),
            addresses: Vec::new(),
            host_network: false,
        });
        e.credentials = Some(credentials);
    }

    /// The containers whose addresses may use id `id`.
    pub fn set_containers(&self, id: &str, runtime_ids: Vec<String>, host_network: bool) {
        if let Some(e) = self.lock().get_mut(id) {
            e.runtime_ids = runtime_ids;
            e.host_network = host_network;
        }
    }

    /// The current credentials of task `task_arn`'s role, if it has one (for calls the agent
    /// makes on the task's behalf).
    pub fn of_task(&self, task_arn: &str) -> Option<TaskRoleCredentials> {
        self.lock()
            .values()
            .find(|e| e.task_arn == task_arn && e.credentials.is_some())
            .and_then(|e| e.credentials.clone())
    }

    /// Forgets every id of task `task_arn`.
    pub fn forget_task(&self, task_arn: &str) {
        self.lock().retain(|_, e| e.task_arn != task_arn);
    }

    /// The credentials of `id` if `peer` may have them, re-inspecting the task's containers when
    /// `peer` is not one of their known addresses.
    async fn answer(
        &self,
        runtime: &dyn ContainerRuntime,
        id: &str,
        peer: IpAddr,
    ) -> Option<TaskRoleCredentials> {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        let entry = self.lock().get(id).cloned()?;
        let credentials = entry.credentials.clone()?;
        if entry.addresses.contains(&peer) {
            return Some(credentials);
        }
        if entry.host_network && (peer == IpAddr::V4(CREDENTIALS_ADDRESS) || peer.is_loopback()) {
            return Some(credentials);
        }
        let mut addresses = Vec::new();
        for rid in &entry.runtime_ids {
            if let Ok(Some(s)) = runtime.inspect(rid).await {
                addresses.extend(
                    s.networks
                        .iter()
                        .filter_map(|(_, ip)| ip.parse::<IpAddr>().ok()),
                );
            }
        }
        let allowed = addresses.contains(&peer);
        if let Some(e) = self.lock().get_mut(id) {
            e.addresses = addresses;
        }
        allowed.then_some(credentials)
    }
}

#[derive(Clone)]
struct AppState {
    registry: CredentialsRegistry,
    runtime: Arc<dyn ContainerRuntime>,
}

/// The ECS agent's answer for an id it does not serve to this caller.
fn invalid_id(version: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "code": "InvalidIdInRequest",
            "message": format!("CredentialsV{version}Request: Credentials not found"),
            "HTTPErrorCode": 400,
        })),
    )
        .into_response()
}

fn body(c: &TaskRoleCredentials) -> Response {
    let expiration = i64::try_from(c.expiration / 1000)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Json(json!({
        "RoleArn": c.role_arn,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "Token": c.session_token,
        "Expiration": expiration,
    }))
    .into_response()
}

async fn v2(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Response {
    match s.registry.answer(s.runtime.as_ref(), &id, peer.ip()).await {
        Some(c) => body(&c),
        None => invalid_id("2"),
    }
}

async fn v1(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(id) = q.get("id").filter(|i| !i.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "code": "NoIdInRequest",
                "message": "CredentialsV1Request: No ID in the request",
                "HTTPErrorCode": 400,
            })),
        )
            .into_response();
    };
    match s.registry.answer(s.runtime.as_ref(), id, peer.ip()).await {
        Some(c) => body(&c),
        None => invalid_id("1"),
    }
}

/// The credentials routes.
pub fn router(registry: CredentialsRegistry, runtime: Arc<dyn ContainerRuntime>) -> Router {
    Router::new()
        .route("/v2/credentials/{id}", get(v2))
        .route("/v1/credentials", get(v1))
        .with_state(AppState { registry, runtime })
}

/// Why the endpoint cannot be served on this host.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the task credentials endpoint on {CREDENTIALS_ADDRESS}: {0}")]
pub struct EndpointUnavailable(pub String);

/// Listens on [`CREDENTIALS_ADDRESS`]: on `previous` (the port of the last run, which adopted
/// containers know) when given and free, else port 80 when free, else `fallback` (0: any).
/// Adds the address to [`CREDENTIALS_BRIDGE`] first when no interface of this host has it.
pub async fn listen(
    previous: Option<u16>,
    fallback: u16,
) -> Result<tokio::net::TcpListener, EndpointUnavailable> {
    let bind = |port: u16| async move {
        tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(CREDENTIALS_ADDRESS), port)).await
    };
    let first = previous.filter(|p| *p != 0).unwrap_or(80);
    match bind(first).await {
        Ok(l) => return Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            add_address().await?;
        }
        Err(_) => {}
    }
    if let Ok(l) = bind(first).await {
        return Ok(l);
    }
    if let Ok(l) = bind(80).await {
        return Ok(l);
    }
    match bind(fallback).await {
        Ok(l) => Ok(l),
        Err(_) if fallback != 0 => bind(0)
            .await
            .map_err(|e| EndpointUnavailable(e.to_string())),
        Err(e) => Err(EndpointUnavailable(e.to_string())),
    }
}

/// `ip link add gantry-creds type bridge; ip link set gantry-creds up; ip addr add
/// 169.254.170.2/32 dev gantry-creds`, tolerating what another agent already did.
async fn add_address() -> Result<(), EndpointUnavailable> {
    let address = format!("{CREDENTIALS_ADDRESS}/32");
    let steps: [&[&str]; 3] = [
        &["link", "add", CREDENTIALS_BRIDGE, "type", "bridge"],
        &["link", "set", CREDENTIALS_BRIDGE, "up"],
        &["addr", "add", &address, "dev", CREDENTIALS_BRIDGE],
    ];
    for args in steps {
        let out = tokio::process::Command::new("ip")
            .args(args)
            .output()
            .await
            .map_err(|e| EndpointUnavailable(format!("cannot run ip: {e}")))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("File exists") {
            return Err(EndpointUnavailable(format!(
                "ip {}: {}",
                args.join(" "),
                stderr.trim()
            )));
        }
    }
    tracing::info!(bridge = CREDENTIALS_BRIDGE, address = %CREDENTIALS_ADDRESS, "task credentials address added");
    Ok(())
}

/// The environment variable and value that point a container at id `id` on an endpoint
/// listening on `port`.
pub fn container_variable(port: u16, id: &str) -> (&'static str, String) {
    if port == 80 {
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            format!("/v2/credentials/{id}"),
        )
    } else {
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{CREDENTIALS_ADDRESS}:{port}/v2/credentials/{id}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_80_gets_the_relative_uri_and_others_the_full_one() {
        assert_eq!(
            container_variable(80, "abc"),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc".to_owned()
            )
        );
        assert_eq!(
            container_variable(5123, "abc"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.2:5123/v2/credentials/abc".to_owned()
            )
        );
    }

    #[test]
    fn credentials_debug_shows_no_secret() {
        let c = TaskRoleCredentials {
            role_arn: "arn:aws:iam::1:role/r".into(),
            access_key_id: "ASIAKEY".into(),
            secret_access_key: "SECRETVALUE".into(),
            session_token: "TOKENVALUE".into(),
            expiration: 1,
        };
        let d = format!("{c:?}");
        assert!(!d.contains("SECRETVALUE") && !d.contains("TOKENVALUE") && !d.contains("ASIAKEY"));
    }
}
