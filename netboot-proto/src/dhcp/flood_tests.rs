//! The core under floods (issue 18, item 8): random MACs, a client repeating itself at a full
//! pool, strangers holding the range while a registered machine asks.

use dhcproto::v4::{DhcpOption, Message, MessageType};
use inventory::{EventKind, Lifecycle, Mac, Machine, State, Timestamp};

use super::*;
use crate::dhcp::pool::{Pool, PoolTimes};

fn random_macs(n: usize) -> Vec<[u8; 6]> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            [b[0] & 0xfe, b[1], b[2], b[3], b[4], b[5]]
        })
        .collect()
}

#[test]
fn ten_thousand_random_macs_leave_a_bounded_number_of_events() {
    use crate::dhcp::seen_limit::{CAPACITY, STRANGER_BURST};
    let macs = random_macs(10_000);
    // Proxy mode under `ignore`, and full mode under `discover` for the strangers the admission
    // cap refused (they reach the core unknown).
    for (mode, policy) in [
        (Mode::Proxy, UnknownPolicy::Ignore),
        (Mode::Full, UnknownPolicy::Discover),
    ] {
        let mut c = core(mode, policy);
        let (mut events, mut suppressed) = (0, 0);
        for round in 0..2 {
            for m in &macs {
                let mut msg = request(MessageType::Discover, pxe(7));
                msg.set_chaddr(m);
                let d = run(&mut c, &msg, arrived(67), None);
                if mode == Mode::Proxy {
                    assert!(d.reply.is_none(), "ignore: no answer");
                    assert!(d.dropped.is_some(), "every dropped packet has a reason");
                }
                events += d.events.len();
                suppressed += d.suppressed;
            }
            // The strangers' budget, whatever the number of MACs; none more in the same window.
            assert_eq!(
                events, STRANGER_BURST as usize,
                "{mode:?}/{policy:?} after round {round}"
            );
        }
        assert!(suppressed >= 2 * 10_000 - STRANGER_BURST as usize);
        assert!(c.observations.strangers.len() <= CAPACITY);
    }
}

/// A full-mode core whose first subnet's range is 198.18.0.100 up to `last`, strangers limited to
/// `share` percent of it.
fn small_core(last: &str, share: u8) -> Core {
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    c.subnets[0].1 = Pool::new(
        ip("198.18.0.0"),
        24,
        ip("198.18.0.100"),
        ip(last),
        PoolTimes::default(),
    )
    .with_stranger_share(share);
    c
}

fn with_mac(mut msg: Message, mac: [u8; 6]) -> Message {
    msg.set_chaddr(&mac);
    msg
}

fn registered(mac: [u8; 6]) -> Machine {
    Machine::registered(Mac::new(mac), Default::default(), Timestamp(0))
}

fn offered(d: &Decision) -> Option<Ipv4Addr> {
    d.reply
        .as_ref()
        .filter(|(m, _)| kind(m) == MessageType::Offer)
        .map(|(m, _)| m.yiaddr())
}

#[test]
fn fifty_discovers_at_a_full_pool_leave_one_event_per_kind_and_one_warning() {
    let mut c = small_core("198.18.0.101", 100);
    for i in 0..2u8 {
        let m = registered([2, 0, 0, 0, 1, i]);
        let msg = with_mac(request(MessageType::Discover, vec![]), m.mac.octets());
        assert!(offered(&run(&mut c, &msg, arrived(67), Some(&m))).is_some());
    }
    // A plain client repeating itself: no events at all (ordinary DHCP clients leave none), the
    // drop counted each time, one warning.
    let plain = with_mac(request(MessageType::Discover, vec![]), [2, 0, 0, 0, 2, 1]);
    let runs: Vec<Decision> = (0..50)
        .map(|_| run(&mut c, &plain, arrived(67), None))
        .collect();
    assert_eq!(runs.iter().map(|d| d.events.len()).sum::<usize>(), 0);
    assert!(runs.iter().all(|d| d.dropped == Some("pool exhausted")));
    assert_eq!(runs.iter().filter(|d| d.warning.is_some()).count(), 1);
    // A netbooting stranger: one `seen` and one note, not fifty of each.
    let pxe_stranger = with_mac(request(MessageType::Discover, pxe(7)), [2, 0, 0, 0, 2, 2]);
    let events: usize = (0..50)
        .map(|_| run(&mut c, &pxe_stranger, arrived(67), None).events.len())
        .sum();
    assert_eq!(events, 2);
    // A registered machine repeating itself: the note once.
    let m = registered([2, 0, 0, 0, 2, 3]);
    let mine = with_mac(request(MessageType::Discover, vec![]), m.mac.octets());
    let kinds: Vec<EventKind> = (0..50)
        .flat_map(|_| run(&mut c, &mine, arrived(67), Some(&m)).events)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(
                |k| matches!(k, EventKind::Note { message } if message.contains("no address free"))
            )
            .count(),
        1,
        "{kinds:?}"
    );
}

#[test]
fn ten_unanswered_stranger_discovers_do_not_starve_a_registered_machine() {
    // The whole range open to strangers: ten strangers hold all ten addresses with offers.
    let mut c = small_core("198.18.0.109", 100);
    let strangers: Vec<[u8; 6]> = (0..10u8).map(|i| [2, 0, 0, 0, 3, i]).collect();
    let mut held = Vec::new();
    for s in &strangers {
        let msg = with_mac(request(MessageType::Discover, pxe(7)), *s);
        held.push(offered(&run(&mut c, &msg, arrived(67), None)).expect("offer"));
    }
    let late = with_mac(request(MessageType::Discover, pxe(7)), [2, 0, 0, 0, 3, 99]);
    assert_eq!(
        run(&mut c, &late, arrived(67), None).dropped,
        Some("pool exhausted")
    );
    // A registered machine without a reservation takes an address that was only offered.
    let m = registered([2, 0, 0, 0, 4, 1]);
    let disc = with_mac(request(MessageType::Discover, pxe(7)), m.mac.octets());
    let got = offered(&run(&mut c, &disc, arrived(67), Some(&m))).expect("offer");
    assert!(held.contains(&got));
    let mut opts = pxe(7);
    opts.push(DhcpOption::ServerIdentifier(ip("198.18.0.1")));
    opts.push(DhcpOption::RequestedIpAddress(got));
    let d = run(
        &mut c,
        &with_mac(request(MessageType::Request, opts.clone()), m.mac.octets()),
        arrived(67),
        Some(&m),
    );
    assert_eq!(d.commit.map(|l| l.ip), Some(got));
    // The stranger that was offered it is refused when it asks for it.
    let loser = strangers[held.iter().position(|h| *h == got).unwrap()];
    let d = run(
        &mut c,
        &with_mac(request(MessageType::Request, opts), loser),
        arrived(67),
        None,
    );
    assert_eq!(
        d.reply.map(|(r, _)| kind(&r)),
        Some(MessageType::Nak),
        "taken"
    );
}

#[test]
fn strangers_hold_at_most_their_share_even_with_bindings() {
    // 80 % of ten addresses: strangers that complete DORA hold eight; two stay for registered
    // machines, and a stranger asking for one of them directly is refused.
    let mut c = small_core("198.18.0.109", 80);
    let mut bound = 0;
    for i in 0..20u8 {
        let s = [2, 0, 0, 0, 5, i];
        let msg = with_mac(request(MessageType::Discover, pxe(7)), s);
        let d = run(&mut c, &msg, arrived(67), None);
        let Some(a) = offered(&d) else {
            assert_eq!(d.dropped, Some("unregistered share of the pool in use"));
            continue;
        };
        let mut opts = vec![
            DhcpOption::ServerIdentifier(ip("198.18.0.1")),
            DhcpOption::RequestedIpAddress(a),
        ];
        opts.extend(pxe(7));
        let d = run(
            &mut c,
            &with_mac(request(MessageType::Request, opts), s),
            arrived(67),
            None,
        );
        assert!(d.commit.is_some());
        bound += 1;
    }
    assert_eq!(bound, 8);
    let grab = with_mac(
        request(
            MessageType::Request,
            vec![DhcpOption::RequestedIpAddress(ip("198.18.0.108"))],
        ),
        [2, 0, 0, 0, 5, 99],
    );
    let d = run(&mut c, &grab, arrived(67), None);
    assert!(
        d.commit.is_none(),
        "a stranger cannot REQUEST past its share"
    );
    for i in 0..2u8 {
        let m = registered([2, 0, 0, 0, 6, i]);
        let msg = with_mac(request(MessageType::Discover, vec![]), m.mac.octets());
        assert!(
            offered(&run(&mut c, &msg, arrived(67), Some(&m))).is_some(),
            "registered machine {i}"
        );
    }
    // A discovered machine (waiting for approval) is served from the strangers' share too.
    let mut waiting = registered([2, 0, 0, 0, 7, 1]);
    waiting.lifecycle = Lifecycle::new(State::Discovered, Timestamp(0));
    let msg = with_mac(request(MessageType::Discover, pxe(7)), waiting.mac.octets());
    assert!(offered(&run(&mut c, &msg, arrived(67), Some(&waiting))).is_none());
}
