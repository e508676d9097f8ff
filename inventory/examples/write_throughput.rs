//! Durable write throughput of the redb store with concurrent writers, for BENCHMARKS.md
//! ("Group commit"): `cargo run --release -p inventory --example write_throughput -- [THREADS]
//! [SECONDS] [DIR]`. Each thread updates its own machines (one `update_machine`, one fsync'd
//! transaction each) for the given time; prints writes/s. DIR (default: a temporary directory
//! under /var/tmp, on disk) decides which disk's fsync is measured.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inventory::{Mac, Machine, MachineSpec, RedbStore, Store, Timestamp};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).map_or(16, |a| a.parse().expect("THREADS"));
    let seconds: u64 = args.get(2).map_or(5, |a| a.parse().expect("SECONDS"));
    let base = args.get(3).map_or("/var/tmp".into(), String::clone);
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let store = Arc::new(RedbStore::open(&dir.path().join("inventory.redb")).expect("open"));
    let now = Timestamp(1_700_000_000_000);
    let per_thread = 64u32;
    let machines: Vec<Machine> = (0..threads as u32 * per_thread)
        .map(|i| {
            let o = i.to_be_bytes();
            let mac = Mac::new([0x02, 0, o[0], o[1], o[2], o[3]]);
            Machine::registered(mac, MachineSpec::default(), now)
        })
        .collect();
    let macs: Vec<Mac> = machines.iter().map(|m| m.mac).collect();
    store
        .create_machines(machines, "bench", now)
        .expect("create");
    let writes = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, writes) = (store.clone(), writes.clone());
            let mine: Vec<Mac> = macs[t * per_thread as usize..][..per_thread as usize].to_vec();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < until {
                    let mac = mine[(n % mine.len() as u64) as usize];
                    n += 1;
                    store
                        .update_machine(mac, now, &mut |m| {
                            m.spec.hostname = Some(format!("h{n}"));
                            Ok(vec![])
                        })
                        .expect("update");
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let n = writes.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{threads} writers: {n} durable writes in {secs:.1} s = {:.0} writes/s",
        n as f64 / secs
    );
}
