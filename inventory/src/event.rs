//! The append-only history: every observation and decision about a machine, numbered by one
//! global sequence so that followers (`events --follow`, SSE) resume exactly where they left off.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::lifecycle::State;
use crate::{Mac, Timestamp};

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Global, gap-free, strictly increasing sequence number (starts at 1).
    pub seq: u64,
    pub at: Timestamp,
    /// The machine it concerns; `None` for server-wide events (profiles, imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The machine record was created (`by`: operator, import, discover, auto).
    Created { by: String },
    /// The operator changed the machine's spec.
    Updated,
    /// The machine record was removed.
    Deleted,
    /// A lifecycle step.
    State {
        from: State,
        to: State,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator action (`reprovision`, `approve`, …).
    Operator { action: String },
    /// The machine was observed on the network (`via`: dhcp, tftp, http, …).
    Seen { via: String, detail: String },
    /// A file transfer to the machine ended (`protocol`: tftp, http).
    Transfer {
        protocol: String,
        file: String,
        bytes: u64,
        millis: u64,
        retransmits: u64,
        outcome: String,
    },
    /// A profile was added, replaced or removed.
    Profile { name: String, action: String },
    /// The installer reported progress (`phase`: e.g. fetch-config, partition, write-image).
    Progress {
        phase: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percent: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The machine registered (Kairos phone-home shape).
    Registered {
        machine_id: String,
        boot_state: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        agent_version: String,
    },
    /// Free text (import summaries, installer log lines that matter).
    Note { message: String },
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
            EventKind::Note { message } => f.write_str(message),
        }
    }
}

/// An event before the store numbers and stamps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub mac: Option<Mac>,
    pub kind: EventKind,
}

impl NewEvent {
    pub fn machine(mac: Mac, kind: EventKind) -> Self {
        NewEvent {
            mac: Some(mac),
            kind,
        }
    }

    pub fn global(kind: EventKind) -> Self {
        NewEvent { mac: None, kind }
    }
}

/// Which events to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events with `seq > after`.
    pub after: u64,
    pub mac: Option<Mac>,
    pub limit: Option<usize>,
}
