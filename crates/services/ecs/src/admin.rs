//! The platform's administrative API, beside the ECS API and signed like it (root credentials):
//! `POST /admin/v1/fargate/interrupt` reclaims FARGATE_SPOT capacity, as AWS does when it needs
//! it back. `gantry fargate interrupt` is its client.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use gantry_aws_proto::sigv4::{self, CredentialProvider};
use gantry_aws_proto::{AwsError, new_request_id};
use gantry_domain::Arn;
use gantry_domain::capacity::FARGATE_SPOT;
use gantry_domain::task::{Task, TaskStatus, stop_code};
use gantry_front::{Clock, RequestContext};
use gantry_store::StoreExt;
use serde::Deserialize;
use serde_json::json;

use crate::{EcsService, keys, tasks};

/// ECS's stop reason of an interrupted Spot task.
pub const SPOT_INTERRUPTED: &str = "Your Spot Task was interrupted.";

/// The warning a Spot task gets between SIGTERM and SIGKILL unless told otherwise.
pub const DEFAULT_SPOT_WARNING_SECONDS: u64 = 120;

struct Admin {
    ecs: Arc<EcsService>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    account_id: String,
}

/// The administrative routes.
pub fn admin_router(
    ecs: Arc<EcsService>,
    creds: Arc<dyn CredentialProvider>,
    clock: Arc<dyn Clock>,
    account_id: impl Into<String>,
) -> Router {
    Router::new()
        .route("/admin/v1/fargate/interrupt", post(interrupt))
        .with_state(Arc::new(Admin {
            ecs,
            creds,
            clock,
            account_id: account_id.into(),
        }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InterruptRequest {
    cluster: Option<String>,
    count: u64,
    warning_seconds: Option<u64>,
}

/// Interrupts up to `count` running FARGATE_SPOT tasks (of `cluster`, or of every cluster of
/// the signed region), oldest first: each gets SIGTERM now and SIGKILL after the warning, and
/// stops with `SpotInterruption`; services replace them on their strategy's providers.
async fn interrupt(State(admin): State<Arc<Admin>>, req: Request) -> Response {
    let request_id = new_request_id();
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return AwsError::client("SerializationException", "The body is too large.")
                .json_response(&request_id);
        }
    };
    let verified = match sigv4::verify(&parts, &body, admin.creds.as_ref(), admin.clock.now()) {
        Ok(v) => v,
        Err(e) => return e.to_json_error().json_response(&request_id),
    };
    let r: InterruptRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return AwsError::client("SerializationException", e.to_string())
                .json_response(&request_id);
        }
    };
    // Root credentials only (the agents' key pair): the account root is the caller.
    let ctx = RequestContext {
        caller: None,
        request_id: request_id.clone(),
        region: verified.region.clone(),
        account_id: admin.account_id.clone(),
        access_key_id: String::new(),
        now: admin.clock.now_millis(),
    };
    let cluster = match r
        .cluster
        .as_deref()
        .map(|c| crate::wire::cluster_name(Some(c)))
    {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return AwsError::from(e).json_response(&request_id),
        None => None,
    };
    if let Some(c) = &cluster
        && let Err(e) = crate::wire::active_cluster(&admin.ecs, &ctx, c).await
    {
        return AwsError::from(e).json_response(&request_id);
    }
    let prefix = match &cluster {
        Some(c) => keys::tasks(&ctx.region, c),
        None => format!("ecs/{}/task/", ctx.region),
    };
    let mut spot: Vec<Task> = match admin.ecs.store.scan_all_typed::<Task>(&prefix).await {
        Ok(all) => all
            .into_iter()
            .map(|v| v.value)
            .filter(|t| {
                t.capacity_provider_name.as_deref() == Some(FARGATE_SPOT)
                    && t.desired_status == TaskStatus::Running
                    && t.last_status == TaskStatus::Running
            })
            .collect(),
        Err(e) => return AwsError::server(e.to_string()).json_response(&request_id),
    };
    spot.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let warning = r.warning_seconds.unwrap_or(DEFAULT_SPOT_WARNING_SECONDS);
    let mut interrupted = Vec::new();
    for t in spot
        .into_iter()
        .take(usize::try_from(r.count).unwrap_or(usize::MAX))
    {
        match tasks::request_stop_with_grace(
            &admin.ecs,
            &ctx,
            &t.cluster,
            &t.id,
            stop_code::SPOT_INTERRUPTION,
            SPOT_INTERRUPTED,
            Some(warning),
        )
        .await
        {
            Ok(_) => interrupted
                .push(Arn::task(&ctx.region, &ctx.account_id, &t.cluster, &t.id).to_string()),
            Err(e) => tracing::warn!(task = %t.id, error = %e, "cannot interrupt the task"),
        }
    }
    tracing::info!(count = interrupted.len(), warning, "Spot tasks interrupted");
    let body = json!({"interruptedTasks": interrupted, "warningSeconds": warning}).to_string();
    (
        [
            ("x-amzn-RequestId", request_id),
            ("content-type", "application/json".to_owned()),
        ],
        body,
    )
        .into_response()
}
