//! Property test of the load balancer's HTTP/1 request-head path (parse, checks, routing, the
//! target's head): with arbitrary and hostile heads it answers, refuses or forwards, never
//! panics, and allocates at most a bounded multiple of its input (the global allocator is capped
//! around every call, so an allocation beyond the budget aborts the test). A refusal is a 4xx
//! status line; a forwarded head is well formed: CRLF line endings, one `host`.
//!
//! Bounded in time: a few thousand cases, heads up to a few KiB, a few seconds in a debug build.

#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;

use cap::Cap;
use gantry_domain::lb::*;
use gantry_lb::{Http1Plan, Proxy};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Runs `f` with at most `budget` more bytes allocatable; past it, the allocation fails and the
/// process aborts.
fn within<T>(budget: usize, f: impl FnOnce() -> T) -> T {
    ALLOCATOR
        .set_limit(ALLOCATOR.allocated().saturating_add(budget))
        .unwrap();
    let out = std::panic::catch_unwind(AssertUnwindSafe(f));
    ALLOCATOR.set_limit(usize::MAX).unwrap();
    match out {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn group() -> TargetGroupConfig {
    TargetGroupConfig {
        target_group: TargetGroup {
            arn: "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/g/g0000".into(),
            name: "g".into(),
            id: "g0000".into(),
            protocol: "HTTP".into(),
            port: Some(80),
            target_type: "ip".into(),
            vpc_id: None,
            protocol_version: None,
            ip_address_type: "ipv4".into(),
            health_check: HealthCheck {
                enabled: false,
                protocol: "HTTP".into(),
                port: "traffic-port".into(),
                path: Some("/health".into()),
                interval_seconds: 300,
                timeout_seconds: 1,
                healthy_threshold: 2,
                unhealthy_threshold: 2,
                matcher: Some("200".into()),
            },
            attributes: [
                ("stickiness.enabled", "true"),
                ("stickiness.type", "lb_cookie"),
            ]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
            tags: vec![],
            created_at: 0,
        },
        targets: vec![Target {
            id: "127.0.0.1".into(),
            port: 9,
            address: None,
            availability_zone: None,
            registered_at: 0,
            draining_until: None,
        }],
    }
}

fn rule(priority: u32, field: &str, values: &[&str], header: Option<&str>, action: Action) -> Rule {
    Rule {
        arn: format!("arn:rule/{priority}"),
        id: format!("r{priority}"),
        priority,
        conditions: vec![RuleCondition {
            field: field.into(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            http_header_name: header.map(str::to_owned),
            query_strings: if field == "query-string" {
                vec![QueryStringMatch {
                    key: Some("k".into()),
                    value: "v*".into(),
                }]
            } else {
                vec![]
            },
        }],
        actions: vec![action],
        tags: vec![],
    }
}

/// A proxy with one HTTP listener whose rules use every condition type and every action.
fn proxy(port: u16) -> Proxy {
    let g = group();
    let forward = Action::Forward {
        order: None,
        target_group_arn: None,
        target_groups: vec![WeightedTargetGroup {
            target_group_arn: g.target_group.arn.clone(),
            weight: 1,
        }],
        stickiness: GroupStickiness {
            enabled: true,
            duration_seconds: Some(60),
        },
    };
    let fixed = Action::FixedResponse {
        order: None,
        status_code: 418,
        content_type: Some("text/plain".into()),
        message_body: Some("tea".into()),
    };
    let redirect = Action::Redirect {
        order: None,
        redirect: Redirect {
            protocol: "#{protocol}".into(),
            port: "#{port}".into(),
            host: "x.#{host}".into(),
            path: "/r#{path}".into(),
            query: "#{query}&r=1".into(),
            status_code: "HTTP_302".into(),
        },
    };
    let listener = Listener {
        arn: format!("arn:listener/{port}"),
        id: format!("l{port}"),
        port,
        protocol: "HTTP".into(),
        default_actions: vec![forward.clone()],
        default_rule_id: "d".into(),
        rules: vec![
            rule(1, "host-header", &["*.example.com"], None, fixed.clone()),
            rule(2, "path-pattern", &["/r/*"], None, redirect),
            rule(3, "http-header", &["a*"], Some("X-R"), fixed.clone()),
            rule(4, "http-request-method", &["DELETE"], None, fixed.clone()),
            rule(5, "query-string", &[], None, fixed),
            rule(6, "source-ip", &["10.0.0.0/8"], None, forward),
        ],
        tags: vec![],
        certificates: vec![],
        ssl_policy: None,
        attributes: Default::default(),
    };
    let p = Proxy::new("127.0.0.1".parse().unwrap(), "fuzz");
    p.apply(&LbConfig {
        region: "us-east-1".into(),
        revision: 1,
        generated_at: 0,
        load_balancers: vec![LoadBalancer {
            arn: "arn:lb".into(),
            name: "lb".into(),
            id: "0".into(),
            lb_type: LoadBalancerType::Application,
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
            listeners: vec![listener],
        }],
        target_groups: vec![g],
        certificates: vec![],
    });
    p
}

/// Request heads: plausible ones (every target form, the framing and hop-by-hop headers, line
/// endings CRLF or bare LF), then cut short, with bytes spliced in, or replaced by random bytes.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("HEAD".to_owned()),
        Just("DELETE".to_owned()),
        Just("CONNECT".to_owned()),
        Just("PRI".to_owned()),
        "[A-Z]{1,8}",
    ];
    let target = prop_oneof![
        "/[a-z/%?=&#.*]{0,30}",
        "http://[a-z.]{1,12}(:[0-9]{1,6})?/[a-z/?=]{0,12}",
        "https?://[a-z@:.\\[\\]]{0,16}[/?#]?[a-z]{0,6}",
        Just("*".to_owned()),
        "[ -~]{0,20}",
    ];
    let header = prop_oneof![
        "Host: [a-z.:\\[\\]0-9]{0,20}",
        "Content-Length: [0-9 ,+-]{0,22}",
        "Transfer-Encoding: (chunked|gzip|identity)(, ?(chunked|gzip))?",
        "Connection: (close|keep-alive|upgrade|X-A)(, ?(close|keep-alive|X-B))?",
        Just("Upgrade: websocket".to_owned()),
        Just("Expect: 100-continue".to_owned()),
        "Cookie: AWSALB=[a-z0-9|:.]{0,24}; AWSALBTG=[a-z0-9]{0,8}",
        "X-Forwarded-For: [0-9., ]{0,30}",
        "X-R: [a-z]{0,8}",
        "X-Amzn-Trace-Id: [ -~]{0,20}",
        "[!-9;-~]{1,12}: ?[ -~]{0,30}",
    ];
    let plausible = (
        method,
        target,
        prop_oneof![
            Just("HTTP/1.1".to_owned()),
            Just("HTTP/1.0".to_owned()),
            "HTTP/[0-9.]{1,4}"
        ],
        prop::collection::vec((header, any::<bool>()), 0..12),
        any::<bool>(),
    )
        .prop_map(|(m, t, v, headers, lf)| {
            let mut h = format!("{m} {t} {v}\r\n");
            for (line, bare) in headers {
                h.push_str(&line);
                h.push_str(if bare && lf { "\n" } else { "\r\n" });
            }
            h.push_str("\r\n");
            h.into_bytes()
        });
    (
        plausible,
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..16),
        prop::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(mut h, at, junk, random)| {
            match at % 5 {
                0 | 1 => {}
                2 => h.truncate(at as usize % (h.len() + 1)),
                3 => {
                    let at = at as usize % (h.len() + 1);
                    h.splice(at..at, junk);
                }
                _ => return random,
            }
            h
        })
}

#[test]
fn request_heads_error_never_panic_and_stay_bounded() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = proxy(port);
    let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    let seen: [std::cell::Cell<usize>; 4] = Default::default();
    runner
        .run(&head(), |buf| {
            let mut out = Vec::with_capacity(4096);
            let plan = within(64 * buf.len() + (1 << 20), || {
                p.plan_http1(peer, port, &buf, &mut out)
            });
            let text = String::from_utf8_lossy(&out);
            match plan {
                Http1Plan::Partial => {
                    seen[0].set(seen[0].get() + 1);
                    prop_assert!(out.is_empty());
                }
                Http1Plan::Refused => {
                    seen[1].set(seen[1].get() + 1);
                    prop_assert!(text.starts_with("HTTP/1.1 4"), "refusals are 4xx: {text:?}");
                }
                Http1Plan::Answered => {
                    seen[2].set(seen[2].get() + 1);
                    prop_assert!(text.starts_with("HTTP/1.1 "), "{text:?}");
                }
                Http1Plan::Forward => {
                    seen[3].set(seen[3].get() + 1);
                    // Every head forwarded ended its lines with CRLF.
                    let head = &buf[..buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4];
                    prop_assert!(
                        !head
                            .iter()
                            .enumerate()
                            .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r')),
                        "bare LF forwarded: {:?}",
                        String::from_utf8_lossy(&buf)
                    );
                    prop_assert!(text.ends_with("\r\n\r\n"), "{text:?}");
                    let hosts = text
                        .split("\r\n")
                        .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
                        .count();
                    prop_assert_eq!(hosts, 1, "{:?}", text);
                    prop_assert!(!text.contains("\r\n\r\n\r\n"));
                }
            }
            Ok(())
        })
        .unwrap();
    // The strategy reaches every outcome.
    let seen: Vec<usize> = seen.iter().map(std::cell::Cell::get).collect();
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    p.close();
}
