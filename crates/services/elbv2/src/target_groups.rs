//! CreateTargetGroup, DescribeTargetGroups, ModifyTargetGroup, DeleteTargetGroup,
//! Describe/ModifyTargetGroupAttributes.

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::lb::{HealthCheck, LoadBalancer, TargetGroup};
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};

use crate::error::Elbv2Error;
use crate::wire::{self, Params};
use crate::{
    Elbv2Service, all_load_balancers, attributes, commit_with_retry, keys, lbs_using,
    load_balancer_by_arn, target_group_by_arn,
};

fn write(w: &mut XmlWriter, tg: &TargetGroup, lbs: &[LoadBalancer]) {
    wire::write_target_group(w, tg, &lbs_using(lbs, &tg.arn));
}

fn result(tgs: &[TargetGroup], lbs: &[LoadBalancer], next: Option<String>) -> String {
    let mut w = XmlWriter::new();
    wire::write_list(&mut w, "TargetGroups", tgs, |w, tg| write(w, tg, lbs));
    if let Some(n) = next {
        w.leaf("NextMarker", &n);
    }
    w.finish()
}

fn is_http(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTPS")
}

/// Applies the health-check members of a Create/ModifyTargetGroup request to `hc`.
fn apply_health_check(hc: &mut HealthCheck, p: &Params, protocol: &str) -> Result<(), Elbv2Error> {
    if let Some(proto) = p.get("HealthCheckProtocol") {
        if !matches!(proto, "HTTP" | "HTTPS" | "TCP") {
            return Err(Elbv2Error::validation(format!(
                "Health check protocol '{proto}' must be HTTP, HTTPS or TCP"
            )));
        }
        if is_http(protocol) && proto == "TCP" {
            return Err(Elbv2Error::InvalidConfiguration(
                "Health check protocol TCP is not supported for HTTP target groups".into(),
            ));
        }
        hc.protocol = proto.to_owned();
    }
    if let Some(port) = p.get("HealthCheckPort") {
        if port != "traffic-port" && !port.parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(Elbv2Error::validation(format!(
                "Health check port '{port}' must be 'traffic-port' or a port number"
            )));
        }
        hc.port = port.to_owned();
    }
    if let Some(e) = p.bool("HealthCheckEnabled")? {
        hc.enabled = e;
    }
    if let Some(path) = p.get("HealthCheckPath") {
        if !path.starts_with('/') || path.len() > 1024 {
            return Err(Elbv2Error::validation(format!(
                "Health check path '{path}' must start with '/' and be at most 1024 characters"
            )));
        }
        hc.path = Some(path.to_owned());
    }
    if let Some(i) = p.u32("HealthCheckIntervalSeconds")? {
        if !(5..=300).contains(&i) {
            return Err(Elbv2Error::validation(
                "Health check interval must be between 5 and 300 seconds",
            ));
        }
        hc.interval_seconds = i;
    }
    if let Some(t) = p.u32("HealthCheckTimeoutSeconds")? {
        if !(2..=120).contains(&t) {
            return Err(Elbv2Error::validation(
                "Health check timeout must be between 2 and 120 seconds",
            ));
        }
        hc.timeout_seconds = t;
    }
    for (name, slot) in [
        ("HealthyThresholdCount", &mut hc.healthy_threshold),
        ("UnhealthyThresholdCount", &mut hc.unhealthy_threshold),
    ] {
        if let Some(n) = p.u32(name)? {
            if !(2..=10).contains(&n) {
                return Err(Elbv2Error::validation(format!(
                    "{name} must be between 2 and 10"
                )));
            }
            *slot = n;
        }
    }
    if let Some(code) = p.get("Matcher.HttpCode") {
        if !valid_matcher(code) {
            return Err(Elbv2Error::validation(format!(
                "Matcher HttpCode '{code}' must be codes like 200, 200,202 or 200-299"
            )));
        }
        hc.matcher = Some(code.to_owned());
    }
    if hc.protocol == "TCP" {
        hc.path = None;
        hc.matcher = None;
    } else {
        hc.path.get_or_insert_with(|| "/".to_owned());
        hc.matcher.get_or_insert_with(|| "200".to_owned());
    }
    let (t, i) = (hc.timeout_seconds, hc.interval_seconds);
    if is_http(protocol) && t >= i {
        return Err(Elbv2Error::validation(format!(
            "Health check timeout '{t}' must be smaller than the interval '{i}'"
        )));
    }
    if t > i {
        return Err(Elbv2Error::validation(format!(
            "Health check timeout '{t}' must be smaller than or equal to the interval '{i}'"
        )));
    }
    Ok(())
}

/// Target group names as ELBv2 checks them: the length, then the characters, then the hyphens,
/// each with its own wording.
fn validate_name(name: &str) -> Result<(), Elbv2Error> {
    if name.len() > 32 {
        return Err(Elbv2Error::validation(format!(
            "Target group name '{name}' cannot be longer than '32' characters"
        )));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Elbv2Error::validation(format!(
            "Target group name '{name}' can only contain characters that are alphanumeric characters or hyphens(-)"
        )));
    }
    if name.is_empty() || name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err(Elbv2Error::validation(format!(
            "1 validation error detected: Value '{name}' at 'targetGroup.targetGroupArn.targetGroupName' \
             failed to satisfy constraint: Member must satisfy regular expression pattern: \
             (?!.*--)(?!^-)(?!.*-$)^[A-Za-z0-9-]+$"
        )));
    }
    Ok(())
}

/// Target groups of type `alb` are health checked with HTTP or HTTPS.
fn check_alb_health_check(target_type: &str, hc: &HealthCheck) -> Result<(), Elbv2Error> {
    if target_type == "alb" && !is_http(&hc.protocol) {
        return Err(Elbv2Error::validation(format!(
            "Health check protocol '{}' is not supported for target groups with target type 'alb' (HTTP or HTTPS)",
            hc.protocol
        )));
    }
    Ok(())
}

/// `200`, `200,202`, `200-299` (codes 100-599).
pub(crate) fn valid_matcher(m: &str) -> bool {
    let code = |s: &str| {
        s.trim()
            .parse::<u16>()
            .is_ok_and(|c| (100..600).contains(&c))
    };
    m.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => code(a) && code(b),
        None => code(part),
    })
}

pub(crate) async fn create(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let name = p.req("Name")?.to_owned();
    validate_name(&name)?;
    let target_type = p.get("TargetType").unwrap_or("instance").to_owned();
    match target_type.as_str() {
        "instance" | "ip" | "alb" => {}
        "lambda" => {
            return Err(Elbv2Error::InvalidConfiguration(
                "Target type 'lambda' is not supported by Gantry: it does not run Lambda functions"
                    .into(),
            ));
        }
        _ => {
            return Err(Elbv2Error::InvalidConfiguration(format!(
                "Target type '{target_type}' is not supported by Gantry (instance, ip or alb)"
            )));
        }
    }
    let protocol = p
        .get("Protocol")
        .ok_or_else(|| {
            Elbv2Error::validation("A protocol must be specified for instance and ip target groups")
        })?
        .to_owned();
    let alb = target_type == "alb";
    if alb && protocol != "TCP" {
        return Err(Elbv2Error::validation(format!(
            "Target groups with target type 'alb' must use the TCP protocol, not '{protocol}'"
        )));
    }
    if !matches!(
        protocol.as_str(),
        "HTTP" | "HTTPS" | "TCP" | "UDP" | "TCP_UDP"
    ) {
        return Err(Elbv2Error::InvalidConfiguration(format!(
            "Target group protocol '{protocol}' is not supported by Gantry (HTTP, HTTPS, TCP, UDP or TCP_UDP)"
        )));
    }
    let port = match p.u32("Port")? {
        Some(n) if (1..=65535).contains(&n) => n as u16,
        Some(n) => {
            return Err(Elbv2Error::validation(format!(
                "Port {n} must be between 1 and 65535"
            )));
        }
        None => {
            return Err(Elbv2Error::validation(
                "A port must be specified for instance and ip target groups",
            ));
        }
    };
    let http = is_http(&protocol);
    // An application load balancer target is checked over HTTP (its listener answers HTTP).
    let mut hc = HealthCheck {
        enabled: true,
        protocol: if http {
            protocol.clone()
        } else if alb {
            "HTTP".into()
        } else {
            "TCP".into()
        },
        port: "traffic-port".into(),
        path: None,
        interval_seconds: 30,
        timeout_seconds: if http { 5 } else { 10 },
        healthy_threshold: 5,
        unhealthy_threshold: 2,
        matcher: None,
    };
    apply_health_check(&mut hc, p, &protocol)?;
    check_alb_health_check(&target_type, &hc)?;
    let protocol_version = match p.get("ProtocolVersion") {
        Some(v) if http => {
            if !matches!(v, "HTTP1" | "HTTP2" | "GRPC") {
                return Err(Elbv2Error::validation(format!(
                    "Protocol version '{v}' must be HTTP1, HTTP2 or GRPC"
                )));
            }
            Some(v.to_owned())
        }
        Some(_) => {
            return Err(Elbv2Error::InvalidConfiguration(
                "A protocol version can only be set for HTTP and HTTPS target groups".into(),
            ));
        }
        None if http => Some("HTTP1".to_owned()),
        None => None,
    };
    let tags = wire::parse_tags(p, "Tags")?;
    let key = keys::target_group(&ctx.region, &name);
    let vpc_id = p.get("VpcId").map(str::to_owned);
    let ip_address_type = p.get("IpAddressType").unwrap_or("ipv4").to_owned();
    let tg = commit_with_retry(svc.store.as_ref(), || async {
        let existing = svc.store.get_typed::<TargetGroup>(&key).await?;
        if let Some(e) = &existing {
            let same = e.value.protocol == protocol
                && e.value.port == Some(port)
                && e.value.target_type == target_type
                && e.value.health_check == hc;
            if same {
                return Ok((Txn::new(), e.value.clone()));
            }
            return Err(Elbv2Error::DuplicateTargetGroupName(name.clone()));
        }
        let count = svc
            .store
            .scan_all_typed::<TargetGroup>(&keys::target_groups(&ctx.region))
            .await?
            .len();
        if count >= crate::limits::TARGET_GROUPS {
            return Err(Elbv2Error::TooManyTargetGroups(format!(
                "The maximum number of target groups ({}) has been reached",
                crate::limits::TARGET_GROUPS
            )));
        }
        let id = keys::new_id();
        let tg = TargetGroup {
            arn: format!(
                "{}targetgroup/{name}/{id}",
                keys::arn_prefix(&ctx.region, &ctx.account_id)
            ),
            name: name.clone(),
            id,
            protocol: protocol.clone(),
            port: Some(port),
            target_type: target_type.clone(),
            vpc_id: vpc_id.clone(),
            protocol_version: protocol_version.clone(),
            ip_address_type: ip_address_type.clone(),
            health_check: hc.clone(),
            attributes: attributes::target_group_defaults(&protocol),
            tags: tags.clone(),
            created_at: ctx.now,
        };
        let txn = Txn::new()
            .require_absent(&key)
            .put(&key, encode(&key, &tg)?);
        Ok((txn, tg))
    })
    .await?;
    let lbs = all_load_balancers(svc.store.as_ref(), &ctx.region).await?;
    Ok(result(&[tg], &lbs, None))
}

pub(crate) async fn describe(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let store = svc.store.as_ref();
    let arns = p.list("TargetGroupArns");
    let names = p.list("Names");
    let lb_arn = p.get("LoadBalancerArn");
    let given = [!arns.is_empty(), !names.is_empty(), lb_arn.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        return Err(Elbv2Error::validation(
            "Specify at most one of target group ARNs, names or a load balancer ARN",
        ));
    }
    let lbs = all_load_balancers(store, &ctx.region).await?;
    let mut items: Vec<(String, TargetGroup)> = Vec::new();
    if !arns.is_empty() {
        for arn in &arns {
            let tg = target_group_by_arn(store, &ctx.region, arn).await?.value;
            items.push((tg.name.clone(), tg));
        }
    } else if !names.is_empty() {
        for n in &names {
            match store
                .get_typed::<TargetGroup>(&keys::target_group(&ctx.region, n))
                .await?
            {
                Some(tg) => items.push((n.clone(), tg.value)),
                None => return Err(Elbv2Error::TargetGroupNotFound(n.clone())),
            }
        }
    } else {
        let all = store
            .scan_all_typed::<TargetGroup>(&keys::target_groups(&ctx.region))
            .await?
            .into_iter()
            .map(|v| v.value);
        match lb_arn {
            Some(lb_arn) => {
                load_balancer_by_arn(store, &ctx.region, lb_arn).await?;
                items = all
                    .filter(|tg| lbs_using(&lbs, &tg.arn).iter().any(|a| a == lb_arn))
                    .map(|tg| (tg.name.clone(), tg))
                    .collect();
            }
            None => items = all.map(|tg| (tg.name.clone(), tg)).collect(),
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items.dedup_by(|a, b| a.0 == b.0);
    let (page, next) = wire::paginate(items, p)?;
    Ok(result(&page, &lbs, next))
}

pub(crate) async fn modify(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("TargetGroupArn")?;
    let store = svc.store.as_ref();
    let tg = commit_with_retry(store, || async {
        let cur = target_group_by_arn(store, &ctx.region, arn).await?;
        let mut tg = cur.value.clone();
        apply_health_check(&mut tg.health_check, p, &tg.protocol.clone())?;
        check_alb_health_check(&tg.target_type, &tg.health_check)?;
        let key = keys::target_group(&ctx.region, &tg.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &tg)?);
        Ok((txn, tg))
    })
    .await?;
    let lbs = all_load_balancers(store, &ctx.region).await?;
    Ok(result(&[tg], &lbs, None))
}

pub(crate) async fn delete(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("TargetGroupArn")?;
    let store = svc.store.as_ref();
    let tg = match target_group_by_arn(store, &ctx.region, arn).await {
        Ok(tg) => tg,
        Err(Elbv2Error::TargetGroupNotFound(_)) => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let lbs = all_load_balancers(store, &ctx.region).await?;
    let users = lbs_using(&lbs, arn);
    if let Some(lb) = users.first() {
        return Err(Elbv2Error::ResourceInUse(format!(
            "Target group '{arn}' is currently in use by a listener or a rule of '{lb}'"
        )));
    }
    let key = keys::target_group(&ctx.region, &tg.value.name);
    let mut txn = Txn::new().require_revision(&key, tg.revision).delete(&key);
    for prefix in [
        keys::targets(&ctx.region, &tg.value.name),
        keys::health_of(&ctx.region, &tg.value.name),
    ] {
        let mut after: Option<String> = None;
        loop {
            let page = store.scan(&prefix, after.as_deref(), 1000).await?;
            for r in &page.records {
                txn = txn.delete(&r.key);
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    if !store.commit(txn).await?.is_committed() {
        return Err(Elbv2Error::Contention(key));
    }
    Ok(String::new())
}

pub(crate) async fn describe_attributes(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let tg = target_group_by_arn(svc.store.as_ref(), &ctx.region, p.req("TargetGroupArn")?).await?;
    let mut w = XmlWriter::new();
    wire::write_attributes(&mut w, &tg.value.attributes);
    Ok(w.finish())
}

pub(crate) async fn modify_attributes(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("TargetGroupArn")?;
    let changes = attributes::parse(p)?;
    let store = svc.store.as_ref();
    let tg = commit_with_retry(store, || async {
        let cur = target_group_by_arn(store, &ctx.region, arn).await?;
        let mut tg = cur.value.clone();
        attributes::check_stickiness_type(&tg.protocol, &changes)?;
        attributes::apply(&mut tg.attributes, &changes)?;
        let key = keys::target_group(&ctx.region, &tg.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &tg)?);
        Ok((txn, tg))
    })
    .await?;
    let mut w = XmlWriter::new();
    wire::write_attributes(&mut w, &tg.attributes);
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn matchers_accept_lists_and_ranges() {
        assert!(super::valid_matcher("200"));
        assert!(super::valid_matcher("200,202"));
        assert!(super::valid_matcher("200-299"));
        assert!(!super::valid_matcher("abc"));
        assert!(!super::valid_matcher("700"));
    }
}
