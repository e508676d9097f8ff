//! The storage interface. One implementation today ([`crate::RedbStore`]); the trait exists so a
//! replicated backend can come later without touching the servers.
//!
//! Contract for every implementation: when a mutating method returns `Ok`, the change and the
//! events it produced are on stable storage; when it returns `Err`, nothing of it is.
//! Methods block on I/O: async callers run them on a blocking thread.

use std::net::Ipv4Addr;

use crate::event::{Event, EventKind, EventQuery, NewEvent};
use crate::lifecycle::Deadlines;
use crate::{Lease, Mac, Machine, Profile, Result, Timestamp, TokenRecord};

/// A read-modify-write step on one machine: mutate it and say what happened.
pub type MachineEdit<'a> = &'a mut dyn FnMut(&mut Machine) -> Result<Vec<EventKind>>;

pub trait Store: Send + Sync + 'static {
    fn machine(&self, mac: Mac) -> Result<Option<Machine>>;
    /// All machines, ordered by MAC.
    fn machines(&self) -> Result<Vec<Machine>>;
    /// The machine holding a UUID (SMBIOS), for `config?uuid=` look-ups. A UUID belongs to one
    /// machine: creates and updates that would give it to a second fail with
    /// [`crate::Error::UuidTaken`]; a look-up that would be ambiguous (duplicates kept from an
    /// older store) fails with [`crate::Error::UuidAmbiguous`], never answers the first match.
    /// The default scans; backends index it.
    fn machine_by_uuid(&self, uuid: &str) -> Result<Option<Machine>> {
        let mut found: Vec<Machine> = self
            .machines()?
            .into_iter()
            .filter(|m| m.spec.uuid.as_deref() == Some(uuid))
            .collect();
        if found.len() > 1 {
            return Err(crate::Error::UuidAmbiguous {
                uuid: uuid.to_string(),
                holders: found
                    .iter()
                    .map(|m| m.mac.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(found.pop())
    }
    /// Inserts every machine or none: a duplicate MAC, a taken reservation or an unknown profile
    /// anywhere in the batch fails the whole batch. Each machine gets a `created` event.
    fn create_machines(
        &self,
        machines: Vec<Machine>,
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<Event>>;
    /// Runs `edit` on the stored machine inside one transaction and appends the events it returns.
    /// The profile and reservation of the result are checked as on create.
    fn update_machine(
        &self,
        mac: Mac,
        now: Timestamp,
        edit: MachineEdit<'_>,
    ) -> Result<(Machine, Vec<Event>)>;
    fn delete_machine(&self, mac: Mac, now: Timestamp) -> Result<Vec<Event>>;
    /// The machine an address is reserved for (DHCP reservations).
    fn reservation_owner(&self, ip: Ipv4Addr) -> Result<Option<Mac>>;

    fn profile(&self, name: &str) -> Result<Option<Profile>>;
    fn profiles(&self) -> Result<Vec<Profile>>;
    /// Creates a profile, or replaces it when `replace` is set.
    fn put_profile(&self, profile: Profile, replace: bool, now: Timestamp) -> Result<Vec<Event>>;
    /// Refused while any machine references the profile.
    fn delete_profile(&self, name: &str, now: Timestamp) -> Result<Vec<Event>>;

    fn append_events(&self, events: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>>;
    fn events(&self, query: &EventQuery) -> Result<Vec<Event>>;
    fn last_event_seq(&self) -> Result<u64>;

    /// Writes a group of leases in one durable transaction (one fsync for many ACKs).
    fn put_leases(&self, leases: &[Lease]) -> Result<()>;
    fn remove_lease(&self, ip: Ipv4Addr) -> Result<()>;
    fn leases(&self) -> Result<Vec<Lease>>;
    /// The lease recorded for an address, active or not.
    fn lease_by_ip(&self, ip: Ipv4Addr) -> Result<Option<Lease>>;

    /// Stores a token record under the hash of its secret.
    fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<()>;
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    fn has_operator_token(&self) -> Result<bool>;

    /// Appends log lines (many machines, one transaction), numbering them per machine and
    /// dropping each machine's oldest lines beyond [`crate::log::MAX_LINES_PER_MACHINE`].
    fn append_logs(
        &self,
        lines: Vec<(Mac, crate::log::NewLogLine)>,
        now: Timestamp,
    ) -> Result<Vec<(Mac, crate::log::LogLine)>>;
    /// A machine's log lines with `seq > after`, oldest first.
    fn logs(&self, mac: Mac, after: u64, limit: usize) -> Result<Vec<crate::log::LogLine>>;

    /// Fails every machine stuck in a transitional state past its deadline.
    fn expire_stuck(&self, now: Timestamp, deadlines: &Deadlines) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for m in self.machines()? {
            if m.lifecycle.expiry(now, deadlines).is_none() {
                continue;
            }
            let (_, events) = self.update_machine(m.mac, now, &mut |m| {
                // Re-checked inside the transaction: the machine may have moved on meanwhile.
                match m.lifecycle.expiry(now, deadlines) {
                    Some(t) => m.transition(&t, now).map(|e| vec![e]),
                    None => Ok(Vec::new()),
                }
            })?;
            out.extend(events);
        }
        Ok(out)
    }
}
