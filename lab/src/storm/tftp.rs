//! The PXE ROM's TFTP download of its loader, as OVMF's PxeBcDxe does it (RFC 1350, 2347–2349):
//! first an RRQ with `tsize 0` to learn the size, answered by ERROR 8 after the OACK; then, from
//! a new port, the real read with `blksize 1468` and no `windowsize` (lockstep: one block, one
//! ACK). The client resends its last packet after 1 s of silence, 8 times at most; a failed
//! attempt starts again from the probe (a ROM would reboot and start over), 3 attempts at most.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;
/// What the ROM asks for: the largest block in a 1500-byte MTU.
pub const BLKSIZE: usize = 1468;
const RESEND_AFTER: Duration = Duration::from_secs(1);
const RESENDS: usize = 8;

fn rrq(file: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut p = RRQ.to_be_bytes().to_vec();
    for part in [file, "octet"] {
        p.extend_from_slice(part.as_bytes());
        p.push(0);
    }
    for (k, v) in options {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

fn oack_option(p: &[u8], name: &str) -> Option<u64> {
    let mut parts = p[2..].split(|b| *b == 0);
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if std::str::from_utf8(k).ok()?.eq_ignore_ascii_case(name) {
            return std::str::from_utf8(v).ok()?.parse().ok();
        }
    }
    None
}

fn error_text(p: &[u8]) -> String {
    let code = p.get(2..4).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
    let msg = String::from_utf8_lossy(p.get(4..).unwrap_or_default());
    format!("ERROR {code} {}", msg.trim_end_matches('\0'))
}

/// Sends `packet` (to `to`) and waits for a packet from the server's address; resends on
/// silence. The reply and where it came from.
async fn exchange(
    sock: &UdpSocket,
    packet: &[u8],
    to: SocketAddr,
    server: Ipv4Addr,
    buf: &mut [u8],
) -> Result<(usize, SocketAddr), String> {
    for _ in 0..=RESENDS {
        sock.send_to(packet, to)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let until = tokio::time::Instant::now() + RESEND_AFTER;
        loop {
            match tokio::time::timeout_at(until, sock.recv_from(buf)).await {
                Ok(Ok((n, from))) if from.ip() == server && n >= 4 => return Ok((n, from)),
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(format!("recv: {e}")),
                Err(_) => break,
            }
        }
    }
    Err("timeout".into())
}

/// Downloads `file` from `server` as machine `local`: the size probe, then the read. The bytes
/// received (checked against the probe's `tsize`).
pub async fn fetch(local: Ipv4Addr, server: Ipv4Addr, file: &str) -> Result<u64, String> {
    let mut last = String::new();
    for _ in 0..3 {
        match attempt(local, server, file).await {
            Ok(n) => return Ok(n),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn bind(local: Ipv4Addr) -> Result<UdpSocket, String> {
    UdpSocket::bind(SocketAddrV4::new(local, 0))
        .await
        .map_err(|e| format!("bind {local}: {e}"))
}

async fn attempt(local: Ipv4Addr, server: Ipv4Addr, file: &str) -> Result<u64, String> {
    let to = SocketAddr::V4(SocketAddrV4::new(server, 69));
    let mut buf = vec![0u8; BLKSIZE + 4];
    // 1. The size probe.
    let sock = bind(local).await?;
    let (n, tid) = exchange(&sock, &rrq(file, &[("tsize", "0")]), to, server, &mut buf).await?;
    let op = u16::from_be_bytes([buf[0], buf[1]]);
    let size = match op {
        OACK => oack_option(&buf[..n], "tsize"),
        ERROR => return Err(error_text(&buf[..n])),
        _ => None,
    };
    let mut abort = ERROR.to_be_bytes().to_vec();
    abort.extend_from_slice(&8u16.to_be_bytes());
    abort.extend_from_slice(b"tsize probe\0");
    let _ = sock.send_to(&abort, tid).await;
    drop(sock);
    // 2. The read, from a new port.
    let sock = bind(local).await?;
    let blksize = BLKSIZE.to_string();
    let (mut n, tid) = exchange(
        &sock,
        &rrq(file, &[("blksize", &blksize)]),
        to,
        server,
        &mut buf,
    )
    .await?;
    let mut block_size = 512usize;
    let mut expect: u16 = 1;
    let mut got: u64 = 0;
    loop {
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        let ack = match op {
            OACK => {
                block_size = oack_option(&buf[..n], "blksize").map_or(512, |b| b as usize);
                0u16
            }
            DATA => {
                let block = u16::from_be_bytes([buf[2], buf[3]]);
                if block == expect {
                    let len = n - 4;
                    got += len as u64;
                    expect = expect.wrapping_add(1);
                    if len < block_size {
                        let mut a = ACK.to_be_bytes().to_vec();
                        a.extend_from_slice(&block.to_be_bytes());
                        let _ = sock.send_to(&a, tid).await;
                        break;
                    }
                }
                // A duplicate block is ACKed again (its ACK was lost).
                block
            }
            ERROR => return Err(error_text(&buf[..n])),
            other => return Err(format!("unexpected opcode {other}")),
        };
        let mut a = ACK.to_be_bytes().to_vec();
        a.extend_from_slice(&ack.to_be_bytes());
        (n, _) = exchange(&sock, &a, tid, server, &mut buf).await?;
    }
    if let Some(size) = size {
        if size != got {
            return Err(format!("got {got} bytes, tsize said {size}"));
        }
    }
    Ok(got)
}
