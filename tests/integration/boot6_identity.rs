//! Identity over IPv6: an IPv6 peer is machine V only by the DHCPv6 lease this server bound to
//! its address (the same rule as `security.rs` for IPv4). The clients get their leases as OVMF
//! does — a DUID-UUID, which carries no MAC, from the link-local address of their interface — so
//! the lease names the MAC only through the EUI-64 of that source.

use std::net::{IpAddr, Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v6::{DhcpOption, IAAddr, Message, MessageType, OptionCode, IANA};
use dhcproto::{Decodable, Decoder, Encodable};
use serde_json::json;

use crate::dhcp6::{config, in_netns, ip, start, topology};
use crate::harness::{binary, client_builder, stderr, Api, Server};
use crate::netns::Netns;
use crate::uki;

const V: &str = "52:54:00:5e:c6:01";
const ATTACKER: &str = "52:54:00:ba:d6:01";

/// The EUI-64 link-local address of `mac` (RFC 4291 App. A).
fn link_local(mac: &str) -> Ipv6Addr {
    let m: Vec<u16> = mac
        .split(':')
        .map(|h| u16::from_str_radix(h, 16).unwrap())
        .collect();
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        ((m[0] ^ 2) << 8) | m[1],
        (m[2] << 8) | 0xff,
        0xfe00 | m[3],
        (m[4] << 8) | m[5],
    )
}

fn one_reply(sock: &UdpSocket, msg: &[u8], to: SocketAddrV6, want: MessageType) -> Message {
    let mut buf = vec![0u8; 2048];
    for _ in 0..20 {
        sock.send_to(msg, to).unwrap();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let m = Message::decode(&mut Decoder::new(&buf[..n])).unwrap();
            if m.msg_type() == want {
                return m;
            }
        }
    }
    panic!("no {want:?} within 10 s");
}

/// Solicit and Request as OVMF sends them (DUID-UUID, T1 = T2 = infinity) from the link-local
/// address of `ifname` in `cli`; the address the Reply binds.
fn lease_as_ovmf(cli: &Netns, ifname: &'static str, mac: &str, uuid_byte: u8) -> Ipv6Addr {
    let ll = link_local(mac);
    in_netns(cli, move || {
        let name = std::ffi::CString::new(ifname).unwrap();
        let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(idx, 0, "{ifname}");
        // The link-local address appears when the link is up (DAD is off): bounded wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        let sock = loop {
            match UdpSocket::bind(SocketAddrV6::new(ll, 546, 0, idx)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("binding [{ll}%{ifname}]:546: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let server = SocketAddrV6::new("ff02::1:2".parse().unwrap(), 547, 0, idx);
        let mut duid = vec![0, 4];
        duid.extend_from_slice(&[uuid_byte; 16]);
        let ia = |addr: Option<Ipv6Addr>| {
            let mut ia = IANA {
                id: 0x71dc_5153,
                t1: u32::MAX,
                t2: u32::MAX,
                opts: Default::default(),
            };
            if let Some(addr) = addr {
                ia.opts.insert(DhcpOption::IAAddr(IAAddr {
                    addr,
                    preferred_life: 0,
                    valid_life: 0,
                    opts: Default::default(),
                }));
            }
            DhcpOption::IANA(ia)
        };
        let mut sol = Message::new_with_id(MessageType::Solicit, [6, 6, uuid_byte]);
        sol.opts_mut().insert(DhcpOption::ClientId(duid.clone()));
        sol.opts_mut().insert(ia(None));
        let adv = one_reply(
            &sock,
            &sol.to_vec().unwrap(),
            server,
            MessageType::Advertise,
        );
        let Some(DhcpOption::ServerId(sid)) = adv.opts().get(OptionCode::ServerId) else {
            panic!("no server id: {adv:?}")
        };
        let offered = addr_in(&adv).expect("an address in the Advertise");
        let mut req = Message::new_with_id(MessageType::Request, [6, 7, uuid_byte]);
        req.opts_mut().insert(DhcpOption::ClientId(duid));
        req.opts_mut().insert(DhcpOption::ServerId(sid.clone()));
        req.opts_mut().insert(ia(Some(offered)));
        let rep = one_reply(&sock, &req.to_vec().unwrap(), server, MessageType::Reply);
        assert_eq!(addr_in(&rep), Some(offered), "{rep:?}");
        offered
    })
}

fn addr_in(m: &Message) -> Option<Ipv6Addr> {
    match m.opts().get(OptionCode::IANA) {
        Some(DhcpOption::IANA(ia)) => match ia.opts.get(OptionCode::IAAddr) {
            Some(DhcpOption::IAAddr(a)) => Some(a.addr),
            _ => None,
        },
        _ => None,
    }
}

/// An HTTP client in `ns` whose connections come from `from`, to the server at [2001:2::1].
fn client_in(ns: &Netns, from: Option<Ipv6Addr>, port: u16) -> Api {
    let client = in_netns(ns, move || {
        // The client's runtime thread is spawned here, so it lives in `ns`.
        client_builder()
            .local_address(from.map(IpAddr::V6))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    });
    Api {
        base: format!("http://[2001:2::1]:{port}"),
        token: None,
        client,
    }
}

fn machine(api: &Api) -> serde_json::Value {
    api.get(&format!("/api/v1/machines/{V}")).body
}

fn events_of_v(api: &Api) -> Vec<serde_json::Value> {
    let evs = api.get(&format!("/api/v1/events?machine={V}")).body;
    evs.as_array().cloned().unwrap_or_default()
}

/// The operator's API inside the server's namespace, V registered with a profile and a UKI.
fn operator(srv: &Netns, s: &Server, dir: &std::path::Path, port: u16) -> Api {
    let mut api = client_in(srv, None, port);
    api.token = Some(s.token());
    let u = uki::build(dir, "hadron6.efi", "Hadron (IPv6 identity test)");
    let out = srv
        .command(binary().to_str().unwrap())
        .args(["assets", "import"])
        .arg(&u.path)
        .env("PROVISIONER_URL", &api.base)
        .env("PROVISIONER_DATA_DIR", &s.data_dir)
        .env_remove("PROVISIONER_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = crate::harness::stdout(&out);
    let digest = text
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in: {text}"));
    let tpl = "#cloud-config\nhostname: {{ hostname }}\ntoken: {{ token }}\n";
    let r = api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "hadron", "uki": digest, "cloud_config": tpl}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": V, "profile": "hadron", "hostname": "v6"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    api
}

#[test]
fn over_ipv6_only_the_dhcpv6_lease_holder_is_the_machine() {
    let (srv, cli) = topology(&[V, ATTACKER]);
    let dir = tempfile::tempdir().unwrap();
    let s = start(&srv, dir.path(), &config("stateful"));
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let api = operator(&srv, &s, dir.path(), port);

    // Both get a lease the way OVMF does; the server knows each by its link-local source.
    let v_ip = lease_as_ovmf(&cli, "vc0", V, 0x11);
    let attacker_ip = lease_as_ovmf(&cli, "vc1", ATTACKER, 0x22);
    assert_ne!(v_ip, attacker_ip);
    let unleased: Ipv6Addr = "2001:2::99".parse().unwrap();
    ip(
        &cli,
        &["addr", "add", &format!("{v_ip}/64"), "dev", "vc0", "nodad"],
    );
    for (a, dev) in [(attacker_ip, "vc1"), (unleased, "vc0")] {
        ip(
            &cli,
            &["addr", "add", &format!("{a}/128"), "dev", dev, "nodad"],
        );
    }

    let before = events_of_v(&api).len();
    for from in [attacker_ip, unleased] {
        let who = client_in(&cli, Some(from), port);
        // Public bytes still come (a UKI holds no per-machine secret)...
        let got = who.get(&format!("/boot/efi?mac={V}"));
        assert_eq!(got.status, 200, "{from}: {}", got.text.len());
        // ...but no secret, and nothing the server believes about V changes.
        for path in [format!("/config/{V}"), format!("/config?mac={V}")] {
            let got = who.get(&path);
            assert_eq!(got.status, 403, "{from} {path}: {}", got.text);
            assert!(!got.text.contains("m1."), "a token leaked: {}", got.text);
        }
    }
    let m = machine(&api);
    assert_eq!(m["lifecycle"]["state"], "registered", "{m}\n{}", s.log());
    assert_eq!(
        events_of_v(&api).len(),
        before,
        "no event on V from strangers"
    );

    // V itself, from the address the DHCPv6 lease binds to it, is recorded booting.
    let v = client_in(&cli, Some(v_ip), port);
    let got = v.get(&format!("/boot/efi?mac={V}"));
    assert_eq!(got.status, 200);
    let m = machine(&api);
    assert_eq!(m["lifecycle"]["state"], "booting", "{m}\n{}", s.log());
    let evs = events_of_v(&api);
    let want = format!("UEFI HTTP boot: UKI from [{v_ip}]");
    assert!(
        evs.iter()
            .any(|e| e["type"] == "seen" && e["detail"] == want),
        "{want}: {evs:?}"
    );
    // While it installs, its address opens its config; the attacker's still does not.
    assert_eq!(v.get(&format!("/config/{V}")).status, 200);
    let attacker = client_in(&cli, Some(attacker_ip), port);
    assert_eq!(attacker.get(&format!("/config/{V}")).status, 403);
    drop(cli);
    drop(srv);
}
