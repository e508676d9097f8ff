//! [`EtcdStore`]'s events, watch, leases and logs.
//!
//! Batches that can grow without bound (events from the batched event writer, a group of lease
//! claims, a burst of log lines) are written in consecutive transactions of a bounded size,
//! each all-or-nothing, so they stay within etcd's default `--max-txn-ops` (128): a batch
//! never fails for its size. Sequence numbers stay gap-free, and each claim is still decided
//! and written in one transaction.

use std::time::Duration;

use etcd_client::{Txn, TxnOp};
use inventory::event::{Event, EventQuery, NewEvent};
use inventory::lease::{claim_outcome, Claim};
use inventory::log::{LogLine, NewLogLine, MAX_LINES_PER_MACHINE};
use inventory::{Lease, Mac, Result, Timestamp};

use crate::feed::{parse_seq, RECHECK};
use crate::keys::prefix_end;
use crate::store::{decode, decode_mac, encode, EtcdStore};
use crate::txn::PAGE;

/// Events per transaction (plus the counter: 101 operations).
pub const EVENTS_PER_TXN: usize = 100;
/// Lease claims per transaction (two compares and one put each).
pub const CLAIMS_PER_TXN: usize = 40;
/// Log lines per transaction (a put, maybe a delete and a counter each).
pub const LOG_LINES_PER_TXN: usize = 40;

impl EtcdStore {
    pub(crate) fn append_events_chunked(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(events.len());
        for chunk in events.chunks(EVENTS_PER_TXN) {
            let ((), stored) = self.write(now, |_| Ok(((), chunk.to_vec())))?;
            out.extend(stored);
        }
        Ok(out)
    }

    pub(crate) fn events_matching(&self, q: &EventQuery) -> Result<Vec<Event>> {
        let end = prefix_end(&self.keys.table("ev"));
        let mut from = self.keys.event(q.after.saturating_add(1));
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if q.mac.is_none() {
            let (kvs, _) = self.conn.range(from, end, q.limit)?;
            return kvs.iter().map(|(_, v)| decode("events", v)).collect();
        }
        // By machine: scan page by page, keeping that machine's events.
        while out.len() < limit {
            let (kvs, _) = self.conn.range(from, end.clone(), Some(PAGE as usize))?;
            let Some((last, _)) = kvs.last() else { break };
            from = last.clone();
            from.push(0);
            for (_, v) in &kvs {
                let e: Event = decode("events", v)?;
                if e.mac == q.mac && out.len() < limit {
                    out.push(e);
                }
            }
            if kvs.len() < PAGE as usize {
                break;
            }
        }
        Ok(out)
    }

    /// Waits on the in-process signal (fed by etcd's watch), reading the counter itself every
    /// [`RECHECK`] in case the watch is down. The time spent reading is not counted (the
    /// inventory reads no clock), as in `inventory::watch::poll_events_after`.
    pub(crate) fn wait_after(&self, after: u64, timeout: Duration) -> Result<u64> {
        let mut waited = Duration::ZERO;
        loop {
            let last = inventory::Store::last_event_seq(self)?;
            if last > after || waited >= timeout {
                return Ok(last);
            }
            let step = RECHECK.min(timeout - waited);
            let last = self.signal.wait_after(after, step);
            if last > after {
                return Ok(last);
            }
            waited += step;
        }
    }

    pub(crate) fn put_leases_chunked(&self, leases: &[Lease]) -> Result<()> {
        for chunk in leases.chunks(EVENTS_PER_TXN) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|l| TxnOp::put(self.keys.lease(l.ip), encode(l), None))
                .collect();
            self.conn.block(move |mut c| {
                let ops = ops.clone();
                async move {
                    c.txn(Txn::new().and_then(ops)).await?;
                    Ok(())
                }
            })?;
        }
        Ok(())
    }

    pub(crate) fn claim_leases_chunked(
        &self,
        leases: &[Lease],
        now: Timestamp,
    ) -> Result<Vec<Claim>> {
        let mut out = Vec::with_capacity(leases.len());
        for chunk in leases.chunks(CLAIMS_PER_TXN) {
            let claims = self.conn.transact(|tx| {
                // Every key the claims read, in one round trip.
                tx.prefetch(
                    chunk
                        .iter()
                        .flat_map(|w| [self.keys.reservation(w.ip), self.keys.lease(w.ip)])
                        .collect(),
                )?;
                let mut claims = Vec::with_capacity(chunk.len());
                for want in chunk {
                    let res = tx.get(&self.keys.reservation(want.ip))?;
                    let reserved_for = match res {
                        Some(v) => Some(decode_mac("reservations", &v)?),
                        None => None,
                    };
                    let key = self.keys.lease(want.ip);
                    let held: Option<Lease> = match tx.get(&key)? {
                        Some(v) => Some(decode("leases", &v)?),
                        None => None,
                    };
                    let claim = claim_outcome(want, held.as_ref(), reserved_for, now);
                    if claim == Claim::Granted {
                        tx.put(key, encode(want));
                        tx.put(
                            self.keys.lease_of_mac(want.mac),
                            want.ip.to_string().into_bytes(),
                        );
                    }
                    claims.push(claim);
                }
                Ok(claims)
            })?;
            out.extend(claims);
        }
        Ok(out)
    }

    pub(crate) fn append_logs_chunked(
        &self,
        lines: Vec<(Mac, NewLogLine)>,
        now: Timestamp,
    ) -> Result<Vec<(Mac, LogLine)>> {
        let mut out = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(LOG_LINES_PER_TXN) {
            let stored = self.conn.transact(|tx| {
                let mut stored = Vec::with_capacity(chunk.len());
                for (mac, line) in chunk {
                    let counter = self.keys.log_seq(*mac);
                    let seq = parse_seq(tx.get(&counter)?.as_deref()) + 1;
                    tx.put(counter, seq.to_string().into_bytes());
                    let l = LogLine {
                        seq,
                        at: now,
                        line: line.clone(),
                    };
                    tx.put(self.keys.log(*mac, seq), encode(&l));
                    if seq > MAX_LINES_PER_MACHINE {
                        tx.delete(self.keys.log(*mac, seq - MAX_LINES_PER_MACHINE));
                    }
                    stored.push((*mac, l));
                }
                Ok(stored)
            })?;
            out.extend(stored);
        }
        Ok(out)
    }

    pub(crate) fn logs_after(&self, mac: Mac, after: u64, limit: usize) -> Result<Vec<LogLine>> {
        let start = self.keys.log(mac, after.saturating_add(1));
        let end = prefix_end(&self.keys.log_prefix(mac));
        let (kvs, _) = self.conn.range(start, end, Some(limit))?;
        kvs.iter().map(|(_, v)| decode("logs", v)).collect()
    }
}
