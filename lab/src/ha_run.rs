//! `lab run --ha`: real firmware through two provisioners sharing one etcd (issue 13).
//!
//! ```text
//!  ns labsv0: provisioner 198.18.0.1 ─┐
//!  ns labsv1: provisioner 198.18.0.3 ─┼─ br0 198.18.0.10 (ns lab: etcd, RA) ─ tap0, tap1 (VMs)
//! ```
//!
//! Both provisioners run DHCP in full mode on the same link, share a single-member etcd (the
//! three-member kill test is `lab storm --ha`) and name each other in `store.asset_peers`: the
//! assets are imported on the first only, and the second fetches them by digest from the shared
//! catalogue before any VM powers on. The VMs boot at once; a packet socket on the bridge sees
//! DHCP ACKs ([`crate::dhcp_watch`]), and right after the first VM's first ACK the provisioner
//! that sent it (option 54) is killed with SIGKILL. That VM's firmware then fails to fetch its
//! script (or its UKI) from the dead server, falls through its boot order, and — with the boot
//! retry a datacenter BIOS has ([`crate::vm`]) — netboots again and is ACKed by the survivor.
//! Afterwards every machine's events and the leases are read from the survivor.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::dhcp_watch::{self, AckWatch};
use crate::netns::{HA_BRIDGE_IP, HA_SERVER_IPS};
use crate::scenario::{DhcpMode, Lab, Progress, ServerAt, HTTP_PORT};

/// How long the etcd member may take to say it is ready.
const ETCD_READY_WITHIN: Duration = Duration::from_secs(30);
/// How long the second provisioner may take to fetch the assets from the first.
const ASSETS_WITHIN: Duration = Duration::from_secs(90);

/// What `--ha` adds to the outcome.
#[derive(Debug, Serialize, Default)]
pub struct HaOutcome {
    /// Both provisioners' addresses.
    pub servers: Vec<String>,
    /// The provisioner killed (`kill -9`) and the survivor every check reads.
    pub killed: Option<String>,
    pub killed_pid: Option<u32>,
    pub survivor: Option<String>,
    /// The ACK the kill followed: the machine, the address it was given, seconds after the
    /// first VM's power-on.
    pub kill_after_ack_to: Option<String>,
    pub kill_after_ack_of: Option<String>,
    pub kill_at_seconds: Option<f64>,
    /// Every DHCP ACK seen on the bridge: "seconds mac yiaddr server".
    pub acks: Vec<String>,
    /// Each machine's events from the survivor (`provisioner events --machine`).
    pub events: BTreeMap<String, serde_json::Value>,
    /// The survivor's leases (`provisioner leases`).
    pub leases: serde_json::Value,
}

/// The HA part of a run: etcd, the ACK watcher and the kill.
pub struct Ha {
    etcd: Child,
    watch: Option<AckWatch>,
    /// The machine whose first ACK triggers the kill.
    first_mac: String,
    t0: Instant,
    pub outcome: HaOutcome,
}

/// Starts etcd in the lab namespace and both provisioners on it (full DHCP mode only).
pub fn start(lab: &mut Lab, dhcp: DhcpMode, unknown: &str) -> anyhow::Result<Ha> {
    anyhow::ensure!(dhcp == DhcpMode::Full, "--ha runs full DHCP mode");
    let etcd = start_etcd(lab)?;
    let endpoint = format!("http://{HA_BRIDGE_IP}:2379");
    for (i, ip) in HA_SERVER_IPS.iter().enumerate() {
        let peer = HA_SERVER_IPS[1 - i];
        lab.start_provisioner(
            &ServerAt {
                ip,
                ns: Some(i),
                iface: "eth0",
                suffix: &format!("-{i}"),
                extra: format!(
                    "[store]\nbackend = \"etcd\"\nendpoints = [\"{endpoint}\"]\n\
                     asset_peers = [\"http://{peer}:{HTTP_PORT}\"]\n"
                ),
            },
            dhcp,
            unknown,
        )?;
    }
    lab.url = format!("http://{}:{HTTP_PORT}", HA_SERVER_IPS[0]);
    Ok(Ha {
        etcd,
        watch: None,
        first_mac: crate::scenario::mac_for(0),
        t0: Instant::now(),
        outcome: HaOutcome {
            servers: HA_SERVER_IPS.iter().map(|s| s.to_string()).collect(),
            ..HaOutcome::default()
        },
    })
}

fn start_etcd(lab: &Lab) -> anyhow::Result<Child> {
    let dir = lab.work.join("etcd");
    let (client, peer) = (
        format!("http://{HA_BRIDGE_IP}:2379"),
        format!("http://{HA_BRIDGE_IP}:2380"),
    );
    let mut child = lab
        .topo
        .exec("etcd")
        .arg("--name=lab")
        .arg(format!("--data-dir={}", dir.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=lab={peer}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting etcd (Debian package etcd-server; scripts/install-test-deps)")?;
    let log_path = lab.work.join("etcd.log");
    let mut log = std::fs::File::create(&log_path)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ready to serve client requests") {
                let _ = tx.send(());
            }
            let _ = writeln!(log, "{line}");
        }
    });
    if rx.recv_timeout(ETCD_READY_WITHIN).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "etcd was not ready within {ETCD_READY_WITHIN:?}; its log:\n{}",
            crate::vm::tail(&log_path, 20)
        );
    }
    Ok(child)
}

impl Ha {
    /// Waits until every provisioner holds every asset (the second fetched them from the
    /// first by digest), then starts watching the bridge for ACKs: call it right before the
    /// VMs power on.
    pub fn ready_for_vms(&mut self, lab: &Lab, digests: &[String]) -> anyhow::Result<()> {
        for s in &lab.servers {
            for d in digests {
                wait_for_file(
                    &s.data.join("assets").join("objects").join(d),
                    &s.log,
                    ASSETS_WITHIN,
                )
                .with_context(|| format!("{} lacks asset {d}", s.ip))?;
            }
        }
        self.watch = Some(dhcp_watch::watch(&lab.topo.ns, "br0")?);
        self.t0 = Instant::now();
        Ok(())
    }

    /// Waits up to `wait` for ACKs; at the first machine's first ACK kills the server that
    /// sent it and points the lab's CLI at the survivor.
    pub fn tick(
        &mut self,
        lab: &mut Lab,
        wait: Duration,
        progress: Progress<'_>,
    ) -> anyhow::Result<()> {
        let Some(watch) = &self.watch else {
            std::thread::sleep(wait);
            return Ok(());
        };
        let until = Instant::now() + wait;
        while let Ok(ack) = watch
            .acks
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            // One value, at the precision the ACK list is printed with, for the ACK and for the
            // kill it triggers: the kill must never look earlier than its own ACK (7.46 s printed
            // as "7.5" beside a kill at 7.46 s made the ACK look like one after the kill).
            let at = (self.t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
            self.outcome
                .acks
                .push(format!("{at:.1} {} {} {}", ack.mac, ack.yiaddr, ack.server));
            if self.outcome.killed.is_some() || ack.mac != self.first_mac {
                continue;
            }
            let server = ack.server.to_string();
            let k = lab
                .servers
                .iter()
                .position(|s| s.ip == server)
                .with_context(|| format!("an ACK from {server}, which is none of ours"))?;
            let mut child = lab.servers[k].child.take().context("already killed")?;
            let pid = child.id();
            child.kill().context("kill -9 of the provisioner")?;
            let _ = child.wait();
            let survivor = lab.servers[1 - k].ip.clone();
            lab.url = format!("http://{survivor}:{HTTP_PORT}");
            progress(
                "lab",
                &format!(
                    "kill -9 of the provisioner at {server} (pid {pid}), right after it ACKed {} for {}; {survivor} goes on",
                    ack.yiaddr, ack.mac
                ),
            );
            self.outcome.killed = Some(server);
            self.outcome.killed_pid = Some(pid);
            self.outcome.survivor = Some(survivor);
            self.outcome.kill_after_ack_to = Some(ack.mac.clone());
            self.outcome.kill_after_ack_of = Some(ack.yiaddr.to_string());
            self.outcome.kill_at_seconds = Some(at);
        }
        Ok(())
    }

    /// Reads every machine's events and the leases from the survivor into the outcome.
    pub fn collect(&mut self, lab: &Lab, macs: &[String]) -> anyhow::Result<()> {
        for mac in macs {
            let text = lab.cli_ok(&["--json", "events", "--machine", mac, "--limit", "10000"])?;
            self.outcome
                .events
                .insert(mac.clone(), serde_json::from_str(&text)?);
        }
        self.outcome.leases = serde_json::from_str(&lab.cli_ok(&["--json", "leases"])?)?;
        Ok(())
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        self.watch = None;
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

fn wait_for_file(path: &Path, log: &Path, within: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    while !path.exists() {
        if Instant::now() >= until {
            bail!(
                "{} missing after {within:?}; the server's log:\n{}",
                path.display(),
                crate::vm::tail(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
