//! A redb file that re-opens itself after an I/O error, so that a full disk heals when space is
//! freed, without a restart.
//!
//! redb latches the first failed write, fsync or read of a file: from then on every transaction
//! on that [`Database`] fails with "Previous I/O error occurred. Please close and re-open the
//! database" (`StorageError::PreviousIo`), even once the disk has room again. So every call goes
//! through [`RedbFile`]: when it fails with an engine error ([`Error::Storage`] or
//! [`Error::DiskFull`]), the handle is dropped (closed) and the file opened again — with the
//! same integrity check as at start (`redb_file.rs`) — before the error is returned. The
//! re-opened file holds what was durable before the failure; commits made without an fsync
//! (group commit, `redb_group.rs`) whose flush failed are rolled back, and their writers were
//! all answered with the error. A re-open that fails leaves the file closed; the next call
//! tries again.
//!
//! What the caller sees: a write that meets the error fails with it (never retried here: a
//! failed commit may or may not be on disk, so repeating it could apply it twice); a read is
//! tried once more on the re-opened file (a read changes nothing, and it may only have met
//! another call's latched error). A full disk is [`Error::DiskFull`], naming the directory to
//! free space in; redb reports it as an I/O error of kind `StorageFull` (`ENOSPC`, raw OS error
//! 28) or `QuotaExceeded` (`EDQUOT`) — on tmpfs at `write`, on other file systems possibly only
//! at `fsync`; both reach this module the same way.
//!
//! Locking: each call holds the read side of the handle's lock for its whole duration, and a
//! re-open takes the write side, so it waits until no transaction of the old handle is live
//! (redb lets one process open a file once). Calls that use both files take the inventory's
//! before the lease file's, never the other way round, so two re-opens cannot wait for each
//! other.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::Database;

use crate::redb_group::GroupCommit;
use crate::{Error, Result};

/// One store file: its open handle (re-opened after an engine error) and its group commit.
pub(crate) struct RedbFile {
    /// The file, to open it again.
    path: PathBuf,
    /// redb's page cache for it (bytes).
    cache: usize,
    /// The open database, `None` after a re-open failed; with a count of re-opens, so that of
    /// several calls that met the same failure only the first re-opens.
    slot: RwLock<Slot>,
    /// Group commit of this file's writers; kept across re-opens (its counters only grow).
    group: GroupCommit,
    /// 1 + the last generation of the handle on which a call met a full disk (0: none yet).
    /// The other calls that fail on that handle (or an older one) only meet redb's "previous
    /// I/O error"; they are answered [`Error::DiskFull`] too, since that is what the operator
    /// must fix.
    full_in: AtomicU64,
}

struct Slot {
    db: Option<Database>,
    generation: u64,
}

/// `e` as the inventory's error: a full disk is [`Error::DiskFull`] (its `dir` filled in by
/// [`RedbFile`]), anything else [`Error::Storage`] with redb's message.
pub(crate) fn engine_error(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Io(io) if is_disk_full(&io) => Error::DiskFull {
            dir: PathBuf::new(),
            detail: io.to_string(),
        },
        other => Error::Storage(other.to_string()),
    }
}

/// Whether an I/O error says the file system (or the user's quota) is full.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || e.raw_os_error() == Some(libc::ENOSPC)
        || e.raw_os_error() == Some(libc::EDQUOT)
}

/// The same error again, for each writer a failed group flush covered (the engine's error is
/// not `Clone`; only its kind and text matter to the callers).
pub(crate) fn again(e: &Error) -> Error {
    match e {
        Error::DiskFull { dir, detail } => Error::DiskFull {
            dir: dir.clone(),
            detail: detail.clone(),
        },
        Error::Storage(text) => Error::Storage(text.clone()),
        other => Error::Storage(other.to_string()),
    }
}

fn engine_failure(e: &Error) -> bool {
    matches!(e, Error::Storage(_) | Error::DiskFull { .. })
}

impl RedbFile {
    /// Wraps `db`, opened from `path` with a page cache of `cache` bytes.
    pub(crate) fn new(path: &Path, cache: usize, db: Database) -> Self {
        RedbFile {
            path: path.to_owned(),
            cache,
            slot: RwLock::new(Slot {
                db: Some(db),
                generation: 0,
            }),
            group: GroupCommit::default(),
            full_in: AtomicU64::new(0),
        }
    }

    fn read_slot(&self) -> RwLockReadGuard<'_, Slot> {
        self.slot.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_slot(&self) -> RwLockWriteGuard<'_, Slot> {
        self.slot.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a read-only `f`; after an engine error the file is re-opened and `f` runs once more.
    pub(crate) fn read<T>(&self, f: impl Fn(&Database) -> Result<T>) -> Result<T> {
        match self.run(|db| f(db)) {
            Err(e) if engine_failure(&e) => self.run(|db| f(db)),
            r => r,
        }
    }

    /// Runs `f`, which writes through the group commit it is given; after an engine error the
    /// file is re-opened and the error returned (not retried: see the module docs).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Database, &GroupCommit) -> Result<T>,
    ) -> Result<T> {
        self.run(|db| f(db, &self.group))
    }

    fn run<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let slot = self.read_slot();
        let generation = slot.generation;
        let Some(db) = &slot.db else {
            drop(slot);
            // Closed by a failed re-open: try again, then run on what it gave.
            self.reopen(generation)?;
            return self.run_open(f);
        };
        let r = f(db);
        if let Err(Error::DiskFull { .. }) = &r {
            // Before the guard is dropped: a re-open (which waits for every call on this
            // handle) comes after it, so the calls that check it after theirs see it.
            self.full_in.fetch_max(generation + 1, Ordering::Relaxed);
        }
        drop(slot);
        match r {
            Err(e) if engine_failure(&e) => {
                // The call's own error is what it answers; a failed re-open shows in the next.
                let _ = self.reopen(generation);
                // Set for this handle (or a later one: the disk was still full) before the
                // re-open above could take the lock.
                if matches!(e, Error::Storage(_))
                    && self.full_in.load(Ordering::Relaxed) > generation
                {
                    return Err(self.named(Error::DiskFull {
                        dir: PathBuf::new(),
                        detail: "an earlier write to this file found no space left on the device"
                            .into(),
                    }));
                }
                Err(self.named(e))
            }
            r => r,
        }
    }

    /// Runs `f` on the handle as it is, without re-opening.
    fn run_open<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let slot = self.read_slot();
        match &slot.db {
            Some(db) => f(db).map_err(|e| self.named(e)),
            None => Err(Error::Storage(format!(
                "{} is closed after an I/O error and could not be re-opened",
                self.path.display()
            ))),
        }
    }

    /// Closes the handle of `generation` and opens the file again, unless another call has
    /// already done so since.
    fn reopen(&self, generation: u64) -> Result<()> {
        let mut slot = self.write_slot();
        if slot.generation != generation && slot.db.is_some() {
            return Ok(());
        }
        // Closing first: redb refuses a second handle on a file while one is open.
        slot.db = None;
        slot.generation += 1;
        let db = super::file::open(&self.path, self.cache).map_err(|e| self.named(e))?;
        slot.db = Some(db);
        Ok(())
    }

    /// `e` with the data directory named, if it is a [`Error::DiskFull`] from the engine.
    fn named(&self, e: Error) -> Error {
        match e {
            Error::DiskFull { dir, detail } if dir.as_os_str().is_empty() => Error::DiskFull {
                dir: self
                    .path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                detail,
            },
            e => e,
        }
    }

    /// The open handle, for tests that write raw records.
    #[cfg(test)]
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction> {
        self.run_open(|db| db.begin_write().map_err(engine_error))
    }

    /// The open handle, for tests that read raw records.
    #[cfg(test)]
    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction> {
        use redb::ReadableDatabase;
        self.run_open(|db| db.begin_read().map_err(engine_error))
    }
}
