//! The configuration's error type, in a leaf module: `config` and the sections it validates
//! (`dhcp::config`) both use it without importing each other.

use std::path::PathBuf;

/// A configuration problem, naming the key and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key} = {value:?}: {why}")]
    Value {
        key: &'static str,
        value: String,
        why: String,
    },
}
