//! `provisioner serve` on the etcd store backend, against a real single-member etcd started by
//! each test (`inventory_etcd::test_server`: Debian's etcd on loopback, free ports, killed and
//! removed at the end).

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use inventory_etcd::test_server::EtcdServer;
use serde_json::json;

use crate::harness::{macs, Server};

fn serve_on_etcd(etcd: &EtcdServer, data_dir: &std::path::Path) -> Server {
    Server::start_in(data_dir, &["--etcd-endpoints", &etcd.endpoint])
}

/// A machine created through the API survives a restart (it lives in etcd, not the data
/// directory), /healthz says the store answers, and with etcd killed /healthz fails clearly
/// within the store's timeout instead of hanging.
#[test]
fn serve_keeps_the_inventory_in_etcd_and_health_reports_an_outage() {
    let mut etcd = EtcdServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mac = macs(0x1300, 1).remove(0);
    {
        let mut s = serve_on_etcd(&etcd, &data);
        let r = s.http().json(
            "POST",
            "/api/v1/machines",
            json!({"mac": mac, "hostname": "kept"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(s.terminate().code(), Some(0), "{}", s.log());
    }
    assert!(
        !data.join("inventory.redb").exists(),
        "the redb store was not used"
    );
    let s = serve_on_etcd(&etcd, &data);
    let api = s.http();
    let r = api.get(&format!("/api/v1/machines/{mac}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["hostname"], "kept");
    let health = api.get("/healthz");
    assert_eq!((health.status, health.text.as_str()), (200, "ok\n"));

    etcd.kill();
    let started = Instant::now();
    let health = api.get("/healthz");
    let took = started.elapsed();
    assert_eq!(health.status, 503, "{}", health.text);
    assert!(
        health.text.starts_with("store unreachable: etcd at"),
        "names the store: {}",
        health.text
    );
    assert!(
        health.text.contains("last error: http://"),
        "says what the member said (refused, no leader): {}",
        health.text
    );
    assert!(
        took < Duration::from_secs(12),
        "bounded by the 5 s store timeout, not a hang: {took:?}"
    );
    // The API says "unavailable, retry", not "internal error".
    let r = api.get("/api/v1/machines");
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("store_unavailable")),
        "{}",
        r.text
    );
}

/// Two provisioners on one etcd: a write through A's API is visible on B's API and arrives on
/// B's event stream, and A's operator token works on B (the token hash is in etcd).
#[test]
fn two_provisioners_share_one_inventory_through_etcd() {
    let etcd = EtcdServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = serve_on_etcd(&etcd, &tmp.path().join("a"));
    let b = serve_on_etcd(&etcd, &tmp.path().join("b"));
    assert!(
        !tmp.path().join("b/operator.token").exists(),
        "B found A's operator token in etcd and made none"
    );
    let api_a = a.http();
    let mut api_b = a.http();
    api_b.base = b.url.clone();
    let m = macs(0x1310, 2);
    let r = api_a.json("POST", "/api/v1/machines", json!({"mac": m[0]}));
    assert_eq!(r.status, 201, "{}", r.text);
    let resp = api_b
        .request("GET", "/api/v1/events/stream?after=0")
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut lines = BufReader::new(resp).lines();
    let mut next_data = || loop {
        let l = lines.next().expect("stream open").unwrap();
        if let Some(d) = l.strip_prefix("data:") {
            return serde_json::from_str::<serde_json::Value>(d.trim()).unwrap();
        }
    };
    let first = next_data();
    assert_eq!(
        (first["seq"].as_u64(), first["mac"].as_str()),
        (Some(1), Some(m[0].as_str()))
    );
    // Live: written on A after B's stream opened.
    let r = api_a.json("POST", "/api/v1/machines", json!({"mac": m[1]}));
    assert_eq!(r.status, 201, "{}", r.text);
    let second = next_data();
    assert_eq!(
        (second["seq"].as_u64(), second["mac"].as_str()),
        (Some(2), Some(m[1].as_str()))
    );
    let r = api_b.get(&format!("/api/v1/machines/{}", m[1]));
    assert_eq!(r.status, 200, "B's API sees A's write: {}", r.text);
}

/// With etcd unreachable an installed machine is still told to boot from its disk (the issue's
/// failure rule): the answer comes from the in-memory views, and only its record is skipped.
#[test]
fn an_installed_machine_boots_from_disk_while_etcd_is_down() {
    let mut etcd = EtcdServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let s = serve_on_etcd(&etcd, &tmp.path().join("data"));
    let api = s.http();
    let mac = macs(0x1310, 1).remove(0);
    let r = api.json("POST", "/api/v1/machines", json!({"mac": mac}));
    assert_eq!(r.status, 201, "{}", r.text);
    let out = s.cli(&["machines", "token", &mac]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("m1."), "{out:?}");
    let r = api.without_token().json(
        "POST",
        "/api/v1/nodes/register",
        json!({"registrationToken": token, "machineID": "0123abcd", "bootState": "active_boot"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let script = format!("/boot/ipxe?mac={mac}&platform=efi");
    let before = api.get(&script);
    assert_eq!(before.status, 200, "{}", before.text);
    assert!(before.text.contains("booting from disk"), "{}", before.text);

    etcd.kill();
    assert_eq!(api.get("/healthz").status, 503, "etcd is down");
    let during = api.get(&script);
    assert_eq!(during.status, 200, "{}", during.text);
    assert_eq!(during.text, before.text, "the same boot-from-disk script");
}
