//! QEMU VMs under TCG (KVM on this machine hangs guests), inside the lab namespace, one tap each.
//! The serial console goes to a log file with a timestamp per line; a per-VM copy of the OVMF
//! variables keeps VMs independent. The boot order is network first, disk second — so after an
//! install the machine netboots again and it is the provisioner that must send it to its disk.
//!
//! **Boot retry** ([`VmSpec::boot_retry`]): a server's firmware can retry its boot order when
//! every entry failed (Dell "Boot Sequence Retry", HPE "No-Boot retry"): that is what lets a
//! machine whose boot server vanished mid-boot netboot again from another. SeaBIOS has it
//! (`-boot reboot-timeout`); OVMF has not — after its last boot option it prints "No bootable
//! option or device was found" and waits for a key forever (`PlatformBootManagerUnableToBoot`).
//! The lab plays that setting for OVMF: at that line on the serial console it resets the VM
//! (`system_reset` on QEMU's monitor socket) after the same delay, and counts the resets.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::netns::Topology;

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How a VM netboots.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// OVMF with iPXE as the NIC option ROM: DHCP → our script → chain the UKI.
    UefiIpxe,
    /// OVMF's own PXE: DHCP → TFTP snponly.efi → iPXE → script → UKI.
    UefiPxe,
    /// OVMF HTTP boot: DHCP hands out the UKI's URL; the firmware fetches it itself.
    UefiHttp,
    /// SeaBIOS with the iPXE ROM: script → kernel + initrd extracted from the UKI.
    BiosIpxe,
    /// OVMF's own PXE: DHCP → TFTP grubnetx64.efi (the machine's `boot.loader`) → GRUB reads
    /// our grub.cfg → its per-machine config over HTTP → kernel + initrd of the UKI over HTTP.
    UefiGrub,
    /// OVMF's Secure Boot build with the lab's own PK, KEK and db enrolled (see
    /// [`crate::secure_boot`]); HTTP boot of the signed UKI, as `uefi-http`.
    UefiHttpSb,
    /// As `uefi-http-sb`, over OVMF's own PXE: the firmware loads the signed UKI itself by
    /// TFTP as the NBP (the machine's `boot.loader`; iPXE is unsigned and would be refused).
    UefiPxeSb,
    /// OVMF HTTPS boot: DHCP hands out an https:// URL on the provisioner's boot TLS listener;
    /// the firmware trusts the lab's CA through fw_cfg `etc/edk2/https/cacerts`.
    UefiHttps,
    /// OVMF HTTP boot over IPv6: DHCPv6 hands out the UKI's URL on [2001:2::1] (see
    /// [`crate::http6`] and `lab/IPV6-HTTP-BOOT.md`): the provisioner's own `[dhcp6]`, or Kea
    /// with `--dhcp6-reference kea`.
    UefiHttp6,
}

/// The name a `-sb` PXE machine's `boot.loader` gives the signed installer UKI: a file in the
/// provisioner's `tftp.root`.
pub const UKI_NBP: &str = "installer.efi";

impl Firmware {
    pub fn is_uefi(self) -> bool {
        self != Firmware::BiosIpxe
    }

    /// The TFTP loader this firmware path needs as the machine's `boot.loader`, if not the
    /// architecture default.
    pub fn loader(self) -> Option<&'static str> {
        match self {
            Firmware::UefiGrub => Some("grubnetx64.efi"),
            Firmware::UefiPxeSb => Some(UKI_NBP),
            _ => None,
        }
    }

    /// Secure Boot on, with the lab's keys: OVMF's secboot build, SMM, secure pflash.
    pub fn secure_boot(self) -> bool {
        matches!(self, Firmware::UefiHttpSb | Firmware::UefiPxeSb)
    }

    /// Guest RAM. GRUB 2.06 reads the kernel into its own heap, which on EFI is a quarter of
    /// RAM: with 256 MiB, `linux` fails "out of memory" after downloading the 8 MiB kernel.
    pub fn memory_mib(self) -> &'static str {
        match self {
            Firmware::UefiGrub => "1024",
            _ => "256",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Firmware::UefiIpxe => "uefi-ipxe",
            Firmware::UefiPxe => "uefi-pxe",
            Firmware::UefiHttp => "uefi-http",
            Firmware::BiosIpxe => "bios-ipxe",
            Firmware::UefiGrub => "uefi-grub",
            Firmware::UefiHttpSb => "uefi-http-sb",
            Firmware::UefiPxeSb => "uefi-pxe-sb",
            Firmware::UefiHttps => "uefi-https",
            Firmware::UefiHttp6 => "uefi-http6",
        }
    }
}

pub struct VmSpec {
    pub name: String,
    pub firmware: Firmware,
    pub mac: String,
    /// SMBIOS system UUID (what `dmidecode` and option 97 report).
    pub uuid: String,
    pub tap: usize,
    pub disk: PathBuf,
    pub vars: PathBuf,
    /// The variable store `vars` is copied from: OVMF's empty one, or for Secure Boot paths the
    /// one with the lab's keys enrolled.
    pub vars_template: PathBuf,
    /// Give the VM a TPM 2.0 (an swtpm of its own, state in `<vars>.tpm/`).
    pub tpm: bool,
    pub serial_log: PathBuf,
    pub timeout: Duration,
    /// Retry the boot order this long after every entry failed (see the module documentation);
    /// `None`: the firmware's default (OVMF waits for a key, SeaBIOS stops).
    pub boot_retry: Option<Duration>,
    /// For [`Firmware::UefiHttps`]: the CA certificates OVMF trusts, as an EFI signature list
    /// (`cert-to-efi-sig-list`), handed in through fw_cfg `etc/edk2/https/cacerts`.
    pub https_cacerts: Option<PathBuf>,
    /// Called (on the console reader's thread) at every console line containing the text.
    pub on_console: Option<ConsoleHook>,
}

/// A console line's text and what to do when a line contains it.
pub type ConsoleHook = (&'static str, Arc<dyn Fn() + Send + Sync>);

/// What OVMF prints when its last boot option failed (then it waits for a key).
pub const OVMF_NO_BOOT: &str = "No bootable option or device was found";

pub struct Vm {
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
    pub started: Instant,
    /// Boot retries so far: resets by the lab (OVMF) or reboots of SeaBIOS after "No bootable
    /// device" (counted from the console).
    pub retries: Arc<AtomicUsize>,
    /// Dropped after QEMU (field order): ended by PID, its state removed.
    _tpm: Option<crate::tpm::SwTpm>,
}

/// A blank disk and, for UEFI, a fresh copy of the OVMF variables.
pub fn prepare(spec: &VmSpec, disk_mib: u64) -> anyhow::Result<()> {
    if !spec.disk.exists() {
        let f = std::fs::File::create(&spec.disk)?;
        f.set_len(disk_mib << 20)?;
    }
    if spec.firmware.is_uefi() && !spec.vars.exists() {
        std::fs::copy(&spec.vars_template, &spec.vars).with_context(|| {
            format!("{}: lab setup installs ovmf", spec.vars_template.display())
        })?;
    }
    Ok(())
}

pub fn start(topo: &Topology, spec: &VmSpec) -> anyhow::Result<Vm> {
    let mut cmd = topo.exec("timeout");
    cmd.args([
        "--signal=KILL",
        &spec.timeout.as_secs().to_string(),
        "qemu-system-x86_64",
    ]);
    let machine = if spec.firmware.secure_boot() {
        // OVMF's secboot build keeps its variables in SMM: only SMM code may write the flash.
        "q35,smm=on"
    } else {
        "q35"
    };
    cmd.args([
        "-accel",
        "tcg",
        "-M",
        machine,
        "-m",
        spec.firmware.memory_mib(),
        "-smp",
        "1",
        "-nographic",
    ]);
    cmd.args(["-serial", "stdio", "-name", &spec.name, "-uuid", &spec.uuid]);
    let monitor = spec.vars.with_extension("monitor");
    match spec.boot_retry {
        Some(delay) => {
            let _ = std::fs::remove_file(&monitor);
            cmd.arg("-monitor")
                .arg(format!("unix:{},server=on,wait=off", monitor.display()));
            if !spec.firmware.is_uefi() {
                cmd.arg("-boot")
                    .arg(format!("reboot-timeout={}", delay.as_millis()));
            }
        }
        None => {
            cmd.args(["-monitor", "none"]);
        }
    }
    if spec.firmware.secure_boot() {
        cmd.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
    }
    if spec.firmware.is_uefi() {
        let code = if spec.firmware.secure_boot() {
            crate::secure_boot::OVMF_CODE_SB
        } else {
            OVMF_CODE
        };
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={code}"));
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", spec.vars.display()));
        // No DHCPv6 here: keep OVMF from trying IPv6 PXE/HTTP after IPv4.
        cmd.args(["-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]);
    }
    let mut nic = format!("virtio-net-pci,netdev=n0,mac={},bootindex=1", spec.mac);
    match spec.firmware {
        // Empty romfile: no (unsigned) iPXE option ROM; OVMF's own PXE and HTTP stack is used.
        Firmware::UefiPxe | Firmware::UefiGrub | Firmware::UefiPxeSb => nic.push_str(",romfile="),
        // OVMF's own PXE would otherwise add boot entries that wait ~60 s each for an offer.
        // IPv4 and IPv6 PXE off (above); OVMF's HTTPv4 entry still runs first: see crate::http6.
        Firmware::UefiHttp | Firmware::UefiHttpSb | Firmware::UefiHttp6 => {
            nic.push_str(",romfile=");
            cmd.args(["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"]);
        }
        Firmware::UefiHttps => {
            nic.push_str(",romfile=");
            cmd.args(["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"]);
            let esl = spec
                .https_cacerts
                .as_ref()
                .context("uefi-https needs the CA as an EFI signature list")?;
            cmd.arg("-fw_cfg").arg(format!(
                "name=etc/edk2/https/cacerts,file={}",
                esl.display()
            ));
        }
        Firmware::UefiIpxe => {
            cmd.args(["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"]);
        }
        Firmware::BiosIpxe => {}
    }
    cmd.arg("-netdev").arg(format!(
        "tap,id=n0,ifname=tap{},script=no,downscript=no",
        spec.tap
    ));
    cmd.arg("-device").arg(nic);
    cmd.arg("-drive").arg(format!(
        "file={},format=raw,if=none,id=d0",
        spec.disk.display()
    ));
    cmd.args(["-device", "virtio-blk-pci,drive=d0,bootindex=2"]);
    let tpm = match spec.tpm {
        true => Some(crate::tpm::SwTpm::start(&spec.vars.with_extension("tpm"))?),
        false => None,
    };
    if let Some(t) = &tpm {
        cmd.args(t.qemu_args());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .context("starting qemu-system-x86_64 (lab setup installs it)")?;
    let started = Instant::now();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let log_path = spec.serial_log.clone();
    let retries = Arc::new(AtomicUsize::new(0));
    let mut retry_watch = boot_retry_watch(spec, monitor, retries.clone());
    let hook = spec.on_console.clone();
    let on_line: Box<dyn FnMut(&str) + Send> = Box::new(move |line: &str| {
        if let Some((text, f)) = &hook {
            if line.contains(text) {
                f();
            }
        }
        retry_watch(line);
    });
    let reader = std::thread::spawn(move || {
        copy_with_timestamps(stdout, stderr, &log_path, started, on_line)
    });
    Ok(Vm {
        child,
        reader: Some(reader),
        started,
        retries,
        _tpm: tpm,
    })
}

/// What to do with each console line for the boot retry: at OVMF's "no bootable option", a
/// `system_reset` on the monitor after the delay; at SeaBIOS's "No bootable device" (it reboots
/// by itself), a count.
fn boot_retry_watch(
    spec: &VmSpec,
    monitor: PathBuf,
    retries: Arc<AtomicUsize>,
) -> Box<dyn FnMut(&str) + Send> {
    let (Some(delay), uefi) = (spec.boot_retry, spec.firmware.is_uefi()) else {
        return Box::new(|_| {});
    };
    Box::new(move |line: &str| {
        if !uefi {
            if line.contains("No bootable device") {
                retries.fetch_add(1, Ordering::SeqCst);
            }
            return;
        }
        if !line.contains(OVMF_NO_BOOT) {
            return;
        }
        retries.fetch_add(1, Ordering::SeqCst);
        let monitor = monitor.clone();
        std::thread::spawn(move || {
            // The retry delay of the firmware setting being played, not a wait for readiness.
            std::thread::sleep(delay);
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&monitor) {
                let _ = s.write_all(b"system_reset\n");
                // Keep the connection until the monitor has prompted again after the command
                // (its banner's prompt, then the command's), at most 2 s.
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let (mut seen, mut buf) = (Vec::new(), [0u8; 512]);
                while seen.windows(6).filter(|w| w == b"(qemu)").count() < 2 {
                    match std::io::Read::read(&mut s, &mut buf) {
                        Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
            }
        });
    })
}

fn copy_with_timestamps(
    out: impl std::io::Read,
    err: impl std::io::Read + Send + 'static,
    path: &Path,
    t0: Instant,
    mut on_line: Box<dyn FnMut(&str) + Send>,
) {
    let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let err_path = path.with_extension("qemu.err");
    std::thread::spawn(move || {
        let mut e = err;
        if let Ok(mut f) = std::fs::File::create(err_path) {
            let _ = std::io::copy(&mut e, &mut f);
        }
    });
    let mut r = BufReader::new(out);
    let mut buf = Vec::new();
    while let Ok(n) = r.read_until(b'\n', &mut buf) {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        for part in line
            .split('\r')
            .map(str::trim_end)
            .filter(|p| !p.is_empty())
        {
            let clean: String = part
                .chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect();
            let _ = writeln!(log, "[{:8.3}] {clean}", t0.elapsed().as_secs_f64());
            on_line(&clean);
        }
        buf.clear();
    }
}

impl Vm {
    /// Whether QEMU has exited (the guest powered off, or the timeout hit).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to `timeout`, which passes it on to QEMU; SIGKILL if that does not end it.
    pub fn kill(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..50 {
            if self.try_wait().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.kill();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The last `n` lines of a log, for failure reports.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
