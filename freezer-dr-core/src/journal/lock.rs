//! The daemon lock of a file journal: one daemon per journal, released however the process ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::redb_journal::{RedbJournal, io_error};
use crate::{Error, ErrorKind, Result};

/// Holds the daemon lock on a journal (`<journal>.lock`) while alive: no second daemon can take it. The
/// lock is released when this is dropped (or when the process dies, however it dies).
#[derive(Debug)]
pub struct DaemonLock {
    file: File,
    path: PathBuf,
}

impl DaemonLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes the release explicit.
        let _ = self.file.unlock();
    }
}

impl RedbJournal {
    /// The lock file of [`RedbJournal::lock_daemon`]: the journal's path with `.lock` appended.
    pub fn lock_path(&self) -> PathBuf {
        let mut p = self.path().to_path_buf().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Takes the exclusive daemon lock, so two daemons can never run on one journal. The CLI's read and
    /// request commands do not take it. Fails at once (never waits) if another process holds it.
    pub fn lock_daemon(&self) -> Result<DaemonLock> {
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                io_error(
                    e,
                    format!(
                        "cannot open the daemon lock file {}; give the freezer-dr user write access \
                         to its directory",
                        path.display()
                    ),
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                };
                return Err(Error::new(
                    ErrorKind::Journal,
                    format!(
                        "another freezer-dr{who} holds the daemon lock {} on journal {}; only one \
                         daemon may run per journal: stop the other one, or give this one its own \
                         [journal] path",
                        path.display(),
                        self.path().display()
                    ),
                )
                .permanent());
            }
            Err(TryLockError::Error(e)) => {
                return Err(io_error(
                    e,
                    format!("cannot lock the daemon lock file {}", path.display()),
                ));
            }
        }
        // For the error message a second daemon prints; the lock, not this content, is what counts.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(DaemonLock { file, path })
    }
}
