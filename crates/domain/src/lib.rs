//! ECS vocabulary as Rust types: ARNs and ids, clusters, task definitions, container instances,
//! attributes and tags, with the validation rules ECS applies to them.
//!
//! Pure: no I/O, no clock, no randomness (callers pass `now` and generated ids in). Must not depend
//! on tokio, HTTP, a database or Docker.

pub mod account_setting;
pub mod arn;
pub mod capability;
pub mod capacity;
pub mod cluster;
pub mod container_instance;
pub mod lb;
pub mod network;
pub mod secrets;
pub mod service;
pub mod tags;
pub mod task;
pub mod task_definition;
pub mod validation;

pub use arn::{Arn, ArnError};
pub use validation::ValidationError;

/// A point in time as milliseconds since the Unix epoch.
pub type EpochMillis = u64;
