//! The lease file: DHCP bindings in their own redb database next to the inventory file
//! (`inventory.redb` → `inventory.leases.redb`).
//!
//! Why a second file: redb serializes write transactions per database, and an ACK may not leave
//! before its binding is durable (RFC 2131 §4.3.1). With leases in the inventory file, every ACK
//! waited behind whatever wrote the inventory: a 10,000-machine CSV import (one transaction,
//! ~200 ms in a debug build) held all ACKs for its whole commit. With their own writer, lease
//! claims wait only for other lease writes (each a few hundred µs plus an fsync).
//!
//! What this costs: a claim checks reservations in a *snapshot* of the inventory file, and a new
//! reservation checks leases in a snapshot of this one, so a claim and a reservation of the same
//! address racing in the same millisecond can both commit. Neither binds one address to two
//! clients (claims alone decide bindings, atomically within this file); the reserved machine
//! then gets its address once the other client's lease ends, as when it was reserved while leased.
//!
//! Older versions kept leases in the inventory file's `leases` table; [`open`] moves them here
//! (copy, commit, then clear the old table: a crash in between repeats the copy harmlessly).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::reopen::RedbFile;
use super::{decode, encode, key_mac, private_file, Db, LEASES, RESERVATIONS};
use crate::lease::{claim_outcome, Claim};
use crate::{Lease, Result, Timestamp};

/// redb's page cache for the lease file, in bytes (see `INVENTORY_CACHE`): 100,000 leases
/// are about 15 MB.
const LEASE_CACHE: usize = 8 * 1024 * 1024;

/// The lease table of the lease file (IPv4 as u32 → Lease, JSON).
const BINDINGS: TableDefinition<u32, &[u8]> = TableDefinition::new("leases");

/// Where the lease file of the inventory at `inventory` lives: beside it, named after it.
pub fn lease_path(inventory: &Path) -> PathBuf {
    let stem = inventory
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "inventory".into());
    inventory.with_file_name(format!("{stem}.leases.redb"))
}

/// Opens (or creates, mode 0600) the lease file beside `inventory_path` and moves any leases
/// the inventory file `inventory` still holds into it.
pub(super) fn open(inventory_path: &Path, inventory: &Database) -> Result<RedbFile> {
    let path = lease_path(inventory_path);
    private_file(&path)?;
    let db = super::create(&path, LEASE_CACHE)?;
    let old: Vec<(u32, Vec<u8>)> = {
        let txn = inventory.begin_read().db()?;
        let table = txn.open_table(LEASES).db()?;
        let mut out = Vec::new();
        for row in table.iter().db()? {
            let (k, v) = row.db()?;
            out.push((k.value(), v.value().to_vec()));
        }
        out
    };
    let txn = db.begin_write().db()?;
    {
        let mut table = txn.open_table(BINDINGS).db()?;
        for (ip, lease) in &old {
            if table.get(*ip).db()?.is_none() {
                table.insert(*ip, lease.as_slice()).db()?;
            }
        }
    }
    txn.commit().db()?;
    if !old.is_empty() {
        let txn = inventory.begin_write().db()?;
        txn.open_table(LEASES).db()?.retain(|_, _| false).db()?;
        txn.commit().db()?;
    }
    Ok(RedbFile::new(&path, LEASE_CACHE, db))
}

/// Whether an active lease of another client than `mac` holds `ip` (a snapshot read), for a new
/// reservation: the holder keeps the address until its lease ends (RFC 2131 §4.3.1).
pub(super) fn active_holder(
    file: &RedbFile,
    ip: Ipv4Addr,
    now: Timestamp,
) -> Result<Option<Lease>> {
    Ok(file
        .read(|db| get(db, ip))?
        .filter(|l| l.is_active(now) && !l.observed))
}

pub(super) fn get(db: &Database, ip: Ipv4Addr) -> Result<Option<Lease>> {
    let txn = db.begin_read().db()?;
    let table = txn.open_table(BINDINGS).db()?;
    let v = table.get(u32::from(ip)).db()?;
    v.map(|v| decode("leases", v.value())).transpose()
}

pub(super) fn all(db: &Database) -> Result<Vec<Lease>> {
    let txn = db.begin_read().db()?;
    let table = txn.open_table(BINDINGS).db()?;
    let mut out = Vec::with_capacity(table.len().db()? as usize);
    for row in table.iter().db()? {
        out.push(decode("leases", row.db()?.1.value())?);
    }
    Ok(out)
}

pub(super) fn put(file: &RedbFile, leases: &[Lease]) -> Result<()> {
    file.write(|db, group| {
        let txn = group.begin(db)?;
        {
            let mut table = txn.open_table(BINDINGS).db()?;
            for l in leases {
                table.insert(u32::from(l.ip), encode(l).as_slice()).db()?;
            }
        }
        group.commit(db, txn)
    })
}

pub(super) fn remove(file: &RedbFile, ip: Ipv4Addr) -> Result<()> {
    file.write(|db, group| {
        let txn = group.begin(db)?;
        txn.open_table(BINDINGS).db()?.remove(u32::from(ip)).db()?;
        group.commit(db, txn)
    })
}

/// Claims in one lease-file transaction; reservations are read from a snapshot of the
/// inventory file taken first (see the module docs for the one race this allows). The
/// snapshot is taken, and its file's lock released, before the lease file's is taken: calls
/// never hold the lease file's and then wait for the inventory's (`redb_reopen.rs`).
pub(super) fn claim(
    file: &RedbFile,
    inventory: &RedbFile,
    leases: &[Lease],
    now: Timestamp,
) -> Result<Vec<Claim>> {
    let snapshot = inventory.read(|db| db.begin_read().db())?;
    let reservations = snapshot.open_table(RESERVATIONS).db()?;
    file.write(|db, group| {
        let txn = group.begin(db)?;
        let mut out = Vec::with_capacity(leases.len());
        {
            let mut table = txn.open_table(BINDINGS).db()?;
            for want in leases {
                let ip = u32::from(want.ip);
                let held: Option<Lease> = match table.get(ip).db()? {
                    Some(v) => Some(decode("leases", v.value())?),
                    None => None,
                };
                let reserved_for = reservations.get(ip).db()?.map(|v| key_mac(v.value()));
                let claim = claim_outcome(want, held.as_ref(), reserved_for, now);
                if claim == Claim::Granted {
                    table.insert(ip, encode(want).as_slice()).db()?;
                }
                out.push(claim);
            }
        }
        group.commit(db, txn)?;
        Ok(out)
    })
}
