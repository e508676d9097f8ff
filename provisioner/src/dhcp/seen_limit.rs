//! At most one `seen` event per unknown MAC per window, in bounded memory: a flood of random
//! MACs (a misconfigured switch, a scan) cannot grow the event history or the server's memory
//! beyond that. Sans-IO: the caller passes the time.

use std::collections::HashMap;

use inventory::{Mac, Timestamp};

/// One event per MAC per this long.
pub const WINDOW_MS: u64 = 10 * 60 * 1000;
/// MACs remembered at most; beyond it (after forgetting expired ones) new MACs go unrecorded
/// until the window passes — they are still counted in the DHCP metrics.
pub const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub struct SeenLimiter {
    last: HashMap<Mac, Timestamp>,
}

impl SeenLimiter {
    /// Whether an event about `mac` may be recorded now (and notes that it was).
    pub fn allow(&mut self, mac: Mac, now: Timestamp) -> bool {
        let fresh = |t: &Timestamp| now.0.saturating_sub(t.0) < WINDOW_MS;
        if self.last.get(&mac).is_some_and(fresh) {
            return false;
        }
        if self.last.len() >= CAPACITY && !self.last.contains_key(&mac) {
            self.last.retain(|_, t| fresh(t));
            if self.last.len() >= CAPACITY {
                return false;
            }
        }
        self.last.insert(mac, now);
        true
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
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
        let mut l = SeenLimiter::default();
        let t0 = Timestamp(1_000_000);
        assert!(l.allow(mac(1), t0));
        assert!(!l.allow(mac(1), Timestamp(t0.0 + WINDOW_MS - 1)));
        assert!(l.allow(mac(1), Timestamp(t0.0 + WINDOW_MS)));
        for i in 0..(CAPACITY as u32 * 3) {
            l.allow(mac(100 + i), t0);
        }
        assert_eq!(l.len(), CAPACITY);
        // Once the window has passed, the expired entries make room again.
        assert!(l.allow(mac(999_999), Timestamp(t0.0 + 2 * WINDOW_MS)));
        assert!(l.len() <= CAPACITY);
    }
}
