//! Target groups at run time: targets with their health, outstanding requests and draining
//! deadline, and target selection (round robin or least outstanding requests, sticky cookies,
//! passive failure avoidance, slow start).
//!
//! Selection order: targets that are not draining and not passively failed; among them the
//! healthy ones; when none is healthy, all of them (AWS fails open the same way). No registered,
//! non-draining target at all: `None` (the proxy answers 503).
//!
//! Slow start (`slow_start.duration_seconds`): a target that becomes healthy (or, without
//! health checks, is registered) while another target is in service gets a share of new
//! requests rising linearly from nothing to its full share over the duration. The choice the
//! algorithm makes is accepted with probability `elapsed / duration` when it is in slow start,
//! otherwise the next choice in the algorithm's order is tried; when every candidate declines,
//! the first choice stands. A target alone in the pool is never held back, nor are targets
//! picked when none is healthy, nor sticky sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use gantry_domain::lb::{Target, TargetGroup, TargetHealthState};
use parking_lot::Mutex;
use rand::Rng;

use crate::metrics::GroupMetrics;
use crate::pool::UpstreamPool;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Local health of a target as this proxy's checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    Initial = 0,
    Healthy = 1,
    Unhealthy = 2,
}

impl Health {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Healthy,
            2 => Self::Unhealthy,
            _ => Self::Initial,
        }
    }

    pub fn as_state(self) -> TargetHealthState {
        match self {
            Self::Initial => TargetHealthState::Initial,
            Self::Healthy => TargetHealthState::Healthy,
            Self::Unhealthy => TargetHealthState::Unhealthy,
        }
    }
}

/// One registered target.
#[derive(Debug)]
pub struct TargetRt {
    pub id: String,
    pub port: u16,
    /// `id:port`.
    pub key: String,
    /// `host:port` to connect to.
    pub addr: ArcSwap<String>,
    /// Epoch ms; 0 when not draining.
    pub draining_until: AtomicU64,
    pub outstanding: AtomicUsize,
    health: AtomicU8,
    /// Reason code and description of the last failed check.
    pub reason: Mutex<Option<(String, String)>>,
    /// Passive failure: skipped until this epoch ms.
    pub avoid_until: AtomicU64,
    /// Epoch ms its slow start began (it became healthy, or was registered when the group has
    /// no health checks); 0: not in slow start.
    pub healthy_since: AtomicU64,
    /// The active health-check task.
    pub checker: Mutex<Option<tokio::task::AbortHandle>>,
    /// Idle keep-alive connections to this target.
    pub pool: UpstreamPool,
    /// The availability zone it was registered in, when known.
    pub zone: Mutex<Option<String>>,
}

impl TargetRt {
    pub fn new(t: &Target) -> Self {
        Self {
            id: t.id.clone(),
            port: t.port,
            key: t.key(),
            addr: ArcSwap::from_pointee(t.connect_address()),
            draining_until: AtomicU64::new(t.draining_until.unwrap_or(0)),
            outstanding: AtomicUsize::new(0),
            health: AtomicU8::new(Health::Initial as u8),
            reason: Mutex::new(None),
            avoid_until: AtomicU64::new(0),
            healthy_since: AtomicU64::new(0),
            checker: Mutex::new(None),
            pool: UpstreamPool::default(),
            zone: Mutex::new(t.availability_zone.clone()),
        }
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Sets the health; returns whether it changed.
    pub fn set_health(&self, h: Health, reason: Option<(String, String)>) -> bool {
        *self.reason.lock() = reason;
        self.health.swap(h as u8, Ordering::Relaxed) != h as u8
    }

    pub fn is_draining(&self) -> bool {
        self.draining_until.load(Ordering::Relaxed) != 0
    }

    fn avoided(&self, now: u64) -> bool {
        self.avoid_until.load(Ordering::Relaxed) > now
    }

    /// Whether it gets new requests from a group with health checks `checks` (on or off).
    fn in_service(&self, checks: bool) -> bool {
        !self.is_draining() && (!checks || self.health() == Health::Healthy)
    }

    /// Whether a pick in slow start takes it now: always once `duration_ms` has passed since
    /// its slow start began, otherwise with probability `elapsed / duration_ms`.
    fn slow_start_accepts(&self, now: u64, duration_ms: u64) -> bool {
        let elapsed = now.saturating_sub(self.healthy_since.load(Ordering::Relaxed));
        elapsed >= duration_ms || rand::rng().random_range(0..duration_ms) < elapsed
    }

    /// Marks a refused connection: no new requests for a few seconds (or until a health check
    /// succeeds).
    pub fn mark_failed(&self, now: u64) {
        self.avoid_until.store(now + 5_000, Ordering::Relaxed);
    }

    pub fn stop_checker(&self) {
        if let Some(h) = self.checker.lock().take() {
            h.abort();
        }
    }

    /// Counts one request (or connection) until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Outstanding {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(self.clone())
    }
}

/// An in-flight request to a target.
#[derive(Debug)]
pub struct Outstanding(Arc<TargetRt>);

impl Outstanding {
    pub fn target(&self) -> &Arc<TargetRt> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Algorithm {
    RoundRobin = 0,
    LeastOutstanding = 1,
}

/// `sticky_seconds` when lb_cookie stickiness is off.
const NOT_STICKY: u64 = u64::MAX;

/// The settings read on every request, derived once per configuration change.
struct Derived {
    algorithm: Algorithm,
    sticky_seconds: u64,
    checks: bool,
    /// 0: no slow start.
    slow_start_ms: u64,
}

fn derived(tg: &TargetGroup) -> Derived {
    let algorithm = match tg
        .attributes
        .get("load_balancing.algorithm.type")
        .map(String::as_str)
    {
        Some("least_outstanding_requests") => Algorithm::LeastOutstanding,
        _ => Algorithm::RoundRobin,
    };
    let sticky = tg.attribute_bool("stickiness.enabled")
        && tg.attributes.get("stickiness.type").map(String::as_str) == Some("lb_cookie");
    let sticky_seconds = if sticky {
        tg.attribute_u64("stickiness.lb_cookie.duration_seconds", 86_400)
    } else {
        NOT_STICKY
    };
    Derived {
        algorithm,
        sticky_seconds,
        checks: tg.health_check.enabled,
        slow_start_ms: tg
            .attribute_u64("slow_start.duration_seconds", 0)
            .saturating_mul(1000),
    }
}

/// A target group: its settings and targets, replaced as configuration arrives.
#[derive(Debug)]
pub struct Group {
    pub arn: String,
    pub id: String,
    pub settings: ArcSwap<TargetGroup>,
    pub targets: ArcSwap<Vec<Arc<TargetRt>>>,
    rr: AtomicUsize,
    algorithm: AtomicU8,
    sticky_seconds: AtomicU64,
    checks: AtomicBool,
    slow_start_ms: AtomicU64,
    /// Its Prometheus series (detached ones unless made [`Group::with_metrics`]).
    pub metrics: GroupMetrics,
}

impl Group {
    pub fn new(tg: &TargetGroup) -> Self {
        Self::with_metrics(tg, GroupMetrics::default())
    }

    /// A group counting into `metrics`.
    pub fn with_metrics(tg: &TargetGroup, metrics: GroupMetrics) -> Self {
        let d = derived(tg);
        Self {
            arn: tg.arn.clone(),
            id: tg.id.clone(),
            settings: ArcSwap::from_pointee(tg.clone()),
            targets: ArcSwap::from_pointee(Vec::new()),
            rr: AtomicUsize::new(0),
            algorithm: AtomicU8::new(d.algorithm as u8),
            sticky_seconds: AtomicU64::new(d.sticky_seconds),
            checks: AtomicBool::new(d.checks),
            slow_start_ms: AtomicU64::new(d.slow_start_ms),
            metrics,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        if self.algorithm.load(Ordering::Relaxed) == Algorithm::LeastOutstanding as u8 {
            Algorithm::LeastOutstanding
        } else {
            Algorithm::RoundRobin
        }
    }

    /// `Some(duration seconds)` when lb_cookie stickiness is on.
    pub fn sticky_seconds(&self) -> Option<u64> {
        let s = self.sticky_seconds.load(Ordering::Relaxed);
        (s != NOT_STICKY).then_some(s)
    }

    /// Starts `t`'s slow start at `since` (epoch ms) when the group has one and another target
    /// is in service; otherwise `t` gets its full share at once. Called as `t` becomes healthy
    /// (before it is marked so), or is registered in a group without health checks.
    pub fn begin_slow_start(&self, t: &TargetRt, since: u64) {
        let checks = self.checks.load(Ordering::Relaxed);
        let others = self.slow_start_ms.load(Ordering::Relaxed) > 0
            && self
                .targets
                .load()
                .iter()
                .any(|o| !std::ptr::eq(&**o, t) && o.in_service(checks));
        t.healthy_since
            .store(if others { since } else { 0 }, Ordering::Relaxed);
    }

    /// Whether any registered target is not draining.
    pub fn has_targets(&self) -> bool {
        self.targets.load().iter().any(|t| !t.is_draining())
    }

    /// Picks a target (see the module docs); `sticky` is the target key from a cookie, `exclude`
    /// a target that just failed.
    pub fn pick(&self, sticky: Option<&str>, exclude: Option<&TargetRt>) -> Option<Arc<TargetRt>> {
        let now = now_ms();
        let targets = self.targets.load();
        let checks = self.checks.load(Ordering::Relaxed);
        let usable = |t: &TargetRt| !t.is_draining() && exclude.is_none_or(|e| !std::ptr::eq(e, t));
        // The first non-empty tier is the pool (no allocation: tiers are filters).
        let tiers = [
            &(|t: &TargetRt| {
                usable(t) && !t.avoided(now) && (!checks || t.health() == Health::Healthy)
            }) as &dyn Fn(&TargetRt) -> bool,
            &|t: &TargetRt| usable(t) && !t.avoided(now),
            &usable,
        ];
        let slow_start_ms = self.slow_start_ms.load(Ordering::Relaxed);
        for (tier, in_pool) in tiers.into_iter().enumerate() {
            let pool = || targets.iter().filter(|t| in_pool(t));
            let n = pool().count();
            if n == 0 {
                continue;
            }
            if let Some(key) = sticky
                && let Some(t) = pool().find(|t| t.key == key)
            {
                return Some(t.clone());
            }
            let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
            // The algorithm's order: round robin from `start`; the idlest first, ties in round
            // robin order. Health and failure marks change concurrently, so the tier may have
            // shrunk since it was counted: then the order simply has fewer members.
            let algorithm = self.algorithm();
            let rank = |i: usize, t: &TargetRt| {
                let load = match algorithm {
                    Algorithm::RoundRobin => 0,
                    Algorithm::LeastOutstanding => t.outstanding.load(Ordering::Relaxed),
                };
                (load, (i + n - start) % n)
            };
            // Slow start holds back healthy targets only, and only when there are others.
            let slow = tier == 0 && n > 1 && slow_start_ms > 0;
            // The first in that order, and the first that accepts (drawing for each target in
            // slow start whether it would take this pick is the same as trying them in order).
            let mut first: Option<((usize, usize), &Arc<TargetRt>)> = None;
            let mut accepted: Option<((usize, usize), &Arc<TargetRt>)> = None;
            for (i, t) in pool().enumerate() {
                let r = rank(i, t);
                if first.is_none_or(|(best, _)| r < best) {
                    first = Some((r, t));
                }
                if accepted.is_none_or(|(best, _)| r < best)
                    && (!slow || t.slow_start_accepts(now, slow_start_ms))
                {
                    accepted = Some((r, t));
                }
            }
            if let Some((_, t)) = accepted.or(first) {
                return Some(t.clone());
            }
        }
        None
    }

    /// Replaces the settings and target list, keeping the run-time state of targets that stay.
    /// Returns the targets that are new (to start checks on) and those that left.
    pub fn update(
        &self,
        tg: &TargetGroup,
        targets: &[Target],
    ) -> (Vec<Arc<TargetRt>>, Vec<Arc<TargetRt>>) {
        let d = derived(tg);
        self.algorithm.store(d.algorithm as u8, Ordering::Relaxed);
        self.sticky_seconds
            .store(d.sticky_seconds, Ordering::Relaxed);
        self.checks.store(d.checks, Ordering::Relaxed);
        self.slow_start_ms.store(d.slow_start_ms, Ordering::Relaxed);
        self.settings.store(Arc::new(tg.clone()));
        let old = self.targets.load_full();
        let mut next = Vec::with_capacity(targets.len());
        let mut added = Vec::new();
        // Targets that start draining are marked only once the new list is in place, and
        // targets that stop draining are unmarked before: requests picking from either list
        // meanwhile never find every target draining when the new configuration has one that
        // is not (deregistering one target while registering another again).
        let mut start_draining = Vec::new();
        for t in targets {
            let key = t.key();
            match old.iter().find(|o| o.key == key) {
                Some(o) => {
                    let until = t.draining_until.unwrap_or(0);
                    if until == 0 {
                        o.draining_until.store(0, Ordering::Relaxed);
                    } else {
                        start_draining.push((o.clone(), until));
                    }
                    if *o.zone.lock() != t.availability_zone {
                        o.zone.lock().clone_from(&t.availability_zone);
                    }
                    let addr = t.connect_address();
                    if **o.addr.load() != addr {
                        o.addr.store(Arc::new(addr));
                        o.pool.clear();
                    }
                    next.push(o.clone());
                }
                None => {
                    let n = Arc::new(TargetRt::new(t));
                    if !d.checks {
                        // In service from its registration: slow start from then, as long
                        // as another target was in service already.
                        let now = now_ms();
                        let since = if t.registered_at == 0 {
                            now
                        } else {
                            t.registered_at.min(now)
                        };
                        if d.slow_start_ms > 0 && old.iter().any(|o| o.in_service(false)) {
                            n.healthy_since.store(since, Ordering::Relaxed);
                        }
                    }
                    added.push(n.clone());
                    next.push(n);
                }
            }
        }
        let removed = old
            .iter()
            .filter(|o| !next.iter().any(|n| n.key == o.key))
            .cloned()
            .collect();
        self.targets.store(Arc::new(next));
        for (t, until) in start_draining {
            t.draining_until.store(until, Ordering::Relaxed);
        }
        (added, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_domain::lb::HealthCheck;

    pub(crate) fn tg(attrs: &[(&str, &str)]) -> TargetGroup {
        TargetGroup {
            arn: "arn:aws:elasticloadbalancing:us-east-1:0:targetgroup/t/abc".into(),
            name: "t".into(),
            id: "abc".into(),
            protocol: "HTTP".into(),
            port: Some(80),
            target_type: "ip".into(),
            vpc_id: None,
            protocol_version: None,
            ip_address_type: "ipv4".into(),
            health_check: HealthCheck {
                enabled: true,
                protocol: "HTTP".into(),
                port: "traffic-port".into(),
                path: Some("/".into()),
                interval_seconds: 5,
                timeout_seconds: 2,
                healthy_threshold: 2,
                unhealthy_threshold: 2,
                matcher: Some("200".into()),
            },
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            tags: vec![],
            created_at: 0,
        }
    }

    fn target(port: u16) -> Target {
        Target {
            id: "127.0.0.1".into(),
            port,
            address: None,
            availability_zone: None,
            registered_at: 0,
            draining_until: None,
        }
    }

    #[test]
    fn round_robin_prefers_healthy_and_fails_open() {
        let g = Group::new(&tg(&[]));
        g.update(&tg(&[]), &[target(1), target(2), target(3)]);
        // Nothing checked yet: fail open over all three.
        let picks: Vec<u16> = (0..3).map(|_| g.pick(None, None).unwrap().port).collect();
        assert_eq!(picks.len(), 3);
        let ts = g.targets.load_full();
        ts[0].set_health(Health::Healthy, None);
        ts[1].set_health(Health::Unhealthy, None);
        ts[2].set_health(Health::Healthy, None);
        let mut seen: Vec<u16> = (0..10).map(|_| g.pick(None, None).unwrap().port).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, vec![1, 3]);
        // Sticky to a healthy target, not to an unhealthy one.
        assert_eq!(g.pick(Some("127.0.0.1:3"), None).unwrap().port, 3);
        assert_ne!(g.pick(Some("127.0.0.1:2"), None).unwrap().port, 2);
        // Exclusion after a failure.
        assert_eq!(g.pick(None, Some(&ts[0])).unwrap().port, 3);
    }

    #[test]
    fn draining_targets_get_nothing_and_updates_keep_state() {
        let g = Group::new(&tg(&[]));
        g.update(&tg(&[]), &[target(1), target(2)]);
        g.targets.load()[0].set_health(Health::Healthy, None);
        let mut t1 = target(1);
        t1.draining_until = Some(now_ms() + 10_000);
        let (added, removed) = g.update(&tg(&[]), &[t1, target(2)]);
        assert!(added.is_empty() && removed.is_empty());
        assert_eq!(g.targets.load()[0].health(), Health::Healthy);
        for _ in 0..5 {
            assert_eq!(g.pick(None, None).unwrap().port, 2);
        }
        let (_, removed) = g.update(&tg(&[]), &[]);
        assert_eq!(removed.len(), 2);
        assert!(g.pick(None, None).is_none());
    }

    #[test]
    fn least_outstanding_picks_the_idlest() {
        let t = tg(&[(
            "load_balancing.algorithm.type",
            "least_outstanding_requests",
        )]);
        let g = Group::new(&t);
        g.update(&t, &[target(1), target(2)]);
        let busy = g.pick(None, None).unwrap();
        let _guards: Vec<Outstanding> = (0..3).map(|_| busy.begin()).collect();
        for _ in 0..5 {
            assert_ne!(g.pick(None, None).unwrap().port, busy.port);
        }
    }

    /// Picks `n` times; how many went to each port.
    fn shares(g: &Group, n: usize) -> std::collections::BTreeMap<u16, usize> {
        let mut m = std::collections::BTreeMap::new();
        for _ in 0..n {
            *m.entry(g.pick(None, None).unwrap().port).or_default() += 1;
        }
        m
    }

    /// A group of `ports`, all healthy, with slow start of `secs` and `algorithm`.
    fn healthy_group(secs: &str, algorithm: &str, ports: &[u16]) -> Group {
        let t = tg(&[
            ("slow_start.duration_seconds", secs),
            ("load_balancing.algorithm.type", algorithm),
        ]);
        let g = Group::new(&t);
        let targets: Vec<Target> = ports.iter().map(|p| target(*p)).collect();
        g.update(&t, &targets);
        for t in g.targets.load().iter() {
            t.set_health(Health::Healthy, None);
        }
        g
    }

    #[test]
    fn slow_start_ramps_a_new_target_up() {
        for algorithm in ["round_robin", "least_outstanding_requests"] {
            let g = healthy_group("100", algorithm, &[1, 2]);
            let ts = g.targets.load_full();
            // 10 s into 100 s of slow start: about 5 % instead of 50 %.
            ts[1]
                .healthy_since
                .store(now_ms() - 10_000, Ordering::Relaxed);
            let s = shares(&g, 2000);
            let new = s.get(&2).copied().unwrap_or(0);
            assert!(new > 0 && new < 500, "{algorithm}: {s:?}");
            // 60 s in: more, still less than its full share.
            ts[1]
                .healthy_since
                .store(now_ms() - 60_000, Ordering::Relaxed);
            let later = shares(&g, 2000).get(&2).copied().unwrap_or(0);
            assert!(
                later > new && later < 900,
                "{algorithm}: {later} after {new}"
            );
            // Over: its full share.
            ts[1]
                .healthy_since
                .store(now_ms() - 100_001, Ordering::Relaxed);
            let s = shares(&g, 2000);
            assert!((900..=1100).contains(&s[&2]), "{algorithm}: {s:?}");
            // Sticky sessions keep going to a target in slow start.
            ts[1].healthy_since.store(now_ms(), Ordering::Relaxed);
            for _ in 0..20 {
                assert_eq!(g.pick(Some("127.0.0.1:2"), None).unwrap().port, 2);
            }
        }
    }

    #[test]
    fn a_lone_target_in_slow_start_gets_every_request() {
        let g = healthy_group("100", "round_robin", &[1, 2]);
        let ts = g.targets.load_full();
        ts[0].healthy_since.store(now_ms(), Ordering::Relaxed);
        ts[1].set_health(Health::Unhealthy, None);
        assert_eq!(shares(&g, 2000)[&1], 2000);
        // Every target in slow start: the algorithm's choice stands when none accepts.
        ts[1].set_health(Health::Healthy, None);
        ts[1].healthy_since.store(now_ms(), Ordering::Relaxed);
        let s = shares(&g, 2000);
        assert!(s[&1] > 800 && s[&2] > 800, "{s:?}");
    }

    #[test]
    fn slow_start_zero_changes_nothing() {
        let g = healthy_group("0", "round_robin", &[1, 2]);
        g.targets.load()[1]
            .healthy_since
            .store(now_ms(), Ordering::Relaxed);
        assert_eq!(shares(&g, 2000)[&2], 1000);
    }

    #[test]
    fn slow_start_begins_only_beside_targets_in_service() {
        let g = healthy_group("30", "round_robin", &[1, 2]);
        let ts = g.targets.load_full();
        g.begin_slow_start(&ts[1], 1234);
        assert_eq!(ts[1].healthy_since.load(Ordering::Relaxed), 1234);
        // The first target to become healthy is not held back.
        ts[0].set_health(Health::Unhealthy, None);
        g.begin_slow_start(&ts[1], 5678);
        assert_eq!(ts[1].healthy_since.load(Ordering::Relaxed), 0);

        // Without health checks, targets registered beside one in service start slowly.
        let mut t = tg(&[("slow_start.duration_seconds", "30")]);
        t.health_check.enabled = false;
        let g = Group::new(&t);
        let (first, _) = g.update(&t, &[target(1)]);
        assert_eq!(first[0].healthy_since.load(Ordering::Relaxed), 0);
        let (added, _) = g.update(&t, &[target(1), target(2)]);
        assert!(added[0].healthy_since.load(Ordering::Relaxed) > 0);
        let s = shares(&g, 2000);
        assert!(s.get(&2).copied().unwrap_or(0) < 200, "{s:?}");
    }
}
