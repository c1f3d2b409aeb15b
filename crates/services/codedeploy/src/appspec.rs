//! The AppSpec of an ECS deployment (YAML or JSON): the target service's task definition, the
//! container and port its load balancer reaches, and the optional platform version, network
//! configuration and capacity provider strategy. Hooks naming Lambda functions are refused:
//! Gantry runs no Lambda.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::CodeDeployError;

/// What an AppSpec asks of the replacement task set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    pub task_definition: String,
    pub container_name: String,
    pub container_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    /// ECS's `networkConfiguration` (camelCase), from `NetworkConfiguration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    /// ECS's `capacityProviderStrategy`, from `CapacityProviderStrategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Value>,
}

fn bad(msg: impl Into<String>) -> CodeDeployError {
    CodeDeployError::InvalidRevision(msg.into())
}

/// `{"A": 1}` → `{"a": 1}`, recursively (AppSpec keys are PascalCase, ECS's camelCase).
fn camel(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let key = c
                        .next()
                        .map(|f| f.to_lowercase().chain(c).collect())
                        .unwrap_or_default();
                    (key, camel(v))
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
        other => other.clone(),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses AppSpec `content` (YAML, of which JSON is a subset).
pub fn parse(content: &str) -> Result<AppSpec, CodeDeployError> {
    let doc: Value = serde_norway::from_str(content)
        .map_err(|e| bad(format!("The AppSpec file is not valid YAML or JSON: {e}")))?;
    if !doc.is_object() {
        return Err(bad(
            "The AppSpec file must be a map with version and Resources.",
        ));
    }
    if doc.get("version").is_none() {
        return Err(bad("The AppSpec file requires a version (0.0)."));
    }
    if let Some(hooks) = doc.get("Hooks")
        && hooks.as_array().is_some_and(|h| !h.is_empty())
    {
        let names: Vec<String> = hooks
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|m| m.keys().cloned())
            .collect();
        return Err(bad(format!(
            "The AppSpec hooks ({}) name Lambda functions, which Gantry does not run: remove the Hooks section.",
            names.join(", ")
        )));
    }
    let resources = doc
        .get("Resources")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("The AppSpec file requires a Resources list."))?;
    let services: Vec<&Value> = resources
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|m| m.values())
        .collect();
    let [target] = services.as_slice() else {
        return Err(bad(format!(
            "The AppSpec file for the ECS compute platform names exactly one resource (TargetService), not {}.",
            services.len()
        )));
    };
    match target.get("Type").and_then(Value::as_str) {
        Some("AWS::ECS::Service") => {}
        other => {
            return Err(bad(format!(
                "The AppSpec resource type {} is invalid: it must be AWS::ECS::Service.",
                other.unwrap_or("(none)")
            )));
        }
    }
    let props = target
        .get("Properties")
        .ok_or_else(|| bad("The AppSpec resource requires Properties."))?;
    let task_definition = text(props.get("TaskDefinition"))
        .ok_or_else(|| bad("The AppSpec resource requires Properties.TaskDefinition."))?;
    let lb = props
        .get("LoadBalancerInfo")
        .ok_or_else(|| bad("The AppSpec resource requires Properties.LoadBalancerInfo."))?;
    let container_name = text(lb.get("ContainerName"))
        .ok_or_else(|| bad("The AppSpec LoadBalancerInfo requires a ContainerName."))?;
    let port = lb
        .get("ContainerPort")
        .and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()))
        .ok_or_else(|| bad("The AppSpec LoadBalancerInfo requires a ContainerPort."))?;
    let container_port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
        bad(format!(
            "The AppSpec ContainerPort {port} is invalid: it must be between 1 and 65535."
        ))
    })?;
    let network_configuration = props.get("NetworkConfiguration").map(camel);
    if let Some(n) = &network_configuration
        && n.get("awsvpcConfiguration").is_none()
    {
        return Err(bad(
            "The AppSpec NetworkConfiguration requires an AwsvpcConfiguration.",
        ));
    }
    Ok(AppSpec {
        task_definition,
        container_name,
        container_port,
        platform_version: text(props.get("PlatformVersion")),
        network_configuration,
        capacity_provider_strategy: props.get("CapacityProviderStrategy").map(camel),
    })
}

impl AppSpec {
    /// The ECS `CreateTaskSet` members it sets.
    pub fn task_set_members(&self) -> Value {
        let mut v = json!({ "taskDefinition": self.task_definition });
        if let Some(p) = &self.platform_version {
            v["platformVersion"] = json!(p);
        }
        if let Some(n) = &self.network_configuration {
            v["networkConfiguration"] = n.clone();
        }
        if let Some(c) = &self.capacity_provider_strategy {
            v["capacityProviderStrategy"] = c.clone();
        }
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_appspecs_name_the_same_target() {
        let yaml = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"arn:aws:ecs:us-east-1:000000000000:task-definition/web:2\"\n        LoadBalancerInfo:\n          ContainerName: \"web\"\n          ContainerPort: 8080\n        NetworkConfiguration:\n          AwsvpcConfiguration:\n            Subnets: [\"subnet-1\"]\n            AssignPublicIp: DISABLED\n";
        let a = parse(yaml).unwrap();
        assert_eq!(a.container_name, "web");
        assert_eq!(a.container_port, 8080);
        assert!(a.task_definition.ends_with("web:2"));
        assert_eq!(
            a.network_configuration.unwrap(),
            json!({"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}})
        );
        let j = json!({"version": 0.0, "Resources": [{"TargetService": {"Type": "AWS::ECS::Service",
            "Properties": {"TaskDefinition": "web:2", "LoadBalancerInfo": {"ContainerName": "web", "ContainerPort": "8080"}}}}]});
        let b = parse(&j.to_string()).unwrap();
        assert_eq!(
            (b.container_port, b.task_definition.as_str()),
            (8080, "web:2")
        );
    }

    #[test]
    fn bad_appspecs_are_invalid_revisions() {
        for bad in [
            "version: 0.0\nResources: [",
            "just text",
            "version: 0.0\nResources: []",
            "version: 0.0\nResources:\n  - T:\n      Type: AWS::Lambda::Function\n      Properties: {}",
            "version: 0.0\nResources:\n  - T:\n      Type: AWS::ECS::Service\n      Properties:\n        LoadBalancerInfo: {ContainerName: web, ContainerPort: 80}",
            "version: 0.0\nResources:\n  - T:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: web:1\n        LoadBalancerInfo: {ContainerName: web, ContainerPort: 70000}",
            "version: 0.0\nResources:\n  - T:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: web:1\n        LoadBalancerInfo: {ContainerName: web, ContainerPort: 80}\nHooks:\n  - BeforeInstall: check",
        ] {
            assert_eq!(
                parse(bad).unwrap_err().aws_code(),
                "InvalidRevisionException",
                "{bad}"
            );
        }
    }
}
