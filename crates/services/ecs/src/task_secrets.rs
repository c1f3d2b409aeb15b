//! What an agent fetches when it starts a task: `POST /agent/v1/task-secrets`, SigV4-signed
//! (service `ecs`) like the assignment stream, with `{"cluster", "containerInstance", "task"}`.
//!
//! The answer carries, per container, the values of its `secrets` (environment variables), of its
//! `logConfiguration.secretOptions` (log driver options) and the registry credentials of its
//! `repositoryCredentials`, resolved through [`TaskSecrets`], which the composition root
//! implements over Secrets Manager and Parameter Store with the task's execution role. A value
//! that cannot be resolved answers `{"failure": {"reason": ...}}` (HTTP 200): the task's
//! `stoppedReason`, worded as ECS words it.
//!
//! `POST /agent/v1/task-credentials` (same request, same checks) answers the session
//! credentials of the task's role for the agent's credentials endpoint
//! (`{"credentials": {...}}` or `{"failure": {"reason"}}`).
//!
//! Only the instance a task is assigned to gets its secrets, and only while the task is meant to
//! run. Values are never stored, logged or put in any ECS answer: they exist in this response
//! and in the containers' environment only.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use gantry_aws_proto::{AwsError, new_request_id, sigv4};
use gantry_domain::Arn;
use gantry_domain::arn::{cluster_name_from_ref, container_instance_id_from_ref};
use gantry_domain::secrets::{
    ContainerSecrets, NamedValue, RegistryCredentials, SecretsFailure, SecretsResponse,
    TaskCredentialsResponse, TaskRoleCredentials, credentials_parameter,
};
use gantry_domain::task::{Task, TaskStatus};
use gantry_domain::task_definition::TaskDefinition;
use gantry_store::StoreExt;
use serde::Deserialize;

use crate::agent_stream::AgentStreams;
use crate::keys;

/// The largest request body the endpoint reads.
const BODY_LIMIT: usize = 16 * 1024;

/// The task a value is resolved for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskScope {
    pub region: String,
    pub account_id: String,
    pub task_arn: String,
    /// The task's execution role (RunTask override, else the task definition's): the principal
    /// that reads the secrets.
    pub execution_role_arn: Option<String>,
    /// The task's role (RunTask override, else the task definition's): whose session the
    /// task's containers get from the credentials endpoint.
    pub task_role_arn: Option<String>,
}

/// Resolution of a task's secret references; implemented by the composition root.
#[async_trait]
pub trait TaskSecrets: Send + Sync {
    /// The value of a `secrets[].valueFrom` or `secretOptions[].valueFrom`. The error is the
    /// task's `stoppedReason`.
    async fn value_from(&self, scope: &TaskScope, value_from: &str) -> Result<String, String>;

    /// The `(username, password)` of `repositoryCredentials.credentialsParameter`. The error is
    /// the task's `stoppedReason`.
    async fn registry_credentials(
        &self,
        scope: &TaskScope,
        credentials_parameter: &str,
    ) -> Result<(String, String), String>;

    /// A session of `role_arn`, the task's role or its execution role, as ECS tasks assume it
    /// (session name: the task id). The error is the task's `stoppedReason`.
    async fn role_credentials(
        &self,
        scope: &TaskScope,
        role_arn: &str,
    ) -> Result<TaskRoleCredentials, String>;
}

/// The agent's request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretsRequest {
    #[serde(default)]
    cluster: Option<String>,
    container_instance: String,
    task: String,
    /// `/agent/v1/task-credentials`: `"execution"` for the execution role (image pulls from
    /// this registry), else the task role.
    #[serde(default)]
    role: Option<String>,
}

/// Resolves every reference of `td` for `scope`, in container order; the first failure wins.
pub async fn resolve(
    source: &dyn TaskSecrets,
    scope: &TaskScope,
    td: &TaskDefinition,
) -> SecretsResponse {
    let mut out = SecretsResponse::default();
    for c in &td.container_definitions {
        let mut got = ContainerSecrets {
            name: c.name.clone(),
            ..Default::default()
        };
        if let Some(param) = credentials_parameter(&c.other) {
            match source.registry_credentials(scope, param).await {
                Ok((username, password)) => {
                    got.registry_credentials = Some(RegistryCredentials { username, password });
                }
                Err(reason) => return failed(reason),
            }
        }
        for s in c.secrets.iter().flatten() {
            match source.value_from(scope, &s.value_from).await {
                Ok(value) => got.environment.push(NamedValue {
                    name: s.name.clone(),
                    value,
                }),
                Err(reason) => return failed(reason),
            }
        }
        let log_secrets = c
            .log_configuration
            .as_ref()
            .and_then(|l| l.secret_options.as_ref());
        for s in log_secrets.into_iter().flatten() {
            match source.value_from(scope, &s.value_from).await {
                Ok(value) => got.log_options.push(NamedValue {
                    name: s.name.clone(),
                    value,
                }),
                Err(reason) => return failed(reason),
            }
        }
        out.containers.push(got);
    }
    out
}

fn failed(reason: String) -> SecretsResponse {
    SecretsResponse {
        containers: Vec::new(),
        failure: Some(SecretsFailure { reason }),
    }
}

pub(crate) async fn serve(State(streams): State<Arc<AgentStreams>>, req: Request) -> Response {
    let request_id = new_request_id();
    let answer = match lookup(&streams, req).await {
        Ok((scope, td, source, _)) => {
            let out = resolve(source.as_ref(), &scope, &td).await;
            match &out.failure {
                None => tracing::info!(task = %scope.task_arn, "task secrets handed to its agent"),
                Some(f) => {
                    tracing::info!(task = %scope.task_arn, reason = %f.reason, "task secrets not resolved");
                }
            }
            Ok(serde_json::to_vec(&out).unwrap_or_default())
        }
        Err(e) => Err(e),
    };
    respond(answer, &request_id)
}

/// `POST /agent/v1/task-credentials`: the task role's (or, with `"role": "execution"`, the
/// execution role's) session credentials, for the agent the task is assigned to while the task
/// is meant to run. `{"failure": {"reason"}}` when the task has no such role or the role cannot
/// be assumed for it.
pub(crate) async fn serve_credentials(
    State(streams): State<Arc<AgentStreams>>,
    req: Request,
) -> Response {
    let request_id = new_request_id();
    let answer = match lookup(&streams, req).await {
        Ok((scope, _, source, role)) => {
            let execution = role.as_deref() == Some("execution");
            let role_arn = if execution {
                scope.execution_role_arn.clone()
            } else {
                scope.task_role_arn.clone()
            };
            let out = match role_arn {
                None => TaskCredentialsResponse {
                    credentials: None,
                    failure: Some(SecretsFailure {
                        reason: format!(
                            "the task has no {} role",
                            if execution { "execution" } else { "task" }
                        ),
                    }),
                },
                Some(role_arn) => match source.role_credentials(&scope, &role_arn).await {
                    Ok(c) => {
                        tracing::info!(task = %scope.task_arn, role = %c.role_arn, "task role credentials handed to its agent");
                        TaskCredentialsResponse {
                            credentials: Some(c),
                            failure: None,
                        }
                    }
                    Err(reason) => {
                        tracing::info!(task = %scope.task_arn, reason = %reason, "task role credentials refused");
                        TaskCredentialsResponse {
                            credentials: None,
                            failure: Some(SecretsFailure { reason }),
                        }
                    }
                },
            };
            Ok(serde_json::to_vec(&out).unwrap_or_default())
        }
        Err(e) => Err(e),
    };
    respond(answer, &request_id)
}

fn respond(answer: Result<Vec<u8>, AwsError>, request_id: &str) -> Response {
    match answer {
        Ok(bytes) => {
            let mut r = ([(http::header::CONTENT_TYPE, "application/json")], bytes).into_response();
            if let Ok(v) = http::HeaderValue::from_str(request_id) {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            r
        }
        Err(e) => e.json_response(request_id),
    }
}

/// The signed request's task, checked to be assigned to the asking instance and meant to run,
/// with its task definition and the resolver.
async fn lookup(
    streams: &AgentStreams,
    req: Request,
) -> Result<
    (
        TaskScope,
        TaskDefinition,
        Arc<dyn TaskSecrets>,
        Option<String>,
    ),
    AwsError,
> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| AwsError::client("InvalidParameterException", "Request body too large."))?;
    let verified = sigv4::verify(&parts, &body, streams.creds(), streams.now())
        .map_err(|e| e.to_json_error())?;
    let q: SecretsRequest = serde_json::from_slice(&body)
        .map_err(|e| AwsError::client("SerializationException", e.to_string()))?;
    let region = verified.region;
    let cluster = q.cluster.unwrap_or_else(|| "default".into());
    let cluster = cluster_name_from_ref(&cluster).unwrap_or(cluster);
    let host_cluster = cluster.clone();
    let instance_id =
        container_instance_id_from_ref(&q.container_instance).unwrap_or(q.container_instance);
    let task_id = q.task.rsplit('/').next().unwrap_or(&q.task).to_owned();
    // A platform host names its own cluster; the Fargate task's cluster is in its ARN, and the
    // task must be a Fargate one (checked below with its host).
    let cluster = if cluster == gantry_domain::cluster::FARGATE_PLATFORM_CLUSTER {
        q.task
            .split_once(":task/")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(c, _)| c.to_owned())
            .unwrap_or(cluster)
    } else {
        cluster
    };
    let store = streams.store();
    let task = store
        .get_typed::<Task>(&keys::task(&region, &cluster, &task_id))
        .await
        .map_err(|e| AwsError::server(e.to_string()))?
        .map(|t| t.value)
        .filter(|t| {
            t.container_instance_id.as_deref() == Some(instance_id.as_str())
                && t.host_cluster() == host_cluster
        })
        .ok_or_else(|| {
            AwsError::client(
                "InvalidParameterException",
                format!("Task {task_id} is not assigned to container instance {instance_id} in cluster {cluster}."),
            )
        })?;
    if task.desired_status == TaskStatus::Stopped || task.last_status == TaskStatus::Stopped {
        return Err(AwsError::client(
            "InvalidParameterException",
            format!("Task {task_id} is stopping; its secrets are no longer handed out."),
        ));
    }
    let td = store
        .get_typed::<TaskDefinition>(&keys::task_definition(&region, &task.family, task.revision))
        .await
        .map_err(|e| AwsError::server(e.to_string()))?
        .map(|t| t.value)
        .ok_or_else(|| AwsError::server("the task's task definition is missing"))?;
    let Some(source) = streams.secrets().cloned() else {
        return Err(AwsError::server(
            "this control plane cannot resolve task secrets",
        ));
    };
    let scope = TaskScope {
        task_arn: Arn::task(&region, streams.account(), &cluster, &task_id).to_string(),
        account_id: streams.account().to_owned(),
        execution_role_arn: task
            .overrides
            .execution_role_arn
            .clone()
            .or_else(|| td.execution_role_arn.clone()),
        task_role_arn: gantry_domain::secrets::task_role_arn(&task.overrides, &td)
            .map(str::to_owned),
        region,
    };
    Ok((scope, td, source, q.role))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gantry_domain::secrets::has_secrets;
    use serde_json::{Value, json};

    struct Fixed;

    #[async_trait]
    impl TaskSecrets for Fixed {
        async fn value_from(&self, scope: &TaskScope, v: &str) -> Result<String, String> {
            assert_eq!(scope.execution_role_arn.as_deref(), Some("arn:role"));
            match v {
                "missing" => Err("ResourceInitializationError: gone".into()),
                other => Ok(format!("value-of-{other}")),
            }
        }
        async fn registry_credentials(
            &self,
            _: &TaskScope,
            p: &str,
        ) -> Result<(String, String), String> {
            Ok((format!("user-{p}"), "pw".into()))
        }
        async fn role_credentials(
            &self,
            _: &TaskScope,
            _: &str,
        ) -> Result<TaskRoleCredentials, String> {
            Err("not in this test".into())
        }
    }

    fn td(v: Value) -> TaskDefinition {
        serde_json::from_value(v).unwrap()
    }

    fn scope() -> TaskScope {
        TaskScope {
            region: "us-east-1".into(),
            account_id: "1".into(),
            task_arn: "t".into(),
            execution_role_arn: Some("arn:role".into()),
            task_role_arn: None,
        }
    }

    #[tokio::test]
    async fn every_reference_is_resolved_per_container() {
        let d = td(json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i",
             "secrets": [{"name": "DB", "valueFrom": "s1"}, {"name": "TOK", "valueFrom": "s2"}],
             "logConfiguration": {"logDriver": "awslogs", "options": {},
                                  "secretOptions": [{"name": "opt", "valueFrom": "s3"}]},
             "repositoryCredentials": {"credentialsParameter": "reg"}},
            {"name": "b", "image": "i"}]}));
        assert!(has_secrets(&d));
        let r = resolve(&Fixed, &scope(), &d).await;
        assert_eq!(r.failure, None);
        let a = &r.containers[0];
        assert_eq!(
            a.environment
                .iter()
                .map(|n| (n.name.as_str(), n.value.as_str()))
                .collect::<Vec<_>>(),
            [("DB", "value-of-s1"), ("TOK", "value-of-s2")]
        );
        assert_eq!(a.log_options[0].value, "value-of-s3");
        assert_eq!(
            a.registry_credentials.as_ref().unwrap().username,
            "user-reg"
        );
        assert_eq!(
            r.containers[1],
            ContainerSecrets {
                name: "b".into(),
                ..Default::default()
            }
        );
        // Debug output never shows a value.
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("value-of") && !shown.contains("\"pw\""),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn the_first_failure_is_the_answer() {
        let d = td(json!({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i", "secrets": [
                {"name": "OK", "valueFrom": "s1"}, {"name": "NO", "valueFrom": "missing"}]}]}));
        let r = resolve(&Fixed, &scope(), &d).await;
        assert!(r.containers.is_empty());
        assert_eq!(
            r.failure.unwrap().reason,
            "ResourceInitializationError: gone"
        );
        let plain =
            td(json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}]}));
        assert!(!has_secrets(&plain));
    }
}
