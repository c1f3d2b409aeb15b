//! Target health as `DescribeTargetHealth` reports it, combined from the proxies' reports.
//!
//! Each `gantry lb` runs the active health checks itself and posts its whole view to
//! `POST /lb/v1/health` (every few seconds, and at once when a state changes). The server keeps
//! the latest report per (target group, proxy), valid for [`HEALTH_REPORT_TTL_MS`]. For one
//! registered target, in this order:
//!
//! 1. deregistered and still within its deregistration delay → `draining`
//!    (`Target.DeregistrationInProgress`);
//! 2. the target group is used by no listener or rule → `unused` (`Target.NotInUse`);
//! 3. health checks disabled → `unavailable` (`Target.HealthCheckDisabled`);
//! 4. any fresh report says healthy → `healthy`;
//! 5. any fresh report says unhealthy → `unhealthy` with that report's reason
//!    (`Target.ResponseCodeMismatch`, `Target.Timeout`, `Target.FailedHealthChecks`);
//! 6. fresh reports that have not decided yet → `initial` (`Elb.InitialHealthChecking`);
//! 7. no fresh report: `initial` (`Elb.RegistrationInProgress`) while the target is younger than
//!    interval × healthy threshold + 10 s, `unavailable` (`Elb.InternalError`, no proxy reports
//!    on it) after that.
//!
//! A target that is not registered is `unused` (`Target.NotRegistered`).

use gantry_domain::EpochMillis;
use gantry_domain::lb::{Target, TargetGroup, TargetHealthObservation, TargetHealthState};
use serde::{Deserialize, Serialize};

/// How long a proxy's report counts. Proxies report at least every 5 s.
pub const HEALTH_REPORT_TTL_MS: u64 = 30_000;

/// The listeners one proxy reported it could not open (stored while there are any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatusRecord {
    pub proxy_id: String,
    pub reported_at: EpochMillis,
    pub failures: Vec<gantry_domain::lb::ListenerFailure>,
}

/// The stored latest report of one proxy for one target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthRecord {
    pub proxy_id: String,
    pub target_group_arn: String,
    pub reported_at: EpochMillis,
    pub targets: Vec<TargetHealthObservation>,
}

/// One target's health, as `DescribeTargetHealth` and the ECS service runner see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealthInfo {
    pub id: String,
    pub port: u16,
    pub state: TargetHealthState,
    /// AWS reason code; `None` when healthy.
    pub reason: Option<String>,
    pub description: Option<String>,
}

fn info(t: &Target, state: TargetHealthState, reason: &str, description: &str) -> TargetHealthInfo {
    TargetHealthInfo {
        id: t.id.clone(),
        port: t.port,
        state,
        reason: Some(reason.to_owned()),
        description: Some(description.to_owned()),
    }
}

/// The health of registered target `t` of `tg` (see the module docs for the rules).
pub fn combine(
    tg: &TargetGroup,
    t: &Target,
    in_use: bool,
    reports: &[HealthRecord],
    now: EpochMillis,
) -> TargetHealthInfo {
    use TargetHealthState::*;
    if t.draining_until.is_some_and(|d| d > now) {
        return info(
            t,
            Draining,
            "Target.DeregistrationInProgress",
            "Target deregistration is in progress",
        );
    }
    if !in_use {
        return info(
            t,
            Unused,
            "Target.NotInUse",
            "Target group is not configured to receive traffic from the load balancer",
        );
    }
    if !tg.health_check.enabled {
        return info(
            t,
            Unavailable,
            "Target.HealthCheckDisabled",
            "Health checks are disabled",
        );
    }
    let fresh: Vec<&TargetHealthObservation> = reports
        .iter()
        .filter(|r| r.reported_at + HEALTH_REPORT_TTL_MS >= now && r.reported_at >= t.registered_at)
        .flat_map(|r| r.targets.iter())
        .filter(|o| o.id == t.id && o.port == t.port)
        .collect();
    if fresh.iter().any(|o| o.state == Healthy) {
        return TargetHealthInfo {
            id: t.id.clone(),
            port: t.port,
            state: Healthy,
            reason: None,
            description: None,
        };
    }
    if let Some(o) = fresh.iter().find(|o| o.state == Unhealthy) {
        return TargetHealthInfo {
            id: t.id.clone(),
            port: t.port,
            state: Unhealthy,
            reason: Some(
                o.reason
                    .clone()
                    .unwrap_or_else(|| "Target.FailedHealthChecks".into()),
            ),
            description: Some(
                o.description
                    .clone()
                    .unwrap_or_else(|| "Health checks failed".into()),
            ),
        };
    }
    if !fresh.is_empty() {
        return info(
            t,
            Initial,
            "Elb.InitialHealthChecking",
            "Initial health checking in progress",
        );
    }
    let hc = &tg.health_check;
    let settle_ms =
        u64::from(hc.interval_seconds) * u64::from(hc.healthy_threshold) * 1000 + 10_000;
    if now < t.registered_at + settle_ms {
        info(
            t,
            Initial,
            "Elb.RegistrationInProgress",
            "Target registration is in progress",
        )
    } else {
        info(
            t,
            Unavailable,
            "Elb.InternalError",
            "No gantry lb proxy is reporting health checks for this target",
        )
    }
}

/// The answer for a target that is not registered.
pub fn not_registered(id: &str, port: u16) -> TargetHealthInfo {
    TargetHealthInfo {
        id: id.to_owned(),
        port,
        state: TargetHealthState::Unused,
        reason: Some("Target.NotRegistered".into()),
        description: Some("Target is not registered to the target group".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_domain::lb::HealthCheck;

    fn tg() -> TargetGroup {
        TargetGroup {
            arn: "arn:tg".into(),
            name: "tg".into(),
            id: "1".into(),
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
            attributes: Default::default(),
            tags: vec![],
            created_at: 0,
        }
    }

    fn target() -> Target {
        Target {
            id: "10.0.0.1".into(),
            port: 8080,
            address: None,
            availability_zone: None,
            registered_at: 1_000,
            draining_until: None,
        }
    }

    fn report(at: u64, state: TargetHealthState) -> HealthRecord {
        HealthRecord {
            proxy_id: format!("p{at}"),
            target_group_arn: "arn:tg".into(),
            reported_at: at,
            targets: vec![TargetHealthObservation {
                id: "10.0.0.1".into(),
                port: 8080,
                state,
                reason: (state == TargetHealthState::Unhealthy)
                    .then(|| "Target.ResponseCodeMismatch".into()),
                description: None,
            }],
        }
    }

    #[test]
    fn any_healthy_report_wins_and_stale_reports_do_not_count() {
        use TargetHealthState::*;
        let reports = vec![report(5_000, Unhealthy), report(6_000, Healthy)];
        assert_eq!(
            combine(&tg(), &target(), true, &reports, 7_000).state,
            Healthy
        );
        let h = combine(&tg(), &target(), true, &reports[..1], 7_000);
        assert_eq!(h.state, Unhealthy);
        assert_eq!(h.reason.as_deref(), Some("Target.ResponseCodeMismatch"));
        // Stale: counts as no report; past the settle time that is unavailable.
        let h = combine(
            &tg(),
            &target(),
            true,
            &reports,
            6_000 + HEALTH_REPORT_TTL_MS + 1,
        );
        assert_eq!(h.state, Unavailable);
    }

    #[test]
    fn new_unused_draining_and_disabled_targets() {
        use TargetHealthState::*;
        let h = combine(&tg(), &target(), true, &[], 2_000);
        assert_eq!(
            (h.state, h.reason.as_deref()),
            (Initial, Some("Elb.RegistrationInProgress"))
        );
        assert_eq!(combine(&tg(), &target(), false, &[], 2_000).state, Unused);
        let mut t = target();
        t.draining_until = Some(9_000);
        assert_eq!(combine(&tg(), &t, true, &[], 2_000).state, Draining);
        let mut g = tg();
        g.health_check.enabled = false;
        assert_eq!(combine(&g, &target(), true, &[], 2_000).state, Unavailable);
        assert_eq!(not_registered("x", 1).state, Unused);
    }
}
