use super::*;
use inventory::{MachineSpec, MemoryStore, Timestamp};

fn mac(i: u8) -> Mac {
    Mac::new([2, 0, 0, 0, 0, i])
}

fn with(ip: Option<&str>, uuid: Option<&str>) -> MachineSpec {
    MachineSpec {
        ip: ip.map(|s| s.parse().unwrap()),
        uuid: uuid.map(str::to_string),
        ..Default::default()
    }
}

#[test]
fn the_view_follows_creates_edits_and_deletes_from_the_feed() {
    let store = MemoryStore::new();
    let t = Timestamp(1);
    store
        .create_machines(
            vec![inventory::Machine::registered(
                mac(1),
                with(Some("198.18.0.10"), None),
                t,
            )],
            "test",
            t,
        )
        .unwrap();
    let views = Views::load(&store).unwrap();
    let ip10: Ipv4Addr = "198.18.0.10".parse().unwrap();
    let ip11: Ipv4Addr = "198.18.0.11".parse().unwrap();
    assert_eq!(views.read().owner_of(ip10), Some(mac(1)));
    assert_eq!(views.applied(), store.last_event_seq().unwrap());

    // Written elsewhere (another shell, another server): invisible until caught up.
    store
        .create_machines(
            vec![inventory::Machine::registered(
                mac(2),
                with(None, Some("u-2")),
                t,
            )],
            "test",
            t,
        )
        .unwrap();
    store
        .update_machine(mac(1), t, &mut |m| {
            m.spec.ip = Some(ip11);
            Ok(vec![])
        })
        .unwrap();
    assert!(views.read().machine(mac(2)).is_none());
    views.catch_up(&store).unwrap();
    {
        let v = views.read();
        assert_eq!(v.uuid_holder("u-2"), Some(mac(2)));
        assert_eq!(v.owner_of(ip10), None, "the old reservation is gone");
        assert_eq!(v.owner_of(ip11), Some(mac(1)));
        assert_eq!(v.reserved_for(mac(1)), Some(ip11));
        assert_eq!(v.len(), 2);
    }
    store.delete_machine(mac(2), t).unwrap();
    views.catch_up(&store).unwrap();
    assert!(views.read().machine(mac(2)).is_none());
    assert_eq!(views.read().uuid_holder("u-2"), None);
    assert_eq!(views.applied(), store.last_event_seq().unwrap());
}

#[test]
fn the_follower_sees_another_writers_commit() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let views = Arc::new(Views::load(store.as_ref()).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let (v, s, f) = (views.clone(), store.clone(), stop.clone());
        std::thread::spawn(move || v.follow(s, f))
    };
    let t = Timestamp(1);
    store
        .create_machines(
            vec![inventory::Machine::registered(
                mac(3),
                Default::default(),
                t,
            )],
            "other server",
            t,
        )
        .unwrap();
    // Bounded wait: the follower wakes at the commit.
    let mut seen = false;
    for _ in 0..500 {
        if views.read().machine(mac(3)).is_some() {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    follower.join().unwrap();
    assert!(seen, "the view never saw the other writer's machine");
}
