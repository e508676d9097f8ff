//! What a storm reports: per phase latency (p50/p99/max, milliseconds) and failures by cause,
//! the total wall time, the server's CPU-seconds and peak RSS (from /proc), the bytes moved, and
//! the bandwidth bound: those bytes ÷ the link's measured throughput, i.e. the shortest wall
//! time any server could reach on this link, and how far the storm was from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::client::{MachineRun, Phase};

#[derive(Debug, Serialize, Default)]
pub struct PhaseStats {
    pub phase: &'static str,
    /// Machines that finished this phase.
    pub done: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Machines that stopped in this phase, by cause.
    pub failures: BTreeMap<String, usize>,
}

/// The server's resource use, read from `/proc/<pid>`.
#[derive(Debug, Serialize, Default, Clone)]
pub struct ServerUse {
    /// What it was: `provisioner`, or `dnsmasq+nginx`.
    pub name: String,
    /// user + system CPU seconds during the storm (every process of the stack).
    pub cpu_seconds: f64,
    /// Peak resident set (VmHWM), MiB, summed over the stack's processes.
    pub peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub server: ServerUse,
    pub machines: usize,
    pub mode: &'static str,
    /// Machines per rack (relayed mode only).
    pub rack_size: Option<usize>,
    /// Arrivals spread over this many seconds (0: all at once).
    pub ramp_seconds: f64,
    /// Machines still booting after this many seconds failed.
    pub deadline_seconds: f64,
    pub uki_bytes: u64,
    /// Machines whose register POST succeeded.
    pub registered: usize,
    /// Machines the server's own inventory shows `ready` (ours only).
    pub ready_in_inventory: Option<usize>,
    pub failures: usize,
    pub wall_seconds: f64,
    pub phases: Vec<PhaseStats>,
    pub bytes: u64,
    /// Measured throughput of the link, server → machines, bytes per second.
    pub link_bytes_per_second: f64,
    /// `bytes / link_bytes_per_second`: no server can finish faster on this link.
    pub bandwidth_bound_seconds: f64,
    /// `wall_seconds / bandwidth_bound_seconds` (1.0 is the link's limit).
    pub ratio_to_bound: f64,
    pub loss_percent: u32,
    /// `--ha` and `--crash-kills`: kills, reboots and the machine checks on the server that
    /// is left (the survivor, or the restarted one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<super::ha::HaReport>,
    /// `--crash-kills` only: restarts and the operator writes checked after each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash: Option<super::campaign::CrashReport>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// The per-phase table of a set of machine runs.
pub fn phases(runs: &[MachineRun]) -> Vec<PhaseStats> {
    Phase::ALL
        .iter()
        .map(|&p| {
            let mut d: Vec<Duration> = runs
                .iter()
                .flat_map(|r| r.phases.iter().filter(|(q, _)| *q == p).map(|(_, d)| *d))
                .collect();
            d.sort();
            let mut failures = BTreeMap::new();
            for r in runs {
                if let Some((q, why)) = &r.failure {
                    if *q == p {
                        *failures.entry(cause(why)).or_insert(0) += 1;
                    }
                }
            }
            PhaseStats {
                phase: p.name(),
                done: d.len(),
                p50_ms: percentile(&d, 0.5),
                p99_ms: percentile(&d, 0.99),
                max_ms: percentile(&d, 1.0),
                failures,
            }
        })
        .collect()
}

/// A failure message with the parts that differ per machine (addresses, numbers) blanked, so
/// one cause is one line.
pub fn cause(why: &str) -> String {
    let s: String = why
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect();
    let mut out = String::new();
    let mut last = ' ';
    for c in s.chars().take(120) {
        if !(c == '#' && last == '#') {
            out.push(c);
        }
        last = c;
    }
    out
}

fn mib(b: f64) -> f64 {
    b / 1048576.0
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let racks = match self.rack_size {
            Some(n) => format!(" ({n} per rack)"),
            None => String::new(),
        };
        let arrivals = if self.ramp_seconds > 0.0 {
            format!("ramp {:.0} s", self.ramp_seconds)
        } else {
            "all at once".to_string()
        };
        let loss = if self.loss_percent > 0 {
            format!(", {} % packet loss", self.loss_percent)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "storm: {} machines, {} DHCP{racks}, UKI {:.0} MiB, {arrivals}, deadline {:.0} s, server {}{loss}",
            self.machines,
            self.mode,
            mib(self.uki_bytes as f64),
            self.deadline_seconds,
            self.server.name,
        );
        let _ = writeln!(
            s,
            "{:<10} {:>6} {:>10} {:>10} {:>10}  failures",
            "phase", "done", "p50 ms", "p99 ms", "max ms"
        );
        for p in &self.phases {
            let f = if p.failures.is_empty() {
                "0".to_string()
            } else {
                p.failures
                    .iter()
                    .map(|(k, v)| format!("{v}× {k}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let _ = writeln!(
                s,
                "{:<10} {:>6} {:>10.1} {:>10.1} {:>10.1}  {f}",
                p.phase, p.done, p.p50_ms, p.p99_ms, p.max_ms
            );
        }
        let _ = writeln!(
            s,
            "registered {}/{}{}, failures {}",
            self.registered,
            self.machines,
            self.ready_in_inventory
                .map_or(String::new(), |r| format!(" (inventory: {r} ready)")),
            self.failures
        );
        let _ = writeln!(
            s,
            "wall {:.2} s; server CPU {:.2} s, peak RSS {:.1} MiB",
            self.wall_seconds, self.server.cpu_seconds, self.server.peak_rss_mib
        );
        let _ = writeln!(
            s,
            "moved {:.1} MiB; link {:.0} MiB/s → bandwidth bound {:.2} s; wall / bound = {:.2}{}",
            mib(self.bytes as f64),
            mib(self.link_bytes_per_second),
            self.bandwidth_bound_seconds,
            self.ratio_to_bound,
            if self.ramp_seconds > 0.0 {
                format!(
                    " (the wall includes the {:.0} s ramp: compare with --ramp 0)",
                    self.ramp_seconds
                )
            } else {
                String::new()
            }
        );
        if let Some(h) = &self.ha {
            h.table(&mut s);
        }
        if let Some(c) = &self.crash {
            c.table(&mut s);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_causes() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), 50.0);
        assert_eq!(percentile(&d, 0.99), 99.0);
        assert_eq!(percentile(&d, 1.0), 100.0);
        assert_eq!(cause("bind 198.19.0.12: error 98"), "bind #.#.#.#: error #");
    }
}
