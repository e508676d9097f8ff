//! DHCPv6 for netboot: the decisions live in `netboot_proto::dhcp6` (sans-IO); this module
//! keeps the configuration and the tokio shell.
//!
//! - [`config`]: the `[dhcp6]` section and its validation (off unless configured).
//! - [`server`]: receive, decide, claim the lease in the store (durable), then reply.
//! - `effects`: events, the DUID on the machine, admission of unknown netbooting machines.
//! - [`start`]: builds the core from the config and the stored leases, binds and serves.

pub mod config;
mod effects;
pub mod server;
mod start;

pub use start::start;
