//! The ELBv2 wire: reading flattened query parameters (`Name.member.N.Sub`), writing the XML
//! shapes botocore parses (lists as `<member>`), Marker/PageSize pagination.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use gantry_aws_proto::pagination::{decode_token, encode_token, iso8601};
use gantry_aws_proto::query::{QueryRequest, XmlWriter};
use gantry_domain::lb::{
    Action, GroupStickiness, HealthCheck, Listener, LoadBalancer, QueryStringMatch, Redirect, Rule,
    RuleCondition, TargetGroup, WeightedTargetGroup,
};
use gantry_domain::tags::Tag;

use crate::error::Elbv2Error;

/// Flattened query parameters, or the members of one nested structure of them.
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    pub fn from_request(req: &QueryRequest) -> Self {
        let mut map = BTreeMap::new();
        for (k, v) in req.pairs() {
            map.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Self { map }
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            map: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    pub fn req(&self, name: &str) -> Result<&str, Elbv2Error> {
        self.get(name).ok_or_else(|| {
            Elbv2Error::validation(format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(name)))
        })
    }

    /// Whether any member starts with `name` (a structure or list was sent, maybe empty).
    pub fn has(&self, name: &str) -> bool {
        self.map
            .keys()
            .any(|k| k == name || k.starts_with(&format!("{name}.")))
    }

    pub fn u32(&self, name: &str) -> Result<Option<u32>, Elbv2Error> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<u32>().map_err(|_| {
                    Elbv2Error::validation(format!("'{v}' is not a valid value for {name}"))
                })
            })
            .transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, Elbv2Error> {
        self.get(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Elbv2Error::validation(format!(
                    "'{v}' is not a valid boolean for {name}"
                ))),
            })
            .transpose()
    }

    /// `name.member.N`, ordered by N.
    pub fn list(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.member.");
        let mut items: Vec<(u64, String)> = self
            .map
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.parse().ok()?, v.clone())))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// `name.member.N.<rest>` as one `Params` per N, ordered by N.
    pub fn structs(&self, name: &str) -> Vec<Params> {
        let prefix = format!("{name}.member.");
        let mut items: BTreeMap<u64, Params> = BTreeMap::new();
        for (k, v) in &self.map {
            let Some(rest) = k.strip_prefix(&prefix) else {
                continue;
            };
            let Some((i, member)) = rest.split_once('.') else {
                continue;
            };
            let Ok(i) = i.parse::<u64>() else { continue };
            items
                .entry(i)
                .or_default()
                .map
                .insert(member.to_owned(), v.clone());
        }
        items.into_values().collect()
    }

    /// The members of structure `name` (`name.<rest>`).
    pub fn sub(&self, name: &str) -> Params {
        let prefix = format!("{name}.");
        Params {
            map: self
                .map
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
                .collect(),
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `Tags.member.N.Key/Value`.
pub fn parse_tags(p: &Params, name: &str) -> Result<Vec<Tag>, Elbv2Error> {
    let mut out: Vec<Tag> = Vec::new();
    for t in p.structs(name) {
        let key = t.req("Key")?.to_owned();
        if out.iter().any(|o| o.key == key) {
            return Err(Elbv2Error::DuplicateTagKeys(key));
        }
        if key.is_empty() || key.chars().count() > 128 {
            return Err(Elbv2Error::validation(format!(
                "Tag key '{key}' must be between 1 and 128 characters"
            )));
        }
        let value = t.get("Value").unwrap_or("").to_owned();
        if value.chars().count() > 256 {
            return Err(Elbv2Error::validation(format!(
                "Tag value for key '{key}' must be at most 256 characters"
            )));
        }
        out.push(Tag { key, value });
    }
    Ok(out)
}

/// Adds or replaces `new` tags in `tags`; at most 50 in all.
pub fn merge_tags(tags: &mut Vec<Tag>, new: &[Tag]) -> Result<(), Elbv2Error> {
    for t in new {
        match tags.iter_mut().find(|o| o.key == t.key) {
            Some(o) => o.value = t.value.clone(),
            None => tags.push(t.clone()),
        }
    }
    if tags.len() > 50 {
        return Err(Elbv2Error::TooManyTags(format!(
            "{} tags exceed the limit of 50 per resource",
            tags.len()
        )));
    }
    Ok(())
}

const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

/// Parses `Actions.member.N` / `DefaultActions.member.N` (target group ARNs are checked by the
/// caller). Exactly one terminal action is allowed.
pub fn parse_actions(p: &Params, name: &str) -> Result<Vec<Action>, Elbv2Error> {
    let mut out = Vec::new();
    for a in p.structs(name) {
        let order = a.u32("Order")?;
        if let Some(o) = order
            && !(1..=50000).contains(&o)
        {
            return Err(Elbv2Error::validation(format!(
                "Action order {o} must be between 1 and 50000"
            )));
        }
        let action = match a.req("Type")? {
            "forward" => {
                let single = a.get("TargetGroupArn").map(str::to_owned);
                let fc = a.sub("ForwardConfig");
                let mut groups = Vec::new();
                for g in fc.structs("TargetGroups") {
                    let arn = g.req("TargetGroupArn")?.to_owned();
                    let weight = g.u32("Weight")?.unwrap_or(1);
                    if weight > 999 {
                        return Err(Elbv2Error::validation(format!(
                            "Target group weight {weight} must be between 0 and 999"
                        )));
                    }
                    groups.push(WeightedTargetGroup {
                        target_group_arn: arn,
                        weight,
                    });
                }
                match (&single, groups.is_empty()) {
                    (None, true) => {
                        return Err(Elbv2Error::InvalidAction(
                            "A forward action must specify a target group ARN or a forward configuration".into(),
                        ));
                    }
                    (Some(arn), true) => groups.push(WeightedTargetGroup {
                        target_group_arn: arn.clone(),
                        weight: 1,
                    }),
                    (Some(arn), false) => {
                        if groups.len() != 1 || &groups[0].target_group_arn != arn {
                            return Err(Elbv2Error::InvalidAction(
                                "You cannot specify both a top-level target group ARN and a different forward configuration".into(),
                            ));
                        }
                    }
                    (None, false) => {}
                }
                if groups.len() > 5 {
                    return Err(Elbv2Error::InvalidAction(
                        "A forward action can have at most 5 target groups".into(),
                    ));
                }
                let sc = fc.sub("TargetGroupStickinessConfig");
                let stickiness = GroupStickiness {
                    enabled: sc.bool("Enabled")?.unwrap_or(false),
                    duration_seconds: sc.u32("DurationSeconds")?,
                };
                Action::Forward {
                    order,
                    target_group_arn: single.or_else(|| {
                        (groups.len() == 1).then(|| groups[0].target_group_arn.clone())
                    }),
                    target_groups: groups,
                    stickiness,
                }
            }
            "fixed-response" => {
                let c = a.sub("FixedResponseConfig");
                let code = c.req("StatusCode")?;
                let status_code = code
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (200..600).contains(s) && !(300..400).contains(s))
                    .ok_or_else(|| {
                        Elbv2Error::validation(format!(
                            "Status code '{code}' must be 2XX, 4XX or 5XX"
                        ))
                    })?;
                let content_type = c.get("ContentType").map(str::to_owned);
                if let Some(ct) = &content_type
                    && !CONTENT_TYPES.contains(&ct.as_str())
                {
                    return Err(Elbv2Error::InvalidAction(
                        "The ContentType must be one of:'text/html', 'application/json', \
                         'application/javascript', 'text/css', 'text/plain'"
                            .to_owned(),
                    ));
                }
                let message_body = c.get("MessageBody").map(str::to_owned);
                if message_body.as_ref().is_some_and(|b| b.len() > 1024) {
                    return Err(Elbv2Error::validation(
                        "The fixed-response message body can be at most 1024 characters",
                    ));
                }
                Action::FixedResponse {
                    order,
                    status_code,
                    content_type,
                    message_body,
                }
            }
            "redirect" => {
                let c = a.sub("RedirectConfig");
                let status_code = c.req("StatusCode")?.to_owned();
                if !matches!(status_code.as_str(), "HTTP_301" | "HTTP_302") {
                    return Err(Elbv2Error::validation(format!(
                        "Redirect status code '{status_code}' must be HTTP_301 or HTTP_302"
                    )));
                }
                let part = |k: &str, d: &str| c.get(k).unwrap_or(d).to_owned();
                let redirect = Redirect {
                    protocol: part("Protocol", "#{protocol}"),
                    port: part("Port", "#{port}"),
                    host: part("Host", "#{host}"),
                    path: part("Path", "/#{path}"),
                    query: part("Query", "#{query}"),
                    status_code,
                };
                if !matches!(redirect.protocol.as_str(), "#{protocol}" | "HTTP" | "HTTPS") {
                    return Err(Elbv2Error::validation(
                        "Redirect protocol must be HTTP, HTTPS or #{protocol}",
                    ));
                }
                if !redirect.path.starts_with('/') {
                    return Err(Elbv2Error::validation("Redirect path must start with '/'"));
                }
                Action::Redirect { order, redirect }
            }
            t @ ("authenticate-oidc" | "authenticate-cognito" | "jwt-validation") => {
                return Err(Elbv2Error::InvalidAction(format!(
                    "Action type '{t}' is not supported by Gantry"
                )));
            }
            t => {
                return Err(Elbv2Error::validation(format!(
                    "Action type '{t}' must be one of [forward, authenticate-oidc, authenticate-cognito, redirect, fixed-response, jwt-validation]"
                )));
            }
        };
        out.push(action);
    }
    if out.is_empty() {
        return Err(Elbv2Error::validation(format!(
            "At least one action must be specified in {name}"
        )));
    }
    if out.len() > 1 {
        return Err(Elbv2Error::InvalidAction(
            "Exactly one forward, redirect or fixed-response action must be specified".into(),
        ));
    }
    Ok(out)
}

const FIELDS: &[&str] = &[
    "path-pattern",
    "host-header",
    "http-header",
    "http-request-method",
    "query-string",
    "source-ip",
];

/// Parses `Conditions.member.N`, in either the legacy (`Field` + `Values`) or the
/// `*Config` form.
pub fn parse_conditions(p: &Params) -> Result<Vec<RuleCondition>, Elbv2Error> {
    let mut out = Vec::new();
    let mut total_values = 0;
    for c in p.structs("Conditions") {
        let field = c.req("Field")?.to_owned();
        if !FIELDS.contains(&field.as_str()) {
            return Err(Elbv2Error::validation(format!(
                "Condition field '{field}' must be one of [{}]",
                FIELDS.join(", ")
            )));
        }
        let legacy = c.list("Values");
        let config_name = match field.as_str() {
            "path-pattern" => "PathPatternConfig",
            "host-header" => "HostHeaderConfig",
            "http-header" => "HttpHeaderConfig",
            "http-request-method" => "HttpRequestMethodConfig",
            "query-string" => "QueryStringConfig",
            _ => "SourceIpConfig",
        };
        let cfg = c.sub(config_name);
        let mut cond = RuleCondition {
            field: field.clone(),
            values: Vec::new(),
            http_header_name: None,
            query_strings: Vec::new(),
        };
        if field == "query-string" {
            for kv in cfg.structs("Values") {
                cond.query_strings.push(QueryStringMatch {
                    key: kv.get("Key").map(str::to_owned),
                    value: kv.req("Value")?.to_owned(),
                });
            }
            total_values += cond.query_strings.len();
            if cond.query_strings.is_empty() {
                return Err(Elbv2Error::validation(
                    "A query-string condition needs QueryStringConfig values",
                ));
            }
        } else {
            let from_cfg = cfg.list("Values");
            if !legacy.is_empty() && !from_cfg.is_empty() {
                return Err(Elbv2Error::validation(format!(
                    "Specify either Values or {config_name}, not both"
                )));
            }
            cond.values = if from_cfg.is_empty() {
                legacy
            } else {
                from_cfg
            };
            if cond.values.is_empty() {
                return Err(Elbv2Error::validation(format!(
                    "A {field} condition needs at least one value"
                )));
            }
            total_values += cond.values.len();
            if field == "http-header" {
                cond.http_header_name = Some(cfg.req("HttpHeaderName")?.to_owned());
            }
            if field == "source-ip" {
                for v in &cond.values {
                    if parse_cidr(v).is_none() {
                        return Err(Elbv2Error::validation(format!(
                            "'{v}' is not a valid CIDR block"
                        )));
                    }
                }
            }
            if field == "path-pattern" {
                for v in &cond.values {
                    if v.len() > 128 {
                        return Err(Elbv2Error::validation(
                            "A path pattern can be at most 128 characters",
                        ));
                    }
                }
            }
        }
        out.push(cond);
    }
    if total_values > 5 {
        return Err(Elbv2Error::validation(
            "A rule can have at most 5 condition values",
        ));
    }
    Ok(out)
}

/// `a.b.c.d/n` or an IPv6 CIDR: (address, prefix length).
pub fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

pub fn time(ms: u64) -> String {
    iso8601(UNIX_EPOCH + Duration::from_millis(ms))
}

pub fn write_list<T>(w: &mut XmlWriter, tag: &str, items: &[T], f: impl Fn(&mut XmlWriter, &T)) {
    w.open(tag);
    for i in items {
        w.open("member");
        f(w, i);
        w.close("member");
    }
    w.close(tag);
}

pub fn write_strings(w: &mut XmlWriter, tag: &str, items: &[String]) {
    write_list(w, tag, items, |w, s| w.raw(&escape(s)));
}

fn escape(s: &str) -> String {
    let mut out = String::new();
    gantry_aws_proto::query::escape_into(&mut out, s);
    out
}

pub fn write_tags(w: &mut XmlWriter, tags: &[Tag]) {
    write_list(w, "Tags", tags, |w, t| {
        w.leaf("Key", &t.key);
        w.leaf("Value", &t.value);
    });
}

pub fn write_attributes(w: &mut XmlWriter, attrs: &BTreeMap<String, String>) {
    w.open("Attributes");
    for (k, v) in attrs {
        w.open("member");
        w.leaf("Key", k);
        w.leaf("Value", v);
        w.close("member");
    }
    w.close("Attributes");
}

/// `AvailabilityZones`: each subnet with its zone (EC2's when known).
pub fn write_zones(w: &mut XmlWriter, lb: &LoadBalancer) {
    w.open("AvailabilityZones");
    for (i, s) in lb.subnets.iter().enumerate() {
        w.open("member");
        let zone = lb
            .subnet_zones
            .get(s)
            .cloned()
            .unwrap_or_else(|| format!("local-{}", (b'a' + (i % 26) as u8) as char));
        w.leaf("ZoneName", &zone);
        w.leaf("SubnetId", s);
        w.open("LoadBalancerAddresses");
        w.close("LoadBalancerAddresses");
        w.close("member");
    }
    w.close("AvailabilityZones");
}

/// A load balancer's `State`: `Code` and, when not `active`, `Reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbState {
    pub code: &'static str,
    pub reason: Option<String>,
}

impl LbState {
    pub const ACTIVE: LbState = LbState {
        code: "active",
        reason: None,
    };
}

pub fn write_load_balancer(w: &mut XmlWriter, lb: &LoadBalancer) {
    write_load_balancer_in(w, lb, &LbState::ACTIVE);
}

pub fn write_load_balancer_in(w: &mut XmlWriter, lb: &LoadBalancer, state: &LbState) {
    w.leaf("LoadBalancerArn", &lb.arn);
    w.leaf("DNSName", &lb.dns_name);
    w.leaf("CanonicalHostedZoneId", "Z00GANTRYLOCAL");
    w.leaf("CreatedTime", &time(lb.created_at));
    w.leaf("LoadBalancerName", &lb.name);
    w.leaf("Scheme", &lb.scheme);
    w.leaf(
        "VpcId",
        lb.vpc_id.as_deref().unwrap_or("vpc-00000000gantry00"),
    );
    w.open("State");
    w.leaf("Code", state.code);
    if let Some(r) = &state.reason {
        w.leaf("Reason", r);
    }
    w.close("State");
    w.leaf("Type", lb.lb_type.as_str());
    write_zones(w, lb);
    if lb.lb_type == gantry_domain::lb::LoadBalancerType::Application
        || !lb.security_groups.is_empty()
    {
        write_strings(w, "SecurityGroups", &lb.security_groups);
    }
    w.leaf("IpAddressType", &lb.ip_address_type);
}

pub fn write_target_group(w: &mut XmlWriter, tg: &TargetGroup, lb_arns: &[String]) {
    let hc: &HealthCheck = &tg.health_check;
    w.leaf("TargetGroupArn", &tg.arn);
    w.leaf("TargetGroupName", &tg.name);
    w.leaf("Protocol", &tg.protocol);
    if let Some(p) = tg.port {
        w.leaf("Port", &p.to_string());
    }
    if let Some(v) = &tg.vpc_id {
        w.leaf("VpcId", v);
    }
    w.leaf("HealthCheckProtocol", &hc.protocol);
    w.leaf("HealthCheckPort", &hc.port);
    w.leaf("HealthCheckEnabled", bool_str(hc.enabled));
    w.leaf(
        "HealthCheckIntervalSeconds",
        &hc.interval_seconds.to_string(),
    );
    w.leaf("HealthCheckTimeoutSeconds", &hc.timeout_seconds.to_string());
    w.leaf("HealthyThresholdCount", &hc.healthy_threshold.to_string());
    w.leaf(
        "UnhealthyThresholdCount",
        &hc.unhealthy_threshold.to_string(),
    );
    if let Some(path) = &hc.path {
        w.leaf("HealthCheckPath", path);
    }
    if let Some(m) = &hc.matcher {
        w.open("Matcher");
        w.leaf("HttpCode", m);
        w.close("Matcher");
    }
    write_strings(w, "LoadBalancerArns", lb_arns);
    w.leaf("TargetType", &tg.target_type);
    if let Some(v) = &tg.protocol_version {
        w.leaf("ProtocolVersion", v);
    }
    w.leaf("IpAddressType", &tg.ip_address_type);
}

pub fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

pub fn write_action(w: &mut XmlWriter, a: &Action) {
    w.leaf("Type", a.type_str());
    match a {
        Action::Forward {
            order,
            target_group_arn,
            target_groups,
            stickiness,
        } => {
            if let Some(arn) = target_group_arn {
                w.leaf("TargetGroupArn", arn);
            }
            if let Some(o) = order {
                w.leaf("Order", &o.to_string());
            }
            w.open("ForwardConfig");
            write_list(w, "TargetGroups", target_groups, |w, g| {
                w.leaf("TargetGroupArn", &g.target_group_arn);
                w.leaf("Weight", &g.weight.to_string());
            });
            w.open("TargetGroupStickinessConfig");
            w.leaf("Enabled", bool_str(stickiness.enabled));
            if let Some(d) = stickiness.duration_seconds {
                w.leaf("DurationSeconds", &d.to_string());
            }
            w.close("TargetGroupStickinessConfig");
            w.close("ForwardConfig");
        }
        Action::FixedResponse {
            order,
            status_code,
            content_type,
            message_body,
        } => {
            if let Some(o) = order {
                w.leaf("Order", &o.to_string());
            }
            w.open("FixedResponseConfig");
            if let Some(b) = message_body {
                w.leaf("MessageBody", b);
            }
            w.leaf("StatusCode", &status_code.to_string());
            if let Some(c) = content_type {
                w.leaf("ContentType", c);
            }
            w.close("FixedResponseConfig");
        }
        Action::Redirect { order, redirect } => {
            if let Some(o) = order {
                w.leaf("Order", &o.to_string());
            }
            w.open("RedirectConfig");
            w.leaf("Protocol", &redirect.protocol);
            w.leaf("Port", &redirect.port);
            w.leaf("Host", &redirect.host);
            w.leaf("Path", &redirect.path);
            w.leaf("Query", &redirect.query);
            w.leaf("StatusCode", &redirect.status_code);
            w.close("RedirectConfig");
        }
    }
}

pub fn write_actions(w: &mut XmlWriter, tag: &str, actions: &[Action]) {
    write_list(w, tag, actions, write_action);
}

pub fn write_listener(w: &mut XmlWriter, lb: &LoadBalancer, l: &Listener) {
    w.leaf("ListenerArn", &l.arn);
    w.leaf("LoadBalancerArn", &lb.arn);
    w.leaf("Port", &l.port.to_string());
    w.leaf("Protocol", &l.protocol);
    // As AWS: the default certificate only (DescribeListenerCertificates lists them all).
    let default: Vec<_> = l.certificates.iter().filter(|c| c.is_default).collect();
    if !default.is_empty() {
        write_list(w, "Certificates", &default, |w, c| {
            w.leaf("CertificateArn", &c.certificate_arn);
        });
    }
    if let Some(p) = &l.ssl_policy {
        w.leaf("SslPolicy", p);
    }
    write_actions(w, "DefaultActions", &l.default_actions);
}

fn write_condition(w: &mut XmlWriter, c: &RuleCondition) {
    w.leaf("Field", &c.field);
    if matches!(c.field.as_str(), "path-pattern" | "host-header") {
        write_strings(w, "Values", &c.values);
    }
    let values = |w: &mut XmlWriter| write_strings(w, "Values", &c.values);
    match c.field.as_str() {
        "path-pattern" => {
            w.open("PathPatternConfig");
            values(w);
            w.close("PathPatternConfig");
        }
        "host-header" => {
            w.open("HostHeaderConfig");
            values(w);
            w.close("HostHeaderConfig");
        }
        "http-header" => {
            w.open("HttpHeaderConfig");
            w.leaf(
                "HttpHeaderName",
                c.http_header_name.as_deref().unwrap_or(""),
            );
            values(w);
            w.close("HttpHeaderConfig");
        }
        "http-request-method" => {
            w.open("HttpRequestMethodConfig");
            values(w);
            w.close("HttpRequestMethodConfig");
        }
        "query-string" => {
            w.open("QueryStringConfig");
            write_list(w, "Values", &c.query_strings, |w, kv| {
                if let Some(k) = &kv.key {
                    w.leaf("Key", k);
                }
                w.leaf("Value", &kv.value);
            });
            w.close("QueryStringConfig");
        }
        _ => {
            w.open("SourceIpConfig");
            values(w);
            w.close("SourceIpConfig");
        }
    }
}

pub fn write_rule(w: &mut XmlWriter, r: &Rule) {
    w.leaf("RuleArn", &r.arn);
    w.leaf("Priority", &r.priority.to_string());
    write_list(w, "Conditions", &r.conditions, write_condition);
    write_actions(w, "Actions", &r.actions);
    w.leaf("IsDefault", "false");
}

pub fn write_default_rule(w: &mut XmlWriter, arn: &str, l: &Listener) {
    w.leaf("RuleArn", arn);
    w.leaf("Priority", "default");
    w.open("Conditions");
    w.close("Conditions");
    write_actions(w, "Actions", &l.default_actions);
    w.leaf("IsDefault", "true");
}

/// The page starting after `Marker` (an opaque token of the last key returned) of `items`
/// (sorted by key). `PageSize` is 1..=400.
pub fn paginate<T>(
    items: Vec<(String, T)>,
    p: &Params,
) -> Result<(Vec<T>, Option<String>), Elbv2Error> {
    let size = p.u32("PageSize")?.unwrap_or(400);
    if !(1..=400).contains(&size) {
        return Err(Elbv2Error::validation(format!(
            "Page size {size} must be between 1 and 400"
        )));
    }
    let after = match p.get("Marker") {
        Some(m) => Some(
            decode_token(m)
                .ok_or_else(|| Elbv2Error::validation(format!("Invalid marker '{m}'")))?,
        ),
        None => None,
    };
    let mut page = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in items {
        if after.as_ref().is_some_and(|a| k.as_str() <= a.as_str()) {
            continue;
        }
        if page.len() == size as usize {
            more = true;
            break;
        }
        last = Some(k);
        page.push(v);
    }
    let next = if more {
        last.map(|k| encode_token(&k))
    } else {
        None
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weighted_forward_and_fixed_response() {
        let p = Params::from_pairs(&[
            ("DefaultActions.member.1.Type", "forward"),
            (
                "DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn",
                "a",
            ),
            (
                "DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.Weight",
                "3",
            ),
            (
                "DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.TargetGroupArn",
                "b",
            ),
        ]);
        let a = parse_actions(&p, "DefaultActions").unwrap();
        let Action::Forward {
            target_groups,
            target_group_arn,
            ..
        } = &a[0]
        else {
            panic!("not forward")
        };
        assert_eq!(target_group_arn, &None);
        assert_eq!(target_groups[0].weight, 3);
        assert_eq!(target_groups[1].weight, 1);
        let p = Params::from_pairs(&[
            ("Actions.member.1.Type", "fixed-response"),
            ("Actions.member.1.FixedResponseConfig.StatusCode", "404"),
        ]);
        assert!(matches!(
            parse_actions(&p, "Actions").unwrap()[0],
            Action::FixedResponse {
                status_code: 404,
                ..
            }
        ));
        let p = Params::from_pairs(&[
            ("Actions.member.1.Type", "fixed-response"),
            ("Actions.member.1.FixedResponseConfig.StatusCode", "302"),
        ]);
        assert!(parse_actions(&p, "Actions").is_err());
    }

    #[test]
    fn parses_both_condition_forms() {
        let p = Params::from_pairs(&[
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/api/*"),
            ("Conditions.member.2.Field", "http-header"),
            (
                "Conditions.member.2.HttpHeaderConfig.HttpHeaderName",
                "X-Env",
            ),
            (
                "Conditions.member.2.HttpHeaderConfig.Values.member.1",
                "blue",
            ),
            ("Conditions.member.3.Field", "query-string"),
            (
                "Conditions.member.3.QueryStringConfig.Values.member.1.Key",
                "v",
            ),
            (
                "Conditions.member.3.QueryStringConfig.Values.member.1.Value",
                "2",
            ),
        ]);
        let c = parse_conditions(&p).unwrap();
        assert_eq!(c[0].values, vec!["/api/*"]);
        assert_eq!(c[1].http_header_name.as_deref(), Some("X-Env"));
        assert_eq!(c[2].query_strings[0].key.as_deref(), Some("v"));
    }

    #[test]
    fn pages_follow_markers() {
        let items: Vec<(String, u32)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
        let p = Params::from_pairs(&[("PageSize", "2")]);
        let (a, m) = paginate(items.clone(), &p).unwrap();
        assert_eq!(a, vec![0, 1]);
        let m = m.unwrap();
        let p = Params::from_pairs(&[("PageSize", "2"), ("Marker", &m)]);
        let (b, _) = paginate(items.clone(), &p).unwrap();
        assert_eq!(b, vec![2, 3]);
        let p = Params::from_pairs(&[("PageSize", "5")]);
        assert_eq!(paginate(items, &p).unwrap().1, None);
    }
}
