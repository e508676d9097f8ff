//! DHCP leases: which address a MAC holds until when. The DHCP server writes them to the store
//! before it sends an ACK (RFC 2131 §4.3.1). An active lease is the server's own evidence that
//! requests from its address come from its MAC (see the README's security model); proxy mode
//! records *observed* bindings for the same purpose.
//!
//! Allocation is the store's: [`crate::Store::claim_leases`] binds an address to a client only
//! if [`claim_outcome`] says so, inside one write transaction, so servers sharing a store never
//! bind one address to two clients.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{Mac, Timestamp};

/// A binding of one IPv4 address to one client until `expires`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The bound address; the store keeps at most one lease per address.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub ip: Ipv4Addr,
    /// The client's hardware address (`chaddr`).
    pub mac: Mac,
    /// When the binding ends (exclusive: active while `now < expires`).
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
    /// Whether the binding still holds at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.expires > now
    }

    /// Whether `self` and `other` bind the same client (RFC 2131 §4.2): by client identifier
    /// when both were made under one, otherwise by MAC (a client keyed by its MAC, such as a
    /// machine of the inventory, is the same client as any binding of that MAC).
    pub fn same_client(&self, other: &Lease) -> bool {
        match (&self.client_id, &other.client_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.mac == other.mac,
        }
    }
}

/// What a claim on an address came to ([`crate::Store::claim_leases`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The address is now bound to the claiming client as asked; the lease is stored.
    Granted,
    /// Another client holds an active lease on the address (granted, not merely observed):
    /// nothing was written. Carries that lease, so the caller can say who and until when.
    Held(Lease),
    /// The address is reserved for another machine of the inventory: nothing was written.
    Reserved {
        /// The machine the address is reserved for.
        owner: Mac,
    },
}

/// The claim rule every store applies, inside the transaction that then writes the lease:
/// `want` is granted when the address is reserved for nobody or for `want.mac` (an observed
/// binding skips this: it records what the site's DHCP server gave, not our allocation), and its
/// current lease (`held`) is absent, expired at `now`, only observed (proxy mode), or the same
/// client's ([`Lease::same_client`]).
pub fn claim_outcome(
    want: &Lease,
    held: Option<&Lease>,
    reserved_for: Option<Mac>,
    now: Timestamp,
) -> Claim {
    if let Some(owner) = reserved_for.filter(|o| *o != want.mac && !want.observed) {
        return Claim::Reserved { owner };
    }
    match held {
        Some(h) if h.is_active(now) && !h.observed && !h.same_client(want) => {
            Claim::Held(h.clone())
        }
        _ => Claim::Granted,
    }
}
