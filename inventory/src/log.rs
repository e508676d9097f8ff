//! Per-machine log lines: remote syslog from the installer and the installed OS, and lines the
//! installer posts over HTTP. Kept per machine, bounded ([`MAX_LINES_PER_MACHINE`]), numbered per
//! machine so `machines logs --follow` resumes where it stopped.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Older lines of a machine are dropped beyond this many.
pub const MAX_LINES_PER_MACHINE: u64 = 5000;
/// Longer lines are cut (a syslog datagram is at most 64 KiB; nobody reads more than this).
pub const MAX_LINE_BYTES: usize = 2048;

/// A stored line.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Per-machine sequence number, from 1.
    pub seq: u64,
    /// When the server stored it.
    pub at: Timestamp,
    /// The line itself; flattened into the JSON object.
    #[serde(flatten)]
    pub line: NewLogLine,
}

/// A line before the store numbers it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLogLine {
    /// `syslog` or `installer`.
    pub source: String,
    /// Syslog severity 0 (emergency) … 7 (debug), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    /// The program that logged it (syslog APP-NAME / tag), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The message, control characters replaced, at most [`MAX_LINE_BYTES`] bytes.
    pub text: String,
}

impl NewLogLine {
    /// A line with control characters replaced and its length bounded.
    pub fn new(source: &str, severity: Option<u8>, app: Option<String>, text: &str) -> Self {
        let mut text: String = text
            .trim_end()
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect();
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        NewLogLine {
            source: source.into(),
            severity,
            app,
            text,
        }
    }
}
