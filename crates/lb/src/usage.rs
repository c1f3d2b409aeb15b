//! Traffic for the control plane's `AWS/ApplicationELB` and `AWS/NetworkELB` metrics. The
//! request path only bumps atomics of its target group ([`GroupUsage`]): requests, the targets'
//! response classes and the targets' response times, and of its load balancer ([`LbUsage`]):
//! the answers made here (fixed responses, redirects, error pages) and the network flows
//! (opened, most open at once, bytes). Response times are kept as
//! counts per value rounded down to three significant digits of a microsecond (exact below a
//! millisecond), so percentiles stay within 1 % and memory stays bounded whatever the traffic.
//! Every window (a minute by default, as ELB publishes) [`report_forever`] takes the counts,
//! adds each group's healthy and unhealthy targets as this proxy's health checks see them, and
//! posts them to `POST /lb/v1/metrics` ([`UsageReport`]).
//!
//! Back-pressure: windows that could not be delivered stay queued and go with the next post, at
//! most [`MAX_PENDING`] of them (the oldest are dropped past that, with a warning), at most
//! [`MAX_PER_REPORT`] per post.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_domain::lb::{FlowUsage, LbUsageWindow, TargetHealthState, UsageReport, UsageWindow};
use parking_lot::Mutex;

use crate::{ControlClient, Proxy};

/// Microseconds below this are kept exactly.
const EXACT: u64 = 1000;
/// Decades above [`EXACT`] kept at three significant digits (up to about 28 hours).
const DECADES: u64 = 8;
const SLOTS: usize = (EXACT + DECADES * 900) as usize;

/// Most windows waiting for delivery.
pub const MAX_PENDING: usize = 50_000;
/// Most windows in one post.
pub const MAX_PER_REPORT: usize = 1000;

/// The slot of a response time in microseconds.
fn slot(micros: u64) -> usize {
    if micros < EXACT {
        return micros as usize;
    }
    let (mut m, mut e) = (micros, 0u64);
    while m >= 1000 {
        m /= 10;
        e += 1;
    }
    if e > DECADES {
        return SLOTS - 1;
    }
    (EXACT + (e - 1) * 900 + (m - 100)) as usize
}

/// The value (seconds) a slot stands for.
fn slot_seconds(slot: usize) -> f64 {
    let s = slot as u64;
    if s < EXACT {
        return s as f64 / 1e6;
    }
    let k = s - EXACT;
    let (e, m) = (k / 900 + 1, k % 900 + 100);
    (m * 10u64.pow(e as u32)) as f64 / 1e6
}

/// One target group's counts since the last window.
#[derive(Debug)]
pub struct GroupUsage {
    requests: AtomicU64,
    codes: [AtomicU64; 4],
    timed: AtomicU64,
    times: Box<[AtomicU64]>,
}

impl Default for GroupUsage {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            codes: Default::default(),
            timed: AtomicU64::new(0),
            times: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl GroupUsage {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A target's response head (`status`) arrived `elapsed` after forwarding began.
    pub fn responded(&self, elapsed: Duration, status: u16) {
        if let Some(c) = (status / 100)
            .checked_sub(2)
            .and_then(|i| self.codes.get(usize::from(i)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.times[slot(micros)].fetch_add(1, Ordering::Relaxed);
        self.timed.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the counts into a window (without the health counts); `None` when idle.
    fn take(&self, start: i64, arn: &str) -> Option<UsageWindow> {
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let mut w = UsageWindow {
            start,
            target_group_arn: arn.to_owned(),
            requests: take(&self.requests),
            target_codes: [
                take(&self.codes[0]),
                take(&self.codes[1]),
                take(&self.codes[2]),
                take(&self.codes[3]),
            ],
            ..Default::default()
        };
        if take(&self.timed) > 0 {
            w.response_times = self
                .times
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let n = take(c);
                    (n > 0).then(|| (slot_seconds(i), n))
                })
                .collect();
        }
        let busy =
            w.requests > 0 || w.target_codes.iter().any(|c| *c > 0) || !w.response_times.is_empty();
        busy.then_some(w)
    }
}

/// The protocols of a network load balancer's flows, as its metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowProtocol {
    Tcp = 0,
    Tls = 1,
    Udp = 2,
}

const FLOW_PROTOCOLS: [&str; 3] = ["TCP", "TLS", "UDP"];

/// One protocol's flows since the last window.
#[derive(Debug, Default)]
struct FlowCounts {
    active: AtomicU64,
    peak: AtomicU64,
    new: AtomicU64,
    bytes: AtomicU64,
}

/// One load balancer's counts since the last window: the HTTP answers made here and the
/// network flows.
#[derive(Debug, Default)]
pub struct LbUsage {
    /// 3XX, 4XX, 5XX.
    classes: [AtomicU64; 3],
    /// 500, 502, 503, 504.
    server: [AtomicU64; 4],
    fixed: AtomicU64,
    redirects: AtomicU64,
    flows: [FlowCounts; 3],
}

impl LbUsage {
    /// An HTTP answer with `status` made by the load balancer itself.
    pub fn answered(&self, status: u16) {
        if let Some(c) = (status / 100)
            .checked_sub(3)
            .and_then(|i| self.classes.get(usize::from(i)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(i) = [500, 502, 503, 504].iter().position(|s| *s == status) {
            self.server[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A fixed-response action answered `status`.
    pub fn fixed_response(&self, status: u16) {
        self.fixed.fetch_add(1, Ordering::Relaxed);
        self.answered(status);
    }

    /// A redirect action answered `status`.
    pub fn redirect(&self, status: u16) {
        self.redirects.fetch_add(1, Ordering::Relaxed);
        self.answered(status);
    }

    /// A flow opens; it stays counted as active until the guard drops.
    pub fn flow(self: &Arc<Self>, protocol: FlowProtocol) -> FlowGuard {
        let f = &self.flows[protocol as usize];
        f.new.fetch_add(1, Ordering::Relaxed);
        let now = f.active.fetch_add(1, Ordering::Relaxed) + 1;
        f.peak.fetch_max(now, Ordering::Relaxed);
        FlowGuard {
            lb: self.clone(),
            protocol,
        }
    }

    /// Bytes of a flow, either way.
    pub fn bytes(&self, protocol: FlowProtocol, n: u64) {
        self.flows[protocol as usize]
            .bytes
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Takes the counts into a window; `None` when nothing happened and no flow is open.
    fn take(&self, start: i64, arn: &str) -> Option<LbUsageWindow> {
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let mut w = LbUsageWindow {
            start,
            load_balancer_arn: arn.to_owned(),
            elb_codes: [
                take(&self.classes[0]),
                take(&self.classes[1]),
                take(&self.classes[2]),
            ],
            elb_5xx: [
                take(&self.server[0]),
                take(&self.server[1]),
                take(&self.server[2]),
                take(&self.server[3]),
            ],
            fixed_responses: take(&self.fixed),
            redirects: take(&self.redirects),
            flows: Vec::new(),
        };
        for (f, name) in self.flows.iter().zip(FLOW_PROTOCOLS) {
            // The peak of the next window starts from the flows open now.
            let active = f.active.load(Ordering::Relaxed);
            let peak = f.peak.swap(active, Ordering::Relaxed).max(active);
            let (new, bytes) = (take(&f.new), take(&f.bytes));
            if peak > 0 || new > 0 || bytes > 0 {
                w.flows.push(FlowUsage {
                    protocol: name.to_owned(),
                    active: peak,
                    new,
                    bytes,
                });
            }
        }
        let busy = w.elb_codes.iter().any(|c| *c > 0)
            || w.fixed_responses > 0
            || w.redirects > 0
            || !w.flows.is_empty();
        busy.then_some(w)
    }
}

/// An open flow of a network load balancer (see [`LbUsage::flow`]).
#[derive(Debug)]
pub struct FlowGuard {
    lb: Arc<LbUsage>,
    protocol: FlowProtocol,
}

impl FlowGuard {
    pub fn usage(&self) -> &Arc<LbUsage> {
        &self.lb
    }

    pub fn protocol(&self) -> FlowProtocol {
        self.protocol
    }
}

impl Drop for FlowGuard {
    fn drop(&mut self) {
        self.lb.flows[self.protocol as usize]
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A flow's client stream, counting the bytes either way into its load balancer and noting
/// when the last one passed (for the listener's idle timeout).
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    flow: FlowGuard,
    last: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, flow: FlowGuard) -> Self {
        Self {
            inner,
            flow,
            last: Arc::new(AtomicU64::new(crate::balancer::now_ms())),
        }
    }

    /// Epoch ms of the last byte either way (at first, when the flow opened).
    pub fn activity(&self) -> Arc<AtomicU64> {
        self.last.clone()
    }

    fn count(&self, n: usize) {
        if n > 0 {
            self.flow.lb.bytes(self.flow.protocol, n as u64);
            self.last
                .fetch_max(crate::balancer::now_ms(), Ordering::Relaxed);
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = r {
            this.count(buf.filled().len() - before);
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            this.count(n);
        }
        r
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = r {
            this.count(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Every target group's and load balancer's counts.
#[derive(Debug, Default)]
pub struct Usage {
    groups: Mutex<HashMap<String, Arc<GroupUsage>>>,
    load_balancers: Mutex<HashMap<String, Arc<LbUsage>>>,
}

impl Usage {
    /// The counts of the group `arn` (shared by every clone of its handles).
    pub fn group(&self, arn: &str) -> Arc<GroupUsage> {
        self.groups
            .lock()
            .entry(arn.to_owned())
            .or_default()
            .clone()
    }

    /// The counts of the load balancer `arn`.
    pub fn load_balancer(&self, arn: &str) -> Arc<LbUsage> {
        self.load_balancers
            .lock()
            .entry(arn.to_owned())
            .or_default()
            .clone()
    }

    /// The load balancers' windows since the last call, starting at `start`: one per load
    /// balancer with answers made here or flows. Idle ones no longer served are forgotten.
    pub fn take_load_balancers(&self, start: i64) -> Vec<LbUsageWindow> {
        let mut lbs = self.load_balancers.lock();
        let mut out = Vec::new();
        lbs.retain(|arn, u| match u.take(start, arn) {
            Some(w) => {
                out.push(w);
                true
            }
            None => Arc::strong_count(u) > 1,
        });
        out.sort_by(|a, b| a.load_balancer_arn.cmp(&b.load_balancer_arn));
        out
    }

    /// The windows since the last call, starting at `start` (seconds): one per group with
    /// traffic or with targets in `health` ((healthy, unhealthy) per group ARN). Groups idle
    /// and no longer served are forgotten.
    pub fn take(&self, start: i64, health: &HashMap<String, (u32, u32)>) -> Vec<UsageWindow> {
        let groups: Vec<(String, Arc<GroupUsage>)> = self
            .groups
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = Vec::new();
        let mut idle = Vec::new();
        for (arn, g) in &groups {
            let counted = g.take(start, arn);
            let h = health.get(arn);
            match (counted, h) {
                (Some(mut w), h) => {
                    if let Some((healthy, unhealthy)) = h {
                        w.healthy = *healthy;
                        w.unhealthy = *unhealthy;
                    }
                    out.push(w);
                }
                (None, Some((healthy, unhealthy))) => out.push(UsageWindow {
                    start,
                    target_group_arn: arn.clone(),
                    healthy: *healthy,
                    unhealthy: *unhealthy,
                    ..Default::default()
                }),
                (None, None) => idle.push(arn.clone()),
            }
        }
        for (arn, (healthy, unhealthy)) in health {
            if !groups.iter().any(|(a, _)| a == arn) {
                out.push(UsageWindow {
                    start,
                    target_group_arn: arn.clone(),
                    healthy: *healthy,
                    unhealthy: *unhealthy,
                    ..Default::default()
                });
            }
        }
        if !idle.is_empty() {
            let mut groups = self.groups.lock();
            for arn in idle {
                // Only when no request path holds it any more.
                if groups.get(&arn).is_some_and(|g| Arc::strong_count(g) == 1) {
                    groups.remove(&arn);
                }
            }
        }
        out.sort_by(|a, b| a.target_group_arn.cmp(&b.target_group_arn));
        out
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// (healthy, unhealthy) targets per group, as this proxy's health checks see them.
fn health_counts(proxy: &Proxy) -> HashMap<String, (u32, u32)> {
    proxy
        .report()
        .target_groups
        .into_iter()
        .map(|g| {
            let count = |s: TargetHealthState| g.targets.iter().filter(|t| t.state == s).count();
            (
                g.target_group_arn,
                (
                    count(TargetHealthState::Healthy) as u32,
                    count(TargetHealthState::Unhealthy) as u32,
                ),
            )
        })
        .collect()
}

/// Takes and posts a window every `every` (aligned to its multiples of wall-clock time, so
/// minute windows are calendar minutes), forever.
pub async fn report_forever(
    client: ControlClient,
    proxy: Proxy,
    usage: Arc<Usage>,
    every: Duration,
    availability_zone: Option<String>,
) {
    let every_s = every.as_secs_f64().max(0.001);
    let mut pending: VecDeque<UsageWindow> = VecDeque::new();
    let mut pending_lbs: VecDeque<LbUsageWindow> = VecDeque::new();
    let mut dropped = 0u64;
    let mut start = now_secs();
    loop {
        let now = now_secs();
        let wait = every_s - now.rem_euclid(every_s);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        let end = now_secs();
        let mut windows = usage.take(start.floor() as i64, &health_counts(&proxy));
        let zones = proxy.zone_health();
        for w in &mut windows {
            if let Some(z) = zones.get(&w.target_group_arn) {
                w.zones.clone_from(z);
            }
        }
        pending.extend(windows);
        pending_lbs.extend(usage.take_load_balancers(start.floor() as i64));
        start = end;
        while pending.len() > MAX_PENDING {
            pending.pop_front();
            dropped += 1;
        }
        while pending_lbs.len() > MAX_PENDING {
            pending_lbs.pop_front();
            dropped += 1;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "load balancer metric windows dropped: the control plane did not take them in time"
            );
            dropped = 0;
        }
        while !pending.is_empty() || !pending_lbs.is_empty() {
            let n = pending.len().min(MAX_PER_REPORT);
            let m = pending_lbs.len().min(MAX_PER_REPORT);
            let report = UsageReport {
                proxy_id: proxy.proxy_id().to_owned(),
                windows: pending.iter().take(n).cloned().collect(),
                load_balancers: pending_lbs.iter().take(m).cloned().collect(),
                availability_zone: availability_zone.clone(),
            };
            match client.report_usage(&report).await {
                Ok(()) => {
                    pending.drain(..n);
                    pending_lbs.drain(..m);
                }
                Err(e) => {
                    tracing::debug!(error = %e, pending = pending.len(), "metrics report not delivered; kept for the next window");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_down_to_three_significant_digits() {
        for (micros, want) in [
            (0u64, 0.0),
            (999, 0.000_999),
            (1000, 0.001),
            (1234, 0.001_23),
            (98_765, 0.098_7),
            (2_500_000, 2.5),
            (123_456_789, 123.0),
        ] {
            let got = slot_seconds(slot(micros));
            assert!((got - want).abs() < 1e-12, "{micros}: {got} != {want}");
        }
        assert_eq!(slot(u64::MAX), SLOTS - 1);
        // Every slot's value falls back into that slot.
        for s in 0..SLOTS {
            let micros = (slot_seconds(s) * 1e6).round() as u64;
            assert_eq!(slot(micros), s);
        }
    }

    #[test]
    fn windows_carry_the_counts_once_and_health_alone_when_idle() {
        let usage = Usage::default();
        let web = usage.group("tg/web");
        for status in [200, 204, 302, 404, 503] {
            web.request();
            web.responded(Duration::from_micros(1500), status);
        }
        web.request();
        let health = HashMap::from([("tg/web".to_owned(), (2, 1)), ("tg/api".to_owned(), (0, 0))]);
        let w = usage.take(60, &health);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].target_group_arn, "tg/web");
        assert_eq!(w[1].requests, 6);
        assert_eq!(w[1].target_codes, [2, 1, 1, 1]);
        assert_eq!(w[1].response_times, vec![(0.0015, 5)]);
        assert_eq!((w[1].healthy, w[1].unhealthy), (2, 1));
        assert_eq!(w[0].target_group_arn, "tg/api");
        assert_eq!(w[0].requests, 0);
        let again = usage.take(120, &HashMap::new());
        assert!(again.is_empty(), "{again:?}");
        // Still held by the request path: kept.
        web.request();
        assert_eq!(usage.take(180, &HashMap::new())[0].requests, 1);
    }
}
