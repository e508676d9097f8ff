//! Secure Boot with the lab's own keys: a PK, a KEK and a db key (RSA-2048, X.509, made with
//! `openssl` once and kept in `<cache>/secure-boot/`), an OVMF variable store with them enrolled
//! and Secure Boot on (`virt-fw-vars --set-pk … --add-kek … --add-db … --sb`, the explicit
//! options: the `--enroll-cert` shortcut puts one cert in PK and KEK, adds Microsoft's KEKs and
//! writes no db), and UKIs signed with the db key (`sbsign`, checked with `sbverify`).
//!
//! What the firmware then checks (UEFI 2.10 §32.5): every image it loads — the UKI it got by TFTP
//! or HTTP, the disk's `\EFI\BOOT\BOOTX64.EFI` — must carry an Authenticode signature that chains
//! to a certificate in `db` (or its hash must be listed there) and be in no `dbx` entry; else
//! `LoadImage` fails with "Access Denied". The keys are the lab's alone: nothing signed by anyone
//! else (Microsoft, Debian, iPXE's unsigned build) boots on these VMs.
//!
//! Every command is built from typed values (`Command` with separate arguments, no shell).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::images::Images;

/// OVMF's Secure Boot build (needs SMM: q35 with `smm=on` and secure pflash).
pub const OVMF_CODE_SB: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// The empty variable store the lab's keys are enrolled into.
pub const OVMF_VARS_EMPTY: &str = crate::vm::OVMF_VARS;
/// The EFI global variable GUID: `SecureBoot-<this>` in efivarfs says whether it is on
/// (UEFI 2.10 §3.3).
pub const EFI_GLOBAL_VARIABLE: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// One key of the Secure Boot hierarchy (UEFI 2.10 §32.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// Platform Key: owns the platform; signs KEK updates.
    Pk,
    /// Key Exchange Key: signs db/dbx updates.
    Kek,
    /// Signature database entry: images signed by this key boot.
    Db,
}

impl KeyRole {
    pub const ALL: [KeyRole; 3] = [KeyRole::Pk, KeyRole::Kek, KeyRole::Db];

    /// File stem in the key directory (`PK.key`, `PK.pem`, …).
    pub fn stem(self) -> &'static str {
        match self {
            KeyRole::Pk => "PK",
            KeyRole::Kek => "KEK",
            KeyRole::Db => "db",
        }
    }

    /// The `virt-fw-vars` option that enrolls this certificate.
    fn enroll_option(self) -> &'static str {
        match self {
            KeyRole::Pk => "--set-pk",
            KeyRole::Kek => "--add-kek",
            KeyRole::Db => "--add-db",
        }
    }
}

/// The lab's keys and the variable store they are enrolled in, under `<cache>/secure-boot/`.
#[derive(Clone, Debug)]
pub struct LabKeys {
    dir: PathBuf,
}

/// The tools this module runs, each from a Debian package `lab setup` installs.
const TOOLS: [(&str, &str); 4] = [
    ("openssl", "openssl"),
    ("virt-fw-vars", "python3-virt-firmware (bookworm-backports)"),
    ("sbsign", "sbsigntool"),
    ("sbverify", "sbsigntool"),
];

/// Fails loudly, naming `lab setup`, when a tool Secure Boot needs is missing.
pub fn require_tools() -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
        .map(|(tool, pkg)| format!("{tool} (package {pkg})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "Secure Boot paths need {}: run `sudo lab setup`",
            missing.join(", ")
        );
    }
    for f in [OVMF_CODE_SB, OVMF_VARS_EMPTY] {
        if !Path::new(f).exists() {
            bail!("{f} missing (package ovmf): run `sudo lab setup`");
        }
    }
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (`sudo lab setup` installs it)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A random (version 4) GUID, the owner of the enrolled signature lists.
fn owner_guid() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// What `virt-fw-vars -p` must show for a store with our keys and Secure Boot on.
pub fn enrolled_ok(print: &str) -> bool {
    let has = |name: &str, what: &str| {
        print.lines().any(|l| {
            let mut parts = l.splitn(2, ':');
            parts.next().is_some_and(|n| n.trim() == name)
                && parts.next().is_some_and(|v| v.contains(what))
        })
    };
    has("PK", "blob") && has("KEK", "blob") && has("db", "blob") && has("SecureBootEnable", "ON")
}

impl LabKeys {
    /// The keys and the enrolled store, made once (in a staging directory renamed into place,
    /// so parallel lab runs agree on one set).
    pub fn ensure(cache: &Path) -> anyhow::Result<LabKeys> {
        require_tools()?;
        let dir = cache.join("secure-boot");
        let keys = LabKeys { dir: dir.clone() };
        if dir.join("complete").exists() {
            return Ok(keys);
        }
        let tmp = cache.join(format!(".secure-boot.{}.tmp", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        for role in KeyRole::ALL {
            let stem = role.stem();
            run(Command::new("openssl")
                .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
                .args(["-sha256", "-days", "3650", "-subj"])
                .arg(format!("/CN=Provisioner lab {stem}/"))
                .arg("-keyout")
                .arg(tmp.join(format!("{stem}.key")))
                .arg("-out")
                .arg(tmp.join(format!("{stem}.pem"))))?;
        }
        let guid = owner_guid()?;
        std::fs::write(tmp.join("owner.guid"), format!("{guid}\n"))?;
        let vars = tmp.join("OVMF_VARS_4M.lab-sb.fd");
        let mut enroll = Command::new("virt-fw-vars");
        enroll.arg("-i").arg(OVMF_VARS_EMPTY);
        for role in KeyRole::ALL {
            enroll
                .arg(role.enroll_option())
                .arg(&guid)
                .arg(tmp.join(format!("{}.pem", role.stem())));
        }
        run(enroll.arg("--sb").arg("-o").arg(&vars))?;
        let print = run(Command::new("virt-fw-vars").arg("-i").arg(&vars).arg("-p"))?;
        if !enrolled_ok(&print) {
            bail!("virt-fw-vars did not enroll PK, KEK and db with Secure Boot on:\n{print}");
        }
        std::fs::write(tmp.join("complete"), b"")?;
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.join("complete").exists() {
                return Err(e).with_context(|| format!("moving the keys into {}", dir.display()));
            }
        }
        Ok(keys)
    }

    /// The OVMF variable store with PK, KEK and db enrolled and Secure Boot on (copy it per VM).
    pub fn vars(&self) -> PathBuf {
        self.dir.join("OVMF_VARS_4M.lab-sb.fd")
    }

    pub fn cert(&self, role: KeyRole) -> PathBuf {
        self.dir.join(format!("{}.pem", role.stem()))
    }

    fn key(&self, role: KeyRole) -> PathBuf {
        self.dir.join(format!("{}.key", role.stem()))
    }

    /// `sbsign`s `input` with the db key into `output`, then `sbverify`s it against the db cert.
    pub fn sign(&self, input: &Path, output: &Path) -> anyhow::Result<()> {
        run(Command::new("sbsign")
            .arg("--key")
            .arg(self.key(KeyRole::Db))
            .arg("--cert")
            .arg(self.cert(KeyRole::Db))
            .arg("--output")
            .arg(output)
            .arg(input))?;
        let said = run(Command::new("sbverify")
            .arg("--cert")
            .arg(self.cert(KeyRole::Db))
            .arg(output))?;
        if !said.contains("Signature verification OK") {
            bail!("sbverify {}: {said}", output.display());
        }
        Ok(())
    }

    /// The images with the installer UKI and the disk's OS UKI signed with the db key, cached
    /// beside the unsigned ones (`signed-<key set>/`). The BIOS disk is unchanged.
    pub fn signed(&self, images: &Images) -> anyhow::Result<Images> {
        let guid = std::fs::read_to_string(self.dir.join("owner.guid"))?;
        let base = images.installer_uki.parent().context("image directory")?;
        let dir = base.join(format!("signed-{}", guid.trim()));
        let out = Images {
            installer_uki: dir.join("installer.efi"),
            os_uki: dir.join("os.efi"),
            disk_efi: dir.join("disk-efi.img"),
            disk_bios: images.disk_bios.clone(),
        };
        if dir.join("complete").exists() {
            return Ok(out);
        }
        let tmp = base.join(format!(".signed.{}.tmp", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        self.sign(&images.installer_uki, &tmp.join("installer.efi"))?;
        self.sign(&images.os_uki, &tmp.join("os.efi"))?;
        crate::images::efi_disk(&tmp, &tmp.join("os.efi"), &tmp.join("disk-efi.img"))?;
        std::fs::write(tmp.join("complete"), b"")?;
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.join("complete").exists() {
                return Err(e).with_context(|| format!("moving into {}", dir.display()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_check_wants_all_three_keys_and_secure_boot_on() {
        let ok = "CustomMode          : bool: off\nKEK                 : blob: 821 bytes\n\
                  PK                  : blob: 819 bytes\nSecureBootEnable    : bool: ON\n\
                  db                  : blob: 819 bytes\ndbx                 : blob: 76 bytes\n";
        assert!(enrolled_ok(ok));
        assert!(!enrolled_ok(&ok.replace("bool: ON", "bool: off")));
        assert!(!enrolled_ok(
            &ok.replace("db                  : blob", "dbx2: blob")
        ));
    }

    #[test]
    fn owner_guid_is_a_version_4_uuid() {
        let g = owner_guid().unwrap();
        let parts: Vec<&str> = g.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{g}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{g}");
    }
}
