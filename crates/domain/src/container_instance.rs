//! Container instances (hosts registered by an agent), their resources and attributes.

use serde::{Deserialize, Serialize};

use crate::EpochMillis;
use crate::tags::Tag;
use crate::validation::ValidationError;

/// Lifecycle status of a container instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerInstanceStatus {
    Active,
    Draining,
    Registering,
    Deregistering,
    RegistrationFailed,
    Inactive,
}

impl ContainerInstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Registering => "REGISTERING",
            Self::Deregistering => "DEREGISTERING",
            Self::RegistrationFailed => "REGISTRATION_FAILED",
            Self::Inactive => "INACTIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACTIVE" => Self::Active,
            "DRAINING" => Self::Draining,
            "REGISTERING" => Self::Registering,
            "DEREGISTERING" => Self::Deregistering,
            "REGISTRATION_FAILED" => Self::RegistrationFailed,
            "INACTIVE" => Self::Inactive,
            _ => return None,
        })
    }
}

/// A resource an instance offers (`CPU`, `MEMORY`, `PORTS`, `PORTS_UDP`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_value: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integer_value: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_set_value: Option<Vec<String>>,
}

impl Resource {
    pub fn integer(name: &str, value: i64) -> Self {
        Self {
            name: name.into(),
            kind: "INTEGER".into(),
            double_value: Some(0.0),
            long_value: Some(0),
            integer_value: Some(value),
            string_set_value: None,
        }
    }

    pub fn string_set(name: &str, values: Vec<String>) -> Self {
        Self {
            name: name.into(),
            kind: "STRINGSET".into(),
            double_value: Some(0.0),
            long_value: Some(0),
            integer_value: Some(0),
            string_set_value: Some(values),
        }
    }
}

/// Checks submitted resources: known types, a value of that type, non-negative numbers.
pub fn validate_resources(resources: &[Resource]) -> Result<(), ValidationError> {
    for r in resources {
        if r.name.is_empty() {
            return Err(ValidationError::invalid("Resource name must not be empty."));
        }
        let ok = match r.kind.as_str() {
            "INTEGER" => r.integer_value.is_some_and(|v| v >= 0),
            "LONG" => r.long_value.is_some_and(|v| v >= 0),
            "DOUBLE" => r.double_value.is_some_and(|v| v >= 0.0),
            "STRINGSET" => true,
            _ => {
                return Err(ValidationError::invalid(format!(
                    "Resource '{}' has invalid type '{}'. Valid types: INTEGER, LONG, DOUBLE, STRINGSET.",
                    r.name, r.kind
                )));
            }
        };
        if !ok {
            return Err(ValidationError::invalid(format!(
                "Resource '{}' of type {} needs a non-negative value of that type.",
                r.name, r.kind
            )));
        }
    }
    Ok(())
}

/// An attribute of a container instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Most custom attributes per resource and per PutAttributes call.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 10;

/// Whether an attribute name is one ECS sets itself.
pub fn is_builtin_attribute(name: &str) -> bool {
    name.starts_with("ecs.") || name.starts_with("com.amazonaws.ecs.")
}

/// Checks an attribute name (1-128 of letters, digits, `-_./\`) and value (up to 128 of letters,
/// digits, `-_.@/:` and spaces).
pub fn validate_attribute(a: &Attribute) -> Result<(), ValidationError> {
    let name_ok = !a.name.is_empty()
        && a.name.len() <= 128
        && a.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./\\".contains(c));
    if !name_ok {
        return Err(ValidationError::invalid(format!(
            "Attribute name '{}' is invalid: up to 128 letters (uppercase and lowercase), numbers, hyphens, underscores, periods, forward slashes and back slashes are allowed.",
            a.name
        )));
    }
    if let Some(v) = &a.value {
        let ok = v.len() <= 128
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@/: ".contains(c));
        if !ok {
            return Err(ValidationError::invalid(format!(
                "Attribute value '{v}' of attribute '{}' is invalid: up to 128 letters (uppercase and lowercase), numbers, hyphens, underscores, periods, at signs (@), forward slashes, colons, and spaces are allowed.",
                a.name
            )));
        }
    }
    Ok(())
}

/// Sets attributes by name (replacing values), keeping order of first appearance.
pub fn put_attributes(current: &mut Vec<Attribute>, new: &[Attribute]) {
    for a in new {
        match current.iter_mut().find(|c| c.name == a.name) {
            Some(c) => c.value = a.value.clone(),
            None => current.push(a.clone()),
        }
    }
}

/// How many awsvpc tasks an instance can hold without ENI trunking: its type's network
/// interfaces less the primary one, as ECS counts them. For a type outside the table (Gantry's
/// own hosts, `gantry.host`), 8 per vCPU (`cpu_units` / 1024), at least 2.
pub fn task_eni_limit(instance_type: Option<&str>, cpu_units: i64) -> i64 {
    // Maximum network interfaces of common instance types (EC2 documentation).
    const TABLE: &[(&str, i64)] = &[
        ("t3.nano", 2),
        ("t3.micro", 2),
        ("t3.small", 3),
        ("t3.medium", 3),
        ("t3.large", 3),
        ("t3.xlarge", 4),
        ("t3.2xlarge", 4),
        ("m5.large", 3),
        ("m5.xlarge", 4),
        ("m5.2xlarge", 4),
        ("m5.4xlarge", 8),
        ("m5.8xlarge", 8),
        ("m5.12xlarge", 8),
        ("m5.16xlarge", 15),
        ("m5.24xlarge", 15),
        ("c5.large", 3),
        ("c5.xlarge", 4),
        ("c5.2xlarge", 4),
        ("c5.4xlarge", 8),
        ("c5.9xlarge", 8),
        ("c5.18xlarge", 15),
        ("r5.large", 3),
        ("r5.xlarge", 4),
        ("r5.2xlarge", 4),
        ("r5.4xlarge", 8),
        ("r5.12xlarge", 8),
        ("r5.24xlarge", 15),
    ];
    match instance_type.and_then(|t| TABLE.iter().find(|(n, _)| *n == t)) {
        Some((_, enis)) => enis - 1,
        None => (cpu_units / 1024 * 8).max(2),
    }
}

/// Agent and Docker versions reported at registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
}

/// A registered host, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstance {
    /// The id part of the ARN (32 hex characters).
    pub id: String,
    pub cluster: String,
    pub ec2_instance_id: String,
    pub status: ContainerInstanceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub agent_connected: bool,
    /// When the agent was last seen leaving (set while disconnected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<EpochMillis>,
    /// Bumped on every change, as ECS's `version`.
    pub version: u64,
    pub registered_resources: Vec<Resource>,
    /// What running and pending tasks hold: CPU units, MiB, host ports (tcp), host ports (udp).
    #[serde(default)]
    pub reserved_cpu: i64,
    #[serde(default)]
    pub reserved_memory: i64,
    #[serde(default)]
    pub reserved_ports: Vec<String>,
    #[serde(default)]
    pub reserved_udp_ports: Vec<String>,
    /// Network interfaces awsvpc tasks hold.
    #[serde(default)]
    pub reserved_enis: i64,
    #[serde(default)]
    pub running_tasks_count: i64,
    #[serde(default)]
    pub pending_tasks_count: i64,
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub version_info: VersionInfo,
    pub registered_at: EpochMillis,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
}

impl ContainerInstance {
    /// Registered resources minus what tasks hold.
    pub fn remaining_resources(&self) -> Vec<Resource> {
        self.registered_resources
            .iter()
            .map(|r| {
                let mut r = r.clone();
                match r.name.as_str() {
                    "CPU" => {
                        r.integer_value = r.integer_value.map(|v| v - self.reserved_cpu);
                    }
                    "MEMORY" => {
                        r.integer_value = r.integer_value.map(|v| v - self.reserved_memory);
                    }
                    "ENI" => {
                        r.integer_value = r.integer_value.map(|v| v - self.reserved_enis);
                    }
                    "PORTS" => {
                        let mut set = r.string_set_value.take().unwrap_or_default();
                        set.extend(self.reserved_ports.iter().cloned());
                        r.string_set_value = Some(set);
                    }
                    "PORTS_UDP" => {
                        let mut set = r.string_set_value.take().unwrap_or_default();
                        set.extend(self.reserved_udp_ports.iter().cloned());
                        r.string_set_value = Some(set);
                    }
                    _ => {}
                }
                r
            })
            .collect()
    }

    /// The value of an attribute, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.as_deref())
    }

    /// Number of attributes that are not ECS built-ins.
    pub fn custom_attribute_count(&self) -> usize {
        self.attributes
            .iter()
            .filter(|a| !is_builtin_attribute(&a.name))
            .count()
    }
}

/// Adds the attributes ECS adds itself at registration, unless the agent submitted them.
pub fn add_builtin_attributes(attrs: &mut Vec<Attribute>, region: &str) {
    let defaults = [
        ("ecs.os-type", "linux".to_owned()),
        ("ecs.os-family", "LINUX".to_owned()),
        ("ecs.cpu-architecture", "x86_64".to_owned()),
        ("ecs.availability-zone", format!("{region}a")),
        ("ecs.instance-type", "gantry.host".to_owned()),
    ];
    for (name, value) in defaults {
        if !attrs.iter().any(|a| a.name == name) {
            attrs.push(Attribute {
                name: name.to_owned(),
                value: Some(value),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_do_not_override_submitted_values() {
        let mut attrs = vec![Attribute {
            name: "ecs.availability-zone".into(),
            value: Some("z9".into()),
        }];
        add_builtin_attributes(&mut attrs, "eu-west-1");
        assert_eq!(
            attrs
                .iter()
                .filter(|a| a.name == "ecs.availability-zone")
                .count(),
            1
        );
        assert_eq!(attrs[0].value.as_deref(), Some("z9"));
        assert!(attrs.iter().any(|a| a.name == "ecs.os-type"));
    }

    #[test]
    fn attribute_names_and_values_are_checked() {
        assert!(
            validate_attribute(&Attribute {
                name: "stack".into(),
                value: Some("prod 1:a@b/c".into())
            })
            .is_ok()
        );
        assert!(
            validate_attribute(&Attribute {
                name: "bad name".into(),
                value: None
            })
            .is_err()
        );
        assert!(
            validate_attribute(&Attribute {
                name: "x".into(),
                value: Some("semi;colon".into())
            })
            .is_err()
        );
    }

    #[test]
    fn remaining_subtracts_reservations() {
        let ci = ContainerInstance {
            id: "a".into(),
            cluster: "c".into(),
            ec2_instance_id: "i-1".into(),
            status: ContainerInstanceStatus::Active,
            status_reason: None,
            agent_connected: true,
            disconnected_at: None,
            version: 1,
            registered_resources: vec![
                Resource::integer("CPU", 2048),
                Resource::integer("MEMORY", 1000),
                Resource::string_set("PORTS", vec!["22".into()]),
            ],
            reserved_cpu: 512,
            reserved_memory: 100,
            reserved_ports: vec!["8080".into()],
            reserved_udp_ports: vec![],
            reserved_enis: 0,
            running_tasks_count: 0,
            pending_tasks_count: 0,
            attributes: vec![],
            version_info: VersionInfo::default(),
            registered_at: 0,
            tags: vec![],
            capacity_provider_name: None,
        };
        let rem = ci.remaining_resources();
        assert_eq!(rem[0].integer_value, Some(1536));
        assert_eq!(rem[1].integer_value, Some(900));
        assert_eq!(
            rem[2].string_set_value.as_ref().unwrap(),
            &vec!["22".to_string(), "8080".to_string()]
        );
    }
}
