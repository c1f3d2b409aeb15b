//! Prometheus metrics of the data plane: requests forwarded per target group, the time targets
//! take to answer, and the requests that failed at the target (answered 502 here). Each group
//! holds its own handles ([`GroupMetrics`]), so the request path only bumps atomics; the
//! composition root registers [`LbMetrics`] into the registry it serves. The same events feed
//! [`crate::usage`], what the control plane's CloudWatch metrics are made of.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    /// `targetgroup/NAME/ID`, as CloudWatch's `TargetGroup` dimension names it.
    target_group: String,
}

fn response_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// The load balancer's metrics, one series per target group.
#[derive(Debug)]
pub struct LbMetrics {
    requests: Family<GroupLabels, Counter>,
    upstream_errors: Family<GroupLabels, Counter>,
    response_time: Family<GroupLabels, Histogram, fn() -> Histogram>,
    usage: std::sync::Arc<crate::usage::Usage>,
}

impl Default for LbMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            upstream_errors: Family::default(),
            response_time: Family::new_with_constructor(response_histogram),
            usage: Default::default(),
        }
    }
}

/// The `targetgroup/NAME/ID` part of a target group ARN (the whole ARN when it has none).
pub fn target_group_dimension(arn: &str) -> &str {
    arn.find("targetgroup/").map_or(arn, |i| &arn[i..])
}

impl LbMetrics {
    /// Adds these metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "lb_requests",
            "HTTP requests forwarded to a target group (routed to it, whatever the outcome)",
            self.requests.clone(),
        );
        registry.register(
            "lb_upstream_errors",
            "Forwarded requests no target answered (connection refused or broken, malformed response): answered 502",
            self.upstream_errors.clone(),
        );
        registry.register(
            "lb_target_response_seconds",
            "Time from a request's forwarding until the target's response head arrived",
            self.response_time.clone(),
        );
    }

    /// The per-window counts reported to the control plane.
    pub fn usage(&self) -> std::sync::Arc<crate::usage::Usage> {
        self.usage.clone()
    }

    /// The handles of the group `arn`.
    pub fn group(&self, arn: &str) -> GroupMetrics {
        let labels = GroupLabels {
            target_group: target_group_dimension(arn).to_owned(),
        };
        GroupMetrics {
            requests: self.requests.get_or_create(&labels).clone(),
            upstream_errors: self.upstream_errors.get_or_create(&labels).clone(),
            response_time: GroupHistogram(self.response_time.get_or_create(&labels).clone()),
            usage: self.usage.group(arn),
        }
    }

    /// Drops the series of a group no longer served.
    pub fn forget(&self, arn: &str) {
        let labels = GroupLabels {
            target_group: target_group_dimension(arn).to_owned(),
        };
        self.requests.remove(&labels);
        self.upstream_errors.remove(&labels);
        self.response_time.remove(&labels);
    }
}

/// One target group's metric handles (shared atomics: clones count into the same series).
#[derive(Debug, Clone, Default)]
pub struct GroupMetrics {
    requests: Counter,
    upstream_errors: Counter,
    response_time: GroupHistogram,
    usage: std::sync::Arc<crate::usage::GroupUsage>,
}

#[derive(Debug, Clone)]
struct GroupHistogram(Histogram);

impl Default for GroupHistogram {
    fn default() -> Self {
        Self(response_histogram())
    }
}

impl GroupMetrics {
    /// A request was routed to the group.
    pub fn request(&self) {
        self.requests.inc();
        self.usage.request();
    }

    /// The target's response head (`status`) arrived `elapsed` after forwarding began.
    pub fn responded(&self, elapsed: Duration, status: u16) {
        self.response_time.0.observe(elapsed.as_secs_f64());
        self.usage.responded(elapsed, status);
    }

    /// No target answered: the client got a 502 made here (counted on the load balancer by
    /// the caller, see [`crate::usage::LbUsage`]).
    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_count_into_their_own_series() {
        let m = LbMetrics::default();
        let arn =
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef";
        let web = m.group(arn);
        web.request();
        web.request();
        web.responded(Duration::from_millis(3), 200);
        web.upstream_error();
        m.group(arn).request();
        m.group("arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/api/fedcba")
            .request();
        let mut registry = Registry::with_prefix("gantry");
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(
                "gantry_lb_requests_total{target_group=\"targetgroup/web/0123456789abcdef\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("gantry_lb_requests_total{target_group=\"targetgroup/api/fedcba\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gantry_lb_upstream_errors_total{target_group=\"targetgroup/web/0123456789abcdef\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gantry_lb_target_response_seconds_count{target_group=\"targetgroup/web/0123456789abcdef\"} 1"),
            "{text}"
        );
        m.forget(arn);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(!text.contains("targetgroup/web/"), "{text}");
    }
}
