//! The proxy fed configurations directly, in front of in-process backends on 127.0.0.1:0.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gantry_domain::lb::*;
use gantry_lb::Proxy;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestBody = BoxBody<Bytes, hyper::Error>;

fn boxed(b: Full<Bytes>) -> TestBody {
    b.map_err(|never| match never {}).boxed()
}

/// A backend that answers `<name> <path>` plus the forwarding headers it saw.
struct Backend {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn backend(name: &'static str) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let hits = Arc::new(AtomicUsize::new(0));
    let (h, n) = (healthy.clone(), hits.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (h, n) = (h.clone(), n.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    let (h, n) = (h.clone(), n.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        if path == "/health" {
                            let ok = h.load(Ordering::Relaxed);
                            let mut r = hyper::Response::new(boxed(Full::new(Bytes::from("ok"))));
                            if !ok {
                                *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                            }
                            return Ok::<_, Infallible>(r);
                        }
                        n.fetch_add(1, Ordering::Relaxed);
                        if path == "/ws" {
                            let up = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                if let Ok(up) = up.await {
                                    let mut io = TokioIo::new(up);
                                    let mut buf = [0u8; 64];
                                    while let Ok(k) = io.read(&mut buf).await {
                                        if k == 0 || io.write_all(&buf[..k]).await.is_err() {
                                            break;
                                        }
                                    }
                                }
                            });
                            let mut r = hyper::Response::new(boxed(Full::new(Bytes::new())));
                            *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                            r.headers_mut()
                                .insert("upgrade", "websocket".parse().unwrap());
                            r.headers_mut()
                                .insert("connection", "Upgrade".parse().unwrap());
                            return Ok(r);
                        }
                        if path == "/echo" {
                            // The body as received, and its framing headers.
                            let mut r = hyper::Response::builder();
                            for (k, out) in [
                                ("transfer-encoding", "x-te"),
                                ("content-length", "x-cl"),
                                ("expect", "x-expect"),
                            ] {
                                if let Some(v) = req.headers().get(k) {
                                    r = r.header(out, v);
                                }
                            }
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            return Ok(r.body(boxed(Full::new(body))).unwrap());
                        }
                        if path == "/host" {
                            let host = req
                                .headers()
                                .get_all("host")
                                .iter()
                                .map(|v| v.to_str().unwrap_or("?"))
                                .collect::<Vec<_>>()
                                .join(",");
                            let body = format!("{name} host={host}");
                            return Ok(hyper::Response::new(boxed(Full::new(Bytes::from(body)))));
                        }
                        if path == "/stream-echo" {
                            // Streams the body back while still reading it.
                            return Ok(hyper::Response::new(req.into_body().boxed()));
                        }
                        if path == "/slow" {
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                        }
                        let hv = |k: &str| {
                            req.headers()
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let body = format!(
                            "{name} {path} xff={} proto={} port={} trace={}",
                            hv("x-forwarded-for"),
                            hv("x-forwarded-proto"),
                            hv("x-forwarded-port"),
                            hv("x-amzn-trace-id").starts_with("Root=1-"),
                        );
                        Ok(hyper::Response::new(boxed(Full::new(Bytes::from(body)))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Backend {
        addr,
        healthy,
        hits,
        task,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn health_check(interval: u32) -> HealthCheck {
    HealthCheck {
        enabled: true,
        protocol: "HTTP".into(),
        port: "traffic-port".into(),
        path: Some("/health".into()),
        interval_seconds: interval,
        timeout_seconds: 1,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        matcher: Some("200".into()),
    }
}

fn group(name: &str, attrs: &[(&str, &str)], backends: &[&Backend]) -> TargetGroupConfig {
    TargetGroupConfig {
        target_group: TargetGroup {
            arn: format!(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/{name}/{name}0000"
            ),
            name: name.into(),
            id: format!("{name}0000"),
            protocol: "HTTP".into(),
            port: Some(80),
            target_type: "ip".into(),
            vpc_id: None,
            protocol_version: None,
            ip_address_type: "ipv4".into(),
            health_check: health_check(1),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            tags: vec![],
            created_at: 0,
        },
        targets: backends.iter().map(|b| target(b.addr)).collect(),
    }
}

fn target(addr: SocketAddr) -> Target {
    Target {
        id: addr.ip().to_string(),
        port: addr.port(),
        address: None,
        availability_zone: None,
        registered_at: 0,
        draining_until: None,
    }
}

fn forward(arns: &[(&TargetGroupConfig, u32)]) -> Action {
    Action::Forward {
        order: None,
        target_group_arn: None,
        target_groups: arns
            .iter()
            .map(|(g, w)| WeightedTargetGroup {
                target_group_arn: g.target_group.arn.clone(),
                weight: *w,
            })
            .collect(),
        stickiness: GroupStickiness::default(),
    }
}

fn listener(port: u16, protocol: &str, default: Action, rules: Vec<Rule>) -> Listener {
    Listener {
        arn: format!("arn:listener/{port}"),
        id: format!("l{port}"),
        port,
        protocol: protocol.into(),
        default_actions: vec![default],
        default_rule_id: "d".into(),
        rules,
        tags: vec![],
        certificates: vec![],
        ssl_policy: None,
        attributes: Default::default(),
    }
}

fn config(
    lb_type: LoadBalancerType,
    listeners: Vec<Listener>,
    groups: Vec<TargetGroupConfig>,
) -> LbConfig {
    LbConfig {
        region: "us-east-1".into(),
        revision: 1,
        generated_at: 0,
        load_balancers: vec![LoadBalancer {
            arn: "arn:lb".into(),
            name: "lb".into(),
            id: "0".into(),
            lb_type,
            scheme: "internal".into(),
            ip_address_type: "ipv4".into(),
            dns_name: "lb".into(),
            created_at: 0,
            subnets: vec![],
            security_groups: vec![],
            vpc_id: None,
            subnet_zones: Default::default(),
            attributes: Default::default(),
            tags: vec![],
            listeners,
        }],
        target_groups: groups,
        certificates: vec![],
    }
}

fn rule(priority: u32, field: &str, values: &[&str], action: Action) -> Rule {
    Rule {
        arn: format!("arn:rule/{priority}"),
        id: format!("r{priority}"),
        priority,
        conditions: vec![RuleCondition {
            field: field.into(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            http_header_name: None,
            query_strings: vec![],
        }],
        actions: vec![action],
        tags: vec![],
    }
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// GET with optional headers: (status, headers, body).
async fn get(
    c: &HttpClient,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut b = hyper::Request::get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(b.body(Empty::new()).unwrap()),
    )
    .await
    .expect("answer in time")
    .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `f` every 50 ms until it is true or `secs` pass.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn proxy() -> Proxy {
    Proxy::new("127.0.0.1".parse().unwrap(), "test-proxy")
}

/// A proxy with one listener (on a free port) forwarding everything to `g`.
fn proxy_forwarding_to(
    lb_type: LoadBalancerType,
    protocol: &str,
    g: &TargetGroupConfig,
) -> (Proxy, u16) {
    let port = free_port();
    let p = proxy();
    p.apply(&config(
        lb_type,
        vec![listener(port, protocol, forward(&[(g, 1)]), vec![])],
        vec![g.clone()],
    ));
    (p, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_rules_fixed_responses_and_redirects() {
    let (api, web) = (backend("api").await, backend("web").await);
    let g_api = group("api", &[], &[&api]);
    let g_web = group("web", &[], &[&web]);
    let (port, port2) = (free_port(), free_port());
    let fixed = Action::FixedResponse {
        order: None,
        status_code: 418,
        content_type: Some("text/plain".into()),
        message_body: Some("teapot".into()),
    };
    let mut hdr = rule(30, "http-header", &["canary"], forward(&[(&g_api, 1)]));
    hdr.conditions[0].http_header_name = Some("X-Track".into());
    let rules = vec![
        rule(20, "host-header", &["tea.example.com"], fixed),
        rule(10, "path-pattern", &["/api/*"], forward(&[(&g_api, 1)])),
        hdr,
        rule(
            40,
            "http-request-method",
            &["DELETE"],
            Action::FixedResponse {
                order: None,
                status_code: 405,
                content_type: None,
                message_body: None,
            },
        ),
    ];
    let redirect = Action::Redirect {
        order: None,
        redirect: Redirect {
            protocol: "#{protocol}".into(),
            port: port.to_string(),
            host: "#{host}".into(),
            path: "/moved/#{path}".into(),
            query: "#{query}".into(),
            status_code: "HTTP_302".into(),
        },
    };
    let p = proxy();
    p.apply(&config(
        LoadBalancerType::Application,
        vec![
            listener(port, "HTTP", forward(&[(&g_web, 1)]), rules),
            listener(port2, "HTTP", redirect, vec![]),
        ],
        vec![g_api.clone(), g_web.clone()],
    ));
    assert_eq!(p.listening_ports().len(), 2);
    let c = client();
    let (s, _, b) = get(&c, port, "/api/users", &[]).await;
    assert_eq!(s, 200);
    assert!(
        b.starts_with("api /api/users xff=127.0.0.1 proto=http"),
        "{b}"
    );
    assert!(b.contains(&format!("port={port} trace=true")), "{b}");
    let (_, _, b) = get(&c, port, "/other", &[]).await;
    assert!(b.starts_with("web /other"), "{b}");
    let (_, _, b) = get(&c, port, "/other", &[("x-track", "CANARY")]).await;
    assert!(b.starts_with("api "), "{b}");
    let (_, _, b) = get(&c, port, "/x", &[("x-forwarded-for", "10.9.9.9")]).await;
    assert!(b.contains("xff=10.9.9.9, 127.0.0.1"), "{b}");
    // Priority 10 (path) wins over priority 20 (host).
    let (_, _, b) = get(&c, port, "/api/x", &[("host", "tea.example.com")]).await;
    assert!(b.starts_with("api /api/x"), "{b}");
    let (s, h, b) = get(&c, port, "/tea", &[("host", "TEA.example.com:80")]).await;
    assert_eq!((s, b.as_str()), (418, "teapot"));
    assert_eq!(h["content-type"], "text/plain");
    let (s, h, _) = get(&c, port2, "/a/b?x=1", &[("host", "site.local")]).await;
    assert_eq!(s, 302);
    assert_eq!(
        h["location"],
        format!("http://site.local:{port}/moved/a/b?x=1")
    );
    // The rules change under a running listener.
    p.apply(&config(
        LoadBalancerType::Application,
        vec![listener(port, "HTTP", forward(&[(&g_api, 1)]), vec![])],
        vec![g_api.clone(), g_web.clone()],
    ));
    let (_, _, b) = get(&c, port, "/other", &[]).await;
    assert!(b.starts_with("api "), "{b}");
    assert_eq!(p.listening_ports(), vec![port]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_forward_splits_traffic() {
    let (a, b, z) = (backend("a").await, backend("b").await, backend("z").await);
    let (ga, gb, gz) = (
        group("a", &[], &[&a]),
        group("b", &[], &[&b]),
        group("z", &[], &[&z]),
    );
    let port = free_port();
    let p = proxy();
    p.apply(&config(
        LoadBalancerType::Application,
        vec![listener(
            port,
            "HTTP",
            forward(&[(&ga, 3), (&gb, 1), (&gz, 0)]),
            vec![],
        )],
        vec![ga.clone(), gb.clone(), gz.clone()],
    ));
    let c = client();
    for _ in 0..400 {
        assert_eq!(get(&c, port, "/", &[]).await.0, 200);
    }
    let (na, nb) = (
        a.hits.load(Ordering::Relaxed),
        b.hits.load(Ordering::Relaxed),
    );
    assert_eq!(z.hits.load(Ordering::Relaxed), 0, "weight 0 gets nothing");
    assert!((240..=360).contains(&na) && na + nb == 400, "a={na} b={nb}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_take_a_target_out_and_back() {
    let (a, b) = (backend("a").await, backend("b").await);
    let g = group("g", &[], &[&a, &b]);
    let (p, port) = proxy_forwarding_to(LoadBalancerType::Application, "HTTP", &g);
    let healthy = |p: &Proxy| {
        p.report().target_groups[0]
            .targets
            .iter()
            .filter(|t| t.state == TargetHealthState::Healthy)
            .count()
    };
    eventually(5, "both healthy", || {
        let p = p.clone();
        async move { healthy(&p) == 2 }
    })
    .await;
    b.healthy.store(false, Ordering::Relaxed);
    eventually(6, "b unhealthy", || {
        let p = p.clone();
        async move { healthy(&p) == 1 }
    })
    .await;
    let report = p.report();
    let bad = report.target_groups[0]
        .targets
        .iter()
        .find(|t| t.port == b.addr.port())
        .unwrap();
    assert_eq!(bad.state, TargetHealthState::Unhealthy);
    assert_eq!(bad.reason.as_deref(), Some("Target.ResponseCodeMismatch"));
    let c = client();
    let before = b.hits.load(Ordering::Relaxed);
    for _ in 0..20 {
        let (_, _, body) = get(&c, port, "/", &[]).await;
        assert!(body.starts_with("a "), "{body}");
    }
    assert_eq!(b.hits.load(Ordering::Relaxed), before);
    b.healthy.store(true, Ordering::Relaxed);
    eventually(6, "b healthy again", || {
        let p = p.clone();
        async move { healthy(&p) == 2 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_targets_finish_in_flight_requests_and_get_no_new_ones() {
    let (a, b) = (backend("a").await, backend("b").await);
    let g = group("g", &[], &[&a]);
    let port = free_port();
    let p = proxy();
    let lst = || vec![listener(port, "HTTP", forward(&[(&g, 1)]), vec![])];
    p.apply(&config(
        LoadBalancerType::Application,
        lst(),
        vec![g.clone()],
    ));
    let c = client();
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { get(&c, port, "/slow", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut drained = g.clone();
    drained.targets[0].draining_until = Some(gantry_lb::balancer::now_ms() + 30_000);
    drained.targets.push(target(b.addr));
    p.apply(&config(LoadBalancerType::Application, lst(), vec![drained]));
    for _ in 0..10 {
        let (_, _, body) = get(&c, port, "/", &[]).await;
        assert!(body.starts_with("b "), "{body}");
    }
    let (s, _, body) = slow.await.unwrap();
    assert_eq!(s, 200);
    assert!(body.starts_with("a /slow"), "{body}");
    // Nothing registered: 503.
    let mut empty = g.clone();
    empty.targets.clear();
    p.apply(&config(LoadBalancerType::Application, lst(), vec![empty]));
    assert_eq!(get(&c, port, "/", &[]).await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_on_another_target_and_dead_groups_give_502() {
    let a = backend("a").await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut g = group("g", &[], &[&a]);
    g.target_group.health_check.enabled = false;
    g.targets.push(target(dead));
    let (p, port) = proxy_forwarding_to(LoadBalancerType::Application, "HTTP", &g);
    let c = client();
    for _ in 0..20 {
        let (s, _, body) = get(&c, port, "/", &[]).await;
        assert_eq!(s, 200, "{body}");
    }
    let mut only_dead = g.clone();
    only_dead.targets = vec![target(dead)];
    p.apply(&config(
        LoadBalancerType::Application,
        vec![listener(port, "HTTP", forward(&[(&g, 1)]), vec![])],
        vec![only_dead],
    ));
    assert_eq!(get(&c, port, "/", &[]).await.0, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_errors_while_targets_register_and_deregister_every_100ms() {
    let backends = [backend("a").await, backend("b").await, backend("c").await];
    let port = free_port();
    let p = proxy();
    let base = group("g", &[], &[&backends[0], &backends[1], &backends[2]]);
    let lst = vec![listener(port, "HTTP", forward(&[(&base, 1)]), vec![])];
    p.apply(&config(
        LoadBalancerType::Application,
        lst.clone(),
        vec![base.clone()],
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let req = hyper::Request::get(format!("http://127.0.0.1:{port}/"))
                    .body(Empty::new())
                    .unwrap();
                match c.request(req).await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.into_body().collect().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!(
                            "request failed during churn: {:?}",
                            other.map(|r| r.status())
                        );
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Every 100 ms one target is deregistered (draining for 1 s), the one before it is either
    // gone (odd steps) or registered again (even steps), the third stays registered.
    for step in 0..30usize {
        let now = gantry_lb::balancer::now_ms();
        let leaving = step % 3;
        let previous = (step + 2) % 3;
        let mut g = base.clone();
        g.targets = backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let mut t = target(b.addr);
                if i == leaving {
                    t.draining_until = Some(now + 1000);
                } else if i == previous && step % 2 == 1 {
                    return None;
                }
                Some(t)
            })
            .collect();
        p.apply(&config(LoadBalancerType::Application, lst.clone(), vec![g]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, errors) = (ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    assert!(ok > 100, "only {ok} requests");
    assert_eq!(errors, 0, "{errors} errors in {ok} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_tunnelled() {
    let a = backend("a").await;
    let g = group("g", &[], &[&a]);
    let (_proxy, port) = proxy_forwarding_to(LoadBalancerType::Application, "HTTP", &g);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    s.write_all(b"hello through the tunnel").await.unwrap();
    let mut buf = vec![0u8; 24];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello through the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listeners_pass_bytes_through() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = echo.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut g = TargetGroupConfig {
        targets: vec![target(echo_addr)],
        ..group("tcp", &[], &[])
    };
    g.target_group.protocol = "TCP".into();
    g.target_group.health_check.protocol = "TCP".into();
    let (p, port) = proxy_forwarding_to(LoadBalancerType::Network, "TCP", &g);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"raw bytes \x00\x01\x02").await.unwrap();
    let mut buf = vec![0u8; 13];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"raw bytes \x00\x01\x02");
    eventually(5, "tcp check passes", || {
        let p = p.clone();
        async move { p.report().target_groups[0].targets[0].state == TargetHealthState::Healthy }
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_and_sticky_sessions() {
    let (a, b) = (backend("a").await, backend("b").await);
    let g = group(
        "g",
        &[
            ("stickiness.enabled", "true"),
            ("stickiness.type", "lb_cookie"),
            ("stickiness.lb_cookie.duration_seconds", "60"),
        ],
        &[&a, &b],
    );
    let (p, port) = proxy_forwarding_to(LoadBalancerType::Application, "HTTP", &g);
    // Stickiness only holds between healthy targets: wait until both have passed a check.
    eventually(5, "both healthy", || {
        let p = p.clone();
        async move {
            p.report().target_groups[0]
                .targets
                .iter()
                .filter(|t| t.state == TargetHealthState::Healthy)
                .count()
                == 2
        }
    })
    .await;
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    let req = hyper::Request::get(format!("http://127.0.0.1:{port}/h2"))
        .body(Empty::new())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("AWSALB=g0000|127.0.0.1:"), "{cookie}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let first = String::from_utf8_lossy(&body)
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let c = client();
    for _ in 0..10 {
        let (_, _, body) = get(&c, port, "/", &[("cookie", &cookie)]).await;
        assert!(
            body.starts_with(&format!("{first} ")),
            "sticky to {first}: {body}"
        );
    }
}

/// A backend speaking raw HTTP/1.1 from scripts: each request (head only) is answered with
/// byte pieces written with pauses between them, so the proxy reads them split anywhere.
struct Scripted {
    addr: SocketAddr,
    /// Connections accepted.
    conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the scripted backend does after answering.
#[derive(PartialEq)]
enum After {
    KeepOpen,
    /// Close at once.
    Close,
    /// Close the (idle) connection after 50 ms.
    CloseSoon,
}

/// The script for a path: pieces of the answer and what to do after it. `nth` counts the
/// requests on the connection from 1; `None`: close without answering.
fn script(method: &str, path: &str, nth: usize) -> Option<(Vec<Vec<u8>>, After)> {
    let p = |parts: &[&str]| parts.iter().map(|s| s.as_bytes().to_vec()).collect();
    let ok_len = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
    Some(match path {
        "/length" if method == "HEAD" => (p(&[ok_len]), After::KeepOpen),
        "/length" => (
            p(&[
                "HTTP/1.1 200 OK\r\nCont",
                "ent-Length: 11\r\n\r\nhel",
                "lo world",
            ]),
            After::KeepOpen,
        ),
        "/chunked" => (
            p(&[
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                "lo\r\n6;ext=1\r",
                "\n world\r\n1",
                "0\r\n0123456789abcdef\r\n0\r\n",
                "\r\n",
            ]),
            After::KeepOpen,
        ),
        "/eof" => (
            p(&["HTTP/1.1 200 OK\r\n\r\nuntil ", "the end"]),
            After::Close,
        ),
        "/204" => (p(&["HTTP/1.1 204 No Content\r\n\r\n"]), After::KeepOpen),
        "/304" => (
            p(&["HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"]),
            After::KeepOpen,
        ),
        "/interim" => (
            p(&[
                "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ]),
            After::KeepOpen,
        ),
        "/close" => (
            p(&["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"]),
            After::KeepOpen,
        ),
        "/http10" => (
            p(&["HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"]),
            After::KeepOpen,
        ),
        "/close-soon" => (p(&[ok_len, "hello world"]), After::CloseSoon),
        // The second request on a connection is dropped unanswered.
        "/flaky" if nth > 1 => return None,
        "/flaky" => (p(&[ok_len, "hello world"]), After::KeepOpen),
        "/garbage" => (p(&["SSH-2.0-OpenSSH_9.6\r\n\r\n"]), After::KeepOpen),
        "/conflict" => (
            p(&["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok"]),
            After::KeepOpen,
        ),
        "/many-headers" => {
            let mut head = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..150 {
                head.push_str(&format!("x-h{i}: v\r\n"));
            }
            head.push_str("Content-Length: 0\r\n\r\n");
            (vec![head.into_bytes()], After::KeepOpen)
        }
        "/short" => (
            p(&["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"]),
            After::Close,
        ),
        _ => (
            p(&["HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]),
            After::KeepOpen,
        ),
    })
}

async fn scripted_backend() -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut nth = 0;
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut tmp = [0u8; 4096];
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head: Vec<u8> = buf.drain(..end).collect();
                    let line = String::from_utf8_lossy(&head).into_owned();
                    let mut words = line.split(' ');
                    let (method, path) = (words.next().unwrap(), words.next().unwrap());
                    nth += 1;
                    let Some((pieces, after)) = script(method, path, nth) else {
                        return;
                    };
                    for piece in pieces {
                        if s.write_all(&piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(15)).await;
                    }
                    match after {
                        After::KeepOpen => {}
                        After::Close => return,
                        After::CloseSoon => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Scripted { addr, conns, task }
}

/// A proxy listening in front of the scripted backend (no health checks).
fn scripted_proxy(b: &Scripted) -> (Proxy, u16) {
    let mut g = group("s", &[], &[]);
    g.target_group.health_check.enabled = false;
    g.targets = vec![target(b.addr)];
    let port = free_port();
    let p = proxy();
    p.apply(&config(
        LoadBalancerType::Application,
        vec![listener(port, "HTTP", forward(&[(&g, 1)]), vec![])],
        vec![g],
    ));
    (p, port)
}

/// A request with a method: (status, headers, body).
async fn call(
    c: &HttpClient,
    method: &str,
    port: u16,
    path: &str,
) -> (u16, http::HeaderMap, String) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .expect("answer in time")
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_bodies_of_every_framing_arrive_intact_and_keep_the_connection() {
    let b = scripted_backend().await;
    let (_p, port) = scripted_proxy(&b);
    let c = client();
    let (s, h, body) = call(&c, "GET", port, "/chunked").await;
    assert_eq!((s, body.as_str()), (200, "hello world0123456789abcdef"));
    assert!(!h.contains_key("content-length"), "{h:?}");
    let (s, h, body) = call(&c, "GET", port, "/length").await;
    assert_eq!((s, body.as_str()), (200, "hello world"));
    assert_eq!(h["content-length"], "11");
    let (s, h, body) = call(&c, "HEAD", port, "/length").await;
    assert_eq!((s, body.as_str()), (200, ""));
    assert_eq!(h["content-length"], "11");
    assert_eq!(call(&c, "GET", port, "/204").await.0, 204);
    let (s, h, body) = call(&c, "GET", port, "/304").await;
    assert_eq!((s, body.as_str()), (304, ""));
    assert_eq!(h["etag"], "\"x\"");
    assert_eq!(call(&c, "GET", port, "/interim").await.0, 200);
    assert_eq!(call(&c, "GET", port, "/chunked").await.2.len(), 27);
    // All of it, one request at a time, over one connection.
    assert_eq!(b.conns.load(Ordering::Relaxed), 1);
    // Until the target closes: the whole body, and a new connection after it.
    let (s, _, body) = call(&c, "GET", port, "/eof").await;
    assert_eq!((s, body.as_str()), (200, "until the end"));
    assert_eq!(call(&c, "GET", port, "/length").await.2, "hello world");
    assert_eq!(b.conns.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_target_wants_closed_are_not_reused() {
    let b = scripted_backend().await;
    let (_p, port) = scripted_proxy(&b);
    let c = client();
    for _ in 0..3 {
        assert_eq!(call(&c, "GET", port, "/close").await.2, "ok");
    }
    // The backend keeps them open, but said `Connection: close`.
    assert_eq!(b.conns.load(Ordering::Relaxed), 3);
    for _ in 0..2 {
        assert_eq!(call(&c, "GET", port, "/http10").await.2, "ok");
    }
    assert_eq!(b.conns.load(Ordering::Relaxed), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_closed_by_the_target_are_replaced() {
    let b = scripted_backend().await;
    let (_p, port) = scripted_proxy(&b);
    let c = client();
    // Closed while idle: noticed before reuse.
    assert_eq!(call(&c, "GET", port, "/close-soon").await.2, "hello world");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(call(&c, "GET", port, "/length").await.2, "hello world");
    assert_eq!(b.conns.load(Ordering::Relaxed), 2);
    // Closed as the request arrives, without an answer: sent again on a new connection.
    let before = b.conns.load(Ordering::Relaxed);
    for _ in 0..3 {
        let (s, _, body) = call(&c, "GET", port, "/flaky").await;
        assert_eq!((s, body.as_str()), (200, "hello world"));
    }
    assert_eq!(b.conns.load(Ordering::Relaxed), before + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_truncated_target_responses_fail_cleanly() {
    let b = scripted_backend().await;
    let (_p, port) = scripted_proxy(&b);
    let c = client();
    for path in ["/garbage", "/conflict", "/many-headers"] {
        assert_eq!(call(&c, "GET", port, path).await.0, 502, "{path}");
    }
    // A body cut short is an error for the client, not a short success.
    let req = hyper::Request::get(format!("http://127.0.0.1:{port}/short"))
        .body(Empty::new())
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.into_body().collect().await.is_err());
    // And the proxy carries on.
    assert_eq!(call(&c, "GET", port, "/length").await.2, "hello world");
}

type UploadClient = Client<HttpConnector, BoxBody<Bytes, std::io::Error>>;

/// Posts `body` to `/echo` or `/stream-echo`: (status, headers, body).
async fn upload(
    c: &UploadClient,
    port: u16,
    path: &str,
    body: BoxBody<Bytes, std::io::Error>,
) -> (u16, http::HeaderMap, Bytes) {
    let req = hyper::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), async {
        let resp = c.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (parts, body.collect().await.unwrap().to_bytes())
    })
    .await
    .expect("answer in time");
    (resp.0.status.as_u16(), resp.0.headers, resp.1)
}

fn sized(data: Bytes) -> BoxBody<Bytes, std::io::Error> {
    Full::new(data).map_err(|never| match never {}).boxed()
}

/// A body of unknown length (sent chunked) in pieces of `piece` bytes.
fn streamed(data: Bytes, piece: usize) -> BoxBody<Bytes, std::io::Error> {
    let pieces: Vec<Result<hyper::body::Frame<Bytes>, std::io::Error>> = (0..data.len())
        .step_by(piece)
        .map(|i| {
            Ok(hyper::body::Frame::data(
                data.slice(i..(i + piece).min(data.len())),
            ))
        })
        .collect();
    StreamBody::new(futures::stream::iter(pieces)).boxed()
}

fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_target_intact() {
    let a = backend("a").await;
    let g = group("g", &[], &[&a]);
    let (_proxy, port) = proxy_forwarding_to(LoadBalancerType::Application, "HTTP", &g);
    let c: UploadClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    // Small, of known length: read first, sent with the head.
    let (s, h, body) = upload(&c, port, "/echo", sized(Bytes::from("hello"))).await;
    assert_eq!((s, &body[..]), (200, &b"hello"[..]));
    assert_eq!(h["x-cl"], "5");
    assert!(!h.contains_key("x-te"));
    // Unknown length: chunked to the target.
    let (s, h, body) = upload(&c, port, "/echo", streamed(Bytes::from("hello world"), 3)).await;
    assert_eq!((s, &body[..]), (200, &b"hello world"[..]));
    assert_eq!(h["x-te"], "chunked");
    assert!(!h.contains_key("x-cl"));
    // Large, of known length: streamed with its length.
    let big = pattern(300 * 1024);
    let (s, h, body) = upload(&c, port, "/echo", sized(big.clone())).await;
    assert_eq!((s, body.len()), (200, big.len()));
    assert!(body == big);
    assert_eq!(h["x-cl"], big.len().to_string().as_str());
    // Large, unknown length.
    let (s, h, body) = upload(&c, port, "/echo", streamed(big.clone(), 7000)).await;
    assert!(s == 200 && body == big);
    assert_eq!(h["x-te"], "chunked");
    // A target that answers while still reading a large body (no deadlock either way).
    let huge = pattern(4 * 1024 * 1024);
    let (s, _, body) = upload(&c, port, "/stream-echo", streamed(huge.clone(), 64 * 1024)).await;
    assert!(s == 200 && body == huge);
    let (s, _, body) = upload(&c, port, "/stream-echo", sized(huge.clone())).await;
    assert!(s == 200 && body == huge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_by_the_proxy() {
    let a = backend("a").await;
    let g = group("g", &[], &[&a]);
    let (_proxy, port) = proxy_forwarding_to(LoadBalancerType::Application, "HTTP", &g);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        got.push(byte[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    while !rest.ends_with(b"hello") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
        rest.push(byte[0]);
    }
    let rest = String::from_utf8_lossy(&rest).to_lowercase();
    assert!(rest.starts_with("http/1.1 200"), "{rest}");
    assert!(!rest.contains("x-expect"), "{rest}");
}

/// A proxy in front of backends `a` (default) and `b` (host `b.example.com`).
async fn two_backend_proxy() -> (Proxy, u16, Backend, Backend) {
    let (a, b) = (backend("a").await, backend("b").await);
    let (ga, gb) = (group("a", &[], &[&a]), group("b", &[], &[&b]));
    let port = free_port();
    let p = proxy();
    p.apply(&config(
        LoadBalancerType::Application,
        vec![listener(
            port,
            "HTTP",
            forward(&[(&ga, 1)]),
            vec![rule(
                10,
                "host-header",
                &["b.example.com"],
                forward(&[(&gb, 1)]),
            )],
        )],
        vec![ga, gb],
    ));
    (p, port, a, b)
}

/// Writes `pieces` (20 ms apart) on a new connection and reads until the proxy closes it.
async fn raw_exchange(port: u16, pieces: &[&[u8]]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.write_all(piece).await.unwrap();
    }
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads one response with a `content-length` from `s`: (head in lower case, body).
async fn read_response(s: &mut tokio::net::TcpStream) -> (String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (_p, port, _a, _b) = two_backend_proxy().await;
    let got = raw_exchange(
        port,
        &[b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: b.example.com\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert_eq!(got.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{got}");
    let (one, two, three) = (
        got.find("a /one").unwrap(),
        got.find("b /two").unwrap(),
        got.find("a /three").unwrap(),
    );
    assert!(one < two && two < three, "{got}");
    // Only the last response says the connection closes.
    assert_eq!(got.to_lowercase().matches("connection: close").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_and_http10_clients() {
    let (_p, port, _a, _b) = two_backend_proxy().await;
    // HTTP/1.1 with `Connection: close`: one answer, then the proxy closes.
    let got = raw_exchange(
        port,
        &[b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.to_lowercase().contains("connection: close"), "{got}");
    assert!(got.ends_with("trace=true"), "{got}");
    // HTTP/1.0 without keep-alive: closed after the answer.
    let got = raw_exchange(port, &[b"GET /old HTTP/1.0\r\n\r\n"]).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("a /old"), "{got}");
    // HTTP/1.0 with keep-alive: stays open for another request.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    for path in ["/k1", "/k2"] {
        s.write_all(format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, body) = read_response(&mut s).await;
        assert!(head.contains("connection: keep-alive"), "{head}");
        assert!(body.starts_with(&format!("a {path}")), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies_are_relayed_intact() {
    let (_p, port, _a, _b) = two_backend_proxy().await;
    // In pieces, so that the body is still arriving when the request goes out.
    let got = raw_exchange(
        port,
        &[
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhel",
            b"lo\r\n6\r\n world",
            b"\r\n0\r\n",
            b"\r\n",
        ],
    )
    .await;
    let lower = got.to_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{got}");
    assert!(lower.contains("x-te: chunked"), "{got}");
    assert!(got.ends_with("\r\n\r\nhello world"), "{got}");
    // All at once, followed by another request on the same connection.
    let got = raw_exchange(
        port,
        &[b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert!(got.contains("\r\n\r\nabcHTTP/1.1 200"), "{got}");
    assert!(got.contains("a /after"), "{got}");
    // A malformed chunk: 400, and the connection closes.
    let got = raw_exchange(
        port,
        &[b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_request_heads_are_refused() {
    let (_p, port, a, _b) = two_backend_proxy().await;
    for bad in [
        &b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        // Bare LF line endings, anywhere in the head.
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        // Userinfo in an absolute-form target.
        b"GET http://u@b.example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let got = raw_exchange(port, &[bad]).await;
        assert!(
            got.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?}: {got}",
            String::from_utf8_lossy(bad)
        );
        assert!(got.contains("<h1>400 Bad Request</h1>"), "{got}");
    }
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let got = raw_exchange(port, &[&big]).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..120 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let got = raw_exchange(port, &[many.as_bytes()]).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    assert_eq!(a.hits.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_and_forwarded_for_chains() {
    let (_p, port, _a, _b) = two_backend_proxy().await;
    // The authority routes (as the host) and the target gets the origin form.
    let got = raw_exchange(
        port,
        &[b"GET http://b.example.com:8080/abs/path?q=1 HTTP/1.1\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert!(got.contains("b /abs/path xff=127.0.0.1"), "{got}");
    // RFC 9112 §3.2.2: the target's authority replaces `Host`, for the rules and the target.
    let got = raw_exchange(
        port,
        &[b"GET http://b.example.com:8080/host HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert!(got.ends_with("\r\n\r\nb host=b.example.com:8080"), "{got}");
    let got = raw_exchange(
        port,
        &[b"GET http://other.example/host HTTP/1.1\r\nHost: b.example.com\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert!(got.ends_with("\r\n\r\na host=other.example"), "{got}");
    // HTTP/2: `:authority` wins over a `Host` header the same way.
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    let req = hyper::Request::get(format!("http://127.0.0.1:{port}/host"))
        .header("host", "b.example.com")
        .body(Empty::new())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("a host=127.0.0.1:{port}")
    );
    // A client `X-Forwarded-For` gets the peer appended; the forwarding headers are the
    // proxy's own.
    let got = raw_exchange(
        port,
        &[b"GET /f HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert!(
        got.contains(&format!(
            "a /f xff=10.0.0.1, 10.0.0.2, 127.0.0.1 proto=http port={port} trace=true"
        )),
        "{got}"
    );
}

/// One keep-alive request on `s`, answered by backend `a`.
async fn keep_alive_request(s: &mut tokio::net::TcpStream, path: &str) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, body) = read_response(s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.starts_with(&format!("a {path}")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_after_the_load_balancers_idle_timeout() {
    let a = backend("a").await;
    let ga = group("a", &[], &[&a]);
    let port = free_port();
    let p = proxy();
    let mut cfg = config(
        LoadBalancerType::Application,
        vec![listener(port, "HTTP", forward(&[(&ga, 1)]), vec![])],
        vec![ga],
    );
    p.apply(&cfg);
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", port));
    // Idle this long, then the connection must have been closed: reading gives EOF.
    let closed_after_idle = |mut s: tokio::net::TcpStream| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut byte))
            .await
            .expect("the proxy closed the idle connection")
            .unwrap();
        assert_eq!(n, 0);
    };

    // A connection opened under the default (60 s) timeout and waiting for its next request
    // when the timeout changes: the change applies to its next wait.
    let mut before = connect().await.unwrap();
    keep_alive_request(&mut before, "/before").await;
    cfg.load_balancers[0]
        .attributes
        .insert("idle_timeout.timeout_seconds".into(), "1".into());
    p.apply(&cfg);
    keep_alive_request(&mut before, "/changed").await;

    let idle = async {
        let mut s = connect().await.unwrap();
        keep_alive_request(&mut s, "/idle").await;
        closed_after_idle(s).await;
    };
    // Reused every 0.5 s, for longer than the timeout in all: it stays open.
    let busy = async {
        let mut s = connect().await.unwrap();
        for path in ["/b1", "/b2", "/b3", "/b4"] {
            keep_alive_request(&mut s, path).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        keep_alive_request(&mut s, "/b5").await;
    };
    tokio::join!(idle, busy, closed_after_idle(before));
}

/// A target answering on one port over UDP (each datagram back as `<name> <datagram>`) and
/// TCP (`<name> ` then the bytes echoed).
async fn udp_echo(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    loop {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let Ok(tcp) = tokio::net::TcpListener::bind(addr).await else {
            continue; // the TCP port is taken: another pair
        };
        let task = tokio::spawn(async move {
            let datagrams = async {
                let mut buf = [0u8; 2048];
                while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                    let mut reply = format!("{name} ").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = udp.send_to(&reply, from).await;
                }
            };
            let streams = async {
                while let Ok((mut s, _)) = tcp.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.split();
                        if w.write_all(format!("{name} ").as_bytes()).await.is_ok() {
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                    });
                }
            };
            tokio::join!(datagrams, streams);
        });
        return (addr, task);
    }
}

/// Sends `msg` from `client` to the listener and returns the reply, checking it comes from the
/// listener's address.
async fn udp_round_trip(client: &tokio::net::UdpSocket, port: u16, msg: &str) -> String {
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    let mut buf = [0u8; 2048];
    // Datagrams may be lost: send again until a reply comes.
    for _ in 0..20 {
        client.send_to(msg.as_bytes(), listener).await.unwrap();
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(250), client.recv_from(&mut buf)).await
        {
            let (n, from) = r.unwrap();
            assert_eq!(
                from, listener,
                "the reply comes from the listener's address"
            );
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    panic!("no reply to {msg:?} through UDP port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_listeners_keep_one_target_per_client_flow() {
    let ((a_addr, a), (b_addr, b)) = (udp_echo("a").await, udp_echo("b").await);
    let mut g = TargetGroupConfig {
        targets: vec![target(a_addr), target(b_addr)],
        ..group("udp", &[], &[])
    };
    g.target_group.protocol = "UDP".into();
    g.target_group.health_check = HealthCheck {
        protocol: "TCP".into(),
        path: None,
        matcher: None,
        ..health_check(1)
    };
    let (p, port) = proxy_forwarding_to(LoadBalancerType::Network, "UDP", &g);
    eventually(5, "both targets healthy", || {
        let p = p.clone();
        async move {
            p.report().target_groups[0]
                .targets
                .iter()
                .all(|t| t.state == TargetHealthState::Healthy)
        }
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..6 {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = udp_round_trip(&client, port, &format!("hello {i}")).await;
        let (name, rest) = first.split_once(' ').unwrap();
        assert_eq!(rest, format!("hello {i}"));
        // The client's later datagrams stay on its flow's target.
        for k in 0..3 {
            let again = udp_round_trip(&client, port, &format!("more {i}.{k}")).await;
            assert_eq!(again, format!("{name} more {i}.{k}"));
        }
        seen.insert(name.to_owned());
    }
    assert_eq!(
        seen.len(),
        2,
        "new flows are spread over both targets: {seen:?}"
    );
    // Target a leaves the group: its flows close and the clients' next datagrams open flows
    // to b.
    let mut on_a = None;
    while on_a.is_none() {
        let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if udp_round_trip(&c, port, "which").await == "a which" {
            on_a = Some(c);
        }
    }
    let on_a = &on_a.unwrap();
    let mut only_b = g.clone();
    only_b.targets = vec![target(b_addr)];
    p.apply(&config(
        LoadBalancerType::Network,
        vec![listener(port, "UDP", forward(&[(&only_b, 1)]), vec![])],
        vec![only_b],
    ));
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(udp_round_trip(&client, port, "new").await, "b new");
    eventually(10, "the flow to the removed target closed", || async move {
        udp_round_trip(on_a, port, "moved").await == "b moved"
    })
    .await;
    // Closing the listener closes its flows (and frees the port).
    p.apply(&config(LoadBalancerType::Network, vec![], vec![]));
    assert!(p.listening_ports().is_empty());
    eventually(5, "the UDP port free again", || async move {
        std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
    })
    .await;
    a.abort();
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_udp_listeners_serve_both_on_one_port() {
    let (addr, echo) = udp_echo("both").await;
    let mut g = TargetGroupConfig {
        targets: vec![target(addr)],
        ..group("tcpudp", &[], &[])
    };
    g.target_group.protocol = "TCP_UDP".into();
    g.target_group.health_check.protocol = "TCP".into();
    let (p, port) = proxy_forwarding_to(LoadBalancerType::Network, "TCP_UDP", &g);
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(
        udp_round_trip(&client, port, "datagram").await,
        "both datagram"
    );
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"stream").await.unwrap();
    let mut buf = vec![0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"both stream");
    drop(p);
    echo.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_targets_reach_the_application_load_balancer_served_by_the_same_proxy() {
    let web = backend("web").await;
    let g_web = group("web", &[], &[&web]);
    let (alb_port, nlb_port) = (free_port(), free_port());
    let mut cfg = config(
        LoadBalancerType::Application,
        vec![listener(alb_port, "HTTP", forward(&[(&g_web, 1)]), vec![])],
        vec![g_web.clone()],
    );
    let alb_arn = "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/lb/0";
    cfg.load_balancers[0].arn = alb_arn.into();
    let mut g_alb = group("to-alb", &[], &[]);
    g_alb.target_group.protocol = "TCP".into();
    g_alb.target_group.target_type = "alb".into();
    g_alb.target_group.port = Some(alb_port);
    g_alb.targets = vec![Target {
        id: alb_arn.into(),
        port: alb_port,
        address: None,
        availability_zone: None,
        registered_at: 0,
        draining_until: None,
    }];
    let mut nlb = config(
        LoadBalancerType::Network,
        vec![listener(nlb_port, "TCP", forward(&[(&g_alb, 1)]), vec![])],
        vec![g_alb.clone()],
    )
    .load_balancers
    .remove(0);
    nlb.arn = "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/net/nlb/1".into();
    cfg.load_balancers.push(nlb);
    cfg.target_groups.push(g_alb.clone());
    // Bound on every address: the proxy reaches its own listener on loopback.
    let p = Proxy::new("0.0.0.0".parse().unwrap(), "test-proxy");
    p.apply(&cfg);
    let c = client();
    eventually(
        5,
        "the NLB port reaches the backend through the ALB",
        || {
            let c = c.clone();
            async move {
                let (status, _, body) = get(&c, nlb_port, "/hello", &[]).await;
                status == 200 && body.contains("web")
            }
        },
    )
    .await;
    assert!(web.hits.load(Ordering::Relaxed) >= 1);
    let alb_group = g_alb.target_group.arn.clone();
    eventually(5, "the ALB target passes its HTTP checks", || {
        let (p, alb_group) = (p.clone(), alb_group.clone());
        async move {
            p.report().target_groups.iter().any(|g| {
                g.target_group_arn == alb_group
                    && g.targets.len() == 1
                    && g.targets[0].state == TargetHealthState::Healthy
            })
        }
    })
    .await;
}

/// A TCP echo server on 127.0.0.1: its address and task.
async fn tcp_echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = echo.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = echo.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

async fn echo_round(s: &mut tokio::net::TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_flows_are_closed_after_the_listener_idle_timeout_and_counted() {
    let (echo_addr, task) = tcp_echo().await;
    let mut g = TargetGroupConfig {
        targets: vec![target(echo_addr)],
        ..group("tcp", &[], &[])
    };
    g.target_group.protocol = "TCP".into();
    g.target_group.health_check.protocol = "TCP".into();
    let port = free_port();
    let mut l = listener(port, "TCP", forward(&[(&g, 1)]), vec![]);
    // The API takes 60 to 6000 s, as AWS; the proxy honours whatever it is given.
    l.attributes
        .insert("tcp.idle_timeout.seconds".into(), "1".into());
    let metrics = Arc::new(gantry_lb::metrics::LbMetrics::default());
    let p = Proxy::with_metrics("127.0.0.1".parse().unwrap(), "test-proxy", metrics.clone());
    p.apply(&config(LoadBalancerType::Network, vec![l], vec![g.clone()]));

    // A flow with a byte every 300 ms outlives the timeout.
    let mut busy = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    echo_round(&mut idle, b"hello").await;
    let started = Instant::now();
    for _ in 0..8 {
        echo_round(&mut busy, b"x").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    echo_round(&mut busy, b"still here").await;
    // The idle one was closed: its read ends (EOF or reset) without data.
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the idle flow is closed");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));

    let w = metrics.usage().take_load_balancers(0);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].load_balancer_arn, "arn:lb");
    let tcp = &w[0].flows[0];
    assert_eq!((tcp.protocol.as_str(), tcp.new, tcp.active), ("TCP", 2, 2));
    // Both ways: 5 + 8 + 10 bytes each way.
    assert_eq!(tcp.bytes, 2 * (5 + 8 + 10));
    drop(busy);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_made_here_are_counted_on_the_load_balancer() {
    let empty = group("empty", &[], &[]);
    let port = free_port();
    let fixed = |code: u16| Action::FixedResponse {
        order: None,
        status_code: code,
        content_type: Some("text/plain".into()),
        message_body: Some("no".into()),
    };
    let l = listener(
        port,
        "HTTP",
        fixed(404),
        vec![
            rule(1, "path-pattern", &["/down"], fixed(503)),
            rule(2, "path-pattern", &["/empty"], forward(&[(&empty, 1)])),
        ],
    );
    let metrics = Arc::new(gantry_lb::metrics::LbMetrics::default());
    let p = Proxy::with_metrics("127.0.0.1".parse().unwrap(), "test-proxy", metrics.clone());
    p.apply(&config(
        LoadBalancerType::Application,
        vec![l],
        vec![empty.clone()],
    ));
    let c = client();
    for (path, want) in [("/", 404), ("/x", 404), ("/down", 503), ("/empty", 503)] {
        assert_eq!(get(&c, port, path, &[]).await.0, want, "{path}");
    }
    let w = metrics.usage().take_load_balancers(0);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].elb_codes, [0, 2, 2]);
    assert_eq!(w[0].elb_5xx, [0, 0, 2, 0]);
    assert_eq!(w[0].fixed_responses, 3);
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_response_headers_are_set_on_every_answer() {
    let web = backend("web").await;
    let g = group("web", &[], &[&web]);
    let empty = group("empty", &[], &[]);
    let port = free_port();
    let mut l = listener(
        port,
        "HTTP",
        forward(&[(&g, 1)]),
        vec![
            rule(
                1,
                "path-pattern",
                &["/fixed"],
                Action::FixedResponse {
                    order: None,
                    status_code: 200,
                    content_type: Some("text/plain".into()),
                    message_body: Some("fixed".into()),
                },
            ),
            rule(2, "path-pattern", &["/empty"], forward(&[(&empty, 1)])),
        ],
    );
    for (k, v) in [
        ("x_frame_options", "DENY"),
        ("strict_transport_security", "max-age=600"),
        ("access_control_allow_origin", "*"),
        ("content_security_policy", ""),
    ] {
        l.attributes
            .insert(format!("routing.http.response.{k}.header_value"), v.into());
    }
    let p = proxy();
    let cfg = config(
        LoadBalancerType::Application,
        vec![l.clone()],
        vec![g.clone(), empty.clone()],
    );
    p.apply(&cfg);
    let c = client();
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    for path in ["/", "/fixed", "/empty"] {
        for (c, version) in [(&c, "1.1"), (&h2, "2")] {
            let (status, h, _) = get(c, port, path, &[]).await;
            assert_eq!(status, if path == "/empty" { 503 } else { 200 });
            assert_eq!(h["x-frame-options"], "DENY", "{path} HTTP/{version}");
            assert_eq!(h["strict-transport-security"], "max-age=600");
            assert_eq!(h["access-control-allow-origin"], "*");
            assert!(!h.contains_key("content-security-policy"));
            if path == "/empty" {
                assert_eq!(h["server"], "awselb/2.0");
            }
        }
    }
    // The load balancer's own Server header can be turned off.
    l.attributes.insert(
        "routing.http.response.server.enabled".into(),
        "false".into(),
    );
    p.apply(&config(
        LoadBalancerType::Application,
        vec![l],
        vec![g, empty],
    ));
    for c in [&c, &h2] {
        let (status, h, _) = get(c, port, "/empty", &[]).await;
        assert_eq!(status, 503);
        assert!(!h.contains_key("server"), "{h:?}");
        assert_eq!(h["x-frame-options"], "DENY");
    }
}
