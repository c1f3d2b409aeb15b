//! The AWS service APIs Gantry speaks, over one HTTP front.
//!
//! - [`front`]: the single `POST /` endpoint: SigV4 verification, awsJson1.1 dispatch on
//!   `X-Amz-Target` to [`JsonService`]s and awsQuery dispatch on the signing scope to
//!   [`QueryService`]s, AWS error envelopes and request ids.
//! - [`ecs`]: the ECS control-plane API (wire shapes in camelCase, one module per resource, one
//!   error mapping point).
//! - [`sts`]: STS over the query protocol.
//!
//! Must not depend on Docker.

pub mod agent_stream;
pub mod context;
pub mod ecs;
pub mod front;
pub mod locks;
pub mod sts;

pub use context::{Clock, IdGen, RandomIds, RequestContext, SystemClock};
pub use front::{Front, JsonService, QueryService};
