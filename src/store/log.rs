//! The global event log (DESIGN.md decision 3).
//!
//! Every event has a `position` (a bigserial) and the id of the transaction
//! that appended it (`tx_id`). Positions are taken at insert and committed
//! later, so position order is not commit order: a writer can take position
//! 7 and commit after another writer's position 8 is already visible. A
//! reader that remembered "8" would skip 7 for ever.
//!
//! Readers therefore walk the log in `(tx_id, position)` order and read only
//! rows whose `tx_id` is below the oldest transaction still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`). Every transaction below that
//! line has ended, so nothing can appear below it any more: a reader's
//! checkpoint never passes a row it has not seen. The cost is that one long
//! transaction holds every reader back until it ends; a rolled-back writer
//! leaves nothing behind and stalls nobody.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgExecutor, PgPool, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A point in the log: (transaction id, position). Ordered as the log is read.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    pub tx: i64,
    pub position: i64,
}

impl LogPosition {
    pub const START: LogPosition = LogPosition { tx: 0, position: 0 };
}

/// An event as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub log: LogPosition,
    pub event_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// The link of the stream's hash chain (`audit::chain`), over the event
    /// as stored.
    pub hash: Option<Vec<u8>>,
}

impl StoredEvent {
    /// The event's own fields, without the `{"<Type>": …}` envelope cqrs-es
    /// stores.
    pub fn data(&self) -> &serde_json::Value {
        self.payload.get(&self.event_type).unwrap_or(&self.payload)
    }
}

const EVENT_COLUMNS: &str = "tx_id::text::bigint AS tx, position, event_id, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at, hash";

/// An event as read: brought to its type's current version
/// (`store::upcast`), so every reader sees what the code expects.
fn stored_event(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, sqlx::Error> {
    let mut event = stored_event_as_stored(row)?;
    crate::store::upcast::upcast(
        &event.event_type,
        &mut event.event_version,
        &mut event.payload,
    );
    Ok(event)
}

fn stored_event_as_stored(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        log: LogPosition {
            tx: row.try_get("tx")?,
            position: row.try_get("position")?,
        },
        event_id: row.try_get("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
        hash: row.try_get("hash")?,
    })
}

/// The workspace of each stream: the `workspaceId` of the stream's first
/// event that carries one (a deploy's later events do not repeat it).
/// Streams with none are left out.
pub async fn stream_workspaces(
    conn: impl PgExecutor<'_>,
    streams: &[(String, String)],
) -> Result<std::collections::HashMap<(String, String), String>, sqlx::Error> {
    let (types, ids): (Vec<&str>, Vec<&str>) = streams
        .iter()
        .map(|(t, id)| (t.as_str(), id.as_str()))
        .unzip();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (e.aggregate_type, e.aggregate_id) e.aggregate_type, e.aggregate_id, \
                e.payload -> e.event_type ->> 'workspaceId' \
         FROM events e JOIN UNNEST($1::text[], $2::text[]) AS s(t, i) \
           ON e.aggregate_type = s.t AND e.aggregate_id = s.i \
         WHERE e.payload -> e.event_type ? 'workspaceId' \
         ORDER BY e.aggregate_type, e.aggregate_id, e.sequence",
    )
    .bind(&types)
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(t, id, ws)| ((t, id), ws)).collect())
}

/// Up to `limit` events after `after`, in log order, never past a
/// transaction that may still commit below them.
pub async fn read_after(
    conn: impl PgExecutor<'_>,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (tx_id, position) > ($1::text::xid8, $2) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id, position LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(after.tx.to_string())
        .bind(after.position)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(stored_event).collect()
}

/// The events of one stream, in stream order, after `after_sequence`.
pub async fn read_stream(
    conn: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
         ORDER BY sequence LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(stored_event).collect()
}

/// Where the last event of a stream sits in the log.
pub async fn stream_head(
    conn: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<LogPosition>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT tx_id::text::bigint AS tx, position FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(LogPosition {
            tx: r.try_get("tx")?,
            position: r.try_get("position")?,
        })
    })
    .transpose()
}

/// A reader's checkpoint, as last committed.
pub async fn checkpoint(conn: impl PgExecutor<'_>, name: &str) -> Result<LogPosition, sqlx::Error> {
    let row =
        sqlx::query("SELECT tx_id::text::bigint AS tx, position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    match row {
        Some(r) => Ok(LogPosition {
            tx: r.try_get("tx")?,
            position: r.try_get("position")?,
        }),
        None => Ok(LogPosition::START),
    }
}

/// Takes the reader's lock for the rest of the transaction and returns its
/// checkpoint. Two instances of one reader serialise here, and each reads
/// the checkpoint the other committed: an event is never applied twice.
/// (An advisory lock, not `FOR UPDATE`, so the transaction takes no xid
/// before it has read the log, and does not hold its own horizon back.)
pub async fn lock_checkpoint(
    tx: &mut PgConnection,
    name: &str,
) -> Result<LogPosition, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('deployd.reader.' || $1, 0))")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    checkpoint(&mut *tx, name).await
}

/// Tries the reader's lock without waiting: `None` when another instance
/// holds it.
pub async fn try_lock_checkpoint(
    tx: &mut PgConnection,
    name: &str,
) -> Result<Option<LogPosition>, sqlx::Error> {
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('deployd.reader.' || $1, 0))",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    if locked {
        Ok(Some(checkpoint(&mut *tx, name).await?))
    } else {
        Ok(None)
    }
}

/// Moves the checkpoint, in the caller's transaction, and wakes waiters at
/// commit.
pub async fn save_checkpoint(
    tx: &mut PgConnection,
    name: &str,
    at: LogPosition,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkpoints (name, tx_id, position, updated_at) \
         VALUES ($1, $2::text::xid8, $3, now()) \
         ON CONFLICT (name) DO UPDATE SET tx_id = EXCLUDED.tx_id, \
             position = EXCLUDED.position, updated_at = now()",
    )
    .bind(name)
    .bind(at.tx.to_string())
    .bind(at.position)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify('deployd_checkpoint', $1)")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Wake-ups from PostgreSQL: a counter that moves when events were appended
/// (`deployd_events`) and one that moves when a checkpoint moved
/// (`deployd_checkpoint`), in any process. Waiters also poll, so a missed
/// notification only delays them.
#[derive(Clone)]
pub struct LogSignals {
    events: watch::Receiver<u64>,
    checkpoints: watch::Receiver<u64>,
}

impl LogSignals {
    /// Listens on a dedicated connection until `shutdown`.
    pub async fn listen(pool: &PgPool, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener
            .listen_all(["deployd_events", "deployd_checkpoint"])
            .await?;
        let (events_tx, events) = watch::channel(0u64);
        let (checkpoints_tx, checkpoints) = watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = listener.try_recv() => next,
                };
                match next {
                    Ok(Some(n)) if n.channel() == "deployd_events" => {
                        events_tx.send_modify(|c| *c += 1)
                    }
                    Ok(Some(_)) => checkpoints_tx.send_modify(|c| *c += 1),
                    Ok(None) => {
                        // Reconnected: anything may have happened meanwhile.
                        events_tx.send_modify(|c| *c += 1);
                        checkpoints_tx.send_modify(|c| *c += 1);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "log listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Self {
            events,
            checkpoints,
        })
    }

    /// Signals that never fire: waiters fall back to polling.
    pub fn polling_only() -> Self {
        let (_, events) = watch::channel(0u64);
        let (_, checkpoints) = watch::channel(0u64);
        Self {
            events,
            checkpoints,
        }
    }

    pub fn events(&self) -> watch::Receiver<u64> {
        self.events.clone()
    }

    pub fn checkpoints(&self) -> watch::Receiver<u64> {
        self.checkpoints.clone()
    }
}

/// Waits for a change on `rx` or for `poll`, whichever comes first.
pub async fn wait_signal(rx: &mut watch::Receiver<u64>, poll: Duration) {
    let _ = tokio::time::timeout(poll, rx.changed()).await;
}

/// Waits until the reader `name` has applied everything up to `target`.
/// Returns false when `timeout` passes first.
pub async fn wait_for_checkpoint(
    pool: &PgPool,
    signals: &LogSignals,
    name: &str,
    target: LogPosition,
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = signals.checkpoints();
    loop {
        rx.borrow_and_update();
        if checkpoint(pool, name).await? >= target {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        wait_signal(&mut rx, (deadline - now).min(Duration::from_millis(50))).await;
    }
}
