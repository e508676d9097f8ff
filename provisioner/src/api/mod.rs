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
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use error::{ApiError, ApiJson, ApiQuery, MAX_DETAIL};

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
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::debug_span!(
                    "request",
                    method = %req.method(),
                    uri = %redacted(req.uri()),
                    version = ?req.version(),
                )
            }),
        )
        .with_state(app)
}

/// The token in `Authorization: Bearer <token>`. The scheme is matched case-insensitively
/// (RFC 9110 §11.1: `bearer`, `BEARER` and `Bearer` are the same scheme); surrounding spaces are
/// trimmed. `None` when the header is missing, not text, another scheme, or the token is empty.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_start();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

/// Query parameters whose values are secrets: never written to a log line.
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("token") || n.contains("key") || n.contains("secret") || n.contains("password")
}

/// `uri` as it may be logged: the value of every secret query parameter (`token=`, `apiKey=`,
/// …) replaced by `REDACTED`. Path and other parameters are kept as sent.
pub fn redacted(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}=REDACTED"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}

async fn require_operator(
    State(app): State<App>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR   abc  "] {
            assert_eq!(bearer_token(&with(v)), Some("abc"), "{v:?}");
        }
        for v in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", "Token abc"] {
            assert_eq!(bearer_token(&with(v)), None, "{v:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn secret_query_values_are_redacted() {
        let cases = [
            (
                "/config?uuid=u&token=SECRET",
                "/config?uuid=u&token=REDACTED",
            ),
            (
                "/a?Token=SECRET&x=1&apiKey=K",
                "/a?Token=REDACTED&x=1&apiKey=REDACTED",
            ),
            (
                "/boot/ipxe?mac=aa&platform=efi",
                "/boot/ipxe?mac=aa&platform=efi",
            ),
            ("/healthz", "/healthz"),
            ("/x?token", "/x?token"),
        ];
        for (uri, want) in cases {
            assert_eq!(redacted(&uri.parse().unwrap()), want);
        }
    }
}
