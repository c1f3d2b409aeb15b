//! Target groups at run time: targets with their health, outstanding requests and draining
//! deadline, and target selection (round robin or least outstanding requests, sticky cookies,
//! passive failure avoidance).
//!
//! Selection order: targets that are not draining and not passively failed; among them the
//! healthy ones; when none is healthy, all of them (AWS fails open the same way). No registered,
//! non-draining target at all: `None` (the proxy answers 503).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use gantry_domain::lb::{Target, TargetGroup, TargetHealthState};
use parking_lot::Mutex;

use crate::upstream::UpstreamPool;

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
    /// The active health-check task.
    pub checker: Mutex<Option<tokio::task::AbortHandle>>,
    /// Idle keep-alive connections to this target.
    pub pool: UpstreamPool,
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
            checker: Mutex::new(None),
            pool: UpstreamPool::default(),
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
fn derived(tg: &TargetGroup) -> (Algorithm, u64, bool) {
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
    (algorithm, sticky_seconds, tg.health_check.enabled)
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
}

impl Group {
    pub fn new(tg: &TargetGroup) -> Self {
        let (algorithm, sticky_seconds, checks) = derived(tg);
        Self {
            arn: tg.arn.clone(),
            id: tg.id.clone(),
            settings: ArcSwap::from_pointee(tg.clone()),
            targets: ArcSwap::from_pointee(Vec::new()),
            rr: AtomicUsize::new(0),
            algorithm: AtomicU8::new(algorithm as u8),
            sticky_seconds: AtomicU64::new(sticky_seconds),
            checks: AtomicBool::new(checks),
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
        for in_pool in tiers {
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
            // Health and failure marks change concurrently, so the tier may have shrunk since
            // it was counted: fall back to its first member, then to the next tier.
            let chosen = match self.algorithm() {
                Algorithm::RoundRobin => pool().nth(start).or_else(|| pool().next()),
                // The idlest; ties go to the first at or after the round-robin position.
                Algorithm::LeastOutstanding => pool()
                    .enumerate()
                    .min_by_key(|(i, t)| {
                        (t.outstanding.load(Ordering::Relaxed), (i + n - start) % n)
                    })
                    .map(|(_, t)| t),
            };
            if let Some(t) = chosen {
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
        let (algorithm, sticky_seconds, checks) = derived(tg);
        self.algorithm.store(algorithm as u8, Ordering::Relaxed);
        self.sticky_seconds.store(sticky_seconds, Ordering::Relaxed);
        self.checks.store(checks, Ordering::Relaxed);
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
                    let addr = t.connect_address();
                    if **o.addr.load() != addr {
                        o.addr.store(Arc::new(addr));
                        o.pool.clear();
                    }
                    next.push(o.clone());
                }
                None => {
                    let n = Arc::new(TargetRt::new(t));
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
}
