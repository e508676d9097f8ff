//! A throwaway single-member etcd for tests (feature `test-server`): Debian's `etcd` binary on
//! loopback, free ports, a temporary data directory; ready when etcd logs "ready to serve
//! client requests" (no sleeping), killed by its PID and removed when the value is dropped,
//! also when a test panics (its log is then printed). A missing binary is a loud failure naming
//! `scripts/install-test-deps`, never a skip.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long etcd may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running etcd member (see the module documentation).
pub struct EtcdServer {
    child: Option<Child>,
    /// Its client URL (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    /// Everything etcd printed so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("local address").port()
}

/// The `etcd` binary: `$ETCD_BIN`, else `etcd` on the PATH; panics naming the setup script.
pub fn etcd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("etcd");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the etcd binary is not installed (Debian package etcd-server): run scripts/install-test-deps as root"
    );
}

impl EtcdServer {
    /// Starts a member with default limits.
    pub fn start() -> EtcdServer {
        Self::start_with(&[])
    }

    /// Starts a member with extra command-line flags (e.g. `--max-txn-ops=1024`). Tries three
    /// times on fresh ports if etcd exits before it is ready (a port taken meanwhile).
    pub fn start_with(extra: &[&str]) -> EtcdServer {
        let bin = etcd_binary();
        let mut last = String::new();
        for _ in 0..3 {
            let (client, peer) = (free_port(), free_port());
            match Self::try_start(&bin, None, ("127.0.0.1", client, peer), extra) {
                Ok(s) => return s,
                Err(log) => last = log,
            }
        }
        panic!(
            "etcd ({}) did not start; its output:\n{last}",
            bin.display()
        );
    }

    /// Starts a member inside the network namespace `netns` (`ip netns exec`), listening on
    /// `host` (an address of that namespace) on etcd's usual ports 2379 (clients) and 2380
    /// (peers), free in a namespace the test created. The endpoint is reachable only from
    /// namespaces routed to `host`.
    pub fn start_in_netns(netns: &str, host: &str, extra: &[&str]) -> EtcdServer {
        let bin = etcd_binary();
        Self::try_start(&bin, Some(netns), (host, 2379, 2380), extra).unwrap_or_else(|log| {
            panic!(
                "etcd ({}) did not start in {netns}; its output:\n{log}",
                bin.display()
            )
        })
    }

    /// The member's process id (to kill it by PID from a test).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn try_start(
        bin: &std::path::Path,
        netns: Option<&str>,
        (host, client, peer): (&str, u16, u16),
        extra: &[&str],
    ) -> Result<EtcdServer, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let endpoint = format!("http://{host}:{client}");
        let peer_url = format!("http://{host}:{peer}");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("ready to serve client requests") {
                        let _ = ready_tx.send(());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut server = EtcdServer {
            child: Some(child),
            endpoint,
            log,
            dir,
        };
        match ready_rx.recv_timeout(READY_WITHIN) {
            Ok(()) => Ok(server),
            Err(_) => {
                server.kill();
                Err(server.log_text())
            }
        }
    }

    /// Kills the member (SIGKILL by PID) and waits for it; the data directory stays until
    /// the value is dropped. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The temporary directory holding the data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- etcd log ---\n{}\n--- end of etcd log ---",
                self.log_text()
            );
        }
    }
}
