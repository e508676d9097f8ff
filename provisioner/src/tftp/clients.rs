//! Which clients have transfers running: the per-client limit and duplicate read requests.
//!
//! A PXE ROM resends its RRQ after about a second of silence (OVMF's PxeBcDxe, iPXE's
//! `tftp.c`), from the same source port. Under a boot storm the first OACK can be late, so the
//! resend arrives while a transfer for it already runs; a server that starts a second transfer
//! for it (RFC 1350 does not forbid it) sends the client two OACKs from two ports, the client
//! follows one, and the other retransmits into the void until it times out: extra work exactly
//! when the server is busiest. Like dnsmasq (`tftp.c`, "check for repeat request"), a request
//! byte-for-byte equal to the one that started a running transfer from the same address and
//! port is dropped: the running transfer's own retransmission answers it. A different request
//! from that port (another file, other options) is a new transfer.
//!
//! A resend can also trail its transfer: sent before the first reply reached the client, read
//! by us after the transfer ended (a small file, a backlog on the listener). Started, it would
//! send an OACK or DATA to a port the client has closed, and which the kernel may already have
//! given to another program: curl before 8.17 takes any datagram on its port as its server's,
//! so a stray OACK, DATA or ERROR breaks a stranger's download. So the request of a transfer
//! that ended without the client asking for the end (complete, timed out, client gone) is
//! still a duplicate for [`RESEND_HOLD`] afterwards.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long a finished transfer's request still counts as a duplicate: longer than a request
/// waits in our receive queue, shorter than any client's patience (a client that really wants
/// the file again from the same port resends, and is served after this).
pub const RESEND_HOLD: Duration = Duration::from_secs(5);

/// Finished requests remembered at most (each is an address and a datagram of < 4 KiB).
const MAX_RECENT: usize = 4096;

/// What [`Clients::admit`] decided for one read request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Start a transfer; [`Clients::release`] it when it ends.
    Start,
    /// The same request (address, port and bytes) is already being served: drop it.
    Duplicate,
    /// The client's address already has `max_per_client` transfers running: drop it.
    OverLimit,
}

/// Running transfers by client address, and by (address, port, request bytes).
#[derive(Debug, Default)]
pub struct Clients {
    per_ip: HashMap<IpAddr, usize>,
    running: HashSet<(SocketAddr, Vec<u8>)>,
    /// Requests of transfers that ended by themselves, until when a resend of them is dropped.
    recent: HashMap<(SocketAddr, Vec<u8>), Instant>,
}

impl Clients {
    /// Admits the read request `request` (the datagram) from `peer` at `now` unless it repeats
    /// a running transfer or one that ended less than [`RESEND_HOLD`] ago, or its address is at
    /// `max_per_client` transfers.
    pub fn admit(
        &mut self,
        peer: SocketAddr,
        request: &[u8],
        max_per_client: usize,
        now: Instant,
    ) -> Admit {
        let key = (peer, request.to_vec());
        if self.running.contains(&key) {
            return Admit::Duplicate;
        }
        if let Some(until) = self.recent.get(&key) {
            if now < *until {
                return Admit::Duplicate;
            }
            self.recent.remove(&key);
        }
        let count = self.per_ip.entry(peer.ip()).or_default();
        if *count >= max_per_client {
            if *count == 0 {
                self.per_ip.remove(&peer.ip());
            }
            return Admit::OverLimit;
        }
        *count += 1;
        self.running.insert(key);
        Admit::Start
    }

    /// Forgets a transfer [`Clients::admit`] started, at `now`. `hold`: it ended by itself
    /// (complete, timed out, client gone), so the same request from the same port is a resend
    /// for [`RESEND_HOLD`]; not after the client ended it (an ERROR, such as the PXE `tsize`
    /// probe's ERROR 8, may be followed by the same request on purpose) or a refusal.
    pub fn release(&mut self, peer: SocketAddr, request: &[u8], now: Instant, hold: bool) {
        let key = (peer, request.to_vec());
        self.running.remove(&key);
        if hold {
            if self.recent.len() >= MAX_RECENT {
                self.recent.retain(|_, until| now < *until);
            }
            if self.recent.len() < MAX_RECENT {
                self.recent.insert(key, now + RESEND_HOLD);
            }
        }
        if let Some(c) = self.per_ip.get_mut(&peer.ip()) {
            *c -= 1;
            if *c == 0 {
                self.per_ip.remove(&peer.ip());
            }
        }
    }

    /// Addresses with transfers running (for tests).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.per_ip.len()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one Instant::now() as the origin of simulated time
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 7], port))
    }

    #[test]
    fn a_resent_request_for_a_running_transfer_is_a_duplicate() {
        let t = Instant::now();
        let mut c = Clients::default();
        assert_eq!(c.admit(peer(1000), b"ipxe.efi", 4, t), Admit::Start);
        assert_eq!(c.admit(peer(1000), b"ipxe.efi", 4, t), Admit::Duplicate);
        // Another port (the ROM's real read after its size probe) or another file is new.
        assert_eq!(c.admit(peer(1001), b"ipxe.efi", 4, t), Admit::Start);
        assert_eq!(c.admit(peer(1000), b"other.efi", 4, t), Admit::Start);
        // Ended by the client (an ERROR): the same request right after is a new transfer.
        c.release(peer(1000), b"ipxe.efi", t, false);
        assert_eq!(c.admit(peer(1000), b"ipxe.efi", 4, t), Admit::Start);
    }

    /// The sequence behind issue 19 item 5's suspect: a client resends its RRQ because the
    /// first OACK is late; the resend waits in our queue while the transfer runs to its end;
    /// read afterwards, it must not start a second transfer (whose OACK would go to a port the
    /// client has closed and another program may hold).
    #[test]
    fn a_resend_read_after_its_transfer_ended_is_still_a_duplicate() {
        let t = Instant::now();
        let mut c = Clients::default();
        assert_eq!(c.admit(peer(1000), b"f.bin", 4, t), Admit::Start);
        c.release(peer(1000), b"f.bin", t, true);
        let later = t + Duration::from_millis(300);
        assert_eq!(c.admit(peer(1000), b"f.bin", 4, later), Admit::Duplicate);
        assert_eq!(c.addresses(), 0, "held requests are not running transfers");
        // Other ports and requests are not held back.
        assert_eq!(c.admit(peer(1001), b"f.bin", 4, later), Admit::Start);
        assert_eq!(c.admit(peer(1000), b"g.bin", 4, later), Admit::Start);
        // After the hold the same request from that port is served again.
        assert_eq!(
            c.admit(peer(1000), b"f.bin", 4, t + RESEND_HOLD),
            Admit::Start
        );
    }

    #[test]
    fn the_hold_list_is_bounded() {
        let t = Instant::now();
        let mut c = Clients::default();
        for i in 0..(MAX_RECENT + 10) {
            let p = SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 1000));
            assert_eq!(c.admit(p, b"f", 1, t), Admit::Start);
            c.release(p, b"f", t, true);
        }
        assert_eq!(c.recent.len(), MAX_RECENT);
        // Expired entries make room.
        let p = peer(9);
        assert_eq!(c.admit(p, b"f", 1, t + RESEND_HOLD), Admit::Start);
        c.release(p, b"f", t + RESEND_HOLD, true);
        assert_eq!(c.recent.len(), 1);
    }

    #[test]
    fn the_per_address_limit_counts_running_transfers() {
        let t = Instant::now();
        let mut c = Clients::default();
        assert_eq!(c.admit(peer(1), b"a", 2, t), Admit::Start);
        assert_eq!(c.admit(peer(2), b"a", 2, t), Admit::Start);
        assert_eq!(c.admit(peer(3), b"a", 2, t), Admit::OverLimit);
        c.release(peer(1), b"a", t, false);
        assert_eq!(c.admit(peer(3), b"a", 2, t), Admit::Start);
        c.release(peer(2), b"a", t, false);
        c.release(peer(3), b"a", t, false);
        assert_eq!(
            c.addresses(),
            0,
            "an address with nothing running is forgotten"
        );
        assert_eq!(c.admit(peer(4), b"a", 0, t), Admit::OverLimit);
        assert_eq!(c.addresses(), 0);
    }
}
