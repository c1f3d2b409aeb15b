//! CreateApplication, GetApplication, BatchGetApplications, ListApplications and
//! DeleteApplication, for the ECS compute platform.

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::wire::{application, applications, commit, page, parse, time};
use crate::{CodeDeployError, CodeDeployService};

/// Most names BatchGetApplications takes.
const BATCH_MAX: usize = 100;

/// An application as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationRecord {
    pub name: String,
    pub id: String,
    pub create_time_ms: u64,
    pub compute_platform: String,
}

impl ApplicationRecord {
    fn info(&self) -> Value {
        json!({
            "applicationId": self.id,
            "applicationName": self.name,
            "createTime": time(self.create_time_ms),
            "linkedToGitHub": false,
            "computePlatform": self.compute_platform,
        })
    }
}

fn name_required() -> CodeDeployError {
    CodeDeployError::ApplicationNameRequired("Application name is required".to_owned())
}

fn not_found(name: &str) -> CodeDeployError {
    CodeDeployError::ApplicationDoesNotExist(format!("No application found for name: {name}"))
}

/// The ECS compute platform: the only one Gantry runs.
pub fn check_platform(platform: Option<&str>) -> Result<&'static str, CodeDeployError> {
    match platform {
        Some("ECS") => Ok("ECS"),
        Some(p @ ("Server" | "Lambda")) => Err(CodeDeployError::InvalidComputePlatform(format!(
            "The compute platform {p} is not supported by Gantry: it runs the ECS compute platform only."
        ))),
        None => Err(CodeDeployError::InvalidComputePlatform(
            "The compute platform Server (the default) is not supported by Gantry: set computePlatform to ECS.".to_owned(),
        )),
        Some(p) => Err(CodeDeployError::InvalidComputePlatform(format!(
            "The computePlatform {p} is invalid. The computePlatform should be Lambda, Server, or ECS."
        ))),
    }
}

pub(crate) async fn load(
    svc: &CodeDeployService,
    ctx: &RequestContext,
    name: &str,
) -> Result<Option<ApplicationRecord>, CodeDeployError> {
    Ok(svc
        .store
        .get_typed::<ApplicationRecord>(&application(&ctx.region, name))
        .await?
        .map(|v| v.value))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    application_name: Option<String>,
    compute_platform: Option<String>,
    tags: Option<Vec<Value>>,
}

pub(crate) async fn create(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: CreateRequest = parse(body)?;
    let name = req.application_name.ok_or_else(name_required)?;
    let platform = check_platform(req.compute_platform.as_deref())?;
    if req.tags.is_some_and(|t| !t.is_empty()) {
        return Err(CodeDeployError::InvalidTagsToAdd(
            "Tags on CodeDeploy applications are not supported by Gantry.".to_owned(),
        ));
    }
    let record = ApplicationRecord {
        name: name.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        create_time_ms: ctx.now,
        compute_platform: platform.to_owned(),
    };
    let key = application(&ctx.region, &name);
    let txn = Txn::new()
        .require_absent(&key)
        .put(&key, encode(&key, &record)?);
    if !commit(svc.store.as_ref(), txn).await? {
        return Err(CodeDeployError::ApplicationAlreadyExists(format!(
            "Application already exists with name: {name}"
        )));
    }
    Ok(json!({ "applicationId": record.id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameRequest {
    application_name: Option<String>,
}

pub(crate) async fn get(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: NameRequest = parse(body)?;
    let name = req.application_name.ok_or_else(name_required)?;
    let app = load(svc, ctx, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(json!({ "application": app.info() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchRequest {
    application_names: Option<Vec<String>>,
}

pub(crate) async fn batch_get(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: BatchRequest = parse(body)?;
    let names = req.application_names.ok_or_else(name_required)?;
    if names.len() > BATCH_MAX {
        return Err(CodeDeployError::BatchLimitExceeded(format!(
            "The maximum number of names or IDs allowed for this request ({BATCH_MAX}) was exceeded."
        )));
    }
    let mut infos = Vec::with_capacity(names.len());
    for name in &names {
        let app = load(svc, ctx, name).await?.ok_or_else(|| not_found(name))?;
        infos.push(app.info());
    }
    Ok(json!({ "applicationsInfo": infos }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    next_token: Option<String>,
}

pub(crate) async fn list(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: ListRequest = parse(body)?;
    let names: Vec<String> = svc
        .store
        .scan_all_typed::<ApplicationRecord>(&applications(&ctx.region))
        .await?
        .into_iter()
        .map(|v| v.value.name)
        .collect();
    let (names, next) = page(names, req.next_token.as_deref())?;
    Ok(crate::wire::with_next(
        json!({ "applications": names }),
        next,
    ))
}

/// Deleting an application that does not exist succeeds, as in CodeDeploy.
pub(crate) async fn delete(
    svc: &CodeDeployService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, CodeDeployError> {
    let req: NameRequest = parse(body)?;
    let name = req.application_name.ok_or_else(name_required)?;
    let key = application(&ctx.region, &name);
    svc.store.commit(Txn::new().delete(&key)).await?;
    Ok(json!({}))
}
