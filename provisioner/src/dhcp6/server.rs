//! The tokio shell around [`netboot_proto::dhcp6::core::Core6`]: receive on `[::]:547`, read
//! the inventory's in-memory view, call the core, make its bindings durable, then send.
//! No Reply carrying an address goes out before `Store::put_leases6` has returned; if the write
//! fails, the client hears nothing and retries.
//!
//! One message at a time (no group commit as in DHCPv4): DHCPv6 netboot traffic is a few
//! machines per link, not a boot storm over IPv4.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};

use netboot_proto::dhcp6::core::{Core6, Input6};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::app::{now, App};

/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Serves one bound socket until `shutdown`.
pub async fn run(sock: UdpSocket, core: Arc<Mutex<Core6>>, app: App, shutdown: CancellationToken) {
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
        let (commit, remove) = (decision.commit.clone(), decision.remove.clone());
        if !commit.is_empty() || !remove.is_empty() {
            let written = app
                .read(move |s| {
                    for ip in &remove {
                        s.remove_lease6(*ip)?;
                    }
                    if commit.is_empty() {
                        Ok(())
                    } else {
                        s.put_leases6(&commit)
                    }
                })
                .await;
            if let Err(e) = written {
                tracing::error!(error = %e, "dhcp6: writing leases failed; no Reply sent");
                continue;
            }
        }
        let Some((bytes, to)) = decision.reply else {
            continue;
        };
        for l in &decision.commit {
            tracing::info!(ip = %l.ip, duid = %l.duid, mac = ?l.mac.map(|m| m.to_string()), "dhcp6: lease");
        }
        tracing::debug!(%from, %to, ?kind, mac = ?decision.mac.map(|m| m.to_string()), "dhcp6: reply");
        if let Err(e) = sock.send_to(&bytes, to).await {
            tracing::warn!(error = %e, %to, "dhcp6: sending a reply failed");
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
