//! `lab storm --ha`: the storm against two provisioners sharing a three-member etcd cluster on
//! one bridge (see [`super::net::StormNet::new_ha`]), with `kill -9` of a provisioner and then
//! of the etcd leader while machines boot; machines whose server vanished boot again, as
//! firmware retries. Afterwards, from the survivor:
//!
//! - every machine is `ready` in the inventory;
//! - no address was ACKed to a MAC while another held it (from what the machines were told; a
//!   machine holds an address from its ACK until it is ACKed another one), and the store holds
//!   each machine's last ACKed address for that machine;
//! - every event a server acknowledged (a 2xx to a machine's progress or register POST) is in
//!   the history, whose sequence numbers are one strictly increasing order;
//! - the survivor's SSE stream, from the start, replays exactly that history.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;

use super::client::MachineRun;
use super::net::{self, StormNet};
use super::plan::Plan;
use super::server::{Ours, HTTP_PORT};

/// When to kill what, as a share of the machines registered.
#[derive(Clone, Copy, Debug, Default)]
pub struct KillPlan {
    /// `kill -9` the first provisioner once this percent of machines has registered.
    pub provisioner_at: Option<u32>,
    /// `kill -9` the etcd leader once this percent has registered (after the provisioner).
    pub etcd_leader_at: Option<u32>,
}

/// One kill that happened.
#[derive(Debug, Serialize, Clone)]
pub struct Kill {
    pub what: String,
    pub pid: u32,
    /// Seconds after the first arrival.
    pub at_seconds: f64,
    /// Machines registered at that moment.
    pub registered_before: usize,
}

/// What `--ha` adds to the report.
#[derive(Debug, Serialize, Default)]
pub struct HaReport {
    pub servers: Vec<String>,
    pub etcd_members: usize,
    pub kills: Vec<Kill>,
    /// Boots started again after a failure, over all machines.
    pub reboots: usize,
    pub machines_rebooted: usize,
    /// Why the boots that were started again failed: "phase: cause" → count.
    pub reboot_causes: BTreeMap<String, usize>,
    /// ACKs each server gave (its option 54).
    pub acks_by_server: BTreeMap<String, usize>,
    /// Addresses ACKed to a MAC while another still held them (a machine holds an address
    /// from its ACK until an ACK of another address, or the end).
    pub addresses_acked_to_two_macs: usize,
    /// Machines whose last ACKed address the survivor's store holds for another MAC.
    pub last_acks_held_by_another_mac: usize,
    /// Machines whose last ACKed address the store does not hold for them.
    pub last_acks_not_in_store: usize,
    /// Machines ACKed more than one address (a server that did not know another's binding
    /// offered a new one after a reboot; the old one was released by the move).
    pub machines_moved: usize,
    /// Progress and register POSTs answered 2xx.
    pub acknowledged_events: usize,
    pub acknowledged_events_missing: usize,
    /// Events in the survivor's history; sequence numbers not strictly increasing.
    pub events: usize,
    pub events_out_of_order: usize,
    /// Events the survivor's SSE stream replayed from the start, and whether they are exactly
    /// the history's sequence numbers.
    pub sse_replayed: usize,
    pub sse_matches_history: bool,
}

impl HaReport {
    /// The lines `--ha` adds to the human-readable report.
    pub fn table(&self, s: &mut String) {
        use std::fmt::Write as _;
        let _ = if self.etcd_members > 0 {
            writeln!(
                s,
                "ha: servers {}, etcd members {}",
                self.servers.join(" and "),
                self.etcd_members
            )
        } else {
            writeln!(
                s,
                "kills and machine checks: server {}",
                self.servers.join(" and ")
            )
        };
        for k in &self.kills {
            let _ = writeln!(
                s,
                "  kill -9 {} (pid {}) at {:.1} s, {} registered before",
                k.what, k.pid, k.at_seconds, k.registered_before
            );
        }
        let acks: Vec<String> = self
            .acks_by_server
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            s,
            "  reboots {} ({} machine(s)); ACKs by server {}",
            self.reboots,
            self.machines_rebooted,
            acks.join(", ")
        );
        for (cause, n) in &self.reboot_causes {
            let _ = writeln!(s, "    {n}× {cause}");
        }
        let _ = writeln!(
            s,
            "  addresses ACKed to two MACs at once {}; machines whose address the store holds for \
             another MAC {}, or not at all {}; machines that moved address {}",
            self.addresses_acked_to_two_macs,
            self.last_acks_held_by_another_mac,
            self.last_acks_not_in_store,
            self.machines_moved
        );
        let _ = writeln!(
            s,
            "  acknowledged events {} (missing {}); history {} events ({} out of order); SSE replayed {} ({})",
            self.acknowledged_events,
            self.acknowledged_events_missing,
            self.events,
            self.events_out_of_order,
            self.sse_replayed,
            if self.sse_matches_history { "same as the history" } else { "DIFFERENT from the history" }
        );
    }

    /// What the checks found wrong, one line each (empty: the run passed).
    pub fn problems(&self, plan: &KillPlan) -> Vec<String> {
        let mut p = Vec::new();
        let wanted =
            plan.provisioner_at.is_some() as usize + plan.etcd_leader_at.is_some() as usize;
        if self.kills.len() < wanted {
            p.push(format!(
                "{} of {wanted} kills happened (the storm ended first: raise --machines or --ramp)",
                self.kills.len()
            ));
        }
        for (n, what) in [
            (
                self.addresses_acked_to_two_macs,
                "addresses ACKed to two MACs",
            ),
            (
                self.last_acks_held_by_another_mac,
                "ACKed addresses the store holds for another MAC",
            ),
            (
                self.last_acks_not_in_store,
                "machines whose last ACKed lease is not in the store",
            ),
            (
                self.acknowledged_events_missing,
                "acknowledged events missing",
            ),
            (self.events_out_of_order, "events out of sequence order"),
        ] {
            if n > 0 {
                p.push(format!("{n} {what}"));
            }
        }
        if !self.sse_matches_history {
            p.push(format!(
                "the SSE stream replayed {} events, the history has {}",
                self.sse_replayed, self.events
            ));
        }
        p
    }
}

/// When the `--ha` kills happen: [`KillPlan`] as counts of `machines`, while `storm` runs.
pub struct KillWatch<'a, T> {
    pub plan: KillPlan,
    pub machines: usize,
    pub storm: &'a std::thread::JoinHandle<T>,
}

/// Kills the first provisioner `a`, then the etcd leader, at the plan's shares of machines
/// registered (polled every 50 ms until the storm ends); the CPU-seconds `a` had used.
pub fn run_kills<T>(
    w: &KillWatch<'_, T>,
    a: &mut Ours,
    c: &mut super::etcd::EtcdCluster,
    k: &super::Kills<'_>,
    report: &mut HaReport,
) -> anyhow::Result<f64> {
    let at = |pct: Option<u32>| pct.map(|p| (w.machines * p as usize).div_ceil(100));
    let (mut server_at, mut leader_at) = (at(w.plan.provisioner_at), at(w.plan.etcd_leader_at));
    let mut cpu = 0.0;
    while !w.storm.is_finished() && (server_at.is_some() || leader_at.is_some()) {
        std::thread::sleep(Duration::from_millis(50));
        let (n, at_seconds) = k.now();
        let (what, pid) = if server_at.is_some_and(|x| n >= x) {
            server_at = None;
            cpu += (k.cpu)(&[a.pid()]);
            (format!("provisioner {}", a.ip), a.kill9())
        } else if server_at.is_none() && leader_at.is_some_and(|x| n >= x) {
            leader_at = None;
            let i = c.leader()?;
            let pid = c.kill(i).context("the leader was already dead")?;
            (format!("etcd leader {}", super::net::ETCD_IPS[i]), pid)
        } else {
            continue;
        };
        (k.say)(&format!(
            "kill -9 {what} (pid {pid}) at {at_seconds:.1} s, {n} registered"
        ));
        report.kills.push(Kill {
            what,
            pid,
            at_seconds,
            registered_before: n,
        });
    }
    Ok(cpu)
}

/// The checks after the storm, against the survivor `b`. The event histories of the first ten
/// machines that failed, if any, go to `work/ha-failed-machines.json`.
pub fn check(
    netw: &StormNet,
    work: &std::path::Path,
    b: &Ours,
    runs: &[MachineRun],
    report: &mut HaReport,
) -> anyhow::Result<()> {
    report.reboots = runs.iter().map(|r| r.reboots).sum();
    report.machines_rebooted = runs.iter().filter(|r| r.reboots > 0).count();
    for (phase, why) in runs.iter().flat_map(|r| &r.reboot_causes) {
        let key = format!("{}: {}", phase.name(), super::report::cause(why));
        *report.reboot_causes.entry(key).or_default() += 1;
    }
    // Each machine holds an address from its ACK until its next ACK names another one (a
    // client that moves lets go of the old address) or the end.
    let mut held: HashMap<Ipv4Addr, Vec<(usize, Instant, Option<Instant>)>> = HashMap::new();
    for (i, r) in runs.iter().enumerate() {
        for (k, (ip, server, at)) in r.acks.iter().enumerate() {
            *report.acks_by_server.entry(server.to_string()).or_default() += 1;
            if k > 0 && r.acks[k - 1].0 == *ip {
                continue;
            }
            let until = r.acks[k + 1..].iter().find(|a| a.0 != *ip).map(|a| a.2);
            held.entry(*ip).or_default().push((i, *at, until));
        }
    }
    let overlaps = |v: &[(usize, Instant, Option<Instant>)]| {
        v.iter().any(|(m, from, until)| {
            v.iter()
                .any(|(n, from2, _)| n != m && from2 >= from && until.is_none_or(|u| *from2 < u))
        })
    };
    report.addresses_acked_to_two_macs = held.values().filter(|v| overlaps(v)).count();
    let leases: Vec<Value> = serde_json::from_str(&b.cli(netw, &["--json", "leases"])?)?;
    let stored: HashMap<String, String> = leases
        .iter()
        .filter_map(|l| Some((l["ip"].as_str()?.into(), l["mac"].as_str()?.into())))
        .collect();
    // Where each machine ended: its last ACKed address, and what the store says of it.
    let mut last_held_by_other = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let Some((ip, _, _)) = r.acks.last() else {
            continue;
        };
        match stored.get(&ip.to_string()) {
            Some(m) if *m == Plan::mac_text(i) => {}
            Some(_) => last_held_by_other.push(*ip),
            None => report.last_acks_not_in_store += 1,
        }
    }
    report.last_acks_held_by_another_mac = last_held_by_other.len();
    // Evidence for a conflict: the address, who held it (with every ACK of theirs, in order,
    // and the server), and the stored lease.
    let conflicts: Vec<Value> = held
        .iter()
        .filter(|(ip, v)| overlaps(v) || last_held_by_other.contains(ip))
        .map(|(ip, v)| {
            let acked: Vec<Value> = v
                .iter()
                .map(|(m, _, _)| {
                    let acks: Vec<String> = runs[*m]
                        .acks
                        .iter()
                        .map(|(a, s, _)| format!("{a} from {s}"))
                        .collect();
                    serde_json::json!({"mac": Plan::mac_text(*m), "acks": acks})
                })
                .collect();
            let lease = leases.iter().find(|l| l["ip"] == ip.to_string()).cloned();
            serde_json::json!({"ip": ip.to_string(), "acked": acked, "stored": lease})
        })
        .collect();
    if !conflicts.is_empty() {
        std::fs::write(
            work.join("ha-conflicts.json"),
            serde_json::to_string_pretty(&conflicts)?,
        )?;
    }
    report.machines_moved = runs
        .iter()
        .filter(|r| {
            r.acks
                .iter()
                .any(|(ip, _, _)| Some(ip) != r.acks.first().map(|a| &a.0))
        })
        .count();

    let events: Vec<Value> =
        serde_json::from_str(&b.cli(netw, &["--json", "events", "--limit", "100000"])?)?;
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    report.events = seqs.len();
    report.events_out_of_order = seqs.windows(2).filter(|w| w[0] >= w[1]).count();
    let mut per_mac: HashMap<String, (usize, usize)> = HashMap::new();
    for e in &events {
        let Some(mac) = e["mac"].as_str() else {
            continue;
        };
        let c = per_mac.entry(mac.to_string()).or_default();
        match e["type"].as_str() {
            Some("progress") if e["phase"] == "storm" => c.0 += 1,
            Some("registered") => c.1 += 1,
            _ => {}
        }
    }
    for (i, r) in runs.iter().enumerate() {
        report.acknowledged_events += r.acked_progress + r.acked_register;
        let (p, g) = per_mac.get(&Plan::mac_text(i)).copied().unwrap_or_default();
        report.acknowledged_events_missing +=
            r.acked_progress.saturating_sub(p) + r.acked_register.saturating_sub(g);
    }

    // Evidence for whoever reads a failed run: the first failed machines' event histories.
    let failed: Vec<usize> = (0..runs.len())
        .filter(|i| runs[*i].failure.is_some())
        .collect();
    if !failed.is_empty() {
        let mut out = serde_json::Map::new();
        for i in failed.into_iter().take(10) {
            let mac = Plan::mac_text(i);
            let evs = b.cli(
                netw,
                &["--json", "events", "--machine", &mac, "--limit", "1000"],
            )?;
            out.insert(mac, serde_json::from_str(&evs)?);
        }
        std::fs::write(
            work.join("ha-failed-machines.json"),
            serde_json::to_string_pretty(&out)?,
        )?;
    }

    let last = seqs.last().copied().unwrap_or(0);
    let replayed = sse_replay(netw, b.ip, &b.token()?, last)?;
    report.sse_replayed = replayed.len();
    report.sse_matches_history = replayed == seqs;
    Ok(())
}

/// The sequence numbers `GET /api/v1/events/stream?after=0` sends until it has sent `last`
/// (60 s at most). HTTP/1.0, so the stream is not chunked: its `id:` lines are whole.
fn sse_replay(
    netw: &StormNet,
    server: Ipv4Addr,
    token: &str,
    last: u64,
) -> anyhow::Result<Vec<u64>> {
    let (ns, token) = (netw.client_ns.clone(), token.to_string());
    std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
        net::enter(&ns)?;
        let mut s = std::net::TcpStream::connect((server, HTTP_PORT))
            .with_context(|| format!("connecting to {server}:{HTTP_PORT} for the SSE stream"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /api/v1/events/stream?after=0 HTTP/1.0\r\nHost: {server}\r\n\
             Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        )?;
        let until = Instant::now() + Duration::from_secs(60);
        let (mut text, mut buf) = (String::new(), vec![0u8; 64 * 1024]);
        let mut ids = Vec::new();
        while Instant::now() < until {
            let n = match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            // Whole lines only; the rest waits for the next read.
            let end = text.rfind('\n').map_or(0, |k| k + 1);
            for line in text[..end].lines() {
                if let Some(id) = line.strip_prefix("id:") {
                    ids.push(id.trim().parse::<u64>().context("an SSE id")?);
                }
            }
            text.drain(..end);
            if ids.last().is_some_and(|l| *l >= last) {
                return Ok(ids);
            }
        }
        if ids.is_empty() && last > 0 {
            bail!("the SSE stream of {server} sent no events: {text:.200}");
        }
        Ok(ids)
    })
    .join()
    .expect("SSE thread")
}
