//! Target groups at run time: targets with their health, outstanding requests and draining
//! deadline, and target selection (round robin or least outstanding requests, sticky cookies,
//! passive failure avoidance).
//!
//! Selection order: targets that are not draining and not passively failed; among them the
//! healthy ones; when none is healthy, all of them (AWS fails open the same way). No registered,
//! non-draining target at all: `None` (the proxy answers 503).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use gantry_domain::lb::{Target, TargetGroup, TargetHealthState};
use parking_lot::Mutex;

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

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstanding,
}

/// A target group: its settings and targets, replaced as configuration arrives.
#[derive(Debug)]
pub struct Group {
    pub arn: String,
    pub id: String,
    pub settings: ArcSwap<TargetGroup>,
    pub targets: ArcSwap<Vec<Arc<TargetRt>>>,
    rr: AtomicUsize,
}

impl Group {
    pub fn new(tg: &TargetGroup) -> Self {
        Self {
            arn: tg.arn.clone(),
            id: tg.id.clone(),
            settings: ArcSwap::from_pointee(tg.clone()),
            targets: ArcSwap::from_pointee(Vec::new()),
            rr: AtomicUsize::new(0),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self
            .settings
            .load()
            .attributes
            .get("load_balancing.algorithm.type")
            .map(String::as_str)
        {
            Some("least_outstanding_requests") => Algorithm::LeastOutstanding,
            _ => Algorithm::RoundRobin,
        }
    }

    /// `Some(duration seconds)` when lb_cookie stickiness is on.
    pub fn sticky_seconds(&self) -> Option<u64> {
        let s = self.settings.load();
        let on = s.attribute_bool("stickiness.enabled")
            && s.attributes.get("stickiness.type").map(String::as_str) == Some("lb_cookie");
        on.then(|| s.attribute_u64("stickiness.lb_cookie.duration_seconds", 86_400))
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
        let checks = self.settings.load().health_check.enabled;
        let usable = |t: &&Arc<TargetRt>| {
            !t.is_draining() && exclude.is_none_or(|e| !std::ptr::eq(e, t.as_ref()))
        };
        let mut pool: Vec<&Arc<TargetRt>> = targets
            .iter()
            .filter(usable)
            .filter(|t| !t.avoided(now) && (!checks || t.health() == Health::Healthy))
            .collect();
        if pool.is_empty() {
            pool = targets
                .iter()
                .filter(usable)
                .filter(|t| !t.avoided(now))
                .collect();
        }
        if pool.is_empty() {
            pool = targets.iter().filter(usable).collect();
        }
        if pool.is_empty() {
            return None;
        }
        if let Some(key) = sticky
            && let Some(t) = pool.iter().find(|t| t.key == key)
        {
            return Some((*t).clone());
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let chosen = match self.algorithm() {
            Algorithm::RoundRobin => pool[start % pool.len()],
            Algorithm::LeastOutstanding => {
                let n = pool.len();
                (0..n)
                    .map(|i| pool[(start + i) % n])
                    .min_by_key(|t| t.outstanding.load(Ordering::Relaxed))
                    .unwrap_or(pool[0])
            }
        };
        Some(chosen.clone())
    }

    /// Replaces the settings and target list, keeping the run-time state of targets that stay.
    /// Returns the targets that are new (to start checks on) and those that left.
    pub fn update(
        &self,
        tg: &TargetGroup,
        targets: &[Target],
    ) -> (Vec<Arc<TargetRt>>, Vec<Arc<TargetRt>>) {
        self.settings.store(Arc::new(tg.clone()));
        let old = self.targets.load_full();
        let mut next = Vec::with_capacity(targets.len());
        let mut added = Vec::new();
        for t in targets {
            let key = t.key();
            match old.iter().find(|o| o.key == key) {
                Some(o) => {
                    o.draining_until
                        .store(t.draining_until.unwrap_or(0), Ordering::Relaxed);
                    let addr = t.connect_address();
                    if **o.addr.load() != addr {
                        o.addr.store(Arc::new(addr));
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
