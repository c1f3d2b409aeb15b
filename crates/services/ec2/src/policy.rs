//! The security-group policy of each host, and the channel agents follow it on:
//! `GET /ec2/v1/network-policy?instanceId=i-…`, SigV4-signed with the service name `ec2` (the
//! region of the signature selects the region), answered with newline-delimited JSON
//! [`NetworkPolicyMessage`]s: a [`NetworkPolicy`] snapshot on connect and after every change that
//! alters it (changes within 20 ms are batched), and a heartbeat every 5 s.
//!
//! [`compile`] is pure: groups, interfaces and VPCs in, the host's policy out.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use gantry_aws_proto::sigv4::{self, CredentialProvider};
use gantry_aws_proto::{AwsError, new_request_id};
use gantry_domain::network::{InterfacePolicy, NetworkPolicy, NetworkPolicyMessage, PolicyRule};
use gantry_front::Clock;
use gantry_store::{Store, WatchError};
use tokio::sync::{mpsc, watch};

use crate::error::Ec2Error;
use crate::model::{NetworkInterface, Peer, SecurityGroup, SgRule, Vpc};
use crate::{keys, scan_all};

/// The policy of the host whose EC2 instance id is `instance_id`.
pub fn compile(
    instance_id: &str,
    vpcs: &[Vpc],
    groups: &[SecurityGroup],
    interfaces: &[NetworkInterface],
) -> NetworkPolicy {
    let mine: BTreeSet<&str> = interfaces
        .iter()
        .filter(|n| {
            n.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == instance_id)
        })
        .map(|n| n.vpc_id.as_str())
        .collect();
    if mine.is_empty() {
        return NetworkPolicy::default();
    }
    let vpc_cidr: BTreeMap<&str, &str> = vpcs
        .iter()
        .map(|v| (v.id.as_str(), v.cidr.as_str()))
        .collect();
    // Members of each group: the addresses of the interfaces it is attached to.
    let mut members: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for n in interfaces {
        for g in &n.security_groups {
            members
                .entry(g.as_str())
                .or_default()
                .push(format!("{}/32", n.private_ip));
        }
    }
    let by_id: BTreeMap<&str, &SecurityGroup> = groups.iter().map(|g| (g.id.as_str(), g)).collect();
    let rules = |n: &NetworkInterface, egress: bool| -> Vec<PolicyRule> {
        let mut out: Vec<PolicyRule> = Vec::new();
        for g in n
            .security_groups
            .iter()
            .filter_map(|g| by_id.get(g.as_str()))
        {
            let list: &[SgRule] = if egress { &g.egress } else { &g.ingress };
            for r in list {
                let cidrs = match &r.peer {
                    Peer::Cidr(c) => vec![c.clone()],
                    Peer::Group(id) => members.get(id.as_str()).cloned().unwrap_or_default(),
                    // No prefix lists exist here to expand: the rule admits nothing.
                    Peer::PrefixList(_) => Vec::new(),
                };
                if cidrs.is_empty() {
                    continue;
                }
                match out.iter_mut().find(|x| {
                    x.protocol == r.protocol && x.from_port == r.from_port && x.to_port == r.to_port
                }) {
                    Some(x) => {
                        for c in cidrs {
                            if !x.cidrs.contains(&c) {
                                x.cidrs.push(c);
                            }
                        }
                    }
                    None => out.push(PolicyRule {
                        protocol: r.protocol.clone(),
                        from_port: r.from_port,
                        to_port: r.to_port,
                        cidrs,
                    }),
                }
            }
        }
        out
    };
    let mut policy = NetworkPolicy::default();
    for v in vpcs {
        if mine.contains(v.id.as_str()) {
            policy.vpc_cidrs.push(v.cidr.clone());
        } else {
            policy.other_vpc_cidrs.push(v.cidr.clone());
        }
    }
    let mut ifaces: Vec<&NetworkInterface> = interfaces
        .iter()
        .filter(|n| mine.contains(n.vpc_id.as_str()))
        .collect();
    ifaces.sort_by(|a, b| a.id.cmp(&b.id));
    for n in ifaces {
        policy.interfaces.push(InterfacePolicy {
            eni_id: n.id.clone(),
            ip: n.private_ip.clone(),
            vpc_cidr: vpc_cidr
                .get(n.vpc_id.as_str())
                .map(|c| (*c).to_owned())
                .unwrap_or_default(),
            ingress: rules(n, false),
            egress: rules(n, true),
        });
    }
    policy
}

/// Reads the region's records and compiles the policy of `instance_id`.
pub async fn policy_for(
    store: &dyn Store,
    region: &str,
    instance_id: &str,
) -> Result<NetworkPolicy, Ec2Error> {
    let interfaces: Vec<NetworkInterface> =
        scan_all::<NetworkInterface>(store, &keys::network_interfaces(region))
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect();
    if !interfaces.iter().any(|n| {
        n.attachment
            .as_ref()
            .is_some_and(|a| a.instance_id == instance_id)
    }) {
        return Ok(NetworkPolicy::default());
    }
    let vpcs: Vec<Vpc> = scan_all::<Vpc>(store, &keys::vpcs(region))
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect();
    let groups: Vec<SecurityGroup> =
        scan_all::<SecurityGroup>(store, &keys::security_groups(region))
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect();
    Ok(compile(instance_id, &vpcs, &groups, &interfaces))
}

/// Serves the policy channel.
pub struct PolicyChannel {
    store: Arc<dyn Store>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
    heartbeat: Duration,
}

impl std::fmt::Debug for PolicyChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyChannel")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

/// The channel's route (`/ec2/v1/network-policy`), to merge into the server's router.
pub fn policy_router(
    store: Arc<dyn Store>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Router {
    let ch = Arc::new(PolicyChannel {
        store,
        creds,
        clock,
        shutdown,
        heartbeat: Duration::from_secs(5),
    });
    Router::new()
        .route("/ec2/v1/network-policy", get(policy_stream))
        .with_state(ch)
}

fn line(msg: &NetworkPolicyMessage) -> Bytes {
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Whether a changed key can change a policy.
fn matters(key: &str) -> bool {
    let mut parts = key.splitn(4, '/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("ec2"), Some(_), Some("vpc" | "sg" | "eni"))
    )
}

impl PolicyChannel {
    async fn pump(self: Arc<Self>, region: String, instance_id: String, tx: mpsc::Sender<Bytes>) {
        let root = keys::root(&region);
        let mut changes = self.store.watch(&root);
        let mut shutdown = self.shutdown.clone();
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.tick().await;
        let mut dirty = true;
        let mut last: Option<NetworkPolicy> = None;
        loop {
            if dirty {
                dirty = false;
                let policy = match policy_for(self.store.as_ref(), &region, &instance_id).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot compile the network policy");
                        return;
                    }
                };
                if last.as_ref() != Some(&policy) {
                    let msg = NetworkPolicyMessage::Policy {
                        policy: Box::new(policy.clone()),
                    };
                    if tx.send(line(&msg)).await.is_err() {
                        return;
                    }
                    last = Some(policy);
                    tick.reset();
                }
            }
            tokio::select! {
                _ = stopped(&mut shutdown) => return,
                _ = tick.tick() => {
                    let msg = NetworkPolicyMessage::Heartbeat { interval_seconds: self.heartbeat.as_secs().max(1) };
                    if tx.send(line(&msg)).await.is_err() {
                        return;
                    }
                }
                ev = changes.next() => match ev {
                    Ok(ev) if matters(&ev.key) => {
                        let batch = tokio::time::sleep(Duration::from_millis(20));
                        tokio::pin!(batch);
                        loop {
                            tokio::select! {
                                _ = &mut batch => break,
                                more = changes.next() => if let Err(WatchError::Closed) = more { return },
                            }
                        }
                        dirty = true;
                    }
                    Ok(_) => {}
                    Err(WatchError::Lagged(_)) => {
                        changes = self.store.watch(&root);
                        dirty = true;
                    }
                    Err(WatchError::Closed) => return,
                },
            }
        }
    }
}

/// Resolves once shutdown is signalled (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn policy_stream(State(ch): State<Arc<PolicyChannel>>, req: Request) -> Response {
    let request_id = new_request_id();
    let (parts, _) = req.into_parts();
    let verified = match sigv4::verify(&parts, b"", ch.creds.as_ref(), ch.clock.now()) {
        Ok(v) if v.service == "ec2" => v,
        Ok(v) => {
            return AwsError::client(
                "AuthFailure",
                format!("The channel is signed for 'ec2', not '{}'", v.service),
            )
            .with_status(http::StatusCode::UNAUTHORIZED)
            .ec2_response(&request_id);
        }
        Err(e) => return e.to_ec2_error().ec2_response(&request_id),
    };
    let instance_id = parts
        .uri
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "instanceId")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|i| !i.is_empty());
    let Some(instance_id) = instance_id else {
        return AwsError::client(
            "MissingParameter",
            "The request must contain the parameter instanceId",
        )
        .ec2_response(&request_id);
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tracing::info!(region = %verified.region, instance = %instance_id, "agent follows the network policy");
    tokio::spawn(ch.clone().pump(verified.region, instance_id, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EniAttachment;

    fn vpc(id: &str, cidr: &str) -> Vpc {
        let mut v = crate::vpcs::new_vpc(cidr, false);
        v.id = id.into();
        v
    }

    fn eni(id: &str, vpc: &str, ip: &str, groups: &[&str], instance: &str) -> NetworkInterface {
        NetworkInterface {
            id: id.into(),
            subnet_id: "subnet-1".into(),
            vpc_id: vpc.into(),
            availability_zone: "us-east-1a".into(),
            availability_zone_id: "use1-az1".into(),
            private_ip: ip.into(),
            mac: "0e:00:00:00:00:01".into(),
            private_dns_name: String::new(),
            security_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            description: String::new(),
            requester_id: String::new(),
            requester_managed: true,
            attachment: Some(EniAttachment {
                attachment_id: "eni-attach-1".into(),
                instance_id: instance.into(),
                device_index: 1,
                attach_time: 0,
            }),
            created_at: 0,
            tags: vec![],
        }
    }

    fn rule(proto: &str, from: i64, to: i64, peer: Peer) -> SgRule {
        SgRule {
            id: "sgr-1".into(),
            protocol: proto.into(),
            from_port: from,
            to_port: to,
            peer,
            description: None,
        }
    }

    #[test]
    fn group_references_expand_to_member_addresses() {
        let vpcs = vec![vpc("vpc-a", "10.1.0.0/16"), vpc("vpc-b", "10.2.0.0/16")];
        let web = SecurityGroup {
            id: "sg-web".into(),
            name: "web".into(),
            description: String::new(),
            vpc_id: "vpc-a".into(),
            ingress: vec![
                rule("tcp", 80, 80, Peer::Group("sg-client".into())),
                rule("tcp", 80, 80, Peer::Cidr("192.168.0.0/16".into())),
                rule("tcp", 443, 443, Peer::PrefixList("pl-12345678".into())),
            ],
            egress: vec![rule("-1", -1, -1, Peer::Cidr("0.0.0.0/0".into()))],
            tags: vec![],
        };
        let client = SecurityGroup {
            id: "sg-client".into(),
            name: "client".into(),
            ingress: vec![],
            ..web.clone()
        };
        let interfaces = vec![
            eni("eni-1", "vpc-a", "10.1.0.10", &["sg-web"], "i-host1"),
            eni("eni-2", "vpc-a", "10.1.0.11", &["sg-client"], "i-host2"),
            eni("eni-3", "vpc-b", "10.2.0.10", &["sg-client"], "i-host2"),
        ];
        let p = compile("i-host1", &vpcs, &[web, client], &interfaces);
        assert_eq!(p.vpc_cidrs, vec!["10.1.0.0/16"]);
        assert_eq!(p.other_vpc_cidrs, vec!["10.2.0.0/16"]);
        // Both interfaces of vpc-a, including the other host's: traffic is judged on both ends.
        assert_eq!(p.interfaces.len(), 2);
        let web = &p.interfaces[0];
        assert_eq!(web.ip, "10.1.0.10");
        assert_eq!(
            web.ingress.len(),
            1,
            "prefix lists admit nothing: {:?}",
            web.ingress
        );
        assert_eq!(
            web.ingress[0].cidrs,
            vec!["10.1.0.11/32", "10.2.0.10/32", "192.168.0.0/16"]
        );
        assert_eq!(web.egress[0].protocol, "-1");
        assert_eq!(
            compile("i-nobody", &vpcs, &[], &interfaces),
            NetworkPolicy::default()
        );
    }
}
