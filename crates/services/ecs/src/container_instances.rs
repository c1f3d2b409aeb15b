//! RegisterContainerInstance, DeregisterContainerInstance, DescribeContainerInstances,
//! ListContainerInstances, UpdateContainerInstancesState, PutAttributes, DeleteAttributes,
//! ListAttributes, DiscoverPollEndpoint, UpdateContainerAgent.

use gantry_domain::Arn;
use gantry_domain::arn::container_instance_id_from_ref;
use gantry_domain::container_instance::{
    Attribute, ContainerInstance, ContainerInstanceStatus, MAX_CUSTOM_ATTRIBUTES, Resource,
    VersionInfo, add_builtin_attributes, is_builtin_attribute, put_attributes, validate_attribute,
    validate_resources,
};
use gantry_domain::tags::{Tag, validate_tags};
use gantry_store::{StoreExt, Txn, Versioned, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{
    active_cluster, check_len, cluster_name, commit_with_retry, max_results, missing, paginate,
    parse, secs, with_token,
};
use crate::{EcsError, EcsService, keys};
use gantry_front::RequestContext;

pub(super) fn arn_of(ctx: &RequestContext, ci: &ContainerInstance) -> String {
    Arn::container_instance(&ctx.region, &ctx.account_id, &ci.cluster, &ci.id).to_string()
}

/// The wire form; `pools` maps pool names to their capacity providers
/// (`capacity_providers::providers_by_pool`), which give `capacityProviderName`.
pub(super) fn to_wire(
    ci: &ContainerInstance,
    ctx: &RequestContext,
    with_tags: bool,
    pools: &std::collections::BTreeMap<String, String>,
) -> Value {
    let mut v = json!({
        "containerInstanceArn": arn_of(ctx, ci),
        "ec2InstanceId": ci.ec2_instance_id,
        "version": ci.version,
        "versionInfo": ci.version_info,
        "remainingResources": ci.remaining_resources(),
        "registeredResources": ci.registered_resources,
        "status": ci.status.as_str(),
        "agentConnected": ci.agent_connected,
        "runningTasksCount": ci.running_tasks_count,
        "pendingTasksCount": ci.pending_tasks_count,
        "attributes": ci.attributes,
        "registeredAt": secs(ci.registered_at),
        "attachments": [],
    });
    if let Some(r) = &ci.status_reason {
        v["statusReason"] = json!(r);
    }
    let pool_provider = ci
        .attributes
        .iter()
        .find(|a| a.name == gantry_domain::capacity::POOL_ATTRIBUTE)
        .and_then(|a| a.value.as_deref())
        .and_then(|pool| pools.get(pool));
    if let Some(cp) = ci.capacity_provider_name.as_ref().or(pool_provider) {
        v["capacityProviderName"] = json!(cp);
    }
    if with_tags {
        v["tags"] = json!(ci.tags);
    }
    v
}

/// Reads a container instance of `cluster` by id or ARN.
pub(super) async fn get(
    svc: &EcsService,
    ctx: &RequestContext,
    cluster: &str,
    reference: &str,
) -> Result<Option<Versioned<ContainerInstance>>, EcsError> {
    let Ok(id) = container_instance_id_from_ref(reference) else {
        return Ok(None);
    };
    Ok(svc
        .store
        .get_typed(&keys::container_instance(&ctx.region, cluster, &id))
        .await?)
}

/// Fields of an EC2 instance identity document that registration uses.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    instance_id: Option<String>,
    availability_zone: Option<String>,
    instance_type: Option<String>,
    architecture: Option<String>,
}

/// The network interfaces a platform host offers Fargate tasks.
const PLATFORM_ENIS: i64 = 4096;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest {
    cluster: Option<String>,
    instance_identity_document: Option<String>,
    #[serde(default)]
    total_resources: Vec<Resource>,
    version_info: Option<VersionInfo>,
    container_instance_arn: Option<String>,
    #[serde(default)]
    attributes: Vec<Attribute>,
    #[serde(default)]
    tags: Vec<Tag>,
}

/// The registered resources with ECS's defaults for the ones not given, including `ENI`: the
/// network interfaces awsvpc tasks may use, by instance type (see
/// [`gantry_domain::container_instance::task_eni_limit`]).
fn complete_resources(mut res: Vec<Resource>, instance_type: Option<&str>) -> Vec<Resource> {
    if !res.iter().any(|r| r.name == "ENI") {
        let cpu = res
            .iter()
            .find(|r| r.name == "CPU")
            .and_then(|r| r.integer_value)
            .unwrap_or(0);
        res.push(Resource::integer(
            "ENI",
            gantry_domain::container_instance::task_eni_limit(instance_type, cpu),
        ));
    }
    for (name, set) in [
        ("CPU", false),
        ("MEMORY", false),
        ("PORTS", true),
        ("PORTS_UDP", true),
    ] {
        if !res.iter().any(|r| r.name == name) {
            res.push(if set {
                Resource::string_set(name, vec![])
            } else {
                Resource::integer(name, 0)
            });
        }
    }
    res
}

pub(super) async fn register(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: RegisterRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    validate_resources(&req.total_resources)?;
    validate_tags(&req.tags)?;
    for a in &req.attributes {
        validate_attribute(a)?;
    }
    let doc: IdentityDocument = req
        .instance_identity_document
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let mut attributes = req.attributes.clone();
    if let Some(az) = &doc.availability_zone {
        put_attributes(
            &mut attributes,
            &[Attribute {
                name: "ecs.availability-zone".into(),
                value: Some(az.clone()),
            }],
        );
    }
    if let Some(t) = &doc.instance_type {
        put_attributes(
            &mut attributes,
            &[Attribute {
                name: "ecs.instance-type".into(),
                value: Some(t.clone()),
            }],
        );
    }
    if let Some(a) = &doc.architecture {
        put_attributes(
            &mut attributes,
            &[Attribute {
                name: "ecs.cpu-architecture".into(),
                value: Some(a.clone()),
            }],
        );
    }
    add_builtin_attributes(&mut attributes, &ctx.region);
    if attributes
        .iter()
        .filter(|a| !is_builtin_attribute(&a.name))
        .count()
        > MAX_CUSTOM_ATTRIBUTES
    {
        return Err(EcsError::AttributeLimitExceeded(format!(
            "You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes per resource."
        )));
    }
    let instance_type = attributes
        .iter()
        .find(|a| a.name == "ecs.instance-type")
        .and_then(|a| a.value.clone());
    let platform = cluster == gantry_domain::cluster::FARGATE_PLATFORM_CLUSTER;
    let mut total = req.total_resources.clone();
    if platform && !total.iter().any(|r| r.name == "ENI") {
        // A platform host is bounded by its CPU and memory and the subnets' addresses, not by
        // an instance type's interface count.
        total.push(Resource::integer("ENI", PLATFORM_ENIS));
    }
    let resources = complete_resources(total, instance_type.as_deref());
    let previous_id = req
        .container_instance_arn
        .as_deref()
        .filter(|a| !a.is_empty())
        .and_then(|a| container_instance_id_from_ref(a).ok());

    let ci = commit_with_retry(svc.store.as_ref(), || async {
        // The platform cluster has no record: only the platform's hosts register into it.
        if !platform {
            active_cluster(svc, ctx, &cluster).await?;
        }
        let existing = match &previous_id {
            Some(id) => svc
                .store
                .get_typed::<ContainerInstance>(&keys::container_instance(
                    &ctx.region,
                    &cluster,
                    id,
                ))
                .await?
                .filter(|c| c.value.status != ContainerInstanceStatus::Inactive),
            None => None,
        };
        let (ci, rev) = match existing {
            Some(Versioned {
                value: mut ci,
                revision,
            }) => {
                ci.registered_resources = resources.clone();
                let mut merged = ci.attributes.clone();
                put_attributes(&mut merged, &attributes);
                ci.attributes = merged;
                if let Some(v) = &req.version_info {
                    ci.version_info = v.clone();
                }
                if !req.tags.is_empty() {
                    ci.tags = req.tags.clone();
                }
                ci.agent_connected = true;
                ci.disconnected_at = None;
                ci.version += 1;
                (ci, revision)
            }
            None => {
                let id = svc.ids.hex32();
                let ci = ContainerInstance {
                    id,
                    cluster: cluster.clone(),
                    ec2_instance_id: doc
                        .instance_id
                        .clone()
                        .unwrap_or_else(|| svc.ids.ec2_instance_id()),
                    status: ContainerInstanceStatus::Active,
                    status_reason: None,
                    agent_connected: true,
                    disconnected_at: None,
                    version: 1,
                    registered_resources: resources.clone(),
                    reserved_cpu: 0,
                    reserved_memory: 0,
                    reserved_ports: vec![],
                    reserved_udp_ports: vec![],
                    reserved_enis: 0,
                    running_tasks_count: 0,
                    pending_tasks_count: 0,
                    attributes: attributes.clone(),
                    version_info: req.version_info.clone().unwrap_or_default(),
                    registered_at: ctx.now,
                    tags: req.tags.clone(),
                    capacity_provider_name: None,
                };
                (ci, 0)
            }
        };
        let key = keys::container_instance(&ctx.region, &cluster, &ci.id);
        let txn = Txn::new()
            .require_revision(&key, rev)
            .put(&key, encode(&key, &ci)?);
        Ok((txn, ci))
    })
    .await?;
    let pools = crate::capacity_providers::providers_by_pool(svc, ctx).await?;
    Ok(json!({"containerInstance": to_wire(&ci, ctx, true, &pools)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
    #[serde(default)]
    force: Option<bool>,
}

pub(super) async fn deregister(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DeregisterRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(reference) = req.container_instance.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("containerInstance is required."));
    };
    let force = req.force.unwrap_or(false);
    let ci = commit_with_retry(svc.store.as_ref(), || async {
        active_cluster(svc, ctx, &cluster).await?;
        let Some(cur) = get(svc, ctx, &cluster, reference)
            .await?
            .filter(|c| c.value.status != ContainerInstanceStatus::Inactive)
        else {
            return Err(EcsError::invalid(format!(
                "The referenced container instance {reference} was not found in cluster {cluster}."
            )));
        };
        if !force && cur.value.running_tasks_count + cur.value.pending_tasks_count > 0 {
            return Err(EcsError::invalid(format!(
                "Found running tasks on the instance {reference}; stop them or pass force."
            )));
        }
        let mut ci = cur.value.clone();
        ci.status = ContainerInstanceStatus::Inactive;
        ci.agent_connected = false;
        ci.version += 1;
        let key = keys::container_instance(&ctx.region, &cluster, &ci.id);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &ci)?);
        Ok((txn, ci))
    })
    .await?;
    let pools = crate::capacity_providers::providers_by_pool(svc, ctx).await?;
    Ok(json!({"containerInstance": to_wire(&ci, ctx, false, &pools)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    cluster: Option<String>,
    #[serde(default)]
    container_instances: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

fn missing_instance(ctx: &RequestContext, cluster: &str, reference: &str) -> Value {
    missing(reference, |id| {
        Arn::container_instance(&ctx.region, &ctx.account_id, cluster, id)
    })
}

pub(super) async fn describe(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DescribeRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    // ECS looks the cluster up first, then refuses an empty list in its own words.
    active_cluster(svc, ctx, &cluster).await?;
    if req.container_instances.is_empty() {
        return Err(EcsError::client("Container Instances cannot be empty."));
    }
    check_len("containerInstances", &req.container_instances, 100)?;
    let mut with_tags = false;
    for i in &req.include {
        match i.as_str() {
            "TAGS" => with_tags = true,
            "CONTAINER_INSTANCE_HEALTH" => {}
            other => {
                return Err(EcsError::invalid(format!(
                    "Invalid include value '{other}'. Valid values: TAGS, CONTAINER_INSTANCE_HEALTH."
                )));
            }
        }
    }
    let pools = crate::capacity_providers::providers_by_pool(svc, ctx).await?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for r in &req.container_instances {
        match get(svc, ctx, &cluster, r).await? {
            Some(ci) => found.push(to_wire(&ci.value, ctx, with_tags, &pools)),
            None => failures.push(missing_instance(ctx, &cluster, r)),
        }
    }
    Ok(json!({"containerInstances": found, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    cluster: Option<String>,
    filter: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn list(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let limit = max_results(req.max_results, 100, 100)?;
    let filter = match req.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(f) => {
            Some(gantry_scheduler::cql::parse(f).map_err(|e| EcsError::invalid(e.to_string()))?)
        }
        None => None,
    };
    let status = match req.status.as_deref() {
        None => None,
        Some(s) => Some(
            ContainerInstanceStatus::parse(s)
                .filter(|s| *s != ContainerInstanceStatus::Inactive)
                .ok_or_else(|| {
                    EcsError::invalid(format!(
                        "Invalid status '{s}'. Valid values: ACTIVE, DRAINING, REGISTERING, DEREGISTERING, REGISTRATION_FAILED."
                    ))
                })?,
        ),
    };
    active_cluster(svc, ctx, &cluster).await?;
    // Tokens hold the last ARN of the page; ARNs of one cluster sort as their ids.
    let after = match req.next_token.as_deref() {
        None | Some("") => None,
        Some(tok) => Some(
            gantry_aws_proto::pagination::decode_token(tok)
                .and_then(|arn| arn.rsplit('/').next().map(str::to_owned))
                .ok_or_else(|| EcsError::invalid("Invalid nextToken."))?,
        ),
    };
    // From the cluster's in-memory view, in id order, evaluating the filter only until the page
    // is full.
    let mut page: Vec<String> = svc
        .placement
        .read(svc, &ctx.region, &cluster, |view| {
            view.in_order_after(after.as_deref())
                .filter(|&i| {
                    let ci = &view.entries()[i].record;
                    let wanted = match status {
                        Some(s) => ci.status == s,
                        None => matches!(
                            ci.status,
                            ContainerInstanceStatus::Active | ContainerInstanceStatus::Draining
                        ),
                    };
                    wanted && filter.as_ref().is_none_or(|f| f.matches(&view.views()[i]))
                })
                .take(limit + 1)
                .map(|i| arn_of(ctx, &view.entries()[i].record))
                .collect()
        })
        .await?;
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last()
            .map(|arn| gantry_aws_proto::pagination::encode_token(arn))
            .unwrap_or_default()
    });
    Ok(with_token(json!({"containerInstanceArns": page}), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateStateRequest {
    cluster: Option<String>,
    #[serde(default)]
    container_instances: Vec<String>,
    status: Option<String>,
}

pub(super) async fn update_state(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: UpdateStateRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let status = match req.status.as_deref() {
        Some("ACTIVE") => ContainerInstanceStatus::Active,
        Some("DRAINING") => ContainerInstanceStatus::Draining,
        Some(other) => {
            return Err(EcsError::invalid(format!(
                "Container instances can only be set to ACTIVE or DRAINING, not '{other}'."
            )));
        }
        None => return Err(EcsError::invalid("status is required.")),
    };
    check_len("containerInstances", &req.container_instances, 10)?;
    active_cluster(svc, ctx, &cluster).await?;
    let mut updated = Vec::new();
    let mut failures = Vec::new();
    let pools = crate::capacity_providers::providers_by_pool(svc, ctx).await?;
    for r in &req.container_instances {
        let result = commit_with_retry(svc.store.as_ref(), || async {
            let Some(cur) = get(svc, ctx, &cluster, r)
                .await?
                .filter(|c| c.value.status != ContainerInstanceStatus::Inactive)
            else {
                return Ok((Txn::new(), None));
            };
            if cur.value.status == status {
                return Ok((Txn::new(), Some(cur.value)));
            }
            let mut ci = cur.value.clone();
            ci.status = status;
            ci.version += 1;
            let key = keys::container_instance(&ctx.region, &cluster, &ci.id);
            let txn = Txn::new()
                .require_revision(&key, cur.revision)
                .put(&key, encode(&key, &ci)?);
            Ok((txn, Some(ci)))
        })
        .await?;
        match result {
            Some(ci) => updated.push(to_wire(&ci, ctx, false, &pools)),
            None => failures.push(missing_instance(ctx, &cluster, r)),
        }
    }
    Ok(json!({"containerInstances": updated, "failures": failures}))
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct TargetedAttribute {
    name: String,
    value: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttributesRequest {
    cluster: Option<String>,
    #[serde(default)]
    attributes: Vec<TargetedAttribute>,
}

async fn change_attributes(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
    delete: bool,
) -> Result<Value, EcsError> {
    let req: AttributesRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    if req.attributes.is_empty() || req.attributes.len() > MAX_CUSTOM_ATTRIBUTES {
        return Err(EcsError::invalid(format!(
            "attributes must hold between 1 and {MAX_CUSTOM_ATTRIBUTES} entries."
        )));
    }
    for a in &req.attributes {
        if let Some(t) = &a.target_type
            && t != "container-instance"
        {
            return Err(EcsError::invalid(format!(
                "Invalid targetType '{t}'. Valid values: container-instance."
            )));
        }
        if a.target_id.as_deref().is_none_or(str::is_empty) {
            return Err(EcsError::invalid(format!(
                "A targetId is required for attribute '{}'.",
                a.name
            )));
        }
        validate_attribute(&Attribute {
            name: a.name.clone(),
            value: a.value.clone(),
        })?;
    }
    active_cluster(svc, ctx, &cluster).await?;
    // Group by target so that one target's attributes change in one transaction.
    let mut targets: Vec<String> = Vec::new();
    for a in &req.attributes {
        let t = a.target_id.clone().unwrap_or_default();
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    for target in &targets {
        let attrs: Vec<Attribute> = req
            .attributes
            .iter()
            .filter(|a| a.target_id.as_deref() == Some(target.as_str()))
            .map(|a| Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
            })
            .collect();
        commit_with_retry(svc.store.as_ref(), || async {
            let Some(cur) = get(svc, ctx, &cluster, target)
                .await?
                .filter(|c| c.value.status != ContainerInstanceStatus::Inactive)
            else {
                return Err(EcsError::TargetNotFound(format!("Could not find {target}.")));
            };
            let mut ci = cur.value.clone();
            if delete {
                ci.attributes.retain(|a| !attrs.iter().any(|d| d.name == a.name));
            } else {
                put_attributes(&mut ci.attributes, &attrs);
                if ci.custom_attribute_count() > MAX_CUSTOM_ATTRIBUTES {
                    return Err(EcsError::AttributeLimitExceeded(format!(
                        "You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes per resource."
                    )));
                }
            }
            ci.version += 1;
            let key = keys::container_instance(&ctx.region, &cluster, &ci.id);
            let txn = Txn::new().require_revision(&key, cur.revision).put(&key, encode(&key, &ci)?);
            Ok((txn, ()))
        })
        .await?;
    }
    let echoed: Vec<Value> = req
        .attributes
        .iter()
        .map(|a| {
            let mut v = json!({"name": a.name, "targetType": "container-instance", "targetId": a.target_id});
            if let Some(val) = &a.value {
                v["value"] = json!(val);
            }
            v
        })
        .collect();
    Ok(json!({"attributes": echoed}))
}

pub(super) async fn put_attributes_op(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    change_attributes(svc, body, ctx, false).await
}

pub(super) async fn delete_attributes(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    change_attributes(svc, body, ctx, true).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAttributesRequest {
    cluster: Option<String>,
    target_type: Option<String>,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn list_attributes(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListAttributesRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    match req.target_type.as_deref() {
        Some("container-instance") => {}
        Some(t) => {
            return Err(EcsError::invalid(format!(
                "Invalid targetType '{t}'. Valid values: container-instance."
            )));
        }
        None => return Err(EcsError::invalid("targetType is required.")),
    }
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(EcsError::invalid("attributeValue requires attributeName."));
    }
    let limit = max_results(req.max_results, 100, 100)?;
    active_cluster(svc, ctx, &cluster).await?;
    let all = svc
        .store
        .scan_all_typed::<ContainerInstance>(&keys::container_instances(&ctx.region, &cluster))
        .await?;
    let mut items: Vec<(String, Value)> = Vec::new();
    for ci in all
        .iter()
        .filter(|c| c.value.status != ContainerInstanceStatus::Inactive)
    {
        let arn = arn_of(ctx, &ci.value);
        for a in &ci.value.attributes {
            if req.attribute_name.as_deref().is_some_and(|n| n != a.name) {
                continue;
            }
            if req.attribute_value.is_some() && req.attribute_value != a.value {
                continue;
            }
            let mut v =
                json!({"name": a.name, "targetType": "container-instance", "targetId": arn});
            if let Some(val) = &a.value {
                v["value"] = json!(val);
            }
            items.push((format!("{arn}\u{0}{}", a.name), v));
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = paginate(items, req.next_token.as_deref(), limit)?;
    Ok(with_token(json!({"attributes": page}), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiscoverPollEndpointRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
}

/// DiscoverPollEndpoint: agents reach this server for everything (the assignment stream and
/// telemetry included), so the answer is the server's own endpoint. Service Connect is not
/// served: no `serviceConnectEndpoint`.
pub(super) async fn discover_poll_endpoint(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DiscoverPollEndpointRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    if let Some(reference) = req.container_instance.as_deref().filter(|s| !s.is_empty())
        && get(svc, ctx, &cluster, reference).await?.is_none()
    {
        return Err(EcsError::invalid(format!(
            "The referenced container instance {reference} was not found in cluster {cluster}."
        )));
    }
    let Some(endpoint) = &svc.endpoint else {
        return Err(EcsError::Internal(
            "the server's endpoint is not known to the ECS service".into(),
        ));
    };
    Ok(json!({"endpoint": endpoint, "telemetryEndpoint": endpoint}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateContainerAgentRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
}

/// UpdateContainerAgent: the agent is part of the `gantry` binary and is updated by replacing
/// that binary on the host, never by the control plane, so once the instance is found the
/// answer is `NoUpdateAvailableException` saying so.
pub(super) async fn update_agent(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: UpdateContainerAgentRequest = parse(body)?;
    let cluster = cluster_name(req.cluster.as_deref())?;
    let Some(reference) = req.container_instance.as_deref().filter(|s| !s.is_empty()) else {
        return Err(EcsError::invalid("containerInstance is required."));
    };
    active_cluster(svc, ctx, &cluster).await?;
    let Some(ci) = get(svc, ctx, &cluster, reference)
        .await?
        .filter(|c| c.value.status != ContainerInstanceStatus::Inactive)
    else {
        return Err(EcsError::invalid(format!(
            "The referenced container instance {reference} was not found in cluster {cluster}."
        )));
    };
    Err(EcsError::NoUpdateAvailable(format!(
        "No update is available for the container agent on {}: the agent is part of the gantry binary and is updated by installing a new gantry binary on the host and restarting the agent (its running tasks are adopted).",
        arn_of(ctx, &ci.value)
    )))
}
