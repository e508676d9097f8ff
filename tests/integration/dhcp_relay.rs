//! Relayed DHCP on loopback, the test acting as the relay. kill -9 under DHCP load: every address a client got an ACK for is still its lease after the
//! restart (RFC 2131 §4.3.1: stable storage before the ACK). The test is the relay: four threads
//! on 127.0.0.{3..6}:67 run DISCOVER/OFFER/REQUEST/ACK for their own MACs against the server on
//! loopback while the server is killed; afterwards each acknowledged MAC is offered its address
//! again, and no address was acknowledged to two MACs.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::Server;
use crate::loopback_dhcp::{dora, exchange, free_port, packet, DISCOVER, OFFER};

/// A MAC and the address it was acknowledged.
type Acked = ([u8; 6], Ipv4Addr);

fn mac(thread: u8, i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x52, 0x54, 0xcc, thread, b[2], b[3]]
}

fn config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dhcp]\nmode = \"full\"\nlisten = \"127.0.0.1\"\nport = {port}\nserver_ip = \"127.0.0.1\"\n\
             [[dhcp.subnet]]\nnetwork = \"127.0.0.0/8\"\nrange = \"127.1.0.1-127.1.255.254\"\nlease_time = \"1h\"\n"
        ),
    )
    .unwrap();
    cfg
}

/// A full-mode server on a free loopback port: (dir, data dir, config, port, server).
fn relay_server() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    u16,
    Server,
) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let data = dir.path().join("data");
    let s = Server::start_in(&data, &["--config", cfg.to_str().unwrap(), "--no-tftp"]);
    (dir, data, cfg, port, s)
}

#[test]
fn kill_9_under_load_keeps_every_acknowledged_lease() {
    let (_dir, data, cfg, port, mut s) = relay_server();
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let acked: Arc<Mutex<Vec<Acked>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (3u8..=6)
        .map(|t| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let relay = Ipv4Addr::new(127, 0, 0, t);
                let sock = UdpSocket::bind(SocketAddrV4::new(relay, 67)).expect("bind :67 (root)");
                sock.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                // Bounded: at most 20,000 exchanges per thread, and the kill stops it anyway.
                for i in 0..20_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let m = mac(t, i);
                    let xid = (t as u32) << 24 | i;
                    if let Some(got) = dora(&sock, server, relay, m, xid) {
                        acked.lock().unwrap().push((m, got));
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the server in the middle of it.
    let started = Instant::now();
    while acked.lock().unwrap().len() < 400 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 400,
        "only {} ACKs before the kill",
        acked.len()
    );
    let mut owner: HashMap<Ipv4Addr, [u8; 6]> = HashMap::new();
    for (m, ip) in &acked {
        if let Some(prev) = owner.insert(*ip, *m) {
            assert_eq!(&prev, m, "{ip} acknowledged to two MACs");
        }
    }
    // Restart on the same data directory; every acknowledged MAC is offered its address.
    let _s2 = Server::start_in(&data, &["--config", cfg.to_str().unwrap(), "--no-tftp"]);
    let relay = Ipv4Addr::new(127, 0, 0, 3);
    let sock = UdpSocket::bind(SocketAddrV4::new(relay, 67)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // New clients first: had a lease been lost, its address would be free and offered to them.
    for i in 0..5u32 {
        let xid = 0x6000_0000 | i;
        let (ip, _) = exchange(
            &sock,
            server,
            &packet(DISCOVER, xid, mac(99, i), relay, &[]),
            OFFER,
            xid,
        )
        .expect("a new client gets an offer after the restart");
        assert!(
            !owner.contains_key(&ip),
            "{ip}, acknowledged before the kill, was offered to a new client"
        );
    }
    let mut lost = Vec::new();
    for (i, (m, ip)) in acked.iter().enumerate() {
        let xid = 0x7000_0000 | i as u32;
        let offered = (0..3).find_map(|_| {
            exchange(
                &sock,
                server,
                &packet(DISCOVER, xid, *m, relay, &[]),
                OFFER,
                xid,
            )
        });
        if offered.map(|(o, _)| o) != Some(*ip) {
            lost.push((m, ip, offered));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged leases lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!(
        "{} acknowledged leases before kill -9, all kept",
        acked.len()
    );
}

#[test]
fn relay_agent_information_is_recorded_on_the_machine() {
    let (_dir, _data, _cfg, port, s) = relay_server();
    let api = s.http();
    let m = mac(42, 1);
    let mac_text = m
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let r = api.json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({ "mac": mac_text }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let relay = Ipv4Addr::new(127, 0, 0, 7);
    let sock = UdpSocket::bind(SocketAddrV4::new(relay, 67)).expect("bind :67 (root)");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // Option 82: circuit id "Gi1/0/17", remote id 00:1b:2c:3d:4e:5f.
    let mut o82 = vec![1, 8];
    o82.extend_from_slice(b"Gi1/0/17");
    o82.extend_from_slice(&[2, 6, 0x00, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]);
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let offered = exchange(
        &sock,
        server,
        &packet(DISCOVER, 77, m, relay, &[(82, o82)]),
        OFFER,
        77,
    );
    assert!(offered.is_some(), "no offer");
    let loc = &api.get(&format!("/api/v1/machines/{mac_text}")).body["location"];
    assert_eq!(loc["relay"], "127.0.0.7");
    assert_eq!(loc["circuit_id"], "Gi1/0/17");
    assert_eq!(loc["remote_id"], "001b2c3d4e5f");
}
