//! The dashboard's sessions without a browser: login → cookie, the cookie on the operator API,
//! CSRF and `Origin` checks on writes, logout and expiry, the session on SSE, and the security
//! headers of the pages.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::harness::{client_builder, Server};
use reqwest::blocking::{Client, Response};

/// A client that shows redirects instead of following them.
fn client() -> Client {
    client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in with `token`; the session cookie's value (`name=value`) and the CSRF value.
pub fn login(c: &Client, base: &str, token: &str) -> (String, String) {
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "login: {:?}", r.text());
    assert_eq!(r.headers()["location"], "/ui/");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = c
        .get(format!("{base}/ui/session"))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

fn post_machine(
    c: &Client,
    base: &str,
    cookie: &str,
    headers: &[(&str, &str)],
    mac: &str,
) -> Response {
    let mut r = c
        .post(format!("{base}/api/v1/machines"))
        .header("cookie", cookie)
        .json(&serde_json::json!({"mac": mac}));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

#[test]
fn a_session_cookie_works_for_reads_and_needs_csrf_for_writes() {
    let s = Server::start();
    let (c, base) = (client(), s.url.clone());
    // Nothing: 401 on the API, a redirect to the login page on /ui/.
    assert_eq!(
        c.get(format!("{base}/api/v1/machines"))
            .send()
            .unwrap()
            .status(),
        401
    );
    let r = c.get(format!("{base}/ui/")).send().unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/ui/login")
    );
    // A login sets a strict, HttpOnly cookie (no Secure: this server has no TLS listener).
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", s.token()))
        .send()
        .unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "{set}");
    let (cookie, csrf) = login(&c, &base, &s.token());
    assert_eq!(csrf.len(), 64);
    let r = c
        .get(format!("{base}/api/v1/machines"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A write without the CSRF header, with a wrong one, or from another origin: 403.
    let mac = "52:54:00:0c:5f:01";
    let host = base.trim_start_matches("http://");
    let origin = format!("http://{host}");
    for (headers, why) in [
        (vec![], "no CSRF header"),
        (
            vec![("x-csrf-token", "0".repeat(64).leak() as &str)],
            "a wrong CSRF value",
        ),
        (
            vec![
                ("x-csrf-token", csrf.as_str()),
                ("origin", "http://evil.example"),
            ],
            "a foreign Origin",
        ),
        (
            vec![
                ("x-csrf-token", csrf.as_str()),
                ("origin", "null"),
                ("sec-fetch-site", "cross-site"),
            ],
            "Origin null from another site",
        ),
    ] {
        let r = post_machine(&c, &base, &cookie, &headers, mac);
        assert_eq!(r.status(), 403, "{why}: {:?}", r.text());
    }
    let r = c
        .get(format!("{base}/api/v1/machines/{mac}"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "nothing was written");
    // The right header from our own origin: done.
    let r = post_machine(
        &c,
        &base,
        &cookie,
        &[("x-csrf-token", &csrf), ("origin", &origin)],
        mac,
    );
    assert_eq!(r.status(), 201, "{:?}", r.text());
    // Our own page under `Referrer-Policy: no-referrer`: the browser sends `Origin: null` and
    // says the request is same-origin.
    let same = [
        ("x-csrf-token", csrf.as_str()),
        ("origin", "null"),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = post_machine(&c, &base, &cookie, &same, "52:54:00:0c:5f:04");
    assert_eq!(r.status(), 201, "{:?}", r.text());
    // Another session's CSRF value does not fit this one.
    let (_, other_csrf) = login(&c, &base, &s.token());
    let r = post_machine(
        &c,
        &base,
        &cookie,
        &[("x-csrf-token", &other_csrf)],
        "52:54:00:0c:5f:02",
    );
    assert_eq!(r.status(), 403);
    // Bearer calls are unchanged: no CSRF header needed.
    let api = s.http();
    let r = api.json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({"mac": "52:54:00:0c:5f:03"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn a_wrong_token_is_refused_slowly_and_logout_revokes() {
    let s = Server::start();
    let (c, base) = (client(), s.url.clone());
    let started = Instant::now();
    let r = c
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", "nope"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "a failure waits"
    );
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().unwrap().contains("Wrong token"));
    let (cookie, csrf) = login(&c, &base, &s.token());
    // Logout needs the CSRF header too (a foreign page cannot log the operator out).
    let r = c
        .post(format!("{base}/ui/logout"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!("{base}/ui/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // The old cookie is dead everywhere.
    let r = c
        .get(format!("{base}/api/v1/machines"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/ui/"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[test]
fn an_expired_session_is_refused_and_sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        // Written before the server starts: an expired session and a live one.
        let store = inventory::RedbStore::open(&data.join("inventory.redb")).unwrap();
        use inventory::Store;
        let rec = |expires| inventory::TokenRecord {
            role: inventory::TokenRole::Session {
                expires: inventory::Timestamp(expires),
            },
            created: inventory::Timestamp(1),
            label: "test".into(),
        };
        store
            .put_token(&inventory::hash_token("expired"), &rec(1_000))
            .unwrap();
        store
            .put_token(&inventory::hash_token("live"), &rec(u64::MAX / 2))
            .unwrap();
    }
    let mut s = Server::start_in(&data, &[]);
    let c = client();
    let get = |base: &str, secret: &str| {
        c.get(format!("{base}/api/v1/machines"))
            .header("cookie", format!("provisioner_session={secret}"))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(get(&s.url, "expired"), 401);
    assert_eq!(get(&s.url, "live"), 200);
    assert_eq!(get(&s.url, "unknown"), 401);
    // A login's session lives in the store: a restarted server still accepts it.
    let (cookie, _) = login(&c, &s.url, &s.token());
    s.terminate();
    let s = Server::start_in(&data, &[]);
    let r = c
        .get(format!("{}/api/v1/machines", s.url))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn the_event_stream_accepts_the_session_and_ends_with_it() {
    let s = Server::start();
    let (cookie, csrf) = login(&client(), &s.url, &s.token());
    let c = client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let api = s.http();
    let r = api.json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({"mac": "52:54:00:0c:5f:10"}),
    );
    assert_eq!(r.status, 201);
    let mut r = c
        .get(format!("{}/api/v1/events/stream", s.url))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("52:54:00:0c:5f:10") {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    // Logout ends the open stream too (re-checked every 2 s), not only new requests: a tab
    // left open must not go on receiving the inventory's events.
    let out = client()
        .post(format!("{}/ui/logout", s.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .unwrap();
    assert_eq!(out.status(), 204);
    let logged_out = Instant::now();
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => assert!(
                logged_out.elapsed() < Duration::from_secs(10),
                "the stream still sends 10 s after logout"
            ),
            Err(e) => panic!("the stream did not end after logout: {e}"),
        }
    }
    // Without the cookie: 401.
    let r = c
        .get(format!("{}/api/v1/events/stream", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn dashboard_pages_carry_a_strict_csp() {
    let s = Server::start();
    let c = client();
    let (cookie, _) = login(&c, &s.url, &s.token());
    for path in [
        "/ui/login",
        "/ui/",
        "/ui/static/app.js",
        "/ui/static/nope.js",
    ] {
        let r = c
            .get(format!("{}{path}", s.url))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'self'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    let r = c.get(format!("{}/ui/static/app.js", s.url)).send().unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
}

/// With TLS on, the session cookie is `Secure` and a browser drops it over `http://`: a login
/// over plain HTTP is refused with the reason (no session made), and the login page says to
/// use HTTPS before a token is typed; over HTTPS the same login works.
#[test]
fn with_tls_on_a_plain_http_login_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(&tmp.path().join("data"), &["--tls-listen", "127.0.0.1:0"]);
    let c = client();
    let page = c
        .get(format!("{}/ui/login", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("TLS on"), "{page}");
    let r = c
        .post(format!("{}/ui/login", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", s.token()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().unwrap().contains("https://"));
    let https = s.https.clone().expect("an https listening line");
    let ca = std::fs::read(s.data_dir.join("tls/ca.pem")).unwrap();
    let tls = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let (cookie, _) = login(&tls, &https, &s.token());
    assert!(!cookie.is_empty());
}
