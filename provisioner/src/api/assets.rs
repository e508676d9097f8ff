//! `/api/v1/assets`: the content-addressed asset store (UKIs, loaders).
//!
//! Upload: `POST /api/v1/assets?name=FILE[&kind=uki|loader]` with the file as the body; it is
//! streamed to disk (no size limit, no buffering) and checked (a UKI must be one).
//!
//! With a shared store (etcd) an import also enters the shared catalogue, so the other servers
//! fetch the file from a peer (`asset_peers`); list and show include what other servers
//! imported; rm and gc take what they remove out of the catalogue too.

use std::collections::HashSet;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use boot_assets::{AssetKind, AssetMeta, GcReport, Verdict};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::http::error::ErrorBody;
use crate::http::{ApiError, ApiQuery};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/assets", get(list).post(upload))
        .route("/assets/gc", post(gc))
        .route("/assets/{digest}", get(show).delete(remove))
}

impl From<boot_assets::Error> for ApiError {
    fn from(e: boot_assets::Error) -> Self {
        use boot_assets::Error as E;
        let (status, code) = match &e {
            E::NotUsable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "not_usable"),
            E::BadDigest { .. } => (StatusCode::BAD_REQUEST, "bad_digest"),
            E::NotFound { .. } | E::NoSection { .. } => (StatusCode::NOT_FOUND, "not_found"),
            E::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

#[utoipa::path(get, path = "/api/v1/assets", tag = "assets",
    security(("operator" = [])),
    responses((status = 200, description = "Every asset (with a shared store, also those other servers imported).", body = Vec<AssetMeta>)))]
pub(super) async fn list(State(app): State<App>) -> Result<Json<Vec<AssetMeta>>, ApiError> {
    let store = app.boot.assets.clone();
    let catalogue = app.boot.peer_assets.as_ref().map(|p| p.catalogue.clone());
    Ok(Json(
        blocking(move || {
            let mut all = store.list()?;
            if let Some(c) = catalogue {
                let here: HashSet<String> = all.iter().map(|m| m.digest.clone()).collect();
                all.extend(
                    c.records()?
                        .into_iter()
                        .filter(|m| !here.contains(&m.digest)),
                );
                all.sort_by(|a, b| (&a.name, &a.digest).cmp(&(&b.name, &b.digest)));
            }
            Ok(all)
        })
        .await?,
    ))
}

/// One asset as `GET /api/v1/assets/<digest>` shows it: its record and, for an EFI image, its
/// signature verdict against the server's configured db certificates.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssetView {
    /// The stored record (flattened into the JSON object).
    #[serde(flatten)]
    pub meta: AssetMeta,
    /// The signature verdict (EFI images; absent when the file could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureView>,
}

/// A verdict and what it was checked against.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignatureView {
    /// `verdict` and its fields (flattened).
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The certificate files checked against (`secure_boot.db_certs`).
    #[schema(value_type = Vec<String>)]
    pub db_certs: Vec<std::path::PathBuf>,
}

#[utoipa::path(get, path = "/api/v1/assets/{digest}", tag = "assets",
    security(("operator" = [])),
    params(("digest" = String, Path, description = "`sha256:<64 hex>` or the bare 64 hex digits.")),
    responses(
        (status = 200, description = "The record and, for an EFI image, its signature verdict.", body = AssetView),
        (status = 400, description = "Not a digest (`bad_digest`).", body = ErrorBody),
        (status = 404, description = "No such asset.", body = ErrorBody),
    ))]
pub(super) async fn show(
    State(app): State<App>,
    Path(digest): Path<String>,
) -> Result<Json<AssetView>, ApiError> {
    let meta = record(&app, digest).await?;
    let signature = match meta.efi {
        Some(_) => match app.boot.signatures.verdict(&app.boot, &meta).await {
            Ok(verdict) => Some(SignatureView {
                verdict,
                db_certs: app.boot.signatures.trust.files().to_vec(),
            }),
            Err(e) => {
                tracing::warn!(digest = %meta.digest, error = %e, "checking an asset's signature failed");
                None
            }
        },
        None => None,
    };
    Ok(Json(AssetView { meta, signature }))
}

/// The record of one asset (from the shared catalogue with etcd).
async fn record(app: &App, digest: String) -> Result<AssetMeta, ApiError> {
    if let Some(peers) = &app.boot.peer_assets {
        let hex = boot_assets::parse_digest(&digest)?;
        return match peers.lookup(&hex).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(boot_assets::Error::NotFound {
                digest: format!("sha256:{hex}"),
            }
            .into()),
            Err(e) => Err(unavailable(e)),
        };
    }
    let store = app.boot.assets.clone();
    blocking(move || Ok(store.get(&digest)?)).await
}

fn unavailable(e: crate::asset_peers::Unavailable) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.to_string(),
    )
}

/// Enters an asset this server stored into the shared catalogue (etcd), so the others fetch it.
async fn publish(app: &App, meta: &AssetMeta) -> Result<(), ApiError> {
    let Some(peers) = &app.boot.peer_assets else {
        return Ok(());
    };
    let (catalogue, m) = (peers.catalogue.clone(), meta.clone());
    app.write(move |_| Ok(((), catalogue.publish(&m, crate::app::now())?)))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_shared",
                format!(
                    "{} is stored on this server but not in the shared catalogue ({e}); import it again",
                    meta.digest
                ),
            )
        })
}

/// Takes removed assets out of the shared catalogue (etcd); other servers keep their copies
/// until their own `assets rm`/`gc`.
async fn withdraw(app: &App, removed: Vec<AssetMeta>) -> Result<(), ApiError> {
    let Some(peers) = &app.boot.peer_assets else {
        return Ok(());
    };
    let catalogue = peers.catalogue.clone();
    app.write(move |_| {
        for m in &removed {
            catalogue.withdraw(m, crate::app::now())?;
        }
        Ok(((), Vec::new()))
    })
    .await?;
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    /// The file name to store it under (shown to operators, used in download URLs).
    name: String,
    /// What it is (`uki` unless given).
    kind: Option<AssetKind>,
}

/// How much of a refused upload's remaining body is read (and dropped) so the client sees the
/// answer; beyond it the connection is closed.
const DRAIN_LIMIT: u64 = 1 << 30;

#[utoipa::path(post, path = "/api/v1/assets", tag = "assets",
    security(("operator" = [])),
    params(UploadQuery),
    request_body(content = String, content_type = "application/octet-stream",
        description = "The file (streamed to disk; no size limit)."),
    responses(
        (status = 201, description = "Stored (or already there: same digest).", body = AssetMeta),
        (status = 400, description = "Bad query, or the upload stopped (`bad_body`).", body = ErrorBody),
        (status = 422, description = "Not usable as that kind, e.g. not a UKI (`not_usable`).", body = ErrorBody),
    ))]
pub(super) async fn upload(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    req: Request,
) -> Result<(StatusCode, Json<AssetMeta>), ApiError> {
    // Body errors (a client that stopped sending, `http.body_stall_timeout`) are marked so
    // they answer 400, not 500: the store is fine.
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e));
    let mut reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let store = app.boot.assets.clone();
    let kind = q.kind.unwrap_or(AssetKind::Uki);
    let meta = blocking(
        move || match store.import_reader(&mut reader, &q.name, kind) {
            Err(boot_assets::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionAborted =>
            {
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("the upload stopped: {source}"),
                ))
            }
            Err(e) => {
                // Refused mid-body (disk full, an I/O error): read the rest before answering, so
                // the client, still sending, gets the error's answer and not a broken pipe.
                let _ = std::io::copy(
                    &mut std::io::Read::take(&mut reader, DRAIN_LIMIT),
                    &mut std::io::sink(),
                );
                Err(e.into())
            }
            Ok(m) => Ok(m),
        },
    )
    .await?;
    tracing::info!(digest = %meta.digest, name = %meta.name, size = meta.size, "asset imported");
    publish(&app, &meta).await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

/// Digests referenced by any profile.
async fn referenced(app: &App) -> Result<HashSet<String>, ApiError> {
    let profiles = app.read(|s| s.profiles()).await?;
    Ok(profiles.into_iter().filter_map(|p| p.uki).collect())
}

#[utoipa::path(delete, path = "/api/v1/assets/{digest}", tag = "assets",
    security(("operator" = [])),
    params(("digest" = String, Path, description = "`sha256:<64 hex>` or the bare 64 hex digits.")),
    responses(
        (status = 200, description = "Removed; its record.", body = AssetMeta),
        (status = 400, description = "Not a digest (`bad_digest`).", body = ErrorBody),
        (status = 404, description = "No such asset.", body = ErrorBody),
        (status = 409, description = "A profile uses it (`in_use`).", body = ErrorBody),
    ))]
pub(super) async fn remove(
    State(app): State<App>,
    Path(digest): Path<String>,
) -> Result<Json<AssetMeta>, ApiError> {
    let hex = boot_assets::parse_digest(&digest)?;
    let full = format!("sha256:{hex}");
    let users: Vec<String> = app
        .read(|s| s.profiles())
        .await?
        .into_iter()
        .filter(|p| p.uki.as_deref() == Some(full.as_str()))
        .map(|p| p.name)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_use",
            format!(
                "{full} is the UKI of profile(s) {}; point them at another asset first",
                users.join(", ")
            ),
        ));
    }
    let store = app.boot.assets.clone();
    let local = {
        let full = full.clone();
        blocking(move || Ok(store.remove(&full))).await?
    };
    let meta = match (local, &app.boot.peer_assets) {
        (Ok(m), _) => m,
        // Imported elsewhere only: removing it from the catalogue is the removal.
        (Err(boot_assets::Error::NotFound { .. }), Some(peers)) => {
            match peers.lookup(&hex).await.map_err(unavailable)? {
                Some(m) => m,
                None => return Err(boot_assets::Error::NotFound { digest: full }.into()),
            }
        }
        (Err(e), _) => return Err(e.into()),
    };
    withdraw(&app, vec![meta.clone()]).await?;
    Ok(Json(meta))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct GcQuery {
    /// Also remove assets no profile references.
    #[serde(default)]
    unreferenced: bool,
}

#[utoipa::path(post, path = "/api/v1/assets/gc", tag = "assets",
    security(("operator" = [])),
    params(GcQuery),
    responses((status = 200, description = "What was removed.", body = GcReport)))]
pub(super) async fn gc(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<GcQuery>,
) -> Result<Json<GcReport>, ApiError> {
    let keep = if q.unreferenced {
        Some(referenced(&app).await?)
    } else {
        None
    };
    let store = app.boot.assets.clone();
    let catalogue = app.boot.peer_assets.as_ref().map(|p| p.catalogue.clone());
    let (report, removed) = blocking(move || {
        // Records first (gc forgets them), to withdraw what it removes from the catalogue.
        let records: Vec<AssetMeta> = match catalogue {
            Some(_) => store.list()?,
            None => Vec::new(),
        };
        let report = store.gc(keep.as_ref())?;
        let removed = records
            .into_iter()
            .filter(|m| report.unreferenced.contains(&m.digest))
            .collect::<Vec<_>>();
        Ok((report, removed))
    })
    .await?;
    withdraw(&app, removed).await?;
    Ok(Json(report))
}
