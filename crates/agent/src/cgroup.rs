//! The cgroup of a Fargate task: the task's size as one cap on all its containers together.
//!
//! Each container of a Fargate task also gets the task's size as its own limits (what
//! `docker inspect` shows), but two containers each under 512 MiB could together use twice the
//! task's memory. So every container of the task, the pause container first, is created with
//! Docker's `CgroupParent` set to a cgroup of the task, whose CPU quota and memory limit are
//! the task's: the kernel holds the sum of the containers to them.
//!
//! - Docker's `cgroupfs` driver: the parent is `/gantry/task-<id>` (cgroup v1: in the `cpu` and
//!   `memory` hierarchies; v2: one directory with the `cpu`, `memory` and `pids` controllers
//!   enabled), created and limited here before the first container; runc creates the
//!   containers' cgroups below it.
//! - Docker's `systemd` driver: the parent is the slice `gantry-task<id>.slice` (inside
//!   `gantry.slice`); systemd creates it with the pause container, and its limits are written
//!   into its cgroup before the task's own containers are created.
//!
//! The directory is removed once the task's containers are (a cgroup with processes or
//! children cannot be removed, so a removal never takes one from under a running task). The
//! task's checkpoint names its cgroup before it is created, so a restarted agent removes
//! those of tasks it no longer runs.

use std::io;
use std::path::{Path, PathBuf};

/// Where the cgroup file systems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The CFS period the task's quota is expressed in (the kernel's default, Docker's too).
const CFS_PERIOD_US: i64 = 100_000;

/// Docker's cgroup driver: who creates the containers' cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// runc writes the cgroup file system itself.
    Cgroupfs,
    /// runc asks systemd, and cgroup parents are slices.
    Systemd,
}

/// The host's cgroup hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller (`<root>/memory`, `<root>/cpu`, ...).
    V1,
    /// The unified hierarchy mounted at the root.
    V2,
}

/// The size a task's containers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSize {
    /// CPU units (1024 = one CPU).
    pub cpu_units: i64,
    pub memory_bytes: i64,
}

impl TaskSize {
    /// The CFS quota for one [`CFS_PERIOD_US`] period.
    fn quota_us(self) -> i64 {
        (self.cpu_units.saturating_mul(CFS_PERIOD_US) / 1024).max(1000)
    }
}

/// Task cgroups on one host: how Docker names them and where their files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCgroups {
    root: PathBuf,
    version: CgroupVersion,
    driver: CgroupDriver,
}

impl TaskCgroups {
    /// The host's layout under `root` for Docker's driver (`docker info`'s `CgroupDriver`:
    /// `cgroupfs` or `systemd`); an error says why task cgroups cannot be made here.
    pub fn detect(root: &Path, docker_driver: &str) -> Result<Self, String> {
        let driver = match docker_driver {
            "cgroupfs" => CgroupDriver::Cgroupfs,
            "systemd" => CgroupDriver::Systemd,
            other => return Err(format!("Docker's cgroup driver is {other:?}")),
        };
        let version = if root.join("cgroup.controllers").is_file() {
            CgroupVersion::V2
        } else if root.join("memory").join("memory.limit_in_bytes").is_file()
            && root.join("cpu").join("cpu.cfs_quota_us").is_file()
        {
            CgroupVersion::V1
        } else {
            return Err(format!(
                "no cgroup v2 hierarchy nor v1 cpu and memory hierarchies under {}",
                root.display()
            ));
        };
        Ok(Self {
            root: root.to_owned(),
            version,
            driver,
        })
    }

    pub fn driver(&self) -> CgroupDriver {
        self.driver
    }

    /// Docker's `CgroupParent` for the containers of task `task_id`.
    pub fn parent(&self, task_id: &str) -> String {
        let id = clean(task_id);
        match self.driver {
            CgroupDriver::Cgroupfs => format!("/gantry/task-{id}"),
            CgroupDriver::Systemd => format!("gantry-task{id}.slice"),
        }
    }

    /// The task cgroup's path relative to a hierarchy's root.
    fn relative(&self, task_id: &str) -> PathBuf {
        let id = clean(task_id);
        match self.driver {
            CgroupDriver::Cgroupfs => Path::new("gantry").join(format!("task-{id}")),
            CgroupDriver::Systemd => {
                Path::new("gantry.slice").join(format!("gantry-task{id}.slice"))
            }
        }
    }

    /// The hierarchies a task cgroup lives in: (root of the hierarchy, its controller).
    fn hierarchies(&self) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V2 => vec![self.root.clone()],
            CgroupVersion::V1 => std::fs::read_dir(&self.root)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.path())
                        // `cpu,cpuacct` and its `cpu` alias are one hierarchy.
                        .filter(|p| p.is_dir() && !p.is_symlink())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether the task's cgroup must be limited before its first container is created (the
    /// `cgroupfs` driver) rather than right after (`systemd`, which creates the slice).
    pub fn limits_before_create(&self) -> bool {
        self.driver == CgroupDriver::Cgroupfs
    }

    /// Creates the task's cgroup (where the driver does not) and writes the task's size into
    /// it: the CFS quota, the memory limit (and no swap beyond it where the host can say so).
    pub fn apply(&self, task_id: &str, size: TaskSize) -> io::Result<()> {
        let rel = self.relative(task_id);
        let create = self.driver == CgroupDriver::Cgroupfs;
        match self.version {
            CgroupVersion::V2 => {
                let dir = self.root.join(&rel);
                if create {
                    let mut at = self.root.clone();
                    for part in rel.components() {
                        enable_controllers(&at)?;
                        at.push(part);
                        mkdir(&at)?;
                    }
                }
                write(
                    &dir,
                    "cpu.max",
                    &format!("{} {CFS_PERIOD_US}", size.quota_us()),
                )?;
                write(&dir, "memory.max", &size.memory_bytes.to_string())?;
                if dir.join("memory.swap.max").exists() {
                    write(&dir, "memory.swap.max", "0")?;
                }
                Ok(())
            }
            CgroupVersion::V1 => {
                let cpu = self.root.join("cpu").join(&rel);
                let memory = self.root.join("memory").join(&rel);
                if create {
                    std::fs::create_dir_all(&cpu)?;
                    std::fs::create_dir_all(&memory)?;
                }
                write(&cpu, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                write(&cpu, "cpu.cfs_quota_us", &size.quota_us().to_string())?;
                let bytes = size.memory_bytes.to_string();
                write(&memory, "memory.limit_in_bytes", &bytes)?;
                if memory.join("memory.memsw.limit_in_bytes").exists() {
                    write(&memory, "memory.memsw.limit_in_bytes", &bytes)?;
                }
                Ok(())
            }
        }
    }

    /// The task's memory limit as its cgroup holds it, if the cgroup exists.
    pub fn memory_limit(&self, task_id: &str) -> Option<i64> {
        let rel = self.relative(task_id);
        let file = match self.version {
            CgroupVersion::V2 => self.root.join(rel).join("memory.max"),
            CgroupVersion::V1 => self
                .root
                .join("memory")
                .join(rel)
                .join("memory.limit_in_bytes"),
        };
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Removes the task's cgroup from every hierarchy. A missing one is not an error; one still
    /// holding processes (its containers are not all gone) is.
    pub fn remove(&self, task_id: &str) -> io::Result<()> {
        let rel = self.relative(task_id);
        let mut first_error = None;
        for h in self.hierarchies() {
            let dir = h.join(&rel);
            // Empty cgroups runc or systemd left below it first (a container's, if any).
            if let Ok(children) = std::fs::read_dir(&dir) {
                for c in children.filter_map(Result::ok) {
                    if c.path().is_dir() {
                        let _ = std::fs::remove_dir(c.path());
                    }
                }
            }
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(io::Error::new(
                        e.kind(),
                        format!("cannot remove {}: {e}", dir.display()),
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A task id as a path and slice component: ECS ids are hex already; anything else is
/// replaced (`-` nests systemd slices, `/` paths).
fn clean(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| io::Error::new(e.kind(), format!("{}/{file}: {e}", dir.display())))
}

/// cgroup v2: the `cpu`, `memory` and `pids` controllers for the children of `dir`.
fn enable_controllers(dir: &Path) -> io::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    let missing: Vec<String> = ["cpu", "memory", "pids"]
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::write(&control, missing.join(" "))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", control.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: &str = "0123456789abcdef0123456789abcdef";

    fn v1_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for (ctrl, file) in [
            ("cpu", "cpu.cfs_quota_us"),
            ("memory", "memory.limit_in_bytes"),
        ] {
            std::fs::create_dir_all(d.path().join(ctrl)).expect("mkdir");
            std::fs::write(d.path().join(ctrl).join(file), "-1").expect("write");
        }
        d
    }

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn v1_cgroupfs_parent_holds_the_task_size() {
        let root = v1_root();
        let cg = TaskCgroups::detect(root.path(), "cgroupfs").expect("layout");
        assert!(cg.limits_before_create());
        assert_eq!(cg.parent(TASK), format!("/gantry/task-{TASK}"));
        let size = TaskSize {
            cpu_units: 256,
            memory_bytes: 512 << 20,
        };
        cg.apply(TASK, size).expect("apply");
        let cpu = root.path().join("cpu/gantry").join(format!("task-{TASK}"));
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "25000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(cg.memory_limit(TASK), Some(512 << 20));
        // Nothing of a memsw limit where the host has no swap accounting.
        let mem = root
            .path()
            .join("memory/gantry")
            .join(format!("task-{TASK}"));
        assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn v2_cgroupfs_enables_controllers_down_to_the_task() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").expect("w");
        std::fs::write(root.path().join("cgroup.subtree_control"), "memory").expect("w");
        let cg = TaskCgroups::detect(root.path(), "cgroupfs").expect("layout");
        cg.apply(
            TASK,
            TaskSize {
                cpu_units: 2048,
                memory_bytes: 4096 << 20,
            },
        )
        .expect("apply");
        // What is missing is asked for; what is enabled is left alone.
        assert_eq!(
            read(root.path().join("cgroup.subtree_control")),
            "+cpu +pids"
        );
        assert_eq!(
            read(root.path().join("gantry/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        let dir = root.path().join("gantry").join(format!("task-{TASK}"));
        assert_eq!(read(dir.join("cpu.max")), "200000 100000");
        assert_eq!(read(dir.join("memory.max")), (4096i64 << 20).to_string());
        assert_eq!(cg.memory_limit(TASK), Some(4096 << 20));
    }

    #[test]
    fn systemd_parent_is_a_slice_limited_once_it_exists() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory").expect("w");
        let cg = TaskCgroups::detect(root.path(), "systemd").expect("layout");
        assert!(!cg.limits_before_create());
        assert_eq!(cg.parent("ab-cd"), "gantry-taskab_cd.slice");
        let size = TaskSize {
            cpu_units: 512,
            memory_bytes: 1 << 30,
        };
        // systemd creates the slice (with the first container), not the agent.
        assert!(cg.apply("abcd", size).is_err());
        let slice = root.path().join("gantry.slice/gantry-taskabcd.slice");
        std::fs::create_dir_all(&slice).expect("mkdir");
        cg.apply("abcd", size).expect("apply");
        assert_eq!(read(slice.join("cpu.max")), "50000 100000");
        assert_eq!(read(slice.join("memory.max")), (1i64 << 30).to_string());
    }

    #[test]
    fn unknown_drivers_and_layouts_are_refused() {
        let root = v1_root();
        assert!(TaskCgroups::detect(root.path(), "none").is_err());
        let empty = tempfile::tempdir().expect("tempdir");
        let e = TaskCgroups::detect(empty.path(), "cgroupfs").expect_err("no hierarchy");
        assert!(e.contains("no cgroup v2 hierarchy"), "{e}");
    }

    #[test]
    fn removing_a_missing_cgroup_is_not_an_error() {
        let root = v1_root();
        let cg = TaskCgroups::detect(root.path(), "cgroupfs").expect("layout");
        cg.remove(TASK).expect("nothing to remove");
    }
}
