//! Trusted boot, server side: UKI signatures against the configured db certificates
//! (`[secure_boot] db_certs`) in `assets inspect` and the asset API, profiles with
//! `secure_boot = true` refusing unsigned or untrusted UKIs (when saved, and at boot after the
//! configuration changed), and machines whose firmware downloaded the UKI and never started it
//! failed at `lifecycle.uki_start_timeout`. Keys are made with openssl, UKIs signed with sbsign,
//! and the verdicts compared with sbverify.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{binary, eventually, stderr, stdout, Api, Server};
use crate::loopback_dhcp::{from_address, LeaseServer};
use crate::uki;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
}

/// A self-signed RSA key and certificate `dir/name.{key,pem}` with CN `cn`.
fn keypair(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (k, c) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pem")),
    );
    run(Command::new("openssl")
        .args([
            "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
        ])
        .args(["-days", "1", "-subj", &format!("/CN={cn}/"), "-keyout"])
        .arg(&k)
        .arg("-out")
        .arg(&c));
    (k, c)
}

fn sbsign(key: &(PathBuf, PathBuf), input: &Path, output: &Path) {
    run(Command::new("sbsign")
        .arg("--key")
        .arg(&key.0)
        .arg("--cert")
        .arg(&key.1)
        .arg("--output")
        .arg(output)
        .arg(input));
}

fn sbverify(cert: &Path, file: &Path) -> bool {
    let mut cmd = Command::new("sbverify");
    cmd.arg("--cert").arg(cert).arg(file);
    cmd.output().unwrap().status.success()
}

/// A test UKI, unsigned and signed by `db` and by `other`, with both keys.
struct Ukis {
    dir: tempfile::TempDir,
    db: (PathBuf, PathBuf),
    other: (PathBuf, PathBuf),
    unsigned: PathBuf,
    signed: PathBuf,
    by_other: PathBuf,
}

fn ukis() -> Ukis {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unsigned = uki::build(d, "hadron.efi", "Hadron 0.1 (test)").path;
    let db = keypair(d, "db", "Test db");
    let other = keypair(d, "other", "Other");
    let (signed, by_other) = (d.join("hadron-signed.efi"), d.join("hadron-other.efi"));
    sbsign(&db, &unsigned, &signed);
    sbsign(&other, &unsigned, &by_other);
    Ukis {
        dir,
        db,
        other,
        unsigned,
        signed,
        by_other,
    }
}

/// A config file `name` in `dir` with `text`.
fn config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn db_certs(certs: &[&Path]) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|c| format!("{:?}", c.display().to_string()))
        .collect();
    format!("[secure_boot]\ndb_certs = [{}]\n", list.join(", "))
}

fn profile(api: &Api, name: &str, uki: &str, secure_boot: bool) -> crate::harness::Reply {
    api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": name, "uki": uki, "secure_boot": secure_boot}),
    )
}

#[test]
fn secure_boot_profiles_refuse_what_the_db_certs_do_not_trust() {
    let u = ukis();
    let d = u.dir.path();
    let cfg = config(d, "sb.toml", &db_certs(&[&u.db.1]));
    let server = Server::start_in(&d.join("data"), &["--config", cfg.to_str().unwrap()]);
    let api = server.http();
    let unsigned = uki::import(&server, &u.unsigned);
    let signed = uki::import(&server, &u.signed);
    let by_other = uki::import(&server, &u.by_other);

    // The API's asset view: verdicts against the server's db certificates, as sbverify says.
    let verdict =
        |digest: &str| api.get(&format!("/api/v1/assets/{digest}")).body["signature"].clone();
    let v = verdict(&signed);
    assert_eq!(v["verdict"], "trusted", "{v}");
    assert_eq!(
        (v["signer"].as_str(), v["by"].as_str()),
        (Some("CN=Test db"), Some("CN=Test db"))
    );
    assert_eq!(v["db_certs"], json!([u.db.1]));
    assert!(sbverify(&u.db.1, &u.signed));
    let v = verdict(&by_other);
    assert_eq!(
        (v["verdict"].as_str(), v["signer"].as_str()),
        (Some("untrusted"), Some("CN=Other")),
        "{v}"
    );
    assert!(!sbverify(&u.db.1, &u.by_other));
    assert_eq!(verdict(&unsigned)["verdict"], "unsigned");

    // The CLI: a digest is the server's view; a local file is checked against --db-cert.
    let out = server.cli(&["assets", "inspect", &signed]);
    assert!(
        stdout(&out).contains("verdict:      trusted"),
        "{}",
        stdout(&out)
    );
    let local = |file: &Path, cert: &Path| {
        let out = server
            .cli_cmd(&["assets", "inspect", file.to_str().unwrap(), "--db-cert"])
            .arg(cert)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let text = local(&u.by_other, &u.db.1);
    assert!(
        text.contains("signer:       CN=Other (issuer CN=Other)"),
        "{text}"
    );
    assert!(text.contains("verdict:      untrusted"), "{text}");
    assert!(local(&u.by_other, &u.other.1).contains("verdict:      trusted"));
    assert!(sbverify(&u.other.1, &u.by_other));

    // Profiles with secure_boot: untrusted and unsigned UKIs are refused, naming why.
    let r = profile(&api, "hadron", &by_other, true);
    assert_eq!(r.status, 400, "{}", r.text);
    let want = format!(
        "profile hadron: secure_boot is on but UKI {by_other} is signed by CN=Other, which no db certificate trusts"
    );
    assert!(r.text.contains(&want), "{}", r.text);
    assert!(
        r.text
            .contains(&format!("(configured: {})", u.db.1.display())),
        "{}",
        r.text
    );
    let r = profile(&api, "hadron", &unsigned, true);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains(&format!("UKI {unsigned} is not signed")),
        "{}",
        r.text
    );
    assert_eq!(profile(&api, "plain", &unsigned, false).status, 201);
    let out = server.cli(&[
        "profiles",
        "add",
        "hadron",
        "--uki",
        &by_other,
        "--secure-boot",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("which no db certificate trusts"),
        "{}",
        stderr(&out)
    );
    let out = server.cli(&[
        "profiles",
        "add",
        "hadron",
        "--uki",
        &signed,
        "--secure-boot",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(api.get("/api/v1/profiles/hadron").body["secure_boot"], true);

    // --db-cert is for local files only.
    let out = server.cli(&["assets", "inspect", &signed, "--db-cert", "/x.pem"]);
    assert!(!out.status.success());
}

#[test]
fn without_db_certs_secure_boot_is_refused_and_a_bad_cert_file_stops_the_start() {
    let u = ukis();
    let d = u.dir.path();
    let server = Server::start_in(&d.join("data"), &[]);
    let signed = uki::import(&server, &u.signed);
    let r = profile(&server.http(), "hadron", &signed, true);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text
            .contains("secure_boot is on but no db certificates are configured"),
        "{}",
        r.text
    );
    drop(server);

    let junk = config(d, "junk.pem", "not a certificate\n");
    let cfg = config(d, "bad.toml", &db_certs(&[&junk]));
    let out = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(d.join("data2"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("secure_boot.db_certs") && err.contains(&junk.display().to_string()),
        "{err}"
    );
}

const MAC: &str = "52:54:00:5b:00:01";
const MAC2: &str = "52:54:00:5b:00:02";

fn machine(api: &Api, mac: &str) -> Value {
    api.get(&format!("/api/v1/machines/{mac}")).body
}

/// GET `/boot/efi?mac=` with curl from `ip` (the machine's leased address): UEFI HTTP boot.
fn curl_uki(server: &Server, ip: Ipv4Addr, mac: &str) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "--interface",
        ])
        .arg(ip.to_string())
        .arg(format!("{}/boot/efi?mac={mac}", server.url))
        .output()
        .unwrap();
    let raw = out.stdout;
    let split = raw.iter().rposition(|b| *b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&raw[split + 1..]).parse().unwrap();
    (code, raw[..split].to_vec())
}

#[test]
fn a_downloaded_uki_never_started_fails_the_machine_with_the_reason() {
    let u = ukis();
    let d = u.dir.path();
    // `[lifecycle]` after the DHCP keys: the subnet table that follows still belongs to [dhcp].
    let keys = "\n[lifecycle]\nuki_start_timeout = \"2s\"\n";
    let LeaseServer { server, dhcp_port } = LeaseServer::start(d, &d.join("data"), keys, &[]);
    let api = server.http();
    let digest = uki::import(&server, &u.unsigned);
    assert_eq!(profile(&api, "hadron", &digest, false).status, 201);
    for mac in [MAC, MAC2] {
        let r = api.json(
            "POST",
            "/api/v1/machines",
            json!({"mac": mac, "profile": "hadron"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let (ip, ip2) = (
        crate::loopback_dhcp::lease(dhcp_port, MAC),
        crate::loopback_dhcp::lease(dhcp_port, MAC2),
    );
    let bytes = std::fs::read(&u.unsigned).unwrap();

    // The firmware downloads its UKI, retries once, then says nothing.
    for _ in 0..2 {
        let (code, body) = curl_uki(&server, ip, MAC);
        assert!(
            code == 200 && body == bytes,
            "HTTP {code}, {} bytes",
            body.len()
        );
    }
    // The other machine downloads it too, and its installer then fetches its config.
    assert_eq!(curl_uki(&server, ip2, MAC2).0, 200);
    let fetch = from_address(&api, ip2).get(&format!("/config/{MAC2}"));
    assert_eq!(fetch.status, 200, "{}", fetch.text);
    assert_eq!(machine(&api, MAC)["lifecycle"]["state"], "booting");

    let reason = eventually("the machine to fail", || {
        let m = machine(&api, MAC);
        match m["lifecycle"]["state"].as_str() {
            Some("failed") => Ok(m["lifecycle"]["reason"].as_str().unwrap().to_string()),
            _ => Err(m["lifecycle"].to_string()),
        }
    });
    assert!(
        reason.starts_with(&format!("downloaded its UKI {digest} at ")),
        "{reason}"
    );
    assert!(reason.contains(" (2 times, last at "), "{reason}");
    assert!(
        reason.contains("and never started it: the firmware likely refused it (Secure Boot: unsigned or untrusted?)"),
        "{reason}"
    );
    // Failed once: one state event carries the reason.
    let events = api.get(&format!("/api/v1/events?machine={MAC}")).body;
    let failures = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "state" && e["to"] == "failed")
        .count();
    assert_eq!(failures, 1, "{events}");
    // The machine that started its UKI is still booting a sweep later (the sweep runs every
    // second with this deadline: wait two to see that nothing happens).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let m = machine(&api, MAC2);
    assert_eq!(m["lifecycle"]["state"], "booting", "{m}");
    assert!(m["lifecycle"].get("uki_fetch").is_none(), "{m}");
}

#[test]
fn an_untrusted_uki_is_not_served_after_the_db_certs_changed() {
    let u = ukis();
    let d = u.dir.path();
    let data = d.join("data");
    let trusting = config(d, "db.toml", &db_certs(&[&u.db.1]));
    let server = Server::start_in(&data, &["--config", trusting.to_str().unwrap()]);
    let api = server.http();
    let signed = uki::import(&server, &u.signed);
    assert_eq!(profile(&api, "hadron", &signed, true).status, 201);
    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": MAC, "profile": "hadron"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.without_token().get(&format!("/boot/efi?mac={MAC}"));
    assert_eq!(r.status, 200);
    drop(server);

    // The operator now enrolls another db: the saved profile's UKI is no longer trusted.
    let other = config(d, "other.toml", &db_certs(&[&u.other.1]));
    let server = Server::start_in(&data, &["--config", other.to_str().unwrap()]);
    let api = server.http();
    let r = api.without_token().get(&format!("/boot/efi?mac={MAC}"));
    assert_eq!(r.status, 404, "{}", r.text);
    let want = format!("profile hadron: secure_boot is on but UKI {signed} is signed by CN=Test db, which no db certificate trusts");
    assert!(r.text.contains(&want), "{}", r.text);
    let script = api
        .without_token()
        .get(&format!("/boot/ipxe?mac={MAC}&platform=efi"));
    assert!(
        script.text.contains("which no db certificate trusts"),
        "{}",
        script.text
    );
    assert!(!script.text.contains("/assets/"), "{}", script.text);
    let hex = signed.trim_start_matches("sha256:");
    let r = api
        .without_token()
        .get(&format!("/assets/{hex}/hadron-signed.efi?mac={MAC}"));
    assert_eq!(r.status, 403, "{}", r.text);
    eventually("the refusal event", || {
        let events = api.get(&format!("/api/v1/events?machine={MAC}")).body;
        let found = events.as_array().unwrap().iter().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("UKI not served: profile hadron: secure_boot is on"))
        });
        if found {
            Ok(())
        } else {
            Err(events.to_string())
        }
    });
}

/// A profile that requires Secure Boot: a machine whose installer reports Secure Boot off is
/// failed (its firmware checked nothing), and it cannot be the machine a PCR 11 pin is learned from.
#[test]
fn a_secure_boot_profile_fails_a_machine_that_reports_secure_boot_off() {
    let u = ukis();
    let d = u.dir.path();
    let cfg = config(d, "sb.toml", &db_certs(&[&u.db.1]));
    let server = Server::start_in(&d.join("data"), &["--config", cfg.to_str().unwrap()]);
    let api = server.http();
    let signed = uki::import(&server, &u.signed);
    assert_eq!(profile(&api, "sb", &signed, true).status, 201);
    let (on, off) = ("52:54:00:5b:00:01", "52:54:00:5b:00:02");
    for mac in [on, off] {
        let r = api.json(
            "POST",
            "/api/v1/machines",
            json!({"mac": mac, "profile": "sb"}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let attest = |mac: &str, body: Value| {
        let token = crate::harness::stdout(&server.cli(&["machines", "token", mac]));
        api.send(
            api.without_token()
                .request("POST", "/api/v1/nodes/attestation")
                .bearer_auth(token.trim())
                .json(&body),
        )
        .status
    };
    let pcr = "ab".repeat(32);
    assert_eq!(
        attest(off, json!({"secure_boot": false, "pcrs": {"11": pcr}})),
        204
    );
    let m = machine(&api, off);
    assert_eq!(m["lifecycle"]["state"], "failed", "{m}");
    assert!(
        m["lifecycle"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("requires Secure Boot"),
        "{m}"
    );
    let r = api.json(
        "POST",
        "/api/v1/profiles/sb/pcr11",
        json!({"from": "machine", "mac": off}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.to_string().contains("Secure Boot"), "{}", r.body);
    // Secure Boot on: recorded, nothing failed, and its PCR 11 can be learned.
    assert_eq!(
        attest(on, json!({"secure_boot": true, "pcrs": {"11": pcr}})),
        204
    );
    assert_ne!(machine(&api, on)["lifecycle"]["state"], "failed");
    let r = api.json(
        "POST",
        "/api/v1/profiles/sb/pcr11",
        json!({"from": "machine", "mac": on}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Not an object, or a PCR index with a leading zero: 400.
    assert_eq!(attest(on, json!([])), 400);
    assert_eq!(attest(on, json!({"pcrs": {"011": pcr}})), 400);
}
