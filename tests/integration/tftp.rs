//! TFTP against real clients (curl, atftp, tftp-hpa, busybox) and a raw client for the protocol
//! corners: every downloaded byte is compared with the source file.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{stderr, Server};

/// Deterministic pseudo-random content, so a wrong offset cannot go unnoticed.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `<dir>/p.toml` serving `<dir>/root` over TFTP, with extra `[tftp]` keys; returns its path.
pub fn tftp_config(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("p.toml");
    let root = dir.join("root").display().to_string();
    std::fs::write(&cfg, format!("[tftp]\nroot = {root:?}\n{extra}\n")).unwrap();
    cfg
}

/// A server whose TFTP root holds the given files; extra TOML goes into `[tftp]`.
pub fn tftp_server(files: &[(&str, usize)], tftp_toml: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for (i, (name, len)) in files.iter().enumerate() {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content(*len, i as u64 + 7)).unwrap();
    }
    let cfg = tftp_config(dir.path(), tftp_toml);
    let s = Server::start_in(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    (s, dir)
}

pub fn root(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("root")
}

fn run(cmd: &mut Command) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/install-test-deps)"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

fn same(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        x.len() == y.len() && x == y,
        "{} ({} bytes) differs from {} ({} bytes)",
        a.display(),
        x.len(),
        b.display(),
        y.len()
    );
}

/// `curl`, `atftp`, `tftp` (tftp-hpa) and `busybox tftp` fetching `file` from `addr` into `out`.
pub fn curl(addr: SocketAddr, file: &str, blksize: u32, out: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "60",
        "--tftp-blksize",
        &blksize.to_string(),
        "-o",
    ])
    .arg(out)
    .arg(format!("tftp://{addr}/{file}"));
    c
}

pub fn atftp(addr: SocketAddr, file: &str, blksize: u32, window: u32, out: &Path) -> Command {
    let mut c = Command::new("atftp");
    c.args(["--option", &format!("blksize {blksize}")]);
    if window > 1 {
        c.args(["--option", &format!("windowsize {window}")]);
    }
    c.args(["-g", "-r", file, "-l"])
        .arg(out)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    c
}

pub fn tftp_hpa(addr: SocketAddr, file: &str, out: &Path) -> Command {
    let mut c = Command::new("tftp");
    c.args([
        "-m",
        "binary",
        &addr.ip().to_string(),
        &addr.port().to_string(),
        "-c",
        "get",
        file,
    ])
    .arg(out);
    c
}

fn busybox(addr: SocketAddr, file: &str, out: &Path) -> Command {
    let mut c = Command::new("busybox");
    c.args(["tftp", "-b", "1468", "-g", "-r", file, "-l"])
        .arg(out)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    c
}

#[test]
fn real_clients_download_identical_bytes_across_block_rollover() {
    let (s, dir) = tftp_server(
        &[
            ("boot/small.efi", 1024 * 1024 + 3),
            ("big.img", 40 * 1000 * 1000),
            ("empty", 0),
            ("exact", 1024),
        ],
        "",
    );
    let addr = s.tftp.unwrap();
    let r = root(&dir);
    let out = tempfile::tempdir().unwrap();
    let o = |n: &str| out.path().join(n);
    run(&mut curl(addr, "boot/small.efi", 1468, &o("curl-small")));
    same(&r.join("boot/small.efi"), &o("curl-small"));
    run(&mut curl(addr, "big.img", 1468, &o("curl-big")));
    same(&r.join("big.img"), &o("curl-big"));
    run(&mut atftp(addr, "big.img", 1468, 16, &o("atftp-big")));
    same(&r.join("big.img"), &o("atftp-big"));
    run(&mut atftp(
        addr,
        "boot/small.efi",
        512,
        4,
        &o("atftp-small"),
    ));
    same(&r.join("boot/small.efi"), &o("atftp-small"));
    // tftp-hpa asks for no options: 512-byte blocks, 78,126 of them — past the 65535 wrap.
    run(&mut tftp_hpa(addr, "big.img", &o("hpa-big")));
    same(&r.join("big.img"), &o("hpa-big"));
    run(&mut busybox(addr, "boot/small.efi", &o("bb-small")));
    same(&r.join("boot/small.efi"), &o("bb-small"));
    // curl refuses an OACK saying tsize 0, so the empty file is fetched by the others.
    run(&mut atftp(addr, "empty", 512, 1, &o("empty-atftp")));
    same(&r.join("empty"), &o("empty-atftp"));
    run(&mut tftp_hpa(addr, "empty", &o("empty-hpa")));
    same(&r.join("empty"), &o("empty-hpa"));
    run(&mut curl(addr, "exact", 512, &o("exact")));
    same(&r.join("exact"), &o("exact"));
    let m = s.http().get("/metrics").text;
    assert!(
        m.contains("provisioner_tftp_transfers_total{outcome=\"complete\"} 9"),
        "{m}"
    );
}

/// A minimal raw client for the protocol corners.
pub struct Raw {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl Raw {
    pub fn new(server: SocketAddr) -> Raw {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw { sock, server }
    }

    pub fn send_request(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).unwrap();
    }

    pub fn rrq(&self, file: &str, options: &[(&str, &str)]) {
        let mut p = vec![0, 1];
        for s in [file, "octet"]
            .into_iter()
            .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
        {
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        self.send_request(&p);
    }

    /// Next datagram and where it came from.
    pub fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 70_000];
        let (n, from) = self.sock.recv_from(&mut buf).expect("reply from server");
        buf.truncate(n);
        (buf, from)
    }
}

fn opcode(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[0], p[1]])
}

fn oack_options(p: &[u8]) -> Vec<String> {
    p[2..]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Polls `/metrics` until `line` appears (bounded), instead of sleeping.
pub fn wait_metric(s: &Server, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = s.http().get("/metrics").text;
        if m.contains(line) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "metric {line:?} never appeared:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pxe_tsize_probe_then_error_8_leaves_no_transfer_running() {
    let (s, _dir) = tftp_server(&[("snponly.efi", 200_000)], "");
    let c = Raw::new(s.tftp.unwrap());
    c.rrq("snponly.efi", &[("tsize", "0"), ("blksize", "1468")]);
    let (oack, tid) = c.recv();
    assert_eq!(opcode(&oack), 6);
    assert_eq!(oack_options(&oack), ["tsize", "200000", "blksize", "1468"]);
    assert_ne!(
        tid.port(),
        s.tftp.unwrap().port(),
        "a new port per transfer"
    );
    // The ROM now knows the size and aborts, as every PXE ROM does.
    let mut err = vec![0, 5, 0, 8];
    err.extend_from_slice(b"tsize probe\0");
    c.sock.send_to(&err, tid).unwrap();
    let m = wait_metric(
        &s,
        "provisioner_tftp_transfers_total{outcome=\"option_negotiation_aborted\"} 1",
    );
    assert!(m.contains("provisioner_tftp_transfers_active 0"), "{m}");
    // Nothing more arrives: no OACK resend after the 1 s retransmit timeout.
    c.sock
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 100];
    assert!(
        c.sock.recv_from(&mut buf).is_err(),
        "server kept sending after ERROR 8"
    );
    // The real download that follows works.
    let out = tempfile::tempdir().unwrap();
    run(&mut curl(
        s.tftp.unwrap(),
        "snponly.efi",
        1468,
        &out.path().join("f"),
    ));
}

#[test]
fn bad_requests_get_the_right_error_and_the_server_carries_on() {
    let (s, dir) = tftp_server(&[("ok.bin", 5000)], "");
    let addr = s.tftp.unwrap();
    let c = Raw::new(addr);
    let expect_error = |code: u16| {
        let (p, _) = c.recv();
        assert_eq!(
            (opcode(&p), u16::from_be_bytes([p[2], p[3]])),
            (5, code),
            "{:?}",
            String::from_utf8_lossy(&p)
        );
    };
    for name in [
        "../etc/passwd",
        "..\\..\\windows\\win.ini",
        "/../etc/passwd",
        "a/../../b",
        "x\u{1}y",
    ] {
        c.rrq(name, &[]);
        expect_error(2);
    }
    for name in [
        "..%2f..%2fetc%2fpasswd",
        "%2e%2e/%2e%2e/etc/passwd",
        "nothere.efi",
    ] {
        c.rrq(name, &[]);
        expect_error(1);
    }
    c.send_request(b"\x00\x01ok.bin\x00mail\x00");
    expect_error(4);
    c.send_request(b"\x00\x02ok.bin\x00octet\x00");
    expect_error(2);
    for junk in [
        &b"\x00\x09abc"[..],
        b"\x00",
        b"\x00\x01ok.bin",
        b"\x00\x01ok.bin\x00octet\x00blksize\x00",
        b"\x00\x01\xff\xfe\x00\xff\x00",
    ] {
        c.send_request(junk);
        expect_error(4);
    }
    // NUL inside the name ends the name: "ok.bin\0../x" asks for ok.bin with mode "../x".
    c.send_request(b"\x00\x01ok.bin\x00../x\x00");
    expect_error(4);
    // Huge and unknown option values: ignored or capped, and the transfer works.
    c.rrq(
        "ok.bin",
        &[
            ("blksize", "99999999999999999999"),
            ("windowsize", "70000"),
            ("timeout", "9999"),
            ("x-vendor", "1"),
            ("tsize", "0"),
        ],
    );
    let (oack, _) = c.recv();
    assert_eq!(oack_options(&oack), ["tsize", "5000"]);
    let out = tempfile::tempdir().unwrap();
    run(&mut atftp(addr, "ok.bin", 1468, 16, &out.path().join("ok")));
    same(&root(&dir).join("ok.bin"), &out.path().join("ok"));
    // The real atftp client sees the refusal as an error, not a timeout.
    let o = atftp(addr, "../../etc/passwd", 512, 1, &out.path().join("p"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("'..' in file name"), "{}", stderr(&o));
    let m = s.http().get("/metrics").text;
    assert!(m.contains("provisioner_tftp_malformed_total 5"), "{m}");
}

#[test]
fn blksize_is_capped_and_no_blksize_ignores_it() {
    let (s, _d) = tftp_server(&[("f", 10)], "max_blksize = 1024\nmax_windowsize = 8");
    let c = Raw::new(s.tftp.unwrap());
    c.rrq("f", &[("blksize", "1468"), ("windowsize", "16")]);
    assert_eq!(
        oack_options(&c.recv().0),
        ["blksize", "1024", "windowsize", "8"]
    );
    let (s2, _d2) = tftp_server(&[("f", 10)], "no_blksize = true");
    let c = Raw::new(s2.tftp.unwrap());
    c.rrq("f", &[("blksize", "1468"), ("tsize", "0")]);
    assert_eq!(oack_options(&c.recv().0), ["tsize", "10"]);
    // No options at all: DATA 1 straight away, from a new port.
    c.rrq("f", &[]);
    let (p, _) = c.recv();
    assert_eq!((opcode(&p), p.len()), (3, 14));
}

#[test]
fn two_hundred_concurrent_clients_all_get_correct_bytes() {
    // All clients share 127.0.0.1 here, so the per-address limit is lifted.
    let (s, dir) = tftp_server(&[("ipxe.efi", 1024 * 1024)], "max_per_client = 1000");
    let addr = s.tftp.unwrap();
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let children: Vec<_> = (0..200)
        .map(|i| {
            let f = out.path().join(format!("c{i}"));
            let mut c = if i % 2 == 0 {
                curl(addr, "ipxe.efi", 1468, &f)
            } else {
                atftp(addr, "ipxe.efi", 1468, 8, &f)
            };
            (
                c.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
                f,
            )
        })
        .collect();
    let want = std::fs::read(root(&dir).join("ipxe.efi")).unwrap();
    for (child, f) in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
        assert!(
            std::fs::read(&f).unwrap() == want,
            "{} differs",
            f.display()
        );
    }
    eprintln!(
        "200 concurrent 1 MiB downloads took {:?}",
        started.elapsed()
    );
    let m = wait_metric(&s, "provisioner_tftp_transfers_active 0");
    let outcomes: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("provisioner_tftp_transfers_total{"))
        .collect();
    assert_eq!(
        outcomes,
        ["provisioner_tftp_transfers_total{outcome=\"complete\"} 200"],
        "{m}"
    );
}

#[test]
fn transfers_are_recorded_on_the_machine_holding_the_lease() {
    use inventory::{Lease, Machine, Store, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("root/snponly.efi"), content(3000, 1)).unwrap();
    let mac: inventory::Mac = "52:54:00:00:00:42".parse().unwrap();
    {
        // Seed the store as the DHCP server would have: a machine and its lease on 127.0.0.1.
        std::fs::create_dir_all(&data).unwrap();
        let store = inventory::RedbStore::open(&data.join("inventory.redb")).unwrap();
        store
            .create_machines(
                vec![Machine::registered(mac, Default::default(), Timestamp(1))],
                "test",
                Timestamp(1),
            )
            .unwrap();
        store
            .put_leases(&[Lease {
                ip: "127.0.0.1".parse().unwrap(),
                mac,
                expires: Timestamp(u64::MAX),
                hostname: None,
                observed: false,
                client_id: None,
            }])
            .unwrap();
    }
    let cfg = tftp_config(dir.path(), "");
    let s = Server::start_in(&data, &["--config", cfg.to_str().unwrap()]);
    let out = tempfile::tempdir().unwrap();
    run(&mut curl(
        s.tftp.unwrap(),
        "snponly.efi",
        1468,
        &out.path().join("x"),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let evs = s.http().get(&format!("/api/v1/events?machine={mac}")).body;
        if let Some(e) = evs
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "transfer")
        {
            assert_eq!(
                (e["protocol"].as_str(), e["file"].as_str()),
                (Some("tftp"), Some("snponly.efi"))
            );
            assert_eq!(
                (e["bytes"].as_u64(), e["outcome"].as_str()),
                (Some(3000), Some("complete"))
            );
            break;
        }
        assert!(Instant::now() < deadline, "no transfer event: {evs}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn requests_beyond_the_limit_are_retried_by_clients_and_complete() {
    // Two slots, eight clients: the extra RRQs get no answer and the clients resend them.
    let (s, dir) = tftp_server(&[("ipxe.efi", 300_000)], "max_transfers = 2");
    let addr = s.tftp.unwrap();
    let out = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let f = out.path().join(format!("c{i}"));
            (
                tftp_hpa(addr, "ipxe.efi", &f)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
                f,
            )
        })
        .collect();
    for (child, f) in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        same(&root(&dir).join("ipxe.efi"), &f);
    }
    let m = wait_metric(
        &s,
        "provisioner_tftp_transfers_total{outcome=\"complete\"} 8",
    );
    assert!(
        !m.contains("provisioner_tftp_busy_total 0"),
        "the limit was never reached: {m}"
    );
}

#[test]
fn default_serve_hands_out_debian_ipxe_loaders() {
    let loaders = Path::new("/usr/lib/ipxe");
    assert!(
        loaders.join("snponly.efi").is_file(),
        "Debian's ipxe package is missing: run scripts/install-test-deps"
    );
    let s = Server::start();
    let addr = s.tftp.unwrap();
    let out = tempfile::tempdir().unwrap();
    run(&mut curl(
        addr,
        "snponly.efi",
        1468,
        &out.path().join("snponly.efi"),
    ));
    same(
        &loaders.join("snponly.efi"),
        &out.path().join("snponly.efi"),
    );
    // ipxe.efi is a symlink to /boot/ipxe.efi in Debian's package.
    run(&mut atftp(
        addr,
        "ipxe.efi",
        1468,
        16,
        &out.path().join("ipxe.efi"),
    ));
    same(&loaders.join("ipxe.efi"), &out.path().join("ipxe.efi"));
    run(&mut tftp_hpa(
        addr,
        "/undionly.kpxe",
        &out.path().join("undionly.kpxe"),
    ));
    same(
        &loaders.join("undionly.kpxe"),
        &out.path().join("undionly.kpxe"),
    );
}

#[test]
fn replies_come_from_the_address_the_request_was_sent_to() {
    // Bound to the wildcard address, the server must answer 127.0.0.2 from 127.0.0.2 (IP_PKTINFO),
    // or clients that check the source address drop the reply.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("root/f"), content(3000, 3)).unwrap();
    let cfg = tftp_config(dir.path(), "");
    let mut serve = Command::new(crate::harness::binary());
    serve
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tftp-listen",
            "0.0.0.0:0",
            "--config",
        ])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let s = Server::spawn(serve, &dir.path().join("data"));
    let port = s.tftp.unwrap().port();
    for target in ["127.0.0.2", "127.0.0.1"] {
        let c = Raw::new(SocketAddr::new(target.parse().unwrap(), port));
        c.rrq("f", &[]);
        let (p, from) = c.recv();
        assert_eq!(opcode(&p), 3);
        assert_eq!(
            from.ip().to_string(),
            target,
            "reply to a request sent to {target}"
        );
        assert_ne!(from.port(), port);
    }
}
