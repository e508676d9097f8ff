//! Machine records and the operator-editable part of them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::event::EventKind;
use crate::lifecycle::{Lifecycle, State, Transition};
use crate::{Error, Mac, Timestamp};

/// What an operator says about a machine: everything except what the server observes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    /// SMBIOS system UUID, lower-case hyphenated; lets one UKI's `config_url` find the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Chassis serial number (at most 128 bytes, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Host name (RFC 1123 label rules), stored in lower case; rendered into its config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Free-form `key=value` metadata (rack, role, …), usable in config templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Name of the profile that says what this machine boots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Site or location name, free text (at most 128 bytes), usable in config templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Fixed DHCP address for this machine (full DHCP mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Ipv4))]
    pub ip: Option<Ipv4Addr>,
    /// Per-machine boot exceptions.
    #[serde(default, skip_serializing_if = "BootOverrides::is_empty")]
    pub boot: BootOverrides,
}

/// Per-machine exceptions to what the profile and the client's architecture would pick.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootOverrides {
    /// Loader file to hand out instead of the one chosen by architecture (firmware quirks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<String>,
    /// Appended to the profile's kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_cmdline: Option<String>,
}

impl BootOverrides {
    /// Whether no override is set (then it is left out of JSON).
    pub fn is_empty(&self) -> bool {
        self.loader.is_none() && self.extra_cmdline.is_none()
    }
}

/// A machine the inventory knows about.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The key: the MAC of the NIC it netboots from.
    pub mac: Mac,
    /// What the operator says about it; flattened into the JSON object.
    #[serde(flatten)]
    pub spec: MachineSpec,
    /// Where it is in its life.
    pub lifecycle: Lifecycle,
    /// Client architecture (DHCP option 93) last seen; explains which loader it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<u16>,
    /// When the server first saw it on the network (DHCP, TFTP, HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
    /// When the server last saw it on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// The address its last netboot request came from, as the server's evidence attributed it
    /// (a lease or an observed binding). For the operator's eyes only: never an identity proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Ipv4))]
    pub boot_ip: Option<Ipv4Addr>,
    /// Generation of the machine's enrollment token: part of what the token is derived from, so
    /// raising it revokes every token issued before (a reprovision or `machines token --rotate`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub token_epoch: u32,
    /// Where it is on the network, as its DHCP relay agent reported it (option 82).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<NetworkLocation>,
    /// What the installed OS said when it registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
    /// What its running system last reported about its boot (Secure Boot, PCRs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<crate::Attestation>,
    /// The DHCPv6 client DUID (lowercase hex) of its first stateful DHCPv6 lease, recorded
    /// once: which DHCPv6 identity is this machine's (its firmware and OS may use others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duid: Option<String>,
    /// When the record was created; part of what its enrollment token is derived from, so a
    /// deleted and re-added machine gets a new token.
    pub created: Timestamp,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// A relayed machine's place in the network: the relay (giaddr) and what it said in option 82.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLocation {
    /// The relay agent's address (giaddr).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub relay: Ipv4Addr,
    /// Option 82 sub-option 1, usually the switch port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_id: Option<String>,
    /// Option 82 sub-option 2, usually the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
}

/// A registration (Kairos phone-home): the OS's machine-id and what it reported.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The OS's `/etc/machine-id`; its `apiKey` is derived from it.
    pub machine_id: String,
    /// The host name the OS reported.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// The agent's version, when it sent one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_version: String,
    /// The addresses the OS reported, as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Kairos' boot state (`active_boot`, `recovery_boot`, …).
    pub boot_state: String,
    /// When it registered.
    pub at: Timestamp,
}

impl Machine {
    /// A machine an operator registers.
    pub fn registered(mac: Mac, spec: MachineSpec, now: Timestamp) -> Self {
        Machine {
            mac,
            spec,
            lifecycle: Lifecycle::new(State::Registered, now),
            arch: None,
            first_seen: None,
            last_seen: None,
            boot_ip: None,
            attestation: None,
            token_epoch: 0,
            location: None,
            registration: None,
            duid: None,
            created: now,
        }
    }

    /// Its lifecycle state.
    pub fn state(&self) -> State {
        self.lifecycle.state
    }

    /// Moves the machine through its lifecycle and describes the step as an event.
    pub fn transition(&mut self, t: &Transition, now: Timestamp) -> Result<EventKind, Error> {
        let from = self.lifecycle.apply(t, now)?;
        Ok(EventKind::State {
            from,
            to: self.lifecycle.state,
            reason: self.lifecycle.reason.clone(),
        })
    }
}

/// Most labels one machine may carry.
pub const MAX_LABELS: usize = 64;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 256;
/// Largest operator part of a machine record, as stored (JSON bytes). With the per-field limits
/// a spec stays near 24 KiB; this bounds what any later field can add.
pub const MAX_SPEC_BYTES: usize = 32 * 1024;

impl MachineSpec {
    /// Checks and normalizes every field; errors name the field and the value. Anyone who can
    /// write a machine can make us store it, so every field is bounded: at most [`MAX_LABELS`]
    /// labels, keys of [`MAX_LABEL_KEY`] and values of [`MAX_LABEL_VALUE`] bytes, and the whole
    /// spec at most [`MAX_SPEC_BYTES`].
    pub fn validate(mut self) -> Result<Self, Error> {
        if let Some(u) = self.uuid.take() {
            self.uuid = Some(normalize_uuid(&u)?);
        }
        if let Some(h) = &self.hostname {
            validate_hostname(h)?;
        }
        self.hostname = self.hostname.map(|h| h.to_ascii_lowercase());
        if self.labels.len() > MAX_LABELS {
            return Err(Error::invalid(
                "labels",
                format!("{} labels", self.labels.len()),
                "at most 64 labels per machine",
            ));
        }
        for (k, v) in &self.labels {
            validate_label(k, v)?;
        }
        if let Some(p) = &self.profile {
            crate::profile::validate_name(p)?;
        }
        for (field, value) in [("serial", &self.serial), ("site", &self.site)] {
            if let Some(v) = value {
                validate_text(field, v, 128)?;
            }
        }
        if let Some(l) = &self.boot.loader {
            if l.is_empty() || l.len() > 255 || l.contains("..") || l.chars().any(char::is_control)
            {
                return Err(Error::invalid(
                    "boot.loader",
                    l,
                    "must be a relative file name without '..' or control characters",
                ));
            }
        }
        if let Some(c) = &self.boot.extra_cmdline {
            validate_text("boot.extra_cmdline", c, 1024)?;
        }
        let size = serde_json::to_vec(&self).map_or(usize::MAX, |v| v.len());
        if size > MAX_SPEC_BYTES {
            return Err(Error::invalid(
                "machine record",
                format!("{size} bytes"),
                "the operator fields may take at most 32 KiB",
            ));
        }
        Ok(self)
    }
}

fn validate_text(field: &'static str, v: &str, max: usize) -> Result<(), Error> {
    if v.len() > max {
        return Err(Error::TooLong {
            field,
            len: v.len(),
            max,
        });
    }
    if v.chars().any(char::is_control) {
        return Err(Error::invalid(field, v, "contains control characters"));
    }
    Ok(())
}

/// RFC 1123 host name (one or more labels of letters, digits and hyphens).
pub fn validate_hostname(h: &str) -> Result<(), Error> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "hostname",
            h,
            "must be letters, digits and '-' in dot-separated labels of 1-63 characters",
        ))
    }
}

fn validate_label(k: &str, v: &str) -> Result<(), Error> {
    let key_ok = !k.is_empty()
        && k.len() <= MAX_LABEL_KEY
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if !key_ok {
        return Err(Error::invalid(
            "label key",
            k,
            "must be 1-63 characters of letters, digits, '-', '_', '.', '/'",
        ));
    }
    validate_text("label value", v, MAX_LABEL_VALUE)
}

/// Lower-case hyphenated form of an SMBIOS UUID given with or without hyphens or braces.
pub fn normalize_uuid(u: &str) -> Result<String, Error> {
    let hex: String = u
        .trim()
        .trim_matches(|c| c == '{' || c == '}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            "uuid",
            u,
            "must be 32 hex digits (hyphens optional)",
        ));
    }
    let h = hex.to_ascii_lowercase();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_validation_names_field_and_value() {
        let bad = [
            (
                MachineSpec {
                    hostname: Some("web_01".into()),
                    ..Default::default()
                },
                "invalid hostname \"web_01\"",
            ),
            (
                MachineSpec {
                    uuid: Some("1234".into()),
                    ..Default::default()
                },
                "invalid uuid \"1234\"",
            ),
            (
                MachineSpec {
                    labels: [("ra ck".into(), "1".into())].into(),
                    ..Default::default()
                },
                "invalid label key \"ra ck\"",
            ),
            (
                MachineSpec {
                    labels: [("rack".into(), "a\nb".into())].into(),
                    ..Default::default()
                },
                "invalid label value",
            ),
            (
                MachineSpec {
                    boot: BootOverrides {
                        loader: Some("../../etc/passwd".into()),
                        extra_cmdline: None,
                    },
                    ..Default::default()
                },
                "invalid boot.loader",
            ),
        ];
        for (spec, want) in bad {
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn labels_and_record_size_are_capped() {
        let labels = |n: usize, v: &str| MachineSpec {
            labels: (0..n).map(|i| (format!("k{i}"), v.to_string())).collect(),
            ..Default::default()
        };
        assert!(labels(MAX_LABELS, "x").validate().is_ok());
        let err = labels(MAX_LABELS + 1, "x")
            .validate()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid labels \"65 labels\": at most 64 labels per machine"
        );
        let err = labels(200_000, "x").validate().unwrap_err().to_string();
        assert!(err.starts_with("invalid labels \"200000 labels\""), "{err}");
        let err = labels(1, &"v".repeat(MAX_LABEL_VALUE + 1))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("label value is 257 bytes long; at most 256"),
            "{err}"
        );
        // The largest spec the field limits allow still fits the record cap.
        let full = MachineSpec {
            labels: (0..MAX_LABELS)
                .map(|i| (format!("{i:0>63}"), "v".repeat(MAX_LABEL_VALUE)))
                .collect(),
            hostname: Some("h".repeat(63)),
            serial: Some("s".repeat(128)),
            site: Some("s".repeat(128)),
            boot: BootOverrides {
                loader: Some("l".repeat(255)),
                extra_cmdline: Some("c".repeat(1024)),
            },
            ..Default::default()
        };
        assert!(full.validate().is_ok());
        // Escaping can make a stored record larger than its raw bytes: the record cap holds.
        let quoted = labels(MAX_LABELS, &"\"".repeat(MAX_LABEL_VALUE));
        let err = quoted.validate().unwrap_err().to_string();
        assert!(err.starts_with("invalid machine record"), "{err}");
    }

    #[test]
    fn spec_normalizes() {
        let s = MachineSpec {
            uuid: Some("{4C4C4544-0042-3510-8052-B4C04F4B4E31}".into()),
            hostname: Some("Node-1.Rack-A".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            s.uuid.as_deref(),
            Some("4c4c4544-0042-3510-8052-b4c04f4b4e31")
        );
        assert_eq!(s.hostname.as_deref(), Some("node-1.rack-a"));
    }
}
