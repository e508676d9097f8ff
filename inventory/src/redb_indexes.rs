//! The secondary indexes of [`super::RedbStore`] and the schema migrations that build them.
//! Every index is written in the transaction that writes the machine it indexes:
//! `reservations` (address → MAC), `uuids` (SMBIOS UUID → MAC, unique) and `machine_ids`
//! (registration machine-id → MACs, a multimap: clones of one image share a machine-id).

use redb::{ReadableTable, WriteTransaction};

use super::{decode, encode, key_mac, mac_key, Db, AMBIGUOUS, MACHINES, MACHINE_IDS, UUIDS};
use crate::event::NewEvent;
use crate::{Error, Mac, Machine, Result};

/// Upgrades the tables from `from` to [`SCHEMA_VERSION`] inside the opening transaction.
pub(super) fn migrate(txn: &WriteTransaction, from: u64) -> Result<()> {
    // 0: a new, empty file: every table is created by the caller, nothing to build.
    if from == 0 {
        return Ok(());
    }
    let machines: Vec<Machine> = {
        let table = txn.open_table(MACHINES).db()?;
        let mut out = Vec::new();
        for row in table.iter().db()? {
            out.push(decode("machines", row.db()?.1.value())?);
        }
        out
    };
    if from < 2 {
        // 1 → 2: index the UUIDs. Duplicates (possible before) are marked ambiguous, so a
        // look-up by them fails instead of picking one; the operator is told which machines.
        let mut uuids = txn.open_table(UUIDS).db()?;
        for m in &machines {
            if let Some(u) = &m.spec.uuid {
                let held = uuids.get(u.as_str()).db()?.map(|v| v.value());
                let value = if held.is_some() {
                    AMBIGUOUS
                } else {
                    mac_key(m.mac)
                };
                uuids.insert(u.as_str(), value).db()?;
            }
        }
    }
    if from < 3 {
        // 2 → 3: index registration machine-ids (several machines may share one).
        for m in &machines {
            index_machine_id(txn, m, None)?;
        }
    }
    Ok(())
}

/// Moves the machine-id index entry of `m` from `old`'s registration to `m`'s own (either may
/// have none). Clones share machine-ids, so this never refuses.
pub(super) fn index_machine_id(
    txn: &WriteTransaction,
    m: &Machine,
    old: Option<&Machine>,
) -> Result<()> {
    let id = |m: &Machine| m.registration.as_ref().map(|r| r.machine_id.clone());
    let (before, after) = (old.and_then(id), id(m));
    if before == after {
        return Ok(());
    }
    let mut table = txn.open_multimap_table(MACHINE_IDS).db()?;
    let key = mac_key(m.mac);
    if let Some(b) = before {
        table.remove(b.as_str(), key).db()?;
    }
    if let Some(a) = after {
        table.insert(a.as_str(), key).db()?;
    }
    Ok(())
}

/// Drops the machine-id index entry of a machine being deleted.
pub(super) fn unindex_machine_id(txn: &WriteTransaction, m: &Machine) -> Result<()> {
    if let Some(r) = &m.registration {
        txn.open_multimap_table(MACHINE_IDS)
            .db()?
            .remove(r.machine_id.as_str(), mac_key(m.mac))
            .db()?;
    }
    Ok(())
}

/// The machine stored under `key` when it is `discovered` (not vouched for by an operator).
fn discovered_holder(txn: &WriteTransaction, key: u64) -> Result<Option<Machine>> {
    let table = txn.open_table(MACHINES).db()?;
    let m: Option<Machine> = table
        .get(key)
        .db()?
        .map(|v| decode("machines", v.value()))
        .transpose()?;
    Ok(m.filter(|m| m.state() == crate::State::Discovered))
}

/// Machines holding `uuid`, by a scan (only for UUIDs marked ambiguous).
fn uuid_holders(txn: &WriteTransaction, uuid: &str) -> Result<Vec<Mac>> {
    let table = txn.open_table(MACHINES).db()?;
    let mut out = Vec::new();
    for row in table.iter().db()? {
        let (k, v) = row.db()?;
        let m: Machine = decode("machines", v.value())?;
        if m.spec.uuid.as_deref() == Some(uuid) {
            out.push(key_mac(k.value()));
        }
    }
    Ok(out)
}

/// Moves the UUID index entry of a machine from `old` to `new`; a UUID held by another machine
/// is refused. `old` entries marked ambiguous are recounted once this machine no longer holds it.
pub(super) fn index_uuid(
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
        let held = txn.open_table(UUIDS).db()?.get(u).db()?.map(|v| v.value());
        match held {
            Some(AMBIGUOUS) => {
                return Err(Error::UuidTaken {
                    uuid: u.to_string(),
                    holder: "several machines".into(),
                })
            }
            Some(h) if h != key => {
                let discovered = discovered_holder(txn, h)?;
                let note = crate::store::uuid_handover(
                    u,
                    key_mac(key),
                    vouched,
                    key_mac(h),
                    discovered.is_some(),
                )?;
                let mut claimant = discovered.expect("only a discovered holder hands over");
                claimant.spec.uuid = None;
                txn.open_table(MACHINES)
                    .db()?
                    .insert(h, encode(&claimant).as_slice())
                    .db()?;
                notes.push(note);
            }
            _ => {}
        }
        txn.open_table(UUIDS).db()?.insert(u, key).db()?;
    }
    if let Some(u) = old {
        let held = txn.open_table(UUIDS).db()?.get(u).db()?.map(|v| v.value());
        match held {
            Some(h) if h == key => {
                txn.open_table(UUIDS).db()?.remove(u).db()?;
            }
            Some(AMBIGUOUS) => {
                // The caller writes the machine after this: leave it out of the count.
                let rest: Vec<Mac> = uuid_holders(txn, u)?
                    .into_iter()
                    .filter(|m| mac_key(*m) != key)
                    .collect();
                let mut uuids = txn.open_table(UUIDS).db()?;
                match rest.as_slice() {
                    [] => {
                        uuids.remove(u).db()?;
                    }
                    [one] => {
                        uuids.insert(u, mac_key(*one)).db()?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(notes)
}
