//! Opening a store file (`inventory.redb`, `inventory.leases.redb`): created with mode 0600 (or
//! narrowed to it), verified whole before it is trusted, and refused by name, with what to do,
//! when it cannot be used as it is.
//!
//! redb trusts a file that was shut down cleanly: a plain open neither reads its pages nor
//! notices that they changed since (a bit flip, a truncation), and may panic on one it cannot
//! follow. So every open asks redb to verify the checksum of every page of the committed trees
//! (`set_check_integrity_on_open`: it reads the whole file once). Refused, each naming the file
//! ([`Error::StoreFile`]): a file that fails that check or is not a redb file at all; a file
//! that exists but is empty (redb would silently start a new, empty store in it: an inventory
//! truncated to nothing would come back empty); a file owned by another user than the one the
//! server runs as, or one it may not read and write.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use redb::{Database, DatabaseError, StorageError};

use crate::{Error, Result};

/// What to do about a damaged or foreign store file.
const RESTORE: &str = "the server does not start on it, so that it never serves a \
     partial or empty inventory; restore the file from a backup, or move it aside \
     (mv FILE FILE.damaged) to start with an empty one";

/// What to do about a file the server's user may not use.
const OWNERSHIP: &str = "run the server as the user that owns the data directory and its \
     files, or give them to the server's user (chown -R USER DATA_DIR)";

/// [`Error::StoreFile`] for `path`; `FILE` in `advice` becomes the path.
fn refuse(path: &Path, problem: String, advice: &str) -> Error {
    Error::StoreFile {
        path: path.to_owned(),
        problem,
        advice: advice.replace("FILE", &path.display().to_string()),
    }
}

/// The effective user id of this process.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes sure the file at `path` exists with mode 0600 and may be used: creates it so, or
/// checks an existing one (not empty, owned by this user) and narrows a wider mode. Returns the
/// old mode if it was wider.
pub(super) fn private_file(path: &Path) -> Result<Option<u32>> {
    let access = |e: std::io::Error| match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => refuse(
            path,
            format!(
                "cannot be opened for reading and writing by uid {}: {e}",
                euid()
            ),
            OWNERSHIP,
        ),
        _ => Error::Storage(format!("opening {}: {e}", path.display())),
    };
    let created = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let file = match created {
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(access)?,
        Err(e) => return Err(access(e)),
    };
    let meta = file.metadata().map_err(access)?;
    if meta.uid() != euid() {
        return Err(refuse(
            path,
            format!(
                "belongs to uid {}, but this server runs as uid {}",
                meta.uid(),
                euid()
            ),
            OWNERSHIP,
        ));
    }
    if meta.len() == 0 {
        return Err(refuse(
            path,
            "is empty (0 bytes): it was truncated, or a first start was cut short before the \
             store was written"
                .into(),
            "the server does not start on it, so that it never serves an empty inventory in \
             place of one it lost; restore the file from a backup, or, if this data directory \
             is new, remove the empty file",
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(access)?;
    Ok(Some(mode))
}

/// Opens (or initializes, when [`private_file`] just created it) the redb file at `path` with a
/// page cache of `cache` bytes, verifying every page of the committed trees first. A file
/// another process holds is refused by name; a damaged or foreign one with
/// [`Error::StoreFile`]; a panic inside redb on a file it cannot follow is caught and refused
/// the same way.
pub(super) fn open(path: &Path, cache: usize) -> Result<Database> {
    let opened = std::panic::catch_unwind(|| {
        Database::builder()
            .set_cache_size(cache)
            .set_check_integrity_on_open(true)
            .create(path)
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => Err(Error::Storage(format!(
            "{} is in use by another provisioner process",
            path.display()
        ))),
        Ok(Err(DatabaseError::Storage(StorageError::Io(e))))
            if e.kind() == ErrorKind::PermissionDenied =>
        {
            Err(refuse(path, format!("cannot be read: {e}"), OWNERSHIP))
        }
        Ok(Err(DatabaseError::UpgradeRequired(v))) => Err(refuse(
            path,
            format!("is in an old redb file format ({v}) that this program does not read"),
            RESTORE,
        )),
        Ok(Err(e)) => Err(refuse(
            path,
            format!("is damaged or not a store file ({e})"),
            RESTORE,
        )),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic in the storage engine");
            Err(refuse(
                path,
                format!("is damaged: the storage engine could not read it ({why})"),
                RESTORE,
            ))
        }
    }
}
