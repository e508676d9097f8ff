//! The one axum router of the HTTP listener, above everything it serves: the operator API under `/api/v1`
//! ([`crate::api`]), the machine-facing boot endpoints and the machines' own API
//! ([`crate::boot`]), `/healthz` and `/metrics`, with the layers every request passes: a body
//! limit, the response counter of `/metrics`, and a trace span whose URI has its secrets
//! redacted.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;
use crate::http::ApiError;

/// Largest request body accepted (a 10,000-line import is ~0.5 MB).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Every endpoint the server answers, with its state. Unknown paths get a 404 [`ApiError`].
pub fn router(app: App) -> Router {
    Router::new()
        .nest("/api/v1", crate::api::routes(app.clone()))
        // The API description: no token (it holds no inventory).
        .route("/api/v1/openapi.json", get(crate::api::openapi::serve))
        .merge(crate::boot::routes())
        .merge(crate::ui::routes())
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

async fn count_responses(State(app): State<App>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    app.metrics.http_response(resp.status().as_u16());
    resp
}

/// `ok` when the store answers (one point read: proves more than that the process is up);
/// otherwise 503 with the store's error, e.g. "store unreachable: etcd at … did not
/// answer within 5s". Bounded by the store's own timeout (etcd: `store.timeout`).
async fn healthz(State(app): State<App>) -> Response {
    match app.read(|s| s.last_event_seq()).await {
        Ok(_) => "ok\n".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}\n"),
        )
            .into_response(),
    }
}

/// Answers also while the store does not: `provisioner_store_up` then says 0 (the probe below
/// failed) and `provisioner_event_sequence` keeps the last value read.
async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    // Machines by state from the in-memory views (a scrape never decodes the inventory).
    let seq = app.read(|s| s.last_event_seq()).await.ok();
    let seq = app.metrics.store.seen_seq(seq);
    let body = {
        let views = app.views.read();
        let machines: Vec<&inventory::Machine> = views.machines().collect();
        app.metrics.render(&machines, seq, app.boot.unknown)
    };
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

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
