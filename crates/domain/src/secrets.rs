//! The secret values an agent fetches for a task at start (`POST /agent/v1/task-secrets`): the
//! shapes the control plane answers with and the agent reads. Their `Debug` never shows a value.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::task_definition::TaskDefinition;

/// A name and its resolved value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedValue {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for NamedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedValue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Credentials for the registry of a container's image.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One container's resolved values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSecrets {
    pub name: String,
    #[serde(default)]
    pub environment: Vec<NamedValue>,
    #[serde(default)]
    pub log_options: Vec<NamedValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_credentials: Option<RegistryCredentials>,
}

/// Why a task's values could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsFailure {
    /// The task's `stoppedReason`.
    pub reason: String,
}

/// The answer to an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretsResponse {
    #[serde(default)]
    pub containers: Vec<ContainerSecrets>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<SecretsFailure>,
}

/// The `credentialsParameter` of a container's `repositoryCredentials`, if any.
pub fn credentials_parameter(other: &serde_json::Map<String, Value>) -> Option<&str> {
    other
        .get("repositoryCredentials")?
        .get("credentialsParameter")?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Whether a task definition references anything the agent must resolve at start.
pub fn has_secrets(td: &TaskDefinition) -> bool {
    td.container_definitions.iter().any(|c| {
        c.secrets.as_ref().is_some_and(|s| !s.is_empty())
            || c.log_configuration
                .as_ref()
                .and_then(|l| l.secret_options.as_ref())
                .is_some_and(|s| !s.is_empty())
            || credentials_parameter(&c.other).is_some()
    })
}

/// A task role's session credentials (`POST /agent/v1/task-credentials`), as the agent serves
/// them to the task's containers on the credentials endpoint. `Debug` shows the role only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRoleCredentials {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Milliseconds since the epoch.
    pub expiration: u64,
}

impl std::fmt::Debug for TaskRoleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRoleCredentials")
            .field("role_arn", &self.role_arn)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// The answer to an agent asking for a task role's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentialsResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<TaskRoleCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<SecretsFailure>,
}

/// The task role a task's containers get credentials for: the RunTask override, else the task
/// definition's.
pub fn task_role_arn<'a>(
    overrides: &'a crate::task::TaskOverride,
    td: &'a TaskDefinition,
) -> Option<&'a str> {
    overrides
        .task_role_arn
        .as_deref()
        .or(td.task_role_arn.as_deref())
        .filter(|r| !r.is_empty())
}
