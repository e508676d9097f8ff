//! Conformance checks for leases, lease claims, events and the watch (see [`super`]).

#![allow(clippy::disallowed_methods)] // the watch is about waking in time: these checks measure it

use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::{mac, machine};
use crate::event::{EventKind, EventQuery, NewEvent};
use crate::{Claim, Lease, Mac, MachineSpec, Store, Timestamp};

fn lease(ip: Ipv4Addr, who: Mac, expires: u64) -> Lease {
    Lease {
        ip,
        mac: who,
        expires: Timestamp(expires),
        hostname: None,
        observed: false,
        client_id: None,
    }
}

fn addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 0)) + i)
}

fn note(i: u64) -> NewEvent {
    NewEvent::global(EventKind::Note {
        message: format!("n{i}"),
    })
}

/// `lease_by_mac`: the client's granted binding that is active now (the longest-lasting if it
/// holds several), never an expired, observed or since-reassigned one.
pub fn lease_by_mac(s: Arc<dyn Store>) {
    assert_eq!(s.lease_by_mac(mac(7), Timestamp(1)).unwrap(), None);
    let first = lease(addr(5), mac(7), 100);
    assert_eq!(s.claim_lease(&first, Timestamp(1)).unwrap(), Claim::Granted);
    assert_eq!(
        s.lease_by_mac(mac(7), Timestamp(50)).unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        s.lease_by_mac(mac(7), Timestamp(150)).unwrap(),
        None,
        "expired"
    );
    // The client moved (another server bound it a second address): the later binding wins.
    let second = lease(addr(6), mac(7), 200);
    assert_eq!(
        s.claim_lease(&second, Timestamp(2)).unwrap(),
        Claim::Granted
    );
    assert_eq!(s.lease_by_mac(mac(7), Timestamp(50)).unwrap(), Some(second));
    // An address that passed to another client after it expired is not the old client's.
    let (old, new) = (lease(addr(8), mac(9), 100), lease(addr(8), mac(10), 300));
    assert_eq!(s.claim_lease(&old, Timestamp(1)).unwrap(), Claim::Granted);
    assert_eq!(s.claim_lease(&new, Timestamp(150)).unwrap(), Claim::Granted);
    assert_eq!(s.lease_by_mac(mac(9), Timestamp(160)).unwrap(), None);
    assert_eq!(s.lease_by_mac(mac(10), Timestamp(160)).unwrap(), Some(new));
    // What a proxy-mode server observed is no binding of ours.
    let mut seen = lease(addr(9), mac(11), 300);
    seen.observed = true;
    s.put_leases(&[seen]).unwrap();
    assert_eq!(s.lease_by_mac(mac(11), Timestamp(10)).unwrap(), None);
}

/// `put_leases` writes as told (the caller decided); reads by address and in address order.
pub fn leases(s: Arc<dyn Store>) {
    s.put_leases(&[lease(addr(2), mac(1), 100), lease(addr(1), mac(2), 100)])
        .unwrap();
    let all = s.leases().unwrap();
    assert_eq!(
        all.iter().map(|l| l.ip).collect::<Vec<_>>(),
        [addr(1), addr(2)]
    );
    // Overwrites whatever the address held, even another client's active lease.
    let mut other = lease(addr(1), mac(3), 200);
    other.hostname = Some("h".into());
    other.client_id = Some("01aabb".into());
    s.put_leases(std::slice::from_ref(&other)).unwrap();
    assert_eq!(
        s.lease_by_ip(addr(1)).unwrap(),
        Some(other),
        "stored as given"
    );
    s.remove_lease(addr(1)).unwrap();
    assert_eq!(s.lease_by_ip(addr(1)).unwrap(), None);
    s.remove_lease(addr(9)).unwrap();
    assert_eq!(s.leases().unwrap().len(), 1);
}

/// The claim rule: free, expired, observed or the same client's → granted; another client's
/// active lease → held (nothing written); reserved for another machine → refused.
pub fn lease_claims(s: Arc<dyn Store>) {
    let now = Timestamp(1_000);
    let (a, b) = (mac(1), mac(2));
    assert_eq!(
        s.claim_lease(&lease(addr(1), a, 2_000), now).unwrap(),
        Claim::Granted
    );
    assert_eq!(
        s.lease_by_ip(addr(1)).unwrap().unwrap().mac,
        a,
        "free: written"
    );
    let held = s.claim_lease(&lease(addr(1), b, 3_000), now).unwrap();
    assert_eq!(
        held,
        Claim::Held(lease(addr(1), a, 2_000)),
        "says who holds it"
    );
    assert_eq!(
        s.lease_by_ip(addr(1)).unwrap().unwrap().mac,
        a,
        "held: not written"
    );
    // Renewal by the holder extends it.
    assert_eq!(
        s.claim_lease(&lease(addr(1), a, 5_000), now).unwrap(),
        Claim::Granted
    );
    assert_eq!(
        s.lease_by_ip(addr(1)).unwrap().unwrap().expires,
        Timestamp(5_000)
    );
    // Expired: anyone may take it.
    let later = Timestamp(5_000);
    assert_eq!(
        s.claim_lease(&lease(addr(1), b, 9_000), later).unwrap(),
        Claim::Granted
    );
    assert_eq!(s.lease_by_ip(addr(1)).unwrap().unwrap().mac, b);
    // Observed (proxy mode) bindings never block and are replaced.
    let mut seen = lease(addr(2), a, 9_000);
    seen.observed = true;
    assert_eq!(s.claim_lease(&seen, now).unwrap(), Claim::Granted);
    assert_eq!(
        s.claim_lease(&lease(addr(2), b, 9_000), now).unwrap(),
        Claim::Granted
    );
    let now_held = s.lease_by_ip(addr(2)).unwrap().unwrap();
    assert_eq!(
        (now_held.mac, now_held.observed),
        (b, false),
        "replaced by the claim"
    );
    // …but an observed binding cannot displace a granted one.
    let mut seen = lease(addr(2), a, 9_000);
    seen.observed = true;
    assert!(matches!(s.claim_lease(&seen, now).unwrap(), Claim::Held(_)));
    // Client identifiers: the same identifier is the same client on any MAC; another
    // identifier on the same MAC is another client.
    let with_id = |who, id: &str| Lease {
        client_id: Some(id.into()),
        ..lease(addr(3), who, 9_000)
    };
    assert_eq!(
        s.claim_lease(&with_id(a, "01aa"), now).unwrap(),
        Claim::Granted
    );
    assert_eq!(
        s.claim_lease(&with_id(b, "01aa"), now).unwrap(),
        Claim::Granted
    );
    assert!(matches!(
        s.claim_lease(&with_id(b, "01bb"), now).unwrap(),
        Claim::Held(_)
    ));
    // A reservation: only its machine may claim the address.
    let spec = MachineSpec {
        ip: Some(addr(4)),
        ..Default::default()
    };
    s.create_machines(vec![machine(7, spec)], "operator", now)
        .unwrap();
    let refused = s.claim_lease(&lease(addr(4), a, 9_000), now).unwrap();
    assert_eq!(refused, Claim::Reserved { owner: mac(7) });
    assert_eq!(
        s.lease_by_ip(addr(4)).unwrap(),
        None,
        "refused: not written"
    );
    assert_eq!(
        s.claim_lease(&lease(addr(4), mac(7), 9_000), now).unwrap(),
        Claim::Granted
    );
    // A batch is applied in order, one outcome per claim.
    let batch = [
        lease(addr(5), a, 9_000),
        lease(addr(5), b, 9_000),
        lease(addr(6), b, 9_000),
    ];
    let out = s.claim_leases(&batch, now).unwrap();
    assert_eq!(out[0], Claim::Granted);
    assert_eq!(out[1], Claim::Held(batch[0].clone()));
    assert_eq!(out[2], Claim::Granted);
    assert!(s.claim_leases(&[], now).unwrap().is_empty());
}

/// Many threads (servers sharing the store) claim the same addresses at once, each for its
/// own client: every address ends with exactly one winner, and the stored lease is the
/// winner's.
pub fn concurrent_claims_one_winner(s: Arc<dyn Store>) {
    const SERVERS: u32 = 8;
    const ADDRESSES: u32 = 64;
    let now = Timestamp(1_000);
    let start = Arc::new(Barrier::new(SERVERS as usize));
    let handles: Vec<_> = (0..SERVERS)
        .map(|server| {
            let (s, start) = (s.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut won = Vec::new();
                for k in 0..ADDRESSES {
                    // Each server walks the addresses from its own offset; half claim one at a
                    // time, half in batches of 4.
                    let i = (k + server * 7) % ADDRESSES;
                    let client = mac(1_000 + server * ADDRESSES + i);
                    let want = lease(addr(i), client, 9_000);
                    let out = if server % 2 == 0 || k % 4 != 0 {
                        vec![s.claim_lease(&want, now).unwrap()]
                    } else {
                        s.claim_leases(&[want.clone(), want], now).unwrap()
                    };
                    if out[0] == Claim::Granted {
                        won.push((addr(i), client));
                    }
                }
                won
            })
        })
        .collect();
    let mut winners: Vec<(Ipv4Addr, Mac)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    winners.sort();
    let per_address: Vec<Ipv4Addr> = winners.iter().map(|w| w.0).collect();
    let expected: Vec<Ipv4Addr> = (0..ADDRESSES).map(addr).collect();
    assert_eq!(per_address, expected, "exactly one winner per address");
    for (ip, client) in winners {
        assert_eq!(
            s.lease_by_ip(ip).unwrap().unwrap().mac,
            client,
            "{ip}: the winner's"
        );
    }
}

/// Sequence numbers: from 1, gap-free, strictly increasing, across concurrent writers of all
/// kinds; readable by machine, after a sequence number, with a limit.
pub fn events_numbered_gap_free(s: Arc<dyn Store>) {
    const WRITERS: u64 = 4;
    const ROUNDS: u64 = 25;
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for r in 0..ROUNDS {
                    let batch = (0..1 + r % 3)
                        .map(|i| note(w * 1_000 + r * 10 + i))
                        .collect();
                    mine.extend(s.append_events(batch, Timestamp(r)).unwrap());
                    let m = machine((w * ROUNDS + r) as u32, Default::default());
                    mine.extend(s.create_machines(vec![m], "test", Timestamp(r)).unwrap());
                }
                mine
            })
        })
        .collect();
    let mut returned: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    returned.sort_by_key(|e| e.seq);
    let all = s.events(&EventQuery::default()).unwrap();
    assert_eq!(all, returned, "what writers were told is what is stored");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "1, 2, 3… no gaps"
    );
    assert_eq!(s.last_event_seq().unwrap(), all.len() as u64);
    let one = mac(3);
    let of_one = s
        .events(&EventQuery {
            mac: Some(one),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(of_one.len(), 1);
    assert!(of_one.iter().all(|e| e.mac == Some(one)));
    let page = s
        .events(&EventQuery {
            after: 10,
            mac: None,
            limit: Some(5),
        })
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );
    let beyond = EventQuery {
        after: 1_000_000,
        ..Default::default()
    };
    assert!(s.events(&beyond).unwrap().is_empty());
}

/// The watch: returns at once when newer events exist, times out otherwise, and wakes a
/// blocked follower when another writer commits.
pub fn watch(s: Arc<dyn Store>) {
    assert_eq!(
        s.wait_for_events_after(0, Duration::from_millis(30))
            .unwrap(),
        0,
        "timeout"
    );
    s.append_events(vec![note(1), note(2)], Timestamp(1))
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        s.wait_for_events_after(0, Duration::from_secs(30)).unwrap(),
        2
    );
    assert_eq!(
        s.wait_for_events_after(1, Duration::from_secs(30)).unwrap(),
        2
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "newer events: no wait"
    );
    let got = s.events_after(1, 10, Duration::from_secs(30)).unwrap();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    assert!(s
        .events_after(2, 10, Duration::from_millis(30))
        .unwrap()
        .is_empty());
    // A follower blocked on seq 2 wakes when another thread commits.
    let follower = {
        let s = s.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let events = s.events_after(2, 10, Duration::from_secs(30)).unwrap();
            (events, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    s.create_machines(vec![machine(1, Default::default())], "test", Timestamp(2))
        .unwrap();
    let (events, waited) = follower.join().unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
    assert_eq!(events[0].mac, Some(mac(1)));
    assert!(
        waited < Duration::from_secs(5),
        "woken by the commit, not the timeout: {waited:?}"
    );
    // A write without events (a lease, a token) does not wake anyone.
    s.claim_lease(&lease(addr(1), mac(1), 9), Timestamp(1))
        .unwrap();
    assert_eq!(
        s.wait_for_events_after(3, Duration::from_millis(30))
            .unwrap(),
        3
    );
}

/// Every committed change to a machine record appends at least one event naming its MAC (an
/// edit that returns no event gets `updated`), and an edit that changes nothing appends none:
/// followers of the feed (in-memory views) never miss a change.
pub fn every_change_is_named(s: Arc<dyn Store>) {
    s.create_machines(vec![machine(1, Default::default())], "test", Timestamp(1))
        .unwrap();
    let before = s.last_event_seq().unwrap();
    let (_, events) = s
        .update_machine(mac(1), Timestamp(2), &mut |m| {
            m.arch = Some(7);
            Ok(vec![])
        })
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].mac, &events[0].kind),
        (Some(mac(1)), &EventKind::Updated)
    );
    assert_eq!(s.last_event_seq().unwrap(), before + 1);
    let (_, none) = s
        .update_machine(mac(1), Timestamp(3), &mut |_| Ok(vec![]))
        .unwrap();
    assert!(none.is_empty(), "no change, no event: {none:?}");
    assert_eq!(s.last_event_seq().unwrap(), before + 1);
}
