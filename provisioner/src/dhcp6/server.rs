//! The tokio shell around [`netboot_proto::dhcp6::core::Core6`]: receive on `[::]:547`, read
//! the inventory's in-memory view, call the core, make its bindings durable, then send.
//! No Reply carrying an address goes out before `Store::put_leases6` has returned; if the write
//! fails, the client hears nothing and retries.
//!
//! Group commit, as in DHCPv4: the receive loop decides and sends what needs no write
//! (Advertise, Information-request Replies) at once; Replies that bind or release addresses
//! wait in a queue for the committer task, which writes every binding queued so far in one
//! transaction (one fsync for many clients) and only then sends those Replies. With one fsync
//! per Reply, `bench/dhcp6.sh` measured the disk, not the server.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};

use inventory::Lease6;
use netboot_proto::dhcp6::core::{Core6, Input6};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::{now, App};

/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Serves one bound socket until `shutdown`.
pub async fn run(sock: UdpSocket, core: Arc<Mutex<Core6>>, app: App, shutdown: CancellationToken) {
    let sock = Arc::new(sock);
    let (replies, rx) = mpsc::channel(4 * MAX_BATCH);
    tokio::spawn(committer(rx, sock.clone(), app.clone()));
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
        let t = now();
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
        let kind = decision.kind.map(|k| format!("{k:?}").to_lowercase());
        if let Some(why) = decision.dropped {
            tracing::debug!(%from, ?kind, why, "dhcp6: dropped");
            continue;
        }
        if let Some((_, to)) = &decision.reply {
            tracing::debug!(%from, %to, ?kind, mac = ?decision.mac.map(|m| m.to_string()), "dhcp6: reply");
        }
        if decision.commit.is_empty() && decision.remove.is_empty() {
            if let Some((bytes, to)) = decision.reply {
                send(&sock, &bytes, to).await;
            }
            continue;
        }
        let pending = Pending {
            commit: decision.commit,
            remove: decision.remove,
            reply: decision.reply,
        };
        if replies.send(pending).await.is_err() {
            return;
        }
    }
}

/// A Reply waiting for its bindings (or its release) to be durable.
struct Pending {
    commit: Vec<Lease6>,
    remove: Vec<Ipv6Addr>,
    /// The encoded Reply and where it goes (`None`: a write with nothing to answer).
    reply: Option<(Vec<u8>, SocketAddrV6)>,
}

/// Largest number of Replies whose writes share one transaction.
const MAX_BATCH: usize = 1024;

async fn send(sock: &UdpSocket, bytes: &[u8], to: SocketAddrV6) {
    if let Err(e) = sock.send_to(bytes, to).await {
        tracing::warn!(error = %e, %to, "dhcp6: sending a reply failed");
    }
}

/// Writes the bindings of every queued Reply (in arrival order; a release is its own write),
/// then sends those Replies. On a store error none of the batch is sent: the clients retry.
async fn committer(mut rx: mpsc::Receiver<Pending>, sock: Arc<UdpSocket>, app: App) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let writes: Vec<(Vec<Lease6>, Vec<Ipv6Addr>)> = batch
            .iter()
            .map(|p| (p.commit.clone(), p.remove.clone()))
            .collect();
        let written = app
            .read(move |s| {
                let mut commit = Vec::new();
                for (c, remove) in writes {
                    if !remove.is_empty() {
                        if !commit.is_empty() {
                            s.put_leases6(&std::mem::take(&mut commit))?;
                        }
                        for ip in remove {
                            s.remove_lease6(ip)?;
                        }
                    }
                    commit.extend(c);
                }
                if commit.is_empty() {
                    Ok(())
                } else {
                    s.put_leases6(&commit)
                }
            })
            .await;
        if let Err(e) = written {
            tracing::error!(error = %e, replies = batch.len(), "dhcp6: writing leases failed; no Reply sent");
            continue;
        }
        for p in batch {
            for l in &p.commit {
                tracing::info!(ip = %l.ip, duid = %l.duid, mac = ?l.mac.map(|m| m.to_string()), "dhcp6: lease");
            }
            if let Some((bytes, to)) = p.reply {
                send(&sock, &bytes, to).await;
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
