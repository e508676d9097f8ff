//! `/api/v1/assets`: the content-addressed asset store (UKIs, loaders).
//!
//! Upload: `POST /api/v1/assets?name=FILE[&kind=uki|loader]` with the file as the body; it is
//! streamed to disk (no size limit, no buffering) and checked (a UKI must be one).

use std::collections::HashSet;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use boot_assets::{AssetKind, AssetMeta, GcReport};
use futures_util::TryStreamExt;
use serde::Deserialize;

use crate::app::App;
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

async fn list(State(app): State<App>) -> Result<Json<Vec<AssetMeta>>, ApiError> {
    let store = app.boot.assets.clone();
    Ok(Json(blocking(move || Ok(store.list()?)).await?))
}

async fn show(
    State(app): State<App>,
    Path(digest): Path<String>,
) -> Result<Json<AssetMeta>, ApiError> {
    let store = app.boot.assets.clone();
    Ok(Json(blocking(move || Ok(store.get(&digest)?)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: String,
    kind: Option<AssetKind>,
}

async fn upload(
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
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let store = app.boot.assets.clone();
    let kind = q.kind.unwrap_or(AssetKind::Uki);
    let meta = blocking(move || match store.import_reader(reader, &q.name, kind) {
        Err(boot_assets::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::ConnectionAborted =>
        {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the upload stopped: {source}"),
            ))
        }
        r => Ok(r?),
    })
    .await?;
    tracing::info!(digest = %meta.digest, name = %meta.name, size = meta.size, "asset imported");
    Ok((StatusCode::CREATED, Json(meta)))
}

/// Digests referenced by any profile.
async fn referenced(app: &App) -> Result<HashSet<String>, ApiError> {
    let profiles = app.read(|s| s.profiles()).await?;
    Ok(profiles.into_iter().filter_map(|p| p.uki).collect())
}

async fn remove(
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
    Ok(Json(blocking(move || Ok(store.remove(&full)?)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GcQuery {
    #[serde(default)]
    unreferenced: bool,
}

async fn gc(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<GcQuery>,
) -> Result<Json<GcReport>, ApiError> {
    let keep = if q.unreferenced {
        Some(referenced(&app).await?)
    } else {
        None
    };
    let store = app.boot.assets.clone();
    Ok(Json(blocking(move || Ok(store.gc(keep.as_ref())?)).await?))
}
