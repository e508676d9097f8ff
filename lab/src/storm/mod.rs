//! `lab storm`: a rack-scale boot storm of simulated machines against the provisioner (or the
//! dnsmasq + nginx reference stack), in two network namespaces the run creates and removes.
//!
//! # Layout
//! - [`plan`]: MACs, UUIDs, racks, relay addresses and DHCP ranges; N ≤ 20,000.
//! - [`net`]: the server and client namespaces and the veth between them; packet loss.
//! - [`dhcp`]: the machines' DHCP on shared sockets (full: broadcast; relayed: a relay per rack).
//! - [`tftp`]: the PXE ROM's loader download (tsize probe, ERROR 8, lockstep blksize 1468).
//! - [`http`]: a keep-alive HTTP/1.1 client bound to the machine's leased address.
//! - [`client`]: one machine's boot, phase by phase.
//! - [`server`]: the provisioner under test (config, start, provisioning), /proc readings.
//! - [`reference`]: dnsmasq + nginx doing the same job.
//! - [`link`]: the link's measured throughput (the bandwidth bound).
//! - [`report`]: per-phase latencies, failures, resources, the table and the JSON.
//!
//! How it maps to a real rack: every machine has its own MAC, UUID and leased address (the
//! server tells machines apart only by its own evidence, the lease); in relayed mode a rack is
//! a /26 behind its top-of-rack switch, whose DHCP relay (giaddr = the switch's address) is one
//! shared socket here, exactly one relay agent per rack as in a routed datacenter; in full
//! mode the machines share one broadcast domain with the server. The machines' sockets share
//! one veth, as a rack's traffic shares the server's uplink.

pub mod client;
pub mod dhcp;
pub mod http;
pub mod link;
pub mod net;
pub mod plan;
pub mod reference;
pub mod report;
pub mod server;
pub mod tftp;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use client::{MachineRun, Shared};
use plan::Plan;
use report::{Report, ServerUse};

/// Which server the machines boot from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The provisioner.
    Provisioner,
    /// dnsmasq (DHCP + TFTP) and nginx (script, UKI, config, register).
    Reference,
}

/// Everything a storm needs to know.
pub struct StormOpts {
    pub plan: Plan,
    pub target: Target,
    /// Size of the UKI the machines download, bytes.
    pub uki_size: u64,
    /// Arrivals spread evenly over this time (zero: all at once).
    pub ramp: Duration,
    /// No machine runs past this (from the first arrival).
    pub deadline: Duration,
    /// Percent of packets dropped on the link, each direction.
    pub loss: u32,
    pub provisioner: PathBuf,
    /// Where configs, logs and the server's data go.
    pub work: PathBuf,
    /// Progress lines on stderr.
    pub verbose: bool,
}

/// At most this long after the storm for the server's last transfers to end (see
/// [`server::settle`]).
const SETTLE: Duration = Duration::from_secs(60);

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// A UKI of about `size` bytes (systemd's stub, `.osrel`, `.cmdline`, a `.linux` of filler),
/// built once per size in `work`.
fn build_uki(work: &Path, size: u64) -> anyhow::Result<PathBuf> {
    let out = work.join(format!("storm-{size}.efi"));
    if out.exists() {
        return Ok(out);
    }
    let stub = std::fs::metadata(STUB)
        .with_context(|| format!("{STUB} (Debian package systemd-boot-efi)"))?
        .len();
    let linux = size.saturating_sub(stub + 8192).max(4096) as usize;
    let mut filler = vec![0u8; linux];
    for (i, b) in filler.iter_mut().enumerate().step_by(4096) {
        *b = (i >> 12) as u8;
    }
    boot_assets::UkiBuilder::new()
        .section(
            ".osrel",
            b"NAME=\"Hadron storm\"\nID=hadron-storm\nVERSION_ID=0.1\n".to_vec(),
        )
        .section(".cmdline", b"console=ttyS0".to_vec())
        .section(".linux", filler)
        .build(Path::new(STUB), &out)?;
    Ok(out)
}

/// A progress line on stderr. A closed stderr (`2>&1 | head`) is ignored, not a panic: the
/// storm still ends and cleans up.
fn progress(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs one storm and reports it.
pub fn run(o: &StormOpts) -> anyhow::Result<Report> {
    let say = |s: &str| {
        if o.verbose {
            progress(&format!("storm: {s}"));
        }
    };
    std::fs::create_dir_all(&o.work)?;
    net::raise_nofile();
    let uki = build_uki(&o.work, o.uki_size)?;
    let uki_bytes = std::fs::metadata(&uki)?.len();
    let netw = net::StormNet::new()?;
    say(&format!(
        "namespaces {} (server) and {} (machines)",
        netw.server_ns, netw.client_ns
    ));
    // The server processes; stopped when dropped (also on an early return).
    let mut ours = None;
    let mut reference = None;
    let procs = match o.target {
        Target::Provisioner => {
            let s = server::Ours::start(&netw, &o.provisioner, &o.plan, &o.work)?;
            say("provisioner listening; importing the UKI and the machines");
            s.provision(&netw, &uki, &o.plan, &o.work)?;
            let pids = s.procs.pids();
            ours = Some(s);
            pids
        }
        Target::Reference => {
            let p = reference::start(&netw, &o.plan, &o.work, &uki)?;
            let pids = p.pids();
            reference = Some(p);
            pids
        }
    };
    let link = link::measure(&netw)?;
    say(&format!("link: {:.0} MiB/s", link / 1048576.0));
    if o.loss > 0 {
        netw.set_loss(o.loss)?;
    }
    let stack = |pids: &[u32]| -> Vec<u32> {
        pids.iter()
            .flat_map(|p| server::with_descendants(*p))
            .collect()
    };
    let cpu_before: f64 = stack(&procs).iter().map(|p| server::cpu_seconds(*p)).sum();
    let started = Instant::now();
    let runs = storm(o, &netw)?;
    let wall = started.elapsed().as_secs_f64();
    // The server's work is counted until it has settled (its last TFTP retransmissions and
    // batched events after the last client ended), not only until the last client ended.
    if ours.is_some() {
        let waited = server::settle(&netw, SETTLE)?;
        say(&format!(
            "server settled (no TFTP transfer in flight) {:.1} s after the storm",
            waited.as_secs_f64()
        ));
    }
    let all = stack(&procs);
    let server = ServerUse {
        name: match o.target {
            Target::Provisioner => "provisioner".into(),
            Target::Reference => "dnsmasq+nginx".into(),
        },
        cpu_seconds: all.iter().map(|p| server::cpu_seconds(*p)).sum::<f64>() - cpu_before,
        peak_rss_mib: all.iter().map(|p| server::peak_rss_mib(*p)).sum(),
    };
    let ready_in_inventory = match &ours {
        Some(s) => Some(s.ready(&netw)?),
        None => None,
    };
    drop(ours);
    drop(reference);
    drop(netw);
    let bytes: u64 = runs.iter().map(|r| r.bytes).sum();
    let bound = bytes as f64 / link;
    let registered = runs.iter().filter(|r| r.failure.is_none()).count();
    Ok(Report {
        server,
        machines: o.plan.machines,
        mode: if o.plan.relayed { "relayed" } else { "full" },
        rack_size: o.plan.relayed.then_some(o.plan.rack_size),
        ramp_seconds: o.ramp.as_secs_f64(),
        deadline_seconds: o.deadline.as_secs_f64(),
        uki_bytes,
        registered,
        ready_in_inventory,
        failures: runs.len() - registered,
        wall_seconds: wall,
        phases: report::phases(&runs),
        bytes,
        link_bytes_per_second: link,
        bandwidth_bound_seconds: bound,
        ratio_to_bound: if bound > 0.0 { wall / bound } else { 0.0 },
        loss_percent: o.loss,
    })
}

/// The machines, on a tokio runtime whose threads live in the client namespace.
fn storm(o: &StormOpts, netw: &net::StormNet) -> anyhow::Result<Vec<MachineRun>> {
    let ns = netw.client_ns.clone();
    let plan = o.plan;
    let (ramp, deadline, verbose) = (o.ramp, o.deadline, o.verbose);
    let thread = std::thread::spawn(move || -> anyhow::Result<Vec<MachineRun>> {
        net::enter(&ns).context("entering the client namespace")?;
        let ns2 = ns.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                let _ = net::enter(&ns2);
            })
            .build()?;
        rt.block_on(async move {
            let dhcp = dhcp::DhcpClients::start(plan)?;
            let start = tokio::time::Instant::now();
            let shared = Arc::new(Shared {
                dhcp,
                deadline: start + deadline,
            });
            let n = plan.machines;
            let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let shared = shared.clone();
                    let done = done.clone();
                    let at = start + ramp.mul_f64(i as f64 / n as f64);
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        let r = client::run(shared, i).await;
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        r
                    })
                })
                .collect();
            let watch = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if crate::interrupted() {
                        return;
                    }
                    if verbose && start.elapsed().as_millis() % 2000 < 200 {
                        progress(&format!(
                            "storm: [{:6.1}s] {}/{n} machines done",
                            start.elapsed().as_secs_f64(),
                            done.load(std::sync::atomic::Ordering::Relaxed)
                        ));
                    }
                }
            };
            let all = async {
                let mut runs = Vec::with_capacity(n);
                for t in tasks {
                    // A client task that panicked is a failed machine, never a silent success.
                    runs.push(t.await.unwrap_or_else(|e| MachineRun {
                        failure: Some((client::Phase::Dhcp, format!("client task failed: {e}"))),
                        ..MachineRun::default()
                    }));
                }
                runs
            };
            tokio::select! {
                runs = all => Ok(runs),
                _ = watch => anyhow::bail!("interrupted"),
            }
        })
    });
    thread.join().expect("storm thread")
}
