//! DHCP floods (issue 18, item 8) against the real binary on loopback, the test acting as a relay
//! (as in `dhcp_relay.rs`): random-MAC DISCOVERs under `discover` leave at most the configured
//! number of records, a bounded number of events and one warning, also counting what HTTP boot
//! admits; strangers holding every offer they can get do not keep a registered machine from its
//! address.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::harness::Server;
use crate::loopback_dhcp::{exchange, packet, ACK, DISCOVER, OFFER, REQUEST};

/// PXE firmware's options: vendor class (60) and client architecture (93, x86-64 UEFI).
fn pxe_options() -> Vec<(u8, Vec<u8>)> {
    vec![
        (60, b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
        (93, vec![0, 7]),
    ]
}

fn random_macs(n: usize, seed: u64) -> Vec<[u8; 6]> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            [b[0] & 0xfe | 0x02, b[1], b[2], b[3], b[4], b[5]]
        })
        .collect()
}

/// A full-mode server on a free loopback port with `extra` lines in `[dhcp]` and the subnet.
fn server(dhcp_extra: &str, range: &str, subnet_extra: &str) -> (tempfile::TempDir, u16, Server) {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::loopback_dhcp::free_port();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dhcp]\nmode = \"full\"\nlisten = \"127.0.0.1\"\nport = {port}\nserver_ip = \"127.0.0.1\"\n{dhcp_extra}\n\
             [[dhcp.subnet]]\nnetwork = \"127.0.0.0/8\"\nrange = \"{range}\"\nlease_time = \"1h\"\n{subnet_extra}\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = Server::start_in(&data, &["--config", cfg.to_str().unwrap(), "--no-tftp"]);
    (dir, port, s)
}

fn metric(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// The stored event count once the event writer has caught up (two equal reads 300 ms apart,
/// within 10 s).
fn settled_events(s: &Server) -> u64 {
    let api = s.http();
    let seq = || {
        metric(&api.get("/metrics").text, "provisioner_event_sequence ").expect("event sequence")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = seq();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = seq();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn five_thousand_random_macs_under_discover_leave_at_most_the_cap() {
    let (_dir, port, s) = server(
        "unknown_machines = \"discover\"\nmax_discovered = 40\ndiscover_rate = 10000",
        "127.1.0.1-127.1.255.254",
        "",
    );
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let (relay, sock) = crate::loopback_dhcp::relay_socket();
    // Bounded: 5,000 exchanges and 120 s.
    let started = Instant::now();
    let mut offers = 0;
    for (i, m) in random_macs(5_000, 0x5eed_1234_abcd_0001).iter().enumerate() {
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
        let xid = 0x0100_0000 | i as u32;
        let msg = packet(DISCOVER, xid, *m, relay, &pxe_options());
        offers += usize::from(exchange(&sock, server, &msg, OFFER, xid).is_some());
    }
    assert!(offers >= 4_900, "{offers} offers of 5,000 DISCOVERs");
    // HTTP boot admits through the same cap.
    let api = s.http();
    for m in random_macs(50, 0x5eed_1234_abcd_0002) {
        let mac = m.map(|b| format!("{b:02x}")).join(":");
        let r = api.get(&format!("/boot/ipxe?mac={mac}&platform=efi"));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let machines = api.get("/api/v1/machines").body;
    let machines = machines.as_array().unwrap();
    assert_eq!(machines.len(), 40, "records: the cap");
    assert!(machines
        .iter()
        .all(|m| m["lifecycle"]["state"] == "discovered"));
    // Per admitted record: `created` and a `seen`; the refused strangers share one budget (100
    // at once, 30 a minute).
    let minutes = started.elapsed().as_secs() / 60;
    let events = settled_events(&s);
    assert!(
        events <= 40 * 2 + 100 + 30 * (minutes + 1),
        "{events} events"
    );
    let metrics = api.get("/metrics").text;
    assert_eq!(
        metric(
            &metrics,
            "provisioner_discovery_refused_total{reason=\"cap\"} "
        ),
        Some(5_050 - 40),
        "{metrics}"
    );
    let log = s.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("unknown machines are not being recorded"))
        .count();
    assert!(
        (1..=1 + minutes as usize).contains(&warnings),
        "{warnings} warnings in {minutes} min: {log}"
    );
    eprintln!("5,000 DISCOVERs + 50 HTTP boots: 40 records, {events} events, one warning");
}

#[test]
fn strangers_do_not_keep_a_registered_machine_from_an_address() {
    // Ten addresses, the default share: strangers may hold eight.
    let (_dir, port, s) = server("", "127.1.0.1-127.1.0.10", "");
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let (relay, sock) = crate::loopback_dhcp::relay_socket();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Ten netbooting strangers DISCOVER and never REQUEST.
    let strangers = random_macs(10, 0x5eed_1234_abcd_0003);
    let offered = strangers
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            let xid = 0x0200_0000 | *i as u32;
            let msg = packet(DISCOVER, xid, **m, relay, &pxe_options());
            exchange(&sock, server, &msg, OFFER, xid).is_some()
        })
        .count();
    assert_eq!(offered, 8, "the unregistered share of ten addresses");
    // A plain client repeating itself at the full share leaves no event (no answer to wait for;
    // the server takes packets in order, so the exchange below comes after all of them).
    let plain = [0x02, 0, 0, 0, 0x33, 1];
    for i in 0..50u32 {
        let msg = packet(DISCOVER, 0x0300_0000 | i, plain, relay, &[]);
        sock.send_to(&msg, server).unwrap();
    }
    // A registered machine without a reservation still gets an address, and its lease.
    let api = s.http();
    let mac = [0x52, 0x54, 0, 0x33, 0, 1];
    let r = api.json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({ "mac": "52:54:00:33:00:01", "hostname": "node-1" }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let xid = 0x0400_0000;
    let (ip, sid) = exchange(
        &sock,
        server,
        &packet(DISCOVER, xid, mac, relay, &pxe_options()),
        OFFER,
        xid,
    )
    .expect("an offer for the registered machine");
    let opts = [
        (50, ip.octets().to_vec()),
        (54, sid.unwrap_or(Ipv4Addr::LOCALHOST).octets().to_vec()),
    ];
    let (acked, _) = exchange(
        &sock,
        server,
        &packet(REQUEST, xid, mac, relay, &opts),
        ACK,
        xid,
    )
    .expect("an ACK for the registered machine");
    assert_eq!(acked, ip);
    let evs = api.get("/api/v1/events?machine=02:00:00:00:33:01").body;
    let evs = evs.as_array().unwrap();
    assert_eq!(evs.len(), 0, "{:?}", &evs[..evs.len().min(2)]);
    let metrics = api.get("/metrics").text;
    assert!(
        metric(
            &metrics,
            "provisioner_dhcp_dropped_total{reason=\"unregistered share of the pool in use\"} "
        )
        .is_some_and(|n| n >= 52),
        "{metrics}"
    );
}

#[test]
fn machines_an_operator_registered_do_not_use_up_discovery() {
    // Under `discover`, only `discovered` records count against the cap: a rack registered by
    // CSV with bare MACs (no hostname or profile yet) must not switch discovery off.
    let (_dir, port, s) = server(
        "unknown_machines = \"discover\"\nmax_discovered = 5\ndiscover_rate = 10000",
        "127.1.0.1-127.1.255.254",
        "",
    );
    let api = s.http();
    let csv: String = crate::harness::macs(0x0a00, 10)
        .iter()
        .map(|m| format!("{m}\n"))
        .collect();
    let r = api.csv(csv);
    assert_eq!(r.status, 200, "{}", r.text);
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let (relay, sock) = crate::loopback_dhcp::relay_socket();
    for (i, m) in random_macs(5, 0x5eed_0000_0000_0042).iter().enumerate() {
        let xid = 0x0300_0000 | i as u32;
        let msg = packet(DISCOVER, xid, *m, relay, &pxe_options());
        assert!(exchange(&sock, server, &msg, OFFER, xid).is_some());
    }
    let machines = api.get("/api/v1/machines").body;
    let discovered = machines
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["lifecycle"]["state"] == "discovered")
        .count();
    assert_eq!(discovered, 5, "all five strangers recorded: {machines}");
    let metrics = api.get("/metrics").text;
    assert_eq!(
        metric(&metrics, "provisioner_discovery_unclaimed "),
        Some(5),
        "{metrics}"
    );
}
