//! TFTP from anyone on the link: a fresh request (RRQ/WRQ parsing, file-name normalization,
//! option negotiation, as `provisioner/src/tftp/server.rs` does them), then datagrams and
//! timeouts into the transfer it starts.
//!
//! Input: `[size selector][request length n][n request bytes][events…]`; each event byte `e` is
//! a timeout `e & 0x7f` × 50 ms later when its high bit is set, else a datagram of the next
//! `e` bytes. Checks: every block sent lies within the file, and with nothing but timeouts
//! afterwards every transfer ends.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netboot_proto::tftp::packet::parse_request;
use netboot_proto::tftp::path::normalize;
use netboot_proto::tftp::transfer::{negotiate, Input, Limits, Next, Send, Step, Transfer};

/// File sizes around block boundaries, the 16-bit block rollover and a large UKI.
const SIZES: [u64; 8] = [0, 1, 511, 512, 513, 4404, 65_536 * 512 + 1, 300_000_000];

fn check(t: &Transfer, step: &Step) {
    for s in &step.send {
        if let Send::Blocks { first, last } = *s {
            assert!(first >= 1 && first <= last, "blocks {first}..={last}");
            let (offset, len) = t.block_span(last);
            assert!(offset + len as u64 <= t.size, "block {last} past the end");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n).min(rest.len());
    let (request, mut events) = rest.split_at(n);
    let Ok(req) = parse_request(request) else {
        return;
    };
    if req.write || normalize(&req.filename).is_err() {
        return;
    }
    let size = SIZES[usize::from(selector & 7)];
    let limits = Limits::default();
    let origin = Instant::now();
    let (mut t, mut step) = Transfer::start(
        negotiate(&req.options, size, &limits),
        size,
        &limits,
        origin,
    );
    check(&t, &step);
    let mut now = origin;
    while let [e, tail @ ..] = events {
        let input = if e & 0x80 != 0 {
            now += Duration::from_millis(u64::from(e & 0x7f) * 50);
            events = tail;
            Input::Timeout
        } else {
            let len = usize::from(*e).min(tail.len());
            let (datagram, tail) = tail.split_at(len);
            events = tail;
            Input::Datagram(datagram)
        };
        step = t.handle(input, now);
        check(&t, &step);
    }
    for _ in 0..10_000 {
        match step.next {
            Next::Done(_) => return,
            Next::WaitUntil(at) => {
                now = now.max(at);
                step = t.handle(Input::Timeout, now);
                check(&t, &step);
            }
        }
    }
    panic!("a transfer that never ends");
});
