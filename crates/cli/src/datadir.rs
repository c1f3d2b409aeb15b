//! Data directories: private to their owner, and held by one process at a time.
//!
//! [`prepare`] creates a data dir with mode 0700, or tightens an existing one that others could
//! read (and every file and directory under it), so the database, its WAL, blobs, upload
//! sessions, credentials and checkpoints are never readable by other users, whatever the umask.
//! Each component also creates its own files 0600; this is the guard for what an older version
//! left behind.
//!
//! [`DataDirLock`] is an exclusive advisory lock (`flock`) on `DIR/gantry.lock`, which holds the
//! pid of the holder. Two servers, or two agents, on one data dir would share one database or one
//! agent identity and corrupt each other's state; the second one refuses to start and names the
//! first. The kernel releases the lock when the holder exits, however it exits.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Mode of every directory Gantry keeps state in.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file Gantry keeps state in.
pub const FILE_MODE: u32 = 0o600;
/// The lock file's name inside a data dir.
pub const LOCK_FILE: &str = "gantry.lock";

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    match fs::metadata(dir) {
        Ok(md) if md.is_dir() => {
            let mode = md.mode() & 0o777;
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                    .with_context(|| format!("tightening {}", dir.display()))?;
                let fixed = tighten_tree(dir)
                    .with_context(|| format!("tightening files under {}", dir.display()))?;
                tracing::warn!(
                    data_dir = %dir.display(),
                    from = %format_args!("{mode:o}"),
                    to = %format_args!("{DIR_MODE:o}"),
                    entries_tightened = fixed,
                    "data dir was readable by other users; its permissions were tightened"
                );
            }
            Ok(())
        }
        Ok(_) => anyhow::bail!("{} exists and is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .with_context(|| format!("creating data dir {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Sets every file under `dir` to 0600 and every directory to 0700 where they allow more;
/// returns how many entries changed. Symbolic links are left alone (their targets are not ours
/// to change).
fn tighten_tree(dir: &Path) -> std::io::Result<usize> {
    let mut fixed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let md = entry.metadata()?;
            let ft = md.file_type();
            let (want, is_dir) = if ft.is_dir() {
                (DIR_MODE, true)
            } else if ft.is_file() {
                (FILE_MODE, false)
            } else {
                continue;
            };
            if md.mode() & 0o077 != 0 {
                fs::set_permissions(entry.path(), Permissions::from_mode(want))?;
                fixed += 1;
            }
            if is_dir {
                pending.push(entry.path());
            }
        }
    }
    Ok(fixed)
}

/// An exclusive lock on a data dir, held until dropped (or the process exits).
#[derive(Debug)]
pub struct DataDirLock {
    path: PathBuf,
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `dir` for `role` (`server`, `agent`), or fails naming the holder.
    pub fn acquire(dir: &Path, role: &str) -> anyhow::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder writes its line right after locking; an empty read means it is
                // doing so at this very moment.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another gantry process".to_owned()
                } else {
                    format!("another gantry process ({holder})")
                };
                anyhow::bail!(
                    "the data dir {} is in use by {who}; two processes on one data dir would \
                     corrupt each other's state: stop it, or give this one another --data-dir",
                    dir.display()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let line = format!("pid {} {role}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(line.as_bytes()))
            .and_then(|()| file.sync_data())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn a_new_data_dir_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn an_open_data_dir_and_its_files_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        fs::create_dir_all(dir.join("registry/blobs")).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dir.join("registry"), Permissions::from_mode(0o775)).unwrap();
        fs::write(dir.join("state.db"), b"x").unwrap();
        fs::set_permissions(dir.join("state.db"), Permissions::from_mode(0o644)).unwrap();
        fs::write(dir.join("registry/blobs/b"), b"x").unwrap();
        fs::set_permissions(dir.join("registry/blobs/b"), Permissions::from_mode(0o666)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("registry")), 0o700);
        assert_eq!(mode(&dir.join("state.db")), 0o600);
        assert_eq!(mode(&dir.join("registry/blobs/b")), 0o600);
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(tmp.path(), "server").unwrap();
        assert_eq!(mode(held.path()), 0o600);
        let err = DataDirLock::acquire(tmp.path(), "server")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {} server", std::process::id())),
            "{err}"
        );
        drop(held);
        DataDirLock::acquire(tmp.path(), "server").unwrap();
    }
}
