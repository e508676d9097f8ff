//! [`EtcdStore`]: opening, machines, profiles, tokens and shared secrets. Events, leases,
//! logs and the watch are in `store_feeds.rs`. Every method mirrors the in-memory store
//! (`inventory::memory_store`) step by step, on an optimistic etcd transaction
//! ([`crate::txn`]) instead of a copy of the tables.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use inventory::event::{Event, EventKind, EventQuery, NewEvent};
use inventory::lease::Claim;
use inventory::store::{MachineEdit, Store};
use inventory::watch::EventSignal;
use inventory::{
    Claim6, Error, Lease, Lease6, Mac, Machine, Profile, Result, State, Timestamp, TokenRecord,
    TokenRole,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::endpoints::Endpoints;
use crate::keys::{prefix_end, Keys};
use crate::settings::EtcdSettings;
use crate::txn::{Conn, Tx};

/// The inventory on etcd (see the crate documentation). Cheap to share behind an `Arc`; every
/// method blocks the calling thread for at most a few times the configured timeout.
pub struct EtcdStore {
    /// Client, runtime handle and timeout.
    pub(crate) conn: Conn,
    /// The key layout under the configured prefix.
    pub(crate) keys: Keys,
    /// The last event sequence number known here, fed by our commits and by etcd's watch.
    pub(crate) signal: Arc<EventSignal>,
    /// The store's own runtime (client I/O and the watch); shut down without blocking on drop,
    /// so the last `Arc` may be dropped anywhere, even inside another runtime.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdStore({})", self.conn.endpoints)
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, crate::Error> {
    std::fs::read(path).map_err(|source| crate::Error::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The client options for `s`: timeouts, credentials, TLS (files read here).
fn connect_options(s: &EtcdSettings) -> Result<ConnectOptions, crate::Error> {
    // A member that does not answer a connect soon is skipped for the next one (see
    // `crate::endpoints`): a third of the store's timeout, so all three can be tried.
    let mut opts = ConnectOptions::new()
        .with_timeout(s.timeout)
        .with_connect_timeout((s.timeout / 3).max(Duration::from_millis(300)))
        .with_keep_alive(Duration::from_secs(10), s.timeout);
    if let Some(c) = &s.credentials {
        let password = read_file("password_file", &c.password_file)?;
        let password = String::from_utf8_lossy(&password).trim_end().to_string();
        opts = opts.with_user(c.username.clone(), password);
    }
    if let Some(t) = &s.tls {
        let ca = Certificate::from_pem(read_file("ca_file", &t.ca_file)?);
        let mut tls = TlsOptions::new().ca_certificate(ca);
        if let Some((cert, key)) = &t.client {
            let identity =
                Identity::from_pem(read_file("cert_file", cert)?, read_file("key_file", key)?);
            tls = tls.identity(identity);
        }
        opts = opts.with_tls(tls);
    }
    Ok(opts)
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers (one read), then starts following
    /// the event counter. Fails with [`crate::Error::Connect`] naming the endpoints when etcd
    /// does not answer within the timeout.
    pub fn open(settings: &EtcdSettings) -> Result<EtcdStore, crate::Error> {
        let endpoints = settings.endpoints.join(",");
        let connect_failed = |detail: String| crate::Error::Connect {
            endpoints: endpoints.clone(),
            detail,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd-store")
            .enable_all()
            .build()
            .map_err(crate::Error::Runtime)?;
        let opts = connect_options(settings)?;
        let timeout = settings.timeout;
        let pool = Arc::new(Endpoints::new(settings.endpoints.clone(), opts));
        let conn = Conn {
            pool: pool.clone(),
            handle: runtime.handle().clone(),
            timeout,
            endpoints: endpoints.clone(),
        };
        let keys = Keys::new(&settings.prefix);
        let (last, _) = conn
            .get(keys.event_seq())
            .map_err(|e| connect_failed(e.to_string()))?;
        let signal = Arc::new(EventSignal::default());
        signal.publish(crate::feed::parse_seq(last.as_deref()));
        runtime.spawn(crate::feed::follow(pool, keys.event_seq(), signal.clone()));
        Ok(EtcdStore {
            conn,
            keys,
            signal,
            runtime: Some(runtime),
        })
    }

    /// A secret every server sharing this store must agree on (the machine-token key): the
    /// stored value, or `fresh` stored now if there is none yet (create-if-absent in one
    /// transaction, so two servers starting together end up with the same one).
    pub fn shared_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>> {
        let key = self.keys.secret(name);
        self.conn.transact(|tx| match tx.get(&key)? {
            Some(v) => Ok(v),
            None => {
                tx.put(key.clone(), fresh.to_vec());
                Ok(fresh.to_vec())
            }
        })
    }

    /// Runs `body` in a transaction, numbers and stores the events it returns in the same
    /// transaction, and wakes this process's followers once it committed.
    pub(crate) fn write<T>(
        &self,
        now: Timestamp,
        mut body: impl FnMut(&mut Tx<'_>) -> Result<(T, Vec<NewEvent>)>,
    ) -> Result<(T, Vec<Event>)> {
        let (value, events) = self.conn.transact(|tx| {
            let (value, new) = body(tx)?;
            let events = self.append(tx, new, now)?;
            Ok((value, events))
        })?;
        if let Some(last) = events.last() {
            self.signal.publish(last.seq);
        }
        Ok((value, events))
    }

    /// Numbers `new` after the stored counter and buffers them and the new counter.
    fn append(&self, tx: &mut Tx<'_>, new: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let counter = self.keys.event_seq();
        let mut seq = crate::feed::parse_seq(tx.get(&counter)?.as_deref());
        let mut out = Vec::with_capacity(new.len());
        for e in new {
            seq += 1;
            let ev = Event {
                seq,
                at: now,
                mac: e.mac,
                kind: e.kind,
            };
            tx.put(self.keys.event(seq), encode(&ev));
            out.push(ev);
        }
        tx.put(counter, seq.to_string().into_bytes());
        Ok(out)
    }

    fn tx_machine(&self, tx: &mut Tx<'_>, mac: Mac) -> Result<Option<Machine>> {
        tx.get(&self.keys.machine(mac))?
            .map(|v| decode("machines", &v))
            .transpose()
    }

    fn tx_mac(&self, tx: &mut Tx<'_>, key: &[u8], table: &'static str) -> Result<Option<Mac>> {
        tx.get(key)?.map(|v| decode_mac(table, &v)).transpose()
    }

    /// Checks the profile, reservation and UUID of `m`, updates the indexes and buffers it
    /// (replacing `old`), exactly as the in-memory store's `write_machine`.
    fn write_machine(
        &self,
        tx: &mut Tx<'_>,
        m: &Machine,
        old: Option<&Machine>,
        now: Timestamp,
    ) -> Result<Vec<NewEvent>> {
        if let Some(p) = &m.spec.profile {
            if tx.get(&self.keys.profile(p))?.is_none() {
                return Err(Error::UnknownProfile { name: p.clone() });
            }
        }
        let old_ip = old.and_then(|o| o.spec.ip);
        if let Some(ip) = old_ip {
            tx.delete(self.keys.reservation(ip));
        }
        if let Some(ip) = m.spec.ip.filter(|ip| old_ip != Some(*ip)) {
            if let Some(v) = tx.get(&self.keys.lease(ip))? {
                let l: Lease = decode("leases", &v)?;
                if l.mac != m.mac && l.is_active(now) && !l.observed {
                    return Err(Error::IpLeased {
                        ip,
                        holder: l.mac.to_string(),
                        until: l.expires,
                    });
                }
            }
        }
        if let Some(ip) = m.spec.ip {
            let key = self.keys.reservation(ip);
            if let Some(h) = self
                .tx_mac(tx, &key, "reservations")?
                .filter(|h| *h != m.mac)
            {
                return Err(Error::IpReserved {
                    ip,
                    holder: h.to_string(),
                });
            }
            tx.put(key, m.mac.to_string().into_bytes());
        }
        let notes = self.index_uuid(tx, m, old.and_then(|o| o.spec.uuid.as_deref()))?;
        let id = |m: &Machine| m.registration.as_ref().map(|r| r.machine_id.clone());
        let (before, after) = (old.and_then(id), id(m));
        if before != after {
            if let Some(b) = before {
                tx.delete(self.keys.machine_id(&b, m.mac));
            }
            if let Some(a) = after {
                tx.put(self.keys.machine_id(&a, m.mac), Vec::new());
            }
        }
        tx.put(self.keys.machine(m.mac), encode(m));
        Ok(notes)
    }

    /// Moves `m`'s UUID entry from `old` to its own. A UUID another machine holds is refused,
    /// except that an operator's machine takes it from a `discovered` record (with a note).
    fn index_uuid(&self, tx: &mut Tx<'_>, m: &Machine, old: Option<&str>) -> Result<Vec<NewEvent>> {
        let new = m.spec.uuid.as_deref();
        let mut notes = Vec::new();
        if old == new {
            return Ok(notes);
        }
        if let Some(u) = new {
            let key = self.keys.uuid(u);
            if let Some(h) = self.tx_mac(tx, &key, "uuids")?.filter(|h| *h != m.mac) {
                let vouched = m.state() != State::Discovered;
                let holder = self.tx_machine(tx, h)?;
                let discovered = holder
                    .as_ref()
                    .is_some_and(|c| c.state() == State::Discovered);
                let note = inventory::store::uuid_handover(u, m.mac, vouched, h, discovered)?;
                if let Some(mut c) = holder {
                    c.spec.uuid = None;
                    tx.put(self.keys.machine(h), encode(&c));
                }
                notes.push(note);
            }
            tx.put(key, m.mac.to_string().into_bytes());
        }
        if let Some(u) = old {
            let key = self.keys.uuid(u);
            if self.tx_mac(tx, &key, "uuids")? == Some(m.mac) {
                tx.delete(key);
            }
        }
        Ok(notes)
    }

    /// Every value of a table, in key order.
    pub(crate) fn table<T: DeserializeOwned>(
        &self,
        name: &'static str,
        short: &str,
    ) -> Result<Vec<T>> {
        let start = self.keys.table(short);
        let end = prefix_end(&start);
        let (kvs, _) = self.conn.range(start, end, None)?;
        kvs.iter().map(|(_, v)| decode(name, v)).collect()
    }
}

/// A record as stored (JSON).
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("inventory records serialize")
}

/// A stored record, or [`Error::Corrupt`] naming its table.
pub(crate) fn decode<T: DeserializeOwned>(table: &'static str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| Error::Corrupt {
        table,
        detail: e.to_string(),
    })
}

pub(crate) fn decode_mac(table: &'static str, v: &[u8]) -> Result<Mac> {
    let text = std::str::from_utf8(v).unwrap_or("");
    text.parse().map_err(|_| Error::Corrupt {
        table,
        detail: format!("not a MAC: {text:?}"),
    })
}

impl Store for EtcdStore {
    fn machine(&self, mac: Mac) -> Result<Option<Machine>> {
        let (v, _) = self.conn.get(self.keys.machine(mac))?;
        v.map(|v| decode("machines", &v)).transpose()
    }

    fn machines(&self) -> Result<Vec<Machine>> {
        self.table("machines", "m")
    }

    fn machine_by_uuid(&self, uuid: &str) -> Result<Option<Machine>> {
        match self.conn.get(self.keys.uuid(uuid))? {
            (Some(v), _) => self.machine(decode_mac("uuids", &v)?),
            (None, _) => Ok(None),
        }
    }

    fn machines_by_machine_id(&self, machine_id: &str) -> Result<Vec<Machine>> {
        let start = self.keys.machine_ids(machine_id);
        let (kvs, _) = self.conn.range(start.clone(), prefix_end(&start), None)?;
        let mut out = Vec::with_capacity(kvs.len());
        for (k, _) in kvs {
            let mac = decode_mac("machine_ids", &k[start.len()..])?;
            out.extend(self.machine(mac)?);
        }
        Ok(out)
    }

    fn create_machines(
        &self,
        machines: Vec<Machine>,
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<Event>> {
        let ((), events) = self.write(now, |tx| {
            let mut events = Vec::with_capacity(machines.len());
            for m in &machines {
                if tx.get(&self.keys.machine(m.mac))?.is_some() {
                    return Err(Error::MachineExists {
                        mac: m.mac.to_string(),
                    });
                }
                let notes = self.write_machine(tx, m, None, now)?;
                let created = EventKind::Created { by: by.to_string() };
                events.push(NewEvent::machine(m.mac, created));
                events.extend(notes);
            }
            Ok(((), events))
        })?;
        Ok(events)
    }

    fn update_machine(
        &self,
        mac: Mac,
        now: Timestamp,
        edit: MachineEdit<'_>,
    ) -> Result<(Machine, Vec<Event>)> {
        self.write(now, |tx| {
            let old = self.tx_machine(tx, mac)?.ok_or(Error::MachineNotFound {
                mac: mac.to_string(),
            })?;
            let mut m = old.clone();
            let kinds = edit(&mut m)?;
            m.mac = mac;
            if m == old && kinds.is_empty() {
                return Ok((m, Vec::new()));
            }
            let notes = self.write_machine(tx, &m, Some(&old), now)?;
            let kinds = inventory::store::named_change(kinds, &notes);
            let events = kinds.into_iter().map(|k| NewEvent::machine(mac, k));
            Ok((m, events.chain(notes).collect()))
        })
    }

    fn delete_machine(&self, mac: Mac, now: Timestamp) -> Result<Vec<Event>> {
        let ((), events) = self.write(now, |tx| {
            let old = self.tx_machine(tx, mac)?.ok_or(Error::MachineNotFound {
                mac: mac.to_string(),
            })?;
            tx.delete(self.keys.machine(mac));
            if let Some(ip) = old.spec.ip {
                tx.delete(self.keys.reservation(ip));
            }
            if let Some(u) = &old.spec.uuid {
                let key = self.keys.uuid(u);
                if self.tx_mac(tx, &key, "uuids")? == Some(mac) {
                    tx.delete(key);
                }
            }
            if let Some(r) = &old.registration {
                tx.delete(self.keys.machine_id(&r.machine_id, mac));
            }
            Ok(((), vec![NewEvent::machine(mac, EventKind::Deleted)]))
        })?;
        Ok(events)
    }

    fn reservation_owner(&self, ip: Ipv4Addr) -> Result<Option<Mac>> {
        let (v, _) = self.conn.get(self.keys.reservation(ip))?;
        v.map(|v| decode_mac("reservations", &v)).transpose()
    }

    fn profile(&self, name: &str) -> Result<Option<Profile>> {
        let (v, _) = self.conn.get(self.keys.profile(name))?;
        v.map(|v| decode("profiles", &v)).transpose()
    }

    fn profiles(&self) -> Result<Vec<Profile>> {
        self.table("profiles", "p")
    }

    fn put_profile(&self, profile: Profile, replace: bool, now: Timestamp) -> Result<Vec<Event>> {
        let key = self.keys.profile(&profile.name);
        let ((), events) = self.write(now, |tx| {
            let existed = tx.get(&key)?.is_some();
            if existed && !replace {
                return Err(Error::ProfileExists {
                    name: profile.name.clone(),
                });
            }
            let action = if existed { "replaced" } else { "created" };
            tx.put(key.clone(), encode(&profile));
            let kind = EventKind::Profile {
                name: profile.name.clone(),
                action: action.into(),
            };
            Ok(((), vec![NewEvent::global(kind)]))
        })?;
        Ok(events)
    }

    fn delete_profile(&self, name: &str, now: Timestamp) -> Result<Vec<Event>> {
        let key = self.keys.profile(name);
        let ((), events) = self.write(now, |tx| {
            // The scan makes the commit fail if a machine is created or changed meanwhile
            // (it may have started to use the profile).
            let start = self.keys.table("m");
            let all = tx.scan(start.clone(), prefix_end(&start))?;
            inventory::store::refuse_profile_in_use(
                name,
                all.iter().map(|(_, v)| decode::<Machine>("machines", v)),
            )?;
            if tx.get(&key)?.is_none() {
                return Err(Error::ProfileNotFound { name: name.into() });
            }
            tx.delete(key.clone());
            let kind = EventKind::Profile {
                name: name.into(),
                action: "deleted".into(),
            };
            Ok(((), vec![NewEvent::global(kind)]))
        })?;
        Ok(events)
    }

    fn append_events(&self, events: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Event>> {
        self.append_events_chunked(events, now)
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<Event>> {
        self.events_matching(q)
    }

    fn last_event_seq(&self) -> Result<u64> {
        let (v, _) = self.conn.get(self.keys.event_seq())?;
        let seq = crate::feed::parse_seq(v.as_deref());
        self.signal.publish(seq);
        Ok(seq)
    }

    fn wait_for_events_after(&self, after: u64, timeout: Duration) -> Result<u64> {
        self.wait_after(after, timeout)
    }

    fn put_leases(&self, leases: &[Lease]) -> Result<()> {
        self.put_leases_chunked(leases)
    }

    fn claim_leases(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Claim>> {
        self.claim_leases_chunked(leases, now)
    }

    fn remove_lease(&self, ip: Ipv4Addr) -> Result<()> {
        let key = self.keys.lease(ip);
        self.conn.block(move |mut c| {
            let key = key.clone();
            async move {
                c.delete(key, None).await?;
                Ok(())
            }
        })
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        self.table("leases", "l")
    }

    fn lease_by_ip(&self, ip: Ipv4Addr) -> Result<Option<Lease>> {
        let (v, _) = self.conn.get(self.keys.lease(ip))?;
        v.map(|v| decode("leases", &v)).transpose()
    }

    fn lease_by_mac(&self, mac: Mac, now: Timestamp) -> Result<Option<Lease>> {
        let (v, _) = self.conn.get(self.keys.lease_of_mac(mac))?;
        let Some(ip) = v.and_then(|v| String::from_utf8(v).ok()?.parse::<Ipv4Addr>().ok()) else {
            return Ok(None);
        };
        Ok(self
            .lease_by_ip(ip)?
            .filter(|l| l.mac == mac && !l.observed && l.is_active(now)))
    }

    fn put_leases6(&self, leases: &[Lease6]) -> Result<()> {
        self.put_leases6_chunked(leases)
    }

    fn claim_leases6(&self, leases: &[Lease6], now: Timestamp) -> Result<Vec<Claim6>> {
        self.claim_leases6_chunked(leases, now)
    }

    fn remove_lease6(&self, ip: Ipv6Addr) -> Result<()> {
        self.remove_lease6_key(ip)
    }

    fn leases6(&self) -> Result<Vec<Lease6>> {
        self.table("leases6", "l6")
    }

    fn lease6_by_ip(&self, ip: Ipv6Addr) -> Result<Option<Lease6>> {
        self.lease6_at(ip)
    }

    fn lease6_by_client(&self, duid: &str, iaid: u32, now: Timestamp) -> Result<Option<Lease6>> {
        self.lease6_of(duid, iaid, now)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<()> {
        let (key, value) = (self.keys.token(hash), encode(record));
        self.conn.block(move |mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                c.put(key, value, None).await?;
                Ok(())
            }
        })
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let (v, _) = self.conn.get(self.keys.token(hash))?;
        v.map(|v| decode("tokens", &v)).transpose()
    }

    fn delete_token(&self, hash: &str) -> Result<()> {
        let key = self.keys.token(hash);
        self.conn.block(move |mut c| {
            let key = key.clone();
            async move {
                c.delete(key, None).await?;
                Ok(())
            }
        })
    }

    fn has_operator_token(&self) -> Result<bool> {
        let tokens: Vec<TokenRecord> = self.table("tokens", "t")?;
        Ok(tokens.iter().any(|r| r.role == TokenRole::Operator))
    }

    fn append_logs(
        &self,
        lines: Vec<(Mac, inventory::NewLogLine)>,
        now: Timestamp,
    ) -> Result<Vec<(Mac, inventory::LogLine)>> {
        self.append_logs_chunked(lines, now)
    }

    fn logs(&self, mac: Mac, after: u64, limit: usize) -> Result<Vec<inventory::LogLine>> {
        self.logs_after(mac, after, limit)
    }
}
