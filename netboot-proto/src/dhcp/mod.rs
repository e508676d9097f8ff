//! DHCP for netboot (RFC 2131, RFC 2132, RFC 3046, RFC 4578, PXE 2.1), sans-IO.
//!
//! # Layout
//! - [`classify`]: who is asking (firmware stage, architecture, UUID, relay information).
//! - [`core`]: the decision per request in full and proxy mode.
//! - [`pool`]: one subnet's dynamic range and its bindings.
//! - [`reply`]: where replies go, PXE vendor options, the bytes on the wire.
//! - [`seen_limit`]: rate limits on per-packet observations.
//! - [`binding`]: bindings proxy mode observes.

pub mod binding;
pub mod classify;
pub mod core;
pub mod pool;
pub mod reply;
pub mod seen_limit;
