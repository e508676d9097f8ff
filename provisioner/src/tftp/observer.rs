//! Records finished TFTP transfers as events of the machine that holds the client's address in
//! the lease table (batched with the other observations: [`crate::event_writer`]). Transfers
//! from addresses without a lease are only logged and counted. A complete transfer of the
//! machine's own UKI (firmware loading it as its network boot program: a file of the UKI's size
//! named as it was imported, or by its digest) counts for the UKI-start deadline
//! ([`crate::boot::plan::record_uki_download`]).

use std::net::IpAddr;

use inventory::{EventKind, NewEvent};

use super::server::{Observer, Report};
use crate::app::{now, App};

pub struct InventoryObserver {
    pub app: App,
}

impl Observer for InventoryObserver {
    fn finished(&self, r: Report) {
        let IpAddr::V4(ip) = r.client.ip() else {
            return;
        };
        let app = self.app.clone();
        // Pending from now (the holder look-up below), so a shutdown drain waits for it.
        app.metrics.events_pending.inc();
        tokio::spawn(async move {
            let t = now();
            let kind = EventKind::Transfer {
                protocol: "tftp".into(),
                file: r.file.clone(),
                bytes: r.bytes,
                millis: r.duration.as_millis() as u64,
                retransmits: r.retransmits,
                outcome: r.ending.label().into(),
            };
            let holder = app
                .read(move |s| crate::identity::holder_of(s, ip, t))
                .await;
            app.metrics.events_pending.dec();
            match holder {
                Ok(Some(lease)) => {
                    let (mac, outcome) = (lease.mac, r.ending.label());
                    if !crate::boot::plan::transfer_event_allowed(
                        &app, mac, "tftp", &r.file, outcome,
                    ) {
                        return;
                    }
                    let uki = match r.ending.label() {
                        "complete" => its_uki(&app, lease.mac, &r.file, r.bytes).await,
                        _ => None,
                    };
                    match uki {
                        Some(digest) => {
                            crate::boot::plan::record_uki_download(&app, lease.mac, digest, kind)
                                .await
                        }
                        None => {
                            app.events.record(vec![NewEvent::machine(lease.mac, kind)]);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "recording a TFTP transfer event failed"),
            }
        });
    }
}

/// The digest of `mac`'s profile UKI when `file` (`bytes` long) is it: named as it was imported
/// or by its digest, and of its size.
async fn its_uki(app: &App, mac: inventory::Mac, file: &str, bytes: u64) -> Option<String> {
    let machine = app.views.read().machine(mac).cloned()?;
    if machine.state() != inventory::State::Booting {
        return None;
    }
    let pname = machine.spec.profile?;
    let profile = app.read(move |s| s.profile(&pname)).await.ok()??;
    let hex = boot_assets::parse_digest(profile.uki.as_deref()?).ok()?;
    let uki = match &app.boot.peer_assets {
        Some(peers) => peers.describe(&hex).await?,
        None => {
            let (assets, digest) = (app.boot.assets.clone(), hex.clone());
            tokio::task::spawn_blocking(move || assets.get(&digest).ok())
                .await
                .ok()??
        }
    };
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let named = base == uki.name || file.contains(&hex);
    (named && bytes == uki.size).then_some(uki.digest)
}
