use super::*;
use crate::lifecycle::{Deadlines, State, Transition};
use crate::MachineSpec;
use std::time::Duration;

fn open() -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("inventory.redb")).unwrap();
    (dir, store)
}

fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac::new([0x52, 0x54, b[0], b[1], b[2], b[3]])
}

fn machine(i: u32, spec: MachineSpec) -> Machine {
    Machine::registered(mac(i), spec, Timestamp(1))
}

#[test]
fn schema_version_recorded_and_newer_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let txn = s.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(&path).err().expect("newer schema refused");
    assert!(matches!(err, Error::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1));
}

#[test]
fn create_is_all_or_nothing() {
    let (_d, s) = open();
    s.create_machines(
        vec![machine(1, Default::default())],
        "operator",
        Timestamp(1),
    )
    .unwrap();
    let batch = vec![
        machine(2, Default::default()),
        machine(1, Default::default()),
        machine(3, Default::default()),
    ];
    let err = s
        .create_machines(batch, "import", Timestamp(2))
        .unwrap_err();
    assert!(
        matches!(err, Error::MachineExists { ref mac } if mac == "52:54:00:00:00:01"),
        "{err}"
    );
    assert_eq!(
        s.machines().unwrap().len(),
        1,
        "nothing of the failed batch applied"
    );
    assert_eq!(
        s.last_event_seq().unwrap(),
        1,
        "no events of the failed batch"
    );
}

#[test]
fn unknown_profile_and_taken_reservation_refused() {
    let (_d, s) = open();
    let spec = MachineSpec {
        profile: Some("nope".into()),
        ..Default::default()
    };
    assert!(matches!(
        s.create_machines(vec![machine(1, spec)], "operator", Timestamp(1))
            .unwrap_err(),
        Error::UnknownProfile { .. }
    ));
    s.put_profile(
        Profile {
            name: "p".into(),
            ..Default::default()
        },
        false,
        Timestamp(1),
    )
    .unwrap();
    let ip = "198.18.0.10".parse().unwrap();
    let spec = MachineSpec {
        profile: Some("p".into()),
        ip: Some(ip),
        ..Default::default()
    };
    s.create_machines(vec![machine(1, spec.clone())], "operator", Timestamp(1))
        .unwrap();
    let err = s
        .create_machines(vec![machine(2, spec)], "operator", Timestamp(1))
        .unwrap_err();
    assert!(matches!(err, Error::IpReserved { holder, .. } if holder == "52:54:00:00:00:01"));
    // Moving the reservation frees the old address.
    s.update_machine(mac(1), Timestamp(2), &mut |m| {
        m.spec.ip = Some("198.18.0.11".parse().unwrap());
        Ok(vec![EventKind::Updated])
    })
    .unwrap();
    let spec = MachineSpec {
        ip: Some(ip),
        ..Default::default()
    };
    s.create_machines(vec![machine(2, spec)], "operator", Timestamp(3))
        .unwrap();
    // Profiles in use cannot be deleted.
    assert!(matches!(
        s.delete_profile("p", Timestamp(4)).unwrap_err(),
        Error::ProfileInUse { count: 1, .. }
    ));
    s.delete_machine(mac(1), Timestamp(5)).unwrap();
    s.delete_profile("p", Timestamp(6)).unwrap();
    assert!(matches!(
        s.delete_profile("p", Timestamp(6)).unwrap_err(),
        Error::ProfileNotFound { .. }
    ));
}

#[test]
fn events_are_numbered_and_queryable_by_machine_and_seq() {
    let (_d, s) = open();
    s.create_machines(
        vec![
            machine(1, Default::default()),
            machine(2, Default::default()),
        ],
        "import",
        Timestamp(1),
    )
    .unwrap();
    let (m, ev) = s
        .update_machine(mac(2), Timestamp(5), &mut |m| {
            Ok(vec![m.transition(&Transition::Boot, Timestamp(5))?])
        })
        .unwrap();
    assert_eq!(m.state(), State::Booting);
    assert_eq!(ev[0].seq, 3);
    assert_eq!(
        ev[0].kind,
        EventKind::State {
            from: State::Registered,
            to: State::Booting,
            reason: None
        }
    );
    let all = s.events(&EventQuery::default()).unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    let m2 = s
        .events(&EventQuery {
            mac: Some(mac(2)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(m2.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    let after = s
        .events(&EventQuery {
            after: 2,
            mac: Some(mac(2)),
            limit: None,
        })
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        s.events(&EventQuery {
            after: 0,
            mac: None,
            limit: Some(2)
        })
        .unwrap()
        .len(),
        2
    );
}

#[test]
fn illegal_transition_changes_nothing() {
    let (_d, s) = open();
    s.create_machines(
        vec![machine(1, Default::default())],
        "operator",
        Timestamp(1),
    )
    .unwrap();
    let err = s
        .update_machine(mac(1), Timestamp(2), &mut |m| {
            Ok(vec![m.transition(&Transition::Ready, Timestamp(2))?])
        })
        .unwrap_err();
    assert!(matches!(
        err,
        Error::IllegalTransition {
            from: State::Registered,
            ..
        }
    ));
    assert_eq!(
        s.machine(mac(1)).unwrap().unwrap().state(),
        State::Registered
    );
    assert_eq!(s.last_event_seq().unwrap(), 1);
}

#[test]
fn stuck_machines_fail_after_deadline() {
    let (_d, s) = open();
    s.create_machines(
        vec![
            machine(1, Default::default()),
            machine(2, Default::default()),
        ],
        "operator",
        Timestamp(0),
    )
    .unwrap();
    s.update_machine(mac(1), Timestamp(1_000), &mut |m| {
        Ok(vec![m.transition(&Transition::Boot, Timestamp(1_000))?])
    })
    .unwrap();
    let d = Deadlines {
        booting: Duration::from_secs(10),
        installing: Duration::from_secs(10),
        ..Default::default()
    };
    assert!(s.expire_stuck(Timestamp(10_999), &d).unwrap().is_empty());
    let ev = s.expire_stuck(Timestamp(11_000), &d).unwrap();
    assert_eq!(ev.len(), 1);
    let m = s.machine(mac(1)).unwrap().unwrap();
    assert_eq!(m.state(), State::Failed);
    assert!(m.lifecycle.reason.unwrap().contains("stuck in booting"));
    assert_eq!(
        s.machine(mac(2)).unwrap().unwrap().state(),
        State::Registered
    );
}

#[test]
fn survives_reopen_and_keeps_leases_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.create_machines(
            (0..100).map(|i| machine(i, Default::default())).collect(),
            "import",
            Timestamp(1),
        )
        .unwrap();
        s.put_leases(&[Lease {
            ip: "198.18.0.50".parse().unwrap(),
            mac: mac(1),
            expires: Timestamp(99),
            hostname: None,
            observed: false,
            client_id: None,
        }])
        .unwrap();
        s.put_token(
            &crate::hash_token("secret"),
            &TokenRecord {
                role: TokenRole::Operator,
                created: Timestamp(1),
                label: "op".into(),
            },
        )
        .unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.machines().unwrap().len(), 100);
    assert_eq!(s.leases().unwrap()[0].mac, mac(1));
    assert!(s.has_operator_token().unwrap());
    assert_eq!(
        s.token(&crate::hash_token("secret"))
            .unwrap()
            .unwrap()
            .label,
        "op"
    );
    assert!(s.token(&crate::hash_token("other")).unwrap().is_none());
    s.remove_lease("198.18.0.50".parse().unwrap()).unwrap();
    assert!(s.leases().unwrap().is_empty());
}

#[test]
fn logs_are_numbered_per_machine_bounded_and_resumable() {
    use crate::log::{NewLogLine, MAX_LINES_PER_MACHINE};
    let (_d, s) = open();
    let (a, b) = (mac(1), mac(2));
    let n = MAX_LINES_PER_MACHINE + 10;
    let batch: Vec<_> = (0..n)
        .map(|i| {
            (
                a,
                NewLogLine::new("syslog", Some(6), None, &format!("line {i}")),
            )
        })
        .chain([(
            b,
            NewLogLine::new("installer", None, None, "only\nline\u{7}"),
        )])
        .collect();
    let stored = s.append_logs(batch, Timestamp(5)).unwrap();
    assert_eq!(stored.len() as u64, n + 1);
    // The oldest lines of `a` were dropped; `b` has its own numbering.
    let all = s.logs(a, 0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, MAX_LINES_PER_MACHINE);
    assert_eq!(all[0].seq, 11);
    assert_eq!(all.last().unwrap().line.text, format!("line {}", n - 1));
    let after = s.logs(a, n - 2, 10).unwrap();
    assert_eq!(
        after.iter().map(|l| l.seq).collect::<Vec<_>>(),
        vec![n - 1, n]
    );
    let bl = s.logs(b, 0, 10).unwrap();
    assert_eq!((bl.len(), bl[0].seq), (1, 1));
    assert_eq!(
        bl[0].line.text, "only\u{fffd}line\u{fffd}",
        "control characters replaced"
    );
    let long = NewLogLine::new("syslog", None, None, &"é".repeat(5000));
    assert!(long.text.len() <= crate::log::MAX_LINE_BYTES + 3);
}

#[test]
fn database_file_is_private_and_an_existing_one_is_narrowed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.redb");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600, "a new database is created 0600");
    assert_eq!(store.tightened_from(), None);
    drop(store);
    // As an older version (or a permissive umask) left it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        mode(&path),
        0o600,
        "an existing database is narrowed to 0600"
    );
    assert_eq!(store.tightened_from(), Some(0o644));
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn redb_store_passes_the_conformance_suite() {
    crate::conformance::run_all(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("inventory.redb")).unwrap();
        (store, dir)
    });
}

#[test]
fn schema_2_files_get_the_machine_id_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.redb");
    let registered = |i: u32, id: &str| {
        let mut m = machine(i, Default::default());
        m.registration = Some(crate::Registration {
            machine_id: id.into(),
            hostname: String::new(),
            agent_version: String::new(),
            addresses: Vec::new(),
            boot_state: "active_boot".into(),
            at: Timestamp(1),
        });
        m
    };
    {
        // A version-2 file: registered machines, no machine-id index.
        let s = RedbStore::open(&path).unwrap();
        let txn = s.db.begin_write().unwrap();
        {
            let mut machines = txn.open_table(MACHINES).unwrap();
            for m in [registered(1, "a"), registered(2, "a"), registered(3, "b")] {
                machines
                    .insert(mac_key(m.mac), encode(&m).as_slice())
                    .unwrap();
            }
            machines
                .insert(
                    mac_key(mac(4)),
                    encode(&machine(4, Default::default())).as_slice(),
                )
                .unwrap();
            txn.delete_multimap_table(MACHINE_IDS).unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", 2)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), 3);
    let by = |id: &str| -> Vec<Mac> {
        s.machines_by_machine_id(id)
            .unwrap()
            .iter()
            .map(|m| m.mac)
            .collect()
    };
    assert_eq!(by("a"), vec![mac(1), mac(2)]);
    assert_eq!(by("b"), vec![mac(3)]);
    assert!(by("c").is_empty());
}

#[test]
fn errors_name_no_redb_type() {
    // The public error renders the engine's failure as text (no `From<redb::…>` impls): a
    // second open of one file is refused with a plain storage error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.redb");
    let _first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).err().expect("file in use");
    assert!(
        matches!(&err, Error::Storage(m) if m.contains("in use by another provisioner process")),
        "{err}"
    );
}
