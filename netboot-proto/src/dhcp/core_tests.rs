use std::collections::HashMap;

use dhcproto::v4::{Architecture, DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use inventory::{Lifecycle, Mac, Machine, State, Timestamp};

use super::*;
use crate::dhcp::pool::{Pool, PoolTimes};

#[path = "core_admission_tests.rs"]
mod admission;
#[path = "core_lease_tests.rs"]
mod lease;
#[path = "core_observe_tests.rs"]
mod observe;
#[path = "core_shared_tests.rs"]
mod shared;
#[path = "core_wire_tests.rs"]
mod wire;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const NOW: Timestamp = Timestamp(1_000_000);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn core(mode: Mode, unknown: UnknownPolicy) -> Core {
    let subnet = |net: &str, first: &str, last: &str| {
        (
            SubnetOptions {
                network: ip(net),
                prefix: 24,
                // The subnet's first host address.
                router: Some(std::net::Ipv4Addr::from(u32::from(ip(net)) + 1)),
                dns: vec![ip("198.18.0.1")],
                domain: Some("lab".into()),
                lease_time: Duration::from_secs(3600),
            },
            Pool::new(ip(net), 24, ip(first), ip(last), PoolTimes::default()),
        )
    };
    Core {
        settings: Settings {
            server_ip: ip("198.18.0.1"),
            mode,
            unknown,
            match_client_id: true,
            loaders: Loaders::default(),
            urls: BootUrls {
                ipxe_script: "http://198.18.0.1:8080/boot/ipxe".into(),
                http_boot: "http://198.18.0.1:8080/boot/efi".into(),
            },
        },
        subnets: vec![
            subnet("198.18.0.0", "198.18.0.100", "198.18.0.199"),
            subnet("198.18.5.0", "198.18.5.100", "198.18.5.199"),
        ],
        observations: Default::default(),
        pool_warned: None,
    }
}

fn request(kind: MessageType, opts: Vec<DhcpOption>) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0xabcd, z, z, z, z, &MAC);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m
}

fn pxe(arch: u16) -> Vec<DhcpOption> {
    vec![
        DhcpOption::ClassIdentifier(format!("PXEClient:Arch:{arch:05}:UNDI:003016").into_bytes()),
        DhcpOption::ClientSystemArchitecture(Architecture::from(arch)),
    ]
}

fn machine(state: State) -> Machine {
    let mut m = Machine::registered(Mac::new(MAC), Default::default(), Timestamp(0));
    m.lifecycle = Lifecycle::new(state, Timestamp(0));
    m
}

fn arrived(port: u16) -> Arrived {
    Arrived {
        src: "0.0.0.0:68".parse().unwrap(),
        local_port: port,
        giaddr: Ipv4Addr::UNSPECIFIED,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        broadcast_flag: true,
        to_broadcast: false,
    }
}

fn run(c: &mut Core, msg: &Message, a: Arrived, m: Option<&Machine>) -> Decision {
    let res: HashMap<Ipv4Addr, Mac> = HashMap::new();
    let link = if a.giaddr.is_unspecified() {
        ip("198.18.0.1")
    } else {
        a.giaddr
    };
    c.handle(Input {
        relay_info: None,
        msg,
        arrived: a,
        link,
        machine: m,
        reservations: &res,
        now: NOW,
        admitting: None,
    })
}

fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

fn kind(m: &Message) -> MessageType {
    match opt(m, OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => *t,
        other => panic!("no message type: {other:?}"),
    }
}

#[test]
fn uefi_pxe_dora_for_a_registered_machine() {
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    let m = machine(State::Registered);
    let d = run(
        &mut c,
        &request(MessageType::Discover, pxe(7)),
        arrived(67),
        Some(&m),
    );
    let (offer, to) = d.reply.expect("offer");
    assert_eq!(
        (kind(&offer), to),
        (MessageType::Offer, "255.255.255.255:68".parse().unwrap())
    );
    assert_eq!(
        (offer.xid(), offer.yiaddr(), offer.siaddr()),
        (0xabcd, ip("198.18.0.100"), ip("198.18.0.1"))
    );
    assert_eq!(offer.fname_str().unwrap().unwrap(), "snponly.efi");
    assert_eq!(
        opt(&offer, OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
    );
    // Without option 43 OVMF's PXE rejects the offer (PXE-E16), as the lab showed.
    assert_eq!(
        opt(&offer, OptionCode::VendorExtensions),
        Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
    );
    assert_eq!(
        opt(&offer, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(ip("198.18.0.1")))
    );
    assert_eq!(
        opt(&offer, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        opt(&offer, OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(ip("255.255.255.0")))
    );
    assert_eq!(
        opt(&offer, OptionCode::Router),
        Some(&DhcpOption::Router(vec![ip("198.18.0.1")]))
    );
    assert_eq!(
        opt(&offer, OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![ip("198.18.0.1")]))
    );
    assert_eq!(
        opt(&offer, OptionCode::DomainName),
        Some(&DhcpOption::DomainName("lab".into()))
    );
    assert_eq!(
        opt(&offer, OptionCode::Renewal),
        Some(&DhcpOption::Renewal(1800))
    );
    assert!(d.commit.is_none(), "an offer binds nothing durably");

    let mut opts = pxe(7);
    opts.push(DhcpOption::ServerIdentifier(ip("198.18.0.1")));
    opts.push(DhcpOption::RequestedIpAddress(ip("198.18.0.100")));
    let d = run(
        &mut c,
        &request(MessageType::Request, opts),
        arrived(67),
        Some(&m),
    );
    let (ack, _) = d.reply.expect("ack");
    assert_eq!(
        (kind(&ack), ack.yiaddr()),
        (MessageType::Ack, ip("198.18.0.100"))
    );
    let lease = d.commit.expect("binding to commit before the ACK");
    assert_eq!((lease.ip, lease.mac), (ip("198.18.0.100"), Mac::new(MAC)));
    // The reply encodes and decodes.
    let bytes = ack.to_vec().unwrap();
    assert_eq!(
        Message::decode(&mut Decoder::new(&bytes)).unwrap().yiaddr(),
        ip("198.18.0.100")
    );
}

#[test]
fn installed_machines_get_an_address_but_no_installer() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    let mut ipxe = pxe(7);
    ipxe.push(DhcpOption::UserClass(b"iPXE".to_vec()));
    for state in [State::Installed, State::Ready] {
        // iPXE: no boot file at all.
        let d = run(
            &mut c,
            &request(MessageType::Discover, ipxe.clone()),
            arrived(67),
            Some(&machine(state)),
        );
        let (offer, _) = d.reply.unwrap();
        assert!(!offer.yiaddr().is_unspecified());
        assert!(
            offer.fname().is_none() && opt(&offer, OptionCode::BootfileName).is_none(),
            "{state}"
        );
        // PXE firmware: its loader, which TFTP refuses to an installed machine, so the firmware
        // fails over to its disk at once instead of waiting for a boot offer.
        let d = run(
            &mut c,
            &request(MessageType::Discover, pxe(7)),
            arrived(67),
            Some(&machine(state)),
        );
        let (offer, _) = d.reply.unwrap();
        assert_eq!(offer.fname(), Some(&b"snponly.efi"[..]), "{state}");
    }
}

#[test]
fn unknown_machines_follow_the_policy_in_each_mode() {
    let mut full = core(Mode::Full, UnknownPolicy::Ignore);
    let (offer, _) = run(
        &mut full,
        &request(MessageType::Discover, pxe(7)),
        arrived(67),
        None,
    )
    .reply
    .unwrap();
    assert!(
        opt(&offer, OptionCode::BootfileName).is_none(),
        "full mode: address without boot file"
    );
    let mut proxy = core(Mode::Proxy, UnknownPolicy::Ignore);
    assert!(run(
        &mut proxy,
        &request(MessageType::Discover, pxe(7)),
        arrived(67),
        None
    )
    .reply
    .is_none());
    let mut disc = core(Mode::Full, UnknownPolicy::Discover);
    let (offer, _) = run(
        &mut disc,
        &request(MessageType::Discover, pxe(7)),
        arrived(67),
        None,
    )
    .reply
    .unwrap();
    assert_eq!(
        offer.fname_str().unwrap().unwrap(),
        "snponly.efi",
        "held machines boot iPXE to poll"
    );
}

#[test]
fn requests_for_another_server_or_a_wrong_address() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    let other = vec![
        DhcpOption::ServerIdentifier(ip("198.18.0.2")),
        DhcpOption::RequestedIpAddress(ip("198.18.0.100")),
    ];
    let d = run(
        &mut c,
        &request(MessageType::Request, other),
        arrived(67),
        None,
    );
    assert!(d.reply.is_none() && d.commit.is_none());
    let wrong = vec![
        DhcpOption::RequestedIpAddress(ip("198.18.9.9")),
        DhcpOption::ServerIdentifier(ip("198.18.0.1")),
    ];
    let d = run(
        &mut c,
        &request(MessageType::Request, wrong),
        arrived(67),
        None,
    );
    let (nak, to) = d.reply.unwrap();
    assert_eq!(
        (kind(&nak), to),
        (MessageType::Nak, "255.255.255.255:68".parse().unwrap())
    );
    assert!(d.commit.is_none());
}

#[test]
fn relayed_requests_pick_the_subnet_by_giaddr_and_go_back_to_the_relay() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    let mut msg = request(MessageType::Discover, vec![]);
    msg.set_giaddr(ip("198.18.5.1"));
    let mut a = arrived(67);
    a.giaddr = ip("198.18.5.1");
    a.src = "198.18.5.1:67".parse().unwrap();
    let (offer, to) = run(&mut c, &msg, a, None).reply.unwrap();
    assert_eq!(
        (offer.yiaddr(), to),
        (ip("198.18.5.100"), "198.18.5.1:67".parse().unwrap())
    );
    assert_eq!(offer.giaddr(), ip("198.18.5.1"));
    // Option 82 from the relay: parsed for the inventory and echoed back (RFC 3046 §2.2).
    use dhcproto::v4::relay::{RelayAgentInformation, RelayInfo};
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::AgentCircuitId(b"Gi1/0/17".to_vec()));
    info.insert(RelayInfo::AgentRemoteId(vec![
        0x00, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f,
    ]));
    info.insert(RelayInfo::LinkSelection(ip("198.18.5.0")));
    msg.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(info.clone()));
    let d = run(&mut c, &msg, a, None);
    let relay = d.client.unwrap().relay.unwrap();
    assert_eq!(relay.circuit_id.as_deref(), Some("Gi1/0/17"));
    assert_eq!(relay.remote_id.as_deref(), Some("001b2c3d4e5f"));
    assert_eq!(relay.link_selection, Some(ip("198.18.5.0")));
    // Echoed on the wire (no raw datagram here: the parsed option, encoded once).
    let bytes =
        crate::dhcp::reply::encode_with(&d.reply.unwrap().0, d.relay_echo.as_deref()).unwrap();
    let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
    assert_eq!(
        opt(&back, OptionCode::RelayAgentInformation),
        Some(&DhcpOption::RelayAgentInformation(info))
    );
    // A relay on a link we have no subnet for: nothing.
    msg.set_giaddr(ip("198.18.7.1"));
    a.giaddr = ip("198.18.7.1");
    assert_eq!(
        run(&mut c, &msg, a, None).dropped,
        Some("no subnet configured for the client's link")
    );
}

#[test]
fn proxy_mode_answers_netbooters_on_67_and_4011_without_addresses() {
    let mut c = core(Mode::Proxy, UnknownPolicy::Auto);
    let d = run(
        &mut c,
        &request(MessageType::Discover, pxe(0)),
        arrived(67),
        None,
    );
    let (offer, to) = d.reply.unwrap();
    assert_eq!(
        (kind(&offer), offer.yiaddr(), to),
        (
            MessageType::Offer,
            Ipv4Addr::UNSPECIFIED,
            "255.255.255.255:68".parse().unwrap()
        )
    );
    assert_eq!(
        opt(&offer, OptionCode::VendorExtensions),
        Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
    );
    assert_eq!(offer.fname_str().unwrap().unwrap(), "undionly.kpxe");
    assert!(opt(&offer, OptionCode::AddressLeaseTime).is_none());
    let mut a = arrived(PXE_BOOT_SERVER_PORT);
    a.src = "198.18.0.150:4011".parse().unwrap();
    let (ack, to) = run(&mut c, &request(MessageType::Request, pxe(0)), a, None)
        .reply
        .unwrap();
    assert_eq!(
        (kind(&ack), to),
        (MessageType::Ack, "198.18.0.150:4011".parse().unwrap())
    );
    assert!(
        run(
            &mut c,
            &request(MessageType::Request, pxe(0)),
            arrived(67),
            None
        )
        .reply
        .is_none(),
        "the site server ACKs"
    );
    let plain = request(
        MessageType::Discover,
        vec![DhcpOption::ClassIdentifier(b"udhcp 1.35.0".to_vec())],
    );
    assert!(run(&mut c, &plain, arrived(67), None).reply.is_none());
}

#[test]
fn http_boot_gets_a_url_and_httpclient() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    let opts = vec![
        DhcpOption::ClassIdentifier(b"HTTPClient:Arch:00016:UNDI:003001".to_vec()),
        DhcpOption::ClientSystemArchitecture(Architecture::from(16)),
        DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::BootfileName]),
    ];
    let (offer, _) = run(
        &mut c,
        &request(MessageType::Discover, opts),
        arrived(67),
        None,
    )
    .reply
    .unwrap();
    assert_eq!(
        opt(&offer, OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
    );
    let url = b"http://198.18.0.1:8080/boot/efi?mac=52:54:00:12:34:56";
    // Asked for in option 55: option 67, NUL-terminated; and the `file` field either way.
    let mut with_nul = url.to_vec();
    with_nul.push(0);
    assert_eq!(
        opt(&offer, OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(with_nul))
    );
    assert_eq!(offer.fname().map(|f| f.to_vec()), Some(url.to_vec()));
}

#[test]
fn decline_release_and_inform() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    let (first, _) = run(
        &mut c,
        &request(MessageType::Discover, vec![]),
        arrived(67),
        None,
    )
    .reply
    .unwrap();
    assert_eq!(first.yiaddr(), ip("198.18.0.100"));
    let d = run(
        &mut c,
        &request(
            MessageType::Decline,
            vec![
                DhcpOption::RequestedIpAddress(ip("198.18.0.100")),
                DhcpOption::ServerIdentifier(ip("198.18.0.1")),
            ],
        ),
        arrived(67),
        None,
    );
    assert_eq!(
        (d.remove, d.reply.is_none()),
        (Some(ip("198.18.0.100")), true)
    );
    let (offer, _) = run(
        &mut c,
        &request(MessageType::Discover, vec![]),
        arrived(67),
        None,
    )
    .reply
    .unwrap();
    assert_eq!(
        offer.yiaddr(),
        ip("198.18.0.101"),
        "the declined address is quarantined"
    );
    let req = vec![DhcpOption::RequestedIpAddress(ip("198.18.0.101"))];
    assert!(run(
        &mut c,
        &request(MessageType::Request, req),
        arrived(67),
        None
    )
    .commit
    .is_some());
    let mut rel = request(MessageType::Release, vec![]);
    rel.set_ciaddr(ip("198.18.0.101"));
    assert_eq!(
        run(&mut c, &rel, arrived(67), None).remove,
        Some(ip("198.18.0.101"))
    );
    let mut inf = request(MessageType::Inform, vec![]);
    inf.set_ciaddr(ip("198.18.0.42"));
    let mut a = arrived(67);
    a.ciaddr = ip("198.18.0.42");
    let (ack, to) = run(&mut c, &inf, a, None).reply.unwrap();
    assert_eq!(
        (kind(&ack), ack.yiaddr(), to),
        (
            MessageType::Ack,
            Ipv4Addr::UNSPECIFIED,
            "198.18.0.42:68".parse().unwrap()
        )
    );
    assert!(opt(&ack, OptionCode::AddressLeaseTime).is_none());
}

#[test]
fn long_urls_go_in_option_67_only() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    c.settings.urls.ipxe_script = format!("http://198.18.0.1:8080/{}", "x".repeat(200));
    let opts = vec![DhcpOption::UserClass(b"iPXE".to_vec())];
    let (offer, _) = run(
        &mut c,
        &request(MessageType::Discover, opts),
        arrived(67),
        None,
    )
    .reply
    .unwrap();
    assert!(offer.fname().is_none());
    assert!(
        matches!(opt(&offer, OptionCode::BootfileName), Some(DhcpOption::BootfileName(v)) if v.len() > 200)
    );
    assert!(offer.to_vec().is_ok());
}

#[test]
fn random_wire_bytes_never_panic() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    let template = request(MessageType::Discover, pxe(7)).to_vec().unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..5_000 {
        let mut b = template.clone();
        for _ in 0..(next() % 8) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        b.truncate(((next() as usize) % (b.len() + 1)).max(1));
        if let Ok(m) = Message::decode(&mut Decoder::new(&b)) {
            let _ = run(&mut c, &m, arrived(67), None);
        }
    }
}

#[path = "captures_tests.rs"]
mod captures;

#[path = "flood_tests.rs"]
mod flood;
