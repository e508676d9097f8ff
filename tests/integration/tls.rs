//! TLS for the operator API and the machine endpoints (issue 14, item 4), against the real
//! binary: curl and the CLI trusting the self-issued CA or pinning it, the material kept across
//! a restart, `tls.require_for_secrets`, the handshake timeout, operator certificates.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{binary, serve_cmd, stderr, stdout, Server};

/// A server with TLS on `127.0.0.1:0` and `toml` as its config (a `[tls]` section at least).
fn start(dir: &Path, toml: &str) -> Server {
    let config = dir.join("provisioner.toml");
    std::fs::write(&config, toml).unwrap();
    let mut cmd = serve_cmd(&config, &dir.join("data"));
    cmd.args(["--tls-listen", "127.0.0.1:0"]);
    let s = Server::spawn(cmd, &dir.join("data"));
    assert!(s.https.is_some(), "no https listening line:\n{}", s.log());
    s
}

fn https(s: &Server) -> String {
    s.https.clone().unwrap()
}

fn ca(s: &Server) -> String {
    s.data_dir.join("tls/ca.pem").display().to_string()
}

/// curl with `args`; returns (exit code, HTTP status or 0, body).
fn curl(args: &[&str]) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        format!("{body}{}", stderr(&out)),
    )
}

/// The CA fingerprint the server logged (`ca_fingerprint=sha256:…`).
fn logged_fingerprint(s: &Server) -> String {
    let log = s.log();
    let at = log.find("ca_fingerprint=").expect("fingerprint in the log") + 15;
    log[at..at + 71].to_string()
}

#[test]
fn curl_with_the_ca_lists_machines_and_without_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "[tls]\n");
    let auth = format!("Authorization: Bearer {}", s.token());
    let url = format!("{}/api/v1/machines", https(&s));
    let (code, status, body) = curl(&["--cacert", &ca(&s), &url, "-H", &auth]);
    assert_eq!((code, status), (0, 200), "{body}");
    assert_eq!(body.trim(), "[]");
    // Without the CA: curl's "SSL certificate problem" (exit 60).
    let (code, _, body) = curl(&[&url, "-H", &auth]);
    assert_eq!(code, 60, "{body}");
    // The startup log says where the CA is and its fingerprint.
    let log = s.log();
    assert!(
        log.contains(&format!("self-issued CA in {}", ca(&s))),
        "{log}"
    );
    assert!(logged_fingerprint(&s).starts_with("sha256:"));
    // Keys are 0600.
    use std::os::unix::fs::PermissionsExt;
    for k in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(s.data_dir.join("tls").join(k))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{k}");
    }
    // The key is RSA (what OVMF's TLS needs for item 5).
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", &ca(&s)])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("rsaEncryption") && stdout(&out).contains("(2048 bit)"));
}

#[test]
fn cli_trusts_a_ca_file_or_a_pinned_fingerprint_and_names_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "[tls]\n");
    let empty = dir.path().join("elsewhere");
    std::fs::create_dir_all(&empty).unwrap();
    // Run as from another host: no data directory to find the CA or the token in.
    let cli = |args: &[&str]| -> Output {
        Command::new(binary())
            .args([
                "machines",
                "list",
                "--url",
                &https(&s),
                "--token",
                &s.token(),
            ])
            .args(args)
            .env("PROVISIONER_DATA_DIR", &empty)
            .env_remove("PROVISIONER_CA")
            .env_remove("PROVISIONER_CA_FINGERPRINT")
            .output()
            .unwrap()
    };
    assert_eq!(
        s.http()
            .json(
                "POST",
                "/api/v1/machines",
                serde_json::json!({"mac": "52:54:00:aa:00:01"})
            )
            .status,
        201
    );
    let o = cli(&["--ca-file", &ca(&s)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("52:54:00:aa:00:01"), "{}", stdout(&o));
    let fp = logged_fingerprint(&s);
    let o = cli(&["--ca-fingerprint", &fp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("52:54:00:aa:00:01"));
    // A wrong pin: refused, saying what the server presented.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let o = cli(&["--ca-fingerprint", &wrong]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("does not match --ca-fingerprint {wrong}"))
            && err.contains("the server presented certificate sha256:")
            && err.contains(&fp),
        "{err}"
    );
    // No trust given and none in the data directory: the system roots do not know our CA.
    let o = cli(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
    // On the server host, the data directory's CA is used by default.
    let o = s
        .cli_cmd(&["machines", "list"])
        .env("PROVISIONER_URL", https(&s))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_ca_and_certificate_survive_a_restart_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), "[tls]\n");
    let files = |s: &Server| -> Vec<Vec<u8>> {
        ["ca.pem", "ca.key", "server.pem", "server.key"]
            .iter()
            .map(|f| std::fs::read(s.data_dir.join("tls").join(f)).unwrap())
            .collect()
    };
    let before = files(&s);
    let fp = logged_fingerprint(&s);
    assert!(s.terminate().success());
    let s = start(dir.path(), "[tls]\n");
    assert_eq!(files(&s), before, "the material was replaced");
    assert_eq!(logged_fingerprint(&s), fp);
    let (code, status, body) = curl(&["--cacert", &ca(&s), &format!("{}/healthz", https(&s))]);
    assert_eq!((code, status), (0, 200), "{body}");
    // New names: the server certificate is issued again by the same CA.
    let mut s = s;
    assert!(s.terminate().success());
    let s = start(
        dir.path(),
        "[tls]\nnames = [\"boot.example\", \"127.0.0.1\"]\n",
    );
    let after = files(&s);
    assert_eq!(after[..2], before[..2], "the CA was kept");
    assert_ne!(
        after[2], before[2],
        "the server certificate was issued again"
    );
    let (code, status, body) = curl(&[
        "--cacert",
        &ca(&s),
        "--resolve",
        &format!(
            "boot.example:{}:127.0.0.1",
            https(&s).rsplit(':').next().unwrap()
        ),
        &format!(
            "https://boot.example:{}/healthz",
            https(&s).rsplit(':').next().unwrap()
        ),
    ]);
    assert_eq!((code, status), (0, 200), "{body}");
}

#[test]
fn require_for_secrets_refuses_the_api_and_configs_over_plain_http_but_not_downloads() {
    let dir = tempfile::tempdir().unwrap();
    // Without tls.public_url machines would be handed http:// URLs that are then refused.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[tls]\nlisten = \"127.0.0.1:0\"\nrequire_for_secrets = true\n",
    )
    .unwrap();
    let o = serve_cmd(&bad, &dir.path().join("bad-data"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("tls.require_for_secrets") && stderr(&o).contains("tls.public_url"),
        "{}",
        stderr(&o)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("provisioner.toml");
    std::fs::write(
        &config,
        format!("[tls]\npublic_url = \"https://127.0.0.1:{port}\"\nrequire_for_secrets = true\n"),
    )
    .unwrap();
    let mut cmd = serve_cmd(&config, &dir.path().join("data"));
    cmd.args(["--tls-listen", &format!("127.0.0.1:{port}")]);
    let s = Server::spawn(cmd, &dir.path().join("data"));
    assert_eq!(https(&s), format!("https://127.0.0.1:{port}"));
    let tls_cli = |args: &[&str]| -> Output {
        s.cli_cmd(args)
            .env("PROVISIONER_URL", https(&s))
            .output()
            .unwrap()
    };
    // Set up over HTTPS with the CLI (it finds the CA in the data directory).
    let uki = crate::uki::build(dir.path(), "hadron.efi", "Hadron 0.1 (test)");
    let o = Command::new(binary())
        .args(["assets", "import"])
        .arg(&uki.path)
        .env("PROVISIONER_URL", https(&s))
        .env("PROVISIONER_DATA_DIR", &s.data_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let digest = stdout(&o)
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let mac = "52:54:00:aa:00:02";
    let o = tls_cli(&["machines", "add", mac]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tls_cli(&["machines", "token", mac]);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_string();
    // Over plain HTTP: the API and the config are refused, naming the HTTPS URL.
    let auth = format!("Authorization: Bearer {}", s.token());
    let (_, status, body) = curl(&[&format!("{}/api/v1/machines", s.url), "-H", &auth]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("https_required"), "{body}");
    assert!(
        body.contains(&format!("use {}/api/v1/machines", https(&s))),
        "{body}"
    );
    let (_, status, body) = curl(&[&format!("{}/config/{mac}?token={token}", s.url)]);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&format!("use {}/config/{mac}", https(&s))),
        "{body}"
    );
    assert!(
        !body.contains(&token),
        "the refusal echoes the token: {body}"
    );
    let o = s.cli(&["machines", "list"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("served over HTTPS only"),
        "{}",
        stderr(&o)
    );
    // Firmware downloads stay on plain HTTP: the UKI and the iPXE script.
    let (_, status, body) = curl(&[
        "-o",
        "/dev/null",
        &format!("{}/assets/{digest}/hadron.efi", s.url),
    ]);
    assert_eq!(status, 200, "{body}");
    let (_, status, body) = curl(&[&format!("{}/boot/ipxe?mac={mac}&platform=efi", s.url)]);
    assert_eq!(status, 200, "{body}");
    // The same config over HTTPS is not refused.
    let (_, status, body) = curl(&[
        "--cacert",
        &ca(&s),
        &format!("{}/config/{mac}?token={token}", https(&s)),
    ]);
    assert_ne!(status, 403, "{body}");
}

#[test]
fn a_client_that_never_says_hello_is_dropped_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "[tls]\nhandshake_timeout = \"1s\"\n");
    let addr = https(&s).trim_start_matches("https://").to_string();
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let opened = Instant::now();
    // Others are served meanwhile.
    let (code, status, body) = curl(&["--cacert", &ca(&s), &format!("{}/healthz", https(&s))]);
    assert_eq!((code, status), (0, 200), "{body}");
    for c in &mut silent {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf);
        assert!(
            matches!(n, Ok(0))
                || n.is_err()
                    && n.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
            "{n:?}"
        );
    }
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

/// `provisioner serve` with `toml` that must fail at start; returns its stderr.
fn failing_start(dir: &Path, toml: &str) -> String {
    let config = dir.join("bad.toml");
    std::fs::write(&config, toml).unwrap();
    let mut child = serve_cmd(&config, &dir.join("data-bad"))
        .args(["--tls-listen", "127.0.0.1:0", "--no-tftp"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(!st.success());
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the server started with {toml}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn openssl_cert(dir: &Path, name: &str) -> (String, String) {
    let cert = dir.join(format!("{name}.pem")).display().to_string();
    let key = dir.join(format!("{name}.key")).display().to_string();
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-keyout", &key, "-out", &cert])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (cert, key)
}

#[test]
fn an_operator_certificate_is_served_and_a_bad_one_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a) = openssl_cert(dir.path(), "a");
    let (_, key_b) = openssl_cert(dir.path(), "b");
    let s = start(
        dir.path(),
        &format!("[tls]\ncert = \"{cert_a}\"\nkey = \"{key_a}\"\n"),
    );
    let (code, status, body) = curl(&["--cacert", &cert_a, &format!("{}/healthz", https(&s))]);
    assert_eq!((code, status), (0, 200), "{body}");
    assert!(
        !s.data_dir.join("tls").exists(),
        "no CA is made beside an operator's certificate"
    );
    let err = failing_start(
        dir.path(),
        &format!("[tls]\ncert = \"{cert_a}\"\nkey = \"{key_b}\"\n"),
    );
    assert!(
        err.contains(&format!(
            "{key_b} does not match the certificate in {cert_a}"
        )),
        "{err}"
    );
    let missing = dir.path().join("missing.pem").display().to_string();
    let err = failing_start(
        dir.path(),
        &format!("[tls]\ncert = \"{missing}\"\nkey = \"{key_a}\"\n"),
    );
    assert!(
        err.contains(&missing) && err.contains("No such file"),
        "{err}"
    );
}
