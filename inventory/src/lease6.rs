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
    /// A quarantine, not a binding: the client declined the address (another host answers on
    /// it, RFC 8415 §18.3.8) and nobody gets it until `expires`. Identifies no machine (`mac`
    /// is `None`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub declined: bool,
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

/// What a claim on an IPv6 address came to ([`crate::Store::claim_leases6`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim6 {
    /// The address is now bound as asked; the lease is stored.
    Granted,
    /// Another client's active binding, or an active quarantine, holds the address: nothing
    /// was written. Carries that lease, so the caller can teach its pool.
    Held(Lease6),
}

/// The claim rule every store applies, inside the transaction that then writes the lease:
/// `want` is granted when the address's current lease (`held`) is absent, expired at `now`,
/// or the same client's (DUID and IAID) or the same MAC's, and not a quarantine. A quarantine (`want.declined`)
/// replaces the decliner's own binding or another quarantine, never another client's binding.
pub fn claim_outcome6(want: &Lease6, held: Option<&Lease6>, now: Timestamp) -> Claim6 {
    match held {
        Some(h) if h.is_active(now) => {
            // Another DUID of the same MAC is the same machine (firmware and OS DUIDs differ):
            // it may take the address over (the DHCPv6 server does so only for a reservation).
            let same_machine = want.mac.is_some() && h.mac == want.mac && !want.declined;
            let free = if h.declined {
                want.declined
            } else {
                h.same_client(want) || same_machine
            };
            if free {
                Claim6::Granted
            } else {
                Claim6::Held(h.clone())
            }
        }
        _ => Claim6::Granted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(duid: &str, mac: Option<u8>) -> Lease6 {
        Lease6 {
            ip: "2001:2::1:50".parse().unwrap(),
            duid: duid.into(),
            iaid: 1,
            mac: mac.map(|n| Mac::new([0x52, 0x54, 0, 0, 0, n])),
            expires: Timestamp(100),
            declined: false,
        }
    }

    #[test]
    fn another_duid_of_the_same_mac_may_take_the_address_over_another_mac_may_not() {
        let os = lease("0001aa", Some(2));
        assert_eq!(
            claim_outcome6(&lease("0004bb", Some(2)), Some(&os), Timestamp(1)),
            Claim6::Granted
        );
        assert_eq!(
            claim_outcome6(&lease("0004bb", Some(3)), Some(&os), Timestamp(1)),
            Claim6::Held(os.clone())
        );
        assert_eq!(
            claim_outcome6(
                &lease("0004bb", None),
                Some(&lease("0001aa", None)),
                Timestamp(1)
            ),
            Claim6::Held(lease("0001aa", None)),
            "no MAC: no machine to match"
        );
        assert_eq!(
            claim_outcome6(&lease("0004bb", Some(3)), Some(&os), Timestamp(100)),
            Claim6::Granted,
            "expired"
        );
    }
}
