//! The store's health as `/metrics` shows it, beside `/healthz`: `provisioner_store_up` (1 when
//! the last store call succeeded, 0 when it failed with a storage error: etcd unreachable or
//! without a leader past `store.timeout`, a redb I/O error, a full disk) and
//! `provisioner_store_last_error_age_seconds` (seconds since the last storage error; absent
//! until one happens). Every store call the server makes through [`crate::app::App`] reports
//! here, so a DHCP claim that failed (no ACK sent) turns the gauge to 0 even between scrapes;
//! each scrape of `/metrics` also probes the store once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use inventory::Timestamp;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Outcome of the server's latest store calls (see the module documentation).
#[derive(Debug)]
pub struct StoreHealth {
    /// Whether the latest store call succeeded (any error other than `Error::Storage` or
    /// `Error::DiskFull`, such as "machine exists", counts as success: the store answered).
    up: AtomicBool,
    /// When the latest storage error happened (milliseconds since the Unix epoch; 0: never).
    last_error_ms: AtomicU64,
    /// The newest event sequence number read, kept for `provisioner_event_sequence` while the
    /// store does not answer.
    last_seq: AtomicU64,
}

impl Default for StoreHealth {
    fn default() -> Self {
        StoreHealth {
            up: AtomicBool::new(true),
            last_error_ms: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
        }
    }
}

impl StoreHealth {
    /// Records the outcome of one store call made at `now`.
    pub fn record<T>(&self, result: &inventory::Result<T>, now: Timestamp) {
        match result {
            Err(
                inventory::Error::Storage(_)
                | inventory::Error::Unavailable(_)
                | inventory::Error::DiskFull { .. },
            ) => {
                self.up.store(false, Ordering::Relaxed);
                self.last_error_ms.store(now.0.max(1), Ordering::Relaxed);
            }
            _ => self.up.store(true, Ordering::Relaxed),
        }
    }

    /// Whether the latest store call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Remembers the newest event sequence number read; answers the newest known.
    pub fn seen_seq(&self, seq: Option<u64>) -> u64 {
        match seq {
            Some(s) => {
                self.last_seq.fetch_max(s, Ordering::Relaxed);
                s
            }
            None => self.last_seq.load(Ordering::Relaxed),
        }
    }

    /// Registers `up` and, after a first error, `last_error_age_seconds` (age at `now`) in `r`
    /// (the caller's sub-registry, prefix `store`).
    pub fn register(&self, r: &mut Registry, now: Timestamp) {
        let up = Gauge::<i64>::default();
        up.set(i64::from(self.is_up()));
        r.register(
            "up",
            "Whether the latest store call succeeded (1) or failed with a storage error (0)",
            up,
        );
        let at = self.last_error_ms.load(Ordering::Relaxed);
        if at > 0 {
            let age = Gauge::<f64, AtomicU64>::default();
            age.set(now.0.saturating_sub(at) as f64 / 1000.0);
            r.register(
                "last_error_age_seconds",
                "Seconds since the latest storage error",
                age,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(h: &StoreHealth, now: u64) -> String {
        let mut r = Registry::with_prefix("provisioner");
        h.register(r.sub_registry_with_prefix("store"), Timestamp(now));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn a_storage_error_turns_the_gauge_to_zero_until_a_call_succeeds() {
        let h = StoreHealth::default();
        let t = text(&h, 5_000);
        assert!(t.contains("provisioner_store_up 1\n"), "{t}");
        assert!(!t.contains("last_error_age"), "{t}");
        h.record::<()>(
            &Err(inventory::Error::Storage("etcd at x".into())),
            Timestamp(5_000),
        );
        let t = text(&h, 7_500);
        assert!(t.contains("provisioner_store_up 0\n"), "{t}");
        assert!(
            t.contains("provisioner_store_last_error_age_seconds 2.5\n"),
            "{t}"
        );
        h.record::<()>(
            &Err(inventory::Error::Storage("again".into())),
            Timestamp(8_000),
        );
        h.record(&Ok(3u64), Timestamp(9_000));
        let t = text(&h, 10_000);
        assert!(t.contains("provisioner_store_up 1\n"), "{t}");
        assert!(
            t.contains("provisioner_store_last_error_age_seconds 2.0\n"),
            "{t}"
        );
        assert_eq!((h.seen_seq(Some(7)), h.seen_seq(None)), (7, 7));
    }
}
