//! `lab storm --crash-kills N`: the crash campaign (issue 19). While the machines boot, the
//! provisioner (on redb) gets `kill -9` at random moments, N times, and is started again on
//! the same data directory each time; meanwhile an operator keeps writing through the API
//! (new profiles, asset imports). After every restart:
//!
//! - the store opened (the server said "listening" again);
//! - every API write that was acknowledged (2xx) before the kill is there: each acknowledged
//!   profile, each acknowledged asset;
//! - no half-imported asset is visible: every asset the catalogue lists downloads whole, with
//!   the SHA-256 its digest names.
//!
//! After the storm the machine checks of [`super::ha::check`] run on the restarted server
//! (every machine `ready`, leases, acknowledged events, the SSE replay).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::net;
use super::server::HTTP_PORT;

/// How many kills, how far apart on average (each gap is uniform in 0.5–1.5× this).
#[derive(Clone, Copy, Debug)]
pub struct CrashPlan {
    pub kills: usize,
    pub every: Duration,
}

/// What the operator's writes and the checks after each restart found.
#[derive(Debug, Serialize, Default)]
pub struct CrashReport {
    pub kills: usize,
    /// Kill to "listening" again, milliseconds.
    pub restart_ms: Vec<u64>,
    /// Checks made after restarts (one per restart).
    pub checks: usize,
    pub profiles_acknowledged: usize,
    pub profiles_missing: usize,
    pub assets_acknowledged: usize,
    pub assets_missing: usize,
    /// Assets the catalogue listed after restarts, each downloaded and hashed.
    pub assets_verified: usize,
    /// Listed assets whose download was not the bytes of their digest (half-imported).
    pub assets_corrupt: usize,
    /// Operator writes that failed (the server was down or restarting): not acknowledged.
    pub writes_failed: usize,
}

impl CrashReport {
    /// The lines `--crash-kills` adds to the human-readable report.
    pub fn table(&self, s: &mut String) {
        use std::fmt::Write as _;
        let mut ms = self.restart_ms.clone();
        ms.sort_unstable();
        let _ = writeln!(
            s,
            "crash: {} kills, restart p50 {} ms, max {} ms; {} checks after restarts",
            self.kills,
            ms.get(ms.len() / 2).unwrap_or(&0),
            ms.last().unwrap_or(&0),
            self.checks
        );
        let _ = writeln!(
            s,
            "  acknowledged: {} profiles ({} missing), {} assets ({} missing); {} listed assets verified ({} not whole); {} writes failed while down",
            self.profiles_acknowledged,
            self.profiles_missing,
            self.assets_acknowledged,
            self.assets_missing,
            self.assets_verified,
            self.assets_corrupt,
            self.writes_failed
        );
    }

    /// What the checks found wrong, one line each.
    pub fn problems(&self, plan: &CrashPlan) -> Vec<String> {
        let mut p = Vec::new();
        if self.kills < plan.kills {
            p.push(format!("{} of {} kills happened", self.kills, plan.kills));
        }
        for (n, what) in [
            (
                self.profiles_missing,
                "acknowledged profiles missing after a restart",
            ),
            (
                self.assets_missing,
                "acknowledged assets missing after a restart",
            ),
            (
                self.assets_corrupt,
                "listed assets not whole after a restart",
            ),
        ] {
            if n > 0 {
                p.push(format!("{n} {what}"));
            }
        }
        p
    }
}

/// The operator: a thread writing through the API until stopped.
pub struct Operator {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

/// Writes the server acknowledged.
#[derive(Default, Clone)]
pub struct Acked {
    pub profiles: Vec<String>,
    /// Hex digests.
    pub assets: Vec<String>,
}

/// A request from a thread inside `ns`; the status and the body.
fn http(
    ns: &str,
    server: Ipv4Addr,
    (method, path): (&str, &str),
    token: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let (ns, path, method, token) = (
        ns.to_string(),
        path.to_string(),
        method.to_string(),
        token.to_string(),
    );
    std::thread::spawn(move || -> anyhow::Result<(u16, Vec<u8>)> {
        net::enter(&ns)?;
        let mut s = std::net::TcpStream::connect((server, HTTP_PORT))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {server}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        s.write_all(&body)?;
        let mut all = Vec::new();
        s.read_to_end(&mut all)?;
        let end = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of the response head")?;
        let head = String::from_utf8_lossy(&all[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no status")?;
        Ok((status, all[end + 4..].to_vec()))
    })
    .join()
    .expect("request thread")
}

impl Operator {
    /// Starts writing to `server` (from `ns`) with `token`: alternately a new profile
    /// `crash-op-<k>` and a new 64 KiB loader asset with unique bytes, 20 writes a second.
    pub fn start(ns: &str, server: Ipv4Addr, token: &str) -> Operator {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Acked::default()));
        let (ns, token) = (ns.to_string(), token.to_string());
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut failed = 0;
            let mut k = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                k += 1;
                let ok = if k.is_multiple_of(2) {
                    let name = format!("crash-op-{k}");
                    let body = serde_json::json!({"name": name, "description": "crash campaign"});
                    let r = http(
                        &ns,
                        server,
                        ("POST", "/api/v1/profiles"),
                        &token,
                        body.to_string().into_bytes(),
                    );
                    let ok = matches!(r, Ok((s, _)) if (200..300).contains(&s));
                    if ok {
                        acked2.lock().unwrap().profiles.push(name);
                    }
                    ok
                } else {
                    let mut bytes = vec![0u8; 64 * 1024];
                    for (i, b) in bytes.iter_mut().enumerate() {
                        *b = (i as u64 ^ k.wrapping_mul(0x9e37_79b9)) as u8;
                    }
                    bytes[..8].copy_from_slice(&k.to_le_bytes());
                    let path = format!("/api/v1/assets?name=crash-op-{k}.efi&kind=loader");
                    match http(&ns, server, ("POST", &path), &token, bytes) {
                        Ok((s, body)) if (200..300).contains(&s) => {
                            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                            let d = v["digest"].as_str().unwrap_or_default();
                            let hex = d.strip_prefix("sha256:").unwrap_or(d).to_string();
                            acked2.lock().unwrap().assets.push(hex);
                            true
                        }
                        _ => false,
                    }
                };
                if !ok {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            failed
        });
        Operator {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// What was acknowledged so far.
    pub fn acked(&self) -> Acked {
        self.acked.lock().unwrap().clone()
    }

    /// Stops the writes; the number that failed.
    pub fn stop(&mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The campaign: `plan.kills` times, after a random gap, `kill -9` of `a`, start it again and
/// check (see the module documentation); the operator writes throughout. The report and the
/// CPU-seconds the killed processes had used.
pub fn run(
    plan: &CrashPlan,
    a: &mut super::server::Ours,
    client_ns: &str,
    k: &super::Kills<'_>,
    kills: &mut super::ha::HaReport,
) -> anyhow::Result<(CrashReport, f64)> {
    let mut r = CrashReport::default();
    let mut cpu = 0.0;
    let token = a.token()?;
    let mut operator = Operator::start(client_ns, a.ip, &token);
    for _ in 0..plan.kills {
        let spread = 0.5 + f64::from(super::dhcp::random_u32()) / f64::from(u32::MAX);
        std::thread::sleep(plan.every.mul_f64(spread));
        let (n, at_seconds) = k.now();
        cpu += (k.cpu)(&[a.pid()]);
        let pid = a.kill9();
        // Nothing can be acknowledged while the server is dead: this is every write that must
        // survive the kill.
        let acked = operator.acked();
        let t = std::time::Instant::now();
        a.spawn()?;
        r.restart_ms.push(t.elapsed().as_millis() as u64);
        r.kills += 1;
        kills.kills.push(super::ha::Kill {
            what: format!("provisioner {}", a.ip),
            pid,
            at_seconds,
            registered_before: n,
        });
        check_after_restart(client_ns, a.ip, &token, &acked, &mut r)?;
        let lost = r.profiles_missing + r.assets_missing + r.assets_corrupt;
        (k.say)(&format!(
            "kill {} of {} at {at_seconds:.1} s ({n} registered): restarted in {} ms; {} profiles \
             and {} assets acknowledged so far; {}",
            r.kills,
            plan.kills,
            r.restart_ms.last().unwrap_or(&0),
            acked.profiles.len(),
            acked.assets.len(),
            if lost == 0 {
                "all there".to_string()
            } else {
                format!("{lost} LOST OR NOT WHOLE")
            }
        ));
    }
    r.writes_failed = operator.stop();
    let acked = operator.acked();
    (r.profiles_acknowledged, r.assets_acknowledged) = (acked.profiles.len(), acked.assets.len());
    Ok((r, cpu))
}

/// After a restart: every write in `acked` is there, and every listed asset downloads whole.
pub fn check_after_restart(
    ns: &str,
    server: Ipv4Addr,
    token: &str,
    acked: &Acked,
    r: &mut CrashReport,
) -> anyhow::Result<()> {
    let get = |path: &str| -> anyhow::Result<Vec<u8>> {
        match http(ns, server, ("GET", path), token, Vec::new())? {
            (200, body) => Ok(body),
            (s, body) => bail!(
                "GET {path} answered {s}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    };
    let profiles: Vec<Value> = serde_json::from_slice(&get("/api/v1/profiles")?)?;
    let names: std::collections::HashSet<&str> =
        profiles.iter().filter_map(|p| p["name"].as_str()).collect();
    r.profiles_missing += acked
        .profiles
        .iter()
        .filter(|n| !names.contains(n.as_str()))
        .count();
    let assets: Vec<Value> = serde_json::from_slice(&get("/api/v1/assets")?)?;
    let listed: BTreeMap<String, (String, u64)> = assets
        .iter()
        .filter_map(|a| {
            let d = a["digest"].as_str()?;
            let hex = d.strip_prefix("sha256:").unwrap_or(d).to_string();
            Some((hex, (a["name"].as_str()?.to_string(), a["size"].as_u64()?)))
        })
        .collect();
    r.assets_missing += acked
        .assets
        .iter()
        .filter(|d| !listed.contains_key(*d))
        .count();
    for (hex, (name, size)) in &listed {
        let body = get(&format!("/assets/{hex}/{name}"))?;
        r.assets_verified += 1;
        let whole = body.len() as u64 == *size && hex_of(&Sha256::digest(&body)) == *hex;
        if !whole {
            r.assets_corrupt += 1;
        }
    }
    r.checks += 1;
    Ok(())
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
