//! The operator HTTP API under `/api/v1` (JSON): machines, profiles, events (+ SSE), assets and
//! per-machine logs. [`crate::router`] nests it beside the boot endpoints and the machines'
//! own API ([`crate::boot`]) on one listener.
//!
//! Every `/api/v1` call needs `Authorization: Bearer <operator token>`, or the dashboard's
//! session cookie (with its CSRF header on writes: [`crate::ui::session`]). Errors are
//! [`ApiError`]s: JSON `{"error": "<code>", "detail": "<what to fix>"}` with a matching status.

pub mod assets;
mod decision;
mod events;
mod leases;
mod logs;
mod machines;
pub mod openapi;
mod pcr11;
mod profiles;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use crate::app::App;
use crate::http::extract::bearer_token;
use crate::http::ApiError;
use inventory::{hash_token, TokenRole};

/// The operator routes, relative to `/api/v1`, each behind the operator-token check.
pub fn routes(app: App) -> Router<App> {
    Router::new()
        .merge(machines::routes())
        .merge(profiles::routes())
        .merge(pcr11::routes())
        .merge(events::routes())
        .merge(assets::routes())
        .merge(logs::routes())
        .merge(leases::routes())
        .merge(decision::routes())
        .route_layer(middleware::from_fn(strict_query))
        .layer(middleware::from_fn_with_state(app, require_operator))
        .layer(axum::Extension(std::sync::Arc::new(
            crate::ui::login::Limiter::default(),
        )))
        .layer(middleware::from_fn(no_store))
}

/// Every API answer carries `Cache-Control: no-store`: inventory data, tokens in configs and
/// boot decisions must not sit in a browser's or a proxy's cache.
async fn no_store(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    resp
}

/// Operator routes that take query parameters (each checks its own, strictly); every other
/// operator route refuses any query, so a typo or a `?dry_run=true` never passes unnoticed.
const TAKES_QUERY: &[(&str, &str)] = &[
    ("GET", "/machines"),
    ("POST", "/assets"),
    ("POST", "/assets/gc"),
    ("GET", "/events"),
    ("GET", "/events/stream"),
    ("GET", "/machines/{mac}/logs"),
    ("GET", "/machines/{mac}/logs/stream"),
];

async fn strict_query(req: Request, next: Next) -> Result<Response, ApiError> {
    let query = req.uri().query().unwrap_or_default();
    if !query.is_empty() {
        let path = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let method = req.method().as_str();
        let allowed = TAKES_QUERY
            .iter()
            .any(|(m, p)| *m == method && path.ends_with(p));
        if !allowed {
            let names: Vec<&str> = query
                .split('&')
                .filter_map(|kv| kv.split('=').next())
                .filter(|k| !k.is_empty())
                .take(5)
                .collect();
            return Err(ApiError::bad_request(format!(
                "{method} {path} takes no query parameters (got {})",
                inventory::excerpt(&names.join(", "), 120)
            )));
        }
    }
    Ok(next.run(req).await)
}

async fn require_operator(
    State(app): State<App>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // No bearer token but a session cookie: the dashboard (its own checks, CSRF included).
    if bearer_token(req.headers()).is_none() && crate::ui::session::cookie(req.headers()).is_some()
    {
        crate::ui::session::authorize(&app, req.method(), req.headers()).await?;
        let secret = crate::ui::session::cookie(req.headers())
            .unwrap_or_default()
            .to_string();
        let resp = next.run(req).await;
        let streaming = resp
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        return Ok(match streaming {
            true => crate::ui::session::end_with_session(app, secret, resp),
            false => resp,
        });
    }
    let presented = bearer_token(req.headers()).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing 'Authorization: Bearer <token>'; the operator token is in <data-dir>/operator.token",
            )
        })?;
    let hash = hash_token(presented);
    let record = app.read(move |s| s.token(&hash)).await?;
    match record {
        Some(r) if r.role == TokenRole::Operator => Ok(next.run(req).await),
        _ => {
            // Wrong tokens beyond a burst (20, then 30 a minute, process-wide) answer 429 without
            // a store read's worth of difference; the operator's own token always passes.
            let allowed = req
                .extensions()
                .get::<std::sync::Arc<crate::ui::login::Limiter>>()
                .is_none_or(|l| l.failure_allowed(crate::app::now()));
            if !allowed {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_failures",
                    "too many requests with a wrong operator token; wait a minute, then use the token in <data-dir>/operator.token",
                ));
            }
            tracing::warn!(path = %req.uri().path(), "API request refused: operator token not recognised");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "token not recognised",
            ))
        }
    }
}
