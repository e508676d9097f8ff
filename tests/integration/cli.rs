//! The CLI as an operator uses it, against a real server.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{binary, macs, stderr, stdout, Server};

#[test]
fn add_list_show_rm_in_tables_and_json() {
    let s = Server::start();
    let ok = |args: &[&str]| {
        let o = s.cli(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    ok(&[
        "profiles",
        "add",
        "hadron",
        "--install-disk",
        "/dev/vda",
        "--cmdline",
        "console=ttyS0",
    ]);
    ok(&[
        "machines",
        "add",
        "52-54-00-12-34-56",
        "--hostname",
        "node-1",
        "--profile",
        "hadron",
        "--label",
        "rack=a1",
        "--ip",
        "198.18.0.21",
    ]);
    let table = ok(&["machines", "list"]);
    assert!(table.starts_with("MAC"), "{table}");
    assert!(
        table.contains("52:54:00:12:34:56  node-1    hadron   198.18.0.21  registered"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["machines", "list", "--json"])).unwrap();
    assert_eq!(json[0]["labels"]["rack"], "a1");
    let show = ok(&["machines", "show", "525400123456"]);
    assert!(show.contains("state:      registered"), "{show}");
    assert!(show.contains("created by operator"), "{show}");
    let profiles = ok(&["profiles", "list"]);
    assert!(
        profiles.contains("hadron") && profiles.contains("/dev/vda"),
        "{profiles}"
    );
    ok(&["machines", "reprovision", "52:54:00:12:34:56"]);
    assert!(ok(&["machines", "list", "--state", "reprovision"]).contains("52:54:00:12:34:56"));
    assert!(!ok(&["machines", "list", "--state", "ready"]).contains("52:54:00:12:34:56"));
    ok(&["machines", "rm", "52:54:00:12:34:56"]);
    assert_eq!(ok(&["machines", "list"]).lines().count(), 1, "header only");
    ok(&["profiles", "rm", "hadron"]);
}

#[test]
fn errors_name_the_bad_input_and_exit_nonzero() {
    let s = Server::start();
    let o = s.cli(&["machines", "add", "52:54:00:12:34"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\"52:54:00:12:34\""), "{}", stderr(&o));
    let o = s.cli(&[
        "machines",
        "add",
        "52:54:00:12:34:56",
        "--profile",
        "missing",
    ]);
    assert!(
        stderr(&o).contains("unknown profile \"missing\""),
        "{}",
        stderr(&o)
    );
    let o = s.cli(&["machines", "show", "52:54:00:99:99:99"]);
    assert!(
        stderr(&o).contains("no machine with MAC 52:54:00:99:99:99"),
        "{}",
        stderr(&o)
    );
    let o = s.cli(&["machines", "import", "/nonexistent.csv"]);
    assert!(stderr(&o).contains("/nonexistent.csv"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.csv");
    std::fs::write(&f, "52:54:00:00:00:01,ok\n52:54:00:00:00:02,under_score\n").unwrap();
    let o = s.cli(&["machines", "import", f.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("line 2: invalid hostname \"under_score\""),
        "{}",
        stderr(&o)
    );

    // No token anywhere: say where it was looked for and how to pass one.
    let o = std::process::Command::new(binary())
        .args([
            "machines",
            "list",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--url",
            &s.url,
        ])
        .env_remove("PROVISIONER_TOKEN")
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("operator.token") && stderr(&o).contains("--token"),
        "{}",
        stderr(&o)
    );
    // Nothing listening: say which URL.
    let o = s.cli(&["machines", "list", "--url", "http://127.0.0.1:9"]);
    assert!(
        stderr(&o).contains("http://127.0.0.1:9") && stderr(&o).contains("provisioner serve"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn import_of_ten_thousand_lines_is_fast_and_complete() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("racks.csv");
    let mut csv = String::from("mac,hostname,profile,rack\n");
    for (i, m) in macs(0x1_0000, 10_000).iter().enumerate() {
        csv.push_str(&format!("{m},node-{i},,r{}\n", i / 40));
    }
    std::fs::write(&f, csv).unwrap();
    let t = Instant::now();
    let o = s.cli(&["machines", "import", f.to_str().unwrap()]);
    let took = t.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("imported 10000 machines"));
    assert!(took < Duration::from_secs(10), "import took {took:?}");
    let o = s.cli(&["machines", "list", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all.len(), 10_000);
    assert_eq!(all[9_999]["labels"]["rack"], "r249");
    eprintln!("10,000-line import took {took:?}");
}

#[test]
fn events_follow_prints_new_events_as_they_happen() {
    let s = Server::start();
    s.cli(&["machines", "add", "52:54:00:00:00:01"]);
    let mut child = s
        .cli_cmd(&["events", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("52:54:00:00:00:01") && first.contains("created by operator"),
        "{first}"
    );
    s.cli(&["machines", "reprovision", "52:54:00:00:00:01"]);
    let next = lines.next().unwrap().unwrap();
    assert!(next.contains("operator reprovision"), "{next}");
    let next = lines.next().unwrap().unwrap();
    assert!(next.contains("state registered → reprovision"), "{next}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn help_teaches_with_examples() {
    let help = |args: &[&str]| {
        let o = std::process::Command::new(binary())
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(o.status.success());
        stdout(&o)
    };
    let top = help(&[]);
    for sub in ["serve", "machines", "profiles", "events", "Examples:"] {
        assert!(top.contains(sub), "top-level help lacks {sub}: {top}");
    }
    assert!(help(&["machines", "import"]).contains("mac,hostname,profile"));
    assert!(help(&["machines", "add"]).contains("Example:"));
    assert!(help(&["serve"]).contains("operator.token"));
    assert!(help(&["events"]).contains("--follow"));
}

#[test]
fn list_into_a_closed_pipe_ends_quietly() {
    let s = Server::start();
    let csv = macs(0x5000, 3000).join("\n");
    assert_eq!(s.http().csv(csv).status, 200);
    let mut child = s
        .cli_cmd(&["machines", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close our end, like `| head -1`.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert!(first.starts_with("MAC"));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// `machines list` shows where a machine is: the address of its active lease (from one read of
/// the lease table on the server), also when the machine has no reserved `ip`, and `-` for a
/// machine without a lease.
#[test]
fn machines_list_shows_the_leased_address() {
    use crate::loopback_dhcp::{lease, LeaseServer};
    const LEASED: &str = "52:54:00:ad:d0:01";
    const IDLE: &str = "52:54:00:ad:d0:02";
    let dir = tempfile::tempdir().unwrap();
    let s = LeaseServer::start(dir.path(), &dir.path().join("data"), "", &[]);
    let ok = |args: &[&str]| {
        let o = s.server.cli(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    ok(&["machines", "add", LEASED, "--hostname", "leased"]);
    ok(&["machines", "add", IDLE, "--hostname", "idle"]);
    let ip = lease(s.dhcp_port, LEASED);
    let table = ok(&["machines", "list"]);
    let row = |mac: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(mac))
            .unwrap_or_else(|| panic!("no row for {mac}: {table}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert!(table.starts_with("MAC"), "{table}");
    assert!(table.lines().next().unwrap().contains("ADDRESS"), "{table}");
    // MAC, HOSTNAME, PROFILE, ADDRESS, STATE...
    assert_eq!(row(LEASED)[3], ip.to_string(), "{table}");
    assert_eq!(row(IDLE)[3], "-", "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["machines", "list", "--json"])).unwrap();
    let of = |mac: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|m| m["mac"] == mac)
            .unwrap_or_else(|| panic!("no {mac}: {json}"))
            .clone()
    };
    assert_eq!(of(LEASED)["address"], ip.to_string(), "{json}");
    assert!(of(IDLE).get("address").is_none(), "{json}");
    assert_eq!(of(LEASED)["hostname"], "leased", "{json}");
}
