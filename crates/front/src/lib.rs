//! The HTTP front below every AWS service Gantry serves. It knows no service.
//!
//! - [`Front`]: the single `POST /` (and `GET /` for query-protocol calls) endpoint: request id,
//!   size-limited body, protocol (awsJson when `X-Amz-Target` is present, awsQuery otherwise),
//!   authentication (SigV4), the operation table check, dispatch to the service, and the AWS error
//!   envelope of the protocol.
//! - [`service`]: what a service is to the front ([`ServiceSpec`]: protocol, signing name, IAM
//!   prefix, every operation of its model), the traits services implement ([`JsonService`],
//!   [`QueryService`]) and the [`operations!`] macro that declares a service's operation table.
//! - [`context`]: the [`RequestContext`] every operation receives, and the injected [`Clock`] and
//!   [`IdGen`].
//! - [`listener`]: serving a router on a TCP listener with a request-head timeout, an idle
//!   timeout, a connection cap that slow clients cannot exhaust, and a bounded drain.
//!
//! Service crates (`crates/services/*`) depend on this crate; it depends on no service, and on
//! nothing but the wire layer (`gantry-aws-proto`). Must not depend on Docker or a store.

pub mod auth;
pub mod context;
pub mod front;
mod head_scan;
pub mod listener;
pub mod metrics;
pub mod service;

pub use auth::{AuthFailure, Authenticator, Authorizer, Denied, OperationInput};
pub use context::{Clock, IdGen, RandomIds, RequestContext, SystemClock};
pub use front::{BODY_LIMIT, Front};
pub use metrics::ApiMetrics;
pub use service::{JsonService, Protocol, QueryService, ServiceSpec};
