use super::*;
use std::collections::HashMap;

fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac::new([0x52, 0x54, b[0], b[1], b[2], b[3]])
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// 198.18.0.0/24 with the dynamic range .100-.103.
fn pool() -> Pool {
    Pool::new(
        ip("198.18.0.0"),
        24,
        ip("198.18.0.100"),
        ip("198.18.0.103"),
        PoolTimes::default(),
    )
}

fn none() -> HashMap<Ipv4Addr, Mac> {
    HashMap::new()
}

const T0: Timestamp = Timestamp(1_000_000);

fn at(secs: u64) -> Timestamp {
    T0.saturating_add(Duration::from_secs(secs))
}

#[test]
fn discover_request_binds_and_is_sticky() {
    let mut p = pool();
    let r = none();
    let a = p.offer(mac(1), None, &r, T0).unwrap();
    assert_eq!(a, ip("198.18.0.100"));
    let b = p.offer(mac(2), None, &r, T0).unwrap();
    assert_eq!(
        b,
        ip("198.18.0.101"),
        "an offered address is held for its offer"
    );
    let lease = p.request(mac(1), a, &r, T0).unwrap();
    assert_eq!(lease.expires, at(3600));
    // Asking again, even after expiry, gives the same address if still free.
    assert_eq!(p.offer(mac(1), None, &r, at(10_000)), Some(a));
    // Renewing extends.
    assert_eq!(
        p.request(mac(1), a, &r, at(1800)).unwrap().expires,
        at(5400)
    );
}

#[test]
fn requested_address_is_honoured_when_free() {
    let mut p = pool();
    let r = none();
    assert_eq!(
        p.offer(mac(1), Some(ip("198.18.0.102")), &r, T0),
        Some(ip("198.18.0.102"))
    );
    // Taken or outside the range: the next free one instead.
    assert_eq!(
        p.offer(mac(2), Some(ip("198.18.0.102")), &r, T0),
        Some(ip("198.18.0.100"))
    );
    assert_eq!(
        p.offer(mac(3), Some(ip("198.18.0.7")), &r, T0),
        Some(ip("198.18.0.101"))
    );
}

#[test]
fn reservations_are_given_to_their_owner_only() {
    let mut p = pool();
    let mut r = none();
    r.insert(ip("198.18.0.100"), mac(9)); // inside the range
    r.insert(ip("198.18.0.20"), mac(8)); // outside the range, inside the subnet
    assert_eq!(
        p.offer(mac(1), Some(ip("198.18.0.100")), &r, T0),
        Some(ip("198.18.0.101"))
    );
    assert_eq!(p.offer(mac(9), None, &r, T0), Some(ip("198.18.0.100")));
    assert_eq!(p.offer(mac(8), None, &r, T0), Some(ip("198.18.0.20")));
    assert!(p.request(mac(8), ip("198.18.0.20"), &r, T0).is_ok());
    assert_eq!(
        p.request(mac(1), ip("198.18.0.100"), &r, T0),
        Err(Refusal::ReservedForOther {
            ip: ip("198.18.0.100"),
            owner: mac(9)
        })
    );
    assert_eq!(
        p.request(mac(8), ip("198.18.0.102"), &r, T0),
        Err(Refusal::NotItsReservation {
            ip: ip("198.18.0.102"),
            reserved: ip("198.18.0.20")
        })
    );
}

#[test]
fn requests_for_wrong_or_taken_addresses_are_refused() {
    let mut p = pool();
    let r = none();
    assert_eq!(
        p.request(mac(1), ip("198.19.0.100"), &r, T0),
        Err(Refusal::WrongSubnet {
            ip: ip("198.19.0.100")
        })
    );
    assert_eq!(
        p.request(mac(1), ip("198.18.0.5"), &r, T0),
        Err(Refusal::OutsideRange {
            ip: ip("198.18.0.5")
        })
    );
    p.request(mac(1), ip("198.18.0.100"), &r, T0).unwrap();
    assert_eq!(
        p.request(mac(2), ip("198.18.0.100"), &r, at(10)),
        Err(Refusal::Taken {
            ip: ip("198.18.0.100"),
            holder: mac(1)
        })
    );
    // After the lease ends, someone else may have it.
    assert!(p.request(mac(2), ip("198.18.0.100"), &r, at(3600)).is_ok());
}

#[test]
fn release_frees_and_decline_quarantines() {
    let mut p = pool();
    let r = none();
    let a = p.offer(mac(1), None, &r, T0).unwrap();
    p.request(mac(1), a, &r, T0).unwrap();
    assert!(!p.release(mac(2), a), "only the holder releases");
    assert!(p.release(mac(1), a));
    assert_eq!(
        p.offer(mac(2), Some(a), &r, T0),
        Some(a),
        "free again once released"
    );

    let mut p = pool();
    assert!(
        !p.decline(mac(1), ip("198.18.0.100"), T0),
        "nobody offered it to mac 1"
    );
    assert_eq!(p.offer(mac(1), None, &r, T0), Some(ip("198.18.0.100")));
    assert!(p.decline(mac(1), ip("198.18.0.100"), T0));
    assert_eq!(
        p.offer(mac(1), None, &r, at(1)),
        Some(ip("198.18.0.101")),
        "quarantined, even for the decliner"
    );
    assert!(matches!(
        p.request(mac(3), ip("198.18.0.100"), &r, at(1)),
        Err(Refusal::Taken { .. })
    ));
    assert_eq!(
        p.offer(mac(4), Some(ip("198.18.0.100")), &r, at(600)),
        Some(ip("198.18.0.100")),
        "back after quarantine"
    );
}

#[test]
fn exhaustion_and_unanswered_offers() {
    let mut p = pool();
    let r = none();
    for i in 0..4 {
        assert!(p.offer(mac(i), None, &r, T0).is_some());
    }
    assert_eq!(p.offer(mac(99), None, &r, T0), None, "range of 4 exhausted");
    assert_eq!(p.utilization(T0), (4, 4));
    // Offers that were never requested lapse after the offer time.
    assert!(p.offer(mac(99), None, &r, at(60)).is_some());
}

#[test]
fn a_storm_of_random_macs_does_not_grow_state_beyond_the_range() {
    let mut p = pool();
    let r = none();
    for i in 0..10_000u32 {
        let _ = p.offer(mac(1000 + i), None, &r, at(u64::from(i)));
        p.sweep(at(u64::from(i)));
        assert!(
            p.entries.len() <= 4 && p.by_key.len() <= 4,
            "state grew at {i}"
        );
    }
}

#[test]
fn restore_keeps_live_bindings() {
    let mut p = pool();
    let leases = [
        Lease {
            ip: ip("198.18.0.101"),
            mac: mac(1),
            expires: at(100),
            hostname: None,
            observed: false,
            client_id: None,
        },
        Lease {
            ip: ip("198.18.0.102"),
            mac: mac(2),
            expires: at(0),
            hostname: None,
            observed: false,
            client_id: None,
        },
    ];
    p.restore(&leases, at(1), &|_| false);
    let r = none();
    assert_eq!(p.offer(mac(1), None, &r, at(2)), Some(ip("198.18.0.101")));
    assert_eq!(
        p.offer(mac(3), Some(ip("198.18.0.101")), &r, at(2)),
        Some(ip("198.18.0.100"))
    );
    assert_eq!(
        p.offer(mac(4), Some(ip("198.18.0.102")), &r, at(2)),
        Some(ip("198.18.0.102")),
        "expired lease not restored"
    );
}

#[test]
fn allocation_stays_fast_with_a_large_busy_range() {
    // 198.18.0.0/15 with 100,000 dynamic addresses: 50,000 clients each get one quickly.
    let mut p = Pool::new(
        ip("198.18.0.0"),
        15,
        ip("198.18.0.1"),
        Ipv4Addr::from(u32::from(ip("198.18.0.1")) + 99_999),
        PoolTimes::default(),
    );
    let r = none();
    for i in 0..50_000 {
        let a = p.offer(mac(i), None, &r, T0).expect("free address");
        p.request(mac(i), a, &r, T0).unwrap();
    }
    assert_eq!(p.utilization(T0), (50_000, 100_000));
}

#[test]
fn a_storm_without_sweeping_stays_bounded_too() {
    // The server does not sweep on every packet: reuse of an address must drop the old claim.
    let mut p = pool();
    let r = none();
    for i in 0..10_000u32 {
        let _ = p.offer(mac(50_000 + i), None, &r, at(u64::from(i) * 61));
        assert!(
            p.entries.len() <= 4 && p.by_key.len() <= 4,
            "state grew at {i}: {} {}",
            p.entries.len(),
            p.by_key.len()
        );
    }
}
