//! The relay: a catch-up reader of the log that publishes every event to
//! the bus (JetStream), for the saga worker and downstream subscribers. On
//! the in-process bus only the worker hears it.
//!
//! - Subject `<prefix>.events.<workspace>.<aggregate>.<EventType>`, so a
//!   subscriber can choose by workspace and by event type.
//! - `Nats-Msg-Id` is the event id: JetStream drops a republished event
//!   inside its duplicate window, and a subscriber can drop one outside it.
//! - The checkpoint moves only after JetStream acknowledged (PubAck) every
//!   event of the batch, in the batch's transaction: a crash republishes,
//!   it never skips. Delivery is at least once, in log order.
//! - One active relay: a batch runs only under the relay's lock (others
//!   stand by).
//! - The database stays the source of truth: `deployd relay --from POSITION`
//!   moves the checkpoint back and republishes from there.

use std::collections::HashMap;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::runner::{self, Reader};
use crate::bus::{Bus, Outgoing};
use crate::store::db::Db;
use crate::store::log::{self, LogPosition, LogSignals, StoredEvent};

/// The relay's checkpoint name.
pub const NAME: &str = "relay";
const BATCH: i64 = 500;

/// An event as every feed sends it (the NATS message body, the SSE `data`,
/// the webhook body); `data` follows `event-schemas/events/<type>.v<version>.json`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedEvent<'a> {
    /// Unique per event: de-duplicate by it.
    pub event_id: &'a str,
    /// The event's global position in the log (`deployd relay --from`
    /// takes it): order by it.
    pub position: i64,
    pub workspace_id: &'a str,
    /// `Deploy`, `Entity` or `Build`.
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    /// 1, 2, 3, … within the aggregate: the order of one deploy's events.
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// The event's version, a number (`data` follows
    /// `event-schemas/events/<type>.v<version>.json`); the
    /// `Deployd-Event-Version` header carries it as text.
    pub version: Value,
    /// RFC 3339, microseconds.
    pub recorded_at: String,
    /// Who and what caused it: actor, requestId, correlationId, causationId.
    pub metadata: &'a Value,
    pub data: &'a Value,
}

/// The event as every feed sends it, where a deploy is served as absolute
/// URLs under `public_url` (`domain::location`).
pub fn body(event: &StoredEvent, workspace: &str, public_url: &str) -> String {
    let resolved;
    let data = if crate::domain::location::has_locations(&event.event_type) {
        let mut data = event.data().clone();
        crate::domain::location::resolve_event(&event.event_type, &mut data, public_url);
        resolved = data;
        &resolved
    } else {
        event.data()
    };
    serde_json::to_string(&PublishedEvent {
        event_id: &event.event_id,
        position: event.log.position,
        workspace_id: workspace,
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence: event.sequence,
        event_type: &event.event_type,
        version: event.version_json(),
        recorded_at: crate::domain::time::format(&event.recorded_at),
        metadata: &event.metadata,
        data,
    })
    .expect("an event serialises")
}

/// The workspace of each stream of a batch: from its events where they
/// carry it, otherwise from the log (`log::stream_workspaces`).
async fn workspaces(
    tx: &mut crate::store::db::Tx,
    events: &[StoredEvent],
) -> anyhow::Result<HashMap<(String, String), String>> {
    let mut found = HashMap::new();
    for e in events {
        if let Some(ws) = e.data().get("workspaceId").and_then(|w| w.as_str()) {
            found.insert(
                (e.aggregate_type.clone(), e.aggregate_id.clone()),
                ws.to_string(),
            );
        }
    }
    let missing: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.aggregate_type.clone(), e.aggregate_id.clone()))
        .filter(|key| !found.contains_key(key))
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        found.extend(log::stream_workspaces(tx, &missing).await?);
    }
    Ok(found)
}

/// Publishes one batch. Returns how many events went out (0: nothing to
/// do, or another relay is active).
pub async fn step(db: &Db, bus: &Bus, public_url: &str) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let Some(from) = log::try_lock_checkpoint(&mut tx, NAME).await? else {
        return Ok(0);
    };
    let events = log::read_after(&mut tx, from, BATCH).await?;
    let Some(last) = events.last().map(|e| e.log) else {
        return Ok(0);
    };
    let workspaces = workspaces(&mut tx, &events).await?;
    let mut outgoing = Vec::with_capacity(events.len());
    for e in &events {
        let workspace = workspaces
            .get(&(e.aggregate_type.clone(), e.aggregate_id.clone()))
            .map(String::as_str)
            .unwrap_or("_");
        let body = body(e, workspace, public_url).into_bytes();
        outgoing.push(Outgoing {
            event_id: e.event_id.clone(),
            workspace: workspace.to_string(),
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            recorded_at: crate::domain::time::format(&e.recorded_at),
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            position: e.log.position,
            body,
        });
    }
    bus.publish(&outgoing).await?;
    log::save_checkpoint(&mut tx, NAME, last).await?;
    tx.commit().await?;
    Ok(events.len())
}

/// Moves the relay back so that it republishes from the event at
/// `position` (inclusive).
pub async fn rewind(db: &Db, position: i64) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    log::lock_checkpoint(&mut tx, NAME).await?;
    let at = match log::at_position(&mut tx, position).await? {
        Some(at) => LogPosition {
            tx: at.tx,
            position: position - 1,
        },
        None if position <= 1 => LogPosition::START,
        None => anyhow::bail!("no event has position {position}"),
    };
    log::save_checkpoint(&mut tx, NAME, at).await?;
    tx.commit().await?;
    Ok(())
}

/// The relay as a reader of the log, with the public URL its events'
/// locations resolve under.
struct Relay(Bus, String);

#[async_trait::async_trait]
impl Reader for Relay {
    fn name(&self) -> &str {
        NAME
    }

    async fn step(&self, db: &Db) -> anyhow::Result<usize> {
        step(db, &self.0, &self.1).await
    }

    /// The stream may have been deleted: make it again.
    async fn recover(&self) {
        let _ = self.0.prepare_events().await;
    }
}

/// Keeps publishing until `shutdown`; the events' locations become URLs
/// under `public_url`.
pub async fn run(
    db: Db,
    bus: Bus,
    public_url: String,
    signals: LogSignals,
    shutdown: CancellationToken,
) {
    if let Err(error) = bus.prepare_events().await {
        tracing::warn!(
            error = format!("{error:#}"),
            "relay: the events stream is not ready yet"
        );
    }
    runner::run(db, &Relay(bus, public_url), signals, shutdown).await;
}
