//! The rendered exposition, read back by a small line parser the way a scraper reads it: names,
//! label sets, values and `# TYPE` lines.

use std::collections::BTreeMap;

use super::*;
use inventory::{MachineSpec, Timestamp};

/// One scrape: `samples` by series (`name{labels}` as written), `types` by metric name.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

/// Parses Prometheus text 0.0.4: `# TYPE name kind`, other `#` lines skipped, every other
/// non-empty line `series value` with the value a float or `+Inf`. Panics on anything else.
fn parse(text: &str) -> Scrape {
    let mut s = Scrape {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("# TYPE name kind");
            assert!(
                s.types.insert(name.into(), kind.into()).is_none(),
                "{name} typed twice"
            );
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let v = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
            };
            assert!(
                s.samples.insert(series.into(), v).is_none(),
                "{series} twice"
            );
        }
    }
    s
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:#?}", self.samples))
    }
}

/// A registered machine; without a hostname it counts as an unclaimed record.
fn machine(last: u8, hostname: Option<&str>) -> Machine {
    let mac = format!("52:54:00:00:00:{last:02x}").parse().unwrap();
    let spec = MachineSpec {
        hostname: hostname.map(Into::into),
        ..Default::default()
    };
    Machine::registered(mac, spec, Timestamp(0))
}

#[test]
fn exposition_reads_back_as_counters_gauges_and_a_cumulative_histogram() {
    let m = Metrics::default();
    m.tftp.requests.add(3);
    m.tftp.active.inc();
    m.tftp.finished("complete", 1_000, 2);
    m.http_response(404);
    m.http_response(401);
    m.syslog_lines(5);
    m.discovery.refused_cap.add(7);
    DhcpMetrics::bump(&m.dhcp.sent, "ack".to_string());
    DhcpMetrics::bump(&m.dhcp.sent, "ack".to_string());
    DhcpMetrics::bump(&m.dhcp.sent, "offer");
    DhcpMetrics::bump(&m.dhcp.dropped, "malformed");
    m.dhcp.suppressed.add(4);
    *m.dhcp.pools.lock().unwrap() = vec![("198.18.0.0/24".into(), 12, 100)];
    // One observation per region: below the first bound, on a bound, between two, above the last.
    for secs in [0.00005, 0.0005, 0.003, 0.2] {
        m.dhcp.observe_latency(secs);
    }
    let text = m.render(
        &[machine(1, None), machine(2, Some("web-2"))],
        42,
        netboot_proto::boot_decision::UnknownPolicy::Auto,
    );
    let s = parse(&text);

    // Counters: typed under their `_total` name, which the sample carries too.
    assert_eq!(s.types["provisioner_tftp_requests_total"], "counter");
    assert_eq!(s.get("provisioner_tftp_requests_total"), 3.0);
    assert_eq!(s.get("provisioner_tftp_bytes_total"), 1_000.0);
    assert_eq!(s.get("provisioner_tftp_busy_total"), 0.0);
    assert_eq!(s.get("provisioner_dhcp_events_suppressed_total"), 4.0);
    // Labelled counters, including series made up front that were never counted.
    assert_eq!(s.get("provisioner_dhcp_sent_total{type=\"ack\"}"), 2.0);
    assert_eq!(s.get("provisioner_dhcp_sent_total{type=\"offer\"}"), 1.0);
    assert_eq!(
        s.get("provisioner_dhcp_dropped_total{reason=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        s.get("provisioner_tftp_transfers_total{outcome=\"complete\"}"),
        1.0
    );
    assert_eq!(
        s.get("provisioner_http_responses_total{class=\"4xx\"}"),
        2.0
    );
    assert_eq!(
        s.get("provisioner_http_responses_total{class=\"2xx\"}"),
        0.0
    );
    assert_eq!(
        s.get("provisioner_syslog_lines_total{attributed=\"yes\"}"),
        5.0
    );
    assert_eq!(
        s.get("provisioner_syslog_lines_total{attributed=\"no\"}"),
        0.0
    );
    assert_eq!(
        s.get("provisioner_discovery_refused_total{reason=\"cap\"}"),
        7.0
    );
    assert_eq!(
        s.get("provisioner_discovery_refused_total{reason=\"rate\"}"),
        0.0
    );
    assert_eq!(s.types["provisioner_dhcp_sent_total"], "counter");

    // Gauges: every lifecycle state (zeros too), pools, the event sequence, build info.
    assert_eq!(s.types["provisioner_machines"], "gauge");
    assert_eq!(s.get("provisioner_machines{state=\"registered\"}"), 2.0);
    for state in State::ALL.iter().filter(|st| **st != State::Registered) {
        assert_eq!(
            s.get(&format!("provisioner_machines{{state=\"{state}\"}}")),
            0.0
        );
    }
    assert_eq!(s.get("provisioner_tftp_transfers_active"), 1.0);
    assert_eq!(s.types["provisioner_dhcp_pool_addresses"], "gauge");
    assert_eq!(
        s.get("provisioner_dhcp_pool_addresses{subnet=\"198.18.0.0/24\",state=\"used\"}"),
        12.0
    );
    assert_eq!(
        s.get("provisioner_dhcp_pool_addresses{subnet=\"198.18.0.0/24\",state=\"total\"}"),
        100.0
    );
    assert_eq!(s.get("provisioner_event_sequence"), 42.0);
    assert_eq!(s.get("provisioner_discovery_unclaimed"), 1.0);
    assert_eq!(s.types["provisioner_build_info"], "gauge");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        s.get(&format!("provisioner_build_info{{version=\"{version}\"}}")),
        1.0
    );

    // The histogram: one bucket per bound, in the bounds' own spelling, each counting every
    // observation at or below its bound (cumulative), `+Inf` equal to the count.
    let h = "provisioner_dhcp_reply_latency_seconds";
    assert_eq!(s.types[h], "histogram");
    let buckets: Vec<f64> = [
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    ]
    .iter()
    .chain(&["0.05", "+Inf"])
    .map(|le| s.get(&format!("{h}_bucket{{le=\"{le}\"}}")))
    .collect();
    assert_eq!(buckets, [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0]);
    assert_eq!(s.get(&format!("{h}_count")), 4.0);
    let sum = s.get(&format!("{h}_sum"));
    assert!((sum - 0.20355).abs() < 1e-9, "{sum}");
    // Nothing else is bucketed: no stray bounds.
    let bucket_lines = s
        .samples
        .keys()
        .filter(|k| k.starts_with(&format!("{h}_bucket")))
        .count();
    assert_eq!(bucket_lines, 9, "{text}");
}
