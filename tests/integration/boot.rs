//! HTTP boot end to end against the real binary: assets CLI, per-machine iPXE scripts by state
//! and platform, downloads (ranges, ETag, HEAD, the bytes themselves), configs only for their
//! machine, Kairos-shaped registration, install progress and the no-boot-loop guarantee.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{rss, stderr, stdout, Api, Server};
use crate::loopback_dhcp::{from_address, LeaseServer};
use crate::uki;

const MAC: &str = "52:54:00:be:ef:01";

struct Setup {
    server: Server,
    api: Api,
    /// Requests from the address the server leased to `MAC` (the machine, by the server's own
    /// evidence), without a token.
    machine: Api,
    /// The leased address.
    machine_ip: std::net::Ipv4Addr,
    uki: uki::TestUki,
    digest: String,
    _dir: tempfile::TempDir,
}

/// A server (with full-mode DHCP on loopback), a UKI imported with the CLI, a profile using it
/// and a registered machine that holds a lease.
fn setup(extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let LeaseServer { server, dhcp_port } =
        LeaseServer::start(dir.path(), &dir.path().join("data"), "", extra);
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
        json!({"mac": MAC, "profile": "hadron", "hostname": "node-1", "labels": {"rack": "a1"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let machine_ip = crate::loopback_dhcp::lease(dhcp_port, MAC);
    let machine = from_address(&api, machine_ip);
    Setup {
        server,
        machine,
        machine_ip,
        api,
        uki,
        digest,
        _dir: dir,
    }
}

/// Registers another machine with the `hadron` profile; returns its enrollment token.
fn add_machine(s: &Setup, mac: &str) -> String {
    let r = s.api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": mac, "profile": "hadron"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    token_of(s, mac)
}

fn token_of(s: &Setup, mac: &str) -> String {
    stdout(&s.server.cli(&["machines", "token", mac]))
        .trim()
        .to_string()
}

trait ArgPath {
    fn arg_path(self, p: &std::path::Path) -> std::process::Output;
}

impl ArgPath for Command {
    fn arg_path(mut self, p: &std::path::Path) -> std::process::Output {
        self.arg(p).output().unwrap()
    }
}

fn state(api: &Api) -> String {
    api.get(&format!("/api/v1/machines/{MAC}")).body["lifecycle"]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn script(api: &Api, platform: &str) -> String {
    let r = api
        .without_token()
        .get(&format!("/boot/ipxe?mac={MAC}&platform={platform}"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
}

/// The URL on the line starting with `cmd` (chain/kernel/initrd), made relative.
fn url_of(script: &str, cmd: &str, base: &str) -> String {
    let line = script
        .lines()
        .find(|l| l.starts_with(cmd))
        .unwrap_or_else(|| panic!("no {cmd} line in:\n{script}"));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap();
    url.strip_prefix(base).unwrap().to_string()
}

fn bytes(api: &Api, path: &str) -> (u16, Vec<u8>) {
    let r = api
        .client
        .get(format!("{}{path}", api.base))
        .send()
        .unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

#[test]
fn assets_cli_import_inspect_list_and_rm_refused_while_used() {
    let s = setup(&[]);
    let out = s
        .server
        .cli_cmd(&["assets", "inspect"])
        .arg_path(&s.uki.path);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("os:           Hadron 0.1 (test)"), "{text}");
    assert!(text.contains("cmdline:      console=ttyS0 quiet"), "{text}");
    assert!(text.contains("uname:        6.1.0-test-amd64"), "{text}");
    assert!(
        text.contains("not signed") && text.contains(".linux"),
        "{text}"
    );
    let out = s.server.cli(&["assets", "inspect", &s.digest]);
    assert!(
        stdout(&out).contains(&format!("digest:       {}", s.digest)),
        "{}",
        stdout(&out)
    );
    let out = s.server.cli(&["assets", "list"]);
    assert!(stdout(&out).contains("hadron.efi"), "{}", stdout(&out));
    // Importing again is a no-op with the same digest.
    let out = s
        .server
        .cli_cmd(&["assets", "import"])
        .arg_path(&s.uki.path);
    assert!(stdout(&out).contains(&s.digest));
    assert_eq!(
        s.api.get("/api/v1/assets").body.as_array().unwrap().len(),
        1
    );
    // In use: refused, naming the profile.
    let out = s.server.cli(&["assets", "rm", &s.digest]);
    assert!(
        !out.status.success() && stderr(&out).contains("profile(s) hadron"),
        "{}",
        stderr(&out)
    );
    // Not a UKI: refused before uploading, saying what is missing.
    let out = s.server.cli(&["assets", "import", "/bin/true"]);
    assert!(
        !out.status.success() && stderr(&out).contains("not a PE32+"),
        "{}",
        stderr(&out)
    );
    let out = s.server.cli(&["assets", "import", uki::STUB]);
    assert!(
        stderr(&out).contains("no .linux section"),
        "{}",
        stderr(&out)
    );
    // The server checks uploads too (a client that skips the local check).
    let r = s.api.send(
        s.api
            .request("POST", "/api/v1/assets?name=stub.efi")
            .body(std::fs::read(uki::STUB).unwrap()),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    // A profile must reference an imported UKI, and its template must render.
    let r = s.api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "p2", "uki": "sha256:".to_string() + &"0".repeat(64)}),
    );
    assert!(
        r.status == 400 && r.text.contains("not in the asset store"),
        "{}",
        r.text
    );
    let r = s.api.json("POST", "/api/v1/profiles", json!({"name": "p3", "cloud_config": "#cloud-config\nhostname: {{ hostname }}\nx: {{ nope }}\n"}));
    assert!(
        r.status == 400 && r.text.contains("profile p3, line 3"),
        "{}",
        r.text
    );
    // Unused: removable; gc finds nothing left over.
    assert_eq!(
        s.api
            .send(s.api.request("DELETE", &format!("/api/v1/machines/{MAC}")))
            .status,
        204
    );
    assert_eq!(
        s.api
            .send(s.api.request("DELETE", "/api/v1/profiles/hadron"))
            .status,
        204
    );
    let out = s.server.cli(&["assets", "rm", &s.digest]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.server.cli(&["assets", "gc"]);
    assert!(
        stdout(&out).contains("removed 0 leftover"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn scripts_follow_the_lifecycle_and_installed_machines_never_get_the_installer() {
    let s = setup(&[]);
    let api = &s.api;
    let base = &s.server.url;
    let anon = api.without_token();
    // Without a platform: ask iPXE for it.
    let r = anon.get(&format!("/boot/ipxe?mac={MAC}"));
    assert!(
        r.text.contains("platform=${platform}") && r.text.starts_with("#!ipxe"),
        "{}",
        r.text
    );
    assert_eq!(state(api), "registered", "a dispatch is not a boot");
    // EFI: chain the UKI with the embedded cmdline, the profile's, then ours.
    let efi = script(&s.machine, "efi");
    let chain = efi.lines().find(|l| l.starts_with("chain")).unwrap();
    assert!(
        chain.contains("console=ttyS0 quiet rd.neednet=1 config_url="),
        "{chain}"
    );
    assert_eq!(state(api), "booting");
    let (st, body) = bytes(&s.machine, &url_of(&efi, "chain", base));
    assert!(
        st == 200 && body == std::fs::read(&s.uki.path).unwrap(),
        "UKI bytes differ"
    );
    // BIOS: the kernel and initrd from the same UKI.
    let bios = script(&s.machine, "pcbios");
    let (_, k) = bytes(&s.machine, &url_of(&bios, "kernel", base));
    let (_, i) = bytes(&s.machine, &url_of(&bios, "initrd", base));
    assert!(
        k == s.uki.linux && i == s.uki.initrd,
        "extracted sections differ"
    );
    // Downloads are recorded per machine (batched, after the response).
    crate::harness::eventually("both download events", || {
        let events = api.get(&format!("/api/v1/events?machine={MAC}")).body;
        let transfers: Vec<&Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "transfer")
            .collect();
        let whole = transfers
            .iter()
            .any(|e| e["file"] == "hadron.efi" && e["outcome"] == "complete");
        let section = transfers.iter().any(|e| e["file"] == "hadron.efi#linux");
        if whole && section {
            Ok(())
        } else {
            Err(events.to_string())
        }
    });

    // The installer reports; then the machine is installed.
    let token = stdout(&s.server.cli(&["machines", "token", MAC]))
        .trim()
        .to_string();
    let progress_with = |token: &str, body: Value| {
        anon.send(
            anon.request("POST", "/api/v1/nodes/progress")
                .bearer_auth(token)
                .json(&body),
        )
        .status
    };
    let progress = |body: Value| progress_with(&token, body);
    assert_eq!(
        progress(json!({"state": "installing", "phase": "write-image", "percent": 40})),
        204
    );
    assert_eq!(state(api), "installing");
    assert_eq!(progress(json!({"state": "installed"})), 204);
    assert_eq!(state(api), "installed");
    // Every path now says "boot from disk".
    assert!(script(&s.machine, "efi").contains("\nexit 1"));
    assert!(script(&s.machine, "pcbios").contains("sanboot --no-describe --drive 0x80"));
    let (st, _) = bytes(&s.machine, &url_of(&efi, "chain", base));
    assert_eq!(st, 403, "the UKI URL it kept must not reinstall it");
    let (st, _) = bytes(&s.machine, &url_of(&bios, "kernel", base));
    assert_eq!(st, 403);
    assert_eq!(anon.get(&format!("/boot/efi?mac={MAC}")).status, 404);
    assert_eq!(state(api), "installed");
    // Until an operator asks for it.
    let out = s.server.cli(&["machines", "reprovision", MAC]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(script(&s.machine, "efi").contains("chain --autofree"));
    assert_eq!(state(api), "booting");
    // UEFI HTTP boot gets the UKI itself.
    let (st, body) = bytes(&s.machine, &format!("/boot/efi?mac={MAC}"));
    assert!(st == 200 && body.len() as u64 == std::fs::metadata(&s.uki.path).unwrap().len());
    // Unknown machines are ignored by default.
    assert_eq!(
        anon.get("/boot/ipxe?mac=52:54:00:00:00:99&platform=efi")
            .status,
        404
    );
    assert_eq!(anon.get("/boot/ipxe?mac=nonsense").status, 400);
    assert_eq!(
        anon.get(&format!("/boot/ipxe?mac={MAC}&platform=arm"))
            .status,
        400
    );
    // The reprovision revoked the old install's token; the new one is in the new config.
    assert_eq!(progress(json!({"state": "installing"})), 401);
    let token = token_of(&s, MAC);
    // Failure holds the machine with the reason.
    assert_eq!(
        progress_with(
            &token,
            json!({"state": "failed", "reason": "no disk /dev/vda"})
        ),
        204
    );
    let held = script(&s.machine, "efi");
    assert!(
        held.contains("echo provisioner: install failed (no disk /dev/vda)")
            && held.contains("sleep 10"),
        "{held}"
    );
    // A bad token changes nothing.
    let r = anon.send(
        anon.request("POST", "/api/v1/nodes/progress")
            .bearer_auth("m1.525400beef01.0000000000000000000000000000000000000000")
            .json(&json!({"state": "installed"})),
    );
    assert_eq!(r.status, 401);
    assert_eq!(state(api), "failed");
}

fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "-"])
        .args(args)
        .output()
        .unwrap();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(raw.len());
    (
        String::from_utf8_lossy(&raw[..split]).to_lowercase(),
        raw[split..].to_vec(),
    )
}

#[test]
fn downloads_honour_ranges_etags_and_head() {
    let s = setup(&[]);
    let full = std::fs::read(&s.uki.path).unwrap();
    let len = full.len();
    let hex = s.digest.trim_start_matches("sha256:");
    let url = format!("{}/assets/{hex}/hadron.efi", s.server.url);
    for (range, from, to) in [
        ("0-99", 0, 99),
        ("4096-8191", 4096, 8191),
        (&format!("{}-", len - 10) as &str, len - 10, len - 1),
        ("-512", len - 512, len - 1),
    ] {
        let (h, body) = curl(&["-r", range, &url]);
        assert!(h.starts_with("http/1.1 206"), "{range}: {h}");
        assert!(
            h.contains(&format!("content-range: bytes {from}-{to}/{len}")),
            "{range}: {h}"
        );
        assert!(body == full[from..=to], "{range}: wrong bytes");
    }
    let (h, _) = curl(&["-r", &format!("{}-{}", len + 10, len + 20), &url]);
    assert!(
        h.starts_with("http/1.1 416") && h.contains(&format!("content-range: bytes */{len}")),
        "{h}"
    );
    let head = Command::new("curl")
        .args(["-s", "-I", &url])
        .output()
        .unwrap();
    let h = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(
        h.starts_with("http/1.1 200") && h.contains(&format!("content-length: {len}")),
        "{h}"
    );
    assert!(h.ends_with("\r\n\r\n"), "HEAD has no body: {h}");
    assert!(
        h.contains(&format!("etag: \"{hex}\"")) && h.contains("accept-ranges: bytes"),
        "{h}"
    );
    let (h, body) = curl(&["-H", &format!("If-None-Match: \"{hex}\""), &url]);
    assert!(h.starts_with("http/1.1 304") && body.is_empty(), "{h}");
    // If-Range with a stale validator: the whole file.
    let (h, body) = curl(&["-r", "0-9", "-H", "If-Range: \"stale\"", &url]);
    assert!(h.starts_with("http/1.1 200") && body.len() == len, "{h}");
    // OVMF's pattern: HEAD, GET, then the connection reset mid-body. The server keeps serving.
    let (h, _) = curl(&["--max-filesize", "1000", &url]);
    let _ = h;
    let (h, body) = curl(&[&url]);
    assert!(h.starts_with("http/1.1 200") && body == full);
    assert!(
        curl(&[&format!("{}/assets/{hex}/sections/nope", s.server.url)])
            .0
            .starts_with("http/1.1 404")
    );
    assert!(curl(&[&format!("{}/assets/xyz/a", s.server.url)])
        .0
        .starts_with("http/1.1 400"));
}

#[test]
fn configs_are_rendered_per_machine_and_served_only_to_it() {
    let s = setup(&[]);
    let api = &s.api;
    let tpl = "#cloud-config\nhostname: {{ hostname }}\nrack: {{ labels.rack | tojson }}\ninstall:\n  device: {{ install.device }}\ntoken: {{ token }}\n";
    let mut p = api.get("/api/v1/profiles/hadron").body;
    p["cloud_config"] = json!(tpl);
    assert_eq!(api.json("PUT", "/api/v1/profiles/hadron", p).status, 200);
    let other_token = add_machine(&s, "52:54:00:be:ef:02");
    let token = token_of(&s, MAC);
    let anon = api.without_token();
    let get = |path: &str, tok: &str| anon.send(anon.request("GET", path).bearer_auth(tok));
    let r = get(&format!("/config/{MAC}"), &token);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, format!("#cloud-config\nhostname: node-1\nrack: \"a1\"\ninstall:\n  device: /dev/vda\ntoken: {token}"));
    // Another machine's token, no token, a forged token: refused.
    assert_eq!(get(&format!("/config/{MAC}"), &other_token).status, 403);
    assert_eq!(anon.get(&format!("/config/{MAC}")).status, 403);
    assert_eq!(
        get(
            &format!("/config/{MAC}"),
            "m1.525400beef01.ffffffffffffffffffffffffffffffffffffffff"
        )
        .status,
        403
    );
    // By address: from the address the server leased to it, while it installs; not from
    // 127.0.0.1 even after a script was fetched from there for its MAC.
    assert_eq!(s.machine.get(&format!("/config?mac={MAC}")).status, 200);
    anon.get(&format!("/boot/ipxe?mac={MAC}&platform=efi"));
    assert_eq!(anon.get(&format!("/config?mac={MAC}")).status, 403);
    // The Kairos-template URL by UUID.
    let r = api.json("PUT", &format!("/api/v1/machines/{MAC}"), json!({"profile": "hadron", "hostname": "node-1", "uuid": "4C4C4544-0042-3510-8052-B4C04F4B4E31"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get("/config?uuid=4c4c4544-0042-3510-8052-b4c04f4b4e31", &token);
    assert!(
        r.status == 200 && r.text.contains("hostname: node-1"),
        "{}",
        r.text
    );
    assert_eq!(anon.get("/config?uuid=0000").status, 400);
}

#[test]
fn kairos_shaped_registration_is_idempotent_and_checked() {
    let s = setup(&[]);
    let api = &s.api;
    let anon = api.without_token();
    let token = stdout(&s.server.cli(&["machines", "token", MAC]))
        .trim()
        .to_string();
    script(&s.machine, "efi");
    let body = |tok: &str, id: &str| {
        json!({"registrationToken": tok, "machineID": id, "hostname": "node-1",
               "agentVersion": "v2.20.0", "addresses": ["198.18.0.50"], "bootState": "active_boot"})
    };
    let seq = |api: &Api| {
        api.get("/metrics")
            .text
            .lines()
            .find(|l| l.starts_with("provisioner_event_sequence"))
            .unwrap()
            .to_string()
    };
    // A bad token: 401 and nothing changes.
    let before = seq(api);
    let r = anon.json(
        "POST",
        "/api/v1/nodes/register",
        body(
            "m1.525400beef01.0000000000000000000000000000000000000000",
            "abc",
        ),
    );
    assert_eq!(r.status, 401);
    assert_eq!(seq(api), before);
    assert_eq!(state(api), "booting");
    let r = anon.json("POST", "/api/v1/nodes/register", body(&token, "5f1c0ffee"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["id"], MAC);
    let key = r.body["apiKey"].as_str().unwrap().to_string();
    assert!(key.starts_with("m1.") && key != token);
    assert_eq!(state(api), "ready");
    let m = api.get(&format!("/api/v1/machines/{MAC}")).body;
    assert_eq!(m["registration"]["machine_id"], "5f1c0ffee");
    assert_eq!(m["registration"]["agent_version"], "v2.20.0");
    // A replay: the same answer, no new events.
    let after = seq(api);
    let r2 = anon.json("POST", "/api/v1/nodes/register", body(&token, "5f1c0ffee"));
    assert_eq!((r2.status, &r2.body), (200, &r.body));
    assert_eq!(seq(api), after);
    // The apiKey authenticates the machine too.
    let r = anon.send(
        anon.request("POST", "/api/v1/nodes/logs")
            .bearer_auth(&key)
            .body("hello from the OS\n"),
    );
    assert_eq!(r.status, 204);
    // A clone reporting the same machine-id (issue 10 item 6): its own token says which machine
    // it is, so it registers too, and both records carry a warning naming the other.
    const B: &str = "52:54:00:be:ef:03";
    let t2 = add_machine(&s, B);
    let r = anon.json("POST", "/api/v1/nodes/register", body(&t2, "5f1c0ffee"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["id"], B);
    let key_b = r.body["apiKey"].as_str().unwrap().to_string();
    assert_ne!(key_b, key);
    let b = api.get(&format!("/api/v1/machines/{B}")).body;
    assert_eq!(b["lifecycle"]["state"], "ready");
    assert_eq!(b["registration"]["machine_id"], "5f1c0ffee");
    assert_eq!(state(api), "ready");
    let notes = |mac: &str| -> Vec<String> {
        let events = api.get(&format!("/api/v1/events?machine={mac}")).body;
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "note")
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .collect()
    };
    let warning = |other: &str| {
        format!(
            "warning: machineID 5f1c0ffee is also reported by {other}; cloned images share \
             /etc/machine-id: give each machine its own (e.g. empty /etc/machine-id in the image)"
        )
    };
    assert_eq!(notes(B), vec![warning(MAC)]);
    assert_eq!(notes(MAC), vec![warning(B)]);
    // Replays of either change nothing: no new events, the same answers.
    let after = seq(api);
    let r = anon.json("POST", "/api/v1/nodes/register", body(&t2, "5f1c0ffee"));
    assert_eq!(
        (r.status, r.body["apiKey"].as_str()),
        (200, Some(key_b.as_str()))
    );
    let r = anon.json("POST", "/api/v1/nodes/register", body(&token, "5f1c0ffee"));
    assert_eq!(
        (r.status, r.body["apiKey"].as_str()),
        (200, Some(key.as_str()))
    );
    assert_eq!(seq(api), after);
    assert_eq!(notes(B).len(), 1);
    assert_eq!(notes(MAC).len(), 1);
    // The events tell the story.
    let out = s.server.cli(&["events", "--machine", MAC]);
    let text = stdout(&out);
    for want in [
        "state registered → booting",
        "registered machine-id 5f1c0ffee",
        "state booting → installed",
        "state installed → ready",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn syslog_lines_in_both_formats_are_kept_per_machine() {
    let s = setup(&["--syslog-listen", "127.0.0.1:0"]);
    let api = &s.api;
    let target = s.server.syslog.expect("syslog listening line");
    // From the machine's leased address: attributed to it.
    let sock = std::net::UdpSocket::bind((s.machine_ip, 0)).unwrap();
    let big = format!("<14>1 - - big - - - {}", "x".repeat(60_000));
    let datagrams: Vec<Vec<u8>> = vec![
        b"<165>1 2026-11-22T10:00:00Z node-1 installer 42 ID1 [meta x=\"1\"] writing image 40%"
            .to_vec(),
        b"<13>Nov 22 10:00:01 node-1 kairos-agent[7]: install done".to_vec(),
        b"just some garbage \xff without a header".to_vec(),
        big.into_bytes(),
    ];
    for d in &datagrams {
        sock.send_to(d, target).unwrap();
    }
    // Another address, even one that asked for the machine's script: not attributed to anyone,
    // only counted (a request naming a MAC is no evidence).
    assert_eq!(
        api.without_token()
            .get(&format!("/boot/ipxe?mac={MAC}&platform=efi"))
            .status,
        200
    );
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(b"<13>who am i", target).unwrap();
    // Wait (bounded) until all four are stored.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines = loop {
        let r = api.get(&format!("/api/v1/machines/{MAC}/logs"));
        let v = r.body.as_array().cloned().unwrap_or_default();
        if v.len() >= 4 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["app"], "installer");
    assert_eq!(lines[0]["text"], "writing image 40%");
    assert_eq!(lines[0]["severity"], 5);
    assert_eq!(lines[1]["app"], "kairos-agent");
    assert_eq!(lines[1]["text"], "install done");
    assert!(lines[2]["text"]
        .as_str()
        .unwrap()
        .starts_with("just some garbage"));
    assert!(
        lines[3]["text"].as_str().unwrap().len() <= 2051,
        "long lines are cut"
    );
    let out = s.server.cli(&["machines", "logs", MAC]);
    let text = stdout(&out);
    assert!(
        text.contains("[syslog] kairos-agent: install done"),
        "{text}"
    );
    let metrics = api.get("/metrics").text;
    assert!(
        metrics.contains("provisioner_syslog_lines_total{attributed=\"no\"} 1"),
        "{metrics}"
    );
}

#[test]
fn fifty_concurrent_256mib_downloads_keep_server_memory_flat() {
    const SIZE: usize = 256 << 20;
    const CLIENTS: usize = 50;
    let server = Server::start();
    let api = server.http();
    // A 256 MiB asset, streamed up (pseudo-random so nothing can compress or dedupe it).
    let mut data = vec![0u8; SIZE];
    let mut x = 0x9e3779b97f4a7c15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let r = api.send(
        api.request("POST", "/api/v1/assets?name=big.bin&kind=loader")
            .timeout(std::time::Duration::from_secs(120))
            .body(data),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let digest = r.body["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let url = format!("{}/assets/{digest}/big.bin", server.url);
    let pid = server.pid();
    let baseline = rss(pid);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            peak
        })
    };
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let client = crate::harness::client_builder()
                    .timeout(std::time::Duration::from_secs(300))
                    .build()
                    .unwrap();
                let mut resp = client.get(&url).send().unwrap();
                assert_eq!(resp.status(), 200);
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0usize;
                let mut first = Vec::new();
                loop {
                    let n = resp.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    if first.len() < 4096 {
                        first.extend_from_slice(&buf[..n.min(4096 - first.len())]);
                    }
                    total += n;
                }
                (total, first)
            })
        })
        .collect();
    for c in clients {
        let (total, first) = c.join().unwrap();
        assert_eq!(total, SIZE, "a client got a short body");
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut want = Vec::new();
        while want.len() < first.len() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            want.extend_from_slice(&x.to_le_bytes());
        }
        assert!(first == want[..first.len()], "wrong bytes");
    }
    let elapsed = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "50 x 256 MiB in {elapsed:?} ({:.2} GB/s); server RSS baseline {} MiB, peak {} MiB",
        (SIZE * CLIENTS) as f64 / elapsed.as_secs_f64() / 1e9,
        baseline >> 20,
        peak >> 20
    );
    // One 256 KiB chunk in flight per download, plus socket buffers: far below one file.
    assert!(growth < 64 << 20, "server RSS grew by {} MiB", growth >> 20);
}
