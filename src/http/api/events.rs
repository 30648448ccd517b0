//! `GET /api/v2/events`: every recorded change as Server-Sent Events, resumable with
//! `Last-Event-ID` (see `crate::events` for how events are numbered).

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{
        self,
        events::{StreamEvent, StreamFilter},
        keys::Key,
    },
    events::POLL_INTERVAL,
    http::{
        error::{ApiError, ErrorBody},
        extract::ApiQuery,
        state::AppState,
    },
};

/// Events read from the database at once.
const READ_BATCH: i64 = 500;

/// How often a stream checks that its caller's credentials still hold (a revoked token, an
/// expired one, a session logged out or ended by a new password ends the stream).
pub const RECHECK: Duration = Duration::from_secs(5);

/// The type of the event that says events were lost to the retention before a resume.
pub const EXPIRED: &str = "events.expired";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Comma-separated event types, e.g. `node_role.updated,node.updated`.
    types: Option<String>,
    /// Only events of this deployment (name or id).
    deployment: Option<String>,
    /// Only events of this node (name or id).
    node: Option<String>,
    /// Resume after this event (the `Last-Event-ID` header wins when both are given).
    #[param(pattern = "^[0-9]+$")]
    last_event_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v2/events", tag = "events",
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]+$", description = "resume after this event id")),
    responses((status = 200, description = "Server-Sent Events: `event:` the type, `id:` the delivery number, `data:` the event's data with the event under `event`", content_type = "text/event-stream", body = String),
              (status = 404, description = "unknown deployment or node", body = ErrorBody)))]
async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let filter = filter(&state, &q).await?;
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().unwrap_or("?").to_string()),
        None => q.last_event_id.clone(),
    };
    let resume = resume.map(|text| event_id(&text)).transpose()?;
    // subscribe before reading the position: nothing numbered after it goes unnoticed
    state.events.start(state.shutdown.clone());
    let wake = state.events.subscribe();
    // A new stream starts now: after the last number, and without the events committed
    // before it that are still to be numbered (the snapshot saw them).
    let unseen_by = match resume {
        None => Some(db::events::snapshot(&state.pool).await?),
        Some(_) => None,
    };
    let last = db::events::last_seq(&state.pool).await?;
    let mut reader = Reader {
        pool: state.pool.clone(),
        filter: StreamFilter {
            unseen_by,
            ..filter
        },
        cursor: last,
        pending: VecDeque::new(),
        wake: Some(wake),
        shutdown: state.shutdown.clone(),
        credentials: Credentials {
            state: state.clone(),
            headers: credential_headers(&headers),
            checked: tokio::time::Instant::now(),
        },
    };
    if let Some(after) = resume {
        // an id from the future (another database, a typo) resumes from now
        reader.cursor = after.min(last);
        let first = db::events::first_seq(&state.pool)
            .await?
            .unwrap_or(last + 1);
        if reader.cursor + 1 < first {
            // events between them were deleted by the retention sweep: say so, go on
            reader.pending.push_back(Item::Expired {
                after: reader.cursor,
                resumed: first - 1,
            });
            reader.cursor = first - 1;
        }
    }
    let stream = futures::stream::unfold(reader, |mut reader| async move {
        reader.next().await.map(|event| (Ok(event), reader))
    });
    Ok(sse(stream, state.event_keep_alive).into_response())
}

/// An event id to resume after: digits only (the pattern `^[0-9]+$` the document declares).
/// One too large for any event resumes from now, like every id from the future.
fn event_id(text: &str) -> Result<i64, ApiError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "invalid_last_event_id",
            format!("`{text}` is not an event id (a non-negative integer)"),
        ));
    }
    Ok(text.parse::<i64>().unwrap_or(i64::MAX))
}

fn sse(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
    keep_alive: Duration,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive))
}

async fn filter(state: &AppState, q: &StreamQuery) -> Result<StreamFilter, ApiError> {
    let types = q.types.as_ref().map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
    let mut conn = state.pool.acquire().await?;
    let deployment_id = match &q.deployment {
        Some(key) => Some(db::deployments::id_of(&mut conn, &Key::parse(key)).await?),
        None => None,
    };
    let node_id = match &q.node {
        Some(key) => Some(db::nodes::id_of(&mut conn, &Key::parse(key)).await?),
        None => None,
    };
    Ok(StreamFilter {
        types,
        deployment_id,
        node_id,
        unseen_by: None,
    })
}

enum Item {
    Event(StreamEvent),
    Expired { after: i64, resumed: i64 },
}

/// The credentials a stream was opened with, checked again every [`RECHECK`].
struct Credentials {
    state: AppState,
    headers: HeaderMap,
    checked: tokio::time::Instant,
}

/// The request's `Authorization` and `Cookie` headers: what authenticated it.
fn credential_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [
        axum::http::header::AUTHORIZATION,
        axum::http::header::COOKIE,
    ] {
        for value in headers.get_all(&name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

struct Reader {
    pool: sqlx::PgPool,
    filter: StreamFilter,
    /// The last `seq` delivered (or skipped by the filter).
    cursor: i64,
    pending: VecDeque<Item>,
    /// `None` once the hub is gone: polling only.
    wake: Option<broadcast::Receiver<()>>,
    shutdown: CancellationToken,
    credentials: Credentials,
}

impl Reader {
    /// The next event; `None` ends the stream (on shutdown).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if self.credentials.checked.elapsed() >= RECHECK {
                self.credentials.checked = tokio::time::Instant::now();
                let Credentials { state, headers, .. } = &self.credentials;
                if !crate::http::auth::still_authenticated(state, headers).await {
                    return None;
                }
            }
            if let Some(item) = self.pending.pop_front() {
                return Some(match item {
                    Item::Event(event) => {
                        self.cursor = event.seq;
                        to_sse(event)
                    }
                    Item::Expired { after, resumed } => Event::default()
                        .id(resumed.to_string())
                        .event(EXPIRED)
                        .data(
                            json!({
                                "last_event_id": after,
                                "resumed_after": resumed,
                                "message": "events after last_event_id were deleted by the retention; the stream goes on after resumed_after",
                            })
                            .to_string(),
                        ),
                });
            }
            match db::events::after(&self.pool, self.cursor, &self.filter, READ_BATCH).await {
                Ok(events) if !events.is_empty() => {
                    self.pending.extend(events.into_iter().map(Item::Event));
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading events for a stream failed"),
            }
            let woken = async {
                match self.wake.as_mut() {
                    Some(wake) => wake.recv().await,
                    None => std::future::pending().await,
                }
            };
            let closed = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                woke = woken => matches!(woke, Err(RecvError::Closed)),
                _ = tokio::time::sleep(POLL_INTERVAL) => false,
            };
            if closed {
                self.wake = None;
            }
        }
    }
}

/// `event:` the type, `id:` the delivery number, `data:` the event's data (the changed
/// object) with the event itself under `event`.
fn to_sse(event: StreamEvent) -> Event {
    let mut object = match event.data {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("value".to_string(), other)]),
    };
    object.insert(
        "event".into(),
        json!({
            "id": event.seq,
            "type": event.kind,
            "at": event.at,
            "actor": event.actor,
            "reason": event.reason,
            "node_id": event.node_id,
            "noderole_id": event.noderole_id,
            "deployment_id": event.deployment_id,
            "run_id": event.run_id,
        }),
    );
    Event::default()
        .id(event.seq.to_string())
        .event(event.kind)
        .data(Value::Object(object).to_string())
}
