//! The `uefi-https` path: the provisioner's boot TLS listener on (`[boot_tls]`, serving the
//! server's own self-issued RSA-2048 certificate from `<data_dir>/tls`), and that CA handed to
//! OVMF as an EFI signature list (`cert-to-efi-sig-list` from efitools) through fw_cfg
//! `etc/edk2/https/cacerts`.
//!
//! OVMF checks that the server certificate names the host of the boot URL (the server's
//! self-issued certificate names `dhcp.server_ip`; with a certificate naming another address
//! the firmware stops at "Unexpected network error") and, for static-RSA key exchange, that
//! its key usage allows key encipherment.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::vm::Firmware;

/// The port of the boot TLS listener in the lab.
pub const BOOT_TLS_PORT: u16 = 8443;

/// Whether the run needs the boot TLS listener. HTTPS boot is a server setting (every
/// HTTP-boot client of that server gets https://), so a `uefi-http` or `uefi-http-sb` VM, which
/// has no CA, cannot share the run; nor is `--ha` supported on this path.
pub fn wanted(firmware: &[Firmware], ha: bool) -> anyhow::Result<bool> {
    if !firmware.contains(&Firmware::UefiHttps) {
        return Ok(false);
    }
    let plain_http = [Firmware::UefiHttp, Firmware::UefiHttpSb];
    if firmware.iter().any(|f| plain_http.contains(f)) || ha {
        bail!(
            "uefi-https runs on its own or beside the non-HTTP paths: with the boot TLS listener \
             on, every HTTP-boot client is given an https:// URL (no uefi-http, uefi-http-sb or --ha)"
        );
    }
    Ok(true)
}

/// The `[boot_tls]` section for a provisioner at `ip`: its boot TLS listener on
/// [`BOOT_TLS_PORT`] with the server's own certificate, so DHCP hands HTTP-boot firmware
/// `https://<ip>:8443/boot/efi?mac=…`.
pub fn server_toml(ip: &str) -> String {
    format!("[boot_tls]\nlisten = \"{ip}:{BOOT_TLS_PORT}\"\n")
}

/// The server's CA (`<data>/tls/ca.pem`, there once it listens) as the EFI signature list OVMF
/// reads, in `work/https-cacerts.esl`.
pub fn cacerts(work: &Path, data: &Path) -> anyhow::Result<PathBuf> {
    let ca = data.join("tls/ca.pem");
    let esl = work.join("https-cacerts.esl");
    let out = Command::new("cert-to-efi-sig-list")
        .arg(&ca)
        .arg(&esl)
        .output()
        .context("cert-to-efi-sig-list (Debian's `efitools`; lab setup installs it)")?;
    if !out.status.success() {
        bail!(
            "cert-to-efi-sig-list {}: {}",
            ca.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(esl)
}
