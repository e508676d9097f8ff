//! The provisioner under test, inside the server namespace: its config rendered from typed
//! values (serde → TOML), started with `serve`, ready at its "listening on http://" line; then
//! what a rack operator does before powering on: import the UKI, add a profile, import the
//! rack's MACs from a CSV file. Also the /proc readings of any server process.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use super::net::{StormNet, SERVER_IF, SERVER_IP};
use super::plan::{Plan, FULL_RANGE};

pub const HTTP_PORT: u16 = 8080;

#[derive(Serialize)]
struct Config {
    data_dir: PathBuf,
    http: Http,
    tftp: Tftp,
    log: Log,
    dhcp: Dhcp,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<Store>,
}

/// `[store]` for several provisioners on one etcd cluster.
#[derive(Serialize, Clone)]
pub struct Store {
    pub backend: &'static str,
    /// The members' client URLs.
    pub endpoints: Vec<String>,
    /// The other provisioners, where an asset this one lacks is fetched by digest.
    pub asset_peers: Vec<String>,
}

#[derive(Serialize)]
struct Http {
    listen: String,
}

#[derive(Serialize)]
struct Tftp {
    listen: String,
}

#[derive(Serialize)]
struct Log {
    format: &'static str,
}

#[derive(Serialize)]
struct Dhcp {
    mode: &'static str,
    interface: &'static str,
    server_ip: String,
    subnet: Vec<Subnet>,
}

#[derive(Serialize)]
struct Subnet {
    network: String,
    range: String,
    lease_time: &'static str,
}

/// Where one provisioner runs and what it shares.
pub struct Placement<'a> {
    /// Its network namespace.
    pub ns: &'a str,
    /// Its address there (DHCP server id, TFTP, HTTP).
    pub ip: Ipv4Addr,
    /// A short name for its files in the work directory (`provisioner`, `provisioner-b`).
    pub name: &'a str,
    /// etcd, if the inventory is shared.
    pub store: Option<Store>,
    /// The operator token another server created (etcd keeps only its hash).
    pub token: Option<String>,
}

fn config(plan: &Plan, data_dir: &Path, at: &Placement) -> anyhow::Result<String> {
    let ip = at.ip;
    let subnet = if plan.relayed {
        (0..plan.racks())
            .map(|r| {
                let k = plan.rack(r);
                Subnet {
                    network: format!("{}/26", k.network),
                    range: format!("{}-{}", k.first, k.last),
                    lease_time: "1h",
                }
            })
            .collect()
    } else {
        vec![Subnet {
            network: "198.18.0.0/15".into(),
            range: format!("{}-{}", FULL_RANGE.0, FULL_RANGE.1),
            lease_time: "1h",
        }]
    };
    let c = Config {
        data_dir: data_dir.to_path_buf(),
        http: Http {
            listen: format!("{ip}:{HTTP_PORT}"),
        },
        tftp: Tftp {
            listen: format!("{ip}:69"),
        },
        log: Log { format: "json" },
        dhcp: Dhcp {
            mode: "full",
            interface: SERVER_IF,
            server_ip: ip.to_string(),
            subnet,
        },
        store: at.store.clone(),
    };
    Ok(toml::to_string(&c)?)
}

/// Server processes we started; stopped (SIGTERM, then SIGKILL after 5 s) on drop.
#[derive(Default)]
pub struct Processes {
    pub children: Vec<Child>,
}

impl Processes {
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SAFETY: signalling our own child by its PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for c in &mut self.children {
            for _ in 0..50 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The provisioner in the server namespace, provisioned for the storm.
pub struct Ours {
    pub procs: Processes,
    bin: PathBuf,
    data: PathBuf,
    pub log: PathBuf,
    cfg: PathBuf,
    ns: String,
    /// Its address (HTTP on [`HTTP_PORT`]).
    pub ip: Ipv4Addr,
    token: Option<String>,
}

impl Ours {
    /// Starts `provisioner serve` and waits (30 s at most) for its "listening on http://" line.
    pub fn start(net: &StormNet, bin: &Path, plan: &Plan, work: &Path) -> anyhow::Result<Ours> {
        let at = Placement {
            ns: &net.server_ns,
            ip: SERVER_IP,
            name: "provisioner",
            store: None,
            token: None,
        };
        Self::start_at(&at, bin, plan, work)
    }

    /// [`Ours::start`] in any namespace, on any address, with any store.
    pub fn start_at(at: &Placement, bin: &Path, plan: &Plan, work: &Path) -> anyhow::Result<Ours> {
        // A fresh inventory per run: an earlier run's machines would already be `ready`.
        let data = work.join(format!("{}-data", at.name));
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        std::fs::create_dir_all(&data)?;
        let cfg = work.join(format!("{}.toml", at.name));
        std::fs::write(&cfg, config(plan, &data, at)?)?;
        let log = work.join(format!("{}.log", at.name));
        let mut ours = Ours {
            procs: Processes::default(),
            bin: bin.to_path_buf(),
            data,
            log,
            cfg,
            ns: at.ns.to_string(),
            ip: at.ip,
            token: at.token.clone(),
        };
        ours.spawn()?;
        Ok(ours)
    }

    /// Starts `provisioner serve` on this server's config and data (again, after a kill: the
    /// log is appended to) and waits (30 s at most) for its "listening on http://" line.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child =
            super::net::exec_in(&self.ns, self.bin.to_str().context("provisioner path")?)
                .arg("serve")
                .arg("--config")
                .arg(&self.cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {}", self.bin.display()))?;
        let rx = crate::scenario::tee_until_listening(child.stderr.take().expect("piped"), file);
        self.procs.children = vec![child];
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            bail!(
                "the provisioner did not start; its log:\n{}",
                crate::vm::tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// `kill -9` of `provisioner serve`, waited for; its process id.
    pub fn kill9(&mut self) -> u32 {
        let pid = self.pid();
        if let Some(c) = self.procs.children.first_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        pid
    }

    /// The operator token (from `operator.token` of the server that created it).
    pub fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let f = self.data.join("operator.token");
        Ok(std::fs::read_to_string(&f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string())
    }

    /// Waits (at most `limit`) until this server holds the asset `digest` (hex) in its own
    /// data directory, as a peer fetch leaves it.
    pub fn wait_for_asset(&self, digest: &str, limit: Duration) -> anyhow::Result<()> {
        let object = self.data.join("assets").join("objects").join(digest);
        let until = std::time::Instant::now() + limit;
        while !object.exists() {
            if std::time::Instant::now() >= until {
                bail!(
                    "{} did not fetch asset {digest} from its peer within {limit:?}; its log:\n{}",
                    self.ip,
                    crate::vm::tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The process id of `provisioner serve`.
    pub fn pid(&self) -> u32 {
        self.procs.children.first().map_or(0, Child::id)
    }

    /// The server's namespace (for requests made from inside it).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// `provisioner --url … <args>` inside the server's namespace; its stdout.
    pub fn cli(&self, _net: &StormNet, args: &[&str]) -> anyhow::Result<String> {
        let mut c = super::net::exec_in(&self.ns, self.bin.to_str().context("provisioner path")?);
        c.arg("--url")
            .arg(format!("http://{}:{HTTP_PORT}", self.ip))
            .arg("--data-dir")
            .arg(&self.data);
        if let Some(t) = &self.token {
            c.env("PROVISIONER_TOKEN", t);
        }
        let out = c.args(args).output()?;
        if !out.status.success() {
            bail!(
                "provisioner {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The UKI as an asset, a `storm` profile using it, and every machine imported from one
    /// CSV file (hostname `storm-<i>`), as an operator registers a rack before power-on. The
    /// UKI's hex digest.
    pub fn provision(
        &self,
        net: &StormNet,
        uki: &Path,
        plan: &Plan,
        work: &Path,
    ) -> anyhow::Result<String> {
        let out = self.cli(net, &["--json", "assets", "import", path(uki)?])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let digest = v["digest"].as_str().context("digest")?.to_string();
        let digest = digest
            .strip_prefix("sha256:")
            .unwrap_or(&digest)
            .to_string();
        self.cli(
            net,
            &[
                "profiles",
                "add",
                "storm",
                "--uki",
                &format!("sha256:{digest}"),
                "--install-disk",
                "/dev/vda",
            ],
        )?;
        let mut csv = String::from("mac,hostname,profile\n");
        for i in 0..plan.machines {
            csv.push_str(&format!("{},storm-{i},storm\n", Plan::mac_text(i)));
        }
        let file = work.join("machines.csv");
        std::fs::write(&file, csv)?;
        self.cli(net, &["machines", "import", path(&file)?])?;
        Ok(digest)
    }

    /// Machines the inventory shows `ready`.
    pub fn ready(&self, net: &StormNet) -> anyhow::Result<usize> {
        let out = self.cli(net, &["--json", "machines", "list", "--state", "ready"])?;
        let v: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        Ok(v.len())
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// User + system CPU seconds of `pid` so far (`/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // After "pid (comm)": state is index 0, so utime (field 14) is 11 and stime 12.
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// Peak resident set of `pid` (VmHWM), MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// `pid` and its live descendants (nginx's workers), from /proc.
pub fn with_descendants(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    let procs: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    while i < all.len() {
        let parent = all[i];
        all.extend(
            procs
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    all
}

/// Waits until the provisioner has no TFTP transfer in flight (`provisioner_tftp_transfers_active`
/// in `/metrics` is 0) and has written every queued observation (`provisioner_events_pending` is
/// 0), at most `limit`; how long that took. After a storm on a lossy link a transfer whose final
/// ACK was lost keeps resending its last block until it gives up; its event is written when it
/// ends (in a batch), so the inventory is complete only then. A scrape that fails (the link is
/// lossy too) is retried until `limit`.
pub fn settle(netw: &StormNet, limit: Duration) -> anyhow::Result<Duration> {
    settle_at(netw, SERVER_IP, limit)
}

/// [`settle`] for the provisioner at `server`.
pub fn settle_at(netw: &StormNet, server: Ipv4Addr, limit: Duration) -> anyhow::Result<Duration> {
    let ns = netw.client_ns.clone();
    std::thread::spawn(move || -> anyhow::Result<Duration> {
        use std::io::{Read, Write};
        super::net::enter(&ns)?;
        let start = std::time::Instant::now();
        let scrape = || -> anyhow::Result<(f64, f64)> {
            let mut s = std::net::TcpStream::connect((server, HTTP_PORT))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n"
            )?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            let gauge = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .with_context(|| format!("no {name}in /metrics"))
            };
            Ok((
                gauge("provisioner_tftp_transfers_active ")?,
                gauge("provisioner_events_pending ")?,
            ))
        };
        loop {
            let settled =
                matches!(scrape(), Ok((active, pending)) if active == 0.0 && pending == 0.0);
            if settled || start.elapsed() >= limit {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .join()
    .expect("settle thread")
}
