//! The storage interface: the one place state lives, so that several servers sharing a store
//! agree. Implementations: [`crate::RedbStore`] (on disk) and [`crate::MemoryStore`] (for
//! tests); every one passes the suite in `crate::conformance`.
//!
//! # Contract (every implementation)
//! - **Atomic, durable writes.** When a mutating method returns `Ok`, the change and the events
//!   it produced are on stable storage (for a durable backend); when it returns `Err`, nothing of
//!   it is. A batch (`create_machines`, `claim_leases`, `append_logs`) is one transaction.
//! - **Allocation is the store's.** [`Store::claim_leases`] decides and writes in one
//!   transaction ([`crate::lease::claim_outcome`]): an address is never bound to two clients,
//!   whatever number of servers claim it at once.
//! - **Events numbered by the store.** Sequence numbers start at 1 and are gap-free and strictly
//!   increasing across every writer; an event is readable once its write returned.
//!   [`Store::wait_for_events_after`] lets any process follow them from a sequence number.
//! - **Indexes are kept in the transaction that writes a machine**: reservation address, SMBIOS
//!   UUID (unique), registration machine-id (several machines may share one: clones), and the
//!   lease table keyed by address.
//! - Methods block on I/O (and `wait_for_events_after` on time): async callers run them on a
//!   blocking thread.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::event::{Event, EventKind, EventQuery, NewEvent};
use crate::lease::Claim;
use crate::lifecycle::Deadlines;
use crate::{Error, Lease, Mac, Machine, Profile, Result, Timestamp, TokenRecord};

/// The rule every store applies before it deletes profile `name`: refused with
/// [`Error::ProfileInUse`] (how many machines, one of them) while any of `machines` uses it.
/// `machines` yields each stored machine, or the error reading it.
pub fn refuse_profile_in_use(
    name: &str,
    machines: impl IntoIterator<Item = Result<Machine>>,
) -> Result<()> {
    let mut users = Vec::new();
    for m in machines {
        let m = m?;
        if m.spec.profile.as_deref() == Some(name) {
            users.push(m.mac);
        }
    }
    match users.first() {
        Some(first) => Err(Error::ProfileInUse {
            name: name.into(),
            count: users.len(),
            example: first.to_string(),
        }),
        None => Ok(()),
    }
}

/// The UUID rule every backend applies when `claimant` asks for SMBIOS UUID `uuid`, which
/// `holder` holds. An operator's machine (`vouched`: not `discovered`) takes a UUID from a
/// record nobody approved (`holder_discovered`): that UUID came from an unauthenticated DHCP
/// packet, the operator's from the rack. Then the answer is the note to append on the holder,
/// whose UUID the caller clears. Otherwise the claim is refused with [`Error::UuidTaken`]
/// naming the holder.
pub fn uuid_handover(
    uuid: &str,
    claimant: Mac,
    vouched: bool,
    holder: Mac,
    holder_discovered: bool,
) -> Result<NewEvent> {
    match (holder_discovered, vouched) {
        (true, true) => Ok(NewEvent::machine(
            holder,
            EventKind::Note {
                message: format!(
                    "UUID {uuid} given to {claimant}, registered by an operator; this discovered record no longer claims it"
                ),
            },
        )),
        (true, false) => Err(Error::UuidTaken {
            uuid: uuid.to_string(),
            holder: format!("{holder} (discovered, not yet approved)"),
        }),
        (false, _) => Err(Error::UuidTaken {
            uuid: uuid.to_string(),
            holder: holder.to_string(),
        }),
    }
}

/// The events an edit of a machine record appends: what the edit said, or `updated` when it
/// changed the record and neither it nor the store's notes said anything. Every backend applies
/// this, so every change to a machine is named by an event and views following the feed see it
/// (conformance check `every_change_is_named`).
pub fn named_change(kinds: Vec<EventKind>, store_notes: &[NewEvent]) -> Vec<EventKind> {
    if kinds.is_empty() && store_notes.is_empty() {
        vec![EventKind::Updated]
    } else {
        kinds
    }
}

/// A read-modify-write step on one machine: mutate it and say what happened.
pub type MachineEdit<'a> = &'a mut dyn FnMut(&mut Machine) -> Result<Vec<EventKind>>;

/// The inventory's storage (see the module documentation for the contract).
pub trait Store: Send + Sync + 'static {
    /// The machine with this MAC.
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
    /// Machines whose last registration reported this machine-id (`/etc/machine-id`), ordered
    /// by MAC. Several machines may share one (clones of one image). The default scans; backends
    /// index it.
    fn machines_by_machine_id(&self, machine_id: &str) -> Result<Vec<Machine>> {
        Ok(self
            .machines()?
            .into_iter()
            .filter(|m| {
                m.registration
                    .as_ref()
                    .is_some_and(|r| r.machine_id == machine_id)
            })
            .collect())
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
    /// The profile and reservation of the result are checked as on create. `edit` may run more
    /// than once (an optimistic backend such as etcd runs it again on the newer record when
    /// another writer changed the machine meanwhile): it must depend only on the record given.
    fn update_machine(
        &self,
        mac: Mac,
        now: Timestamp,
        edit: MachineEdit<'_>,
    ) -> Result<(Machine, Vec<Event>)>;
    /// Removes a machine (its reservation and index entries with it) and records `deleted`.
    fn delete_machine(&self, mac: Mac, now: Timestamp) -> Result<Vec<Event>>;
    /// The machine an address is reserved for (DHCP reservations).
    fn reservation_owner(&self, ip: Ipv4Addr) -> Result<Option<Mac>>;

    /// The profile with this name.
    fn profile(&self, name: &str) -> Result<Option<Profile>>;
    /// All profiles, ordered by name.
    fn profiles(&self) -> Result<Vec<Profile>>;
    /// Creates a profile, or replaces it when `replace` is set.
    fn put_profile(&self, profile: Profile, replace: bool, now: Timestamp) -> Result<Vec<Event>>;
    /// Refused while any machine references the profile.
    fn delete_profile(&self, name: &str, now: Timestamp) -> Result<Vec<Event>>;

    /// Numbers, stamps (`now`) and stores events in one transaction; returns them as stored.
    fn append_events(&self, events: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>>;
    /// Stored events matching `query`, oldest first.
    fn events(&self, query: &EventQuery) -> Result<Vec<Event>>;
    /// The highest event sequence number (0: no events yet). Cheap: one point read.
    fn last_event_seq(&self) -> Result<u64>;
    /// The watch: blocks until an event with `seq > after` is committed (by any writer of this
    /// store, in any process) or `timeout` has passed, and returns the last sequence number
    /// then (`> after` means there is something to read with [`Store::events`]). Returns at
    /// once when such events already exist. The default polls [`Store::last_event_seq`]
    /// ([`crate::watch::poll_events_after`]); in-process backends wake waiters at commit.
    fn wait_for_events_after(&self, after: u64, timeout: Duration) -> Result<u64> {
        crate::watch::poll_events_after(|| self.last_event_seq(), after, timeout)
    }
    /// Follows the feed: waits as [`Store::wait_for_events_after`] does, then returns up to
    /// `limit` events with `seq > after` (empty when `timeout` passed without any).
    fn events_after(&self, after: u64, limit: usize, timeout: Duration) -> Result<Vec<Event>> {
        if self.wait_for_events_after(after, timeout)? <= after {
            return Ok(Vec::new());
        }
        self.events(&EventQuery {
            after,
            mac: None,
            limit: Some(limit),
        })
    }

    /// Writes a group of leases in one durable transaction (one fsync for many ACKs), replacing
    /// whatever each address held: the caller has decided. Servers sharing a store use
    /// [`Store::claim_leases`] instead.
    fn put_leases(&self, leases: &[Lease]) -> Result<()>;
    /// Binds each lease's address to its client if the address is free, expired, only observed
    /// or already that client's, and not reserved for another machine
    /// ([`crate::lease::claim_outcome`]): decided and written in ONE transaction, so two servers
    /// sharing the store never bind one address to two clients. Claims are applied in order (a
    /// later claim in the batch sees an earlier one); one outcome per lease, in order. Only
    /// granted leases are written; the claiming client's bindings of other addresses are left
    /// as they are (releasing them is the caller's).
    fn claim_leases(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Claim>>;
    /// [`Store::claim_leases`] for one lease.
    fn claim_lease(&self, lease: &Lease, now: Timestamp) -> Result<Claim> {
        let mut out = self.claim_leases(std::slice::from_ref(lease), now)?;
        Ok(out.pop().expect("one outcome per claim"))
    }
    /// Removes the lease of an address, if any.
    fn remove_lease(&self, ip: Ipv4Addr) -> Result<()>;
    /// Every stored lease (active or not, granted or observed), ordered by address.
    fn leases(&self) -> Result<Vec<Lease>>;
    /// The lease recorded for an address, active or not.
    fn lease_by_ip(&self, ip: Ipv4Addr) -> Result<Option<Lease>>;
    /// The granted (not observed) lease active at `now` that binds `mac`, the one that lasts
    /// longest if there are several: what a DHCP server sharing the store must offer that
    /// client back rather than a new address when another server bound it. The default scans
    /// [`Store::leases`]; a shared store keeps an index.
    fn lease_by_mac(&self, mac: Mac, now: Timestamp) -> Result<Option<Lease>> {
        Ok(self
            .leases()?
            .into_iter()
            .filter(|l| l.mac == mac && !l.observed && l.is_active(now))
            .max_by_key(|l| l.expires.0))
    }
    /// Writes DHCPv6 leases (RFC 8415 IA_NA bindings) in one durable transaction, replacing
    /// whatever each address held: the DHCPv6 server has decided, and sends its Reply only after
    /// this returned. The default refuses ([`Error::Storage`]): a backend without a DHCPv6
    /// lease table cannot serve DHCPv6. Servers use [`Store::claim_leases6`].
    fn put_leases6(&self, leases: &[crate::Lease6]) -> Result<()> {
        let _ = leases;
        Err(Error::Storage(
            "this store backend keeps no DHCPv6 leases".into(),
        ))
    }
    /// Removes the DHCPv6 lease of an address, if any (Release, Decline).
    fn remove_lease6(&self, ip: std::net::Ipv6Addr) -> Result<()> {
        let _ = ip;
        Err(Error::Storage(
            "this store backend keeps no DHCPv6 leases".into(),
        ))
    }
    /// Every stored DHCPv6 lease (active or not), ordered by address.
    fn leases6(&self) -> Result<Vec<crate::Lease6>> {
        Err(Error::Storage(
            "this store backend keeps no DHCPv6 leases".into(),
        ))
    }
    /// The DHCPv6 lease of one address, active or not: the evidence that an IPv6 peer is the
    /// machine the server bound it to. The default scans [`Store::leases6`]; errors as there.
    fn lease6_by_ip(&self, ip: std::net::Ipv6Addr) -> Result<Option<crate::Lease6>> {
        Ok(self.leases6()?.into_iter().find(|l| l.ip == ip))
    }
    /// [`Store::claim_leases`] for DHCPv6: binds each lease's address if
    /// [`crate::lease6::claim_outcome6`] grants it, decided and written in ONE transaction, so
    /// servers sharing the store never bind one address to two clients. In order; one outcome
    /// per lease. The default refuses, as [`Store::put_leases6`] does.
    fn claim_leases6(
        &self,
        leases: &[crate::Lease6],
        now: Timestamp,
    ) -> Result<Vec<crate::Claim6>> {
        let _ = (leases, now);
        Err(Error::Storage(
            "this store backend keeps no DHCPv6 leases".into(),
        ))
    }
    /// The binding (not a quarantine) active at `now` of one client's identity association
    /// (DUID as lowercase hex, IAID): what a DHCPv6 server sharing the store offers that client
    /// back. The default scans [`Store::leases6`]; a shared store keeps an index.
    fn lease6_by_client(
        &self,
        duid: &str,
        iaid: u32,
        now: Timestamp,
    ) -> Result<Option<crate::Lease6>> {
        Ok(self
            .leases6()?
            .into_iter()
            .filter(|l| l.duid == duid && l.iaid == iaid && !l.declined && l.is_active(now))
            .max_by_key(|l| l.expires.0))
    }
    /// Whether other servers write this store too (etcd): then a server's in-memory pool does
    /// not know every binding, and DHCP asks [`Store::lease_by_mac`] before it offers.
    fn is_shared(&self) -> bool {
        false
    }

    /// Stores a token record under the hash of its secret.
    fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<()>;
    /// The token record stored under `hash` ([`crate::hash_token`] of the secret).
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// Deletes the token record stored under `hash` (a dashboard logout); `Ok` also when
    /// there was none.
    fn delete_token(&self, hash: &str) -> Result<()>;
    /// Whether any operator token exists (first start creates one).
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
