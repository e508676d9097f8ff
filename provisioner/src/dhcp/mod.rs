//! DHCP for netboot: full server and proxyDHCP. The decisions live in the runtime-free
//! `netboot-proto` crate (re-exported here under their old paths); this module keeps what needs
//! the runtime and the configuration.
//!
//! - [`config`]: the `[dhcp]` section and its validation (off unless configured).
//! - [`server`]: the tokio shell: receive, decide, commit the lease durably, then reply.
//! - Re-exported from `netboot_proto::dhcp`: [`classify`], [`core`], [`pool`], [`reply`],
//!   [`seen_limit`], [`binding`].

pub use netboot_proto::dhcp::{binding, classify, core, pool, reply, seen_limit};

pub mod config;
pub mod server;
mod shared_lookup;
