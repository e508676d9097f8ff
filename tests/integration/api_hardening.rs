//! Issue 18, item 9: secrets stay out of the log, the bearer scheme is case-insensitive, error
//! answers do not echo megabytes, a machine record is bounded, the database is private.

use std::time::{Duration, Instant};

use crate::harness::{serve_cmd, Server};

#[test]
fn query_tokens_never_reach_a_debug_log() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("p.toml");
    std::fs::write(&cfg, "[log]\nlevel = \"debug\"\n").unwrap();
    let data = tmp.path().join("data");
    let server = Server::spawn(serve_cmd(&cfg, &data), &data);
    let anon = server.http().without_token();
    const SECRET: &str = "S3CRETtok3nVALUE";
    anon.get(&format!(
        "/config?uuid=4c4c4544-0042-3510-8052-b4c04f4b4e31&token={SECRET}"
    ));
    anon.send(
        anon.request("POST", &format!("/api/v1/nodes/progress?token={SECRET}"))
            .body("{}"),
    );
    anon.send(
        anon.request("GET", "/api/v1/machines")
            .header("authorization", format!("Bearer {SECRET}")),
    );
    // The request lines are logged (redacted) at debug level: wait for them, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches("token=REDACTED").count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log();
    assert!(!log.contains(SECRET), "the token is in the log:\n{log}");
    assert!(
        log.contains("uri=/config?uuid=4c4c4544-0042-3510-8052-b4c04f4b4e31&token=REDACTED"),
        "the request was not logged:\n{log}"
    );
}

#[test]
fn lower_case_bearer_scheme_is_accepted() {
    let server = Server::start();
    let anon = server.http().without_token();
    let token = server.token();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = anon.send(
            anon.request("GET", "/api/v1/machines")
                .header("authorization", format!("{scheme} {token}")),
        );
        assert_eq!(r.status, 200, "{scheme}: {}", r.text);
    }
    let r = anon.send(
        anon.request("GET", "/api/v1/machines")
            .header("authorization", format!("Basic {token}")),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn huge_values_get_short_errors_and_labels_are_capped() {
    let server = Server::start();
    let api = server.http();
    let huge = "x".repeat(10_000_000);
    for body in [
        serde_json::json!({"mac": "52:54:00:00:00:01", "hostname": huge}),
        serde_json::json!({"mac": huge}),
        serde_json::json!({"mac": "52:54:00:00:00:01", "labels": {"rack": huge}}),
        // serde's own message quotes the string it refused.
        serde_json::json!({"mac": "52:54:00:00:00:01", "labels": huge}),
    ] {
        let r = api.json("POST", "/api/v1/machines", body);
        assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
        assert!(r.text.len() < 2048, "a {}-byte error answer", r.text.len());
        let detail = r.body["detail"].as_str().unwrap();
        // Either an excerpt of the value with its length, or only the length and the limit.
        assert!(
            detail.contains("… (") || detail.contains("bytes long; at most"),
            "{detail}"
        );
    }
    let labels: serde_json::Map<String, serde_json::Value> = (0..200_000)
        .map(|i| (format!("k{i}"), serde_json::Value::from("v")))
        .collect();
    let r = api.json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({"mac": "52:54:00:00:00:02", "labels": labels}),
    );
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
    assert_eq!(
        r.body["detail"],
        "invalid labels \"200000 labels\": at most 64 labels per machine"
    );
    let labels: serde_json::Map<String, serde_json::Value> = (0..64)
        .map(|i| (format!("k{i}"), serde_json::Value::from("v")))
        .collect();
    let r = api.json(
        "POST",
        "/api/v1/machines",
        serde_json::json!({"mac": "52:54:00:00:00:02", "labels": labels}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn inventory_database_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    let db = data.join("inventory.redb");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600);
    assert!(s.terminate().success());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = Server::start_in(&data, &[]);
    assert_eq!(
        mode(&db),
        0o600,
        "an existing world-readable database is narrowed"
    );
    assert!(
        s.log().contains("was readable by others (mode 644)"),
        "{}",
        s.log()
    );
}

/// Wrong operator tokens: each is logged (never the token), beyond a burst of 20 they answer 429
/// naming what to do, and the operator's own token still passes; API answers are not cached.
#[test]
fn wrong_operator_tokens_are_limited_and_logged_and_answers_not_cached() {
    let server = Server::start();
    let api = server.http();
    let anon = api.without_token();
    let guess = |n: usize| {
        anon.send(
            anon.request("GET", "/api/v1/machines")
                .header("authorization", format!("Bearer wrong-guess-{n}")),
        )
    };
    let statuses: Vec<u16> = (0..25).map(|n| guess(n).status).collect();
    assert!(
        statuses[..20].iter().all(|s| *s == 401),
        "the first 20 failures answer 401: {statuses:?}"
    );
    assert_eq!(statuses[24], 429, "failures beyond the burst: {statuses:?}");
    let limited = guess(99);
    assert_eq!(
        limited.body["error"], "too_many_failures",
        "{}",
        limited.text
    );
    assert!(limited.text.contains("operator.token"), "{}", limited.text);
    // The right token is never limited.
    let r = api.send(api.request("GET", "/api/v1/machines"));
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = api
        .request("GET", "/api/v1/machines")
        .send()
        .expect("request sent");
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let log = server.log();
    assert!(
        log.matches("operator token not recognised").count() >= 20,
        "failures are logged:\n{log}"
    );
    assert!(
        !log.contains("wrong-guess-"),
        "a token reached the log:\n{log}"
    );
}
