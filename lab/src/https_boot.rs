//! The `uefi-https` path's material: a CA and a server certificate for the lab's server
//! address (RSA-2048, made with the `openssl` CLI), the CA as an EFI signature list for OVMF
//! (`cert-to-efi-sig-list` from efitools, handed in through fw_cfg `etc/edk2/https/cacerts`),
//! and the `[boot_tls]` section that turns the provisioner's boot TLS listener on.
//!
//! OVMF checks that the server certificate names the host of the boot URL (here an IP SAN)
//! and, for static-RSA key exchange, that its key usage allows key encipherment.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The port of the boot TLS listener in the lab.
pub const BOOT_TLS_PORT: u16 = 8443;

/// Files of one run's HTTPS boot, in its work directory.
pub struct HttpsBoot {
    /// The CA, PEM.
    pub ca: PathBuf,
    /// The CA as an EFI signature list (what OVMF reads from fw_cfg).
    pub esl: PathBuf,
    /// The server certificate (signed by the CA, SANs: the server addresses), PEM.
    pub cert: PathBuf,
    /// Its RSA key, PEM.
    pub key: PathBuf,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The material when the run has a `uefi-https` VM, else `None`. HTTPS boot is a server
/// setting (every HTTP-boot client of that server gets https://), so a `uefi-http` VM, which
/// has no CA, cannot share the run; nor is `--ha` supported on this path.
pub fn for_run(
    firmware: &[crate::vm::Firmware],
    ha: bool,
    work: &Path,
) -> anyhow::Result<Option<HttpsBoot>> {
    use crate::vm::Firmware;
    if !firmware.contains(&Firmware::UefiHttps) {
        return Ok(None);
    }
    if firmware.contains(&Firmware::UefiHttp) || ha {
        bail!(
            "uefi-https runs on its own or beside the non-HTTP paths: with the boot TLS listener on, \
             every HTTP-boot client is given an https:// URL (no uefi-http, no --ha)"
        );
    }
    prepare(work, &[crate::netns::SERVER_IP]).map(Some)
}

/// Makes the CA, the server certificate for `ips` and the signature list in `work/https/`.
pub fn prepare(work: &Path, ips: &[&str]) -> anyhow::Result<HttpsBoot> {
    let dir = work.join("https");
    std::fs::create_dir_all(&dir)?;
    let openssl = |args: &[&str]| {
        run(Command::new("openssl").args(args).current_dir(&dir))
            .context("the openssl CLI (Debian's `openssl` package)")
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        "365",
        "-subj",
        "/CN=Lab HTTPS boot CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-subj",
        "/CN=provisioner",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "365",
        "-sha256",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    run(Command::new("cert-to-efi-sig-list")
        .args(["ca.pem", "cacerts.esl"])
        .current_dir(&dir))
    .context("cert-to-efi-sig-list (Debian's `efitools`; lab setup installs it)")?;
    Ok(HttpsBoot {
        ca: dir.join("ca.pem"),
        esl: dir.join("cacerts.esl"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    })
}

impl HttpsBoot {
    /// The `[boot_tls]` section for a provisioner at `ip`: its boot TLS listener on
    /// [`BOOT_TLS_PORT`], so DHCP hands HTTP-boot firmware `https://<ip>:8443/boot/efi?mac=…`.
    pub fn server_toml(&self, ip: &str) -> String {
        format!(
            "[boot_tls]\nlisten = \"{ip}:{BOOT_TLS_PORT}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }
}
