//! The dashboard in a real headless Chromium: log in, watch a machine appear and change state
//! without a reload, approve it, upload a CSV with a bad line, visit every page (a screenshot
//! each, in `target/ui-screenshots/`), check labels and live regions through the DOM, and
//! see that a hostile label renders as text.

use serde_json::json;

use crate::loopback_dhcp::{self, LeaseServer};
use crate::webdriver::Browser;

/// Set in the page before the machine arrives: still set after proves there was no reload.
const MARKER: &str = "window.__sameDocument = 'yes'";
const XSS: &str = "<img src=x onerror=\"window.__xss=1\">";

fn row_state(mac: &str, state: &str) -> String {
    format!("tr[data-mac=\"{mac}\"] .state[data-state=\"{state}\"]")
}

/// A real PNG of plausible size: the signature, an IHDR at least 800 pixels wide, > 3 KB.
fn assert_png(path: &std::path::Path) {
    let b = std::fs::read(path).unwrap();
    assert!(
        b.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let width = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(b[20..24].try_into().unwrap());
    assert!(
        width >= 800 && height >= 400,
        "{}: {width}x{height}",
        path.display()
    );
    assert!(
        b.len() > 3_000 && b.len() < 20_000_000,
        "{}: {} bytes",
        path.display(),
        b.len()
    );
}

/// Every form control on the page has an accessible name; tables have header cells.
fn assert_accessible(b: &Browser, page: &str) {
    let unnamed = b.js(
        r#"const bad = [];
        for (const e of document.querySelectorAll('input, select, textarea, button')) {
          const named = (e.labels && e.labels.length) || e.getAttribute('aria-label')
            || e.getAttribute('aria-labelledby') || (e.tagName === 'BUTTON' && e.textContent.trim());
          if (!named) bad.push(e.outerHTML);
        }
        for (const t of document.querySelectorAll('main table')) {
          if (!t.querySelector('thead th[scope=col]')) bad.push('table without header cells: ' + t.id);
        }
        return bad;"#,
        vec![],
    );
    assert_eq!(unnamed, json!([]), "{page}: controls without a name");
    let live = b.js(
        "return document.getElementById('announce').getAttribute('aria-live');",
        vec![],
    );
    assert_eq!(live, "polite", "{page}: the announcement region");
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let s = LeaseServer::start(
        dir.path(),
        &dir.path().join("data"),
        "unknown_machines = \"discover\"",
        &[],
    );
    let api = s.server.http();
    let base = s.server.url.clone();
    assert_eq!(
        api.json(
            "POST",
            "/api/v1/profiles",
            json!({"name": "hadron", "install_disk": "/dev/vda"})
        )
        .status,
        201
    );
    let hostile = "52:54:00:0c:ee:01";
    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": hostile, "hostname": "node-1", "profile": "hadron", "labels": {"note": XSS}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    let b = Browser::start();
    // A wrong token: a clear message, no session.
    b.goto(&format!("{base}/ui/"));
    b.type_into("#token", "wrong");
    b.click("#login-submit");
    b.wait_for("#login-error");
    assert!(b.text("#login-error").contains("Wrong token"));
    b.type_into("#token", &s.server.token());
    b.click("#login-submit");
    b.wait_for(&row_state(hostile, "registered"));
    assert_accessible(&b, "machines");
    b.js(MARKER, vec![]);

    // A machine appears by DHCP and shows as discovered, live.
    let mac = "52:54:00:0c:ee:02";
    let pxe = [
        (60, b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
        (93, vec![0, 7]),
    ];
    loopback_dhcp::discover(s.dhcp_port, mac, &pxe);
    b.wait_for(&row_state(mac, "discovered"));
    assert_eq!(
        b.js("return window.__sameDocument;", vec![]),
        "yes",
        "no reload"
    );

    // The approve button moves it on (on screen and in the store).
    b.click(&format!("tr[data-mac=\"{mac}\"] button.approve"));
    b.wait_for(&row_state(mac, "registered"));
    assert_eq!(
        api.get(&format!("/api/v1/machines/{mac}")).body["lifecycle"]["state"],
        "registered"
    );
    assert_eq!(b.js("return window.__sameDocument;", vec![]), "yes");

    // A machine installs and registers through the machines' own API (its token, as its
    // installer and the Kairos agent call it): the row follows each step without a reload.
    let token = api.get(&format!("/api/v1/machines/{hostile}/token")).body["token"]
        .as_str()
        .expect("a machine token")
        .to_string();
    let node = |path: &str, body: serde_json::Value| {
        let r = crate::harness::client_builder()
            .build()
            .unwrap()
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    };
    node(
        "/api/v1/nodes/progress",
        json!({"state": "installing", "phase": "partition", "percent": 40, "message": "vda"}),
    );
    b.wait_for(&row_state(hostile, "installing"));
    node("/api/v1/nodes/progress", json!({"state": "installed"}));
    b.wait_for(&row_state(hostile, "installed"));
    node(
        "/api/v1/nodes/register",
        json!({"registrationToken": token, "machineID": "0123456789abcdef", "hostname": "node-1",
               "agentVersion": "v2.4", "bootState": "active_boot"}),
    );
    b.wait_for(&row_state(hostile, "ready"));
    assert_eq!(b.js("return window.__sameDocument;", vec![]), "yes");
    // More machines, so the table's screenshot shows a rack rather than a row.
    let csv: String = (0x20..0x26)
        .map(|i| format!("52:54:00:0c:ee:{i:02x},rack1-{i:02x},hadron\n"))
        .collect();
    assert_eq!(api.csv(format!("mac,hostname,profile\n{csv}")).status, 200);
    b.wait_for(&row_state("52:54:00:0c:ee:25", "registered"));
    assert_png(&b.screenshot("machines"));

    // The hostile label is text: no element made of it, no script run.
    b.type_into("#search", "onerror");
    b.wait_for(&format!("tr[data-mac=\"{hostile}\"]"));
    let dom = b.js(
        "return [document.querySelectorAll('main img').length, window.__xss === undefined];",
        vec![],
    );
    assert_eq!(dom, json!([0, true]));

    // The machine page: details, the boot decision and why, the timeline.
    b.js(&format!("location.hash = '#/machine/{hostile}'"), vec![]);
    b.wait_for("#decision[data-intent]");
    assert!(b.text("#details").contains(XSS), "{}", b.text("#details"));
    assert_eq!(
        b.js(
            "return [document.querySelectorAll('main img').length, window.__xss === undefined];",
            vec![]
        ),
        json!([0, true])
    );
    b.wait_for("#timeline li");
    assert_png(&b.screenshot("machine-ready"));
    b.js(&format!("location.hash = '#/machine/{mac}'"), vec![]);
    b.wait_for("#decision[data-intent=\"install\"]");
    assert!(
        b.text("#decision").contains("has no profile"),
        "{}",
        b.text("#decision")
    );
    b.wait_for("#timeline li[data-type=\"operator\"]");
    assert_accessible(&b, "machine");
    assert_png(&b.screenshot("machine"));

    // CSV upload: a bad line is reported by number, nothing imported.
    b.js("location.hash = '#/import'", vec![]);
    b.type_into(
        "#csv-text",
        "52:54:00:0c:ee:10,good-host,hadron\nnot-a-mac,x,hadron\n",
    );
    b.click("#import-submit");
    b.wait_for("#import-lines tbody tr");
    let lines = b.text("#import-lines");
    assert!(
        lines.contains('2') && lines.to_lowercase().contains("mac"),
        "{lines}"
    );
    assert_eq!(api.get("/api/v1/machines/52:54:00:0c:ee:10").status, 404);
    assert_accessible(&b, "import");
    assert_png(&b.screenshot("import"));

    // Profiles and assets.
    b.js("location.hash = '#/profiles'", vec![]);
    b.click("#profiles tbody button");
    b.wait_for("#profile-detail");
    assert!(b.text("#profile-detail").contains("/dev/vda"));
    assert_accessible(&b, "profiles");
    assert_png(&b.screenshot("profiles"));
    b.js("location.hash = '#/assets'", vec![]);
    b.wait_for("#assets thead");
    assert_accessible(&b, "assets");
    assert_png(&b.screenshot("assets"));
    assert_eq!(b.js("return window.__sameDocument;", vec![]), "yes");

    // Logout: back to the login page, and the old session is gone.
    b.click("#logout");
    b.wait_for("#token");
    assert_png(&b.screenshot("login"));
}
