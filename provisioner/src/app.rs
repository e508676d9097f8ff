//! Shared server state: the store, the live log feed and the metrics. Store calls block on
//! disk, so they run on tokio's blocking pool; events are followed through the store's own feed.

use std::sync::Arc;
use std::time::SystemTime;

use inventory::{Deadlines, Event, LogLine, Mac, Store, Timestamp};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::boot_decision::UnknownPolicy;
use crate::machine_keys::MachineKeys;
use crate::metrics::Metrics;

/// How many log lines a slow live follower may fall behind before it is told to reconnect.
const LOG_FEED_CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct App {
    /// The one source of truth. Event followers read its feed (`Store::events_after`), so
    /// there is no process-wide lock or in-memory event queue: a DHCP OFFER never waits for an
    /// unrelated write to be published.
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub deadlines: Deadlines,
    /// Cancelled when the server shuts down, so long-lived responses (SSE) end and let the
    /// graceful shutdown finish.
    pub shutdown: CancellationToken,
    /// What the HTTP boot side needs beyond the store.
    pub boot: Arc<BootContext>,
    /// In-memory views of machines and reservations (the DHCP path reads these, not the
    /// store), kept current by the store's feed and after each of this process's writes.
    pub views: Arc<crate::views::Views>,
    /// Observation events (DHCP `seen`, transfers, notes), written in batches off the reply
    /// path.
    pub events: crate::event_writer::EventSink,
    /// Live feed of stored log lines for `machines logs --follow`.
    logs: broadcast::Sender<(Mac, LogLine)>,
}

/// Settings and stores of the boot side (scripts, assets, configs, machine credentials).
#[derive(Debug)]
pub struct BootContext {
    pub assets: boot_assets::AssetStore,
    /// With a shared store (etcd): the asset catalogue every server shares and the peers a
    /// missing file is fetched from, by digest. `None` with redb (this store is the catalogue).
    pub peer_assets: Option<Arc<crate::asset_peers::PeerAssets>>,
    pub keys: MachineKeys,
    /// Base URL machines reach us at (`http.public_url`); else the address each request came in
    /// on, which is right whenever machines connect to us directly.
    pub public_url: Option<String>,
    /// `tls.public_url`: the https:// base for the endpoints that carry secrets (configs and
    /// the machines' API) in what machines are given; `None`: `public_url` serves for all.
    pub machine_url: Option<String>,
    /// What to do with machines the inventory does not know (shared with DHCP).
    pub unknown: UnknownPolicy,
    /// The cap and rate on recording unknown machines, shared with DHCP so one limit holds
    /// however strangers arrive.
    pub admission: crate::admission::Admission,
    /// HTTP download events per machine: one per file and outcome a minute at most, so a
    /// client repeating ranged requests cannot grow the history (a real install downloads each
    /// file once or twice).
    pub transfer_events: std::sync::Mutex<crate::dhcp::seen_limit::SeenLimiter>,
    /// Progress events per machine (a token bucket each; see [`ProgressBudget`]).
    pub progress_events: std::sync::Mutex<ProgressBudget>,
    /// How often a held machine's script polls again.
    pub poll: std::time::Duration,
    /// UDP port of our syslog receiver, rendered into configs (`None`: off).
    pub syslog_port: Option<u16>,
    /// The configured `db` certificates and the signature verdicts of stored UKIs: what
    /// profiles with `secure_boot` are checked against.
    pub signatures: crate::signatures::Signatures,
    /// Whether the dashboard's session cookie is `Secure` (sent over HTTPS only): the TLS
    /// listener (`tls.listen`) is on.
    pub secure_cookies: bool,
}

/// Per-machine budgets of progress events: a burst of [`ProgressBudget::BURST`], then
/// [`ProgressBudget::PER_MINUTE`]; at most [`ProgressBudget::MACHINES`] machines remembered
/// (beyond, the oldest budgets are dropped: a fresh, full bucket is the worst case).
#[derive(Debug, Default)]
pub struct ProgressBudget {
    buckets: std::collections::HashMap<Mac, netboot_proto::rate::TokenBucket>,
}

impl ProgressBudget {
    pub const BURST: u32 = 120;
    pub const PER_MINUTE: u32 = 60;
    pub const MACHINES: usize = 100_000;

    /// Whether a progress event of `mac` may be recorded at `now`.
    pub fn allow(&mut self, mac: Mac, now: Timestamp) -> bool {
        if self.buckets.len() >= Self::MACHINES && !self.buckets.contains_key(&mac) {
            self.buckets.clear();
        }
        self.buckets
            .entry(mac)
            .or_insert_with(|| netboot_proto::rate::TokenBucket::new(Self::BURST, Self::PER_MINUTE))
            .take(now)
    }
}

/// The wall clock, read once per request in the I/O layer and passed down as a value.
pub fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

impl App {
    /// Shared state over `store`; loads the views (every machine: blocking, once at start) and
    /// starts the event writer (call within a tokio runtime).
    pub fn new(
        store: Arc<dyn Store>,
        deadlines: Deadlines,
        boot: BootContext,
    ) -> inventory::Result<Self> {
        let mut metrics = Metrics::default();
        if let Some(p) = &boot.peer_assets {
            metrics.asset_peer_fetches = Some(p.counts.clone());
        }
        let metrics = Arc::new(metrics);
        Ok(App {
            views: Arc::new(crate::views::Views::load(store.as_ref())?),
            events: crate::event_writer::EventSink::spawn(store.clone(), metrics.clone()),
            boot: Arc::new(boot),
            logs: broadcast::channel(LOG_FEED_CAPACITY).0,
            store,
            metrics,
            deadlines,
            shutdown: CancellationToken::new(),
        })
    }

    /// Keeps the views current with every server's writes until shutdown (a blocking thread
    /// waiting on the store's feed).
    pub fn follow_store(&self) {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (views, store) = (self.views.clone(), self.store.clone());
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("views".into())
            .spawn(move || views.follow(store, flag))
            .expect("spawning the views thread");
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }

    pub fn subscribe_logs(&self) -> broadcast::Receiver<(Mac, LogLine)> {
        self.logs.subscribe()
    }

    /// Stores log lines in one transaction and publishes them to followers.
    pub async fn append_logs(
        &self,
        lines: Vec<(Mac, inventory::NewLogLine)>,
    ) -> inventory::Result<()> {
        let feed = self.logs.clone();
        let t = now();
        self.read(move |s| {
            for stored in s.append_logs(lines, t)? {
                let _ = feed.send(stored);
            }
            Ok(())
        })
        .await
    }

    /// Runs a store call that publishes no events (reads, lease writes) off the async threads.
    pub async fn read<T, F>(&self, f: F) -> inventory::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> inventory::Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        let r = tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .unwrap_or_else(|e| Err(inventory::Error::Storage(format!("store task failed: {e}"))));
        self.metrics.store.record(&r, now());
        r
    }

    /// Runs a mutating store call off the async threads; the events it produced are counted
    /// (followers see them through the store's feed) and the views catch up before it returns,
    /// so the next request sees this write.
    pub async fn write<T, F>(&self, f: F) -> inventory::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> inventory::Result<(T, Vec<Event>)> + Send + 'static,
    {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let views = self.views.clone();
        let r = tokio::task::spawn_blocking(move || {
            let (value, events) = f(store.as_ref())?;
            metrics.events_appended(events.len());
            if !events.is_empty() {
                if let Err(e) = views.catch_up(store.as_ref()) {
                    tracing::warn!(error = %e, "views: catching up after a write failed; the follower retries");
                }
            }
            Ok(value)
        })
        .await
        .unwrap_or_else(|e| Err(inventory::Error::Storage(format!("store task failed: {e}"))));
        self.metrics.store.record(&r, now());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_events_have_a_burst_then_a_rate_per_machine() {
        let mut b = ProgressBudget::default();
        let (a, other) = (Mac::new([2, 0, 0, 0, 0, 1]), Mac::new([2, 0, 0, 0, 0, 2]));
        let t0 = Timestamp(1_000_000);
        let allowed = (0..500).filter(|_| b.allow(a, t0)).count();
        assert_eq!(allowed, ProgressBudget::BURST as usize);
        assert!(b.allow(other, t0), "each machine has its own budget");
        assert!(
            !b.allow(a, Timestamp(t0.0 + 500)),
            "half a second: nothing back yet"
        );
        assert!(
            b.allow(a, Timestamp(t0.0 + 1_000)),
            "one a second at 60 a minute"
        );
    }
}
