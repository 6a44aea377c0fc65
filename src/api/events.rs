//! Server-Sent Events and the feed of the caller's workspaces
//! (`spec/feeds.md`).
//!
//! - `GET /api/deploys/{id}/events` with `Accept: text/event-stream`: the
//!   deploy's events (`id:` = sequence) from after `Last-Event-ID` (or
//!   `after`), closed after the terminal event.
//! - `GET /api/events`: the caller's workspaces' events in log order, as
//!   JSON keyset pages, or as an endless stream (`id:` = position token).
//!
//! A feed stream (`/api/events`) reads the log itself only until it has
//! caught up; from then on it takes the events of the process's one
//! follower of the log (`feeds::hub`), which reads each batch once for
//! every client and cuts loose, at once, a client whose bounded queue is
//! full. The client reads what its queue holds and its stream ends; it
//! resumes from its last id.
//!
//! A deploy's stream (short-lived, one stream of the log) is fed by a task
//! of its own reading that stream into a bounded channel; a client whose
//! channel stays full for `sse_slow_client` is disconnected.
//! Every stream ends on the server's shutdown token.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::api::docs::DeployPath;
use crate::api::problem::Problem;
use crate::api::AppState;
use crate::domain::ids::{DeployId, EntityId, WorkspaceId};
use crate::feeds::hub::FeedEvent;
use crate::feeds::{self, Filter};
use crate::store::log::{self, LogPosition};
use crate::store::tokens::Caller;

/// How often an idle feeder looks at the log even with no wake-up.
const IDLE_POLL: Duration = Duration::from_millis(1000);

/// Whether the client asked for an event stream.
pub fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"))
}

/// The `Last-Event-ID` header, if sent.
fn last_event_id(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map(|s| s.trim().to_string())
                .map_err(|_| Problem::invalid_field("Last-Event-ID", "expected text"))
        })
        .transpose()
}

/// The sending end of one client's stream.
struct Feeder {
    tx: mpsc::Sender<Event>,
    state: AppState,
}

impl Feeder {
    /// Queues `event`; false when the stream is over (the client left, fell
    /// too far behind, or the server is stopping).
    async fn send(&self, event: Event) -> bool {
        let slow = self.state.settings.sse_slow_client;
        tokio::select! {
            _ = self.state.shutdown.cancelled() => false,
            sent = tokio::time::timeout(slow, self.tx.send(event)) => match sent {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    metrics::counter!("deployd_sse_clients_cut_total").increment(1);
                    tracing::info!("an SSE client fell behind and was disconnected");
                    false
                }
            },
        }
    }

    /// Waits for the log to move (or the poll); false when the stream is
    /// over.
    async fn idle(&self, wake: &mut watch::Receiver<u64>) -> bool {
        tokio::select! {
            _ = self.state.shutdown.cancelled() => false,
            _ = self.tx.closed() => false,
            _ = log::wait_signal(wake, IDLE_POLL) => true,
        }
    }
}

/// Starts `feed` on a task of its own and answers with its stream.
fn stream<F, Fut>(state: &AppState, feed: F) -> Response
where
    F: FnOnce(Feeder) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(state.settings.sse_buffer.max(1));
    let feeder = Feeder {
        tx,
        state: state.clone(),
    };
    tokio::spawn(feed(feeder));
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    sse_response(events, state.settings.sse_heartbeat)
}

/// The SSE answer of `events`, with heartbeats while idle.
fn sse_response<S>(events: S, heartbeat: Duration) -> Response
where
    S: futures::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

/// An SSE message of one event.
fn message(id: String, event: &log::StoredEvent, workspace: &str, public_url: &str) -> Event {
    Event::default()
        .id(id)
        .event(&event.event_type)
        .data(feeds::body(event, workspace, public_url))
}

/// `GET /api/deploys/{id}/events` with `Accept: text/event-stream`.
pub async fn deploy_stream(
    state: AppState,
    caller: Caller,
    id: String,
    after: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let id: DeployId = id
        .parse()
        .map_err(|_| Problem::not_found(format!("deploy {id} not found")))?;
    let id = id.to_string();
    let after = match last_event_id(headers)? {
        Some(last) => last
            .parse::<i64>()
            .ok()
            .filter(|a| *a >= 0)
            .ok_or_else(|| {
                Problem::invalid_field(
                    "Last-Event-ID",
                    "expected the id of an event of this stream (a sequence number)",
                )
            })?,
        None => match after.as_deref() {
            None => 0,
            Some(a) => a.parse::<i64>().ok().filter(|a| *a >= 0).ok_or_else(|| {
                Problem::invalid_field("after", "expected a sequence number (0 or more)")
            })?,
        },
    };
    let row =
        crate::read_model::lookups::deploy_in_scope(&state.db, &id, &caller.workspace_strings())
            .await?
            .ok_or_else(|| Problem::not_found(format!("deploy {id} not found")))?
            .row;
    let workspace = row.workspace_id.to_string();
    // Resuming after the terminal event: nothing more will come.
    if after > 0 {
        let last = log::read_stream(&state.db, "Deploy", &id, after - 1, 1).await?;
        if last
            .first()
            .is_some_and(|e| feeds::TERMINAL.contains(&e.event_type.as_str()))
        {
            return Ok(stream(&state, |_| async {}));
        }
    }
    Ok(stream(&state, move |feeder| async move {
        let mut wake = feeder.state.signals.events();
        let mut after = after;
        loop {
            wake.borrow_and_update();
            let batch = match log::read_stream(&feeder.state.db, "Deploy", &id, after, 100).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, deploy = %id, "reading a deploy's events failed");
                    return;
                }
            };
            let full = batch.len() == 100;
            for event in &batch {
                after = event.sequence;
                let msg = message(
                    event.sequence.to_string(),
                    event,
                    &workspace,
                    &feeder.state.public_url,
                );
                if !feeder.send(msg).await {
                    return;
                }
                if feeds::TERMINAL.contains(&event.event_type.as_str()) {
                    return;
                }
            }
            if !full && !feeder.idle(&mut wake).await {
                return;
            }
        }
    }))
}

/// The query of `GET /api/events`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FeedParams {
    /// A position token (`pageInfo.endCursor` of the previous page, or an
    /// SSE `id`): the events after it. Absent: from the start of the log.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::docs::query::token")]
    pub after: Option<String>,
    /// At most this many events per page, 1 to 1000 (default 100).
    #[serde(default)]
    #[schemars(schema_with = "crate::api::docs::query::limit_1000")]
    pub limit: Option<String>,
    /// Comma-separated event types (`DeployCompleted,DeployFailed`).
    pub types: Option<String>,
    /// Events of this app or function: its own, its builds' and its
    /// deploys'.
    pub entity_id: Option<String>,
    /// Events of this deploy.
    pub deploy_id: Option<String>,
    /// Events of this one of the caller's workspaces.
    pub workspace_id: Option<String>,
}

/// Where a page stopped.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedPageInfo {
    /// Whether more events may follow now (ask again with `after` =
    /// `endCursor`).
    pub has_next_page: bool,
    /// The position token to resume after: past every event looked at,
    /// so it moves even when nothing matched.
    pub end_cursor: String,
}

/// One page of the feed: events in log order.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedPage {
    /// Each event as every feed sends it (`{eventId, position, workspaceId,
    /// aggregateType, aggregateId, sequence, type, version, recordedAt,
    /// metadata, data}`).
    pub data: Vec<serde_json::Value>,
    pub page_info: FeedPageInfo,
}

fn filter(caller: &Caller, params: &FeedParams) -> Result<Filter, Problem> {
    let mut errors = Vec::new();
    let mut filter = Filter {
        workspaces: caller.workspace_strings(),
        ..Filter::default()
    };
    if let Some(types) = &params.types {
        match feeds::parse_types(types) {
            Ok(t) => filter.types = Some(t),
            Err(unknown) => errors.push(crate::api::problem::FieldError::new(
                "types",
                format!(
                    "unknown event type {unknown:?}; known: {}",
                    feeds::EVENT_TYPES.join(", ")
                ),
            )),
        }
    }
    if let Some(e) = &params.entity_id {
        match e.parse::<EntityId>() {
            Ok(e) => filter.entity = Some(e.to_string()),
            Err(err) => errors.push(crate::api::problem::FieldError::new(
                "entity_id",
                err.to_string(),
            )),
        }
    }
    if let Some(d) = &params.deploy_id {
        match d.parse::<DeployId>() {
            Ok(d) => filter.deploy = Some(d.to_string()),
            Err(err) => errors.push(crate::api::problem::FieldError::new(
                "deploy_id",
                err.to_string(),
            )),
        }
    }
    if let Some(w) = &params.workspace_id {
        match w.parse::<WorkspaceId>() {
            // Outside the caller's workspaces: nothing, as in the list.
            Ok(w) => filter.workspaces.retain(|mine| *mine == w.to_string()),
            Err(err) => errors.push(crate::api::problem::FieldError::new(
                "workspace_id",
                err.to_string(),
            )),
        }
    }
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(Problem::invalid(errors))
    }
}

/// Events the JSON page and the stream look at per read, at most.
const SCAN: usize = 10_000;

/// Where one `/api/events` client is.
enum Phase {
    /// Reading the log itself: before subscribing (`None`), then once more
    /// after (`Some`), up to where the log ends.
    CatchingUp(Option<mpsc::Receiver<Arc<FeedEvent>>>),
    /// Taking the hub's events.
    Live(mpsc::Receiver<Arc<FeedEvent>>),
}

/// One `/api/events` client: its own reading of the log until it has
/// caught up, then the hub's queue (`feeds::hub` explains the hand-over).
struct FeedClient {
    state: AppState,
    filter: Filter,
    /// Past every event sent or looked at.
    cursor: LogPosition,
    ready: VecDeque<Event>,
    phase: Phase,
}

impl FeedClient {
    /// The next message; `None` ends the stream (shutdown, a failed read,
    /// or the client fell behind and was cut loose).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.state.shutdown.is_cancelled() {
                return None;
            }
            match &mut self.phase {
                Phase::CatchingUp(subscribed) => {
                    let page = match feeds::read(
                        &self.state.db,
                        &self.state.streams,
                        &self.filter,
                        self.cursor,
                        self.state.settings.sse_buffer.max(1),
                        SCAN,
                    )
                    .await
                    {
                        Ok(page) => page,
                        Err(error) => {
                            tracing::warn!(%error, "reading the event feed failed");
                            return None;
                        }
                    };
                    for (event, workspace) in &page.events {
                        self.ready.push_back(message(
                            feeds::token(event.log),
                            event,
                            workspace,
                            &self.state.public_url,
                        ));
                    }
                    self.cursor = page.next;
                    if !page.more {
                        self.phase = match subscribed.take() {
                            Some(queue) => Phase::Live(queue),
                            None => match self.state.hub.subscribe(self.filter.clone()).await {
                                Ok(queue) => Phase::CatchingUp(Some(queue)),
                                Err(error) => {
                                    tracing::warn!(%error, "joining the event feed failed");
                                    return None;
                                }
                            },
                        };
                    }
                }
                Phase::Live(queue) => {
                    let event = tokio::select! {
                        _ = self.state.shutdown.cancelled() => return None,
                        event = queue.recv() => event?,
                    };
                    // Read already by the client's own catching up.
                    if event.log <= self.cursor {
                        continue;
                    }
                    self.cursor = event.log;
                    return Some(
                        Event::default()
                            .id(feeds::token(event.log))
                            .event(&event.event_type)
                            .data(&event.body),
                    );
                }
            }
        }
    }
}

/// The endless stream of `GET /api/events` from after `after`.
fn feed_stream(state: AppState, filter: Filter, after: LogPosition) -> Response {
    let heartbeat = state.settings.sse_heartbeat;
    let client = FeedClient {
        state,
        filter,
        cursor: after,
        ready: VecDeque::new(),
        phase: Phase::CatchingUp(None),
    };
    let events = futures::stream::unfold(client, |mut client| async move {
        client
            .next()
            .await
            .map(|event| (Ok::<_, Infallible>(event), client))
    });
    sse_response(events, heartbeat)
}

/// GET /api/events
pub async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<FeedParams>,
    headers: HeaderMap,
    params: Result<Query<FeedParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|e| Problem::invalid_field("query", e.body_text()))?;
    let filter = filter(&caller, &params)?;
    let bad_token = |pointer: &str| {
        Problem::invalid_field(
            pointer,
            "expected a position token (`<tx>:<position>`, an `id` or `endCursor` this feed sent)",
        )
    };
    let last = last_event_id(&headers)?;
    let after = match (&last, &params.after) {
        (Some(last), _) if wants_stream(&headers) => {
            feeds::parse_token(last).ok_or_else(|| bad_token("Last-Event-ID"))?
        }
        (_, Some(after)) => feeds::parse_token(after).ok_or_else(|| bad_token("after"))?,
        _ => LogPosition::START,
    };
    if wants_stream(&headers) {
        return Ok(feed_stream(state, filter, after));
    }
    let limit = match params.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| Problem::invalid_field("limit", "expected an integer from 1 to 1000"))?,
    };
    let page = feeds::read(&state.db, &state.streams, &filter, after, limit, SCAN).await?;
    let data = page
        .events
        .iter()
        .map(|(event, workspace)| {
            serde_json::from_str(&feeds::body(event, workspace, &state.public_url))
                .expect("the body is JSON")
        })
        .collect();
    Ok(Json(FeedPage {
        data,
        page_info: FeedPageInfo {
            has_next_page: page.more,
            end_cursor: feeds::token(page.next),
        },
    })
    .into_response())
}

/// GET /api/deploys/{id}/events: JSON, or a stream when asked for one.
pub async fn deploy_events(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::deploys::EventsParams>,
    Path(path): Path<DeployPath>,
    headers: HeaderMap,
    Query(params): Query<crate::api::deploys::EventsParams>,
) -> Result<Response, Problem> {
    if wants_stream(&headers) {
        return deploy_stream(state, caller, path.id, params.after, &headers).await;
    }
    crate::api::deploys::events(State(state), caller, Path(path), Query(params))
        .await
        .map(IntoResponse::into_response)
}
