//! Field interop (issue 10 item 7): the endpoints machines call take the URLs operators paste
//! from matchbox or netboot.xyz — extra `uuid=`, `serial=`, `buildarch=`, a cache-buster — and
//! settings an iPXE leaves empty (`platform=`): unknown parameters are ignored, empty values are
//! absent. A used parameter with a bad value is still refused, and the operator API stays strict.

use serde_json::json;

use crate::harness::{stdout, Api, Server};
use crate::uki;

const M: &str = "52:54:00:1a:0b:01";
const U: &str = "4c4c4544-0042-3510-8052-b4c04f4b4e31";

struct Rack {
    server: Server,
    api: Api,
    /// The UKI's bytes and its digest's hex.
    uki: Vec<u8>,
    hex: String,
    _dir: tempfile::TempDir,
}

/// A server, a UKI, a profile with a small template, and machine `M` with UUID `U`.
fn rack() -> Rack {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let u = uki::build(dir.path(), "hadron.efi", "Hadron (params test)");
    let digest = uki::import(&server, &u.path);
    let api = server.http();
    let tpl = "#cloud-config\nhostname: {{ hostname }}\n";
    let r = api.json(
        "POST",
        "/api/v1/profiles",
        json!({"name": "hadron", "uki": digest, "cloud_config": tpl}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.json(
        "POST",
        "/api/v1/machines",
        json!({"mac": M, "profile": "hadron", "hostname": "m1", "uuid": U}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    Rack {
        server,
        api,
        uki: std::fs::read(&u.path).unwrap(),
        hex: digest.trim_start_matches("sha256:").to_string(),
        _dir: dir,
    }
}

fn bytes(api: &Api, path: &str) -> (u16, Vec<u8>) {
    let r = api.request("GET", path).send().unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

#[test]
fn machine_endpoints_ignore_unknown_parameters_and_empty_values() {
    let r = rack();
    let anon = r.api.without_token();
    let ok = |path: &str| {
        let reply = anon.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        reply.text
    };
    // iPXE scripts: the URL, and matchbox's chain URL with its extra settings.
    let install = ok(&format!("/boot/ipxe?mac={M}&platform=efi"));
    assert!(
        install.contains(&format!(
            "chain --autofree {}/assets/{}/hadron.efi?mac={M} ",
            r.api.base, r.hex
        )),
        "{install}"
    );
    for extra in [
        "&buildarch=x86_64",
        "&uuid=4c4c4544-0042-3510-8052-b4c04f4b4e31&serial=CZ1234&hostname=&domain=",
        "&_=1700000000",
    ] {
        assert_eq!(
            ok(&format!("/boot/ipxe?mac={M}&platform=efi{extra}")),
            install
        );
    }
    // An empty platform is an absent one: ask iPXE for it, guarded so that an iPXE leaving
    // it empty is told so instead of being sent back here forever.
    let dispatch = ok(&format!("/boot/ipxe?mac={M}"));
    assert!(
        dispatch.contains("isset ${platform} || goto no_platform\nchain --replace --autofree ")
            && dispatch.contains(&format!(
                "/boot/ipxe?mac={M}&platform=${{platform}}\nexit 1\n"
            )),
        "{dispatch}"
    );
    assert_eq!(ok(&format!("/boot/ipxe?mac={M}&platform=")), dispatch);
    assert_eq!(
        ok(&format!("/boot/ipxe?platform=&mac={M}&buildarch=&serial")),
        dispatch
    );
    // A parameter the endpoint uses is still checked.
    let bad = anon.get(&format!("/boot/ipxe?mac={M}&platform=arm64"));
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(
        anon.get("/boot/ipxe?platform=efi&buildarch=x86_64").status,
        400
    );
    // UEFI HTTP boot and asset downloads: the bytes themselves.
    for path in [
        format!("/boot/efi?mac={M}&arch=16"),
        format!("/boot/efi?mac={M}&arch=16&serial="),
        format!("/assets/{}/hadron.efi?mac={M}&cachebust=42", r.hex),
        format!("/assets/{}/hadron.efi?mac=&x=1", r.hex),
    ] {
        let (status, body) = bytes(&anon, &path);
        assert_eq!(status, 200, "{path}");
        assert!(body == r.uki, "{path}: {} bytes, not the UKI", body.len());
    }
    // Configs, by the machine's token (header or query).
    let token = stdout(&r.server.cli(&["machines", "token", M]))
        .trim()
        .to_string();
    let want = "#cloud-config\nhostname: m1";
    let with_header = |path: &str| anon.send(anon.request("GET", path).bearer_auth(&token));
    for path in [
        format!("/config?uuid={U}&serial=S"),
        format!("/config?uuid={U}&serial=S&mac="),
        format!("/config?mac={M}&hostname=m1&buildarch=x86_64"),
        format!("/config/{M}?uuid={U}&_=1"),
        format!("/config/{M}?token="),
        // matchbox-style: both, naming the same machine.
        format!("/config?mac={M}&uuid={U}"),
    ] {
        let reply = with_header(&path);
        assert_eq!((reply.status, reply.text.as_str()), (200, want), "{path}");
    }
    // Both, naming two machines: refused, never one of them.
    let two = with_header(&format!(
        "/config?mac={M}&uuid=00000000-0000-0000-0000-0000000000ff"
    ));
    assert_eq!(two.status, 400, "{}", two.text);
    assert_eq!(
        ok(&format!("/config?uuid={U}&serial=S&token={token}")),
        want
    );
    // The machines' own API: extra parameters, an empty token next to the header.
    let progress = anon.send(
        anon.request("POST", "/api/v1/nodes/progress?token=&nonce=1")
            .bearer_auth(&token)
            .json(&json!({"state": "installing", "phase": "partition", "step": 3})),
    );
    assert_eq!(progress.status, 204, "{}", progress.text);
    let logs = anon.send(
        anon.request("POST", &format!("/api/v1/nodes/logs?token={token}&x=1"))
            .body("a line\n"),
    );
    assert_eq!(logs.status, 204, "{}", logs.text);
    assert_eq!(
        r.api.get(&format!("/api/v1/machines/{M}")).body["lifecycle"]["state"],
        "installing"
    );
}

#[test]
fn the_operator_api_stays_strict() {
    let r = rack();
    for path in [
        "/api/v1/machines?bogus=1",
        "/api/v1/events?after=0&verbose=1",
    ] {
        let reply = r.api.get(path);
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
        assert_eq!(reply.body["error"], "bad_request");
        assert!(reply.text.contains("unknown field"), "{}", reply.text);
    }
    assert_eq!(r.api.get("/api/v1/machines?state=registered").status, 200);
    // Routes that take no parameters refuse any: a `?dry_run=true` must not delete for real.
    for (method, path) in [
        ("DELETE", format!("/api/v1/machines/{M}?dry_run=true")),
        ("GET", format!("/api/v1/machines/{M}?foo=1")),
        ("GET", "/api/v1/profiles?foo=1".to_string()),
        ("POST", format!("/api/v1/machines/{M}/reprovision?force=1")),
        ("GET", format!("/api/v1/machines/{M}/token?x=1")),
    ] {
        let reply = r.api.send(r.api.request(method, &path));
        assert_eq!(reply.status, 400, "{method} {path}: {}", reply.text);
        assert!(
            reply.text.contains("takes no query parameters"),
            "{}",
            reply.text
        );
    }
    assert_eq!(
        r.api.get(&format!("/api/v1/machines/{M}")).status,
        200,
        "still there"
    );
}
