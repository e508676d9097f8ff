//! The store conformance suite: one set of checks every [`Store`] backend must pass, so that
//! servers (and their tests) can rely on the contract in [`crate::store`] whatever the backend.
//! Run against [`crate::RedbStore`] and [`crate::MemoryStore`] by this crate's tests; a new
//! backend runs it from its own tests with the `conformance` feature:
//!
//! ```ignore
//! inventory::conformance::run_all(|| (MyStore::connect(..), guard));
//! ```
//!
//! Each check gets a fresh, empty store from the constructor; the second value it returns (a
//! temporary directory, a server process…) is kept alive until the check ends. Checks panic
//! with a message naming what broke.
//!
//! # Layout
//! - this file: machines, batches, reservations, UUIDs, the machine-id index, profiles, tokens,
//!   logs;
//! - `conformance_feeds.rs`: leases and claims (also from concurrent threads), events, the watch.
//! - `conformance_leases6.rs`: DHCPv6 leases, claims and quarantines.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::event::{EventKind, EventQuery};
use crate::lifecycle::{Lifecycle, State, Transition};
use crate::log::{NewLogLine, MAX_LINES_PER_MACHINE};
use crate::{
    Error, Lease, Mac, Machine, MachineSpec, Profile, Registration, Store, Timestamp, TokenRecord,
    TokenRole,
};

#[path = "conformance_feeds.rs"]
mod feeds;
#[path = "conformance_leases6.rs"]
mod leases6;

/// One check of the suite: takes a fresh, empty store.
pub type Check = fn(Arc<dyn Store>);

/// Every check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[(&str, Check)] = &[
    ("machines_crud", machines_crud),
    ("batches_are_all_or_nothing", batches_are_all_or_nothing),
    ("reservations", reservations),
    ("uuids_are_unique", uuids_are_unique),
    ("machine_id_index", machine_id_index),
    ("profiles", profiles),
    ("tokens", tokens),
    ("logs", logs),
    ("leases", feeds::leases),
    ("lease_claims", feeds::lease_claims),
    ("lease_by_mac", feeds::lease_by_mac),
    (
        "concurrent_claims_one_winner",
        feeds::concurrent_claims_one_winner,
    ),
    ("leases6", leases6::leases6),
    ("lease6_claims", leases6::lease6_claims),
    (
        "concurrent_claims6_one_winner",
        leases6::concurrent_claims6_one_winner,
    ),
    ("events_numbered_gap_free", feeds::events_numbered_gap_free),
    ("watch", feeds::watch),
    ("every_change_is_named", feeds::every_change_is_named),
];

/// Runs every check in [`CHECKS`] on a fresh store from `new_store`, printing each name to
/// stderr first (so a failure says which check broke).
pub fn run_all<S: Store, K>(new_store: impl Fn() -> (S, K)) {
    for (name, check) in CHECKS {
        eprintln!("store conformance: {name}");
        let (store, keep) = new_store();
        check(Arc::new(store));
        drop(keep);
    }
}

/// A MAC of the suite: `52:54:00:00:00:i`-like, unique per `i`.
pub(crate) fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac::new([0x52, 0x54, b[0], b[1], b[2], b[3]])
}

fn machine(i: u32, spec: MachineSpec) -> Machine {
    Machine::registered(mac(i), spec, Timestamp(1))
}

fn with_uuid(i: u32, uuid: &str) -> Machine {
    let uuid = Some(uuid.into());
    machine(
        i,
        MachineSpec {
            uuid,
            ..Default::default()
        },
    )
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn profile(name: &str) -> Profile {
    Profile {
        name: name.into(),
        ..Default::default()
    }
}

fn macs(ms: &[Machine]) -> Vec<Mac> {
    ms.iter().map(|m| m.mac).collect()
}

/// Create, read, update, delete; errors for missing and duplicate machines.
pub fn machines_crud(s: Arc<dyn Store>) {
    let spec = MachineSpec {
        hostname: Some("node-2".into()),
        ..Default::default()
    };
    let ev = s
        .create_machines(
            vec![machine(2, spec), machine(1, Default::default())],
            "import",
            Timestamp(1),
        )
        .unwrap();
    assert_eq!(ev.len(), 2, "one created event per machine");
    assert!(matches!(&ev[0].kind, EventKind::Created { by } if by == "import"));
    assert_eq!(
        macs(&s.machines().unwrap()),
        vec![mac(1), mac(2)],
        "ordered by MAC"
    );
    let m2 = s.machine(mac(2)).unwrap().expect("created");
    assert_eq!(m2.spec.hostname.as_deref(), Some("node-2"));
    let (m, ev) = s
        .update_machine(mac(2), Timestamp(2), &mut |m| {
            m.spec.hostname = Some("renamed".into());
            Ok(vec![EventKind::Updated])
        })
        .unwrap();
    assert_eq!(m.spec.hostname.as_deref(), Some("renamed"));
    assert_eq!(
        (ev.len(), ev[0].mac, ev[0].at),
        (1, Some(mac(2)), Timestamp(2))
    );
    assert_eq!(s.machine(mac(2)).unwrap().unwrap(), m, "update stored");
    // An edit that changes nothing writes nothing.
    let (_, ev) = s
        .update_machine(mac(2), Timestamp(3), &mut |_| Ok(vec![]))
        .unwrap();
    assert!(ev.is_empty());
    assert_eq!(s.last_event_seq().unwrap(), 3);
    let ev = s.delete_machine(mac(2), Timestamp(4)).unwrap();
    assert_eq!(ev[0].kind, EventKind::Deleted);
    assert!(s.machine(mac(2)).unwrap().is_none());
    let missing = s.delete_machine(mac(2), Timestamp(5)).unwrap_err();
    assert!(
        matches!(missing, Error::MachineNotFound { .. }),
        "{missing}"
    );
    let missing = s
        .update_machine(mac(9), Timestamp(5), &mut |_| Ok(vec![]))
        .unwrap_err();
    assert!(
        matches!(missing, Error::MachineNotFound { .. }),
        "{missing}"
    );
    let dup = s
        .create_machines(
            vec![machine(1, Default::default())],
            "operator",
            Timestamp(5),
        )
        .unwrap_err();
    assert!(matches!(dup, Error::MachineExists { .. }), "{dup}");
    assert_eq!(
        s.last_event_seq().unwrap(),
        4,
        "refused writes leave no events"
    );
}

/// A batch with any bad machine, and an edit that fails, change nothing at all.
pub fn batches_are_all_or_nothing(s: Arc<dyn Store>) {
    s.create_machines(
        vec![machine(1, Default::default())],
        "operator",
        Timestamp(1),
    )
    .unwrap();
    let unknown_profile = MachineSpec {
        profile: Some("nope".into()),
        ..Default::default()
    };
    let bad_batches = [
        vec![
            machine(2, Default::default()),
            machine(1, Default::default()),
        ],
        vec![
            machine(3, Default::default()),
            machine(3, Default::default()),
        ],
        vec![machine(4, Default::default()), machine(5, unknown_profile)],
        vec![with_uuid(6, "u-1"), with_uuid(7, "u-1")],
    ];
    for batch in bad_batches {
        assert!(s.create_machines(batch, "import", Timestamp(2)).is_err());
        assert_eq!(
            macs(&s.machines().unwrap()),
            vec![mac(1)],
            "nothing applied"
        );
        assert!(
            s.machine_by_uuid("u-1").unwrap().is_none(),
            "no index entry left"
        );
        assert_eq!(
            s.last_event_seq().unwrap(),
            1,
            "no events of a failed batch"
        );
    }
    let err = s
        .update_machine(mac(1), Timestamp(3), &mut |m| {
            m.spec.hostname = Some("half".into());
            Ok(vec![m.transition(&Transition::Ready, Timestamp(3))?])
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::IllegalTransition {
                from: State::Registered,
                ..
            }
        ),
        "{err}"
    );
    let m = s.machine(mac(1)).unwrap().unwrap();
    assert_eq!((m.state(), m.spec.hostname), (State::Registered, None));
    assert_eq!(s.last_event_seq().unwrap(), 1);
}

/// One machine per reserved address; a reservation never lands on an address another client
/// holds right now (an observed binding or an expired lease does not count).
pub fn reservations(s: Arc<dyn Store>) {
    let with_ip = |i, a: &str| {
        machine(
            i,
            MachineSpec {
                ip: Some(ip(a)),
                ..Default::default()
            },
        )
    };
    s.create_machines(vec![with_ip(1, "198.18.0.10")], "operator", Timestamp(1))
        .unwrap();
    assert_eq!(
        s.reservation_owner(ip("198.18.0.10")).unwrap(),
        Some(mac(1))
    );
    let err = s
        .create_machines(vec![with_ip(2, "198.18.0.10")], "operator", Timestamp(1))
        .unwrap_err();
    assert!(matches!(&err, Error::IpReserved { holder, .. } if *holder == mac(1).to_string()));
    // Moving a reservation frees the old address.
    s.update_machine(mac(1), Timestamp(2), &mut |m| {
        m.spec.ip = Some(ip("198.18.0.11"));
        Ok(vec![EventKind::Updated])
    })
    .unwrap();
    assert_eq!(s.reservation_owner(ip("198.18.0.10")).unwrap(), None);
    s.create_machines(vec![with_ip(2, "198.18.0.10")], "operator", Timestamp(3))
        .unwrap();
    s.delete_machine(mac(1), Timestamp(4)).unwrap();
    assert_eq!(
        s.reservation_owner(ip("198.18.0.11")).unwrap(),
        None,
        "delete frees it"
    );
    // Leases: another client's active lease refuses; observed or expired ones do not.
    let lease = |a: &str, who: u32, expires: u64, observed: bool| Lease {
        ip: ip(a),
        mac: mac(who),
        expires: Timestamp(expires),
        hostname: None,
        observed,
        client_id: None,
    };
    s.put_leases(&[
        lease("198.18.0.20", 50, 100, false),
        lease("198.18.0.21", 51, 100, true),
        lease("198.18.0.22", 52, 10, false),
    ])
    .unwrap();
    let err = s
        .create_machines(vec![with_ip(3, "198.18.0.20")], "operator", Timestamp(50))
        .unwrap_err();
    assert!(
        matches!(&err, Error::IpLeased { holder, until, .. } if *holder == mac(50).to_string() && *until == Timestamp(100)),
        "{err}"
    );
    s.create_machines(
        vec![with_ip(3, "198.18.0.21"), with_ip(4, "198.18.0.22")],
        "operator",
        Timestamp(50),
    )
    .unwrap();
    // The holder itself may be given its leased address.
    s.create_machines(vec![with_ip(50, "198.18.0.20")], "operator", Timestamp(50))
        .unwrap();
}

/// A UUID names one machine; a discovered record yields it to an operator's machine.
pub fn uuids_are_unique(s: Arc<dyn Store>) {
    const U: &str = "4c4c4544-0042-3510-8052-b4c04f4b4e31";
    const V: &str = "00000000-0000-0000-0000-000000000002";
    s.create_machines(vec![with_uuid(1, U), with_uuid(2, V)], "test", Timestamp(1))
        .unwrap();
    assert_eq!(s.machine_by_uuid(U).unwrap().unwrap().mac, mac(1));
    let err = s
        .create_machines(vec![with_uuid(3, U)], "test", Timestamp(1))
        .unwrap_err();
    assert!(
        matches!(&err, Error::UuidTaken { uuid, holder } if uuid == U && *holder == mac(1).to_string())
    );
    let err = s
        .update_machine(mac(2), Timestamp(2), &mut |m| {
            m.spec.uuid = Some(U.into());
            Ok(vec![])
        })
        .unwrap_err();
    assert!(matches!(err, Error::UuidTaken { .. }), "{err}");
    assert_eq!(
        s.machine_by_uuid(V).unwrap().unwrap().mac,
        mac(2),
        "unchanged"
    );
    // Letting go frees it; deleting too.
    s.update_machine(mac(1), Timestamp(3), &mut |m| {
        m.spec.uuid = None;
        Ok(vec![])
    })
    .unwrap();
    assert!(s.machine_by_uuid(U).unwrap().is_none());
    s.delete_machine(mac(2), Timestamp(4)).unwrap();
    assert!(s.machine_by_uuid(V).unwrap().is_none());
    // A discovered record holding U: another discovered one is refused, an operator's wins.
    let discovered = |i| {
        let mut m = with_uuid(i, U);
        m.lifecycle = Lifecycle::new(State::Discovered, Timestamp(5));
        m
    };
    s.create_machines(vec![discovered(9)], "discover", Timestamp(5))
        .unwrap();
    let err = s
        .create_machines(vec![discovered(8)], "discover", Timestamp(5))
        .unwrap_err();
    assert!(matches!(err, Error::UuidTaken { .. }), "{err}");
    let ev = s
        .create_machines(vec![with_uuid(11, U)], "operator", Timestamp(6))
        .unwrap();
    assert_eq!(s.machine_by_uuid(U).unwrap().unwrap().mac, mac(11));
    assert_eq!(s.machine(mac(9)).unwrap().unwrap().spec.uuid, None);
    assert!(ev.iter().any(|e| e.mac == Some(mac(9))
        && matches!(&e.kind, EventKind::Note { message } if message.contains("no longer claims"))));
}

/// Machines by registration machine-id: several per id (clones), kept current by every write.
pub fn machine_id_index(s: Arc<dyn Store>) {
    let register = |m: &mut Machine, id: &str| {
        m.registration = Some(Registration {
            machine_id: id.into(),
            hostname: String::new(),
            agent_version: String::new(),
            addresses: Vec::new(),
            boot_state: "active_boot".into(),
            at: Timestamp(2),
        });
    };
    let mut pre = machine(3, Default::default());
    register(&mut pre, "clone");
    let batch = vec![
        machine(2, Default::default()),
        machine(1, Default::default()),
        pre,
    ];
    s.create_machines(batch, "import", Timestamp(1)).unwrap();
    assert_eq!(
        macs(&s.machines_by_machine_id("clone").unwrap()),
        vec![mac(3)],
        "on create"
    );
    for i in [2, 1] {
        s.update_machine(mac(i), Timestamp(2), &mut |m| {
            register(m, "clone");
            Ok(vec![])
        })
        .unwrap();
    }
    let found = s.machines_by_machine_id("clone").unwrap();
    assert_eq!(
        macs(&found),
        vec![mac(1), mac(2), mac(3)],
        "every holder, by MAC"
    );
    assert!(found[0].registration.is_some(), "whole records");
    s.update_machine(mac(2), Timestamp(3), &mut |m| {
        register(m, "own");
        Ok(vec![])
    })
    .unwrap();
    assert_eq!(
        macs(&s.machines_by_machine_id("own").unwrap()),
        vec![mac(2)]
    );
    assert_eq!(
        macs(&s.machines_by_machine_id("clone").unwrap()),
        vec![mac(1), mac(3)]
    );
    s.update_machine(mac(3), Timestamp(4), &mut |m| {
        m.registration = None;
        Ok(vec![])
    })
    .unwrap();
    s.delete_machine(mac(1), Timestamp(5)).unwrap();
    assert!(s.machines_by_machine_id("clone").unwrap().is_empty());
    assert!(s.machines_by_machine_id("never").unwrap().is_empty());
}

/// Profiles: create, replace, refuse duplicates, refuse deleting one in use.
pub fn profiles(s: Arc<dyn Store>) {
    s.put_profile(profile("b"), false, Timestamp(1)).unwrap();
    s.put_profile(profile("a"), false, Timestamp(1)).unwrap();
    let err = s
        .put_profile(profile("a"), false, Timestamp(1))
        .unwrap_err();
    assert!(matches!(err, Error::ProfileExists { .. }), "{err}");
    let ev = s.put_profile(profile("a"), true, Timestamp(2)).unwrap();
    assert!(matches!(&ev[0].kind, EventKind::Profile { action, .. } if action == "replaced"));
    let names: Vec<String> = s.profiles().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["a", "b"]);
    let spec = MachineSpec {
        profile: Some("a".into()),
        ..Default::default()
    };
    s.create_machines(vec![machine(1, spec)], "operator", Timestamp(3))
        .unwrap();
    let err = s.delete_profile("a", Timestamp(4)).unwrap_err();
    assert!(matches!(err, Error::ProfileInUse { count: 1, .. }), "{err}");
    s.delete_profile("b", Timestamp(4)).unwrap();
    assert!(s.profile("b").unwrap().is_none());
    let err = s.delete_profile("b", Timestamp(4)).unwrap_err();
    assert!(matches!(err, Error::ProfileNotFound { .. }), "{err}");
}

/// Token records by hash; whether an operator token exists.
pub fn tokens(s: Arc<dyn Store>) {
    assert!(!s.has_operator_token().unwrap());
    let record = |role, label: &str| TokenRecord {
        role,
        created: Timestamp(1),
        label: label.into(),
    };
    s.put_token(
        "h-machine",
        &record(TokenRole::Machine { mac: mac(1) }, "m"),
    )
    .unwrap();
    assert!(
        !s.has_operator_token().unwrap(),
        "a machine token is not an operator's"
    );
    s.put_token("h-op", &record(TokenRole::Operator, "op"))
        .unwrap();
    assert!(s.has_operator_token().unwrap());
    assert_eq!(s.token("h-op").unwrap().unwrap().label, "op");
    let m = s.token("h-machine").unwrap().unwrap();
    assert_eq!(m.role, TokenRole::Machine { mac: mac(1) });
    assert!(s.token("h-other").unwrap().is_none());
    // A session: stored with its expiry, gone after delete (logout); deleting twice is fine.
    let session = TokenRole::Session {
        expires: Timestamp(99),
    };
    s.put_token("h-session", &record(session.clone(), "ui"))
        .unwrap();
    assert_eq!(s.token("h-session").unwrap().unwrap().role, session);
    s.delete_token("h-session").unwrap();
    assert!(s.token("h-session").unwrap().is_none());
    s.delete_token("h-session").unwrap();
    assert!(s.token("h-op").unwrap().is_some(), "only that token went");
}

/// Log lines: numbered per machine, bounded per machine, resumable after a sequence number.
pub fn logs(s: Arc<dyn Store>) {
    let (a, b) = (mac(1), mac(2));
    let n = MAX_LINES_PER_MACHINE + 10;
    let line = |t: &str| NewLogLine::new("syslog", Some(6), None, t);
    let batch: Vec<_> = (0..n)
        .map(|i| (a, line(&format!("line {i}"))))
        .chain([(b, line("only"))])
        .collect();
    let stored = s.append_logs(batch, Timestamp(5)).unwrap();
    assert_eq!(stored.len() as u64, n + 1);
    assert_eq!((stored[n as usize].0, stored[n as usize].1.seq), (b, 1));
    let all = s.logs(a, 0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, MAX_LINES_PER_MACHINE, "oldest dropped");
    assert_eq!((all[0].seq, all[0].at), (11, Timestamp(5)));
    let tail = s.logs(a, n - 2, 10).unwrap();
    assert_eq!(
        tail.iter().map(|l| l.seq).collect::<Vec<_>>(),
        vec![n - 1, n]
    );
    assert_eq!(tail[1].line.text, format!("line {}", n - 1));
    assert_eq!(s.logs(a, 0, 3).unwrap().len(), 3, "limit");
    let more = s
        .append_logs(vec![(b, line("second"))], Timestamp(6))
        .unwrap();
    assert_eq!(more[0].1.seq, 2, "numbering continues across calls");
    assert_eq!(s.logs(b, 1, 10).unwrap()[0].line.text, "second");
    assert!(s.logs(mac(3), 0, 10).unwrap().is_empty());
    // Logs are not events.
    assert!(s.events(&EventQuery::default()).unwrap().is_empty());
}
