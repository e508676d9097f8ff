//! Proxy mode's observed bindings: the evidence that an address belongs to a machine when the
//! site's DHCP server, not we, hands out addresses (the provisioner's `identity` module).

use super::*;

fn proxy_core() -> Core {
    core(Mode::Proxy, UnknownPolicy::Ignore)
}

fn from(src: &str, port: u16) -> Arrived {
    Arrived {
        src: src.parse().unwrap(),
        ..arrived(port)
    }
}

#[test]
fn a_known_machine_selecting_the_sites_offer_is_observed() {
    let mut c = proxy_core();
    let m = machine(State::Registered);
    // SELECTING: option 50 is the site's offer, option 54 names the site's server.
    let req = request(
        MessageType::Request,
        vec![
            DhcpOption::RequestedIpAddress(ip("198.18.0.77")),
            DhcpOption::ServerIdentifier(ip("198.18.0.254")),
        ],
    );
    let d = run(&mut c, &req, arrived(67), Some(&m));
    let b = d.observed.expect("observed binding");
    assert_eq!((b.ip, b.mac, b.observed), (ip("198.18.0.77"), m.mac, true));
    assert_eq!(
        b.expires,
        NOW.saturating_add(crate::dhcp::binding::OBSERVED_BINDING_TTL)
    );
    // A plain client (the installer's udhcpc) is observed too: it gets no proxy answer.
    assert!(d.reply.is_none());

    // INIT-REBOOT: option 50 without option 54.
    let req = request(
        MessageType::Request,
        vec![DhcpOption::RequestedIpAddress(ip("198.18.0.78"))],
    );
    let d = run(&mut c, &req, arrived(67), Some(&m));
    assert_eq!(d.observed.map(|b| b.ip), Some(ip("198.18.0.78")));
}

#[test]
fn a_pxe_boot_server_request_from_its_ciaddr_is_observed() {
    let mut c = proxy_core();
    let m = machine(State::Registered);
    let mut req = request(MessageType::Request, pxe(7));
    req.set_ciaddr(ip("198.18.0.79"));
    let d = run(&mut c, &req, from("198.18.0.79:68", 4011), Some(&m));
    assert_eq!(d.observed.map(|b| b.ip), Some(ip("198.18.0.79")));
    assert!(d.reply.is_some(), "the proxy ACK still goes out");
    // A ciaddr the datagram does not come from proves nothing.
    let d = run(&mut c, &req, from("198.18.0.80:68", 4011), Some(&m));
    assert_eq!(d.observed, None);
}

#[test]
fn nothing_is_observed_that_proves_nothing() {
    let mut c = proxy_core();
    let m = machine(State::Registered);
    let selecting = request(
        MessageType::Request,
        vec![
            DhcpOption::RequestedIpAddress(ip("198.18.0.77")),
            DhcpOption::ServerIdentifier(ip("198.18.0.254")),
        ],
    );
    // A MAC the inventory does not know: no record (the table stays inventory-sized).
    assert_eq!(run(&mut c, &selecting, arrived(67), None).observed, None);
    // A DISCOVER names no address.
    let discover = request(MessageType::Discover, pxe(7));
    assert_eq!(run(&mut c, &discover, arrived(67), Some(&m)).observed, None);
    // A REQUEST to us (option 54 is ours) in proxy mode is not the site's binding.
    let to_us = request(
        MessageType::Request,
        vec![
            DhcpOption::RequestedIpAddress(ip("198.18.0.77")),
            DhcpOption::ServerIdentifier(ip("198.18.0.1")),
        ],
    );
    assert_eq!(run(&mut c, &to_us, arrived(67), Some(&m)).observed, None);
    // Nonsense addresses.
    for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1"] {
        let req = request(
            MessageType::Request,
            vec![DhcpOption::RequestedIpAddress(ip(bad))],
        );
        assert_eq!(
            run(&mut c, &req, arrived(67), Some(&m)).observed,
            None,
            "{bad}"
        );
    }
}

#[test]
fn full_mode_observes_nothing_its_leases_are_the_evidence() {
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    let m = machine(State::Registered);
    let req = request(
        MessageType::Request,
        vec![
            DhcpOption::RequestedIpAddress(ip("198.18.0.77")),
            DhcpOption::ServerIdentifier(ip("198.18.0.254")),
        ],
    );
    assert_eq!(run(&mut c, &req, arrived(67), Some(&m)).observed, None);
}
