//! Boot storms: `lab storm` runs 200 simulated machines (PXE ROM DHCP and TFTP, iPXE DHCP,
//! script and UKI, installer config, progress and register) at once against the real
//! provisioner in namespaces of its own. Each test checks the storm's own report, then reads
//! the provisioner's inventory and events (the server restarted on the storm's data directory,
//! on loopback): every machine `ready`, each with the full trail of its boot. The `--ha` case
//! checks its own report (the checks run on the survivor before the storm's etcd is gone).
//! Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Api, Server};

fn lab_bin() -> PathBuf {
    match std::env::var_os("LAB_BIN") {
        Some(p) => PathBuf::from(p),
        None => crate::harness::binary().with_file_name("lab"),
    }
}

const MACHINES: usize = 200;
/// Size of the loader (Debian's `snponly.efi`) and the most its last TFTP block can hold
/// (blksize 1468).
static LOADER_SIZE: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::fs::metadata("/usr/lib/ipxe/snponly.efi")
        .expect("snponly.efi (Debian package ipxe)")
        .len()
});
const LAST_BLOCK: u64 = 1468;

/// `lab storm --json` with `args`; the report and the work directory.
fn storm(args: &[&str]) -> (tempfile::TempDir, Value) {
    let work = tempfile::Builder::new()
        .prefix("storm-test-")
        .tempdir()
        .unwrap();
    let out = Command::new(lab_bin())
        .args(["storm", "--json", "--uki-size", "1MiB", "--deadline", "90"])
        .args(["--machines", &MACHINES.to_string()])
        .arg("--work")
        .arg(work.path())
        .args(args)
        .env("PROVISIONER_BIN", crate::harness::binary())
        .output()
        .expect("running lab storm");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "lab storm printed no report ({e}): {}\n{text}\n----- provisioner log (tail) -----\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&work.path().join("provisioner.log"), 30)
        )
    });
    (work, report)
}

fn tail(p: &Path, n: usize) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn mac(i: usize) -> String {
    format!(
        "02:5a:00:{:02x}:{:02x}:{:02x}",
        i >> 16,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// What every machine of a storm must show: the report says all registered, the inventory
/// says all `ready`, and each machine's events hold every step of its boot in order.
///
/// With packet loss (`lossy`), a loader transfer whose final ACK was lost on the wire is
/// recorded as `client_gone` after every block but the last was acknowledged: the client has
/// the file (it sent that ACK, as a PXE ROM does, and left), the server cannot know; or as
/// `shutdown` when the storm ended (and stopped the server) while it was still resending that
/// last block.
fn assert_every_machine_booted(work: &Path, report: &Value, lossy: bool) {
    assert_eq!(report["failures"], 0, "{report:#}");
    assert_eq!(report["registered"], MACHINES, "{report:#}");
    assert_eq!(report["ready_in_inventory"], MACHINES, "{report:#}");
    for p in report["phases"].as_array().unwrap() {
        assert_eq!(p["done"], MACHINES, "phase {p}");
    }
    let server = Server::start_in(&work.join("provisioner-data"), &["--no-tftp"]);
    let api: Api = server.http();
    let mut incomplete = Vec::new();
    for i in 0..MACHINES {
        let mac = mac(i);
        let m = api.get(&format!("/api/v1/machines/{mac}")).body;
        let evs = api
            .get(&format!("/api/v1/events?machine={mac}&limit=1000"))
            .body;
        let evs = evs.as_array().unwrap();
        let detail = |e: &Value| e["detail"].as_str().unwrap_or("").to_string();
        // The boot's steps, each found after the one before it.
        let steps: [Step; 7] = [
            ("PXE DHCP request", &|e| {
                e["via"] == "dhcp" && detail(e).starts_with("Request arch 7 (Pxe)")
            }),
            ("iPXE script", &|e| {
                e["via"] == "http" && detail(e).starts_with("iPXE script: install")
            }),
            ("booting", &|e| e["type"] == "state" && e["to"] == "booting"),
            ("config", &|e| detail(e).starts_with("config fetched")),
            ("progress", &|e| {
                e["type"] == "progress" && e["phase"] == "storm"
            }),
            ("registered", &|e| e["type"] == "registered"),
            ("ready", &|e| e["type"] == "state" && e["to"] == "ready"),
        ];
        // Present, in no fixed order: transfer events are written when their batch is (a
        // UKI's can follow the config fetched after it), and iPXE's DHCP may be recorded
        // before the loader's TFTP transfer event.
        let anywhere: [Step; 3] = [
            ("TFTP of the loader", &|e| {
                let all_but_last = e["bytes"].as_u64().unwrap_or(0) + LAST_BLOCK >= *LOADER_SIZE;
                e["type"] == "transfer"
                    && e["protocol"] == "tftp"
                    && e["file"] == "snponly.efi"
                    && (e["outcome"] == "complete" || (lossy && all_but_last && gone_or_stopped(e)))
            }),
            ("iPXE DHCP request", &|e| {
                e["via"] == "dhcp" && detail(e).starts_with("Request arch 7 (Ipxe)")
            }),
            ("UKI download", &|e| {
                e["type"] == "transfer"
                    && e["protocol"] == "http"
                    && e["outcome"] == "complete"
                    && e["file"].as_str().unwrap_or("").ends_with(".efi")
            }),
        ];
        let mut at = 0;
        let mut missing = Vec::new();
        for (name, found) in steps {
            match evs[at..].iter().position(found) {
                Some(k) => at += k + 1,
                None => missing.push(name),
            }
        }
        for (name, found) in anywhere {
            if !evs.iter().any(found) {
                missing.push(name);
            }
        }
        if m["lifecycle"]["state"] != "ready" || !missing.is_empty() {
            let transfers: Vec<String> = evs
                .iter()
                .filter(|e| e["type"] == "transfer")
                .map(|e| {
                    format!(
                        "{} {} {} {}",
                        e["protocol"], e["file"], e["outcome"], e["bytes"]
                    )
                })
                .collect();
            incomplete.push(format!(
                "{mac}: state {}, missing {missing:?}, transfers {transfers:?}",
                m["lifecycle"]["state"]
            ));
        }
    }
    assert!(
        incomplete.is_empty(),
        "{} machines incomplete, e.g. {:?}",
        incomplete.len(),
        &incomplete[..incomplete.len().min(5)]
    );
}

/// A step of a boot: its name and how to recognize its event.
type Step<'a> = (&'a str, &'a dyn Fn(&Value) -> bool);

fn gone_or_stopped(e: &Value) -> bool {
    e["outcome"] == "client_gone" || e["outcome"] == "shutdown"
}

#[test]
fn storm_full_dhcp_every_machine_ready() {
    let (work, report) = storm(&["--dhcp", "full"]);
    assert_eq!(report["mode"], "full");
    assert_every_machine_booted(work.path(), &report, false);
}

#[test]
fn storm_relayed_dhcp_every_machine_ready() {
    let (work, report) = storm(&["--dhcp", "relayed", "--rack-size", "40"]);
    assert_eq!(report["mode"], "relayed");
    assert_every_machine_booted(work.path(), &report, false);
}

#[test]
fn storm_with_5_percent_loss_every_machine_registers() {
    let (work, report) = storm(&["--dhcp", "full", "--loss", "5"]);
    assert_eq!(report["loss_percent"], 5);
    assert_every_machine_booted(work.path(), &report, true);
}

/// Issue 13's kill test: two provisioners on a three-member etcd cluster, 200 machines
/// arriving over 10 s; `kill -9` of the first provisioner once a quarter registered, then of
/// the etcd leader at half. Every machine reaches `ready` (those whose server vanished boot
/// again, as firmware does), no address is ACKed to two MACs or held in the store for another
/// MAC, the store holds each machine's last ACKed lease, no acknowledged event (a 2xx to a progress or register POST) is missing, the
/// history's order is strict and the survivor's SSE stream replays exactly that history.
#[test]
fn storm_ha_two_provisioners_on_etcd_survive_a_provisioner_and_the_etcd_leader_killed() {
    let (_work, report) = storm(&[
        "--dhcp",
        "full",
        "--ha",
        "--ramp",
        "10",
        "--kill-provisioner-at",
        "25",
        "--kill-etcd-leader-at",
        "50",
    ]);
    assert_eq!(report["failures"], 0, "{report:#}");
    assert_eq!(report["registered"], MACHINES, "{report:#}");
    assert_eq!(report["ready_in_inventory"], MACHINES, "{report:#}");
    let ha = &report["ha"];
    let kills = ha["kills"].as_array().unwrap();
    assert_eq!(kills.len(), 2, "{ha:#}");
    assert!(kills[0]["what"]
        .as_str()
        .unwrap()
        .starts_with("provisioner "));
    assert!(kills[1]["what"]
        .as_str()
        .unwrap()
        .starts_with("etcd leader "));
    for k in kills {
        let before = k["registered_before"].as_u64().unwrap() as usize;
        assert!(before < MACHINES, "killed mid-storm: {k}");
    }
    let acks = ha["acks_by_server"].as_object().unwrap();
    assert_eq!(acks.len(), 2, "both servers ACKed: {ha:#}");
    assert_eq!(ha["addresses_acked_to_two_macs"], 0, "{ha:#}");
    assert_eq!(ha["last_acks_held_by_another_mac"], 0, "{ha:#}");
    assert_eq!(ha["last_acks_not_in_store"], 0, "{ha:#}");
    assert!(
        ha["acknowledged_events"].as_u64().unwrap() >= 2 * MACHINES as u64,
        "{ha:#}"
    );
    assert_eq!(ha["acknowledged_events_missing"], 0, "{ha:#}");
    assert_eq!(ha["events_out_of_order"], 0, "{ha:#}");
    assert!(ha["events"].as_u64().unwrap() > 0, "{ha:#}");
    assert_eq!(ha["sse_replayed"], ha["events"], "{ha:#}");
    assert_eq!(ha["sse_matches_history"], true, "{ha:#}");
}

/// Issue 19's crash campaign, short version (`lab storm --crash-kills 50` is the long one):
/// the provisioner (redb) gets `kill -9` ten times at random moments while 200 machines boot
/// and an operator creates profiles and imports assets through the API, and is started again
/// on the same data each time. After every restart each acknowledged write is there and every
/// listed asset downloads whole (its SHA-256 is its digest); at the end every machine is
/// `ready`, no lease or acknowledged event is lost and the SSE stream replays the history.
#[test]
fn storm_crash_campaign_ten_kills_lose_nothing_acknowledged() {
    let (_work, report) = storm(&["--dhcp", "full", "--ramp", "10", "--crash-kills", "10"]);
    assert_eq!(report["failures"], 0, "{report:#}");
    assert_eq!(report["ready_in_inventory"], MACHINES, "{report:#}");
    let c = &report["crash"];
    assert_eq!(c["kills"], 10, "{c:#}");
    assert_eq!(c["checks"], 10, "{c:#}");
    assert!(c["profiles_acknowledged"].as_u64().unwrap() > 0, "{c:#}");
    assert!(c["assets_acknowledged"].as_u64().unwrap() > 0, "{c:#}");
    assert_eq!(c["profiles_missing"], 0, "{c:#}");
    assert_eq!(c["assets_missing"], 0, "{c:#}");
    assert!(c["assets_verified"].as_u64().unwrap() > 0, "{c:#}");
    assert_eq!(c["assets_corrupt"], 0, "{c:#}");
    let ha = &report["ha"];
    assert_eq!(ha["kills"].as_array().unwrap().len(), 10, "{ha:#}");
    assert_eq!(ha["addresses_acked_to_two_macs"], 0, "{ha:#}");
    assert_eq!(ha["last_acks_held_by_another_mac"], 0, "{ha:#}");
    assert_eq!(ha["last_acks_not_in_store"], 0, "{ha:#}");
    assert_eq!(ha["acknowledged_events_missing"], 0, "{ha:#}");
    assert_eq!(ha["events_out_of_order"], 0, "{ha:#}");
    assert_eq!(ha["sse_matches_history"], true, "{ha:#}");
}
