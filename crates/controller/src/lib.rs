//! Gantry's reconcilers: pure functions `(desired, observed, now) -> Plan`.
//!
//! Must not depend on tokio, HTTP, the store or Docker: the async runner that snapshots the store,
//! calls a reconciler and commits its plan lives with the control plane.
