//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong reading, inspecting, storing or building boot assets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file system holding the asset store is full (`ENOSPC`, or the quota is used up:
    /// `EDQUOT`). Nothing of the import is kept (no temporary file, no object, no catalogue
    /// entry); the same import succeeds once space is freed.
    #[error("{}: no space left on the file system holding the asset store ({detail}); the import was not stored and nothing of it was kept: free space under {} (e.g. `provisioner assets gc --unreferenced` removes assets no profile uses), then import again", dir.display(), dir.display())]
    DiskFull {
        /// The asset store's directory (`<data dir>/assets`).
        dir: PathBuf,
        /// What the OS said.
        detail: String,
    },
    /// The file is not a PE image we can use, or not the kind asked for.
    #[error("{path}: {reason}")]
    NotUsable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and how to make a usable one.
        reason: String,
    },
    /// A digest argument is not `sha256:<64 hex>` (or 64 hex).
    #[error("'{given}' is not an asset digest: expected sha256:<64 hex digits>")]
    BadDigest {
        /// The text as given.
        given: String,
    },
    /// No asset with this digest is stored.
    #[error("no asset {digest} in the store; `provisioner assets list` shows what is there")]
    NotFound {
        /// The digest asked for (`sha256:<64 hex>`).
        digest: String,
    },
    /// An asset has no such extracted section.
    #[error("asset {digest} has no section '{section}'")]
    NoSection {
        /// The asset's digest.
        digest: String,
        /// The section asked for.
        section: String,
    },
    /// Bytes offered as an asset (by a peer) are not that asset; nothing was kept.
    #[error(
        "expected {expected} ({expected_size} bytes), received {actual} ({actual_size} bytes)"
    )]
    Mismatch {
        /// The digest asked for (`sha256:<64 hex>`).
        expected: String,
        /// The digest of what was received (of its first `expected_size + 1` bytes at most).
        actual: String,
        /// The asset's length (bytes).
        expected_size: u64,
        /// Bytes received (at most `expected_size + 1`).
        actual_size: u64,
    },
    /// A file of trusted certificates (`db` certificates) holds none we can use.
    #[error(
        "{path}: {reason}; expected PEM (-----BEGIN CERTIFICATE-----) or one DER X.509 certificate"
    )]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Stored metadata could not be decoded.
    #[error("metadata of {digest} is corrupt: {reason}")]
    CorruptMeta {
        /// The asset's digest.
        digest: String,
        /// Why it could not be decoded.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn unusable(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::NotUsable {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type: [`Error`] unless told otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;
