//! Per-machine views for operators: log lines (JSON, or a live SSE stream), the machine's
//! enrollment token, and a preview of its rendered config.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use inventory::{LogLine, Mac};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;

use crate::app::App;
use crate::http::error::ErrorBody;
use crate::http::{ApiError, ApiQuery};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/machines/{mac}/logs", get(list))
        .route("/machines/{mac}/logs/stream", get(follow))
        .route("/machines/{mac}/token", get(token))
        .route(
            "/machines/{mac}/token/rotate",
            axum::routing::post(rotate_token),
        )
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct Query {
    /// Only lines with a sequence number greater than this.
    #[serde(default)]
    after: u64,
    /// At most this many lines (10000 unless given; at most 100000; the stream ignores it).
    limit: Option<usize>,
}

async fn machine_exists(app: &App, mac: &str) -> Result<Mac, ApiError> {
    let mac: Mac = mac.parse()?;
    match app.read(move |s| s.machine(mac)).await? {
        Some(_) => Ok(mac),
        None => Err(inventory::Error::MachineNotFound {
            mac: mac.to_string(),
        }
        .into()),
    }
}

#[utoipa::path(get, path = "/api/v1/machines/{mac}/logs", tag = "logs",
    security(("operator" = [])),
    params(("mac" = String, Path, description = "The machine's MAC.")), params(Query),
    responses(
        (status = 200, description = "The machine's log lines, oldest first.", body = Vec<LogLine>),
        (status = 404, description = "No such machine.", body = ErrorBody),
    ))]
pub(super) async fn list(
    State(app): State<App>,
    Path(mac): Path<String>,
    ApiQuery(q): ApiQuery<Query>,
) -> Result<Json<Vec<LogLine>>, ApiError> {
    let mac = machine_exists(&app, &mac).await?;
    let limit = q.limit.unwrap_or(10_000).min(100_000);
    Ok(Json(app.read(move |s| s.logs(mac, q.after, limit)).await?))
}

fn to_sse(l: &LogLine) -> SseEvent {
    SseEvent::default()
        .id(l.seq.to_string())
        .event("log")
        .json_data(l)
        .expect("log lines serialize")
}

/// Replays lines after `after`, then forwards new ones until the client or the server goes.
#[utoipa::path(get, path = "/api/v1/machines/{mac}/logs/stream", tag = "logs",
    security(("operator" = [])),
    params(("mac" = String, Path, description = "The machine's MAC.")), params(Query),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "Server-Sent Events: each message has `id: <seq>`, `event: log` and `data:` one `LogLine` (JSON, schema `#/components/schemas/LogLine`); stored lines after `after` first, then live ones."),
        (status = 404, description = "No such machine.", body = ErrorBody),
    ))]
pub(super) async fn follow(
    State(app): State<App>,
    Path(mac): Path<String>,
    ApiQuery(q): ApiQuery<Query>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mac = machine_exists(&app, &mac).await?;
    let live = app.subscribe_logs();
    let after = q.after;
    let backlog = app.read(move |s| s.logs(mac, after, usize::MAX)).await?;
    let mut last = backlog.last().map_or(after, |l| l.seq);
    let replay = stream::iter(backlog.into_iter().map(|l| Ok(to_sse(&l))));
    let live = BroadcastStream::new(live).filter_map(move |r| {
        let out = match r {
            Ok((m, l)) if m == mac && l.seq > last => {
                last = l.seq;
                Some(Ok(to_sse(&l)))
            }
            _ => None,
        };
        std::future::ready(out)
    });
    let shutdown = app.shutdown.clone();
    let stream = replay
        .chain(live)
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A machine's enrollment token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenReply {
    /// The machine.
    mac: Mac,
    /// Its current enrollment token (what its config carries).
    token: String,
}

/// The machine's enrollment token (what its config carries), for installers set up by hand.
#[utoipa::path(get, path = "/api/v1/machines/{mac}/token", tag = "logs",
    security(("operator" = [])),
    params(("mac" = String, Path, description = "The machine's MAC.")),
    responses(
        (status = 200, description = "The machine's enrollment token.", body = TokenReply),
        (status = 404, description = "No such machine.", body = ErrorBody),
    ))]
pub(super) async fn token(
    State(app): State<App>,
    Path(mac): Path<String>,
) -> Result<Json<TokenReply>, ApiError> {
    let mac: Mac = mac.parse()?;
    let m = app.read(move |s| s.machine(mac)).await?.ok_or_else(|| {
        inventory::Error::MachineNotFound {
            mac: mac.to_string(),
        }
    })?;
    Ok(Json(TokenReply {
        mac,
        token: app.boot.keys.enrollment_token(&m),
    }))
}

/// Revokes the machine's enrollment token and apiKey (a new token epoch) and returns the new
/// token. The machine gets it with its next config (a reprovision rotates as well).
#[utoipa::path(post, path = "/api/v1/machines/{mac}/token/rotate", tag = "logs",
    security(("operator" = [])),
    params(("mac" = String, Path, description = "The machine's MAC.")),
    responses(
        (status = 200, description = "The new token (every earlier one, and the apiKey, revoked).", body = TokenReply),
        (status = 404, description = "No such machine.", body = ErrorBody),
    ))]
pub(super) async fn rotate_token(
    State(app): State<App>,
    Path(mac): Path<String>,
) -> Result<Json<TokenReply>, ApiError> {
    let mac: Mac = mac.parse()?;
    let t = crate::app::now();
    let m = app
        .write(move |s| {
            let (m, events) = s.update_machine(mac, t, &mut |m| {
                m.token_epoch = m.token_epoch.saturating_add(1);
                Ok(vec![inventory::EventKind::Operator {
                    action: "rotate-token".into(),
                }])
            })?;
            Ok((m, events))
        })
        .await?;
    Ok(Json(TokenReply {
        mac,
        token: app.boot.keys.enrollment_token(&m),
    }))
}
