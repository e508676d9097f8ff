//! Who a request comes from, by evidence the server produced itself.
//!
//! Anything a machine can send, anyone on the provisioning network can send: a MAC or UUID in a
//! URL, a `User-Agent`, a request to a "per-machine" path. None of that says who is asking. The
//! server believes an address belongs to machine V only when it has evidence of its own:
//!
//! - **a lease it granted** to V's MAC (full DHCP mode, direct or relayed), while it is active;
//!   for an IPv6 peer, the DHCPv6 lease of that address, active and bound to V's MAC (the MAC
//!   the DHCPv6 core derived from the client's DUID-LL/LLT, relay option 79 or EUI-64
//!   link-local source; a lease whose MAC it could not tell is no evidence of any machine);
//! - **a binding it observed** (proxy mode): V's chaddr asked the site's DHCP server for that
//!   address in a REQUEST we saw (option 50), or sent our PXE boot-server port a REQUEST from it
//!   (`ciaddr`); it counts for [`OBSERVED_BINDING_TTL`], as the site's lease time is not ours to
//!   know;
//! - **V's token** (HMAC-derived, see [`crate::machine_keys`]), which is not an address matter
//!   and is checked where it is presented.
//!
//! Address evidence ends with the lease, and for reading a machine's config also with the
//! install ([`may_read_config`]): once a machine is `installed`, only its token opens its config.
//! A request without evidence may still get public answers (an iPXE script holds no secret), but
//! it never changes what the server believes about a machine: no `booting` step, no recorded
//! address, no log lines filed under it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use inventory::{Lease, Lease6, Mac, State, Store, Timestamp};

pub use netboot_proto::dhcp::binding::{observed_binding, OBSERVED_BINDING_TTL};

/// What vouches for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// An active lease this server granted (full mode).
    Lease,
    /// An active binding seen in proxy mode.
    Observed,
    /// An active DHCPv6 lease this server granted (IA_NA), with the client's MAC.
    Lease6,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Lease => "lease",
            Evidence::Observed => "observed DHCP binding",
            Evidence::Lease6 => "DHCPv6 lease",
        }
    }
}

/// The machine an address belongs to, by the server's evidence, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub mac: Mac,
    pub evidence: Evidence,
    /// When the evidence ends (the lease's expiry).
    pub until: Timestamp,
}

/// IPv4 of a peer (IPv4-mapped IPv6 included); DHCPv4 evidence knows nothing of other IPv6
/// (see [`holder_of_peer`]).
pub fn ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(v) => v.to_ipv4_mapped(),
    }
}

/// What a stored binding says about its address at `now`: nothing once it has expired.
pub fn holder_from(lease: &Lease, now: Timestamp) -> Option<Holder> {
    lease.is_active(now).then_some(Holder {
        mac: lease.mac,
        evidence: if lease.observed {
            Evidence::Observed
        } else {
            Evidence::Lease
        },
        until: lease.expires,
    })
}

/// The machine holding `ip` at `now`: one point read of the lease table (keyed by address).
///
/// Errors: the store's. Blocking: call it on a blocking thread.
pub fn holder_of(
    store: &dyn Store,
    ip: Ipv4Addr,
    now: Timestamp,
) -> inventory::Result<Option<Holder>> {
    Ok(store.lease_by_ip(ip)?.and_then(|l| holder_from(&l, now)))
}

/// What a stored DHCPv6 lease says about its address at `now`: nothing once it has expired,
/// nor when the server could not tell the client's MAC (e.g. a DUID-UUID relayed without
/// option 79): then it names no machine of the inventory.
pub fn holder6_from(lease: &Lease6, now: Timestamp) -> Option<Holder> {
    match (lease.is_active(now) && !lease.declined, lease.mac) {
        (true, Some(mac)) => Some(Holder {
            mac,
            evidence: Evidence::Lease6,
            until: lease.expires,
        }),
        _ => None,
    }
}

/// The machine holding IPv6 address `ip` at `now`: its DHCPv6 lease ([`Store::lease6_by_ip`]).
///
/// Errors: the store's. Blocking: call it on a blocking thread.
pub fn holder6_of(
    store: &dyn Store,
    ip: Ipv6Addr,
    now: Timestamp,
) -> inventory::Result<Option<Holder>> {
    Ok(store.lease6_by_ip(ip)?.and_then(|l| holder6_from(&l, now)))
}

/// The machine holding a peer's address at `now`, IPv4 (IPv4-mapped included: the DHCPv4
/// lease) or IPv6 (the DHCPv6 lease).
///
/// Errors: the store's. Blocking: call it on a blocking thread.
pub fn holder_of_peer(
    store: &dyn Store,
    ip: IpAddr,
    now: Timestamp,
) -> inventory::Result<Option<Holder>> {
    match (ipv4(ip), ip) {
        (Some(v4), _) => holder_of(store, v4, now),
        (None, IpAddr::V6(v6)) => holder6_of(store, v6, now),
        (None, IpAddr::V4(_)) => unreachable!("ipv4() takes every IPv4 address"),
    }
}

/// Whether `peer` is machine `mac` by address evidence at `now`.
pub fn is_machine(holder: Option<Holder>, mac: Mac) -> bool {
    holder.is_some_and(|h| h.mac == mac)
}

/// Whether address evidence may open a machine's config in `state`: only while an install is
/// expected or under way. Afterwards (installed, ready) or when held (discovered, failed) the
/// config, which carries the machine's token, needs the token itself.
pub fn may_read_config(state: State) -> bool {
    matches!(
        state,
        State::Registered | State::Reprovision | State::Booting | State::Installing
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac::new([0x52, 0x54, 0, 0, 0, n])
    }

    #[test]
    fn evidence_ends_with_the_lease() {
        let l = Lease {
            ip: Ipv4Addr::new(198, 18, 0, 10),
            mac: mac(1),
            expires: Timestamp(1_000),
            hostname: None,
            observed: false,
            client_id: None,
        };
        let h = holder_from(&l, Timestamp(999)).expect("active");
        assert_eq!((h.mac, h.evidence), (mac(1), Evidence::Lease));
        assert!(is_machine(Some(h), mac(1)));
        assert!(!is_machine(Some(h), mac(2)));
        assert_eq!(holder_from(&l, Timestamp(1_000)), None, "expired at expiry");
        assert_eq!(holder_from(&l, Timestamp(5_000)), None);
        assert!(!is_machine(None, mac(1)));
    }

    #[test]
    fn observed_bindings_last_the_ttl() {
        let b = observed_binding(Ipv4Addr::new(198, 18, 0, 11), mac(2), Timestamp(0));
        let ttl = OBSERVED_BINDING_TTL.as_millis() as u64;
        assert_eq!(
            holder_from(&b, Timestamp(ttl - 1)).map(|h| h.evidence),
            Some(Evidence::Observed)
        );
        assert_eq!(holder_from(&b, Timestamp(ttl)), None);
    }

    #[test]
    fn config_by_address_only_while_installing() {
        use State::*;
        for (s, ok) in [
            (Unknown, false),
            (Discovered, false),
            (Registered, true),
            (Reprovision, true),
            (Booting, true),
            (Installing, true),
            (Installed, false),
            (Ready, false),
            (Failed, false),
        ] {
            assert_eq!(may_read_config(s), ok, "{s:?}");
        }
    }

    #[test]
    fn a_dhcpv6_lease_is_evidence_while_active_and_only_with_its_mac() {
        let store = inventory::MemoryStore::new();
        let ip: Ipv6Addr = "2001:2::1:5".parse().unwrap();
        let mut l = Lease6 {
            ip,
            duid: "000400b01a5a".into(),
            iaid: 1,
            mac: Some(mac(1)),
            expires: Timestamp(1_000),
            declined: false,
        };
        store.put_leases6(&[l.clone()]).unwrap();
        let h = holder_of_peer(&store, IpAddr::V6(ip), Timestamp(999))
            .unwrap()
            .expect("active");
        assert_eq!((h.mac, h.evidence), (mac(1), Evidence::Lease6));
        assert!(!is_machine(Some(h), mac(2)));
        assert_eq!(
            holder_of_peer(&store, IpAddr::V6(ip), Timestamp(1_000)).unwrap(),
            None,
            "expired"
        );
        let other: Ipv6Addr = "2001:2::1:6".parse().unwrap();
        assert_eq!(
            holder_of_peer(&store, IpAddr::V6(other), Timestamp(0)).unwrap(),
            None,
            "no lease"
        );
        l.declined = true;
        assert_eq!(
            holder6_from(&l, Timestamp(0)),
            None,
            "a quarantine is no one's"
        );
        l.declined = false;
        l.mac = None;
        assert_eq!(holder6_from(&l, Timestamp(0)), None, "MAC unknown");
        // An IPv4-mapped peer is looked up among the DHCPv4 leases, not the DHCPv6 ones.
        let mapped: IpAddr = "::ffff:198.18.0.9".parse().unwrap();
        assert_eq!(holder_of_peer(&store, mapped, Timestamp(0)).unwrap(), None);
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        assert_eq!(
            ipv4("::ffff:198.18.0.9".parse().unwrap()),
            Some(Ipv4Addr::new(198, 18, 0, 9))
        );
        assert_eq!(ipv4("2001:2::1".parse().unwrap()), None);
    }
}
