//! Load balancer and target group attributes: the defaults AWS lists, and validation of changes.
//! Attributes Gantry's proxy acts on: `deregistration_delay.timeout_seconds`, `stickiness.*`
//! (`lb_cookie`), `load_balancing.algorithm.type`, `deletion_protection.enabled`; the others are
//! stored and echoed. Listener attributes are AWS's keys per listener protocol (see
//! [`check_listener`] for those `gantry lb` honours).

use std::collections::BTreeMap;

use gantry_domain::lb::LoadBalancerType;

use crate::error::Elbv2Error;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn load_balancer_defaults(t: LoadBalancerType) -> BTreeMap<String, String> {
    match t {
        LoadBalancerType::Application => map(&[
            ("access_logs.s3.enabled", "false"),
            ("access_logs.s3.bucket", ""),
            ("access_logs.s3.prefix", ""),
            ("client_keep_alive.seconds", "3600"),
            ("connection_logs.s3.enabled", "false"),
            ("connection_logs.s3.bucket", ""),
            ("connection_logs.s3.prefix", ""),
            ("deletion_protection.enabled", "false"),
            ("idle_timeout.timeout_seconds", "60"),
            ("load_balancing.cross_zone.enabled", "true"),
            ("routing.http.desync_mitigation_mode", "defensive"),
            ("routing.http.drop_invalid_header_fields.enabled", "false"),
            ("routing.http.preserve_host_header.enabled", "false"),
            (
                "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
                "false",
            ),
            ("routing.http.xff_client_port.enabled", "false"),
            ("routing.http.xff_header_processing.mode", "append"),
            ("routing.http2.enabled", "true"),
            ("waf.fail_open.enabled", "false"),
            ("zonal_shift.config.enabled", "false"),
        ]),
        LoadBalancerType::Network => map(&[
            ("access_logs.s3.enabled", "false"),
            ("access_logs.s3.bucket", ""),
            ("access_logs.s3.prefix", ""),
            ("deletion_protection.enabled", "false"),
            ("dns_record.client_routing_policy", "any_availability_zone"),
            ("load_balancing.cross_zone.enabled", "false"),
            ("zonal_shift.config.enabled", "false"),
        ]),
    }
}

/// Target group attribute defaults by protocol family (HTTP/HTTPS vs TCP/TLS/UDP).
pub fn target_group_defaults(protocol: &str) -> BTreeMap<String, String> {
    if matches!(protocol, "HTTP" | "HTTPS") {
        map(&[
            ("deregistration_delay.timeout_seconds", "300"),
            ("stickiness.enabled", "false"),
            ("stickiness.type", "lb_cookie"),
            ("stickiness.lb_cookie.duration_seconds", "86400"),
            ("stickiness.app_cookie.cookie_name", ""),
            ("stickiness.app_cookie.duration_seconds", "86400"),
            ("slow_start.duration_seconds", "0"),
            ("load_balancing.algorithm.type", "round_robin"),
            ("load_balancing.algorithm.anomaly_mitigation", "off"),
            (
                "load_balancing.cross_zone.enabled",
                "use_load_balancer_configuration",
            ),
            (
                "target_group_health.dns_failover.minimum_healthy_targets.count",
                "1",
            ),
            (
                "target_group_health.dns_failover.minimum_healthy_targets.percentage",
                "off",
            ),
            (
                "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
                "1",
            ),
            (
                "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
                "off",
            ),
        ])
    } else {
        map(&[
            ("deregistration_delay.timeout_seconds", "300"),
            (
                "deregistration_delay.connection_termination.enabled",
                "false",
            ),
            ("stickiness.enabled", "false"),
            ("stickiness.type", "source_ip"),
            ("proxy_protocol_v2.enabled", "false"),
            // `gantry lb` connects to targets from its own address and sends no proxy protocol
            // header: both say so, and `true` is refused (see `apply`).
            ("preserve_client_ip.enabled", "false"),
            (
                "load_balancing.cross_zone.enabled",
                "use_load_balancer_configuration",
            ),
            (
                "target_health_state.unhealthy.connection_termination.enabled",
                "true",
            ),
            (
                "target_health_state.unhealthy.draining_interval_seconds",
                "0",
            ),
            (
                "target_group_health.dns_failover.minimum_healthy_targets.count",
                "1",
            ),
            (
                "target_group_health.dns_failover.minimum_healthy_targets.percentage",
                "off",
            ),
            (
                "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
                "1",
            ),
            (
                "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
                "off",
            ),
        ])
    }
}

/// Listener attributes AWS defines for a listener of `protocol` on a load balancer of type `t`,
/// with their defaults: the response headers and `Server` header of HTTP and HTTPS listeners,
/// the mTLS/TLS request header names of HTTPS listeners, the TCP idle timeout of TCP listeners.
pub fn listener_defaults(t: LoadBalancerType, protocol: &str) -> BTreeMap<String, String> {
    const RESPONSE_HEADERS: [&str; 10] = [
        "strict_transport_security",
        "access_control_allow_origin",
        "access_control_allow_methods",
        "access_control_allow_headers",
        "access_control_allow_credentials",
        "access_control_expose_headers",
        "access_control_max_age",
        "content_security_policy",
        "x_content_type_options",
        "x_frame_options",
    ];
    const REQUEST_HEADERS: [(&str, &str); 8] = [
        (
            "x_amzn_mtls_clientcert_serial_number",
            "X-Amzn-Mtls-Clientcert-Serial-Number",
        ),
        (
            "x_amzn_mtls_clientcert_issuer",
            "X-Amzn-Mtls-Clientcert-Issuer",
        ),
        (
            "x_amzn_mtls_clientcert_subject",
            "X-Amzn-Mtls-Clientcert-Subject",
        ),
        (
            "x_amzn_mtls_clientcert_validity",
            "X-Amzn-Mtls-Clientcert-Validity",
        ),
        ("x_amzn_mtls_clientcert_leaf", "X-Amzn-Mtls-Clientcert-Leaf"),
        ("x_amzn_mtls_clientcert", "X-Amzn-Mtls-Clientcert"),
        ("x_amzn_tls_version", "X-Amzn-Tls-Version"),
        ("x_amzn_tls_cipher_suite", "X-Amzn-Tls-Cipher-Suite"),
    ];
    let mut m = BTreeMap::new();
    match (t, protocol) {
        (LoadBalancerType::Application, "HTTP" | "HTTPS") => {
            m.insert(
                "routing.http.response.server.enabled".to_owned(),
                "true".to_owned(),
            );
            for h in RESPONSE_HEADERS {
                m.insert(
                    format!("routing.http.response.{h}.header_value"),
                    String::new(),
                );
            }
            if protocol == "HTTPS" {
                for (k, name) in REQUEST_HEADERS {
                    m.insert(
                        format!("routing.http.request.{k}.header_name"),
                        name.to_owned(),
                    );
                }
            }
        }
        (LoadBalancerType::Network, "TCP") => {
            m.insert("tcp.idle_timeout.seconds".to_owned(), "350".to_owned());
        }
        _ => {}
    }
    m
}

/// Checks listener attribute changes against `defaults` (see [`listener_defaults`]): unknown
/// keys and badly formed values are AWS's errors. `gantry lb` honours the TCP idle timeout of
/// TCP listeners, the response headers of HTTP and HTTPS listeners and their `Server` header,
/// and the names of the TLS version and cipher suite request headers of HTTPS listeners; it
/// does no mutual TLS, so the `routing.http.request.x_amzn_mtls_*.header_name` keys are
/// accepted only with their defaults and any other value is refused naming the key.
pub fn check_listener(
    defaults: &BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), Elbv2Error> {
    for (k, v) in changes {
        let Some(default) = defaults.get(k) else {
            return Err(Elbv2Error::InvalidConfiguration(format!(
                "Key '{k}' not valid"
            )));
        };
        match k.as_str() {
            "tcp.idle_timeout.seconds" => int_in(k, v, 60, 6000)?,
            "routing.http.response.server.enabled" => one_of(k, v, &["true", "false"])?,
            _ => {
                if let Some(name) = k
                    .strip_prefix("routing.http.response.")
                    .and_then(|k| k.strip_suffix(".header_value"))
                {
                    response_header_value(k, name, v)?;
                } else if k == "routing.http.request.x_amzn_tls_version.header_name"
                    || k == "routing.http.request.x_amzn_tls_cipher_suite.header_name"
                {
                    let token = !v.is_empty()
                        && v.len() <= 128
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !token {
                        return Err(Elbv2Error::InvalidConfiguration(format!(
                            "The value '{v}' of '{k}' is not valid: it must be an HTTP header name"
                        )));
                    }
                } else if v != default {
                    return Err(Elbv2Error::InvalidConfiguration(format!(
                        "The value '{v}' of '{k}' is not supported by gantry lb: only '{default}' is"
                    )));
                }
            }
        }
    }
    Ok(())
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Checks the value of the response header attribute `key` (header `name` with `_` for `-`);
/// empty means no header.
fn response_header_value(key: &str, name: &str, v: &str) -> Result<(), Elbv2Error> {
    let bad = |what: &str| {
        Err(Elbv2Error::InvalidConfiguration(format!(
            "The value '{v}' of '{key}' is not valid: {what}"
        )))
    };
    if v.is_empty() {
        return Ok(());
    }
    if v.len() > 1024 {
        return bad("it must be at most 1024 characters");
    }
    if !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) || v.trim() != v {
        return bad("it must be printable ASCII without leading or trailing spaces");
    }
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let list = |ok: &dyn Fn(&str) -> bool| v == "*" || v.split(',').map(str::trim).all(ok);
    let problem: Option<String> = match name {
        "strict_transport_security" => {
            let mut max_age = 0;
            let mut other = false;
            for d in v.split(';').map(str::trim) {
                let lower = d.to_ascii_lowercase();
                match lower.strip_prefix("max-age=") {
                    Some(n) if n.parse::<u64>().is_ok() => max_age += 1,
                    Some(_) => max_age += 2,
                    None => other |= lower != "includesubdomains" && lower != "preload",
                }
            }
            if other {
                Some("the directives are max-age=<seconds>, includeSubDomains and preload".into())
            } else {
                (max_age != 1).then(|| "max-age=<seconds> is required, once".into())
            }
        }
        "access_control_allow_origin" => {
            let origin = v == "*"
                || v == "null"
                || ["http://", "https://"].iter().any(|p| {
                    v.strip_prefix(p).is_some_and(|host| {
                        !host.is_empty() && !host.contains(['/', ' ', ',', '?', '#'])
                    })
                });
            (!origin).then(|| "it must be *, null or an origin such as https://example.com".into())
        }
        "access_control_allow_methods" => (!list(&|m| METHODS.contains(&m))).then(|| {
            format!(
                "it must be * or a comma-separated list of {}",
                METHODS.join(", ")
            )
        }),
        "access_control_allow_headers" | "access_control_expose_headers" => (!list(&|h| token(h)))
            .then(|| "it must be * or a comma-separated list of header names".into()),
        "access_control_allow_credentials" => {
            (v != "true").then(|| "the only value is true".into())
        }
        "access_control_max_age" => (!v.parse::<i64>().is_ok_and(|n| (-1..=86_400).contains(&n)))
            .then(|| "it must be an integer between -1 and 86400".into()),
        "x_content_type_options" => (v != "nosniff").then(|| "the only value is nosniff".into()),
        "x_frame_options" => {
            let upper = v.to_ascii_uppercase();
            let ok = upper == "DENY"
                || upper == "SAMEORIGIN"
                || upper
                    .strip_prefix("ALLOW-FROM ")
                    .is_some_and(|uri| !uri.trim().is_empty());
            (!ok).then(|| "it must be DENY, SAMEORIGIN or ALLOW-FROM <uri>".into())
        }
        // content_security_policy: any header value.
        _ => None,
    };
    if let Some(what) = problem {
        return bad(&what);
    }
    Ok(())
}

fn int_in(key: &str, v: &str, lo: u64, hi: u64) -> Result<(), Elbv2Error> {
    match v.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(()),
        _ => Err(Elbv2Error::InvalidConfiguration(format!(
            "The value of '{key}' must be an integer between {lo} and {hi}"
        ))),
    }
}

fn one_of(key: &str, v: &str, allowed: &[&str]) -> Result<(), Elbv2Error> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(Elbv2Error::InvalidConfiguration(format!(
            "The value of '{key}' must be one of [{}]",
            allowed.join(", ")
        )))
    }
}

/// Applies `changes` to `current` after checking each key exists there and each value fits.
pub fn apply(
    current: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), Elbv2Error> {
    for (k, v) in changes {
        if !current.contains_key(k) {
            return Err(Elbv2Error::InvalidConfiguration(format!(
                "Key '{k}' not valid"
            )));
        }
        match k.as_str() {
            "deregistration_delay.timeout_seconds" => int_in(k, v, 0, 3600)?,
            "stickiness.lb_cookie.duration_seconds" | "stickiness.app_cookie.duration_seconds" => {
                int_in(k, v, 1, 604_800)?
            }
            "slow_start.duration_seconds" if v != "0" => int_in(k, v, 30, 900)?,
            "idle_timeout.timeout_seconds" => int_in(k, v, 1, 4000)?,
            "client_keep_alive.seconds" => int_in(k, v, 60, 604_800)?,
            "target_health_state.unhealthy.draining_interval_seconds" => int_in(k, v, 0, 360_000)?,
            "load_balancing.algorithm.type" => one_of(
                k,
                v,
                &[
                    "round_robin",
                    "least_outstanding_requests",
                    "weighted_random",
                ],
            )?,
            "stickiness.type" => one_of(
                k,
                v,
                &["lb_cookie", "app_cookie", "source_ip", "source_ip_dest_ip"],
            )?,
            "routing.http.desync_mitigation_mode" => {
                one_of(k, v, &["monitor", "defensive", "strictest"])?
            }
            "routing.http.xff_header_processing.mode" => {
                one_of(k, v, &["append", "preserve", "remove"])?
            }
            "preserve_client_ip.enabled" | "proxy_protocol_v2.enabled" if v == "true" => {
                return Err(Elbv2Error::InvalidConfiguration(format!(
                    "The value 'true' of '{k}' is not supported: gantry lb connects to targets \
                     from its own address and sends no proxy protocol header"
                )));
            }
            _ if k.ends_with(".enabled") && k != "load_balancing.cross_zone.enabled" => {
                one_of(k, v, &["true", "false"])?
            }
            _ => {}
        }
    }
    for (k, v) in changes {
        current.insert(k.clone(), v.clone());
    }
    Ok(())
}

/// `Attributes.member.N.Key/Value` of a request.
pub fn parse(p: &crate::wire::Params) -> Result<Vec<(String, String)>, Elbv2Error> {
    let items = p.structs("Attributes");
    if items.is_empty() {
        return Err(Elbv2Error::validation("Attributes must not be empty"));
    }
    items
        .iter()
        .map(|a| {
            Ok((
                a.req("Key")?.to_owned(),
                a.get("Value").unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_attributes_follow_the_protocol_and_are_checked() {
        let http = listener_defaults(LoadBalancerType::Application, "HTTP");
        assert_eq!(http["routing.http.response.server.enabled"], "true");
        assert_eq!(
            http["routing.http.response.x_frame_options.header_value"],
            ""
        );
        assert!(!http.keys().any(|k| k.starts_with("routing.http.request.")));
        let https = listener_defaults(LoadBalancerType::Application, "HTTPS");
        assert_eq!(
            https["routing.http.request.x_amzn_tls_version.header_name"],
            "X-Amzn-Tls-Version"
        );
        let tcp = listener_defaults(LoadBalancerType::Network, "TCP");
        assert_eq!(tcp.len(), 1);
        assert_eq!(tcp["tcp.idle_timeout.seconds"], "350");
        assert!(listener_defaults(LoadBalancerType::Network, "UDP").is_empty());

        let ok = |d, k: &str, v: &str| check_listener(d, &[(k.into(), v.into())]).unwrap();
        let err = |d, k: &str, v: &str| {
            format!(
                "{:?}",
                check_listener(d, &[(k.into(), v.into())]).unwrap_err()
            )
        };
        ok(&tcp, "tcp.idle_timeout.seconds", "600");
        assert!(err(&tcp, "tcp.idle_timeout.seconds", "10").contains("between 60 and 6000"));
        assert!(err(&tcp, "routing.http.response.server.enabled", "false").contains("not valid"));
        ok(&http, "routing.http.response.server.enabled", "false");
        assert!(err(&http, "routing.http.response.server.enabled", "no").contains("one of"));
        let h = |name: &str| format!("routing.http.response.{name}.header_value");
        for (name, good, bad) in [
            ("x_frame_options", "DENY", "NEVER"),
            (
                "x_frame_options",
                "ALLOW-FROM https://a.example",
                "ALLOW-FROM",
            ),
            ("x_content_type_options", "nosniff", "sniff"),
            (
                "strict_transport_security",
                "max-age=31536000; includeSubDomains; preload",
                "preload",
            ),
            (
                "access_control_allow_origin",
                "https://app.example.com",
                "app.example.com",
            ),
            (
                "access_control_allow_methods",
                "GET, POST, OPTIONS",
                "GET, FETCH",
            ),
            (
                "access_control_allow_headers",
                "Content-Type,X-Api-Key",
                "Bad Header",
            ),
            ("access_control_allow_credentials", "true", "false"),
            ("access_control_max_age", "600", "86401"),
            (
                "content_security_policy",
                "default-src 'self'",
                "line\nbreak",
            ),
        ] {
            ok(&http, &h(name), good);
            ok(&http, &h(name), "");
            let e = err(&http, &h(name), bad);
            assert!(e.contains(&h(name)) && e.contains("not valid"), "{e}");
        }
        ok(
            &https,
            "routing.http.request.x_amzn_tls_version.header_name",
            "X-Tls",
        );
        assert!(
            err(
                &https,
                "routing.http.request.x_amzn_tls_version.header_name",
                "X Tls"
            )
            .contains("HTTP header name")
        );
        assert!(
            err(
                &https,
                "routing.http.request.x_amzn_mtls_clientcert.header_name",
                "X-Cert"
            )
            .contains("not supported by gantry lb")
        );
    }

    #[test]
    fn client_ip_preservation_and_proxy_protocol_are_refused() {
        let mut a = target_group_defaults("TCP");
        assert_eq!(a["preserve_client_ip.enabled"], "false");
        for key in ["preserve_client_ip.enabled", "proxy_protocol_v2.enabled"] {
            let err = apply(&mut a, &[(key.into(), "true".into())]).unwrap_err();
            assert!(format!("{err:?}").contains(key), "{err:?}");
            apply(&mut a, &[(key.into(), "false".into())]).unwrap();
        }
    }

    #[test]
    fn known_keys_with_valid_values_apply() {
        let mut a = target_group_defaults("HTTP");
        apply(
            &mut a,
            &[
                ("deregistration_delay.timeout_seconds".into(), "5".into()),
                (
                    "load_balancing.algorithm.type".into(),
                    "least_outstanding_requests".into(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(a["deregistration_delay.timeout_seconds"], "5");
        assert!(apply(&mut a, &[("nope".into(), "1".into())]).is_err());
        assert!(
            apply(
                &mut a,
                &[("deregistration_delay.timeout_seconds".into(), "9999".into())]
            )
            .is_err()
        );
        assert!(apply(&mut a, &[("stickiness.enabled".into(), "yes".into())]).is_err());
    }
}
