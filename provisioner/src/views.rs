//! In-memory views of the inventory that the DHCP path reads instead of the store: machines by
//! MAC, reservations by address, machines by SMBIOS UUID. The store stays the one source of
//! truth; a view is a cache kept current by the store's event feed (`Store::events_after`),
//! which names the MAC of every change to a machine (a store contract, checked by the
//! conformance suite), so a view follows every server's writes, not only this process's.
//!
//! Freshness: [`Views::follow`] wakes at each commit; [`Views::catch_up`] is also called after
//! every write of this process (`App::write`), so a request that follows a response sees what
//! that response wrote. Catching up re-reads each named machine from the store, under one lock,
//! so two catch-ups never install an older record over a newer one.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use inventory::{Mac, Machine, Store};
use netboot_proto::dhcp::pool::Reservations;

/// Events read per store call while catching up.
const BATCH: usize = 4096;

/// One consistent picture of the machines (as of [`Views::applied`]).
#[derive(Debug, Default)]
pub struct Snapshot {
    machines: HashMap<Mac, Machine>,
    reservations: HashMap<Ipv4Addr, Mac>,
    uuids: HashMap<String, Mac>,
}

impl Snapshot {
    /// The machine with this MAC.
    pub fn machine(&self, mac: Mac) -> Option<&Machine> {
        self.machines.get(&mac)
    }

    /// Which machine holds this SMBIOS UUID.
    pub fn uuid_holder(&self, uuid: &str) -> Option<Mac> {
        self.uuids.get(uuid).copied()
    }

    /// Records that are waiting for an operator under `policy` ([`crate::admission::unclaimed`]).
    pub fn unclaimed(&self, policy: crate::boot_decision::UnknownPolicy) -> usize {
        self.machines
            .values()
            .filter(|m| crate::admission::unclaimed(m, policy))
            .count()
    }

    /// Every machine the view holds, in no order.
    pub fn machines(&self) -> impl Iterator<Item = &Machine> {
        self.machines.values()
    }

    /// How many machines the view holds.
    pub fn len(&self) -> usize {
        self.machines.len()
    }

    /// Whether the view holds no machine.
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    fn remove(&mut self, mac: Mac) {
        if let Some(old) = self.machines.remove(&mac) {
            if let Some(ip) = old.spec.ip {
                if self.reservations.get(&ip) == Some(&mac) {
                    self.reservations.remove(&ip);
                }
            }
            if let Some(u) = &old.spec.uuid {
                if self.uuids.get(u) == Some(&mac) {
                    self.uuids.remove(u);
                }
            }
        }
    }

    fn install(&mut self, mac: Mac, m: Option<Machine>) {
        self.remove(mac);
        if let Some(m) = m {
            if let Some(ip) = m.spec.ip {
                self.reservations.insert(ip, mac);
            }
            if let Some(u) = &m.spec.uuid {
                self.uuids.insert(u.clone(), mac);
            }
            self.machines.insert(mac, m);
        }
    }
}

impl Reservations for Snapshot {
    fn owner_of(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.reservations.get(&ip).copied()
    }
    fn reserved_for(&self, mac: Mac) -> Option<Ipv4Addr> {
        self.machines.get(&mac).and_then(|m| m.spec.ip)
    }
}

/// The views and the feed position they reflect.
#[derive(Debug)]
pub struct Views {
    snapshot: RwLock<Snapshot>,
    /// The last event sequence number applied; held while catching up (one catch-up at a time).
    applied: Mutex<u64>,
}

impl Views {
    /// Loads every machine. The feed position is read first, so a change committed during the
    /// load is applied again by the next catch-up (re-reading is idempotent).
    pub fn load(store: &dyn Store) -> inventory::Result<Views> {
        let seq = store.last_event_seq()?;
        let mut snapshot = Snapshot::default();
        for m in store.machines()? {
            snapshot.install(m.mac, Some(m));
        }
        Ok(Views {
            snapshot: RwLock::new(snapshot),
            applied: Mutex::new(seq),
        })
    }

    /// The current snapshot (a read lock: hold it only for one decision).
    pub fn read(&self) -> RwLockReadGuard<'_, Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The last event sequence number the views reflect.
    pub fn applied(&self) -> u64 {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies every event committed so far: re-reads each machine the events name and installs
    /// it (or its absence). Blocking (store reads); returns the sequence number reached.
    pub fn catch_up(&self, store: &dyn Store) -> inventory::Result<u64> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let events = store.events_after(*applied, BATCH, Duration::ZERO)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(*applied);
            };
            let mut named: Vec<Mac> = events.iter().filter_map(|e| e.mac).collect();
            named.sort_unstable();
            named.dedup();
            let mut fresh = Vec::with_capacity(named.len());
            for mac in named {
                fresh.push((mac, store.machine(mac)?));
            }
            let mut snapshot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
            for (mac, m) in fresh {
                snapshot.install(mac, m);
            }
            drop(snapshot);
            *applied = last;
        }
    }

    /// Follows the store's feed until `stop` is set: waits for commits (any server's) and
    /// catches up. Runs on a blocking thread; a store error is logged and retried a second later.
    pub fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::sync::atomic::Ordering;
        while !stop.load(Ordering::Relaxed) {
            let at = self.applied();
            match store.wait_for_events_after(at, Duration::from_secs(1)) {
                Ok(last) if last > at => {
                    if let Err(e) = self.catch_up(store.as_ref()) {
                        tracing::warn!(error = %e, "views: catching up with the store failed; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "views: watching the store failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
