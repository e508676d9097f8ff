//! IPv6 transport with real clients: `perfdhcp -6` as a relay (`-A 1`) against `[dhcp6]` in
//! namespaces the test creates (every exchange completes, the bindings are in the store), TFTP
//! on a dual-stack `[::]` socket (curl and tftp-hpa over IPv6, curl over IPv4 on the same
//! socket), and the HTTP boot endpoints over IPv6 (the iPXE script's URLs carry the bracketed
//! literal the client asked on, and curl follows them).

use std::path::Path;
use std::process::Command;

use inventory::Store;

use crate::harness::{binary, stderr, stdout, Server};
use crate::netns::Netns;
use crate::tftp::content;

fn ip(ns: &Netns, args: &[&str]) {
    let o = Command::new("ip")
        .args(["-n", &ns.name])
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
}

/// Server namespace (`vs`, 2001:2::1/64) and client namespace (`vc`, 2001:2::2/64), one veth
/// pair, DAD off (addresses usable at once).
fn pair() -> (Netns, Netns) {
    let (srv, cli) = (Netns::new("p6srv"), Netns::new("p6cli"));
    for ns in [&srv, &cli] {
        let o = ns
            .command("sysctl")
            .args([
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ])
            .output()
            .expect("sysctl (procps)");
        assert!(o.status.success(), "sysctl: {}", stderr(&o));
    }
    ip(
        &srv,
        &[
            "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns", &cli.name,
        ],
    );
    ip(&srv, &["addr", "add", "2001:2::1/64", "dev", "vs", "nodad"]);
    ip(&srv, &["link", "set", "vs", "up"]);
    ip(&cli, &["addr", "add", "2001:2::2/64", "dev", "vc", "nodad"]);
    ip(&cli, &["link", "set", "vc", "up"]);
    // The multicast route (ff00::/8) appears once the link is up on both sides: perfdhcp's
    // first send fails with "Network is unreachable" before that.
    crate::harness::eventually("the multicast route on vc", || {
        let o = cli
            .command("ip")
            .args(["-6", "route", "show", "table", "all", "dev", "vc"])
            .output()
            .unwrap();
        let routes = stdout(&o);
        if routes.contains("ff00::/8") && routes.contains("2001:2::/64") {
            Ok(())
        } else {
            Err(routes)
        }
    });
    (srv, cli)
}

/// perfdhcp's figures: (sent, received, drops) of SOLICIT-ADVERTISE, then of REQUEST-REPLY.
fn perfdhcp_stats(out: &str) -> Vec<(u64, u64, u64)> {
    let num = |l: &str| -> u64 { l.split(':').nth(1).unwrap().trim().parse().unwrap() };
    let mut stats = Vec::new();
    let lines: Vec<&str> = out.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("sent packets:") {
            stats.push((num(l), num(lines[i + 1]), num(lines[i + 2])));
        }
    }
    stats
}

#[test]
fn relayed_perfdhcp_sarr_exchanges_all_complete_and_their_leases_are_stored() {
    let (srv, cli) = pair();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[dhcp6]\nmode = \"stateful\"\ninterface = \"vs\"\nserver_address = \"2001:2::1\"\n\
         range = \"2001:2::1:0-2001:2::1:ffff\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut c = Command::new(binary());
    c.args(["serve", "--listen", "127.0.0.1:0", "--no-tftp", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data);
    let mut s = Server::spawn(srv.wrap(&c), &data);

    // 200 Solicit-Advertise-Request-Reply exchanges at 100/s through one simulated relay (from
    // [2001:2::2]:547), each from one of 100,000 simulated clients; a bounded run (-n, timeout).
    let o = cli
        .command("timeout")
        .args(["60", "perfdhcp", "-6", "-A", "1", "-l", "vc", "-r", "100"])
        .args(["-R", "100000", "-n", "200", "-W", "2000000"])
        .output()
        .expect("perfdhcp (package kea-admin: scripts/install-test-deps)");
    let out = format!("{}{}", stdout(&o), stderr(&o));
    let stats = perfdhcp_stats(&out);
    assert_eq!(
        stats.len(),
        2,
        "perfdhcp output:\n{out}\nserver log:\n{}",
        s.log()
    );
    let (sa, rr) = (stats[0], stats[1]);
    assert_eq!(sa.0, 200, "200 Solicits sent:\n{out}");
    assert_eq!(
        (sa.1, sa.2, rr.0, rr.1, rr.2),
        (200, 0, 200, 200, 0),
        "every Solicit advertised, every Request replied, no drops:\n{out}\nserver log:\n{}",
        s.log()
    );

    // Every Reply's binding was durable before it was sent: kill -9, then read the store.
    s.kill9();
    let store = inventory::RedbStore::open(&data.join("inventory.redb")).unwrap();
    let leases = store.leases6().unwrap();
    let mut duids: Vec<&str> = leases.iter().map(|l| l.duid.as_str()).collect();
    duids.sort();
    duids.dedup();
    // perfdhcp draws each exchange's client at random: a repeat (rare) renews its binding.
    assert!(
        (190..=200).contains(&leases.len()) && duids.len() == leases.len(),
        "one binding per client of 200 exchanges: {} leases, {} DUIDs",
        leases.len(),
        duids.len()
    );
    for l in &leases {
        let v = u128::from(l.ip);
        let (first, last) = (
            u128::from("2001:2::1:0".parse::<std::net::Ipv6Addr>().unwrap()),
            u128::from("2001:2::1:ffff".parse::<std::net::Ipv6Addr>().unwrap()),
        );
        assert!((first..=last).contains(&v), "{l:?} outside the range");
    }
    drop((srv, cli));
}

/// `provisioner serve` with HTTP on `http` and TFTP on `tftp`, on loopback.
fn serve(data: &Path, http: &str, tftp: &str, extra: &[&str]) -> Server {
    let mut c = Command::new(binary());
    c.args([
        "serve",
        "--listen",
        http,
        "--tftp-listen",
        tftp,
        "--data-dir",
    ])
    .arg(data)
    .args(extra);
    Server::spawn(c, data)
}

fn download(cmd: &mut Command, out: &Path, want: &[u8]) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/install-test-deps)"));
    assert!(o.status.success(), "{cmd:?}: {}{}", stdout(&o), stderr(&o));
    let got = std::fs::read(out).unwrap();
    assert!(got == want, "{cmd:?}: {} bytes, not the file's", got.len());
    std::fs::remove_file(out).unwrap();
}

#[test]
fn tftp_on_a_dual_stack_socket_serves_ipv6_and_ipv4_clients() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let file = content(300_000, 61);
    std::fs::write(root.join("loader.efi"), &file).unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!("[tftp]\nroot = {:?}\n", root.display().to_string()),
    )
    .unwrap();
    let s = serve(
        &dir.path().join("data"),
        "127.0.0.1:0",
        "[::]:0",
        &["--config", cfg.to_str().unwrap()],
    );
    let bound = s.tftp.expect("TFTP listening");
    assert!(bound.is_ipv6(), "{bound}");
    let port = bound.port();
    let out = dir.path().join("got");

    // curl over IPv6 (the URL's bracketed literal), blksize 1468 and the default 512.
    for blksize in ["1468", "512"] {
        download(
            Command::new("curl")
                .args([
                    "-sS",
                    "-g",
                    "--max-time",
                    "30",
                    "--tftp-blksize",
                    blksize,
                    "-o",
                ])
                .arg(&out)
                .arg(format!("tftp://[::1]:{port}/loader.efi")),
            &out,
            &file,
        );
    }
    // tftp-hpa's client over IPv6 (-6).
    download(
        Command::new("tftp")
            .args(["-6", "-m", "binary", "::1", &port.to_string(), "-c", "get"])
            .arg("loader.efi")
            .arg(&out),
        &out,
        &file,
    );
    // An IPv4 client on the same socket.
    download(
        Command::new("curl")
            .args(["-sS", "--max-time", "30", "-o"])
            .arg(&out)
            .arg(format!("tftp://127.0.0.1:{port}/loader.efi")),
        &out,
        &file,
    );
    // A request for a missing file gets its TFTP error over IPv6 (sent from the listener).
    let o = Command::new("curl")
        .args(["-sS", "-g", "--max-time", "30", "-o"])
        .arg(&out)
        .arg(format!("tftp://[::1]:{port}/missing.efi"))
        .output()
        .unwrap();
    // curl's exit code 68: "TFTP: File Not Found", the server's error 1.
    assert_eq!(o.status.code(), Some(68), "curl: {}", stderr(&o));
}

/// `curl -g` over IPv6: (HTTP status, body).
fn curl6(url: &str) -> (String, String) {
    let o = Command::new("curl")
        .args(["-sS", "-g", "--max-time", "30", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    assert!(o.status.success(), "curl {url}: {}", stderr(&o));
    let text = stdout(&o);
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

#[test]
fn ipxe_script_asked_over_ipv6_names_bracketed_urls_that_curl_follows() {
    let (d6, d4) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s = serve(&d6.path().join("data"), "[::1]:0", "127.0.0.1:0", &[]);
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let base = format!("http://[::1]:{port}");
    assert_eq!(s.url, base, "the listener announces its bracketed address");
    let mac = "52:54:00:6e:00:01";
    let created = s.http().json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({ "mac": mac, "hostname": "v6-node" }),
    );
    assert!(created.status < 300, "{}", created.text);

    let (code, script) = curl6(&format!("{base}/boot/ipxe?mac={mac}&platform=efi"));
    assert_eq!(code, "200", "{script}\n{}", s.log());
    assert!(script.starts_with("#!ipxe"), "{script}");
    let urls: Vec<&str> = script
        .split(|c: char| c.is_whitespace())
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .collect();
    assert!(!urls.is_empty(), "the script names URLs:\n{script}");
    for u in &urls {
        assert!(
            u.starts_with(&format!("{base}/")),
            "{u}: not on [::1]:{port}\n{script}"
        );
        // ${...} is iPXE's to fill in; fetch what the firmware would ask for.
        let u = u.replace("${platform}", "efi");
        if u.contains("${") {
            continue;
        }
        let (code, body) = curl6(&u);
        assert!(
            code.starts_with('2') || code == "404",
            "{u}: {code} {body}\n{}",
            s.log()
        );
    }
    // The boot decision is the same as over IPv4: the per-machine script for this MAC.
    let v4 = serve(&d4.path().join("data"), "127.0.0.1:0", "127.0.0.1:0", &[]);
    let created = v4.http().json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({ "mac": mac, "hostname": "v6-node" }),
    );
    assert!(created.status < 300, "{}", created.text);
    let v4_port = v4.url.rsplit(':').next().unwrap().to_string();
    let (_, v4_script) = curl6(&format!("{}/boot/ipxe?mac={mac}&platform=efi", v4.url));
    assert_eq!(
        script.replace(&base, "BASE"),
        v4_script.replace(&format!("http://127.0.0.1:{v4_port}"), "BASE"),
        "the same script but for the host"
    );
}
