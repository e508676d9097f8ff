//! UKI inspection: is this file a Unified Kernel Image (systemd-stub + `.linux` + `.initrd` +
//! `.cmdline` + `.osrel`, see the UAPI UKI specification), and what does it boot.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pe::{self, PeImage, SUBSYSTEM_EFI_APPLICATION};
use crate::{authenticode, Error, Result};

/// Text sections are small; anything larger is a corrupt or hostile header.
const TEXT_SECTION_LIMIT: u64 = 1 << 20;

/// What `assets inspect` shows and the store records for an EFI image.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EfiInfo {
    /// `x86_64`, `aarch64`, …
    pub arch: String,
    /// Section names and content sizes, in file order.
    pub sections: Vec<SectionSize>,
    /// Whether the image carries an Authenticode signature (attribute certificate table).
    pub signed: bool,
    /// The Authenticode SHA-256 (what Secure Boot `db`/`dbx` entries and signatures cover).
    pub authenticode_sha256: String,
    /// Present when the image is a UKI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uki: Option<UkiInfo>,
}

/// One section of an EFI image, by name and content size.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSize {
    /// The section's name (`.linux`, `.osrel`, …).
    pub name: String,
    /// Its content size (bytes; [`crate::pe::Section::content_len`]).
    pub size: u64,
}

/// The UKI-specific part.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UkiInfo {
    /// `.osrel` as key/value pairs (NAME, VERSION_ID, PRETTY_NAME, …).
    pub os_release: BTreeMap<String, String>,
    /// The kernel release (`.uname`), when the UKI has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uname: Option<String>,
    /// The embedded kernel command line (`.cmdline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// The SBAT revocation metadata (`.sbat`), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbat: Option<String>,
    /// Whether it carries an initrd (`.initrd`).
    pub has_initrd: bool,
}

impl UkiInfo {
    /// `PRETTY_NAME`, else `NAME VERSION_ID`, else "unknown OS".
    pub fn os_name(&self) -> String {
        if let Some(p) = self.os_release.get("PRETTY_NAME") {
            return p.clone();
        }
        match (
            self.os_release.get("NAME"),
            self.os_release.get("VERSION_ID"),
        ) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            (Some(n), None) => n.clone(),
            _ => "unknown OS".into(),
        }
    }
}

/// Inspects any EFI application (a UKI or a loader such as `ipxe.efi`).
pub fn inspect_efi(path: &Path) -> Result<(PeImage, EfiInfo)> {
    let image = PeImage::read(path)?;
    if image.subsystem != SUBSYSTEM_EFI_APPLICATION {
        return Err(Error::unusable(
            path,
            format!(
                "PE subsystem is {}, not 10 (EFI application): this is not something firmware boots",
                image.subsystem
            ),
        ));
    }
    let mut uki = None;
    if let Some(linux) = image.section(".linux") {
        if linux.content_len() == 0 {
            return Err(Error::unusable(path, "the .linux section is empty"));
        }
        let text = |name: &str| -> Result<Option<String>> {
            match image.section(name) {
                Some(s) => {
                    let raw = pe::read_section(path, s, TEXT_SECTION_LIMIT)?;
                    let s = String::from_utf8_lossy(&raw);
                    Ok(Some(s.trim_end_matches(['\0', '\n', ' ']).to_string()))
                }
                None => Ok(None),
            }
        };
        uki = Some(UkiInfo {
            os_release: text(".osrel")?
                .map(|t| parse_os_release(&t))
                .unwrap_or_default(),
            uname: text(".uname")?,
            cmdline: text(".cmdline")?,
            sbat: text(".sbat")?,
            has_initrd: image.section(".initrd").is_some(),
        });
    }
    let info = EfiInfo {
        arch: pe::machine_name(image.machine).to_string(),
        sections: image
            .sections
            .iter()
            .map(|s| SectionSize {
                name: s.name.clone(),
                size: s.content_len(),
            })
            .collect(),
        signed: image.cert_table.is_some(),
        authenticode_sha256: authenticode::sha256(path, &image)?,
        uki,
    };
    Ok((image, info))
}

/// Inspects a file that must be a UKI; the error says what is missing.
pub fn inspect_uki(path: &Path) -> Result<(PeImage, EfiInfo)> {
    let (image, info) = inspect_efi(path)?;
    if info.uki.is_none() {
        let names: Vec<_> = image.sections.iter().map(|s| s.name.as_str()).collect();
        return Err(Error::unusable(
            path,
            format!(
                "an EFI application but not a UKI: it has no .linux section (sections: {}); \
                 import loaders such as ipxe.efi with --loader",
                names.join(" ")
            ),
        ));
    }
    Ok((image, info))
}

/// os-release(5): `KEY=value` lines, values optionally quoted.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.trim().to_string(), v.replace("\\\"", "\""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quotes_and_comments() {
        let m = parse_os_release(
            "# c\nNAME=\"Hadron\"\nVERSION_ID=0.1\nPRETTY_NAME='Hadron 0.1 (test)'\ngarbage\n",
        );
        assert_eq!(m["NAME"], "Hadron");
        assert_eq!(m["VERSION_ID"], "0.1");
        assert_eq!(m["PRETTY_NAME"], "Hadron 0.1 (test)");
        assert_eq!(m.len(), 3);
    }
}
