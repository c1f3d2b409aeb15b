//! The task scale-in protection endpoint: `GET` and `PUT
//! {ECS_AGENT_URI}/task-protection/v1/state`, where `ECS_AGENT_URI` is `<metadata base>/api/<id>`
//! with the container's unguessable metadata id.
//!
//! As the ECS agent does, the request is forwarded to the control plane's `GetTaskProtection` /
//! `UpdateTaskProtection` signed with the task role's session credentials, so the task role's
//! policies decide (`ecs:GetTaskProtection`, `ecs:UpdateTaskProtection`); a task without a role
//! gets `403 AccessDeniedException`. Answers are ECS's agent shapes: `{"protection": {...}}`,
//! `{"failure": {...}}` (a failure of the call, HTTP 200) or `{"error": {...}}`.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{ApiClient, CallError, Service};
use crate::credentials::CredentialsRegistry;
use crate::metadata::MetadataRegistry;

#[derive(Clone)]
struct AppState {
    metadata: MetadataRegistry,
    credentials: CredentialsRegistry,
    api: ApiClient,
}

/// The body of a `PUT`: ECS's agent refuses members it does not know.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutState {
    #[serde(rename = "ProtectionEnabled")]
    protection_enabled: Option<bool>,
    #[serde(rename = "ExpiresInMinutes")]
    expires_in_minutes: Option<i64>,
}

fn error(status: StatusCode, arn: &str, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"Arn": arn, "Code": code, "Message": message}})),
    )
        .into_response()
}

/// `arn:aws:ecs:<region>:<account>:task/<cluster>/<id>` → the cluster.
fn cluster_of(task_arn: &str) -> Option<&str> {
    let resource = task_arn.splitn(6, ':').nth(5)?;
    let mut parts = resource.split('/');
    (parts.next()? == "task").then_some(())?;
    parts.next()
}

/// An RFC 3339 date from the API's epoch seconds.
fn rfc3339(secs: f64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The agent's answer for an API response holding `protectedTasks` and `failures`.
fn answer(arn: &str, out: &Value) -> Response {
    if let Some(f) = out["failures"].as_array().and_then(|f| f.first()) {
        return Json(json!({"failure": {
            "Arn": f["arn"].as_str().unwrap_or(arn),
            "Reason": f["reason"],
            "Detail": f["detail"],
        }}))
        .into_response();
    }
    let Some(p) = out["protectedTasks"].as_array().and_then(|p| p.first()) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            arn,
            "ServerException",
            "the control plane answered neither a protected task nor a failure",
        );
    };
    let mut protection = json!({
        "TaskArn": p["taskArn"],
        "ProtectionEnabled": p["protectionEnabled"].as_bool().unwrap_or(false),
    });
    if let Some(d) = p["expirationDate"].as_f64().and_then(rfc3339) {
        protection["ExpirationDate"] = json!(d);
    }
    Json(json!({"protection": protection})).into_response()
}

fn call_failed(arn: &str, e: &CallError) -> Response {
    match e {
        CallError::Aws {
            status,
            code,
            message,
        } => {
            let status = StatusCode::from_u16(*status)
                .ok()
                .filter(|s| s.is_client_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, arn, code, message)
        }
        CallError::Transport(m) => {
            tracing::warn!(task_arn = %arn, error = %m, "task protection: control plane unreachable");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                arn,
                "ServerException",
                "the control plane could not be reached",
            )
        }
    }
}

/// The task of metadata id `id`, its cluster, and a client signing as its role.
#[allow(clippy::result_large_err)]
fn resolve(s: &AppState, id: &str) -> Result<(String, String, ApiClient), Response> {
    let Some(arn) = s.metadata.task_arn(id) else {
        return Err((
            StatusCode::NOT_FOUND,
            Json(json!({"error": "task protection: unknown container id"})),
        )
            .into_response());
    };
    let Some(cluster) = cluster_of(&arn).map(str::to_owned) else {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &arn,
            "ServerException",
            "the task ARN names no cluster",
        ));
    };
    let Some(c) = s.credentials.of_task(&arn) else {
        return Err(error(
            StatusCode::FORBIDDEN,
            &arn,
            "AccessDeniedException",
            "Invalid Request: no task IAM role credentials available for task",
        ));
    };
    let api = s
        .api
        .with_session(&c.access_key_id, &c.secret_access_key, &c.session_token);
    Ok((arn, cluster, api))
}

async fn get_state(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let (arn, cluster, api) = match resolve(&s, &id) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let body = json!({"cluster": cluster, "tasks": [arn]});
    match api.call(Service::Ecs, "GetTaskProtection", &body).await {
        Ok(out) => answer(&arn, &out),
        Err(e) => call_failed(&arn, &e),
    }
}

async fn put_state(State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let (arn, cluster, api) = match resolve(&s, &id) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let req: PutState = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &arn,
                "InvalidRequest",
                &format!("Failed to decode request: {e}"),
            );
        }
    };
    let Some(enabled) = req.protection_enabled else {
        return error(
            StatusCode::BAD_REQUEST,
            &arn,
            "InvalidRequest",
            "Invalid request: does not contain 'ProtectionEnabled' field",
        );
    };
    let mut call = json!({"cluster": cluster, "tasks": [arn], "protectionEnabled": enabled});
    if let Some(m) = req.expires_in_minutes {
        call["expiresInMinutes"] = json!(m);
    }
    match api.call(Service::Ecs, "UpdateTaskProtection", &call).await {
        Ok(out) => answer(&arn, &out),
        Err(e) => call_failed(&arn, &e),
    }
}

/// The protection routes, merged into the metadata listeners' router.
pub fn router(
    metadata: MetadataRegistry,
    credentials: CredentialsRegistry,
    api: ApiClient,
) -> Router {
    Router::new()
        .route(
            "/api/{id}/task-protection/v1/state",
            get(get_state).put(put_state),
        )
        .with_state(AppState {
            metadata,
            credentials,
            api,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_comes_from_the_task_arn() {
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:000000000000:task/web/0123abcd"),
            Some("web")
        );
        assert_eq!(cluster_of("arn:aws:ecs:us-east-1:0:service/web/x"), None);
    }

    #[test]
    fn answers_take_the_agent_shapes() {
        let arn = "arn:aws:ecs:us-east-1:0:task/c/t";
        let ok = json!({"protectedTasks": [{"taskArn": arn, "protectionEnabled": true,
            "expirationDate": 1_700_000_000.5}], "failures": []});
        let r = answer(arn, &ok);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            rfc3339(1_700_000_000.5).as_deref(),
            Some("2023-11-14T22:13:20.5Z")
        );
        let failed =
            json!({"protectedTasks": [], "failures": [{"arn": arn, "reason": "TASK_NOT_VALID"}]});
        assert_eq!(answer(arn, &failed).status(), StatusCode::OK);
        let e = call_failed(
            arn,
            &CallError::Aws {
                status: 400,
                code: "AccessDeniedException".into(),
                message: "no".into(),
            },
        );
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
