//! The operator API over HTTP: auth, machines, profiles, import, events and the SSE stream.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::harness::{macs, Server};

#[test]
fn health_and_metrics_need_no_token_but_api_does() {
    let s = Server::start();
    let api = s.http();
    let anon = api.without_token();
    assert_eq!(anon.get("/healthz").status, 200);
    let m = anon.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.text
            .contains("provisioner_machines{state=\"registered\"} 0"),
        "{}",
        m.text
    );
    let r = anon.get("/api/v1/machines");
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "unauthorized");
    let mut wrong = api.without_token();
    wrong.token = Some("0".repeat(64));
    assert_eq!(wrong.get("/api/v1/machines").status, 401);
    assert_eq!(api.get("/api/v1/machines").status, 200);
    let after = anon.get("/metrics").text;
    assert!(
        after.contains("provisioner_http_responses_total{class=\"4xx\"} 2"),
        "{after}"
    );
}

#[test]
fn operator_token_is_private_and_written_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    let path = data.join("operator.token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = s.token();
    assert_eq!(token.len(), 64);
    assert!(s.terminate().success());
    let s2 = Server::start_in(&data, &[]);
    assert_eq!(s2.token(), token, "a restart must not replace the token");
    assert_eq!(s2.http().get("/api/v1/machines").status, 200);
}

#[test]
fn machines_crud_with_errors_that_name_the_input() {
    let s = Server::start();
    let api = s.http();
    let r = api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "hadron", "install_disk": "/dev/vda"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": "52-54-00-AB-CD-01", "hostname": "node-1", "profile": "hadron",
               "labels": {"rack": "a1"}, "ip": "198.18.0.21", "uuid": "4C4C4544004235108052B4C04F4B4E31"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["mac"], "52:54:00:ab:cd:01");
    assert_eq!(r.body["lifecycle"]["state"], "registered");
    assert_eq!(r.body["uuid"], "4c4c4544-0042-3510-8052-b4c04f4b4e31");

    let r = api.get("/api/v1/machines/5254.00ab.cd01");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["hostname"], "node-1");

    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": "52:54:00:ab:cd:01"}),
    );
    assert_eq!((r.status, r.body["error"].as_str()), (409, Some("exists")));

    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": "52:54:00:ab:cd:zz"}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "bad_mac");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("\"52:54:00:ab:cd:zz\""),
        "{}",
        r.text
    );

    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": "52:54:00:ab:cd:02", "profile": "nope"}),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("unknown_profile"))
    );
    assert!(r.body["detail"].as_str().unwrap().contains("\"nope\""));

    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": "52:54:00:ab:cd:02", "ip": "198.18.0.21"}),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (409, Some("ip_reserved")),
        "{}",
        r.text
    );

    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": "52:54:00:ab:cd:02", "hostnme": "x"}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body["detail"].as_str().unwrap().contains("hostnme"),
        "{}",
        r.text
    );

    let r = api.send(
        api.request("POST", "/api/v1/machines")
            .header("content-type", "application/json")
            .body("{\"mac\":"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "bad_request", "{}", r.text);
    // A field the schema does not know is bad input too (400, not axum's 422), on every route.
    for (method, path) in [
        ("PUT", "/api/v1/machines/52:54:00:ab:cd:01"),
        ("POST", "/api/v1/profiles"),
    ] {
        let r = api.json(method, path, json!({"bogus": 1}));
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text);
        assert!(r.text.contains("bogus"), "names the field: {}", r.text);
    }

    let r = api.json(
        "PUT",
        "/api/v1/machines/52:54:00:ab:cd:01",
        json!({"hostname": "node-9", "profile": "hadron"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["hostname"], "node-9");
    assert!(
        r.body.get("ip").is_none(),
        "PUT replaces the spec: reservation released"
    );
    // The released reservation can be taken by another machine now.
    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": "52:54:00:ab:cd:02", "ip": "198.18.0.21"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    let r = api.json("DELETE", "/api/v1/profiles/hadron", json!({}));
    assert_eq!((r.status, r.body["error"].as_str()), (409, Some("in_use")));

    assert_eq!(
        api.send(api.request("DELETE", "/api/v1/machines/52:54:00:ab:cd:01"))
            .status,
        204
    );
    let r = api.get("/api/v1/machines/52:54:00:ab:cd:01");
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(
        api.send(api.request("DELETE", "/api/v1/profiles/hadron"))
            .status,
        204
    );
    assert_eq!(api.get("/api/v1/profiles/hadron").status, 404);
}

#[test]
fn lifecycle_actions_and_illegal_transitions() {
    let s = Server::start();
    let api = s.http();
    api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": "52:54:00:00:00:01"}),
    );
    let r = api.json(
        "POST",
        "/api/v1/machines/52:54:00:00:00:01/approve",
        json!({}),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (409, Some("illegal_transition"))
    );
    assert!(
        r.body["detail"].as_str().unwrap().contains("registered"),
        "{}",
        r.text
    );
    let r = api.json(
        "POST",
        "/api/v1/machines/52:54:00:00:00:01/reprovision",
        json!({}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body["lifecycle"]["state"], "reprovision");
    let evs = api.get("/api/v1/events?machine=52:54:00:00:00:01").body;
    let kinds: Vec<&str> = evs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "operator", "state"]);
    assert_eq!(evs[2]["from"], "registered");
    assert_eq!(evs[2]["to"], "reprovision");
}

#[test]
fn csv_import_is_all_or_nothing_with_line_numbers() {
    let s = Server::start();
    let api = s.http();
    let good = macs(0x100, 3);
    let csv = format!(
        "mac,hostname,rack\n{},n1,a1\n{},n2,a1\nnot-a-mac,n3\n{},bad_name,a2\n",
        good[0], good[1], good[2]
    );
    let r = api.csv(csv);
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "bad_csv");
    let lines: Vec<u64> = r.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [4, 5], "{}", r.text);
    assert_eq!(
        api.get("/api/v1/machines").body.as_array().unwrap().len(),
        0,
        "nothing half-applied"
    );

    // A valid file whose last line collides with an existing machine also imports nothing.
    api.json("POST", "/api/v1/machines", json!({"mac": good[2]}));
    let r = api.csv(format!("{},n1\n{},n2\n{},n3\n", good[0], good[1], good[2]));
    assert_eq!((r.status, r.body["error"].as_str()), (409, Some("exists")));
    assert_eq!(
        api.get("/api/v1/machines").body.as_array().unwrap().len(),
        1
    );

    let r = api.csv(format!("{},n1,,rack=a1\n{},n2\n", good[0], good[1]));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["imported"], 2);
    let m = api.get(&format!("/api/v1/machines/{}", good[0])).body;
    assert_eq!(m["labels"]["rack"], "a1");
}

#[test]
fn event_stream_replays_then_follows_live() {
    let s = Server::start();
    let api = s.http();
    let m = macs(0x200, 2);
    api.json("POST", "/api/v1/machines", json!({"mac": m[0]}));
    let resp = api
        .request("GET", "/api/v1/events/stream?after=0")
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut lines = BufReader::new(resp).lines();
    let mut next_data = || loop {
        let l = lines.next().expect("stream open").unwrap();
        if let Some(d) = l.strip_prefix("data:") {
            return serde_json::from_str::<serde_json::Value>(d.trim()).unwrap();
        }
    };
    let first = next_data();
    assert_eq!(
        (first["seq"].as_u64(), first["type"].as_str()),
        (Some(1), Some("created"))
    );
    // A change made after the stream opened arrives live.
    let api2 = s.http();
    let mac1 = m[1].clone();
    std::thread::spawn(move || api2.json("POST", "/api/v1/machines", json!({"mac": mac1})));
    let second = next_data();
    assert_eq!(second["seq"], 2);
    assert_eq!(second["mac"], m[1].as_str());
}

#[test]
fn events_filter_by_machine_and_after() {
    let s = Server::start();
    let api = s.http();
    let m = macs(0x300, 3);
    api.csv(m.join("\n"));
    api.json(
        "POST",
        &format!("/api/v1/machines/{}/reprovision", m[1]),
        json!({}),
    );
    let all = api.get("/api/v1/events").body;
    assert_eq!(all.as_array().unwrap().len(), 5);
    let after3 = api.get("/api/v1/events?after=3").body;
    assert_eq!(
        after3
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 5]
    );
    let one = api.get(&format!("/api/v1/events?machine={}", m[1])).body;
    assert_eq!(one.as_array().unwrap().len(), 3);
    let r = api.get("/api/v1/events?machine=xyz");
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("bad_mac")));
    let r = api.get("/api/v1/events?after=-1");
    assert_eq!(r.status, 400);
}
