//! Boot assets across servers that share one store (etcd): the shared catalogue of what any
//! server imported, and fetching a file this server lacks from a peer by its digest.
//!
//! The files stay in each server's `data_dir/assets/`; the catalogue ([`AssetCatalogue`],
//! `P/asset/<hex>` in etcd) says which assets exist. When a machine asks for one this server
//! does not have, [`PeerAssets::resolve`] GETs it from the operator's `store.asset_peers`, in
//! order, at their public `/assets/<hex>/<name>`, streams it into `assets/tmp/` and keeps it only
//! if its SHA-256 is the digest (`AssetStore::import_verified`), then renames it into place.
//! **The digest is the only trust anchor**: a peer that sends other bytes is refused (logged
//! with its URL and both digests) and the next one is tried; peers' URLs come from the
//! configuration only, never from a request, and only digests in the catalogue are fetched (a
//! stranger asking for random digests makes no peer request). Concurrent requests for one digest
//! share one fetch (single-flight). [`PeerAssets::spawn_prefetch`] follows the event feed and
//! fetches every catalogue entry this server lacks in the background, [`PREFETCH_SLOTS`] at a
//! time, so the first machine of a boot storm does not wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boot_assets::{AssetMeta, AssetStore};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::TryStreamExt;
use inventory::{Event, EventKind, Store, Timestamp};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use reqwest::Url;
use tokio_util::sync::CancellationToken;

/// Background fetches (prefetch) running at once; a machine's request joins or starts its own.
pub const PREFETCH_SLOTS: usize = 2;
/// A peer that sends nothing for this long is given up (the next one is tried).
const PEER_STALL: Duration = Duration::from_secs(30);
/// Connecting to a peer.
const PEER_CONNECT: Duration = Duration::from_secs(5);
/// After no peer served a digest, requests for it are answered 503 at once for this long
/// (the `Retry-After` machines are given).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// How often the whole catalogue is compared with the local store (besides events).
const RESCAN: Duration = Duration::from_secs(60);

/// The shared record of every imported asset (one per digest). Implemented by the etcd store;
/// with redb there is one server and its `assets/meta/` is the whole catalogue.
pub trait AssetCatalogue: Send + Sync {
    /// The record of `hex` (64 lower-case hex digits), if any server imported it.
    fn record(&self, hex: &str) -> inventory::Result<Option<AssetMeta>>;
    /// Every record.
    fn records(&self) -> inventory::Result<Vec<AssetMeta>>;
    /// Adds (or keeps) the record of an asset this server stored; appends an `asset … imported`
    /// event when it is new, so the other servers prefetch it.
    fn publish(&self, meta: &AssetMeta, now: Timestamp) -> inventory::Result<Vec<Event>>;
    /// Removes the record; `false` when there was none.
    fn withdraw(&self, meta: &AssetMeta, now: Timestamp) -> inventory::Result<bool>;
}

fn decode(v: &[u8]) -> inventory::Result<AssetMeta> {
    serde_json::from_slice(v).map_err(|e| inventory::Error::Corrupt {
        table: "assets",
        detail: e.to_string(),
    })
}

fn hex_of(meta: &AssetMeta) -> &str {
    meta.digest.strip_prefix("sha256:").unwrap_or(&meta.digest)
}

impl AssetCatalogue for inventory_etcd::EtcdStore {
    fn record(&self, hex: &str) -> inventory::Result<Option<AssetMeta>> {
        self.asset_record(hex)?.map(|v| decode(&v)).transpose()
    }
    fn records(&self) -> inventory::Result<Vec<AssetMeta>> {
        self.asset_records()?.iter().map(|v| decode(v)).collect()
    }
    fn publish(&self, meta: &AssetMeta, now: Timestamp) -> inventory::Result<Vec<Event>> {
        let json = serde_json::to_vec(meta).expect("asset records serialize");
        self.put_asset_record(hex_of(meta), &meta.name, &json, now)
    }
    fn withdraw(&self, meta: &AssetMeta, now: Timestamp) -> inventory::Result<bool> {
        self.remove_asset_record(hex_of(meta), &meta.name, now)
    }
}

/// Why an asset cannot be served here.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// Neither this server nor the catalogue knows the digest (answered 404).
    #[error("no asset {digest} here or in the shared catalogue; `provisioner assets list` shows what is there")]
    Unknown {
        /// `sha256:<hex>`.
        digest: String,
    },
    /// The catalogue has it, this server does not, and no peer served its bytes (503: it may
    /// work later, e.g. once a peer is back).
    #[error(
        "asset {digest} is in the shared catalogue but not on this server, and no peer served it \
         ({tried}); import it here (`provisioner assets import FILE`) or on a peer listed in \
         store.asset_peers"
    )]
    NoPeer {
        /// `sha256:<hex>`.
        digest: String,
        /// What each peer did, or that none is configured.
        tried: String,
    },
    /// The catalogue could not be read, or the local store failed (503 / 500).
    #[error("{0}")]
    Failed(String),
}

/// Label of `provisioner_asset_peer_fetches_total`: `ok` (a peer's bytes verified and stored),
/// `mismatch` (a peer sent other bytes: refused), `failed` (a peer unreachable, not 200, or cut
/// off), `none` (no peer served a wanted asset).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchResult {
    result: &'static str,
}

/// The counters of peer fetches (a handle: clones count into the same series).
pub type FetchCounts = Family<FetchResult, Counter>;

type Fetch = Shared<BoxFuture<'static, Result<AssetMeta, Unavailable>>>;

/// The catalogue, the peers and the fetches in flight (see the module docs).
pub struct PeerAssets {
    /// What exists anywhere (the shared store).
    pub catalogue: Arc<dyn AssetCatalogue>,
    /// Base URLs of peers (`store.asset_peers`), each ending with `/`; tried in order.
    peers: Vec<Url>,
    /// This server's files.
    local: AssetStore,
    /// One client (connection reuse); connect and stall timeouts, no total limit (large UKIs).
    http: reqwest::Client,
    /// Fetches running, by hex digest: a second request for one joins the first.
    inflight: Mutex<HashMap<String, Fetch>>,
    /// Bounds background prefetches.
    prefetch_slots: Arc<tokio::sync::Semaphore>,
    /// Digests no peer served, and when: not tried again for [`RETRY_AFTER_FAILURE`].
    failed: Mutex<HashMap<String, (tokio::time::Instant, Unavailable)>>,
    /// Digests a prefetch is queued or running for (a rescan does not queue them again).
    queued: Mutex<std::collections::HashSet<String>>,
    /// `provisioner_asset_peer_fetches_total{result}`.
    pub counts: FetchCounts,
}

impl std::fmt::Debug for PeerAssets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peers: Vec<&str> = self.peers.iter().map(Url::as_str).collect();
        write!(f, "PeerAssets({})", peers.join(", "))
    }
}

impl PeerAssets {
    /// Peer fetching over `catalogue` into `local` from `peers` (validated base URLs).
    pub fn new(catalogue: Arc<dyn AssetCatalogue>, local: AssetStore, peers: &[Url]) -> Self {
        let peers = peers
            .iter()
            .map(|u| {
                let mut u = u.clone();
                if !u.path().ends_with('/') {
                    u.set_path(&format!("{}/", u.path()));
                }
                u
            })
            .collect();
        crate::tls_material::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(PEER_CONNECT)
            .read_timeout(PEER_STALL)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client builds");
        PeerAssets {
            catalogue,
            peers,
            local,
            http,
            inflight: Mutex::default(),
            prefetch_slots: Arc::new(tokio::sync::Semaphore::new(PREFETCH_SLOTS)),
            queued: Mutex::default(),
            failed: Mutex::default(),
            counts: FetchCounts::default(),
        }
    }

    fn count(&self, result: &'static str) {
        self.counts.get_or_create(&FetchResult { result }).inc();
    }

    /// The record of `hex`: this server's, else the catalogue's (the file may not be here yet).
    pub async fn lookup(&self, hex: &str) -> Result<Option<AssetMeta>, Unavailable> {
        Ok(self.find(hex).await?.map(|(meta, _)| meta))
    }

    /// The record of `hex` and whether its file is here.
    async fn find(&self, hex: &str) -> Result<Option<(AssetMeta, bool)>, Unavailable> {
        let (local, catalogue, hex) = (self.local.clone(), self.catalogue.clone(), hex.to_string());
        tokio::task::spawn_blocking(move || match local.get(&hex) {
            Ok(m) => Ok(Some((m, true))),
            Err(boot_assets::Error::NotFound { .. }) => catalogue
                .record(&hex)
                .map(|r| r.map(|m| (m, false)))
                .map_err(|e| Unavailable::Failed(format!("reading the asset catalogue: {e}"))),
            Err(e) => Err(Unavailable::Failed(e.to_string())),
        })
        .await
        .map_err(|e| Unavailable::Failed(e.to_string()))?
    }

    /// As [`lookup`](Self::lookup), and when only the catalogue has it, starts fetching it in
    /// the background (an iPXE script naming it: the download follows within seconds).
    pub async fn describe(self: &Arc<Self>, hex: &str) -> Option<AssetMeta> {
        let (meta, here) = self.find(hex).await.ok().flatten()?;
        if !here {
            drop(self.fetch(meta.clone()));
        }
        Some(meta)
    }

    /// The asset `hex` with its file on this server: at once when it is here, else after
    /// fetching it from a peer (shared with every other request for it).
    pub async fn resolve(self: &Arc<Self>, hex: &str) -> Result<AssetMeta, Unavailable> {
        match self.find(hex).await? {
            None => Err(Unavailable::Unknown {
                digest: format!("sha256:{hex}"),
            }),
            Some((meta, true)) => Ok(meta),
            Some((meta, false)) => self.fetch(meta).await,
        }
    }

    /// The fetch of `meta`'s file: the one running, or a new one (a task: it finishes even when
    /// the request that started it goes away).
    fn fetch(self: &Arc<Self>, meta: AssetMeta) -> Fetch {
        let hex = hex_of(&meta).to_string();
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = inflight.get(&hex) {
            return f.clone();
        }
        // No peer served it a moment ago: answer that again rather than ask every peer for
        // each machine of a storm (one attempt per digest per `RETRY_AFTER_FAILURE`).
        let recent = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hex)
            .filter(|(at, _)| at.elapsed() < RETRY_AFTER_FAILURE)
            .map(|(_, e)| e.clone());
        if let Some(e) = recent {
            return futures_util::future::ready(Err(e)).boxed().shared();
        }
        let this = self.clone();
        let key = hex.clone();
        // The task removes its entry under the same lock, so it cannot do so before the insert.
        let task = tokio::spawn(async move {
            let r = this.fetch_from_peers(&meta).await;
            let mut failed = this.failed.lock().unwrap_or_else(|p| p.into_inner());
            match &r {
                Err(e @ Unavailable::NoPeer { .. }) => {
                    failed.retain(|_, (at, _)| at.elapsed() < RETRY_AFTER_FAILURE);
                    failed.insert(key.clone(), (tokio::time::Instant::now(), e.clone()));
                }
                _ => {
                    failed.remove(&key);
                }
            }
            drop(failed);
            this.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            r
        });
        let f = async move {
            task.await
                .unwrap_or_else(|e| Err(Unavailable::Failed(format!("fetch task: {e}"))))
        }
        .boxed()
        .shared();
        inflight.insert(hex, f.clone());
        f
    }

    /// Tries each peer in order until one's bytes are the asset.
    async fn fetch_from_peers(&self, meta: &AssetMeta) -> Result<AssetMeta, Unavailable> {
        let hex = hex_of(meta).to_string();
        if let Ok(m) = self.local.get(&hex) {
            return Ok(m);
        }
        let mut tried = Vec::new();
        for peer in &self.peers {
            let url = match peer.join(&format!("assets/{hex}/{}", meta.name)) {
                Ok(u) => u,
                Err(e) => {
                    tried.push(format!("{peer}: {e}"));
                    continue;
                }
            };
            match self.fetch_from_peer(&url, meta).await {
                Ok(stored) => {
                    self.count("ok");
                    tracing::info!(digest = %meta.digest, name = %meta.name, size = meta.size, peer = %url, "asset fetched from a peer and verified");
                    return Ok(stored);
                }
                Err(PeerError::Mismatch(e)) => {
                    self.count("mismatch");
                    tracing::error!(peer = %url, error = %e, "a peer sent bytes that are not the asset; refused, nothing kept");
                    tried.push(format!("{url}: wrong bytes"));
                }
                Err(PeerError::Other(e)) => {
                    self.count("failed");
                    tracing::warn!(peer = %url, digest = %meta.digest, error = %e, "fetching an asset from a peer failed");
                    tried.push(format!("{url}: {e}"));
                }
            }
        }
        self.count("none");
        let tried = if tried.is_empty() {
            "no store.asset_peers configured".to_string()
        } else {
            tried.join("; ")
        };
        let e = Unavailable::NoPeer {
            digest: meta.digest.clone(),
            tried,
        };
        tracing::warn!("{e}");
        Err(e)
    }

    /// One GET, streamed through the digest check into the store.
    async fn fetch_from_peer(&self, url: &Url, meta: &AssetMeta) -> Result<AssetMeta, PeerError> {
        let other = |e: &dyn std::fmt::Display| PeerError::Other(e.to_string());
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| other(&e))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(PeerError::Other(format!("answered {}", resp.status())));
        }
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let (local, meta) = (self.local.clone(), meta.clone());
        match tokio::task::spawn_blocking(move || local.import_verified(reader, &meta)).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e @ boot_assets::Error::Mismatch { .. })) => Err(PeerError::Mismatch(e)),
            Ok(Err(e)) => Err(other(&e)),
            Err(e) => Err(other(&e)),
        }
    }

    /// Follows the event feed until `shutdown`: publishes local assets the catalogue lacks
    /// (imported before it existed), then fetches, in the background and [`PREFETCH_SLOTS`] at
    /// a time, every catalogue entry missing here: at start, on each `asset … imported` event,
    /// and every [`RESCAN`].
    pub fn spawn_prefetch(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let s = store.clone();
            let mut last = tokio::task::spawn_blocking(move || s.last_event_seq())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            self.publish_local().await;
            let mut rescan_at = tokio::time::Instant::now();
            while !shutdown.is_cancelled() {
                if tokio::time::Instant::now() >= rescan_at {
                    self.prefetch_missing().await;
                    rescan_at = tokio::time::Instant::now() + RESCAN;
                }
                let s = store.clone();
                let after = last;
                let r = tokio::task::spawn_blocking(move || {
                    s.events_after(after, 256, Duration::from_secs(1))
                })
                .await;
                match r {
                    Ok(Ok(events)) => {
                        for e in events {
                            last = e.seq;
                            if let EventKind::Asset { digest, action, .. } = &e.kind {
                                if action == "imported" {
                                    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                                    self.prefetch(hex).await;
                                }
                            }
                        }
                    }
                    _ => {
                        // Store unreachable: look again later, and rescan when it is back.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        rescan_at = tokio::time::Instant::now();
                    }
                }
            }
        });
    }

    async fn publish_local(&self) {
        let (local, catalogue) = (self.local.clone(), self.catalogue.clone());
        let r = tokio::task::spawn_blocking(move || -> Result<usize, String> {
            let mut published = 0;
            for meta in local.list().map_err(|e| e.to_string())? {
                if catalogue
                    .record(hex_of(&meta))
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    catalogue
                        .publish(&meta, Timestamp::from_system(std::time::SystemTime::now()))
                        .map_err(|e| e.to_string())?;
                    published += 1;
                }
            }
            Ok(published)
        })
        .await;
        match r {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!("{n} local asset(s) added to the shared catalogue"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "publishing local assets to the catalogue failed")
            }
            Err(e) => tracing::warn!(error = %e, "publishing local assets: task failed"),
        }
    }

    async fn prefetch_missing(self: &Arc<Self>) {
        let catalogue = self.catalogue.clone();
        let records = match tokio::task::spawn_blocking(move || catalogue.records()).await {
            Ok(Ok(r)) => r,
            _ => return,
        };
        for meta in records {
            if self.local.get(hex_of(&meta)).is_err() {
                self.prefetch_record(meta);
            }
        }
    }

    async fn prefetch(self: &Arc<Self>, hex: &str) {
        if self.local.get(hex).is_ok() {
            return;
        }
        if let Ok(Some(meta)) = self.lookup(hex).await {
            self.prefetch_record(meta);
        }
    }

    /// Fetches `meta` in the background once a prefetch slot is free.
    fn prefetch_record(self: &Arc<Self>, meta: AssetMeta) {
        let hex = hex_of(&meta).to_string();
        if !self
            .queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hex.clone())
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Ok(_slot) = this.prefetch_slots.clone().acquire_owned().await {
                let _ = this.fetch(meta).await;
            }
            this.queued
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&hex);
        });
    }
}

/// How one peer failed.
enum PeerError {
    /// Its bytes are not the asset.
    Mismatch(boot_assets::Error),
    /// Unreachable, not 200, cut off, or the store could not write.
    Other(String),
}
