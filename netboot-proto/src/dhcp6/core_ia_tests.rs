//! RFC 8415 §18.3 cases of the IA answers: NoBinding, Rebind without binding, NotOnLink,
//! Confirm, and the durable quarantine of a declined address.

use super::*;

const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 0x41];

/// A `kind` message from CLIENT with one IA_NA (IAID 7) naming `addrs`; naming us when `ours`.
fn msg(kind: MessageType, addrs: &[&str], ours: bool) -> Vec<u8> {
    let mut m = Message::new_with_id(kind, [4, 5, 6]);
    m.opts_mut().insert(DhcpOption::ClientId(duid_ll(CLIENT)));
    if ours {
        m.opts_mut()
            .insert(DhcpOption::ServerId(SERVER_DUID.to_vec()));
    }
    let mut ia = IANA {
        id: 7,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    };
    for a in addrs {
        ia.opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: ip(a),
            preferred_life: 0,
            valid_life: 0,
            opts: Default::default(),
        }));
    }
    m.opts_mut().insert(DhcpOption::IANA(ia));
    m.to_vec().unwrap()
}

/// The reply's one IA_NA: its status (Success when none) and (address, valid lifetime) pairs.
fn ia_of(m: &Message) -> (Status, Vec<(Ipv6Addr, u32)>) {
    let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else {
        panic!("no IA_NA in {m:?}");
    };
    let st = match ia.opts.get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => s.status,
        _ => Status::Success,
    };
    let addrs = ia
        .opts
        .get_all(OptionCode::IAAddr)
        .unwrap_or(&[])
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some((a.addr, a.valid_life)),
            _ => None,
        })
        .collect();
    (st, addrs)
}

#[test]
fn renew_without_a_binding_gets_no_binding_and_binds_nothing() {
    let mut c = core(Mode6::Stateful);
    let d = run(&mut c, &msg(MessageType::Renew, &["2001:2::1:9"], true), 1);
    let (st, addrs) = ia_of(&reply_of(&d));
    assert_eq!(st, Status::NoBinding);
    assert!(addrs.is_empty());
    assert!(d.commit.is_empty());
}

#[test]
fn rebind_without_a_binding_zeroes_foreign_addresses_and_keeps_free_ones() {
    let mut c = core(Mode6::Stateful);
    // Not on this link: lifetimes 0, nothing bound.
    let d = run(
        &mut c,
        &msg(MessageType::Rebind, &["2001:db8::5"], false),
        1,
    );
    assert_eq!(
        ia_of(&reply_of(&d)),
        (Status::Success, vec![(ip("2001:db8::5"), 0)])
    );
    assert!(d.commit.is_empty());
    // In the range and free (e.g. bound before a restart that lost it): the client keeps it.
    let d = run(
        &mut c,
        &msg(MessageType::Rebind, &["2001:2::1:9"], false),
        2,
    );
    assert_eq!(ia_of(&reply_of(&d)).1, vec![(ip("2001:2::1:9"), 7200)]);
    assert_eq!(d.commit[0].ip, ip("2001:2::1:9"));
    // Nothing named and nothing bound: no reply.
    let mut other = core(Mode6::Stateful);
    let d = run(&mut other, &msg(MessageType::Rebind, &[], false), 3);
    assert!(d.reply.is_none());
    assert!(d.dropped.is_some());
    // Held by another client: lifetimes 0.
    let mut sol = solicit(duid_ll([2, 0, 0, 0, 0, 0x42]));
    sol.opts_mut().insert(DhcpOption::RapidCommit);
    let theirs = run(&mut other, &sol.to_vec().unwrap(), 4).commit[0].ip;
    let d = run(
        &mut other,
        &msg(MessageType::Rebind, &[&theirs.to_string()], false),
        5,
    );
    assert_eq!(ia_of(&reply_of(&d)).1, vec![(theirs, 0)]);
    assert!(d.commit.is_empty());
}

#[test]
fn request_for_an_address_off_link_gets_not_on_link() {
    let mut c = core(Mode6::Stateful);
    let d = run(
        &mut c,
        &msg(MessageType::Request, &["2001:db8::5"], true),
        1,
    );
    let (st, addrs) = ia_of(&reply_of(&d));
    assert_eq!(st, Status::NotOnLink);
    assert!(addrs.is_empty());
    assert!(d.commit.is_empty());
    // Asking again without an address (RFC 8415 §18.2.10.1) gets one.
    let d = run(&mut c, &msg(MessageType::Request, &[], true), 2);
    assert_eq!(d.commit.len(), 1);
}

#[test]
fn renew_keeps_the_binding_and_zeroes_other_addresses_named() {
    let mut c = core(Mode6::Stateful);
    let got = run(&mut c, &msg(MessageType::Request, &[], true), 1).commit[0].ip;
    let d = run(
        &mut c,
        &msg(MessageType::Renew, &[&got.to_string(), "2001:db8::7"], true),
        2,
    );
    let (st, mut addrs) = ia_of(&reply_of(&d));
    assert_eq!(st, Status::Success);
    addrs.sort();
    let mut want = vec![(got, 7200), (ip("2001:db8::7"), 0)];
    want.sort();
    assert_eq!(addrs, want);
    assert_eq!(d.commit[0].expires, Timestamp(2 + 7_200_000), "extended");
}

#[test]
fn confirm_on_link_is_success_and_without_addresses_gets_no_reply() {
    let mut c = core(Mode6::Stateful);
    let d = run(
        &mut c,
        &msg(MessageType::Confirm, &["2001:2::1:3"], false),
        1,
    );
    assert!(matches!(
        reply_of(&d).opts().get(OptionCode::StatusCode),
        Some(DhcpOption::StatusCode(s)) if s.status == Status::Success
    ));
    let d = run(&mut c, &msg(MessageType::Confirm, &[], false), 1);
    assert!(
        d.reply.is_none(),
        "RFC 8415 §18.3.3: nothing to confirm, no reply"
    );
    let d = run(
        &mut c,
        &msg(MessageType::Confirm, &["2001:2::1:3"], true),
        1,
    );
    assert!(d.reply.is_none(), "a Confirm naming a server is dropped");
}

#[test]
fn a_declined_address_stays_quarantined_after_a_restart_until_it_ends() {
    let mut c = core(Mode6::Stateful);
    let got = run(&mut c, &msg(MessageType::Request, &[], true), 1).commit[0].ip;
    let d = run(
        &mut c,
        &msg(MessageType::Decline, &[&got.to_string()], true),
        2,
    );
    let q = d.commit[0].clone();
    assert!(q.declined);
    assert_eq!(q.expires, Timestamp(2 + 7_200_000));
    // A restart: a fresh core restores what the store holds (the quarantine).
    let mut fresh = core(Mode6::Stateful);
    fresh
        .pool
        .as_mut()
        .unwrap()
        .restore(std::slice::from_ref(&q), Timestamp(3));
    let hint = msg(MessageType::Request, &[&got.to_string()], true);
    assert_ne!(
        run(&mut fresh, &hint, 3).commit[0].ip,
        got,
        "still quarantined"
    );
    let mut after = core(Mode6::Stateful);
    after.pool.as_mut().unwrap().restore(&[q], Timestamp(3));
    assert_eq!(
        run(&mut after, &hint, 2 + 7_200_000).commit[0].ip,
        got,
        "free once the quarantine ends"
    );
}

/// A stranger's Request with many IA_NAs binds at most [`crate::dhcp6::ia::MAX_IAS`] addresses; the
/// other IAs get NoAddrsAvail (review: 3,500 IA_NAs in one Request took the whole range).
#[test]
fn at_most_four_ia_na_of_one_message_get_addresses() {
    let mut c = core(Mode6::Stateful);
    let mut m = solicit(duid_ll(CLIENT));
    m.opts_mut().insert(DhcpOption::RapidCommit);
    m.opts_mut().remove(OptionCode::IANA);
    for id in 0..10 {
        m.opts_mut().insert(DhcpOption::IANA(IANA {
            id,
            t1: 0,
            t2: 0,
            opts: Default::default(),
        }));
    }
    let d = run(&mut c, &m.to_vec().unwrap(), 1);
    assert_eq!(d.commit.len(), crate::dhcp6::ia::MAX_IAS);
    let rep = reply_of(&d);
    let ias = rep.opts().get_all(OptionCode::IANA).unwrap();
    assert_eq!(ias.len(), 10, "every IA is answered");
    let refused = ias
        .iter()
        .filter(
            |o| matches!(o, DhcpOption::IANA(ia) if ia.opts.get(OptionCode::StatusCode).is_some()),
        )
        .count();
    assert_eq!(refused, 10 - crate::dhcp6::ia::MAX_IAS);
}

/// The reservation follows the machine, not the DUID: while its installed OS (DUID-LLT) holds
/// the reserved address, the firmware's Solicit (DUID-UUID, MAC from the link-local source)
/// gets it; another MAC still does not.
#[test]
fn a_reserved_address_held_by_another_duid_of_the_same_mac_goes_to_the_new_one() {
    let mut c = core(Mode6::Stateful);
    let reserved = ip("2001:2::1:50");
    let mut os = solicit(duid_ll(RESERVED_MAC.octets()));
    os.opts_mut().insert(DhcpOption::RapidCommit);
    let d = run(&mut c, &os.to_vec().unwrap(), 1);
    assert_eq!(d.commit[0].ip, reserved);
    // The firmware: a DUID-UUID, from RESERVED_MAC's EUI-64 link-local address.
    let mut fw = solicit(vec![
        0, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    ]);
    fw.opts_mut().insert(DhcpOption::RapidCommit);
    let none = |_: Mac| -> Option<Machine> { None };
    let d = c.handle(&Input6 {
        bytes: &fw.to_vec().unwrap(),
        from: SocketAddrV6::new(ip("fe80::5054:ff:feaa:2"), 546, 0, 2),
        machine: &none,
        now: Timestamp(2),
    });
    assert_eq!(d.mac, Some(RESERVED_MAC));
    assert_eq!(addr_of(&reply_of(&d)), Some(reserved), "{:?}", reply_of(&d));
    assert_eq!(d.commit[0].ip, reserved);
    assert_eq!(
        c.pool.as_ref().unwrap().binding(reserved).unwrap().duid,
        d.commit[0].duid
    );
}
