//! Durability: `kill -9` in the middle of a bulk import loses nothing that was acknowledged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::harness::{macs, Server};

const BATCHES: u32 = 50;
const PER_BATCH: u32 = 200;

#[test]
fn kill_nine_during_bulk_import_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start_in(&data, &[]);
    let api = server.http();

    let acked: Arc<Mutex<Vec<u32>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let importer = {
        let acked = acked.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for b in 0..BATCHES {
                let csv = macs(b * PER_BATCH, PER_BATCH).join("\n");
                let sent = api
                    .request("POST", "/api/v1/machines/import")
                    .header("content-type", "text/csv")
                    .body(csv)
                    .send();
                match sent {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().push(b);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    // The server died under us: this batch was never acknowledged.
                    _ => return,
                }
            }
        })
    };
    // Kill once a handful of batches are in, while the importer keeps sending.
    while done.load(Ordering::SeqCst) < 8 {
        assert!(
            !importer.is_finished(),
            "importer stopped early; log:\n{}",
            server.log()
        );
        std::thread::yield_now();
    }
    server.kill9();
    importer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 8 && acked.len() < BATCHES as usize,
        "kill landed mid-import ({} batches acked)",
        acked.len()
    );

    let server = Server::start_in(&data, &[]);
    let api = server.http();
    assert_eq!(api.get("/healthz").status, 200);
    let machines = api.get("/api/v1/machines").body;
    let present: HashSet<String> = machines
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mac"].as_str().unwrap().to_string())
        .collect();
    for b in 0..BATCHES {
        let batch = macs(b * PER_BATCH, PER_BATCH);
        let n = batch.iter().filter(|m| present.contains(*m)).count();
        if acked.contains(&b) {
            assert_eq!(
                n, PER_BATCH as usize,
                "acknowledged batch {b} incomplete after restart"
            );
        } else {
            assert!(
                n == 0 || n == PER_BATCH as usize,
                "batch {b} half-applied: {n} of {PER_BATCH}"
            );
        }
    }
    // The event log is consistent with the machines: one `created` per machine, numbered 1..=n.
    let events = api.get("/api/v1/events?limit=100000").body;
    let seqs: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), present.len());
    assert!(
        seqs.iter().enumerate().all(|(i, s)| *s == i as u64 + 1),
        "gap-free sequence"
    );
    eprintln!(
        "acked {} batches before kill -9; {} machines after restart",
        acked.len(),
        present.len()
    );
}
