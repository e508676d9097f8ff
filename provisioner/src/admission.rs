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

use std::sync::{Mutex, MutexGuard};

use inventory::Timestamp;
use inventory::{Event, Machine, NewEvent, Store};

use crate::boot_decision::UnknownPolicy;

pub use netboot_proto::admission::{
    unclaimed, Admitted, Gate, Limits, Newcomer, Refusal, TokenBucket, Verdict, RECOUNT_MS,
    WARN_EVERY_MS,
};

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

    /// The gate, for a caller that decides itself (the DHCP core takes it as an input).
    pub fn lock(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `who` as the policy says (`discovered` or `registered`) if the gate lets it in;
    /// returns the new record and its events, or `None` when it is refused (or the policy is
    /// `ignore`). Call inside a store write, after finding no machine with this MAC. A UUID
    /// (option 97) another machine already holds is dropped, with a note saying so: a stranger
    /// never takes a registered machine's UUID. (HTTP boot's path; DHCP's core decides the
    /// same with [`netboot_proto::admission::admit`] and the shell calls [`Admission::account`]
    /// and [`write`].)
    pub fn admit(
        &self,
        store: &dyn Store,
        who: Newcomer,
        policy: UnknownPolicy,
        now: Timestamp,
        metrics: &AdmissionMetrics,
    ) -> inventory::Result<Option<(Machine, Vec<Event>)>> {
        if policy == UnknownPolicy::Ignore {
            return Ok(None);
        }
        let holder = match &who.uuid {
            Some(u) => store.machine_by_uuid(u)?.map(|m| m.mac),
            None => None,
        };
        // Counted outside the gate's lock: the DHCP path takes it for every stranger.
        if self.lock().needs_count(now) {
            let n = store
                .machines()?
                .iter()
                .filter(|m| unclaimed(m, policy))
                .count();
            self.lock().counted(n, now);
        }
        let decided = {
            let mut gate = self.lock();
            netboot_proto::admission::admit(&mut gate, &who, policy, &|_| holder, now)
        };
        match account(decided, metrics) {
            Some(admitted) => write(store, admitted, now).map(Some),
            None => Ok(None),
        }
    }
}

/// Counts a verdict (`provisioner_discovery_*`) and logs its warning; the record to write when
/// admitted.
pub fn account(
    decided: netboot_proto::admission::Outcome,
    metrics: &AdmissionMetrics,
) -> Option<Admitted> {
    match decided {
        Ok(admitted) => {
            if admitted.is_some() {
                metrics.admitted.inc();
            }
            admitted
        }
        Err((why, warning)) => {
            match why {
                Refusal::Cap => metrics.refused_cap.inc(),
                Refusal::Rate => metrics.refused_rate.inc(),
            }
            if let Some(w) = warning {
                tracing::warn!(reason = why.label(),
                    "{w} (this warning repeats at most once a minute; provisioner_discovery_refused_total counts every refusal)");
            }
            None
        }
    }
}

/// Writes an admitted stranger's record (and its note) to the store.
pub fn write(
    store: &dyn Store,
    admitted: Admitted,
    now: Timestamp,
) -> inventory::Result<(Machine, Vec<Event>)> {
    let Admitted { machine, by, note } = admitted;
    let mut events = store.create_machines(vec![machine.clone()], by, now)?;
    if let Some(note) = note {
        events.extend(store.append_events(vec![NewEvent::machine(machine.mac, note)], now)?);
    }
    Ok((machine, events))
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
