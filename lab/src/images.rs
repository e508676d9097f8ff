//! What the lab VMs boot, built from Debian parts and cached by content hash under
//! `<cache>/images/<sha256 of every input>/`:
//!
//! - `installer.efi`: a UKI (systemd-stub + Debian kernel + a busybox initramfs whose `/init` is
//!   `guest/installer-init.sh`) that plays a Hadron/Kairos installer.
//! - `os.efi`: the installed OS, a UKI whose `/init` (`guest/os-init.sh`) registers "booted
//!   from disk" and powers off.
//! - `disk-efi.img`: GPT + ESP (FAT, built with mtools, no mounts) holding `os.efi` at
//!   `\EFI\BOOT\BOOTX64.EFI`.
//! - `disk-bios.img`: MBR + a FAT partition with syslinux, booting the same kernel and OS
//!   initramfs on SeaBIOS.
//!
//! For the Secure Boot paths [`crate::secure_boot::LabKeys::signed`] makes signed copies of the
//! two UKIs and an EFI disk around the signed OS ([`efi_disk`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::cpio::Cpio;

pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
pub const BUSYBOX: &str = "/bin/busybox";
const MODULES: [&str; 10] = [
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "net/core/failover",
    "drivers/net/net_failover",
    "drivers/net/virtio_net",
    "drivers/block/virtio_blk",
    // To read the SecureBoot EFI variable (efivarfs is a module in Debian's kernel; the TPM
    // drivers tpm and tpm_crb are built in).
    "fs/efivarfs/efivarfs",
];
const COMMON: &str = include_str!("guest/common.sh");
const INSTALLER_INIT: &str = include_str!("guest/installer-init.sh");
const OS_INIT: &str = include_str!("guest/os-init.sh");
const UDHCPC: &str = include_str!("guest/udhcpc.script");
/// Size of the installed-OS disk images.
const DISK_MIB: u64 = 40;

/// The built artifacts.
#[derive(Clone, Debug)]
pub struct Images {
    pub installer_uki: PathBuf,
    /// The installed OS's UKI (inside `disk_efi` as `\EFI\BOOT\BOOTX64.EFI`).
    pub os_uki: PathBuf,
    pub disk_efi: PathBuf,
    pub disk_bios: PathBuf,
}

pub fn kernel_dir(cache: &Path) -> PathBuf {
    cache.join("kernel")
}

fn module_root(cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = kernel_dir(cache).join("modules");
    let ver = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: run `lab setup` first", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .next()
        .with_context(|| format!("no kernel modules under {}: run `lab setup`", dir.display()))?;
    Ok(ver.join("kernel"))
}

fn initramfs(cache: &Path, init: &str) -> anyhow::Result<Vec<u8>> {
    let mut c = Cpio::default();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "lib",
        "lib/modules",
    ] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1)
        .char_dev("dev/null", 0o666, 1, 3);
    let busybox = std::fs::read(BUSYBOX)
        .with_context(|| format!("{BUSYBOX}: install busybox-static (lab setup)"))?;
    c.file("bin/busybox", 0o755, &busybox);
    c.file("init", 0o755, init.as_bytes());
    c.file("common.sh", 0o644, COMMON.as_bytes());
    c.file("udhcpc.script", 0o755, UDHCPC.as_bytes());
    let root = module_root(cache)?;
    for m in MODULES {
        let path = root.join(format!("{m}.ko"));
        let bytes =
            std::fs::read(&path).with_context(|| format!("kernel module {}", path.display()))?;
        let name = m.rsplit('/').next().unwrap();
        c.file(&format!("lib/modules/{name}.ko"), 0o644, &bytes);
    }
    Ok(c.finish())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (lab setup installs it)"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn build_uki(
    cache: &Path,
    init: &str,
    cmdline: &str,
    name: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let kernel =
        std::fs::read(kernel_dir(cache).join("vmlinuz")).context("kernel: run `lab setup`")?;
    let osrel = format!(
        "NAME=\"Hadron lab\"\nID=hadron-lab\nVERSION_ID=0.1\nPRETTY_NAME=\"Hadron lab {name}\"\n"
    );
    boot_assets::UkiBuilder::new()
        .section(".osrel", osrel.into_bytes())
        .section(".cmdline", cmdline.as_bytes().to_vec())
        .section(".initrd", initramfs(cache, init)?)
        .section(".linux", kernel)
        .build(Path::new(STUB), out)?;
    Ok(())
}

/// A FAT filesystem image of `mib` MiB whose boot sector says it starts at sector 2048.
fn fat(path: &Path, mib: u64) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    run(Command::new("mkfs.vfat")
        .args(["-h", "2048", "-n", "LABOS", "-C"])
        .arg(path)
        .arg((mib * 1024).to_string()))
}

fn mcopy(fat: &Path, from: &Path, to: &str) -> anyhow::Result<()> {
    run(Command::new("mcopy").arg("-i").arg(fat).arg(from).arg(to))
}

/// Puts `fat` at 1 MiB into a `DISK_MIB` disk with a partition table (`label`: gpt or dos).
fn disk(out: &Path, fat_img: &Path, label: &str) -> anyhow::Result<()> {
    let f = std::fs::File::create(out)?;
    f.set_len(DISK_MIB << 20)?;
    drop(f);
    let script = match label {
        "gpt" => "label: gpt\nstart=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP\n",
        _ => "label: dos\nstart=2048, type=c, bootable\n",
    };
    let mut child = Command::new("sfdisk")
        .arg("--quiet")
        .arg(out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("sfdisk (package fdisk; lab setup installs it)")?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(script.as_bytes())?;
    let o = child.wait_with_output()?;
    if !o.status.success() {
        bail!("sfdisk failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    run(Command::new("dd")
        .arg(format!("if={}", fat_img.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=1M", "seek=1", "conv=notrunc,fsync", "status=none"]))
}

/// A GPT disk image `out` whose ESP holds `os_efi` at `\EFI\BOOT\BOOTX64.EFI` (the removable
/// media path firmware boots without a boot entry). `scratch` holds the FAT image meanwhile.
pub fn efi_disk(scratch: &Path, os_efi: &Path, out: &Path) -> anyhow::Result<()> {
    let esp = scratch.join("esp.fat");
    fat(&esp, DISK_MIB - 2)?;
    run(Command::new("mmd")
        .arg("-i")
        .arg(&esp)
        .args(["::/EFI", "::/EFI/BOOT"]))?;
    mcopy(&esp, os_efi, "::/EFI/BOOT/BOOTX64.EFI")?;
    disk(out, &esp, "gpt")?;
    let _ = std::fs::remove_file(&esp);
    Ok(())
}

fn inputs_key(cache: &Path, server_url: &str) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(b"lab-images-v3");
    for p in [
        PathBuf::from(STUB),
        PathBuf::from(BUSYBOX),
        kernel_dir(cache).join("vmlinuz"),
    ] {
        h.update(std::fs::read(&p).with_context(|| format!("{}: run `lab setup`", p.display()))?);
    }
    for s in [COMMON, INSTALLER_INIT, OS_INIT, UDHCPC, server_url] {
        h.update(s.as_bytes());
        h.update([0]);
    }
    Ok(h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Builds (or finds in the cache) everything the VMs boot. `server_url` is embedded in the
/// installer's `.cmdline` for UEFI HTTP boot, where no arguments are passed.
pub fn build(cache: &Path, server_url: &str) -> anyhow::Result<Images> {
    let key = inputs_key(cache, server_url)?;
    let dir = cache.join("images").join(&key);
    let images = Images {
        installer_uki: dir.join("installer.efi"),
        os_uki: dir.join("os.efi"),
        disk_efi: dir.join("disk-efi.img"),
        disk_bios: dir.join("disk-bios.img"),
    };
    if dir.join("complete").exists() {
        return Ok(images);
    }
    // Per-process staging: parallel lab runs may build the same images at once; the first
    // rename wins and the others use its result.
    let tmp = cache
        .join("images")
        .join(format!(".{key}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    // Like a signed Kairos UKI: one `config_url` for every machine, templated with the SMBIOS
    // UUID (the installer fills it in). iPXE paths append a per-machine config_url, which wins;
    // UEFI HTTP boot passes no arguments, so it uses this one.
    let installer_cmdline = format!(
        "console=ttyS0 panic=-1 provisioner.url={server_url} config_url={server_url}/config?uuid={{{{.Values.product.uuid}}}}"
    );
    build_uki(
        cache,
        INSTALLER_INIT,
        &installer_cmdline,
        "installer",
        &tmp.join("installer.efi"),
    )?;
    // UEFI disk: the OS as a UKI at the removable-media path.
    let os_efi = tmp.join("os.efi");
    build_uki(
        cache,
        OS_INIT,
        "console=ttyS0 panic=-1",
        "installed OS",
        &os_efi,
    )?;
    efi_disk(&tmp, &os_efi, &tmp.join("disk-efi.img"))?;
    // BIOS disk: syslinux loading the same kernel and OS initramfs.
    let boot = tmp.join("boot.fat");
    fat(&boot, DISK_MIB - 2)?;
    run(Command::new("syslinux").arg("--install").arg(&boot))?;
    let initrd = tmp.join("os.initrd");
    std::fs::write(&initrd, initramfs(cache, OS_INIT)?)?;
    let cfg = tmp.join("syslinux.cfg");
    std::fs::write(
        &cfg,
        "SERIAL 0 115200\nDEFAULT os\nPROMPT 0\nTIMEOUT 0\nLABEL os\n  LINUX /vmlinuz\n  INITRD /initrd\n  APPEND console=ttyS0 panic=-1\n",
    )?;
    mcopy(&boot, &kernel_dir(cache).join("vmlinuz"), "::/vmlinuz")?;
    mcopy(&boot, &initrd, "::/initrd")?;
    mcopy(&boot, &cfg, "::/syslinux.cfg")?;
    let bios = tmp.join("disk-bios.img");
    disk(&bios, &boot, "dos")?;
    run(Command::new("dd")
        .arg("if=/usr/lib/syslinux/mbr/mbr.bin")
        .arg(format!("of={}", bios.display()))
        .args(["bs=440", "count=1", "conv=notrunc", "status=none"]))?;
    for f in ["boot.fat", "os.initrd", "syslinux.cfg"] {
        let _ = std::fs::remove_file(tmp.join(f));
    }
    std::fs::write(tmp.join("complete"), b"")?;
    if dir.exists() && !dir.join("complete").exists() {
        let _ = std::fs::remove_dir_all(&dir); // a leftover of an interrupted older layout
    }
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join("complete").exists() {
            return Err(e).with_context(|| format!("moving the images into {}", dir.display()));
        }
    }
    Ok(images)
}
