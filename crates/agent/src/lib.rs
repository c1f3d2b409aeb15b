//! Gantry agent: registers a host with the control plane and runs its tasks on Docker.
//!
//! Registration (`RegisterContainerInstance`), the assignment stream (`/agent/v1/connect`, one
//! JSON `AgentMessage` per line), one actor per task driving known → desired status, reports
//! through `SubmitTaskStateChange` / `SubmitContainerStateChange`, a local checkpoint for
//! re-adoption after a restart, `awslogs` shipping into the Logs API, and the task metadata
//! endpoint v4. Must not depend on the store (DB).

mod actor;
mod agent;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod docker;
pub mod logs;
pub mod metadata;
pub mod runtime;
mod shared;
pub mod spec;

pub use agent::{AgentError, run, run_with_runtime};
pub use config::{AgentConfig, ImagePullBehavior};
pub use docker::DockerRuntime;
pub use runtime::ContainerRuntime;
