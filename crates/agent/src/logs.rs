//! `awslogs` shipping: a container logs with `json-file`; the agent follows its stdout/stderr
//! through the runtime's logs API and ships the lines to the control plane's CloudWatch Logs API
//! (`PutLogEvents`), batched, retried while the server is away, with the shipped position
//! checkpointed per container so a restart neither loses nor repeats lines (a batch acknowledged
//! by the server just before a `kill -9`, before its position was written, is the one exception:
//! it is sent again).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gantry_domain::task_definition::ContainerDefinition;
use serde_json::{Value, json};

use crate::checkpoint::{Checkpoint, LogPosition};
use crate::client::{ApiClient, CallError, Service};
use crate::runtime::{ContainerRuntime, LogLine};
use crate::shared::Backoff;

/// Most events per `PutLogEvents`.
const MAX_BATCH_EVENTS: usize = 1000;
/// Most bytes per `PutLogEvents` (the API allows 1 MiB, counting 26 bytes per event).
const MAX_BATCH_BYTES: usize = 800 * 1024;
/// How long a line may wait in the buffer.
const FLUSH_AFTER: Duration = Duration::from_millis(500);

/// Where an `awslogs` container's lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLogsTarget {
    pub group: String,
    pub stream: String,
    pub create_group: bool,
}

/// The target of `def` when it logs with `awslogs`: stream `<prefix>/<container>/<task-id>`, or
/// the Docker id when there is no prefix (as ECS names them).
pub fn awslogs_target(
    def: &ContainerDefinition,
    task_id: &str,
    docker_id: &str,
) -> Option<AwsLogsTarget> {
    let lc = def.log_configuration.as_ref()?;
    if lc.log_driver != "awslogs" {
        return None;
    }
    let opts = lc.options.clone().unwrap_or_default();
    let group = opts.get("awslogs-group")?.clone();
    let stream = match opts.get("awslogs-stream-prefix").filter(|p| !p.is_empty()) {
        Some(prefix) => format!("{prefix}/{}/{task_id}", def.name),
        None => docker_id.to_owned(),
    };
    Some(AwsLogsTarget {
        group,
        stream,
        create_group: opts.get("awslogs-create-group").map(String::as_str) == Some("true"),
    })
}

/// Creates the stream (and the group when allowed). Existing ones are fine.
async fn ensure_stream(api: &ApiClient, t: &AwsLogsTarget) -> Result<(), CallError> {
    let body = json!({"logGroupName": t.group, "logStreamName": t.stream});
    match api.call(Service::Logs, "CreateLogStream", &body).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
        Err(e) if e.code() == Some("ResourceNotFoundException") && t.create_group => {
            match api
                .call(
                    Service::Logs,
                    "CreateLogGroup",
                    &json!({"logGroupName": t.group}),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceAlreadyExistsException") => {}
                Err(e) => return Err(e),
            }
            match api.call(Service::Logs, "CreateLogStream", &body).await {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Delivers one batch, retrying until the server takes it. Only a batch the server refuses for
/// its content (other than a missing stream or an unknown operation) is dropped.
async fn put(api: &ApiClient, t: &AwsLogsTarget, events: &[Value], stream_ready: &mut bool) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut attempts = 0u32;
    loop {
        if !*stream_ready {
            match ensure_stream(api, t).await {
                Ok(()) => *stream_ready = true,
                Err(e) => {
                    attempts += 1;
                    if attempts % 20 == 1 && e.code() != Some("UnknownOperationException") {
                        tracing::warn!(group = %t.group, stream = %t.stream, error = %e, "cannot create log stream, retrying");
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            }
        }
        let body = json!({"logGroupName": t.group, "logStreamName": t.stream, "logEvents": events});
        match api.call(Service::Logs, "PutLogEvents", &body).await {
            Ok(_) => return,
            Err(e) if e.code() == Some("ResourceNotFoundException") => *stream_ready = false,
            Err(e) if e.code() == Some("UnknownOperationException") || !e.is_client_error() => {
                attempts += 1;
                if attempts % 20 == 1 && e.code() != Some("UnknownOperationException") {
                    tracing::warn!(group = %t.group, stream = %t.stream, error = %e, "log events not delivered, retrying");
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                tracing::warn!(group = %t.group, stream = %t.stream, error = %e, events = events.len(), "log events rejected, dropped");
                return;
            }
        }
    }
}

struct Batch {
    events: Vec<Value>,
    bytes: usize,
    last: Option<LogPosition>,
}

impl Batch {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            bytes: 0,
            last: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    fn push(&mut self, line: &LogLine, pos: LogPosition) {
        if !line.message.is_empty() {
            let ms = i64::try_from(line.timestamp_nanos / 1_000_000).unwrap_or(0);
            self.bytes += line.message.len() + 26;
            self.events
                .push(json!({"timestamp": ms, "message": line.message}));
        }
        self.last = Some(pos);
    }

    fn full(&self) -> bool {
        self.events.len() >= MAX_BATCH_EVENTS || self.bytes >= MAX_BATCH_BYTES
    }
}

/// Ships container `container_id`'s output to `target` until the container has stopped and
/// everything it wrote was delivered.
pub async fn ship(
    api: ApiClient,
    runtime: Arc<dyn ContainerRuntime>,
    checkpoint: Checkpoint,
    container_id: String,
    target: AwsLogsTarget,
) {
    let mut read = checkpoint.log_position(&container_id).unwrap_or_default();
    // Like Docker's awslogs driver, the stream exists from the container's start; if the server
    // is away, the first batch creates it.
    let mut stream_ready = ensure_stream(&api, &target).await.is_ok();
    let mut batch = Batch::new();
    let flush = |batch: Batch, stream_ready: &mut bool| {
        let api = api.clone();
        let checkpoint = checkpoint.clone();
        let container_id = container_id.clone();
        let target = target.clone();
        let mut ready = *stream_ready;
        async move {
            if !batch.events.is_empty() {
                put(&api, &target, &batch.events, &mut ready).await;
            }
            if let Some(pos) = batch.last
                && let Err(e) = checkpoint.set_log_position(&container_id, pos)
            {
                tracing::warn!(error = %e, "cannot checkpoint log position");
            }
            ready
        }
    };
    loop {
        let resume = read;
        let mut seen_at_resume = 0u64;
        let since = i64::try_from(resume.timestamp_nanos / 1_000_000_000).unwrap_or(0);
        let mut lines = runtime.logs(&container_id, since);
        let mut failed = false;
        let mut flush_at: Option<tokio::time::Instant> = None;
        loop {
            let item = tokio::select! {
                item = lines.next() => item,
                () = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)), if flush_at.is_some() => {
                    flush_at = None;
                    let b = std::mem::replace(&mut batch, Batch::new());
                    stream_ready = flush(b, &mut stream_ready).await;
                    continue;
                }
            };
            match item {
                Some(Ok(line)) => {
                    if line.timestamp_nanos < resume.timestamp_nanos {
                        continue;
                    }
                    if line.timestamp_nanos == resume.timestamp_nanos {
                        seen_at_resume += 1;
                        if seen_at_resume <= resume.lines_at_timestamp {
                            continue;
                        }
                    }
                    if line.timestamp_nanos == read.timestamp_nanos {
                        read.lines_at_timestamp += 1;
                    } else {
                        read = LogPosition {
                            timestamp_nanos: line.timestamp_nanos,
                            lines_at_timestamp: 1,
                        };
                    }
                    if batch.is_empty() {
                        flush_at = Some(tokio::time::Instant::now() + FLUSH_AFTER);
                    }
                    batch.push(&line, read);
                    if batch.full() {
                        flush_at = None;
                        let b = std::mem::replace(&mut batch, Batch::new());
                        stream_ready = flush(b, &mut stream_ready).await;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(container = %container_id, error = %e, "log stream interrupted");
                    failed = true;
                    break;
                }
                None => break,
            }
        }
        if !batch.is_empty() {
            let b = std::mem::replace(&mut batch, Batch::new());
            stream_ready = flush(b, &mut stream_ready).await;
        }
        match runtime.inspect(&container_id).await {
            Ok(Some(s)) if s.running => {}
            Ok(_) => return,
            Err(_) => {}
        }
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_names_follow_ecs() {
        let def: ContainerDefinition = serde_json::from_value(json!({"name": "web", "image": "i",
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "g", "awslogs-stream-prefix": "p", "awslogs-create-group": "true"}}}))
        .expect("def");
        let t = awslogs_target(&def, "abc", "d1").expect("target");
        assert_eq!(t.stream, "p/web/abc");
        assert_eq!(t.group, "g");
        assert!(t.create_group);
        let def: ContainerDefinition = serde_json::from_value(json!({"name": "web", "image": "i",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}}))
        .expect("def");
        assert_eq!(
            awslogs_target(&def, "abc", "d1").expect("target").stream,
            "d1"
        );
        let def: ContainerDefinition =
            serde_json::from_value(json!({"name": "web", "image": "i"})).expect("def");
        assert!(awslogs_target(&def, "abc", "d1").is_none());
    }
}
