//! One coordinator per store: an exclusive lock on `<db>.lock`, taken before any port is bound.
//!
//! The lock is an advisory `flock` held for the life of the process (the kernel releases it when
//! the process dies, even by `kill -9`, so a stale file never blocks a restart). The file says who
//! holds it — pid, host, start time — so that a second `serve` can name the holder.

use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The store is held by another process.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the store {db} is in use by another piswarm serve ({holder}); stop it first, or use another --db")]
    Held { db: String, holder: String },
    #[error("cannot lock the store {db} ({lock}): {source}")]
    Io {
        db: String,
        lock: String,
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    path: PathBuf,
}

impl StoreLock {
    /// The lock file of a store.
    pub fn path_for(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock of `db`, or says who holds it.
    pub fn acquire(db: &Path) -> Result<StoreLock, LockError> {
        let path = Self::path_for(db);
        let io = |source| LockError::Io {
            db: db.display().to_string(),
            lock: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Held {
                db: db.display().to_string(),
                holder: if holder.is_empty() {
                    "holder unknown".to_string()
                } else {
                    holder.to_string()
                },
            });
        }
        let me = format!(
            "pid {}, host {}, started {}",
            std::process::id(),
            gethostname::gethostname().to_string_lossy(),
            crate::report::now_iso8601()
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(me.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StoreLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("piswarm.db");
        let first = StoreLock::acquire(&db).unwrap();
        let err = StoreLock::acquire(&db).unwrap_err().to_string();
        assert!(err.contains("in use by another piswarm serve"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        StoreLock::acquire(&db).expect("free again once released");
    }
}
