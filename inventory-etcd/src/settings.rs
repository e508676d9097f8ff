//! What an [`crate::EtcdStore`] connects to. This is the validated domain type; the
//! provisioner's `[store]` configuration section (serde, `deny_unknown_fields`) is converted
//! into it.

use std::path::PathBuf;
use std::time::Duration;

/// Connection settings for the etcd backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs of the cluster's members (`http://127.0.0.1:2379`, `https://…`); the
    /// client balances over them and moves on when one is down. At least one.
    pub endpoints: Vec<String>,
    /// Every key lives under this prefix (ends with `/`), so several inventories (or other
    /// programs) can share one cluster: `/provisioner/v1/` by default.
    pub prefix: String,
    /// etcd user and password, when the cluster has authentication on.
    pub credentials: Option<Credentials>,
    /// TLS towards the cluster (`https://` endpoints).
    pub tls: Option<TlsFiles>,
    /// Bound on every etcd call (a read, a transaction commit, connecting): past it the call
    /// fails with [`inventory::Error::Storage`] instead of hanging. Default 5 s.
    pub timeout: Duration,
}

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/provisioner/v1/";
/// The default bound on one etcd call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

impl EtcdSettings {
    /// Settings for these endpoints with the default prefix and timeout, no auth, no TLS.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdSettings {
            endpoints,
            prefix: DEFAULT_PREFIX.into(),
            credentials: None,
            tls: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// etcd's username/password authentication. The password is read from a file at connect time
/// (never from the configuration file itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The etcd user.
    pub username: String,
    /// A file holding the password (trailing newline ignored), readable by the server only.
    pub password_file: PathBuf,
}

/// TLS files (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the members' certificates.
    pub ca_file: PathBuf,
    /// A client certificate and its key, when the cluster asks for one
    /// (`--client-cert-auth`).
    pub client: Option<(PathBuf, PathBuf)>,
}
