//! Waiting for new events: the watch half of the store contract
//! ([`crate::Store::wait_for_events_after`]).
//!
//! A store shared by several processes cannot notify across them, so the contract is stated in
//! terms of the store's own sequence number: "return once an event with `seq > after` is
//! committed, or when `timeout` has passed". Backends inside one process wake waiters at once
//! with an `EventSignal`; others fall back to [`poll_events_after`], which reads the last
//! sequence number (one cheap point read) at a short interval.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::Result;

/// How often [`poll_events_after`] reads the last sequence number.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The last committed event sequence number of one in-process store, with a condition variable
/// that wakes every waiter when it grows. Starts at 0; the store publishes its last sequence
/// number when it opens. Public for backends in other crates (the etcd store feeds it from
/// etcd's watch).
#[derive(Debug, Default)]
pub struct EventSignal {
    /// Highest sequence number known committed (published after the commit returned).
    last: Mutex<u64>,
    /// Signalled whenever `last` grows.
    grew: Condvar,
}

impl EventSignal {
    /// Records that events up to `seq` are committed and wakes the waiters. Commits may
    /// publish out of order; the signal keeps the highest.
    pub fn publish(&self, seq: u64) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if seq > *last {
            *last = seq;
            self.grew.notify_all();
        }
    }

    /// Blocks until the last sequence number exceeds `after` or `timeout` passes; returns the
    /// last sequence number then.
    pub fn wait_after(&self, after: u64, timeout: Duration) -> u64 {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, _) = self
            .grew
            .wait_timeout_while(last, timeout, |last| *last <= after)
            .unwrap_or_else(PoisonError::into_inner);
        *last
    }
}

/// The watch for any store: reads `last_seq` every [`POLL_INTERVAL`] until it exceeds `after`
/// or about `timeout` has been spent waiting (the time of the reads themselves is not counted:
/// the inventory reads no clock). Returns the last sequence number read.
pub fn poll_events_after(
    last_seq: impl Fn() -> Result<u64>,
    after: u64,
    timeout: Duration,
) -> Result<u64> {
    let mut waited = Duration::ZERO;
    loop {
        let last = last_seq()?;
        if last > after || waited >= timeout {
            return Ok(last);
        }
        let step = POLL_INTERVAL.min(timeout - waited);
        std::thread::sleep(step);
        waited += step;
    }
}
