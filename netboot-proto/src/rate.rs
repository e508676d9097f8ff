//! Rate limiting with time as input: a token bucket over [`Timestamp`]s (milliseconds).

use inventory::Timestamp;

/// A token bucket over [`Timestamp`]s: up to `capacity` takes at once, refilled at `per_minute`.
/// Kept in units of 1/60,000 of a token, so one millisecond refills exactly `per_minute` units:
/// integer arithmetic with no rounding, however often it is asked (a remainder is never lost).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: u64,
    per_minute: u64,
    units: u64,
    at: Option<Timestamp>,
}

/// Units of one token (one minute in milliseconds: `per_minute` units a millisecond).
const TOKEN: u64 = 60_000;

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: u32, per_minute: u32) -> TokenBucket {
        TokenBucket {
            capacity: u64::from(capacity) * TOKEN,
            per_minute: u64::from(per_minute),
            units: u64::from(capacity) * TOKEN,
            at: None,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Timestamp) -> bool {
        if let Some(at) = self.at {
            let refill = now.0.saturating_sub(at.0).saturating_mul(self.per_minute);
            self.units = self.units.saturating_add(refill).min(self.capacity);
        }
        // A clock that steps back refills nothing and does not move the mark back.
        self.at = Some(self.at.map_or(now, |at| Timestamp(at.0.max(now.0))));
        if self.units >= TOKEN {
            self.units -= TOKEN;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_requests_still_refill_at_the_rate() {
        // 30 a minute asked every millisecond for ten minutes: the burst plus 300, not the burst
        // alone (rounding each millisecond's refill down to nothing lost them all).
        let mut b = TokenBucket::new(100, 30);
        let granted = (0..600_000u64).filter(|ms| b.take(Timestamp(*ms))).count();
        assert!((399..=401).contains(&granted), "{granted}");
        let mut b = TokenBucket::new(100, 100);
        let granted = (0..600_000u64).filter(|ms| b.take(Timestamp(*ms))).count();
        assert!((1_099..=1_101).contains(&granted), "{granted}");
    }

    #[test]
    fn a_full_bucket_caps_and_an_empty_one_waits() {
        let mut b = TokenBucket::new(2, 60);
        assert!(b.take(Timestamp(0)) && b.take(Timestamp(0)));
        assert!(!b.take(Timestamp(0)), "empty");
        assert!(!b.take(Timestamp(999)), "one a second: not yet");
        assert!(b.take(Timestamp(1_000)));
        assert!(
            !b.take(Timestamp(500)),
            "the clock stepped back: nothing refilled"
        );
        // An hour idle refills to the capacity, no more.
        let t = 3_600_000;
        assert!(b.take(Timestamp(t)) && b.take(Timestamp(t)));
        assert!(!b.take(Timestamp(t)));
    }
}
