//! Active health checks: one task per target, on the target group's interval.
//!
//! HTTP checks `GET <path>` on a fresh connection (port: the target's, or the fixed health-check
//! port) and compare the status with the matcher; TCP checks only connect. Transitions: a new
//! target becomes healthy after one passing check and unhealthy after `unhealthy_threshold`
//! failures; afterwards `healthy_threshold` consecutive passes / `unhealthy_threshold`
//! consecutive failures flip it. A passing check also clears passive failure marks. Becoming
//! healthy starts the target's slow start ([`Group::begin_slow_start`]). Draining targets are
//! not checked. HTTPS health checks are made as TCP checks (no TLS client).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use gantry_domain::lb::HealthCheck;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use crate::balancer::{Group, Health, TargetRt, now_ms};

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Pass,
    /// Reason code and description.
    Fail(&'static str, String),
}

/// Health-check HTTP client: no connection reuse, so every check opens a connection as AWS does.
pub fn checker_client() -> Client<HttpConnector, Empty<Bytes>> {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(c)
}

/// Whether `status` matches a matcher such as `200`, `200,202` or `200-299`.
pub fn matcher_accepts(matcher: &str, status: u16) -> bool {
    matcher.split(',').any(|part| match part.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.trim().parse::<u16>(), b.trim().parse::<u16>());
            matches!((a, b), (Ok(a), Ok(b)) if (a..=b).contains(&status))
        }
        None => part.trim().parse::<u16>() == Ok(status),
    })
}

fn check_address(t: &TargetRt, hc: &HealthCheck) -> String {
    let addr = t.addr.load();
    match hc.port.parse::<u16>() {
        Ok(p) => match addr.rsplit_once(':') {
            Some((host, _)) => format!("{host}:{p}"),
            None => addr.to_string(),
        },
        Err(_) => addr.to_string(),
    }
}

/// Runs one check of `t`.
pub async fn check_once(
    client: &Client<HttpConnector, Empty<Bytes>>,
    t: &TargetRt,
    hc: &HealthCheck,
) -> CheckResult {
    let addr = check_address(t, hc);
    let timeout = Duration::from_secs(u64::from(hc.timeout_seconds.max(1)));
    if hc.protocol != "HTTP" {
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => CheckResult::Pass,
            Ok(Err(e)) => CheckResult::Fail(
                "Target.FailedHealthChecks",
                format!("Health checks failed: {e}"),
            ),
            Err(_) => CheckResult::Fail("Target.Timeout", "Request timed out".into()),
        };
    }
    let path = hc.path.as_deref().unwrap_or("/");
    let uri = format!("http://{addr}{path}");
    let req = match http::Request::get(uri)
        .header(http::header::USER_AGENT, "ELB-HealthChecker/2.0")
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return CheckResult::Fail("Target.FailedHealthChecks", e.to_string()),
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => CheckResult::Fail("Target.Timeout", "Request timed out".into()),
        Ok(Err(e)) => CheckResult::Fail(
            "Target.FailedHealthChecks",
            format!("Health checks failed: {e}"),
        ),
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            if matcher_accepts(hc.matcher.as_deref().unwrap_or("200"), status) {
                CheckResult::Pass
            } else {
                CheckResult::Fail(
                    "Target.ResponseCodeMismatch",
                    format!("Health checks failed with these codes: [{status}]"),
                )
            }
        }
    }
}

/// Checks `t` forever on its group's interval; notifies `changed` on every state change.
pub async fn run_checks(
    group: Arc<Group>,
    t: Arc<TargetRt>,
    client: Client<HttpConnector, Empty<Bytes>>,
    changed: Arc<Notify>,
) {
    let (mut passes, mut fails) = (0u32, 0u32);
    loop {
        let settings = group.settings.load_full();
        let hc = &settings.health_check;
        let interval = Duration::from_secs(u64::from(hc.interval_seconds.max(1)));
        if hc.enabled && !t.is_draining() {
            match check_once(&client, &t, hc).await {
                CheckResult::Pass => {
                    passes += 1;
                    fails = 0;
                    t.avoid_until.store(0, Ordering::Relaxed);
                    let needed = match t.health() {
                        Health::Initial => 1,
                        _ => hc.healthy_threshold,
                    };
                    if passes >= needed && t.health() != Health::Healthy {
                        // Slow start begins before the target counts as healthy, so that no
                        // pick sees it healthy without it.
                        group.begin_slow_start(&t, now_ms());
                    }
                    if passes >= needed && t.set_health(Health::Healthy, None) {
                        tracing::info!(target = %t.key, group = %group.arn, "target healthy");
                        changed.notify_one();
                    }
                }
                CheckResult::Fail(reason, description) => {
                    fails += 1;
                    passes = 0;
                    if fails >= hc.unhealthy_threshold {
                        let was = t.health();
                        if t.set_health(Health::Unhealthy, Some((reason.to_owned(), description))) {
                            tracing::info!(target = %t.key, group = %group.arn, from = ?was, reason, "target unhealthy");
                            changed.notify_one();
                        }
                    }
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        assert!(matcher_accepts("200", 200));
        assert!(!matcher_accepts("200", 201));
        assert!(matcher_accepts("200,202", 202));
        assert!(matcher_accepts("200-299", 204));
        assert!(!matcher_accepts("200-299", 301));
    }
}
