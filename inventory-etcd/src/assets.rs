//! The shared asset catalogue: one record per boot asset any server imported, under
//! `P/asset/<64 hex>`, so that a server lacking the file knows it exists (its name, size and
//! kind) and fetches it from a peer by digest (provisioner `asset_peers`). The files themselves
//! stay in each server's data directory. Records are opaque bytes here (the provisioner's JSON);
//! each change appends its [`EventKind::Asset`] in the same transaction, so every server's
//! event follower hears of it.

use inventory::event::{Event, EventKind, NewEvent};
use inventory::{Result, Timestamp};

use crate::keys::prefix_end;
use crate::EtcdStore;

impl EtcdStore {
    /// Stores `record` for the asset `hex` (64 lower-case hex digits) and appends an `imported`
    /// event, both in one transaction; a record already there (the same bytes, imported earlier,
    /// here or elsewhere) is kept and nothing is written.
    pub fn put_asset_record(
        &self,
        hex: &str,
        name: &str,
        record: &[u8],
        now: Timestamp,
    ) -> Result<Vec<Event>> {
        let key = self.keys.asset(hex);
        let ((), events) = self.write(now, |tx| {
            if tx.get(&key)?.is_some() {
                return Ok(((), Vec::new()));
            }
            tx.put(key.clone(), record.to_vec());
            Ok(((), vec![asset_event(hex, name, "imported")]))
        })?;
        Ok(events)
    }

    /// The record of asset `hex`, if any server imported it.
    pub fn asset_record(&self, hex: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.conn.get(self.keys.asset(hex))?.0)
    }

    /// Every asset record, by digest.
    pub fn asset_records(&self) -> Result<Vec<Vec<u8>>> {
        let start = self.keys.table("asset");
        let (kvs, _) = self.conn.range(start.clone(), prefix_end(&start), None)?;
        Ok(kvs.into_iter().map(|(_, v)| v).collect())
    }

    /// Removes the record of asset `hex` and appends a `removed` event (one transaction);
    /// `false` when there was none.
    pub fn remove_asset_record(&self, hex: &str, name: &str, now: Timestamp) -> Result<bool> {
        let key = self.keys.asset(hex);
        let (found, _) = self.write(now, |tx| {
            if tx.get(&key)?.is_none() {
                return Ok((false, Vec::new()));
            }
            tx.delete(key.clone());
            Ok((true, vec![asset_event(hex, name, "removed")]))
        })?;
        Ok(found)
    }
}

fn asset_event(hex: &str, name: &str, action: &str) -> NewEvent {
    NewEvent::global(EventKind::Asset {
        digest: format!("sha256:{hex}"),
        name: name.into(),
        action: action.into(),
    })
}
