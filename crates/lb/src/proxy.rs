//! The data plane: listeners opened and closed as configuration changes, HTTP/1.1 and HTTP/2
//! reverse proxying with rules, weighted forwarding, stickiness, WebSocket upgrades and retries,
//! TCP pass-through and UDP flows ([`crate::udp`]).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use gantry_domain::lb::{
    Action, HealthReport, LbConfig, ListenerFailure, LoadBalancerType, Target,
    TargetGroupHealthReport, TargetHealthObservation, TargetHealthState,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::balancer::{Group, TargetRt, now_ms};
use crate::fast;
use crate::h1::{self, RequestFraming};
use crate::health;
use crate::metrics::LbMetrics;
use crate::routing::{Headers, RequestView, RouteTable, redirect_location};
use crate::state::{
    Inner, ListenerPlan, MAX_ATTEMPTS, OpenListener, Protocol, ResponseHeaders, Routes,
    choose_group, cookie, error_text, idle_timeout, tcp_idle_timeout, tls_headers, trace_id_bytes,
};
use crate::udp;
use crate::upstream::{self, RequestBody, ResponseBody, SendError};
use crate::usage::{Counted, FlowGuard, FlowProtocol};

/// The outcome of [`Proxy::plan_http1`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http1Plan {
    /// The head is not complete yet.
    Partial,
    /// Refused (4xx), the connection closes.
    Refused,
    /// Answered by the load balancer (fixed response, redirect, 503).
    Answered,
    /// Forwarded to a target.
    Forward,
}

/// A response to a client: one made here, or a target's.
#[derive(Debug)]
pub enum ProxyBody {
    Full(Option<Bytes>),
    Upstream(ResponseBody),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => {
                std::task::Poll::Ready(b.take().map(|b| Ok(hyper::body::Frame::data(b))))
            }
            ProxyBody::Upstream(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            ProxyBody::Full(b) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Upstream(b) => b.size_hint(),
        }
    }
}

/// Request bodies of a known size up to this are read before the request goes out (with the
/// head, in one write, and again on a retry); larger or unknown ones are streamed.
const MAX_BUFFERED_BODY: u64 = 64 * 1024;

/// The proxy: feed it [`LbConfig`]s with [`Proxy::apply`].
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

fn full(b: impl Into<Bytes>) -> ProxyBody {
    let b = b.into();
    ProxyBody::Full((!b.is_empty()).then_some(b))
}

fn error_page(status: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(full(error_text(status)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static(SERVER_VALUE));
    r
}

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in listed {
            h.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// A new `X-Amzn-Trace-Id`: `Root=1-<8 hex digits of epoch seconds>-<24 random hex digits>`.
fn trace_id() -> HeaderValue {
    HeaderValue::from_bytes(&trace_id_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("Root=1-0-0"))
}

/// The targets of an `alb` target group, pointed at this proxy's own listeners: a target is an
/// application load balancer (its ARN) and the port of one of its listeners, which this proxy
/// serves on its bind address (loopback when it binds every address).
fn alb_targets(targets: &[Target], bind: IpAddr) -> Vec<Target> {
    let host = match bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        a => a,
    };
    targets
        .iter()
        .map(|t| Target {
            address: Some(host.to_string()),
            ..t.clone()
        })
        .collect()
}

impl Proxy {
    /// A proxy that opens listeners on `bind` (e.g. 127.0.0.1) with the ports of the
    /// configuration; `proxy_id` names it in health reports.
    pub fn new(bind: IpAddr, proxy_id: impl Into<String>) -> Self {
        Self::with_metrics(bind, proxy_id, Arc::default())
    }

    /// [`Proxy::new`] counting requests into `metrics`.
    pub fn with_metrics(
        bind: IpAddr,
        proxy_id: impl Into<String>,
        metrics: Arc<LbMetrics>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                bind,
                proxy_id: proxy_id.into(),
                routes: ArcSwap::from_pointee(Routes::default()),
                listeners: Mutex::new(HashMap::new()),
                checker: health::checker_client(),
                health_changed: Arc::new(Notify::new()),
                apply_lock: Mutex::new(()),
                bind_failures: Mutex::new(Default::default()),
                metrics,
            }),
        }
    }

    pub fn proxy_id(&self) -> &str {
        &self.inner.proxy_id
    }

    /// Notified whenever a target's health changes.
    pub fn health_changed(&self) -> Arc<Notify> {
        self.inner.health_changed.clone()
    }

    /// The ports currently listening.
    pub fn listening_ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self.inner.listeners.lock().keys().copied().collect();
        p.sort_unstable();
        p
    }

    /// Applies a configuration snapshot: routes switch atomically, target groups keep the
    /// health and load of targets that stay, listeners open and close. Must run inside a tokio
    /// runtime.
    pub fn apply(&self, cfg: &LbConfig) {
        let _guard = self.inner.apply_lock.lock();
        let old = self.inner.routes.load_full();
        let mut by_port = HashMap::new();
        let mut used: HashSet<&str> = HashSet::new();
        for lb in &cfg.load_balancers {
            let idle_timeout = idle_timeout(&lb.attributes);
            let lb_usage = self.inner.metrics.usage().load_balancer(&lb.arn);
            for l in &lb.listeners {
                let protocol = match (lb.lb_type, l.protocol.as_str()) {
                    (LoadBalancerType::Application, "HTTP") => Protocol::Http,
                    (LoadBalancerType::Network, "TCP") => Protocol::Tcp,
                    (LoadBalancerType::Application, "HTTPS") => Protocol::Https,
                    (LoadBalancerType::Network, "TLS") => Protocol::Tls,
                    (LoadBalancerType::Network, "UDP") => Protocol::Udp,
                    (LoadBalancerType::Network, "TCP_UDP") => Protocol::TcpUdp,
                    _ => continue,
                };
                let tls = match protocol {
                    Protocol::Https | Protocol::Tls => {
                        match crate::tls::server_config(l, &cfg.certificates) {
                            Ok(c) => Some(c),
                            Err(e) => {
                                tracing::warn!(port = l.port, listener = %l.arn, error = %e, "TLS listener not served");
                                continue;
                            }
                        }
                    }
                    Protocol::Http | Protocol::Tcp | Protocol::Udp | Protocol::TcpUdp => None,
                };
                for a in l
                    .default_actions
                    .iter()
                    .chain(l.rules.iter().flat_map(|r| r.actions.iter()))
                {
                    used.extend(a.target_group_arns());
                }
                by_port.insert(
                    l.port,
                    Arc::new(ListenerPlan {
                        protocol,
                        table: RouteTable::new(l),
                        idle_timeout,
                        tls,
                        lb: lb_usage.clone(),
                        tcp_idle_timeout: tcp_idle_timeout(&l.attributes),
                        response_headers: Arc::new(ResponseHeaders::from_attributes(&l.attributes)),
                        tls_headers: if protocol == Protocol::Https {
                            tls_headers(&lb.attributes, &l.attributes)
                        } else {
                            None
                        },
                    }),
                );
            }
        }
        let mut groups = HashMap::new();
        for g in &cfg.target_groups {
            let tg = &g.target_group;
            if !used.contains(tg.arn.as_str()) {
                continue;
            }
            let group = old.groups.get(&tg.arn).cloned().unwrap_or_else(|| {
                Arc::new(Group::with_metrics(tg, self.inner.metrics.group(&tg.arn)))
            });
            let (added, removed) = if tg.target_type == "alb" {
                group.update(tg, &alb_targets(&g.targets, self.inner.bind))
            } else {
                group.update(tg, &g.targets)
            };
            for t in removed {
                t.stop_checker();
            }
            for t in added {
                let task = tokio::spawn(health::run_checks(
                    group.clone(),
                    t.clone(),
                    self.inner.checker.clone(),
                    self.inner.health_changed.clone(),
                ));
                *t.checker.lock() = Some(task.abort_handle());
            }
            groups.insert(tg.arn.clone(), group);
        }
        for (arn, g) in &old.groups {
            if !groups.contains_key(arn) {
                self.inner.metrics.forget(arn);
                for t in g.targets.load().iter() {
                    t.stop_checker();
                }
            }
        }
        self.inner
            .routes
            .store(Arc::new(Routes { by_port, groups }));
        self.reconcile_listeners();
    }

    /// Opens missing listeners and closes removed ones; ports that could not be bound are tried
    /// again on the next call.
    pub fn reconcile_listeners(&self) {
        let routes = self.inner.routes.load_full();
        let mut open = self.inner.listeners.lock();
        open.retain(|port, l| {
            let keep = routes
                .by_port
                .get(port)
                .is_some_and(|p| p.protocol == l.protocol);
            if !keep {
                tracing::info!(port, "closing listener");
                l.task.abort();
            }
            keep
        });
        let mut failures = self.inner.bind_failures.lock();
        failures.retain(|port, _| routes.by_port.contains_key(port));
        let mut newly_failed = false;
        for (port, plan) in &routes.by_port {
            if open.contains_key(port) {
                continue;
            }
            let addr = SocketAddr::new(self.inner.bind, *port);
            let task = match open_listener(&self.inner, addr, plan.protocol) {
                Ok(l) => l,
                Err(e) => {
                    let reason = e.to_string();
                    if failures.get(port) != Some(&reason) {
                        tracing::warn!(port, error = %e, "cannot open listener; reported, will retry");
                        failures.insert(*port, reason);
                        newly_failed = true;
                    }
                    continue;
                }
            };
            if failures.remove(port).is_some() {
                newly_failed = true; // recovered: report that too
            }
            tracing::info!(port, protocol = ?plan.protocol, "listening");
            open.insert(
                *port,
                OpenListener {
                    protocol: plan.protocol,
                    task,
                },
            );
        }
        if newly_failed {
            self.inner.health_changed.notify_one();
        }
    }

    /// What the HTTP/1 path does with the bytes `buf` received on `port` from `peer`: parses
    /// the request head at its start, routes it and writes the answer or the target's request
    /// head to `out`, exactly as a client connection does (for property tests of the parser).
    #[doc(hidden)]
    pub fn plan_http1(
        &self,
        peer: SocketAddr,
        port: u16,
        buf: &[u8],
        out: &mut Vec<u8>,
    ) -> Http1Plan {
        let client = fast::Client::new(peer, port);
        match fast::plan(&self.inner, &client, buf, out) {
            fast::Step::Partial => Http1Plan::Partial,
            fast::Step::Refused => Http1Plan::Refused,
            fast::Step::Answered { .. } => Http1Plan::Answered,
            fast::Step::Forward { .. } => Http1Plan::Forward,
        }
    }

    /// Listener ports of the configuration that could not be opened, with the error.
    pub fn listener_failures(&self) -> Vec<ListenerFailure> {
        self.inner
            .bind_failures
            .lock()
            .iter()
            .map(|(port, reason)| ListenerFailure {
                port: *port,
                reason: reason.clone(),
            })
            .collect()
    }

    /// This proxy's health view, for `POST /lb/v1/health`.
    pub fn report(&self) -> HealthReport {
        let routes = self.inner.routes.load();
        let mut target_groups: Vec<TargetGroupHealthReport> = routes
            .groups
            .values()
            .map(|g| TargetGroupHealthReport {
                target_group_arn: g.arn.clone(),
                targets: g
                    .targets
                    .load()
                    .iter()
                    .map(|t| {
                        let reason = t.reason.lock().clone();
                        TargetHealthObservation {
                            id: t.id.clone(),
                            port: t.port,
                            state: t.health().as_state(),
                            reason: reason.as_ref().map(|r| r.0.clone()),
                            description: reason.map(|r| r.1),
                        }
                    })
                    .collect(),
            })
            .collect();
        target_groups.sort_by(|a, b| a.target_group_arn.cmp(&b.target_group_arn));
        HealthReport {
            proxy_id: self.inner.proxy_id.clone(),
            target_groups,
            listener_failures: self.listener_failures(),
        }
    }

    /// Healthy and unhealthy targets per group and availability zone of the targets (empty for
    /// targets registered without one), as this proxy's health checks see them.
    pub fn zone_health(&self) -> HashMap<String, Vec<(String, u32, u32)>> {
        let routes = self.inner.routes.load();
        routes
            .groups
            .values()
            .map(|g| {
                let mut zones: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
                for t in g.targets.load().iter() {
                    let zone = t.zone.lock().clone().unwrap_or_default();
                    let slot = zones.entry(zone).or_default();
                    match t.health().as_state() {
                        TargetHealthState::Healthy => slot.0 += 1,
                        TargetHealthState::Unhealthy => slot.1 += 1,
                        _ => {}
                    }
                }
                let zones = zones.into_iter().map(|(z, (h, u))| (z, h, u)).collect();
                (g.arn.clone(), zones)
            })
            .collect()
    }

    /// Stops listening (connections in progress finish on their own).
    pub fn close(&self) {
        for (_, l) in self.inner.listeners.lock().drain() {
            l.task.abort();
        }
    }
}

/// Binds a listener's socket(s) on `addr` and starts serving them.
fn open_listener(
    inner: &Arc<Inner>,
    addr: SocketAddr,
    protocol: Protocol,
) -> std::io::Result<tokio::task::AbortHandle> {
    let tcp = || {
        std::net::TcpListener::bind(addr).and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        })
    };
    let weak = Arc::downgrade(inner);
    let port = addr.port();
    let task = match protocol {
        Protocol::Http | Protocol::Tcp | Protocol::Https | Protocol::Tls => {
            tokio::spawn(accept_loop(weak, tcp()?, port, protocol))
        }
        Protocol::Udp => tokio::spawn(udp::serve(weak, udp::bind(addr)?, port)),
        Protocol::TcpUdp => {
            let (tcp, datagrams) = (tcp()?, udp::bind(addr)?);
            tokio::spawn(async move {
                tokio::join!(
                    accept_loop(weak.clone(), tcp, port, protocol),
                    udp::serve(weak, datagrams, port)
                );
            })
        }
    };
    Ok(task.abort_handle())
}

async fn accept_loop(
    inner: std::sync::Weak<Inner>,
    listener: TcpListener,
    port: u16,
    protocol: Protocol,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let _ = stream.set_nodelay(true);
        match protocol {
            Protocol::Http => {
                tokio::spawn(serve_client(inner, stream, peer, port));
            }
            Protocol::Tcp | Protocol::TcpUdp => {
                tokio::spawn(serve_tcp_flow(inner, stream, port));
            }
            Protocol::Https | Protocol::Tls => {
                tokio::spawn(serve_tls(inner, stream, peer, port, protocol));
            }
            Protocol::Udp => {}
        }
    }
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTPS or TLS listener's connection: the handshake with the listener's current
/// configuration (certificate by SNI), then HTTP (hyper: HTTP/1.1 or HTTP/2 by ALPN) or the
/// TCP pass-through over the decrypted stream.
async fn serve_tls(
    inner: Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    port: u16,
    protocol: Protocol,
) {
    let Some(config) = inner
        .routes
        .load()
        .by_port
        .get(&port)
        .and_then(|p| p.tls.clone())
    else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    if protocol == Protocol::Https {
        let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(port, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        // The TLS version and cipher suite, for targets, when the load balancer says so.
        let tls_values = inner
            .routes
            .load()
            .by_port
            .get(&port)
            .and_then(|p| p.tls_headers.clone())
            .and_then(|(version_name, suite_name)| {
                let c = tls.get_ref().1;
                let version = c.protocol_version().and_then(crate::tls::version_name)?;
                let suite = c
                    .negotiated_cipher_suite()
                    .and_then(|s| crate::tls::suite_name(s.suite()))?;
                Some(vec![
                    (version_name, HeaderValue::from_static(version)),
                    (suite_name, HeaderValue::from_static(suite)),
                ])
            })
            .unwrap_or_default();
        return serve_http(inner, tls, peer, port, true, tls_values).await;
    }
    // A TLS flow: counted from the first byte of the handshake.
    let Some(flow) = open_flow(&inner, port, FlowProtocol::Tls) else {
        return;
    };
    let stream = Counted::new(stream, flow);
    let activity = stream.activity();
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(port, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    serve_tcp(inner, tls, port, activity).await;
}

/// Counts a new flow of the listener on `port` on its load balancer.
fn open_flow(inner: &Inner, port: u16, protocol: FlowProtocol) -> Option<FlowGuard> {
    let routes = inner.routes.load();
    Some(routes.by_port.get(&port)?.lb.flow(protocol))
}

/// A TCP listener's connection: counted as a flow, then passed through.
async fn serve_tcp_flow(inner: Arc<Inner>, stream: TcpStream, port: u16) {
    let Some(flow) = open_flow(&inner, port, FlowProtocol::Tcp) else {
        return;
    };
    let stream = Counted::new(stream, flow);
    let activity = stream.activity();
    serve_tcp(inner, stream, port, activity).await;
}

/// An HTTP listener's connection: HTTP/2 (prior knowledge) goes to hyper, HTTP/1.x to the
/// fast path.
async fn serve_client(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr, port: u16) {
    match fast::is_h2(&stream).await {
        Some(true) => serve_http(inner, stream, peer, port, false, Vec::new()).await,
        Some(false) => fast::serve(inner, stream, peer, port).await,
        None => {}
    }
}

/// What a client connection's requests share: computed once per connection.
struct Conn {
    peer: SocketAddr,
    port: u16,
    /// The peer address, for `X-Forwarded-For`.
    peer_value: HeaderValue,
    /// The listener port, for `X-Forwarded-Port`.
    port_value: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    proto_value: HeaderValue,
    /// Request headers about the client's TLS connection (`X-Amzn-Tls-Version`, ...).
    tls_values: Vec<(HeaderName, HeaderValue)>,
}

/// HTTP/2 clients are served by hyper with its own connection handling: the load balancer's
/// idle timeout is applied by the HTTP/1 fast path only.
async fn serve_http<S>(
    inner: Arc<Inner>,
    stream: S,
    peer: SocketAddr,
    port: u16,
    tls: bool,
    tls_values: Vec<(HeaderName, HeaderValue)>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(Conn {
        proto_value: HeaderValue::from_static(if tls { "https" } else { "http" }),
        peer,
        port,
        peer_value: HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        port_value: HeaderValue::from(port),
        tls_values,
    });
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let inner = inner.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(&inner, req, &conn).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// The host of a request, without the port: the target's authority (HTTP/2 `:authority`, or
/// an HTTP/1 absolute-form target) when it has one, which replaces `Host` (RFC 9112 §3.2.2,
/// RFC 9113 §8.3.1), else `Host`.
fn host_of(req: &Request<Incoming>) -> &str {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or_default();
    if raw.starts_with('[') {
        return match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        };
    }
    raw.split(':').next().unwrap_or("")
}

/// A request's response, with the listener's response headers.
async fn handle(inner: &Arc<Inner>, req: Request<Incoming>, conn: &Conn) -> Response<ProxyBody> {
    let extra = inner
        .routes
        .load()
        .by_port
        .get(&conn.port)
        .map(|p| p.response_headers.clone())
        .filter(|h| !h.is_empty());
    let mut resp = route(inner, req, conn).await;
    if let Some(extra) = extra {
        add_response_headers(resp.headers_mut(), &extra);
    }
    resp
}

/// Sets the listener's response headers (replacing a target's), and drops the load
/// balancer's `Server` header when the listener hides it.
fn add_response_headers(h: &mut HeaderMap, extra: &ResponseHeaders) {
    for (n, v) in &extra.set {
        h.insert(n.clone(), v.clone());
    }
    if extra.hide_server
        && h.get(header::SERVER)
            .is_some_and(|v| v.as_bytes() == SERVER_VALUE.as_bytes())
    {
        h.remove(header::SERVER);
    }
}

/// The `Server` header of the load balancer's own answers.
const SERVER_VALUE: &str = "awselb/2.0";

async fn route(inner: &Arc<Inner>, req: Request<Incoming>, conn: &Conn) -> Response<ProxyBody> {
    let routes = inner.routes.load_full();
    let Some(plan) = routes.by_port.get(&conn.port) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE);
    };
    let view = RequestView {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query().unwrap_or(""),
        host: host_of(&req),
        headers: Headers::Map(req.headers()),
        source: conn.peer.ip(),
    };
    let Some(action) = plan.table.select(&view) else {
        plan.lb.answered(503);
        return error_page(StatusCode::SERVICE_UNAVAILABLE);
    };
    match action {
        Action::FixedResponse {
            status_code,
            content_type,
            message_body,
            ..
        } => {
            let mut r = Response::new(full(message_body.clone().unwrap_or_default()));
            *r.status_mut() = StatusCode::from_u16(*status_code).unwrap_or(StatusCode::OK);
            plan.lb.fixed_response(r.status().as_u16());
            if let Ok(v) = HeaderValue::from_str(content_type.as_deref().unwrap_or("text/plain")) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Action::Redirect { redirect, .. } => {
            let location = redirect_location(redirect, &view, conn.port);
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = if redirect.status_code == "HTTP_302" {
                StatusCode::FOUND
            } else {
                StatusCode::MOVED_PERMANENTLY
            };
            plan.lb.redirect(r.status().as_u16());
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Action::Forward {
            target_groups,
            stickiness,
            ..
        } => {
            let sticky_group = if stickiness.enabled {
                cookie(Headers::Map(req.headers()), "AWSALBTG")
            } else {
                None
            };
            let Some(group) = choose_group(&routes, target_groups, sticky_group) else {
                plan.lb.answered(503);
                return error_page(StatusCode::SERVICE_UNAVAILABLE);
            };
            let sticky_max_age = stickiness
                .enabled
                .then(|| stickiness.duration_seconds.unwrap_or(3600));
            let lb = plan.lb.clone();
            drop(routes);
            let mut resp = forward(&group, &lb, req, conn).await;
            if let Some(max_age) = sticky_max_age
                && let Ok(v) = HeaderValue::from_str(&format!(
                    "AWSALBTG={}; Max-Age={max_age}; Path=/",
                    group.id
                ))
            {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
    }
}

/// Rewrites a client request for a target: origin-form URI, hop-by-hop headers removed,
/// `X-Forwarded-*` and `X-Amzn-Trace-Id` added; an upgrade request keeps `Upgrade`.
fn prepare(parts: &mut http::request::Parts, conn: &Conn) {
    let upgrade_value = if is_upgrade(&parts.headers) {
        parts.headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    // The target's authority replaces `Host`, as it did for routing (see `host_of`).
    if let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
    }
    parts.version = http::Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(u) = upgrade_value {
        parts.headers.insert(header::UPGRADE, u);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let xff = match parts.headers.get(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + conn.peer_value.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.peer_value.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| conn.peer_value.clone())
        }
        None => conn.peer_value.clone(),
    };
    parts.headers.insert(X_FORWARDED_FOR, xff);
    parts
        .headers
        .insert(X_FORWARDED_PROTO, conn.proto_value.clone());
    parts
        .headers
        .insert(X_FORWARDED_PORT, conn.port_value.clone());
    if !parts.headers.contains_key(&X_AMZN_TRACE_ID) {
        parts.headers.insert(X_AMZN_TRACE_ID, trace_id());
    }
    for (n, v) in &conn.tls_values {
        parts.headers.insert(n.clone(), v.clone());
    }
}

async fn forward(
    group: &Arc<Group>,
    lb: &crate::usage::LbUsage,
    req: Request<Incoming>,
    conn: &Conn,
) -> Response<ProxyBody> {
    group.metrics.request();
    let started = std::time::Instant::now();
    let (response, answered) = forward_once(group, req, conn).await;
    if answered {
        group
            .metrics
            .responded(started.elapsed(), response.status().as_u16());
    } else {
        if response.status() == StatusCode::BAD_GATEWAY {
            group.metrics.upstream_error();
        }
        lb.answered(response.status().as_u16());
    }
    response
}

/// Forwards one request; the flag says whether a target's answer is relayed.
async fn forward_once(
    group: &Arc<Group>,
    mut req: Request<Incoming>,
    conn: &Conn,
) -> (Response<ProxyBody>, bool) {
    let sticky_secs = group.sticky_seconds();
    let sticky_key = sticky_secs.and_then(|_| {
        cookie(Headers::Map(req.headers()), "AWSALB")
            .and_then(|v| v.split_once('|'))
            .filter(|(gid, _)| *gid == group.id)
            .map(|(_, key)| key.to_owned())
    });
    let Some(first) = group.pick(sticky_key.as_deref(), None) else {
        return (error_page(StatusCode::SERVICE_UNAVAILABLE), false);
    };
    let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    prepare(&mut parts, conn);
    if !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(&first.addr.load())
    {
        parts.headers.insert(header::HOST, v);
    }
    let (mut body, framing) = if body.is_end_stream() {
        (RequestBody::Empty, RequestFraming::Empty)
    } else {
        match body.size_hint().exact() {
            Some(n) if n <= MAX_BUFFERED_BODY => match body.collect().await {
                Ok(c) => {
                    let data = c.to_bytes();
                    let framing = RequestFraming::Length(data.len() as u64);
                    (RequestBody::Full(data), framing)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "client request body failed");
                    return (error_page(StatusCode::BAD_REQUEST), false);
                }
            },
            Some(n) => (RequestBody::Stream(Some(body)), RequestFraming::Length(n)),
            None => (RequestBody::Stream(Some(body)), RequestFraming::Chunked),
        }
    };
    let mut head = Vec::with_capacity(1024);
    h1::encode_request_head(
        &mut head,
        &parts.method,
        &parts.uri,
        &parts.headers,
        framing,
    );

    // Connections are made before the request is sent, and a pooled connection that turns out
    // closed before answering is replaced while the body is still at hand: neither needs a
    // streamed body buffered to retry.
    let mut target = first;
    let mut moved_on = false;
    let mut fresh = false;
    let mut attempts = 0;
    let (mut rhead, exchange, guard) = loop {
        attempts += 1;
        if attempts > MAX_ATTEMPTS {
            return (error_page(StatusCode::BAD_GATEWAY), false);
        }
        let Some((connection, reused)) =
            upstream::connect_or_move_on(group, &mut target, &mut moved_on, fresh).await
        else {
            return (error_page(StatusCode::BAD_GATEWAY), false);
        };
        let guard = target.begin();
        match upstream::send(connection, &head, &mut body, framing).await {
            Ok((rhead, exchange)) => break (rhead, exchange, guard),
            Err(SendError::Stale(e)) if reused => {
                tracing::debug!(target = %target.key, error = %e, "pooled connection closed; retrying");
                // Its neighbours in the pool are likely closed too.
                fresh = true;
            }
            Err(SendError::Stale(e) | SendError::Failed(e)) => {
                tracing::debug!(target = %target.key, error = %e, "target request failed");
                return (error_page(StatusCode::BAD_GATEWAY), false);
            }
        }
    };

    if rhead.status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return (error_page(StatusCode::BAD_GATEWAY), false);
        };
        tokio::spawn(async move {
            let _guard = guard;
            let Some((mut backend, early)) = exchange.into_tunnel().await else {
                return;
            };
            let Ok(client) = client_upgrade.await else {
                return;
            };
            let mut client = TokioIo::new(client);
            if !early.is_empty() && client.write_all(&early).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = rhead.status;
        *r.headers_mut() = rhead.headers;
        return (r, true);
    }
    let (framing, keep_alive) = match h1::response_framing(&parts.method, &mut rhead) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(target = %target.key, error = %e, "target response rejected");
            return (error_page(StatusCode::BAD_GATEWAY), false);
        }
    };
    strip_hop_by_hop(&mut rhead.headers);
    if let Some(secs) = sticky_secs
        && let Ok(v) = HeaderValue::from_str(&format!(
            "AWSALB={}|{}; Max-Age={secs}; Path=/",
            group.id, target.key
        ))
    {
        rhead.headers.append(header::SET_COOKIE, v);
    }
    let mut r = Response::new(ProxyBody::Upstream(
        exchange.body(framing, keep_alive, guard),
    ));
    *r.status_mut() = rhead.status;
    *r.version_mut() = rhead.version;
    *r.headers_mut() = rhead.headers;
    (r, true)
}

/// Passes the bytes of a client flow through to a target until either side closes or no byte
/// passes for the listener's TCP idle timeout (`activity`: epoch ms of the last byte).
async fn serve_tcp<S>(inner: Arc<Inner>, mut client: S, port: u16, activity: Arc<AtomicU64>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let routes = inner.routes.load_full();
    let Some(plan) = routes.by_port.get(&port) else {
        return;
    };
    let idle = plan.tcp_idle_timeout;
    let Some(Action::Forward { target_groups, .. }) = plan.table.default_action() else {
        return;
    };
    let Some(group) = choose_group(&routes, target_groups, None) else {
        return;
    };
    drop(routes);
    let mut exclude: Option<Arc<TargetRt>> = None;
    for _ in 0..2 {
        let Some(target) = group.pick(None, exclude.as_deref()) else {
            return;
        };
        let addr = target.addr.load_full();
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr.as_str())).await
        {
            Ok(Ok(mut backend)) => {
                let _ = backend.set_nodelay(true);
                let _guard = target.begin();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => {}
                    _ = idle_expiry(&activity, idle) => {
                        tracing::debug!(port, idle_seconds = idle.as_secs(), "idle TCP flow closed");
                    }
                }
                return;
            }
            _ => {
                target.mark_failed(now_ms());
                exclude = Some(target);
            }
        }
    }
}

/// Resolves once no byte has passed for `idle` (`activity`: epoch ms of the last one).
pub(crate) async fn idle_expiry(activity: &AtomicU64, idle: Duration) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        let since = now_ms().saturating_sub(activity.load(Ordering::Relaxed));
        if since >= idle_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(idle_ms - since)).await;
    }
}
