//! Group commit for redb: many writers, one fsync.
//!
//! A boot storm makes thousands of small, independent writes (a machine starts booting, reports
//! progress, registers). With `Durability::Immediate` each one is an fsync (two page flushes,
//! ~2–8 ms on a virtual disk), and redb serializes write transactions, so they queue behind one
//! another: a storm's register phase became a queue of fsyncs. Here each writer commits with
//! `Durability::None` (its changes reach redb's in-memory state in microseconds) and then waits
//! until an empty `Durability::Immediate` commit has covered it: redb persists every earlier
//! non-durable commit with the next durable one ("commits with this durability level will not be
//! persisted to disk unless followed by a commit with a higher durability level", redb's
//! `Durability` docs). The first waiter that finds no flush running makes it; the writers that
//! commit while it runs are covered by the next one. So a method still returns only once its
//! write is on disk, and N concurrent writers cost about two fsyncs, not N. A writer alone (no
//! other writer waiting for the file, nothing pending) commits durably at once, as before: one
//! commit, not two, when there is nothing to share.
//!
//! What changes for readers: a write is visible to other transactions in this process a moment
//! before it is durable (from its non-durable commit until the flush). Nothing is acknowledged in
//! that window: the writer's caller gets its answer after the flush. If the flush fails (disk
//! full, I/O error), every writer it would have covered gets that flush's error. redb then
//! refuses the handle until it is re-opened (`redb_reopen.rs`), which rolls back the commits
//! that were never made durable; since a failed fsync may still have reached the disk, an error
//! from a write means "maybe not stored", as a timeout would.

use std::ops::Deref;
use std::sync::{Condvar, Mutex, MutexGuard};

use redb::{Database, Durability, WriteTransaction};

use crate::redb_store::reopen::{again, engine_error};
use crate::{Error, Result};

/// Makes non-durable commits durable together; one per redb [`Database`].
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    flushed: Condvar,
}

/// A write transaction begun through [`GroupCommit::begin`]; dropping it without
/// [`GroupCommit::commit`] aborts it.
pub(crate) struct Writing<'a> {
    /// `None` once [`GroupCommit::commit`] has taken it.
    txn: Option<WriteTransaction>,
    group: &'a GroupCommit,
}

impl Deref for Writing<'_> {
    type Target = WriteTransaction;
    fn deref(&self) -> &WriteTransaction {
        self.txn
            .as_ref()
            .expect("a Writing is only used before its commit")
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.group.lock().writers -= 1;
    }
}

#[derive(Debug, Default)]
struct State {
    /// Writers between [`GroupCommit::begin`] and the end of their commit (holding or waiting
    /// for the file's write lock).
    writers: usize,
    /// Non-durable commits made so far (numbered from 1).
    committed: u64,
    /// Every commit numbered up to this one is on disk.
    durable: u64,
    /// A writer is making a durable commit now.
    flushing: bool,
    /// Durable commits made, flushes and lone writers' own (for tests: fewer than writes when
    /// writers overlap).
    durable_commits: u64,
    /// The last flush that failed: every commit numbered up to the first field was to be made
    /// durable by it, and its writers get its error (the second field), not a later one.
    failed: Option<(u64, Error)>,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Begins a write transaction on `db` (waiting for redb's write lock). Errors: redb's, as
    /// [`Error::Storage`].
    pub(crate) fn begin<'a>(&'a self, db: &Database) -> Result<Writing<'a>> {
        self.lock().writers += 1;
        match db.begin_write() {
            Ok(txn) => Ok(Writing {
                txn: Some(txn),
                group: self,
            }),
            Err(e) => {
                self.lock().writers -= 1;
                Err(engine_error(e))
            }
        }
    }

    /// Commits `w` and returns once it is durable (see the module docs). Errors: the commit's
    /// or the flush's, as [`Error::Storage`] or [`Error::DiskFull`].
    pub(crate) fn commit(&self, db: &Database, mut w: Writing<'_>) -> Result<()> {
        // Our number is taken before the commit, so a durable commit of ours covers every commit
        // numbered before it (each was counted after it committed, so before ours began).
        let (mine, alone) = {
            let mut s = self.lock();
            s.committed += 1;
            let alone = s.writers == 1 && !s.flushing && s.durable + 1 == s.committed;
            (s.committed, alone)
        };
        // `w` keeps counting us as a writer until our commit is over.
        let mut txn = w.txn.take().expect("committed once");
        if alone {
            txn.commit().map_err(engine_error)?;
            let mut s = self.lock();
            s.durable = s.durable.max(mine);
            s.durable_commits += 1;
            return Ok(());
        }
        txn.set_durability(Durability::None)
            .map_err(|e| Error::Storage(e.to_string()))?;
        txn.commit().map_err(engine_error)?;
        drop(w);
        self.wait_durable(db, mine)
    }

    fn wait_durable(&self, db: &Database, mine: u64) -> Result<()> {
        let mut s = self.lock();
        loop {
            if s.durable >= mine {
                return Ok(());
            }
            // The flush meant to cover us failed: its error is ours (a flush of our own would
            // only meet redb's "previous I/O error" on the failed handle).
            if let Some((upto, e)) = &s.failed {
                if *upto >= mine {
                    return Err(again(e));
                }
            }
            if s.flushing {
                s = self.flushed.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead a flush covering every commit counted so far (each finished its commit
            // before it was counted, so the durable commit that starts after this includes it).
            s.flushing = true;
            let target = s.committed;
            drop(s);
            let flushed = db
                .begin_write()
                .map_err(engine_error)
                .and_then(|t| t.commit().map_err(engine_error));
            s = self.lock();
            s.flushing = false;
            match &flushed {
                Ok(()) => {
                    s.durable = s.durable.max(target);
                    s.durable_commits += 1;
                }
                Err(e) => s.failed = Some((target, again(e))),
            }
            self.flushed.notify_all();
            flushed?;
        }
    }

    /// Durable commits made so far (flushes and lone writers' commits).
    #[cfg(test)]
    pub(crate) fn durable_commits(&self) -> u64 {
        self.lock().durable_commits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
    use std::sync::Arc;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    #[test]
    fn concurrent_writers_share_flushes_and_all_see_their_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("g.redb")).unwrap());
        let group = Arc::new(GroupCommit::default());
        let writers: Vec<_> = (0..16u64)
            .map(|w| {
                let (db, group) = (db.clone(), group.clone());
                std::thread::spawn(move || {
                    for i in 0..20u64 {
                        let txn = group.begin(&db).unwrap();
                        txn.open_table(T).unwrap().insert(w * 100 + i, i).unwrap();
                        group.commit(&db, txn).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let r = db.begin_read().unwrap();
        assert_eq!(r.open_table(T).unwrap().len().unwrap(), 320);
        let fsyncs = group.durable_commits();
        assert!(fsyncs < 320, "{fsyncs} durable commits for 320 writes");
    }
}
