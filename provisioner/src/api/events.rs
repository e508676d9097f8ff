//! `/api/v1/events`: the history (JSON) and a live stream (Server-Sent Events).
//!
//! The stream first replays stored events after `after` (or the `Last-Event-ID` header), then
//! follows the store's own feed ([`inventory::Store::events_after`]): what any server sharing
//! the store commits is streamed, in sequence order, and a slow follower never loses an event
//! (it reads from the store, not from a bounded in-process queue). Each SSE message has
//! `id: <seq>` and `data: <event JSON>`.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use crate::app::App;
use crate::http::{ApiError, ApiQuery};
use inventory::{Event, EventQuery, Mac};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/events", get(list))
        .route("/events/stream", get(stream_events))
}

const DEFAULT_LIMIT: usize = 1000;
/// Events read per wait while following the store's feed.
const FOLLOW_BATCH: usize = 1000;
/// The longest one wait on the store's feed blocks a thread (then the loop checks shutdown).
const FOLLOW_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_LIMIT: usize = 100_000;

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct Query {
    /// Only events with a sequence number greater than this.
    #[serde(default)]
    after: u64,
    /// Only events of this machine (a MAC).
    machine: Option<String>,
    /// At most this many events (the history: 1000 unless given; at most 100000).
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

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    security(("operator" = [])),
    params(Query),
    responses((status = 200, description = "Events in sequence order.", body = Vec<Event>)))]
pub(super) async fn list(
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

#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    security(("operator" = [])),
    params(Query,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this sequence number (overrides `after`).")),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "Server-Sent Events: each message has `id: <seq>`, `event: event` and `data:` one `Event` (JSON, schema `#/components/schemas/Event`); stored events after `after` first, then live ones.")))]
pub(super) async fn stream_events(
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
    let (mac, after) = (q.mac, q.after);
    let backlog = app.read(move |s| s.events(&q)).await?;
    let last = backlog.last().map(|e| e.seq).unwrap_or(after);
    let replay = stream::iter(backlog.into_iter().map(|e| Ok(to_sse(&e))));
    // Then the store's feed: wait (a second at a time, so shutdown is seen) for events after
    // the last one sent. A store error ends the stream; the client reconnects with its id.
    let follower = app.clone();
    let live = stream::unfold(Some(last), move |last| {
        let app = follower.clone();
        async move {
            let last = last?;
            let batch = app
                .read(move |s| s.events_after(last, FOLLOW_BATCH, FOLLOW_WAIT))
                .await;
            match batch {
                Ok(events) => {
                    let next = events.last().map_or(last, |e| e.seq);
                    let out: Vec<_> = events
                        .into_iter()
                        .filter(|e| mac.is_none_or(|m| e.mac == Some(m)))
                        .map(|e| Ok(to_sse(&e)))
                        .collect();
                    Some((stream::iter(out), Some(next)))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading the store failed");
                    None
                }
            }
        }
    })
    .flatten();
    let shutdown = app.shutdown.clone();
    let stream = replay
        .chain(live)
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
