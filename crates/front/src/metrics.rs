//! Prometheus metrics of the API front: requests per service, operation and HTTP status, and
//! their latency, registered into a `prometheus-client` registry the composition root serves.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which operation a response answered, attached to it by the front for the metrics.
#[derive(Debug, Clone)]
pub struct OperationLabel {
    /// The service: its `X-Amz-Target` prefix or signing name.
    pub service: String,
    pub operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    operation: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    service: String,
    operation: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The front's request metrics.
#[derive(Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl ApiMetrics {
    /// Adds these metrics to `registry` (prefix it with `gantry` with a sub-registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "api_requests",
            "API requests answered, by service, operation and HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Time from a request's arrival to its answer, by service and operation",
            self.latency.clone(),
        );
    }

    /// Counts one answered request. Requests that never reached an operation (bad signature,
    /// unknown target, ...) count under operation `-`.
    pub fn observe(&self, label: Option<&OperationLabel>, status: u16, elapsed: Duration) {
        let (service, operation) = match label {
            Some(l) => (l.service.clone(), l.operation.clone()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        self.requests
            .get_or_create(&RequestLabels {
                service: service.clone(),
                operation: operation.clone(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabels { service, operation })
            .observe(elapsed.as_secs_f64());
    }
}
