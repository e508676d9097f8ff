//! The crate's one error enum: what can go wrong before the store is usable. Calls of the
//! [`inventory::Store`] trait report [`inventory::Error::Storage`] instead, with the endpoints
//! and the cause in the text.

use std::path::PathBuf;

/// Failures opening an [`crate::EtcdStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file named in the settings (password, CA, certificate, key) could not be read.
    #[error("reading {what} {path}: {source}")]
    ReadFile {
        /// What the file is for (`password_file`, `ca_file`, …).
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The client could not be set up or etcd did not answer the first request.
    #[error("etcd at {endpoints}: {detail}")]
    Connect {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// The client's error, as text.
        detail: String,
    },
    /// The store's own tokio runtime could not be started.
    #[error("starting the etcd client's runtime: {0}")]
    Runtime(std::io::Error),
}
