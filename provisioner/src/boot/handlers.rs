//! Handlers of the machine-facing boot endpoints. Answers are plain text: a firmware or iPXE
//! console shows them as they are.

// Handlers answer errors as ready responses (axum's idiom); their size does not matter here.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use boot_assets::{parse_digest, AssetKind, AssetMeta, BootSection};
use inventory::{EventKind, Mac, Machine};
use serde::Deserialize;

use super::files::{self, FileReply};
use super::plan::{self, BootView};
use super::script::{Platform, Script};
use super::{config_render, Base, Peer};
use crate::api::ApiQuery;
use crate::app::App;
use crate::boot_decision::Intent;
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

fn parse_mac(s: &str) -> Result<Mac, Response> {
    s.parse()
        .map_err(|e: inventory::Error| text(StatusCode::BAD_REQUEST, e.to_string()))
}

fn ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(v) => v.to_ipv4_mapped(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptQuery {
    mac: String,
    platform: Option<String>,
}

/// `GET /boot/ipxe?mac=…[&platform=efi|pcbios]`: the machine's iPXE script.
pub async fn ipxe_script(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    ApiQuery(q): ApiQuery<ScriptQuery>,
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
    match &script {
        Script::InstallEfi { .. } | Script::InstallBios { .. } => {
            let what = format!(
                "iPXE script: install ({})",
                q.platform.as_deref().unwrap_or("?")
            );
            plan::record_boot(&app, mac, peer.remote.ip(), what).await;
        }
        Script::LocalDisk { .. } => {
            let kind = EventKind::Seen {
                via: "http".into(),
                detail: "iPXE script: boot from disk".into(),
            };
            plan::note(&app, mac, kind).await;
        }
        Script::Dispatch { .. } | Script::Hold { .. } => {}
    }
    Ok(text(StatusCode::OK, script.render(mac).trim_end()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacQuery {
    mac: Option<String>,
}

/// `GET|HEAD /boot/efi?mac=…`: UEFI HTTP boot downloads the machine's UKI here directly.
pub async fn http_boot(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    method: Method,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<MacQuery>,
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
    if method == Method::GET {
        plan::record_boot(&app, mac, peer.remote.ip(), "UEFI HTTP boot: UKI".into()).await;
    }
    serve_asset(&app, &uki, None, &method, &headers, Some(mac)).await
}

/// Which machine a download is for: `?mac=` (our own URLs carry it), else the lease of the
/// address it comes from.
async fn downloader(app: &App, q: &MacQuery, peer: &Peer) -> Result<Option<BootView>, Response> {
    let mac = match q.mac.as_deref() {
        Some(m) => Some(parse_mac(m)?),
        None => match ipv4(peer.remote.ip()) {
            Some(ip) => app
                .read(move |s| Ok(s.lease_by_ip(ip)?.map(|l| l.mac)))
                .await
                .map_err(internal)?,
            None => None,
        },
    };
    match mac {
        Some(mac) => Ok(Some(plan::load(app, mac).await.map_err(internal)?)),
        None => Ok(None),
    }
}

async fn asset_request(
    app: &App,
    digest: &str,
    q: &MacQuery,
    peer: &Peer,
) -> Result<(AssetMeta, Option<Mac>), Response> {
    let hex = parse_digest(digest).map_err(|e| text(StatusCode::BAD_REQUEST, e.to_string()))?;
    let assets = app.boot.assets.clone();
    let meta = tokio::task::spawn_blocking(move || assets.get(&hex))
        .await
        .map_err(internal)?
        .map_err(|e| text(StatusCode::NOT_FOUND, e.to_string()))?;
    let view = downloader(app, q, peer).await?;
    // No boot loop: an installed machine gets no installer, whichever URL it kept.
    if let Some(v) = &view {
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
    Ok((meta, view.map(|v| v.mac)))
}

/// `GET|HEAD /assets/<digest>/<name>`: any stored asset, by content address.
pub async fn asset(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path((digest, _name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<MacQuery>,
) -> Reply {
    let (meta, mac) = asset_request(&app, &digest, &q, &peer).await?;
    serve_asset(&app, &meta, None, &method, &headers, mac).await
}

/// `GET|HEAD /assets/<digest>/sections/{linux,initrd,cmdline}`: a UKI's parts, for BIOS.
pub async fn asset_section(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path((digest, section)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<MacQuery>,
) -> Reply {
    let Some(section) = BootSection::from_name(&section) else {
        return Err(text(
            StatusCode::NOT_FOUND,
            "sections are linux, initrd and cmdline",
        ));
    };
    let (meta, mac) = asset_request(&app, &digest, &q, &peer).await?;
    serve_asset(&app, &meta, Some(section), &method, &headers, mac).await
}

async fn serve_asset(
    app: &App,
    meta: &AssetMeta,
    section: Option<BootSection>,
    method: &Method,
    headers: &HeaderMap,
    mac: Option<Mac>,
) -> Reply {
    let hex = parse_digest(&meta.digest).map_err(internal)?;
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
    let report: Option<files::Report> = match (mac, method == Method::GET) {
        (Some(mac), true) => {
            let app = app.clone();
            Some(Box::new(move |bytes, complete, elapsed| {
                let kind = EventKind::Transfer {
                    protocol: "http".into(),
                    file,
                    bytes,
                    millis: elapsed.as_millis() as u64,
                    retransmits: 0,
                    outcome: if complete { "complete" } else { "incomplete" }.into(),
                };
                tokio::spawn(async move { plan::note(&app, mac, kind).await });
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
    ApiQuery(q): ApiQuery<ConfigQuery>,
) -> Reply {
    let found_by = if q.uuid.is_some() { "?uuid=" } else { "?mac=" };
    let machine = match (q.mac.as_deref(), q.uuid.as_deref()) {
        (Some(m), None) => {
            let mac = parse_mac(m)?;
            app.read(move |s| s.machine(mac)).await.map_err(internal)?
        }
        (None, Some(u)) => {
            let uuid = inventory::machine::normalize_uuid(u)
                .map_err(|e| text(StatusCode::BAD_REQUEST, e.to_string()))?;
            app.read(move |s| s.machine_by_uuid(&uuid))
                .await
                .map_err(internal)?
        }
        _ => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "give exactly one of ?mac= or ?uuid=",
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
    ApiQuery(q): ApiQuery<ConfigQuery>,
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
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or(query)
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A config holds secrets (its token, whatever the template adds): only the machine itself
/// gets it, proven by its token or by asking from its own address (our lease, or the address
/// it netbooted from).
async fn serve_config(
    app: &App,
    peer: &Peer,
    headers: &HeaderMap,
    query_token: Option<&str>,
    machine: Machine,
    found_by: &str,
) -> Reply {
    let by_token = bearer(headers, query_token).is_some_and(|t| app.boot.keys.verify(&machine, t));
    let by_address = match ipv4(peer.remote.ip()) {
        Some(ip) if !by_token => {
            let lease = app
                .read(move |s| s.lease_by_ip(ip))
                .await
                .map_err(internal)?;
            lease.is_some_and(|l| l.mac == machine.mac) || machine.boot_ip == Some(ip)
        }
        _ => false,
    };
    if !by_token && !by_address {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!(
                "the config of {} is served only to that machine: from its leased or netboot address, or with its token",
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
            let how = if by_token { "token" } else { "address" };
            let kind = EventKind::Seen {
                via: "http".into(),
                detail: format!("config fetched via {found_by} (authorized by {how})"),
            };
            plan::note(app, mac, kind).await;
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
                body,
            )
                .into_response())
        }
        Err(e) => {
            plan::note(
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
