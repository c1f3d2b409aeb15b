//! What every operation knows about its request, and the injected clock and id generator.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

/// The caller and the request, as established by the front.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// From the SigV4 credential scope.
    pub region: String,
    pub account_id: String,
    pub access_key_id: String,
    /// Milliseconds since the epoch when the request arrived.
    pub now: u64,
}

impl RequestContext {
    /// The caller's ARN (only the root identity exists for now).
    pub fn caller_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.account_id)
    }
}

/// Wall-clock time, injected so tests can fix it.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> SystemTime;

    fn now_millis(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Generates resource ids, injected so tests can make them predictable.
pub trait IdGen: Send + Sync + Debug {
    /// 32 lowercase hex characters (task and container instance ids).
    fn hex32(&self) -> String;
    /// `i-` followed by 17 hex characters (EC2-style instance ids).
    fn ec2_instance_id(&self) -> String {
        format!("i-{}", &self.hex32()[..17])
    }
}

/// Random ids from UUID v4.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdGen for RandomIds {
    fn hex32(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}
