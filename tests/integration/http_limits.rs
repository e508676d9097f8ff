//! Issue 18, items 3 and 4: clients that push big bodies without a token, hold connections open
//! without sending, or send one byte a second must not bloat or stall the server, and real work
//! (health checks, downloads, SSE streams, large uploads that keep moving) goes on meanwhile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{rss, serve_cmd, Server};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn addr(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// A server whose `[http]` section is `http`.
fn server_with(http: &str) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("p.toml");
    std::fs::write(&cfg, format!("[http]\n{http}\n")).unwrap();
    let s = Server::spawn(
        serve_cmd(&cfg, &tmp.path().join("data")),
        &tmp.path().join("data"),
    );
    (tmp, s)
}

/// Reads until the server closes the connection (EOF or reset) or `deadline`; true if closed.
fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. a 408 before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out
        }
    }
}

#[test]
fn unauthenticated_60mib_bodies_are_refused_before_reading() {
    const BODY: usize = 60 << 20;
    let server = Server::start();
    let pid = server.pid();
    let baseline = rss(pid);
    let target = addr(&server);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    // Progress and logs carry a wrong token in the header (and none); register carries its
    // token in the body, so it is refused by size.
    let paths = [
        (
            "/api/v1/nodes/logs",
            Some("Bearer 52:54:00:00:00:01.nottherealtoken"),
            401,
        ),
        ("/api/v1/nodes/logs", None, 401),
        ("/api/v1/nodes/logs?token=x", None, 401),
        ("/api/v1/nodes/progress", Some("bearer bogus"), 401),
        ("/api/v1/nodes/progress", None, 401),
        ("/api/v1/nodes/progress?token=bogus", None, 401),
        ("/api/v1/nodes/register", None, 413),
        ("/api/v1/nodes/register", None, 413),
    ];
    let clients: Vec<_> = paths
        .into_iter()
        .map(|(path, auth, want)| {
            let target = target.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut s = TcpStream::connect(&target).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
                write!(
                    s,
                    "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
                )
                .unwrap();
                let mut reader = s.try_clone().unwrap();
                let writer = std::thread::spawn(move || {
                    let chunk = vec![b'a'; 1 << 16];
                    let mut sent = 0;
                    while sent < BODY {
                        match s.write(&chunk[..chunk.len().min(BODY - sent)]) {
                            Ok(n) => sent += n,
                            Err(_) => break,
                        }
                    }
                    sent
                });
                reader.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut head = [0u8; 12];
                reader.read_exact(&mut head).expect("a status line");
                let answered = started.elapsed();
                let status: u16 = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
                let _ = reader.shutdown(std::net::Shutdown::Both);
                let sent = writer.join().unwrap();
                (path, status, want, answered, sent)
            })
        })
        .collect();
    for c in clients {
        let (path, status, want, answered, sent) = c.join().unwrap();
        eprintln!(
            "{path}: {status} after {answered:?}, {} MiB sent",
            sent >> 20
        );
        assert_eq!(status, want, "{path}");
        assert!(
            answered < Duration::from_secs(5),
            "{path}: answered after {answered:?}"
        );
    }
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "server RSS baseline {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(growth < 32 << 20, "server RSS grew by {} MiB", growth >> 20);
    assert_eq!(server.http().get("/healthz").status, 200);
}

#[test]
fn idle_and_slowloris_connections_are_closed_while_service_goes_on() {
    const IDLE: usize = 1000;
    const SLOW: usize = 200;
    // All from 127.0.0.1 here: lift the per-client share so the global limits are what is tested.
    let (_tmp, server) =
        server_with("header_timeout = \"3s\"\nmax_connections_per_client = 1000000\n");
    let api = server.http();
    // A stored asset to download while the server is under siege.
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let r = api.send(
        api.request("POST", "/api/v1/assets?name=blob.bin&kind=loader")
            .body(data.clone()),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let digest = r.body["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let download = format!("{}/assets/{digest}/blob.bin", server.url);
    // A live event stream: long-lived, it must outlive the header timeout.
    let mut sse = api
        .request("GET", "/api/v1/events/stream")
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    assert_eq!(sse.status(), 200);
    let pid = server.pid();
    let fds_before = open_fds(pid);
    let target = addr(&server);
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(&target).unwrap())
        .collect();
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| TcpStream::connect(&target).unwrap())
        .collect();
    let opened = Instant::now();
    // One header byte a second on each slow connection, until the server closes it (bounded).
    let slow_writer = std::thread::spawn(move || {
        let mut slow: Vec<Option<TcpStream>> = slow.into_iter().map(Some).collect();
        let msg = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for i in 0..20 {
            for c in slow.iter_mut() {
                if let Some(s) = c {
                    if s.write_all(&msg[i % msg.len()..][..1]).is_err() {
                        *c = None;
                    }
                }
            }
            if slow.iter().all(Option::is_none) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        slow.iter().filter(|c| c.is_some()).count()
    });
    // Service goes on while all of them are open.
    let client = crate::harness::client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let h = client
            .get(format!("{}/healthz", server.url))
            .send()
            .unwrap();
        assert_eq!(h.status(), 200);
        let body = client.get(&download).send().unwrap().bytes().unwrap();
        assert!(body[..] == data[..], "the download is whole");
        eprintln!("healthz + 4 MiB download under siege: {:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    assert!(
        opened.elapsed() < Duration::from_secs(3),
        "the checks ran before the timeout"
    );
    // After the header timeout the server closes the idle connections itself.
    let deadline = opened + Duration::from_secs(3 + 5);
    let closed = idle
        .iter_mut()
        .map(|s| closed_by(s, deadline))
        .filter(|c| *c)
        .count();
    eprintln!(
        "{closed} of {IDLE} idle connections closed after {:?}",
        opened.elapsed()
    );
    assert_eq!(closed, IDLE, "idle connections left open");
    let still_open = slow_writer.join().unwrap();
    assert_eq!(still_open, 0, "slowloris connections left open");
    drop(idle);
    let fds_after = open_fds(pid);
    eprintln!("server fds: {fds_before} before, {fds_after} after");
    assert!(fds_after <= fds_before + 20, "{fds_after} descriptors open");
    // The event stream is still live: a new machine shows up on it.
    let r = api.json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({"mac": "52:54:00:aa:00:01"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("52:54:00:aa:00:01") {
        let n = sse.read(&mut buf).expect("the SSE stream is still open");
        assert!(n > 0, "the SSE stream ended");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// A request body that hands out `chunks` reads of up to 64 KiB, `pause` apart, counting bytes.
struct Trickle {
    chunks: usize,
    pause: Duration,
    sent: Arc<std::sync::atomic::AtomicUsize>,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.chunks == 0 {
            return Ok(0);
        }
        std::thread::sleep(self.pause);
        self.chunks -= 1;
        let n = buf.len().min(64 << 10);
        buf[..n].fill(b'u');
        self.sent.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn a_moving_upload_outlives_the_stall_timeout_and_a_stalled_one_is_dropped() {
    let (_tmp, server) = server_with("header_timeout = \"2s\"\nbody_stall_timeout = \"2s\"\n");
    let api = server.http();
    // 12 chunks 500 ms apart: 6 s in all, three times the stall timeout, never stalled.
    let t = Instant::now();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = api.send(
        api.request("POST", "/api/v1/assets?name=slow.bin&kind=loader")
            .timeout(Duration::from_secs(30))
            .body(reqwest::blocking::Body::new(Trickle {
                chunks: 12,
                pause: Duration::from_millis(500),
                sent: sent.clone(),
            })),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["size"], sent.load(Ordering::Relaxed));
    assert!(t.elapsed() > Duration::from_secs(5));
    // A body that stops: the server gives up on it soon after the stall timeout.
    let mut s = TcpStream::connect(addr(&server)).unwrap();
    write!(
        s,
        "POST /api/v1/assets?name=stalled.bin&kind=loader HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1048576\r\n\r\n",
        server.token()
    )
    .unwrap();
    s.write_all(&[b's'; 1000]).unwrap();
    let stalled = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(2 + 5)))
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .expect("an answer to the stalled upload");
    assert_eq!(
        &head, b"HTTP/1.1 400",
        "a client's stall is its fault, not ours"
    );
    assert!(
        closed_by(&mut s, stalled + Duration::from_secs(2 + 5)),
        "a stalled upload kept its connection"
    );
    eprintln!("stalled upload dropped after {:?}", stalled.elapsed());
    assert!(stalled.elapsed() >= Duration::from_secs(2));
}

#[test]
fn clients_that_stop_reading_are_cut_and_one_address_cannot_take_every_slot() {
    let (_tmp, server) = server_with(
        "body_stall_timeout = \"2s\"\nmax_connections = 16\nmax_connections_per_client = 8\n",
    );
    let api = server.http();
    // 16 MiB: more than the kernel buffers of a client that reads nothing.
    let data = vec![7u8; 16 << 20];
    let r = api.send(
        api.request("POST", "/api/v1/assets?name=big.bin&kind=loader")
            .body(data),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let digest = r.body["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let pid = server.pid();
    let fds_before = open_fds(pid);
    let target = addr(&server);
    // Eight downloads from one address that never read a byte.
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut t = TcpStream::connect(&target).unwrap();
            write!(
                t,
                "GET /assets/{digest}/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .unwrap();
            t
        })
        .collect();
    // A ninth from the same address is closed at once; another address is served.
    let mut ninth = TcpStream::connect(&target).unwrap();
    assert!(
        closed_by(&mut ninth, Instant::now() + Duration::from_secs(2)),
        "a ninth connection from one address was kept"
    );
    let other = crate::loopback_dhcp::from_address(&api, "127.0.0.2".parse().unwrap());
    let started = Instant::now();
    assert_eq!(other.get("/healthz").status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The non-reading downloads are closed by the server after the 2 s stall (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(15);
    while open_fds(pid) > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        open_fds(pid) <= fds_before,
        "{} descriptors open, {} before: stalled downloads were kept",
        open_fds(pid),
        fds_before
    );
    drop(stalled);
}
