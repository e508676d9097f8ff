//! What a machine's running system reported about how it booted (issue 14, measured boot):
//! whether UEFI Secure Boot was on and the TPM's SHA-256 PCR values, and how PCR 11 compared
//! with the value pinned on the machine's profile.
//!
//! PCR 7 holds the Secure Boot policy (the state of `SecureBoot`, PK, KEK, db, dbx and the
//! db entry that verified the boot loader, TCG PC Client Platform Firmware Profile §3.3.4.8);
//! PCR 11 is where systemd-stub measures the UKI's sections (`.linux`, `.osrel`, `.cmdline`,
//! `.initrd`, …) before it starts the kernel, so it identifies the UKI that booted.
//! These values are *claims* by the machine's software, sent with its enrollment token: they
//! prove what booted only as far as that software can be trusted (no TPM quote is checked).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Timestamp};

/// The PCR systemd-stub measures a UKI's sections into.
pub const PCR_KERNEL_IMAGE: u8 = 11;

/// A machine's last attestation report.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// When the server received it.
    pub at: Timestamp,
    /// Whether UEFI Secure Boot was on (the `SecureBoot` variable), when the machine said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
    /// SHA-256 bank PCR values by index (0–23), each 64 lowercase hex digits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub pcrs: BTreeMap<u8, String>,
    /// How PCR 11 compared with the profile's `expected_pcr11` while the machine ran the
    /// netbooted UKI.
    pub pcr11: Pcr11Verdict,
}

/// The outcome of comparing a reported PCR 11 with the profile's pinned value.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Pcr11Verdict {
    /// The reported value equals the pinned one.
    Match,
    /// The reported value differs: the machine booted something else than the pinned UKI.
    Mismatch {
        /// The profile's pinned value.
        expected: String,
    },
    /// Nothing to compare: the profile pins no value, the machine reported no PCR 11, or the
    /// report came from a system other than the netbooted UKI (see `reason`).
    Unchecked {
        /// Why no comparison was made.
        reason: String,
    },
}

impl Pcr11Verdict {
    /// `match`, `mismatch` or `unchecked`, as in events.
    pub fn name(&self) -> &'static str {
        match self {
            Pcr11Verdict::Match => "match",
            Pcr11Verdict::Mismatch { .. } => "mismatch",
            Pcr11Verdict::Unchecked { .. } => "unchecked",
        }
    }
}

/// Compares a reported PCR 11 with a profile's pinned value.
pub fn compare_pcr11(reported: Option<&str>, expected: Option<&str>) -> Pcr11Verdict {
    match (reported, expected) {
        (_, None) => Pcr11Verdict::Unchecked {
            reason: "the profile pins no expected_pcr11".into(),
        },
        (None, Some(_)) => Pcr11Verdict::Unchecked {
            reason: "the machine reported no PCR 11 (no TPM?)".into(),
        },
        (Some(r), Some(e)) if r == e => Pcr11Verdict::Match,
        (Some(_), Some(e)) => Pcr11Verdict::Mismatch {
            expected: e.to_string(),
        },
    }
}

/// A SHA-256 PCR value normalized to 64 lowercase hex digits.
///
/// # Errors
/// [`Error::Invalid`] naming `field` when `value` is not 64 hex digits.
pub fn normalize_pcr(field: &'static str, value: &str) -> Result<String, Error> {
    let v = value.trim().to_ascii_lowercase();
    if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(v)
    } else {
        Err(Error::invalid(
            field,
            value,
            "must be a SHA-256 PCR value: 64 hex digits",
        ))
    }
}

/// PCR values as a machine sends them (`{"7": "<hex>", "11": "<hex>"}`), validated: indexes
/// 0–23 (a PC TPM's PCRs), values normalized by [`normalize_pcr`].
///
/// # Errors
/// [`Error::Invalid`] naming the bad index or value.
pub fn parse_pcrs(raw: &BTreeMap<String, String>) -> Result<BTreeMap<u8, String>, Error> {
    raw.iter()
        .map(|(k, v)| {
            let i: u8 = k
                .parse()
                .ok()
                .filter(|i: &u8| *i < 24 && i.to_string() == *k)
                .ok_or_else(|| {
                    Error::invalid(
                        "pcrs",
                        k,
                        "PCR indexes are 0-23, in decimal without leading zeros",
                    )
                })?;
            let v = normalize_pcr("pcrs", v).map_err(|_| {
                Error::invalid(
                    "pcrs",
                    format!("{i}: {v}"),
                    "PCR values are 64 hex digits (SHA-256 bank)",
                )
            })?;
            Ok((i, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcrs_are_checked_and_normalized() {
        let mut raw = BTreeMap::new();
        raw.insert("11".to_string(), "AB".repeat(32));
        let p = parse_pcrs(&raw).unwrap();
        assert_eq!(p[&11], "ab".repeat(32));
        raw.insert("24".into(), "00".repeat(32));
        assert!(parse_pcrs(&raw).unwrap_err().to_string().contains("0-23"));
        raw.remove("24");
        raw.insert("7".into(), "00".repeat(31));
        assert!(parse_pcrs(&raw)
            .unwrap_err()
            .to_string()
            .contains("7: 0000"));
    }

    #[test]
    fn verdicts() {
        let a = "aa".repeat(32);
        let b = "bb".repeat(32);
        assert_eq!(compare_pcr11(Some(&a), Some(&a)), Pcr11Verdict::Match);
        assert_eq!(
            compare_pcr11(Some(&a), Some(&b)),
            Pcr11Verdict::Mismatch {
                expected: b.clone()
            }
        );
        assert_eq!(compare_pcr11(None, Some(&b)).name(), "unchecked");
        assert_eq!(compare_pcr11(Some(&a), None).name(), "unchecked");
    }
}
