//! A UUID names one machine: the `uuids` index, its conflicts, and the migration of stores
//! written before it (schema 1), whose duplicates become ambiguous look-ups, never a first match.

use super::*;
use crate::MachineSpec;

fn mac(i: u8) -> Mac {
    Mac::new([0x52, 0x54, 0, 0, 0, i])
}

fn with_uuid(i: u8, uuid: &str) -> Machine {
    let spec = MachineSpec {
        uuid: Some(uuid.into()),
        ..Default::default()
    };
    Machine::registered(mac(i), spec, Timestamp(1))
}

const U: &str = "4c4c4544-0042-3510-8052-b4c04f4b4e31";
const V: &str = "00000000-0000-0000-0000-000000000002";

fn open(dir: &tempfile::TempDir) -> RedbStore {
    RedbStore::open(&dir.path().join("inventory.redb")).unwrap()
}

#[test]
fn a_second_machine_cannot_take_a_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_machines(vec![with_uuid(1, U)], "test", Timestamp(1))
        .unwrap();
    let err = s
        .create_machines(vec![with_uuid(2, U)], "test", Timestamp(1))
        .unwrap_err();
    assert!(
        matches!(&err, Error::UuidTaken { uuid, holder } if uuid == U && holder == &mac(1).to_string()),
        "{err}"
    );
    assert!(s.machine(mac(2)).unwrap().is_none(), "nothing was created");
    // Within one batch too.
    let err = s
        .create_machines(vec![with_uuid(3, V), with_uuid(4, V)], "test", Timestamp(1))
        .unwrap_err();
    assert!(matches!(err, Error::UuidTaken { .. }), "{err}");
    assert!(s.machine(mac(3)).unwrap().is_none(), "all or nothing");
    // By update.
    s.create_machines(vec![with_uuid(5, V)], "test", Timestamp(1))
        .unwrap();
    let err = s
        .update_machine(mac(5), Timestamp(2), &mut |m| {
            m.spec.uuid = Some(U.into());
            Ok(vec![])
        })
        .unwrap_err();
    assert!(matches!(err, Error::UuidTaken { .. }), "{err}");
    assert_eq!(s.machine_by_uuid(U).unwrap().unwrap().mac, mac(1));
    assert_eq!(s.machine_by_uuid(V).unwrap().unwrap().mac, mac(5));
}

#[test]
fn a_uuid_is_free_again_once_its_holder_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_machines(vec![with_uuid(1, U), with_uuid(2, V)], "test", Timestamp(1))
        .unwrap();
    // Changing a UUID frees the old one.
    s.update_machine(mac(1), Timestamp(2), &mut |m| {
        m.spec.uuid = None;
        Ok(vec![])
    })
    .unwrap();
    assert!(s.machine_by_uuid(U).unwrap().is_none());
    s.update_machine(mac(2), Timestamp(2), &mut |m| {
        m.spec.uuid = Some(U.into());
        Ok(vec![])
    })
    .unwrap();
    assert_eq!(s.machine_by_uuid(U).unwrap().unwrap().mac, mac(2));
    assert!(s.machine_by_uuid(V).unwrap().is_none());
    // Deleting frees it.
    s.delete_machine(mac(2), Timestamp(3)).unwrap();
    assert!(s.machine_by_uuid(U).unwrap().is_none());
    s.create_machines(vec![with_uuid(3, U)], "test", Timestamp(4))
        .unwrap();
    assert_eq!(s.machine_by_uuid(U).unwrap().unwrap().mac, mac(3));
}

#[test]
fn duplicates_from_a_schema_1_store_are_ambiguous_until_resolved() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A version-1 file: two machines with one UUID, no index.
        let s = open(&dir);
        let txn = s.db.begin_write().unwrap();
        {
            let mut machines = txn.open_table(MACHINES).unwrap();
            for m in [with_uuid(1, U), with_uuid(2, U), with_uuid(3, V)] {
                machines
                    .insert(mac_key(m.mac), encode(&m).as_slice())
                    .unwrap();
            }
            txn.delete_table(UUIDS).unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", 1)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let err = s.machine_by_uuid(U).unwrap_err();
    assert!(
        matches!(&err, Error::UuidAmbiguous { holders, .. } if holders.contains(&mac(1).to_string()) && holders.contains(&mac(2).to_string())),
        "{err}"
    );
    assert_eq!(s.machine_by_uuid(V).unwrap().unwrap().mac, mac(3));
    // No third machine may join the ambiguity.
    let err = s
        .create_machines(vec![with_uuid(4, U)], "test", Timestamp(1))
        .unwrap_err();
    assert!(matches!(err, Error::UuidTaken { .. }), "{err}");
    // The operator removes it from one: the other holds it alone.
    s.update_machine(mac(1), Timestamp(2), &mut |m| {
        m.spec.uuid = None;
        Ok(vec![])
    })
    .unwrap();
    assert_eq!(s.machine_by_uuid(U).unwrap().unwrap().mac, mac(2));
}

#[test]
fn an_operators_machine_takes_a_uuid_from_an_unapproved_discovered_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut squatter = with_uuid(9, U);
    squatter.lifecycle = crate::Lifecycle::new(crate::State::Discovered, Timestamp(1));
    s.create_machines(vec![squatter], "discover", Timestamp(1))
        .unwrap();
    // Another discovered record cannot take it…
    let mut second = with_uuid(8, U);
    second.lifecycle = crate::Lifecycle::new(crate::State::Discovered, Timestamp(1));
    let err = s
        .create_machines(vec![second], "discover", Timestamp(1))
        .unwrap_err();
    assert!(matches!(err, Error::UuidTaken { .. }), "{err}");
    // …an operator's machine does, and the discovered record is told.
    let events = s
        .create_machines(vec![with_uuid(1, U)], "operator", Timestamp(2))
        .unwrap();
    assert_eq!(s.machine_by_uuid(U).unwrap().unwrap().mac, mac(1));
    assert_eq!(s.machine(mac(9)).unwrap().unwrap().spec.uuid, None);
    assert!(events.iter().any(|e| e.mac == Some(mac(9))
        && matches!(&e.kind, EventKind::Note { message } if message.contains("no longer claims"))));
}
