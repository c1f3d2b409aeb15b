//! Service event and reason texts, worded as ECS words them.

/// `(service NAME) has reached a steady state.`
pub fn steady_state(service: &str) -> String {
    format!("(service {service}) has reached a steady state.")
}

/// `(service NAME) (deployment ID) deployment completed.`
pub fn deployment_completed(service: &str, deployment: &str) -> String {
    format!("(service {service}) (deployment {deployment}) deployment completed.")
}

/// `(service NAME) (deployment ID) deployment failed: tasks failed to start.`
pub fn deployment_failed(service: &str, deployment: &str) -> String {
    format!(
        "(service {service}) (deployment {deployment}) deployment failed: tasks failed to start."
    )
}

/// `(service NAME) (deployment FAILED) rolling back to deployment TARGET.`
pub fn rolling_back(service: &str, failed: &str, target: &str) -> String {
    format!("(service {service}) (deployment {failed}) rolling back to deployment {target}.")
}

/// The stuck rolling update (e.g. desired 3 with 100 % / 125 %).
pub fn stuck(service: &str) -> String {
    format!(
        "(service {service}) was unable to stop or start tasks during a deployment because of the \
         service deployment configuration. Update the minimumHealthyPercent or maximumPercent \
         value and try again."
    )
}

/// Launch throttling started.
pub fn throttled(service: &str) -> String {
    format!("(service {service}) is unable to consistently start tasks successfully.")
}

/// `rolloutStateReason` of a deployment in progress.
pub fn rollout_in_progress(deployment: &str) -> String {
    format!("ECS deployment {deployment} in progress.")
}

/// `rolloutStateReason` of a completed deployment.
pub fn rollout_completed(deployment: &str) -> String {
    format!("ECS deployment {deployment} completed.")
}

/// `rolloutStateReason` of a deployment failed by the circuit breaker.
pub const ROLLOUT_FAILED: &str = "ECS deployment circuit breaker: tasks failed to start.";

/// `rolloutStateReason` of the deployment created by a rollback.
pub fn rollout_rolling_back(target: &str) -> String {
    format!("ECS deployment circuit breaker: rolling back to deploymentId {target}.")
}

/// `stoppedReason` of a task stopped for scale-in or replaced by a deployment.
pub fn scaling_activity(primary: Option<&str>) -> String {
    match primary {
        Some(id) => format!("Scaling activity initiated by (deployment {id})"),
        None => "Scaling activity initiated by the service scheduler".to_owned(),
    }
}

/// `stoppedReason` of a task replaced after failing its health checks.
pub const UNHEALTHY: &str = "Task failed container health checks";

/// `stoppedReason` of a task moved off a DRAINING (or deregistered) instance.
pub fn instance_draining(instance: Option<&str>) -> String {
    match instance {
        Some(id) => format!("Container instance {id} is draining"),
        None => "Container instance is draining".to_owned(),
    }
}

/// `stoppedReason` of a DAEMON task on an instance that no longer qualifies.
pub const INELIGIBLE_INSTANCE: &str =
    "Container instance no longer meets the placement constraints of the daemon service";
