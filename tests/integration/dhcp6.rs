//! DHCPv6 with real clients (ISC `dhclient -6`, `dhcpcd -6`) and crafted relayed and UEFI
//! HTTP-boot messages, in namespaces the test creates: a server namespace with a bridge at
//! 2001:2::1/64 and a client namespace joined to it by one veth per MAC. DAD is off in both
//! (addresses usable at once, no sleeps) and the bridge does no multicast snooping.

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dhcproto::v6::{Architecture, DhcpOption, Message, MessageType, OptionCode, IANA, ORO};
use dhcproto::{Decodable, Decoder, Encodable};
use inventory::Store;

use crate::harness::{binary, stderr, stdout, Server};
use crate::netns::Netns;

pub(crate) fn ip(ns: &Netns, args: &[&str]) {
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

pub(crate) fn no_dad(ns: &Netns) {
    for key in [
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ] {
        let o = ns.command("sysctl").args(["-qw", key]).output().unwrap();
        assert!(o.status.success(), "sysctl {key}: {}", stderr(&o));
    }
}

/// Server namespace (`br0`, 2001:2::1/64) and client namespace with one veth `vcN` per MAC.
pub(crate) fn topology(macs: &[&str]) -> (Netns, Netns) {
    let srv = Netns::new("d6srv");
    let cli = Netns::new("d6cli");
    no_dad(&srv);
    no_dad(&cli);
    ip(
        &srv,
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
    ip(
        &srv,
        &["addr", "add", "2001:2::1/64", "dev", "br0", "nodad"],
    );
    ip(&srv, &["link", "set", "br0", "up"]);
    for (i, mac) in macs.iter().enumerate() {
        let (s, c) = (format!("vs{i}"), format!("vc{i}"));
        ip(
            &srv,
            &[
                "link", "add", &s, "type", "veth", "peer", "name", &c, "netns", &cli.name,
            ],
        );
        ip(&srv, &["link", "set", &s, "master", "br0"]);
        ip(&srv, &["link", "set", &s, "up"]);
        ip(&cli, &["link", "set", &c, "address", mac]);
        ip(&cli, &["link", "set", &c, "up"]);
    }
    (srv, cli)
}

pub(crate) fn config(mode: &str) -> String {
    let range = match mode {
        "stateful" => "range = \"2001:2::1:0-2001:2::1:ff\"\n",
        _ => "",
    };
    format!(
        r#"
[dhcp6]
mode = "{mode}"
interface = "br0"
server_address = "2001:2::1"
{range}dns = ["2001:2::1"]
unknown_machines = "auto"
[[dhcp6.reservation]]
mac = "52:54:00:bb:00:02"
ip = "2001:2::1:50"
"#
    )
}

/// `provisioner serve` in `srv` with HTTP on `[::]:0` (dual-stack) and DHCPv6 per `cfg`.
pub(crate) fn start(srv: &Netns, dir: &std::path::Path, cfg: &str) -> Server {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let path = dir.join("p.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut c = Command::new(binary());
    c.args([
        "serve",
        "--listen",
        "[::]:0",
        "--tftp-listen",
        "127.0.0.1:0",
        "--config",
    ])
    .arg(&path)
    .arg("--data-dir")
    .arg(&data);
    let s = Server::spawn(srv.wrap(&c), &data);
    assert!(
        s.log().contains("listening on dhcp6://[::]:547"),
        "{}",
        s.log()
    );
    s
}

/// Runs `dhclient -6` (extra args first) on `ifname` until its lease file names an address.
pub(crate) fn dhclient6(
    cli: &Netns,
    dir: &std::path::Path,
    ifname: &str,
    extra: &[&str],
    want: &str,
    s: &Server,
) -> String {
    let lease_file = dir.join(format!("dhclient6-{ifname}.leases"));
    let mut child = cli
        .command("dhclient")
        .args(["-6", "-1", "-d", "-D", "LL"])
        .args(extra)
        .args(["-sf", "/bin/true", "-pf"])
        .arg(dir.join(format!("dhclient6-{ifname}.pid")))
        .arg("-lf")
        .arg(&lease_file)
        .arg(ifname)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&lease_file).unwrap_or_default();
        if text.contains(want) {
            child.kill().unwrap();
            child.wait().unwrap();
            return text;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "dhclient -6 on {ifname}: no {want:?} within 30s; leases:\n{text}\nserver log:\n{}",
                s.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dhclient_and_dhcpcd_get_addresses_the_reservation_holds_and_replies_are_durable() {
    let (srv, cli) = topology(&[
        "52:54:00:bb:00:01",
        "52:54:00:bb:00:02",
        "52:54:00:bb:00:03",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(&srv, dir.path(), &config("stateful"));

    let l0 = dhclient6(&cli, dir.path(), "vc0", &[], "iaaddr 2001:2::1:", &s);
    let l1 = dhclient6(&cli, dir.path(), "vc1", &[], "iaaddr", &s);
    assert!(
        l1.contains("iaaddr 2001:2::1:50 "),
        "the reserved MAC's address:\n{l1}"
    );
    assert!(!l0.contains("2001:2::1:50 "), "{l0}");

    // dhcpcd, one shot, DHCPv6 only, without waiting for a router advertisement.
    let conf = dir.path().join("dhcpcd.conf");
    std::fs::write(&conf, "noipv6rs\nia_na 1\n").unwrap();
    // In a mount namespace of its own with an empty /var/lib/dhcpcd: no DUID or lease file
    // from an earlier run (with its old lease, dhcpcd would only Confirm it, which makes no
    // binding), and nothing written to the host's.
    let script = format!(
        "mkdir -p /var/lib/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd && \
         exec timeout 30 dhcpcd -6 -1 -B -f '{}' -c /bin/true vc2",
        conf.display()
    );
    let o = cli
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        out.contains("vc2: adding address 2001:2::1:"),
        "dhcpcd: {out}\nserver log:\n{}",
        s.log()
    );

    // Every binding was on disk before its Reply: kill -9 and read the store.
    s.kill9();
    let store = inventory::RedbStore::open(&dir.path().join("data/inventory.redb")).unwrap();
    let leases = store.leases6().unwrap();
    let macs: Vec<String> = leases
        .iter()
        .filter_map(|l| l.mac.map(|m| m.to_string()))
        .collect();
    assert!(
        macs.contains(&"52:54:00:bb:00:01".to_string()),
        "{leases:?}"
    );
    let reserved = leases
        .iter()
        .find(|l| l.ip == "2001:2::1:50".parse::<Ipv6Addr>().unwrap())
        .expect("the reservation's lease is durable");
    assert_eq!(
        reserved.mac.map(|m| m.to_string()).as_deref(),
        Some("52:54:00:bb:00:02")
    );
    assert!(
        reserved.duid.starts_with("00030001525400bb0002"),
        "DUID-LL recorded: {}",
        reserved.duid
    );
    assert!(leases.len() >= 3, "{leases:?}");
    drop(cli);
    drop(srv);
}

#[test]
fn stateless_dhclient_gets_its_information() {
    let (srv, cli) = topology(&["52:54:00:bb:01:01"]);
    let dir = tempfile::tempdir().unwrap();
    let s = start(&srv, dir.path(), &config("stateless"));
    // `-S`: Information-Request only. dhclient writes no lease file for it, so its script
    // records what it was told.
    let script = dir.path().join("script.sh");
    let out = dir.path().join("env.txt");
    std::fs::write(&script, format!("#!/bin/sh\nenv >> {}\n", out.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = cli
        .command("timeout")
        .args(["30", "dhclient", "-6", "-S", "-1", "-D", "LL", "-sf"])
        .arg(&script)
        .arg("-lf")
        .arg(dir.path().join("l"))
        .arg("-pf")
        .arg(dir.path().join("p"))
        .arg("vc0")
        .output()
        .unwrap();
    let env = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        env.contains("new_dhcp6_name_servers=2001:2::1"),
        "dhclient -S: {}{}\nscript env:\n{env}\nserver log:\n{}",
        stdout(&o),
        stderr(&o),
        s.log()
    );
    drop(cli);
    drop(srv);
}

/// Runs `f` on a thread that has entered `ns`'s network namespace (sockets it opens live there).
pub(crate) fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("opening the namespace");
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

pub(crate) fn opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// The options of a message body (code, data), in order.
pub(crate) fn options(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        out.push((code, b[4..4 + len].to_vec()));
        b = &b[4 + len..];
    }
    out
}

#[test]
fn a_relayed_uefi_http_boot_solicit_gets_a_bracketed_url_that_answers_over_ipv6() {
    let (srv, relay) = topology(&["52:54:00:bb:02:01"]);
    ip(
        &relay,
        &["addr", "add", "2001:2::2/64", "dev", "vc0", "nodad"],
    );
    let dir = tempfile::tempdir().unwrap();
    let s = start(&srv, dir.path(), &config("stateful"));

    // OVMF's Solicit (HttpBootDxe): DUID-UUID, ORO 59,60,23,16, arch 0x10, vendor class 343.
    let mut sol = Message::new_with_id(MessageType::Solicit, [7, 7, 7]);
    let mut duid = vec![0, 4];
    duid.extend_from_slice(&[0x11; 16]);
    sol.opts_mut().insert(DhcpOption::ClientId(duid));
    sol.opts_mut().insert(DhcpOption::IANA(IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    }));
    sol.opts_mut().insert(DhcpOption::ORO(ORO {
        opts: vec![
            OptionCode::OptBootfileUrl,
            OptionCode::OptBootfileParam,
            OptionCode::DomainNameServers,
            OptionCode::VendorClass,
        ],
    }));
    sol.opts_mut()
        .insert(DhcpOption::ClientArchType(vec![Architecture(0x10)]));
    // Option 16 raw (dhcproto 0.15 encodes its length wrong), as OVMF sends it.
    let class = b"HTTPClient:Arch:00016:UNDI:003001";
    let mut vc = 343u32.to_be_bytes().to_vec();
    vc.extend_from_slice(&(class.len() as u16).to_be_bytes());
    vc.extend_from_slice(class);
    let mut solicit = sol.to_vec().unwrap();
    opt(&mut solicit, 16, &vc);
    // Relay-Forward (RFC 8415 §9.1) with Interface-Id and the client's MAC (option 79).
    let mut fwd = vec![12, 0];
    fwd.extend_from_slice(&"2001:2:0:5::1".parse::<Ipv6Addr>().unwrap().octets());
    fwd.extend_from_slice(
        &"fe80::5054:ff:fe12:3456"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    opt(&mut fwd, 18, b"switch-7/port-5");
    opt(&mut fwd, 79, &[0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    opt(&mut fwd, 9, &solicit);

    let reply = in_netns(&relay, move || {
        let sock =
            UdpSocket::bind(SocketAddrV6::new("2001:2::2".parse().unwrap(), 547, 0, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let server = SocketAddrV6::new("2001:2::1".parse().unwrap(), 547, 0, 0);
        let mut buf = vec![0u8; 4096];
        for _ in 0..20 {
            sock.send_to(&fwd, server).unwrap();
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                assert_eq!(from, std::net::SocketAddr::V6(server));
                return Some(buf[..n].to_vec());
            }
        }
        None
    })
    .unwrap_or_else(|| panic!("no Relay-Reply within 10 s; server log:\n{}", s.log()));

    assert_eq!(reply[0], 13, "Relay-Reply");
    assert_eq!(
        &reply[18..34],
        &"fe80::5054:ff:fe12:3456"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets()
    );
    let outer = options(&reply[34..]);
    assert!(
        outer.contains(&(18, b"switch-7/port-5".to_vec())),
        "Interface-Id echoed: {outer:?}"
    );
    let inner = &outer
        .iter()
        .find(|(c, _)| *c == 9)
        .expect("relay message")
        .1;
    let adv = Message::decode(&mut Decoder::new(inner)).unwrap();
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    let opts = options(&inner[4..]);
    let (code, url) = opts.last().unwrap();
    assert_eq!(*code, 59, "boot-file-url last: {opts:?}");
    let url = String::from_utf8(url.clone()).unwrap();
    let port = s.url.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        url,
        format!("http://[2001:2::1]:{port}/boot/efi?mac=52:54:00:12:34:56")
    );
    let vc = &opts.iter().find(|(c, _)| *c == 16).expect("vendor class").1;
    assert_eq!(&vc[6..16], b"HTTPClient", "where edk2 looks");

    // The URL answers over IPv6 from the relay's side of the link.
    let status = in_netns(&relay, move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(SocketAddrV6::new(
            "2001:2::1".parse().unwrap(),
            port.parse().unwrap(),
            0,
            0,
        ))
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let path = url.split_once(']').unwrap().1.split_once('/').unwrap().1;
        write!(
            c,
            "GET /{path} HTTP/1.1\r\nHost: [2001:2::1]\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    assert!(!status.starts_with("HTTP/1.1 5"), "{status}\n{}", s.log());
    drop(relay);
    drop(srv);
}
