//! One read transfer as a deterministic state machine: `start`, then `handle(input, now)` for
//! every datagram from the client and every expired deadline. It owns no socket, no file and no
//! clock; it says which blocks to send and when it next wants to be woken.
//!
//! RFC 1350 (lock-step DATA/ACK), RFC 2347 (OACK), 2348 (blksize), 2349 (tsize, timeout),
//! 7440 (windowsize). Block numbers are 16-bit on the wire and wrap 65535 → 0; internally blocks
//! are counted as u64 so files of any size work. A duplicate ACK never triggers a resend (the
//! "sorcerer's apprentice" bug); only a timeout does. An ERROR from the client ends the transfer
//! at once — the PXE `tsize` probe (RRQ, OACK, ERROR 8) leaves nothing running.

use std::time::{Duration, Instant};

use super::packet::{self, ClientPacket, ErrorCode};

/// Server-side bounds on what clients may negotiate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest blksize granted (RFC 2348 allows 8..=65464); larger requests get this value.
    pub max_blksize: u16,
    /// Ignore the blksize option entirely, for client stacks that break on it.
    pub no_blksize: bool,
    /// Largest windowsize granted (RFC 7440).
    pub max_windowsize: u16,
    /// Retransmit timeout unless the client negotiates one (RFC 2349). Without a negotiated
    /// timeout the transfer adapts below this to the measured round trip (RFC 1350 §2 asks for
    /// adaptive timeouts), so a lossy link does not cost a full second per lost packet.
    pub timeout: Duration,
    /// Floor of the adaptive timeout.
    pub min_timeout: Duration,
    /// Retransmissions at the full timeout (after backing off to it) before giving up.
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blksize: 1468,
            no_blksize: false,
            max_windowsize: 64,
            timeout: Duration::from_secs(1),
            min_timeout: Duration::from_millis(20),
            max_retries: 5,
        }
    }
}

/// What was agreed for one transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes of file per DATA block: 512 (RFC 1350) unless RFC 2348 blksize was granted.
    pub blksize: u16,
    /// Blocks sent before waiting for an ACK: 1 (lock-step) unless RFC 7440 windowsize was granted.
    pub windowsize: u16,
    /// Upper bound of the retransmission timer (the client's, if it negotiated one).
    pub timeout: Duration,
    /// The OACK to send, if any option was accepted.
    pub oack: Option<Vec<u8>>,
}

/// Applies RFC 2347-2349/7440 to the options of a read request for a file of `size` bytes.
/// Unknown, malformed or out-of-range options are ignored (not acknowledged), as RFC 2347 says.
pub fn negotiate(options: &[(String, String)], size: u64, limits: &Limits) -> Negotiated {
    let mut n = Negotiated {
        blksize: 512,
        windowsize: 1,
        timeout: limits.timeout,
        oack: None,
    };
    let mut acked: Vec<(&str, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in options {
        if !seen.insert(name.as_str()) {
            continue; // first occurrence wins
        }
        let num = value.trim().parse::<u64>().ok();
        match (name.as_str(), num) {
            ("blksize", Some(v)) if !limits.no_blksize && (8..=65464).contains(&v) => {
                n.blksize = (v as u16).min(limits.max_blksize);
                acked.push(("blksize", n.blksize.to_string()));
            }
            ("tsize", Some(_)) => acked.push(("tsize", size.to_string())),
            ("timeout", Some(v)) if (1..=255).contains(&v) => {
                n.timeout = Duration::from_secs(v);
                acked.push(("timeout", v.to_string()));
            }
            ("windowsize", Some(v)) if (1..=65535).contains(&v) => {
                n.windowsize = (v as u16).min(limits.max_windowsize.max(1));
                acked.push(("windowsize", n.windowsize.to_string()));
            }
            _ => {}
        }
    }
    if !acked.is_empty() {
        n.oack = Some(packet::oack(&acked));
    }
    n
}

/// Something for the shell to transmit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Send {
    /// A ready datagram (OACK or ERROR).
    Packet(Vec<u8>),
    /// DATA for absolute blocks `first..=last` (block 1 starts at offset 0).
    Blocks {
        /// First absolute block to send.
        first: u64,
        /// Last absolute block to send (inclusive).
        last: u64,
    },
}

/// How a transfer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client acknowledged the last block.
    Complete,
    /// The client sent ERROR (code 8 after OACK is the PXE size probe).
    ClientError {
        /// The client's error code (see [`ErrorCode`]).
        code: u16,
        /// The client's error message.
        message: String,
    },
    /// No progress after the allowed retransmissions.
    TimedOut,
    /// The client sent an opcode that has no place in a read transfer.
    IllegalOperation {
        /// The opcode it sent.
        opcode: u16,
    },
}

/// When the state machine next needs the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Call `handle(Input::Timeout, ..)` at this instant if nothing arrives before.
    WaitUntil(Instant),
    /// The transfer is over: close its socket (after sending what the step says).
    Done(Outcome),
}

/// The answer to [`Transfer::start`] and every [`Transfer::handle`]: send these, then wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What to transmit now, in order.
    pub send: Vec<Send>,
    /// Wait for a datagram or the deadline, or stop.
    pub next: Next,
}

/// What happened to a transfer.
pub enum Input<'a> {
    /// A datagram from the client's transfer ID (the shell's connected socket drops others).
    Datagram(&'a [u8]),
    /// The [`Next::WaitUntil`] deadline passed (an early wake-up is harmless).
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// OACK sent; waiting for ACK 0.
    Negotiating,
    Sending,
    Finished,
}

/// One read transfer (RRQ) of a file of known size, from OACK or first block to the last ACK.
pub struct Transfer {
    /// What was agreed ([`negotiate`]).
    pub negotiated: Negotiated,
    /// File size in bytes.
    pub size: u64,
    /// Absolute number of the final (short, possibly empty) block.
    last_block: u64,
    phase: Phase,
    /// Highest absolute block acknowledged.
    acked: u64,
    /// Highest absolute block sent.
    sent_to: u64,
    /// Consecutive timeouts without progress.
    retries: u32,
    /// Of those, the ones at the full timeout; the transfer ends when this passes `max_retries`.
    full_retries: u32,
    max_retries: u32,
    deadline: Instant,
    /// Smoothed round trip and its variance (RFC 6298 style), from windows sent only once.
    srtt: Option<Duration>,
    rttvar: Duration,
    min_timeout: Duration,
    /// When the outstanding window was (last) sent, and whether it was ever sent again.
    window_sent: Instant,
    window_clean: bool,
    /// Blocks (and OACKs) sent again, after a timeout or a partial-window ACK.
    pub retransmits: u64,
}

impl Transfer {
    /// Begins a transfer of `size` bytes: sends the OACK, or the first window if there is none.
    pub fn start(
        negotiated: Negotiated,
        size: u64,
        limits: &Limits,
        now: Instant,
    ) -> (Transfer, Step) {
        let mut t = Transfer {
            last_block: size / u64::from(negotiated.blksize) + 1,
            negotiated,
            size,
            phase: Phase::Negotiating,
            acked: 0,
            sent_to: 0,
            retries: 0,
            full_retries: 0,
            max_retries: limits.max_retries,
            deadline: now,
            srtt: None,
            rttvar: Duration::ZERO,
            min_timeout: limits.min_timeout,
            window_sent: now,
            window_clean: true,
            retransmits: 0,
        };
        let step = match t.negotiated.oack.clone() {
            Some(oack) => t.wait(vec![Send::Packet(oack)], now),
            None => {
                t.phase = Phase::Sending;
                let s = t.send_window(now);
                t.wait(s, now)
            }
        };
        (t, step)
    }

    /// File bytes the client has acknowledged.
    pub fn bytes_acked(&self) -> u64 {
        (self.acked * u64::from(self.negotiated.blksize)).min(self.size)
    }

    /// (file offset, length in bytes) of absolute block `block`, counted from 1 (0 overflows).
    pub fn block_span(&self, block: u64) -> (u64, usize) {
        let bs = u64::from(self.negotiated.blksize);
        let offset = (block - 1) * bs;
        (offset, self.size.saturating_sub(offset).min(bs) as usize)
    }

    /// Arms the retransmit timer: the negotiated timeout, doubled for each retransmission of the
    /// same data (at most 8×). Backing off matters beyond congestion: atftp's windowed client
    /// ignores old blocks until it has been silent for its own 5 s timeout, so a server that
    /// retransmits every second can keep it from ever re-acknowledging.
    fn wait(&mut self, send: Vec<Send>, now: Instant) -> Step {
        self.deadline = now + self.interval();
        Step {
            send,
            next: Next::WaitUntil(self.deadline),
        }
    }

    /// The retransmission timeout before backoff: adapted to the measured round trip, between
    /// `min_timeout` and the timeout. A timeout the client negotiated (RFC 2349) is how long it is
    /// willing to wait, so it caps the timer; retransmitting sooner only risks a duplicate, which
    /// clients acknowledge again (curl asks for 6 s: taken literally, each lost packet would
    /// cost 6 s).
    fn rto(&self) -> Duration {
        let full = self.negotiated.timeout;
        match self.srtt {
            Some(srtt) => (srtt + 4 * self.rttvar).clamp(self.min_timeout.min(full), full),
            None => full,
        }
    }

    /// The current wait: the timeout doubled per consecutive retransmission, at most 8× the
    /// full timeout.
    fn interval(&self) -> Duration {
        let cap = self.negotiated.timeout * 8;
        self.rto()
            .saturating_mul(1u32 << self.retries.min(16))
            .min(cap)
    }

    /// Learns from the round trip of a window that was sent once (Karn's rule).
    fn sample_rtt(&mut self, now: Instant) {
        if !self.window_clean {
            return;
        }
        let r = now.saturating_duration_since(self.window_sent);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + r) / 8);
            }
        }
    }

    fn finish(&mut self, send: Vec<Send>, outcome: Outcome) -> Step {
        self.phase = Phase::Finished;
        Step {
            send,
            next: Next::Done(outcome),
        }
    }

    /// Sends the window after the last acknowledged block.
    fn send_window(&mut self, now: Instant) -> Vec<Send> {
        self.window_sent = now;
        self.window_clean = true;
        let first = self.acked + 1;
        let last = (self.acked + u64::from(self.negotiated.windowsize)).min(self.last_block);
        self.sent_to = last;
        vec![Send::Blocks { first, last }]
    }

    /// The absolute block a 16-bit ACK refers to: the latest one sent with those low bits.
    fn absolute(&self, wire: u16) -> u64 {
        let back = (self.sent_to as u16).wrapping_sub(wire);
        self.sent_to.saturating_sub(u64::from(back))
    }

    /// Advances the transfer by one datagram or timeout at `now`. An ACK moves the window on (a
    /// duplicate or stale one changes nothing), an ERROR ends it, another opcode ends it with ERROR
    /// 4, junk is ignored; a timeout resends the OACK or the unacknowledged blocks, with backoff,
    /// until [`Limits::max_retries`] is exceeded, then ends sending nothing. Once finished,
    /// every call answers [`Next::Done`] with nothing to send.
    pub fn handle(&mut self, input: Input<'_>, now: Instant) -> Step {
        if self.phase == Phase::Finished {
            return Step {
                send: vec![],
                next: Next::Done(Outcome::Complete),
            };
        }
        match input {
            Input::Timeout => self.on_timeout(now),
            Input::Datagram(d) => match packet::parse_client(d) {
                // Truncated junk: not worth ending a good transfer over.
                Err(_) => self.keep_waiting(),
                Ok(ClientPacket::Error { code, message }) => {
                    self.finish(vec![], Outcome::ClientError { code, message })
                }
                Ok(ClientPacket::Other(opcode)) => self.finish(
                    vec![Send::Packet(packet::error(
                        ErrorCode::IllegalOperation,
                        "only ACK or ERROR expected",
                    ))],
                    Outcome::IllegalOperation { opcode },
                ),
                Ok(ClientPacket::Ack(n)) => self.on_ack(n, now),
            },
        }
    }

    fn keep_waiting(&self) -> Step {
        Step {
            send: vec![],
            next: Next::WaitUntil(self.deadline),
        }
    }

    fn on_ack(&mut self, wire: u16, now: Instant) -> Step {
        if self.phase == Phase::Negotiating {
            if wire != 0 {
                return self.keep_waiting();
            }
            self.phase = Phase::Sending;
            self.retries = 0;
            self.full_retries = 0;
            let s = self.send_window(now);
            return self.wait(s, now);
        }
        let block = self.absolute(wire);
        if block <= self.acked {
            // Duplicate or stale: resending here would double every packet from now on.
            return self.keep_waiting();
        }
        self.sample_rtt(now);
        self.acked = block;
        self.retries = 0;
        self.full_retries = 0;
        if self.acked >= self.last_block {
            return self.finish(vec![], Outcome::Complete);
        }
        // End of window, or a partial ACK after a gap (RFC 7440 §4): continue after `block`,
        // which sends the blocks after the gap again.
        self.retransmits += self.sent_to - block;
        let s = self.send_window(now);
        self.wait(s, now)
    }

    fn on_timeout(&mut self, now: Instant) -> Step {
        if now < self.deadline {
            return self.keep_waiting();
        }
        if self.interval() >= self.negotiated.timeout {
            self.full_retries += 1;
        }
        if self.full_retries > self.max_retries {
            // Nothing is sent on giving up (tftpd-hpa sends nothing either): the
            // client has been silent through the whole backoff, so its port may have been
            // closed and handed to another program, and curl before 8.17 takes any datagram on
            // its port as its server's (issue 19 item 5).
            return self.finish(vec![], Outcome::TimedOut);
        }
        self.retries += 1;
        self.window_clean = false;
        let send = match self.phase {
            Phase::Negotiating => {
                self.retransmits += 1;
                vec![Send::Packet(
                    self.negotiated.oack.clone().unwrap_or_default(),
                )]
            }
            _ => {
                self.retransmits += self.sent_to - self.acked;
                vec![Send::Blocks {
                    first: self.acked + 1,
                    last: self.sent_to,
                }]
            }
        };
        self.wait(send, now)
    }
}

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
