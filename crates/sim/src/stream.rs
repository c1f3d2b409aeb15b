//! The assignment stream as a simulated instance reads it: only the fields it needs from the
//! newline-delimited JSON the control plane sends, and what to report back.

use std::collections::HashMap;

use serde::Deserialize;

/// One line of the stream.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", content = "message")]
pub(crate) enum StreamMessage {
    #[serde(rename = "PayloadMessage", rename_all = "camelCase")]
    Payload {
        #[serde(default)]
        full_state: bool,
        #[serde(default)]
        tasks: Vec<StreamTask>,
    },
    #[serde(rename = "HeartbeatMessage", rename_all = "camelCase")]
    Heartbeat {
        #[serde(default)]
        interval_seconds: u64,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StreamTask {
    pub task_arn: String,
    pub desired_status: String,
    #[serde(default)]
    pub last_status: String,
    #[serde(default)]
    pub task: TaskBody,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TaskBody {
    #[serde(default)]
    pub containers: Vec<NamedContainer>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NamedContainer {
    pub name: String,
}

/// The status a simulated instance reports for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reported {
    Running,
    Stopped,
}

impl Reported {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
        }
    }
}

/// A state change to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub task_arn: String,
    pub status: Reported,
    pub containers: Vec<String>,
}

/// What one instance has reported, so repeated payloads (full state after a reconnect, a
/// resync) do not report the same change twice.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    reported: HashMap<String, Reported>,
}

impl Ledger {
    /// The reports a payload calls for: desired RUNNING and not yet RUNNING → RUNNING at once;
    /// desired STOPPED and not yet STOPPED → STOPPED. A full state also forgets tasks it does
    /// not list (the control plane no longer assigns them here).
    pub fn on_payload(&mut self, full_state: bool, tasks: Vec<StreamTask>) -> Vec<Report> {
        if full_state {
            self.reported
                .retain(|arn, _| tasks.iter().any(|t| &t.task_arn == arn));
        }
        let mut out = Vec::new();
        for t in tasks {
            let want = match t.desired_status.as_str() {
                "RUNNING" => Reported::Running,
                "STOPPED" => Reported::Stopped,
                _ => continue,
            };
            let already = match want {
                Reported::Running => matches!(
                    t.last_status.as_str(),
                    "RUNNING" | "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED"
                ),
                Reported::Stopped => t.last_status == "STOPPED",
            };
            if already || self.reported.get(&t.task_arn) == Some(&want) {
                continue;
            }
            if want == Reported::Stopped {
                // Nothing more will be asked of this task: keep the ledger small.
                self.reported.remove(&t.task_arn);
            } else {
                self.reported.insert(t.task_arn.clone(), want);
            }
            out.push(Report {
                task_arn: t.task_arn,
                status: want,
                containers: t.task.containers.into_iter().map(|c| c.name).collect(),
            });
        }
        out
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.reported.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> StreamMessage {
        serde_json::from_str(line).expect("valid stream line")
    }

    fn payload(line: &str) -> (bool, Vec<StreamTask>) {
        match parse(line) {
            StreamMessage::Payload { full_state, tasks } => (full_state, tasks),
            StreamMessage::Heartbeat { .. } => panic!("not a payload"),
        }
    }

    const RUN_A: &str = r#"{"type":"PayloadMessage","message":{"messageId":"m1","fullState":false,"tasks":[
        {"taskArn":"arn:a","desiredStatus":"RUNNING","lastStatus":"PROVISIONING","clusterArn":"c",
         "task":{"id":"a","containers":[{"name":"web","image":"x"},{"name":"sidecar"}]},
         "taskDefinition":{"family":"f"}}]}}"#;

    #[test]
    fn parses_heartbeats_and_payloads() {
        assert!(matches!(
            parse(r#"{"type":"HeartbeatMessage","message":{"messageId":"h","intervalSeconds":5}}"#),
            StreamMessage::Heartbeat {
                interval_seconds: 5
            }
        ));
        let (full, tasks) = payload(RUN_A);
        assert!(!full);
        assert_eq!(tasks[0].task.containers.len(), 2);
    }

    #[test]
    fn reports_running_once_then_stopped() {
        let mut l = Ledger::default();
        let (f, t) = payload(RUN_A);
        let r = l.on_payload(f, t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Reported::Running);
        assert_eq!(r[0].containers, ["web", "sidecar"]);
        let (f, t) = payload(RUN_A);
        assert!(l.on_payload(f, t).is_empty(), "same change twice");
        let stop = RUN_A.replace(
            r#""desiredStatus":"RUNNING""#,
            r#""desiredStatus":"STOPPED""#,
        );
        let (f, t) = payload(&stop);
        let r = l.on_payload(f, t);
        assert_eq!(r[0].status, Reported::Stopped);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn full_state_forgets_unlisted_tasks_and_skips_running_ones() {
        let mut l = Ledger::default();
        let (f, t) = payload(RUN_A);
        l.on_payload(f, t);
        let full = r#"{"type":"PayloadMessage","message":{"messageId":"m2","fullState":true,"tasks":[
            {"taskArn":"arn:b","desiredStatus":"RUNNING","lastStatus":"RUNNING","task":{"containers":[]}}]}}"#;
        let (f, t) = payload(full);
        assert!(l.on_payload(f, t).is_empty());
        assert_eq!(l.len(), 0);
    }
}
