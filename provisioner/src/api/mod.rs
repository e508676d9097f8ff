//! The operator HTTP API under `/api/v1` (JSON), plus `/healthz` and `/metrics`; the boot
//! endpoints and the machines' own API ([`crate::boot`]) share the listener.
//!
//! Every `/api/v1` call needs `Authorization: Bearer <operator token>`. Errors are JSON
//! `{"error": "<code>", "detail": "<what to fix>"}` with a matching status.

mod assets;
mod error;
mod events;
mod logs;
mod machines;
mod profiles;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use error::{ApiError, ApiJson, ApiQuery};

use crate::app::App;
use inventory::{hash_token, TokenRole};

/// Largest request body accepted (a 10,000-line import is ~0.5 MB).
const MAX_BODY: usize = 64 * 1024 * 1024;

pub fn router(app: App) -> Router {
    let v1 = Router::new()
        .merge(machines::routes())
        .merge(profiles::routes())
        .merge(events::routes())
        .merge(assets::routes())
        .merge(logs::routes())
        .layer(middleware::from_fn_with_state(
            app.clone(),
            require_operator,
        ));
    Router::new()
        .nest("/api/v1", v1)
        .merge(crate::boot::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), count_responses))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

async fn require_operator(
    State(app): State<App>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
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
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "token not recognised",
        )),
    }
}

async fn count_responses(State(app): State<App>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    app.metrics.http_response(resp.status().as_u16());
    resp
}

async fn healthz(State(app): State<App>) -> Result<&'static str, ApiError> {
    // Proves the store answers, not only that the process is up.
    app.read(|s| s.last_event_seq()).await?;
    Ok("ok\n")
}

async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let (machines, seq) = app
        .read(|s| Ok((s.machines()?, s.last_event_seq()?)))
        .await?;
    let body = app.metrics.render(&machines, seq);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
