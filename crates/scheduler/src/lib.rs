//! Task placement for Gantry: feasibility, constraints (the Cluster Query Language) and strategies.
//!
//! Pure: no I/O, no clock, no global randomness. Must not depend on tokio, HTTP, a database or
//! Docker.
