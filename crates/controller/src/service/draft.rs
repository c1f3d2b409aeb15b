//! The parts of a service record a reconcile may change, so that the (large) record is only
//! cloned when something did change.

use gantry_domain::service::{Deployment, DeploymentStatus, Service, ServiceStatus};

#[derive(Debug)]
pub(super) struct Draft<'a> {
    pub base: &'a Service,
    pub desired_count: i64,
    pub status: ServiceStatus,
    pub deployments: Vec<Deployment>,
    pub throttle_failures: i64,
    pub throttle_until: u64,
    /// New events, oldest first: (id, created_at, message).
    events: Vec<(String, u64, String)>,
}

impl<'a> Draft<'a> {
    pub fn new(base: &'a Service) -> Self {
        Self {
            base,
            desired_count: base.desired_count,
            status: base.status,
            deployments: base.deployments.clone(),
            throttle_failures: base.throttle_failures,
            throttle_until: base.throttle_until,
            events: Vec::new(),
        }
    }

    pub fn primary_index(&self) -> Option<usize> {
        self.deployments
            .iter()
            .position(|d| d.status == DeploymentStatus::Primary)
    }

    pub fn push_event(&mut self, id: String, now: u64, message: String) {
        self.events.push((id, now, message));
    }

    /// The newest event's message, including the ones added by this reconcile.
    pub fn newest_event(&self) -> Option<&str> {
        match self.events.last() {
            Some(e) => Some(e.2.as_str()),
            None => self.base.events.first().map(|e| e.message.as_str()),
        }
    }

    /// The updated record with its version bumped, or `None` when nothing changed.
    pub fn finish(self) -> Option<Service> {
        let b = self.base;
        if self.events.is_empty()
            && self.desired_count == b.desired_count
            && self.status == b.status
            && self.throttle_failures == b.throttle_failures
            && self.throttle_until == b.throttle_until
            && self.deployments == b.deployments
        {
            return None;
        }
        let mut next = b.clone();
        next.desired_count = self.desired_count;
        next.status = self.status;
        next.deployments = self.deployments;
        next.throttle_failures = self.throttle_failures;
        next.throttle_until = self.throttle_until;
        for (id, at, message) in self.events {
            next.push_event(id, at, message);
        }
        next.version += 1;
        Some(next)
    }
}
