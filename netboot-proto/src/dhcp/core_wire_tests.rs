//! Replies as bytes on the wire (issue 10, items 1 and 2): every reply in every mode is at least
//! the 300-byte BOOTP minimum (relays derived from OpenBSD's dhcrelay drop shorter ones), and an
//! old ROM that reads option 67 or the `file` field as a C string gets exactly the file name.

use super::*;
use crate::dhcp::reply::{encode, raw_option, MIN_REPLY_LEN};

/// Bytes up to the first NUL: how a C-string reader sees a field.
fn c_string(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|x| *x == 0).unwrap_or(b.len())]
}

fn prl67() -> DhcpOption {
    DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::BootfileName])
}

fn wire(d: &Decision) -> Vec<u8> {
    encode(&d.reply.as_ref().expect("a reply").0).unwrap()
}

#[test]
fn every_reply_is_at_least_the_bootp_minimum() {
    let m = machine(State::Registered);
    let mut out = Vec::new();
    // Proxy: OFFER on 67 and ACK on 4011 to a PXE DISCOVER (the 280-byte case).
    let mut c = core(Mode::Proxy, UnknownPolicy::Ignore);
    out.push((
        "proxy offer",
        wire(&run(
            &mut c,
            &request(MessageType::Discover, pxe(7)),
            arrived(67),
            Some(&m),
        )),
    ));
    out.push((
        "proxy ack",
        wire(&run(
            &mut c,
            &request(MessageType::Request, pxe(7)),
            arrived(4011),
            Some(&m),
        )),
    ));
    // Full mode: OFFER, ACK, NAK, INFORM's ACK; direct and relayed.
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    let offer = run(
        &mut c,
        &request(MessageType::Discover, vec![]),
        arrived(67),
        None,
    );
    let yiaddr = offer.reply.as_ref().unwrap().0.yiaddr();
    out.push(("full offer", wire(&offer)));
    let sel = vec![
        DhcpOption::RequestedIpAddress(yiaddr),
        DhcpOption::ServerIdentifier(ip("198.18.0.1")),
    ];
    out.push((
        "full ack",
        wire(&run(
            &mut c,
            &request(MessageType::Request, sel),
            arrived(67),
            None,
        )),
    ));
    let wrong = vec![
        DhcpOption::RequestedIpAddress(ip("198.18.9.9")),
        DhcpOption::ServerIdentifier(ip("198.18.0.1")),
    ];
    out.push((
        "nak",
        wire(&run(
            &mut c,
            &request(MessageType::Request, wrong),
            arrived(67),
            None,
        )),
    ));
    let mut inf = request(MessageType::Inform, vec![]);
    inf.set_ciaddr(ip("198.18.0.42"));
    out.push(("inform ack", wire(&run(&mut c, &inf, arrived(67), None))));
    let mut relayed = request(MessageType::Discover, vec![]);
    relayed.set_giaddr(ip("198.18.5.1"));
    let mut a = arrived(67);
    a.giaddr = ip("198.18.5.1");
    out.push(("relayed offer", wire(&run(&mut c, &relayed, a, None))));
    for (what, bytes) in out {
        assert!(
            bytes.len() >= MIN_REPLY_LEN,
            "{what}: {} bytes",
            bytes.len()
        );
        // Still a valid message, options intact.
        let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert!(back.opts().get(OptionCode::MessageType).is_some(), "{what}");
    }
}

#[test]
fn a_c_string_reading_of_the_boot_file_is_exactly_the_name() {
    let m = machine(State::Registered);
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    let mut opts = pxe(7);
    opts.push(prl67());
    let bytes = wire(&run(
        &mut c,
        &request(MessageType::Discover, opts),
        arrived(67),
        Some(&m),
    ));
    // Option 67, copied as a C string (up to the END byte if it were not NUL-terminated).
    let o67 = raw_option(&bytes, 67).expect("option 67 when asked for");
    assert_eq!(c_string(o67), b"snponly.efi");
    assert_eq!(o67.last(), Some(&0), "NUL-terminated");
    // The `file` field (bytes 108..236), as BOOTP-era ROMs read it.
    assert_eq!(c_string(&bytes[108..236]), b"snponly.efi");
    // Not asked for: the `file` field only, as dnsmasq does.
    let bytes = wire(&run(
        &mut c,
        &request(MessageType::Discover, pxe(7)),
        arrived(67),
        Some(&m),
    ));
    assert_eq!(raw_option(&bytes, 67), None);
    assert_eq!(c_string(&bytes[108..236]), b"snponly.efi");
}

#[test]
fn a_boot_url_too_long_for_the_file_field_goes_in_option_67() {
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    c.settings.urls.http_boot = format!("http://198.18.0.1:8080/{}", "x".repeat(120));
    let mut m = machine(State::Registered);
    m.mac = Mac::new(MAC);
    let opts = vec![
        DhcpOption::ClassIdentifier(b"HTTPClient:Arch:00016:UNDI:003001".to_vec()),
        DhcpOption::ClientSystemArchitecture(Architecture::from(16)),
    ];
    let bytes = wire(&run(
        &mut c,
        &request(MessageType::Discover, opts),
        arrived(67),
        Some(&m),
    ));
    let o67 = raw_option(&bytes, 67).expect("option 67 for a long URL");
    assert!(c_string(o67).starts_with(b"http://198.18.0.1:8080/xxx"));
    assert_eq!(
        c_string(&bytes[108..236]),
        b"",
        "no truncated name in `file`"
    );
}
