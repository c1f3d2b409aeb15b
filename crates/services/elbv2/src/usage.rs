//! Proxies' traffic reports (`POST /lb/v1/metrics`, see [`crate::channel`]) turned into
//! CloudWatch's load balancer metrics, with ELB's dimensions (`LoadBalancer` = `app/NAME/ID`
//! or `net/NAME/ID`, `TargetGroup` = `targetgroup/NAME/ID`):
//!
//! - `AWS/ApplicationELB`, per `LoadBalancer`, per `LoadBalancer, TargetGroup` and per
//!   `TargetGroup`: `RequestCount`, `HTTPCode_Target_2XX_Count` (3XX, 4XX, 5XX) and
//!   `TargetResponseTime` (seconds, one sample per response, so percentiles work);
//!   per `LoadBalancer`: `HTTPCode_ELB_5XX_Count`, `HTTPCode_ELB_502_Count`,
//!   `HTTPCode_ELB_503_Count`; per `TargetGroup` and per `LoadBalancer, TargetGroup`:
//!   `RequestCountPerTarget`, the group's requests divided by its healthy targets (by its
//!   registered ones when none is healthy), as ELB defines it (its `Sum` is what counts).
//! - Both namespaces, per `LoadBalancer, TargetGroup`: `HealthyHostCount`,
//!   `UnHealthyHostCount`, one sample per proxy and window (their `Average` is the count).
//!
//! Counts are published only for windows with traffic, as ELB does. The load balancer of a
//! group is found through the listeners that forward to it; reports naming groups or load
//! balancers that do not exist in the signed region are ignored.

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_domain::lb::{LoadBalancer, UsageWindow};

/// One metric datum for the sink: values with their counts.
#[derive(Debug, Clone, PartialEq)]
pub struct LbMetricSample {
    pub namespace: &'static str,
    pub name: &'static str,
    /// Sorted by name.
    pub dimensions: Vec<(String, String)>,
    /// Seconds since the epoch.
    pub timestamp: i64,
    pub unit: &'static str,
    /// (value, count), at least one.
    pub values: Vec<(f64, f64)>,
}

/// Where the load balancer metrics go (CloudWatch, wired by the composition root).
#[async_trait]
pub trait LbMetricsSink: Send + Sync {
    async fn publish(
        &self,
        region: &str,
        samples: Vec<LbMetricSample>,
        now_ms: u64,
    ) -> Result<(), AwsError>;
}

/// The namespace and `LoadBalancer` dimension of a load balancer ARN.
pub fn load_balancer_dimension(arn: &str) -> Option<(&'static str, &str)> {
    let d = &arn[arn.find(":loadbalancer/")? + ":loadbalancer/".len()..];
    if d.starts_with("app/") {
        Some(("AWS/ApplicationELB", d))
    } else if d.starts_with("net/") {
        Some(("AWS/NetworkELB", d))
    } else {
        None
    }
}

/// The `TargetGroup` dimension of a target group ARN.
pub fn target_group_dimension(arn: &str) -> Option<&str> {
    Some(&arn[arn.find(":targetgroup/")? + 1..])
}

/// The samples of one window of one target group behind the load balancers `lbs` (those that
/// forward to it).
pub fn samples_for(w: &UsageWindow, lbs: &[&LoadBalancer]) -> Vec<LbMetricSample> {
    let Some(tg) = target_group_dimension(&w.target_group_arn) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, lb) in lbs.iter().enumerate() {
        let Some((namespace, lb_dim)) = load_balancer_dimension(&lb.arn) else {
            continue;
        };
        let lbd = ("LoadBalancer".to_owned(), lb_dim.to_owned());
        let tgd = ("TargetGroup".to_owned(), tg.to_owned());
        let both = vec![lbd.clone(), tgd.clone()];
        // The group-only series once, whatever the number of load balancers.
        let mut three = vec![vec![lbd.clone()], both.clone()];
        let mut per_target = vec![both.clone()];
        if i == 0 {
            three.push(vec![tgd.clone()]);
            per_target.push(vec![tgd]);
        }
        let mut push =
            |name: &'static str, dims: &[Vec<(String, String)>], unit, values: Vec<(f64, f64)>| {
                for d in dims {
                    out.push(LbMetricSample {
                        namespace,
                        name,
                        dimensions: d.clone(),
                        timestamp: w.start,
                        unit,
                        values: values.clone(),
                    });
                }
            };
        if namespace == "AWS/ApplicationELB" {
            if w.requests > 0 {
                push(
                    "RequestCount",
                    &three,
                    "Count",
                    vec![(w.requests as f64, 1.0)],
                );
                let healthy = f64::from(w.healthy);
                let denominator = if healthy > 0.0 {
                    healthy
                } else {
                    f64::from(w.unhealthy)
                };
                if denominator > 0.0 {
                    push(
                        "RequestCountPerTarget",
                        &per_target,
                        "Count",
                        vec![(w.requests as f64 / denominator, 1.0)],
                    );
                }
            }
            for (name, n) in [
                "HTTPCode_Target_2XX_Count",
                "HTTPCode_Target_3XX_Count",
                "HTTPCode_Target_4XX_Count",
                "HTTPCode_Target_5XX_Count",
            ]
            .into_iter()
            .zip(w.target_codes)
            {
                if n > 0 {
                    push(name, &three, "Count", vec![(n as f64, 1.0)]);
                }
            }
            let times: Vec<(f64, f64)> = w
                .response_times
                .iter()
                .filter(|(v, c)| v.is_finite() && *v >= 0.0 && *c > 0)
                .map(|(v, c)| (*v, *c as f64))
                .collect();
            if !times.is_empty() {
                push("TargetResponseTime", &three, "Seconds", times);
            }
            let lb_only = [vec![lbd]];
            for (name, n) in [
                ("HTTPCode_ELB_5XX_Count", w.elb_502 + w.elb_503),
                ("HTTPCode_ELB_502_Count", w.elb_502),
                ("HTTPCode_ELB_503_Count", w.elb_503),
            ] {
                if n > 0 {
                    push(name, &lb_only, "Count", vec![(n as f64, 1.0)]);
                }
            }
        }
        let pair = [both];
        push(
            "HealthyHostCount",
            &pair,
            "Count",
            vec![(f64::from(w.healthy), 1.0)],
        );
        push(
            "UnHealthyHostCount",
            &pair,
            "Count",
            vec![(f64::from(w.unhealthy), 1.0)],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(arn: &str) -> LoadBalancer {
        serde_json::from_value(serde_json::json!({
            "arn": arn, "name": "web", "id": "50dc6c495c0c9188", "type": "application",
            "scheme": "internet-facing", "ipAddressType": "ipv4", "dnsName": "x", "createdAt": 0,
            "state": "active", "listeners": [],
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const TG: &str =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/tg/943f017f100becff";

    fn find<'a>(s: &'a [LbMetricSample], name: &str, dims: &[&str]) -> Vec<&'a LbMetricSample> {
        s.iter()
            .filter(|x| {
                x.name == name
                    && x.dimensions
                        .iter()
                        .map(|d| d.0.as_str())
                        .collect::<Vec<_>>()
                        == dims
            })
            .collect()
    }

    #[test]
    fn an_application_load_balancers_window_becomes_elbs_metrics() {
        let alb = lb(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/50dc6c495c0c9188",
        );
        let w = UsageWindow {
            start: 120,
            target_group_arn: TG.into(),
            requests: 10,
            target_codes: [7, 0, 1, 0],
            elb_502: 1,
            elb_503: 1,
            response_times: vec![(0.001, 5), (0.25, 3)],
            healthy: 4,
            unhealthy: 1,
        };
        let s = samples_for(&w, &[&alb]);
        for dims in [
            &["LoadBalancer"][..],
            &["LoadBalancer", "TargetGroup"],
            &["TargetGroup"],
        ] {
            let rc = find(&s, "RequestCount", dims);
            assert_eq!(rc.len(), 1, "{dims:?}");
            assert_eq!(rc[0].values, vec![(10.0, 1.0)]);
            assert_eq!(rc[0].namespace, "AWS/ApplicationELB");
            assert_eq!(rc[0].timestamp, 120);
            assert_eq!(
                find(&s, "TargetResponseTime", dims)[0].values,
                vec![(0.001, 5.0), (0.25, 3.0)]
            );
            assert_eq!(
                find(&s, "HTTPCode_Target_2XX_Count", dims)[0].values,
                vec![(7.0, 1.0)]
            );
            assert!(find(&s, "HTTPCode_Target_3XX_Count", dims).is_empty());
        }
        let lbd = &find(&s, "RequestCount", &["LoadBalancer"])[0].dimensions[0];
        assert_eq!(lbd.1, "app/web/50dc6c495c0c9188");
        assert_eq!(
            find(&s, "RequestCount", &["TargetGroup"])[0].dimensions[0].1,
            "targetgroup/tg/943f017f100becff"
        );
        assert_eq!(
            find(&s, "RequestCountPerTarget", &["TargetGroup"])[0].values,
            vec![(2.5, 1.0)]
        );
        assert_eq!(
            find(
                &s,
                "RequestCountPerTarget",
                &["LoadBalancer", "TargetGroup"]
            )
            .len(),
            1
        );
        assert!(find(&s, "RequestCountPerTarget", &["LoadBalancer"]).is_empty());
        assert_eq!(
            find(&s, "HTTPCode_ELB_5XX_Count", &["LoadBalancer"])[0].values,
            vec![(2.0, 1.0)]
        );
        assert!(find(&s, "HTTPCode_ELB_5XX_Count", &["TargetGroup"]).is_empty());
        assert_eq!(
            find(&s, "HealthyHostCount", &["LoadBalancer", "TargetGroup"])[0].values,
            vec![(4.0, 1.0)]
        );
        assert_eq!(
            find(&s, "UnHealthyHostCount", &["LoadBalancer", "TargetGroup"])[0].values,
            vec![(1.0, 1.0)]
        );
    }

    #[test]
    fn per_target_falls_back_to_registered_targets_and_idle_windows_carry_health_only() {
        let alb = lb(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/50dc6c495c0c9188",
        );
        let w = UsageWindow {
            start: 60,
            target_group_arn: TG.into(),
            requests: 6,
            healthy: 0,
            unhealthy: 3,
            ..Default::default()
        };
        let s = samples_for(&w, &[&alb]);
        assert_eq!(
            find(&s, "RequestCountPerTarget", &["TargetGroup"])[0].values,
            vec![(2.0, 1.0)]
        );
        let idle = UsageWindow {
            start: 60,
            target_group_arn: TG.into(),
            healthy: 2,
            ..Default::default()
        };
        let names: Vec<&str> = samples_for(&idle, &[&alb]).iter().map(|s| s.name).collect();
        assert_eq!(names, ["HealthyHostCount", "UnHealthyHostCount"]);
        let nlb = lb(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/net/tcp/60dc6c495c0c9188",
        );
        let s = samples_for(&w, &[&nlb]);
        assert!(s.iter().all(|x| x.namespace == "AWS/NetworkELB"));
        let names: Vec<&str> = s.iter().map(|s| s.name).collect();
        assert_eq!(names, ["HealthyHostCount", "UnHealthyHostCount"]);
    }
}
