//! Starting DHCPv6: the core from `[dhcp6]` and the stored leases, the socket, the task.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use netboot_proto::dhcp::reply::{BootUrls, Loaders};
use netboot_proto::dhcp6::core::{Core6, Settings6};
use netboot_proto::dhcp6::pool::Pool6;

use super::config::Dhcp6Config;
use crate::app::{now, App};

/// Our DUID: a DUID-LL (RFC 8415 §11.4) of the interface's MAC, or of a MAC made from our
/// address when the interface has none (e.g. a tunnel).
fn server_duid(cfg: &Dhcp6Config) -> Vec<u8> {
    let path = format!("/sys/class/net/{}/address", cfg.interface);
    let mac = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<inventory::Mac>().ok())
        .map(|m| m.octets())
        .filter(|m| *m != [0; 6])
        .unwrap_or_else(|| {
            let o = cfg.server_address.octets();
            [0x02, 0, o[12], o[13], o[14], o[15]]
        });
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&mac);
    duid
}

/// Builds the core, binds `[::]:547` on the interface and serves until shutdown.
pub async fn start(cfg: &Dhcp6Config, app: &App, http_port: u16) -> anyhow::Result<()> {
    let leases = app.read(|s| s.leases6()).await?;
    let base = cfg
        .http_url
        .clone()
        .unwrap_or_else(|| format!("http://[{}]:{http_port}", cfg.server_address));
    let pool = cfg.range.map(|(first, last)| {
        // The server's own address is never handed out, even when the range covers it.
        let mut never: std::collections::BTreeSet<_> = cfg.reservations.values().copied().collect();
        never.insert(cfg.server_address);
        let mut p = Pool6::new(first, last, never);
        p.restore(&leases, now());
        p
    });
    let core = Core6 {
        settings: Settings6 {
            server_duid: server_duid(cfg),
            mode: cfg.mode,
            unknown: cfg.unknown,
            loaders: Loaders::default(),
            urls: BootUrls {
                ipxe_script: format!("{base}/boot/ipxe"),
                http_boot: format!("{base}/boot/efi"),
            },
            server_addr: cfg.server_address,
            dns: cfg.dns.clone(),
            preferred: cfg.preferred,
            valid: cfg.valid,
            reservations: cfg.reservations.clone(),
        },
        pool,
    };
    let sock = super::server::bind(cfg).await.with_context(|| {
        format!(
            "binding DHCPv6 on [{}]:{} on {} (dhcp6.listen, dhcp6.port, dhcp6.interface; port 547 needs root or CAP_NET_BIND_SERVICE)",
            cfg.listen, cfg.port, cfg.interface
        )
    })?;
    tracing::info!(mode = ?cfg.mode, interface = %cfg.interface, "listening on dhcp6://{}", sock.local_addr()?);
    tokio::spawn(super::server::run(
        sock,
        Arc::new(Mutex::new(core)),
        app.clone(),
        app.shutdown.clone(),
    ));
    Ok(())
}
