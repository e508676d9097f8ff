//! [`Store`] on redb: a single-file, copy-on-write B-tree with ACID transactions. Every write
//! is durable (fsync) before a method returns; concurrent writers share their fsyncs (group
//! commit, `redb_group.rs`). Each file is used through a `RedbFile` (`redb_reopen.rs`), which
//! re-opens it after an I/O error such as a full disk, so freeing space is enough to recover.
//!
//! Tables (values are JSON so records can grow fields without a migration):
//! `meta` (schema version), `machines` (MAC as u64 → Machine), `reservations` (IPv4 as u32 → MAC),
//! `profiles` (name → Profile), `events` (seq → Event), `machine_events` ((MAC, seq) → ()),
//! `uuids` (SMBIOS UUID → MAC, or [`AMBIGUOUS`] for duplicates a version-1 file already held),
//! `leases` (empty since leases moved to their own file, `redb_leases.rs`), `tokens` (sha256 hex → TokenRecord), `logs` ((MAC, seq) →
//! LogLine), `log_seq` (MAC → last log seq), `machine_ids` (registration machine-id → MACs, a
//! multimap; schema 3). Tables added later are created on open (no migration needed for a new,
//! empty table); an index over existing records is built by `migrate` (`redb_indexes.rs`).
//!
//! DHCP leases live in a second file beside this one (`inventory.leases.redb`, see
//! `redb_leases.rs`) so that lease claims have their own writer.
//!
//! redb takes a file lock: one process opens a file, and the servers sharing it live in that
//! process. Lease claims are write transactions, which redb serializes, so a claim's check and
//! write cannot interleave with another's.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::{Event, EventKind, EventQuery, NewEvent};
use crate::lease::Claim;
use crate::log::{LogLine, NewLogLine, MAX_LINES_PER_MACHINE};
use crate::store::{MachineEdit, Store};
use crate::watch::EventSignal;
use crate::{Error, Lease, Mac, Machine, Profile, Result, Timestamp, TokenRecord, TokenRole};
use reopen::{engine_error, RedbFile};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const MACHINES: TableDefinition<u64, &[u8]> = TableDefinition::new("machines");
const RESERVATIONS: TableDefinition<u32, u64> = TableDefinition::new("reservations");
const UUIDS: TableDefinition<&str, u64> = TableDefinition::new("uuids");
/// `uuids` value for a UUID several machines held before schema 2 made UUIDs unique.
const AMBIGUOUS: u64 = u64::MAX;
const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const MACHINE_EVENTS: TableDefinition<(u64, u64), ()> = TableDefinition::new("machine_events");
const LEASES: TableDefinition<u32, &[u8]> = TableDefinition::new("leases");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const LOGS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("logs");
const LOG_SEQ: TableDefinition<u64, u64> = TableDefinition::new("log_seq");
/// Registration machine-id → MAC keys of the machines that reported it (schema 3).
const MACHINE_IDS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("machine_ids");

/// redb's in-process page cache for the inventory file, in bytes (redb's default is 1 GiB, which
/// a boot storm fills with anonymous memory). Pages beyond it are read again through the OS page
/// cache, which the kernel can reclaim.
pub const INVENTORY_CACHE: usize = 32 * 1024 * 1024;

/// Version of the table layout above. Bump it and add a step to `migrate` (`redb_indexes.rs`) when it changes.
pub const SCHEMA_VERSION: u64 = 3;

/// The inventory in one redb file. One process opens a file at a time (redb locks it); servers
/// in that process share one `RedbStore`.
pub struct RedbStore {
    /// The inventory file (re-opened after an I/O error, e.g. a full disk: `redb_reopen.rs`).
    db: RedbFile,
    /// DHCP bindings, in their own file so a lease claim never waits for an inventory write
    /// (see `redb_leases.rs`).
    leases: RedbFile,
    /// The last committed event sequence number, so [`Store::wait_for_events_after`] wakes at
    /// commit instead of polling the file.
    committed: EventSignal,
    /// The file's permission bits before `open` narrowed them to 0600 (an older version created
    /// it world-readable), so the caller can log the change; `None` when nothing changed.
    tightened_from: Option<u32>,
}

/// Opens (or creates) a store file at `path`: see `redb_file.rs`.
fn create(path: &Path, cache: usize) -> Result<Database> {
    file::open(path, cache)
}

/// Turns redb's errors into [`Error::Storage`] at the call site (`.db()?`), so the crate's
/// public error type carries no redb type (no `From<redb::…> for Error` impls).
trait Db<T> {
    fn db(self) -> Result<T>;
}

macro_rules! db_errors {
    ($($t:ty),*) => {$(
        impl<T> Db<T> for std::result::Result<T, $t> {
            fn db(self) -> Result<T> {
                self.map_err(engine_error)
            }
        }
    )*};
}
db_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn mac_key(mac: Mac) -> u64 {
    let o = mac.octets();
    u64::from_be_bytes([0, 0, o[0], o[1], o[2], o[3], o[4], o[5]])
}

fn key_mac(k: u64) -> Mac {
    let b = k.to_be_bytes();
    Mac::new([b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("inventory records always serialize")
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        table,
        detail: e.to_string(),
    })
}

impl RedbStore {
    /// Opens (or creates) the database file and brings its schema up to date. The file is
    /// created with mode 0600; an existing file readable by others is narrowed to 0600 (see
    /// [`RedbStore::tightened_from`]).
    pub fn open(path: &Path) -> Result<Self> {
        let tightened_from = private_file(path)?;
        let db = create(path, INVENTORY_CACHE)?;
        let txn = db.begin_write().db()?;
        {
            let mut meta = txn.open_table(META).db()?;
            let found = meta
                .get("schema_version")
                .db()?
                .map(|v| v.value())
                .unwrap_or(0);
            if found > SCHEMA_VERSION {
                return Err(Error::SchemaTooNew {
                    path: path.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            if found < SCHEMA_VERSION {
                migrate(&txn, found)?;
                meta.insert("schema_version", SCHEMA_VERSION).db()?;
            }
            // Create every table so read transactions never see a missing one.
            txn.open_table(MACHINES).db()?;
            txn.open_table(RESERVATIONS).db()?;
            txn.open_table(UUIDS).db()?;
            txn.open_table(PROFILES).db()?;
            txn.open_table(EVENTS).db()?;
            txn.open_table(MACHINE_EVENTS).db()?;
            txn.open_table(LEASES).db()?;
            txn.open_table(TOKENS).db()?;
            txn.open_table(LOGS).db()?;
            txn.open_table(LOG_SEQ).db()?;
            txn.open_multimap_table(MACHINE_IDS).db()?;
        }
        txn.commit().db()?;
        let leases = leases::open(path, &db)?;
        let store = RedbStore {
            db: RedbFile::new(path, INVENTORY_CACHE, db),
            leases,
            tightened_from,
            committed: EventSignal::default(),
        };
        store.committed.publish(store.last_event_seq()?);
        Ok(store)
    }

    /// The permission bits the file had before [`RedbStore::open`] narrowed them to 0600, if
    /// it did (for a log line).
    pub fn tightened_from(&self) -> Option<u32> {
        self.tightened_from
    }

    /// Wakes the watchers of `events`, which a write just committed durably.
    fn publish(&self, events: &[Event]) {
        if let Some(last) = events.last() {
            self.committed.publish(last.seq);
        }
    }

    /// The schema version the file is at (always [`SCHEMA_VERSION`] once opened).
    pub fn schema_version(&self) -> Result<u64> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let meta = txn.open_table(META).db()?;
            Ok(meta
                .get("schema_version")
                .db()?
                .map(|v| v.value())
                .unwrap_or(0))
        })
    }
}

/// Appends events inside `txn`, numbering them after the current last one.
fn append(txn: &WriteTransaction, events: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>> {
    let mut table = txn.open_table(EVENTS).db()?;
    let mut index = txn.open_table(MACHINE_EVENTS).db()?;
    let mut seq = table.last().db()?.map(|(k, _)| k.value()).unwrap_or(0);
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let ev = Event {
            seq,
            at: now,
            mac: e.mac,
            kind: e.kind,
        };
        table.insert(seq, encode(&ev).as_slice()).db()?;
        if let Some(mac) = ev.mac {
            index.insert((mac_key(mac), seq), ()).db()?;
        }
        out.push(ev);
    }
    Ok(out)
}

/// Checks the profile and reservation of `m` and writes it (replacing `old` if given).
fn write_machine(
    txn: &WriteTransaction,
    lease_db: &RedbFile,
    m: &Machine,
    old: Option<&Machine>,
    now: Timestamp,
) -> Result<Vec<NewEvent>> {
    if let Some(p) = &m.spec.profile {
        if txn
            .open_table(PROFILES)
            .db()?
            .get(p.as_str())
            .db()?
            .is_none()
        {
            return Err(Error::UnknownProfile { name: p.clone() });
        }
    }
    let key = mac_key(m.mac);
    let mut res = txn.open_table(RESERVATIONS).db()?;
    if let Some(old_ip) = old.and_then(|o| o.spec.ip) {
        res.remove(u32::from(old_ip)).db()?;
    }
    if let Some(ip) = m
        .spec
        .ip
        .filter(|ip| old.and_then(|o| o.spec.ip) != Some(*ip))
    {
        // A new reservation for an address another client holds right now would put two hosts
        // on it (RFC 2131 §4.3.1 lets the holder keep it until its lease ends).
        if let Some(lease) = leases::active_holder(lease_db, ip, now)? {
            if lease.mac != m.mac {
                return Err(Error::IpLeased {
                    ip,
                    holder: lease.mac.to_string(),
                    until: lease.expires,
                });
            }
        }
    }
    if let Some(ip) = m.spec.ip {
        let holder = res.get(u32::from(ip)).db()?.map(|v| v.value());
        if let Some(h) = holder.filter(|h| *h != key) {
            return Err(Error::IpReserved {
                ip,
                holder: key_mac(h).to_string(),
            });
        }
        res.insert(u32::from(ip), key).db()?;
    }
    drop(res);
    let notes = index_uuid(
        txn,
        key,
        old.and_then(|o| o.spec.uuid.as_deref()),
        m.spec.uuid.as_deref(),
        m.state() != crate::State::Discovered,
    )?;
    index_machine_id(txn, m, old)?;
    txn.open_table(MACHINES)
        .db()?
        .insert(key, encode(m).as_slice())
        .db()?;
    Ok(notes)
}

fn read_machine(txn: &WriteTransaction, mac: Mac) -> Result<Option<Machine>> {
    let table = txn.open_table(MACHINES).db()?;
    let v = table.get(mac_key(mac)).db()?;
    v.map(|v| decode("machines", v.value())).transpose()
}

impl Store for RedbStore {
    fn machine(&self, mac: Mac) -> Result<Option<Machine>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(MACHINES).db()?;
            let v = table.get(mac_key(mac)).db()?;
            v.map(|v| decode("machines", v.value())).transpose()
        })
    }

    fn machines(&self) -> Result<Vec<Machine>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(MACHINES).db()?;
            let mut out = Vec::with_capacity(table.len().db()? as usize);
            for row in table.iter().db()? {
                let (_, v) = row.db()?;
                out.push(decode("machines", v.value())?);
            }
            Ok(out)
        })
    }

    fn create_machines(
        &self,
        machines: Vec<Machine>,
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<Event>> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            let mut events = Vec::with_capacity(machines.len());
            for m in &machines {
                if read_machine(&txn, m.mac)?.is_some() {
                    return Err(Error::MachineExists {
                        mac: m.mac.to_string(),
                    });
                }
                let notes = write_machine(&txn, &self.leases, m, None, now)?;
                events.push(NewEvent::machine(
                    m.mac,
                    EventKind::Created { by: by.to_string() },
                ));
                events.extend(notes);
            }
            let events = append(&txn, events, now)?;
            group.commit(db, txn)?;
            self.publish(&events);
            Ok(events)
        })
    }

    fn update_machine(
        &self,
        mac: Mac,
        now: Timestamp,
        edit: MachineEdit<'_>,
    ) -> Result<(Machine, Vec<Event>)> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            let old = read_machine(&txn, mac)?.ok_or_else(|| Error::MachineNotFound {
                mac: mac.to_string(),
            })?;
            let mut m = old.clone();
            let kinds = edit(&mut m)?;
            m.mac = mac;
            if m == old && kinds.is_empty() {
                return Ok((m, Vec::new()));
            }
            let notes = write_machine(&txn, &self.leases, &m, Some(&old), now)?;
            let kinds = crate::store::named_change(kinds, &notes);
            let events = append(
                &txn,
                kinds
                    .into_iter()
                    .map(|k| NewEvent::machine(mac, k))
                    .chain(notes)
                    .collect(),
                now,
            )?;
            group.commit(db, txn)?;
            self.publish(&events);
            Ok((m, events))
        })
    }

    fn delete_machine(&self, mac: Mac, now: Timestamp) -> Result<Vec<Event>> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            let old = read_machine(&txn, mac)?.ok_or_else(|| Error::MachineNotFound {
                mac: mac.to_string(),
            })?;
            if let Some(ip) = old.spec.ip {
                txn.open_table(RESERVATIONS)
                    .db()?
                    .remove(u32::from(ip))
                    .db()?;
            }
            index_uuid(&txn, mac_key(mac), old.spec.uuid.as_deref(), None, true)?;
            unindex_machine_id(&txn, &old)?;
            txn.open_table(MACHINES).db()?.remove(mac_key(mac)).db()?;
            let events = append(&txn, vec![NewEvent::machine(mac, EventKind::Deleted)], now)?;
            group.commit(db, txn)?;
            self.publish(&events);
            Ok(events)
        })
    }

    fn machine_by_uuid(&self, uuid: &str) -> Result<Option<Machine>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let held = txn
                .open_table(UUIDS)
                .db()?
                .get(uuid)
                .db()?
                .map(|v| v.value());
            match held {
                None => Ok(None),
                Some(AMBIGUOUS) => {
                    let table = txn.open_table(MACHINES).db()?;
                    let mut holders = Vec::new();
                    for row in table.iter().db()? {
                        let (k, v) = row.db()?;
                        let m: Machine = decode("machines", v.value())?;
                        if m.spec.uuid.as_deref() == Some(uuid) {
                            holders.push(key_mac(k.value()).to_string());
                        }
                    }
                    Err(Error::UuidAmbiguous {
                        uuid: uuid.to_string(),
                        holders: holders.join(", "),
                    })
                }
                Some(key) => {
                    let table = txn.open_table(MACHINES).db()?;
                    let v = table.get(key).db()?;
                    v.map(|v| decode("machines", v.value())).transpose()
                }
            }
        })
    }

    fn machines_by_machine_id(&self, machine_id: &str) -> Result<Vec<Machine>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let index = txn.open_multimap_table(MACHINE_IDS).db()?;
            let machines = txn.open_table(MACHINES).db()?;
            let mut out = Vec::new();
            for key in index.get(machine_id).db()? {
                if let Some(v) = machines.get(key.db()?.value()).db()? {
                    out.push(decode("machines", v.value())?);
                }
            }
            Ok(out)
        })
    }

    fn reservation_owner(&self, ip: Ipv4Addr) -> Result<Option<Mac>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(RESERVATIONS).db()?;
            let owner = table.get(u32::from(ip)).db()?.map(|v| key_mac(v.value()));
            Ok(owner)
        })
    }

    fn profile(&self, name: &str) -> Result<Option<Profile>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(PROFILES).db()?;
            let v = table.get(name).db()?;
            v.map(|v| decode("profiles", v.value())).transpose()
        })
    }

    fn profiles(&self) -> Result<Vec<Profile>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(PROFILES).db()?;
            let mut out = Vec::new();
            for row in table.iter().db()? {
                out.push(decode("profiles", row.db()?.1.value())?);
            }
            Ok(out)
        })
    }

    fn put_profile(&self, profile: Profile, replace: bool, now: Timestamp) -> Result<Vec<Event>> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            let existed = {
                let mut table = txn.open_table(PROFILES).db()?;
                let existed = table.get(profile.name.as_str()).db()?.is_some();
                if existed && !replace {
                    return Err(Error::ProfileExists {
                        name: profile.name.clone(),
                    });
                }
                table
                    .insert(profile.name.as_str(), encode(&profile).as_slice())
                    .db()?;
                existed
            };
            let action = if existed { "replaced" } else { "created" };
            let events = append(
                &txn,
                vec![NewEvent::global(EventKind::Profile {
                    name: profile.name.clone(),
                    action: action.into(),
                })],
                now,
            )?;
            group.commit(db, txn)?;
            self.publish(&events);
            Ok(events)
        })
    }

    fn delete_profile(&self, name: &str, now: Timestamp) -> Result<Vec<Event>> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            {
                let machines = txn.open_table(MACHINES).db()?;
                crate::store::refuse_profile_in_use(
                    name,
                    machines
                        .iter()
                        .db()?
                        .map(|row| decode::<Machine>("machines", row.db()?.1.value())),
                )?;
                if txn.open_table(PROFILES).db()?.remove(name).db()?.is_none() {
                    return Err(Error::ProfileNotFound { name: name.into() });
                }
            }
            let events = append(
                &txn,
                vec![NewEvent::global(EventKind::Profile {
                    name: name.into(),
                    action: "deleted".into(),
                })],
                now,
            )?;
            group.commit(db, txn)?;
            self.publish(&events);
            Ok(events)
        })
    }

    fn append_events(&self, events: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            let out = append(&txn, events, now)?;
            group.commit(db, txn)?;
            self.publish(&out);
            Ok(out)
        })
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<Event>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(EVENTS).db()?;
            let limit = q.limit.unwrap_or(usize::MAX);
            let mut out = Vec::new();
            let start = q.after.saturating_add(1);
            match q.mac {
                None => {
                    for row in table.range(start..).db()? {
                        if out.len() >= limit {
                            break;
                        }
                        out.push(decode("events", row.db()?.1.value())?);
                    }
                }
                Some(mac) => {
                    let index = txn.open_table(MACHINE_EVENTS).db()?;
                    let k = mac_key(mac);
                    for row in index.range((k, start)..=(k, u64::MAX)).db()? {
                        if out.len() >= limit {
                            break;
                        }
                        let (key, _) = row.db()?;
                        let seq = key.value().1;
                        if let Some(v) = table.get(seq).db()? {
                            out.push(decode("events", v.value())?);
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    fn last_event_seq(&self) -> Result<u64> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(EVENTS).db()?;
            let last = table.last().db()?.map(|(k, _)| k.value()).unwrap_or(0);
            Ok(last)
        })
    }

    fn wait_for_events_after(&self, after: u64, timeout: Duration) -> Result<u64> {
        Ok(self.committed.wait_after(after, timeout))
    }

    fn put_leases(&self, leases: &[Lease]) -> Result<()> {
        leases::put(&self.leases, leases)
    }

    fn claim_leases(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Claim>> {
        leases::claim(&self.leases, &self.db, leases, now)
    }

    fn remove_lease(&self, ip: Ipv4Addr) -> Result<()> {
        leases::remove(&self.leases, ip)
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        self.leases.read(leases::all)
    }

    fn put_leases6(&self, leases: &[crate::Lease6]) -> Result<()> {
        leases6::put(&self.leases, leases)
    }

    fn remove_lease6(&self, ip: std::net::Ipv6Addr) -> Result<()> {
        leases6::remove(&self.leases, ip)
    }

    fn claim_leases6(
        &self,
        leases: &[crate::Lease6],
        now: Timestamp,
    ) -> Result<Vec<crate::Claim6>> {
        leases6::claim(&self.leases, leases, now)
    }

    fn leases6(&self) -> Result<Vec<crate::Lease6>> {
        self.leases.read(leases6::all)
    }

    fn lease_by_ip(&self, ip: Ipv4Addr) -> Result<Option<Lease>> {
        self.leases.read(|db| leases::get(db, ip))
    }

    fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<()> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            txn.open_table(TOKENS)
                .db()?
                .insert(hash, encode(record).as_slice())
                .db()?;
            group.commit(db, txn)
        })
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(TOKENS).db()?;
            let v = table.get(hash).db()?;
            v.map(|v| decode("tokens", v.value())).transpose()
        })
    }

    fn delete_token(&self, hash: &str) -> Result<()> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            txn.open_table(TOKENS).db()?.remove(hash).db()?;
            group.commit(db, txn)
        })
    }

    fn has_operator_token(&self) -> Result<bool> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(TOKENS).db()?;
            for row in table.iter().db()? {
                let rec: TokenRecord = decode("tokens", row.db()?.1.value())?;
                if rec.role == TokenRole::Operator {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    fn append_logs(
        &self,
        lines: Vec<(Mac, NewLogLine)>,
        now: Timestamp,
    ) -> Result<Vec<(Mac, LogLine)>> {
        self.db.write(|db, group| {
            let txn = group.begin(db)?;
            let mut out = Vec::with_capacity(lines.len());
            {
                let mut logs = txn.open_table(LOGS).db()?;
                let mut seqs = txn.open_table(LOG_SEQ).db()?;
                for (mac, line) in lines {
                    let k = mac_key(mac);
                    let seq = seqs.get(k).db()?.map(|v| v.value()).unwrap_or(0) + 1;
                    seqs.insert(k, seq).db()?;
                    let stored = LogLine { seq, at: now, line };
                    logs.insert((k, seq), encode(&stored).as_slice()).db()?;
                    if seq > MAX_LINES_PER_MACHINE {
                        logs.remove((k, seq - MAX_LINES_PER_MACHINE)).db()?;
                    }
                    out.push((mac, stored));
                }
            }
            group.commit(db, txn)?;
            Ok(out)
        })
    }

    fn logs(&self, mac: Mac, after: u64, limit: usize) -> Result<Vec<LogLine>> {
        self.db.read(|db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(LOGS).db()?;
            let k = mac_key(mac);
            let mut out = Vec::new();
            for row in table
                .range((k, after.saturating_add(1))..=(k, u64::MAX))
                .db()?
                .take(limit)
            {
                out.push(decode("logs", row.db()?.1.value())?);
            }
            Ok(out)
        })
    }
}

#[path = "redb_file.rs"]
mod file;
use file::private_file;

#[path = "redb_reopen.rs"]
pub(crate) mod reopen;

#[path = "redb_leases.rs"]
mod leases;

#[path = "redb_leases6.rs"]
mod leases6;
pub use leases::lease_path;

#[path = "redb_indexes.rs"]
mod indexes;
use indexes::{index_machine_id, index_uuid, migrate, unindex_machine_id};

#[cfg(test)]
#[path = "redb_store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "redb_store_uuid_tests.rs"]
mod uuid_tests;

#[cfg(test)]
#[path = "redb_leases_tests.rs"]
mod lease_file_tests;
