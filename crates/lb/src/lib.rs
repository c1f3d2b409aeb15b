//! `gantry lb`: the load balancer data plane.
//!
//! It follows the control plane's configuration stream (`GET /lb/v1/config`, see
//! `gantry_elbv2::channel`), keeps the latest snapshot in an `ArcSwap`, and listens on
//! `bind:port` for each listener of every load balancer of its region:
//!
//! - HTTP listeners (application load balancers): HTTP/1.1 and HTTP/2 (cleartext) from clients
//!   (HTTP/1.x is parsed and relayed in place by the connection's task, module `fast`; a
//!   connection opening with the HTTP/2 preface is served by hyper), rules by priority (path-pattern, host-header, http-header, http-request-method,
//!   query-string, source-ip) then the default action; forward (one or weighted target groups,
//!   `AWSALBTG` group stickiness), fixed-response, redirect. Requests go to targets over pooled
//!   keep-alive HTTP/1.1 connections with `X-Forwarded-For/-Proto/-Port` and an
//!   `X-Amzn-Trace-Id`; WebSocket (and any `Upgrade`) is tunnelled. Load balancing per target
//!   group: `round_robin` or `least_outstanding_requests`; `lb_cookie` stickiness (`AWSALB`).
//!   Connections to targets are made before a request is handed over ([`upstream`], a
//!   small HTTP/1.1 client run by the task serving the client; wire format in [`h1`]), so a
//!   refused connection is retried once on another target whatever the body, and the target
//!   is avoided for 5 s. 503 when the group has no registered target, 502 when the target fails.
//! - TCP listeners (network load balancers): bytes are passed through to a target until the
//!   listener's `tcp.idle_timeout.seconds` (350 s by default) passes without one. UDP
//!   listeners forward datagrams per client flow ([`udp`]: the target picked for a flow's first
//!   datagram, replies from the listener's address, 120 s idle timeout); TCP_UDP listeners do
//!   both on one port.
//! - HTTPS (application) and TLS (network) listeners: TLS is terminated here with rustls
//!   ([`tls`]): the certificate is chosen by SNI among the listener's certificates (the default
//!   one when none matches), the security policy sets the protocol versions and cipher suites;
//!   then requests are proxied as for HTTP (over hyper, HTTP/1.1 or HTTP/2 by ALPN,
//!   `X-Forwarded-Proto: https`, and `X-Amzn-Tls-Version`/`X-Amzn-Tls-Cipher-Suite` when the
//!   load balancer enables them) or bytes as for TCP. Certificates and keys arrive on the
//!   configuration stream.
//!
//! HTTP and HTTPS listeners set their `routing.http.response.*` attributes' headers on every
//! response (the targets' and the load balancer's own).
//!
//! Active health checks per target ([`health`]) decide where traffic goes and are reported to
//! `POST /lb/v1/health` every 5 s and at once on a change. Deregistered targets drain: no new
//! requests, in-flight ones finish. Several `gantry lb` processes can serve the same load
//! balancers (each checks and reports on its own).
//!
//! Requests per target group, the targets' response times and upstream errors are counted in
//! [`metrics::LbMetrics`] (Prometheus; `gantry lb --metrics-listen` serves them) and, with the
//! answers made here and the network flows per load balancer, per window (a minute by
//! default), posted to `POST /lb/v1/metrics` ([`usage`]) for CloudWatch's
//! `AWS/ApplicationELB` and `AWS/NetworkELB` metrics.
//!
//! Must not depend on a database crate or Docker: configuration arrives over HTTP only.

pub mod balancer;
pub mod control;
mod fast;
pub mod h1;
pub mod health;
pub mod metrics;
mod pool;
pub mod proxy;
pub mod routing;
mod state;
pub mod tls;
mod udp;
pub mod upstream;
pub mod usage;

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

pub use control::ControlClient;
pub use proxy::{Http1Plan, Proxy};

use gantry_domain::lb::LbStreamMessage;

/// Failures of the data plane's control channel.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LbError {
    /// A setting is invalid (endpoint URL, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The control plane could not be reached or the stream broke.
    #[error("transport: {0}")]
    Transport(String),
    /// The control plane answered with an error (bad credentials, ...).
    #[error("rejected: {0}")]
    Rejected(String),
}

/// How `gantry lb` connects and where it listens.
#[derive(Debug, Clone)]
pub struct LbSettings {
    /// The control plane, `http://host:port`.
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Selects which region's load balancers this proxy serves (the SigV4 scope).
    pub region: String,
    /// Address the listeners bind (their ports come from the configuration).
    pub bind: IpAddr,
    /// Names this proxy in health reports; default `<hostname>-<random>`.
    pub proxy_id: Option<String>,
    /// Where requests are counted (served by `--metrics-listen`).
    pub metrics: std::sync::Arc<metrics::LbMetrics>,
    /// How often traffic is reported to the control plane (CloudWatch's `AWS/ApplicationELB`
    /// metrics; ELB publishes every minute).
    pub usage_interval: Duration,
    /// The availability zone this proxy serves in as a load balancer node (the metrics'
    /// `AvailabilityZone` dimension); none: the control plane uses each load balancer's first.
    pub availability_zone: Option<String>,
}

impl LbSettings {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            region: "us-east-1".into(),
            bind: IpAddr::from([127, 0, 0, 1]),
            proxy_id: None,
            metrics: Default::default(),
            usage_interval: Duration::from_secs(60),
            availability_zone: None,
        }
    }
}

/// Runs the data plane until `shutdown` resolves: follows the configuration (reconnecting with
/// backoff from 100 ms to 5 s; the last configuration keeps serving meanwhile) and reports
/// health. Fails only on invalid settings.
pub async fn run(settings: LbSettings, shutdown: impl Future<Output = ()>) -> Result<(), LbError> {
    let client = ControlClient::new(
        &settings.endpoint,
        &settings.region,
        &settings.access_key_id,
        &settings.secret_access_key,
    )?;
    let proxy_id = settings.proxy_id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "lb".into());
        format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    });
    let proxy = Proxy::with_metrics(settings.bind, proxy_id, settings.metrics.clone());
    tracing::info!(endpoint = %settings.endpoint, bind = %settings.bind, proxy = proxy.proxy_id(), "gantry lb starting");
    let follow = follow_config(client.clone(), proxy.clone());
    let usage = usage::report_forever(
        client.clone(),
        proxy.clone(),
        settings.metrics.usage(),
        settings.usage_interval,
        settings.availability_zone.clone(),
    );
    let report = report_health(client, proxy.clone());
    let retry_listeners = {
        let proxy = proxy.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                proxy.reconcile_listeners();
            }
        }
    };
    tokio::select! {
        _ = shutdown => {}
        _ = follow => {}
        _ = report => {}
        _ = usage => {}
        _ = retry_listeners => {}
    }
    proxy.close();
    tracing::info!("gantry lb stopped");
    Ok(())
}

/// Applies every snapshot of the stream; reconnects forever.
async fn follow_config(client: ControlClient, proxy: Proxy) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.open_config().await {
            Ok(mut stream) => {
                backoff = Duration::from_millis(100);
                // Heartbeats come every 5 s; three missed ones mean a dead connection.
                loop {
                    match tokio::time::timeout(Duration::from_secs(15), stream.next()).await {
                        Ok(Ok(Some(LbStreamMessage::Config { config }))) => {
                            tracing::debug!(revision = config.revision, "configuration received");
                            proxy.apply(&config);
                        }
                        Ok(Ok(Some(LbStreamMessage::Heartbeat { .. }))) => {}
                        Ok(Ok(None)) => {
                            tracing::warn!("configuration stream closed; reconnecting");
                            break;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "configuration stream failed; reconnecting");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!("configuration stream silent; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot open the configuration stream")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Posts the health view every 5 s, and within 100 ms of a change.
async fn report_health(client: ControlClient, proxy: Proxy) {
    let changed = proxy.health_changed();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = changed.notified() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if let Err(e) = client.report(&proxy.report()).await {
            tracing::debug!(error = %e, "health report failed");
        }
    }
}
