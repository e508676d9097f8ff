//! The connection, the bridge from the synchronous `Store` trait to the async etcd client, and
//! the optimistic transaction every store method runs in.
//!
//! A [`Tx`] remembers every key it read with the key's `mod_revision` (0: absent) and every
//! range it scanned with the revision it was read at, and buffers its writes (reads see them).
//! [`Conn::transact`] commits it as ONE etcd `Txn`: `If` every read key still has its
//! `mod_revision` and no key of a scanned range changed since, `Then` the writes. A failed
//! compare means another writer got there first: the whole method runs again on fresh reads
//! (etcd's own "STM" pattern). So each method is serializable, and all-or-nothing.
//!
//! etcd limits one `Txn` to `--max-txn-ops` compares and as many operations (default 128) and
//! one request to `--max-request-bytes` (default 1.5 MiB); a transaction past those fails with
//! an error naming the flag (see the README's "High availability (etcd)").

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::mpsc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use crate::endpoints::Endpoints;
use inventory::{Error, Result};

/// How often a conflicting transaction is tried before the call fails.
pub const MAX_ATTEMPTS: u32 = 200;
/// Keys read per page by range scans (bounded gRPC messages whatever the table size).
pub const PAGE: i64 = 1000;

/// The members' clients, the runtime they run on, and the bound on each call.
#[derive(Clone)]
pub struct Conn {
    /// One client per member, with failover ([`crate::endpoints`]).
    pub pool: std::sync::Arc<Endpoints>,
    /// The store's own runtime: every call is spawned there, so the caller's thread needs no
    /// runtime of its own (and may even be inside another one).
    pub handle: tokio::runtime::Handle,
    /// Bound on each call.
    pub timeout: Duration,
    /// The endpoints, for error messages.
    pub endpoints: String,
}

impl Conn {
    /// Runs `call` on the store's runtime and waits for it, at most [`Conn::timeout`]; a
    /// member that cannot serve is failed over (so `call` may run more than once, each time
    /// with another member's client).
    pub fn block<T, F, Fut>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>> + Send + 'static,
    {
        let timeout = self.timeout;
        let pool = self.pool.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let _ = tx.send(tokio::time::timeout_at(deadline, pool.call(&call, deadline)).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(self.failed(&e)),
            Ok(Err(_)) => Err(Error::Unavailable(format!(
                "etcd at {} did not answer within {:?} (the store's timeout){}",
                self.endpoints,
                timeout,
                self.pool
                    .last_error()
                    .map_or(String::new(), |e| format!("; last error: {e}"))
            ))),
            Err(_) => Err(Error::Storage("etcd client runtime stopped".into())),
        }
    }

    /// An etcd error as the inventory's, with advice for etcd's size limits.
    fn failed(&self, e: &etcd_client::Error) -> Error {
        let text = e.to_string();
        let advice = if text.contains("too many operations in txn request") {
            ": this write needs more operations in one transaction than etcd's --max-txn-ops allows (default 128); start every member with a higher --max-txn-ops (e.g. 10000) or write smaller batches"
        } else if text.contains("request is too large")
            || text.contains("message length too large")
            || text.contains("received message larger than max")
        {
            ": this write is larger than etcd's --max-request-bytes (default 1.5 MiB); raise it on every member or write smaller batches"
        } else {
            ""
        };
        let message = format!("etcd at {}: {text}{advice}", self.endpoints);
        if crate::endpoints::unavailable(e) {
            Error::Unavailable(message)
        } else {
            Error::Storage(message)
        }
    }

    /// One key's value and `mod_revision` (0 when absent).
    pub fn get(&self, key: Vec<u8>) -> Result<(Option<Vec<u8>>, i64)> {
        self.block(move |mut c| {
            let key = key.clone();
            async move {
                let mut r = c.get(key, None).await?;
                Ok(match r.take_kvs().into_iter().next() {
                    Some(kv) => (Some(kv.value().to_vec()), kv.mod_revision()),
                    None => (None, 0),
                })
            }
        })
    }

    /// Keys and values in `[start, end)`, in key order, at most `limit` (`None`: all), read page
    /// by page at one revision (a consistent snapshot); also returns that revision.
    #[allow(clippy::type_complexity)]
    pub fn range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: Option<usize>,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, i64)> {
        let mut out = Vec::new();
        if limit == Some(0) {
            return Ok((out, 0));
        }
        let mut from = start;
        let mut revision = 0;
        loop {
            let want = limit.map_or(PAGE, |l| PAGE.min((l - out.len()) as i64));
            let (e, rev, start_key) = (end.clone(), revision, from.clone());
            let (page, more, rev) = self.block(move |mut c| {
                let (e, from) = (e.clone(), start_key.clone());
                async move {
                    let mut opts = GetOptions::new().with_range(e).with_limit(want);
                    if rev > 0 {
                        opts = opts.with_revision(rev);
                    }
                    let mut r = c.get(from, Some(opts)).await?;
                    let rev = r.header().map_or(0, |h| h.revision());
                    let more = r.more();
                    let kvs: Vec<_> = r
                        .take_kvs()
                        .into_iter()
                        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                        .collect();
                    Ok((kvs, more, rev))
                }
            })?;
            if revision == 0 {
                revision = rev;
            }
            let last = page.last().map(|(k, _)| k.clone());
            out.extend(page);
            let full = limit.is_some_and(|l| out.len() >= l);
            match last {
                Some(mut k) if more && !full => {
                    k.push(0);
                    from = k;
                }
                _ => return Ok((out, revision)),
            }
        }
    }

    /// Runs `body` in an optimistic transaction and commits it (see the module documentation),
    /// again on conflict, at most [`MAX_ATTEMPTS`] times. Returns the body's value.
    pub fn transact<T>(&self, mut body: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        for attempt in 0..MAX_ATTEMPTS {
            let mut tx = Tx {
                conn: self,
                reads: HashMap::new(),
                ranges: Vec::new(),
                writes: BTreeMap::new(),
            };
            let value = body(&mut tx)?;
            if tx.commit()? {
                return Ok(value);
            }
            // Another writer won: back off a little, with jitter, so racing writers spread.
            let cap = u64::from(attempt.min(10)) + 1;
            let jitter = std::collections::hash_map::RandomState::new().hash_one(attempt) % cap;
            std::thread::sleep(Duration::from_millis(jitter));
        }
        Err(Error::Storage(format!(
            "etcd at {}: a transaction conflicted with other writers {MAX_ATTEMPTS} times in a row",
            self.endpoints
        )))
    }
}

/// One optimistic transaction in progress (see the module documentation).
pub struct Tx<'a> {
    conn: &'a Conn,
    /// Key → (value, `mod_revision`) as first read.
    reads: HashMap<Vec<u8>, (Option<Vec<u8>>, i64)>,
    /// Scanned ranges `[start, end)` and the revision they were read at.
    ranges: Vec<(Vec<u8>, Vec<u8>, i64)>,
    /// Buffered writes: `Some` puts, `None` deletes.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Tx<'_> {
    /// A key's value as this transaction sees it (its own writes first).
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        if let Some((v, _)) = self.reads.get(key) {
            return Ok(v.clone());
        }
        let (v, rev) = self.conn.get(key.to_vec())?;
        self.reads.insert(key.to_vec(), (v.clone(), rev));
        Ok(v)
    }

    /// Reads `keys` this transaction has not read yet in ONE round trip (an etcd `Txn` of
    /// gets), remembering each with its `mod_revision` as [`Tx::get`] does; later `get`s of
    /// them cost nothing. For methods that read many keys (a batch of lease claims), so that
    /// etcd's latency is paid once, not once per key.
    pub fn prefetch(&mut self, keys: Vec<Vec<u8>>) -> Result<()> {
        let mut keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|k| !self.reads.contains_key(k) && !self.writes.contains_key(k))
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        let want = keys.clone();
        let got = self.conn.block(move |mut c| {
            let ops: Vec<TxnOp> = want.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
            async move {
                let r = c.txn(Txn::new().and_then(ops)).await?;
                Ok(r.op_responses()
                    .into_iter()
                    .map(|op| match op {
                        etcd_client::TxnOpResponse::Get(g) => {
                            g.kvs().first().map_or((None, 0), |kv| {
                                (Some(kv.value().to_vec()), kv.mod_revision())
                            })
                        }
                        _ => (None, 0),
                    })
                    .collect::<Vec<_>>())
            }
        })?;
        if got.len() != keys.len() {
            return Err(Error::Storage(format!(
                "etcd at {}: {} answers to {} reads in one transaction",
                self.conn.endpoints,
                got.len(),
                keys.len()
            )));
        }
        for (k, v) in keys.into_iter().zip(got) {
            self.reads.insert(k, v);
        }
        Ok(())
    }

    /// Values of the keys in `[start, end)`, in key order, as stored when read (the commit
    /// fails if any key in the range changes or appears meanwhile). Buffered writes are not
    /// merged in: scan before writing.
    pub fn scan(&mut self, start: Vec<u8>, end: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (kvs, rev) = self.conn.range(start.clone(), end.clone(), None)?;
        self.ranges.push((start, end, rev));
        Ok(kvs)
    }

    /// Buffers a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Buffers a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Commits: `Ok(false)` when a compare failed (retry).
    fn commit(self) -> Result<bool> {
        let mut compares = Vec::with_capacity(self.reads.len() + self.ranges.len());
        for (key, (_, rev)) in &self.reads {
            compares.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *rev));
        }
        for (start, end, rev) in &self.ranges {
            // Every key in the range last modified at or before the scan: nothing changed or
            // appeared (deletions inside a scanned range are not caught; no method depends on
            // them).
            compares.push(
                Compare::mod_revision(start.clone(), CompareOp::Less, rev + 1)
                    .with_range(end.clone()),
            );
        }
        let mut ops = Vec::with_capacity(self.writes.len());
        for (key, value) in self.writes {
            let unchanged = self.reads.get(&key).is_some_and(|(v, _)| *v == value);
            match value {
                _ if unchanged => {}
                Some(v) => ops.push(TxnOp::put(key, v, None)),
                None => ops.push(TxnOp::delete(key, None)),
            }
        }
        if ops.is_empty() {
            // Nothing to write: the reads need no validation.
            return Ok(true);
        }
        let txn = Txn::new().when(compares).and_then(ops);
        self.conn.block(move |mut c| {
            let txn = txn.clone();
            async move { Ok(c.txn(txn).await?.succeeded()) }
        })
    }
}
