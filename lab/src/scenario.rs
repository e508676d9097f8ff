//! One lab run: images, network, the provisioner inside the namespace, machines in the inventory,
//! VMs booting through every step, and the outcome read back from the provisioner's inventory.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::images::{self, Images};
use crate::netns::{Topology, SERVER_IP, SITE_IP};
use crate::vm::{self, Firmware, Vm, VmSpec};

pub const HTTP_PORT: u16 = 8080;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// The provisioner is the DHCP server.
    Full,
    /// dnsmasq (in its own namespace) is the site's DHCP server; the provisioner answers only
    /// the netboot part (proxyDHCP).
    Proxy,
}

/// What to do besides "register, boot, wait for ready".
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    /// Register the MACs first (`machines add`).
    Register,
    /// Do not register: the machines show up as `discovered` (policy discover) and wait; the lab
    /// then runs `machines approve` without touching the VMs.
    DiscoverApprove,
    /// After ready, `machines reprovision` and boot again: the machine installs again.
    Reprovision,
}

pub struct RunOpts {
    pub firmware: Vec<Firmware>,
    pub dhcp: DhcpMode,
    pub flow: Flow,
    pub work: PathBuf,
    pub cache: PathBuf,
    pub provisioner: PathBuf,
    /// VMs booting at once (2 cores: 2).
    pub parallel: usize,
    /// Per VM boot (power-on to power-off).
    pub vm_timeout: Duration,
    /// Answer IPv6 router solicitations (and DHCPv6) on the lab link; off only to measure what
    /// that saves.
    pub router_advertisements: bool,
    /// Record the DHCP traffic on the lab link to `<work>/dhcp.pcap` (tcpdump).
    pub capture: bool,
    /// Two provisioners on one etcd, the one that ACKed the first VM killed right after that
    /// ACK (see [`crate::ha_run`]).
    pub ha: bool,
    /// The firmware retries its boot order this long after every entry failed (see
    /// [`crate::vm`]); `None`: it does not.
    pub boot_retry: Option<Duration>,
    /// Loss and delay on the link between the servers and the VMs (see [`crate::impair_link`]).
    pub impair: Option<crate::impair::Impairment>,
    /// Give every VM a TPM (the Secure Boot paths always get one).
    pub tpm: bool,
    /// Serve the installer UKI unsigned even to Secure Boot VMs (their firmware must refuse it).
    pub unsigned_uki: bool,
    /// A reference DHCPv6 server for the `uefi-http6` VMs (see [`crate::http6`]); `None`: the
    /// provisioner's own `[dhcp6]` answers them.
    pub dhcp6_reference: Option<crate::http6::Dhcp6Reference>,
}

/// With `--ha`, how often a VM that powered off before `ready` (an installer whose server
/// vanished) is powered on again, as an operator or the provisioning system's power control
/// would.
const HA_MAX_BOOTS: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct MachineOutcome {
    pub name: String,
    pub mac: String,
    pub firmware: Firmware,
    pub state: String,
    /// Power-on to `ready` (the last boot, for reprovision).
    pub seconds_to_ready: Option<f64>,
    pub boots: usize,
    /// Times the firmware retried its boot order (see [`RunOpts::boot_retry`]).
    pub boot_retries: usize,
    pub serial_log: PathBuf,
    /// Secure Boot state, PCRs and firmware refusals, from the serial console.
    pub console: crate::console_report::ConsoleReport,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub machines: Vec<MachineOutcome>,
    /// `provisioner machines list` at the end.
    pub inventory_table: String,
    pub data_dir: PathBuf,
    pub provisioner_log: PathBuf,
    /// With `--ha`: the kill and what the survivor holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<crate::ha_run::HaOutcome>,
    /// With `--impair`: what the impaired link did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impairment: Option<crate::impair_link::LinkStats>,
}

/// The server's `lifecycle.uki_start_timeout` in `--unsigned-uki` runs.
pub const UNSIGNED_UKI_START_TIMEOUT: Duration = Duration::from_secs(40);

/// Progress callback: machine name, its state or a note.
pub type Progress<'a> = &'a dyn Fn(&str, &str);

pub fn mac_for(i: usize) -> String {
    format!("52:54:00:1a:b0:{:02x}", i + 1)
}

pub fn uuid_for(i: usize) -> String {
    format!("5a1ab000-0000-4000-8000-0000000000{:02x}", i + 1)
}

pub struct Lab {
    pub topo: Topology,
    pub work: PathBuf,
    provisioner: PathBuf,
    /// The provisioners (one; two with `--ha`, in the order of [`crate::netns::HA_SERVER_IPS`]).
    pub(crate) servers: Vec<ServerProc>,
    helpers: Vec<Child>,
    /// The first provisioner's log.
    pub log: PathBuf,
    /// Base URL the CLI talks to (the survivor's once one was killed).
    pub(crate) url: String,
    /// Where the CLI finds `operator.token` (the data directory of the server that made it).
    token_dir: PathBuf,
    /// More TOML for the (single) server: `[boot_tls]` for `uefi-https`.
    server_extra: String,
    /// `uefi-http6` VMs in the run: the provisioner's HTTP listens on `[::]` (IPv4 too), dnsmasq
    /// only sends router advertisements, and the provisioner (or Kea) answers DHCPv6.
    http6: bool,
    /// The provisioner serves DHCPv6 on the bridge (`uefi-http6` without a reference server).
    dhcp6: bool,
}

/// One `provisioner serve` of the run.
pub(crate) struct ServerProc {
    pub ip: String,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub data: PathBuf,
}

/// Where a provisioner runs and what it shares.
pub(crate) struct ServerAt<'a> {
    pub ip: &'a str,
    pub ns: Option<usize>,
    /// The interface DHCP binds to in that namespace.
    pub iface: &'a str,
    /// File names: `provisioner<suffix>.log`, `data<suffix>`, `provisioner<suffix>.toml`.
    pub suffix: &'a str,
    /// Extra TOML (the `[store]` section with `--ha`).
    pub extra: String,
}

/// The provisioner's `tftp.root` in a run: `-sb` PXE machines get the signed installer UKI
/// from it as their NBP ([`crate::vm::UKI_NBP`], their `boot.loader`).
pub fn tftp_root(work: &Path) -> PathBuf {
    work.join("tftp")
}

impl Lab {
    /// `provisioner <args>` as a client inside the namespace.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .topo
            .exec(self.provisioner.to_str().context("provisioner path")?)
            .arg("--url")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(&self.token_dir)
            .args(args)
            .output()?;
        Ok(out)
    }

    pub fn cli_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "provisioner {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn machine(&self, mac: &str) -> anyhow::Result<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&self.cli_ok(&["--json", "machines", "show", mac])?)?;
        Ok(v["machine"].clone())
    }

    /// `uki_start_timeout`: the server's `lifecycle.uki_start_timeout` (its default when `None`).
    fn start_server(
        &mut self,
        dhcp: DhcpMode,
        unknown: &str,
        uki_start_timeout: Option<Duration>,
    ) -> anyhow::Result<()> {
        let extra = match uki_start_timeout {
            Some(d) => format!("[lifecycle]\nuki_start_timeout = \"{}s\"\n", d.as_secs()),
            None => String::new(),
        };
        self.start_provisioner(
            &ServerAt {
                ip: SERVER_IP,
                ns: None,
                iface: "br0",
                suffix: "",
                extra: extra + &self.server_extra,
            },
            dhcp,
            unknown,
        )
    }

    /// Starts `provisioner serve` as `at` says and waits for its "listening" line.
    pub(crate) fn start_provisioner(
        &mut self,
        at: &ServerAt<'_>,
        dhcp: DhcpMode,
        unknown: &str,
    ) -> anyhow::Result<()> {
        let (ip, iface) = (at.ip, at.iface);
        let data = self.work.join(format!("data{}", at.suffix));
        std::fs::create_dir_all(&data)?;
        let dhcp_section = match dhcp {
            DhcpMode::Full => format!(
                "[dhcp]\nmode = \"full\"\ninterface = \"{iface}\"\nserver_ip = \"{ip}\"\nunknown_machines = \"{unknown}\"\n\
                 [[dhcp.subnet]]\nnetwork = \"198.18.0.0/24\"\nrange = \"198.18.0.100-198.18.0.199\"\nlease_time = \"1h\"\n"
            ),
            DhcpMode::Proxy => format!(
                "[dhcp]\nmode = \"proxy\"\ninterface = \"{iface}\"\nserver_ip = \"{ip}\"\nunknown_machines = \"{unknown}\"\n"
            ),
        };
        // `uefi-http6`: the UKI is fetched over IPv6 too (a [::] socket takes IPv4 as well).
        let http_ip = match self.http6 {
            true => "[::]",
            false => ip,
        };
        let dhcp6_section = match self.dhcp6 {
            true => crate::http6::provisioner_dhcp6_toml(iface, unknown),
            false => String::new(),
        };
        let cfg = format!(
            "data_dir = \"{}\"\n[http]\nlisten = \"{http_ip}:{HTTP_PORT}\"\n[tftp]\nlisten = \"{ip}:69\"\n\
             root = \"{}\"\n[syslog]\nlisten = \"{ip}:514\"\n[boot]\npoll_interval = \"3s\"\n[log]\nformat = \"json\"\n{}{dhcp_section}{dhcp6_section}",
            data.display(),
            tftp_root(&self.work).display(),
            at.extra
        );
        let cfg_path = self.work.join(format!("provisioner{}.toml", at.suffix));
        std::fs::write(&cfg_path, cfg)?;
        let log_path = self.work.join(format!("provisioner{}.log", at.suffix));
        let log = std::fs::File::create(&log_path)?;
        let program = self.provisioner.to_str().context("provisioner path")?;
        let mut cmd = match at.ns {
            Some(i) => self.topo.exec_server(i, program),
            None => self.topo.exec(program),
        };
        let mut child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the provisioner")?;
        let rx = tee_until_listening(child.stderr.take().expect("piped"), log);
        self.servers.push(ServerProc {
            ip: ip.to_string(),
            child: Some(child),
            log: log_path.clone(),
            data,
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            bail!(
                "the provisioner at {ip} did not start; its log:\n{}",
                vm::tail(&log_path, 30)
            );
        }
        Ok(())
    }

    /// dnsmasq answering IPv6 router solicitations on the bridge (iPXE otherwise waits ~15 s for
    /// one) and DHCPv6 with a boot-file URL nothing listens on, so OVMF's "HTTP boot over IPv6"
    /// entry fails at once instead of waiting ~64 s for an offer (there is no IPv6 boot service
    /// here; the provisioner is IPv4). In proxy mode a second dnsmasq is the site's DHCP server,
    /// in its own namespace.
    fn start_helpers(&mut self, dhcp: DhcpMode, ra: bool) -> anyhow::Result<()> {
        if ra || self.http6 {
            self.start_ra()?;
        }
        self.start_site(dhcp)
    }

    fn start_ra(&mut self) -> anyhow::Result<()> {
        let ra = self
            .topo
            .exec("dnsmasq")
            .args([
                "-k",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=br0",
                "--bind-interfaces",
            ])
            .arg("--enable-ra")
            .args(match self.http6 {
                // The provisioner or Kea is the DHCPv6 server (crate::http6): RAs only.
                true => vec!["--dhcp-range=2001:2::,ra-only,64"],
                false => vec![
                    "--dhcp-range=2001:2::1000,2001:2::1fff,64,1h",
                    "--dhcp-option=option6:bootfile-url,http://[2001:2::1]:9/no-ipv6-boot-here",
                ],
            })
            .arg(format!("--pid-file={}", self.work.join("ra.pid").display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.work.join("ra.log"))?)
            .spawn()
            .context("starting dnsmasq (router advertisements)")?;
        self.helpers.push(ra);
        Ok(())
    }

    fn start_capture(&mut self) -> anyhow::Result<()> {
        let pcap = self.work.join("dhcp.pcap");
        let child = self
            .topo
            .exec("tcpdump")
            .args(["-i", "br0", "-U", "-s", "0", "-w"])
            .arg(&pcap)
            .args([
                "udp", "port", "67", "or", "udp", "port", "68", "or", "udp", "port", "4011", "or",
                "udp", "port", "546", "or", "udp", "port", "547",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.work.join("tcpdump.log"))?)
            .spawn()
            .context("starting tcpdump (apt-get install tcpdump)")?;
        self.helpers.push(child);
        // tcpdump says "listening on br0" once it captures.
        for _ in 0..50 {
            if std::fs::read_to_string(self.work.join("tcpdump.log"))
                .unwrap_or_default()
                .contains("listening on")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "tcpdump did not start: {}",
            vm::tail(&self.work.join("tcpdump.log"), 5)
        )
    }

    fn start_site(&mut self, dhcp: DhcpMode) -> anyhow::Result<()> {
        if dhcp == DhcpMode::Proxy {
            let site = self
                .topo
                .exec_site("dnsmasq")
                .args([
                    "-k",
                    "--conf-file=/dev/null",
                    "--port=0",
                    "--interface=eth0",
                    "--bind-interfaces",
                ])
                .args([
                    "--dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,1h",
                    "--dhcp-authoritative",
                    "--no-ping",
                    "--log-dhcp",
                ])
                .arg(format!(
                    "--dhcp-leasefile={}",
                    self.work.join("site.leases").display()
                ))
                .arg(format!(
                    "--pid-file={}",
                    self.work.join("site.pid").display()
                ))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.work.join("site-dhcp.log"))?)
                .spawn()
                .context("starting dnsmasq (site DHCP)")?;
            self.helpers.push(site);
            let _ = SITE_IP;
        }
        Ok(())
    }

    /// Imports the images and creates the `lab` profile whose template tells the installer where
    /// the disk images are: at the server that renders the config (`urls.base`), so with `--ha`
    /// a config names no server but the one that answered. Returns the assets' digests.
    /// `secure_boot`: the profile requires Secure Boot (`profiles add --secure-boot`): the server
    /// then checks the UKI's signature against its `secure_boot.db_certs` and fails a machine
    /// that reports Secure Boot off.
    fn provision_assets(&self, images: &Images, secure_boot: bool) -> anyhow::Result<Vec<String>> {
        let digest = |out: String| -> anyhow::Result<String> {
            let v: serde_json::Value = serde_json::from_str(&out)?;
            Ok(v["digest"]
                .as_str()
                .context("digest")?
                .trim_start_matches("sha256:")
                .to_string())
        };
        let uki =
            digest(self.cli_ok(&["--json", "assets", "import", path(&images.installer_uki)?])?)?;
        let efi = digest(self.cli_ok(&[
            "--json",
            "assets",
            "import",
            "--loader",
            path(&images.disk_efi)?,
        ])?)?;
        let bios = digest(self.cli_ok(&[
            "--json",
            "assets",
            "import",
            "--loader",
            path(&images.disk_bios)?,
        ])?)?;
        let base = "{{ urls.base }}";
        let template = format!(
            "#cloud-config\nhostname: {{{{ hostname }}}}\ninstall:\n  device: {{{{ install.device }}}}\n  auto: true\n  reboot: true\n\
             provisioner:\n  token: {{{{ token }}}}\n  progress: {{{{ urls.progress }}}}\n  register: {{{{ urls.register }}}}\n\
             \x20 logs: {{{{ urls.logs }}}}\n  attestation: {{{{ urls.attestation }}}}\n  syslog: {{{{ syslog }}}}\n  image_efi: {base}/assets/{efi}/disk-efi.img\n\
             \x20 image_bios: {base}/assets/{bios}/disk-bios.img\n"
        );
        let tpl_path = self.work.join("lab-profile.yaml");
        std::fs::write(&tpl_path, template)?;
        let uki_arg = format!("sha256:{uki}");
        let mut add = vec![
            "profiles",
            "add",
            "lab",
            "--uki",
            &uki_arg,
            "--install-disk",
            "/dev/vda",
            "--cloud-config",
            path(&tpl_path)?,
        ];
        if secure_boot {
            add.push("--secure-boot");
        }
        self.cli_ok(&add)?;
        Ok(vec![uki, efi, bios])
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

impl Drop for Lab {
    fn drop(&mut self) {
        let servers = self.servers.iter_mut().filter_map(|s| s.child.as_mut());
        for c in self.helpers.iter_mut().chain(servers) {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

struct Running {
    idx: usize,
    vm: Vm,
    boots: usize,
}

/// Runs the scenario; `progress` hears about every state change.
pub fn run(opts: &RunOpts, progress: Progress<'_>) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&opts.work)?;
    let base = format!("http://{SERVER_IP}:{HTTP_PORT}");
    progress("lab", "building images");
    let images = images::build(&opts.cache, &base)?;
    let secure_boot = opts.firmware.iter().any(|f| f.secure_boot());
    let keys = match secure_boot {
        true => Some(crate::secure_boot::LabKeys::ensure(&opts.cache)?),
        false => None,
    };
    // With Secure Boot VMs in the run, every machine gets the signed UKIs (they boot without
    // Secure Boot too), unless the run is about the firmware refusing an unsigned one.
    let pin_pcr11 = keys.is_some() && !opts.unsigned_uki;
    // Only Secure Boot machines and signed UKIs: the server checks signatures end to end too
    // (its db certificate is the lab's db cert) and the profile requires Secure Boot.
    let require_sb = pin_pcr11 && opts.firmware.iter().all(|f| f.secure_boot());
    let db_certs = match (&keys, require_sb) {
        (Some(k), true) => format!(
            "[secure_boot]\ndb_certs = [{:?}]\n",
            k.cert(crate::secure_boot::KeyRole::Db)
                .display()
                .to_string()
        ),
        _ => String::new(),
    };
    let images = match (&keys, pin_pcr11) {
        (Some(k), true) => {
            progress("lab", "installer and OS UKIs signed with the lab's db key");
            k.signed(&images)?
        }
        _ => images,
    };
    std::fs::create_dir_all(tftp_root(&opts.work))?;
    std::fs::copy(
        &images.installer_uki,
        tftp_root(&opts.work).join(vm::UKI_NBP),
    )?;
    let https = crate::https_boot::wanted(&opts.firmware, opts.ha)?;
    let http6_vms = crate::http6::vms(opts)?;
    let n = opts.firmware.len();
    let topo = match (opts.impair.is_some(), opts.ha) {
        (true, ha) => Topology::new_impaired(n, opts.dhcp == DhcpMode::Proxy, ha)?,
        (false, true) => Topology::new_ha(n)?,
        (false, false) => Topology::new(n, opts.dhcp == DhcpMode::Proxy)?,
    };
    // Dropped before `lab` at the end (on an error path after it: the threads just stop).
    let link = match opts.impair {
        Some(spec) => {
            let l = crate::impair_link::start(&topo, spec)?;
            progress("lab", &format!("impaired link to the VMs: {spec}"));
            Some(l)
        }
        None => None,
    };
    // Declared before `lab`, so that on every path the provisioners stop before etcd does.
    let mut ha: Option<crate::ha_run::Ha> = None;
    let mut lab = Lab {
        topo,
        work: opts.work.clone(),
        provisioner: opts.provisioner.clone(),
        servers: Vec::new(),
        helpers: Vec::new(),
        log: opts.work.join(if opts.ha {
            "provisioner-0.log"
        } else {
            "provisioner.log"
        }),
        url: base.clone(),
        token_dir: opts.work.join(if opts.ha { "data-0" } else { "data" }),
        server_extra: match https {
            true => crate::https_boot::server_toml(SERVER_IP),
            false => String::new(),
        } + &db_certs,
        http6: !http6_vms.is_empty(),
        dhcp6: !http6_vms.is_empty() && opts.dhcp6_reference.is_none(),
    };
    lab.start_helpers(opts.dhcp, opts.router_advertisements)?;
    let http4_gate = match (lab.http6, opts.dhcp6_reference) {
        (true, Some(crate::http6::Dhcp6Reference::Kea)) => {
            let (kea, gate) = crate::http6::start_reference(&lab.topo, &opts.work, &http6_vms)?;
            lab.helpers.push(kea);
            progress("lab", "kea-dhcp6 answers DHCPv6 (the uefi-http6 reference)");
            Some(gate)
        }
        (true, None) => {
            let gate = crate::http6::close_http4(&lab.topo, &http6_vms)?;
            progress(
                "lab",
                "the provisioner answers DHCPv6 (stateful, 2001:2::/64)",
            );
            Some(gate)
        }
        (false, _) => None,
    };
    if opts.capture {
        lab.start_capture()?;
    }
    let unknown = if opts.flow == Flow::DiscoverApprove {
        "discover"
    } else {
        "ignore"
    };
    if opts.ha {
        ha = Some(crate::ha_run::start(&mut lab, opts.dhcp, unknown)?);
    } else {
        // An unsigned UKI under Secure Boot is refused by the firmware: the server should fail
        // the machine well before the VM's timeout (TCG boots start the installer in ~20 s).
        let uki_start = opts.unsigned_uki.then_some(UNSIGNED_UKI_START_TIMEOUT);
        lab.start_server(opts.dhcp, unknown, uki_start)?;
    }
    progress(
        "lab",
        &format!("provisioner up in namespace {}", lab.topo.ns),
    );
    let digests = lab.provision_assets(&images, require_sb)?;
    let cacerts = match https {
        true => Some(crate::https_boot::cacerts(&opts.work, &lab.token_dir)?),
        false => None,
    };
    if pin_pcr11 {
        // Measured boot end to end: the server computes what systemd-stub will leave in PCR 11
        // for the signed UKI, and fails a machine whose installer reports anything else.
        lab.cli_ok(&["profiles", "pin-pcr11", "lab", "--from-uki"])?;
        progress("lab", "profile pins PCR 11 computed from the signed UKI");
    }
    let specs: Vec<VmSpec> = opts
        .firmware
        .iter()
        .enumerate()
        .map(|(i, fw)| VmSpec {
            name: format!("vm{i}"),
            firmware: *fw,
            mac: mac_for(i),
            uuid: uuid_for(i),
            tap: i,
            disk: opts.work.join(format!("vm{i}.disk")),
            vars: opts.work.join(format!("vm{i}.vars")),
            vars_template: match &keys {
                Some(k) if fw.secure_boot() => k.vars(),
                _ => PathBuf::from(vm::OVMF_VARS),
            },
            tpm: opts.tpm || fw.secure_boot(),
            serial_log: opts.work.join(format!("vm{i}.serial.log")),
            timeout: opts.vm_timeout,
            boot_retry: opts.boot_retry,
            https_cacerts: cacerts.clone(),
            on_console: match (fw, &http4_gate) {
                (Firmware::UefiHttp6, Some(g)) => {
                    let g = g.clone();
                    let open: std::sync::Arc<dyn Fn() + Send + Sync> =
                        std::sync::Arc::new(move || g.open());
                    Some((crate::http6::HTTP6_START, open))
                }
                _ => None,
            },
        })
        .collect();
    if opts.flow != Flow::DiscoverApprove {
        for s in &specs {
            let mut args = vec![
                "machines",
                "add",
                &s.mac,
                "--profile",
                "lab",
                "--hostname",
                &s.name,
                "--uuid",
                &s.uuid,
            ];
            if let Some(loader) = s.firmware.loader() {
                args.extend(["--loader", loader]);
            }
            lab.cli_ok(&args)?;
        }
    }
    let mut outcomes: Vec<MachineOutcome> = specs
        .iter()
        .map(|s| MachineOutcome {
            name: s.name.clone(),
            mac: s.mac.clone(),
            firmware: s.firmware,
            state: "registered".into(),
            seconds_to_ready: None,
            boots: 0,
            boot_retries: 0,
            serial_log: s.serial_log.clone(),
            console: Default::default(),
        })
        .collect();
    if let Some(h) = &mut ha {
        h.ready_for_vms(&lab, &digests)?;
        progress(
            "lab",
            "both provisioners hold every asset; watching the bridge for the first VM's ACK",
        );
    }
    let mut pending: Vec<usize> = (0..n).collect();
    let mut running: Vec<Running> = Vec::new();
    let mut approved = vec![false; n];
    let mut reprovisioned = vec![false; n];
    let deadline = Instant::now() + opts.vm_timeout * (n as u32 * 2 + 1);
    loop {
        if crate::interrupted() {
            bail!("interrupted");
        }
        if Instant::now() > deadline {
            bail!("the lab run took too long");
        }
        while running.len() < opts.parallel.max(1) && !pending.is_empty() {
            let idx = pending.remove(0);
            vm::prepare(&specs[idx], 64)?;
            progress(
                &specs[idx].name,
                &format!("power on ({})", specs[idx].firmware.name()),
            );
            running.push(Running {
                idx,
                vm: vm::start(&lab.topo, &specs[idx])?,
                boots: outcomes[idx].boots + 1,
            });
        }
        if running.is_empty() {
            break;
        }
        match &mut ha {
            Some(h) => h.tick(&mut lab, Duration::from_millis(500), progress)?,
            None => std::thread::sleep(Duration::from_millis(500)),
        }
        let mut still = Vec::new();
        for mut r in running.drain(..) {
            let spec = &specs[r.idx];
            let m = lab.machine(&spec.mac).ok();
            let state = m
                .as_ref()
                .and_then(|m| m["lifecycle"]["state"].as_str().map(str::to_string));
            if let Some(st) = &state {
                if *st != outcomes[r.idx].state {
                    progress(&spec.name, st);
                    outcomes[r.idx].state = st.clone();
                }
            }
            if state.as_deref() == Some("discovered") && !approved[r.idx] {
                lab.cli_ok(&["machines", "approve", &spec.mac, "--profile", "lab"])?;
                approved[r.idx] = true;
                progress(
                    &spec.name,
                    "approved by the operator (the VM was not touched)",
                );
            }
            let ready = state.as_deref() == Some("ready")
                && m.as_ref()
                    .is_some_and(|m| m["registration"]["boot_state"] == "active_boot");
            if ready && outcomes[r.idx].seconds_to_ready.is_none() {
                outcomes[r.idx].seconds_to_ready = Some(r.vm.started.elapsed().as_secs_f64());
            }
            if state.as_deref() == Some("failed") && !opts.ha {
                progress(&spec.name, "failed: powering it off");
                r.vm.kill();
            }
            match r.vm.try_wait() {
                None => still.push(r),
                Some(_) => {
                    // It may have registered just before powering off.
                    let m = lab.machine(&spec.mac).ok();
                    let ready = m.as_ref().is_some_and(|m| {
                        m["lifecycle"]["state"] == "ready"
                            && m["registration"]["boot_state"] == "active_boot"
                    });
                    if ready && outcomes[r.idx].seconds_to_ready.is_none() {
                        outcomes[r.idx].seconds_to_ready =
                            Some(r.vm.started.elapsed().as_secs_f64());
                    }
                    outcomes[r.idx].boots = r.boots;
                    outcomes[r.idx].boot_retries += r.vm.retries.load(Ordering::SeqCst);
                    if opts.ha && !ready && r.boots < HA_MAX_BOOTS {
                        progress(&spec.name, "powered off before ready; powering it on again");
                        pending.push(r.idx);
                    } else if opts.flow == Flow::Reprovision && ready && !reprovisioned[r.idx] {
                        lab.cli_ok(&["machines", "reprovision", &spec.mac])?;
                        reprovisioned[r.idx] = true;
                        outcomes[r.idx].seconds_to_ready = None;
                        progress(&spec.name, "reprovision requested; booting it again");
                        pending.push(r.idx);
                    } else if !ready {
                        progress(&spec.name, "powered off before ready");
                    }
                }
            }
        }
        running = still;
    }
    // Final states from the inventory, trusted-boot facts from the consoles.
    for o in &mut outcomes {
        if let Ok(m) = lab.machine(&o.mac) {
            o.state = m["lifecycle"]["state"].as_str().unwrap_or("?").to_string();
        }
        o.console = crate::console_report::ConsoleReport::read(&o.serial_log);
    }
    let inventory_table = lab.cli_ok(&["machines", "list"]).unwrap_or_default();
    let ha_outcome = match ha.as_mut() {
        Some(h) => {
            let macs: Vec<String> = specs.iter().map(|s| s.mac.clone()).collect();
            h.collect(&lab, &macs)?;
            Some(std::mem::take(&mut h.outcome))
        }
        None => None,
    };
    let impairment = link.as_ref().map(|l| l.stats());
    if let Some(st) = &impairment {
        for line in st.summary().lines() {
            progress("link", line);
        }
    }
    drop(link);
    let outcome = Outcome {
        impairment,
        inventory_table,
        machines: outcomes,
        data_dir: lab.token_dir.clone(),
        provisioner_log: lab.log.clone(),
        ha: ha_outcome,
    };
    drop(lab);
    drop(ha);
    Ok(outcome)
}

/// Copies a provisioner's stderr into `log` line by line (on a thread of its own) and says on the
/// returned channel when its "listening on http://" line has come (it is the last listener
/// started, so the server is ready).
pub(crate) fn tee_until_listening(
    stderr: std::process::ChildStderr,
    mut log: std::fs::File,
) -> std::sync::mpsc::Receiver<()> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Write;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on http://") {
                let _ = tx.send(());
            }
            let _ = writeln!(log, "{line}");
        }
    });
    rx
}
