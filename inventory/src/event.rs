//! The append-only history: every observation and decision about a machine, numbered by one
//! global sequence so that followers (`events --follow`, SSE) resume exactly where they left off.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::lifecycle::State;
use crate::{Mac, Timestamp};

/// A stored event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Global, gap-free, strictly increasing sequence number (starts at 1).
    pub seq: u64,
    /// When it was recorded (the store's clock reading given by the caller).
    pub at: Timestamp,
    /// The machine it concerns; `None` for server-wide events (profiles, imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// What happened; flattened into the JSON object with its `type` tag.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The machine record was created (`by`: operator, import, discover, auto).
    Created {
        /// Who created it.
        by: String,
    },
    /// The operator changed the machine's spec.
    Updated,
    /// The machine record was removed.
    Deleted,
    /// A lifecycle step.
    State {
        /// The state before.
        from: State,
        /// The state after.
        to: State,
        /// Why, when the step has a cause worth telling (a deadline, a failure report).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator action (`reprovision`, `approve`, …).
    Operator {
        /// The action's name.
        action: String,
    },
    /// The machine was observed on the network (`via`: dhcp, tftp, http, …).
    Seen {
        /// The protocol it was seen on.
        via: String,
        /// What was seen (message type, address, file, …).
        detail: String,
    },
    /// A file transfer to the machine ended (`protocol`: tftp, http, https).
    Transfer {
        /// `tftp`, `http` or `https` (the UEFI HTTPS boot listener).
        protocol: String,
        /// The file name as requested.
        file: String,
        /// Bytes sent.
        bytes: u64,
        /// Duration (milliseconds).
        millis: u64,
        /// Blocks or packets sent again (TFTP; 0 for HTTP).
        retransmits: u64,
        /// How it ended (`complete`, `aborted`, `timeout`, …).
        outcome: String,
    },
    /// A profile was added, replaced or removed.
    Profile {
        /// The profile's name.
        name: String,
        /// `added`, `replaced` or `removed`.
        action: String,
    },
    /// The installer reported progress (`phase`: e.g. fetch-config, partition, write-image).
    Progress {
        /// The installer's phase name.
        phase: String,
        /// How far the phase is (0–100), when the installer says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percent: Option<u8>,
        /// The installer's message, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The machine registered (Kairos phone-home shape).
    Registered {
        /// The OS's `/etc/machine-id`.
        machine_id: String,
        /// Kairos' boot state (`active_boot`, `recovery_boot`, …).
        boot_state: String,
        /// The agent's version, when it sent one.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        agent_version: String,
    },
    /// A boot asset entered or left the catalogue that servers sharing one store share
    /// (etcd), so the others fetch it from a peer before machines ask for it.
    Asset {
        /// `sha256:<64 hex>`.
        digest: String,
        /// The file name it was imported under.
        name: String,
        /// `imported` or `removed`.
        action: String,
    },
    /// The machine's running system reported how it booted ([`crate::attestation`]).
    Attested {
        /// Whether UEFI Secure Boot was on, when it said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secure_boot: Option<bool>,
        /// The reported PCR 11 (64 hex), when it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pcr11: Option<String>,
        /// `match`, `mismatch` or `unchecked` against the profile's `expected_pcr11`.
        verdict: String,
    },
    /// Free text (import summaries, installer log lines that matter).
    Note {
        /// The text.
        message: String,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Created { by } => write!(f, "created by {by}"),
            EventKind::Updated => f.write_str("updated by operator"),
            EventKind::Deleted => f.write_str("deleted"),
            EventKind::State { from, to, reason } => {
                write!(f, "state {from} → {to}")?;
                if let Some(r) = reason {
                    write!(f, ": {r}")?;
                }
                Ok(())
            }
            EventKind::Operator { action } => write!(f, "operator {action}"),
            EventKind::Seen { via, detail } => write!(f, "seen on {via}: {detail}"),
            EventKind::Transfer {
                protocol,
                file,
                bytes,
                millis,
                retransmits,
                outcome,
            } => write!(
                f,
                "{protocol} {file}: {bytes} bytes in {:.2}s, {retransmits} retransmits, {outcome}",
                *millis as f64 / 1000.0
            ),
            EventKind::Profile { name, action } => write!(f, "profile {name} {action}"),
            EventKind::Progress {
                phase,
                percent,
                message,
            } => {
                write!(f, "install {phase}")?;
                if let Some(p) = percent {
                    write!(f, " {p}%")?;
                }
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            EventKind::Registered {
                machine_id,
                boot_state,
                agent_version,
            } => write!(
                f,
                "registered machine-id {machine_id} ({boot_state}{}{agent_version})",
                if agent_version.is_empty() {
                    ""
                } else {
                    ", agent "
                }
            ),
            EventKind::Asset {
                digest,
                name,
                action,
            } => write!(f, "asset {name} ({digest}) {action}"),
            EventKind::Attested {
                secure_boot,
                pcr11,
                verdict,
            } => {
                let sb = match secure_boot {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "not reported",
                };
                write!(f, "attested: Secure Boot {sb}")?;
                if let Some(p) = pcr11 {
                    write!(f, ", PCR 11 {p} ({verdict})")?;
                }
                Ok(())
            }
            EventKind::Note { message } => f.write_str(message),
        }
    }
}

/// An event before the store numbers and stamps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// The machine it concerns; `None` for server-wide events.
    pub mac: Option<Mac>,
    /// What happened.
    pub kind: EventKind,
}

impl NewEvent {
    /// An event about machine `mac`.
    pub fn machine(mac: Mac, kind: EventKind) -> Self {
        NewEvent {
            mac: Some(mac),
            kind,
        }
    }

    /// A server-wide event (no machine).
    pub fn global(kind: EventKind) -> Self {
        NewEvent { mac: None, kind }
    }
}

/// Which events to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events with `seq > after`.
    pub after: u64,
    /// Only events about this machine.
    pub mac: Option<Mac>,
    /// At most this many, oldest first; `None`: all.
    pub limit: Option<usize>,
}
