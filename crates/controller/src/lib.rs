//! Gantry's reconcilers: pure functions `(desired, observed, now) -> Plan`.
//!
//! - [`service::reconcile`]: one ECS service (REPLICA or DAEMON): desired count, rolling
//!   deployments within minimumHealthyPercent/maximumPercent, the deployment circuit breaker
//!   with rollback, the launch throttle, instance draining, DeleteService.
//! - [`managed_scaling::assess`]: a host pool's `CapacityProviderReservation` and the instance
//!   count managed scaling moves it to, never removing an instance that runs tasks.
//! - [`sim`]: a deterministic in-memory runner used by tests and benchmarks.
//!
//! Must not depend on tokio, HTTP, the store or Docker, and reads no clock and no randomness:
//! time and ids are parameters. The async runner that snapshots the store, calls a reconciler
//! and commits its plan with compare-and-swap lives with the control plane.

pub mod managed_scaling;
pub mod service;
pub mod sim;
