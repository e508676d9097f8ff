//! The PCR 11 value a UKI leaves in the TPM's SHA-256 bank when systemd-stub boots it, computed
//! from the file: what a profile can pin so that machines prove which UKI they ran.
//!
//! systemd-stub extends PCR 11 (which starts at 32 zero bytes) twice per UKI section it knows, in
//! its fixed order: first with the SHA-256 of the section *name* including its trailing NUL,
//! then with the SHA-256 of the section's *contents* as loaded in memory (its `VirtualSize`
//! bytes; a loader zero-fills past the raw data). Extending is
//! `PCR = SHA-256(PCR || digest)` (TPM 2.0 Part 1 §17.2). `.pcrsig` is never measured. Source:
//! systemd's docs/TPM2_PCR_MEASUREMENTS.md ("PCR 11, EV_IPL, PE section name/data") and the
//! UAPI.5 UKI specification for the order.
//!
//! Which sections a stub measures depends on its version: systemd 252 (Debian 12) knows
//! `.linux .osrel .cmdline .initrd .splash .dtb .pcrpkey`; later stubs follow the UKI
//! specification's longer list (`.ucode`, `.uname`, `.sbat`, …). The stub's version is read from
//! its `.sdmagic` section (`#### LoaderInfo: systemd-stub 252.39 ####`). The 252 order is checked
//! against `systemd-measure calculate` and against a TPM in the lab; for later versions the
//! value follows the specification and says so in [`Pcr11::basis`].
//!
//! What the kernel and userspace extend later (systemd-pcrphase's `enter-initrd`, …) is not
//! included: the value is PCR 11 as the stub hands over to the kernel. A system that runs
//! systemd-pcrphase before reporting needs a value learned from a first machine instead.

use std::fs::File;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::pe::{self, PeImage};
use crate::{Error, Result};

/// Sections systemd-stub 252 measures, in its order (`UnifiedSection` in its stub.c).
const ORDER_252: &[&str] = &[
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey",
];

/// The UKI specification's canonical order, without `.pcrsig` (never measured).
const ORDER_SPEC: &[&str] = &[
    ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".dtbauto", ".efifw",
    ".hwids", ".uname", ".sbat", ".pcrpkey", ".profile",
];

/// A computed PCR 11.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pcr11 {
    /// The SHA-256 bank value, 64 lowercase hex digits.
    pub sha256: String,
    /// The stub version found in `.sdmagic`, if any (`252.39`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stub_version: Option<String>,
    /// Which section list was used and how sure the value is.
    pub basis: String,
    /// The sections measured, in order.
    pub sections: Vec<String>,
}

/// Computes PCR 11 for the UKI at `path` (whose headers `image` describes). Section contents
/// are streamed, so a large UKI is never read into memory whole.
///
/// # Errors
/// [`Error::Unusable`] when the file has no `.linux` section (not a UKI); [`Error::Io`] when it
/// cannot be read.
pub fn pcr11(path: &Path, image: &PeImage) -> Result<Pcr11> {
    if image.section(".linux").is_none() {
        return Err(Error::unusable(
            path,
            "not a UKI (no .linux section): systemd-stub measures nothing into PCR 11",
        ));
    }
    let stub_version = stub_version(path, image)?;
    let major = stub_version
        .as_deref()
        .and_then(|v| v.split(['.', '~', '-']).next()?.parse::<u32>().ok());
    let (order, basis) = match major {
        Some(252) => (
            ORDER_252,
            "systemd-stub 252 section list (checked)".to_string(),
        ),
        Some(m) => (
            ORDER_SPEC,
            format!("UKI specification section list; systemd-stub {m} not checked here"),
        ),
        None => (
            ORDER_SPEC,
            "UKI specification section list; stub version unknown (no .sdmagic)".to_string(),
        ),
    };
    let mut f = File::open(path).map_err(Error::io(path))?;
    let mut pcr = [0u8; 32];
    let mut measured = Vec::new();
    for name in order {
        let Some(s) = image.section(name) else {
            continue;
        };
        let mut name_z = name.as_bytes().to_vec();
        name_z.push(0);
        extend(&mut pcr, &Sha256::digest(&name_z));
        let mut h = Sha256::new();
        let in_file = s.content_len();
        crate::authenticode::copy_range(
            &mut f,
            path,
            s.file_offset,
            s.file_offset + in_file,
            &mut h,
        )?;
        let loaded = u64::from(s.virtual_size).max(in_file);
        zeros(&mut h, loaded - in_file);
        extend(&mut pcr, &h.finalize());
        measured.push(name.to_string());
    }
    Ok(Pcr11 {
        sha256: hex::encode(pcr),
        stub_version,
        basis,
        sections: measured,
    })
}

/// `PCR = SHA-256(PCR || digest)`.
fn extend(pcr: &mut [u8; 32], digest: &[u8]) {
    let mut h = Sha256::new();
    h.update(&pcr[..]);
    h.update(digest);
    pcr.copy_from_slice(&h.finalize());
}

fn zeros(h: &mut Sha256, mut n: u64) {
    let block = [0u8; 4096];
    while n > 0 {
        let k = n.min(block.len() as u64) as usize;
        h.update(&block[..k]);
        n -= k as u64;
    }
}

/// The version in systemd-stub's `.sdmagic` (`#### LoaderInfo: systemd-stub 252.39 ####`).
fn stub_version(path: &Path, image: &PeImage) -> Result<Option<String>> {
    let Some(s) = image.section(".sdmagic") else {
        return Ok(None);
    };
    let raw = pe::read_section(path, s, 4096)?;
    let text = String::from_utf8_lossy(&raw);
    Ok(text
        .split("systemd-stub ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_matches_the_tpm_rule() {
        // PCR 0…0 extended with SHA-256("") — a value anyone can recompute with sha256sum.
        let mut pcr = [0u8; 32];
        extend(&mut pcr, &Sha256::digest(b""));
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(Sha256::digest(b""));
        assert_eq!(pcr[..], h.finalize()[..]);
    }
}
