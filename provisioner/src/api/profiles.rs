//! `/api/v1/profiles`: create, list, show, replace, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::{ApiError, ApiJson};
use crate::app::{now, App};
use inventory::Profile;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/profiles", get(list).post(create))
        .route("/profiles/{name}", get(show).put(replace).delete(remove))
}

async fn list(State(app): State<App>) -> Result<Json<Vec<Profile>>, ApiError> {
    Ok(Json(app.read(|s| s.profiles()).await?))
}

async fn create(
    State(app): State<App>,
    ApiJson(p): ApiJson<Profile>,
) -> Result<(StatusCode, Json<Profile>), ApiError> {
    let p = p.validate()?;
    let stored = p.clone();
    let t = now();
    app.write(move |s| Ok(((), s.put_profile(p, false, t)?)))
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

async fn show(State(app): State<App>, Path(name): Path<String>) -> Result<Json<Profile>, ApiError> {
    let n = name.clone();
    let p = app.read(move |s| s.profile(&n)).await?;
    p.map(Json)
        .ok_or_else(|| inventory::Error::ProfileNotFound { name }.into())
}

async fn replace(
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
    let stored = p.clone();
    let t = now();
    app.write(move |s| Ok(((), s.put_profile(p, true, t)?)))
        .await?;
    Ok(Json(stored))
}

async fn remove(State(app): State<App>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let t = now();
    app.write(move |s| Ok(((), s.delete_profile(&name, t)?)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
