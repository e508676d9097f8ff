//! `lab setup`: installs what the lab needs from Debian and unpacks a Debian kernel into the
//! cache (not installed). Idempotent: quick when everything is there.
//!
//! QEMU comes from bookworm-backports (this machine's `qemu-utils` is the backports build, which
//! breaks bookworm's `qemu-system-common`). The suite is added through a private apt sources
//! file whose mirror is read from the machine's own `/etc/apt/sources.list.d/debian.sources` at
//! run time; no mirror name is written anywhere.
//!
//! Secure Boot and the TPM ([`crate::secure_boot`]): `sbsigntool` (sbsign, sbverify),
//! `efitools`, `openssl`, `swtpm` and `swtpm-tools` from bookworm, `python3-virt-firmware`
//! (`virt-fw-vars`, which enrolls keys into an OVMF variable store offline) from
//! bookworm-backports — through the same private sources file as QEMU, so apt resolves its
//! Python dependencies from Debian and no virtualenv or second package manager is involved.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// From bookworm (main).
const PACKAGES: [&str; 23] = [
    "ovmf",
    "ipxe",
    "ipxe-qemu",
    "seabios",
    "busybox-static",
    "systemd-boot-efi",
    "cpio",
    "iproute2",
    "mtools",
    "dosfstools",
    "syslinux",
    "syslinux-common",
    "fdisk",
    "dnsmasq",
    "curl",
    // `grubnetx64.efi` for the `uefi-grub` path (GRUB over PXE, kernel and initrd by HTTP).
    "grub-efi-amd64-bin",
    // Secure Boot paths: lab keys, signing, verification; a software TPM per VM. efitools also
    // for `uefi-https` (the server's CA as an EFI signature list: `cert-to-efi-sig-list`).
    "openssl",
    "sbsigntool",
    "efitools",
    "swtpm",
    "swtpm-tools",
    // `uefi-http6`: the reference DHCPv6 server, and the HTTPv4 gate (crate::http6).
    "kea-dhcp6-server",
    "nftables",
];
/// From bookworm-backports.
const BACKPORTS: [&str; 4] = [
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    // `virt-fw-vars`: enrolls the lab's PK, KEK and db into an OVMF_VARS copy.
    "python3-virt-firmware",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt(args: &[&str], extra: &[String]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(["-y", "-q", "--no-install-recommends"])
        .args(extra)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::process::Stdio::null())
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed", args.join(" "));
    }
    Ok(())
}

fn mirror() -> anyhow::Result<String> {
    let path = "/etc/apt/sources.list.d/debian.sources";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .map(|u| u.split_whitespace().next().unwrap_or("").to_string())
        .filter(|u| u.starts_with("http"))
        .with_context(|| format!("no URIs: line in {path}"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What `lab setup` would install: the missing Debian packages (bookworm, then backports) and,
/// when the cache has no kernel yet, `"kernel in <cache>"`. Empty when the lab is ready; cheap
/// (one `dpkg-query` per package), so `lab demo` checks it before every run.
pub fn missing(cache: &Path) -> Vec<String> {
    let mut out: Vec<String> = PACKAGES
        .iter()
        .chain(BACKPORTS.iter())
        .filter(|p| !installed(p))
        .map(|p| p.to_string())
        .collect();
    if !crate::images::kernel_dir(cache).join("vmlinuz").exists() {
        out.push(format!("kernel in {}", cache.display()));
    }
    out
}

/// Installs missing packages and the kernel. Fails, saying what to run, when not root.
pub fn setup(cache: &Path) -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    let missing_bp: Vec<&str> = BACKPORTS
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    let kernel = crate::images::kernel_dir(cache).join("vmlinuz");
    if missing.is_empty() && missing_bp.is_empty() && kernel.exists() {
        eprintln!("lab setup: everything is in place ({})", cache.display());
        return Ok(());
    }
    if !is_root() {
        bail!(
            "lab setup must run as root to install {:?} and unpack a kernel into {}: sudo lab setup",
            [missing.clone(), missing_bp.clone()].concat(),
            cache.display()
        );
    }
    if !missing.is_empty() {
        eprintln!("lab setup: installing {}", missing.join(" "));
        apt(&["update", "-qq"], &[])?;
        apt(&[&["install"], &missing[..]].concat(), &[])?;
    }
    if !missing_bp.is_empty() {
        eprintln!(
            "lab setup: installing {} from bookworm-backports",
            missing_bp.join(" ")
        );
        let dir = tempfile::tempdir()?;
        let list = dir.path().join("backports.list");
        std::fs::write(
            &list,
            format!("deb {} bookworm-backports main\n", mirror()?),
        )?;
        let opts = vec![
            format!("-oDir::Etc::sourcelist={}", list.display()),
            "-oDir::Etc::sourceparts=/etc/apt/sources.list.d".to_string(),
            "-oAPT::Get::List-Cleanup=0".to_string(),
        ];
        apt(&["update", "-qq"], &opts)?;
        apt(
            &[&["install", "-t", "bookworm-backports"], &missing_bp[..]].concat(),
            &opts,
        )?;
    }
    if !kernel.exists() {
        fetch_kernel(cache)?;
    }
    eprintln!("lab setup: done");
    Ok(())
}

/// `apt-get download` the kernel `linux-image-amd64` depends on and unpack it with `dpkg -x`.
fn fetch_kernel(cache: &Path) -> anyhow::Result<()> {
    let deps = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()?;
    let text = String::from_utf8_lossy(&deps.stdout);
    let pkg = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| {
            p.starts_with("linux-image-") && p.chars().nth(12).is_some_and(|c| c.is_ascii_digit())
        })
        .context("cannot tell which kernel linux-image-amd64 depends on")?
        .to_string();
    eprintln!("lab setup: unpacking {pkg} into {}", cache.display());
    let work = tempfile::tempdir()?;
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let ok = Command::new("apt-get")
        .args(["download", "-qq", &pkg])
        .current_dir(work.path())
        .status()?;
    if !ok.success() {
        bail!("apt-get download {pkg} failed");
    }
    let deb = std::fs::read_dir(work.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("no .deb downloaded")?;
    let root = work.path().join("root");
    let ok = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()?;
    if !ok.success() {
        bail!("dpkg -x {} failed", deb.display());
    }
    let staging = cache.join("kernel.new");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let vmlinuz = std::fs::read_dir(root.join("boot"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no vmlinuz in the kernel package")?;
    std::fs::copy(vmlinuz, staging.join("vmlinuz"))?;
    std::fs::rename(root.join("lib/modules"), staging.join("modules"))?;
    std::fs::write(staging.join("package"), format!("{pkg}\n"))?;
    let dest = crate::images::kernel_dir(cache);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest)?;
    Ok(())
}
