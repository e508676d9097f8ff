//! GRUB interop (issue 10, item 4): header names on the wire are title-cased on every endpoint
//! (GRUB's HTTP client matches `Content-Length` case-sensitively), and GRUB's netboot files:
//! the bootstrap `grub/grub.cfg` and `grubnetx64.efi` by TFTP, the per-machine config at
//! `/boot/grub` chosen by the caller's lease, never by a name in the request. The whole path
//! under real firmware is `lab::uefi_grub_loads_kernel_and_initrd_over_http`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use serde_json::json;

use crate::harness::{stderr, stdout, Api, Server};
use crate::loopback_dhcp::{from_address, LeaseServer};
use crate::uki;

const MAC: &str = "52:54:00:6e:0b:01";

struct Rack {
    server: Server,
    api: Api,
    machine: Api,
    machine_ip: Ipv4Addr,
    hex: String,
    _dir: tempfile::TempDir,
}

/// Full-mode DHCP on loopback, a UKI, a profile and a machine (boot.loader grubnetx64.efi)
/// holding a lease.
fn rack() -> Rack {
    let dir = tempfile::tempdir().unwrap();
    let LeaseServer { server, dhcp_port } =
        LeaseServer::start(dir.path(), &dir.path().join("data"), "", &[]);
    let uki = uki::build(dir.path(), "hadron.efi", "Hadron 0.1 (test)");
    let digest = uki::import(&server, &uki.path);
    let api = server.http();
    let r = api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "hadron", "uki": digest, "install_disk": "/dev/vda", "cmdline": "rd.neednet=1"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": MAC, "profile": "hadron", "boot": {"loader": "grubnetx64.efi"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let machine_ip = crate::loopback_dhcp::lease(dhcp_port, MAC);
    Rack {
        machine: from_address(&api, machine_ip),
        machine_ip,
        api,
        hex: digest.trim_start_matches("sha256:").to_string(),
        server,
        _dir: dir,
    }
}

/// The response head (status line and headers, as sent) to a raw HTTP/1.1 request.
fn head(server: &Server, request: &str) -> String {
    let addr = server.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the head ended");
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    String::from_utf8(got[..end].to_vec()).unwrap()
}

fn get(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: provisioner\r\n{headers}Connection: close\r\n\r\n")
}

/// `content-length` → `Content-Length`, `etag` → `Etag` (what hyper's title case writes).
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Every header name of `head` is title-cased, and each of `names` is there exactly so.
fn assert_title_case(what: &str, head: &str, status: u16, names: &[&str]) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(
        status_line.starts_with(&format!("HTTP/1.1 {status} ")),
        "{what}: {head}"
    );
    let sent: Vec<&str> = lines
        .map(|l| l.split_once(':').expect("a header line").0)
        .collect();
    for n in &sent {
        assert_eq!(*n, title_case(n), "{what}: header name {n:?} in\n{head}");
    }
    for n in names {
        assert!(sent.contains(n), "{what}: no {n:?} in\n{head}");
    }
}

#[test]
fn every_endpoint_sends_title_case_header_names() {
    let r = rack();
    let token = stdout(&r.server.cli(&["machines", "token", MAC]))
        .trim()
        .to_string();
    let asset = format!("/assets/{}/hadron.efi", r.hex);
    let cases: Vec<(&str, String, u16, Vec<&str>)> = vec![
        (
            "healthz",
            get("/healthz", ""),
            200,
            vec!["Content-Length", "Content-Type"],
        ),
        (
            "iPXE script",
            get(&format!("/boot/ipxe?mac={MAC}&platform=efi"), ""),
            200,
            vec!["Content-Length", "Content-Type"],
        ),
        (
            "GRUB config",
            get("/boot/grub", ""),
            200,
            vec!["Content-Length", "Content-Type"],
        ),
        (
            "asset download",
            get(&asset, ""),
            200,
            vec!["Content-Length", "Content-Type", "Accept-Ranges"],
        ),
        (
            "asset range",
            get(&asset, "Range: bytes=0-99\r\n"),
            206,
            vec!["Content-Length", "Content-Type", "Content-Range"],
        ),
        (
            "UKI section",
            get(&format!("/assets/{}/sections/initrd", r.hex), ""),
            200,
            vec!["Content-Length", "Content-Type"],
        ),
        (
            "config with the machine's token",
            get(
                &format!("/config/{MAC}"),
                &format!("Authorization: Bearer {token}\r\n"),
            ),
            200,
            vec!["Content-Length", "Content-Type"],
        ),
        (
            "API error",
            get("/api/v1/machines", ""),
            401,
            vec!["Content-Length", "Content-Type"],
        ),
        (
            "API not found",
            get(
                "/api/v1/machines/52:54:00:00:00:99",
                &format!("Authorization: Bearer {}\r\n", r.server.token()),
            ),
            404,
            vec!["Content-Length", "Content-Type"],
        ),
    ];
    for (what, request, status, names) in cases {
        let h = head(&r.server, &request);
        assert_title_case(what, &h, status, &names);
        assert!(!h.contains("\r\ncontent-length:"), "{what}: {h}");
    }
}

#[test]
fn grub_config_is_chosen_by_the_callers_lease_never_by_a_name() {
    let r = rack();
    // The machine, by its lease: its install config, kernel and initrd of its UKI over HTTP.
    let cfg = r.machine.get("/boot/grub");
    assert_eq!(cfg.status, 200, "{}", cfg.text);
    let base = r.server.url.trim_start_matches("http://");
    let kernel = format!(
        "linux '(http,{base})/assets/{}/sections/linux?mac={MAC}' 'console=ttyS0' 'quiet' 'rd.neednet=1' 'config_url=http://{base}/config/{MAC}'",
        r.hex
    );
    assert!(cfg.text.contains(&kernel), "{}\nwanted: {kernel}", cfg.text);
    let initrd = format!(
        "initrd '(http,{base})/assets/{}/sections/initrd?mac={MAC}'",
        r.hex
    );
    assert!(cfg.text.contains(&initrd), "{}", cfg.text);
    assert!(cfg.text.contains("\nboot\n"), "{}", cfg.text);
    let m = r.api.get(&format!("/api/v1/machines/{MAC}")).body;
    assert_eq!(m["lifecycle"]["state"], "booting", "{m}");
    assert_eq!(m["boot_ip"], r.machine_ip.to_string(), "{m}");
    // The parts it names are what GRUB downloads (the URL without GRUB's device syntax).
    let path = format!("/assets/{}/sections/linux?mac={MAC}", r.hex);
    let got = r
        .machine
        .client
        .get(format!("{}{path}", r.server.url))
        .send()
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    // Anyone else, naming the machine or not: no machine, no config, nothing recorded.
    let before = r.api.get(&format!("/api/v1/events?machine={MAC}")).body;
    for path in ["/boot/grub", &format!("/boot/grub?mac={MAC}")] {
        let other = r.api.without_token().get(path);
        assert_eq!(other.status, 200, "{}", other.text);
        assert!(
            other.text.contains("no machine holds 127.0.0.1") && !other.text.contains("linux"),
            "{}",
            other.text
        );
        assert!(other.text.contains("sleep "), "{}", other.text);
    }
    let after = r.api.get(&format!("/api/v1/events?machine={MAC}")).body;
    assert_eq!(before, after);
    // Installed: no installer; the config boots the disk.
    for state in ["installing", "installed"] {
        let token = stdout(&r.server.cli(&["machines", "token", MAC]))
            .trim()
            .to_string();
        let p = r
            .api
            .without_token()
            .client
            .post(format!("{}/api/v1/nodes/progress", r.server.url))
            .bearer_auth(&token)
            .json(&json!({"state": state}))
            .send()
            .unwrap();
        assert!(p.status().is_success(), "{state}: {}", p.text().unwrap());
    }
    let cfg = r.machine.get("/boot/grub");
    assert!(
        cfg.text.contains("is installed, booting from disk") && !cfg.text.contains("linux"),
        "{}",
        cfg.text
    );
}

#[test]
fn tftp_serves_grub_and_a_bootstrap_that_names_our_http_side() {
    let grub = std::path::Path::new("/usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi");
    assert!(
        grub.is_file(),
        "{}: lab setup installs grub-efi-amd64-bin",
        grub.display()
    );
    let r = rack();
    let tftp = r.server.tftp.expect("TFTP listener");
    let fetch = |file: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .arg(format!("tftp://{tftp}/{file}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        out.stdout
    };
    let cfg = String::from_utf8(fetch("grub/grub.cfg")).unwrap();
    let base = r.server.url.trim_start_matches("http://");
    assert!(
        cfg.contains(&format!("source \"(http,{base})/boot/grub\"")) && cfg.contains("insmod http"),
        "{cfg}"
    );
    assert_eq!(fetch("grubnetx64.efi"), std::fs::read(grub).unwrap());
    let http_mod = fetch("grub/x86_64-efi/http.mod");
    assert_eq!(
        http_mod,
        std::fs::read("/usr/lib/grub/x86_64-efi/http.mod").unwrap()
    );
}
