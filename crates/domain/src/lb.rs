//! Elastic Load Balancing v2 vocabulary: load balancers with their listeners and rules, target
//! groups, registered targets and their health, and [`LbConfig`], the snapshot the control plane
//! streams to `gantry lb` proxies.
//!
//! These are both the stored records of the ELBv2 API (one record per load balancer holding its
//! listeners and rules; one per target group; one per registered target) and the proxy's
//! configuration, so the two can never disagree. JSON in camelCase.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::EpochMillis;
use crate::tags::Tag;

/// `application` (HTTP, layer 7) or `network` (TCP pass-through, layer 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadBalancerType {
    Application,
    Network,
}

impl LoadBalancerType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Network => "network",
        }
    }

    /// The ARN segment: `app` or `net`.
    pub fn arn_segment(self) -> &'static str {
        match self {
            Self::Application => "app",
            Self::Network => "net",
        }
    }
}

/// A load balancer, with its listeners (and their rules) inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    /// The 16 hex characters at the end of the ARN.
    pub id: String,
    #[serde(rename = "type")]
    pub lb_type: LoadBalancerType,
    pub scheme: String,
    pub ip_address_type: String,
    pub dns_name: String,
    pub created_at: EpochMillis,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The VPC of the subnets, when EC2 knows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// The availability zone of each subnet, when EC2 knows them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subnet_zones: BTreeMap<String, String>,
    /// Every attribute with its value (defaults filled in at creation).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// A listener: a port and protocol on a load balancer, with default actions and rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub arn: String,
    pub id: String,
    pub port: u16,
    /// `HTTP`, `HTTPS`, `TCP`, ...
    pub protocol: String,
    pub default_actions: Vec<Action>,
    /// The id of the listener's default rule (its ARN is a rule ARN ending with it).
    pub default_rule_id: String,
    /// Non-default rules, in no particular order (the proxy sorts by priority).
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// HTTPS and TLS listeners: the ACM certificates served, the default one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<ListenerCertificate>,
    /// HTTPS and TLS listeners: the security policy (`ELBSecurityPolicy-...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
    /// Listener attributes set to other values than their defaults
    /// (`ModifyListenerAttributes`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// A certificate of an HTTPS or TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerCertificate {
    pub certificate_arn: String,
    /// The certificate served when the client's SNI names no other.
    pub is_default: bool,
}

/// A certificate and its private key as the load balancer channel delivers them to proxies:
/// the certificate followed by its chain, and the key, PEM. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateMaterial {
    pub certificate_arn: String,
    pub chain_pem: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for CertificateMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateMaterial")
            .field("certificate_arn", &self.certificate_arn)
            .field("private_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A listener rule: conditions that all must match, and the actions taken then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub arn: String,
    pub id: String,
    /// 1..=50000; lower is evaluated first.
    pub priority: u32,
    pub conditions: Vec<RuleCondition>,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// One condition of a rule. The values of one condition are alternatives (any may match).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCondition {
    /// `path-pattern`, `host-header`, `http-header`, `http-request-method`, `query-string` or
    /// `source-ip`.
    pub field: String,
    /// Patterns (`*` and `?` wildcards) for path, host, header; methods; CIDR blocks.
    #[serde(default)]
    pub values: Vec<String>,
    /// For `http-header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    /// For `query-string`: key (optional) / value patterns.
    #[serde(default)]
    pub query_strings: Vec<QueryStringMatch>,
}

/// A `query-string` condition value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryStringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
}

/// What a listener or rule does with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase", tag = "type")]
pub enum Action {
    /// Forward to one or several (weighted) target groups.
    #[serde(rename = "forward")]
    Forward {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<u32>,
        /// Set when the action was given as a single `TargetGroupArn`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_group_arn: Option<String>,
        target_groups: Vec<WeightedTargetGroup>,
        #[serde(default)]
        stickiness: GroupStickiness,
    },
    #[serde(rename = "fixed-response")]
    FixedResponse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<u32>,
        status_code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_body: Option<String>,
    },
    #[serde(rename = "redirect")]
    Redirect {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<u32>,
        #[serde(flatten)]
        redirect: Redirect,
    },
}

impl Action {
    pub fn order(&self) -> Option<u32> {
        match self {
            Self::Forward { order, .. }
            | Self::FixedResponse { order, .. }
            | Self::Redirect { order, .. } => *order,
        }
    }

    pub fn type_str(&self) -> &'static str {
        match self {
            Self::Forward { .. } => "forward",
            Self::FixedResponse { .. } => "fixed-response",
            Self::Redirect { .. } => "redirect",
        }
    }

    /// The target groups this action sends traffic to.
    pub fn target_group_arns(&self) -> impl Iterator<Item = &str> {
        let groups: &[WeightedTargetGroup] = match self {
            Self::Forward { target_groups, .. } => target_groups,
            _ => &[],
        };
        groups.iter().map(|g| g.target_group_arn.as_str())
    }
}

/// A target group of a forward action with its weight (0..=999).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTargetGroup {
    pub target_group_arn: String,
    pub weight: u32,
}

/// Target-group stickiness of a weighted forward action (cookie `AWSALBTG`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupStickiness {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
}

/// A redirect action. Every part may use `#{protocol}`, `#{host}`, `#{port}`, `#{path}` and
/// `#{query}`; the defaults keep the request's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    pub protocol: String,
    pub port: String,
    pub host: String,
    pub path: String,
    pub query: String,
    /// `HTTP_301` or `HTTP_302`.
    pub status_code: String,
}

/// Health-check settings of a target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub enabled: bool,
    /// `HTTP`, `HTTPS` or `TCP`.
    pub protocol: String,
    /// `traffic-port` or a port number.
    pub port: String,
    /// HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// HTTP only: codes such as `200`, `200,202` or `200-299`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
}

/// A target group (without its targets, which are separate records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub id: String,
    /// `HTTP`, `HTTPS`, `TCP`, ...
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `instance` or `ip`.
    pub target_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    pub ip_address_type: String,
    pub health_check: HealthCheck,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub created_at: EpochMillis,
}

impl TargetGroup {
    /// An attribute as a number, or `default` when absent or not a number.
    pub fn attribute_u64(&self, key: &str, default: u64) -> u64 {
        self.attributes
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub fn attribute_bool(&self, key: &str) -> bool {
        self.attributes.get(key).is_some_and(|v| v == "true")
    }

    /// `deregistration_delay.timeout_seconds` (default 300).
    pub fn deregistration_delay_seconds(&self) -> u64 {
        self.attribute_u64("deregistration_delay.timeout_seconds", 300)
    }
}

/// A registered target of a target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Instance id or IP address, as registered.
    pub id: String,
    pub port: u16,
    /// Where the proxy connects: an IP or host name. `None`: the id itself (IP targets).
    /// Instance-type targets registered by Gantry carry their host's address here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub registered_at: EpochMillis,
    /// Set once deregistered: no new requests; the target disappears at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_until: Option<EpochMillis>,
}

impl Target {
    /// `id:port`, the identity of a registration within its target group.
    pub fn key(&self) -> String {
        format!("{}:{}", self.id, self.port)
    }

    /// `host:port` to connect to.
    pub fn connect_address(&self) -> String {
        let host = self.address.as_deref().unwrap_or(&self.id);
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Target health states, as `DescribeTargetHealth` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetHealthState {
    #[serde(rename = "initial")]
    Initial,
    #[serde(rename = "healthy")]
    Healthy,
    #[serde(rename = "unhealthy")]
    Unhealthy,
    #[serde(rename = "unhealthy.draining")]
    UnhealthyDraining,
    #[serde(rename = "unused")]
    Unused,
    #[serde(rename = "draining")]
    Draining,
    #[serde(rename = "unavailable")]
    Unavailable,
}

impl TargetHealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::UnhealthyDraining => "unhealthy.draining",
            Self::Unused => "unused",
            Self::Draining => "draining",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What one proxy observed about one target (its active health checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealthObservation {
    pub id: String,
    pub port: u16,
    /// `initial`, `healthy` or `unhealthy`.
    pub state: TargetHealthState,
    /// AWS reason code, e.g. `Target.ResponseCodeMismatch`, `Target.Timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The health of one target group's targets as seen by one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupHealthReport {
    pub target_group_arn: String,
    pub targets: Vec<TargetHealthObservation>,
}

/// `POST /lb/v1/health`: a proxy's latest health-check results (its whole view, every time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// Stable per `gantry lb` process.
    pub proxy_id: String,
    pub target_groups: Vec<TargetGroupHealthReport>,
    /// Listeners of the configuration the proxy could not open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listener_failures: Vec<ListenerFailure>,
}

/// `POST /lb/v1/metrics`: a proxy's traffic, aggregated per window (a minute by default) and
/// target group, for the `AWS/ApplicationELB` and `AWS/NetworkELB` metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    pub proxy_id: String,
    pub windows: Vec<UsageWindow>,
    /// Per load balancer: the answers the proxy made itself and the network flows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<LbUsageWindow>,
    /// The availability zone this proxy serves as a load balancer node in (`gantry lb
    /// --availability-zone`), for the metrics' `AvailabilityZone` dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
}

/// One load balancer's traffic through one proxy during one window, beyond what its target
/// groups' windows say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbUsageWindow {
    /// When the window began, seconds since the epoch.
    pub start: i64,
    pub load_balancer_arn: String,
    /// HTTP answers made by the proxy itself (fixed responses, redirects, error pages) by
    /// class: 3XX, 4XX, 5XX.
    #[serde(default)]
    pub elb_codes: [u64; 3],
    /// Of the 5XX ones: 500, 502, 503, 504.
    #[serde(default)]
    pub elb_5xx: [u64; 4],
    /// Fixed-response actions taken.
    #[serde(default)]
    pub fixed_responses: u64,
    /// Redirect actions taken.
    #[serde(default)]
    pub redirects: u64,
    /// Network load balancers: flows per protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<FlowUsage>,
}

/// A network load balancer's flows of one protocol during a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowUsage {
    /// `TCP`, `TLS` or `UDP`.
    pub protocol: String,
    /// The most flows open at once during the window.
    pub active: u64,
    /// Flows opened during the window.
    pub new: u64,
    /// Bytes from clients and to clients during the window (payload; TLS records for TLS).
    pub bytes: u64,
}

/// One target group's traffic through one proxy during one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageWindow {
    /// When the window began, seconds since the epoch (the datapoints' timestamp).
    pub start: i64,
    pub target_group_arn: String,
    /// Requests routed to the group, whatever their outcome.
    #[serde(default)]
    pub requests: u64,
    /// Responses of targets by class: 2XX, 3XX, 4XX, 5XX.
    #[serde(default)]
    pub target_codes: [u64; 4],
    /// Targets' response times in seconds (from forwarding to the response head), as distinct
    /// values with their counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_times: Vec<(f64, u64)>,
    /// The group's targets this proxy found healthy and unhealthy at the end of the window.
    #[serde(default)]
    pub healthy: u32,
    #[serde(default)]
    pub unhealthy: u32,
    /// The same per availability zone of the targets: (zone, healthy, unhealthy); the zone is
    /// empty for targets registered without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<(String, u32, u32)>,
}

/// A listener port a proxy could not open (taken by another process, or not permitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerFailure {
    pub port: u16,
    /// The error, e.g. `Address already in use (os error 98)`.
    pub reason: String,
}

/// A target group with its registered targets (draining ones included), as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupConfig {
    pub target_group: TargetGroup,
    pub targets: Vec<Target>,
}

/// The whole load-balancing configuration of one region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbConfig {
    pub region: String,
    /// The store revision the snapshot was read at.
    pub revision: u64,
    pub generated_at: EpochMillis,
    pub load_balancers: Vec<LoadBalancer>,
    pub target_groups: Vec<TargetGroupConfig>,
    /// The certificates the HTTPS and TLS listeners name, with their keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateMaterial>,
}

/// One line of the `GET /lb/v1/config` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase", tag = "type")]
pub enum LbStreamMessage {
    /// A full snapshot; replaces everything the proxy had.
    #[serde(rename = "config")]
    Config { config: Box<LbConfig> },
    /// Sent every `intervalSeconds` when nothing changed.
    #[serde(rename = "heartbeat")]
    Heartbeat { interval_seconds: u64 },
}

/// Whether `text` matches an ELB wildcard `pattern` (`*`: any run of characters, `?`: exactly one
/// character), optionally ignoring ASCII case.
pub fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if case_insensitive {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_elb() {
        assert!(wildcard_match("/api/*", "/api/users/1", false));
        assert!(wildcard_match("/api/*", "/api/", false));
        assert!(!wildcard_match("/api/*", "/apx/", false));
        assert!(wildcard_match("/v?/x", "/v2/x", false));
        assert!(!wildcard_match("/v?/x", "/v22/x", false));
        assert!(wildcard_match("*.example.com", "WWW.Example.com", true));
        assert!(!wildcard_match("*.example.com", "example.com", true));
        assert!(wildcard_match("*", "", false));
        assert!(!wildcard_match("/API/*", "/api/x", false));
    }

    #[test]
    fn actions_round_trip_in_camel_case() {
        let a = Action::Forward {
            order: Some(1),
            target_group_arn: None,
            target_groups: vec![WeightedTargetGroup {
                target_group_arn: "arn:tg".into(),
                weight: 3,
            }],
            stickiness: GroupStickiness::default(),
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["type"], "forward");
        assert_eq!(v["targetGroups"][0]["targetGroupArn"], "arn:tg");
        assert_eq!(serde_json::from_value::<Action>(v).unwrap(), a);
        let m = LbStreamMessage::Heartbeat {
            interval_seconds: 5,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"heartbeat","intervalSeconds":5}"#
        );
    }

    #[test]
    fn connect_address_uses_address_then_id() {
        let mut t = Target {
            id: "i-0abc".into(),
            port: 32768,
            address: Some("10.0.0.5".into()),
            availability_zone: None,
            registered_at: 0,
            draining_until: None,
        };
        assert_eq!(t.connect_address(), "10.0.0.5:32768");
        t.address = None;
        t.id = "::1".into();
        assert_eq!(t.connect_address(), "[::1]:32768");
        assert_eq!(t.key(), "::1:32768");
    }
}

/// A security policy of HTTPS and TLS listeners as `gantry lb` applies it: the protocol
/// versions and cipher suites (OpenSSL names, by priority) of AWS's policy of that name that the
/// proxy's TLS library (rustls) implements. rustls has no TLS 1.0/1.1 and no CBC or non-ECDHE
/// suites, so those of AWS's lists are left out rather than claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslPolicy {
    pub name: &'static str,
    /// `TLSv1.2`, `TLSv1.3`.
    pub protocols: &'static [&'static str],
    pub ciphers: &'static [&'static str],
}

/// The policy CreateListener uses when it names none.
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-2016-08";

const TLS13_CIPHERS: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];
const TLS12_ECDHE_GCM: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
];
const TLS13_AND_TLS12_ECDHE_GCM: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
];

/// The security policies Gantry serves (others are refused with `SSLPolicyNotFound`).
pub const SSL_POLICIES: &[SslPolicy] = &[
    SslPolicy {
        name: "ELBSecurityPolicy-2016-08",
        protocols: &["TLSv1.2"],
        ciphers: TLS12_ECDHE_GCM,
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS-1-2-2017-01",
        protocols: &["TLSv1.2"],
        ciphers: TLS12_ECDHE_GCM,
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
        protocols: &["TLSv1.2"],
        ciphers: TLS12_ECDHE_GCM,
    },
    SslPolicy {
        name: "ELBSecurityPolicy-FS-1-2-Res-2020-10",
        protocols: &["TLSv1.2"],
        ciphers: TLS12_ECDHE_GCM,
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS13-1-2-2021-06",
        protocols: &["TLSv1.2", "TLSv1.3"],
        ciphers: TLS13_AND_TLS12_ECDHE_GCM,
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        protocols: &["TLSv1.2", "TLSv1.3"],
        ciphers: TLS13_AND_TLS12_ECDHE_GCM,
    },
    SslPolicy {
        name: "ELBSecurityPolicy-TLS13-1-3-2021-06",
        protocols: &["TLSv1.3"],
        ciphers: TLS13_CIPHERS,
    },
];

/// The served policy named `name`.
pub fn ssl_policy(name: &str) -> Option<&'static SslPolicy> {
    SSL_POLICIES.iter().find(|p| p.name == name)
}
