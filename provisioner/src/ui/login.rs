//! `POST /ui/login` and `POST /ui/logout`.
//!
//! A login presents the operator token (form field `token`); it is checked the way the API
//! checks a bearer token: its SHA-256 is looked up in the store (the comparison is the
//! store's key lookup on a hash, so response times say nothing about the token's bytes). A
//! wrong token answers 401 after a fixed [`FAILURE_DELAY`], and failures beyond a small burst
//! ([`Limiter`]) answer 429: the 256-bit token cannot be guessed, but a flood of guesses
//! should not cost the store a read each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use inventory::{hash_token, TokenRole};
use netboot_proto::rate::TokenBucket;
use serde::Deserialize;

use super::{assets, session};
use crate::app::{now, App};
use crate::http::ApiError;
use crate::http_server::Secure;

/// How long a failed login waits before it answers.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Failed logins, process-wide: a burst of 20, then 30 a minute.
pub struct Limiter(Mutex<TokenBucket>);

impl Default for Limiter {
    fn default() -> Self {
        Limiter(Mutex::new(TokenBucket::new(20, 30)))
    }
}

impl Limiter {
    /// Counts one failure at `now`; `false` once the failures exceed the burst and the rate.
    pub fn failure_allowed(&self, now: inventory::Timestamp) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(now)
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// The login page, with a fixed `message` (never request input) above the form.
fn login_page(status: StatusCode, message: Option<&'static str>) -> Response {
    let html = match message {
        Some(m) => assets::LOGIN_HTML.replace(
            "<!--message-->",
            &format!("<p class=\"error\" role=\"alert\" id=\"login-error\">{m}</p>"),
        ),
        None => assets::LOGIN_HTML.to_string(),
    };
    let mut resp = assets::html_owned(html);
    *resp.status_mut() = status;
    resp
}

/// Shown instead of accepting a token over plain HTTP when the server's TLS listener is on:
/// its session cookie is `Secure`, which a browser drops over `http://`, so such a login could
/// never work and would only have sent the token in the clear.
const USE_HTTPS: &str = "This server has TLS on: its session cookie is sent only over HTTPS. \
     Open the dashboard at https:// (the TLS listener's port, or tls.public_url).";

/// Whether the request came over plain HTTP while the session cookie is `Secure`.
fn plain_but_tls_on(app: &App, secure: Option<Extension<Secure>>) -> bool {
    app.boot.secure_cookies && !secure.is_some_and(|Extension(s)| s.0)
}

/// `GET /ui/login`: the form; over plain HTTP with TLS on, with the notice to use HTTPS.
pub async fn page(State(app): State<App>, secure: Option<Extension<Secure>>) -> Response {
    match plain_but_tls_on(&app, secure) {
        true => login_page(StatusCode::OK, Some(USE_HTTPS)),
        false => login_page(StatusCode::OK, None),
    }
}

/// `POST /ui/login`: a right operator token → a new session cookie and 303 to `/ui/`.
pub async fn login(
    State(app): State<App>,
    Extension(limiter): Extension<Arc<Limiter>>,
    secure: Option<Extension<Secure>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    if plain_but_tls_on(&app, secure) {
        return Ok(login_page(StatusCode::FORBIDDEN, Some(USE_HTTPS)));
    }
    if session::same_origin(&headers).is_err() {
        return Ok(login_page(
            StatusCode::FORBIDDEN,
            Some("Login refused: the form was posted from another site."),
        ));
    }
    let hash = hash_token(form.token.trim());
    let record = app.read(move |s| s.token(&hash)).await?;
    if !matches!(record, Some(r) if r.role == TokenRole::Operator) {
        let allowed = limiter.failure_allowed(now());
        if allowed {
            // Logged while within the limit only, so a flood of guesses cannot flood the log.
            tracing::warn!("dashboard login refused: wrong token");
        }
        tokio::time::sleep(FAILURE_DELAY).await;
        if !allowed {
            return Ok(login_page(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed logins; wait a minute and try again."),
            ));
        }
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            Some("Wrong token. Use the operator token from &lt;data-dir&gt;/operator.token."),
        ));
    }
    let secret = session::create(&app).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui/".to_string()),
            (
                header::SET_COOKIE,
                session::set_cookie(&secret, app.boot.secure_cookies),
            ),
        ],
    )
        .into_response())
}

/// `POST /ui/logout` (with the CSRF header): deletes the session and clears the cookie.
pub async fn logout(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    session::authorize(&app, &axum::http::Method::POST, &headers).await?;
    if let Some(secret) = session::cookie(&headers) {
        session::revoke(&app, secret).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            session::set_cookie("", app.boot.secure_cookies),
        )],
    )
        .into_response())
}
