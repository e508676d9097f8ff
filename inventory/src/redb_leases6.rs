//! The DHCPv6 lease table (`leases6`: IPv6 address as u128 → [`Lease6`], JSON) in the lease
//! file beside the IPv4 leases (`redb_leases.rs`): one group-committed write per batch of
//! Replies, so a Reply is sent only once its binding is on disk. A claim reads and writes in one
//! write transaction (redb serializes them), so two claims of one address never both win.

use std::net::Ipv6Addr;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::reopen::RedbFile;
use super::{decode, encode, Db};
use crate::lease6::claim_outcome6;
use crate::{Claim6, Lease6, Result, Timestamp};

/// The DHCPv6 lease table.
const BINDINGS6: TableDefinition<u128, &[u8]> = TableDefinition::new("leases6");

pub(super) fn all(db: &Database) -> Result<Vec<Lease6>> {
    let txn = db.begin_read().db()?;
    let table = match txn.open_table(BINDINGS6) {
        Ok(t) => t,
        // Created by the first write: a lease file from before DHCPv6 has none.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e).db(),
    };
    let mut out = Vec::with_capacity(table.len().db()? as usize);
    for row in table.iter().db()? {
        out.push(decode("leases6", row.db()?.1.value())?);
    }
    Ok(out)
}

pub(super) fn put(file: &RedbFile, leases: &[Lease6]) -> Result<()> {
    file.write(|db, group| {
        let txn = group.begin(db)?;
        {
            let mut table = txn.open_table(BINDINGS6).db()?;
            for l in leases {
                table.insert(u128::from(l.ip), encode(l).as_slice()).db()?;
            }
        }
        group.commit(db, txn)
    })
}

pub(super) fn remove(file: &RedbFile, ip: Ipv6Addr) -> Result<()> {
    file.write(|db, group| {
        let txn = group.begin(db)?;
        txn.open_table(BINDINGS6)
            .db()?
            .remove(u128::from(ip))
            .db()?;
        group.commit(db, txn)
    })
}

pub(super) fn claim(file: &RedbFile, leases: &[Lease6], now: Timestamp) -> Result<Vec<Claim6>> {
    file.write(|db, group| {
        let txn = group.begin(db)?;
        let mut out = Vec::with_capacity(leases.len());
        {
            let mut table = txn.open_table(BINDINGS6).db()?;
            for want in leases {
                let key = u128::from(want.ip);
                let held: Option<Lease6> = match table.get(key).db()? {
                    Some(v) => Some(decode("leases6", v.value())?),
                    None => None,
                };
                let claim = claim_outcome6(want, held.as_ref(), now);
                if claim == Claim6::Granted {
                    table.insert(key, encode(want).as_slice()).db()?;
                }
                out.push(claim);
            }
        }
        group.commit(db, txn)?;
        Ok(out)
    })
}
