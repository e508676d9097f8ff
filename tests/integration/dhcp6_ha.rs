//! DHCPv6 bindings that outlive the server (issue 16): `kill -9` and a restart on the same data
//! directory keep every Replied binding and a declined address's quarantine, a Renew keeps its
//! address, a Renew without a binding gets NoBinding; and two servers sharing one etcd never
//! bind one address to two `dhclient -6` clients. Crafted clients talk through a relay address
//! (as in `dhcp6.rs`), so each exchange is one datagram and its answer. Needs root.
//!
//! ```text
//!  kill -9:  ns srv: br0 2001:2::1 ── vc0 (ns relay: 2001:2::2, the test's client)
//!  etcd:     ns a: eth0 2001:2::1 ─┐
//!            ns b: eth0 2001:2::3 ─┼─ br0 (ns sw: 198.18.0.10, etcd) ── vc0..vc2 (ns c: dhclient)
//! ```

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::process::Command;
use std::time::Duration;

use dhcproto::v6::{DhcpOption, IAAddr, Message, MessageType, OptionCode, Status, IANA};
use dhcproto::{Decodable, Decoder, Encodable};
use inventory::Store;
use inventory_etcd::test_server::EtcdServer;

use crate::dhcp6::{config, dhclient6, in_netns, ip, no_dad, opt, options, start, topology};
use crate::harness::{binary, Server};
use crate::netns::Netns;

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A crafted client message: DUID-LL of `mac`, one IA_NA (IAID 1) naming `addrs`, the server's
/// DUID when given, Rapid Commit on a Solicit.
fn message(kind: MessageType, mac: [u8; 6], addrs: &[Ipv6Addr], server: Option<&[u8]>) -> Vec<u8> {
    let mut m = Message::new_with_id(kind, [mac[5], 1, 2]);
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&mac);
    m.opts_mut().insert(DhcpOption::ClientId(duid));
    if let Some(s) = server {
        m.opts_mut().insert(DhcpOption::ServerId(s.to_vec()));
    }
    if kind == MessageType::Solicit {
        m.opts_mut().insert(DhcpOption::RapidCommit);
    }
    let mut ia = IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    };
    for a in addrs {
        ia.opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: *a,
            preferred_life: 0,
            valid_life: 0,
            opts: Default::default(),
        }));
    }
    m.opts_mut().insert(DhcpOption::IANA(ia));
    m.to_vec().unwrap()
}

/// Sends `msg` relayed from 2001:2::2 (in `relay`) to the server until it answers (10 tries,
/// 500 ms each); the client message inside the Relay-Reply.
fn exchange(relay: &Netns, msg: Vec<u8>, s: &Server) -> Message {
    let mut fwd = vec![12, 0];
    fwd.extend_from_slice(&addr("2001:2::2").octets());
    fwd.extend_from_slice(&addr("fe80::5054:ff:fe00:1").octets());
    opt(&mut fwd, 9, &msg);
    let reply = in_netns(relay, move || {
        let sock = UdpSocket::bind(SocketAddrV6::new(addr("2001:2::2"), 547, 0, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let server = SocketAddrV6::new(addr("2001:2::1"), 547, 0, 0);
        let mut buf = vec![0u8; 4096];
        for _ in 0..10 {
            sock.send_to(&fwd, server).unwrap();
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    })
    .unwrap_or_else(|| panic!("no Relay-Reply within 5 s; server log:\n{}", s.log()));
    let outer = options(&reply[34..]);
    let inner = &outer
        .iter()
        .find(|(c, _)| *c == 9)
        .expect("relay message")
        .1;
    Message::decode(&mut Decoder::new(inner)).unwrap()
}

/// The reply's IA_NA: status (Success when none) and (address, valid lifetime) pairs.
fn ia_of(m: &Message) -> (Status, Vec<(Ipv6Addr, u32)>) {
    let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else {
        panic!("no IA_NA: {m:?}");
    };
    let st = match ia.opts.get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => s.status,
        _ => Status::Success,
    };
    let addrs = ia
        .opts
        .get_all(OptionCode::IAAddr)
        .unwrap_or(&[])
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some((a.addr, a.valid_life)),
            _ => None,
        })
        .collect();
    (st, addrs)
}

fn bound(m: &Message) -> Ipv6Addr {
    match ia_of(m) {
        (Status::Success, a) if a.len() == 1 && a[0].1 > 0 => a[0].0,
        other => panic!("expected one bound address, got {other:?}"),
    }
}

fn mac(i: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0xcc, 0, i]
}

#[test]
fn after_kill_9_every_replied_binding_and_quarantine_holds_and_renews_keep_their_address() {
    let (srv, relay) = topology(&["52:54:00:cc:01:01"]);
    ip(
        &relay,
        &["addr", "add", "2001:2::2/64", "dev", "vc0", "nodad"],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("stateful");
    let mut s = start(&srv, dir.path(), &cfg);

    let mut got = Vec::new();
    let mut server_duid = Vec::new();
    for i in 1..=3 {
        let r = exchange(&relay, message(MessageType::Solicit, mac(i), &[], None), &s);
        assert_eq!(r.msg_type(), MessageType::Reply, "rapid commit");
        if let Some(DhcpOption::ServerId(d)) = r.opts().get(OptionCode::ServerId) {
            server_duid = d.clone();
        }
        got.push(bound(&r));
    }
    // Client 2 declines its address (another host answers on it).
    let r = exchange(
        &relay,
        message(MessageType::Decline, mac(2), &[got[1]], Some(&server_duid)),
        &s,
    );
    assert_eq!(r.msg_type(), MessageType::Reply);

    s.kill9();
    {
        let store = inventory::RedbStore::open(&dir.path().join("data/inventory.redb")).unwrap();
        let leases = store.leases6().unwrap();
        for (i, a) in got.iter().enumerate() {
            let l = leases
                .iter()
                .find(|l| l.ip == *a)
                .unwrap_or_else(|| panic!("{a} durable: {leases:?}"));
            assert_eq!(l.declined, i == 1, "{l:?}");
        }
    }

    let s = start(&srv, dir.path(), &cfg);
    // The same client renews: same address, a fresh lifetime.
    let r = exchange(
        &relay,
        message(MessageType::Renew, mac(1), &[got[0]], Some(&server_duid)),
        &s,
    );
    assert_eq!(bound(&r), got[0], "renewed after the restart");
    // New clients hinting at taken addresses get others; never the declined one.
    for (i, hint) in [(4, got[1]), (5, got[2])] {
        let r = exchange(
            &relay,
            message(MessageType::Solicit, mac(i), &[hint], None),
            &s,
        );
        let a = bound(&r);
        assert!(
            !got.contains(&a),
            "client {i} got {a}, already bound: {got:?}"
        );
    }
    // A Renew for a binding the server never made: NoBinding (RFC 8415 §18.3.4).
    let r = exchange(
        &relay,
        message(
            MessageType::Renew,
            mac(6),
            &[addr("2001:2::1:99")],
            Some(&server_duid),
        ),
        &s,
    );
    assert_eq!(ia_of(&r), (Status::NoBinding, vec![]));
    drop(s);
    drop(relay);
    drop(srv);
}

/// `provisioner serve` in `ns`, DHCPv6 on `eth0` as `server_address`, sharing etcd.
fn serve(ns: &Netns, v4: &str, v6: &str, etcd: &str, dir: &std::path::Path) -> Server {
    let data = dir.join(format!("data-{v4}"));
    std::fs::create_dir_all(&data).unwrap();
    let cfg = dir.join(format!("{v4}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[dhcp6]\nmode = \"stateful\"\ninterface = \"eth0\"\nserver_address = \"{v6}\"\n\
             range = \"2001:2::1:0-2001:2::1:3\"\n"
        ),
    )
    .unwrap();
    let mut c = Command::new(binary());
    c.args([
        "serve",
        "--listen",
        &format!("{v4}:8080"),
        "--no-tftp",
        "--config",
    ])
    .arg(&cfg)
    .arg("--data-dir")
    .arg(&data)
    .args(["--etcd-endpoints", etcd]);
    let s = Server::spawn(ns.wrap(&c), &data);
    assert!(s.log().contains("listening on dhcp6://"), "{}", s.log());
    s
}

#[test]
fn two_servers_on_one_etcd_never_bind_one_address_to_two_dhclients() {
    let (sw, a, b, c) = (
        Netns::new("h6sw"),
        Netns::new("h6a"),
        Netns::new("h6b"),
        Netns::new("h6c"),
    );
    for ns in [&sw, &a, &b, &c] {
        no_dad(ns);
    }
    ip(
        &sw,
        &[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    );
    ip(&sw, &["addr", "add", "198.18.0.10/24", "dev", "br0"]);
    ip(&sw, &["link", "set", "br0", "up"]);
    let attach = |port: &str, ns: &Netns, inner: &str, addrs: &[&str], mac: Option<&str>| {
        ip(
            &sw,
            &[
                "link", "add", port, "type", "veth", "peer", "name", inner, "netns", &ns.name,
            ],
        );
        ip(&sw, &["link", "set", port, "master", "br0"]);
        ip(&sw, &["link", "set", port, "up"]);
        if let Some(m) = mac {
            ip(ns, &["link", "set", inner, "address", m]);
        }
        for a in addrs {
            ip(ns, &["addr", "add", a, "dev", inner, "nodad"]);
        }
        ip(ns, &["link", "set", inner, "up"]);
    };
    attach("pa", &a, "eth0", &["198.18.0.1/24", "2001:2::1/64"], None);
    attach("pb", &b, "eth0", &["198.18.0.2/24", "2001:2::3/64"], None);
    let macs = [
        "52:54:00:cd:00:01",
        "52:54:00:cd:00:02",
        "52:54:00:cd:00:03",
    ];
    for (i, m) in macs.iter().enumerate() {
        attach(&format!("pc{i}"), &c, &format!("vc{i}"), &[], Some(m));
    }

    let etcd = EtcdServer::start_in_netns(&sw.name, "198.18.0.10", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let sa = serve(&a, "198.18.0.1", "2001:2::1", &etcd.endpoint, tmp.path());
    let sb = serve(&b, "198.18.0.2", "2001:2::3", &etcd.endpoint, tmp.path());

    // Four addresses, two servers whose pools start empty and hash clients alike: each client
    // is advertised the same address by both, and only the store's claims keep them apart.
    let mut leased = Vec::new();
    for i in 0..macs.len() {
        let text = dhclient6(
            &c,
            tmp.path(),
            &format!("vc{i}"),
            &[],
            "iaaddr 2001:2::1:",
            &sa,
        );
        let a = text
            .split("iaaddr ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.parse::<Ipv6Addr>().ok())
            .unwrap_or_else(|| panic!("an address in:\n{text}\nother server:\n{}", sb.log()));
        leased.push(a);
    }
    let mut distinct = leased.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), macs.len(), "distinct addresses: {leased:?}");

    // Each is in the shared store, bound to its client's MAC.
    let endpoint = etcd.endpoint.clone();
    let stored = in_netns(&sw, move || {
        let store =
            inventory_etcd::EtcdStore::open(&inventory_etcd::EtcdSettings::new(vec![endpoint]))
                .unwrap();
        store.leases6().unwrap()
    });
    for (a, m) in leased.iter().zip(macs) {
        let l = stored
            .iter()
            .find(|l| l.ip == *a)
            .unwrap_or_else(|| panic!("{a} in etcd: {stored:?}"));
        assert_eq!(
            l.mac.map(|x| x.to_string()).as_deref(),
            Some(m),
            "{stored:?}"
        );
    }
    drop((sa, sb, etcd));
}
