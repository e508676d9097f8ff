//! The boot TLS listener (`[boot_tls]`, UEFI HTTPS boot) against real clients: curl pinned to
//! a static-RSA suite as OVMF's TLS can be, an ECDHE-only curl, `openssl s_client`, and a
//! client that connects and never says hello. The certificate is the server's self-issued one
//! (`<data_dir>/tls`), or one an operator made with the `openssl` CLI (an RSA-2048 CA and a
//! server certificate for 127.0.0.1).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Api, Server};
use crate::loopback_dhcp::{self, DISCOVER};
use crate::uki;

const MAC: &str = "52:54:00:b0:07:05";

/// An RSA-2048 CA and a server certificate it signed for IP 127.0.0.1, made with the openssl
/// CLI (key usage with keyEncipherment: static-RSA key exchange needs it).
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki(dir: &Path, ips: &[&str]) -> Pki {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl CLI");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        "30",
        "-subj",
        "/CN=Test boot CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-subj",
        "/CN=boot",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

struct Setup {
    _server: Server,
    api: Api,
    dhcp_port: u16,
    /// The boot TLS listener's port.
    tls_port: u16,
    /// The CA that signed its certificate.
    ca: PathBuf,
    uki: uki::TestUki,
    _dir: tempfile::TempDir,
}

/// Where the boot listener's certificate comes from.
#[derive(PartialEq)]
enum Cert {
    /// The server's own TLS material: the self-issued CA in `<data_dir>/tls`.
    SelfIssued,
    /// `boot_tls.cert`/`boot_tls.key` made with the openssl CLI.
    Operator,
}

/// A full-mode DHCP server on loopback with the boot TLS listener on 127.0.0.1, a UKI, a
/// profile and a registered machine.
fn setup(cert: Cert, boot_tls_keys: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pki = pki(dir.path(), &["127.0.0.1"]);
    let dhcp_port = loopback_dhcp::free_port();
    let cfg = loopback_dhcp::config(dir.path(), dhcp_port, 200, "1h", "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[boot_tls]\nlisten = \"127.0.0.1:0\"\n{boot_tls_keys}\n"
    ));
    if cert == Cert::Operator {
        text.push_str(&format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            pki.cert.display(),
            pki.key.display()
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let server = Server::start_in(&data, &["--config", cfg.to_str().unwrap()]);
    let ca = match cert {
        Cert::SelfIssued => data.join("tls/ca.pem"),
        Cert::Operator => pki.ca.clone(),
    };
    let tls_port = listening_https(&server.log());
    let uki = uki::build(dir.path(), "hadron.efi", "Hadron 0.1 (test)");
    let digest = uki::import(&server, &uki.path);
    let api = server.http();
    let r = api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "hadron", "uki": digest, "install_disk": "/dev/vda"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": MAC, "profile": "hadron"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    Setup {
        _server: server,
        api,
        dhcp_port,
        tls_port,
        ca,
        uki,
        _dir: dir,
    }
}

/// The port of "listening for UEFI HTTPS boot on https://127.0.0.1:PORT" (printed before the
/// HTTP line the harness waits for).
fn listening_https(log: &str) -> u16 {
    let line = log
        .lines()
        .find(|l| l.contains("listening for UEFI HTTPS boot on https://"))
        .unwrap_or_else(|| panic!("no boot TLS listening line in:\n{log}"));
    let rest = &line[line.find("https://127.0.0.1:").unwrap() + "https://127.0.0.1:".len()..];
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// `curl -v` over TLS 1.2 with `ciphers`, from `from`: (exit code, body, stderr).
fn curl(s: &Setup, from: Ipv4Addr, ciphers: &str, path: &str) -> (i32, Vec<u8>, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--max-time",
            "20",
            "--tlsv1.2",
            "--tls-max",
            "1.2",
        ])
        .args([
            "--ciphers",
            ciphers,
            "--interface",
            &from.to_string(),
            "--cacert",
        ])
        .arg(&s.ca)
        .arg(format!("https://127.0.0.1:{}{path}", s.tls_port))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The boot file an HTTP-boot client (option 60 `HTTPClient…`, option 93 = 16) is offered.
fn http_boot_file(dhcp_port: u16, mac: &str) -> String {
    let (relay, sock) = loopback_dhcp::relay_socket();
    let xid = 0x7e11_0000 | (std::process::id() & 0xffff);
    let options = [
        (60u8, b"HTTPClient:Arch:00016:UNDI:003001".to_vec()),
        (93u8, vec![0, 16]),
    ];
    let p = loopback_dhcp::packet(DISCOVER, xid, loopback_dhcp::octets(mac), relay, &options);
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, dhcp_port);
    for _ in 0..5 {
        sock.send_to(&p, server).unwrap();
        let deadline = Instant::now() + Duration::from_millis(800);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            if loopback_dhcp::parse(&buf[..n]).is_some_and(|(_, x, _, _)| x == xid) {
                let file = &buf[108..236];
                let end = file.iter().position(|b| *b == 0).unwrap_or(file.len());
                return String::from_utf8_lossy(&file[..end]).into_owned();
            }
        }
    }
    panic!("no OFFER to the HTTP-boot DISCOVER");
}

#[test]
fn https_boot_serves_the_uki_over_a_static_rsa_suite() {
    // The server's self-issued certificate (RSA-2048, keyEncipherment: static RSA works).
    let s = setup(Cert::SelfIssued, "");
    // DHCP hands HTTP-boot firmware the https:// URL of the boot listener.
    assert_eq!(
        http_boot_file(s.dhcp_port, MAC),
        format!("https://127.0.0.1:{}/boot/efi?mac={MAC}", s.tls_port)
    );
    let ip = loopback_dhcp::lease(s.dhcp_port, MAC);
    let (code, body, log) = curl(&s, ip, "AES256-SHA256", &format!("/boot/efi?mac={MAC}"));
    assert_eq!(code, 0, "curl failed:\n{log}");
    assert!(
        log.contains("SSL connection using TLSv1.2 / AES256-SHA256"),
        "not the static-RSA suite:\n{log}"
    );
    assert!(
        body == std::fs::read(&s.uki.path).unwrap(),
        "not the UKI's bytes"
    );
    // `openssl s_client` agrees on the suite (RSA key exchange: no "Server Temp Key").
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", s.tls_port)])
        .args(["-tls1_2", "-cipher", "AES256-SHA256", "-CAfile"])
        .arg(&s.ca)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Cipher is AES256-SHA256"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(!text.contains("Server Temp Key"), "{text}");
    // The machine's history says it booted over HTTPS, with the suite (observation events
    // are written in batches: wait for them).
    crate::harness::eventually("the HTTPS boot and transfer events", || {
        let t = s.api.get(&format!("/api/v1/events?machine={MAC}")).text;
        let seen = t.contains("UEFI HTTPS boot (TLSv1.2 AES256-SHA256): UKI");
        if seen && t.contains("\"protocol\":\"https\"") {
            Ok(())
        } else {
            Err(t)
        }
    });
    assert_eq!(
        s.api.get(&format!("/api/v1/machines/{MAC}")).body["lifecycle"]["state"],
        "booting"
    );
}

#[test]
fn an_ecdhe_only_client_gets_a_forward_secret_suite_and_tls13_is_refused() {
    let s = setup(Cert::Operator, "");
    let ip = loopback_dhcp::lease(s.dhcp_port, MAC);
    let path = format!("/boot/efi?mac={MAC}");
    let (code, body, log) = curl(&s, ip, "ECDHE-RSA-AES128-GCM-SHA256", &path);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("SSL connection using TLSv1.2 / ECDHE-RSA-AES128-GCM-SHA256"),
        "{log}"
    );
    assert!(body == std::fs::read(&s.uki.path).unwrap());
    // A suite not on the list (SHA-1 MAC) is refused at the handshake.
    let (code, _, log) = curl(&s, ip, "AES128-SHA", &path);
    assert_ne!(code, 0, "AES128-SHA was accepted:\n{log}");
    // TLS 1.3 only: refused (this listener is TLS 1.2 for firmware).
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--tlsv1.3", "--cacert"])
        .arg(&s.ca)
        .arg(format!("https://127.0.0.1:{}/healthz", s.tls_port))
        .output()
        .unwrap();
    assert!(!out.status.success(), "TLS 1.3 was accepted");
}

#[test]
fn a_stalled_handshake_is_dropped_after_the_timeout() {
    let s = setup(Cert::SelfIssued, "handshake_timeout = \"2s\"");
    let addr = format!("127.0.0.1:{}", s.tls_port);
    // Connects and sends nothing; then one that sends half a ClientHello record header.
    let mut silent = TcpStream::connect(&addr).unwrap();
    let mut half = TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(&mut half, &[0x16, 0x03, 0x01]).unwrap();
    let t0 = Instant::now();
    // Meanwhile a real client is served.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&s.ca)
        .arg(format!("https://127.0.0.1:{}/healthz", s.tls_port))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, conn) in [("silent", &mut silent), ("half", &mut half)] {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        // The server closes it: EOF (or a reset), not our 10 s read timeout.
        let r = conn.read(&mut buf);
        let waited = t0.elapsed();
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{name}: {r:?}"
        );
        assert!(
            waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6),
            "{name} closed after {waited:?}"
        );
    }
}

#[test]
fn a_boot_tls_key_that_is_not_the_certificates_is_a_startup_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = pki(&dir.path().join("a").tap_mkdir(), &["127.0.0.1"]);
    let b = pki(&dir.path().join("b").tap_mkdir(), &["127.0.0.1"]);
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[boot_tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
            a.cert.display(),
            b.key.display()
        ),
    )
    .unwrap();
    let out = Command::new(crate::harness::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--no-tftp", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} does not match the certificate in {}",
            b.key.display(),
            a.cert.display()
        )),
        "{err}"
    );
}

trait Mkdir {
    fn tap_mkdir(self) -> PathBuf;
}

impl Mkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
