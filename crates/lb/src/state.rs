//! What both client paths of the proxy share: the listeners' routing tables and target groups
//! ([`Inner`], [`Routes`]), and the pieces of request handling common to the HTTP/1 fast path
//! ([`crate::fast`]) and the hyper path ([`crate::proxy`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use gantry_domain::lb::WeightedTargetGroup;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::Notify;

use crate::balancer::{Group, now_ms};
use crate::routing::{Headers, RouteTable};

/// Attempts to hand a request to a target: a refused connection moves on to another target
/// once; a pooled connection found closed before any response byte is replaced by a new one.
pub(crate) const MAX_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    Tcp,
    /// HTTP over TLS terminated here (application load balancers).
    Https,
    /// TCP over TLS terminated here (network load balancers).
    Tls,
    /// Datagrams per flow ([`crate::udp`]).
    Udp,
    /// TCP and UDP on the same port.
    TcpUdp,
}

/// A client connection's idle time allowed when the load balancer does not say.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One listener port's routing.
#[derive(Debug)]
pub(crate) struct ListenerPlan {
    pub(crate) protocol: Protocol,
    pub(crate) table: RouteTable,
    /// The load balancer's `idle_timeout.timeout_seconds`: how long an HTTP/1 client
    /// connection may stay idle (between requests, or while a request body is due).
    pub(crate) idle_timeout: Duration,
    /// HTTPS and TLS listeners: the rustls configuration (certificates, policy).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// The load balancer's counts (answers made here, flows).
    pub(crate) lb: Arc<crate::usage::LbUsage>,
    /// TCP and TLS listeners: how long a flow may pass no byte either way before it is closed
    /// (the listener's `tcp.idle_timeout.seconds`).
    pub(crate) tcp_idle_timeout: Duration,
    /// HTTP and HTTPS listeners: the headers added to responses.
    pub(crate) response_headers: Arc<ResponseHeaders>,
    /// HTTPS listeners of load balancers with
    /// `routing.http.x_amzn_tls_version_and_cipher_suite.enabled`: the names of the headers
    /// telling targets the TLS version and cipher suite of the client's connection.
    pub(crate) tls_headers: Option<(http::HeaderName, http::HeaderName)>,
}

/// The request headers naming the TLS version and cipher suite, when `lb_attributes` enable
/// them for an HTTPS listener with `attributes` (`routing.http.request.x_amzn_tls_*.header_name`
/// rename them).
pub(crate) fn tls_headers(
    lb_attributes: &std::collections::BTreeMap<String, String>,
    attributes: &std::collections::BTreeMap<String, String>,
) -> Option<(http::HeaderName, http::HeaderName)> {
    if lb_attributes
        .get("routing.http.x_amzn_tls_version_and_cipher_suite.enabled")
        .map(String::as_str)
        != Some("true")
    {
        return None;
    }
    let name = |key: &str, default: &'static str| {
        attributes
            .get(&format!("routing.http.request.{key}.header_name"))
            .and_then(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
            .unwrap_or(http::HeaderName::from_static(default))
    };
    Some((
        name("x_amzn_tls_version", "x-amzn-tls-version"),
        name("x_amzn_tls_cipher_suite", "x-amzn-tls-cipher-suite"),
    ))
}

/// What an HTTP or HTTPS listener adds to responses (its `routing.http.response.*`
/// attributes).
#[derive(Debug, Default)]
pub(crate) struct ResponseHeaders {
    /// Set on every response, replacing a target's header of the same name.
    pub(crate) set: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `routing.http.response.server.enabled` is `false`: the load balancer's own answers carry
    /// no `Server: awselb/2.0`.
    pub(crate) hide_server: bool,
}

/// A listener that changes no response.
pub(crate) static NO_RESPONSE_HEADERS: ResponseHeaders = ResponseHeaders {
    set: Vec::new(),
    hide_server: false,
};

impl ResponseHeaders {
    /// From a listener's attributes: `routing.http.response.<name>.header_value` sets the
    /// header `<name>` with `-` for `_` (none when empty).
    pub(crate) fn from_attributes(attributes: &std::collections::BTreeMap<String, String>) -> Self {
        let mut out = Self::default();
        for (k, v) in attributes {
            if k == "routing.http.response.server.enabled" {
                out.hide_server = v == "false";
                continue;
            }
            let Some(name) = k
                .strip_prefix("routing.http.response.")
                .and_then(|k| k.strip_suffix(".header_value"))
            else {
                continue;
            };
            if v.is_empty() {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.replace('_', "-").as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                out.set.push((n, v));
            }
        }
        out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty() && !self.hide_server
    }

    /// Whether a target's header `name` gives way to one of these.
    pub(crate) fn replaces(&self, name: &str) -> bool {
        self.set
            .iter()
            .any(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
    }
}

/// AWS's TCP idle timeout of network load balancer listeners.
pub(crate) const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(350);

/// The `tcp.idle_timeout.seconds` attribute of a listener (the API allows 60-6000, as AWS).
pub(crate) fn tcp_idle_timeout(
    attributes: &std::collections::BTreeMap<String, String>,
) -> Duration {
    attributes
        .get("tcp.idle_timeout.seconds")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_TCP_IDLE_TIMEOUT, |s| Duration::from_secs(s.max(1)))
}

/// The `idle_timeout.timeout_seconds` attribute of a load balancer (AWS allows 1-4000).
pub(crate) fn idle_timeout(attributes: &std::collections::BTreeMap<String, String>) -> Duration {
    attributes
        .get("idle_timeout.timeout_seconds")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_IDLE_TIMEOUT, |s| {
            Duration::from_secs(s.clamp(1, 4000))
        })
}

#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub(crate) by_port: HashMap<u16, Arc<ListenerPlan>>,
    pub(crate) groups: HashMap<String, Arc<Group>>,
}

#[derive(Debug)]
pub(crate) struct OpenListener {
    pub(crate) protocol: Protocol,
    pub(crate) task: tokio::task::AbortHandle,
}

pub(crate) struct Inner {
    pub(crate) bind: IpAddr,
    pub(crate) proxy_id: String,
    pub(crate) routes: ArcSwap<Routes>,
    pub(crate) listeners: Mutex<HashMap<u16, OpenListener>>,
    pub(crate) checker: Client<HttpConnector, Empty<Bytes>>,
    pub(crate) health_changed: Arc<Notify>,
    /// Serialises `apply` calls.
    pub(crate) apply_lock: Mutex<()>,
    /// Ports of the configuration that could not be opened, with the error (reported to the
    /// control plane with the health view, tried again every second).
    pub(crate) bind_failures: Mutex<std::collections::BTreeMap<u16, String>>,
    /// Prometheus series per target group.
    pub(crate) metrics: Arc<crate::metrics::LbMetrics>,
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

/// The body of an error page.
pub(crate) fn error_text(status: StatusCode) -> String {
    format!(
        "<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
}

pub(crate) fn cookie<'a>(h: Headers<'a>, name: &str) -> Option<&'a str> {
    h.get_all("cookie")
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The bytes of a new `X-Amzn-Trace-Id` value.
pub(crate) fn trace_id_bytes() -> [u8; 40] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let secs = now_ms() / 1000;
    let r: u128 = rand::rng().random();
    let mut buf = *b"Root=1-00000000-000000000000000000000000";
    for i in 0..8 {
        buf[7 + i] = HEX[((secs >> (28 - 4 * i)) & 0xf) as usize];
    }
    for i in 0..24 {
        buf[16 + i] = HEX[((r >> (92 - 4 * i)) & 0xf) as usize];
    }
    buf
}

/// Weighted random choice among the action's target groups (a sticky group id wins if it is
/// still one of them with a weight).
pub(crate) fn choose_group(
    routes: &Routes,
    groups: &[WeightedTargetGroup],
    sticky: Option<&str>,
) -> Option<Arc<Group>> {
    if let [only] = groups {
        return routes.groups.get(&only.target_group_arn).cloned();
    }
    let live: Vec<(&WeightedTargetGroup, &Arc<Group>)> = groups
        .iter()
        .filter(|g| g.weight > 0)
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
