//! The tokio shell around [`super::core::Core`]: receive, read the in-memory views
//! ([`crate::views`]), call the core, make what it decided durable, then send. Nothing is acknowledged before `Store::put_leases` has returned
//! (RFC 2131 §4.3.1); if that fails, no ACK goes out.
//!
//! Group commit: the receive loop decides and sends OFFERs at once; ACKs wait in a queue for the
//! committer task, which writes every binding queued so far in one transaction (one fsync for
//! many clients) and only then sends those ACKs. While one fsync runs the next batch gathers, so no
//! artificial delay is needed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use dhcproto::v4::{DhcpOption, Message, OptionCode};
use dhcproto::{Decodable, Decoder};
use inventory::{Mac, NewEvent};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::core::{Admitting, Core, Decision, Input};
use super::reply::Arrived;
use crate::app::{now, App};
use crate::sockets;

use super::shared_lookup::{is_discover, learn_shared_binding, LOOKUPS_IN_FLIGHT};

pub use crate::metrics::DhcpMetrics;

fn type_name(m: &Message) -> String {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => format!("{t:?}").to_lowercase(),
        _ => "none".into(),
    }
}

/// An ACK waiting for its binding to be durable.
struct PendingAck {
    lease: inventory::Lease,
    bytes: Vec<u8>,
    to: SocketAddrV4,
    /// What to send instead when the store refuses the claim.
    nak: Option<(Vec<u8>, SocketAddrV4)>,
    ifindex: u32,
    received: tokio::time::Instant,
}

/// Largest number of bindings written in one transaction.
const MAX_BATCH: usize = 1024;

/// Claims queued bindings in one store transaction (atomic per address: a binding another
/// server sharing the store holds is refused), then sends each granted ACK; a refused one gets
/// its NAK and the pool learns the other binding. On a store error nothing is sent.
async fn committer(
    mut rx: tokio::sync::mpsc::Receiver<PendingAck>,
    sock: Arc<UdpSocket>,
    app: App,
    metrics: Arc<DhcpMetrics>,
    core: Arc<Mutex<Core>>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let leases: Vec<inventory::Lease> = batch.iter().map(|p| p.lease.clone()).collect();
        let n = leases.len();
        let t = now();
        match app.read(move |s| s.claim_leases(&leases, t)).await {
            Ok(outcomes) => {
                for (p, outcome) in batch.into_iter().zip(outcomes) {
                    let (bytes, to, kind) = match outcome {
                        inventory::Claim::Granted => (p.bytes, p.to, "ack"),
                        refused => {
                            if let inventory::Claim::Held(other) = &refused {
                                core.lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .foreign_binding(other);
                            }
                            tracing::info!(ip = %p.lease.ip, mac = %p.lease.mac, outcome = ?refused, "dhcp: the store refused a binding (another server's); NAK");
                            DhcpMetrics::bump(&metrics.dropped, "claim refused by the store");
                            match p.nak {
                                Some((nak, to)) => (nak, to, "nak"),
                                None => continue,
                            }
                        }
                    };
                    match sockets::send_via(&sock, &bytes, to, p.ifindex).await {
                        Ok(_) => {
                            DhcpMetrics::bump(&metrics.sent, kind.to_string());
                            metrics.observe_latency(p.received.elapsed().as_secs_f64());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, %to, "dhcp: sending a reply failed")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, bindings = n, "dhcp: writing leases failed; their ACKs are not sent");
                for _ in 0..n {
                    DhcpMetrics::bump(&metrics.dropped, "store error");
                }
            }
        }
    }
}

/// Serves one bound socket (port 67, or 4011 in proxy mode) until `shutdown`.
pub async fn run(
    sock: UdpSocket,
    core: Arc<Mutex<Core>>,
    app: App,
    metrics: Arc<DhcpMetrics>,
    shutdown: CancellationToken,
) {
    let local_port = sock.local_addr().map(|a| a.port()).unwrap_or(67);
    let sock = Arc::new(sock);
    let (acks, rx) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
    tokio::spawn(committer(
        rx,
        sock.clone(),
        app.clone(),
        metrics.clone(),
        core.clone(),
    ));
    let ctx = Arc::new(Ctx {
        app: app.clone(),
        core: core.clone(),
        metrics: metrics.clone(),
        sock: sock.clone(),
        acks,
        lookups: Arc::new(tokio::sync::Semaphore::new(LOOKUPS_IN_FLIGHT)),
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sockets::recv_with_arrival(&sock, &mut buf) => r,
        };
        let Ok((n, arrival)) = received else { continue };
        let started = tokio::time::Instant::now();
        let Ok(msg) = Message::decode(&mut Decoder::new(&buf[..n])) else {
            DhcpMetrics::bump(&metrics.dropped, "malformed");
            continue;
        };
        DhcpMetrics::bump(&metrics.received, type_name(&msg));
        let SocketAddr::V4(src) = arrival.peer else {
            continue;
        };
        let local_ip = match arrival.local {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        };
        let arrived = Arrived {
            src,
            local_port,
            giaddr: msg.giaddr(),
            ciaddr: msg.ciaddr(),
            broadcast_flag: msg.flags().broadcast(),
            to_broadcast: arrival.broadcast,
        };
        let relay_info = super::reply::raw_option(&buf[..n], 82).map(<[u8]>::to_vec);
        let packet = Packet {
            msg,
            arrived,
            local_ip,
            relay_info,
            ifindex: arrival.ifindex,
            started,
        };
        // With a shared store a DISCOVER first asks it about its client (one etcd read): that
        // runs in its own task, so the socket keeps being read meanwhile; at most
        // LOOKUPS_IN_FLIGHT at once, beyond that a DISCOVER is answered from memory at once.
        if ctx.app.store.is_shared() && is_discover(&packet.msg) {
            if let Ok(permit) = ctx.lookups.clone().try_acquire_owned() {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    learn_shared_binding(&ctx.app, &ctx.core, &packet.msg, now()).await;
                    answer(&ctx, packet).await;
                    drop(permit);
                });
                continue;
            }
        }
        answer(&ctx, packet).await;
    }
}

/// A DHCP message as it arrived, for [`answer`].
struct Packet {
    msg: Message,
    arrived: Arrived,
    local_ip: Option<Ipv4Addr>,
    relay_info: Option<Vec<u8>>,
    ifindex: u32,
    started: tokio::time::Instant,
}

/// What answering needs: shared by the receive loop and the lookup tasks.
struct Ctx {
    app: App,
    core: Arc<Mutex<Core>>,
    metrics: Arc<DhcpMetrics>,
    sock: Arc<UdpSocket>,
    acks: tokio::sync::mpsc::Sender<PendingAck>,
    /// Shared-store lookups in flight (see [`run`]).
    lookups: Arc<tokio::sync::Semaphore>,
}

/// Decides and replies to one message (an ACK through the committer, after its lease is
/// durable).
async fn answer(ctx: &Ctx, p: Packet) {
    let (app, core, metrics, sock, acks) =
        (&ctx.app, &ctx.core, &ctx.metrics, &ctx.sock, &ctx.acks);
    let Packet {
        msg,
        arrived,
        local_ip,
        relay_info,
        ifindex,
        started,
    } = p;
    let decided = decide(app, core, msg, arrived, local_ip, relay_info).await;
    let d = match decided {
        Ok((d, deferred)) => {
            if !app.events.record(deferred) {
                DhcpMetrics::bump(&metrics.dropped, "event queue full (events only)");
            }
            d
        }
        Err(e) => {
            tracing::error!(error = %e, "dhcp: request failed; no reply sent");
            DhcpMetrics::bump(&metrics.dropped, "store error");
            return;
        }
    };
    if let Some(why) = d.dropped {
        DhcpMetrics::bump(&metrics.dropped, why);
    }
    if let Some(w) = &d.warning {
        tracing::warn!("{w} (repeats at most once a minute; provisioner_dhcp_dropped_total counts every refusal)");
    }
    metrics.suppressed.add(d.suppressed as u64);
    if let Some((reply, to)) = d.reply {
        let Ok(bytes) = super::reply::encode_with(&reply, d.relay_echo.as_deref()) else {
            return;
        };
        if let Some(lease) = d.commit {
            // Durable first: the committer sends this ACK after the binding is written.
            let _ = acks
                .send(PendingAck {
                    lease,
                    bytes,
                    to,
                    nak: d.nak_if_lost.as_ref().and_then(|(m, to)| {
                        super::reply::encode_with(m, d.relay_echo.as_deref())
                            .ok()
                            .map(|b| (b, *to))
                    }),
                    ifindex,
                    received: started,
                })
                .await;
            return;
        }
        match sockets::send_via(sock, &bytes, to, ifindex).await {
            Ok(_) => {
                DhcpMetrics::bump(&metrics.sent, type_name(&reply));
                metrics.observe_latency(started.elapsed().as_secs_f64());
            }
            Err(e) => tracing::warn!(error = %e, %to, "dhcp: sending the reply failed"),
        }
    }
}

/// Decides from the in-memory views (no store access on this path: an OFFER never waits for
/// the disk; with a shared store a DISCOVER has first asked it for the client's binding, in its
/// own task, see `shared_lookup.rs`), then makes the one store write the decision asks for, if any (a newcomer's
/// record, a relayed machine's new location, a released or observed binding), outside the
/// core's lock. Returns the decision and the observation events for the event writer.
async fn decide(
    app: &App,
    core: &Arc<Mutex<Core>>,
    msg: Message,
    arrived: Arrived,
    local_ip: Option<Ipv4Addr>,
    relay_info: Option<Vec<u8>>,
) -> inventory::Result<(Decision, Vec<NewEvent>)> {
    let t = now();
    let mut d = {
        let views = app.views.read();
        let machine = (msg.hlen() == 6)
            .then(|| {
                let c = msg.chaddr();
                Mac::new([c[0], c[1], c[2], c[3], c[4], c[5]])
            })
            .and_then(|mac| views.machine(mac));
        let mut gate = app.boot.admission.lock();
        if gate.needs_count(t) {
            gate.counted(views.unclaimed(app.boot.unknown), t);
        }
        let uuid_holder = |u: &str| views.uuid_holder(u);
        let mut core = core.lock().unwrap_or_else(|p| p.into_inner());
        let link = super::core::link_of(&msg, local_ip, core.settings.server_ip);
        core.handle(Input {
            relay_info: relay_info.as_deref(),
            msg: &msg,
            arrived,
            link,
            machine,
            reservations: &*views,
            now: t,
            admitting: Some(Admitting {
                gate: &mut gate,
                uuid_holder: &uuid_holder,
            }),
        })
    };
    // Observations (`seen`, notes; rate-limited by the core) go to the event writer in
    // batches, off the reply path.
    let mut deferred: Vec<NewEvent> = match &d.client {
        Some(c) => d
            .events
            .iter()
            .map(|k| NewEvent::machine(c.mac, k.clone()))
            .collect(),
        None => Vec::new(),
    };
    let mut admitted = d
        .admission
        .take()
        .and_then(|o| crate::admission::account(o, &app.metrics.discovery));
    let mut location = d.location.take();
    if let Some(a) = &mut admitted {
        if let Some((here, note)) = location.take() {
            // A newcomer behind a relay: its place goes into the new record (one write).
            a.machine.location = Some(here);
            deferred.push(NewEvent::machine(a.machine.mac, note));
        }
    }
    let (remove, observed) = (d.remove, d.observed.clone());
    if admitted.is_none() && location.is_none() && remove.is_none() && observed.is_none() {
        return Ok((d, deferred));
    }
    app.write(move |store| {
        let mut events = Vec::new();
        if let Some(a) = admitted {
            match crate::admission::write(store, a, t) {
                Ok((_, evs)) => events.extend(evs),
                // Recorded meanwhile (HTTP boot, another server): the reply still fits.
                Err(inventory::Error::MachineExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some((here, note)) = location {
            if let Some(mac) = d.client.as_ref().map(|c| c.mac) {
                let (_, evs) = store.update_machine(mac, t, &mut |x| {
                    x.location = Some(here.clone());
                    Ok(vec![note.clone()])
                })?;
                events.extend(evs);
            }
        }
        if let Some(ip) = remove {
            store.remove_lease(ip)?;
        }
        // Proxy mode: who holds which address, as evidence for the HTTP side. Written only
        // when it says something new (a renewal of the same binding within the first half of
        // its life costs no write).
        if let Some(b) = &observed {
            let stored = store.lease_by_ip(b.ip)?;
            let fresh = stored.as_ref().is_some_and(|l| {
                l.mac == b.mac && l.observed && l.expires.0 > t.0 + (b.expires.0 - t.0) / 2
            });
            if !fresh {
                store.put_leases(std::slice::from_ref(b))?;
            }
        }
        Ok(((d, deferred), events))
    })
    .await
}

/// Refreshes the pool-utilization gauge once a second (counting is O(bindings): not per packet).
pub async fn watch_pools(
    core: Arc<Mutex<Core>>,
    metrics: Arc<DhcpMetrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = now();
        let pools = {
            let core = core.lock().unwrap_or_else(|p| p.into_inner());
            core.subnets
                .iter()
                .map(|(o, p)| {
                    let (used, total) = p.utilization(t);
                    (format!("{}/{}", o.network, o.prefix), used, total)
                })
                .collect()
        };
        *metrics.pools.lock().unwrap() = pools;
    }
}

/// Binds the DHCP sockets for `cfg` (67, plus 4011 in proxy mode).
pub async fn bind(cfg: &super::config::DhcpConfig) -> std::io::Result<Vec<UdpSocket>> {
    let mut socks = vec![
        sockets::bind_dhcp(
            SocketAddr::V4(SocketAddrV4::new(cfg.listen, cfg.port)),
            cfg.interface.as_deref(),
        )
        .await?,
    ];
    if cfg.mode == super::core::Mode::Proxy {
        let port = super::reply::PXE_BOOT_SERVER_PORT;
        socks.push(
            sockets::bind_dhcp(
                SocketAddr::V4(SocketAddrV4::new(cfg.listen, port)),
                cfg.interface.as_deref(),
            )
            .await?,
        );
    }
    Ok(socks)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
