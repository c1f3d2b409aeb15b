//! The ECS capability attributes Gantry's agent can offer, so that a task needing one it cannot
//! offer is told so by name rather than left pending.

/// Logging drivers the agent runs (`com.amazonaws.ecs.capability.logging-driver.<name>`).
pub const LOGGING_DRIVERS: &[&str] = &["json-file", "awslogs", "none"];

/// Capability attributes the agent offers (beyond the Docker API versions and logging drivers).
pub const AGENT_CAPABILITIES: &[&str] = &[
    "ecs.capability.container-health-check",
    "ecs.capability.container-ordering",
    "ecs.capability.task-cpu-mem-limit",
    "ecs.capability.docker-plugin.local",
    "ecs.capability.full-sync",
    "ecs.capability.secrets.asm.environment-variables",
    "ecs.capability.secrets.ssm.environment-variables",
    "ecs.capability.secrets.asm.bootstrap.log-driver",
    "ecs.capability.secrets.ssm.bootstrap.log-driver",
    "com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager",
    "ecs.capability.execution-role-awslogs",
    // Offered by agents whose host can enforce security groups.
    "ecs.capability.task-eni",
];

/// Whether `name` is an ECS capability attribute (as opposed to a custom or an instance
/// attribute such as `ecs.os-type`).
pub fn is_capability(name: &str) -> bool {
    name.starts_with("ecs.capability.") || name.starts_with("com.amazonaws.ecs.capability.")
}

/// Whether Gantry's agent can offer capability `name` at all.
pub fn offered_by_gantry(name: &str) -> bool {
    if let Some(d) = name.strip_prefix("com.amazonaws.ecs.capability.logging-driver.") {
        return LOGGING_DRIVERS.contains(&d);
    }
    name.starts_with("com.amazonaws.ecs.capability.docker-remote-api.")
        || AGENT_CAPABILITIES.contains(&name)
}

/// The `failures[].detail` for a task whose closest instance lacks the `missing` attributes.
pub fn missing_attributes_detail(missing: &[String]) -> String {
    let mut parts = Vec::new();
    for m in missing {
        if is_capability(m) && !offered_by_gantry(m) {
            parts.push(format!(
                "{m} (a capability Gantry does not support yet: no container instance can offer it)"
            ));
        } else {
            parts.push(m.clone());
        }
    }
    format!(
        "no container instance has the attribute{} required by the task: {}",
        if missing.len() == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_capabilities_are_named_as_such() {
        assert!(offered_by_gantry(
            "com.amazonaws.ecs.capability.logging-driver.awslogs"
        ));
        assert!(offered_by_gantry(
            "com.amazonaws.ecs.capability.docker-remote-api.1.19"
        ));
        assert!(!offered_by_gantry(
            "com.amazonaws.ecs.capability.logging-driver.splunk"
        ));
        let d = missing_attributes_detail(&[
            "com.amazonaws.ecs.capability.logging-driver.splunk".into(),
            "gpu".into(),
        ]);
        assert_eq!(
            d,
            "no container instance has the attributes required by the task: \
             com.amazonaws.ecs.capability.logging-driver.splunk (a capability Gantry does not \
             support yet: no container instance can offer it), gpu"
        );
    }
}
