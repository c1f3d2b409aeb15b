//! What CodeDeploy needs of ECS and ELBv2, as a trait the composition root implements: ECS's
//! task-set operations as CodeDeploy calls them (on services with the CODE_DEPLOY deployment
//! controller), target groups by name, and the forward weights of listeners.

use async_trait::async_trait;
use serde_json::Value;

/// An error of the platform: ECS's or ELBv2's error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PlatformError {
    pub code: String,
    pub message: String,
}

impl PlatformError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// ECS and ELBv2 as CodeDeploy uses them.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Calls an ECS operation (`DescribeServices`, `CreateTaskSet`, `UpdateTaskSet`,
    /// `DeleteTaskSet`, `DescribeTaskSets`, `UpdateServicePrimaryTaskSet`) with its awsJson input.
    async fn ecs(
        &self,
        region: &str,
        operation: &str,
        input: Value,
    ) -> Result<Value, PlatformError>;
    /// The ARN of the target group named `name`, if it exists.
    async fn target_group_arn(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<String>, PlatformError>;
    /// A listener's load balancer and forward weights (target group ARN, weight); `None` when
    /// the listener does not exist.
    async fn listener_forward(
        &self,
        region: &str,
        listener_arn: &str,
    ) -> Result<Option<(String, Vec<(String, u32)>)>, PlatformError>;
    /// Rewrites the weights of a listener's forward action.
    async fn set_listener_weights(
        &self,
        region: &str,
        listener_arn: &str,
        weights: &[(String, u32)],
    ) -> Result<(), PlatformError>;
}
