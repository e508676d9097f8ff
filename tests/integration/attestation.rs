//! Measured boot (issue 14, item 3) against the real binary: the installer's attestation report
//! (`POST /api/v1/nodes/attestation`, sent with curl as a shell installer would), the PCR 11
//! pin on a profile (computed from the UKI, learned from a machine, or given), and the verdict.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{stdout, Api, Server};

const A: &str = "52:54:00:a7:00:01";
const B: &str = "52:54:00:a7:00:02";
const C: &str = "52:54:00:a7:00:03";

/// curl's status code for a JSON POST of `body` with `token`.
fn report(api: &Api, token: &str, body: &Value) -> u16 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--data-binary", &body.to_string()])
        .arg(format!("{}/api/v1/nodes/attestation", api.base))
        .output()
        .expect("curl (scripts/install-test-deps)");
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

fn token(s: &Server, mac: &str) -> String {
    stdout(&s.cli(&["machines", "token", mac]))
        .trim()
        .to_string()
}

/// What systemd's own `systemd-measure` predicts for the test UKI's sections (no boot phase).
fn systemd_measure(dir: &Path, uki: &crate::uki::TestUki) -> String {
    let osrel = "NAME=\"Hadron\"\nID=hadron\nVERSION_ID=0.1\nPRETTY_NAME=\"Attested\"\n";
    let mut cmd = Command::new("/usr/lib/systemd/systemd-measure");
    cmd.args(["calculate", "--bank=sha256", "--phase=", "--json=short"]);
    for (name, bytes) in [
        ("linux", &uki.linux[..]),
        ("osrel", osrel.as_bytes()),
        ("cmdline", crate::uki::CMDLINE.as_bytes()),
        ("initrd", &uki.initrd[..]),
    ] {
        let f = dir.join(format!("section-{name}"));
        std::fs::write(&f, bytes).unwrap();
        cmd.arg(format!("--{name}={}", f.display()));
    }
    let out = cmd.output().expect("systemd-measure (Debian's systemd)");
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["sha256"][0]["hash"].as_str().unwrap().to_string()
}

#[test]
fn pcr11_is_reported_pinned_from_the_uki_or_a_machine_and_a_mismatch_fails_the_machine() {
    let s = Server::start();
    let api = s.http();
    let dir = tempfile::tempdir().unwrap();
    let uki = crate::uki::build(dir.path(), "attested.efi", "Attested");
    let digest = crate::uki::import(&s, &uki.path);
    let r = api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "hadron", "uki": digest}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    for mac in [A, B, C] {
        let r = api.json(
            "POST",
            "/api/v1/machines",
            json!({"mac": mac, "profile": "hadron"}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let measured = "ab".repeat(32);
    let pcr7 = "07".repeat(32);

    // Unpinned: recorded, verdict unchecked, an event.
    let body = json!({"secure_boot": true, "pcrs": {"7": pcr7, "11": measured.to_uppercase()}});
    assert_eq!(report(&api, &token(&s, A), &body), 204);
    let m = api.get(&format!("/api/v1/machines/{A}")).body;
    let a = &m["attestation"];
    assert_eq!(a["secure_boot"], true, "{m}");
    assert_eq!(a["pcrs"]["11"], measured.as_str(), "{m}");
    assert_eq!(a["pcrs"]["7"], pcr7.as_str(), "{m}");
    assert_eq!(a["pcr11"]["verdict"], "unchecked", "{m}");
    let evs = api.get(&format!("/api/v1/events?machine={A}")).body;
    assert!(
        evs.as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "attested"
                && e["verdict"] == "unchecked"
                && e["pcr11"] == measured.as_str()),
        "{evs}"
    );

    // Bad reports change nothing: a wrong token, a PCR index past 23, a short value.
    assert_eq!(report(&api, "not-a-token", &body), 401);
    assert_eq!(
        report(&api, &token(&s, B), &json!({"pcrs": {"24": measured}})),
        400
    );
    assert_eq!(
        report(&api, &token(&s, B), &json!({"pcrs": {"11": "abcd"}})),
        400
    );
    assert!(api.get(&format!("/api/v1/machines/{B}")).body["attestation"].is_null());

    // Learned from machine A (the operator confirms what it booted).
    let out = s.cli(&["profiles", "pin-pcr11", "hadron", "--from-machine", A]);
    assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    assert!(stdout(&out).contains(&measured), "{}", stdout(&out));
    assert_eq!(
        api.get("/api/v1/profiles/hadron").body["expected_pcr11"],
        measured.as_str()
    );

    // Computed from the UKI: what systemd-measure predicts.
    let out = s.cli(&["profiles", "pin-pcr11", "hadron", "--from-uki"]);
    assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    let expected = systemd_measure(dir.path(), &uki);
    let p = api.get("/api/v1/profiles/hadron").body;
    assert_eq!(p["expected_pcr11"], expected.as_str(), "{p}");
    assert!(
        stdout(&out).contains("systemd-stub 252"),
        "{}",
        stdout(&out)
    );

    // B measures the pinned value: match, and it goes on installing.
    let tb = token(&s, B);
    let ok = json!({"secure_boot": true, "pcrs": {"11": expected}});
    assert_eq!(report(&api, &tb, &ok), 204);
    let m = api.get(&format!("/api/v1/machines/{B}")).body;
    assert_eq!(m["attestation"]["pcr11"]["verdict"], "match", "{m}");
    assert_ne!(m["lifecycle"]["state"], "failed", "{m}");

    // C measures something else: failed, with both values in the reason; no more progress.
    let tc = token(&s, C);
    assert_eq!(report(&api, &tc, &body), 204);
    let m = api.get(&format!("/api/v1/machines/{C}")).body;
    assert_eq!(m["lifecycle"]["state"], "failed", "{m}");
    let reason = m["lifecycle"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("PCR 11 mismatch")
            && reason.contains(&expected)
            && reason.contains(&measured),
        "{m}"
    );
    assert_eq!(m["attestation"]["pcr11"]["verdict"], "mismatch", "{m}");
    let progress = api.send(
        api.without_token()
            .request("POST", "/api/v1/nodes/progress")
            .bearer_auth(&tc)
            .json(&json!({"state": "installing"})),
    );
    assert_eq!(progress.status, 409, "{}", progress.body);
    // A failed machine cannot report again.
    assert_eq!(report(&api, &tc, &ok), 409);

    // The pin is removed with --clear; a bad value is refused with the field named.
    let bad = api.json(
        "POST",
        "/api/v1/profiles/hadron/pcr11",
        json!({"value": "12"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.to_string().contains("value"), "{}", bad.body);
    let out = s.cli(&["profiles", "pin-pcr11", "hadron", "--clear"]);
    assert!(out.status.success());
    assert!(api.get("/api/v1/profiles/hadron").body["expected_pcr11"].is_null());
}
