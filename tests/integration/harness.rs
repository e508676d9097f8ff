//! Starts the real `provisioner` binary on port 0 with its own data directory, waits for its
//! "listening on" log line (never sleeps), and prints the server's log when a test fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to print its listening line.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The binary under test: `PROVISIONER_BIN`, or the workspace's debug build, built on first use.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("PROVISIONER_BIN") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "PROVISIONER_BIN={} does not exist",
                p.display()
            );
            return p;
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "provisioner", "--bin", "provisioner"])
            .current_dir(workspace)
            .status()
            .expect("running cargo build for the provisioner binary");
        assert!(status.success(), "cargo build -p provisioner failed");
        // target/debug/deps/integration-<hash> → target/debug/provisioner
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().unwrap().parent().unwrap().join("provisioner");
        assert!(bin.is_file(), "built binary not found at {}", bin.display());
        bin
    })
    .clone()
}

pub struct Server {
    child: Option<Child>,
    pub url: String,
    /// The TFTP listener, if the server runs one.
    pub tftp: Option<SocketAddr>,
    /// The syslog receiver, if the server runs one.
    pub syslog: Option<SocketAddr>,
    /// `https://ADDR` of the TLS listener, if the server runs one.
    pub https: Option<String>,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server with a fresh temporary data directory.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(&tmp.path().join("data"), &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `data_dir` (kept by the caller, e.g. across a restart) with extra arguments.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Server {
        let mut cmd = Command::new(binary());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tftp-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra);
        Server::spawn(cmd, data_dir)
    }

    /// Spawns a prepared `serve` command and waits for its listening line.
    pub fn spawn(mut cmd: Command, data_dir: &Path) -> Server {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
        let mut child = cmd.spawn().expect("starting provisioner");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(found) = listening_addr(&line) {
                    let _ = tx.send(found);
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut server = Server {
            child: Some(child),
            url: String::new(),
            tftp: None,
            syslog: None,
            https: None,
            data_dir: data_dir.to_owned(),
            log,
            _tmp: None,
        };
        // Every other listener is announced before the HTTP one.
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((scheme, addr)) if scheme == "http" => {
                    server.url = format!("http://{addr}");
                    break;
                }
                Ok((scheme, addr)) if scheme == "tftp" => server.tftp = Some(addr.parse().unwrap()),
                Ok((scheme, addr)) if scheme == "syslog" => {
                    server.syslog = Some(addr.parse().unwrap())
                }
                Ok((scheme, addr)) if scheme == "https" => {
                    server.https = Some(format!("https://{addr}"))
                }
                Ok(_) => {}
                Err(_) => panic!(
                    "provisioner did not print 'listening on http://' within {START_DEADLINE:?}; log:\n{}",
                    server.log()
                ),
            }
        }
        server
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("operator.token"))
            .expect("operator.token")
            .trim()
            .to_string()
    }

    /// Runs a CLI subcommand against this server; returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_cmd(args)
            .output()
            .expect("running the provisioner CLI")
    }

    pub fn cli_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args)
            .env("PROVISIONER_URL", &self.url)
            .env("PROVISIONER_DATA_DIR", &self.data_dir)
            .env_remove("PROVISIONER_TOKEN");
        c
    }

    /// SIGKILL: no chance to flush anything.
    /// The server's process id (to read its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("server running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!(
                    "server did not exit within 20s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn http(&self) -> Api {
        Api {
            base: self.url.clone(),
            token: Some(self.token()),
            client: client_builder().build().unwrap(),
        }
    }
}

/// A blocking reqwest client builder. The workspace builds reqwest with `rustls-no-provider`
/// (ring, not aws-lc), which needs a process-wide crypto provider before any client is built.
pub fn client_builder() -> reqwest::blocking::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
}

/// `reqwest::blocking::get` through [`client_builder`].
pub fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::blocking::Response> {
    client_builder().build()?.get(url).send()
}

/// `("http", "127.0.0.1:4242")` from a line containing `listening on http://127.0.0.1:4242`.
fn listening_addr(line: &str) -> Option<(String, String)> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let (scheme, rest) = rest.split_once("://")?;
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    Some((scheme.to_string(), addr))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- provisioner log -----\n{}----- end of log -----",
                self.log()
            );
        }
    }
}

/// `provisioner serve` on free loopback ports with a config file and data directory; wrap it with
/// `Netns::wrap` to run it inside a namespace.
pub fn serve_cmd(config: &Path, data_dir: &Path) -> Command {
    let mut c = Command::new(binary());
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tftp-listen",
        "127.0.0.1:0",
        "--config",
    ])
    .arg(config)
    .arg("--data-dir")
    .arg(data_dir);
    c
}

/// A blocking JSON client for the API.
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    pub client: reqwest::blocking::Client,
}

pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
    pub text: String,
}

impl Api {
    pub fn without_token(&self) -> Api {
        Api {
            base: self.base.clone(),
            token: None,
            client: self.client.clone(),
        }
    }

    pub fn request(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.client.request(m, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub fn send(&self, r: reqwest::blocking::RequestBuilder) -> Reply {
        let resp = r.send().expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Reply { status, body, text }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send(self.request("GET", path))
    }

    pub fn json(&self, method: &str, path: &str, body: serde_json::Value) -> Reply {
        self.send(self.request(method, path).json(&body))
    }

    pub fn csv(&self, body: String) -> Reply {
        self.send(
            self.request("POST", "/api/v1/machines/import")
                .header("content-type", "text/csv")
                .body(body),
        )
    }
}

/// `n` distinct MACs starting at `base`.
pub fn macs(base: u32, n: u32) -> Vec<String> {
    (base..base + n)
        .map(|i| {
            let b = i.to_be_bytes();
            format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
        })
        .collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Resident memory of a process, in bytes (`VmRSS` of /proc/PID/status).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Polls `f` (every 20 ms, 10 s at most) until it returns `Some`; panics with `what` and the last
/// value seen otherwise. For state the server records after its reply (observation events are
/// written in batches off the reply path).
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if std::time::Instant::now() > deadline => {
                panic!("{what}: not within 10 s; last seen: {last}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// Waits until the server's batched event writer has written everything queued so far
/// (`provisioner_events_pending` is 0), so a test can check an upper bound on events.
pub fn events_settled(base_url: &str) {
    eventually("the event queue to drain", || {
        let m = get(format!("{base_url}/metrics"))
            .and_then(|r| r.text())
            .map_err(|e| e.to_string())?;
        match m
            .lines()
            .find_map(|l| l.strip_prefix("provisioner_events_pending "))
        {
            Some("0") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
}
