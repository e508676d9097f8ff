//! Observation events (DHCP `seen`, TFTP and HTTP transfers, notes) written in batches: every
//! event queued while the previous transaction was being committed goes into the next one, so a
//! boot storm costs one fsync per batch instead of one per packet or transfer.
//!
//! These are observations, not acknowledgements: nothing waits for them, a crash may lose the
//! last batch (never a lease or a lifecycle step, which are written before their reply), and when
//! the queue is full new observations are dropped and counted
//! (`provisioner_events_dropped_total`) rather than slowing the reply path.
//! `provisioner_events_pending` says how many are queued and not yet written (0: everything
//! observed so far is in the store).

use std::sync::Arc;

use inventory::{NewEvent, Store};
use tokio::sync::mpsc;

use crate::app::now;
use crate::metrics::Metrics;

/// Largest number of events written in one transaction.
const MAX_BATCH: usize = 4096;
/// Queued submissions at most (each a few events) before new ones are dropped.
const QUEUE: usize = 16_384;

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Vec<NewEvent>>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    /// Starts the writer task on the current tokio runtime (call from within one).
    pub fn spawn(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> EventSink {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(rx, store, metrics.clone()));
        EventSink { tx, metrics }
    }

    /// Queues `events` for the next batch; `false` (and counted) when the queue is full or the
    /// writer has stopped.
    pub fn record(&self, events: Vec<NewEvent>) -> bool {
        if events.is_empty() {
            return true;
        }
        let n = events.len();
        self.metrics.events_pending.inc_by(n as i64);
        match self.tx.try_send(events) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.events_pending.dec_by(n as i64);
                self.metrics.events_dropped(n);
                false
            }
        }
    }
}

/// Waits (at most `limit`) until every queued observation is written: called once the
/// listeners have stopped, so a graceful shutdown loses none (transfers ended by the shutdown
/// included). Returns whether the queue drained.
pub async fn drain(metrics: &Metrics, limit: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while metrics.events_pending.get() > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                pending = metrics.events_pending.get(),
                "shutting down with observation events not yet written"
            );
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    true
}

async fn write_batches(
    mut rx: mpsc::Receiver<Vec<NewEvent>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = first;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let store = store.clone();
        let t = now();
        let written = tokio::task::spawn_blocking(move || store.append_events(batch, t)).await;
        metrics.events_pending.dec_by(n as i64);
        match written {
            Ok(Ok(events)) => metrics.events_appended(events.len()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, events = n, "recording observation events failed");
                metrics.events_dropped(n);
            }
            Err(e) => {
                tracing::warn!(error = %e, events = n, "the event writer's store task failed");
                metrics.events_dropped(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::{EventKind, EventQuery, Mac, MemoryStore};

    #[tokio::test]
    async fn queued_events_land_in_batches_in_order() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let metrics = Arc::new(Metrics::default());
        let sink = EventSink::spawn(store.clone(), metrics.clone());
        let mac = Mac::new([2, 0, 0, 0, 0, 1]);
        for i in 0..100 {
            let note = EventKind::Note {
                message: format!("n{i}"),
            };
            assert!(sink.record(vec![NewEvent::machine(mac, note)]));
        }
        // Bounded wait for the writer (it runs on this runtime).
        for _ in 0..500 {
            if store.last_event_seq().unwrap() == 100 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let events = store.events(&EventQuery::default()).unwrap();
        assert_eq!(events.len(), 100);
        let order: Vec<String> = events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Note { message } => message.clone(),
                k => panic!("{k:?}"),
            })
            .collect();
        assert_eq!(order[0], "n0");
        assert_eq!(order[99], "n99");
    }
}
