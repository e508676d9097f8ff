//! The API description (issue 15 item 3): `GET /api/v1/openapi.json` of the real binary is a
//! valid OpenAPI 3.1 document (checked against the official schema, vendored in
//! `testdata/openapi-3.1-schema.json`), it documents exactly the routes the router serves under
//! `/api/v1` (read from the route tables in the source), and every documented operation is
//! called here for real: each answer's status must be documented for its operation, its content
//! type must be the documented one, and its body must validate (JSON Schema 2020-12, `$ref`s
//! resolved against the whole document) against the schema documented for that status.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};

use crate::harness::{client_builder, Server};

const M1: &str = "52:54:00:0a:00:01";
const M2: &str = "52:54:00:0a:00:02";
const M3: &str = "52:54:00:0a:00:03";
const MISSING: &str = "52:54:00:0a:0f:ff";

/// `(method, path template)` of an operation, method lower-case as in the document.
type Op = (String, String);

/// Calls the server and checks each answer against the document.
struct Checker {
    doc: Value,
    base: String,
    client: Client,
    operator: String,
    /// Operations called so far.
    seen: BTreeSet<Op>,
    /// `(family, status)` of the error answers seen, per resource family.
    errors: BTreeSet<(String, u16)>,
}

/// `s` as one JSON pointer segment (RFC 6901 §3).
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Checker {
    fn request(&self, method: &str, path: &str) -> RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.client
            .request(m, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30))
    }

    /// `request` with the operator token.
    fn op(&self, method: &str, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(&self.operator)
    }

    /// Sends `r` (operation `method template`), checks the answer, returns status and JSON body.
    fn call(&mut self, method: &str, template: &str, r: RequestBuilder) -> (u16, Value) {
        let resp = r.send().expect("request sent");
        let status = resp.status().as_u16();
        let ctype = content_type(&resp);
        let text = resp.text().unwrap_or_default();
        let body = self.check(method, template, status, &ctype, &text);
        (status, body)
    }

    /// The documented answer of `template` for `status`, after recording the call.
    fn documented(&mut self, method: &str, template: &str, status: u16) -> (Value, String) {
        let m = method.to_ascii_lowercase();
        let op = &self.doc["paths"][template][&m];
        assert!(op.is_object(), "{method} {template} is not documented");
        let pointer = format!("/paths/{}/{m}/responses/{status}", escape(template));
        let resp = self.doc.pointer(&pointer).unwrap_or_else(|| {
            panic!("{method} {template} answered {status}, which is not documented for it")
        });
        self.seen.insert((m, template.to_string()));
        if status >= 400 {
            let family = template
                .trim_start_matches("/api/v1/")
                .split('/')
                .next()
                .unwrap()
                .to_string();
            self.errors.insert((family, status));
        }
        (resp.clone(), pointer)
    }

    fn check(
        &mut self,
        method: &str,
        template: &str,
        status: u16,
        ctype: &str,
        text: &str,
    ) -> Value {
        let (resp, pointer) = self.documented(method, template, status);
        let Some(content) = resp.get("content").and_then(Value::as_object) else {
            assert!(
                text.is_empty(),
                "{method} {template} {status}: documented without a body, got {text:?}"
            );
            return Value::Null;
        };
        assert!(
            content.contains_key(ctype),
            "{method} {template} {status}: content type {ctype:?} is not one of {:?}; body {text}",
            content.keys().collect::<Vec<_>>()
        );
        if ctype != "application/json" {
            return Value::Null;
        }
        let body: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{method} {template} {status}: not JSON ({e}): {text}"));
        let schema = format!("{pointer}/content/{}/schema", escape(ctype));
        self.validate(&schema, &body, &format!("{method} {template} {status}"));
        body
    }

    /// The problems of `instance` against the schema at `pointer` of the document.
    fn problems(&self, pointer: &str, instance: &Value, what: &str) -> Vec<String> {
        assert!(
            self.doc.pointer(pointer).is_some(),
            "{what}: no schema at {pointer}"
        );
        // The whole document is the root (its `#/components/...` references resolve), with the
        // answer's schema under `$defs` (a path template's braces have no place in a URI).
        let mut root = self.doc.clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["$defs"] = json!({"answer": self.doc.pointer(pointer).unwrap()});
        root["$ref"] = json!("#/$defs/answer");
        let v = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("{what}: the schema at {pointer} does not compile: {e}"));
        v.iter_errors(instance)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect()
    }

    /// Validates `instance` against the schema at `pointer` of the document.
    fn validate(&self, pointer: &str, instance: &Value, what: &str) {
        let problems = self.problems(pointer, instance, what);
        assert!(
            problems.is_empty(),
            "{what}: the answer does not match its documented schema ({pointer}):\n{}\nbody: {instance:#}",
            problems.join("\n")
        );
    }

    /// An SSE operation: checks the answer, then the first message's `data` against `schema`.
    fn stream(&mut self, template: &str, r: RequestBuilder, schema: &str) -> u16 {
        let resp = r.send().expect("request sent");
        let status = resp.status().as_u16();
        let ctype = content_type(&resp);
        if status != 200 {
            let text = resp.text().unwrap_or_default();
            self.check("GET", template, status, &ctype, &text);
            return status;
        }
        self.check("GET", template, status, &ctype, "");
        assert_eq!(ctype, "text/event-stream");
        let mut data = None;
        for line in BufReader::new(resp).lines().take(100) {
            let line = line.expect("reading the stream");
            if let Some(d) = line.strip_prefix("data:") {
                data = Some(d.trim().to_string());
                break;
            }
        }
        let data = data.unwrap_or_else(|| panic!("GET {template}: no data line"));
        let v: Value = serde_json::from_str(&data).unwrap();
        self.validate(
            &format!("/components/schemas/{schema}"),
            &v,
            &format!("GET {template} message"),
        );
        status
    }
}

fn content_type(resp: &reqwest::blocking::Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().trim().to_string())
        .unwrap_or_default()
}

/// The `(method, path)` routes the router serves under `/api/v1`, read from the route tables
/// in the source (`.route("PATH", get(a).post(b))`): the operator API (nested at `/api/v1`),
/// the machines' API and the description itself.
fn served_routes() -> BTreeSet<Op> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../provisioner/src");
    let mut files: Vec<(std::path::PathBuf, &str)> = std::fs::read_dir(src.join("api"))
        .unwrap()
        .map(|e| (e.unwrap().path(), "/api/v1"))
        .collect();
    files.push((src.join("boot/mod.rs"), ""));
    files.push((src.join("router.rs"), ""));
    let mut routes = BTreeSet::new();
    for (file, prefix) in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let call = &rest[..end];
            let path = call.split('"').nth(1).unwrap();
            let full = format!("{prefix}{path}");
            if !full.starts_with("/api/v1/") {
                continue;
            }
            for m in ["get", "post", "put", "delete", "patch"] {
                let called = call.match_indices(&format!("{m}(")).any(|(i, _)| {
                    i == 0
                        || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && call.as_bytes()[i - 1] != b'_'
                });
                if called {
                    routes.insert((m.to_string(), full.clone()));
                }
            }
        }
    }
    assert!(
        routes.len() > 20,
        "the route tables were not found: {routes:?}"
    );
    routes
}

fn documented_ops(doc: &Value) -> BTreeSet<Op> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.clone(), path.clone()));
        }
    }
    ops
}

#[test]
fn the_description_is_valid_openapi_3_1_and_matches_every_operations_answers() {
    let s = Server::start();
    let client = client_builder().build().unwrap();

    // Served without a token, as JSON, and a valid OpenAPI 3.1 document.
    let resp = client
        .get(format!("{}/api/v1/openapi.json", s.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(content_type(&resp), "application/json");
    let doc: Value = resp.json().unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let oas: Value =
        serde_json::from_str(include_str!("testdata/openapi-3.1-schema.json")).unwrap();
    let meta = jsonschema::draft202012::new(&oas).expect("the OpenAPI 3.1 schema compiles");
    let problems: Vec<String> = meta
        .iter_errors(&doc)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "not a valid OpenAPI 3.1 document:\n{}",
        problems.join("\n")
    );

    // Exactly the routes the router serves under /api/v1.
    let served = served_routes();
    let documented = documented_ops(&doc);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        not_served.is_empty(),
        "documented but not served: {not_served:?}"
    );

    let mut c = Checker {
        doc: doc.clone(),
        base: s.url.clone(),
        client,
        operator: s.token(),
        seen: BTreeSet::new(),
        errors: BTreeSet::new(),
    };
    // The check can fail: wrong shapes are refused through references and flattening.
    for (schema, wrong) in [
        (
            "Machine",
            json!({"mac": "52:54:00:00:00:01", "lifecycle": {"state": "nope", "since": 1}, "created": 1}),
        ),
        (
            "Machine",
            json!({"mac": "52-54-00-00-00-01", "lifecycle": {"state": "ready", "since": 1}, "created": 1}),
        ),
        ("Event", json!({"seq": 1, "at": 1, "type": "created"})),
        ("ErrorBody", json!({"error": "x"})),
    ] {
        let pointer = format!("/components/schemas/{schema}");
        assert!(
            !c.problems(&pointer, &wrong, schema).is_empty(),
            "{schema} accepts {wrong}"
        );
    }

    let r = c.request("GET", "/api/v1/openapi.json");
    let (_, again) = c.call("GET", "/api/v1/openapi.json", r);
    assert_eq!(again, doc);

    exercise_machines(&mut c);
    let digest = exercise_assets_and_profiles(&mut c);
    exercise_nodes(&mut c);
    exercise_history(&mut c);
    exercise_cleanup(&mut c, &digest);

    let missed: Vec<_> = documented.difference(&c.seen).collect();
    assert!(
        missed.is_empty(),
        "documented operations this test did not call: {missed:?}"
    );
    let families: BTreeSet<&str> = c.errors.iter().map(|(f, _)| f.as_str()).collect();
    for family in [
        "machines", "profiles", "events", "assets", "leases", "nodes",
    ] {
        assert!(
            families.contains(family),
            "no error answer of {family} checked: {:?}",
            c.errors
        );
    }
}

fn exercise_machines(c: &mut Checker) {
    let t = "/api/v1/machines";
    let r = c.op("POST", t).json(&json!({
        "mac": M1, "hostname": "node-1", "labels": {"rack": "r1"}, "ip": "198.18.0.10",
        "site": "lab", "boot": {"extra_cmdline": "quiet"}
    }));
    assert_eq!(c.call("POST", t, r).0, 201);
    let r = c.op("POST", t).json(&json!({"mac": M1}));
    assert_eq!(c.call("POST", t, r).0, 409);
    let r = c.op("POST", t).json(&json!({"hostname": "x"}));
    assert_eq!(c.call("POST", t, r).0, 400);
    let r = c.request("GET", t);
    assert_eq!(c.call("GET", t, r).0, 401);
    let r = c.op("GET", &format!("{t}?bogus=1"));
    assert_eq!(c.call("GET", t, r).0, 400);

    let t = "/api/v1/machines/import";
    let csv = format!("mac,hostname\n{M2},node-2\n{M3},node-3\n");
    let r = c.op("POST", t).header("content-type", "text/csv").body(csv);
    let (status, body) = c.call("POST", t, r);
    assert_eq!((status, body["imported"].as_u64()), (200, Some(2)));
    let r = c
        .op("POST", t)
        .header("content-type", "text/csv")
        .body("mac\nnot-a-mac\n");
    let (status, body) = c.call("POST", t, r);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_csv")),
        "{body}"
    );

    let t = "/api/v1/machines/{mac}";
    let r = c.op("GET", &format!("/api/v1/machines/{M1}"));
    assert_eq!(c.call("GET", t, r).0, 200);
    let bt = "/api/v1/machines/{mac}/boot";
    let r = c.op("GET", &format!("/api/v1/machines/{M1}/boot"));
    let (status, decision) = c.call("GET", bt, r);
    assert_eq!(status, 200, "{decision}");
    let r = c.op("GET", "/api/v1/machines/not-a-mac/boot");
    assert_eq!(c.call("GET", bt, r).0, 400);
    let r = c.op("GET", &format!("/api/v1/machines/{MISSING}"));
    assert_eq!(c.call("GET", t, r).0, 404);
    let r = c.op("GET", "/api/v1/machines/not-a-mac");
    assert_eq!(c.call("GET", t, r).0, 400);
    let r = c
        .op("PUT", &format!("/api/v1/machines/{M2}"))
        .json(&json!({"hostname": "node-2b", "uuid": "8F1D3C2A-0000-4000-8000-000000000002"}));
    assert_eq!(c.call("PUT", t, r).0, 200);
    let r = c
        .op("PUT", &format!("/api/v1/machines/{MISSING}"))
        .json(&json!({}));
    assert_eq!(c.call("PUT", t, r).0, 404);
    let r = c
        .op("PUT", &format!("/api/v1/machines/{M2}"))
        .json(&json!({"nope": 1}));
    assert_eq!(c.call("PUT", t, r).0, 400);
}

/// Uploads a test UKI, makes profile `hadron` of it for M1; the UKI's digest.
fn exercise_assets_and_profiles(c: &mut Checker) -> String {
    let dir = tempfile::tempdir().unwrap();
    let uki = crate::uki::build(dir.path(), "oapi.efi", "Described");
    let t = "/api/v1/assets";
    let r = c
        .op("POST", "/api/v1/assets?name=oapi.efi")
        .body(std::fs::read(&uki.path).unwrap());
    let (status, meta) = c.call("POST", t, r);
    assert_eq!(status, 201, "{meta}");
    let digest = meta["digest"].as_str().unwrap().to_string();
    let r = c
        .op("POST", "/api/v1/assets?name=junk.efi")
        .body("not an EFI image");
    assert_eq!(c.call("POST", t, r).0, 422);
    let r = c.op("GET", t);
    assert_eq!(c.call("GET", t, r).0, 200);

    let t = "/api/v1/assets/{digest}";
    let r = c.op("GET", &format!("/api/v1/assets/{digest}"));
    let (status, view) = c.call("GET", t, r);
    assert_eq!(status, 200);
    assert!(view["signature"]["verdict"].is_string(), "{view}");
    let r = c.op("GET", &format!("/api/v1/assets/sha256:{}", "0".repeat(64)));
    assert_eq!(c.call("GET", t, r).0, 404);
    let r = c.op("GET", "/api/v1/assets/xyz");
    assert_eq!(c.call("GET", t, r).0, 400);

    let t = "/api/v1/profiles";
    let hadron = json!({"name": "hadron", "uki": digest, "cmdline": "console=ttyS0",
                        "install_disk": "auto", "description": "test"});
    let r = c.op("POST", t).json(&hadron);
    assert_eq!(c.call("POST", t, r).0, 201);
    let r = c.op("POST", t).json(&hadron);
    assert_eq!(c.call("POST", t, r).0, 409);
    let r = c.op("POST", t).json(&json!({"name": "bad name!"}));
    assert_eq!(c.call("POST", t, r).0, 400);
    let r = c.op("POST", t).json(&json!({"name": "spare"}));
    assert_eq!(c.call("POST", t, r).0, 201);
    let r = c.op("GET", t);
    assert_eq!(c.call("GET", t, r).0, 200);

    let t = "/api/v1/profiles/{name}";
    let r = c.op("GET", "/api/v1/profiles/hadron");
    assert_eq!(c.call("GET", t, r).0, 200);
    let r = c.op("GET", "/api/v1/profiles/nope");
    assert_eq!(c.call("GET", t, r).0, 404);
    let r = c.op("PUT", "/api/v1/profiles/hadron").json(&hadron);
    assert_eq!(c.call("PUT", t, r).0, 200);
    let r = c.op("PUT", "/api/v1/profiles/other").json(&hadron);
    assert_eq!(c.call("PUT", t, r).0, 400);
    let r = c
        .op("PUT", "/api/v1/profiles/nope")
        .json(&json!({"name": "nope"}));
    assert_eq!(c.call("PUT", t, r).0, 200, "PUT creates");

    let t = "/api/v1/profiles/{name}/pcr11";
    let r = c
        .op("POST", "/api/v1/profiles/hadron/pcr11")
        .json(&json!({"from": "uki"}));
    let (status, body) = c.call("POST", t, r);
    assert_eq!(
        (status, body["source"].as_str()),
        (200, Some("uki")),
        "{body}"
    );
    let r = c
        .op("POST", "/api/v1/profiles/hadron/pcr11")
        .json(&json!({"from": "both"}));
    assert_eq!(c.call("POST", t, r).0, 400);
    let r = c
        .op("POST", "/api/v1/profiles/absent/pcr11")
        .json(&json!({"from": "none"}));
    assert_eq!(c.call("POST", t, r).0, 404);

    // M1 runs hadron from here on.
    let r = c
        .op("PUT", &format!("/api/v1/machines/{M1}"))
        .json(&json!({"hostname": "node-1", "profile": "hadron", "ip": "198.18.0.10"}));
    assert_eq!(c.call("PUT", "/api/v1/machines/{mac}", r).0, 200);
    digest
}

/// The machines' API with M1's token: attestation, progress, logs, registration.
fn exercise_nodes(c: &mut Checker) {
    let t = "/api/v1/machines/{mac}/token";
    let r = c.op("GET", &format!("/api/v1/machines/{M1}/token"));
    let (status, body) = c.call("GET", t, r);
    assert_eq!(status, 200);
    let token = body["token"].as_str().unwrap().to_string();
    let r = c.op("GET", &format!("/api/v1/machines/{MISSING}/token"));
    assert_eq!(c.call("GET", t, r).0, 404);

    let t = "/api/v1/nodes/attestation";
    let pcr7 = "07".repeat(32);
    let r = c
        .request("POST", t)
        .bearer_auth(&token)
        .json(&json!({"secure_boot": false, "pcrs": {"7": pcr7}}));
    assert_eq!(c.call("POST", t, r).0, 204);
    let r = c.request("POST", t).json(&json!({}));
    assert_eq!(c.call("POST", t, r).0, 401);
    let r = c
        .request("POST", t)
        .bearer_auth("not-a-token")
        .json(&json!({}));
    assert_eq!(c.call("POST", t, r).0, 401);
    let r = c
        .request("POST", t)
        .bearer_auth(&token)
        .json(&json!({"pcrs": {"24": pcr7}}));
    assert_eq!(c.call("POST", t, r).0, 400);

    let t = "/api/v1/nodes/progress";
    let r = c.request("POST", t).bearer_auth(&token).json(
        &json!({"state": "installing", "phase": "partition", "percent": 40, "message": "sda"}),
    );
    assert_eq!(c.call("POST", t, r).0, 204);
    let r = c
        .request("POST", t)
        .bearer_auth(&token)
        .json(&json!({"state": "bogus"}));
    assert_eq!(c.call("POST", t, r).0, 400);

    let t = "/api/v1/nodes/logs";
    let r = c
        .request("POST", &format!("{t}?token={token}"))
        .header("content-type", "text/plain")
        .body("formatting /dev/sda\nwriting the image\n");
    assert_eq!(c.call("POST", t, r).0, 204);
    let r = c.request("POST", t).body("no token\n");
    assert_eq!(c.call("POST", t, r).0, 401);

    let r = c
        .request("POST", "/api/v1/nodes/progress")
        .bearer_auth(&token)
        .json(&json!({"state": "installed"}));
    assert_eq!(c.call("POST", "/api/v1/nodes/progress", r).0, 204);

    let t = "/api/v1/nodes/register";
    let reg = json!({"registrationToken": token, "machineID": "0123456789abcdef", "hostname": "node-1",
                     "agentVersion": "v2.4", "addresses": ["198.18.0.10"], "bootState": "active_boot"});
    let r = c.request("POST", t).json(&reg);
    let (status, body) = c.call("POST", t, r);
    assert_eq!((status, body["id"].as_str()), (200, Some(M1)), "{body}");
    let r = c
        .request("POST", t)
        .json(&json!({"registrationToken": "nope", "machineID": "x"}));
    assert_eq!(c.call("POST", t, r).0, 401);
    let mut other = reg.clone();
    other["machineID"] = json!("fedcba9876543210");
    let r = c.request("POST", t).json(&other);
    assert_eq!(c.call("POST", t, r).0, 409);
    let r = c.request("POST", t).json(&json!({"machineID": "x"}));
    assert_eq!(c.call("POST", t, r).0, 400);

    // Ready now: an installer's report is refused.
    let r = c
        .request("POST", "/api/v1/nodes/progress")
        .bearer_auth(&token)
        .json(&json!({"state": "installing"}));
    assert_eq!(c.call("POST", "/api/v1/nodes/progress", r).0, 409);
    let r = c
        .request("POST", "/api/v1/nodes/attestation")
        .bearer_auth(&token)
        .json(&json!({}));
    assert_eq!(c.call("POST", "/api/v1/nodes/attestation", r).0, 409);
}

/// What the machine calls left: its record, logs, events, leases.
fn exercise_history(c: &mut Checker) {
    let r = c.op("GET", &format!("/api/v1/machines/{M1}"));
    let (_, m) = c.call("GET", "/api/v1/machines/{mac}", r);
    assert_eq!(m["lifecycle"]["state"], "ready", "{m}");
    assert!(
        m["registration"].is_object() && m["attestation"].is_object(),
        "{m}"
    );
    let r = c.op("GET", "/api/v1/machines?state=ready&profile=hadron");
    let (_, list) = c.call("GET", "/api/v1/machines", r);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let r = c.op("GET", "/api/v1/machines");
    c.call("GET", "/api/v1/machines", r);

    let t = "/api/v1/machines/{mac}/logs";
    let r = c.op("GET", &format!("/api/v1/machines/{M1}/logs"));
    let (_, lines) = c.call("GET", t, r);
    assert_eq!(lines.as_array().unwrap().len(), 2, "{lines}");
    let r = c.op("GET", &format!("/api/v1/machines/{MISSING}/logs"));
    assert_eq!(c.call("GET", t, r).0, 404);
    let r = c.op("GET", &format!("/api/v1/machines/{M1}/logs?limit=many"));
    assert_eq!(c.call("GET", t, r).0, 400);

    let t = "/api/v1/machines/{mac}/logs/stream";
    let r = c.op("GET", &format!("/api/v1/machines/{M1}/logs/stream"));
    assert_eq!(c.stream(t, r, "LogLine"), 200);
    let r = c.op("GET", &format!("/api/v1/machines/{MISSING}/logs/stream"));
    assert_eq!(c.stream(t, r, "LogLine"), 404);

    let t = "/api/v1/events";
    let r = c.op("GET", t);
    let (_, events) = c.call("GET", t, r);
    let kinds: BTreeSet<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for k in [
        "created",
        "updated",
        "state",
        "progress",
        "registered",
        "attested",
        "profile",
    ] {
        assert!(kinds.contains(k), "no {k} event to check: {kinds:?}");
    }
    let r = c.op("GET", &format!("{t}?machine=not-a-mac"));
    assert_eq!(c.call("GET", t, r).0, 400);

    let t = "/api/v1/events/stream";
    let r = c.op("GET", &format!("{t}?machine={M1}"));
    assert_eq!(c.stream(t, r, "Event"), 200);
    let r = c.op("GET", t).header("last-event-id", "x");
    assert_eq!(c.stream(t, r, "Event"), 400);

    let t = "/api/v1/leases";
    let r = c.op("GET", t);
    assert_eq!(c.call("GET", t, r).0, 200);
    let r = c.request("GET", t);
    assert_eq!(c.call("GET", t, r).0, 401);
}

/// Operator actions and removals, each with its refusals.
fn exercise_cleanup(c: &mut Checker, digest: &str) {
    let t = "/api/v1/machines/{mac}/token/rotate";
    let r = c.op("POST", &format!("/api/v1/machines/{M1}/token/rotate"));
    assert_eq!(c.call("POST", t, r).0, 200);
    let r = c.op("POST", &format!("/api/v1/machines/{MISSING}/token/rotate"));
    assert_eq!(c.call("POST", t, r).0, 404);

    let t = "/api/v1/machines/{mac}/reprovision";
    let r = c.op("POST", &format!("/api/v1/machines/{M1}/reprovision"));
    let (status, m) = c.call("POST", t, r);
    assert_eq!(
        (status, m["lifecycle"]["state"].as_str()),
        (200, Some("reprovision"))
    );
    let r = c.op("POST", &format!("/api/v1/machines/{MISSING}/reprovision"));
    assert_eq!(c.call("POST", t, r).0, 404);

    let t = "/api/v1/machines/{mac}/approve";
    let r = c.op("POST", &format!("/api/v1/machines/{M2}/approve"));
    assert_eq!(c.call("POST", t, r).0, 409);
    let r = c
        .op("POST", &format!("/api/v1/machines/{M2}/approve"))
        .json(&json!({"profile": "bad name!"}));
    assert_eq!(c.call("POST", t, r).0, 400);
    let r = c.op("POST", &format!("/api/v1/machines/{MISSING}/approve"));
    assert_eq!(c.call("POST", t, r).0, 404);

    let t = "/api/v1/assets/gc";
    let r = c.op("POST", t);
    assert_eq!(c.call("POST", t, r).0, 200);
    let r = c.op("POST", &format!("{t}?unreferenced=maybe"));
    assert_eq!(c.call("POST", t, r).0, 400);

    let at = "/api/v1/assets/{digest}";
    let r = c.op("DELETE", &format!("/api/v1/assets/{digest}"));
    assert_eq!(c.call("DELETE", at, r).0, 409);
    let pt = "/api/v1/profiles/{name}";
    let r = c.op("DELETE", "/api/v1/profiles/hadron");
    assert_eq!(c.call("DELETE", pt, r).0, 409);

    let mt = "/api/v1/machines/{mac}";
    let r = c.op("DELETE", &format!("/api/v1/machines/{M1}"));
    assert_eq!(c.call("DELETE", mt, r).0, 204);
    let r = c.op("DELETE", &format!("/api/v1/machines/{M1}"));
    assert_eq!(c.call("DELETE", mt, r).0, 404);
    for name in ["hadron", "spare", "nope"] {
        let r = c.op("DELETE", &format!("/api/v1/profiles/{name}"));
        assert_eq!(c.call("DELETE", pt, r).0, 204);
    }
    let r = c.op("DELETE", "/api/v1/profiles/nope");
    assert_eq!(c.call("DELETE", pt, r).0, 404);
    let r = c.op("DELETE", &format!("/api/v1/assets/{digest}"));
    assert_eq!(c.call("DELETE", at, r).0, 200);
    let r = c.op("DELETE", &format!("/api/v1/assets/{digest}"));
    assert_eq!(c.call("DELETE", at, r).0, 404);
}
