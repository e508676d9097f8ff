//! Admission in the core: which requests reach the gate, what record they become, and that the
//! reply is decided as for that record.

use super::*;
use crate::admission::{Gate, Limits, Refusal};

fn with_gate(
    c: &mut Core,
    msg: &Message,
    m: Option<&Machine>,
    gate: &mut Gate,
    holder: Option<Mac>,
) -> Decision {
    let res: HashMap<Ipv4Addr, Mac> = HashMap::new();
    let uuid_holder = move |_: &str| holder;
    c.handle(Input {
        relay_info: None,
        msg,
        arrived: arrived(67),
        link: ip("198.18.0.1"),
        machine: m,
        reservations: &res,
        now: NOW,
        admitting: Some(Admitting {
            gate,
            uuid_holder: &uuid_holder,
        }),
    })
}

const UUID: [u8; 16] = [
    0x4c, 0x4c, 0x45, 0x44, 0, 0x31, 0x10, 0x80, 0x80, 0x31, 0xb4, 0xc0, 0x4f, 0x33, 0x35, 0x32,
];

fn pxe_with_uuid() -> Vec<DhcpOption> {
    let mut o = pxe(7);
    let mut guid = vec![0u8];
    guid.extend_from_slice(&UUID);
    o.push(DhcpOption::ClientMachineIdentifier(guid));
    o
}

#[test]
fn an_unknown_pxe_client_under_discover_becomes_a_discovered_record_and_is_held() {
    let mut c = core(Mode::Full, UnknownPolicy::Discover);
    let mut gate = Gate::new(Limits::default());
    let d = with_gate(
        &mut c,
        &request(MessageType::Discover, pxe_with_uuid()),
        None,
        &mut gate,
        None,
    );
    let Some(Ok(Some(a))) = &d.admission else {
        panic!("admitted: {:?}", d.admission)
    };
    assert_eq!(a.machine.mac, Mac::new(MAC));
    assert_eq!(a.machine.state(), State::Discovered);
    assert_eq!(a.machine.arch, Some(7));
    assert!(a.machine.spec.uuid.is_some(), "option 97 recorded");
    assert_eq!((a.by, a.note.is_none()), ("discover", true));
    assert_eq!(gate.waiting(), 1, "counted as one more unclaimed record");
    let (offer, _) = d.reply.unwrap();
    assert_eq!(
        offer.fname_str().unwrap().unwrap(),
        "snponly.efi",
        "decided as for the discovered record: iPXE, to poll"
    );
}

#[test]
fn under_auto_the_record_is_registered() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    let mut gate = Gate::new(Limits::default());
    let d = with_gate(
        &mut c,
        &request(MessageType::Discover, pxe(7)),
        None,
        &mut gate,
        None,
    );
    let Some(Ok(Some(a))) = &d.admission else {
        panic!("{:?}", d.admission)
    };
    assert_eq!((a.machine.state(), a.by), (State::Registered, "auto"));
}

#[test]
fn a_uuid_another_machine_holds_is_not_taken_a_note_says_so() {
    let mut c = core(Mode::Full, UnknownPolicy::Discover);
    let mut gate = Gate::new(Limits::default());
    let other = Mac::new([2, 0, 0, 0, 0, 9]);
    let d = with_gate(
        &mut c,
        &request(MessageType::Discover, pxe_with_uuid()),
        None,
        &mut gate,
        Some(other),
    );
    let Some(Ok(Some(a))) = &d.admission else {
        panic!("{:?}", d.admission)
    };
    assert_eq!(a.machine.spec.uuid, None);
    let Some(inventory::EventKind::Note { message }) = &a.note else {
        panic!("{:?}", a.note)
    };
    assert!(message.contains(&other.to_string()), "{message}");
}

#[test]
fn plain_clients_known_machines_and_other_messages_never_reach_the_gate() {
    let mut c = core(Mode::Full, UnknownPolicy::Discover);
    let mut gate = Gate::new(Limits::default());
    let plain = request(MessageType::Discover, vec![]);
    assert!(with_gate(&mut c, &plain, None, &mut gate, None)
        .admission
        .is_none());
    let known = machine(State::Registered);
    let d = with_gate(
        &mut c,
        &request(MessageType::Discover, pxe(7)),
        Some(&known),
        &mut gate,
        None,
    );
    assert!(d.admission.is_none());
    let inform = request(MessageType::Inform, pxe(7));
    assert!(with_gate(&mut c, &inform, None, &mut gate, None)
        .admission
        .is_none());
    assert_eq!(gate.waiting(), 0);
    // Without a gate (a caller that does not record), nothing is admitted either.
    let d = run(
        &mut c,
        &request(MessageType::Discover, pxe(7)),
        arrived(67),
        None,
    );
    assert!(d.admission.is_none());
}

#[test]
fn under_ignore_nothing_is_recorded() {
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    let mut gate = Gate::new(Limits::default());
    let d = with_gate(
        &mut c,
        &request(MessageType::Discover, pxe(7)),
        None,
        &mut gate,
        None,
    );
    assert!(matches!(d.admission, Some(Ok(None))), "{:?}", d.admission);
    assert_eq!(gate.waiting(), 0);
}

#[test]
fn a_refusal_is_returned_with_one_warning_and_the_reply_is_for_a_stranger() {
    let mut c = core(Mode::Full, UnknownPolicy::Discover);
    let mut gate = Gate::new(Limits {
        max_waiting: 0,
        per_minute: 10,
    });
    let msg = request(MessageType::Discover, pxe(7));
    let d = with_gate(&mut c, &msg, None, &mut gate, None);
    let Some(Err((Refusal::Cap, Some(warning)))) = &d.admission else {
        panic!("{:?}", d.admission)
    };
    assert!(warning.contains("dhcp.max_discovered 0"), "{warning}");
    assert!(d.reply.is_some(), "a stranger is still answered (held)");
    let again = with_gate(&mut c, &msg, None, &mut gate, None);
    assert!(
        matches!(again.admission, Some(Err((Refusal::Cap, None)))),
        "one warning a minute: {:?}",
        again.admission
    );
}
