//! The agent's local checkpoint in its data dir: the container instance ARN (so a restart keeps
//! its identity), the tasks it runs with their containers, STOPPED reports not yet acknowledged,
//! and the position up to which each container's log has been shipped.
//!
//! One JSON file, rewritten atomically (temp file, fsync, rename) on every change. The Docker
//! labels stay the source of truth for which containers exist; the checkpoint adds what labels
//! cannot carry.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Failures reading or writing the checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The data dir or the file could not be read or written.
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exists but is not a checkpoint.
    #[error("checkpoint {path}: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What the checkpoint remembers about one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// Container name → Docker id.
    #[serde(default)]
    pub containers: BTreeMap<String, String>,
    /// Task-scoped Docker volumes to remove with the task.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// The STOPPED `SubmitTaskStateChange` body, kept until the server acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_report: Option<Value>,
    /// The id of the task's role credentials on the credentials endpoint (the containers'
    /// environment names it), so that a restarted agent serves them under the same id. The
    /// credentials themselves are never written here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_id: Option<String>,
    /// Fargate tasks: Docker's `CgroupParent` of the task's cgroup, written before the cgroup
    /// is made, so that a restarted agent removes it with the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
}

/// How far a container's log has been shipped: the newest shipped line's timestamp and how
/// many lines carried exactly that timestamp (so equal timestamps are neither lost nor repeated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPosition {
    pub timestamp_nanos: i128,
    pub lines_at_timestamp: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container_instance_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credentials_port: Option<u16>,
    #[serde(default)]
    tasks: BTreeMap<String, TaskRecord>,
    #[serde(default)]
    log_positions: BTreeMap<String, LogPosition>,
}

/// The checkpoint; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Checkpoint {
    /// Opens (or starts) the checkpoint in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, CheckpointError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| CheckpointError::Io {
                path: data_dir.to_owned(),
                source,
            })?;
        let path = data_dir.join("agent-checkpoint.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Corrupt {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        Ok(Self {
            path,
            state: Arc::new(Mutex::new(state)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, state: &State) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        // Owner-only whatever the umask: the checkpoint names the instance and its tasks.
        let mut f = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }

    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, CheckpointError> {
        let mut st = self.lock();
        let r = f(&mut st);
        self.write(&st)?;
        Ok(r)
    }

    /// The registered instance ARN and its cluster, if any.
    pub fn instance(&self) -> Option<(String, String)> {
        let st = self.lock();
        Some((st.container_instance_arn.clone()?, st.cluster.clone()?))
    }

    pub fn set_instance(&self, arn: &str, cluster: &str) -> Result<(), CheckpointError> {
        self.update(|st| {
            st.container_instance_arn = Some(arn.to_owned());
            st.cluster = Some(cluster.to_owned());
        })
    }

    /// The metadata endpoint port used last time (reused so adopted containers' URIs stay valid).
    pub fn metadata_port(&self) -> Option<u16> {
        self.lock().metadata_port
    }

    pub fn set_metadata_port(&self, port: u16) -> Result<(), CheckpointError> {
        self.update(|st| st.metadata_port = Some(port))
    }

    /// The credentials endpoint port used last time (reused so adopted containers' URIs stay
    /// valid).
    pub fn credentials_port(&self) -> Option<u16> {
        self.lock().credentials_port
    }

    pub fn set_credentials_port(&self, port: u16) -> Result<(), CheckpointError> {
        self.update(|st| st.credentials_port = Some(port))
    }

    pub fn task(&self, arn: &str) -> Option<TaskRecord> {
        self.lock().tasks.get(arn).cloned()
    }

    pub fn tasks(&self) -> BTreeMap<String, TaskRecord> {
        self.lock().tasks.clone()
    }

    /// Changes (or creates) the record of task `arn`.
    pub fn update_task(
        &self,
        arn: &str,
        f: impl FnOnce(&mut TaskRecord),
    ) -> Result<(), CheckpointError> {
        self.update(|st| f(st.tasks.entry(arn.to_owned()).or_default()))
    }

    /// Forgets task `arn` and the log positions of its containers.
    pub fn remove_task(&self, arn: &str) -> Result<(), CheckpointError> {
        self.update(|st| {
            if let Some(rec) = st.tasks.remove(arn) {
                for id in rec.containers.values() {
                    st.log_positions.remove(id);
                }
            }
        })
    }

    pub fn log_position(&self, container_id: &str) -> Option<LogPosition> {
        self.lock().log_positions.get(container_id).copied()
    }

    pub fn set_log_position(
        &self,
        container_id: &str,
        pos: LogPosition,
    ) -> Result<(), CheckpointError> {
        self.update(|st| {
            st.log_positions.insert(container_id.to_owned(), pos);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        assert_eq!(cp.instance(), None);
        cp.set_instance("arn:ci", "c").expect("write");
        cp.update_task("t1", |r| {
            r.containers.insert("app".into(), "d1".into());
        })
        .expect("write");
        cp.set_log_position(
            "d1",
            LogPosition {
                timestamp_nanos: 1_700_000_000_123_456_789,
                lines_at_timestamp: 2,
            },
        )
        .expect("write");
        let again = Checkpoint::open(dir.path()).expect("reopen");
        assert_eq!(again.instance(), Some(("arn:ci".into(), "c".into())));
        assert_eq!(again.task("t1").expect("task").containers["app"], "d1");
        assert_eq!(
            again.log_position("d1").map(|p| p.lines_at_timestamp),
            Some(2)
        );
        again.remove_task("t1").expect("remove");
        assert!(again.log_position("d1").is_none());
        assert!(
            Checkpoint::open(dir.path())
                .expect("reopen")
                .tasks()
                .is_empty()
        );
    }

    #[test]
    fn checkpoint_file_and_dir_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("agent");
        let cp = Checkpoint::open(&dir).expect("open");
        cp.set_instance("arn:ci", "c").expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("agent-checkpoint.json")), 0o600);
    }
}
