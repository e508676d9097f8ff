use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use dhcproto::v6::{
    Architecture, DhcpOption, IAAddr, Message, MessageType, OptionCode, Status, IANA, ORO,
};
use dhcproto::{Decodable, Decoder, Encodable};
use inventory::{Mac, Machine, Timestamp};

use super::*;
use crate::dhcp6::pool::Pool6;
use crate::dhcp6::wire::{self, RelayHop};

const SERVER_DUID: &[u8] = &[0, 3, 0, 1, 0x02, 0, 0, 0, 0, 1];
const RESERVED_MAC: Mac = Mac::new([0x52, 0x54, 0, 0xaa, 0, 2]);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn core(mode: Mode6) -> Core6 {
    let reservations: BTreeMap<Mac, Ipv6Addr> = [(RESERVED_MAC, ip("2001:2::1:50"))].into();
    let reserved: BTreeSet<Ipv6Addr> = reservations.values().copied().collect();
    Core6 {
        settings: Settings6 {
            server_duid: SERVER_DUID.to_vec(),
            mode,
            unknown: UnknownPolicy::Auto,
            loaders: Default::default(),
            urls: BootUrls {
                ipxe_script: "http://[2001:2::1]:8080/boot/ipxe".into(),
                http_boot: "http://[2001:2::1]:8080/boot/efi".into(),
            },
            server_addr: ip("2001:2::1"),
            dns: vec![ip("2001:2::1")],
            preferred: Duration::from_secs(3600),
            valid: Duration::from_secs(7200),
            reservations,
        },
        pool: (mode == Mode6::Stateful)
            .then(|| Pool6::new(ip("2001:2::1:0"), ip("2001:2::1:ff"), reserved)),
    }
}

/// DUID-LL of `mac`.
fn duid_ll(mac: [u8; 6]) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(&mac);
    d
}

fn solicit(duid: Vec<u8>) -> Message {
    let mut m = Message::new_with_id(MessageType::Solicit, [1, 2, 3]);
    m.opts_mut().insert(DhcpOption::ClientId(duid));
    m.opts_mut().insert(DhcpOption::IANA(IANA {
        id: 7,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    }));
    m
}

fn from() -> SocketAddrV6 {
    SocketAddrV6::new(ip("fe80::5054:ff:feaa:1"), 546, 0, 2)
}

fn run(c: &mut Core6, bytes: &[u8], now: u64) -> Decision6 {
    let none = |_: Mac| -> Option<Machine> { None };
    c.handle(&Input6 {
        bytes,
        from: from(),
        machine: &none,
        now: Timestamp(now),
    })
}

fn reply_of(d: &Decision6) -> Message {
    let (bytes, _) = d.reply.as_ref().expect("a reply");
    Message::decode(&mut Decoder::new(bytes)).unwrap()
}

fn addr_of(m: &Message) -> Option<Ipv6Addr> {
    let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else {
        return None;
    };
    match ia.opts.get(OptionCode::IAAddr) {
        Some(DhcpOption::IAAddr(a)) => Some(a.addr),
        _ => None,
    }
}

#[test]
fn solicit_request_gives_an_address_from_the_range_committed_with_the_reply() {
    let mut c = core(Mode6::Stateful);
    let duid = duid_ll([0x52, 0x54, 0, 0xaa, 0, 1]);
    let d = run(&mut c, &solicit(duid.clone()).to_vec().unwrap(), 1000);
    assert!(d.commit.is_empty(), "an Advertise binds nothing");
    let adv = reply_of(&d);
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    assert_eq!(adv.xid(), [1, 2, 3]);
    let offered = addr_of(&adv).expect("an address");
    assert!(c.pool.as_ref().unwrap().contains(offered));
    assert_eq!(d.reply.as_ref().unwrap().1.port(), 546);

    let mut req = solicit(duid.clone());
    req.set_msg_type(MessageType::Request);
    req.opts_mut()
        .insert(DhcpOption::ServerId(SERVER_DUID.to_vec()));
    let d = run(&mut c, &req.to_vec().unwrap(), 2000);
    let rep = reply_of(&d);
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert_eq!(addr_of(&rep), Some(offered));
    assert_eq!(d.commit.len(), 1);
    assert_eq!(d.commit[0].ip, offered);
    assert_eq!(d.commit[0].mac, Some(Mac::new([0x52, 0x54, 0, 0xaa, 0, 1])));
    assert_eq!(d.commit[0].duid, wire::hex(&duid));
    assert_eq!(d.commit[0].expires, Timestamp(2000 + 7_200_000));

    // Another client gets another address; the first renews its own.
    let d2 = run(
        &mut c,
        &solicit(duid_ll([2, 0, 0, 0, 0, 9])).to_vec().unwrap(),
        3000,
    );
    assert_ne!(addr_of(&reply_of(&d2)), Some(offered));
    let mut renew = req.clone();
    renew.set_msg_type(MessageType::Renew);
    assert_eq!(
        addr_of(&reply_of(&run(&mut c, &renew.to_vec().unwrap(), 4000))),
        Some(offered)
    );
}

#[test]
fn a_request_for_another_server_or_without_client_id_is_dropped() {
    let mut c = core(Mode6::Stateful);
    let mut req = solicit(duid_ll([2, 0, 0, 0, 0, 1]));
    req.set_msg_type(MessageType::Request);
    req.opts_mut()
        .insert(DhcpOption::ServerId(vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9]));
    assert!(run(&mut c, &req.to_vec().unwrap(), 1).reply.is_none());
    let bare = Message::new_with_id(MessageType::Solicit, [0, 0, 1]);
    assert_eq!(
        run(&mut c, &bare.to_vec().unwrap(), 1).dropped,
        Some("no client id")
    );
    assert_eq!(run(&mut c, &[1, 2], 1).dropped, Some("malformed"));
}

#[test]
fn the_reserved_mac_gets_its_address_and_nobody_else_does() {
    let mut c = core(Mode6::Stateful);
    let mut sol = solicit(duid_ll(RESERVED_MAC.octets()));
    sol.opts_mut().insert(DhcpOption::RapidCommit);
    let d = run(&mut c, &sol.to_vec().unwrap(), 1);
    let rep = reply_of(&d);
    assert_eq!(rep.msg_type(), MessageType::Reply, "rapid commit");
    assert!(rep.opts().get(OptionCode::RapidCommit).is_some());
    assert_eq!(addr_of(&rep), Some(ip("2001:2::1:50")));
    assert_eq!(d.commit[0].ip, ip("2001:2::1:50"));
    // A stranger hinting at the reserved address does not get it.
    let mut other = solicit(duid_ll([2, 0, 0, 0, 0, 3]));
    other.opts_mut().remove(OptionCode::IANA);
    let mut ia = IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    };
    ia.opts.insert(DhcpOption::IAAddr(IAAddr {
        addr: ip("2001:2::1:50"),
        preferred_life: 0,
        valid_life: 0,
        opts: Default::default(),
    }));
    other.opts_mut().insert(DhcpOption::IANA(ia));
    assert_ne!(
        addr_of(&reply_of(&run(&mut c, &other.to_vec().unwrap(), 2))),
        Some(ip("2001:2::1:50"))
    );
}

#[test]
fn release_removes_the_binding_and_decline_quarantines_it() {
    let mut c = core(Mode6::Stateful);
    let duid = duid_ll([2, 0, 0, 0, 0, 4]);
    let mut sol = solicit(duid.clone());
    sol.opts_mut().insert(DhcpOption::RapidCommit);
    let got = run(&mut c, &sol.to_vec().unwrap(), 1).commit[0].ip;
    let mut rel = Message::new_with_id(MessageType::Release, [9, 9, 9]);
    rel.opts_mut().insert(DhcpOption::ClientId(duid.clone()));
    rel.opts_mut()
        .insert(DhcpOption::ServerId(SERVER_DUID.to_vec()));
    let mut ia = IANA {
        id: 7,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    };
    ia.opts.insert(DhcpOption::IAAddr(IAAddr {
        addr: got,
        preferred_life: 0,
        valid_life: 0,
        opts: Default::default(),
    }));
    rel.opts_mut().insert(DhcpOption::IANA(ia));
    let d = run(&mut c, &rel.to_vec().unwrap(), 2);
    assert_eq!(d.remove, vec![got]);
    assert!(matches!(
        reply_of(&d).opts().get(OptionCode::StatusCode),
        Some(DhcpOption::StatusCode(s)) if s.status == Status::Success
    ));
    assert!(c.pool.as_ref().unwrap().binding(got).is_none());
    // Decline keeps it out of use for the valid lifetime.
    let got = run(&mut c, &sol.to_vec().unwrap(), 3).commit[0].ip;
    rel.set_msg_type(MessageType::Decline);
    let d = run(&mut c, &rel.to_vec().unwrap(), 4);
    assert!(
        d.remove.is_empty(),
        "a quarantine is written, not a removal"
    );
    assert_eq!(d.commit.len(), 1);
    assert!(d.commit[0].declined && d.commit[0].ip == got && d.commit[0].mac.is_none());
    let again = run(&mut c, &sol.to_vec().unwrap(), 5).commit[0].ip;
    assert_ne!(again, got, "a declined address is not handed out again");
}

#[test]
fn confirm_says_whether_addresses_are_on_link() {
    let mut c = core(Mode6::Stateful);
    let mut conf = Message::new_with_id(MessageType::Confirm, [1, 1, 1]);
    conf.opts_mut()
        .insert(DhcpOption::ClientId(duid_ll([2, 0, 0, 0, 0, 5])));
    let mut ia = IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    };
    ia.opts.insert(DhcpOption::IAAddr(IAAddr {
        addr: ip("2001:2:9::1"),
        preferred_life: 0,
        valid_life: 0,
        opts: Default::default(),
    }));
    conf.opts_mut().insert(DhcpOption::IANA(ia));
    let rep = reply_of(&run(&mut c, &conf.to_vec().unwrap(), 1));
    assert!(matches!(
        rep.opts().get(OptionCode::StatusCode),
        Some(DhcpOption::StatusCode(s)) if s.status == Status::NotOnLink
    ));
}

/// Option `code`'s raw data in an encoded message body (after the 4-byte header).
fn raw(bytes: &[u8], code: u16) -> Option<Vec<u8>> {
    wire::options(&bytes[4..])
        .unwrap()
        .into_iter()
        .find(|(c, _)| *c == code)
        .map(|(_, d)| d.to_vec())
}

#[test]
fn uefi_http_boot_solicit_gets_a_bracketed_url_last_and_its_vendor_class_back() {
    let mut c = core(Mode6::Stateful);
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let mut sol = solicit(duid_ll(mac));
    // As OVMF's HttpBootDxe builds it: ORO 59,60,23,16; arch 16; vendor class 343 HTTPClient.
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
    // Option 16 raw: dhcproto 0.15 encodes its length wrong.
    let class = b"HTTPClient:Arch:00016:UNDI:003000".to_vec();
    let mut vc = 343u32.to_be_bytes().to_vec();
    vc.extend_from_slice(&(class.len() as u16).to_be_bytes());
    vc.extend_from_slice(&class);
    let mut bytes = sol.to_vec().unwrap();
    wire::append_option(&mut bytes, 16, &vc);
    let d = run(&mut c, &bytes, 1);
    let (bytes, _) = d.reply.as_ref().unwrap();
    let opts = wire::options(&bytes[4..]).unwrap();
    let (last_code, url) = opts.last().unwrap();
    assert_eq!(*last_code, 59, "option 59 goes last");
    assert_eq!(
        std::str::from_utf8(url).unwrap(),
        "http://[2001:2::1]:8080/boot/efi?mac=52:54:00:12:34:56"
    );
    // edk2: OpLen >= 16 and "HTTPClient" at offset 6 of the option data.
    let vc = raw(bytes, 16).expect("option 16");
    assert!(vc.len() >= 16);
    assert_eq!(&vc[..4], &343u32.to_be_bytes());
    assert_eq!(&vc[6..16], b"HTTPClient");
    assert_eq!(&vc[6..], class.as_slice(), "echoed as sent");
    // edk2: the IA_NA carries an address and no failing status.
    assert!(addr_of(&reply_of(&d)).is_some());
    assert_eq!(raw(bytes, 23).map(|d| d.len()), Some(16), "one DNS server");
}

#[test]
fn stateless_information_request_from_ipxe_gets_its_script_and_no_address() {
    let mut c = core(Mode6::Stateless);
    let mut ir = Message::new_with_id(MessageType::InformationRequest, [4, 5, 6]);
    ir.opts_mut()
        .insert(DhcpOption::ClientId(duid_ll([0x52, 0x54, 0, 0, 0, 7])));
    // User class raw (length-prefixed "iPXE"): dhcproto 0.15 encodes its length wrong.
    let mut bytes = ir.to_vec().unwrap();
    wire::append_option(&mut bytes, 15, &[0, 4, b'i', b'P', b'X', b'E']);
    let d = run(&mut c, &bytes, 1);
    let (bytes, _) = d.reply.as_ref().unwrap();
    assert_eq!(bytes[0], 7, "Reply");
    assert_eq!(
        raw(bytes, 59).as_deref(),
        Some(&b"http://[2001:2::1]:8080/boot/ipxe?mac=52:54:00:00:00:07"[..])
    );
    assert!(raw(bytes, 3).is_none() && d.commit.is_empty());
    // A stateless server's Advertise to a Solicit with IA_NA says NoAddrsAvail.
    let d = run(
        &mut c,
        &solicit(duid_ll([2, 0, 0, 0, 0, 8])).to_vec().unwrap(),
        2,
    );
    assert!(matches!(
        reply_of(&d).opts().get(OptionCode::StatusCode),
        Some(DhcpOption::StatusCode(s)) if s.status == Status::NoAddrsAvail
    ));
}

#[test]
fn relayed_through_two_relays_the_reply_goes_back_through_both_with_interface_ids() {
    let mut c = core(Mode6::Stateful);
    // A client with a DUID-UUID (type 4): its MAC comes from option 79 of the first relay.
    let duid = [0, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16].to_vec();
    let inner = solicit(duid).to_vec().unwrap();
    let first = RelayHop {
        hop_count: 0,
        link: ip("2001:2:0:5::1"),
        peer: ip("fe80::1234"),
        interface_id: Some(b"port-5".to_vec()),
        client_link_layer: None,
    };
    let mut fwd1 = vec![wire::RELAY_FORW, 0];
    fwd1.extend_from_slice(&first.link.octets());
    fwd1.extend_from_slice(&first.peer.octets());
    wire::append_option(&mut fwd1, wire::OPT_INTERFACE_ID, b"port-5");
    wire::append_option(
        &mut fwd1,
        wire::OPT_CLIENT_LINKLAYER,
        &[0, 1, 0x52, 0x54, 0, 0xaa, 0, 2],
    );
    wire::append_option(&mut fwd1, wire::OPT_RELAY_MSG, &inner);
    let mut fwd2 = vec![wire::RELAY_FORW, 1];
    fwd2.extend_from_slice(&ip("2001:2:0:1::1").octets());
    fwd2.extend_from_slice(&ip("2001:2:0:5::1").octets());
    wire::append_option(&mut fwd2, wire::OPT_INTERFACE_ID, b"uplink");
    wire::append_option(&mut fwd2, wire::OPT_RELAY_MSG, &fwd1);

    let none = |_: Mac| -> Option<Machine> { None };
    let relay = SocketAddrV6::new(ip("2001:2:0:1::1"), 547, 0, 0);
    let d = c.handle(&Input6 {
        bytes: &fwd2,
        from: relay,
        machine: &none,
        now: Timestamp(1),
    });
    assert_eq!(d.mac, Some(RESERVED_MAC), "MAC from option 79");
    let (bytes, to) = d.reply.unwrap();
    assert_eq!(to, relay, "to the relay's address, port 547");
    let (outer, adv) = wire::unwrap_reply(&bytes).unwrap();
    assert_eq!(outer.len(), 2);
    assert_eq!(outer[0].interface_id.as_deref(), Some(&b"uplink"[..]));
    assert_eq!(outer[0].hop_count, 1);
    assert_eq!(outer[1].interface_id.as_deref(), Some(&b"port-5"[..]));
    assert_eq!(outer[1].peer, ip("fe80::1234"));
    let adv = Message::decode(&mut Decoder::new(adv)).unwrap();
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    assert_eq!(
        addr_of(&adv),
        Some(ip("2001:2::1:50")),
        "the reservation of the MAC in option 79"
    );
}

#[test]
fn identity_rules() {
    let mac = Mac::new([0x52, 0x54, 0, 0xaa, 0, 1]);
    // DUID-LLT: type 1, hw 1, time, MAC.
    let llt = [
        0, 1, 0, 1, 0x2c, 0x5e, 0x11, 0x22, 0x52, 0x54, 0, 0xaa, 0, 1,
    ];
    assert_eq!(wire::mac_from_duid(&llt), Some(mac));
    assert_eq!(wire::mac_from_duid(&duid_ll(mac.octets())), Some(mac));
    assert_eq!(
        wire::mac_from_duid(&[0, 2, 0, 0, 1, 0x37, 1, 2]),
        None,
        "DUID-EN"
    );
    assert_eq!(wire::mac_from_eui64(ip("fe80::5054:ff:feaa:1")), Some(mac));
    assert_eq!(wire::mac_from_eui64(ip("fe80::1")), None);
    assert_eq!(
        wire::mac_from_eui64(ip("2001:2::5054:ff:feaa:1")),
        None,
        "link-local only"
    );
    // Last resort: the EUI-64 source.
    assert_eq!(
        client_mac(&[0, 4, 1, 2], &[], ip("fe80::5054:ff:feaa:1")),
        Some(mac)
    );
}

#[path = "core_ia_tests.rs"]
mod ia;

#[path = "core_ovmf_tests.rs"]
mod ovmf;
