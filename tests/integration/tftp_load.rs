//! Issue 19 item 5: under `bench/tftp.sh`, 3 of 50 curl clients downloading at once failed with
//! curl error 69 (curl's "getpeername() failed" message is printed for every TFTP error of curl
//! 7.88; 69 means the client received an ERROR with code 2). curl before 8.17 takes any datagram
//! on its port as its server's, so anything our server sends to a port its client has left
//! breaks whoever holds that port next. The 50-client case, several rounds in a row, in a
//! namespace of its own (no other test's datagrams), must end with every download complete and
//! byte-identical, and the server must have run exactly one transfer per client.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{serve_cmd, Server};
use crate::netns::Netns;
use crate::tftp::{content, curl, tftp_config};

const CLIENTS: usize = 50;
const ROUNDS: usize = 4;
/// Small enough for four rounds in well under a minute in a debug build, big enough that the
/// 50 transfers overlap (about 2,100 blocks each at blksize 1468).
const SIZE: usize = 3 * 1024 * 1024 + 17;

#[test]
fn fifty_curl_clients_at_once_all_succeed_round_after_round() {
    let ns = Netns::new("tftpload");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let want = content(SIZE, 69);
    std::fs::write(root.join("load.bin"), &want).unwrap();
    // One address for all clients: lift the per-client limit as bench/tftp.sh does.
    let cfg = tftp_config(dir.path(), "max_per_client = 1000");
    let s = Server::spawn(
        ns.wrap(&serve_cmd(&cfg, &dir.path().join("data"))),
        &dir.path().join("data"),
    );
    let addr = s.tftp.unwrap();
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    for round in 1..=ROUNDS {
        let t = Instant::now();
        let children: Vec<(usize, Child)> = (0..CLIENTS)
            .map(|i| {
                let f = out.path().join(format!("{round}-{i}"));
                let mut c = ns.wrap(&curl(addr, "load.bin", 1468, &f));
                c.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                (i, c.spawn().expect("curl (run scripts/install-test-deps)"))
            })
            .collect();
        let mut failed = Vec::new();
        for (i, child) in children {
            let o = child.wait_with_output().unwrap();
            let f = out.path().join(format!("{round}-{i}"));
            let got = std::fs::read(&f).unwrap_or_default();
            if !o.status.success() || got != want {
                failed.push(format!(
                    "client {i}: {} ({} bytes): {}",
                    o.status,
                    got.len(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            let _ = std::fs::remove_file(f);
        }
        eprintln!(
            "round {round}: {CLIENTS} x {SIZE} bytes in {:?}",
            t.elapsed()
        );
        assert!(
            failed.is_empty(),
            "round {round}: {} of {CLIENTS} clients failed:\n{}\nserver log:\n{}",
            failed.len(),
            failed.join("\n"),
            s.log()
        );
    }
    eprintln!("{} downloads in {:?}", CLIENTS * ROUNDS, started.elapsed());
    // One transfer per download, every one complete: no second transfer for a resent request.
    let total = CLIENTS * ROUNDS;
    let metrics = metrics(&ns, &s);
    let complete = format!("provisioner_tftp_transfers_total{{outcome=\"complete\"}} {total}");
    assert!(metrics.contains(&complete), "want {complete}:\n{metrics}");
    let other: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("provisioner_tftp_transfers_total{") && !l.contains("complete"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(
        other.is_empty(),
        "transfers that did not complete: {other:?}"
    );
    drop(s);
    drop(ns);
}

/// The server's `/metrics`, read from inside the namespace (bounded by curl's own timeout).
fn metrics(ns: &Netns, s: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = ns
            .command("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("{}/metrics", s.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        // Transfers are counted as they end; the last ones may still be closing.
        if text.contains("provisioner_tftp_transfers_active 0") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "transfers still active after 10 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
