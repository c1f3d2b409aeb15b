//! The control plane ↔ `gantry lb` channel, SigV4-signed with the service name
//! `elasticloadbalancing` (the region of the signature selects the configuration):
//!
//! - `GET /lb/v1/config`: newline-delimited JSON [`LbStreamMessage`]s. A full [`LbConfig`]
//!   snapshot on connect and after every change of a load balancer, listener, rule, target group
//!   or target (changes within 20 ms are batched into one snapshot), and a heartbeat line every
//!   5 s (so proxies notice a dead connection and reconnect).
//! - `POST /lb/v1/health`: a JSON [`HealthReport`], a proxy's whole view of its active health
//!   checks. Stored per (target group, proxy) when it changed or every 10 s; `DescribeTargetHealth`
//!   combines the fresh ones (see [`crate::health`]).
//! - `POST /lb/v1/metrics`: a JSON [`UsageReport`], a proxy's traffic per window and target
//!   group, published as CloudWatch's load balancer metrics (see [`crate::usage`]) through the
//!   [`LbMetricsSink`] given with [`LbChannel::with_metrics`] (refused without one). Only the
//!   identities the channel accepts may publish: `AWS/` namespaces stay closed to
//!   `PutMetricData`.
//!
//! [`lb_router`] also runs [`sweep_expired`](crate::sweep_expired) every 2 s until shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use gantry_aws_proto::sigv4::{self, CredentialProvider, VerifiedRequest};
use gantry_aws_proto::{AwsError, new_request_id};
use gantry_domain::EpochMillis;
use gantry_domain::lb::{
    HealthReport, LbConfig, LbStreamMessage, LoadBalancer, TargetGroup, TargetGroupConfig,
    UsageReport,
};
use gantry_front::Clock;
use gantry_store::{Store, StoreExt, Txn, WatchError, encode};
use tokio::sync::{mpsc, watch};

use crate::health::{HealthRecord, ListenerStatusRecord};
use crate::keys::{self, ElbArn};
use crate::targets::live_targets;
use crate::usage::{LbMetricsSink, lb_samples_for, node_zone, samples_for};
use crate::{Elbv2Error, XMLNS};

/// The signing name proxies must use.
pub const SIGNING_NAME: &str = "elasticloadbalancing";

/// Largest accepted health report.
const HEALTH_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Most windows in one traffic report.
const MAX_WINDOWS: usize = 1000;

/// Serves the channel; see the module docs.
pub struct LbChannel {
    store: Arc<dyn Store>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
    heartbeat: Duration,
    metrics: Option<Arc<dyn LbMetricsSink>>,
    /// ACM, for the certificates and keys of HTTPS and TLS listeners.
    certificates: Option<Arc<dyn crate::Certificates>>,
}

impl std::fmt::Debug for LbChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbChannel")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

/// The channel's routes (`/lb/v1/config`, `/lb/v1/health`), to merge into the server's router.
/// Must be called within a tokio runtime (it starts the sweeper of expired targets).
pub fn lb_router(
    store: Arc<dyn Store>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Router {
    Arc::new(LbChannel::new(store, creds, clock, shutdown)).router()
}

impl LbChannel {
    pub fn new(
        store: Arc<dyn Store>,
        creds: Arc<dyn CredentialProvider>,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            creds,
            clock,
            shutdown,
            heartbeat: Duration::from_secs(5),
            metrics: None,
            certificates: None,
        }
    }

    /// Where proxies' traffic reports are published.
    pub fn with_metrics(mut self, sink: Arc<dyn LbMetricsSink>) -> Self {
        self.metrics = Some(sink);
        self
    }

    /// Delivers the certificates (with their private keys) of HTTPS and TLS listeners to the
    /// proxies in each snapshot, read from `certificates`.
    pub fn with_certificates(mut self, certificates: Arc<dyn crate::Certificates>) -> Self {
        self.certificates = Some(certificates);
        self
    }

    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// The routes; also starts the sweeper when a tokio runtime is running.
    pub fn router(self: Arc<Self>) -> Router {
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(self.clone().sweep_forever());
        }
        Router::new()
            .route("/lb/v1/config", get(config_stream))
            .route("/lb/v1/health", post(health_report))
            .route("/lb/v1/metrics", post(usage_report))
            .with_state(self)
    }

    async fn sweep_forever(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stopped(&mut shutdown) => return,
            }
            match crate::sweep_expired(self.store.as_ref(), self.clock.now_millis()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "expired elbv2 targets and reports removed"),
                Err(e) => tracing::warn!(error = %e, "elbv2 sweep failed"),
            }
        }
    }

    fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<VerifiedRequest, AwsError> {
        let v = sigv4::verify(parts, body, self.creds.as_ref(), self.clock.now())
            .map_err(|e| e.to_query_error())?;
        if v.service != SIGNING_NAME {
            return Err(AwsError::client(
                "InvalidClientTokenId",
                format!(
                    "The channel is signed for '{SIGNING_NAME}', not '{}'",
                    v.service
                ),
            )
            .with_status(http::StatusCode::FORBIDDEN));
        }
        Ok(v)
    }

    /// Adds the material of every certificate a TLS listener of `config` names. A certificate
    /// that cannot be read is left out (the proxy then serves the listener's other ones, or
    /// refuses handshakes) and logged by ARN only.
    async fn attach_certificates(&self, config: &mut LbConfig) {
        let Some(acm) = &self.certificates else {
            return;
        };
        let mut arns: Vec<&str> = config
            .load_balancers
            .iter()
            .flat_map(|lb| lb.listeners.iter())
            .flat_map(|l| l.certificates.iter())
            .map(|c| c.certificate_arn.as_str())
            .collect();
        arns.sort_unstable();
        arns.dedup();
        let mut out = Vec::new();
        for arn in arns {
            match acm.material(&config.region, arn).await {
                Ok(Some(m)) => out.push(m),
                Ok(None) => {
                    tracing::warn!(certificate = %arn, "a listener names a certificate that no longer exists")
                }
                Err(e) => {
                    tracing::warn!(certificate = %arn, error = %e, "cannot read a listener certificate")
                }
            }
        }
        config.certificates = out;
    }

    async fn pump(self: Arc<Self>, region: String, tx: mpsc::Sender<Bytes>) {
        // Subscribe before the first snapshot so that no change falls in between.
        let mut changes = self.store.watch(&keys::root(&region));
        let mut shutdown = self.shutdown.clone();
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.tick().await;
        let mut dirty = true;
        loop {
            if dirty {
                dirty = false;
                let mut snapshot = match build_config(
                    self.store.as_ref(),
                    &region,
                    self.clock.now_millis(),
                )
                .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot build the load balancer configuration");
                        return;
                    }
                };
                self.attach_certificates(&mut snapshot).await;
                let msg = LbStreamMessage::Config {
                    config: Box::new(snapshot),
                };
                if tx.send(line(&msg)).await.is_err() {
                    return;
                }
                tick.reset();
            }
            tokio::select! {
                _ = stopped(&mut shutdown) => return,
                _ = tick.tick() => {
                    let msg = LbStreamMessage::Heartbeat { interval_seconds: self.heartbeat.as_secs().max(1) };
                    if tx.send(line(&msg)).await.is_err() {
                        return;
                    }
                }
                ev = changes.next() => match ev {
                    Ok(ev) if keys::is_config_key(&ev.key) => {
                        // Batch the changes of the next 20 ms into one snapshot.
                        let batch = tokio::time::sleep(Duration::from_millis(20));
                        tokio::pin!(batch);
                        loop {
                            tokio::select! {
                                _ = &mut batch => break,
                                more = changes.next() => if let Err(WatchError::Closed) = more { return },
                            }
                        }
                        dirty = true;
                    }
                    Ok(_) => {}
                    Err(WatchError::Lagged(_)) => {
                        changes = self.store.watch(&keys::root(&region));
                        dirty = true;
                    }
                    Err(WatchError::Closed) => return,
                },
            }
        }
    }
}

/// Resolves once shutdown is signalled (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn line(msg: &LbStreamMessage) -> Bytes {
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// The whole configuration of `region` at `now`: every load balancer (with listeners and rules),
/// every target group with its live targets (draining ones included).
pub async fn build_config(
    store: &dyn Store,
    region: &str,
    now: EpochMillis,
) -> Result<LbConfig, Elbv2Error> {
    let revision = store.revision().await?;
    let load_balancers: Vec<LoadBalancer> = crate::all_load_balancers(store, region).await?;
    let mut target_groups = Vec::new();
    for tg in store
        .scan_all_typed::<TargetGroup>(&keys::target_groups(region))
        .await?
    {
        let targets = live_targets(store, region, &tg.value.name, now).await?;
        target_groups.push(TargetGroupConfig {
            target_group: tg.value,
            targets,
        });
    }
    Ok(LbConfig {
        region: region.to_owned(),
        revision,
        generated_at: now,
        load_balancers,
        target_groups,
        certificates: Vec::new(),
    })
}

async fn config_stream(State(ch): State<Arc<LbChannel>>, req: Request) -> Response {
    let request_id = new_request_id();
    let (parts, _) = req.into_parts();
    let verified = match ch.verify(&parts, b"") {
        Ok(v) => v,
        Err(e) => return e.query_response(&request_id, XMLNS),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tracing::info!(region = %verified.region, "load balancer proxy connected");
    tokio::spawn(ch.clone().pump(verified.region, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

async fn health_report(State(ch): State<Arc<LbChannel>>, req: Request) -> Response {
    let request_id = new_request_id();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, HEALTH_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return AwsError::client("ValidationError", "health report too large")
                .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
                .query_response(&request_id, XMLNS);
        }
    };
    let verified = match ch.verify(&parts, &body) {
        Ok(v) => v,
        Err(e) => return e.query_response(&request_id, XMLNS),
    };
    let report: HealthReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return AwsError::client("ValidationError", format!("invalid health report: {e}"))
                .query_response(&request_id, XMLNS);
        }
    };
    match store_report(
        ch.store.as_ref(),
        &verified.region,
        report,
        ch.clock.now_millis(),
    )
    .await
    {
        Ok(()) => {
            let mut r = Response::new(Body::from("{}"));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => AwsError::from(e).query_response(&request_id, XMLNS),
    }
}

async fn usage_report(State(ch): State<Arc<LbChannel>>, req: Request) -> Response {
    let request_id = new_request_id();
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, HEALTH_BODY_LIMIT).await else {
        return AwsError::client("ValidationError", "metrics report too large")
            .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
            .query_response(&request_id, XMLNS);
    };
    let verified = match ch.verify(&parts, &body) {
        Ok(v) => v,
        Err(e) => return e.query_response(&request_id, XMLNS),
    };
    let Some(sink) = ch.metrics.clone() else {
        return AwsError::client(
            "ValidationError",
            "This server does not take load balancer metrics.",
        )
        .query_response(&request_id, XMLNS);
    };
    let report: UsageReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return AwsError::client("ValidationError", format!("invalid metrics report: {e}"))
                .query_response(&request_id, XMLNS);
        }
    };
    if report.windows.len() > MAX_WINDOWS || report.load_balancers.len() > MAX_WINDOWS {
        return AwsError::client(
            "ValidationError",
            format!("a metrics report holds at most {MAX_WINDOWS} windows"),
        )
        .query_response(&request_id, XMLNS);
    }
    let now_ms = ch.clock.now_millis();
    let now_s = (now_ms / 1000) as i64;
    let lbs = match crate::all_load_balancers(ch.store.as_ref(), &verified.region).await {
        Ok(l) => l,
        Err(e) => return AwsError::from(e).query_response(&request_id, XMLNS),
    };
    let zone = report.availability_zone.as_deref();
    let mut samples = Vec::new();
    for w in &report.windows {
        // CloudWatch takes data up to two weeks old and two hours ahead.
        if w.start < now_s - 14 * 86_400 || w.start > now_s + 2 * 3600 {
            continue;
        }
        let using = crate::lbs_using(&lbs, &w.target_group_arn);
        let using: Vec<(&LoadBalancer, Option<&str>)> = lbs
            .iter()
            .filter(|l| using.contains(&l.arn))
            .map(|l| (l, node_zone(l, zone)))
            .collect();
        samples.extend(samples_for(w, &using));
    }
    for w in &report.load_balancers {
        if w.start < now_s - 14 * 86_400 || w.start > now_s + 2 * 3600 {
            continue;
        }
        if let Some(lb) = lbs.iter().find(|l| l.arn == w.load_balancer_arn) {
            samples.extend(lb_samples_for(w, lb, node_zone(lb, zone)));
        }
    }
    if !samples.is_empty()
        && let Err(e) = sink.publish(&verified.region, samples, now_ms).await
    {
        return e.query_response(&request_id, XMLNS);
    }
    let mut r = Response::new(Body::from("{}"));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// How often an unchanged report is written again (keeps it fresh within the TTL).
const REFRESH_MS: u64 = 10_000;

/// Stores a proxy's report: one record per target group, rewritten when it changed or every
/// [`REFRESH_MS`].
pub async fn store_report(
    store: &dyn Store,
    region: &str,
    report: HealthReport,
    now: EpochMillis,
) -> Result<(), Elbv2Error> {
    let proxy = report.proxy_id.as_str();
    if proxy.is_empty() || proxy.len() > 128 || proxy.contains('/') {
        return Err(Elbv2Error::validation(format!(
            "invalid proxy id '{proxy}'"
        )));
    }
    let mut txn = Txn::new();
    let status_key = keys::listener_status(region, proxy);
    let status = store.get_typed::<ListenerStatusRecord>(&status_key).await?;
    if report.listener_failures.is_empty() {
        if status.is_some() {
            txn = txn.delete(&status_key);
        }
    } else if status.as_ref().is_none_or(|c| {
        c.value.failures != report.listener_failures || c.value.reported_at + REFRESH_MS <= now
    }) {
        let record = ListenerStatusRecord {
            proxy_id: proxy.to_owned(),
            reported_at: now,
            failures: report.listener_failures,
        };
        txn = txn.put(&status_key, encode(&status_key, &record)?);
    }
    for g in report.target_groups {
        let Some(ElbArn::TargetGroup { name, .. }) = keys::parse_arn(&g.target_group_arn, region)
        else {
            continue;
        };
        let key = keys::health(region, &name, proxy);
        let current = store.get_typed::<HealthRecord>(&key).await?;
        if let Some(c) = &current
            && c.value.targets == g.targets
            && c.value.target_group_arn == g.target_group_arn
            && c.value.reported_at + REFRESH_MS > now
        {
            continue;
        }
        let record = HealthRecord {
            proxy_id: proxy.to_owned(),
            target_group_arn: g.target_group_arn,
            reported_at: now,
            targets: g.targets,
        };
        txn = txn.put(&key, encode(&key, &record)?);
    }
    if !txn.is_empty() {
        store.commit(txn).await?;
    }
    Ok(())
}
