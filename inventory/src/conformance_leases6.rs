//! Conformance checks for DHCPv6 leases: the table, claims (one winner per address, also from
//! concurrent threads), quarantines of declined addresses and the by-client look-up.

use std::net::Ipv6Addr;
use std::sync::{Arc, Barrier};

use crate::{Claim6, Lease6, Store, Timestamp};

fn addr6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 1, i as u16)
}

fn lease6(i: u32, client: u32, expires: u64) -> Lease6 {
    Lease6 {
        ip: addr6(i),
        duid: format!("00030001525400{client:06x}"),
        iaid: 7,
        mac: Some(super::mac(client)),
        expires: Timestamp(expires),
        declined: false,
    }
}

/// put, remove, `leases6` ordered by address, `lease6_by_ip`.
pub fn leases6(s: Arc<dyn Store>) {
    assert!(s.leases6().unwrap().is_empty());
    s.put_leases6(&[lease6(3, 1, 9_000), lease6(1, 2, 9_000)])
        .unwrap();
    let all: Vec<Ipv6Addr> = s.leases6().unwrap().iter().map(|l| l.ip).collect();
    assert_eq!(all, vec![addr6(1), addr6(3)], "ordered by address");
    assert_eq!(s.lease6_by_ip(addr6(3)).unwrap(), Some(lease6(3, 1, 9_000)));
    assert_eq!(s.lease6_by_ip(addr6(2)).unwrap(), None);
    s.put_leases6(&[lease6(3, 4, 10_000)]).unwrap();
    assert_eq!(
        s.lease6_by_ip(addr6(3)).unwrap(),
        Some(lease6(3, 4, 10_000)),
        "put replaces"
    );
    s.remove_lease6(addr6(3)).unwrap();
    s.remove_lease6(addr6(9)).unwrap();
    assert_eq!(s.lease6_by_ip(addr6(3)).unwrap(), None);
    assert_eq!(s.leases6().unwrap().len(), 1);
}

/// Claims: free, held, renewed by the holder, expired; a quarantine blocks everyone (the
/// decliner too) until it ends; `lease6_by_client` finds only a live binding.
pub fn lease6_claims(s: Arc<dyn Store>) {
    let now = Timestamp(1_000);
    let a = lease6(1, 1, 5_000);
    assert_eq!(
        s.claim_leases6(std::slice::from_ref(&a), now).unwrap(),
        vec![Claim6::Granted]
    );
    let b = lease6(1, 2, 6_000);
    assert_eq!(
        s.claim_leases6(std::slice::from_ref(&b), now).unwrap(),
        vec![Claim6::Held(a.clone())],
        "says who holds it"
    );
    assert_eq!(s.lease6_by_ip(addr6(1)).unwrap(), Some(a.clone()));
    let renewed = lease6(1, 1, 8_000);
    assert_eq!(
        s.claim_leases6(std::slice::from_ref(&renewed), now)
            .unwrap(),
        vec![Claim6::Granted]
    );
    assert_eq!(
        s.lease6_by_client(&a.duid, 7, now).unwrap(),
        Some(renewed.clone())
    );
    assert_eq!(
        s.lease6_by_client(&a.duid, 8, now).unwrap(),
        None,
        "other IAID"
    );
    assert_eq!(
        s.lease6_by_client(&a.duid, 7, Timestamp(8_000)).unwrap(),
        None
    );
    // In one batch, a later claim sees an earlier one.
    let (c, d) = (lease6(2, 3, 9_000), lease6(2, 4, 9_000));
    assert_eq!(
        s.claim_leases6(&[c.clone(), d], now).unwrap(),
        vec![Claim6::Granted, Claim6::Held(c)]
    );
    // The holder declines: a quarantine nobody (not even the decliner) claims until it ends.
    let mut q = lease6(1, 1, 20_000);
    q.declined = true;
    q.mac = None;
    assert_eq!(
        s.claim_leases6(std::slice::from_ref(&q), now).unwrap(),
        vec![Claim6::Granted]
    );
    assert_eq!(
        s.lease6_by_client(&a.duid, 7, now).unwrap(),
        None,
        "not a binding"
    );
    for who in [1, 2] {
        assert_eq!(
            s.claim_leases6(&[lease6(1, who, 30_000)], now).unwrap(),
            vec![Claim6::Held(q.clone())]
        );
    }
    assert_eq!(
        s.claim_leases6(&[lease6(1, 2, 30_000)], Timestamp(20_000))
            .unwrap(),
        vec![Claim6::Granted],
        "free once the quarantine ends"
    );
    // A stranger's quarantine does not evict a live binding.
    let mut q2 = lease6(1, 5, 40_000);
    q2.declined = true;
    assert!(matches!(
        s.claim_leases6(&[q2], Timestamp(20_000)).unwrap()[0],
        Claim6::Held(_)
    ));
}

/// Eight threads claim the same 32 addresses for different clients: one winner each, stored.
pub fn concurrent_claims6_one_winner(s: Arc<dyn Store>) {
    const SERVERS: u32 = 8;
    const ADDRESSES: u32 = 32;
    let now = Timestamp(1_000);
    let start = Arc::new(Barrier::new(SERVERS as usize));
    let handles: Vec<_> = (0..SERVERS)
        .map(|server| {
            let (s, start) = (s.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut won = Vec::new();
                for k in 0..ADDRESSES {
                    let i = (k + server * 5) % ADDRESSES;
                    let want = lease6(i, 1_000 + server * ADDRESSES + i, 9_000);
                    if s.claim_leases6(std::slice::from_ref(&want), now).unwrap()[0]
                        == Claim6::Granted
                    {
                        won.push(want);
                    }
                }
                won
            })
        })
        .collect();
    let mut winners: Vec<Lease6> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    winners.sort_by_key(|l| l.ip);
    let ips: Vec<Ipv6Addr> = winners.iter().map(|l| l.ip).collect();
    assert_eq!(
        ips,
        (0..ADDRESSES).map(addr6).collect::<Vec<_>>(),
        "exactly one winner per address"
    );
    for w in winners {
        assert_eq!(
            s.lease6_by_ip(w.ip).unwrap(),
            Some(w),
            "the winner is stored"
        );
    }
}
