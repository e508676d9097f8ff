//! [`Store`] on redb: a single-file, copy-on-write B-tree with ACID transactions. Every write
//! transaction commits with `Durability::Immediate` (fsync) before a method returns.
//!
//! Tables (values are JSON so records can grow fields without a migration):
//! `meta` (schema version), `machines` (MAC as u64 → Machine), `reservations` (IPv4 as u32 → MAC),
//! `profiles` (name → Profile), `events` (seq → Event), `machine_events` ((MAC, seq) → ()),
//! `uuids` (SMBIOS UUID → MAC, or [`AMBIGUOUS`] for duplicates a version-1 file already held),
//! `leases` (IPv4 as u32 → Lease), `tokens` (sha256 hex → TokenRecord), `logs` ((MAC, seq) →
//! LogLine), `log_seq` (MAC → last log seq). Tables added later are created on open (no
//! migration needed for a new, empty table).

use std::net::Ipv4Addr;
use std::path::Path;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::{Event, EventKind, EventQuery, NewEvent};
use crate::log::{LogLine, NewLogLine, MAX_LINES_PER_MACHINE};
use crate::store::{MachineEdit, Store};
use crate::{Error, Lease, Mac, Machine, Profile, Result, Timestamp, TokenRecord, TokenRole};

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

/// Version of the table layout above. Bump it and add a step to [`migrate`] when it changes.
pub const SCHEMA_VERSION: u64 = 2;

pub struct RedbStore {
    db: Database,
    /// The file's permission bits before `open` narrowed them to 0600 (an older version created
    /// it world-readable), so the caller can log the change; `None` when nothing changed.
    tightened_from: Option<u32>,
}

/// Makes sure the database file exists with mode 0600 (it holds machine records, token hashes
/// and logs): creates it so, or narrows an existing file's mode. Returns the old mode if it was
/// wider.
fn private_file(path: &Path) -> Result<Option<u32>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| Error::Storage(format!("opening {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    Ok(Some(mode))
}

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

/// Upgrades the tables from `from` to [`SCHEMA_VERSION`] inside the opening transaction.
fn migrate(txn: &WriteTransaction, from: u64) -> Result<()> {
    if from == 1 {
        // 1 → 2: index the UUIDs. Duplicates (possible before) are marked ambiguous, so a
        // look-up by them fails instead of picking one; the operator is told which machines.
        let machines: Vec<Machine> = {
            let table = txn.open_table(MACHINES)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                out.push(decode("machines", row?.1.value())?);
            }
            out
        };
        let mut uuids = txn.open_table(UUIDS)?;
        for m in machines {
            if let Some(u) = &m.spec.uuid {
                let held = uuids.get(u.as_str())?.map(|v| v.value());
                let value = if held.is_some() {
                    AMBIGUOUS
                } else {
                    mac_key(m.mac)
                };
                uuids.insert(u.as_str(), value)?;
            }
        }
    }
    // 0: a new, empty file: every table is created below.
    Ok(())
}

/// The machine stored under `key` when it is `discovered` (not vouched for by an operator).
fn discovered_holder(txn: &WriteTransaction, key: u64) -> Result<Option<Machine>> {
    let table = txn.open_table(MACHINES)?;
    let m: Option<Machine> = table
        .get(key)?
        .map(|v| decode("machines", v.value()))
        .transpose()?;
    Ok(m.filter(|m| m.state() == crate::State::Discovered))
}

/// Machines holding `uuid`, by a scan (only for UUIDs marked ambiguous).
fn uuid_holders(txn: &WriteTransaction, uuid: &str) -> Result<Vec<Mac>> {
    let table = txn.open_table(MACHINES)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let m: Machine = decode("machines", v.value())?;
        if m.spec.uuid.as_deref() == Some(uuid) {
            out.push(key_mac(k.value()));
        }
    }
    Ok(out)
}

/// Moves the UUID index entry of a machine from `old` to `new`; a UUID held by another machine
/// is refused. `old` entries marked ambiguous are recounted once this machine no longer holds it.
fn index_uuid(
    txn: &WriteTransaction,
    key: u64,
    old: Option<&str>,
    new: Option<&str>,
    vouched: bool,
) -> Result<Vec<NewEvent>> {
    let mut notes = Vec::new();
    if old == new {
        return Ok(notes);
    }
    if let Some(u) = new {
        let held = txn.open_table(UUIDS)?.get(u)?.map(|v| v.value());
        match held {
            Some(AMBIGUOUS) => {
                return Err(Error::UuidTaken {
                    uuid: u.to_string(),
                    holder: "several machines".into(),
                })
            }
            Some(h) if h != key => match discovered_holder(txn, h)? {
                // An operator's machine takes the UUID from a record nobody has approved: that
                // UUID came from an unauthenticated DHCP packet, the operator's from the rack.
                Some(mut claimant) if vouched => {
                    claimant.spec.uuid = None;
                    txn.open_table(MACHINES)?
                        .insert(h, encode(&claimant).as_slice())?;
                    notes.push(NewEvent::machine(
                        claimant.mac,
                        EventKind::Note {
                            message: format!(
                                "UUID {u} given to {}, registered by an operator; this discovered record no longer claims it",
                                key_mac(key)
                            ),
                        },
                    ));
                }
                Some(_) => {
                    return Err(Error::UuidTaken {
                        uuid: u.to_string(),
                        holder: format!("{} (discovered, not yet approved)", key_mac(h)),
                    })
                }
                None => {
                    return Err(Error::UuidTaken {
                        uuid: u.to_string(),
                        holder: key_mac(h).to_string(),
                    })
                }
            },
            _ => {}
        }
        txn.open_table(UUIDS)?.insert(u, key)?;
    }
    if let Some(u) = old {
        let held = txn.open_table(UUIDS)?.get(u)?.map(|v| v.value());
        match held {
            Some(h) if h == key => {
                txn.open_table(UUIDS)?.remove(u)?;
            }
            Some(AMBIGUOUS) => {
                // The caller writes the machine after this: leave it out of the count.
                let rest: Vec<Mac> = uuid_holders(txn, u)?
                    .into_iter()
                    .filter(|m| mac_key(*m) != key)
                    .collect();
                let mut uuids = txn.open_table(UUIDS)?;
                match rest.as_slice() {
                    [] => {
                        uuids.remove(u)?;
                    }
                    [one] => {
                        uuids.insert(u, mac_key(*one))?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(notes)
}

impl RedbStore {
    /// Opens (or creates) the database file and brings its schema up to date. The file is
    /// created with mode 0600; an existing file readable by others is narrowed to 0600 (see
    /// [`RedbStore::tightened_from`]).
    pub fn open(path: &Path) -> Result<Self> {
        let tightened_from = private_file(path)?;
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Storage(format!(
                "{} is in use by another provisioner process",
                path.display()
            )),
            e => Error::Storage(format!("opening {}: {e}", path.display())),
        })?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value()).unwrap_or(0);
            if found > SCHEMA_VERSION {
                return Err(Error::SchemaTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            if found < SCHEMA_VERSION {
                migrate(&txn, found)?;
                meta.insert("schema_version", SCHEMA_VERSION)?;
            }
            // Create every table so read transactions never see a missing one.
            txn.open_table(MACHINES)?;
            txn.open_table(RESERVATIONS)?;
            txn.open_table(UUIDS)?;
            txn.open_table(PROFILES)?;
            txn.open_table(EVENTS)?;
            txn.open_table(MACHINE_EVENTS)?;
            txn.open_table(LEASES)?;
            txn.open_table(TOKENS)?;
            txn.open_table(LOGS)?;
            txn.open_table(LOG_SEQ)?;
        }
        txn.commit()?;
        Ok(RedbStore { db, tightened_from })
    }

    /// The permission bits the file had before [`RedbStore::open`] narrowed them to 0600, if
    /// it did (for a log line).
    pub fn tightened_from(&self) -> Option<u32> {
        self.tightened_from
    }

    pub fn schema_version(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get("schema_version")?.map(|v| v.value()).unwrap_or(0))
    }
}

/// Appends events inside `txn`, numbering them after the current last one.
fn append(txn: &WriteTransaction, events: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>> {
    let mut table = txn.open_table(EVENTS)?;
    let mut index = txn.open_table(MACHINE_EVENTS)?;
    let mut seq = table.last()?.map(|(k, _)| k.value()).unwrap_or(0);
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let ev = Event {
            seq,
            at: now,
            mac: e.mac,
            kind: e.kind,
        };
        table.insert(seq, encode(&ev).as_slice())?;
        if let Some(mac) = ev.mac {
            index.insert((mac_key(mac), seq), ())?;
        }
        out.push(ev);
    }
    Ok(out)
}

/// Checks the profile and reservation of `m` and writes it (replacing `old` if given).
fn write_machine(
    txn: &WriteTransaction,
    m: &Machine,
    old: Option<&Machine>,
    now: Timestamp,
) -> Result<Vec<NewEvent>> {
    if let Some(p) = &m.spec.profile {
        if txn.open_table(PROFILES)?.get(p.as_str())?.is_none() {
            return Err(Error::UnknownProfile { name: p.clone() });
        }
    }
    let key = mac_key(m.mac);
    let mut res = txn.open_table(RESERVATIONS)?;
    if let Some(old_ip) = old.and_then(|o| o.spec.ip) {
        res.remove(u32::from(old_ip))?;
    }
    if let Some(ip) = m
        .spec
        .ip
        .filter(|ip| old.and_then(|o| o.spec.ip) != Some(*ip))
    {
        // A new reservation for an address another client holds right now would put two hosts
        // on it (RFC 2131 §4.3.1 lets the holder keep it until its lease ends).
        if let Some(v) = txn.open_table(LEASES)?.get(u32::from(ip))? {
            let lease: Lease = decode("leases", v.value())?;
            if lease.mac != m.mac && lease.is_active(now) && !lease.observed {
                return Err(Error::IpLeased {
                    ip,
                    holder: lease.mac.to_string(),
                    until: lease.expires,
                });
            }
        }
    }
    if let Some(ip) = m.spec.ip {
        let holder = res.get(u32::from(ip))?.map(|v| v.value());
        if let Some(h) = holder.filter(|h| *h != key) {
            return Err(Error::IpReserved {
                ip,
                holder: key_mac(h).to_string(),
            });
        }
        res.insert(u32::from(ip), key)?;
    }
    drop(res);
    let notes = index_uuid(
        txn,
        key,
        old.and_then(|o| o.spec.uuid.as_deref()),
        m.spec.uuid.as_deref(),
        m.state() != crate::State::Discovered,
    )?;
    txn.open_table(MACHINES)?
        .insert(key, encode(m).as_slice())?;
    Ok(notes)
}

fn read_machine(txn: &WriteTransaction, mac: Mac) -> Result<Option<Machine>> {
    let table = txn.open_table(MACHINES)?;
    let v = table.get(mac_key(mac))?;
    v.map(|v| decode("machines", v.value())).transpose()
}

impl Store for RedbStore {
    fn machine(&self, mac: Mac) -> Result<Option<Machine>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MACHINES)?;
        let v = table.get(mac_key(mac))?;
        v.map(|v| decode("machines", v.value())).transpose()
    }

    fn machines(&self) -> Result<Vec<Machine>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MACHINES)?;
        let mut out = Vec::with_capacity(table.len()? as usize);
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode("machines", v.value())?);
        }
        Ok(out)
    }

    fn create_machines(
        &self,
        machines: Vec<Machine>,
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<Event>> {
        let txn = self.db.begin_write()?;
        let mut events = Vec::with_capacity(machines.len());
        for m in &machines {
            if read_machine(&txn, m.mac)?.is_some() {
                return Err(Error::MachineExists {
                    mac: m.mac.to_string(),
                });
            }
            let notes = write_machine(&txn, m, None, now)?;
            events.push(NewEvent::machine(
                m.mac,
                EventKind::Created { by: by.to_string() },
            ));
            events.extend(notes);
        }
        let events = append(&txn, events, now)?;
        txn.commit()?;
        Ok(events)
    }

    fn update_machine(
        &self,
        mac: Mac,
        now: Timestamp,
        edit: MachineEdit<'_>,
    ) -> Result<(Machine, Vec<Event>)> {
        let txn = self.db.begin_write()?;
        let old = read_machine(&txn, mac)?.ok_or_else(|| Error::MachineNotFound {
            mac: mac.to_string(),
        })?;
        let mut m = old.clone();
        let kinds = edit(&mut m)?;
        m.mac = mac;
        if m == old && kinds.is_empty() {
            return Ok((m, Vec::new()));
        }
        let notes = write_machine(&txn, &m, Some(&old), now)?;
        let events = append(
            &txn,
            kinds
                .into_iter()
                .map(|k| NewEvent::machine(mac, k))
                .chain(notes)
                .collect(),
            now,
        )?;
        txn.commit()?;
        Ok((m, events))
    }

    fn delete_machine(&self, mac: Mac, now: Timestamp) -> Result<Vec<Event>> {
        let txn = self.db.begin_write()?;
        let old = read_machine(&txn, mac)?.ok_or_else(|| Error::MachineNotFound {
            mac: mac.to_string(),
        })?;
        if let Some(ip) = old.spec.ip {
            txn.open_table(RESERVATIONS)?.remove(u32::from(ip))?;
        }
        index_uuid(&txn, mac_key(mac), old.spec.uuid.as_deref(), None, true)?;
        txn.open_table(MACHINES)?.remove(mac_key(mac))?;
        let events = append(&txn, vec![NewEvent::machine(mac, EventKind::Deleted)], now)?;
        txn.commit()?;
        Ok(events)
    }

    fn machine_by_uuid(&self, uuid: &str) -> Result<Option<Machine>> {
        let txn = self.db.begin_read()?;
        let held = txn.open_table(UUIDS)?.get(uuid)?.map(|v| v.value());
        match held {
            None => Ok(None),
            Some(AMBIGUOUS) => {
                let table = txn.open_table(MACHINES)?;
                let mut holders = Vec::new();
                for row in table.iter()? {
                    let (k, v) = row?;
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
                let table = txn.open_table(MACHINES)?;
                let v = table.get(key)?;
                v.map(|v| decode("machines", v.value())).transpose()
            }
        }
    }

    fn reservation_owner(&self, ip: Ipv4Addr) -> Result<Option<Mac>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RESERVATIONS)?;
        let owner = table.get(u32::from(ip))?.map(|v| key_mac(v.value()));
        Ok(owner)
    }

    fn profile(&self, name: &str) -> Result<Option<Profile>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PROFILES)?;
        let v = table.get(name)?;
        v.map(|v| decode("profiles", v.value())).transpose()
    }

    fn profiles(&self) -> Result<Vec<Profile>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PROFILES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(decode("profiles", row?.1.value())?);
        }
        Ok(out)
    }

    fn put_profile(&self, profile: Profile, replace: bool, now: Timestamp) -> Result<Vec<Event>> {
        let txn = self.db.begin_write()?;
        let existed = {
            let mut table = txn.open_table(PROFILES)?;
            let existed = table.get(profile.name.as_str())?.is_some();
            if existed && !replace {
                return Err(Error::ProfileExists { name: profile.name });
            }
            table.insert(profile.name.as_str(), encode(&profile).as_slice())?;
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
        txn.commit()?;
        Ok(events)
    }

    fn delete_profile(&self, name: &str, now: Timestamp) -> Result<Vec<Event>> {
        let txn = self.db.begin_write()?;
        {
            let machines = txn.open_table(MACHINES)?;
            let mut users = Vec::new();
            for row in machines.iter()? {
                let m: Machine = decode("machines", row?.1.value())?;
                if m.spec.profile.as_deref() == Some(name) {
                    users.push(m.mac);
                }
            }
            if let Some(first) = users.first() {
                return Err(Error::ProfileInUse {
                    name: name.into(),
                    count: users.len(),
                    example: first.to_string(),
                });
            }
            if txn.open_table(PROFILES)?.remove(name)?.is_none() {
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
        txn.commit()?;
        Ok(events)
    }

    fn append_events(&self, events: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>> {
        let txn = self.db.begin_write()?;
        let out = append(&txn, events, now)?;
        txn.commit()?;
        Ok(out)
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<Event>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let start = q.after.saturating_add(1);
        match q.mac {
            None => {
                for row in table.range(start..)? {
                    if out.len() >= limit {
                        break;
                    }
                    out.push(decode("events", row?.1.value())?);
                }
            }
            Some(mac) => {
                let index = txn.open_table(MACHINE_EVENTS)?;
                let k = mac_key(mac);
                for row in index.range((k, start)..=(k, u64::MAX))? {
                    if out.len() >= limit {
                        break;
                    }
                    let (key, _) = row?;
                    let seq = key.value().1;
                    if let Some(v) = table.get(seq)? {
                        out.push(decode("events", v.value())?);
                    }
                }
            }
        }
        Ok(out)
    }

    fn last_event_seq(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let last = table.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        Ok(last)
    }

    fn put_leases(&self, leases: &[Lease]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(LEASES)?;
            for l in leases {
                table.insert(u32::from(l.ip), encode(l).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn remove_lease(&self, ip: Ipv4Addr) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(LEASES)?.remove(u32::from(ip))?;
        txn.commit()?;
        Ok(())
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LEASES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(decode("leases", row?.1.value())?);
        }
        Ok(out)
    }

    fn lease_by_ip(&self, ip: Ipv4Addr) -> Result<Option<Lease>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LEASES)?;
        let v = table.get(u32::from(ip))?;
        v.map(|v| decode("leases", v.value())).transpose()
    }

    fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(TOKENS)?
            .insert(hash, encode(record).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TOKENS)?;
        let v = table.get(hash)?;
        v.map(|v| decode("tokens", v.value())).transpose()
    }

    fn has_operator_token(&self) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TOKENS)?;
        for row in table.iter()? {
            let rec: TokenRecord = decode("tokens", row?.1.value())?;
            if rec.role == TokenRole::Operator {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn append_logs(
        &self,
        lines: Vec<(Mac, NewLogLine)>,
        now: Timestamp,
    ) -> Result<Vec<(Mac, LogLine)>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::with_capacity(lines.len());
        {
            let mut logs = txn.open_table(LOGS)?;
            let mut seqs = txn.open_table(LOG_SEQ)?;
            for (mac, line) in lines {
                let k = mac_key(mac);
                let seq = seqs.get(k)?.map(|v| v.value()).unwrap_or(0) + 1;
                seqs.insert(k, seq)?;
                let stored = LogLine { seq, at: now, line };
                logs.insert((k, seq), encode(&stored).as_slice())?;
                if seq > MAX_LINES_PER_MACHINE {
                    logs.remove((k, seq - MAX_LINES_PER_MACHINE))?;
                }
                out.push((mac, stored));
            }
        }
        txn.commit()?;
        Ok(out)
    }

    fn logs(&self, mac: Mac, after: u64, limit: usize) -> Result<Vec<LogLine>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        let k = mac_key(mac);
        let mut out = Vec::new();
        for row in table
            .range((k, after.saturating_add(1))..=(k, u64::MAX))?
            .take(limit)
        {
            out.push(decode("logs", row?.1.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "redb_store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "redb_store_uuid_tests.rs"]
mod uuid_tests;
