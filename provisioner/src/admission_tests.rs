use std::sync::Arc;

use inventory::{EventKind, EventQuery, Mac, MachineSpec, RedbStore, State};

use super::*;

const T0: Timestamp = Timestamp(1_000_000_000);

fn at(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

/// Distinct pseudo-random unicast MACs (xorshift), as a flood would send.
fn random_macs(n: usize) -> Vec<Mac> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            Mac::new([b[0] & 0xfe, b[1], b[2], b[3], b[4], b[5]])
        })
        .collect()
}

fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("db")).unwrap());
    (dir, s)
}

fn newcomer(mac: Mac) -> Newcomer {
    Newcomer {
        mac,
        uuid: None,
        arch: Some(7),
        via: "dhcp",
    }
}

#[test]
fn token_bucket_bursts_then_refills_at_its_rate() {
    let mut b = TokenBucket::new(3, 60);
    assert!((0..3).all(|_| b.take(T0)));
    assert!(!b.take(T0));
    assert!(!b.take(at(999)), "60/min is one token a second");
    assert!(b.take(at(1000)));
    // A long pause refills to the capacity, no more.
    assert_eq!((0..10).filter(|_| b.take(at(3_600_000))).count(), 3);
}

#[test]
fn the_gate_caps_the_count_and_the_rate_and_warns_once_a_minute() {
    let mut g = Gate::new(Limits {
        max_waiting: 50,
        per_minute: 20,
    });
    g.counted(0, T0);
    let verdicts: Vec<Verdict> = (0..5_000).map(|i| g.check(at(i / 100))).collect();
    let admitted = verdicts.iter().filter(|v| **v == Verdict::Admit).count();
    assert_eq!(admitted, 20, "the burst is one minute's worth");
    let warnings = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Refuse { warn: true, .. }))
        .count();
    assert_eq!(warnings, 1);
    // Over the next ten minutes the rate allows more, up to the cap of unclaimed records.
    let later: Vec<Verdict> = (0..6_000).map(|i| g.check(at(100 * i))).collect();
    assert_eq!(later.iter().filter(|v| **v == Verdict::Admit).count(), 30);
    assert_eq!(g.waiting(), 50);
    assert!(matches!(
        later.last(),
        Some(Verdict::Refuse {
            why: Refusal::Cap,
            ..
        })
    ));
    let warned = later
        .iter()
        .filter(|v| matches!(v, Verdict::Refuse { warn: true, .. }))
        .count();
    assert!((9..=11).contains(&warned), "once a minute: {warned}");
    // The operator approves them all: the next count from the store makes room again.
    let t = at(1_000_000);
    g.counted(50, t);
    assert!(!g.needs_count(at(1_000_000 + RECOUNT_MS - 1)));
    assert!(g.needs_count(at(1_000_000 + RECOUNT_MS)));
    assert!(matches!(g.check(t), Verdict::Refuse { .. }));
    g.counted(0, at(1_000_000 + RECOUNT_MS));
    assert_eq!(g.check(at(1_000_000 + RECOUNT_MS)), Verdict::Admit);
}

#[test]
fn five_thousand_random_macs_under_discover_leave_at_most_the_cap() {
    let (_dir, s) = store();
    let a = Admission::new(Limits {
        max_waiting: 100,
        per_minute: 1_000,
    });
    let metrics = AdmissionMetrics::default();
    let mut admitted = 0;
    for (i, mac) in random_macs(5_000).into_iter().enumerate() {
        let t = at(i as u64); // 5,000 in five seconds
        if a.admit(
            s.as_ref(),
            newcomer(mac),
            UnknownPolicy::Discover,
            t,
            &metrics,
        )
        .unwrap()
        .is_some()
        {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
    let machines = s.machines().unwrap();
    assert_eq!(machines.len(), 100);
    assert!(machines
        .iter()
        .all(|m| m.state() == State::Discovered && m.arch == Some(7)));
    let events = s
        .events(&EventQuery {
            limit: Some(100_000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(events.len(), 100, "one `created` per record, nothing else");
    assert_eq!(
        (
            metrics.admitted.get(),
            metrics.refused_cap.get(),
            metrics.refused_rate.get()
        ),
        (100, 4_900, 0)
    );
    let mut text = String::new();
    metrics.render(&mut text, &machines, UnknownPolicy::Discover);
    assert!(
        text.contains("provisioner_discovery_refused_total{reason=\"cap\"} 4900")
            && text.contains("provisioner_discovery_unclaimed 100"),
        "{text}"
    );
}

#[test]
fn the_cap_counts_records_already_in_the_store() {
    let (_dir, s) = store();
    let met = AdmissionMetrics::default();
    let earlier = Admission::new(Limits::default());
    for mac in random_macs(30) {
        earlier
            .admit(s.as_ref(), newcomer(mac), UnknownPolicy::Auto, T0, &met)
            .unwrap()
            .unwrap();
    }
    // After a restart (same policy) the gate counts what is waiting: 30 unclaimed `auto` records.
    let a = Admission::new(Limits {
        max_waiting: 30,
        per_minute: 100,
    });
    let mac = Mac::new([2, 0, 0, 0, 0, 1]);
    let got = a
        .admit(s.as_ref(), newcomer(mac), UnknownPolicy::Auto, at(1), &met)
        .unwrap();
    assert!(got.is_none(), "30 unclaimed records already wait");
    // An operator claims one (a profile): at the next count there is room.
    let first = s.machines().unwrap()[0].mac;
    s.update_machine(first, at(2), &mut |m| {
        m.spec.hostname = Some("node-1".into());
        Ok(vec![])
    })
    .unwrap();
    let got = a
        .admit(
            s.as_ref(),
            newcomer(mac),
            UnknownPolicy::Auto,
            at(1 + RECOUNT_MS),
            &met,
        )
        .unwrap();
    assert!(got.is_some());
}

#[test]
fn a_stranger_never_takes_a_uuid_another_machine_holds() {
    let (_dir, s) = store();
    let uuid = "4c4c4544-0042-3510-8052-b4c04f565931".to_string();
    let owner = Machine::registered(
        Mac::new([0x52, 0x54, 0, 0, 0, 0x99]),
        MachineSpec {
            uuid: Some(uuid.clone()),
            ..Default::default()
        },
        T0,
    );
    s.create_machines(vec![owner.clone()], "operator", T0)
        .unwrap();
    let a = Admission::new(Limits::default());
    let met = AdmissionMetrics::default();
    let low = Mac::new([0x02, 0, 0, 0, 0, 1]);
    let (m, events) = a
        .admit(
            s.as_ref(),
            Newcomer {
                uuid: Some(uuid.clone()),
                ..newcomer(low)
            },
            UnknownPolicy::Discover,
            at(1),
            &met,
        )
        .unwrap()
        .expect("recorded, without the UUID");
    assert_eq!(m.spec.uuid, None);
    assert_eq!(s.machine(low).unwrap().unwrap().spec.uuid, None);
    assert_eq!(
        s.machine_by_uuid(&uuid).unwrap().map(|m| m.mac),
        Some(owner.mac)
    );
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::Note { message } if message.contains(&uuid) && message.contains("52:54:00:00:00:99"))));
    // A UUID nobody holds is recorded.
    let other = Mac::new([0x02, 0, 0, 0, 0, 2]);
    let (m, _) = a
        .admit(
            s.as_ref(),
            Newcomer {
                uuid: Some("00000000-0000-0000-0000-000000000002".into()),
                ..newcomer(other)
            },
            UnknownPolicy::Discover,
            at(2),
            &met,
        )
        .unwrap()
        .unwrap();
    assert!(m.spec.uuid.is_some());
}
