//! A PXE ROM resends its RRQ when the first OACK is late (a busy server in a boot storm). The
//! resend must not start a second transfer: the client would see two OACKs from two ports, follow
//! one, and the other would retransmit into the void until it timed out.

use std::collections::HashSet;
use std::time::Duration;

use crate::tftp::{tftp_server, wait_metric, Raw};

#[test]
fn a_resent_request_is_answered_by_the_running_transfer_only() {
    let (s, _dir) = tftp_server(&[("snponly.efi", 3 * 1468 + 10)], "");
    let c = Raw::new(s.tftp.unwrap());
    // The ROM's read and, as if the OACK had been lost, the same read again from the same port.
    c.rrq("snponly.efi", &[("blksize", "1468")]);
    c.rrq("snponly.efi", &[("blksize", "1468")]);
    let (oack, tid) = c.recv();
    assert_eq!(&oack[..2], &[0, 6], "an OACK first");
    wait_metric(&s, "provisioner_tftp_duplicate_requests_total 1");
    // Lockstep download, ACKing only the transfer we follow; note every port that sends to us.
    let mut senders = HashSet::from([tid]);
    let mut ack = 0u16;
    let mut got = 0usize;
    loop {
        c.sock
            .send_to(&[0, 4, (ack >> 8) as u8, ack as u8], tid)
            .unwrap();
        let (p, from) = c.recv();
        senders.insert(from);
        if from != tid || p[..2] != [0, 3] {
            continue;
        }
        let block = u16::from_be_bytes([p[2], p[3]]);
        if block == ack + 1 {
            ack = block;
            got += p.len() - 4;
            if p.len() - 4 < 1468 {
                c.sock
                    .send_to(&[0, 4, (ack >> 8) as u8, ack as u8], tid)
                    .unwrap();
                break;
            }
        }
    }
    assert_eq!(got, 3 * 1468 + 10);
    let m = wait_metric(
        &s,
        "provisioner_tftp_transfers_total{outcome=\"complete\"} 1",
    );
    assert!(m.contains("provisioner_tftp_transfers_active 0"), "{m}");
    // Nothing from a second transfer, not even its retransmissions (1 s apart).
    c.sock
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 2000];
    while let Ok((_, from)) = c.sock.recv_from(&mut buf) {
        senders.insert(from);
    }
    assert_eq!(senders.len(), 1, "packets came from {senders:?}");
    assert!(
        !m.contains("outcome=\"timeout\""),
        "a second transfer ran and timed out:\n{m}"
    );
}
