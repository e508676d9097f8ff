//! Several full-mode servers on one segment sharing one store (issue 13): every server offers,
//! the client's SELECTING REQUEST names one (option 54) and the others stay silent and forget
//! their offers; when that server dies, the client's REBIND (broadcast, no option 54) is ACKed
//! by a survivor, even when the survivor's own pool had meanwhile offered that address to
//! someone else (its pool never saw the binding; the store's claim decides, see the shell).

use super::*;

const X: [u8; 6] = [0x52, 0x54, 0, 0, 0x13, 0x01];
const Y: [u8; 6] = [0x52, 0x54, 0, 0, 0x13, 0x02];

/// A full-mode core whose own address (option 54) is `server`, with a one-address range
/// (198.18.0.100), so that every server's view of the pool offers the same address.
fn server(server: &str) -> Core {
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    c.settings.server_ip = ip(server);
    let only = ip("198.18.0.100");
    c.subnets[0].1 = Pool::new(ip("198.18.0.0"), 24, only, only, PoolTimes::default());
    c
}

fn message(chaddr: [u8; 6], kind: MessageType, opts: Vec<DhcpOption>) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0x1313, z, z, z, z, &chaddr);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m
}

fn broadcast() -> Arrived {
    Arrived {
        to_broadcast: true,
        ..arrived(67)
    }
}

fn to(c: &mut Core, m: &Message, a: Arrived) -> Decision {
    c.handle(Input {
        relay_info: None,
        msg: m,
        arrived: a,
        link: ip("198.18.0.1"),
        machine: None,
        reservations: &HashMap::<Ipv4Addr, Mac>::new(),
        now: NOW,
        admitting: None,
    })
}

fn answer(d: &Decision) -> Option<(MessageType, Ipv4Addr, Option<&DhcpOption>)> {
    d.reply.as_ref().map(|(r, _)| {
        (
            kind(r),
            r.yiaddr(),
            r.opts().get(OptionCode::ServerIdentifier),
        )
    })
}

#[test]
fn the_chosen_server_acks_the_others_stay_silent_and_a_survivor_acks_the_rebind() {
    let (mut a, mut b) = (server("198.18.0.1"), server("198.18.0.2"));
    let discover = message(X, MessageType::Discover, vec![]);
    let (oa, ob) = (
        to(&mut a, &discover, broadcast()),
        to(&mut b, &discover, broadcast()),
    );
    let first = ip("198.18.0.100");
    assert_eq!(
        answer(&oa),
        Some((
            MessageType::Offer,
            first,
            Some(&DhcpOption::ServerIdentifier(ip("198.18.0.1")))
        )),
        "A offers, naming itself"
    );
    assert_eq!(
        answer(&ob),
        Some((
            MessageType::Offer,
            first,
            Some(&DhcpOption::ServerIdentifier(ip("198.18.0.2")))
        )),
        "B offers too (from its own view of the pool), naming itself"
    );

    // X takes A's offer: A commits and ACKs; B sees the broadcast REQUEST naming A and drops it.
    let request = message(
        X,
        MessageType::Request,
        vec![
            DhcpOption::RequestedIpAddress(first),
            DhcpOption::ServerIdentifier(ip("198.18.0.1")),
        ],
    );
    let da = to(&mut a, &request, broadcast());
    assert_eq!(answer(&da).map(|x| x.0), Some(MessageType::Ack));
    assert_eq!(
        da.commit.as_ref().map(|l| (l.ip, l.mac)),
        Some((first, Mac::new(X)))
    );
    let db = to(&mut b, &request, broadcast());
    assert!(db.reply.is_none() && db.commit.is_none(), "{db:?}");
    assert_eq!(db.dropped, Some("client chose another server"));

    // B never saw A's binding: it offers the same address to Y (an offer is no promise; Y's
    // REQUEST for it would be refused by the store's claim, and B's pool would learn then).
    let dy = to(
        &mut b,
        &message(Y, MessageType::Discover, vec![]),
        broadcast(),
    );
    assert_eq!(
        answer(&dy).map(|x| (x.0, x.1)),
        Some((MessageType::Offer, first))
    );

    // A dies. X's RENEW (unicast to A) goes unanswered; at T2 it REBINDs by broadcast, without
    // option 54. B has no record of X, the address is in its range: B ACKs it (naming itself,
    // so X's next RENEW goes to B) and asks for the claim; Y's offer yields.
    let mut rebind = message(X, MessageType::Request, vec![]);
    rebind.set_ciaddr(first);
    assert_eq!(
        RequestState::of(&rebind, &broadcast()),
        Some(RequestState::Rebinding { ip: first })
    );
    let d = to(&mut b, &rebind, broadcast());
    assert_eq!(
        answer(&d),
        Some((
            MessageType::Ack,
            first,
            Some(&DhcpOption::ServerIdentifier(ip("198.18.0.2")))
        )),
        "the survivor ACKs the rebind: {d:?}"
    );
    assert_eq!(
        d.commit.as_ref().map(|l| (l.ip, l.mac)),
        Some((first, Mac::new(X)))
    );
    assert!(d.nak_if_lost.is_some(), "a refused claim turns into a NAK");

    // Y now asks B for the address B had offered it: X holds it, so NAK.
    let ry = message(
        Y,
        MessageType::Request,
        vec![
            DhcpOption::RequestedIpAddress(first),
            DhcpOption::ServerIdentifier(ip("198.18.0.2")),
        ],
    );
    assert_eq!(
        answer(&to(&mut b, &ry, broadcast())).map(|x| x.0),
        Some(MessageType::Nak)
    );
}

#[test]
fn a_bound_address_of_another_client_still_refuses_a_rebind() {
    // Only offers yield: a binding this server made itself is not taken by a REBIND for it.
    let mut b = server("198.18.0.2");
    let first = ip("198.18.0.100");
    to(
        &mut b,
        &message(Y, MessageType::Discover, vec![]),
        broadcast(),
    );
    let ry = message(
        Y,
        MessageType::Request,
        vec![
            DhcpOption::RequestedIpAddress(first),
            DhcpOption::ServerIdentifier(ip("198.18.0.2")),
        ],
    );
    assert_eq!(
        answer(&to(&mut b, &ry, broadcast())).map(|x| x.0),
        Some(MessageType::Ack)
    );
    let mut rebind = message(X, MessageType::Request, vec![]);
    rebind.set_ciaddr(first);
    let d = to(&mut b, &rebind, broadcast());
    assert_eq!(answer(&d).map(|x| x.0), Some(MessageType::Nak), "{d:?}");
}
