use super::*;
use std::time::Duration;

fn lease(i: u8) -> Lease {
    Lease {
        ip: Ipv4Addr::new(198, 18, 0, i),
        mac: Mac::new([2, 0, 0, 0, 0, i]),
        expires: Timestamp(10_000_000),
        hostname: None,
        observed: false,
        client_id: None,
    }
}

#[test]
fn a_claim_does_not_wait_for_an_inventory_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(RedbStore::open(&dir.path().join("inventory.redb")).unwrap());
    assert_eq!(
        lease_path(&dir.path().join("inventory.redb")),
        dir.path().join("inventory.leases.redb")
    );
    // Hold the inventory's one writer, as a long CSV import does while it commits.
    let import = store.db.begin_write().unwrap();
    let s = store.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tx.send(s.claim_leases(&[lease(5)], Timestamp(1_000)))
            .unwrap();
    });
    // While the inventory's writer is held, the claim completes (it would wait forever).
    let outcome = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the claim waited for the inventory writer");
    assert_eq!(outcome.unwrap(), vec![Claim::Granted]);
    drop(import);
    assert_eq!(store.lease_by_ip(lease(5).ip).unwrap(), Some(lease(5)));
}

#[test]
fn leases_of_an_older_file_move_to_the_lease_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.redb");
    drop(RedbStore::open(&path).unwrap());
    std::fs::remove_file(lease_path(&path)).unwrap();
    {
        // What an older version left: leases in the inventory file.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(LEASES).unwrap();
            for i in [7, 8] {
                t.insert(u32::from(lease(i).ip), encode(&lease(i)).as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let mut got = store.leases().unwrap();
    got.sort_by_key(|l| l.ip);
    assert_eq!(got, vec![lease(7), lease(8)]);
    let txn = store.db.begin_read().unwrap();
    assert!(
        txn.open_table(LEASES).unwrap().is_empty().unwrap(),
        "moved, not copied"
    );
    drop(txn);
    drop(store);
    // Reopening finds them once, in the lease file.
    assert_eq!(RedbStore::open(&path).unwrap().leases().unwrap().len(), 2);
}
