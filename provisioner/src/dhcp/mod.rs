//! DHCP for netboot: full server and proxyDHCP.
//!
//! - [`config`]: the `[dhcp]` section and its validation (off unless configured).
//! - [`classify`]: boot stage and architecture of a request (option 60/77/93/97/175).
//! - [`core`]: the sans-IO decision: full mode (DORA, renew, decline, release, inform) and proxy.
//! - [`pool`]: one subnet's dynamic range: offers, bindings, reservations, quarantine, expiry,
//!   and the share of it machines not registered may hold.
//! - [`reply`]: where a reply goes (RFC 2131 §4.1), PXE option 43, and the boot file to offer.
//! - [`seen_limit`]: rate limits on per-packet observations (per MAC and topic, and a shared
//!   budget for machines not in the inventory), in bounded memory.
//! - [`server`]: the tokio shell: receive, decide, commit the lease durably, then reply.

pub mod classify;
pub mod config;
pub mod core;
pub mod pool;
pub mod reply;
pub mod seen_limit;
pub mod server;
