//! The data plane: listeners opened and closed as configuration changes, HTTP/1.1 and HTTP/2
//! reverse proxying with rules, weighted forwarding, stickiness, WebSocket upgrades and retries,
//! and TCP pass-through.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use gantry_domain::lb::{
    Action, HealthReport, LbConfig, LoadBalancerType, TargetGroupHealthReport,
    TargetHealthObservation, WeightedTargetGroup,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use rand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::balancer::{Group, Outstanding, TargetRt, now_ms};
use crate::health;
use crate::routing::{RequestView, RouteTable, redirect_location};

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Request bodies up to this size (with a known length) are buffered so a refused connection can
/// be retried on another target.
const RETRY_BUFFER: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Tcp,
}

/// One listener port's routing.
#[derive(Debug)]
struct ListenerPlan {
    protocol: Protocol,
    table: RouteTable,
}

#[derive(Debug, Default)]
struct Routes {
    by_port: HashMap<u16, Arc<ListenerPlan>>,
    groups: HashMap<String, Arc<Group>>,
}

#[derive(Debug)]
struct OpenListener {
    protocol: Protocol,
    task: tokio::task::AbortHandle,
}

/// The proxy: feed it [`LbConfig`]s with [`Proxy::apply`].
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    bind: IpAddr,
    proxy_id: String,
    routes: ArcSwap<Routes>,
    listeners: Mutex<HashMap<u16, OpenListener>>,
    client: Client<HttpConnector, ProxyBody>,
    checker: Client<HttpConnector, Empty<Bytes>>,
    health_changed: Arc<Notify>,
    /// Serialises `apply` calls.
    apply_lock: Mutex<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("bind", &self.bind)
            .field("proxy_id", &self.proxy_id)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for l in self.listeners.lock().values() {
            l.task.abort();
        }
        for g in self.routes.load().groups.values() {
            for t in g.targets.load().iter() {
                t.stop_checker();
            }
        }
    }
}

fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn error_page(status: StatusCode) -> Response<ProxyBody> {
    let text = format!(
        "<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    r
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
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
    for n in HOP_BY_HOP {
        h.remove(*n);
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

fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn trace_id() -> String {
    let secs = now_ms() / 1000;
    let r: u128 = rand::rng().random();
    format!("Root=1-{secs:08x}-{:024x}", r & ((1u128 << 96) - 1))
}

impl Proxy {
    /// A proxy that opens listeners on `bind` (e.g. 127.0.0.1) with the ports of the
    /// configuration; `proxy_id` names it in health reports.
    pub fn new(bind: IpAddr, proxy_id: impl Into<String>) -> Self {
        let mut c = HttpConnector::new();
        c.set_nodelay(true);
        c.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(c);
        Self {
            inner: Arc::new(Inner {
                bind,
                proxy_id: proxy_id.into(),
                routes: ArcSwap::from_pointee(Routes::default()),
                listeners: Mutex::new(HashMap::new()),
                client,
                checker: health::checker_client(),
                health_changed: Arc::new(Notify::new()),
                apply_lock: Mutex::new(()),
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
            for l in &lb.listeners {
                let protocol = match (lb.lb_type, l.protocol.as_str()) {
                    (LoadBalancerType::Application, "HTTP") => Protocol::Http,
                    (LoadBalancerType::Network, "TCP") => Protocol::Tcp,
                    _ => continue,
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
            let group = old
                .groups
                .get(&tg.arn)
                .cloned()
                .unwrap_or_else(|| Arc::new(Group::new(tg)));
            let (added, removed) = group.update(tg, &g.targets);
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
        for (port, plan) in &routes.by_port {
            if open.contains_key(port) {
                continue;
            }
            let addr = SocketAddr::new(self.inner.bind, *port);
            let std_listener = match std::net::TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(port, error = %e, "cannot open listener; will retry");
                    continue;
                }
            };
            let listener = match std_listener
                .set_nonblocking(true)
                .and_then(|_| TcpListener::from_std(std_listener))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(port, error = %e, "cannot open listener; will retry");
                    continue;
                }
            };
            tracing::info!(port, protocol = ?plan.protocol, "listening");
            let task = tokio::spawn(accept_loop(
                Arc::downgrade(&self.inner),
                listener,
                *port,
                plan.protocol,
            ));
            open.insert(
                *port,
                OpenListener {
                    protocol: plan.protocol,
                    task: task.abort_handle(),
                },
            );
        }
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
        }
    }

    /// Stops listening (connections in progress finish on their own).
    pub fn close(&self) {
        for (_, l) in self.inner.listeners.lock().drain() {
            l.task.abort();
        }
    }
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
                tokio::spawn(serve_http(inner, stream, peer, port));
            }
            Protocol::Tcp => {
                tokio::spawn(serve_tcp(inner, stream, port));
            }
        }
    }
}

async fn serve_http(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr, port: u16) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let inner = inner.clone();
        async move { Ok::<_, Infallible>(handle(&inner, req, peer, port).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// The `Host` of a request, without the port.
fn host_of(req: &Request<Incoming>) -> String {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    if raw.starts_with('[') {
        return raw.split(']').next().unwrap_or("").to_owned() + "]";
    }
    raw.split(':').next().unwrap_or("").to_owned()
}

async fn handle(
    inner: &Arc<Inner>,
    req: Request<Incoming>,
    peer: SocketAddr,
    port: u16,
) -> Response<ProxyBody> {
    let routes = inner.routes.load_full();
    let Some(plan) = routes.by_port.get(&port) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE);
    };
    let host = host_of(&req);
    let view = RequestView {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query().unwrap_or(""),
        host: &host,
        headers: req.headers(),
        source: peer.ip(),
    };
    let Some(action) = plan.table.select(&view) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE);
    };
    match action {
        Action::FixedResponse {
            status_code,
            content_type,
            message_body,
            ..
        } => {
            let mut r = Response::new(full(message_body.unwrap_or_default()));
            *r.status_mut() = StatusCode::from_u16(status_code).unwrap_or(StatusCode::OK);
            if let Ok(v) = HeaderValue::from_str(content_type.as_deref().unwrap_or("text/plain")) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Action::Redirect { redirect, .. } => {
            let location = redirect_location(&redirect, &view, port);
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = if redirect.status_code == "HTTP_302" {
                StatusCode::FOUND
            } else {
                StatusCode::MOVED_PERMANENTLY
            };
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
                cookie(req.headers(), "AWSALBTG").map(str::to_owned)
            } else {
                None
            };
            let Some(group) = choose_group(&routes, &target_groups, sticky_group.as_deref()) else {
                return error_page(StatusCode::SERVICE_UNAVAILABLE);
            };
            let mut resp = forward(inner, &group, req, peer, port).await;
            if stickiness.enabled {
                let max_age = stickiness.duration_seconds.unwrap_or(3600);
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "AWSALBTG={}; Max-Age={max_age}; Path=/",
                    group.id
                )) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            resp
        }
    }
}

/// Weighted random choice among the action's target groups (a sticky group id wins if it is
/// still one of them with a weight).
fn choose_group(
    routes: &Routes,
    groups: &[WeightedTargetGroup],
    sticky: Option<&str>,
) -> Option<Arc<Group>> {
    let live: Vec<(&WeightedTargetGroup, &Arc<Group>)> = groups
        .iter()
        .filter(|g| g.weight > 0 || groups.len() == 1)
        .filter_map(|g| routes.groups.get(&g.target_group_arn).map(|r| (g, r)))
        .collect();
    if let Some(id) = sticky
        && let Some((_, g)) = live.iter().find(|(_, g)| g.id == id)
    {
        return Some((*g).clone());
    }
    let total: u32 = live.iter().map(|(w, _)| w.weight.max(1)).sum();
    if total == 0 {
        return None;
    }
    let mut n = rand::rng().random_range(0..total);
    for (w, g) in &live {
        let w = w.weight.max(1);
        if n < w {
            return Some((*g).clone());
        }
        n -= w;
    }
    None
}

/// A response body that holds the target's outstanding-request count until it is done.
struct Tracked {
    inner: Incoming,
    _guard: Outstanding,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn forward(
    inner: &Arc<Inner>,
    group: &Arc<Group>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    port: u16,
) -> Response<ProxyBody> {
    let sticky_secs = group.sticky_seconds();
    let sticky_key = sticky_secs.and_then(|_| {
        cookie(req.headers(), "AWSALB")
            .and_then(|v| v.split_once('|'))
            .filter(|(gid, _)| *gid == group.id)
            .map(|(_, key)| key.to_owned())
    });
    let Some(first) = group.pick(sticky_key.as_deref(), None) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE);
    };
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    // Headers for the target.
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    if parts.version == http::Version::HTTP_2
        && !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    strip_hop_by_hop(&mut parts.headers);
    if let (true, Some(u)) = (upgrade, upgrade_value) {
        parts.headers.insert(header::UPGRADE, u);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let xff = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert("x-forwarded-for", v);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    parts
        .headers
        .insert("x-forwarded-port", HeaderValue::from(port));
    if !parts.headers.contains_key("x-amzn-trace-id")
        && let Ok(v) = HeaderValue::from_str(&trace_id())
    {
        parts.headers.insert("x-amzn-trace-id", v);
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());

    // The body: replayable when small (or empty) so a refused connection can be retried.
    let (replay, mut streaming): (Option<Bytes>, Option<Incoming>) =
        if upgrade || body.is_end_stream() {
            (Some(Bytes::new()), None)
        } else if body.size_hint().exact().is_some_and(|n| n <= RETRY_BUFFER) {
            match body.collect().await {
                Ok(b) => (Some(b.to_bytes()), None),
                Err(_) => return error_page(StatusCode::BAD_REQUEST),
            }
        } else {
            (None, Some(body))
        };

    let build = |target: &TargetRt, body: ProxyBody| -> Option<Request<ProxyBody>> {
        let uri = format!("http://{}{}", target.addr.load(), path_and_query);
        let mut b = Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .version(http::Version::HTTP_11);
        if let Some(h) = b.headers_mut() {
            *h = parts.headers.clone();
        }
        b.body(body).ok()
    };

    let mut target = first;
    let mut attempt = 0;
    let (resp, guard) = loop {
        attempt += 1;
        let body = match (&replay, streaming.take()) {
            (Some(b), _) => full(b.clone()),
            (None, Some(s)) => s.boxed(),
            (None, None) => return error_page(StatusCode::BAD_GATEWAY),
        };
        let Some(up) = build(&target, body) else {
            return error_page(StatusCode::BAD_REQUEST);
        };
        let guard = target.begin();
        match inner.client.request(up).await {
            Ok(r) => break (r, guard),
            Err(e) => {
                drop(guard);
                let refused = e.is_connect();
                tracing::debug!(target = %target.key, error = %e, refused, "target request failed");
                if refused {
                    target.mark_failed(now_ms());
                }
                if refused
                    && replay.is_some()
                    && attempt == 1
                    && let Some(next) = group.pick(None, Some(&target))
                {
                    target = next;
                    continue;
                }
                return error_page(StatusCode::BAD_GATEWAY);
            }
        }
    };

    let (mut rparts, rbody) = resp.into_parts();
    if rparts.status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return error_page(StatusCode::BAD_GATEWAY);
        };
        let backend = hyper::upgrade::on(Response::from_parts(rparts.clone(), rbody));
        tokio::spawn(async move {
            let _guard = guard;
            let (c, b) = tokio::join!(client_upgrade, backend);
            if let (Ok(c), Ok(b)) = (c, b) {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(b)).await;
            }
        });
        return Response::from_parts(rparts, full(Bytes::new()));
    }
    strip_hop_by_hop(&mut rparts.headers);
    if let Some(secs) = sticky_secs
        && let Ok(v) = HeaderValue::from_str(&format!(
            "AWSALB={}|{}; Max-Age={secs}; Path=/",
            group.id, target.key
        ))
    {
        rparts.headers.append(header::SET_COOKIE, v);
    }
    let body = Tracked {
        inner: rbody,
        _guard: guard,
    };
    Response::from_parts(rparts, body.boxed())
}

async fn serve_tcp(inner: Arc<Inner>, mut client: TcpStream, port: u16) {
    let routes = inner.routes.load_full();
    let Some(plan) = routes.by_port.get(&port) else {
        return;
    };
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
                let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                return;
            }
            _ => {
                target.mark_failed(now_ms());
                exclude = Some(target);
            }
        }
    }
}
