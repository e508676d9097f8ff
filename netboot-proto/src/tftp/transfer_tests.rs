#![allow(clippy::disallowed_methods)] // one Instant::now() as the origin of simulated time

use super::*;
use crate::tftp::packet::{ack, error, ErrorCode, OP_OACK};

fn opts(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn oack_text(n: &Negotiated) -> Vec<String> {
    let o = n.oack.as_ref().expect("oack");
    assert_eq!(u16::from_be_bytes([o[0], o[1]]), OP_OACK);
    o[2..]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

#[test]
fn negotiation_caps_ignores_and_echoes() {
    let l = Limits {
        max_blksize: 1468,
        max_windowsize: 16,
        ..Limits::default()
    };
    let n = negotiate(
        &opts(&[
            ("blksize", "9000"),
            ("tsize", "0"),
            ("timeout", "3"),
            ("windowsize", "64"),
            ("rollover", "0"),
        ]),
        4242,
        &l,
    );
    assert_eq!(
        (n.blksize, n.windowsize, n.timeout),
        (1468, 16, Duration::from_secs(3))
    );
    assert_eq!(
        oack_text(&n),
        [
            "blksize",
            "1468",
            "tsize",
            "4242",
            "timeout",
            "3",
            "windowsize",
            "16"
        ]
    );

    // Out of range or malformed values are not acknowledged.
    let n = negotiate(
        &opts(&[
            ("blksize", "7"),
            ("timeout", "0"),
            ("windowsize", "x"),
            ("tsize", "-1"),
        ]),
        1,
        &l,
    );
    assert_eq!((n.blksize, n.windowsize, n.oack), (512, 1, None));
    let n = negotiate(&opts(&[("blksize", "99999999999999999999999")]), 1, &l);
    assert_eq!(n.oack, None);

    // no_blksize: the option is ignored for broken stacks, tsize still answered.
    let nb = Limits {
        no_blksize: true,
        ..l.clone()
    };
    let n = negotiate(&opts(&[("blksize", "1468"), ("tsize", "0")]), 10, &nb);
    assert_eq!(n.blksize, 512);
    assert_eq!(oack_text(&n), ["tsize", "10"]);

    // Repeated options: the first one counts.
    let n = negotiate(&opts(&[("blksize", "1024"), ("blksize", "8")]), 10, &l);
    assert_eq!(n.blksize, 1024);
}

#[test]
fn pxe_tsize_probe_then_error_8_ends_at_once() {
    let now = Instant::now();
    let l = Limits::default();
    let n = negotiate(&opts(&[("tsize", "0")]), 1_000_000, &l);
    let (mut t, step) = Transfer::start(n, 1_000_000, &l, now);
    assert!(matches!(&step.send[..], [Send::Packet(p)] if p[1] as u16 == OP_OACK));
    let step = t.handle(
        Input::Datagram(&error(ErrorCode::OptionNegotiation, "tsize only")),
        now,
    );
    assert_eq!(step.send, vec![]);
    assert_eq!(
        step.next,
        Next::Done(Outcome::ClientError {
            code: 8,
            message: "tsize only".into()
        })
    );
}

#[test]
fn without_options_data_starts_at_once_and_ends_on_empty_block() {
    let now = Instant::now();
    let l = Limits::default();
    // 1024 bytes at blksize 512: blocks 1, 2 full, block 3 empty (RFC 1350 end of file).
    let (mut t, step) = Transfer::start(negotiate(&[], 1024, &l), 1024, &l, now);
    assert_eq!(step.send, vec![Send::Blocks { first: 1, last: 1 }]);
    assert_eq!(t.block_span(3), (1024, 0));
    assert_eq!(
        t.handle(Input::Datagram(&ack(1)), now).send,
        vec![Send::Blocks { first: 2, last: 2 }]
    );
    assert_eq!(
        t.handle(Input::Datagram(&ack(2)), now).send,
        vec![Send::Blocks { first: 3, last: 3 }]
    );
    assert_eq!(
        t.handle(Input::Datagram(&ack(3)), now).next,
        Next::Done(Outcome::Complete)
    );
}

#[test]
fn duplicate_acks_never_cause_a_resend() {
    let now = Instant::now();
    let l = Limits::default();
    let (mut t, _) = Transfer::start(negotiate(&[], 5000, &l), 5000, &l, now);
    let s = t.handle(Input::Datagram(&ack(1)), now);
    assert_eq!(s.send, vec![Send::Blocks { first: 2, last: 2 }]);
    for _ in 0..3 {
        let s = t.handle(Input::Datagram(&ack(1)), now);
        assert!(s.send.is_empty(), "duplicate ACK 1 resent something");
    }
    assert_eq!(
        t.handle(Input::Datagram(&ack(2)), now).send,
        vec![Send::Blocks { first: 3, last: 3 }]
    );
}

#[test]
fn timeouts_retransmit_the_window_then_give_up() {
    let t0 = Instant::now();
    let l = Limits {
        max_retries: 2,
        ..Limits::default()
    };
    let n = negotiate(&opts(&[("windowsize", "4")]), 10_000, &l);
    let (mut t, _) = Transfer::start(n, 10_000, &l, t0);
    let s = t.handle(Input::Datagram(&ack(0)), t0);
    assert_eq!(s.send, vec![Send::Blocks { first: 1, last: 4 }]);
    // An early wake-up is not a timeout.
    assert!(t
        .handle(Input::Timeout, t0 + Duration::from_millis(500))
        .send
        .is_empty());
    let s = t.handle(Input::Timeout, t0 + Duration::from_secs(1));
    assert_eq!(s.send, vec![Send::Blocks { first: 1, last: 4 }]);
    assert_eq!(t.retransmits, 4);
    // The timer backs off: the next retransmission comes 2 s later, then 4 s.
    assert_eq!(s.next, Next::WaitUntil(t0 + Duration::from_secs(3)));
    assert!(t
        .handle(Input::Timeout, t0 + Duration::from_secs(2))
        .send
        .is_empty());
    let s = t.handle(Input::Timeout, t0 + Duration::from_secs(3));
    assert_eq!(s.send, vec![Send::Blocks { first: 1, last: 4 }]);
    assert_eq!(s.next, Next::WaitUntil(t0 + Duration::from_secs(7)));
    let s = t.handle(Input::Timeout, t0 + Duration::from_secs(7));
    assert_eq!(s.next, Next::Done(Outcome::TimedOut));
    assert!(
        s.send.is_empty(),
        "no ERROR after minutes of silence: the port may be another program's by now"
    );
}

#[test]
fn progress_resets_the_backoff() {
    let t0 = Instant::now();
    let l = Limits::default();
    let (mut t, _) = Transfer::start(negotiate(&[], 5000, &l), 5000, &l, t0);
    let s = t.handle(Input::Timeout, t0 + Duration::from_secs(1));
    assert_eq!(s.next, Next::WaitUntil(t0 + Duration::from_secs(3)));
    let s = t.handle(Input::Datagram(&ack(1)), t0 + Duration::from_secs(2));
    assert_eq!(
        s.next,
        Next::WaitUntil(t0 + Duration::from_secs(3)),
        "back to the base timeout"
    );
}

#[test]
fn partial_window_ack_resumes_after_the_gap() {
    let now = Instant::now();
    let l = Limits::default();
    let n = negotiate(
        &opts(&[("windowsize", "16"), ("blksize", "512")]),
        100 * 512,
        &l,
    );
    let (mut t, _) = Transfer::start(n, 100 * 512, &l, now);
    assert_eq!(
        t.handle(Input::Datagram(&ack(0)), now).send,
        vec![Send::Blocks { first: 1, last: 16 }]
    );
    // Block 6 was lost: the client acknowledges 5.
    assert_eq!(
        t.handle(Input::Datagram(&ack(5)), now).send,
        vec![Send::Blocks { first: 6, last: 21 }]
    );
    // Its late ACK for the old window's end is now stale (16 ≤ 21 but already superseded? no: 16 > 5).
    assert_eq!(
        t.handle(Input::Datagram(&ack(21)), now).send,
        vec![Send::Blocks {
            first: 22,
            last: 37
        }]
    );
}

#[test]
fn bad_opcodes_end_with_error_4_and_junk_is_ignored() {
    let now = Instant::now();
    let l = Limits::default();
    let (mut t, _) = Transfer::start(negotiate(&[], 5000, &l), 5000, &l, now);
    assert!(t.handle(Input::Datagram(&[0, 4, 0]), now).send.is_empty());
    assert!(t.handle(Input::Datagram(&[]), now).send.is_empty());
    let s = t.handle(Input::Datagram(&[0, 3, 0, 1, 42]), now);
    assert_eq!(s.next, Next::Done(Outcome::IllegalOperation { opcode: 3 }));
    assert!(matches!(&s.send[..], [Send::Packet(p)] if p[..4] == [0, 5, 0, 4]));
}

/// A simulated client over a lossy link: returns the bytes it assembled and the outcome.
fn simulate(
    size: u64,
    options: &[(&str, &str)],
    loss_every: Option<u64>,
) -> (Vec<u8>, Outcome, u64, Vec<u16>) {
    let file: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
    let l = Limits {
        max_retries: 50,
        ..Limits::default()
    };
    let mut now = Instant::now();
    let n = negotiate(&opts(options), size, &l);
    let window = u64::from(n.windowsize);
    let (mut t, mut step) = Transfer::start(n, size, &l, now);
    let mut got: Vec<u8> = Vec::new();
    let mut expected: u64 = 1; // absolute block the client wants next
    let mut since_ack = 0u64;
    let mut sent = 0u64;
    let mut wire_numbers = Vec::new();
    loop {
        let mut reply: Option<Vec<u8>> = None;
        for s in std::mem::take(&mut step.send) {
            match s {
                Send::Packet(p) if p[1] as u16 == OP_OACK => reply = Some(ack(0)),
                Send::Packet(_) => {}
                Send::Blocks { first, last } => {
                    for b in first..=last {
                        sent += 1;
                        if loss_every.is_some_and(|k| sent.is_multiple_of(k)) {
                            continue;
                        }
                        let wire = b as u16;
                        if wire_numbers.len() < 70_000 {
                            wire_numbers.push(wire);
                        }
                        let (off, len) = t.block_span(b);
                        if wire != expected as u16 {
                            // Out of order: ACK the last good block (RFC 7440 client).
                            reply = Some(ack((expected - 1) as u16));
                            continue;
                        }
                        got.extend_from_slice(&file[off as usize..off as usize + len]);
                        expected += 1;
                        since_ack += 1;
                        if len < t.negotiated.blksize as usize || since_ack == window {
                            since_ack = 0;
                            reply = Some(ack((expected - 1) as u16));
                        }
                    }
                }
            }
        }
        match step.next.clone() {
            Next::Done(o) => {
                assert_eq!(got, file[..got.len()]);
                return (got, o, t.retransmits, wire_numbers);
            }
            Next::WaitUntil(deadline) => {
                step = match reply {
                    Some(p) => t.handle(Input::Datagram(&p), now),
                    None => {
                        now = deadline;
                        t.handle(Input::Timeout, now)
                    }
                };
            }
        }
    }
}

#[test]
fn block_numbers_roll_over_past_65535_on_a_40_mb_file() {
    let size = 40 * 1024 * 1024 + 123;
    let (got, outcome, _, wires) = simulate(size, &[], None);
    assert_eq!(outcome, Outcome::Complete);
    assert_eq!(got.len() as u64, size);
    assert_eq!(&wires[65533..65537], &[65534, 65535, 0, 1], "wraps to 0");
}

#[test]
fn windowsize_16_completes_with_and_without_loss() {
    let size = 3 * 1024 * 1024 + 7;
    let (got, o, r, _) = simulate(
        size,
        &[("windowsize", "16"), ("blksize", "1468"), ("tsize", "0")],
        None,
    );
    assert_eq!((got.len() as u64, o, r), (size, Outcome::Complete, 0));
    // Every 10th datagram lost: still complete and correct, with retransmissions.
    let (got, o, r, _) = simulate(size, &[("windowsize", "16"), ("blksize", "1468")], Some(10));
    assert_eq!((got.len() as u64, o), (size, Outcome::Complete));
    assert!(r > 0);
    let (got, o, _, _) = simulate(200_000, &[], Some(7));
    assert_eq!((got.len(), o), (200_000, Outcome::Complete));
}

#[test]
fn timeout_adapts_to_the_round_trip_below_any_negotiated_one() {
    let t0 = Instant::now();
    let l = Limits::default();
    let (mut t, s) = Transfer::start(negotiate(&[], 100_000, &l), 100_000, &l, t0);
    assert_eq!(
        s.next,
        Next::WaitUntil(t0 + Duration::from_secs(1)),
        "no measurement yet: full timeout"
    );
    // A 2 ms round trip: the next timer sits at the 20 ms floor.
    let s = t.handle(Input::Datagram(&ack(1)), t0 + Duration::from_millis(2));
    assert_eq!(s.next, Next::WaitUntil(t0 + Duration::from_millis(22)));
    // A timeout doubles it; the retransmitted window gives no sample (Karn), progress resets.
    let s = t.handle(Input::Timeout, t0 + Duration::from_millis(22));
    assert_eq!(s.next, Next::WaitUntil(t0 + Duration::from_millis(62)));
    let s = t.handle(Input::Datagram(&ack(2)), t0 + Duration::from_millis(400));
    assert_eq!(
        s.next,
        Next::WaitUntil(t0 + Duration::from_millis(420)),
        "no sample from a resent window"
    );

    // A negotiated timeout is the starting point and the cap, and backoff stops at 8× it.
    let n = negotiate(&opts(&[("timeout", "2")]), 100_000, &l);
    let (mut t, _) = Transfer::start(n, 100_000, &l, t0);
    let s = t.handle(Input::Datagram(&ack(0)), t0);
    assert_eq!(s.next, Next::WaitUntil(t0 + Duration::from_secs(2)));
    let s = t.handle(Input::Datagram(&ack(1)), t0 + Duration::from_millis(2));
    assert_eq!(s.next, Next::WaitUntil(t0 + Duration::from_millis(22)));
}

#[test]
fn random_datagrams_never_panic_the_parsers_or_a_transfer() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let now = Instant::now();
    let l = Limits::default();
    for round in 0..2_000 {
        let len = (next() % 80) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias towards plausible opcodes so the deeper paths are reached too.
        if len >= 2 {
            d[0] = 0;
            d[1] = (next() % 8) as u8;
        }
        let _ = crate::tftp::packet::parse_request(&d);
        let _ = crate::tftp::packet::parse_client(&d);
        if let Ok(req) = crate::tftp::packet::parse_request(&d) {
            let _ = crate::tftp::path::normalize(&req.filename);
            let n = negotiate(&req.options, round * 37, &l);
            assert!(n.blksize >= 8 && n.windowsize >= 1);
        }
        let size = next() % 100_000;
        let (mut t, _) = Transfer::start(negotiate(&[], size, &l), size, &l, now);
        for i in 0..20 {
            let len = (next() % 10) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 2 && i % 2 == 0 {
                p[0] = 0;
                p[1] = 4; // ACK with a random block number
            }
            let step = t.handle(Input::Datagram(&p), now + Duration::from_millis(i));
            for s in step.send {
                if let Send::Blocks { first, last } = s {
                    assert!(first >= 1 && first <= last);
                    let (off, n) = t.block_span(last);
                    assert!(off + n as u64 <= size);
                }
            }
        }
    }
}
