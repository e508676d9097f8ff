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
    after_help = "Examples:\n  sudo lab setup\n  cargo run --release -p lab -- demo --machines 2\n  lab demo --firmware uefi-ipxe,bios-ipxe --dhcp proxy\n  lab run --firmware uefi-http --json\n  lab run --firmware uefi-grub\n\n\
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
    Demo(RunArgs),
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
        eprintln!("lab: building the provisioner");
        let mut c = std::process::Command::new("cargo");
        c.args(["build", "-q", "-p", "provisioner"]);
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
    }
}

fn demo(a: RunArgs, cache: PathBuf) -> anyhow::Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let mut a = a;
    if a.work.is_none() {
        a.work = Some(std::env::temp_dir().join(format!("lab-demo-{}", std::process::id())));
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
