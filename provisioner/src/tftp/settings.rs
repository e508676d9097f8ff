//! The TFTP server's settings (from `[tftp]`), in a leaf module so the configuration can name
//! them without importing the server.

use super::transfer::Limits;

/// Validated `[tftp]` settings the server runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TftpSettings {
    pub limits: Limits,
    /// Transfers running at once, server-wide (dnsmasq's default of 50 broke boot storms).
    /// Requests beyond a limit get no answer, so clients retry instead of giving up.
    pub max_transfers: usize,
    /// Transfers running at once from one client address.
    pub max_per_client: usize,
}

impl Default for TftpSettings {
    fn default() -> Self {
        TftpSettings {
            limits: Limits::default(),
            max_transfers: 4096,
            max_per_client: 16,
        }
    }
}
