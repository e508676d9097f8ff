//! Assets across provisioners sharing one etcd: an asset imported on server A only is served by
//! server B, which fetches it from its configured peers by digest and keeps it only if the
//! SHA-256 matches (a peer sending other bytes is refused), and B prefetches what the shared
//! catalogue gains before any machine asks.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inventory_etcd::test_server::EtcdServer;

use crate::harness::{eventually, Server};

/// `n` bytes no other test imports (`seed` varies them).
fn blob(n: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn server(etcd: &EtcdServer, data: &Path, peers: &[&str]) -> Server {
    let joined = peers.join(",");
    let mut args = vec!["--etcd-endpoints", etcd.endpoint.as_str(), "--no-tftp"];
    if !peers.is_empty() {
        args.extend(["--asset-peers", joined.as_str()]);
    }
    Server::start_in(data, &args)
}

/// Imports `bytes` as a loader through `s`'s API; its hex digest.
fn import(s: &Server, name: &str, bytes: &[u8]) -> String {
    let api = s.http();
    let r = api.send(
        api.request("POST", &format!("/api/v1/assets?name={name}&kind=loader"))
            .body(bytes.to_vec()),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string()
}

fn object(data: &Path, hex: &str) -> std::path::PathBuf {
    data.join("assets/objects").join(hex)
}

fn metric(s: &Server, series: &str) -> Option<u64> {
    let text = crate::harness::get(format!("{}/metrics", s.url))
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// A peer on loopback that answers every request with `body` (200), until dropped; at most
/// 60 s and 64 connections.
struct FakePeer {
    url: String,
    stop: Arc<AtomicBool>,
}

impl FakePeer {
    fn serving(body: Vec<u8>) -> FakePeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline && served < 64 {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                served += 1;
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            }
        });
        FakePeer { url, stop }
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A imports; B (peers: a liar, then A) serves the same bytes, refusing the liar's, and keeps
/// the file; a server whose only peer lies answers 503 naming the digest and keeps nothing.
#[test]
fn a_server_lacking_an_asset_fetches_it_from_a_peer_by_digest() {
    let etcd = EtcdServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = server(&etcd, &tmp.path().join("a"), &[]);
    let bytes = blob(700 * 1024, 1);
    let mut wrong = bytes.clone();
    wrong.reverse();
    let liar = FakePeer::serving(wrong.clone());
    let b_data = tmp.path().join("b");
    let b = server(&etcd, &b_data, &[&liar.url, &a.url]);
    let c_data = tmp.path().join("c");
    let c = server(&etcd, &c_data, &[&liar.url]);

    let hex = import(&a, "peer.efi", &bytes);
    assert_eq!(hex, sha256_hex(&bytes));
    // A storm's first machines ask at once: they share one fetch (with B's prefetch too).
    let url = format!("{}/assets/{hex}/peer.efi", b.url);
    let machines: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let got = crate::harness::get(url).unwrap();
                (got.status().as_u16(), sha256_hex(&got.bytes().unwrap()))
            })
        })
        .collect();
    for m in machines {
        let (status, body_digest) = m.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body_digest, hex, "B served the asset's own bytes");
    }
    let fetches = |result: &str| {
        metric(
            &b,
            &format!("provisioner_asset_peer_fetches_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(
        (fetches("mismatch"), fetches("ok")),
        (Some(1), Some(1)),
        "one fetch: the liar refused, then A"
    );
    assert_eq!(std::fs::read(object(&b_data, &hex)).unwrap(), bytes);
    eventually("B logs the liar refused, with both digests", || {
        let log = b.log();
        let line = log
            .lines()
            .find(|l| l.contains("not the asset") && l.contains(&liar.url))
            .ok_or_else(|| log.clone())?;
        let (want, sent) = (format!("sha256:{hex}"), sha256_hex(&wrong));
        (line.contains(&want) && line.contains(&sent))
            .then_some(())
            .ok_or_else(|| line.to_string())
    });

    // C's only peer lies: nothing is kept or served, and the machine is told to come back.
    let r = crate::harness::get(format!("{}/assets/{hex}/peer.efi", c.url)).unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("10")
    );
    let text = r.text().unwrap();
    assert!(
        text.contains(&hex) && text.contains("provisioner assets import"),
        "{text}"
    );
    assert!(!object(&c_data, &hex).exists(), "no wrong bytes kept");
    let tmp_left = std::fs::read_dir(c_data.join("assets/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp_left, 0, "nothing half-written left behind");
    assert!(
        metric(
            &c,
            "provisioner_asset_peer_fetches_total{result=\"mismatch\"}"
        )
        .unwrap_or(0)
            >= 1
    );
    assert!(c.log().contains("no peer served it"), "{}", c.log());
}

/// After an import on A, B has the file without any request for it (it follows the event feed).
#[test]
fn a_server_prefetches_what_the_shared_catalogue_gains() {
    let etcd = EtcdServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = server(&etcd, &tmp.path().join("a"), &[]);
    let b_data = tmp.path().join("b");
    let b = server(&etcd, &b_data, &[&a.url]);
    let bytes = blob(300 * 1024, 2);
    let hex = import(&a, "prefetched.efi", &bytes);
    eventually("B to have the file without a request", || {
        std::fs::read(object(&b_data, &hex))
            .ok()
            .filter(|got| got == &bytes)
            .ok_or_else(|| "not yet".to_string())
    });
    assert_eq!(
        metric(&b, "provisioner_asset_peer_fetches_total{result=\"ok\"}"),
        Some(1),
        "one fetch, from A"
    );
    // Only the server that created the operator token wrote it; it is valid on every server.
    let mut api_b = a.http();
    api_b.base = b.url.clone();
    let listed = api_b.get("/api/v1/assets");
    assert!(listed.text.contains(&hex), "{}", listed.text);
}
