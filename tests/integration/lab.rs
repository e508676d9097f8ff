//! End to end: real firmware (OVMF or SeaBIOS, with iPXE, GRUB or the firmware's own PXE/HTTP
//! boot) in QEMU, netbooting through the real provisioner inside an isolated namespace, installing
//! to its disk, rebooting, and coming up from that disk — run by the `lab` binary. Every assertion reads
//! the provisioner's inventory and events afterwards (the server restarted on the lab's data
//! directory, on loopback); the serial consoles and the server log are printed on failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Api, Server};

mod ha;

fn lab_bin() -> PathBuf {
    match std::env::var_os("LAB_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = crate::harness::binary().with_file_name("lab");
            assert!(
                p.exists(),
                "{} missing: cargo build -p lab (scripts/test does)",
                p.display()
            );
            p
        }
    }
}

pub(crate) struct Run {
    work: tempfile::TempDir,
    outcome: Value,
}

impl Run {
    fn dump(&self) -> String {
        let mut s = String::new();
        for m in self.outcome["machines"].as_array().into_iter().flatten() {
            let log = m["serial_log"].as_str().unwrap_or("");
            s.push_str(&format!(
                "----- serial console of {} (tail) -----\n",
                m["name"]
            ));
            s.push_str(&tail(Path::new(log), 40));
        }
        s.push_str(&server_logs(self.work.path()));
        s
    }
}

fn tail(p: &Path, n: usize) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

/// The tails of the run's server logs (`provisioner.log`, or with `--ha` each server's and
/// etcd's).
fn server_logs(work: &Path) -> String {
    [
        "provisioner.log",
        "provisioner-0.log",
        "provisioner-1.log",
        "etcd.log",
    ]
    .iter()
    .map(|f| work.join(f))
    .filter(|p| p.exists())
    .map(|p| format!("----- {} (tail) -----\n{}", p.display(), tail(&p, 40)))
    .collect()
}

fn lab(args: &[&str]) -> Run {
    let work = tempfile::Builder::new()
        .prefix("lab-test-")
        .tempdir()
        .unwrap();
    let out = Command::new(lab_bin())
        .arg("run")
        .arg("--json")
        .arg("--work")
        .arg(work.path())
        .args(args)
        .env("PROVISIONER_BIN", crate::harness::binary())
        .output()
        .expect("running lab");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let serials: String = std::fs::read_dir(work.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".serial.log"))
            .map(|p| format!("----- {} -----\n{}", p.display(), tail(&p, 40)))
            .collect();
        panic!(
            "lab run failed: {}\n{serials}{}",
            String::from_utf8_lossy(&out.stderr),
            server_logs(work.path())
        );
    }
    let outcome: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    Run { work, outcome }
}

/// The provisioner again, on the lab's data directory, to read what it recorded.
fn inventory(run: &Run) -> (Server, Api) {
    let server = Server::start_in(&run.work.path().join("data"), &["--no-tftp"]);
    let api = server.http();
    (server, api)
}

fn events(api: &Api, mac: &str) -> Vec<Value> {
    api.get(&format!("/api/v1/events?machine={mac}"))
        .body
        .as_array()
        .unwrap()
        .clone()
}

fn transitions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .filter(|e| e["type"] == "state")
        .map(|e| {
            format!(
                "{}→{}",
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap()
            )
        })
        .collect()
}

/// Ready, registered from its disk, installed exactly `installs` times, and after the last install
/// never handed the installer again.
fn assert_installed_and_booted_from_disk(run: &Run, api: &Api, mac: &str, installs: usize) {
    let ctx = || run.dump();
    let m = api.get(&format!("/api/v1/machines/{mac}")).body;
    assert_eq!(m["lifecycle"]["state"], "ready", "{m}\n{}", ctx());
    assert_eq!(m["registration"]["boot_state"], "active_boot", "{m}");
    let evs = events(api, mac);
    let steps = transitions(&evs);
    let count = |s: &str| steps.iter().filter(|x| x.ends_with(s)).count();
    assert_eq!(count("→installed"), installs, "{steps:?}");
    assert_eq!(count("→installing"), installs, "{steps:?}");
    let last_installed = evs
        .iter()
        .rposition(|e| e["type"] == "state" && e["to"] == "installed")
        .unwrap();
    // After the install: no installer script or UKI, and the OS's registration from its disk.
    for e in &evs[last_installed..] {
        let detail = e["detail"].as_str().unwrap_or("");
        assert!(
            !detail.contains("install (") && !detail.contains("UEFI HTTP boot: UKI"),
            "installer served again after install: {e}\n{}",
            ctx()
        );
        assert!(
            !(e["type"] == "transfer"
                && e["protocol"] == "http"
                && e["outcome"] == "complete"
                && e["file"].as_str().unwrap_or("").ends_with(".efi")),
            "UKI downloaded again after install: {e}"
        );
    }
    assert!(
        evs[last_installed..]
            .iter()
            .any(|e| e["type"] == "registered" && e["boot_state"] == "active_boot"),
        "no registration from the disk after install: {steps:?}"
    );
    assert!(steps.last().unwrap().ends_with("→ready"), "{steps:?}");
    // The installer reported progress and logged over syslog and HTTP.
    assert!(
        evs.iter()
            .any(|e| e["type"] == "progress" && e["phase"] == "write-image"),
        "{evs:?}"
    );
    let logs = api.get(&format!("/api/v1/machines/{mac}/logs")).body;
    let logs = logs.as_array().unwrap();
    // Syslog is UDP (RFC 5426): on an impaired link any one line may be lost, so there the test
    // asks for any of the installer's three syslog lines (all three lost: 1 in 1,000 at 10 %).
    let lossy = !run.outcome["impairment"].is_null();
    let wanted = if lossy { "" } else { "install done" };
    assert!(
        logs.iter()
            .any(|l| l["source"] == "syslog" && l["text"].as_str().unwrap_or("").contains(wanted)),
        "{logs:?}"
    );
    assert!(evs.iter().any(|e| e["type"] == "seen"
        && e["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("config fetched")));
}

fn machine_outcome(run: &Run, i: usize) -> &Value {
    &run.outcome["machines"][i]
}

/// A one-VM run, checked for the common outcome, with what the tests look at further.
struct One {
    run: Run,
    _server: Server,
    api: Api,
    mac: String,
    evs: Vec<Value>,
}

fn one_machine(args: &[&str], installs: usize) -> One {
    let run = lab(args);
    let (server, api) = inventory(&run);
    let mac = machine_outcome(&run, 0)["mac"]
        .as_str()
        .unwrap()
        .to_string();
    assert_installed_and_booted_from_disk(&run, &api, &mac, installs);
    let evs = events(&api, &mac);
    One {
        run,
        _server: server,
        api,
        mac,
        evs,
    }
}

#[test]
fn uefi_ipxe_full_dhcp_installs_registers_and_boots_from_disk() {
    let one = one_machine(&["--firmware", "uefi-ipxe"], 1);
    // The reboot netbooted first and was told "disk": DHCP seen again after install, no script.
    let after = one
        .evs
        .iter()
        .rposition(|e| e["type"] == "state" && e["to"] == "installed")
        .unwrap();
    assert!(
        one.evs[after..]
            .iter()
            .any(|e| e["type"] == "seen" && e["via"] == "dhcp"),
        "{}",
        one.run.dump()
    );
}

#[test]
fn uefi_pxe_through_tftp_snponly() {
    let one = one_machine(&["--firmware", "uefi-pxe"], 1);
    let tftp: Vec<&Value> = one
        .evs
        .iter()
        .filter(|e| e["type"] == "transfer" && e["protocol"] == "tftp")
        .collect();
    assert!(
        tftp.iter()
            .any(|e| e["file"] == "snponly.efi" && e["outcome"] == "complete"),
        "{tftp:?}"
    );
}

#[test]
fn uefi_http_boot_of_the_uki() {
    let one = one_machine(&["--firmware", "uefi-http"], 1);
    assert!(
        one.evs.iter().any(|e| e["detail"] == "UEFI HTTP boot: UKI"),
        "{}",
        one.run.dump()
    );
    assert!(one.evs.iter().any(|e| e["type"] == "transfer"
        && e["file"] == "installer.efi"
        && e["outcome"] == "complete"));
}

/// The VM's console shows OVMF's IPv6 HTTP boot fetching the provisioner's UKI URL for it, whole.
fn assert_uki_fetched_over_ipv6(one: &One) {
    let serial =
        std::fs::read_to_string(machine_outcome(&one.run, 0)["serial_log"].as_str().unwrap())
            .unwrap();
    let url = format!("URI: http://[2001:2::1]:8080/boot/efi?mac={}", one.mac);
    let v6 = serial
        .find(">>Start HTTP Boot over IPv6")
        .expect("no HTTPv6 attempt");
    let fetched = serial[v6..].find(&url).map(|i| &serial[v6 + i..]);
    assert!(
        fetched.is_some_and(|t| t.contains("File Size:") && t.contains("Downloading...100%")),
        "{}",
        one.run.dump()
    );
}

/// OVMF's HTTP boot over IPv6 against the DHCPv6 reference (Kea): the firmware's IPv4 attempt
/// fails (the lab resets it), the IPv6 one gets 2001:2::/64 and the provisioner's URL from Kea and
/// downloads the UKI from [2001:2::1]; the installer then finishes over IPv4 as usual.
#[test]
fn uefi_http6_boot_of_the_uki_against_kea() {
    let one = one_machine(&["--firmware", "uefi-http6", "--dhcp6-reference", "kea"], 1);
    assert_uki_fetched_over_ipv6(&one);
    // Kea leased the address (Advertise, then Reply to the firmware's Request).
    let kea = std::fs::read_to_string(one.run.work.path().join("kea-dhcp6.log")).unwrap();
    for kind in ["ADVERTISE", "REPLY"] {
        assert!(
            kea.contains(&format!("trying to send packet {kind}")),
            "no {kind} from kea"
        );
    }
}

/// OVMF's HTTP boot over IPv6 against the provisioner's own DHCPv6 (stateful on the lab bridge):
/// the firmware's DUID-UUID lease names the VM by its link-local source, so the UKI download
/// from its IPv6 address is recorded as the machine's boot.
#[test]
fn uefi_http6_reaches_ready() {
    let one = one_machine(&["--firmware", "uefi-http6"], 1);
    assert_uki_fetched_over_ipv6(&one);
    // Our DHCPv6 leased the address to the VM's MAC (EUI-64 of its link-local source)...
    let log = std::fs::read_to_string(one.run.work.path().join("provisioner.log")).unwrap();
    let leased = log
        .lines()
        .any(|l| l.contains("dhcp6: lease") && l.contains(&one.mac));
    assert!(
        leased,
        "no DHCPv6 lease for {}\n{}",
        one.mac,
        one.run.dump()
    );
    // ...and the UKI download from that address is the machine's boot.
    let v6_boot = |e: &&Value| {
        e["type"] == "seen"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("UEFI HTTP boot: UKI from [2001:2::"))
    };
    assert!(one.evs.iter().any(|e| v6_boot(&e)), "{:?}", one.evs);
    assert!(
        one.evs.iter().any(|e| e["type"] == "transfer"
            && e["protocol"] == "http"
            && e["file"] == "installer.efi"
            && e["outcome"] == "complete"),
        "{:?}",
        one.evs
    );
}

#[test]
fn uefi_https_boot_of_the_uki_reaches_ready() {
    let one = one_machine(&["--firmware", "uefi-https"], 1);
    // OVMF fetched the UKI itself over the boot TLS listener (the server records the suite),
    // never over plain HTTP.
    let https = |e: &&Value| {
        e["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("UEFI HTTPS boot (TLSv1.2 ") && d.ends_with("): UKI"))
    };
    assert!(one.evs.iter().any(|e| https(&e)), "{}", one.run.dump());
    assert!(!one.evs.iter().any(|e| e["detail"] == "UEFI HTTP boot: UKI"));
    assert!(
        one.evs.iter().any(|e| e["type"] == "transfer"
            && e["protocol"] == "https"
            && e["file"] == "installer.efi"
            && e["outcome"] == "complete"),
        "{}",
        one.run.dump()
    );
}

#[test]
fn bios_ipxe_boots_kernel_and_initrd_extracted_from_the_uki() {
    let one = one_machine(&["--firmware", "bios-ipxe"], 1);
    for part in ["installer.efi#linux", "installer.efi#initrd"] {
        assert!(
            one.evs.iter().any(|e| e["type"] == "transfer"
                && e["file"] == part
                && e["outcome"] == "complete"),
            "{part}: {}",
            one.run.dump()
        );
    }
}

#[test]
fn uefi_grub_loads_kernel_and_initrd_over_http() {
    let one = one_machine(&["--firmware", "uefi-grub"], 1);
    let ok = |file: &str, protocol: &str| {
        one.evs.iter().any(|e| {
            e["type"] == "transfer"
                && e["protocol"] == protocol
                && e["file"].as_str().unwrap_or("").trim_start_matches('/') == file
                && e["outcome"] == "complete"
        })
    };
    // OVMF's PXE loaded GRUB by TFTP; GRUB read our bootstrap and its HTTP module by TFTP, its
    // own config from /boot/grub (chosen by its lease), then the UKI's parts over HTTP.
    for (file, protocol) in [
        ("grubnetx64.efi", "tftp"),
        ("grub/grub.cfg", "tftp"),
        ("grub/x86_64-efi/http.mod", "tftp"),
        ("installer.efi#linux", "http"),
        ("installer.efi#initrd", "http"),
    ] {
        assert!(
            ok(file, protocol),
            "{file} by {protocol}: {}",
            one.run.dump()
        );
    }
    assert!(
        one.evs
            .iter()
            .any(|e| e["detail"] == "GRUB config: install (efi)"),
        "{}",
        one.run.dump()
    );
    // After the install the firmware was refused grubnetx64.efi by TFTP and booted its disk:
    // GRUB never ran again (no GRUB module or config fetched after `installed`).
    let after = one
        .evs
        .iter()
        .rposition(|e| e["type"] == "state" && e["to"] == "installed")
        .unwrap();
    for e in &one.evs[after..] {
        let file = e["file"].as_str().unwrap_or("");
        assert!(
            !(e["outcome"] == "complete" && (file.contains("grub") || file.contains('#'))),
            "GRUB or the kernel served after install: {e}"
        );
        assert!(
            !e["detail"]
                .as_str()
                .unwrap_or("")
                .starts_with("GRUB config"),
            "{e}"
        );
    }
}

#[test]
fn uefi_ipxe_in_proxy_mode_beside_dnsmasq() {
    let one = one_machine(&["--firmware", "uefi-ipxe", "--dhcp", "proxy"], 1);
    // The addresses came from the site's dnsmasq: we hold no lease.
    let leases =
        std::fs::read_to_string(one.run.work.path().join("site.leases")).unwrap_or_default();
    assert!(leases.contains(&one.mac), "dnsmasq gave no lease: {leases}");
}

#[test]
fn discovered_machine_installs_once_approved_without_touching_the_vm() {
    let one = one_machine(
        &["--firmware", "uefi-ipxe", "--flow", "discover-approve"],
        1,
    );
    assert_eq!(one.evs[0]["type"], "created");
    assert_eq!(one.evs[0]["by"], "discover");
    // Discovery recorded the SMBIOS UUID the firmware sent (option 97).
    let m = one.api.get(&format!("/api/v1/machines/{}", one.mac)).body;
    assert_eq!(m["uuid"], "5a1ab000-0000-4000-8000-000000000001", "{m}");
    let steps = transitions(&one.evs);
    assert_eq!(
        steps.first().map(String::as_str),
        Some("discovered→registered"),
        "{steps:?}"
    );
}

#[test]
fn reprovision_installs_again_after_a_reboot() {
    let run = lab(&["--firmware", "uefi-ipxe", "--flow", "reprovision"]);
    let (_s, api) = inventory(&run);
    let mac = machine_outcome(&run, 0)["mac"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(machine_outcome(&run, 0)["boots"], 2);
    assert_installed_and_booted_from_disk(&run, &api, &mac, 2);
    let steps = transitions(&events(&api, &mac));
    assert!(steps.iter().any(|s| s == "ready→reprovision"), "{steps:?}");
}

#[test]
fn two_vms_at_once_uefi_and_bios() {
    let run = lab(&["--firmware", "uefi-ipxe,bios-ipxe", "--parallel", "2"]);
    let (_s, api) = inventory(&run);
    for i in 0..2 {
        let mac = machine_outcome(&run, i)["mac"]
            .as_str()
            .unwrap()
            .to_string();
        assert_installed_and_booted_from_disk(&run, &api, &mac, 1);
    }
    let leases = api.get("/api/v1/machines").body;
    assert_eq!(leases.as_array().unwrap().len(), 2);
}

#[test]
fn interrupting_a_run_tears_everything_down() {
    use std::io::BufRead;
    let work = tempfile::Builder::new()
        .prefix("lab-test-")
        .tempdir()
        .unwrap();
    let mut child = Command::new(lab_bin())
        .args(["run", "--firmware", "uefi-ipxe", "--work"])
        .arg(work.path())
        .env("PROVISIONER_BIN", crate::harness::binary())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the VM to power on, then Ctrl-C (SIGINT to the lab only).
    let stderr = child.stderr.take().unwrap();
    let mut ns = None;
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        if let Some(rest) = line.split("provisioner up in namespace ").nth(1) {
            ns = Some(rest.trim().to_string());
        }
        if line.contains("power on") {
            break;
        }
    }
    let ns = ns.expect("the lab names its namespace");
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted run reports failure");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&ns), "{ns} left behind: {list}");
    // No QEMU or provisioner of this run is left (they ran with this work directory).
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let mine = work.path().to_string_lossy().to_string();
    assert!(
        !ps.lines().any(|l| l.contains(&mine)),
        "processes left:\n{ps}"
    );
}

/// The same boot through a link that loses 10 % of the frames in each direction and delays each
/// by 25–75 ms (so they reorder): `lab run --impair`, the lab's own forwarder (this kernel has no
/// netem). The machine still installs, reboots and comes up from its disk; the link's counters
/// show it really was that link.
#[test]
fn uefi_ipxe_reaches_ready_through_a_lossy_reordering_link() {
    let one = one_machine(
        &[
            "--firmware",
            "uefi-ipxe",
            "--impair",
            "loss=10,delay=50ms,jitter=25ms",
            // ~3.5 min alone (the 40 MiB image at ~360 KB/s); room for a second lab test.
            "--vm-timeout",
            "420",
        ],
        1,
    );
    let link = &one.run.outcome["impairment"];
    let secs = machine_outcome(&one.run, 0)["seconds_to_ready"].clone();
    eprintln!("ready after {secs} s; link: {link}");
    for dir in ["to_vms", "to_servers"] {
        let s = &link[dir];
        let n = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k}: {link}"));
        // The installer's downloads alone are thousands of frames each way.
        assert!(n("frames_in") > 2000.0, "{dir}: {s}");
        let loss = n("lost") / n("frames_in");
        assert!((0.08..0.12).contains(&loss), "{dir}: loss {loss}: {s}");
        assert!(n("reordered") > 100.0, "{dir}: {s}");
        assert!(n("held_min_ms") >= 25.0, "{dir}: {s}");
        assert!((45.0..70.0).contains(&n("held_mean_ms")), "{dir}: {s}");
        assert_eq!(n("send_errors"), 0.0, "{dir}: {s}");
    }
}

/// Secure Boot with the lab's own keys and a TPM: the installer said Secure Boot was on, and PCR 7
/// (Secure Boot policy) and PCR 11 (the UKI, measured by systemd-stub) are SHA-256 values that
/// something was extended into; the firmware refused nothing; both the installer and the
/// installed OS (the signed UKI on the disk) booted with the kernel seeing Secure Boot on; the
/// machine record holds the same report, its PCR 11 matching the profile's pin.
fn assert_secure_boot_and_pcrs(one: &One) {
    let ctx = || one.run.dump();
    let console = &machine_outcome(&one.run, 0)["console"];
    assert_eq!(console["secure_boot"], true, "{console}\n{}", ctx());
    assert_eq!(console["firmware_refused"], false, "{console}");
    for pcr in ["7", "11"] {
        let v = console["pcrs"][pcr].as_str().unwrap_or("");
        assert!(
            v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()),
            "PCR {pcr}: {v:?}\n{}",
            ctx()
        );
        assert!(v.bytes().any(|b| b != b'0'), "PCR {pcr} never extended");
    }
    let serial = machine_outcome(&one.run, 0)["serial_log"].as_str().unwrap();
    let serial = std::fs::read_to_string(serial).unwrap();
    let booted_sb = serial
        .lines()
        .filter(|l| l.contains("secureboot: Secure boot enabled"))
        .count();
    assert_eq!(booted_sb, 2, "installer and installed OS under Secure Boot");
    // The server recorded the installer's report, and PCR 11 matched the value the lab's
    // profile pinned, computed by the server from the signed UKI (`pin-pcr11 --from-uki`).
    let m = one.api.get(&format!("/api/v1/machines/{}", one.mac)).body;
    let a = &m["attestation"];
    assert_eq!(a["secure_boot"], true, "{m}");
    for pcr in ["7", "11"] {
        assert_eq!(a["pcrs"][pcr], console["pcrs"][pcr], "PCR {pcr}: {m}");
    }
    assert_eq!(a["pcr11"]["verdict"], "match", "{m}");
    // The profile required Secure Boot: the lab's server (db_certs = the lab's db cert) checked
    // the UKI's signature at save and before serving it, and the machine still reached ready.
    let p = one.api.get("/api/v1/profiles/lab").body;
    assert_eq!(p["secure_boot"], true, "{p}");
}

#[test]
fn uefi_http_boot_of_the_signed_uki_under_secure_boot() {
    let one = one_machine(&["--firmware", "uefi-http-sb"], 1);
    assert_secure_boot_and_pcrs(&one);
    assert!(
        one.evs.iter().any(|e| e["type"] == "transfer"
            && e["protocol"] == "http"
            && e["file"] == "installer.efi"
            && e["outcome"] == "complete"),
        "{}",
        one.run.dump()
    );
}

#[test]
fn uefi_pxe_loads_the_signed_uki_by_tftp_under_secure_boot() {
    let one = one_machine(&["--firmware", "uefi-pxe-sb"], 1);
    assert_secure_boot_and_pcrs(&one);
    let tftp: Vec<&Value> = one
        .evs
        .iter()
        .filter(|e| e["type"] == "transfer" && e["protocol"] == "tftp")
        .collect();
    // The firmware loaded the UKI itself as the NBP (its `boot.loader`); no iPXE in between.
    assert!(
        tftp.iter()
            .any(|e| e["file"] == "installer.efi" && e["outcome"] == "complete"),
        "{tftp:?}\n{}",
        one.run.dump()
    );
    assert!(!tftp.iter().any(|e| e["file"] == "snponly.efi"), "{tftp:?}");
}

/// Issue 14, item 2: an unsigned UKI under Secure Boot. The firmware downloads it, refuses it
/// ("Access Denied") and never starts it; the server fails the machine at its UKI-start deadline
/// (the lab sets 40 s) with a reason that says so.
#[test]
fn an_unsigned_uki_under_secure_boot_is_refused_and_the_machine_fails_with_the_reason() {
    let run = lab(&[
        "--firmware",
        "uefi-http-sb",
        "--unsigned-uki",
        "--vm-timeout",
        "180",
    ]);
    let m0 = machine_outcome(&run, 0);
    assert_eq!(m0["console"]["firmware_refused"], true, "{}", run.dump());
    assert_eq!(m0["state"], "failed", "{m0}\n{}", run.dump());
    let (_server, api) = inventory(&run);
    let mac = m0["mac"].as_str().unwrap();
    let m = api.get(&format!("/api/v1/machines/{mac}")).body;
    assert_eq!(m["lifecycle"]["state"], "failed", "{m}");
    let reason = m["lifecycle"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("never started it") && reason.contains("Secure Boot"),
        "{m}"
    );
    let evs = events(&api, mac);
    let steps = transitions(&evs);
    // It was never handed to an installer: booting → failed, nothing installed.
    assert!(steps.iter().any(|s| s == "booting→failed"), "{steps:?}");
    assert!(
        !steps.iter().any(|s| s.ends_with("→installing")),
        "{steps:?}"
    );
    assert!(
        evs.iter().any(|e| e["type"] == "transfer"
            && e["protocol"] == "http"
            && e["outcome"] == "complete"
            && e["file"] == "installer.efi"),
        "{evs:?}"
    );
}
