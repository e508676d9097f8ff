//! Admission of machines the inventory does not know, under `discover` and `auto`: the one rule
//! DHCP and HTTP boot both apply before a stranger becomes a record, so anyone who can send
//! packets on the provisioning network cannot grow the inventory (or its event history) without
//! bound (issue 18, item 8).
//!
//! The rule: at most [`Limits::max_waiting`] *unclaimed* records at once (see [`unclaimed`]), and
//! new records at most [`Limits::per_minute`] a minute (a token bucket as deep as one minute's
//! worth, so a rack that powers on at once gets in at once). A refused machine is simply not
//! recorded: it is treated as unknown (DHCP still holds it, its iPXE script polls, and a later
//! attempt is admitted once there is room). Refusals are counted
//! (`provisioner_discovery_refused_total{reason}`) and logged at most once a minute.
//!
//! [`Gate`] is the sans-IO decision (time as input; in the runtime-free `netboot-proto` crate);
//! [`Admission`] is the shell that counts records in the store and creates them, called inside a
//! store write by both paths.

use std::sync::Mutex;

use inventory::Timestamp;
use inventory::{Event, EventKind, Lifecycle, Mac, Machine, MachineSpec, NewEvent, State, Store};

use crate::boot_decision::UnknownPolicy;

pub use netboot_proto::admission::{
    unclaimed, Gate, Limits, Refusal, TokenBucket, Verdict, RECOUNT_MS, WARN_EVERY_MS,
};

/// What a stranger told about itself (DHCP option 97 and 93; HTTP boot knows only the MAC).
#[derive(Clone, Debug)]
pub struct Newcomer {
    pub mac: Mac,
    pub uuid: Option<String>,
    pub arch: Option<u16>,
    /// `dhcp` or `http`, for the log.
    pub via: &'static str,
}

pub use crate::metrics::AdmissionMetrics;

/// The gate behind a lock, shared by the DHCP server and HTTP boot.
#[derive(Debug)]
pub struct Admission {
    gate: Mutex<Gate>,
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            gate: Mutex::new(Gate::new(limits)),
        }
    }

    /// Records `who` as the policy says (`discovered` or `registered`) if the gate lets it in;
    /// returns the new record and its events, or `None` when it is refused (or the policy is
    /// `ignore`). Call inside a store write, after finding no machine with this MAC. A UUID
    /// (option 97) another machine already holds is dropped, with a note saying so: a stranger
    /// never takes a registered machine's UUID.
    pub fn admit(
        &self,
        store: &dyn Store,
        who: Newcomer,
        policy: UnknownPolicy,
        now: Timestamp,
        metrics: &AdmissionMetrics,
    ) -> inventory::Result<Option<(Machine, Vec<Event>)>> {
        let by = match policy {
            UnknownPolicy::Ignore => return Ok(None),
            UnknownPolicy::Discover => "discover",
            UnknownPolicy::Auto => "auto",
        };
        let verdict = {
            let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            if gate.needs_count(now) {
                let n = store.machines()?.iter().filter(|m| unclaimed(m)).count();
                gate.counted(n, now);
            }
            let v = gate.check(now);
            if let Verdict::Refuse { why, warn: true } = v {
                let Limits {
                    max_waiting,
                    per_minute,
                } = gate.limits();
                tracing::warn!(
                    mac = %who.mac,
                    via = who.via,
                    reason = why.label(),
                    waiting = gate.waiting(),
                    max_discovered = max_waiting,
                    per_minute,
                    "unknown machines are not being recorded (dhcp.max_discovered / dhcp.discover_rate); \
                     approve or delete discovered machines to make room (this warning repeats at most once a minute; \
                     provisioner_discovery_refused_total counts every refusal)"
                );
            }
            v
        };
        match verdict {
            Verdict::Admit => metrics.admitted.inc(),
            Verdict::Refuse { why, .. } => {
                match why {
                    Refusal::Cap => metrics.refused_cap.inc(),
                    Refusal::Rate => metrics.refused_rate.inc(),
                }
                return Ok(None);
            }
        }
        let mut note = None;
        let uuid = match who.uuid {
            Some(u) => match store.machine_by_uuid(&u)? {
                Some(holder) if holder.mac != who.mac => {
                    note = Some(format!(
                        "SMBIOS UUID {u} (DHCP option 97) is held by {}; not recorded here",
                        holder.mac
                    ));
                    None
                }
                _ => Some(u),
            },
            None => None,
        };
        let spec = MachineSpec {
            uuid,
            ..Default::default()
        };
        let mut m = Machine::registered(who.mac, spec, now);
        m.arch = who.arch;
        if policy == UnknownPolicy::Discover {
            m.lifecycle = Lifecycle::new(State::Discovered, now);
        }
        let mut events = store.create_machines(vec![m.clone()], by, now)?;
        if let Some(message) = note {
            let note = NewEvent::machine(who.mac, EventKind::Note { message });
            events.extend(store.append_events(vec![note], now)?);
        }
        Ok(Some((m, events)))
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
