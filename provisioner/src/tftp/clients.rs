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

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

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
}

impl Clients {
    /// Admits the read request `request` (the datagram) from `peer` unless it repeats a running
    /// transfer or its address is at `max_per_client` transfers.
    pub fn admit(&mut self, peer: SocketAddr, request: &[u8], max_per_client: usize) -> Admit {
        let key = (peer, request.to_vec());
        if self.running.contains(&key) {
            return Admit::Duplicate;
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

    /// Forgets a transfer [`Clients::admit`] started.
    pub fn release(&mut self, peer: SocketAddr, request: &[u8]) {
        self.running.remove(&(peer, request.to_vec()));
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
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 7], port))
    }

    #[test]
    fn a_resent_request_for_a_running_transfer_is_a_duplicate() {
        let mut c = Clients::default();
        assert_eq!(c.admit(peer(1000), b"ipxe.efi", 4), Admit::Start);
        assert_eq!(c.admit(peer(1000), b"ipxe.efi", 4), Admit::Duplicate);
        // Another port (the ROM's real read after its size probe) or another file is new.
        assert_eq!(c.admit(peer(1001), b"ipxe.efi", 4), Admit::Start);
        assert_eq!(c.admit(peer(1000), b"other.efi", 4), Admit::Start);
        c.release(peer(1000), b"ipxe.efi");
        assert_eq!(c.admit(peer(1000), b"ipxe.efi", 4), Admit::Start);
    }

    #[test]
    fn the_per_address_limit_counts_running_transfers() {
        let mut c = Clients::default();
        assert_eq!(c.admit(peer(1), b"a", 2), Admit::Start);
        assert_eq!(c.admit(peer(2), b"a", 2), Admit::Start);
        assert_eq!(c.admit(peer(3), b"a", 2), Admit::OverLimit);
        c.release(peer(1), b"a");
        assert_eq!(c.admit(peer(3), b"a", 2), Admit::Start);
        c.release(peer(2), b"a");
        c.release(peer(3), b"a");
        assert_eq!(
            c.addresses(),
            0,
            "an address with nothing running is forgotten"
        );
        assert_eq!(c.admit(peer(4), b"a", 0), Admit::OverLimit);
        assert_eq!(c.addresses(), 0);
    }
}
