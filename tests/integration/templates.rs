//! Hostile and runaway config templates (issue 18, item 5): saving one ends quickly with a clear
//! 400, a template that is cheap for the sample machine but costly for a real one is a clear 500
//! at `/config`, and the server keeps answering and still ends on SIGTERM.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Server;

/// 80 bytes, 10^10 loop steps: before the fix, one save never finished and two stopped the server.
const NESTED_LOOPS: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
/// 56 bytes, 200 MB of output.
const BIG_OUTPUT: &str = "{% for i in range(100000) %}{{ \"x\" * 2000 }}{% endfor %}";

/// POSTs a profile with `template`; returns status, body text and how long it took.
fn save(s: &Server, name: &str, template: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let r = s.http().json(
        "POST",
        "/api/v1/profiles",
        json!({"name": name, "cloud_config": template}),
    );
    (r.status, r.text, started.elapsed())
}

#[test]
fn runaway_template_saves_end_quickly_with_a_clear_400() {
    let mut s = Server::start();
    let (status, text, took) = save(&s, "loops", NESTED_LOOPS);
    assert_eq!(status, 400, "{text}");
    assert!(took < Duration::from_secs(3), "save took {took:?}");
    assert!(
        text.contains(
            "config template of profile loops, line 1: rendering stopped after its work limit"
        ),
        "{text}"
    );
    let (status, text, took) = save(&s, "big", BIG_OUTPUT);
    assert_eq!(status, 400, "{text}");
    assert!(took < Duration::from_secs(3), "save took {took:?}");
    assert!(
        text.contains("profile big: the rendered config passed the output limit of 1048576 bytes"),
        "{text}"
    );
    let (status, text, _) = save(&s, "long", &"#".repeat(64 * 1024 + 1));
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("profile long is 65537 bytes, over the limit of 65536 bytes"),
        "{text}"
    );
    // Nothing was stored.
    let list = s.http().get("/api/v1/profiles");
    assert_eq!(list.body, json!([]), "{}", list.text);
    // Several at once (two used to stop the HTTP server), while /healthz keeps answering;
    // then SIGTERM ends the server promptly, with saves still arriving.
    let url = s.url.clone();
    let token = s.token();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let savers: Vec<_> = (0..4)
        .map(|i| {
            let (url, token, stop, answered) =
                (url.clone(), token.clone(), stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let client = crate::harness::client_builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut statuses = Vec::new();
                // Bounded: at most 50 saves per thread.
                for n in 0..50 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = client
                        .post(format!("{url}/api/v1/profiles"))
                        .bearer_auth(&token)
                        .json(&json!({"name": format!("l{i}-{n}"), "cloud_config": NESTED_LOOPS}))
                        .send();
                    match r {
                        Ok(r) => {
                            statuses.push(r.status().as_u16());
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => break, // the server went away (SIGTERM below)
                    }
                }
                statuses
            })
        })
        .collect();
    // Bounded wait until the savers are well under way.
    let until = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::Relaxed) < 20 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        answered.load(Ordering::Relaxed) >= 20,
        "saves are not being answered"
    );
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(s.http().without_token().get("/healthz").status, 200);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let started = Instant::now();
    assert!(s.terminate().success(), "clean exit on SIGTERM");
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    let statuses: Vec<u16> = savers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(statuses.len() >= 20, "{statuses:?}");
    assert!(statuses.iter().all(|&st| st == 400), "{statuses:?}");
}

#[test]
fn a_template_costly_only_for_a_real_machine_is_a_clear_500_at_config() {
    let mut s = Server::start();
    let api = s.http();
    // The sample machine has no labels: 0 steps at save time. A machine with 64 labels (the
    // most a record may hold): 64 × 10,000 steps, far over the work limit.
    let tpl = "#cloud-config\n{% for k in labels %}{% for j in range(10000) %}{% endfor %}{% endfor %}hostname: {{ hostname }}\n";
    let r = api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "per-label", "cloud_config": tpl}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..64).map(|i| (format!("l{i}"), json!("v"))).collect();
    for (mac, labels) in [
        ("52:54:00:77:00:01", json!({"rack": "a1"})),
        ("52:54:00:77:00:02", json!(labels)),
    ] {
        let r = api.json(
            "POST",
            "/api/v1/machines",
            json!({"mac": mac, "profile": "per-label", "labels": labels}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let config = |mac: &str| {
        let token = api.get(&format!("/api/v1/machines/{mac}/token")).body["token"]
            .as_str()
            .expect("a token")
            .to_string();
        let started = Instant::now();
        let r = api
            .without_token()
            .get(&format!("/config/{mac}?token={token}"));
        (r.status, r.text, started.elapsed())
    };
    let (status, text, _) = config("52:54:00:77:00:01");
    assert_eq!(
        (status, text.as_str()),
        (200, "#cloud-config\nhostname: node-525400770001")
    );
    let (status, text, took) = config("52:54:00:77:00:02");
    assert_eq!(status, 500, "{text}");
    assert!(took < Duration::from_secs(3), "config took {took:?}");
    assert!(
        text.contains(
            "config template of profile per-label, line 2: rendering stopped after its work limit"
        ),
        "{text}"
    );
    assert!(text.contains("simplify the template"), "{text}");
    // The server is fine, and the failure is on the machine's record for the operator.
    assert_eq!(api.without_token().get("/healthz").status, 200);
    let events = api.get("/api/v1/events?machine=52:54:00:77:00:02").text;
    assert!(events.contains("work limit"), "{events}");
    assert!(s.terminate().success());
}

/// Issue 10 item 5: the Kairos agent silently replaces a config that is not a `#cloud-config`
/// YAML mapping with an empty one, so such a template is refused when it is saved.
#[test]
fn a_template_that_is_not_a_cloud_config_mapping_is_refused_at_save() {
    let mut s = Server::start();
    let advice = "The Kairos agent silently replaces such a config with an empty one (the install \
                  never starts): begin the template with the line #cloud-config";
    let refused = [
        (
            "issue",
            "install:\n  device: {{ install.device }}\n  auto: true\n",
            "config template of profile issue: the rendered config is not a #cloud-config YAML \
             mapping: its first line is \"install:\", not exactly \"#cloud-config\".",
        ),
        (
            "spaced",
            "#cloud-config \nhostname: {{ hostname }}\n",
            "not a #cloud-config YAML mapping: its first line is \"#cloud-config \", not exactly",
        ),
        (
            "list",
            "#cloud-config\n- {{ hostname }}\n",
            "not a #cloud-config YAML mapping: its top level (line 2) is a list, not a mapping",
        ),
        (
            "broken",
            "#cloud-config\nhostname: {{ hostname }}\ninstall: device: x\n",
            "not a #cloud-config YAML mapping: it is not valid YAML: ",
        ),
        (
            "twice",
            "#cloud-config\ninstall:\n  auto: true\ninstall:\n  reboot: true\n",
            "not a #cloud-config YAML mapping: key \"install\" appears twice in one mapping (again at line 4)",
        ),
    ];
    for (name, template, want) in refused {
        let (status, text, _) = save(&s, name, template);
        assert_eq!(status, 400, "{name}: {text}");
        let detail = serde_json::from_str::<serde_json::Value>(&text).unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(detail.contains(want), "{name}: {detail}");
        assert!(detail.contains(advice), "{name}: {detail}");
    }
    assert_eq!(s.http().get("/api/v1/profiles").body, json!([]));
    // A cloud-config mapping, and the empty template (the zero-touch default), are saved.
    let (status, text, _) = save(
        &s,
        "good",
        "#cloud-config\ninstall:\n  device: {{ install.device | tojson }}\n  auto: true\n",
    );
    assert_eq!(status, 201, "{text}");
    let (status, text, _) = save(&s, "zero-touch", "");
    assert_eq!(status, 201, "{text}");
    // Replacing a good profile with a bad template is refused the same way.
    let r = s.http().json(
        "PUT",
        "/api/v1/profiles/good",
        json!({"name": "good", "cloud_config": "hostname: x\n"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("its first line is \\\"hostname: x\\\""),
        "{}",
        r.text
    );
    assert!(s.terminate().success());
}

/// A template that is a mapping for the sample machine but not for a real one (a label's value
/// spliced in without `| tojson`): `/config` answers 500 saying why, and the machine's history
/// says so; the config is never served.
#[test]
fn a_config_that_is_not_a_mapping_for_a_real_machine_is_a_clear_500_with_an_event() {
    let mut s = Server::start();
    let api = s.http();
    let tpl = "#cloud-config\nhostname: {{ hostname }}\n{% for k, v in labels | items %}{{ k }}: {{ v }}\n{% endfor %}";
    let r = api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "spliced", "cloud_config": tpl}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    for (mac, rack) in [("52:54:00:78:00:01", "a1"), ("52:54:00:78:00:02", "a1: {x")] {
        let r = api.json(
            "POST",
            "/api/v1/machines",
            json!({"mac": mac, "profile": "spliced", "labels": {"rack": rack}}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let config = |mac: &str| {
        let token = api.get(&format!("/api/v1/machines/{mac}/token")).body["token"]
            .as_str()
            .expect("a token")
            .to_string();
        let r = api
            .without_token()
            .get(&format!("/config/{mac}?token={token}"));
        (r.status, r.text)
    };
    let (status, text) = config("52:54:00:78:00:01");
    assert_eq!(
        (status, text.as_str()),
        (
            200,
            "#cloud-config\nhostname: node-525400780001\nrack: a1\n"
        )
    );
    let (status, text) = config("52:54:00:78:00:02");
    assert_eq!(status, 500, "{text}");
    assert!(
        text.starts_with(
            "config template of profile spliced: the rendered config is not a \
             #cloud-config YAML mapping: it is not valid YAML: "
        ),
        "{text}"
    );
    assert!(
        !text.contains("hostname: node-"),
        "the config leaked: {text}"
    );
    crate::harness::eventually("the failure event", || {
        let events = api.get("/api/v1/events?machine=52:54:00:78:00:02").text;
        if events.contains("the rendered config is not a #cloud-config YAML mapping") {
            Ok(())
        } else {
            Err(events)
        }
    });
    assert!(s.terminate().success());
}
