//! Proxies' traffic reports (`POST /lb/v1/metrics`, see [`crate::channel`]) turned into
//! CloudWatch's load balancer metrics, with ELB's dimensions (`LoadBalancer` = `app/NAME/ID`
//! or `net/NAME/ID`, `TargetGroup` = `targetgroup/NAME/ID`):
//!
//! - `AWS/ApplicationELB`, per `LoadBalancer`, `AvailabilityZone, LoadBalancer`,
//!   `LoadBalancer, TargetGroup`, `AvailabilityZone, LoadBalancer, TargetGroup` and
//!   `TargetGroup`: `RequestCount`, `HTTPCode_Target_2XX_Count` (3XX, 4XX, 5XX) and
//!   `TargetResponseTime` (seconds, one sample per response, so percentiles work);
//!   per `TargetGroup` and per `LoadBalancer, TargetGroup`: `RequestCountPerTarget`, the
//!   group's requests divided by its healthy targets (by its registered ones when none is
//!   healthy), as ELB defines it (its `Sum` is what counts).
//! - `AWS/ApplicationELB`, from the answers the proxy made itself (fixed responses, redirects,
//!   error pages: no rule matched, no target, no answer from the target, malformed requests),
//!   per `LoadBalancer` and `AvailabilityZone, LoadBalancer`: `HTTPCode_ELB_3XX_Count` (4XX,
//!   5XX), `HTTP_Fixed_Response_Count`, `HTTP_Redirect_Count`; per `LoadBalancer`:
//!   `HTTPCode_ELB_500_Count` (502, 503, 504).
//! - `AWS/NetworkELB`, per `LoadBalancer` and `AvailabilityZone, LoadBalancer`:
//!   `ActiveFlowCount` (the most flows open at once in the window), `NewFlowCount`,
//!   `ProcessedBytes`, each also per protocol (`_TCP`, `_TLS`, `_UDP`).
//! - Both namespaces, per `LoadBalancer, TargetGroup` and per `AvailabilityZone,
//!   LoadBalancer, TargetGroup` (the targets' zones; those registered without one count in the
//!   proxy's): `HealthyHostCount`, `UnHealthyHostCount`, one sample per proxy and window (their
//!   `Average` is the count).
//!
//! The `AvailabilityZone` is the zone the reporting proxy serves as a node in ([`node_zone`]).
//!
//! Counts are published only for windows with traffic, as ELB does. The load balancer of a
//! group is found through the listeners that forward to it; reports naming groups or load
//! balancers that do not exist in the signed region are ignored.

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_domain::lb::{FlowUsage, LbUsageWindow, LoadBalancer, UsageWindow};

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

/// The zone a proxy counts as a node of `lb` in, for the `AvailabilityZone` dimension: the one
/// the proxy names when the load balancer is enabled there (or its zones are unknown), else
/// the zone of the load balancer's first subnet; none when that is unknown too.
pub fn node_zone<'a>(lb: &'a LoadBalancer, reported: Option<&'a str>) -> Option<&'a str> {
    let zones = || lb.subnets.iter().filter_map(|s| lb.subnet_zones.get(s));
    match reported {
        Some(z) if lb.subnet_zones.is_empty() || zones().any(|x| x == z) => Some(z),
        _ => zones().next().map(String::as_str),
    }
}

type Dims = Vec<(String, String)>;

fn dim(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// `[LoadBalancer]` and, with a zone, `[AvailabilityZone, LoadBalancer]`.
fn lb_dims(lb_dim: &str, zone: Option<&str>) -> Vec<Dims> {
    let mut out = vec![vec![dim("LoadBalancer", lb_dim)]];
    if let Some(z) = zone {
        out.push(vec![
            dim("AvailabilityZone", z),
            dim("LoadBalancer", lb_dim),
        ]);
    }
    out
}

/// `[LoadBalancer, TargetGroup]` and, with a zone, `[AvailabilityZone, LoadBalancer,
/// TargetGroup]`.
fn lb_tg_dims(lb_dim: &str, tg: &str, zone: Option<&str>) -> Vec<Dims> {
    let mut out = vec![vec![dim("LoadBalancer", lb_dim), dim("TargetGroup", tg)]];
    if let Some(z) = zone {
        out.push(vec![
            dim("AvailabilityZone", z),
            dim("LoadBalancer", lb_dim),
            dim("TargetGroup", tg),
        ]);
    }
    out
}

fn push(
    out: &mut Vec<LbMetricSample>,
    namespace: &'static str,
    timestamp: i64,
    name: &'static str,
    dims: &[Dims],
    unit: &'static str,
    values: Vec<(f64, f64)>,
) {
    for d in dims {
        out.push(LbMetricSample {
            namespace,
            name,
            dimensions: d.clone(),
            timestamp,
            unit,
            values: values.clone(),
        });
    }
}

/// The samples of one window of one target group behind the load balancers `lbs` (those that
/// forward to it), each with the zone the reporting proxy counts as for it.
pub fn samples_for(w: &UsageWindow, lbs: &[(&LoadBalancer, Option<&str>)]) -> Vec<LbMetricSample> {
    let Some(tg) = target_group_dimension(&w.target_group_arn) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, (lb, zone)) in lbs.iter().enumerate() {
        let Some((namespace, lb_dim)) = load_balancer_dimension(&lb.arn) else {
            continue;
        };
        let zone = *zone;
        // LoadBalancer, AvailabilityZone+LoadBalancer, LoadBalancer+TargetGroup,
        // AvailabilityZone+LoadBalancer+TargetGroup, and TargetGroup alone once whatever the
        // number of load balancers.
        let tgd = vec![dim("TargetGroup", tg)];
        let mut all = lb_dims(lb_dim, zone);
        all.extend(lb_tg_dims(lb_dim, tg, zone));
        let mut per_target = vec![vec![dim("LoadBalancer", lb_dim), dim("TargetGroup", tg)]];
        if i == 0 {
            all.push(tgd.clone());
            per_target.push(tgd);
        }
        let t = w.start;
        if namespace == "AWS/ApplicationELB" {
            if w.requests > 0 {
                push(
                    &mut out,
                    namespace,
                    t,
                    "RequestCount",
                    &all,
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
                        &mut out,
                        namespace,
                        t,
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
                    push(
                        &mut out,
                        namespace,
                        t,
                        name,
                        &all,
                        "Count",
                        vec![(n as f64, 1.0)],
                    );
                }
            }
            let times: Vec<(f64, f64)> = w
                .response_times
                .iter()
                .filter(|(v, c)| v.is_finite() && *v >= 0.0 && *c > 0)
                .map(|(v, c)| (*v, *c as f64))
                .collect();
            if !times.is_empty() {
                push(
                    &mut out,
                    namespace,
                    t,
                    "TargetResponseTime",
                    &all,
                    "Seconds",
                    times,
                );
            }
        }
        let pair = [vec![dim("LoadBalancer", lb_dim), dim("TargetGroup", tg)]];
        push(
            &mut out,
            namespace,
            t,
            "HealthyHostCount",
            &pair,
            "Count",
            vec![(f64::from(w.healthy), 1.0)],
        );
        push(
            &mut out,
            namespace,
            t,
            "UnHealthyHostCount",
            &pair,
            "Count",
            vec![(f64::from(w.unhealthy), 1.0)],
        );
        // Per zone of the targets (those registered without one count in the proxy's).
        let mut zones: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
        for (z, h, u) in &w.zones {
            let Some(z) = (if z.is_empty() { zone } else { Some(z.as_str()) }) else {
                continue;
            };
            let slot = zones.entry(z).or_default();
            slot.0 += h;
            slot.1 += u;
        }
        for (z, (h, u)) in zones {
            let dims = [vec![
                dim("AvailabilityZone", z),
                dim("LoadBalancer", lb_dim),
                dim("TargetGroup", tg),
            ]];
            push(
                &mut out,
                namespace,
                t,
                "HealthyHostCount",
                &dims,
                "Count",
                vec![(f64::from(h), 1.0)],
            );
            push(
                &mut out,
                namespace,
                t,
                "UnHealthyHostCount",
                &dims,
                "Count",
                vec![(f64::from(u), 1.0)],
            );
        }
    }
    out
}

/// The samples of one load balancer's window (answers made by the proxy, network flows), with
/// the zone the reporting proxy counts as for it.
pub fn lb_samples_for(
    w: &LbUsageWindow,
    lb: &LoadBalancer,
    zone: Option<&str>,
) -> Vec<LbMetricSample> {
    let Some((namespace, lb_dim)) = load_balancer_dimension(&lb.arn) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let both = lb_dims(lb_dim, zone);
    let lb_only = &both[..1];
    let t = w.start;
    let count = |n: u64| vec![(n as f64, 1.0)];
    if namespace == "AWS/ApplicationELB" {
        for (name, n) in [
            "HTTPCode_ELB_3XX_Count",
            "HTTPCode_ELB_4XX_Count",
            "HTTPCode_ELB_5XX_Count",
        ]
        .into_iter()
        .zip(w.elb_codes)
        {
            if n > 0 {
                push(&mut out, namespace, t, name, &both, "Count", count(n));
            }
        }
        for (name, n) in [
            "HTTPCode_ELB_500_Count",
            "HTTPCode_ELB_502_Count",
            "HTTPCode_ELB_503_Count",
            "HTTPCode_ELB_504_Count",
        ]
        .into_iter()
        .zip(w.elb_5xx)
        {
            if n > 0 {
                push(&mut out, namespace, t, name, lb_only, "Count", count(n));
            }
        }
        if w.fixed_responses > 0 {
            push(
                &mut out,
                namespace,
                t,
                "HTTP_Fixed_Response_Count",
                &both,
                "Count",
                count(w.fixed_responses),
            );
        }
        if w.redirects > 0 {
            push(
                &mut out,
                namespace,
                t,
                "HTTP_Redirect_Count",
                &both,
                "Count",
                count(w.redirects),
            );
        }
        return out;
    }
    let flows: Vec<(&str, &FlowUsage)> = w
        .flows
        .iter()
        .filter_map(|f| {
            let suffix = match f.protocol.as_str() {
                "TCP" => "_TCP",
                "TLS" => "_TLS",
                "UDP" => "_UDP",
                _ => return None,
            };
            Some((suffix, f))
        })
        .collect();
    if flows.is_empty() {
        return out;
    }
    let (active, new, bytes) = flows.iter().fold((0, 0, 0), |(a, n, b), (_, f)| {
        (a + f.active, n + f.new, b + f.bytes)
    });
    const NAMES: [(&str, &str, &str, &str); 4] = [
        ("", "ActiveFlowCount", "NewFlowCount", "ProcessedBytes"),
        (
            "_TCP",
            "ActiveFlowCount_TCP",
            "NewFlowCount_TCP",
            "ProcessedBytes_TCP",
        ),
        (
            "_TLS",
            "ActiveFlowCount_TLS",
            "NewFlowCount_TLS",
            "ProcessedBytes_TLS",
        ),
        (
            "_UDP",
            "ActiveFlowCount_UDP",
            "NewFlowCount_UDP",
            "ProcessedBytes_UDP",
        ),
    ];
    let totals = [("", active, new, bytes)];
    let each = flows.iter().map(|(s, f)| (*s, f.active, f.new, f.bytes));
    for (suffix, a, n, b) in totals.into_iter().chain(each) {
        let Some((_, an, nn, bn)) = NAMES.iter().find(|x| x.0 == suffix) else {
            continue;
        };
        push(&mut out, namespace, t, an, &both, "Count", count(a));
        push(&mut out, namespace, t, nn, &both, "Count", count(n));
        push(&mut out, namespace, t, bn, &both, "Bytes", count(b));
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
            response_times: vec![(0.001, 5), (0.25, 3)],
            healthy: 4,
            unhealthy: 1,
            zones: Vec::new(),
        };
        let s = samples_for(&w, &[(&alb, Some("us-east-1a"))]);
        for dims in [
            &["LoadBalancer"][..],
            &["AvailabilityZone", "LoadBalancer"],
            &["LoadBalancer", "TargetGroup"],
            &["AvailabilityZone", "LoadBalancer", "TargetGroup"],
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
        assert!(
            find(
                &s,
                "RequestCountPerTarget",
                &["AvailabilityZone", "LoadBalancer"]
            )
            .is_empty()
        );
        assert_eq!(
            find(&s, "RequestCount", &["AvailabilityZone", "LoadBalancer"])[0].dimensions[0].1,
            "us-east-1a"
        );
        assert_eq!(
            find(&s, "HealthyHostCount", &["LoadBalancer", "TargetGroup"])[0].values,
            vec![(4.0, 1.0)]
        );
        assert_eq!(
            find(&s, "UnHealthyHostCount", &["LoadBalancer", "TargetGroup"])[0].values,
            vec![(1.0, 1.0)]
        );
        // Per zone: targets without a zone count in the proxy's.
        let w = UsageWindow {
            zones: vec![
                (String::new(), 1, 0),
                ("us-east-1a".into(), 2, 1),
                ("us-east-1b".into(), 1, 0),
            ],
            ..w
        };
        let s = samples_for(&w, &[(&alb, Some("us-east-1a"))]);
        let per_zone = find(
            &s,
            "HealthyHostCount",
            &["AvailabilityZone", "LoadBalancer", "TargetGroup"],
        );
        let got: Vec<(&str, f64)> = per_zone
            .iter()
            .map(|x| (x.dimensions[0].1.as_str(), x.values[0].0))
            .collect();
        assert_eq!(got, [("us-east-1a", 3.0), ("us-east-1b", 1.0)]);
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
        let s = samples_for(&w, &[(&alb, None)]);
        assert_eq!(
            find(&s, "RequestCountPerTarget", &["TargetGroup"])[0].values,
            vec![(2.0, 1.0)]
        );
        assert!(find(&s, "RequestCount", &["AvailabilityZone", "LoadBalancer"]).is_empty());
        let idle = UsageWindow {
            start: 60,
            target_group_arn: TG.into(),
            healthy: 2,
            ..Default::default()
        };
        let names: Vec<&str> = samples_for(&idle, &[(&alb, None)])
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["HealthyHostCount", "UnHealthyHostCount"]);
        let nlb = lb(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/net/tcp/60dc6c495c0c9188",
        );
        let s = samples_for(&w, &[(&nlb, None)]);
        assert!(s.iter().all(|x| x.namespace == "AWS/NetworkELB"));
        let names: Vec<&str> = s.iter().map(|s| s.name).collect();
        assert_eq!(names, ["HealthyHostCount", "UnHealthyHostCount"]);
    }

    #[test]
    fn answers_made_here_and_flows_become_load_balancer_metrics() {
        let alb = lb(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/50dc6c495c0c9188",
        );
        let w = LbUsageWindow {
            start: 60,
            load_balancer_arn: alb.arn.clone(),
            elb_codes: [2, 3, 4],
            elb_5xx: [0, 1, 3, 0],
            fixed_responses: 4,
            redirects: 2,
            flows: Vec::new(),
        };
        let s = lb_samples_for(&w, &alb, Some("us-east-1b"));
        for dims in [&["LoadBalancer"][..], &["AvailabilityZone", "LoadBalancer"]] {
            assert_eq!(
                find(&s, "HTTPCode_ELB_3XX_Count", dims)[0].values,
                vec![(2.0, 1.0)]
            );
            assert_eq!(
                find(&s, "HTTPCode_ELB_4XX_Count", dims)[0].values,
                vec![(3.0, 1.0)]
            );
            assert_eq!(
                find(&s, "HTTPCode_ELB_5XX_Count", dims)[0].values,
                vec![(4.0, 1.0)]
            );
            assert_eq!(
                find(&s, "HTTP_Fixed_Response_Count", dims)[0].values,
                vec![(4.0, 1.0)]
            );
            assert_eq!(
                find(&s, "HTTP_Redirect_Count", dims)[0].values,
                vec![(2.0, 1.0)]
            );
        }
        assert_eq!(
            find(&s, "HTTPCode_ELB_503_Count", &["LoadBalancer"])[0].values,
            vec![(3.0, 1.0)]
        );
        assert!(
            find(
                &s,
                "HTTPCode_ELB_503_Count",
                &["AvailabilityZone", "LoadBalancer"]
            )
            .is_empty()
        );
        assert!(find(&s, "HTTPCode_ELB_500_Count", &["LoadBalancer"]).is_empty());

        let nlb = lb(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/net/tcp/60dc6c495c0c9188",
        );
        let w = LbUsageWindow {
            start: 60,
            load_balancer_arn: nlb.arn.clone(),
            flows: vec![
                FlowUsage {
                    protocol: "TCP".into(),
                    active: 2,
                    new: 3,
                    bytes: 100,
                },
                FlowUsage {
                    protocol: "UDP".into(),
                    active: 1,
                    new: 1,
                    bytes: 10,
                },
            ],
            ..Default::default()
        };
        let s = lb_samples_for(&w, &nlb, None);
        assert!(s.iter().all(|x| x.namespace == "AWS/NetworkELB"));
        assert!(s.iter().all(|x| x.dimensions.len() == 1));
        assert_eq!(
            find(&s, "ActiveFlowCount", &["LoadBalancer"])[0].values,
            vec![(3.0, 1.0)]
        );
        assert_eq!(
            find(&s, "NewFlowCount", &["LoadBalancer"])[0].values,
            vec![(4.0, 1.0)]
        );
        let bytes = find(&s, "ProcessedBytes", &["LoadBalancer"]);
        assert_eq!(
            (bytes[0].values.clone(), bytes[0].unit),
            (vec![(110.0, 1.0)], "Bytes")
        );
        assert_eq!(
            find(&s, "NewFlowCount_TCP", &["LoadBalancer"])[0].values,
            vec![(3.0, 1.0)]
        );
        assert_eq!(
            find(&s, "ProcessedBytes_UDP", &["LoadBalancer"])[0].values,
            vec![(10.0, 1.0)]
        );
        assert!(find(&s, "ProcessedBytes_TLS", &["LoadBalancer"]).is_empty());
    }

    #[test]
    fn a_proxy_counts_in_its_zone_when_the_load_balancer_is_there() {
        let mut alb = lb(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/50dc6c495c0c9188",
        );
        assert_eq!(node_zone(&alb, None), None);
        assert_eq!(node_zone(&alb, Some("us-east-1c")), Some("us-east-1c"));
        alb.subnets = vec!["subnet-b".into(), "subnet-a".into()];
        alb.subnet_zones = [("subnet-a", "us-east-1a"), ("subnet-b", "us-east-1b")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(node_zone(&alb, None), Some("us-east-1b"));
        assert_eq!(node_zone(&alb, Some("us-east-1a")), Some("us-east-1a"));
        assert_eq!(node_zone(&alb, Some("us-east-1c")), Some("us-east-1b"));
    }
}
