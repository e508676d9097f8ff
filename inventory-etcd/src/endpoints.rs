//! Failover between the cluster's members. `etcd-client`'s own multi-endpoint channel (a tower
//! balancer over all endpoints) fails calls while one member is down ("tcp connect error:
//! Connection refused"; etcd-client issue #39, open), so a three-member cluster would be no
//! more available than one. Here each member has its own client, and a call goes to the member
//! that answered last; when that member is unreachable or has no leader, the call moves on to
//! the next member, round after round (with a short pause between rounds, while the survivors
//! elect a leader), until the store's timeout. This is what etcd's own Go client does
//! (etcd's "client architecture": round-robin failover on a transient error).
//!
//! Retrying on another member is safe for every call this crate makes: reads; puts and deletes
//! of whole keys (idempotent); and transactions guarded by `mod_revision` compares, which fail
//! (and make the method run again on fresh reads) if a first attempt did commit before its
//! answer was lost. Such a re-run may record an event twice; it never loses one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::Instant;

/// Pause after every member failed once, before the next round.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// One lazily connected client per member, and which member answered last.
pub struct Endpoints {
    urls: Vec<String>,
    opts: ConnectOptions,
    clients: Vec<tokio::sync::Mutex<Option<Client>>>,
    preferred: AtomicUsize,
    /// The latest "cannot serve" error of any member (for a timeout's message).
    last_error: std::sync::Mutex<Option<String>>,
}

/// Whether `e` says "this member cannot serve now" (down, unreachable, no leader, leader
/// changed) rather than "this request is wrong": only then is another member tried.
pub fn unavailable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => {
            let code = s.code() as i32;
            code == tonic_code::UNAVAILABLE
                || (code == tonic_code::UNKNOWN && s.message().contains("transport"))
        }
        _ => false,
    }
}

/// gRPC status codes (tonic's `Code`, compared by value: `etcd-client` does not re-export it).
mod tonic_code {
    pub const UNKNOWN: i32 = 2;
    pub const UNAVAILABLE: i32 = 14;
}

impl Endpoints {
    /// Clients for `urls` (connected on first use, each with `opts`).
    pub fn new(urls: Vec<String>, opts: ConnectOptions) -> Endpoints {
        let clients = urls.iter().map(|_| tokio::sync::Mutex::new(None)).collect();
        Endpoints {
            urls,
            opts,
            clients,
            preferred: AtomicUsize::new(0),
            last_error: std::sync::Mutex::new(None),
        }
    }

    /// The latest error that made a call move on to the next member, naming that member
    /// (connection refused, no leader, …): what a call that then timed out ran into.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok()?.clone()
    }

    /// The member that answered last (where the watch and the next call go first).
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// Member `i`'s client, connecting it if it is not yet (with credentials, connecting
    /// authenticates, so a member that is down fails here).
    pub async fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        let mut slot = self.clients[i].lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Client::connect([self.urls[i].as_str()], Some(self.opts.clone())).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Moves the preference past member `i` after it failed (the watch's failover).
    pub fn skip(&self, i: usize) {
        let next = (i + 1) % self.urls.len();
        let _ = self
            .preferred
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs `call` on the preferred member and, while members are [`unavailable`], on the
    /// next ones, until `deadline`. The first answer that is not "unavailable" is returned;
    /// past the deadline, the last error.
    pub async fn call<T, F, Fut>(
        &self,
        call: &F,
        deadline: Instant,
    ) -> Result<T, etcd_client::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.urls.len();
        let mut i = self.preferred();
        let mut failed = 0usize;
        loop {
            let r = match self.client(i).await {
                Ok(c) => call(c).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if unavailable(&e) && Instant::now() < deadline => {
                    if let Ok(mut last) = self.last_error.lock() {
                        *last = Some(format!("{}: {e}", self.urls[i]));
                    }
                    failed += 1;
                    i = (i + 1) % n;
                    if failed.is_multiple_of(n) {
                        tokio::time::sleep(ROUND_PAUSE).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
