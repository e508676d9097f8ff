//! Prometheus text exposition for `/metrics`. Counters are plain atomics; per-state machine
//! counts are computed from the store at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use inventory::{Machine, State};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// TFTP server counters.
#[derive(Default)]
pub struct TftpMetrics {
    pub requests: Counter,
    pub malformed: Counter,
    pub refused: Counter,
    pub busy: Counter,
    pub active: Gauge,
    pub bytes: Counter,
    pub retransmits: Counter,
    /// Finished transfers by ending label.
    endings: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

impl TftpMetrics {
    pub fn finished(&self, ending: &'static str, bytes: u64, retransmits: u64) {
        self.bytes.add(bytes);
        self.retransmits.add(retransmits);
        *self.endings.lock().unwrap().entry(ending).or_default() += 1;
    }

    fn render(&self, out: &mut String) {
        let simple = [
            (
                "provisioner_tftp_requests_total",
                "counter",
                "Read/write requests received.",
                self.requests.get(),
            ),
            (
                "provisioner_tftp_malformed_total",
                "counter",
                "Datagrams on the TFTP port that were not valid requests.",
                self.malformed.get(),
            ),
            (
                "provisioner_tftp_refused_total",
                "counter",
                "Requests refused (write requests, unsupported modes).",
                self.refused.get(),
            ),
            (
                "provisioner_tftp_busy_total",
                "counter",
                "Requests refused by the server-wide or per-client transfer limit.",
                self.busy.get(),
            ),
            (
                "provisioner_tftp_transfers_active",
                "gauge",
                "Transfers running now.",
                self.active.get(),
            ),
            (
                "provisioner_tftp_bytes_total",
                "counter",
                "File bytes acknowledged by clients.",
                self.bytes.get(),
            ),
            (
                "provisioner_tftp_retransmits_total",
                "counter",
                "DATA blocks sent again.",
                self.retransmits.get(),
            ),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out.push_str("# HELP provisioner_tftp_transfers_total Finished transfers by outcome.\n");
        out.push_str("# TYPE provisioner_tftp_transfers_total counter\n");
        for (ending, n) in self.endings.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "provisioner_tftp_transfers_total{{outcome=\"{ending}\"}} {n}"
            );
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    pub tftp: std::sync::Arc<TftpMetrics>,
    pub dhcp: std::sync::Arc<DhcpMetrics>,
    /// Unknown machines recorded or refused by [`crate::admission`] (DHCP and HTTP boot).
    pub discovery: AdmissionMetrics,
    http_2xx: AtomicU64,
    http_4xx: AtomicU64,
    http_5xx: AtomicU64,
    events: AtomicU64,
    expired: AtomicU64,
    syslog_lines: AtomicU64,
    syslog_unattributed: AtomicU64,
}

impl Metrics {
    pub fn http_response(&self, status: u16) {
        match status {
            200..=399 => &self.http_2xx,
            400..=499 => &self.http_4xx,
            _ => &self.http_5xx,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn events_appended(&self, n: usize) {
        self.events.fetch_add(n as u64, Relaxed);
    }

    pub fn syslog_lines(&self, n: usize) {
        self.syslog_lines.fetch_add(n as u64, Relaxed);
    }

    pub fn syslog_unattributed(&self) {
        self.syslog_unattributed.fetch_add(1, Relaxed);
    }

    pub fn machines_expired(&self, n: usize) {
        self.expired.fetch_add(n as u64, Relaxed);
    }

    /// Renders every metric; `machines` is the current inventory.
    pub fn render(&self, machines: &[Machine], last_event_seq: u64) -> String {
        let mut by_state: BTreeMap<State, u64> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for m in machines {
            *by_state.entry(m.state()).or_default() += 1;
        }
        let mut out = String::new();
        out.push_str("# HELP provisioner_machines Machines in the inventory by lifecycle state.\n");
        out.push_str("# TYPE provisioner_machines gauge\n");
        for (s, n) in by_state {
            let _ = writeln!(out, "provisioner_machines{{state=\"{s}\"}} {n}");
        }
        out.push_str("# HELP provisioner_http_responses_total HTTP responses by status class.\n");
        out.push_str("# TYPE provisioner_http_responses_total counter\n");
        for (class, c) in [
            ("2xx", &self.http_2xx),
            ("4xx", &self.http_4xx),
            ("5xx", &self.http_5xx),
        ] {
            let _ = writeln!(
                out,
                "provisioner_http_responses_total{{class=\"{class}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP provisioner_events_appended_total Events appended since start.\n\
             # TYPE provisioner_events_appended_total counter\n\
             provisioner_events_appended_total {}",
            self.events.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP provisioner_event_sequence Sequence number of the newest stored event.\n\
             # TYPE provisioner_event_sequence gauge\n\
             provisioner_event_sequence {last_event_seq}"
        );
        let _ = writeln!(
            out,
            "# HELP provisioner_machines_expired_total Machines failed for outliving a lifecycle deadline.\n\
             # TYPE provisioner_machines_expired_total counter\n\
             provisioner_machines_expired_total {}",
            self.expired.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP provisioner_build_info Build information.\n\
             # TYPE provisioner_build_info gauge\n\
             provisioner_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP provisioner_syslog_lines_total Syslog lines stored, by whether a machine held the sender's address.\n\
             # TYPE provisioner_syslog_lines_total counter\n\
             provisioner_syslog_lines_total{{attributed=\"yes\"}} {}\n\
             provisioner_syslog_lines_total{{attributed=\"no\"}} {}",
            self.syslog_lines.load(Relaxed),
            self.syslog_unattributed.load(Relaxed)
        );
        self.tftp.render(&mut out);
        self.dhcp.render(&mut out);
        self.discovery.render(&mut out, machines);
        out
    }
}

/// Upper bounds (seconds) of the decision-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 8] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];

/// DHCP counters for `/metrics`.
#[derive(Default)]
pub struct DhcpMetrics {
    pub(crate) received: Mutex<BTreeMap<String, u64>>,
    pub(crate) sent: Mutex<BTreeMap<String, u64>>,
    pub(crate) dropped: Mutex<BTreeMap<&'static str, u64>>,
    /// Per subnet: (addresses bound or offered, size of the range), refreshed every second.
    pub(crate) pools: Mutex<Vec<(String, usize, usize)>>,
    /// Time from receiving a request to sending its reply (ACKs include the durable commit):
    /// counts per bucket of `LATENCY_BUCKETS` plus overflow, sum, count.
    pub(crate) latency: Mutex<([u64; 9], f64, u64)>,
    /// Per-packet observations the rate limits kept out of the event history.
    pub(crate) suppressed: crate::metrics::Counter,
}

impl DhcpMetrics {
    pub(crate) fn observe_latency(&self, secs: f64) {
        let mut l = self.latency.lock().unwrap();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        l.0[i] += 1;
        l.1 += secs;
        l.2 += 1;
    }
}

impl DhcpMetrics {
    pub(crate) fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, k: K) {
        *map.lock().unwrap().entry(k).or_default() += 1;
    }

    pub fn render(&self, out: &mut String) {
        for (name, help, map) in [
            (
                "provisioner_dhcp_received_total",
                "DHCP requests received, by message type.",
                &self.received,
            ),
            (
                "provisioner_dhcp_sent_total",
                "DHCP replies sent, by message type.",
                &self.sent,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, v) in map.lock().unwrap().iter() {
                let _ = writeln!(out, "{name}{{type=\"{k}\"}} {v}");
            }
        }
        let _ = writeln!(out, "# HELP provisioner_dhcp_dropped_total Requests not answered, by reason.\n# TYPE provisioner_dhcp_dropped_total counter");
        for (k, v) in self.dropped.lock().unwrap().iter() {
            let _ = writeln!(out, "provisioner_dhcp_dropped_total{{reason=\"{k}\"}} {v}");
        }
        let _ = writeln!(out, "# HELP provisioner_dhcp_pool_addresses Addresses of a subnet's range, in use or in total.\n# TYPE provisioner_dhcp_pool_addresses gauge");
        for (subnet, used, total) in self.pools.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "provisioner_dhcp_pool_addresses{{subnet=\"{subnet}\",state=\"used\"}} {used}"
            );
            let _ = writeln!(
                out,
                "provisioner_dhcp_pool_addresses{{subnet=\"{subnet}\",state=\"total\"}} {total}"
            );
        }
        let name = "provisioner_dhcp_events_suppressed_total";
        let _ = writeln!(out, "# HELP {name} Per-packet observations not recorded as events (rate limits).\n# TYPE {name} counter\n{name} {}", self.suppressed.get());
        let (buckets, sum, count) = *self.latency.lock().unwrap();
        let name = "provisioner_dhcp_reply_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Time from request to reply (ACKs include the durable lease write).\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += buckets[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AdmissionMetrics {
    pub admitted: Counter,
    pub refused_cap: Counter,
    pub refused_rate: Counter,
}

impl AdmissionMetrics {
    /// Appends the admission metrics in Prometheus text format; `machines` is the inventory
    /// (the unclaimed records are counted from it).
    pub fn render(&self, out: &mut String, machines: &[Machine]) {
        use std::fmt::Write;
        let waiting = machines
            .iter()
            .filter(|m| netboot_proto::boot_decision::unclaimed(m))
            .count();
        let _ = writeln!(
            out,
            "# HELP provisioner_discovery_admitted_total Unknown machines recorded (discover/auto).\n\
             # TYPE provisioner_discovery_admitted_total counter\n\
             provisioner_discovery_admitted_total {}\n\
             # HELP provisioner_discovery_refused_total Unknown machines not recorded, by the limit that refused them.\n\
             # TYPE provisioner_discovery_refused_total counter\n\
             provisioner_discovery_refused_total{{reason=\"cap\"}} {}\n\
             provisioner_discovery_refused_total{{reason=\"rate\"}} {}\n\
             # HELP provisioner_discovery_unclaimed Records made for unknown machines that nobody has claimed yet.\n\
             # TYPE provisioner_discovery_unclaimed gauge\n\
             provisioner_discovery_unclaimed {waiting}",
            self.admitted.get(),
            self.refused_cap.get(),
            self.refused_rate.get(),
        );
    }
}
