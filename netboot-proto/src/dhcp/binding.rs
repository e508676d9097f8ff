//! Bindings proxy mode observes: the evidence, in proxy mode, that an address belongs to a
//! machine of the inventory (see the provisioner's `identity` module and README).

use std::net::Ipv4Addr;
use std::time::Duration;

use inventory::{Lease, Mac, Timestamp};

/// How long a binding observed in proxy mode identifies its machine: long enough for an install
/// over a slow link, short enough that an address the site's server hands on is soon released.
pub const OBSERVED_BINDING_TTL: Duration = Duration::from_secs(3600);

/// An observed proxy-mode binding of `mac` to `ip` from `now` on.
pub fn observed_binding(ip: Ipv4Addr, mac: Mac, now: Timestamp) -> Lease {
    Lease {
        ip,
        mac,
        expires: now.saturating_add(OBSERVED_BINDING_TTL),
        hostname: None,
        observed: true,
        client_id: None,
    }
}
