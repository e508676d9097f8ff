//! A three-member etcd cluster for `lab storm --ha`: Debian's `etcd` (package `etcd-server`),
//! one member per address of [`ETCD_IPS`] in the etcd namespace, etcd's usual ports 2379
//! (clients) and 2380 (peers), data directories under the storm's work directory. A member is
//! up when it logs "ready to serve client requests" (no sleeping); the leader is the member whose
//! `/metrics` says `etcd_server_is_leader 1`. Members are killed by PID on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::net::{self, ETCD_IPS};

/// How long a member may take to say it is ready (three members elect a leader first).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The members' flags beyond the cluster's shape: an import of a rack's CSV is one transaction
/// of several operations per machine (etcd's default is 128 operations, 1.5 MiB).
const LIMITS: [&str; 2] = ["--max-txn-ops=100000", "--max-request-bytes=33554432"];

/// A running three-member cluster.
pub struct EtcdCluster {
    ns: String,
    members: Vec<Option<Child>>,
}

/// A member's client URL.
pub fn client_url(ip: Ipv4Addr) -> String {
    format!("http://{ip}:2379")
}

impl EtcdCluster {
    /// Starts the members in `ns` (data under `work/etcd-m<i>`, logs in `work/etcd-m<i>.log`)
    /// and waits until every one is ready. Fails naming the package if `etcd` is missing.
    pub fn start(ns: &str, work: &Path) -> anyhow::Result<EtcdCluster> {
        let bin = which("etcd").context(
            "the etcd binary is not installed (Debian package etcd-server): run scripts/install-test-deps",
        )?;
        let peer = |ip: Ipv4Addr| format!("http://{ip}:2380");
        let cluster: Vec<String> = ETCD_IPS
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("m{i}={}", peer(*ip)))
            .collect();
        let token = format!("storm-{:08x}", super::dhcp::random_u32());
        let mut c = EtcdCluster {
            ns: ns.to_string(),
            members: Vec::new(),
        };
        let mut ready = Vec::new();
        for (i, ip) in ETCD_IPS.iter().enumerate() {
            let dir = work.join(format!("etcd-m{i}"));
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            let mut child = net::exec_in(ns, bin.to_str().context("etcd path")?)
                .arg(format!("--name=m{i}"))
                .arg(format!("--data-dir={}", dir.display()))
                .arg(format!("--listen-client-urls={}", client_url(*ip)))
                .arg(format!("--advertise-client-urls={}", client_url(*ip)))
                .arg(format!("--listen-peer-urls={}", peer(*ip)))
                .arg(format!("--initial-advertise-peer-urls={}", peer(*ip)))
                .arg(format!("--initial-cluster={}", cluster.join(",")))
                .arg("--initial-cluster-state=new")
                .arg(format!("--initial-cluster-token={token}"))
                .args(LIMITS)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let log = std::fs::File::create(work.join(format!("etcd-m{i}.log")))?;
            ready.push(tee_until_ready(child.stderr.take().expect("piped"), log));
            c.members.push(Some(child));
        }
        let until = Instant::now() + READY_WITHIN;
        for (i, rx) in ready.into_iter().enumerate() {
            let left = until.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                bail!(
                    "etcd member m{i} was not ready within {READY_WITHIN:?}; its log:\n{}",
                    crate::vm::tail(&work.join(format!("etcd-m{i}.log")), 20)
                );
            }
        }
        Ok(c)
    }

    /// Every member's client URL (what each provisioner is given).
    pub fn endpoints(&self) -> Vec<String> {
        ETCD_IPS.iter().map(|ip| client_url(*ip)).collect()
    }

    /// The member that is the leader now (index into [`ETCD_IPS`]), asked of each live member's
    /// `/metrics` from the etcd namespace.
    pub fn leader(&self) -> anyhow::Result<usize> {
        let ns = self.ns.clone();
        let live: Vec<usize> = (0..ETCD_IPS.len())
            .filter(|i| self.members[*i].is_some())
            .collect();
        std::thread::spawn(move || -> anyhow::Result<usize> {
            net::enter(&ns)?;
            for i in live {
                if metrics(ETCD_IPS[i])?
                    .lines()
                    .any(|l| l.trim() == "etcd_server_is_leader 1")
                {
                    return Ok(i);
                }
            }
            bail!("no live etcd member says it is the leader")
        })
        .join()
        .expect("leader thread")
    }

    /// Kills member `i` (SIGKILL by PID) and waits for it; its process id.
    pub fn kill(&mut self, i: usize) -> Option<u32> {
        let mut c = self.members.get_mut(i)?.take()?;
        let pid = c.id();
        let _ = c.kill();
        let _ = c.wait();
        Some(pid)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// GET `/metrics` of the member at `ip` (from a thread inside its namespace).
fn metrics(ip: Ipv4Addr) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((ip, 2379)),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// Copies a member's stderr to `log`; the receiver gets `()` at "ready to serve client requests".
fn tee_until_ready(
    stderr: std::process::ChildStderr,
    mut log: std::fs::File,
) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ready to serve client requests") {
                let _ = tx.send(());
            }
            let _ = writeln!(log, "{line}");
        }
    });
    rx
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
