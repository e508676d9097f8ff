//! Records finished TFTP transfers as events of the machine that holds the client's address in
//! the lease table (batched with the other observations: [`crate::event_writer`]). Transfers
//! from addresses without a lease are only logged and counted.

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
                    app.events.record(vec![NewEvent::machine(lease.mac, kind)]);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "recording a TFTP transfer event failed"),
            }
        });
    }
}
