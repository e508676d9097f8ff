//! `provisioner serve` as an operator starts it: no config, a config file, broken config files,
//! and shutdown on SIGTERM.

use std::process::Command;

use crate::harness::{binary, stderr, Server};

#[test]
fn starts_with_no_config_in_dot_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(binary());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tftp-listen",
        "127.0.0.1:0",
    ])
    .current_dir(tmp.path());
    let mut s = Server::spawn(cmd, &tmp.path().join("data"));
    assert!(tmp.path().join("data/inventory.redb").is_file());
    assert!(tmp.path().join("data/operator.token").is_file());
    assert_eq!(s.http().get("/api/v1/machines").status, 200);
    assert!(s.terminate().success(), "clean exit on SIGTERM");
}

#[test]
fn config_file_is_used_and_json_logs_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("var");
    let cfg = tmp.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n[tftp]\nlisten = \"127.0.0.1:0\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(binary());
    cmd.arg("serve").arg("--config").arg(&cfg);
    let s = Server::spawn(cmd, &data);
    assert!(data.join("inventory.redb").is_file());
    let first = s.log().lines().next().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&first).expect("JSON log line");
    assert!(v["fields"]["message"].is_string(), "{first}");
}

fn serve_fails_with(config: &[u8], want: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    for w in want {
        assert!(err.contains(w), "stderr lacks {w:?}: {err}");
    }
    assert!(
        !tmp.path().join("data").exists(),
        "nothing created on a bad config"
    );
}

#[test]
fn bad_config_files_are_refused_with_the_key_and_value() {
    serve_fails_with(b"[http]\nlisten = \"0.0.0.0:80", &["bad.toml"]);
    serve_fails_with(&[0x00, 0xff, 0x13, 0x37, 0xfe], &["bad.toml", "not UTF-8"]);
    serve_fails_with(b"[htp]\nlisten = \"x\"\n", &["unknown field `htp`"]);
    serve_fails_with(
        b"[http]\nlisten = \"localhost\"\n",
        &["http.listen", "\"localhost\""],
    );
    serve_fails_with(
        b"[lifecycle]\nbooting_timeout = \"forever\"\n",
        &["lifecycle.booting_timeout", "\"forever\""],
    );
    serve_fails_with(
        b"[dhcp]\nmode = \"full\"\nserver_ip = \"198.18.0.1\"\n",
        &["at least one [[dhcp.subnet]]"],
    );
    serve_fails_with(b"[dhcp]\nmode = \"proxy\"\n", &["dhcp.server_ip"]);
    let out = Command::new(binary())
        .args(["serve", "--config", "/nonexistent/p.toml"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("/nonexistent/p.toml"));
}

#[test]
fn sigterm_ends_even_with_a_follower_connected() {
    let mut s = Server::start();
    let api = s.http();
    let resp = api.request("GET", "/api/v1/events/stream").send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(s.terminate().success());
    assert!(s.log().contains("shutting down"));
    drop(resp);
}

#[test]
fn second_server_on_same_data_dir_is_refused() {
    let s = Server::start();
    let out = Command::new(binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tftp-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in use by another provisioner process"),
        "{}",
        stderr(&out)
    );
}
