//! A real headless Chromium for the dashboard tests, driven over WebDriver (fantoccini):
//! the test starts its own chromedriver on a free loopback port and a browser with a fresh,
//! empty profile, and a Drop guard closes the session and kills chromedriver by its PID.
//! Missing `chromium` or `chromedriver` fails loudly (`scripts/install-test-deps` installs
//! them).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long anything on screen may take to appear.
pub const WAIT: Duration = Duration::from_secs(15);

/// A browser session; every method blocks on the test's own runtime.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).is_file(),
                "{bin} is missing: run scripts/install-test-deps (Debian packages chromium, chromium-driver)"
            );
        }
        let port = free_port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        // Ready when it says so on stdout.
        let out = driver.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("started successfully") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(WAIT).is_err() {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!("chromedriver did not start on port {port} within {WAIT:?}");
        }
        let profile = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let caps = caps.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = rt.block_on(async {
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
        });
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("starting a Chromium session: {e}");
            }
        };
        Browser {
            rt,
            client: Some(client),
            driver,
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).expect("navigating");
    }

    /// Waits (at most [`WAIT`]) for an element matching `css`; panics with the page's text.
    pub fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        let found = self.rt.block_on(
            self.c()
                .wait()
                .at_most(WAIT)
                .every(Duration::from_millis(50))
                .for_element(Locator::Css(css)),
        );
        match found {
            Ok(e) => e,
            Err(e) => panic!(
                "{css} did not appear: {e}; page text:\n{}",
                self.text("body")
            ),
        }
    }

    /// The text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        self.rt.block_on(async {
            match self.c().find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(e) => format!("<no {css}: {e}>"),
            }
        })
    }

    pub fn click(&self, css: &str) {
        let e = self.wait_for(css);
        self.rt.block_on(e.click()).expect("click");
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css);
        self.rt.block_on(e.send_keys(text)).expect("typing");
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.c().execute(script, args))
            .expect("running a script")
    }

    /// Writes a PNG screenshot of the page to `target/ui-screenshots/<name>.png`; its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c().screenshot()).expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// `<workspace>/target/ui-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("ui-screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(WAIT, c.close()).await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
