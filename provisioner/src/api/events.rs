//! `/api/v1/events`: the history (JSON) and a live stream (Server-Sent Events).
//!
//! The stream first replays stored events after `after` (or the `Last-Event-ID` header), then
//! forwards live ones. Each SSE message has `id: <seq>` and `data: <event JSON>`. A follower that
//! falls more than the feed's capacity behind gets an `event: lagged` message and the stream ends;
//! it reconnects with its last id and loses nothing.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use crate::app::App;
use crate::http::{ApiError, ApiQuery};
use inventory::{Event, EventQuery, Mac};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/events", get(list))
        .route("/events/stream", get(stream_events))
}

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 100_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Query {
    /// Only events with a sequence number greater than this.
    #[serde(default)]
    after: u64,
    machine: Option<String>,
    limit: Option<usize>,
}

impl Query {
    fn into_store_query(self, default_limit: Option<usize>) -> Result<EventQuery, ApiError> {
        let mac = self.machine.as_deref().map(str::parse::<Mac>).transpose()?;
        Ok(EventQuery {
            after: self.after,
            mac,
            limit: Some(
                self.limit
                    .or(default_limit)
                    .unwrap_or(MAX_LIMIT)
                    .min(MAX_LIMIT),
            ),
        })
    }
}

async fn list(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<Query>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let q = q.into_store_query(Some(DEFAULT_LIMIT))?;
    Ok(Json(app.read(move |s| s.events(&q)).await?))
}

fn to_sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.seq.to_string())
        .event("event")
        .json_data(e)
        .expect("events serialize")
}

async fn stream_events(
    State(app): State<App>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<Query>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mut q = q;
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        q.after = last.parse().map_err(|_| {
            ApiError::bad_request(format!("Last-Event-ID {last:?} is not a sequence number"))
        })?;
    }
    let q = q.into_store_query(None)?;
    // Subscribe before reading the backlog so nothing committed in between is missed.
    let live = app.subscribe();
    let (mac, after) = (q.mac, q.after);
    let backlog = app.read(move |s| s.events(&q)).await?;
    let mut last = backlog.last().map(|e| e.seq).unwrap_or(after);
    let replay = stream::iter(backlog.into_iter().map(|e| Ok(to_sse(&e))));
    let live = BroadcastStream::new(live)
        .take_while(|r| std::future::ready(!matches!(r, Err(BroadcastStreamRecvError::Lagged(_)))))
        .filter_map(move |r| {
            let out = match r {
                Ok(e) if e.seq > last && mac.is_none_or(|m| e.mac == Some(m)) => {
                    last = e.seq;
                    Some(Ok(to_sse(&e)))
                }
                _ => None,
            };
            std::future::ready(out)
        })
        .chain(stream::once(async {
            Ok(SseEvent::default()
                .event("lagged")
                .data("reconnect with Last-Event-ID"))
        }));
    let shutdown = app.shutdown.clone();
    let stream = replay
        .chain(live)
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
