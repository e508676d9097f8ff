//! `/metrics`: the server's counters, gauges and the DHCP reply-latency histogram.
//!
//! The values live in [`prometheus_client`] types (atomics behind `Arc`s, so a clone is a handle
//! on the same value) and are written by its Prometheus text encoder (format version 0.0.4, served
//! as `text/plain; version=0.0.4`). Each scrape assembles a [`Registry`] from those handles plus
//! the values read from the store at scrape time (machines per state, unclaimed records, the newest
//! event's sequence number) and the last DHCP pool-utilization snapshot.
//!
//! Names: counters are registered without `_total` and the encoder appends it, so every sample,
//! `# HELP` and `# TYPE` line reads `provisioner_…_total` as before; the encoder also ends each
//! help text with a full stop. Labels take bounded values only (message types, drop reasons, TFTP
//! outcomes, lifecycle states, configured subnets), never a MAC or an address.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use inventory::{Machine, State};
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter as LibCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// A monotonically increasing counter: a handle on a [`prometheus_client`] counter (a clone counts
/// into the same value; a handle taken from a [`Family`] counts into that labelled series).
#[derive(Debug, Default, Clone)]
pub struct Counter(LibCounter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Counters that share one metric name and differ by a label.
type Counters<L> = Family<L, LibCounter>;

/// The series of `family` labelled `label`, created (at 0) if it was not there, so that it is
/// rendered from the first scrape on.
fn member<L: Clone + Hash + Eq>(family: &Counters<L>, label: L) -> Counter {
    Counter(family.get_or_create(&label).clone())
}

/// Label of a finished TFTP transfer: how it ended (`TransferEnd::label`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// TFTP server counters.
#[derive(Default)]
pub struct TftpMetrics {
    /// Read/write requests received.
    pub requests: Counter,
    /// Datagrams on the TFTP port that were not valid requests.
    pub malformed: Counter,
    /// Requests refused (write requests, unsupported modes).
    pub refused: Counter,
    /// Requests refused by the server-wide or per-client transfer limit.
    pub busy: Counter,
    /// Read requests dropped because they repeat a running transfer (a ROM's resend).
    pub duplicates: Counter,
    /// Transfers running now.
    pub active: Gauge,
    /// File bytes acknowledged by clients.
    pub bytes: Counter,
    /// DATA blocks sent again.
    pub retransmits: Counter,
    /// Finished transfers by ending label.
    endings: Counters<Outcome>,
}

impl TftpMetrics {
    /// Counts a finished transfer: its ending, the bytes acknowledged and the blocks resent.
    pub fn finished(&self, ending: &'static str, bytes: u64, retransmits: u64) {
        self.bytes.add(bytes);
        self.retransmits.add(retransmits);
        member(&self.endings, Outcome { outcome: ending }).inc();
    }

    /// Registers every TFTP metric in `r` (prefix `provisioner_tftp`).
    fn register(&self, r: &mut Registry) {
        for (name, help, c) in [
            ("requests", "Read/write requests received", &self.requests),
            (
                "malformed",
                "Datagrams on the TFTP port that were not valid requests",
                &self.malformed,
            ),
            (
                "refused",
                "Requests refused (write requests, unsupported modes)",
                &self.refused,
            ),
            (
                "busy",
                "Requests refused by the server-wide or per-client transfer limit",
                &self.busy,
            ),
            (
                "duplicate_requests",
                "Read requests dropped because they repeat a running transfer (same address, port and file)",
                &self.duplicates,
            ),
            ("bytes", "File bytes acknowledged by clients", &self.bytes),
            ("retransmits", "DATA blocks sent again", &self.retransmits),
        ] {
            r.register(name, help, c.0.clone());
        }
        r.register(
            "transfers_active",
            "Transfers running now",
            self.active.clone(),
        );
        r.register(
            "transfers",
            "Finished transfers by outcome",
            self.endings.clone(),
        );
    }
}

/// Label of a response counter: the status class (`2xx`, `4xx`, `5xx`; 3xx counts as 2xx).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusClass {
    class: &'static str,
}

/// Label of a syslog-line counter: whether a machine held the sender's address (`yes`/`no`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Attributed {
    attributed: &'static str,
}

/// Label of the machines gauge: a lifecycle state as `State` displays it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LifecycleState {
    state: String,
}

/// Every metric of the server; `/metrics` renders it with [`Metrics::render`].
pub struct Metrics {
    /// Handed to the TFTP server, which counts into it.
    pub tftp: Arc<TftpMetrics>,
    /// Handed to the DHCP server, which counts into it.
    pub dhcp: Arc<DhcpMetrics>,
    /// The DHCPv6 server's counters, the same families under `provisioner_dhcp6_*`.
    pub dhcp6: Arc<DhcpMetrics>,
    /// Unknown machines recorded or refused by [`crate::admission`] (DHCP and HTTP boot).
    pub discovery: AdmissionMetrics,
    /// `provisioner_http_responses_total{class}`; `http` holds its three series.
    http_responses: Counters<StatusClass>,
    /// Handles on the 2xx, 4xx and 5xx series of `http_responses`.
    http: [Counter; 3],
    events: Counter,
    /// Observation events not written (queue full or store error; see `event_writer`).
    events_dropped: Counter,
    /// Observation events queued and not yet written (`provisioner_events_pending`).
    pub events_pending: Gauge,
    expired: Counter,
    /// `provisioner_syslog_lines_total{attributed}`; the two handles below are its series.
    syslog: Counters<Attributed>,
    syslog_attributed: Counter,
    syslog_unattributed: Counter,
    /// Whether the store answers (`provisioner_store_up`), fed by every store call.
    pub store: crate::store_health::StoreHealth,
    /// `provisioner_asset_peer_fetches_total{result}`, with a shared store (etcd) only.
    pub asset_peer_fetches: Option<crate::asset_peers::FetchCounts>,
}

impl Default for Metrics {
    fn default() -> Self {
        let http_responses = Counters::default();
        let http =
            ["2xx", "4xx", "5xx"].map(|class| member(&http_responses, StatusClass { class }));
        let syslog = Counters::default();
        let yes = member(&syslog, Attributed { attributed: "yes" });
        let no = member(&syslog, Attributed { attributed: "no" });
        Metrics {
            tftp: Default::default(),
            dhcp: Default::default(),
            dhcp6: Default::default(),
            discovery: Default::default(),
            http_responses,
            http,
            events: Counter::default(),
            events_dropped: Counter::default(),
            events_pending: Gauge::default(),
            expired: Counter::default(),
            syslog,
            syslog_attributed: yes,
            syslog_unattributed: no,
            store: Default::default(),
            asset_peer_fetches: None,
        }
    }
}

impl Metrics {
    /// Counts one HTTP response by its status class.
    pub fn http_response(&self, status: u16) {
        let i = match status {
            200..=399 => 0,
            400..=499 => 1,
            _ => 2,
        };
        self.http[i].inc();
    }

    /// Counts `n` events appended to the store.
    pub fn events_appended(&self, n: usize) {
        self.events.add(n as u64);
    }

    /// Counts `n` observation events that were not written (see [`crate::event_writer`]).
    pub fn events_dropped(&self, n: usize) {
        self.events_dropped.add(n as u64);
    }

    /// Counts `n` syslog lines stored on the machine that held the sender's address.
    pub fn syslog_lines(&self, n: usize) {
        self.syslog_attributed.add(n as u64);
    }

    /// Counts one syslog line from an address no machine held.
    pub fn syslog_unattributed(&self) {
        self.syslog_unattributed.inc();
    }

    /// Counts `n` machines failed for outliving a lifecycle deadline.
    pub fn machines_expired(&self, n: usize) {
        self.expired.add(n as u64);
    }

    /// Renders every metric in the Prometheus text format (0.0.4); `machines` is the current
    /// inventory, `last_event_seq` the sequence number of the newest stored event and `policy`
    /// the unknown-machine policy (which records count as unclaimed).
    pub fn render(
        &self,
        machines: &[impl Borrow<Machine>],
        last_event_seq: u64,
        policy: netboot_proto::boot_decision::UnknownPolicy,
    ) -> String {
        let mut r = Registry::with_prefix("provisioner");
        let mut counts: BTreeMap<State, i64> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for m in machines {
            *counts.entry(m.borrow().state()).or_default() += 1;
        }
        let by_state = Family::<LifecycleState, Gauge>::default();
        for (s, n) in counts {
            let state = s.to_string();
            by_state.get_or_create(&LifecycleState { state }).set(n);
        }
        r.register(
            "machines",
            "Machines in the inventory by lifecycle state",
            by_state,
        );
        r.register(
            "http_responses",
            "HTTP responses by status class",
            self.http_responses.clone(),
        );
        r.register(
            "events_appended",
            "Events appended since start",
            self.events.0.clone(),
        );
        r.register(
            "events_pending",
            "Observation events queued for the batched event writer and not yet written",
            self.events_pending.clone(),
        );
        r.register(
            "events_dropped",
            "Observation events not recorded because the event queue was full or the store failed",
            self.events_dropped.0.clone(),
        );
        let seq = Gauge::<u64, std::sync::atomic::AtomicU64>::default();
        seq.set(last_event_seq);
        r.register(
            "event_sequence",
            "Sequence number of the newest stored event",
            seq,
        );
        r.register(
            "machines_expired",
            "Machines failed for outliving a lifecycle deadline",
            self.expired.0.clone(),
        );
        // An info metric: `provisioner_build_info{version="…"} 1`, typed gauge in this format.
        r.register(
            "build",
            "Build information",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "syslog_lines",
            "Syslog lines stored, by whether a machine held the sender's address",
            self.syslog.clone(),
        );
        if let Some(fetches) = &self.asset_peer_fetches {
            r.register(
                "asset_peer_fetches",
                "Asset files fetched from peers by digest, by result (ok, mismatch: wrong bytes refused, failed: peer unreachable or not 200, none: no peer served a wanted asset)",
                fetches.clone(),
            );
        }
        self.store
            .register(r.sub_registry_with_prefix("store"), crate::app::now());
        self.tftp.register(r.sub_registry_with_prefix("tftp"));
        self.dhcp.register(r.sub_registry_with_prefix("dhcp"));
        self.dhcp6.register(r.sub_registry_with_prefix("dhcp6"));
        self.discovery
            .register(r.sub_registry_with_prefix("discovery"), machines, policy);
        encode(&r)
    }
}

/// `Content-Type` of [`Metrics::render`]'s text: `text/plain; version=0.0.4; charset=utf-8`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The Prometheus text (0.0.4) of everything registered in `r`.
fn encode(r: &Registry) -> String {
    let mut out = String::new();
    prometheus_text::encode(&mut out, r).expect("writing to a String does not fail");
    out
}

/// Upper bounds (seconds) of the decision-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 8] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];

/// Label of the DHCP message counters: the message type, lower case (`discover`, `ack`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MessageType {
    r#type: String,
}

impl From<String> for MessageType {
    fn from(r#type: String) -> Self {
        MessageType { r#type }
    }
}

impl From<&'static str> for MessageType {
    fn from(r#type: &'static str) -> Self {
        MessageType {
            r#type: r#type.into(),
        }
    }
}

/// Label of the DHCP drop counter: why a request got no answer (a fixed text per cause).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropReason {
    reason: &'static str,
}

impl From<&'static str> for DropReason {
    fn from(reason: &'static str) -> Self {
        DropReason { reason }
    }
}

/// Label of the pool gauge: a subnet (`198.18.0.0/24`) and which count (`used` or `total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolAddresses {
    subnet: String,
    state: &'static str,
}

/// DHCP counters for `/metrics`.
pub struct DhcpMetrics {
    /// Requests received, by message type.
    pub(crate) received: Counters<MessageType>,
    /// Replies sent, by message type.
    pub(crate) sent: Counters<MessageType>,
    /// Requests not answered, by reason.
    pub(crate) dropped: Counters<DropReason>,
    /// Per subnet: (addresses bound or offered, size of the range), refreshed every second.
    pub(crate) pools: Mutex<Vec<(String, usize, usize)>>,
    /// Time from receiving a request to sending its reply (ACKs include the durable commit), in
    /// seconds, bucketed by `LATENCY_BUCKETS`.
    latency: Histogram,
    /// Per-packet observations the rate limits kept out of the event history.
    pub(crate) suppressed: Counter,
}

impl Default for DhcpMetrics {
    fn default() -> Self {
        DhcpMetrics {
            received: Counters::default(),
            sent: Counters::default(),
            dropped: Counters::default(),
            pools: Mutex::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            suppressed: Counter::default(),
        }
    }
}

impl DhcpMetrics {
    /// Records one reply's latency, in seconds.
    pub(crate) fn observe_latency(&self, secs: f64) {
        self.latency.observe(secs);
    }

    /// Adds one to the series of `family` labelled `key` (`DhcpMetrics::bump(&m.sent, "ack")`).
    pub(crate) fn bump<L, K>(family: &Counters<L>, key: K)
    where
        L: From<K> + Clone + Hash + Eq,
    {
        family.get_or_create(&L::from(key)).inc();
    }

    /// Registers every DHCP metric in `r` (prefix `provisioner_dhcp`); the pool gauge is the
    /// latest snapshot in `pools`.
    fn register(&self, r: &mut Registry) {
        r.register(
            "received",
            "DHCP requests received, by message type",
            self.received.clone(),
        );
        r.register(
            "sent",
            "DHCP replies sent, by message type",
            self.sent.clone(),
        );
        r.register(
            "dropped",
            "Requests not answered, by reason",
            self.dropped.clone(),
        );
        let pools = Family::<PoolAddresses, Gauge>::default();
        for (subnet, used, total) in self.pools.lock().unwrap().iter() {
            for (state, n) in [("used", used), ("total", total)] {
                let label = PoolAddresses {
                    subnet: subnet.clone(),
                    state,
                };
                pools.get_or_create(&label).set(*n as i64);
            }
        }
        r.register(
            "pool_addresses",
            "Addresses of a subnet's range, in use or in total",
            pools,
        );
        r.register(
            "events_suppressed",
            "Per-packet observations not recorded as events (rate limits)",
            self.suppressed.0.clone(),
        );
        r.register_with_unit(
            "reply_latency",
            "Time from request to reply (ACKs include the durable lease write)",
            Unit::Seconds,
            self.latency.clone(),
        );
    }
}

/// Label of the refused-admission counter: the limit that refused (`cap` or `rate`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedBy {
    reason: &'static str,
}

/// Counters of [`crate::admission`] for `/metrics`.
#[derive(Debug)]
pub struct AdmissionMetrics {
    /// Unknown machines recorded (discover/auto).
    pub admitted: Counter,
    /// Refused by the cap on unclaimed records (a series of `refused`).
    pub refused_cap: Counter,
    /// Refused by the rate limit (a series of `refused`).
    pub refused_rate: Counter,
    /// `provisioner_discovery_refused_total{reason}`.
    refused: Counters<RefusedBy>,
}

impl Default for AdmissionMetrics {
    fn default() -> Self {
        let refused = Counters::default();
        AdmissionMetrics {
            admitted: Counter::default(),
            refused_cap: member(&refused, RefusedBy { reason: "cap" }),
            refused_rate: member(&refused, RefusedBy { reason: "rate" }),
            refused,
        }
    }
}

impl AdmissionMetrics {
    /// Appends the admission metrics in Prometheus text format; `machines` is the inventory
    /// (the unclaimed records under `policy` are counted from it).
    pub fn render(
        &self,
        out: &mut String,
        machines: &[impl Borrow<Machine>],
        policy: netboot_proto::boot_decision::UnknownPolicy,
    ) {
        let mut r = Registry::with_prefix("provisioner");
        self.register(r.sub_registry_with_prefix("discovery"), machines, policy);
        out.push_str(&encode(&r));
    }

    /// Registers the admission metrics in `r` (prefix `provisioner_discovery`).
    fn register(
        &self,
        r: &mut Registry,
        machines: &[impl Borrow<Machine>],
        policy: netboot_proto::boot_decision::UnknownPolicy,
    ) {
        let waiting = machines
            .iter()
            .filter(|m| netboot_proto::boot_decision::unclaimed((*m).borrow(), policy))
            .count();
        r.register(
            "admitted",
            "Unknown machines recorded (discover/auto)",
            self.admitted.0.clone(),
        );
        r.register(
            "refused",
            "Unknown machines not recorded, by the limit that refused them",
            self.refused.clone(),
        );
        let unclaimed = Gauge::<i64>::default();
        unclaimed.set(waiting as i64);
        r.register(
            "unclaimed",
            "Records made for unknown machines that nobody has claimed yet",
            unclaimed,
        );
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
