//! Lease semantics per RFC 2131 client state (issue 20): who a client is, what a REQUEST in each
//! state may bind, who may DECLINE or RELEASE an address, what a reservation does to a lease in
//! use, and the reply fields a server must echo. Addresses are 198.18.0.x; pools are made small
//! where "full" matters.

use super::*;

const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xa];
const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xb];
const US: &str = "198.18.0.1";

/// A full-mode core whose first subnet's range is `first..=last` (host numbers of 198.18.0.x).
fn small(first: u8, last: u8) -> Core {
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    let host = |n: u8| Ipv4Addr::new(198, 18, 0, n);
    c.subnets[0].1 = Pool::new(
        ip("198.18.0.0"),
        24,
        host(first),
        host(last),
        PoolTimes::default(),
    );
    c
}

fn msg(chaddr: [u8; 6], kind: MessageType, opts: Vec<DhcpOption>) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0x1234, z, z, z, z, &chaddr);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m
}

fn at(
    c: &mut Core,
    m: &Message,
    a: Arrived,
    machine: Option<&Machine>,
    res: &HashMap<Ipv4Addr, Mac>,
) -> Decision {
    c.handle(Input {
        relay_info: None,
        msg: m,
        arrived: a,
        link: ip(US),
        machine,
        reservations: res,
        now: NOW,
        admitting: None,
    })
}

/// Options of a SELECTING REQUEST for `addr` that names us (50 and 54).
fn selecting(addr: Ipv4Addr) -> Vec<DhcpOption> {
    vec![
        DhcpOption::RequestedIpAddress(addr),
        DhcpOption::ServerIdentifier(ip(US)),
    ]
}

/// A direct request from `chaddr`, a client the inventory does not know, with no reservations.
fn plain(c: &mut Core, chaddr: [u8; 6], kind: MessageType, opts: Vec<DhcpOption>) -> Decision {
    at(c, &msg(chaddr, kind, opts), arrived(67), None, &none())
}

fn none() -> HashMap<Ipv4Addr, Mac> {
    HashMap::new()
}

/// DISCOVER + SELECTING REQUEST; the ACKed address.
fn dora(
    c: &mut Core,
    chaddr: [u8; 6],
    extra: Vec<DhcpOption>,
    res: &HashMap<Ipv4Addr, Mac>,
) -> Option<Ipv4Addr> {
    let d = at(
        c,
        &msg(chaddr, MessageType::Discover, extra.clone()),
        arrived(67),
        None,
        res,
    );
    let (offer, _) = d.reply?;
    let mut opts = extra;
    opts.push(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    opts.push(DhcpOption::ServerIdentifier(ip(US)));
    let d = at(
        c,
        &msg(chaddr, MessageType::Request, opts),
        arrived(67),
        None,
        res,
    );
    let (ack, _) = d.reply?;
    (kind(&ack) == MessageType::Ack && d.commit.is_some()).then_some(ack.yiaddr())
}

fn renew(chaddr: [u8; 6], ip_: Ipv4Addr, extra: Vec<DhcpOption>) -> Message {
    let mut m = msg(chaddr, MessageType::Request, extra);
    m.set_ciaddr(ip_);
    m
}

fn reply_kind(d: &Decision) -> Option<MessageType> {
    d.reply.as_ref().map(|(r, _)| kind(r))
}

#[test]
fn a_reservation_for_an_address_in_use_waits_for_its_holder() {
    let mut c = small(1, 3);
    let a_ip = dora(&mut c, A, vec![], &none()).unwrap();
    assert_eq!(a_ip, ip("198.18.0.1"));
    // The operator now reserves .1 for B.
    let res: HashMap<Ipv4Addr, Mac> = [(a_ip, Mac::new(B))].into();
    let d = at(
        &mut c,
        &msg(B, MessageType::Discover, vec![]),
        arrived(67),
        None,
        &res,
    );
    let (offer, _) = d.reply.expect("B gets an offer");
    assert_ne!(offer.yiaddr(), a_ip, "not the address A still uses");
    let sel = selecting(a_ip);
    let d = at(
        &mut c,
        &msg(B, MessageType::Request, sel),
        arrived(67),
        None,
        &res,
    );
    assert_eq!(
        reply_kind(&d),
        Some(MessageType::Nak),
        "no ACK for an address A holds"
    );
    assert!(d.commit.is_none());
    // B may take the other address meanwhile.
    let sel = selecting(offer.yiaddr());
    let d = at(
        &mut c,
        &msg(B, MessageType::Request, sel),
        arrived(67),
        None,
        &res,
    );
    assert_eq!(reply_kind(&d), Some(MessageType::Ack));
    // A's renewal is refused (the address is reserved for B now): A moves at T1, not B onto A.
    let d = at(&mut c, &renew(A, a_ip, vec![]), arrived(67), None, &res);
    assert_eq!(reply_kind(&d), Some(MessageType::Nak));
    // A starts over and gets another address; then B gets its reservation.
    let a2 = dora(&mut c, A, vec![], &res).unwrap();
    assert_ne!(a2, a_ip);
    assert_eq!(dora(&mut c, B, vec![], &res), Some(a_ip));
}

#[test]
fn a_decline_counts_only_from_the_holder_naming_us() {
    let mut c = small(1, 1);
    let a_ip = dora(&mut c, A, vec![], &none()).unwrap();
    let decline = |by: [u8; 6], ours: bool| {
        let mut o = vec![DhcpOption::RequestedIpAddress(a_ip)];
        if ours {
            o.push(DhcpOption::ServerIdentifier(ip(US)));
        }
        msg(by, MessageType::Decline, o)
    };
    // A stranger's DECLINE of A's address: nothing happens.
    let d = at(&mut c, &decline(B, true), arrived(67), None, &none());
    assert_eq!((d.remove, d.reply.is_none()), (None, true));
    let d = at(&mut c, &renew(A, a_ip, vec![]), arrived(67), None, &none());
    assert_eq!(reply_kind(&d), Some(MessageType::Ack), "A keeps its lease");
    // A's own DECLINE without naming us: nothing either.
    assert_eq!(
        at(&mut c, &decline(A, false), arrived(67), None, &none()).remove,
        None
    );
    // A's DECLINE naming us: quarantined, and removed from the store.
    let d = at(&mut c, &decline(A, true), arrived(67), None, &none());
    assert_eq!(d.remove, Some(a_ip));
    assert!(plain(&mut c, A, MessageType::Discover, vec![])
        .reply
        .is_none());
}

#[test]
fn init_reboot_from_a_client_without_a_record_is_not_answered() {
    let mut c = small(1, 1);
    let m = msg(
        B,
        MessageType::Request,
        vec![DhcpOption::RequestedIpAddress(ip("198.18.0.1"))],
    );
    assert_eq!(
        RequestState::of(&m, &arrived(67)),
        Some(RequestState::InitReboot {
            ip: ip("198.18.0.1")
        })
    );
    let d = at(&mut c, &m, arrived(67), None, &none());
    assert!(d.reply.is_none() && d.commit.is_none(), "{:?}", d.dropped);
    // Nor when another client holds it.
    let a_ip = dora(&mut c, A, vec![], &none()).unwrap();
    let d = at(
        &mut c,
        &msg(
            B,
            MessageType::Request,
            vec![DhcpOption::RequestedIpAddress(a_ip)],
        ),
        arrived(67),
        None,
        &none(),
    );
    assert!(d.reply.is_none() && d.commit.is_none());
}

#[test]
fn init_reboot_for_another_address_is_refused() {
    let mut c = small(1, 3);
    let a_ip = dora(&mut c, A, vec![], &none()).unwrap();
    let m = msg(
        A,
        MessageType::Request,
        vec![DhcpOption::RequestedIpAddress(ip("198.18.0.100"))],
    );
    let d = at(&mut c, &m, arrived(67), None, &none());
    assert_eq!(reply_kind(&d), Some(MessageType::Nak));
    assert!(d.commit.is_none());
    // Its own address: ACK.
    let m = msg(
        A,
        MessageType::Request,
        vec![DhcpOption::RequestedIpAddress(a_ip)],
    );
    assert_eq!(
        reply_kind(&at(&mut c, &m, arrived(67), None, &none())),
        Some(MessageType::Ack)
    );
}

#[test]
fn renewing_and_rebinding_extend_echo_ciaddr_and_leave_other_servers_clients_alone() {
    let mut c = small(1, 3);
    let a_ip = dora(&mut c, A, vec![], &none()).unwrap();
    let d = at(&mut c, &renew(A, a_ip, vec![]), arrived(67), None, &none());
    let (ack, _) = d.reply.expect("renewal answered");
    assert_eq!(
        (kind(&ack), ack.ciaddr(), ack.yiaddr()),
        (MessageType::Ack, a_ip, a_ip)
    );
    assert!(d.commit.is_some());
    // REBINDING (broadcast) from a client we have no record of: its address, when it is in our
    // range and free, is granted again (a lost binding); held by another client: NAK; outside
    // our range: another server's client, no answer.
    let mut bcast = arrived(67);
    bcast.to_broadcast = true;
    let m = renew(B, ip("198.18.0.3"), vec![]);
    assert_eq!(
        RequestState::of(&m, &bcast),
        Some(RequestState::Rebinding {
            ip: ip("198.18.0.3")
        })
    );
    let d = at(&mut c, &m, bcast, None, &none());
    assert_eq!(
        (reply_kind(&d), d.commit.map(|l| l.ip)),
        (Some(MessageType::Ack), Some(ip("198.18.0.3")))
    );
    let d = at(&mut c, &renew(B, a_ip, vec![]), arrived(67), None, &none());
    assert_eq!(
        reply_kind(&d),
        Some(MessageType::Nak),
        "RENEWING another client's address"
    );
    let d = at(
        &mut c,
        &renew(A, ip("198.18.0.50"), vec![]),
        bcast,
        None,
        &none(),
    );
    assert_eq!(
        reply_kind(&d),
        Some(MessageType::Nak),
        "A has a record: its notion is wrong"
    );
    let stranger = [0x52, 0x54, 0, 0, 0, 0xc];
    let d = at(
        &mut c,
        &renew(stranger, ip("198.18.0.50"), vec![]),
        bcast,
        None,
        &none(),
    );
    assert!(
        d.reply.is_none(),
        "outside our range, no record: another server's client"
    );
    // INFORM: ACK with the client's ciaddr, no address.
    let mut inf = msg(B, MessageType::Inform, vec![]);
    inf.set_ciaddr(ip("198.18.0.200"));
    let (ack, _) = at(&mut c, &inf, arrived(67), None, &none()).reply.unwrap();
    assert_eq!(
        (ack.ciaddr(), ack.yiaddr()),
        (ip("198.18.0.200"), Ipv4Addr::UNSPECIFIED)
    );
}

#[test]
fn a_client_identifier_is_who_an_unknown_client_is() {
    let x = DhcpOption::ClientIdentifier(b"\x00client-x".to_vec());
    let y = DhcpOption::ClientIdentifier(b"\x00client-y".to_vec());
    let z = DhcpOption::ClientIdentifier(b"\x00client-z".to_vec());
    let mut c = small(1, 1);
    let got = dora(&mut c, A, vec![x.clone()], &none()).unwrap();
    // Same chaddr, another client identifier: another client, and the pool is full.
    let d = plain(&mut c, A, MessageType::Discover, vec![y]);
    assert!(
        d.reply.is_none(),
        "offered {:?}",
        d.reply.map(|r| r.0.yiaddr())
    );
    // A RELEASE under another client identifier frees nothing; the holder's does.
    let mut rel = msg(A, MessageType::Release, vec![z]);
    rel.set_ciaddr(got);
    assert_eq!(at(&mut c, &rel, arrived(67), None, &none()).remove, None);
    let mut rel = msg(A, MessageType::Release, vec![x.clone()]);
    rel.set_ciaddr(got);
    assert_eq!(
        at(&mut c, &rel, arrived(67), None, &none()).remove,
        Some(got)
    );
    // The stored lease says which client identifier it belongs to (restored after a restart).
    let mut c = small(1, 1);
    let d = plain(&mut c, A, MessageType::Discover, vec![x.clone()]);
    let ip_ = d.reply.unwrap().0.yiaddr();
    let sel = vec![
        x,
        DhcpOption::RequestedIpAddress(ip_),
        DhcpOption::ServerIdentifier(ip(US)),
    ];
    let d = plain(&mut c, A, MessageType::Request, sel);
    assert_eq!(
        d.commit.unwrap().client_id.as_deref(),
        Some("00636c69656e742d78")
    );
}

#[test]
fn a_machine_of_the_inventory_is_its_mac_whatever_option_61_says() {
    // Firmware, iPXE, the installer and the OS of one NIC send different option 61s: one lease.
    let mut m = machine(State::Registered);
    m.mac = Mac::new(A);
    let mut c = small(1, 1);
    let fw = vec![DhcpOption::ClientIdentifier(vec![0, 1, 2, 3])];
    let d = at(
        &mut c,
        &msg(A, MessageType::Discover, fw.clone()),
        arrived(67),
        Some(&m),
        &none(),
    );
    let ip_ = d.reply.unwrap().0.yiaddr();
    let mut sel = fw;
    sel.push(DhcpOption::RequestedIpAddress(ip_));
    sel.push(DhcpOption::ServerIdentifier(ip(US)));
    let d = at(
        &mut c,
        &msg(A, MessageType::Request, sel),
        arrived(67),
        Some(&m),
        &none(),
    );
    assert_eq!(d.commit.as_ref().map(|l| l.client_id.clone()), Some(None));
    let os = vec![DhcpOption::ClientIdentifier(
        b"\xff\x00\x00\x00\x01duid".to_vec(),
    )];
    let d = at(
        &mut c,
        &msg(A, MessageType::Discover, os),
        arrived(67),
        Some(&m),
        &none(),
    );
    assert_eq!(
        d.reply.map(|r| r.0.yiaddr()),
        Some(ip_),
        "the OS gets the same address"
    );
    // With match_client_id off, unknown clients are their MAC too.
    let mut c = small(1, 1);
    c.settings.match_client_id = false;
    let x = DhcpOption::ClientIdentifier(b"\x00x".to_vec());
    let y = DhcpOption::ClientIdentifier(b"\x00y".to_vec());
    let got = dora(&mut c, B, vec![x], &none()).unwrap();
    let d = plain(&mut c, B, MessageType::Discover, vec![y]);
    assert_eq!(d.reply.map(|r| r.0.yiaddr()), Some(got));
}

#[test]
fn relay_agent_information_is_echoed_byte_for_byte() {
    let mut c = small(1, 3);
    // Sub-options in the relay's order 2, 1, 9, 151 (dhcproto would re-sort them by code).
    let raw: Vec<u8> = vec![
        2, 3, b'r', b'i', b'd', 1, 2, b'c', b'1', 9, 5, 0, 0, 0, 9, 0, 151, 1, 7,
    ];
    let mut m = msg(A, MessageType::Discover, vec![]);
    m.set_giaddr(ip(US));
    let mut bytes = m.to_vec().unwrap();
    // Append option 82 before the END option.
    let end = bytes.iter().rposition(|b| *b == 255).unwrap();
    let mut opt = vec![82, raw.len() as u8];
    opt.extend(&raw);
    bytes.splice(end..end, opt);
    let parsed = Message::decode(&mut Decoder::new(&bytes)).unwrap();
    let mut a = arrived(67);
    a.giaddr = ip(US);
    a.src = "198.18.0.1:67".parse().unwrap();
    let d = c.handle(Input {
        relay_info: crate::dhcp::reply::raw_option(&bytes, 82),
        msg: &parsed,
        arrived: a,
        link: ip(US),
        machine: None,
        reservations: &none(),
        now: NOW,
        admitting: None,
    });
    let out =
        crate::dhcp::reply::encode_with(&d.reply.unwrap().0, d.relay_echo.as_deref()).unwrap();
    assert_eq!(
        crate::dhcp::reply::raw_option(&out, 82),
        Some(raw.as_slice())
    );
    // Exactly once (dhcproto alone would write an unknown-coded 82 twice).
    let mut count = 0;
    let mut i = 240;
    while i < out.len() && out[i] != 255 {
        if out[i] == 0 {
            i += 1;
            continue;
        }
        count += usize::from(out[i] == 82);
        i += 2 + out[i + 1] as usize;
    }
    assert_eq!(count, 1, "option 82 appears {count} times");
}

#[test]
fn strangers_declining_their_offers_cannot_quarantine_the_registered_share() {
    let mut c = small(1, 10);
    c.subnets[0].1 = Pool::new(
        ip("198.18.0.0"),
        24,
        ip("198.18.0.1"),
        ip("198.18.0.10"),
        PoolTimes::default(),
    )
    .with_stranger_share(80);
    // 30 strangers: DISCOVER, then DECLINE what they were offered (naming us).
    for n in 0..30u8 {
        let mac = [0x02, 0, 0, 0, 0xd, n];
        let d = plain(&mut c, mac, MessageType::Discover, vec![]);
        let Some((offer, _)) = d.reply else { continue };
        let decline = selecting(offer.yiaddr());
        plain(&mut c, mac, MessageType::Decline, decline);
    }
    // A registered machine still gets an address.
    let mut m = machine(State::Registered);
    m.mac = Mac::new(A);
    let d = at(
        &mut c,
        &msg(A, MessageType::Discover, vec![]),
        arrived(67),
        Some(&m),
        &none(),
    );
    assert!(d.reply.is_some(), "{:?}", d.dropped);
}

#[test]
fn a_client_that_moves_lets_go_of_its_old_address() {
    let mut c = small(1, 5);
    let first = dora(&mut c, A, vec![], &none()).unwrap();
    // SELECTING another address of the range, without a DISCOVER in between.
    let sel = selecting(ip("198.18.0.4"));
    let d = plain(&mut c, A, MessageType::Request, sel);
    assert_eq!(reply_kind(&d), Some(MessageType::Ack));
    assert_eq!(
        d.remove,
        Some(first),
        "the old binding leaves the store too"
    );
    // The old address is free for another client at once.
    let sel = selecting(first);
    let d = plain(&mut c, B, MessageType::Request, sel);
    assert_eq!(reply_kind(&d), Some(MessageType::Ack));
}

#[test]
fn registering_a_client_keeps_its_lease() {
    // It leased as a stranger with a client identifier; then an operator registered its MAC.
    let mut c = small(1, 3);
    let id = DhcpOption::ClientIdentifier(b"\x01cidA".to_vec());
    let got = dora(&mut c, A, vec![id.clone()], &none()).unwrap();
    let mut m = machine(State::Registered);
    m.mac = Mac::new(A);
    let d = at(
        &mut c,
        &renew(A, got, vec![id]),
        arrived(67),
        Some(&m),
        &none(),
    );
    assert_eq!(reply_kind(&d), Some(MessageType::Ack), "{:?}", d.events);
    assert_eq!(d.commit.map(|l| l.ip), Some(got));
}

#[test]
fn a_reservation_of_the_network_or_broadcast_address_is_not_handed_out() {
    let mut c = small(1, 3);
    let mut m = machine(State::Registered);
    m.mac = Mac::new(A);
    for bad in ["198.18.0.0", "198.18.0.255"] {
        let res: HashMap<Ipv4Addr, Mac> = [(ip(bad), Mac::new(A))].into();
        let d = at(
            &mut c,
            &msg(A, MessageType::Discover, vec![]),
            arrived(67),
            Some(&m),
            &res,
        );
        let offered = d.reply.map(|r| r.0.yiaddr());
        assert!(
            offered.is_some() && offered != Some(ip(bad)),
            "{bad}: {offered:?}"
        );
    }
}

#[test]
fn the_link_is_the_relays_or_its_link_selection_or_the_arrival_interface() {
    let mut m = msg(A, MessageType::Discover, vec![]);
    // Direct: the address it arrived on, else our server address.
    assert_eq!(
        link_of(&m, Some(ip("198.18.0.1")), ip(US)),
        ip("198.18.0.1")
    );
    assert_eq!(link_of(&m, None, ip("198.18.9.1")), ip("198.18.9.1"));
    // Relayed: giaddr…
    m.set_giaddr(ip("198.18.5.1"));
    assert_eq!(
        link_of(&m, Some(ip("198.18.0.1")), ip(US)),
        ip("198.18.5.1")
    );
    // …unless option 82 names the link (RFC 3527 link selection).
    use dhcproto::v4::relay::{RelayAgentInformation, RelayInfo};
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::LinkSelection(ip("198.18.6.0")));
    m.opts_mut().insert(DhcpOption::RelayAgentInformation(info));
    assert_eq!(
        link_of(&m, Some(ip("198.18.0.1")), ip(US)),
        ip("198.18.6.0")
    );
}

#[test]
fn a_relayed_machines_location_is_decided_only_when_it_changes() {
    use dhcproto::v4::relay::{RelayAgentInformation, RelayInfo};
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::AgentCircuitId(b"Gi1/0/17".to_vec()));
    let mut m = msg(
        A,
        MessageType::Discover,
        vec![DhcpOption::RelayAgentInformation(info)],
    );
    m.set_giaddr(ip("198.18.5.1"));
    let mut a = arrived(67);
    a.giaddr = ip("198.18.5.1");
    let mut known = machine(State::Registered);
    known.mac = Mac::new(A);
    let handle = |c: &mut Core, machine: Option<&Machine>| {
        c.handle(Input {
            relay_info: None,
            msg: &m,
            arrived: a,
            link: ip("198.18.5.1"),
            machine,
            reservations: &none(),
            now: NOW,
            admitting: None,
        })
    };
    // Unknown MACs: nothing to record.
    assert!(handle(&mut c, None).location.is_none());
    // A known machine seen behind a relay for the first time: its location, with a note.
    let (here, note) = handle(&mut c, Some(&known))
        .location
        .expect("a new location");
    assert_eq!(
        (here.relay, here.circuit_id.as_deref()),
        (ip("198.18.5.1"), Some("Gi1/0/17"))
    );
    assert!(matches!(note, EventKind::Note { message } if message.contains("Gi1/0/17")));
    // Already recorded there: no write.
    known.location = Some(here);
    assert!(handle(&mut c, Some(&known)).location.is_none());
}
