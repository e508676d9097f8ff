//! `/api/v1/profiles`: create, list, show, replace, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::app::{now, App};
use crate::http::error::ErrorBody;
use crate::http::{ApiError, ApiJson};
use inventory::Profile;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/profiles", get(list).post(create))
        .route("/profiles/{name}", get(show).put(replace).delete(remove))
}

#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles",
    security(("operator" = [])),
    responses((status = 200, description = "Every profile.", body = Vec<Profile>)))]
pub(super) async fn list(State(app): State<App>) -> Result<Json<Vec<Profile>>, ApiError> {
    Ok(Json(app.read(|s| s.profiles()).await?))
}

/// A profile must point at an imported UKI (one the configured db certificates trust, with
/// `secure_boot`) and carry a template that renders for a sample machine within the render
/// limits (`config_render::Limits`) into a `#cloud-config` YAML mapping (`boot::cloud_config`):
/// a runaway template, or one the Kairos agent would silently ignore, is refused here.
async fn check(app: &App, p: &Profile) -> Result<(), ApiError> {
    if let Some(why) = p
        .secure_boot
        .then(|| app.boot.signatures.not_configured(&p.name))
        .flatten()
    {
        return Err(ApiError::bad_request(why));
    }
    if let Some(d) = p.uki.clone() {
        let found = match &app.boot.peer_assets {
            // Shared store: an asset any server imported will do (this one fetches it).
            Some(peers) => {
                let hex = boot_assets::parse_digest(&d)?;
                match peers.lookup(&hex).await {
                    Ok(Some(a)) => Ok(a),
                    Ok(None) => Err(boot_assets::Error::NotFound {
                        digest: format!("sha256:{hex}"),
                    }),
                    Err(e) => {
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            e.to_string(),
                        ))
                    }
                }
            }
            None => {
                let assets = app.boot.assets.clone();
                tokio::task::spawn_blocking(move || assets.get(&d))
                    .await
                    .map_err(|e| {
                        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                    })?
            }
        };
        match found {
            Ok(a) if a.kind == boot_assets::AssetKind::Uki => {
                if p.secure_boot {
                    secure_boot(app, p, &a).await?;
                }
            }
            Ok(a) => {
                return Err(ApiError::bad_request(format!(
                    "profile {}: {} ({}) is a loader, not a UKI",
                    p.name, a.digest, a.name
                )))
            }
            Err(boot_assets::Error::NotFound { digest }) => {
                return Err(ApiError::bad_request(format!(
                    "profile {}: UKI {digest} is not in the asset store; run `provisioner assets import FILE` first",
                    p.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let sample = inventory::Machine::registered(
        "02:00:00:00:00:01".parse().expect("valid MAC"),
        Default::default(),
        inventory::Timestamp(0),
    );
    let base = crate::boot::Base::sample();
    crate::boot::config_render::render_bounded(p, &sample, "m1.sample", &base, None)
        .await
        .map_err(|e| match e {
            crate::boot::config_render::RenderError::Busy { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
            }
            e => ApiError::bad_request(e.to_string()),
        })?;
    Ok(())
}

/// With `secure_boot`, the UKI `uki` must carry a signature the configured db certificates
/// trust: refused (400) naming why not.
async fn secure_boot(app: &App, p: &Profile, uki: &boot_assets::AssetMeta) -> Result<(), ApiError> {
    let verdict = app
        .boot
        .signatures
        .verdict(&app.boot, uki)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("checking the signature of {}: {e}", uki.digest),
            )
        })?;
    match app.boot.signatures.refusal(&p.name, &uki.digest, &verdict) {
        Some(why) => Err(ApiError::bad_request(why)),
        None => Ok(()),
    }
}

#[utoipa::path(post, path = "/api/v1/profiles", tag = "profiles",
    security(("operator" = [])),
    request_body = Profile,
    responses(
        (status = 201, description = "Created.", body = Profile),
        (status = 400, description = "Invalid: a bad field, a UKI not in the asset store (or untrusted with `secure_boot`), a template that does not render.", body = ErrorBody),
        (status = 409, description = "A profile of that name exists (`exists`).", body = ErrorBody),
    ))]
pub(super) async fn create(
    State(app): State<App>,
    ApiJson(p): ApiJson<Profile>,
) -> Result<(StatusCode, Json<Profile>), ApiError> {
    let p = p.validate()?;
    check(&app, &p).await?;
    let stored = p.clone();
    let t = now();
    app.write(move |s| Ok(((), s.put_profile(p, false, t)?)))
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

#[utoipa::path(get, path = "/api/v1/profiles/{name}", tag = "profiles",
    security(("operator" = [])),
    params(("name" = String, Path, description = "The profile's name.")),
    responses(
        (status = 200, description = "The profile.", body = Profile),
        (status = 404, description = "No such profile.", body = ErrorBody),
    ))]
pub(super) async fn show(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    let n = name.clone();
    let p = app.read(move |s| s.profile(&n)).await?;
    p.map(Json)
        .ok_or_else(|| inventory::Error::ProfileNotFound { name }.into())
}

#[utoipa::path(put, path = "/api/v1/profiles/{name}", tag = "profiles",
    security(("operator" = [])),
    params(("name" = String, Path, description = "The profile's name.")),
    request_body = Profile,
    responses(
        (status = 200, description = "The profile as stored (a new name creates it).", body = Profile),
        (status = 400, description = "Invalid (as for create), or the body's name is not the URL's.", body = ErrorBody),
    ))]
pub(super) async fn replace(
    State(app): State<App>,
    Path(name): Path<String>,
    ApiJson(p): ApiJson<Profile>,
) -> Result<Json<Profile>, ApiError> {
    if p.name != name {
        return Err(ApiError::bad_request(format!(
            "profile name in body {:?} does not match the URL {name:?}",
            p.name
        )));
    }
    let p = p.validate()?;
    check(&app, &p).await?;
    let stored = p.clone();
    let t = now();
    app.write(move |s| Ok(((), s.put_profile(p, true, t)?)))
        .await?;
    Ok(Json(stored))
}

#[utoipa::path(delete, path = "/api/v1/profiles/{name}", tag = "profiles",
    security(("operator" = [])),
    params(("name" = String, Path, description = "The profile's name.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such profile.", body = ErrorBody),
        (status = 409, description = "Machines still use it (`in_use`).", body = ErrorBody),
    ))]
pub(super) async fn remove(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let t = now();
    app.write(move |s| Ok(((), s.delete_profile(&name, t)?)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
