//! DHCP with real clients (busybox udhcpc, ISC dhclient) in namespaces the test creates: a server
//! namespace with a bridge at 198.18.0.1/24 and a client namespace joined to it by veth pairs.

use std::process::Command;

use inventory::{Machine, MachineSpec, Store, Timestamp};

use crate::harness::{serve_cmd, stderr, stdout, Server};
use crate::netns::Netns;

fn ip(ns: &Netns, args: &[&str]) {
    let o = Command::new("ip")
        .args(["-n", &ns.name])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ip -n {} {args:?}: {}",
        ns.name,
        stderr(&o)
    );
}

/// A veth pair from `a` (named `a_if`) to `b` (named `b_if`), both ends up.
fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    ip(
        a,
        &[
            "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
        ],
    );
    ip(a, &["link", "set", a_if, "up"]);
    ip(b, &["link", "set", b_if, "up"]);
}

/// Server namespace (bridge `br0`, 198.18.0.1/24) and client namespace with one veth per MAC.
fn topology(macs: &[&str]) -> (Netns, Netns) {
    let srv = Netns::new("dhcpsrv");
    let cli = Netns::new("dhcpcli");
    ip(&srv, &["link", "add", "br0", "type", "bridge"]);
    ip(&srv, &["addr", "add", "198.18.0.1/24", "dev", "br0"]);
    ip(&srv, &["link", "set", "br0", "up"]);
    for (i, mac) in macs.iter().enumerate() {
        let (s, c) = (format!("vs{i}"), format!("vc{i}"));
        veth(&srv, &s, &cli, &c);
        ip(&srv, &["link", "set", &s, "master", "br0"]);
        ip(&cli, &["link", "set", &c, "address", mac]);
    }
    (srv, cli)
}

const CONFIG: &str = r#"
[dhcp]
mode = "full"
server_ip = "198.18.0.1"
[[dhcp.subnet]]
network = "198.18.0.0/24"
range = "198.18.0.100-198.18.0.199"
router = "198.18.0.1"
dns = ["198.18.0.1"]
domain = "lab"
lease_time = "1h"
"#;

#[test]
fn udhcpc_dhclient_and_dhcpcd_get_leases_reservations_hold_and_acks_are_durable() {
    let reserved_mac = "52:54:00:aa:00:02";
    let (srv, cli) = topology(&["52:54:00:aa:00:01", reserved_mac, "52:54:00:aa:00:03"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        // An operator reserved .150 for the second machine.
        let store = inventory::RedbStore::open(&data.join("inventory.redb")).unwrap();
        let spec = MachineSpec {
            ip: Some("198.18.0.150".parse().unwrap()),
            ..Default::default()
        };
        store
            .create_machines(
                vec![Machine::registered(
                    reserved_mac.parse().unwrap(),
                    spec,
                    Timestamp(1),
                )],
                "test",
                Timestamp(1),
            )
            .unwrap();
    }
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let serve = srv.wrap(&serve_cmd(&cfg, &data));
    let mut s = Server::spawn(serve, &data);
    assert!(
        s.log().contains("listening on dhcp://0.0.0.0:67"),
        "{}",
        s.log()
    );

    let o = cli
        .command("busybox")
        .args([
            "udhcpc",
            "-i",
            "vc0",
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .output()
        .unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        o.status.success() && out.contains("lease of 198.18.0.100 obtained from 198.18.0.1"),
        "udhcpc: {out}"
    );

    // dhclient -d stays in the foreground once bound: wait (bounded) for its lease file, then stop it.
    let lease_file = dir.path().join("dhclient.leases");
    let mut dhclient = cli
        .command("dhclient")
        .args(["-4", "-1", "-d", "-sf", "/bin/true", "-pf"])
        .arg(dir.path().join("dhclient.pid"))
        .arg("-lf")
        .arg(&lease_file)
        .arg("vc1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&lease_file)
        .unwrap_or_default()
        .contains("fixed-address")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dhclient got no lease within 30s; server log:\n{}",
            s.log()
        );
        assert!(
            dhclient.try_wait().unwrap().is_none(),
            "dhclient exited without a lease"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    dhclient.kill().unwrap();
    dhclient.wait().unwrap();
    let leases = std::fs::read_to_string(&lease_file).unwrap();
    assert!(
        leases.contains("fixed-address 198.18.0.150")
            && leases.contains("option routers 198.18.0.1"),
        "{leases}"
    );

    // dhcpcd in one-shot mode (the flags lab-recipes.md found to behave). No IPv4LL (-L): a
    // dhcpcd that kept a lease from an earlier run (its lease files are per interface name, not
    // per namespace) starts with INIT-REBOOT, which a server with no record of it must not
    // answer (RFC 2131 §4.3.2); while it falls back to DISCOVER, a link-local address would
    // otherwise end its one-shot run first.
    let o = cli
        .command("timeout")
        .args([
            "30",
            "dhcpcd",
            "-4",
            "-L",
            "-B",
            "-1",
            "-f",
            "/dev/null",
            "-c",
            "/bin/true",
            "vc2",
        ])
        .output()
        .unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        out.contains("vc2: leased 198.18.0.101 for 3600 seconds"),
        "dhcpcd: {out}"
    );

    // Every binding was on disk before its ACK: kill -9 and read the store.
    s.kill9();
    let store = inventory::RedbStore::open(&data.join("inventory.redb")).unwrap();
    let l1 = store
        .lease_by_ip("198.18.0.100".parse().unwrap())
        .unwrap()
        .expect("lease .100 durable");
    assert_eq!(l1.mac.to_string(), "52:54:00:aa:00:01");
    let l2 = store
        .lease_by_ip("198.18.0.150".parse().unwrap())
        .unwrap()
        .expect("lease .150 durable");
    assert_eq!(l2.mac.to_string(), reserved_mac);
    let l3 = store
        .lease_by_ip("198.18.0.101".parse().unwrap())
        .unwrap()
        .expect("lease .101 durable");
    assert_eq!(l3.mac.to_string(), "52:54:00:aa:00:03");
    // The reserved machine's DHCP traffic is in its history.
    let evs = store
        .events(&inventory::EventQuery {
            mac: Some(reserved_mac.parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    assert!(
        evs.iter()
            .any(|e| matches!(&e.kind, inventory::EventKind::Seen { via, .. } if via == "dhcp")),
        "{evs:?}"
    );
    drop(cli);
    drop(srv);
}

/// Runs the PXE firmware stand-in in the client namespace; returns its JSON lines.
fn pxe_client(cli: &Netns, args: &[&str]) -> Vec<serde_json::Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/integration/tools/pxe_client.py"
    );
    let o = cli
        .command("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "pxe_client: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn proxy_mode_beside_dnsmasq_adds_boot_information_and_no_address() {
    let mac = "52:54:00:bb:00:01";
    let (srv, cli) = topology(&[mac]);
    // The site's own DHCP server, dnsmasq, on 198.18.0.2 in a third namespace on the bridge.
    let site = Netns::new("dhcpsite");
    veth(&srv, "vsite", &site, "vsite");
    ip(&srv, &["link", "set", "vsite", "master", "br0"]);
    ip(&site, &["addr", "add", "198.18.0.2/24", "dev", "vsite"]);
    let dir = tempfile::tempdir().unwrap();
    let mut dnsmasq = site
        .command("dnsmasq")
        .args([
            "-k",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=vsite",
            "--bind-interfaces",
            "--no-ping",
        ])
        .args([
            "--dhcp-range=198.18.0.100,198.18.0.150,255.255.255.0,1h",
            "--dhcp-authoritative",
            "--log-facility=-",
        ])
        .arg(format!(
            "--dhcp-leasefile={}",
            dir.path().join("dnsmasq.leases").display()
        ))
        .arg(format!(
            "--pid-file={}",
            dir.path().join("dnsmasq.pid").display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq (run scripts/install-test-deps)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let o = site.command("ss").args(["-uln"]).output().unwrap();
        if stdout(&o).contains(":67 ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && dnsmasq.try_wait().unwrap().is_none(),
            "dnsmasq did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let store = inventory::RedbStore::open(&data.join("inventory.redb")).unwrap();
        store
            .create_machines(
                vec![Machine::registered(
                    mac.parse().unwrap(),
                    Default::default(),
                    Timestamp(1),
                )],
                "test",
                Timestamp(1),
            )
            .unwrap();
    }
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[dhcp]\nmode = \"proxy\"\nserver_ip = \"198.18.0.1\"\n",
    )
    .unwrap();
    let serve = srv.wrap(&serve_cmd(&cfg, &data));
    let s = Server::spawn(serve, &data);
    assert!(
        s.log().contains("listening on dhcp://0.0.0.0:4011"),
        "{}",
        s.log()
    );

    let offers = pxe_client(&cli, &["--iface", "vc0", "--mac", mac, "--wait", "3"]);
    let site_offer = offers
        .iter()
        .find(|o| o["from"] == "198.18.0.2")
        .unwrap_or_else(|| panic!("no offer from dnsmasq: {offers:?}"));
    let ours = offers
        .iter()
        .find(|o| o["from"] == "198.18.0.1")
        .unwrap_or_else(|| panic!("no proxy offer: {offers:?}"));
    let addr = site_offer["yiaddr"].as_str().unwrap().to_string();
    assert!(
        addr.starts_with("198.18.0.1"),
        "address from dnsmasq: {site_offer}"
    );
    assert_eq!(
        ours["yiaddr"], "0.0.0.0",
        "a proxy never hands out an address: {ours}"
    );
    assert_eq!(
        (
            ours["opt60"].as_str(),
            ours["file"].as_str(),
            ours["siaddr"].as_str()
        ),
        (Some("PXEClient"), Some("snponly.efi"), Some("198.18.0.1"))
    );
    assert_eq!(ours["opt43"], serde_json::json!([6, 1, 8, 255]));

    // With its address from dnsmasq, the firmware asks the boot server on 4011.
    ip(&cli, &["addr", "add", &format!("{addr}/24"), "dev", "vc0"]);
    let replies = pxe_client(
        &cli,
        &[
            "--iface",
            "vc0",
            "--mac",
            mac,
            "--wait",
            "0.5",
            "--boot-server",
            "198.18.0.1",
        ],
    );
    let ack = replies.last().unwrap();
    assert_eq!(
        (
            ack["type"].as_u64(),
            ack["from"].as_str(),
            ack["port"].as_u64()
        ),
        (Some(5), Some("198.18.0.1"), Some(4011)),
        "{replies:?}"
    );
    assert_eq!(
        (ack["file"].as_str(), ack["yiaddr"].as_str()),
        (Some("snponly.efi"), Some("0.0.0.0"))
    );
    dnsmasq.kill().unwrap();
    dnsmasq.wait().unwrap();
    drop(s);
}

/// perfdhcp's "sent packets: N" / "received packets: M" pairs, per exchange, in order.
fn perfdhcp_counts(out: &str) -> Vec<(u64, u64)> {
    let num = |l: &str| l.rsplit(':').next().unwrap().trim().parse::<u64>().unwrap();
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("sent packets:") && w[1].starts_with("received packets:"))
        .map(|w| (num(w[0]), num(w[1])))
        .collect()
}

#[test]
fn relayed_requests_are_answered_by_unicast_to_the_relay() {
    // perfdhcp always acts as a relay: it listens on 198.18.0.2:67 and sets giaddr to it.
    let srv = Netns::new("relaysrv");
    let cli = Netns::new("relaycli");
    veth(&srv, "vs", &cli, "vc");
    ip(&srv, &["addr", "add", "198.18.0.1/24", "dev", "vs"]);
    ip(&cli, &["addr", "add", "198.18.0.2/24", "dev", "vc"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let data = dir.path().join("data");
    let serve = srv.wrap(&serve_cmd(&cfg, &data));
    let s = Server::spawn(serve, &data);
    let o = cli
        .command("timeout")
        .args([
            "60",
            "perfdhcp",
            "-4",
            "-l",
            "198.18.0.2",
            "-r",
            "20",
            "-n",
            "40",
            "-R",
            "40",
            "198.18.0.1",
        ])
        .output()
        .unwrap();
    let out = stdout(&o);
    let counts = perfdhcp_counts(&out);
    assert_eq!(
        counts.len(),
        2,
        "DO and RA exchanges expected: {out}{}",
        stderr(&o)
    );
    let (do_sent, do_recv) = counts[0];
    let (ra_sent, ra_recv) = counts[1];
    assert_eq!(do_sent, 40, "{out}");
    // perfdhcp stops listening soon after its last packet, so a reply still on its way (an ACK
    // waits for its fsync) can go uncounted on its side; the exact check is the server's below.
    assert!(
        do_recv >= 38 && ra_recv + 2 >= ra_sent && ra_sent >= 38,
        "offers {do_recv}/{do_sent}, acks {ra_recv}/{ra_sent}: {out}"
    );
    // Every relayed DISCOVER was answered (to giaddr:67, the only place perfdhcp listens).
    let m = srv
        .command("curl")
        .args(["-s", &format!("{}/metrics", s.url)])
        .output()
        .unwrap();
    let metrics = stdout(&m);
    assert!(
        metrics.contains("provisioner_dhcp_sent_total{type=\"offer\"} 40"),
        "{metrics}"
    );
    // Every relayed REQUEST the server received got its ACK (after its binding was written).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = stdout(
            &srv.command("curl")
                .args(["-s", &format!("{}/metrics", s.url)])
                .output()
                .unwrap(),
        );
        let get = |k: &str| {
            m.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let (req, ack) = (
            get("provisioner_dhcp_received_total{type=\"request\"} "),
            get("provisioner_dhcp_sent_total{type=\"ack\"} "),
        );
        if req.is_some() && req == ack && req >= Some(ra_sent) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "requests {req:?} vs ACKs {ack:?}: {m}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Every reply was timed (offers and ACKs); the pool gauge counts bindings (refreshed each second).
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("provisioner_dhcp_reply_latency_seconds_count "))
        .unwrap();
    assert!(count.parse::<u64>().unwrap() >= 40 + ra_recv, "{metrics}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = stdout(
            &srv.command("curl")
                .args(["-s", &format!("{}/metrics", s.url)])
                .output()
                .unwrap(),
        );
        let used = m.lines().find_map(|l| {
            l.strip_prefix(
                "provisioner_dhcp_pool_addresses{subnet=\"198.18.0.0/24\",state=\"used\"} ",
            )
        });
        if m.contains(
            "provisioner_dhcp_pool_addresses{subnet=\"198.18.0.0/24\",state=\"total\"} 100",
        ) && used.is_some_and(|u| u.parse::<u64>().unwrap() >= ra_recv)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pool gauge missing or wrong: {m}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn bound_to_one_interface_it_answers_only_there() {
    // Two links into the server namespace: br0 (198.18.0.0/24) and br1 (198.18.1.0/24); the
    // server is configured for both subnets but bound to br1 (SO_BINDTODEVICE).
    let (srv, cli) = topology(&["52:54:00:00:0b:01"]);
    ip(&srv, &["link", "add", "br1", "type", "bridge"]);
    ip(&srv, &["addr", "add", "198.18.1.1/24", "dev", "br1"]);
    ip(&srv, &["link", "set", "br1", "up"]);
    veth(&srv, "vs9", &cli, "vc9");
    ip(&srv, &["link", "set", "vs9", "master", "br1"]);
    ip(
        &cli,
        &["link", "set", "vc9", "address", "52:54:00:00:0b:09"],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        r#"
[dhcp]
mode = "full"
interface = "br1"
server_ip = "198.18.1.1"
[[dhcp.subnet]]
network = "198.18.0.0/24"
range = "198.18.0.100-198.18.0.199"
[[dhcp.subnet]]
network = "198.18.1.0/24"
range = "198.18.1.100-198.18.1.199"
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let _s = Server::spawn(srv.wrap(&serve_cmd(&cfg, &data)), &data);
    let udhcpc = |iface: &str| {
        let o = cli
            .command("busybox")
            .args([
                "udhcpc",
                "-i",
                iface,
                "-n",
                "-q",
                "-f",
                "-t",
                "3",
                "-T",
                "1",
                "-s",
                "/bin/true",
            ])
            .output()
            .unwrap();
        (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
    };
    let (ok, out) = udhcpc("vc9");
    assert!(
        ok && out.contains("lease of 198.18.1.100 obtained from 198.18.1.1"),
        "br1: {out}"
    );
    let (ok, out) = udhcpc("vc0");
    assert!(
        !ok && !out.contains("obtained"),
        "br0 must get no answer: {out}"
    );
}
