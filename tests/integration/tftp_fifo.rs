//! A FIFO in `tftp.root` (issue 18, item 6): before the fix, `open()` of a FIFO blocked a
//! blocking-pool thread until a writer came, and 544 requests from 34 addresses stopped
//! `/healthz`, the API and TFTP. Now every request for it is one "file not found".

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::stderr;
use crate::tftp::{atftp, content, curl, root, tftp_server};

/// Requests per source address: under `tftp.max_per_client` (16), so each one is answered.
const PER_ADDRESS: usize = 15;
/// Source addresses 127.0.0.10 ..= 127.0.0.49.
const ADDRESSES: usize = 40;

fn rrq(file: &str) -> Vec<u8> {
    let mut p = vec![0, 1];
    for s in [file, "octet"] {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p
}

/// The TFTP ERROR code in `p`, if it is an ERROR packet.
fn error_code(p: &[u8]) -> Option<u16> {
    (p.len() >= 4 && p[..2] == [0, 5]).then(|| u16::from_be_bytes([p[2], p[3]]))
}

/// The ERROR code each socket got (`None`: nothing, or not an ERROR), waiting until `deadline`
/// at most; sockets already answered (`Some` in `codes`) are skipped.
fn collect(socks: &[UdpSocket], codes: &mut [Option<u16>], deadline: Instant) {
    let mut buf = vec![0u8; 2048];
    for (s, code) in socks.iter().zip(codes.iter_mut()) {
        if code.is_some() {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        *code = s.recv(&mut buf).ok().and_then(|n| error_code(&buf[..n]));
    }
}

/// Sends `file`'s RRQ from every socket and, like a PXE ROM, resends it from the sockets still
/// unanswered (600 datagrams at once overflow a socket's default receive buffer on loopback):
/// at most 10 rounds of 500 ms. Returns the ERROR code each socket got.
fn request_all(socks: &[UdpSocket], server: std::net::SocketAddr, file: &str) -> Vec<Option<u16>> {
    let mut codes = vec![None; socks.len()];
    for _round in 0..10 {
        for (sock, code) in socks.iter().zip(&codes) {
            if code.is_none() {
                sock.send_to(&rrq(file), server).unwrap();
            }
        }
        collect(
            socks,
            &mut codes,
            Instant::now() + Duration::from_millis(500),
        );
        if codes.iter().all(Option::is_some) {
            break;
        }
    }
    codes
}

#[test]
fn a_fifo_in_the_root_is_not_found_and_stalls_nothing() {
    let (s, dir) = tftp_server(&[("ok.bin", 300_000)], "");
    let tftp = s.tftp.unwrap();
    let r = root(&dir);
    let st = Command::new("mkfifo")
        .arg(r.join("fifo.efi"))
        .status()
        .unwrap();
    assert!(st.success());
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s3cret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), r.join("leak.efi")).unwrap();

    // 600 requests for the FIFO from 40 addresses, all in flight at once.
    let socks: Vec<UdpSocket> = (0..ADDRESSES)
        .flat_map(|a| {
            let ip = Ipv4Addr::new(127, 0, 0, 10 + a as u8);
            (0..PER_ADDRESS).map(move |_| UdpSocket::bind((ip, 0)).unwrap())
        })
        .collect();
    let started = Instant::now();
    let flood = std::thread::spawn(move || {
        let codes = request_all(&socks, tftp, "fifo.efi");
        (codes, started.elapsed())
    });
    // Meanwhile the HTTP side and a real download keep working.
    let api = s.http();
    for path in ["/healthz", "/api/v1/machines"] {
        let t = Instant::now();
        assert_eq!(api.get(path).status, 200, "{path}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    let out = tempfile::tempdir().unwrap();
    let o = atftp(tftp, "ok.bin", 1468, 8, &out.path().join("ok.bin"))
        .output()
        .unwrap();
    assert!(o.status.success(), "atftp: {}", stderr(&o));
    assert_eq!(
        std::fs::read(out.path().join("ok.bin")).unwrap(),
        content(300_000, 7)
    );
    // Every FIFO request got ERROR 1 (file not found), quickly.
    let (codes, took) = flood.join().unwrap();
    let not_found = codes.iter().filter(|c| **c == Some(1)).count();
    assert_eq!(
        not_found,
        ADDRESSES * PER_ADDRESS,
        "replies other than ERROR 1: {:?}",
        codes
            .iter()
            .filter(|c| **c != Some(1))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A real client asking for the FIFO, or a link out of the root, hears "not found", the
    // same as for a name that does not exist.
    for name in ["fifo.efi", "leak.efi", "nothere.efi"] {
        let o = curl(tftp, name, 1468, &out.path().join("x"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(68), "curl {name}: {}", stderr(&o)); // TFTP: not found
    }
    // A name longer than any path: not found too (ERROR 1, not an access violation).
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(request_all(&[c], tftp, &"a".repeat(2000)), [Some(1)]);
    // And the server is still all there.
    let o = curl(tftp, "ok.bin", 1468, &out.path().join("again"))
        .output()
        .unwrap();
    assert!(o.status.success(), "curl: {}", stderr(&o));
    assert_eq!(api.get("/healthz").status, 200);
}
