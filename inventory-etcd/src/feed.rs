//! The watch half of the store contract on etcd: a task on the store's runtime follows the
//! event counter key (`P/evseq`) with etcd's watch and publishes each new value into an
//! in-process [`EventSignal`], which wakes [`inventory::Store::wait_for_events_after`] at
//! once, whichever server committed. The watch reconnects after an error (etcd restarted, the
//! leader moved), and waiters also read the counter once a second, so a broken watch delays a
//! wake-up by at most that, never loses it.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, WatchOptions};
use inventory::watch::EventSignal;

use crate::endpoints::Endpoints;

/// How long a waiter trusts the watch before it reads the counter itself.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Pause before re-establishing a failed watch.
const RETRY: Duration = Duration::from_millis(500);

/// Parses the counter's value (decimal; absent or unreadable: 0).
pub fn parse_seq(value: Option<&[u8]>) -> u64 {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Follows `key` forever (until the runtime stops), publishing each value into `signal`. The
/// watch runs on the member calls prefer; when it fails, the next member is tried.
pub async fn follow(pool: Arc<Endpoints>, key: Vec<u8>, signal: Arc<EventSignal>) {
    loop {
        let i = pool.preferred();
        let r = match pool.client(i).await {
            Ok(c) => watch_once(c, key.clone(), &signal).await,
            Err(e) => Err(e),
        };
        if r.is_err() {
            pool.skip(i);
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Reads the counter, then watches it from the next revision until the stream ends or fails.
async fn watch_once(
    mut client: Client,
    key: Vec<u8>,
    signal: &EventSignal,
) -> Result<(), etcd_client::Error> {
    let mut r = client.get(key.clone(), None).await?;
    let revision = r.header().map_or(0, |h| h.revision());
    signal.publish(parse_seq(r.take_kvs().first().map(|kv| kv.value())));
    let opts = WatchOptions::new().with_start_revision(revision + 1);
    let mut stream = client.watch(key, Some(opts)).await?;
    while let Some(msg) = stream.message().await? {
        if msg.canceled() {
            break;
        }
        for ev in msg.events() {
            if let Some(kv) = ev.kv() {
                signal.publish(parse_seq(Some(kv.value())));
            }
        }
    }
    Ok(())
}
