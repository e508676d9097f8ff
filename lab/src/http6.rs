//! The `uefi-http6` path: OVMF's own HTTP boot over IPv6 (see `lab/IPV6-HTTP-BOOT.md` for what
//! the firmware accepts, packet by packet).
//!
//! The DHCPv6 server is the **provisioner's own** `[dhcp6]` ([`provisioner_dhcp6_toml`]):
//! stateful on the lab bridge, addresses from [`POOL`], the per-machine URL as the server builds
//! it (`http://[2001:2::1]:8080/boot/efi?mac=…`, option 59 last, option 16 in the form edk2
//! checks, option 7 = 255 in the Advertise). OVMF's client ID is a DUID-UUID ([`duid_uuid`]), so
//! the server knows the machine by the EUI-64 of its link-local source.
//!
//! With `--dhcp6-reference kea` it is instead Debian's `kea-dhcp6`, configured here from typed
//! values: IA_NA from [`POOL`], per machine (Kea host reservation by the client's DUID) option
//! 59 = the provisioner's `/boot/efi?mac=…` on [`SERVER_IP6`], option 16 in the RFC 8415 form
//! edk2 checks ([`vendor_class_http_client`]), option 7 = 255 (OVMF then requests at once
//! instead of collecting Advertises for 4 s). Either way dnsmasq sends router advertisements
//! for the /64 (no DHCPv6 from it): without them OVMF waits 10 s for a route.
//!
//! OVMF tries `UEFI HTTPv4` before `UEFI HTTPv6` (the fw_cfg switches only govern PXE), and the
//! provisioner answers HTTP boot over IPv4: so for a `uefi-http6` VM the lab resets its IPv4
//! connections to the HTTP port ([`Http4Gate`], nftables, by the VM's MAC) until the console
//! says `>>Start HTTP Boot over IPv6`; the HTTPv4 attempt then fails at once, and the installer,
//! later, reaches the provisioner over IPv4 as every other path does.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::netns::Topology;
use crate::scenario::{mac_for, uuid_for, DhcpMode, HTTP_PORT};
use crate::vm::Firmware;

/// The provisioner's (and Kea's) address on the lab bridge (RFC 5180 benchmarking range).
pub const SERVER_IP6: &str = "2001:2::1";
/// The lab link's prefix.
pub const PREFIX6: &str = "2001:2::/64";
/// Addresses the DHCPv6 server (the provisioner's or Kea) hands out.
pub const POOL: &str = "2001:2::1000-2001:2::1fff";
/// edk2's enterprise number for HTTP boot (`HTTP_BOOT_DHCP6_ENTERPRISE_NUM`, Intel's 343).
pub const HTTP_BOOT_ENTERPRISE: u32 = 343;
/// The console line with which OVMF starts its IPv6 HTTP boot attempt.
pub const HTTP6_START: &str = "Start HTTP Boot over IPv6";

/// A reference DHCPv6 server to answer `uefi-http6` VMs instead of the provisioner's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dhcp6Reference {
    /// Debian's `kea-dhcp6` (package `kea-dhcp6-server`), configured by the lab.
    Kea,
}

/// Option 16's value as edk2 accepts it (RFC 8415 §21.16): enterprise number (4 bytes), then one
/// vendor-class-data item, a 2-byte length and `HTTPClient`. edk2 compares the 10 bytes at
/// offset 6 with `HTTPClient` and wants a length of at least 16.
pub fn vendor_class_http_client() -> Vec<u8> {
    let class = b"HTTPClient";
    let mut v = HTTP_BOOT_ENTERPRISE.to_be_bytes().to_vec();
    v.extend_from_slice(&(class.len() as u16).to_be_bytes());
    v.extend_from_slice(class);
    v
}

/// The boot file URL (option 59) for a machine: the provisioner's UKI download over IPv6.
pub fn boot_url(mac: &str, port: u16) -> String {
    format!("http://[{SERVER_IP6}]:{port}/boot/efi?mac={mac}")
}

/// The client DUID OVMF sends when the machine has an SMBIOS UUID (`-uuid`): DUID-UUID (type 4,
/// RFC 6355) — but with the UUID in SMBIOS byte order (the first three fields little-endian),
/// not RFC 6355's network order. As hex, e.g. `000400b01a5a…` for `5a1ab000-…`. `None` when
/// `uuid` is not 32 hex digits (dashes ignored).
pub fn duid_uuid(uuid: &str) -> Option<String> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| &hex[2 * i..2 * i + 2];
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    Some(format!(
        "0004{}",
        order
            .iter()
            .map(|&i| byte(i))
            .collect::<String>()
            .to_lowercase()
    ))
}

/// Kea's configuration file (the subset the lab uses; Kea's own key names).
#[derive(Serialize)]
struct KeaConfig {
    #[serde(rename = "Dhcp6")]
    dhcp6: Dhcp6,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Dhcp6 {
    interfaces_config: Interfaces,
    lease_database: LeaseDb,
    server_id: ServerId,
    /// Seconds.
    preferred_lifetime: u32,
    valid_lifetime: u32,
    renew_timer: u32,
    rebind_timer: u32,
    option_data: Vec<OptionData>,
    subnet6: Vec<Subnet6>,
    loggers: Vec<Logger>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Interfaces {
    interfaces: Vec<String>,
    /// The bridge has no carrier until a VM's tap is open: Kea retries its sockets.
    service_sockets_max_retries: u32,
    /// Milliseconds.
    service_sockets_retry_wait_time: u32,
}

#[derive(Serialize)]
struct LeaseDb {
    #[serde(rename = "type")]
    kind: &'static str,
    persist: bool,
}

#[derive(Serialize)]
struct ServerId {
    #[serde(rename = "type")]
    kind: &'static str,
    persist: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct OptionData {
    code: u16,
    space: &'static str,
    /// `false`: `data` is the option's value in hex, sent as is.
    csv_format: bool,
    data: String,
    always_send: bool,
}

impl OptionData {
    fn bytes(code: u16, value: &[u8]) -> OptionData {
        OptionData {
            code,
            space: "dhcp6",
            csv_format: false,
            data: value.iter().map(|b| format!("{b:02x}")).collect(),
            always_send: true,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Subnet6 {
    id: u32,
    subnet: &'static str,
    interface: String,
    pools: Vec<Pool>,
    reservations: Vec<Reservation>,
}

#[derive(Serialize)]
struct Pool {
    pool: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Reservation {
    /// Hex.
    duid: String,
    option_data: Vec<OptionData>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Logger {
    name: &'static str,
    severity: &'static str,
    debuglevel: u32,
    /// Kea 2.2 spells this one with an underscore.
    #[serde(rename = "output_options")]
    output_options: Vec<Output>,
}

#[derive(Serialize)]
struct Output {
    output: String,
}

/// Kea's configuration for `machines` (client DUID in hex, boot URL) on `iface`, logging to
/// `log`.
pub fn kea_config(iface: &str, machines: &[(String, String)], log: &Path) -> String {
    let cfg = KeaConfig {
        dhcp6: Dhcp6 {
            interfaces_config: Interfaces {
                interfaces: vec![iface.to_string()],
                service_sockets_max_retries: 600,
                service_sockets_retry_wait_time: 500,
            },
            lease_database: LeaseDb {
                kind: "memfile",
                persist: false,
            },
            server_id: ServerId {
                kind: "LL",
                persist: false,
            },
            preferred_lifetime: 3000,
            valid_lifetime: 4000,
            renew_timer: 1000,
            rebind_timer: 2000,
            option_data: vec![
                OptionData::bytes(16, &vendor_class_http_client()),
                OptionData::bytes(7, &[255]),
            ],
            subnet6: vec![Subnet6 {
                id: 1,
                subnet: PREFIX6,
                interface: iface.to_string(),
                pools: vec![Pool { pool: POOL }],
                reservations: machines
                    .iter()
                    .map(|(duid, url)| Reservation {
                        duid: duid.clone(),
                        option_data: vec![OptionData::bytes(59, url.as_bytes())],
                    })
                    .collect(),
            }],
            loggers: vec![Logger {
                name: "kea-dhcp6",
                severity: "DEBUG",
                debuglevel: 40,
                output_options: vec![Output {
                    output: log.display().to_string(),
                }],
            }],
        },
    };
    serde_json::to_string_pretty(&cfg).expect("plain data")
}

/// The provisioner's `[dhcp6]` section (TOML) for a `uefi-http6` run: stateful on `iface`,
/// our address [`SERVER_IP6`], the range [`POOL`], `unknown_machines` as the `[dhcp]` section's.
pub fn provisioner_dhcp6_toml(iface: &str, unknown: &str) -> String {
    #[derive(Serialize)]
    struct File<'a> {
        dhcp6: Section<'a>,
    }
    #[derive(Serialize)]
    struct Section<'a> {
        mode: &'a str,
        interface: &'a str,
        server_address: &'a str,
        range: &'a str,
        unknown_machines: &'a str,
    }
    let file = File {
        dhcp6: Section {
            mode: "stateful",
            interface: iface,
            server_address: SERVER_IP6,
            range: POOL,
            unknown_machines: unknown,
        },
    };
    toml::to_string(&file).expect("plain data")
}

/// The run's `uefi-http6` VMs by index; an error when the run has options this path does not
/// support.
pub fn vms(opts: &crate::scenario::RunOpts) -> anyhow::Result<Vec<usize>> {
    let idx: Vec<usize> = (opts.firmware.iter().enumerate())
        .filter(|(_, f)| **f == Firmware::UefiHttp6)
        .map(|(i, _)| i)
        .collect();
    if idx.is_empty() {
        return Ok(idx);
    }
    anyhow::ensure!(
        !opts.ha && opts.impair.is_none() && opts.dhcp == DhcpMode::Full,
        "uefi-http6 runs without --ha, --impair and --dhcp proxy"
    );
    Ok(idx)
}

/// Kea for the VMs `vms` (indices: their MAC and UUID are the lab's, [`mac_for`] and
/// [`uuid_for`]) and the closed [`Http4Gate`] for them.
pub fn start_reference(
    topo: &Topology,
    work: &Path,
    vms: &[usize],
) -> anyhow::Result<(Child, Http4Gate)> {
    let machines = vms
        .iter()
        .map(|&i| {
            let duid = duid_uuid(&uuid_for(i)).context("lab UUID")?;
            Ok((duid, boot_url(&mac_for(i), HTTP_PORT)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut kea = start_kea(topo, work, &machines)?;
    match close_http4(topo, vms) {
        Ok(gate) => Ok((kea, gate)),
        Err(e) => {
            let _ = kea.kill();
            let _ = kea.wait();
            Err(e)
        }
    }
}

/// The closed [`Http4Gate`] for the VMs `vms` (indices; their MACs are [`mac_for`]'s).
pub fn close_http4(topo: &Topology, vms: &[usize]) -> anyhow::Result<Http4Gate> {
    let macs: Vec<String> = vms.iter().map(|&i| mac_for(i)).collect();
    Http4Gate::close(topo, &macs, HTTP_PORT)
}

/// Starts `kea-dhcp6` in the lab namespace for `machines` (DUID, boot URL); returns the child
/// once Kea says it started (at most 15 s). Its files are `<work>/kea-dhcp6.{json,log,out}`.
pub fn start_kea(
    topo: &Topology,
    work: &Path,
    machines: &[(String, String)],
) -> anyhow::Result<Child> {
    let cfg = work.join("kea-dhcp6.json");
    let log = work.join("kea-dhcp6.log");
    std::fs::write(&cfg, kea_config("br0", machines, &log))?;
    let _ = std::fs::remove_file(&log);
    let mut child = topo
        .exec("kea-dhcp6")
        .arg("-c")
        .arg(&cfg)
        // Its PID and lock files in the run's directory, not /run/kea.
        .env("KEA_PIDFILE_DIR", work)
        .env("KEA_LOCKFILE_DIR", work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("kea-dhcp6.out"))?)
        .spawn()
        .context("starting kea-dhcp6 (package kea-dhcp6-server: scripts/install-test-deps)")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("DHCP6_STARTED") {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "kea-dhcp6 exited ({status}): {}",
                std::fs::read_to_string(work.join("kea-dhcp6.out")).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("kea-dhcp6 did not start in 15 s; see {}", log.display());
        }
        // Polling Kea's log for its start line (no readiness signal of its own), bounded.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resets the IPv4 TCP connections of some MACs to the HTTP port (an nftables table in the lab
/// namespace) until [`Http4Gate::open`]: OVMF's `UEFI HTTPv4` attempt then fails at once.
#[derive(Clone)]
pub struct Http4Gate {
    ns: String,
    table: String,
}

impl Http4Gate {
    /// Closes the gate for `macs` (none: no table, a no-op gate).
    pub fn close(topo: &Topology, macs: &[String], port: u16) -> anyhow::Result<Http4Gate> {
        let gate = Http4Gate {
            ns: topo.ns.clone(),
            table: "lab_http6".into(),
        };
        if macs.is_empty() {
            return Ok(gate);
        }
        let rules: String = macs
            .iter()
            .map(|m| {
                format!("    ether saddr {m} meta nfproto ipv4 tcp dport {port} reject with tcp reset\n")
            })
            .collect();
        let script = format!(
            "table inet {t} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{rules}  }}\n}}\n",
            t = gate.table
        );
        gate.nft(&["-f", "-"], Some(&script))?;
        Ok(gate)
    }

    /// Lets the VMs' IPv4 HTTP through (idempotent).
    pub fn open(&self) {
        let _ = self.nft(&["delete", "table", "inet", &self.table], None);
    }

    fn nft(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "nft"]).args(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running nft (nftables)")?;
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().expect("piped").write_all(s.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_16_is_the_rfc_form_edk2_checks() {
        let v = vendor_class_http_client();
        assert_eq!(
            v.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "00000157000a48545450436c69656e74"
        );
        // edk2 (HttpBootDhcp6.c): length >= 16 and "HTTPClient" at offset 6.
        assert!(v.len() >= 16);
        assert_eq!(&v[6..16], b"HTTPClient");
    }

    #[test]
    fn the_provisioners_dhcp6_section_is_stateful_on_the_bridge() {
        let text = provisioner_dhcp6_toml("br0", "ignore");
        let v: toml::Table = toml::from_str(&text).unwrap();
        let d = v["dhcp6"].as_table().unwrap();
        assert_eq!(d["mode"].as_str(), Some("stateful"));
        assert_eq!(d["interface"].as_str(), Some("br0"));
        assert_eq!(d["server_address"].as_str(), Some(SERVER_IP6));
        assert_eq!(d["range"].as_str(), Some("2001:2::1000-2001:2::1fff"));
        assert_eq!(d["unknown_machines"].as_str(), Some("ignore"));
        assert_eq!(d.len(), 5, "{text}");
    }

    #[test]
    fn kea_config_has_per_machine_urls_and_the_options() {
        let url = boot_url("52:54:00:1a:b0:01", 8080);
        assert_eq!(
            url,
            "http://[2001:2::1]:8080/boot/efi?mac=52:54:00:1a:b0:01"
        );
        let duid = duid_uuid("5a1ab000-0000-4000-8000-000000000001").unwrap();
        // As OVMF sent it in the lab (captured).
        assert_eq!(duid, "000400b01a5a000000408000000000000001");
        assert_eq!(duid_uuid("5a1ab000"), None);
        let text = kea_config(
            "br0",
            &[(duid.clone(), url.clone())],
            Path::new("/x/kea.log"),
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let d = &v["Dhcp6"];
        assert_eq!(d["interfaces-config"]["interfaces"][0], "br0");
        assert_eq!(d["option-data"][0]["code"], 16);
        assert_eq!(
            d["option-data"][0]["data"],
            "00000157000a48545450436c69656e74"
        );
        assert_eq!(d["option-data"][1]["code"], 7);
        assert_eq!(d["option-data"][1]["data"], "ff");
        let r = &d["subnet6"][0]["reservations"][0];
        assert_eq!(r["duid"], duid);
        assert_eq!(r["option-data"][0]["code"], 59);
        let hex: String = url.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r["option-data"][0]["data"], hex);
        assert_eq!(d["subnet6"][0]["pools"][0]["pool"], POOL);
    }
}
