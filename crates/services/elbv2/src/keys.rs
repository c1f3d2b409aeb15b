//! Store keys and ARNs of ELBv2 records. Every key is scoped by region.
//!
//! - `elbv2/<region>/lb/<name>`: a [`LoadBalancer`](gantry_domain::lb::LoadBalancer) with its
//!   listeners and rules inline (so port and priority uniqueness is one compare-and-swap);
//! - `elbv2/<region>/tg/<name>`: a [`TargetGroup`](gantry_domain::lb::TargetGroup);
//! - `elbv2/<region>/target/<tg name>/<id>:<port>`: a registered
//!   [`Target`](gantry_domain::lb::Target) (one key each: registrations churn);
//! - `elbv2/<region>/health/<tg name>/<proxy id>`: the latest health report of one proxy for one
//!   target group;
//! - `elbv2/<region>/listener-status/<proxy id>`: the listeners one proxy could not open.

pub fn root(region: &str) -> String {
    format!("elbv2/{region}/")
}

pub fn load_balancers(region: &str) -> String {
    format!("elbv2/{region}/lb/")
}

pub fn load_balancer(region: &str, name: &str) -> String {
    format!("elbv2/{region}/lb/{name}")
}

pub fn target_groups(region: &str) -> String {
    format!("elbv2/{region}/tg/")
}

pub fn target_group(region: &str, name: &str) -> String {
    format!("elbv2/{region}/tg/{name}")
}

pub fn all_targets(region: &str) -> String {
    format!("elbv2/{region}/target/")
}

pub fn targets(region: &str, tg_name: &str) -> String {
    format!("elbv2/{region}/target/{tg_name}/")
}

pub fn target(region: &str, tg_name: &str, id: &str, port: u16) -> String {
    format!("elbv2/{region}/target/{tg_name}/{id}:{port}")
}

pub fn health_of(region: &str, tg_name: &str) -> String {
    format!("elbv2/{region}/health/{tg_name}/")
}

pub fn health(region: &str, tg_name: &str, proxy_id: &str) -> String {
    format!("elbv2/{region}/health/{tg_name}/{proxy_id}")
}

/// The listeners one proxy could not open, while it reports any.
pub fn listener_status_all(region: &str) -> String {
    format!("elbv2/{region}/listener-status/")
}

pub fn listener_status(region: &str, proxy_id: &str) -> String {
    format!("elbv2/{region}/listener-status/{proxy_id}")
}

/// Whether a changed key matters to the proxies' configuration (health reports do not).
pub fn is_config_key(key: &str) -> bool {
    let mut parts = key.splitn(4, '/');
    let (Some("elbv2"), Some(_), Some(kind)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    matches!(kind, "lb" | "tg" | "target")
}

/// 16 random lowercase hex characters.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// The ARN prefix `arn:aws:elasticloadbalancing:<region>:<account>:`.
pub fn arn_prefix(region: &str, account: &str) -> String {
    format!("arn:aws:elasticloadbalancing:{region}:{account}:")
}

/// What an ELBv2 ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElbArn {
    LoadBalancer {
        name: String,
        id: String,
    },
    TargetGroup {
        name: String,
        id: String,
    },
    Listener {
        lb_name: String,
        lb_id: String,
        id: String,
    },
    Rule {
        lb_name: String,
        lb_id: String,
        listener_id: String,
        id: String,
    },
}

/// Parses an ELBv2 ARN of `region`; `None` for anything else (another region or service, or
/// not an ARN).
pub fn parse_arn(arn: &str, region: &str) -> Option<ElbArn> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("elasticloadbalancing"), Some(r), Some(_), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if r != region {
        return None;
    }
    let segs: Vec<&str> = resource.split('/').collect();
    let s = |s: &str| s.to_owned();
    match segs.as_slice() {
        ["loadbalancer", "app" | "net", name, id] => Some(ElbArn::LoadBalancer {
            name: s(name),
            id: s(id),
        }),
        ["targetgroup", name, id] => Some(ElbArn::TargetGroup {
            name: s(name),
            id: s(id),
        }),
        ["listener", "app" | "net", lb, lb_id, id] => Some(ElbArn::Listener {
            lb_name: s(lb),
            lb_id: s(lb_id),
            id: s(id),
        }),
        ["listener-rule", "app" | "net", lb, lb_id, l, id] => Some(ElbArn::Rule {
            lb_name: s(lb),
            lb_id: s(lb_id),
            listener_id: s(l),
            id: s(id),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_by_kind_and_region() {
        let p = "arn:aws:elasticloadbalancing:us-east-1:000000000000:";
        assert_eq!(
            parse_arn(
                &format!("{p}loadbalancer/app/web/0123456789abcdef"),
                "us-east-1"
            ),
            Some(ElbArn::LoadBalancer {
                name: "web".into(),
                id: "0123456789abcdef".into()
            })
        );
        assert_eq!(
            parse_arn(&format!("{p}listener-rule/app/web/aa/bb/cc"), "us-east-1"),
            Some(ElbArn::Rule {
                lb_name: "web".into(),
                lb_id: "aa".into(),
                listener_id: "bb".into(),
                id: "cc".into()
            })
        );
        assert_eq!(
            parse_arn(&format!("{p}targetgroup/web/aa"), "eu-west-1"),
            None
        );
        assert_eq!(parse_arn("not-an-arn", "us-east-1"), None);
        assert!(is_config_key("elbv2/us-east-1/target/tg/1.2.3.4:80"));
        assert!(!is_config_key("elbv2/us-east-1/health/tg/p1"));
    }
}
