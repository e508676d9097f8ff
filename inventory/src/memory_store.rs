//! [`Store`] in memory: the same semantics as [`crate::RedbStore`] (it passes the same
//! `crate::conformance` suite) without a file, for unit tests of code that needs a store.
//! Nothing survives the value; "stable storage" in the store contract is this process's memory.
//!
//! One mutex over ordered maps. A write that can fail part-way (machines, profiles) works on a
//! copy of the tables and swaps it in only on success: all or nothing, like a transaction.
//! Copying costs O(size) per such write, which is fine at test sizes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::event::{Event, EventKind, EventQuery, NewEvent};
use crate::lease::{claim_outcome, Claim};
use crate::log::{LogLine, NewLogLine, MAX_LINES_PER_MACHINE};
use crate::store::{MachineEdit, Store};
use crate::watch::EventSignal;
use crate::{
    Error, Lease, Mac, Machine, Profile, Result, State, Timestamp, TokenRecord, TokenRole,
};

/// The inventory in memory (see the module documentation).
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Every table, behind one lock: each method is one transaction.
    state: Mutex<Tables>,
    /// Wakes [`Store::wait_for_events_after`] when events are appended.
    committed: EventSignal,
    /// DHCPv6 leases by address (their own lock: no transaction spans both families).
    leases6: Mutex<BTreeMap<std::net::Ipv6Addr, crate::Lease6>>,
}

/// The tables, as the redb backend has them; indexes are kept by [`Tables::write_machine`].
#[derive(Clone, Debug, Default)]
struct Tables {
    machines: BTreeMap<Mac, Machine>,
    /// Reserved address → the machine it is reserved for.
    reservations: BTreeMap<Ipv4Addr, Mac>,
    /// SMBIOS UUID → its one machine.
    uuids: BTreeMap<String, Mac>,
    /// Registration machine-id → the machines that reported it.
    machine_ids: BTreeMap<String, BTreeSet<Mac>>,
    profiles: BTreeMap<String, Profile>,
    /// Event `seq` is its index + 1 (gap-free).
    events: Vec<Event>,
    leases: BTreeMap<Ipv4Addr, Lease>,
    tokens: BTreeMap<String, TokenRecord>,
    logs: BTreeMap<(Mac, u64), LogLine>,
    log_seq: BTreeMap<Mac, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `write` on a copy of the tables; on `Ok` the copy replaces them and the events it
    /// returned are numbered and appended, all under one lock.
    fn transaction<T>(
        &self,
        now: Timestamp,
        write: impl FnOnce(&mut Tables) -> Result<(T, Vec<NewEvent>)>,
    ) -> Result<(T, Vec<Event>)> {
        let mut state = self.lock();
        let mut copy = state.clone();
        let (value, new) = write(&mut copy)?;
        let events = copy.append(new, now);
        *state = copy;
        drop(state);
        if let Some(last) = events.last() {
            self.committed.publish(last.seq);
        }
        Ok((value, events))
    }
}

impl Tables {
    fn append(&mut self, new: Vec<NewEvent>, now: Timestamp) -> Vec<Event> {
        let mut out = Vec::with_capacity(new.len());
        for e in new {
            let ev = Event {
                seq: self.events.len() as u64 + 1,
                at: now,
                mac: e.mac,
                kind: e.kind,
            };
            self.events.push(ev.clone());
            out.push(ev);
        }
        out
    }

    /// Checks the profile, reservation and UUID of `m`, updates the indexes and writes it
    /// (replacing `old`), exactly as the redb backend's `write_machine`.
    fn write_machine(
        &mut self,
        m: &Machine,
        old: Option<&Machine>,
        now: Timestamp,
    ) -> Result<Vec<NewEvent>> {
        if let Some(p) = &m.spec.profile {
            if !self.profiles.contains_key(p) {
                return Err(Error::UnknownProfile { name: p.clone() });
            }
        }
        let old_ip = old.and_then(|o| o.spec.ip);
        if let Some(ip) = old_ip {
            self.reservations.remove(&ip);
        }
        if let Some(ip) = m.spec.ip.filter(|ip| old_ip != Some(*ip)) {
            if let Some(l) = self.leases.get(&ip) {
                if l.mac != m.mac && l.is_active(now) && !l.observed {
                    return Err(Error::IpLeased {
                        ip,
                        holder: l.mac.to_string(),
                        until: l.expires,
                    });
                }
            }
        }
        if let Some(ip) = m.spec.ip {
            if let Some(h) = self.reservations.get(&ip).filter(|h| **h != m.mac) {
                return Err(Error::IpReserved {
                    ip,
                    holder: h.to_string(),
                });
            }
            self.reservations.insert(ip, m.mac);
        }
        let notes = self.index_uuid(m, old.and_then(|o| o.spec.uuid.as_deref()))?;
        let id = |m: &Machine| m.registration.as_ref().map(|r| r.machine_id.clone());
        let (before, after) = (old.and_then(id), id(m));
        if before != after {
            self.unindex_machine_id(before, m.mac);
            if let Some(a) = after {
                self.machine_ids.entry(a).or_default().insert(m.mac);
            }
        }
        self.machines.insert(m.mac, m.clone());
        Ok(notes)
    }

    /// Moves `m`'s UUID entry from `old` to its own. A UUID another machine holds is refused,
    /// except that an operator's machine takes it from a `discovered` record (with a note).
    fn index_uuid(&mut self, m: &Machine, old: Option<&str>) -> Result<Vec<NewEvent>> {
        let new = m.spec.uuid.as_deref();
        let mut notes = Vec::new();
        if old == new {
            return Ok(notes);
        }
        if let Some(u) = new {
            if let Some(h) = self.uuids.get(u).copied().filter(|h| *h != m.mac) {
                let vouched = m.state() != State::Discovered;
                let holder = self.machines.get_mut(&h);
                let discovered = holder
                    .as_ref()
                    .is_some_and(|c| c.state() == State::Discovered);
                let note = crate::store::uuid_handover(u, m.mac, vouched, h, discovered)?;
                if let Some(c) = holder {
                    c.spec.uuid = None;
                }
                notes.push(note);
            }
            self.uuids.insert(u.to_string(), m.mac);
        }
        if let Some(u) = old {
            if self.uuids.get(u) == Some(&m.mac) {
                self.uuids.remove(u);
            }
        }
        Ok(notes)
    }

    fn unindex_machine_id(&mut self, id: Option<String>, mac: Mac) {
        if let Some(id) = id {
            if let Some(set) = self.machine_ids.get_mut(&id) {
                set.remove(&mac);
                if set.is_empty() {
                    self.machine_ids.remove(&id);
                }
            }
        }
    }
}

impl Store for MemoryStore {
    fn machine(&self, mac: Mac) -> Result<Option<Machine>> {
        Ok(self.lock().machines.get(&mac).cloned())
    }

    fn machines(&self) -> Result<Vec<Machine>> {
        Ok(self.lock().machines.values().cloned().collect())
    }

    fn machine_by_uuid(&self, uuid: &str) -> Result<Option<Machine>> {
        let t = self.lock();
        Ok(t.uuids.get(uuid).and_then(|m| t.machines.get(m)).cloned())
    }

    fn machines_by_machine_id(&self, machine_id: &str) -> Result<Vec<Machine>> {
        let t = self.lock();
        let macs = t.machine_ids.get(machine_id).into_iter().flatten();
        Ok(macs.filter_map(|m| t.machines.get(m)).cloned().collect())
    }

    fn create_machines(
        &self,
        machines: Vec<Machine>,
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<Event>> {
        let ((), events) = self.transaction(now, |t| {
            let mut events = Vec::with_capacity(machines.len());
            for m in &machines {
                if t.machines.contains_key(&m.mac) {
                    return Err(Error::MachineExists {
                        mac: m.mac.to_string(),
                    });
                }
                let notes = t.write_machine(m, None, now)?;
                let created = EventKind::Created { by: by.to_string() };
                events.push(NewEvent::machine(m.mac, created));
                events.extend(notes);
            }
            Ok(((), events))
        })?;
        Ok(events)
    }

    fn update_machine(
        &self,
        mac: Mac,
        now: Timestamp,
        edit: MachineEdit<'_>,
    ) -> Result<(Machine, Vec<Event>)> {
        self.transaction(now, |t| {
            let old = t
                .machines
                .get(&mac)
                .cloned()
                .ok_or(Error::MachineNotFound {
                    mac: mac.to_string(),
                })?;
            let mut m = old.clone();
            let kinds = edit(&mut m)?;
            m.mac = mac;
            if m == old && kinds.is_empty() {
                return Ok((m, Vec::new()));
            }
            let notes = t.write_machine(&m, Some(&old), now)?;
            let kinds = crate::store::named_change(kinds, &notes);
            let events = kinds.into_iter().map(|k| NewEvent::machine(mac, k));
            Ok((m, events.chain(notes).collect()))
        })
    }

    fn delete_machine(&self, mac: Mac, now: Timestamp) -> Result<Vec<Event>> {
        let ((), events) = self.transaction(now, |t| {
            let old = t.machines.remove(&mac).ok_or(Error::MachineNotFound {
                mac: mac.to_string(),
            })?;
            if let Some(ip) = old.spec.ip {
                t.reservations.remove(&ip);
            }
            if let Some(u) = &old.spec.uuid {
                if t.uuids.get(u) == Some(&mac) {
                    t.uuids.remove(u);
                }
            }
            t.unindex_machine_id(old.registration.map(|r| r.machine_id), mac);
            Ok(((), vec![NewEvent::machine(mac, EventKind::Deleted)]))
        })?;
        Ok(events)
    }

    fn reservation_owner(&self, ip: Ipv4Addr) -> Result<Option<Mac>> {
        Ok(self.lock().reservations.get(&ip).copied())
    }

    fn profile(&self, name: &str) -> Result<Option<Profile>> {
        Ok(self.lock().profiles.get(name).cloned())
    }

    fn profiles(&self) -> Result<Vec<Profile>> {
        Ok(self.lock().profiles.values().cloned().collect())
    }

    fn put_profile(&self, profile: Profile, replace: bool, now: Timestamp) -> Result<Vec<Event>> {
        let ((), events) = self.transaction(now, |t| {
            let existed = t.profiles.contains_key(&profile.name);
            if existed && !replace {
                return Err(Error::ProfileExists {
                    name: profile.name.clone(),
                });
            }
            let action = if existed { "replaced" } else { "created" };
            let name = profile.name.clone();
            t.profiles.insert(name.clone(), profile);
            let kind = EventKind::Profile {
                name,
                action: action.into(),
            };
            Ok(((), vec![NewEvent::global(kind)]))
        })?;
        Ok(events)
    }

    fn delete_profile(&self, name: &str, now: Timestamp) -> Result<Vec<Event>> {
        let ((), events) = self.transaction(now, |t| {
            crate::store::refuse_profile_in_use(name, t.machines.values().cloned().map(Ok))?;
            if t.profiles.remove(name).is_none() {
                return Err(Error::ProfileNotFound { name: name.into() });
            }
            let kind = EventKind::Profile {
                name: name.into(),
                action: "deleted".into(),
            };
            Ok(((), vec![NewEvent::global(kind)]))
        })?;
        Ok(events)
    }

    fn append_events(&self, events: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>> {
        Ok(self.transaction(now, |_| Ok(((), events)))?.1)
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<Event>> {
        let t = self.lock();
        let start = usize::try_from(q.after).unwrap_or(usize::MAX);
        let after = t.events.get(start..).unwrap_or_default().iter();
        Ok(after
            .filter(|e| q.mac.is_none() || e.mac == q.mac)
            .take(q.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    fn last_event_seq(&self) -> Result<u64> {
        Ok(self.lock().events.len() as u64)
    }

    fn wait_for_events_after(&self, after: u64, timeout: Duration) -> Result<u64> {
        Ok(self.committed.wait_after(after, timeout))
    }

    fn put_leases6(&self, leases: &[crate::Lease6]) -> Result<()> {
        let mut t = self.leases6.lock().unwrap_or_else(PoisonError::into_inner);
        for l in leases {
            t.insert(l.ip, l.clone());
        }
        Ok(())
    }

    fn remove_lease6(&self, ip: std::net::Ipv6Addr) -> Result<()> {
        let mut t = self.leases6.lock().unwrap_or_else(PoisonError::into_inner);
        t.remove(&ip);
        Ok(())
    }

    fn claim_leases6(
        &self,
        leases: &[crate::Lease6],
        now: Timestamp,
    ) -> Result<Vec<crate::Claim6>> {
        let mut t = self.leases6.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(leases.len());
        for want in leases {
            let claim = crate::lease6::claim_outcome6(want, t.get(&want.ip), now);
            if claim == crate::Claim6::Granted {
                t.insert(want.ip, want.clone());
            }
            out.push(claim);
        }
        Ok(out)
    }

    fn leases6(&self) -> Result<Vec<crate::Lease6>> {
        let t = self.leases6.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(t.values().cloned().collect())
    }

    fn put_leases(&self, leases: &[Lease]) -> Result<()> {
        let mut t = self.lock();
        for l in leases {
            t.leases.insert(l.ip, l.clone());
        }
        Ok(())
    }

    fn claim_leases(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Claim>> {
        let mut t = self.lock();
        let mut out = Vec::with_capacity(leases.len());
        for want in leases {
            let reserved_for = t.reservations.get(&want.ip).copied();
            let claim = claim_outcome(want, t.leases.get(&want.ip), reserved_for, now);
            if claim == Claim::Granted {
                t.leases.insert(want.ip, want.clone());
            }
            out.push(claim);
        }
        Ok(out)
    }

    fn remove_lease(&self, ip: Ipv4Addr) -> Result<()> {
        self.lock().leases.remove(&ip);
        Ok(())
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        Ok(self.lock().leases.values().cloned().collect())
    }

    fn lease_by_ip(&self, ip: Ipv4Addr) -> Result<Option<Lease>> {
        Ok(self.lock().leases.get(&ip).cloned())
    }

    fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<()> {
        self.lock().tokens.insert(hash.to_string(), record.clone());
        Ok(())
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        Ok(self.lock().tokens.get(hash).cloned())
    }

    fn delete_token(&self, hash: &str) -> Result<()> {
        self.lock().tokens.remove(hash);
        Ok(())
    }

    fn has_operator_token(&self) -> Result<bool> {
        let t = self.lock();
        Ok(t.tokens.values().any(|r| r.role == TokenRole::Operator))
    }

    fn append_logs(
        &self,
        lines: Vec<(Mac, NewLogLine)>,
        now: Timestamp,
    ) -> Result<Vec<(Mac, LogLine)>> {
        let mut t = self.lock();
        let mut out = Vec::with_capacity(lines.len());
        for (mac, line) in lines {
            let seq = t.log_seq.get(&mac).copied().unwrap_or(0) + 1;
            t.log_seq.insert(mac, seq);
            let stored = LogLine { seq, at: now, line };
            t.logs.insert((mac, seq), stored.clone());
            if seq > MAX_LINES_PER_MACHINE {
                t.logs.remove(&(mac, seq - MAX_LINES_PER_MACHINE));
            }
            out.push((mac, stored));
        }
        Ok(out)
    }

    fn logs(&self, mac: Mac, after: u64, limit: usize) -> Result<Vec<LogLine>> {
        let t = self.lock();
        let range = t
            .logs
            .range((mac, after.saturating_add(1))..=(mac, u64::MAX));
        Ok(range.take(limit).map(|(_, l)| l.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        crate::conformance::run_all(|| (MemoryStore::new(), ()));
    }
}
