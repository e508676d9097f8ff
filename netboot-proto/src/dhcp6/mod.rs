//! DHCPv6 for netboot (RFC 8415, RFC 5970 boot file URL, RFC 6939 client link-layer address),
//! sans-IO: stateful (IA_NA from a range and reservations), stateless (boot data only) and
//! relayed (Relay-Forward / Relay-Reply).
//!
//! # Layout
//! - [`core`]: the decision per message (Solicit … Information-Request), boot options.
//! - [`ia`]: IA_NA answers per message type (NotOnLink, NoBinding, Rebind without binding).
//! - [`pool`]: the address range and its bindings.
//! - [`wire`]: relay framing and the client's MAC from DUID, option 79 or EUI-64.

pub mod core;
pub mod ia;
pub mod pool;
pub mod wire;
