//! DescribeAccountLimits: the limits Gantry enforces, under AWS's names and with AWS's default
//! quotas. Limits AWS reports that Gantry does not enforce are not listed.

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::lb::LoadBalancerType;

use crate::error::Elbv2Error;
use crate::wire::{self, Params};

/// Load balancers of each type per Region (`TooManyLoadBalancers`).
pub const LOAD_BALANCERS: usize = 50;
/// Target groups per Region (`TooManyTargetGroups`).
pub const TARGET_GROUPS: usize = 3000;
/// Listeners per load balancer (`TooManyListeners`).
pub const LISTENERS_PER_LOAD_BALANCER: usize = 50;
/// Rules per application load balancer, default rules not counted (`TooManyRules`).
pub const RULES_PER_APPLICATION_LOAD_BALANCER: usize = 100;

/// Every enforced limit, by AWS's name.
const LIMITS: [(&str, usize); 6] = [
    ("application-load-balancers", LOAD_BALANCERS),
    (
        "listeners-per-application-load-balancer",
        LISTENERS_PER_LOAD_BALANCER,
    ),
    (
        "listeners-per-network-load-balancer",
        LISTENERS_PER_LOAD_BALANCER,
    ),
    ("network-load-balancers", LOAD_BALANCERS),
    (
        "rules-per-application-load-balancer",
        RULES_PER_APPLICATION_LOAD_BALANCER,
    ),
    ("target-groups", TARGET_GROUPS),
];

/// Refuses a new load balancer of type `t` when `existing` of that type are in the Region.
pub fn check_load_balancers(t: LoadBalancerType, existing: usize) -> Result<(), Elbv2Error> {
    if existing >= LOAD_BALANCERS {
        return Err(Elbv2Error::TooManyLoadBalancers(format!(
            "The maximum number of {} load balancers ({LOAD_BALANCERS}) has been reached",
            t.as_str()
        )));
    }
    Ok(())
}

pub(crate) fn describe(p: &Params) -> Result<String, Elbv2Error> {
    let items: Vec<(String, (&str, usize))> = LIMITS
        .iter()
        .map(|&(name, max)| (name.to_owned(), (name, max)))
        .collect();
    let (page, next) = wire::paginate(items, p)?;
    let mut w = XmlWriter::new();
    wire::write_list(&mut w, "Limits", &page, |w, (name, max)| {
        w.leaf("Name", name);
        w.leaf("Max", &max.to_string());
    });
    if let Some(n) = next {
        w.leaf("NextMarker", &n);
    }
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_sorted_and_load_balancers_are_counted_per_type() {
        assert!(LIMITS.windows(2).all(|w| w[0].0 < w[1].0));
        check_load_balancers(LoadBalancerType::Network, LOAD_BALANCERS - 1).unwrap();
        let err = check_load_balancers(LoadBalancerType::Network, LOAD_BALANCERS).unwrap_err();
        assert_eq!(err.aws_code(), "TooManyLoadBalancers");
        let xml = describe(&Params::from_pairs(&[("PageSize", "2")])).unwrap();
        assert!(
            xml.contains("<Name>application-load-balancers</Name><Max>50</Max>"),
            "{xml}"
        );
        assert!(xml.contains("<NextMarker>"), "{xml}");
    }
}
