//! awsvpc task networking: `networkConfiguration.awsvpcConfiguration` validated as ECS validates
//! it, the subnets and security groups looked up, one network interface planned per task in the
//! same transaction as the tasks, released with the transaction that stops the task, and the
//! `attachments` / `containers[].networkInterfaces` members of DescribeTasks.
//!
//! Subnets, groups and interfaces belong to EC2: this crate reaches them over the
//! [`TaskNetworks`] trait, which the composition root implements over the EC2 crate's records
//! (this crate never depends on it).

use async_trait::async_trait;
use gantry_domain::Arn;
use gantry_domain::container_instance::ContainerInstance;
use gantry_domain::network::EniAttachment;
use gantry_domain::task::{Task, TaskStatus};
use gantry_domain::task_definition::{NetworkMode, TaskDefinition};
use gantry_front::RequestContext;
use gantry_scheduler::PlacementConstraint;
use gantry_store::Txn;
use serde_json::{Value, json};

use crate::{EcsError, EcsService};

/// A subnet as ECS needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetInfo {
    pub id: String,
    pub vpc_id: String,
    /// The subnet's IPv4 block.
    pub cidr: String,
    pub availability_zone: String,
}

/// An `awsvpcConfiguration` with its subnets and groups looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedNetwork {
    pub vpc_id: String,
    pub subnets: Vec<SubnetInfo>,
    /// The groups asked for, or the VPC's default group when none were.
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

/// The subnets and groups of a configuration, as EC2 knows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkLookup {
    pub subnets: Vec<SubnetInfo>,
    /// (group id, VPC id) of each group asked for.
    pub security_groups: Vec<(String, String)>,
    /// The default group of the first subnet's VPC (used when no group is asked for).
    pub default_security_group: Option<String>,
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkLookupError {
    /// A subnet id that EC2 does not know.
    #[error("The subnet ID '{0}' does not exist")]
    SubnetNotFound(String),
    /// A security group id that EC2 does not know.
    #[error("The security group '{0}' does not exist")]
    SecurityGroupNotFound(String),
    /// The lookup itself failed (store); the request was not applied.
    #[error("{0}")]
    Internal(String),
}

/// One interface to create for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceRequest {
    /// The task's subnets in the zone of its instance.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub task_arn: String,
    /// The attachment ARN, written as the interface's description as ECS does.
    pub attachment_arn: String,
    /// The EC2 instance id of the container instance.
    pub instance_id: String,
    /// Spreads the search for a free address.
    pub seed: u64,
}

/// What a task's interface got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceGrant {
    pub eni_id: String,
    pub subnet_id: String,
    pub private_ip: String,
    pub mac: String,
    pub private_dns_name: String,
}

/// EC2's subnets, groups and network interfaces, as tasks need them.
#[async_trait]
pub trait TaskNetworks: Send + Sync {
    /// Looks up the subnets and groups of an `awsvpcConfiguration`; with no groups, the default
    /// group of the subnets' VPC.
    async fn resolve(
        &self,
        region: &str,
        subnets: &[String],
        security_groups: &[String],
    ) -> Result<NetworkLookup, NetworkLookupError>;

    /// Plans one interface per request: the store writes creating them and taking their
    /// addresses (committed with the tasks, all or nothing), and per request the interface or
    /// why there is none.
    async fn plan(
        &self,
        region: &str,
        requests: &[InterfaceRequest],
        now: u64,
    ) -> Result<(Txn, Vec<Result<InterfaceGrant, String>>), NetworkLookupError>;

    /// The store writes deleting an interface and freeing its address (nothing when it is gone).
    async fn release(&self, region: &str, eni_id: &str) -> Result<Txn, NetworkLookupError>;
}

fn lookup_error(e: NetworkLookupError) -> EcsError {
    match e {
        NetworkLookupError::SubnetNotFound(id) => EcsError::invalid(format!(
            "Error retrieving subnet information for [{id}]: The subnet ID '{id}' does not exist (Service: AmazonEC2; Status Code: 400; Error Code: InvalidSubnetID.NotFound)"
        )),
        NetworkLookupError::SecurityGroupNotFound(id) => EcsError::invalid(format!(
            "Error retrieving security group information for [{id}]: The security group '{id}' does not exist (Service: AmazonEC2; Status Code: 400; Error Code: InvalidGroup.NotFound)"
        )),
        NetworkLookupError::Internal(m) => EcsError::Internal(m),
    }
}

/// `awsvpcConfiguration` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsvpcConfig {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, EcsError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            let mut out: Vec<String> = Vec::new();
            for i in items {
                let Some(s) = i.as_str() else {
                    return Err(EcsError::invalid(format!(
                        "{what} must be a list of strings."
                    )));
                };
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
            Ok(out)
        }
        Some(_) => Err(EcsError::invalid(format!(
            "{what} must be a list of strings."
        ))),
    }
}

/// Reads and checks `networkConfiguration` as ECS does: subnets required (at most 16), at most 5
/// security groups, `assignPublicIp` ENABLED or DISABLED (and only DISABLED on the EC2 launch
/// type, which has no public addresses). `None` when no configuration was given.
pub fn parse_config(v: Option<&Value>) -> Result<Option<AwsvpcConfig>, EcsError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(obj) = v.as_object() else {
        return Err(EcsError::invalid("networkConfiguration must be an object."));
    };
    if let Some(k) = obj.keys().find(|k| *k != "awsvpcConfiguration") {
        return Err(EcsError::invalid(format!(
            "networkConfiguration has an unknown member '{k}'."
        )));
    }
    let Some(awsvpc) = obj.get("awsvpcConfiguration").filter(|v| !v.is_null()) else {
        return Err(EcsError::invalid(
            "networkConfiguration.awsvpcConfiguration is required.",
        ));
    };
    let Some(a) = awsvpc.as_object() else {
        return Err(EcsError::invalid("awsvpcConfiguration must be an object."));
    };
    if let Some(k) = a
        .keys()
        .find(|k| !matches!(k.as_str(), "subnets" | "securityGroups" | "assignPublicIp"))
    {
        return Err(EcsError::invalid(format!(
            "awsvpcConfiguration has an unknown member '{k}'."
        )));
    }
    let subnets = strings(a.get("subnets"), "subnets")?;
    if subnets.is_empty() {
        return Err(EcsError::invalid("subnets can not be empty."));
    }
    if subnets.len() > 16 {
        return Err(EcsError::invalid("subnets can have at most 16 items."));
    }
    let security_groups = strings(a.get("securityGroups"), "securityGroups")?;
    if security_groups.len() > 5 {
        return Err(EcsError::invalid(
            "securityGroups can have at most 5 items.",
        ));
    }
    let assign_public_ip = match a.get("assignPublicIp").and_then(Value::as_str) {
        None | Some("DISABLED") => false,
        Some("ENABLED") => true,
        Some(o) => {
            return Err(EcsError::invalid(format!(
                "Invalid assignPublicIp '{o}'. Valid values: ENABLED, DISABLED."
            )));
        }
    };
    Ok(Some(AwsvpcConfig {
        subnets,
        security_groups,
        assign_public_ip,
    }))
}

/// Checks a network configuration against a task definition's network mode and the launch
/// type: awsvpc needs one, the other modes take none.
pub fn check_mode(
    td: &TaskDefinition,
    config: Option<&AwsvpcConfig>,
    launch_type: &str,
) -> Result<(), EcsError> {
    match (td.effective_network_mode() == NetworkMode::Awsvpc, config) {
        (true, None) => Err(EcsError::invalid(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )),
        (false, Some(_)) => Err(EcsError::invalid(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        )),
        (true, Some(c)) if c.assign_public_ip && launch_type != "FARGATE" => Err(
            EcsError::invalid("Assign public IP is not supported for this launch type."),
        ),
        _ => Ok(()),
    }
}

/// The configuration as ECS echoes it (DescribeServices): `assignPublicIp` filled in.
pub fn normalized(c: &AwsvpcConfig) -> Value {
    json!({"awsvpcConfiguration": {
        "subnets": c.subnets,
        "securityGroups": c.security_groups,
        "assignPublicIp": if c.assign_public_ip { "ENABLED" } else { "DISABLED" },
    }})
}

/// Looks up a configuration's subnets and groups: one VPC for all subnets, groups of that VPC.
pub async fn resolve(
    svc: &EcsService,
    ctx: &RequestContext,
    config: &AwsvpcConfig,
) -> Result<ResolvedNetwork, EcsError> {
    let Some(networks) = &svc.networks else {
        return Err(EcsError::Unsupported(
            "The awsvpc network mode needs the EC2 networking API, which this endpoint does not serve."
                .into(),
        ));
    };
    let NetworkLookup {
        subnets,
        security_groups: groups,
        default_security_group: default_group,
    } = networks
        .resolve(&ctx.region, &config.subnets, &config.security_groups)
        .await
        .map_err(lookup_error)?;
    let vpc_id = subnets
        .first()
        .map(|s| s.vpc_id.clone())
        .unwrap_or_default();
    if let Some(other) = subnets.iter().find(|s| s.vpc_id != vpc_id) {
        return Err(EcsError::invalid(format!(
            "The subnets must all belong to the same VPC: {} is in {vpc_id}, {} is in {}.",
            subnets[0].id, other.id, other.vpc_id
        )));
    }
    if let Some((id, _)) = groups.iter().find(|(_, vpc)| *vpc != vpc_id) {
        return Err(EcsError::invalid(format!(
            "Security group {id} does not appear to belong to the same VPC as the input subnets."
        )));
    }
    let security_groups = if groups.is_empty() {
        default_group.into_iter().collect()
    } else {
        groups.into_iter().map(|(id, _)| id).collect()
    };
    Ok(ResolvedNetwork {
        vpc_id,
        subnets,
        security_groups,
        assign_public_ip: config.assign_public_ip,
    })
}

/// Checks a request's network configuration against its task definition and looks it up;
/// `None` for tasks not in awsvpc mode.
pub async fn prepare(
    svc: &EcsService,
    ctx: &RequestContext,
    td: &TaskDefinition,
    network_configuration: Option<&Value>,
    launch_type: &str,
) -> Result<Option<ResolvedNetwork>, EcsError> {
    let config = parse_config(network_configuration)?;
    check_mode(td, config.as_ref(), launch_type)?;
    match config {
        Some(c) => Ok(Some(resolve(svc, ctx, &c).await?)),
        None => Ok(None),
    }
}

/// The placement constraint keeping awsvpc tasks to instances in their subnets' zones, or to
/// hosts that serve every zone (`gantry.zones == all`).
pub fn zone_constraint(n: &ResolvedNetwork) -> Result<PlacementConstraint, EcsError> {
    let mut zones: Vec<&str> = n
        .subnets
        .iter()
        .map(|s| s.availability_zone.as_str())
        .collect();
    zones.sort_unstable();
    zones.dedup();
    let expr = format!(
        "attribute:ecs.availability-zone in [{}] or attribute:{} == {}",
        zones.join(", "),
        gantry_domain::cluster::ZONES_ATTRIBUTE,
        gantry_domain::cluster::ALL_ZONES
    );
    Ok(PlacementConstraint::from_wire("memberOf", Some(&expr))?)
}

/// Plans the interfaces of freshly placed tasks: the writes to commit with them, and for each
/// task its attachment or the reason it has none (it is then not launched).
pub async fn plan(
    svc: &EcsService,
    ctx: &RequestContext,
    n: &ResolvedNetwork,
    placed: &[(&ContainerInstance, &Task)],
) -> Result<(Txn, Vec<Result<EniAttachment, String>>), EcsError> {
    let Some(networks) = &svc.networks else {
        return Err(EcsError::Unsupported(
            "The awsvpc network mode needs the EC2 networking API, which this endpoint does not serve."
                .into(),
        ));
    };
    // Per task: its subnets in the zone of its instance, or all of them on a host serving every
    // zone (none: it cannot have an interface).
    let mut requests = Vec::with_capacity(placed.len());
    let mut slots: Vec<Result<(usize, String), String>> = Vec::with_capacity(placed.len());
    for (ci, t) in placed {
        let zone = ci.attribute("ecs.availability-zone").unwrap_or_default();
        let all_zones = ci.attribute(gantry_domain::cluster::ZONES_ATTRIBUTE)
            == Some(gantry_domain::cluster::ALL_ZONES);
        let subnets: Vec<String> = n
            .subnets
            .iter()
            .filter(|s| all_zones || s.availability_zone == zone)
            .map(|s| s.id.clone())
            .collect();
        if subnets.is_empty() {
            slots.push(Err(format!(
                "None of the task's subnets is in availability zone {zone} of the container instance."
            )));
            continue;
        }
        let attachment_id = uuid::Uuid::new_v4().to_string();
        let seed = u64::from_str_radix(&t.id[..16.min(t.id.len())], 16).unwrap_or(0);
        requests.push(InterfaceRequest {
            subnets,
            security_groups: n.security_groups.clone(),
            task_arn: Arn::task(&ctx.region, &ctx.account_id, &t.cluster, &t.id).to_string(),
            attachment_arn: Arn::new(
                "ecs",
                &ctx.region,
                &ctx.account_id,
                format!("attachment/{attachment_id}"),
            )
            .to_string(),
            instance_id: ci.ec2_instance_id.clone(),
            seed,
        });
        slots.push(Ok((requests.len() - 1, attachment_id)));
    }
    let (txn, grants) = if requests.is_empty() {
        (Txn::new(), Vec::new())
    } else {
        networks
            .plan(&ctx.region, &requests, ctx.now)
            .await
            .map_err(lookup_error)?
    };
    let by_id = |id: &str| n.subnets.iter().find(|s| s.id == id);
    let out = slots
        .into_iter()
        .map(|slot| {
            let (i, attachment_id) = slot?;
            let g = grants
                .get(i)
                .cloned()
                .unwrap_or_else(|| Err("no interface was planned for the task".to_owned()))?;
            let subnet = by_id(&g.subnet_id)
                .ok_or_else(|| format!("subnet {} is not one of the task's", g.subnet_id))?;
            Ok(EniAttachment {
                attachment_id,
                eni_id: g.eni_id,
                subnet_id: g.subnet_id.clone(),
                vpc_id: subnet.vpc_id.clone(),
                subnet_cidr: subnet.cidr.clone(),
                gateway: gateway_of(&subnet.cidr).unwrap_or_default(),
                private_ipv4: g.private_ip,
                mac: g.mac,
                private_dns_name: g.private_dns_name,
                security_groups: n.security_groups.clone(),
                assign_public_ip: n.assign_public_ip,
            })
        })
        .collect();
    Ok((txn, out))
}

/// The first address of a block (`10.0.1.0/24` → `10.0.1.1`), the subnet's router.
fn gateway_of(cidr: &str) -> Option<String> {
    let (net, _) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = net.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(ip).checked_add(1)?).to_string())
}

/// The writes freeing a stopped task's interface, to commit with its STOPPED record.
pub async fn release(svc: &EcsService, ctx: &RequestContext, t: &Task) -> Result<Txn, EcsError> {
    match (&svc.networks, &t.network) {
        (Some(networks), Some(att)) => networks
            .release(&ctx.region, &att.eni_id)
            .await
            .map_err(lookup_error),
        _ => Ok(Txn::new()),
    }
}

/// Appends `more` to `txn`.
pub fn merge(mut txn: Txn, more: Txn) -> Txn {
    txn.conditions.extend(more.conditions);
    txn.mutations.extend(more.mutations);
    txn
}

/// The attachment's status as DescribeTasks reports it, from the task's status.
fn attachment_status(t: &Task) -> &'static str {
    match t.last_status {
        TaskStatus::Provisioning => "PRECREATED",
        TaskStatus::Pending | TaskStatus::Activating | TaskStatus::Running => "ATTACHED",
        TaskStatus::Deactivating | TaskStatus::Stopping | TaskStatus::Deprovisioning => "DETACHING",
        TaskStatus::Stopped => "DELETED",
    }
}

/// `attachments` of a task in DescribeTasks.
pub fn attachments_wire(t: &Task) -> Value {
    let Some(a) = &t.network else {
        return json!([]);
    };
    json!([{
        "id": a.attachment_id,
        "type": "ElasticNetworkInterface",
        "status": attachment_status(t),
        "details": [
            {"name": "subnetId", "value": a.subnet_id},
            {"name": "networkInterfaceId", "value": a.eni_id},
            {"name": "macAddress", "value": a.mac},
            {"name": "privateDnsName", "value": a.private_dns_name},
            {"name": "privateIPv4Address", "value": a.private_ipv4},
        ],
    }])
}

/// `containers[].networkInterfaces` of a task in DescribeTasks.
pub fn container_interfaces_wire(t: &Task) -> Value {
    match &t.network {
        Some(a) => json!([{"attachmentId": a.attachment_id, "privateIpv4Address": a.private_ipv4}]),
        None => json!([]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(mode: &str) -> TaskDefinition {
        serde_json::from_value(json!({"family": "f", "networkMode": mode,
            "containerDefinitions": [{"name": "a", "image": "i", "memory": 16}]}))
        .expect("td")
    }

    fn config(v: Value) -> Result<Option<AwsvpcConfig>, EcsError> {
        parse_config(Some(&json!({"awsvpcConfiguration": v})))
    }

    #[test]
    fn configurations_are_checked_as_ecs_does() {
        let ok = config(
            json!({"subnets": ["subnet-a", "subnet-a", "subnet-b"], "securityGroups": ["sg-1"]}),
        )
        .expect("ok")
        .expect("some");
        assert_eq!(ok.subnets, vec!["subnet-a", "subnet-b"]);
        assert!(!ok.assign_public_ip);
        let msg = |r: Result<Option<AwsvpcConfig>, EcsError>| r.expect_err("refused").to_string();
        assert_eq!(
            msg(config(json!({"subnets": []}))),
            "subnets can not be empty."
        );
        let many: Vec<String> = (0..17).map(|i| format!("subnet-{i}")).collect();
        assert_eq!(
            msg(config(json!({"subnets": many}))),
            "subnets can have at most 16 items."
        );
        let groups: Vec<String> = (0..6).map(|i| format!("sg-{i}")).collect();
        assert_eq!(
            msg(config(json!({"subnets": ["s"], "securityGroups": groups}))),
            "securityGroups can have at most 5 items."
        );
        assert!(
            msg(config(json!({"subnets": ["s"], "assignPublicIp": "MAYBE"})))
                .contains("assignPublicIp")
        );
        assert!(msg(config(json!({"subnets": ["s"], "extra": 1}))).contains("extra"));
        assert_eq!(parse_config(None).expect("none"), None);
    }

    #[test]
    fn the_network_mode_decides_whether_a_configuration_is_needed() {
        let c = AwsvpcConfig {
            subnets: vec!["s".into()],
            security_groups: vec![],
            assign_public_ip: false,
        };
        assert!(check_mode(&td("awsvpc"), Some(&c), "EC2").is_ok());
        assert!(check_mode(&td("bridge"), None, "EC2").is_ok());
        assert!(
            check_mode(&td("awsvpc"), None, "EC2")
                .expect_err("needed")
                .to_string()
                .starts_with("Network Configuration must be provided")
        );
        assert!(
            check_mode(&td("bridge"), Some(&c), "EC2")
                .expect_err("refused")
                .to_string()
                .starts_with("Network Configuration is not valid")
        );
        let public = AwsvpcConfig {
            assign_public_ip: true,
            ..c
        };
        assert_eq!(
            check_mode(&td("awsvpc"), Some(&public), "EC2")
                .expect_err("public")
                .to_string(),
            "Assign public IP is not supported for this launch type."
        );
    }

    #[test]
    fn attachments_follow_ecs_shapes() {
        let mut t: Task = serde_json::from_value(json!({
            "id": "t1", "cluster": "c", "family": "f", "revision": 1, "desiredStatus": "RUNNING",
            "lastStatus": "RUNNING", "launchType": "EC2", "containers": [], "group": "family:f",
            "createdAt": 0, "version": 1}))
        .expect("task");
        assert_eq!(attachments_wire(&t), json!([]));
        t.network = Some(EniAttachment {
            attachment_id: "att-1".into(),
            eni_id: "eni-0123456789abcdef0".into(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            subnet_cidr: "10.0.1.0/24".into(),
            gateway: "10.0.1.1".into(),
            private_ipv4: "10.0.1.7".into(),
            mac: "0e:00:00:00:00:07".into(),
            private_dns_name: "ip-10-0-1-7.ec2.internal".into(),
            security_groups: vec!["sg-1".into()],
            assign_public_ip: false,
        });
        let a = attachments_wire(&t);
        assert_eq!(a[0]["type"], "ElasticNetworkInterface");
        assert_eq!(a[0]["status"], "ATTACHED");
        assert_eq!(
            a[0]["details"][4],
            json!({"name": "privateIPv4Address", "value": "10.0.1.7"})
        );
        assert_eq!(
            container_interfaces_wire(&t),
            json!([{"attachmentId": "att-1", "privateIpv4Address": "10.0.1.7"}])
        );
        t.last_status = TaskStatus::Stopped;
        assert_eq!(attachments_wire(&t)[0]["status"], "DELETED");
        assert_eq!(gateway_of("10.0.1.0/24").as_deref(), Some("10.0.1.1"));
    }
}
