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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Query {
    #[serde(default)]
    after: u64,
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

async fn list(
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
async fn follow(
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

#[derive(Serialize)]
struct TokenReply {
    mac: Mac,
    token: String,
}

/// The machine's enrollment token (what its config carries), for installers set up by hand.
async fn token(
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
async fn rotate_token(
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
