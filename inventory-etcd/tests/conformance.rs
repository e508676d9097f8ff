#![allow(clippy::disallowed_methods)] // the tests measure how long a follower waited
//! The store conformance suite and the two-handle race against a real single-member etcd,
//! started by each test (see `inventory_etcd::test_server`).

use std::sync::{Arc, Barrier};

use inventory::event::{EventQuery, NewEvent};
use inventory::{Claim, EventKind, Lease, Mac, Store, Timestamp};
use inventory_etcd::test_server::EtcdServer;
use inventory_etcd::{EtcdSettings, EtcdStore};

fn open(server: &EtcdServer, prefix: &str) -> EtcdStore {
    let mut settings = EtcdSettings::new(vec![server.endpoint.clone()]);
    settings.prefix = prefix.into();
    EtcdStore::open(&settings).expect("opening the etcd store")
}

#[test]
fn etcd_store_passes_the_conformance_suite() {
    // One member for the whole suite; each check gets its own empty prefix.
    let server = EtcdServer::start();
    let next = std::sync::atomic::AtomicU32::new(0);
    inventory::conformance::run_all(|| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (open(&server, &format!("/conformance/{n}/")), ())
    });
}

/// Two stores (two servers) on one etcd race for the same addresses from two threads: exactly
/// one wins each address, and both read the same gap-free event sequence.
#[test]
fn two_handles_race_claims_and_share_one_event_order() {
    const ADDRESSES: u32 = 60;
    let server = EtcdServer::start();
    let stores = [open(&server, "/race/"), open(&server, "/race/")].map(Arc::new);
    let start = Arc::new(Barrier::new(2));
    let now = Timestamp(1_000);
    let handles: Vec<_> = (0..2u32)
        .map(|side| {
            let (s, start) = (stores[side as usize].clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut won = Vec::new();
                for i in 0..ADDRESSES {
                    let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
                    let client = Mac::new([0x52, 0x54, 0, side as u8, 0, i as u8]);
                    let want = Lease {
                        ip,
                        mac: client,
                        expires: Timestamp(9_000),
                        hostname: None,
                        observed: false,
                        client_id: None,
                    };
                    if s.claim_lease(&want, now).unwrap() == Claim::Granted {
                        won.push((ip, client));
                        let note = EventKind::Note {
                            message: format!("{ip} to {client}"),
                        };
                        s.append_events(vec![NewEvent::global(note)], now).unwrap();
                    }
                }
                won
            })
        })
        .collect();
    let mut winners: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    winners.sort();
    let ips: Vec<_> = winners.iter().map(|w| w.0).collect();
    let all: Vec<_> = (0..ADDRESSES)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i))
        .collect();
    assert_eq!(ips, all, "exactly one winner per address");
    for (ip, client) in &winners {
        for s in &stores {
            assert_eq!(s.lease_by_ip(*ip).unwrap().unwrap().mac, *client);
        }
    }
    let a = stores[0].events(&EventQuery::default()).unwrap();
    let b = stores[1].events(&EventQuery::default()).unwrap();
    assert_eq!(a, b, "one history, read from either server");
    let seqs: Vec<u64> = a.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=u64::from(ADDRESSES)).collect::<Vec<_>>(),
        "gap-free"
    );
    assert_eq!(stores[1].last_event_seq().unwrap(), u64::from(ADDRESSES));
}

/// A follower on one store is woken by a commit on another (etcd's watch, not polling).
#[test]
fn another_handles_commit_wakes_a_follower() {
    let server = EtcdServer::start();
    let (a, b) = (Arc::new(open(&server, "/wake/")), open(&server, "/wake/"));
    let follower = {
        let a = a.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let got = a.wait_for_events_after(0, std::time::Duration::from_secs(20));
            (got.unwrap(), started.elapsed())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    b.append_events(
        vec![NewEvent::global(EventKind::Note {
            message: "hello".into(),
        })],
        Timestamp(1),
    )
    .unwrap();
    let (seq, waited) = follower.join().unwrap();
    assert_eq!(seq, 1);
    assert!(
        waited < std::time::Duration::from_millis(900),
        "woken by the watch, well before the 1 s re-check: {waited:?}"
    );
}
