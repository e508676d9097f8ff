//! Lease semantics end to end (issue 20), the test acting as a relay on loopback: a reservation
//! for an address another client holds is refused by the API and not handed out; a stranger's
//! DECLINE does not evict the holder; RELEASE and INIT-REBOOT from strangers change nothing.

use std::net::Ipv4Addr;

use serde_json::json;

use crate::loopback_dhcp::{lease, octets, packet, reply_kind, LeaseServer, ACK};

const A: &str = "52:54:00:1e:a5:0a";
const B: &str = "52:54:00:1e:a5:0b";
const DECLINE: u8 = 4;

#[test]
fn a_reservation_on_a_leased_address_is_refused_and_never_shared() {
    let dir = tempfile::tempdir().unwrap();
    let s = LeaseServer::start(dir.path(), &dir.path().join("data"), "", &[]);
    let api = s.server.http();
    let a_ip = lease(s.dhcp_port, A);
    // The operator tries to reserve A's address for B: refused, naming A.
    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": B, "ip": a_ip.to_string()}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["error"], "ip_leased");
    assert!(r.text.contains(A), "names the holder: {}", r.text);
    // Registered without it, B gets another address; A keeps its own.
    let r = api.json("POST", "/api/v1/machines", json!({"mac": B}));
    assert_eq!(r.status, 201, "{}", r.text);
    let b_ip = lease(s.dhcp_port, B);
    assert_ne!(b_ip, a_ip);
    assert_eq!(lease(s.dhcp_port, A), a_ip);
    // The operator sees both bindings: API and CLI.
    let leases = api.get("/api/v1/leases").body;
    let of = |mac: &str| {
        leases
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["mac"] == mac)
            .unwrap_or_else(|| panic!("no lease of {mac}: {leases}"))
            .clone()
    };
    assert_eq!(of(A)["ip"], a_ip.to_string());
    assert_eq!(of(B)["ip"], b_ip.to_string());
    assert_eq!(
        (of(A)["active"].as_bool(), of(A)["observed"].as_bool()),
        (Some(true), None)
    );
    let out = s.server.cli(&["leases"]);
    let table = crate::harness::stdout(&out);
    assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    let row = table
        .lines()
        .find(|l| l.contains(A))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains(&a_ip.to_string()) && row.contains("granted"),
        "{table}"
    );
}

#[test]
fn a_strangers_decline_or_release_does_not_evict_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let s = LeaseServer::start(dir.path(), &dir.path().join("data"), "", &[]);
    let a_ip = lease(s.dhcp_port, A);
    let ours = vec![127, 0, 0, 1];
    // B declines A's address, naming us.
    let kind = reply_kind(s.dhcp_port, 0x0dec_0001, |relay| {
        packet(
            DECLINE,
            0x0dec_0001,
            octets(B),
            relay,
            &[(50, a_ip.octets().to_vec()), (54, ours.clone())],
        )
    });
    assert_eq!(kind, None, "a DECLINE gets no answer");
    // B releases A's address.
    let kind = reply_kind(s.dhcp_port, 0x0dec_0002, |relay| {
        let mut p = packet(7, 0x0dec_0002, octets(B), relay, &[(54, ours.clone())]);
        p[12..16].copy_from_slice(&a_ip.octets());
        p
    });
    assert_eq!(kind, None);
    // B's INIT-REBOOT for A's address: silence (no record of B), not an ACK.
    let kind = reply_kind(s.dhcp_port, 0x0dec_0003, |relay| {
        packet(
            3,
            0x0dec_0003,
            octets(B),
            relay,
            &[(50, a_ip.octets().to_vec())],
        )
    });
    assert_eq!(kind, None);
    // A renews (RENEWING: ciaddr set): still ACKed, same address.
    let renew = |xid: u32| {
        move |relay: Ipv4Addr| {
            let mut p = packet(3, xid, octets(A), relay, &[]);
            p[12..16].copy_from_slice(&a_ip.octets());
            p
        }
    };
    assert_eq!(
        reply_kind(s.dhcp_port, 0x0dec_0004, renew(0x0dec_0004)),
        Some(ACK)
    );
    // A's own DECLINE naming us does quarantine it; a renewal of it is no longer ACKed.
    let kind = reply_kind(s.dhcp_port, 0x0dec_0005, |relay| {
        packet(
            DECLINE,
            0x0dec_0005,
            octets(A),
            relay,
            &[(50, a_ip.octets().to_vec()), (54, ours.clone())],
        )
    });
    assert_eq!(kind, None);
    assert_ne!(
        reply_kind(s.dhcp_port, 0x0dec_0006, renew(0x0dec_0006)),
        Some(ACK)
    );
}
