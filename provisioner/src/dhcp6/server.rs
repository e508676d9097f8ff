//! The tokio shell around [`netboot_proto::dhcp6::core::Core6`]: receive on `[::]:547`, read
//! the inventory's in-memory view, call the core, claim its bindings in the store, then send.
//! No Reply carrying an address goes out before `Store::claim_leases6` has granted and written
//! it; if the write fails, or another server sharing the store holds the address, the client
//! hears nothing and retries (the pool has then learnt the other binding, so the retry gets
//! another address). With a shared store (etcd), a client's bindings are first read from the
//! store, so a client another server bound gets its own address back.
//!
//! What a lease means beyond the reply (events, the DUID on the machine, admission of an
//! unknown netbooting machine) is in `effects.rs`. One message at a time (no group commit as in
//! DHCPv4): DHCPv6 netboot traffic is a few machines per link, not a boot storm over IPv4.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inventory::{Claim6, Lease6};
use netboot_proto::dhcp6::core::{Core6, Decision6, Input6};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::effects::Effects;
use crate::app::{now, App};
use crate::metrics::DhcpMetrics;

/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// How long a message waits for the shared store's answer about its client's bindings before
/// it is answered from memory alone (as DHCPv4's DISCOVER does).
const SHARED_LOOKUP: Duration = Duration::from_millis(250);

fn name(t: dhcproto::v6::MessageType) -> String {
    format!("{t:?}").to_lowercase()
}

/// Serves one bound socket until `shutdown`.
pub async fn run(sock: UdpSocket, core: Arc<Mutex<Core6>>, app: App, shutdown: CancellationToken) {
    let metrics = app.metrics.dhcp6.clone();
    let policy = core
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .settings
        .unknown;
    let mut effects = Effects::new(app.clone(), policy);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "dhcp6: receive failed");
                    continue;
                }
            },
        };
        let SocketAddr::V6(from) = from else { continue };
        let started = tokio::time::Instant::now();
        let t = now();
        if app.store.is_shared() && app.metrics.store.is_up() {
            learn_shared_bindings(&app, &core, &buf[..n], t).await;
        }
        let decision = {
            let views = app.views.read();
            let machine = |mac| views.machine(mac).cloned();
            let mut core = core.lock().unwrap_or_else(|e| e.into_inner());
            core.handle(&Input6 {
                bytes: &buf[..n],
                from,
                machine: &machine,
                now: t,
            })
        };
        DhcpMetrics::bump(
            &metrics.received,
            decision.kind.map_or_else(|| "malformed".to_string(), name),
        );
        if let Some(why) = decision.dropped {
            tracing::debug!(%from, kind = ?decision.kind, why, "dhcp6: dropped");
            DhcpMetrics::bump(&metrics.dropped, why);
            continue;
        }
        let Some(granted) = commit(&app, &core, &metrics, &decision, t).await else {
            continue;
        };
        effects.after_reply(&decision, &granted, t).await;
        let Some((bytes, to)) = &decision.reply else {
            continue;
        };
        for l in &granted {
            tracing::info!(ip = %l.ip, duid = %l.duid, mac = ?l.mac.map(|m| m.to_string()), declined = l.declined, "dhcp6: lease");
        }
        tracing::debug!(%from, %to, kind = ?decision.kind, mac = ?decision.mac.map(|m| m.to_string()), "dhcp6: reply");
        match sock.send_to(bytes, *to).await {
            Ok(_) => {
                DhcpMetrics::bump(
                    &metrics.sent,
                    decision.answer.map_or_else(|| "reply".to_string(), name),
                );
                metrics.observe_latency(started.elapsed().as_secs_f64());
            }
            Err(e) => tracing::warn!(error = %e, %to, "dhcp6: sending a reply failed"),
        }
    }
}

/// Removes and claims what the decision asks for; the granted leases, or `None` when no reply
/// may go out (a store error, or a binding another server holds: the pool learns it).
async fn commit(
    app: &App,
    core: &Arc<Mutex<Core6>>,
    metrics: &DhcpMetrics,
    d: &Decision6,
    t: inventory::Timestamp,
) -> Option<Vec<Lease6>> {
    let (want, remove) = (d.commit.clone(), d.remove.clone());
    if want.is_empty() && remove.is_empty() {
        return Some(Vec::new());
    }
    let written = app
        .read(move |s| {
            for ip in &remove {
                s.remove_lease6(*ip)?;
            }
            if want.is_empty() {
                Ok(Vec::new())
            } else {
                s.claim_leases6(&want, t)
            }
        })
        .await;
    let outcomes = match written {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "dhcp6: writing leases failed; no Reply sent");
            DhcpMetrics::bump(&metrics.dropped, "store error");
            return None;
        }
    };
    let mut granted = Vec::new();
    let mut refused = false;
    for (l, outcome) in d.commit.iter().zip(outcomes) {
        match outcome {
            Claim6::Granted => granted.push(l.clone()),
            Claim6::Held(other) => {
                tracing::info!(ip = %l.ip, duid = %l.duid, holder = %other.duid, "dhcp6: the store refused a binding (another server's or a quarantine); no Reply");
                let mut core = core.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = core.pool.as_mut() {
                    // Ours was recorded when decided: forget it, learn theirs.
                    p.release(l.ip);
                    p.bind(other);
                }
                refused = true;
            }
        }
    }
    if refused {
        DhcpMetrics::bump(&metrics.dropped, "claim refused by the store");
        return None;
    }
    Some(granted)
}

/// With a shared store: teaches the pool the client's bindings another server made (one store
/// read per IA, at most [`SHARED_LOOKUP`]), so the client gets its address back.
async fn learn_shared_bindings(
    app: &App,
    core: &Arc<Mutex<Core6>>,
    datagram: &[u8],
    t: inventory::Timestamp,
) {
    let Some((duid, iaids)) = netboot_proto::dhcp6::ia::client_ias(datagram) else {
        return;
    };
    if core
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pool
        .is_none()
    {
        return;
    }
    let lookup = app.read(move |s| {
        let mut out = Vec::new();
        for iaid in iaids {
            out.extend(s.lease6_by_client(&duid, iaid, t)?);
        }
        Ok(out)
    });
    if let Ok(Ok(found)) = tokio::time::timeout(SHARED_LOOKUP, lookup).await {
        let mut core = core.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = core.pool.as_mut() {
            for l in found {
                if p.contains(l.ip) {
                    p.bind(l);
                }
            }
        }
    }
}

/// Binds `[listen]:port` on `interface` and joins `ff02::1:2` there.
pub async fn bind(cfg: &super::config::Dhcp6Config) -> std::io::Result<UdpSocket> {
    crate::sockets::bind_dhcp6(
        SocketAddrV6::new(cfg.listen, cfg.port, 0, 0),
        &cfg.interface,
        ALL_DHCP_SERVERS,
    )
    .await
}
