//! Rate limiting with time as input: a token bucket over [`Timestamp`]s (milliseconds).

use inventory::Timestamp;

/// A token bucket over [`Timestamp`]s: up to `capacity` takes at once, refilled at `per_minute`.
/// Kept in thousandths of a token so slow rates refill smoothly with integer arithmetic.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: u64,
    per_minute: u64,
    milli: u64,
    at: Option<Timestamp>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: u32, per_minute: u32) -> TokenBucket {
        TokenBucket {
            capacity: u64::from(capacity) * 1000,
            per_minute: u64::from(per_minute),
            milli: u64::from(capacity) * 1000,
            at: None,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Timestamp) -> bool {
        if let Some(at) = self.at {
            // ms × tokens/min ÷ 60 = thousandths of a token.
            let refill = now.0.saturating_sub(at.0).saturating_mul(self.per_minute) / 60;
            self.milli = self.milli.saturating_add(refill).min(self.capacity);
        }
        self.at = Some(now);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}
