//! The machine lifecycle as a pure state machine.
//!
//! ```text
//! unknown ─discover─▶ discovered ─approve─▶ registered ─boot─▶ booting ─progress─▶ installing
//!    └────────register────────────────────────▲                                     │ install done
//!                                     reprovision ◀── (operator, from any later state)  ▼
//!                  ready ◀─────────── report ready / booted from disk ─────────── installed
//! ```
//! `failed` (with a reason) is reachable from every state past `discovered`, by a report or by a
//! transitional state (`booting`, `installing`) outliving its deadline — the way Ironic fails nodes
//! stuck in a `*-wait` state. A `booting` machine that downloaded its UKI ([`UkiFetch`]) and never
//! started it has a shorter deadline ([`Deadlines::uki_start`]): firmware that refuses an image
//! (Secure Boot: unsigned or untrusted) says nothing to the server. `reprovision` waits for the next netboot and then goes to `booting`.
//! Every step not in [`next`] is an [`Error::IllegalTransition`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Timestamp};

/// Where a machine is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not in the inventory (the state a discovery or registration starts from).
    Unknown,
    /// Seen netbooting and recorded, held until an operator approves it.
    Discovered,
    /// Known and approved: installs on its next netboot.
    Registered,
    /// Netbooted the installer; waiting for its first progress report.
    Booting,
    /// The installer reports progress.
    Installing,
    /// The OS is on disk; waiting for it to report in.
    Installed,
    /// The installed OS reported in: done.
    Ready,
    /// Something failed (see [`Lifecycle::reason`]); an operator decides what next.
    Failed,
    /// An operator asked for a fresh install: the next netboot goes to `booting`.
    Reprovision,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 9] = [
        State::Unknown,
        State::Discovered,
        State::Registered,
        State::Booting,
        State::Installing,
        State::Installed,
        State::Ready,
        State::Failed,
        State::Reprovision,
    ];

    /// The lowercase name used in JSON, the CLI and event text.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Discovered => "discovered",
            State::Registered => "registered",
            State::Booting => "booting",
            State::Installing => "installing",
            State::Installed => "installed",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Reprovision => "reprovision",
        }
    }

    /// States that something must move on by itself; stuck there past a deadline means failure.
    pub fn is_transitional(self) -> bool {
        matches!(self, State::Booting | State::Installing)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a machine: the input of the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    /// An unregistered machine was seen netbooting and recorded (policy `discover`).
    Discover,
    /// An operator (or policy `auto`) registered the machine.
    Register,
    /// An operator approved a discovered machine.
    Approve,
    /// The machine netbooted its installer (script, UKI or loader served).
    Boot,
    /// The installer reported progress.
    Progress,
    /// The installer reported the OS written to disk.
    InstallDone,
    /// The installed OS reported in (registration, boot from disk).
    Ready,
    /// Something reported failure.
    Fail {
        /// What failed, as reported.
        reason: String,
    },
    /// An operator asked for a fresh install on the next netboot.
    Reprovision,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transition::Discover => f.write_str("discover"),
            Transition::Register => f.write_str("register"),
            Transition::Approve => f.write_str("approve"),
            Transition::Boot => f.write_str("start booting the installer"),
            Transition::Progress => f.write_str("report install progress"),
            Transition::InstallDone => f.write_str("report install done"),
            Transition::Ready => f.write_str("report ready"),
            Transition::Fail { reason } => write!(f, "fail ({reason})"),
            Transition::Reprovision => f.write_str("reprovision"),
        }
    }
}

/// The state a transition leads to from `from`, or `None` where it is not allowed.
pub fn next(from: State, t: &Transition) -> Option<State> {
    use State as S;
    let to = match (from, t) {
        (S::Unknown, Transition::Discover) => S::Discovered,
        (S::Unknown, Transition::Register) => S::Registered,
        (S::Discovered, Transition::Approve) => S::Registered,
        (S::Registered | S::Reprovision | S::Booting, Transition::Boot) => S::Booting,
        (S::Booting | S::Installing, Transition::Progress) => S::Installing,
        (S::Booting | S::Installing, Transition::InstallDone) => S::Installed,
        (S::Installed | S::Ready, Transition::Ready) => S::Ready,
        (
            S::Registered | S::Booting | S::Installing | S::Installed | S::Ready | S::Reprovision,
            Transition::Fail { .. },
        ) => S::Failed,
        (
            S::Registered
            | S::Booting
            | S::Installing
            | S::Installed
            | S::Ready
            | S::Failed
            | S::Reprovision,
            Transition::Reprovision,
        ) => S::Reprovision,
        _ => return None,
    };
    Some(to)
}

/// How long a machine may stay in each transitional state before it is failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Longest time in `booting` (default 30 minutes).
    pub booting: Duration,
    /// Longest time in `installing` (default 2 hours).
    pub installing: Duration,
    /// Longest time from a machine's first complete UKI download (while `booting`) to a sign
    /// that the UKI runs (default 2 minutes): after it the firmware most likely refused it.
    pub uki_start: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            booting: Duration::from_secs(30 * 60),
            installing: Duration::from_secs(2 * 60 * 60),
            uki_start: Duration::from_secs(2 * 60),
        }
    }
}

/// The UKI downloads of a `booting` machine that has not yet shown the UKI running (no progress
/// report, no config fetch): what the [`Deadlines::uki_start`] check reads. Kept in the store
/// with the machine, so it survives a restart and every server sharing the store sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UkiFetch {
    /// The UKI downloaded (`sha256:<64 hex>`).
    pub digest: String,
    /// The first complete download (the deadline counts from here: firmware retries re-download).
    pub first: Timestamp,
    /// The latest complete download.
    pub last: Timestamp,
    /// Complete downloads so far.
    pub count: u32,
}

/// A machine's position in the lifecycle, with when it got there and why it failed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// The current state.
    pub state: State,
    /// When the current state was entered; drives deadline expiry.
    pub since: Timestamp,
    /// Set while `state` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// While `booting`: UKI downloads not yet followed by a sign of the UKI running. Cleared
    /// on every state change and by [`Lifecycle::uki_started`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uki_fetch: Option<UkiFetch>,
}

impl Lifecycle {
    /// In `state` since `now`, with no failure reason.
    pub fn new(state: State, now: Timestamp) -> Self {
        Lifecycle {
            state,
            since: now,
            reason: None,
            uki_fetch: None,
        }
    }

    /// Counts a complete download of UKI `digest` at `now`; only while `booting` (returns
    /// whether it was counted). Another UKI than the one counted starts the count again.
    pub fn uki_downloaded(&mut self, digest: &str, now: Timestamp) -> bool {
        if self.state != State::Booting {
            return false;
        }
        match &mut self.uki_fetch {
            Some(f) if f.digest == digest => {
                f.last = now;
                f.count = f.count.saturating_add(1);
            }
            _ => {
                self.uki_fetch = Some(UkiFetch {
                    digest: digest.to_string(),
                    first: now,
                    last: now,
                    count: 1,
                })
            }
        }
        true
    }

    /// The UKI showed it runs (its installer asked for its config): the UKI-start deadline no
    /// longer applies. Returns whether anything changed.
    pub fn uki_started(&mut self) -> bool {
        self.uki_fetch.take().is_some()
    }

    /// Applies `t` at `now`; returns the previous state. The state is unchanged on error.
    pub fn apply(&mut self, t: &Transition, now: Timestamp) -> Result<State, Error> {
        let to = next(self.state, t).ok_or_else(|| Error::IllegalTransition {
            from: self.state,
            transition: t.clone(),
        })?;
        let from = self.state;
        if to != from {
            self.since = now;
            self.uki_fetch = None;
        }
        self.state = to;
        self.reason = match t {
            Transition::Fail { reason } => Some(reason.clone()),
            _ => None,
        };
        Ok(from)
    }

    /// The failure a stuck machine has earned at `now`, if any.
    pub fn expiry(&self, now: Timestamp, deadlines: &Deadlines) -> Option<Transition> {
        if let (State::Booting, Some(f)) = (self.state, &self.uki_fetch) {
            if now.since(f.first) >= deadlines.uki_start {
                let times = match f.count {
                    1 => String::new(),
                    n => format!(" ({n} times, last at {})", f.last),
                };
                return Some(Transition::Fail {
                    reason: format!(
                        "downloaded its UKI {} at {}{times} and never started it: the firmware \
                         likely refused it (Secure Boot: unsigned or untrusted?); no progress or \
                         config request within {}s",
                        f.digest,
                        f.first,
                        deadlines.uki_start.as_secs()
                    ),
                });
            }
        }
        let limit = match self.state {
            State::Booting => deadlines.booting,
            State::Installing => deadlines.installing,
            _ => return None,
        };
        let stuck = now.since(self.since);
        (stuck >= limit).then(|| Transition::Fail {
            reason: format!(
                "stuck in {} for {}s (deadline {}s)",
                self.state,
                stuck.as_secs(),
                limit.as_secs()
            ),
        })
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
