//! Every per-packet observation (a `seen` event, a note such as "no address free") passes here
//! before it becomes an event, so no client — nor a flood of made-up ones — can grow the event
//! history faster than these limits allow (issue 18, item 8). Sans-IO: the caller passes the time.
//!
//! - A stranger (a MAC the inventory does not know): one event per MAC and topic per
//!   [`STRANGER_WINDOW_MS`], at most [`CAPACITY`] keys remembered, and all strangers together at
//!   most [`STRANGER_BURST`] events at once and [`STRANGER_PER_MINUTE`] a minute after that.
//! - A machine of the inventory: the same observation (same text) at most once per
//!   [`INVENTORY_WINDOW_MS`]; a PXE loop or a spoofed registered MAC cannot flood its history.
//!
//! What is not recorded is counted (`provisioner_dhcp_events_suppressed_total`).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use inventory::{EventKind, Mac, Timestamp};

use crate::rate::TokenBucket;

/// One event per stranger MAC and topic per this long.
pub const STRANGER_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Keys remembered at most per limiter; beyond it (after forgetting expired ones) new keys go
/// unrecorded until the window passes — they are still counted in the DHCP metrics.
pub const CAPACITY: usize = 10_000;
/// Events about strangers at once, all MACs together…
pub const STRANGER_BURST: u32 = 100;
/// …and per minute after the burst.
pub const STRANGER_PER_MINUTE: u32 = 30;
/// The same observation of an inventory machine at most once per this long.
pub const INVENTORY_WINDOW_MS: u64 = 60 * 1000;
/// Keys remembered for inventory machines (a few topics per machine of a large inventory).
pub const INVENTORY_CAPACITY: usize = 100_000;

/// At most one event per (MAC, topic) per window, in bounded memory, optionally under a shared
/// budget for all keys together.
#[derive(Debug)]
pub struct SeenLimiter {
    last: HashMap<(Mac, u64), Timestamp>,
    window_ms: u64,
    capacity: usize,
    budget: Option<TokenBucket>,
}

impl SeenLimiter {
    /// A limiter allowing one event per key per `window_ms` milliseconds, remembering at most
    /// `capacity` keys, and, with `budget`, taking one token of it per event allowed.
    pub fn new(window_ms: u64, capacity: usize, budget: Option<TokenBucket>) -> SeenLimiter {
        SeenLimiter {
            last: HashMap::new(),
            window_ms,
            capacity,
            budget,
        }
    }

    /// Whether an event about `mac` on `topic` may be recorded now (and notes that it was).
    pub fn allow(&mut self, mac: Mac, topic: u64, now: Timestamp) -> bool {
        let window = self.window_ms;
        let fresh = |t: &Timestamp| now.0.saturating_sub(t.0) < window;
        let key = (mac, topic);
        if self.last.get(&key).is_some_and(fresh) {
            return false;
        }
        if self.last.len() >= self.capacity && !self.last.contains_key(&key) {
            self.last.retain(|_, t| fresh(t));
            if self.last.len() >= self.capacity {
                return false;
            }
        }
        if let Some(b) = &mut self.budget {
            if !b.take(now) {
                return false;
            }
        }
        self.last.insert(key, now);
        true
    }

    /// Keys remembered (expired ones are forgotten only when the limiter is full).
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// The topic of an observation: what it says, so a repeated message is one event and a new one
/// is recorded. With `seen_detail` unset, all `seen` events of one channel share a topic.
pub fn topic(kind: &EventKind, seen_detail: bool) -> u64 {
    let mut h = DefaultHasher::new();
    match kind {
        EventKind::Seen { via, detail } => {
            ("seen", via).hash(&mut h);
            if seen_detail {
                detail.hash(&mut h);
            }
        }
        EventKind::Note { message } => ("note", message).hash(&mut h),
        other => format!("{other:?}").hash(&mut h),
    }
    h.finish()
}

/// The two limiters DHCP observations pass through.
#[derive(Debug)]
pub struct Observations {
    /// MACs the inventory does not know: [`STRANGER_WINDOW_MS`], [`CAPACITY`], and a budget of
    /// [`STRANGER_BURST`] then [`STRANGER_PER_MINUTE`] for all of them together.
    pub strangers: SeenLimiter,
    /// Machines of the inventory: [`INVENTORY_WINDOW_MS`] and [`INVENTORY_CAPACITY`], no budget.
    pub inventory: SeenLimiter,
}

impl Default for Observations {
    fn default() -> Self {
        Observations {
            strangers: SeenLimiter::new(
                STRANGER_WINDOW_MS,
                CAPACITY,
                Some(TokenBucket::new(STRANGER_BURST, STRANGER_PER_MINUTE)),
            ),
            inventory: SeenLimiter::new(INVENTORY_WINDOW_MS, INVENTORY_CAPACITY, None),
        }
    }
}

impl Observations {
    /// Keeps the observations about `mac` the limits allow: (kept, how many were suppressed).
    /// An inventory machine's `seen` is keyed by its text (each boot stage is one), a stranger's
    /// by MAC alone.
    pub fn filter(
        &mut self,
        mac: Mac,
        in_inventory: bool,
        kinds: Vec<EventKind>,
        now: Timestamp,
    ) -> (Vec<EventKind>, usize) {
        let before = kinds.len();
        let kept: Vec<EventKind> = kinds
            .into_iter()
            .filter(|k| {
                if in_inventory {
                    self.inventory.allow(mac, topic(k, true), now)
                } else {
                    self.strangers.allow(mac, topic(k, false), now)
                }
            })
            .collect();
        let suppressed = before - kept.len();
        (kept, suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u32) -> Mac {
        let b = i.to_be_bytes();
        Mac::new([2, 0, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn once_per_window_and_bounded() {
        let mut l = SeenLimiter::new(STRANGER_WINDOW_MS, CAPACITY, None);
        let t0 = Timestamp(1_000_000);
        assert!(l.allow(mac(1), 0, t0));
        assert!(!l.allow(mac(1), 0, Timestamp(t0.0 + STRANGER_WINDOW_MS - 1)));
        assert!(l.allow(mac(1), 1, t0), "another topic");
        assert!(l.allow(mac(1), 0, Timestamp(t0.0 + STRANGER_WINDOW_MS)));
        for i in 0..(CAPACITY as u32 * 3) {
            l.allow(mac(100 + i), 0, t0);
        }
        assert_eq!(l.len(), CAPACITY);
        // Once the window has passed, the expired entries make room again.
        assert!(l.allow(mac(999_999), 0, Timestamp(t0.0 + 2 * STRANGER_WINDOW_MS)));
        assert!(l.len() <= CAPACITY);
    }

    #[test]
    fn strangers_share_one_budget() {
        let mut o = Observations::default();
        let t0 = Timestamp(1_000_000);
        let seen = || EventKind::Seen {
            via: "dhcp".into(),
            detail: "x".into(),
        };
        let kept: usize = (0..5_000)
            .map(|i| o.filter(mac(i), false, vec![seen()], t0).0.len())
            .sum();
        assert_eq!(kept, STRANGER_BURST as usize);
        // A minute later the budget has refilled by its rate.
        let later = Timestamp(t0.0 + 60_000);
        let kept: usize = (5_000..10_000)
            .map(|i| o.filter(mac(i), false, vec![seen()], later).0.len())
            .sum();
        assert_eq!(kept, STRANGER_PER_MINUTE as usize);
        // Inventory machines are not held back by strangers' floods.
        assert_eq!(o.filter(mac(1), true, vec![seen()], later).0.len(), 1);
    }
}
