//! What every operation knows about its request, and the injected clock and id generator.

use std::fmt::Debug;
use std::sync::Arc;
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
    /// The authenticated principal: an IAM user, a role session, ...; `None` for the account
    /// root (the root key pair), which every check allows.
    pub caller: Option<Arc<gantry_iam_policy::Principal>>,
}

impl RequestContext {
    /// The caller's ARN: the user, the role session (`assumed-role/...`), or the account root.
    pub fn caller_arn(&self) -> String {
        match &self.caller {
            Some(p) => p.arn.clone(),
            None => format!("arn:aws:iam::{}:root", self.account_id),
        }
    }

    /// The caller as the policy evaluator sees it (the root principal when `caller` is `None`).
    pub fn principal(&self) -> gantry_iam_policy::Principal {
        match &self.caller {
            Some(p) => (**p).clone(),
            None => gantry_iam_policy::Principal::root(&self.account_id),
        }
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
