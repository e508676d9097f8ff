//! `lab`: real firmware netbooting through the provisioner, in network namespaces. Needs root.

// The lab is a test tool: it measures wall time (power-on to ready) and sets deadlines.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lab::scenario::{self, DhcpMode, Flow, RunOpts};
use lab::vm::Firmware;

#[derive(Parser)]
#[command(
    name = "lab",
    about = "QEMU VMs (OVMF/SeaBIOS + iPXE) that netboot through the provisioner in isolated network namespaces",
    after_help = "Examples:\n  sudo lab setup\n  cargo run --release -p lab -- demo --machines 2\n  lab demo --firmware uefi-ipxe,bios-ipxe --dhcp proxy\n  lab run --firmware uefi-http --json\n  lab run --firmware uefi-grub\n  lab run --firmware uefi-http-sb,uefi-pxe-sb\n  lab run --firmware uefi-pxe-sb --unsigned-uki --vm-timeout 90\n  lab run --machines 2 --ha\n  lab run --firmware uefi-pxe --impair loss=10,delay=50ms,jitter=25ms\n  lab run --firmware uefi-http6\n  lab run --firmware uefi-http6 --dhcp6-reference kea\n\n\
Everything runs in namespaces with random names on 198.18.0.0/24, never connected to the host network."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Cache for the kernel and built images.
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_LAB_CACHE",
        default_value = "/var/cache/provisioner-lab"
    )]
    cache: PathBuf,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Firmware path per VM (comma-separated); repeated to reach --machines.
    #[arg(long, value_delimiter = ',', default_value = "uefi-ipxe")]
    firmware: Vec<Firmware>,
    /// Number of VMs.
    #[arg(long)]
    machines: Option<usize>,
    #[arg(long, value_enum, default_value = "full")]
    dhcp: DhcpMode,
    #[arg(long, value_enum, default_value = "register")]
    flow: Flow,
    /// Working directory (logs, disks, the provisioner's data); default: a new one under /tmp.
    #[arg(long)]
    work: Option<PathBuf>,
    /// The provisioner binary (default: next to this one, built if missing).
    #[arg(long, env = "PROVISIONER_BIN")]
    provisioner: Option<PathBuf>,
    /// VMs booting at once.
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Longest a VM may run (power-on to power-off), in seconds.
    #[arg(long, default_value_t = 240)]
    vm_timeout: u64,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// Do not answer IPv6 router solicitations (to measure the ~15 s iPXE then waits).
    #[arg(long)]
    no_ra: bool,
    /// Record the DHCP traffic to <work>/dhcp.pcap (tcpdump).
    #[arg(long)]
    capture: bool,
    /// High availability: two provisioners (full DHCP) sharing one etcd on one bridge; the one
    /// that ACKed the first VM is killed (`kill -9`) right after that ACK; the machines finish
    /// on the survivor, which the outcome is read from. Implies --boot-retry 3.
    #[arg(long)]
    ha: bool,
    /// Seconds after which the firmware retries its boot order once every entry failed
    /// (SeaBIOS: -boot reboot-timeout; OVMF, which has no such setting: the lab resets the VM
    /// at "No bootable option or device was found").
    #[arg(long, value_name = "SECONDS")]
    boot_retry: Option<u64>,
    /// Impair the link between the servers and the VMs, both directions, per frame: random loss
    /// (percent), a delay drawn uniformly from delay ± jitter (so frames reorder), a bounded
    /// queue. A userspace forwarder: this kernel has no netem.
    #[arg(long, value_name = "loss=10,delay=50ms,jitter=25ms[,queue=2048]")]
    impair: Option<lab::impair::Impairment>,
    /// Give every VM a TPM 2.0 (swtpm + QEMU tpm-crb); the -sb paths always have one.
    #[arg(long)]
    tpm: bool,
    /// Serve the installer UKI unsigned, also to Secure Boot VMs: their firmware refuses it
    /// ("Access Denied" on the console, `console.firmware_refused` in the outcome).
    #[arg(long)]
    unsigned_uki: bool,
    /// Boot `uefi-http6` VMs (OVMF HTTP boot over IPv6) against a reference DHCPv6 server
    /// instead of the provisioner's own `[dhcp6]`: `kea` (Debian's kea-dhcp6, configured by the
    /// lab). See lab/IPV6-HTTP-BOOT.md.
    #[arg(long, value_enum, value_name = "SERVER")]
    dhcp6_reference: Option<lab::http6::Dhcp6Reference>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install QEMU, OVMF, iPXE and the tools; unpack a Debian kernel into the cache.
    Setup,
    /// Build (or find cached) the installer UKI and the disk images, and print their paths.
    Build,
    /// One run; prints each machine's outcome (use --json for tests).
    Run(RunArgs),
    /// The showcase: N machines from power-on to `ready`, live progress, the inventory at the end.
    /// Runs `lab setup` first when something it installs is missing.
    Demo(RunArgs),
    /// A boot storm: N simulated machines (PXE ROM, then iPXE, then the installer) netboot at
    /// once; prints per-phase latencies, failures, server CPU and RSS, and the bandwidth bound.
    Storm(StormArgs),
}

#[derive(clap::Args, Clone)]
#[command(
    after_help = "Examples:\n  sudo lab storm --machines 1000\n  sudo lab storm --machines 10000 --uki-size 1MiB --dhcp relayed\n  sudo lab storm --machines 200 --server reference --json\n  sudo lab storm --machines 200 --uki-size 1MiB --ramp 20 --ha --kill-provisioner-at 25 --kill-etcd-leader-at 50\n  sudo lab storm --machines 200 --uki-size 1MiB --ramp 60 --crash-kills 50\n\n\
Two namespaces with random names (198.18.0.0/15), joined by one veth, never connected to the host (with --ha: four, on one bridge); removed at the end or on Ctrl-C."
)]
struct StormArgs {
    /// Simulated machines (at most 20,000).
    #[arg(long, default_value_t = 100)]
    machines: usize,
    /// `full`: machines on the server's link (broadcast); `relayed`: one relay agent per rack.
    #[arg(long, value_enum, default_value = "full")]
    dhcp: StormDhcp,
    /// Machines per rack (relayed mode; a rack is a /26).
    #[arg(long, default_value_t = 40)]
    rack_size: usize,
    /// UKI size: bytes, or with KiB, MiB or GiB.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    uki_size: u64,
    /// Spread arrivals evenly over this many seconds (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Seconds after which every machine still booting counts as failed (at least 1).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    deadline: u64,
    /// Percent of packets dropped on the link in each direction (nftables), 0 to 99.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=99))]
    loss: u32,
    /// Which server the machines boot from.
    #[arg(long, value_enum, default_value = "provisioner")]
    server: lab::storm::Target,
    /// Working directory (configs, logs, the server's data); default: a new one under /tmp,
    /// removed at the end.
    #[arg(long)]
    work: Option<PathBuf>,
    /// The provisioner binary (default: next to this one, built if missing).
    #[arg(long, env = "PROVISIONER_BIN")]
    provisioner: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// High availability: two provisioners sharing a three-member etcd cluster on one bridge;
    /// machines whose boot fails boot again (as firmware retries). After the storm the
    /// survivor is checked: leases, acknowledged events, its SSE replay.
    #[arg(long)]
    ha: bool,
    /// With --ha: `kill -9` the first provisioner once this percent of machines registered.
    #[arg(long, requires = "ha", value_name = "PERCENT",
          value_parser = clap::value_parser!(u32).range(0..=99))]
    kill_provisioner_at: Option<u32>,
    /// With --ha: `kill -9` the etcd leader once this percent registered (after the
    /// provisioner kill, if both are given).
    #[arg(long, requires = "ha", value_name = "PERCENT",
          value_parser = clap::value_parser!(u32).range(0..=99))]
    kill_etcd_leader_at: Option<u32>,
    /// Crash campaign: `kill -9` the provisioner (redb) this many times at random moments and
    /// start it again on the same data, while an operator writes through the API; after each
    /// restart every acknowledged write must be there and every listed asset whole.
    #[arg(long, conflicts_with = "ha", value_name = "N")]
    crash_kills: Option<usize>,
    /// With --crash-kills: the mean gap between kills, seconds (each gap uniform in 0.5–1.5×).
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    crash_every: f64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StormDhcp {
    Full,
    Relayed,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a number, then KiB, MiB or GiB"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        u => return Err(format!("unit {u:?}: KiB, MiB or GiB")),
    };
    let v = n.checked_mul(mult).ok_or("too large")?;
    if !(4096..=(1u64 << 31)).contains(&v) {
        return Err(format!("{s}: between 4 KiB and 2 GiB"));
    }
    Ok(v)
}

fn storm(a: StormArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        lab::setup::is_root(),
        "lab storm needs root (network namespaces): sudo lab storm …"
    );
    let plan = lab::storm::plan::Plan::new(
        a.machines,
        matches!(a.dhcp, StormDhcp::Relayed),
        a.rack_size,
    )?;
    let (work, _tmp) = match &a.work {
        Some(w) => (w.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("lab-storm-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let provisioner = match a.server {
        lab::storm::Target::Provisioner => provisioner_bin(a.provisioner.clone())?,
        lab::storm::Target::Reference => PathBuf::new(),
    };
    let report = lab::storm::run(&lab::storm::StormOpts {
        plan,
        target: a.server,
        uki_size: a.uki_size,
        ramp: Duration::from_secs_f64(a.ramp.max(0.0)),
        deadline: Duration::from_secs(a.deadline),
        loss: a.loss,
        provisioner,
        work,
        verbose: !a.json,
        ha: a.ha.then_some(lab::storm::ha::KillPlan {
            provisioner_at: a.kill_provisioner_at,
            etcd_leader_at: a.kill_etcd_leader_at,
        }),
        crash: a.crash_kills.map(|kills| lab::storm::campaign::CrashPlan {
            kills,
            every: Duration::from_secs_f64(a.crash_every.max(0.1)),
        }),
    })?;
    let text = if a.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.table()
    };
    // A reader that closed the pipe (`| head`) has what it wanted: not a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    anyhow::ensure!(
        report.failures == 0,
        "{} of {} machines failed",
        report.failures,
        report.machines
    );
    if let Some(h) = &report.ha {
        let plan = lab::storm::ha::KillPlan {
            provisioner_at: a.kill_provisioner_at,
            etcd_leader_at: a.kill_etcd_leader_at,
        };
        let mut problems = h.problems(&plan);
        if let (Some(c), Some(kills)) = (&report.crash, a.crash_kills) {
            problems.extend(c.problems(&lab::storm::campaign::CrashPlan {
                kills,
                every: Duration::ZERO,
            }));
        }
        anyhow::ensure!(
            problems.is_empty(),
            "HA checks failed: {}",
            problems.join("; ")
        );
    }
    // A machine that registered but is not `ready` in the server's inventory did not make it.
    if let Some(ready) = report.ready_in_inventory {
        anyhow::ensure!(
            ready == report.machines,
            "every machine registered, but only {ready} of {} are ready in the inventory",
            report.machines
        );
    }
    Ok(())
}

fn provisioner_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("provisioner");
    if !sibling.exists() {
        let release = me
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "release");
        // cargo's own progress (its "Compiling …" lines and bar) goes to stderr: a first build
        // takes minutes and should not look like a hang.
        let profile = if release { " --release" } else { "" };
        eprintln!(
            "lab: building the provisioner (cargo build -p provisioner{profile}); a first build \
             from scratch takes minutes on two cores, later ones seconds"
        );
        let mut c = std::process::Command::new("cargo");
        c.args(["build", "-p", "provisioner"]);
        if release {
            c.arg("--release");
        }
        anyhow::ensure!(c.status()?.success(), "cargo build -p provisioner failed");
    }
    Ok(sibling)
}

fn opts(a: &RunArgs, cache: PathBuf) -> anyhow::Result<(RunOpts, Option<tempfile::TempDir>)> {
    anyhow::ensure!(
        lab::setup::is_root(),
        "the lab needs root (network namespaces, taps): sudo lab …"
    );
    let n = a.machines.unwrap_or(a.firmware.len()).max(1);
    let firmware = (0..n).map(|i| a.firmware[i % a.firmware.len()]).collect();
    let (work, tmp) = match &a.work {
        Some(w) => (w.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("lab-run-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    Ok((
        RunOpts {
            firmware,
            dhcp: a.dhcp,
            flow: a.flow,
            work,
            cache,
            provisioner: provisioner_bin(a.provisioner.clone())?,
            parallel: a.parallel,
            vm_timeout: Duration::from_secs(a.vm_timeout),
            router_advertisements: !a.no_ra,
            capture: a.capture,
            ha: a.ha,
            boot_retry: a.boot_retry.or(a.ha.then_some(3)).map(Duration::from_secs),
            impair: a.impair,
            tpm: a.tpm,
            unsigned_uki: a.unsigned_uki,
            dhcp6_reference: a.dhcp6_reference,
        },
        tmp,
    ))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    lab::catch_interrupts();
    match cli.cmd {
        Cmd::Setup => lab::setup::setup(&cli.cache),
        Cmd::Build => {
            let i = lab::images::build(
                &cli.cache,
                &format!("http://{}:{}", lab::netns::SERVER_IP, scenario::HTTP_PORT),
            )?;
            println!(
                "{}\n{}\n{}",
                i.installer_uki.display(),
                i.disk_efi.display(),
                i.disk_bios.display()
            );
            Ok(())
        }
        Cmd::Run(a) => {
            let (o, tmp) = opts(&a, cli.cache)?;
            let quiet = a.json;
            let outcome = scenario::run(&o, &|who, what| {
                if !quiet {
                    eprintln!("{who}: {what}")
                }
            })?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print!("{}", outcome.inventory_table);
            }
            // Keep the work directory (logs) when the caller chose it; else it goes with `tmp`.
            drop(tmp);
            Ok(())
        }
        Cmd::Demo(a) => demo(a, cli.cache),
        Cmd::Storm(a) => storm(a),
    }
}

fn demo(a: RunArgs, cache: PathBuf) -> anyhow::Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let mut a = a;
    if a.work.is_none() {
        a.work = Some(std::env::temp_dir().join(format!("lab-demo-{}", std::process::id())));
    }
    // A new user's first command: set the lab up first when something is missing.
    let missing = lab::setup::missing(&cache);
    if !missing.is_empty() {
        eprintln!(
            "lab demo: running `lab setup` first (missing: {})",
            missing.join(", ")
        );
        lab::setup::setup(&cache)?;
    }
    let (o, _) = opts(&a, cache)?;
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:>5} [{elapsed:>4}] {msg}")
        .context("style")?;
    let bars: std::sync::Mutex<std::collections::HashMap<String, ProgressBar>> = Default::default();
    let started = std::time::Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcome = scenario::run(&o, &|who, what| {
        if !tty {
            eprintln!("[{:6.1}s] {who}: {what}", started.elapsed().as_secs_f64());
            return;
        }
        let mut bars = bars.lock().unwrap();
        let bar = bars.entry(who.to_string()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(style.clone());
            b.set_prefix(who.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        bar.set_message(what.to_string());
        if what == "ready" {
            bar.finish_with_message("ready");
        }
    });
    for b in bars.lock().unwrap().values() {
        b.finish();
    }
    let outcome = outcome?;
    println!("\n{}", outcome.inventory_table);
    for m in &outcome.machines {
        println!(
            "{} {} ({}): {} after {}",
            m.name,
            m.mac,
            m.firmware.name(),
            m.state,
            m.seconds_to_ready
                .map_or("-".into(), |s| format!("{s:.1} s"))
        );
    }
    println!(
        "total {:.1} s; logs and serial consoles in {}",
        started.elapsed().as_secs_f64(),
        o.work.display()
    );
    anyhow::ensure!(
        outcome.machines.iter().all(|m| m.state == "ready"),
        "not every machine reached ready"
    );
    Ok(())
}
