//! DHCPv6 leases (RFC 8415 §6.2, IA_NA): which IPv6 address a client's identity association
//! holds until when. The DHCPv6 server writes them to the store before it sends a Reply, as the
//! DHCPv4 server does before an ACK. Kept in their own table beside the IPv4 leases.

use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::{Mac, Timestamp};

/// A binding of one IPv6 address to one client's IA_NA until `expires`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease6 {
    /// The bound address; the store keeps at most one lease per address.
    pub ip: Ipv6Addr,
    /// The client's DUID (option 1), lowercase hex: the DHCPv6 client identity.
    pub duid: String,
    /// The identity association the address belongs to (IA_NA IAID).
    pub iaid: u32,
    /// The machine's MAC when the server could tell it (DUID-LL/LLT, option 79 from a relay,
    /// or an EUI-64 link-local source); `None` for a client with, e.g., a DUID-UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// When the binding ends (exclusive: active while `now < expires`): the valid lifetime.
    pub expires: Timestamp,
}

impl Lease6 {
    /// Whether the binding still holds at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.expires > now
    }

    /// Whether `self` and `other` bind the same identity association (DUID and IAID).
    pub fn same_client(&self, other: &Lease6) -> bool {
        self.duid == other.duid && self.iaid == other.iaid
    }
}
