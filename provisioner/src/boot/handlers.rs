//! Handlers of the machine-facing boot endpoints. Answers are plain text: a firmware or iPXE
//! console shows them as they are.

// Handlers answer errors as ready responses (axum's idiom); their size does not matter here.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use boot_assets::{parse_digest, AssetKind, AssetMeta, BootSection};
use inventory::{EventKind, Mac, Machine};
use serde::Deserialize;

use super::files::{self, FileReply};
use super::machine_query::MachineQuery;
use super::plan::{self, BootView};
use super::script::{Platform, Script};
use super::{config_render, Base};
use crate::app::App;
use crate::asset_peers::Unavailable;
use crate::boot_decision::Intent;
use crate::boot_tls::TlsSession;
use crate::http::Peer;
use crate::identity::{self, Holder};
use crate::machine_keys::MachineKeys;

type Reply = Result<Response, Response>;

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "boot request failed");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("provisioner: {e}"),
    )
}

/// An asset this server cannot serve: 404 when nobody imported it; 503 with `Retry-After`
/// when it exists (the shared catalogue lists it) but no peer served its bytes or the
/// catalogue is unreachable: the firmware's retry may succeed once a peer or the store is back.
fn unavailable(e: Unavailable) -> Response {
    match e {
        Unavailable::Unknown { .. } => text(StatusCode::NOT_FOUND, e.to_string()),
        _ => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            let secs = crate::asset_peers::RETRY_AFTER_FAILURE.as_secs();
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            r
        }
    }
}

fn parse_mac(s: &str) -> Result<Mac, Response> {
    s.parse()
        .map_err(|e: inventory::Error| text(StatusCode::BAD_REQUEST, e.to_string()))
}

/// The machine the caller's address belongs to by the server's own evidence (an active
/// DHCPv4 lease or observed binding; for an IPv6 caller, an active DHCPv6 lease), if any. A MAC
/// in the URL is never evidence.
///
/// A store that keeps no DHCPv6 leases (or fails to read them) gives an IPv6 caller no
/// evidence rather than an error: it still gets the public answers, unattributed, as before
/// the server spoke DHCPv6.
pub async fn caller_holder(app: &App, peer: &Peer) -> Result<Option<Holder>, Response> {
    let ip = peer.remote.ip();
    let t = crate::app::now();
    let found = app.read(move |s| identity::holder_of_peer(s, ip, t)).await;
    match (found, identity::ipv4(ip)) {
        (Ok(h), _) => Ok(h),
        (Err(e), Some(_)) => Err(internal(e)),
        (Err(e), None) => {
            tracing::warn!(%ip, error = %e, "reading the DHCPv6 lease of a caller failed; no evidence");
            Ok(None)
        }
    }
}

/// The caller's address when the server's evidence says it is `mac`.
async fn attributed_ip(app: &App, peer: &Peer, mac: Mac) -> Result<Option<IpAddr>, Response> {
    let holder = caller_holder(app, peer).await?;
    Ok(identity::is_machine(holder, mac).then(|| peer.remote.ip()))
}

/// Read with [`MachineQuery`]: other parameters are ignored, empty ones are absent.
#[derive(Deserialize)]
pub struct ScriptQuery {
    mac: String,
    platform: Option<String>,
}

/// `GET /boot/ipxe?mac=…[&platform=efi|pcbios]`: the machine's iPXE script.
pub async fn ipxe_script(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    MachineQuery(q): MachineQuery<ScriptQuery>,
) -> Reply {
    let mac = parse_mac(&q.mac)?;
    let platform = match q.platform.as_deref() {
        None => None,
        Some("efi") => Some(Platform::Efi),
        Some("pcbios") => Some(Platform::Pcbios),
        Some(other) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!(
                    "platform {:?}: expected efi or pcbios",
                    super::script::IpxeText::new(other).as_str()
                ),
            ))
        }
    };
    let view = plan::load(&app, mac).await.map_err(internal)?;
    let intent = view.intent(app.boot.unknown);
    let base = Base::new(&app, &peer);
    let Some(script) = plan::script(&view, &intent, platform, &base, app.boot.poll) else {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("provisioner: {mac} is not in the inventory (unknown machines are ignored)"),
        ));
    };
    // A script holds no secret, so anyone gets it; only a caller the server's evidence says is
    // the machine moves it to `booting` or leaves a trace on it.
    let attributed = match &script {
        Script::InstallEfi { .. } | Script::InstallBios { .. } => {
            attributed_ip(&app, &peer, mac).await?
        }
        // Evidence only decides whether the answer is recorded: with the store unreachable an
        // installed machine is still told to boot from its disk, unrecorded.
        Script::LocalDisk { .. } => attributed_ip(&app, &peer, mac).await.unwrap_or(None),
        Script::Dispatch { .. } | Script::Hold { .. } => None,
    };
    match (&script, attributed) {
        (Script::InstallEfi { .. } | Script::InstallBios { .. }, Some(ip)) => {
            let what = format!(
                "iPXE script: install ({})",
                q.platform.as_deref().unwrap_or("?")
            );
            plan::record_boot(&app, mac, ip, what).await;
        }
        (Script::LocalDisk { .. }, Some(_)) => {
            let kind = EventKind::Seen {
                via: "http".into(),
                detail: "iPXE script: boot from disk".into(),
            };
            plan::note_limited(&app, mac, kind).await;
        }
        (
            Script::InstallEfi { .. } | Script::InstallBios { .. } | Script::LocalDisk { .. },
            None,
        ) => {
            tracing::debug!(%mac, from = %peer.remote, "script asked without evidence of the machine; nothing recorded");
        }
        _ => {}
    }
    Ok(text(StatusCode::OK, script.render(mac).trim_end()))
}

/// Read with [`MachineQuery`]: other parameters are ignored, empty ones are absent.
#[derive(Deserialize)]
pub struct MacQuery {
    mac: Option<String>,
}

/// `GET|HEAD /boot/efi?mac=…`: UEFI HTTP boot downloads the machine's UKI here directly (over
/// the boot TLS listener too: UEFI HTTPS boot, recorded as such).
pub async fn http_boot(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    tls: Option<Extension<TlsSession>>,
    method: Method,
    headers: HeaderMap,
    MachineQuery(q): MachineQuery<MacQuery>,
) -> Reply {
    let Some(m) = q.mac.as_deref() else {
        return Err(text(StatusCode::BAD_REQUEST, "missing ?mac="));
    };
    let mac = parse_mac(m)?;
    let view = plan::load(&app, mac).await.map_err(internal)?;
    match view.intent(app.boot.unknown) {
        Intent::Install => {}
        Intent::Ignore => {
            return Err(text(
                StatusCode::NOT_FOUND,
                format!("{mac} is not in the inventory"),
            ))
        }
        Intent::LocalDisk => {
            return Err(text(
                StatusCode::NOT_FOUND,
                format!("{mac} is installed: boot from disk"),
            ))
        }
        Intent::Hold { reason } => return Err(text(StatusCode::NOT_FOUND, reason)),
    }
    if let Some(problem) = plan::install_problem(&view) {
        return Err(text(StatusCode::NOT_FOUND, problem));
    }
    let uki = view.uki.clone().expect("checked by install_problem");
    // Only the machine itself (by the server's evidence) moves to `booting`, gets its
    // download recorded; anyone else just gets the bytes (a UKI holds no per-machine secret).
    let attributed = attributed_ip(&app, &peer, mac).await?;
    if let (Some(ip), true) = (attributed, method == Method::GET) {
        let what = match &tls {
            Some(Extension(t)) => format!("UEFI HTTPS boot ({} {}): UKI", t.version, t.cipher),
            None => "UEFI HTTP boot: UKI".into(),
        };
        plan::record_boot(&app, mac, ip, what).await;
    }
    let tls = tls.map(|Extension(t)| t);
    serve_asset(
        &app,
        &uki,
        None,
        &method,
        &headers,
        attributed.map(|_| mac),
        tls,
    )
    .await
}

/// Which machine a download is for: `?mac=` (our own URLs carry it), else the machine the
/// caller's address belongs to. Also whether the server's evidence says the caller *is* it:
/// only then is the download recorded on the machine.
async fn downloader(
    app: &App,
    q: &MacQuery,
    peer: &Peer,
) -> Result<(Option<BootView>, bool), Response> {
    let holder = caller_holder(app, peer).await?;
    let mac = match q.mac.as_deref() {
        Some(m) => Some(parse_mac(m)?),
        None => holder.map(|h| h.mac),
    };
    match mac {
        Some(mac) => Ok((
            Some(plan::load(app, mac).await.map_err(internal)?),
            identity::is_machine(holder, mac),
        )),
        None => Ok((None, false)),
    }
}

async fn asset_request(
    app: &App,
    digest: &str,
    q: &MacQuery,
    peer: &Peer,
) -> Result<(AssetMeta, Option<Mac>), Response> {
    let hex = parse_digest(digest).map_err(|e| text(StatusCode::BAD_REQUEST, e.to_string()))?;
    let meta = match &app.boot.peer_assets {
        // The record only: the file is fetched (if missing) once the request is allowed.
        Some(peers) => match peers.lookup(&hex).await {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                let e = Unavailable::Unknown {
                    digest: format!("sha256:{hex}"),
                };
                return Err(unavailable(e));
            }
            Err(e) => return Err(unavailable(e)),
        },
        None => {
            let assets = app.boot.assets.clone();
            tokio::task::spawn_blocking(move || assets.get(&hex))
                .await
                .map_err(internal)?
                .map_err(|e| text(StatusCode::NOT_FOUND, e.to_string()))?
        }
    };
    let (view, attributed) = downloader(app, q, peer).await?;
    // No boot loop: an installed machine gets no installer, whichever URL it kept. (A refusal
    // needs no evidence: asking for another machine's refusal gains nothing.)
    if let Some(v) = &view {
        // Nor, with `secure_boot`, a UKI its profile's db certificates do not trust.
        let its_uki = v.uki.as_ref().is_some_and(|u| u.digest == meta.digest);
        if let (true, Some(why)) = (its_uki, &v.refusal) {
            return Err(text(StatusCode::FORBIDDEN, why.clone()));
        }
        if meta.kind == AssetKind::Uki && v.intent(app.boot.unknown) == Intent::LocalDisk {
            return Err(text(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is installed; `provisioner machines reprovision {}` to reinstall",
                    v.mac, v.mac
                ),
            ));
        }
    }
    Ok((meta, view.filter(|_| attributed).map(|v| v.mac)))
}

/// `GET|HEAD /assets/<digest>/<name>`: any stored asset, by content address.
pub async fn asset(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    tls: Option<Extension<TlsSession>>,
    Path((digest, _name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    MachineQuery(q): MachineQuery<MacQuery>,
) -> Reply {
    let (meta, mac) = asset_request(&app, &digest, &q, &peer).await?;
    let tls = tls.map(|Extension(t)| t);
    serve_asset(&app, &meta, None, &method, &headers, mac, tls).await
}

/// `GET|HEAD /assets/<digest>/sections/{linux,initrd,cmdline}`: a UKI's parts, for BIOS.
pub async fn asset_section(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    tls: Option<Extension<TlsSession>>,
    Path((digest, section)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    MachineQuery(q): MachineQuery<MacQuery>,
) -> Reply {
    let Some(section) = BootSection::from_name(&section) else {
        return Err(text(
            StatusCode::NOT_FOUND,
            "sections are linux, initrd and cmdline",
        ));
    };
    let (meta, mac) = asset_request(&app, &digest, &q, &peer).await?;
    let tls = tls.map(|Extension(t)| t);
    serve_asset(&app, &meta, Some(section), &method, &headers, mac, tls).await
}

async fn serve_asset(
    app: &App,
    meta: &AssetMeta,
    section: Option<BootSection>,
    method: &Method,
    headers: &HeaderMap,
    mac: Option<Mac>,
    // How the request came: a `transfer` event says `https` for the boot TLS listener.
    tls: Option<TlsSession>,
) -> Reply {
    let hex = parse_digest(&meta.digest).map_err(internal)?;
    if let Some(peers) = &app.boot.peer_assets {
        // Not here yet (another server imported it): fetched and verified first, one fetch
        // for every request that waits for it.
        peers.resolve(&hex).await.map_err(unavailable)?;
    }
    let path = match section {
        None => app.boot.assets.file(&meta.digest).map(|(_, p)| p),
        Some(s) => app.boot.assets.section(&meta.digest, s),
    }
    .map_err(|e| text(StatusCode::NOT_FOUND, e.to_string()))?;
    let (etag, file) = match section {
        None => (hex, meta.name.clone()),
        Some(s) => (
            format!("{hex}-{}", s.file_name()),
            format!("{}#{}", meta.name, s.file_name()),
        ),
    };
    // A whole UKI downloaded by its machine is counted for the UKI-start deadline.
    // Only the whole file counts: a ranged request for a few bytes is not a firmware's download.
    let uki = (section.is_none() && meta.kind == AssetKind::Uki).then(|| meta.digest.clone());
    let protocol = if tls.is_some() { "https" } else { "http" };
    let uki_size = meta.size;
    let report: Option<files::Report> = match (mac, method == Method::GET) {
        (Some(mac), true) => {
            let app = app.clone();
            Some(Box::new(move |bytes, complete, elapsed| {
                let outcome = if complete { "complete" } else { "incomplete" };
                let kind = EventKind::Transfer {
                    protocol: protocol.into(),
                    file,
                    bytes,
                    millis: elapsed.as_millis() as u64,
                    retransmits: 0,
                    outcome: outcome.into(),
                };
                match uki.filter(|_| complete && bytes == uki_size) {
                    Some(digest) => {
                        // Pending from now, so a shutdown drain waits for it.
                        app.metrics.events_pending.inc();
                        tokio::spawn(async move {
                            plan::record_uki_download(&app, mac, digest, kind).await;
                            app.metrics.events_pending.dec();
                        });
                    }
                    None if plan::transfer_event_allowed(&app, mac, &kind) => {
                        plan::observe(&app, mac, kind)
                    }
                    None => {}
                }
            }))
        }
        _ => None,
    };
    // UEFI HTTP boot decides what it downloaded from the Content-Type (or else the URL's
    // extension, which `/boot/efi?mac=` lacks): EFI images must say application/efi.
    let is_efi = section.is_none() && meta.efi.is_some();
    let reply = FileReply {
        path: &path,
        etag: &etag,
        content_type: if is_efi {
            "application/efi"
        } else {
            "application/octet-stream"
        },
        immutable: true,
    };
    Ok(files::serve(reply, method, headers, report).await)
}

/// Read with [`MachineQuery`]: other parameters are ignored, empty ones are absent.
#[derive(Deserialize)]
pub struct ConfigQuery {
    mac: Option<String>,
    uuid: Option<String>,
    token: Option<String>,
}

/// `GET /config?mac=…|uuid=…`: for one UKI's templated `config_url` serving every machine.
pub async fn config_by_query(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    MachineQuery(q): MachineQuery<ConfigQuery>,
) -> Reply {
    let found_by = if q.uuid.is_some() { "?uuid=" } else { "?mac=" };
    let machine = match (q.mac.as_deref(), q.uuid.as_deref()) {
        (Some(m), None) => {
            let mac = parse_mac(m)?;
            app.read(move |s| s.machine(mac)).await.map_err(internal)?
        }
        // Both (matchbox-style URLs send both): the MAC finds the machine, and a UUID it does
        // not hold makes the request name two machines, which is refused.
        (Some(m), Some(u)) => {
            let mac = parse_mac(m)?;
            let uuid = inventory::machine::normalize_uuid(u)
                .map_err(|e| text(StatusCode::BAD_REQUEST, e.to_string()))?;
            let u_norm = Some(uuid.clone());
            let (found, holder) = app
                .read(move |s| Ok((s.machine(mac)?, s.machine_by_uuid(&uuid).ok().flatten())))
                .await
                .map_err(internal)?;
            // Refused when the UUID is another machine's, or this machine holds another one.
            let theirs = holder.as_ref().is_some_and(|h| h.mac != mac);
            let other = found
                .as_ref()
                .and_then(|m| m.spec.uuid.as_deref())
                .is_some_and(|held| Some(held) != u_norm.as_deref());
            if theirs || other {
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    format!("?mac={mac} and ?uuid= name two machines: give one of them"),
                ));
            }
            found
        }
        (None, Some(u)) => {
            let uuid = inventory::machine::normalize_uuid(u)
                .map_err(|e| text(StatusCode::BAD_REQUEST, e.to_string()))?;
            match app.read(move |s| s.machine_by_uuid(&uuid)).await {
                Ok(m) => m,
                // Never the first of several: the operator has to say which machine it is.
                Err(e @ inventory::Error::UuidAmbiguous { .. }) => {
                    return Err(text(StatusCode::CONFLICT, e.to_string()))
                }
                Err(e) => return Err(internal(e)),
            }
        }
        _ => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "give ?mac= or ?uuid= (or both, naming the same machine)",
            ))
        }
    };
    let machine =
        machine.ok_or_else(|| text(StatusCode::NOT_FOUND, "no such machine in the inventory"))?;
    serve_config(&app, &peer, &headers, q.token.as_deref(), machine, found_by).await
}

/// `GET /config/<mac>`: the per-machine URL the installer's command line carries.
pub async fn config_by_mac(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    MachineQuery(q): MachineQuery<ConfigQuery>,
) -> Reply {
    let mac = parse_mac(&mac)?;
    let machine = app
        .read(move |s| s.machine(mac))
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            text(
                StatusCode::NOT_FOUND,
                format!("{mac} is not in the inventory"),
            )
        })?;
    serve_config(
        &app,
        &peer,
        &headers,
        q.token.as_deref(),
        machine,
        "/config/<mac>",
    )
    .await
}

/// The bearer token of a request, from `Authorization: Bearer` or `?token=`.
pub fn bearer<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    crate::http::extract::bearer_token(headers)
        .or(query)
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A config holds secrets (its token, whatever the template adds): only the machine itself
/// gets it, proven by its token, or while it installs by asking from an address the server's
/// own evidence gives it (an active lease we granted, or a binding proxy mode observed).
async fn serve_config(
    app: &App,
    peer: &Peer,
    headers: &HeaderMap,
    query_token: Option<&str>,
    machine: Machine,
    found_by: &str,
) -> Reply {
    let by_token = bearer(headers, query_token).is_some_and(|t| app.boot.keys.verify(&machine, t));
    let by_address = !by_token
        && identity::may_read_config(machine.state())
        && identity::is_machine(caller_holder(app, peer).await?, machine.mac);
    if !by_token && !by_address {
        let how = if identity::may_read_config(machine.state()) {
            "from the address this server leased to it (or saw it take, in proxy mode) or with its token"
        } else {
            "with its token (it is not installing, so its address no longer counts)"
        };
        return Err(text(
            StatusCode::FORBIDDEN,
            format!(
                "the config of {} is served only to that machine: {how}",
                machine.mac
            ),
        ));
    }
    let Some(pname) = machine.spec.profile.clone() else {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("{} has no profile, so no config", machine.mac),
        ));
    };
    let profile = app
        .read(move |s| s.profile(&pname))
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            text(
                StatusCode::NOT_FOUND,
                "the machine's profile does not exist",
            )
        })?;
    let base = Base::new(app, peer);
    let token = app.boot.keys.enrollment_token(&machine);
    let syslog = app.boot.syslog_port.map(|p| {
        let host = base.as_str().trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        format!("{host}:{p}")
    });
    let mac = machine.mac;
    match config_render::render_bounded(&profile, &machine, &token, &base, syslog).await {
        Ok(body) => {
            plan::uki_started(app, &machine).await;
            let how = if by_token { "token" } else { "lease address" };
            let kind = EventKind::Seen {
                via: "http".into(),
                detail: format!("config fetched via {found_by} (authorized by {how})"),
            };
            plan::note_limited(app, mac, kind).await;
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
                body,
            )
                .into_response())
        }
        // Busy is not the machine's fault: no event; the client retries after a second.
        Err(e @ config_render::RenderError::Busy { .. }) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            e.to_string(),
        )
            .into_response()),
        Err(e) => {
            plan::note_limited(
                app,
                mac,
                EventKind::Note {
                    message: e.to_string(),
                },
            )
            .await;
            Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
    }
}

/// The machine a machine token speaks for, when it checks out.
pub async fn machine_for_token(app: &App, token: &str) -> Result<Machine, Response> {
    let unauthorized = || text(StatusCode::UNAUTHORIZED, "machine token not recognised");
    let mac = MachineKeys::claimed_mac(token).ok_or_else(unauthorized)?;
    let machine = app.read(move |s| s.machine(mac)).await.map_err(internal)?;
    match machine {
        Some(m) if app.boot.keys.verify(&m, token) => Ok(m),
        _ => Err(unauthorized()),
    }
}
