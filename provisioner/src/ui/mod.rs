//! The operator dashboard at `/ui`: static pages (plain HTML, CSS and ES modules from
//! `provisioner/ui/`, built into the binary) that call the operator API (`/api/v1`) with a
//! session cookie instead of the bearer token.
//!
//! # Layout
//! - [`session`]: session cookies stored by hash, their expiry, and the CSRF and `Origin`
//!   checks of cookie-authenticated writes ([`crate::api`] asks it).
//! - [`login`]: `POST /ui/login` (token → cookie, failures delayed and rate-limited) and
//!   `POST /ui/logout`.
//! - [`assets`]: the built-in files and their content types.
//!
//! Every `/ui` response carries a strict CSP (`default-src 'self'`, no inline script),
//! `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.

pub mod assets;
pub mod login;
pub mod session;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::app::{now, App};
use crate::http::ApiError;

/// The Content-Security-Policy of every dashboard response.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes (absolute paths, `/ui…`).
pub fn routes() -> Router<App> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/login", get(login::page).post(login::login))
        .route("/ui/logout", axum::routing::post(login::logout))
        .route("/ui/session", get(session_info))
        .route("/ui/static/{file}", get(static_file))
        .layer(axum::Extension(std::sync::Arc::new(
            login::Limiter::default(),
        )))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The dashboard page for a live session; otherwise a redirect to the login page.
async fn index(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    let live = match session::cookie(&headers) {
        Some(secret) => session::valid(&app, secret, now()).await?,
        None => false,
    };
    if !live {
        return Ok(Redirect::to("/ui/login").into_response());
    }
    Ok(assets::html(assets::APP_HTML))
}

#[derive(serde::Serialize)]
struct SessionInfo {
    /// The value the page sends in [`session::CSRF_HEADER`] with every write.
    csrf: String,
}

/// `GET /ui/session`: the CSRF value of the caller's session (readable by our own page only:
/// no CORS). 401 without a live session.
async fn session_info(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    session::authorize(&app, &Method::GET, &headers).await?;
    let secret = session::cookie(&headers).unwrap_or_default();
    Ok(Json(SessionInfo {
        csrf: session::csrf_for(secret),
    })
    .into_response())
}

async fn static_file(Path(file): Path<String>) -> Response {
    match assets::get(&file) {
        Some((body, content_type)) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such dashboard file")
            .into_response(),
    }
}
