//! TagResource, UntagResource, ListTagsForResource for clusters, task definitions, container
//! instances, services, tasks and capacity providers (host pools; the built-in FARGATE and
//! FARGATE_SPOT belong to the platform and have no tags).

use gantry_domain::Arn;
use gantry_domain::cluster::{Cluster, ClusterStatus};
use gantry_domain::container_instance::ContainerInstance;
use gantry_domain::tags::{Tag, merge_tags, remove_tags, validate_tags};
use gantry_domain::task_definition::TaskDefinition;
use gantry_store::{StoreExt, Txn, Versioned, encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::wire::{commit_with_retry, parse};
use crate::{EcsError, EcsService, keys};
use gantry_front::RequestContext;

/// A taggable record: where it lives and how to reach its tags.
trait Taggable: DeserializeOwned + serde::Serialize + Clone + Send {
    fn tags_mut(&mut self) -> &mut Vec<Tag>;
    fn tags(&self) -> &[Tag];
    fn is_live(&self) -> bool;
}

impl Taggable for Cluster {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn is_live(&self) -> bool {
        self.status == ClusterStatus::Active
    }
}

impl Taggable for TaskDefinition {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn is_live(&self) -> bool {
        true
    }
}

impl Taggable for ContainerInstance {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn is_live(&self) -> bool {
        true
    }
}

impl Taggable for gantry_domain::service::Service {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn is_live(&self) -> bool {
        self.status != gantry_domain::service::ServiceStatus::Inactive
    }
}

impl Taggable for gantry_domain::task::Task {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn is_live(&self) -> bool {
        true
    }
}

impl Taggable for gantry_domain::capacity::CapacityProvider {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn is_live(&self) -> bool {
        self.status == gantry_domain::capacity::ProviderStatus::Active
    }
}

enum Target {
    CapacityProvider(String),
    Cluster(String),
    TaskDefinition(String),
    ContainerInstance(String),
    Service(String),
    Task(String),
}

fn target_of(arn_str: &str, ctx: &RequestContext) -> Result<Target, EcsError> {
    let bad = || EcsError::invalid(format!("Invalid resource ARN: {arn_str}"));
    let arn = Arn::parse(arn_str).map_err(|_| bad())?;
    if arn.service != "ecs" {
        return Err(bad());
    }
    let region = &ctx.region;
    Ok(match arn.resource_parts() {
        ("cluster", name) if !name.is_empty() => Target::Cluster(keys::cluster(region, name)),
        ("task-definition", rest) => {
            let (family, rev) = rest.split_once(':').ok_or_else(bad)?;
            let rev: u32 = rev.parse().map_err(|_| bad())?;
            Target::TaskDefinition(keys::task_definition(region, family, rev))
        }
        ("container-instance", rest) => {
            let (cluster, id) = rest.split_once('/').ok_or_else(bad)?;
            Target::ContainerInstance(keys::container_instance(region, cluster, id))
        }
        ("service", rest) => match rest.split_once('/') {
            Some((cluster, name)) => Target::Service(keys::service(region, cluster, name)),
            // The short form (`service/<name>`, without the cluster) names no service here:
            // services always have the long ARN format.
            None if !rest.is_empty() => return Err(EcsError::ServiceNotFound),
            None => return Err(bad()),
        },
        ("task", rest) => {
            let (cluster, id) = rest.split_once('/').ok_or_else(bad)?;
            Target::Task(keys::task(region, cluster, id))
        }
        ("capacity-provider", name) if !name.is_empty() && !name.contains('/') => {
            Target::CapacityProvider(keys::capacity_provider(region, name))
        }
        _ => return Err(bad()),
    })
}

fn not_found(target: &Target) -> EcsError {
    match target {
        Target::Cluster(_) => EcsError::ClusterNotFound,
        Target::Service(_) => EcsError::ServiceNotFound,
        _ => EcsError::ResourceNotFound("The specified resource could not be found.".into()),
    }
}

async fn modify<T: Taggable>(
    svc: &EcsService,
    key: &str,
    missing: impl Fn() -> EcsError,
    change: &(dyn Fn(&mut Vec<Tag>) -> Result<(), EcsError> + Sync),
) -> Result<(), EcsError> {
    commit_with_retry(svc.store.as_ref(), || async {
        let Some(Versioned { value, revision }) = svc.store.get_typed::<T>(key).await? else {
            return Err(missing());
        };
        if !value.is_live() {
            return Err(missing());
        }
        let mut v = value.clone();
        change(v.tags_mut())?;
        let txn = Txn::new()
            .require_revision(key, revision)
            .put(key, encode(key, &v)?);
        Ok((txn, ()))
    })
    .await
}

async fn apply(
    svc: &EcsService,
    target: &Target,
    change: &(dyn Fn(&mut Vec<Tag>) -> Result<(), EcsError> + Sync),
) -> Result<(), EcsError> {
    let missing = || not_found(target);
    match target {
        Target::Cluster(k) => modify::<Cluster>(svc, k, missing, change).await,
        Target::TaskDefinition(k) => modify::<TaskDefinition>(svc, k, missing, change).await,
        Target::ContainerInstance(k) => modify::<ContainerInstance>(svc, k, missing, change).await,
        Target::Service(k) => {
            modify::<gantry_domain::service::Service>(svc, k, missing, change).await
        }
        Target::Task(k) => modify::<gantry_domain::task::Task>(svc, k, missing, change).await,
        Target::CapacityProvider(k) => {
            modify::<gantry_domain::capacity::CapacityProvider>(svc, k, missing, change).await
        }
    }
}

async fn read_tags<T: Taggable>(svc: &EcsService, key: &str) -> Result<Option<Vec<Tag>>, EcsError> {
    Ok(svc
        .store
        .get_typed::<T>(key)
        .await?
        .filter(|v| v.value.is_live())
        .map(|v| v.value.tags().to_vec()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagRequest {
    resource_arn: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

fn resource_arn(req: &TagRequest) -> Result<&str, EcsError> {
    req.resource_arn
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| EcsError::invalid("resourceArn is required."))
}

pub(super) async fn tag(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: TagRequest = parse(body)?;
    let target = target_of(resource_arn(&req)?, ctx)?;
    validate_tags(&req.tags)?;
    if req.tags.is_empty() {
        return Err(EcsError::invalid("tags must not be empty."));
    }
    let new = req.tags.clone();
    apply(svc, &target, &move |tags: &mut Vec<Tag>| {
        merge_tags(tags, &new);
        validate_tags(tags).map_err(EcsError::from)
    })
    .await?;
    Ok(json!({}))
}

pub(super) async fn untag(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: TagRequest = parse(body)?;
    let target = target_of(resource_arn(&req)?, ctx)?;
    let keys_to_remove = req.tag_keys.clone();
    apply(svc, &target, &move |tags: &mut Vec<Tag>| {
        remove_tags(tags, &keys_to_remove);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(super) async fn list(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: TagRequest = parse(body)?;
    let target = target_of(resource_arn(&req)?, ctx)?;
    let tags = match &target {
        Target::Cluster(k) => read_tags::<Cluster>(svc, k).await?,
        Target::TaskDefinition(k) => read_tags::<TaskDefinition>(svc, k).await?,
        Target::ContainerInstance(k) => read_tags::<ContainerInstance>(svc, k).await?,
        Target::Service(k) => read_tags::<gantry_domain::service::Service>(svc, k).await?,
        Target::Task(k) => read_tags::<gantry_domain::task::Task>(svc, k).await?,
        Target::CapacityProvider(k) => {
            read_tags::<gantry_domain::capacity::CapacityProvider>(svc, k).await?
        }
    };
    let tags = tags.ok_or_else(|| not_found(&target))?;
    Ok(json!({"tags": tags}))
}
