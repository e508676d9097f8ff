//! DHCP leases: which address a MAC holds until when. The DHCP server keeps them in memory and
//! writes them through to the store before it sends an ACK (RFC 2131 §4.3.1). An active lease is
//! the server's own evidence that requests from its address come from its MAC (see the README's
//! security model); proxy mode records *observed* bindings for the same purpose.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{Mac, Timestamp};

/// One address bound to one client until a time: granted by this server (full mode) or observed
/// (proxy mode, [`Lease::observed`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The bound address.
    pub ip: Ipv4Addr,
    /// The client's hardware address (chaddr).
    pub mac: Mac,
    /// When the binding ends (exclusive: at this instant it is no longer active).
    pub expires: Timestamp,
    /// Host name the client sent (option 12), for the operator's eyes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Not granted by us: in proxy mode the server saw the client ask the site's DHCP server for
    /// this address (a REQUEST with option 50, or a PXE boot-server REQUEST from `ciaddr`). It
    /// identifies the machine like a lease does, but a pool never counts it as taken.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observed: bool,
    /// The client identifier (option 61, lowercase hex) the binding is kept under, for a client
    /// identified by it rather than by its MAC (RFC 2131 §4.2; see the README's DHCP section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl Lease {
    /// Whether the binding still holds at `now` (`expires > now`).
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.expires > now
    }
}
