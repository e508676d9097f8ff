//! Profiles: what a class of machines boots and how it is configured.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A named recipe shared by many machines.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Unique name machines refer to it by (checked by [`Profile::validate`]).
    pub name: String,
    /// Content address of the UKI to boot (`sha256:<64 hex>`); the asset store resolves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uki: Option<String>,
    /// Kairos cloud-config template rendered per machine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cloud_config: String,
    /// Added to the UKI's kernel command line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cmdline: String,
    /// Disk the installer writes to, e.g. `/dev/sda`; `auto` lets the installer choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_disk: Option<String>,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The SHA-256 PCR 11 a machine running this profile's UKI must report (64 hex digits):
    /// computed from the UKI or learned from a first machine (see [`crate::attestation`]).
    /// A machine that reports another value while installing is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_pcr11: Option<String>,
    /// The machines enforce Secure Boot: the UKI must carry a signature the server's configured
    /// `db` certificates trust (checked when the profile is saved and before a UKI is served).
    #[serde(default, skip_serializing_if = "is_false")]
    pub secure_boot: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Profile {
    /// The profile as stored: the UKI digest normalized to `sha256:<64 lowercase hex>`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name or digest, a command line with control characters, an
    /// install disk that is neither a `/dev/` path nor `auto`, or a template over 256 KiB.
    pub fn validate(mut self) -> Result<Self, Error> {
        validate_name(&self.name)?;
        if let Some(d) = self.uki.take() {
            self.uki = Some(normalize_digest(&d)?);
        }
        if self.cmdline.chars().any(char::is_control) {
            return Err(Error::invalid(
                "cmdline",
                self.cmdline,
                "contains control characters",
            ));
        }
        if let Some(d) = &self.install_disk {
            if d != "auto" && !d.starts_with("/dev/") {
                return Err(Error::invalid(
                    "install_disk",
                    d,
                    "must be a /dev/ path or 'auto'",
                ));
            }
        }
        if let Some(p) = self.expected_pcr11.take() {
            self.expected_pcr11 = Some(crate::attestation::normalize_pcr("expected_pcr11", &p)?);
        }
        if self.cloud_config.len() > 256 * 1024 {
            return Err(Error::invalid(
                "cloud_config",
                "(template)",
                "larger than 256 KiB",
            ));
        }
        Ok(self)
    }
}

/// Profile names are used in URLs and file names: keep them boring.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "profile name",
            name,
            "must be 1-63 characters of letters, digits, '-', '_', '.'",
        ))
    }
}

/// `sha256:<hex>` from either that form or bare hex.
pub fn normalize_digest(d: &str) -> Result<String, Error> {
    let hex = d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(format!("sha256:{hex}"))
    } else {
        Err(Error::invalid(
            "uki",
            d,
            "must be a sha256 digest: 64 hex digits, optionally prefixed 'sha256:'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        let p = Profile {
            name: "hadron-edge".into(),
            uki: Some("AB".repeat(32)),
            install_disk: Some("/dev/vda".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(p.uki.unwrap(), format!("sha256:{}", "ab".repeat(32)));
        for (p, want) in [
            (
                Profile {
                    name: "a b".into(),
                    ..Default::default()
                },
                "invalid profile name",
            ),
            (
                Profile {
                    name: "x".into(),
                    uki: Some("sha256:12".into()),
                    ..Default::default()
                },
                "invalid uki",
            ),
            (
                Profile {
                    name: "x".into(),
                    install_disk: Some("sda".into()),
                    ..Default::default()
                },
                "invalid install_disk",
            ),
        ] {
            assert!(p.validate().unwrap_err().to_string().starts_with(want));
        }
    }
}
