//! One simulated container instance: register, hold the assignment stream open, turn its
//! payloads into state reports, reconnect with jittered back-off when the stream is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::fleet::InstanceSpec;
use crate::stream::{Ledger, StreamMessage};
use crate::{Shared, SimError};

/// The longest line the stream may send (a full state of many tasks with their definitions).
const MAX_LINE: usize = 64 << 20;
/// Silence after which a stream is given up when no heartbeat said otherwise.
const DEFAULT_SILENCE: Duration = Duration::from_secs(30);

/// Exponential back-off with full jitter, so thousands of instances that lost their streams
/// together do not come back together.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    first: Duration,
    cap: Duration,
}

impl Backoff {
    fn new(first: Duration, cap: Duration) -> Self {
        Self {
            next: first,
            first,
            cap,
        }
    }

    fn reset(&mut self) {
        self.next = self.first;
    }

    fn delay(&mut self, rng: &mut StdRng) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.cap);
        let ms = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(ms / 2 + rng.random_range(0..=ms / 2))
    }
}

fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs the instance until the task is aborted.
pub(crate) async fn run(sh: Arc<Shared>, spec: InstanceSpec) {
    let mut rng = StdRng::seed_from_u64(
        sh.cfg
            .seed
            .wrapping_add((spec.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    );
    let mut arn = register(&sh, &spec, None, &mut rng).await;
    sh.progress.registered.fetch_add(1, Ordering::Relaxed);
    let mut ledger = Ledger::default();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let opened = {
            let _slot = sh.connect_slots.acquire().await;
            let q = format!(
                "/agent/v1/connect?cluster={}&containerInstance={}",
                pct(sh.cfg.registration_cluster()),
                pct(&arn)
            );
            sh.streams.open_stream(&q).await
        };
        match opened {
            Ok(body) => {
                sh.progress.connected.fetch_add(1, Ordering::Relaxed);
                sh.progress.connects.fetch_add(1, Ordering::Relaxed);
                let lost = follow(&sh, body, &mut ledger, &mut backoff).await;
                sh.progress.connected.fetch_sub(1, Ordering::Relaxed);
                sh.progress.disconnects.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(container_instance = %arn, error = %lost, "stream lost, reconnecting");
            }
            Err(e) if e.is_client_error() => {
                // The control plane no longer knows the instance (e.g. its data was reset).
                tracing::warn!(container_instance = %arn, error = %e, "stream refused; registering again");
                arn = register(&sh, &spec, Some(&arn), &mut rng).await;
            }
            Err(e) => {
                sh.progress.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(container_instance = %arn, error = %e, "cannot open the stream");
            }
        }
        tokio::time::sleep(backoff.delay(&mut rng)).await;
    }
}

/// Registers until the control plane accepts; the container instance ARN.
async fn register(
    sh: &Shared,
    spec: &InstanceSpec,
    previous: Option<&str>,
    rng: &mut StdRng,
) -> String {
    let mut body = spec.register_request(sh.cfg.registration_cluster());
    if let Some(pool) = &sh.cfg.fargate_pool {
        // Platform capacity: the pool attribute, and the awsvpc capability Fargate tasks need.
        if let Some(attrs) = body["attributes"].as_array_mut() {
            attrs.push(json!({"name": "gantry.fargate-pool", "value": pool}));
            attrs.push(json!({"name": "ecs.capability.task-eni"}));
        }
    }
    if let Some(a) = previous {
        body["containerInstanceArn"] = json!(a);
    }
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let answer = {
            let _slot = sh.register_slots.acquire().await;
            sh.api.call("RegisterContainerInstance", &body).await
        };
        match answer {
            Ok(v) => match v["containerInstance"]["containerInstanceArn"].as_str() {
                Some(a) => {
                    tracing::debug!(container_instance = a, index = spec.index, "registered");
                    return a.to_owned();
                }
                None => {
                    tracing::warn!(answer = %v, "registration answer without containerInstanceArn")
                }
            },
            Err(e) if e.code() == Some("ClusterNotFoundException") => {
                if let Err(e) = sh
                    .api
                    .call("CreateCluster", &json!({"clusterName": sh.cfg.cluster}))
                    .await
                {
                    tracing::warn!(cluster = %sh.cfg.cluster, error = %e, "cannot create the cluster");
                }
            }
            Err(e) if previous.is_some() && e.is_client_error() => {
                body.as_object_mut()
                    .map(|o| o.remove("containerInstanceArn"));
            }
            Err(e) => {
                sh.progress
                    .register_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(index = spec.index, error = %e, "registration failed, retrying");
            }
        }
        tokio::time::sleep(backoff.delay(rng)).await;
    }
}

/// Reads the stream until it ends, fails or stays silent for three heartbeat intervals.
async fn follow(
    sh: &Shared,
    mut body: Incoming,
    ledger: &mut Ledger,
    backoff: &mut Backoff,
) -> SimError {
    let mut silence = DEFAULT_SILENCE;
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(silence, body.frame()).await {
            Err(_) => return SimError::Transport(format!("nothing heard for {silence:?}")),
            Ok(None) => return SimError::Transport("stream ended".into()),
            Ok(Some(Err(e))) => return SimError::Transport(format!("stream: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // Something arrived: the connection works, the next loss starts the back-off afresh.
        backoff.reset();
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(pos + 1);
            let line = &line[..pos];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<StreamMessage>(line) {
                Ok(StreamMessage::Heartbeat { interval_seconds }) => {
                    silence = Duration::from_secs(interval_seconds.max(1) * 3).max(DEFAULT_SILENCE);
                }
                Ok(StreamMessage::Payload { full_state, tasks }) => {
                    for r in ledger.on_payload(full_state, tasks) {
                        if sh.reports.send(r).await.is_err() {
                            return SimError::Transport("the reporter stopped".into());
                        }
                    }
                }
                Err(e) => {
                    let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                    tracing::warn!(error = %e, kind = %v["type"], "unreadable stream message, ignored");
                }
            }
        }
        if buf.len() > MAX_LINE {
            buf.advance(buf.len());
            return SimError::Transport("stream message too large".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<_> = (0..6).map(|_| b.delay(&mut rng)).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[5] >= Duration::from_millis(500) && d[5] <= Duration::from_secs(1));
        b.reset();
        assert!(b.delay(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            pct("arn:aws:ecs:r:1:container-instance/c/x"),
            "arn%3Aaws%3Aecs%3Ar%3A1%3Acontainer-instance%2Fc%2Fx"
        );
    }
}
