//! `provisioner serve`: configuration, logging, the data directory, the store, the operator
//! token, the listeners, then [`crate::serve::run`] until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use inventory::RedbStore;

use crate::app::{now, App};
use crate::cli::{Global, ServeArgs};
use crate::config::{Config, LogFormat};
use crate::store_config::StoreBackend;

pub const DB_FILE: &str = "inventory.redb";

/// Resolves the configuration: file (if any), then command-line overrides.
pub fn resolve_config(args: &ServeArgs, global: &Global) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(d) = &global.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(l) = args.listen {
        cfg.http_listen = l;
    }
    if let Some(f) = args.log_format {
        cfg.log_format = f;
    }
    if let Some(s) = args.syslog_listen {
        cfg.syslog_listen = Some(s);
    }
    if let Some(l) = args.tls_listen {
        cfg.tls.listen = Some(l);
    }
    if args.no_tftp {
        cfg.tftp = None;
    }
    if let (Some(t), Some(l)) = (cfg.tftp.as_mut(), args.tftp_listen) {
        t.listen = l;
    }
    if let Some(endpoints) = &args.etcd_endpoints {
        use crate::store_config::{StoreBackend, WireStore};
        cfg.store = match std::mem::take(&mut cfg.store) {
            StoreBackend::Etcd(mut s) => {
                crate::store_config::check_endpoints(endpoints).context("--etcd-endpoints")?;
                s.endpoints = endpoints.clone();
                StoreBackend::Etcd(s)
            }
            StoreBackend::Redb => StoreBackend::try_from(WireStore {
                backend: Some("etcd".into()),
                endpoints: Some(endpoints.clone()),
                ..Default::default()
            })
            .context("--etcd-endpoints")?,
        };
    }
    if let Some(peers) = &args.asset_peers {
        cfg.asset_peers = crate::store_config::asset_peers(Some(peers)).context("--asset-peers")?;
    }
    if !cfg.asset_peers.is_empty() && cfg.store == StoreBackend::Redb {
        anyhow::bail!(
            "store.asset_peers / --asset-peers: {}",
            crate::store_config::PEERS_NEED_ETCD
        );
    }
    Ok(cfg)
}

/// `store.asset_peers` without this server itself (its `http.public_url`, or its HTTP listen
/// address when that is a specific one): one config listing every server may be shared by all
/// of them, and asking oneself for an asset one lacks would only wait for a timeout.
fn not_this_server(
    peers: &[reqwest::Url],
    listen: std::net::SocketAddr,
    public_url: Option<&str>,
) -> Vec<reqwest::Url> {
    let public = public_url.and_then(|u| reqwest::Url::parse(u).ok());
    let origin = |u: &reqwest::Url| (u.host_str().map(str::to_string), u.port_or_known_default());
    peers
        .iter()
        .filter(|p| {
            let is_public = public.as_ref().is_some_and(|u| origin(u) == origin(p));
            let is_listen = !listen.ip().is_unspecified()
                && origin(p) == (Some(listen.ip().to_string()), Some(listen.port()));
            if is_public || is_listen {
                tracing::info!(peer = %p, "store.asset_peers: skipping this server itself");
            }
            !(is_public || is_listen)
        })
        .cloned()
        .collect()
}

fn init_logging(cfg: &Config) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cfg.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// What [`open_store`] opens: the store, the machine-token key and, with etcd, the shared
/// asset catalogue.
type OpenedStore = (
    Arc<dyn inventory::Store>,
    crate::machine_keys::MachineKeys,
    Option<Arc<dyn crate::asset_peers::AssetCatalogue>>,
);

/// The inventory store the configuration names, and the machine-token key: in the data
/// directory with redb; in etcd (shared by every server) with etcd, which also holds the
/// asset catalogue.
async fn open_store(cfg: &Config) -> anyhow::Result<OpenedStore> {
    match &cfg.store {
        StoreBackend::Redb => {
            let db_path = cfg.data_dir.join(DB_FILE);
            let store = {
                let db_path = db_path.clone();
                tokio::task::spawn_blocking(move || RedbStore::open(&db_path)).await??
            };
            if let Some(mode) = store.tightened_from() {
                tracing::warn!(
                    "{} was readable by others (mode {mode:o}); it holds token hashes and machine records, so it is now 0600",
                    db_path.display()
                );
            }
            let keys = crate::machine_keys::MachineKeys::load_or_create(&cfg.data_dir)?;
            Ok((Arc::new(store), keys, None))
        }
        StoreBackend::Etcd(settings) => {
            let settings = settings.clone();
            let (store, key) = tokio::task::spawn_blocking(move || {
                let store = inventory_etcd::EtcdStore::open(&settings)?;
                let key = crate::machine_keys::MachineKeys::shared_key(&store)?;
                anyhow::Ok((store, key))
            })
            .await??;
            tracing::info!("inventory on etcd: {store:?}");
            let store = Arc::new(store);
            Ok((store.clone(), key, Some(store)))
        }
    }
}

/// Creates the data directory, and refuses one owned by another user than the server's (as
/// PostgreSQL does): files the server then created would belong to another user than the rest,
/// and the store would be readable by whoever owns the directory.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let owner = std::fs::metadata(dir)
        .with_context(|| format!("reading data directory {}", dir.display()))?
        .uid();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if owner != me {
        anyhow::bail!(
            "data directory {} belongs to uid {owner}, but this server runs as uid {me}; run the \
             server as the user that owns it, or give it to the server's user \
             (chown -R USER {})",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

pub async fn serve(args: ServeArgs, global: Global) -> anyhow::Result<()> {
    let cfg = resolve_config(&args, &global)?;
    init_logging(&cfg);
    prepare_data_dir(&cfg.data_dir)?;
    let (store, keys, catalogue) = open_store(&cfg).await?;
    let assets_dir = cfg.data_dir.join("assets");
    let assets = boot_assets::AssetStore::open(&assets_dir)
        .with_context(|| format!("opening the asset store {}", assets_dir.display()))?;
    let peers = not_this_server(&cfg.asset_peers, cfg.http_listen, cfg.public_url.as_deref());
    let peer_assets = catalogue.map(|c| {
        Arc::new(crate::asset_peers::PeerAssets::new(
            c,
            assets.clone(),
            &peers,
        ))
    });
    let syslog = match cfg.syslog_listen {
        Some(addr) => Some(crate::sockets::bind_syslog(addr).await.with_context(|| {
            format!("binding the syslog receiver to {addr} (syslog.listen / --syslog-listen; port 514 needs root)")
        })?),
        None => None,
    };
    let boot = crate::app::BootContext {
        assets,
        peer_assets: peer_assets.clone(),
        keys,
        public_url: cfg.public_url.clone(),
        machine_url: cfg.tls.public_url.clone(),
        unknown: cfg
            .dhcp
            .as_ref()
            .map_or(crate::boot_decision::UnknownPolicy::Ignore, |d| d.unknown),
        admission: crate::admission::Admission::new(
            cfg.dhcp.as_ref().map(|d| d.admission).unwrap_or_default(),
        ),
        transfer_events: std::sync::Mutex::new(crate::dhcp::seen_limit::SeenLimiter::new(
            crate::dhcp::seen_limit::INVENTORY_WINDOW_MS,
            crate::dhcp::seen_limit::INVENTORY_CAPACITY,
            None,
        )),
        progress_events: Default::default(),
        poll: cfg.poll_interval,
        syslog_port: syslog
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port()),
        signatures: crate::signatures::Signatures::new(cfg.db_certs.clone()),
        secure_cookies: cfg.tls.listen.is_some(),
    };
    let app = {
        let store = store.clone();
        let deadlines = cfg.deadlines;
        tokio::task::spawn_blocking(move || App::new(store, deadlines, boot))
            .await?
            .context("loading the inventory into memory")?
    };
    app.follow_store();
    if let Some(p) = peer_assets {
        tracing::info!("assets: shared catalogue in the store; missing files fetched from {p:?}");
        p.spawn_prefetch(app.store.clone(), app.shutdown.clone());
    }
    let data_dir = cfg.data_dir.clone();
    let created = app
        .read(move |s| Ok(crate::operator_token::ensure(s, &data_dir, now())))
        .await??;
    if let Some(path) = created {
        tracing::info!(
            "created the operator token; it is in {} (mode 0600)",
            path.display()
        );
    }
    // Signal handlers go in before anyone is told we are listening: a SIGTERM right after the
    // listening line must shut down cleanly, not kill the process.
    let shutdown = shutdown_signal()?;
    let listener = crate::sockets::bind_http(cfg.http_listen).with_context(|| {
        format!(
            "binding the HTTP listener to {} (http.listen / --listen)",
            cfg.http_listen
        )
    })?;
    let addr = listener.local_addr()?;
    let limits = http_limits(&cfg.http_limits);
    // One certificate for both TLS listeners (unless boot_tls names its own).
    let needs_material =
        cfg.tls.listen.is_some() || cfg.boot_tls.as_ref().is_some_and(|b| b.files.is_none());
    let material = match needs_material {
        true => Some(tls_material(&cfg).await?),
        false => None,
    };
    let https_boot = match &cfg.boot_tls {
        Some(b) => Some(start_boot_tls(b, &cfg, &app, &limits, material.as_ref()).await?),
        None => None,
    };
    if let Some(tftp) = &cfg.tftp {
        let grub = match machine_base_url(&cfg, addr.port()) {
            Some(base) => crate::boot::grub::GrubServer::from_base(&base),
            None => Some(crate::boot::grub::GrubServer::booted_from(addr.port())),
        };
        start_tftp(tftp, &app, grub).await?;
    }
    if let Some(dhcp) = &cfg.dhcp {
        let urls = (cfg.public_url.as_deref(), https_boot.as_deref());
        start_dhcp(dhcp, &app, addr.port(), urls).await?;
    }
    if let Some(dhcp6) = &cfg.dhcp6 {
        crate::dhcp6::start(dhcp6, &app, addr.port()).await?;
    }
    if let Some(sock) = syslog {
        tracing::info!("listening on syslog://{}", sock.local_addr()?);
        tokio::spawn(crate::syslog::run(sock, app.clone(), app.shutdown.clone()));
    }
    let tls = match material {
        Some(m) => start_tls(&cfg, m)?,
        None => None,
    };
    tracing::info!(data_dir = %cfg.data_dir.display(), "listening on http://{addr}");
    crate::serve::run(listener, tls, app, limits, shutdown).await
}

/// The server's TLS certificate (the operator's, or the self-issued one in `<data_dir>/tls`,
/// created on first start), logged with where the CA is and its fingerprint. The self-issued
/// one names the boot TLS listener's host too (its `public_url`, or `dhcp.server_ip`).
async fn tls_material(cfg: &Config) -> anyhow::Result<crate::tls_material::TlsMaterial> {
    use crate::tls_config::CertSource;
    use crate::tls_material::TlsMaterial;
    let boot = cfg.boot_tls.as_ref();
    let boot_ip = boot
        .and(cfg.dhcp.as_ref())
        .map(|d| std::net::SocketAddr::from((d.server_ip, 0)));
    let material = match &cfg.tls.source {
        CertSource::Files { cert, key } => {
            let (cert, key) = (cert.clone(), key.clone());
            tokio::task::spawn_blocking(move || TlsMaterial::from_files(&cert, &key))
                .await?
                .context("tls.cert / tls.key")?
        }
        CertSource::SelfIssued { names } => {
            let names = if names.is_empty() {
                crate::tls_config::default_names(
                    crate::tls_config::hostname(),
                    &[
                        cfg.public_url.as_deref(),
                        cfg.tls.public_url.as_deref(),
                        boot.and_then(|b| b.public_url.as_deref()),
                    ],
                    &[
                        Some(cfg.http_listen),
                        cfg.tls.listen,
                        boot.map(|b| b.listen),
                        boot_ip,
                    ],
                )
            } else {
                names.clone()
            };
            let dir = cfg.data_dir.join("tls");
            tokio::task::spawn_blocking(move || TlsMaterial::load_or_create(&dir, &names))
                .await?
                .context("the self-issued TLS certificate (remove <data_dir>/tls to start over with a new CA)")?
        }
    };
    match (&material.ca_path, &material.ca_fingerprint) {
        (Some(path), Some(fp)) => tracing::info!(
            ca = %path.display(),
            ca_fingerprint = %fp,
            server_fingerprint = %material.cert_fingerprint,
            "TLS: self-issued CA in {} (fingerprint {fp}); clients trust it with curl --cacert or provisioner --ca-file, or pin --ca-fingerprint {fp}",
            path.display()
        ),
        _ => tracing::info!(
            server_fingerprint = %material.cert_fingerprint,
            "TLS: the operator's certificate (tls.cert)"
        ),
    }
    Ok(material)
}

/// With `tls.listen`: the bound HTTPS listener (rustls) serving `material`.
fn start_tls(
    cfg: &Config,
    material: crate::tls_material::TlsMaterial,
) -> anyhow::Result<Option<crate::serve::TlsListener>> {
    let Some(listen) = cfg.tls.listen else {
        if cfg.tls.require_for_secrets {
            tracing::warn!(
                "tls.require_for_secrets is set but TLS is off (no tls.listen): nothing is refused"
            );
        }
        return Ok(None);
    };
    let config = material.server_config()?;
    let listener = crate::sockets::bind_http(listen).with_context(|| {
        format!("binding the HTTPS listener to {listen} (tls.listen / --tls-listen)")
    })?;
    let addr = listener.local_addr()?;
    tracing::info!(
        require_for_secrets = cfg.tls.require_for_secrets,
        "listening on https://{addr}"
    );
    Ok(Some(crate::serve::TlsListener {
        listener,
        transport: crate::http_server::Transport::Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshake_timeout: cfg.tls.handshake_timeout,
        },
        policy: crate::tls_policy::SecretsPolicy {
            https_only: cfg.tls.require_for_secrets,
            public_url: cfg.tls.public_url.clone(),
            tls_port: addr.port(),
        },
    }))
}

/// Raises the open-file limit and fits the HTTP connection cap under it (logged).
fn http_limits(configured: &crate::http_server::HttpLimits) -> crate::http_server::HttpLimits {
    use crate::http_server::{connection_cap, raise_open_file_limit};
    let mut limits = configured.clone();
    match raise_open_file_limit() {
        Ok((before, now)) => {
            limits.max_connections = connection_cap(configured.max_connections, now);
            tracing::info!(
                nofile_before = before,
                nofile = now,
                max_connections = limits.max_connections,
                header_timeout = ?limits.header_timeout,
                body_stall_timeout = ?limits.body_stall_timeout,
                "open-file limit raised to the hard limit; HTTP connection cap set below it"
            );
            if limits.max_connections < configured.max_connections {
                tracing::warn!(
                    "http.max_connections {} lowered to {} to fit the open-file limit {now}",
                    configured.max_connections,
                    limits.max_connections
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading or raising RLIMIT_NOFILE failed"),
    }
    limits
}

/// The base URL machines reach our HTTP side at, as DHCP hands it out: `dhcp.http_url`, else
/// `http.public_url`, else `http://<dhcp.server_ip>:<port>`; `None` without either setting and
/// without DHCP (then each request's local address is used, which TFTP does not see).
fn machine_base_url(cfg: &Config, http_port: u16) -> Option<String> {
    let dhcp = cfg.dhcp.as_ref();
    dhcp.and_then(|d| d.http_url.clone())
        .or(cfg.public_url.clone())
        .or(dhcp.map(|d| format!("http://{}:{http_port}", d.server_ip)))
}

/// Starts the boot TLS listener (UEFI HTTPS boot) on the same router and limits as the HTTP
/// listener, with `boot_tls.cert`/`key` or else the server's TLS `material`; returns the base
/// URL HTTP-boot firmware is given.
async fn start_boot_tls(
    b: &crate::boot_tls::BootTlsConfig,
    cfg: &Config,
    app: &App,
    limits: &crate::http_server::HttpLimits,
    material: Option<&crate::tls_material::TlsMaterial>,
) -> anyhow::Result<String> {
    use crate::tls_material::TlsMaterial;
    let own;
    let material = match (&b.files, material) {
        (Some((cert, key)), _) => {
            let (cert, key) = (cert.clone(), key.clone());
            own = tokio::task::spawn_blocking(move || TlsMaterial::from_files(&cert, &key))
                .await?
                .context("boot_tls.cert / boot_tls.key")?;
            &own
        }
        (None, Some(m)) => m,
        (None, None) => {
            anyhow::bail!("boot TLS: no certificate (a bug: [tls] material not loaded)")
        }
    };
    let context = crate::boot_tls::context(&material.chain_pem, &material.key_pem)?;
    let router = crate::router::router(app.clone());
    let shutdown = app.shutdown.clone();
    let drain = crate::serve::DRAIN;
    let addr = crate::boot_tls::start(b, context, router, limits.clone(), drain, shutdown)?;
    // Not "listening on https://": that line is the rustls listener's.
    tracing::info!("listening for UEFI HTTPS boot on https://{addr} (boot TLS, OpenSSL)");
    // Handed out by DHCP only; without DHCP the operator points firmware at it.
    let server_ip = cfg
        .dhcp
        .as_ref()
        .map_or(addr.ip().to_string(), |d| d.server_ip.to_string());
    Ok(b.base_url(&server_ip, addr.port()))
}

/// Binds the TFTP socket, assembles the file sources and starts serving in the background.
/// `grub`: where GRUB's bootstrap config sends GRUB for its per-machine config (`None`: no
/// HTTP URL GRUB can use, so no GRUB files are served).
async fn start_tftp(
    cfg: &crate::config::TftpConfig,
    app: &App,
    grub: Option<crate::boot::grub::GrubServer>,
) -> anyhow::Result<()> {
    use crate::tftp::boot_sources::{ImportedLoaders, InstalledGate};
    use crate::tftp::source::{Chain, DirSource, FileSource};
    let mut sources: Vec<Arc<dyn FileSource>> = vec![Arc::new(InstalledGate {
        store: app.store.clone(),
    })];
    if let Some(root) = &cfg.root {
        let dir =
            DirSource::confined(root).with_context(|| format!("tftp.root {}", root.display()))?;
        sources.push(Arc::new(dir));
    }
    sources.push(Arc::new(ImportedLoaders {
        assets: app.boot.assets.clone(),
    }));
    match DirSource::trusted(&cfg.loaders_dir) {
        Ok(dir) => sources.push(Arc::new(dir)),
        Err(e) => tracing::warn!(
            "tftp.loaders_dir {}: {e}; PXE clients will get no iPXE loader (install Debian's `ipxe` package or set tftp.loaders_dir)",
            cfg.loaders_dir.display()
        ),
    }
    match grub {
        None => tracing::warn!(
            "GRUB netboot off: the HTTP URL machines are given is not plain http:// (dhcp.http_url / http.public_url)"
        ),
        Some(server) => {
            let bootstrap = crate::boot::grub::bootstrap(&server);
            match crate::tftp::grub_files::GrubFiles::new(&cfg.grub_dir, bootstrap) {
                Ok(g) => sources.push(Arc::new(g)),
                Err(e) => tracing::info!(
                    "tftp.grub_dir {}: {e}; no GRUB netboot (install Debian's `grub-efi-amd64-bin` for machines with boot.loader grubnetx64.efi)",
                    cfg.grub_dir.display()
                ),
            }
        }
    }
    let socket = crate::sockets::bind_udp_with_pktinfo(cfg.listen).await.with_context(|| {
        format!(
            "binding TFTP to {} (tftp.listen / --tftp-listen; port 69 needs root or CAP_NET_BIND_SERVICE; --no-tftp turns TFTP off)",
            cfg.listen
        )
    })?;
    tracing::info!("listening on tftp://{}", socket.local_addr()?);
    let observer = Arc::new(crate::tftp::observer::InventoryObserver { app: app.clone() });
    tokio::spawn(crate::tftp::server::run(
        socket,
        Arc::new(Chain(sources)),
        cfg.settings.clone(),
        observer,
        app.metrics.tftp.clone(),
        app.shutdown.clone(),
    ));
    Ok(())
}

/// Builds the DHCP core (pools restored from the stored leases), binds its sockets and serves.
async fn start_dhcp(
    cfg: &crate::dhcp::config::DhcpConfig,
    app: &App,
    http_port: u16,
    (public_url, https_boot): (Option<&str>, Option<&str>),
) -> anyhow::Result<()> {
    use crate::dhcp::core::{Core, Settings};
    use crate::dhcp::pool::Pool;
    use crate::dhcp::reply::BootUrls;
    let (leases, machines) = app.read(|s| Ok((s.leases()?, s.machines()?))).await?;
    // Bindings of machines the inventory vouches for; the others count as strangers' holdings.
    let vouched: std::collections::HashSet<inventory::Mac> = machines
        .iter()
        .filter(|m| m.state() != inventory::State::Discovered)
        .map(|m| m.mac)
        .collect();
    let t = now();
    let subnets = cfg
        .subnets
        .iter()
        .map(|s| {
            let mut pool = Pool::new(
                s.options.network,
                s.options.prefix,
                s.first,
                s.last,
                s.times,
            )
            .with_stranger_share(s.unknown_share);
            pool.restore(&leases, t, &|mac| !vouched.contains(&mac));
            (s.options.clone(), pool)
        })
        .collect();
    // The same rule as `machine_base_url`.
    let base = cfg
        .http_url
        .clone()
        .or(public_url.map(str::to_string))
        .unwrap_or_else(|| format!("http://{}:{http_port}", cfg.server_ip));
    let core = Core {
        settings: Settings {
            server_ip: cfg.server_ip,
            mode: cfg.mode,
            unknown: cfg.unknown,
            match_client_id: cfg.match_client_id,
            loaders: cfg.loaders.clone(),
            urls: BootUrls {
                ipxe_script: format!("{base}/boot/ipxe"),
                // UEFI HTTP boot over the boot TLS listener when it is on.
                http_boot: format!("{}/boot/efi", https_boot.unwrap_or(&base)),
            },
        },
        subnets,
        observations: Default::default(),
        pool_warned: None,
    };
    let core = std::sync::Arc::new(std::sync::Mutex::new(core));
    let socks = crate::dhcp::server::bind(cfg).await.with_context(|| {
        format!(
            "binding DHCP on {}:{} (dhcp.listen, dhcp.port; port 67 needs root or CAP_NET_BIND_SERVICE)",
            cfg.listen, cfg.port
        )
    })?;
    tokio::spawn(crate::dhcp::server::watch_pools(
        core.clone(),
        app.metrics.dhcp.clone(),
        app.shutdown.clone(),
    ));
    for sock in socks {
        tracing::info!(mode = ?cfg.mode, "listening on dhcp://{}", sock.local_addr()?);
        tokio::spawn(crate::dhcp::server::run(
            sock,
            core.clone(),
            app.clone(),
            app.metrics.dhcp.clone(),
            app.shutdown.clone(),
        ));
    }
    Ok(())
}

/// Installs SIGTERM and SIGINT handlers now; the returned future completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::not_this_server;

    #[test]
    fn a_server_skips_itself_among_its_asset_peers() {
        let peers: Vec<reqwest::Url> = [
            "http://198.18.0.1:8080",
            "http://198.18.0.3:8080",
            "http://boot.example:8080/",
        ]
        .iter()
        .map(|u| reqwest::Url::parse(u).unwrap())
        .collect();
        let hosts = |v: Vec<reqwest::Url>| -> Vec<String> {
            v.iter()
                .map(|u| u.host_str().unwrap().to_string())
                .collect()
        };
        let listen = "198.18.0.1:8080".parse().unwrap();
        assert_eq!(
            hosts(not_this_server(&peers, listen, None)),
            ["198.18.0.3", "boot.example"]
        );
        let any = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            hosts(not_this_server(
                &peers,
                any,
                Some("http://boot.example:8080")
            )),
            ["198.18.0.1", "198.18.0.3"],
            "the public URL names this server; 0.0.0.0 says nothing"
        );
    }
}
