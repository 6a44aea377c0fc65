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
//!
//! On the embedded SQLite engine one writer appends at a time and takes its
//! positions under the write lock (`migrations/sqlite/`), so position order
//! is commit order, `tx_id` is always 0, and a reader reads everything
//! committed: the same `(tx_id, position)` walk, with no horizon needed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use sqlx::Row;

use crate::store::bind::TextList;
use crate::store::db::{Db, Engine, Tx};

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

    /// The event's version as the outside sees it (the events endpoint,
    /// `events export`, the NATS body): a JSON number, `2`. cqrs-es stores
    /// it as text (`"2"`); a version that is not a number (none is) stays
    /// text rather than being lost.
    pub fn version_json(&self) -> serde_json::Value {
        version_json(&self.event_version)
    }
}

/// An event version as a JSON number (`"2"` → `2`), text if it is not one.
pub fn version_json(version: &str) -> serde_json::Value {
    version
        .parse::<u64>()
        .map(serde_json::Value::from)
        .unwrap_or_else(|_| serde_json::Value::from(version))
}

/// A connection to run a statement on: the pool, or an open transaction.
pub enum Conn<'a> {
    Db(&'a Db),
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Db> for Conn<'a> {
    fn from(db: &'a Db) -> Self {
        Conn::Db(db)
    }
}

impl<'a> From<&'a mut Tx> for Conn<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        Conn::Tx(tx)
    }
}

impl Conn<'_> {
    pub fn engine(&self) -> Engine {
        match self {
            Conn::Db(db) => db.engine(),
            Conn::Tx(tx) => tx.engine(),
        }
    }

    /// `postgres` or `sqlite`, for SQL written per engine.
    pub fn pick<'s>(&self, postgres: &'s str, sqlite: &'s str) -> &'s str {
        match self.engine() {
            Engine::Postgres => postgres,
            Engine::Sqlite => sqlite,
        }
    }
}

/// Runs `$body` with `$c` bound to an executor of the [`Conn`] (a pool or a
/// transaction's connection, on either engine); `$c` may be used once.
#[macro_export]
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::log::Conn::Db($crate::store::db::Db::Postgres(pool)) => {
                let $c = pool;
                $body
            }
            $crate::store::log::Conn::Db($crate::store::db::Db::Sqlite(embedded)) => {
                let $c = &embedded.pool;
                $body
            }
            $crate::store::log::Conn::Tx($crate::store::db::Tx::Postgres(tx)) => {
                let $c = &mut **tx;
                $body
            }
            $crate::store::log::Conn::Tx($crate::store::db::Tx::Sqlite(tx, _)) => {
                let $c = &mut **tx;
                $body
            }
        }
    };
}

/// An event row as selected by [`EVENT_COLUMNS`].
#[derive(sqlx::FromRow)]
struct EventRow {
    tx: i64,
    position: i64,
    event_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    recorded_at: DateTime<Utc>,
    hash: Option<Vec<u8>>,
}

impl EventRow {
    /// The event as read: brought to its type's current version
    /// (`store::upcast`), so every reader sees what the code expects.
    fn upcast(self) -> StoredEvent {
        let mut event = StoredEvent {
            log: LogPosition {
                tx: self.tx,
                position: self.position,
            },
            event_id: self.event_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
            hash: self.hash,
        };
        crate::store::upcast::upcast(
            &event.event_type,
            &mut event.event_version,
            &mut event.payload,
        );
        event
    }
}

/// The columns of an [`EventRow`], per engine.
pub fn event_columns(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "tx_id::text::bigint AS tx, position, event_id, aggregate_type, aggregate_id, \
             sequence, event_type, event_version, payload, metadata, recorded_at, hash"
        }
        Engine::Sqlite => {
            "tx_id AS tx, position, event_id, aggregate_type, aggregate_id, sequence, \
             event_type, event_version, payload, metadata, recorded_at, hash"
        }
    }
}

/// The workspace of each stream: the `workspaceId` of the stream's first
/// event that carries one (a deploy's later events do not repeat it).
/// Streams with none are left out.
pub async fn stream_workspaces<'a>(
    conn: impl Into<Conn<'a>>,
    streams: &[(String, String)],
) -> Result<std::collections::HashMap<(String, String), String>, sqlx::Error> {
    let conn = conn.into();
    let (types, ids): (Vec<String>, Vec<String>) = streams.iter().cloned().unzip();
    let (types, ids) = (TextList(&types), TextList(&ids));
    let sql = conn.pick(
        "SELECT DISTINCT ON (e.aggregate_type, e.aggregate_id) e.aggregate_type, e.aggregate_id, \
                e.payload -> e.event_type ->> 'workspaceId' \
         FROM events e JOIN UNNEST($1::text[], $2::text[]) AS s(t, i) \
           ON e.aggregate_type = s.t AND e.aggregate_id = s.i \
         WHERE e.payload -> e.event_type ? 'workspaceId' \
         ORDER BY e.aggregate_type, e.aggregate_id, e.sequence",
        // The lists as JSON arrays, paired by index; a bare column beside
        // MIN() comes from the row that holds the minimum.
        "SELECT e.aggregate_type, e.aggregate_id, \
                json_extract(e.payload, '$.' || e.event_type || '.workspaceId'), MIN(e.sequence) \
         FROM json_each($1) t JOIN json_each($2) i ON i.key = t.key \
         JOIN events e ON e.aggregate_type = t.value AND e.aggregate_id = i.value \
         WHERE json_extract(e.payload, '$.' || e.event_type || '.workspaceId') IS NOT NULL \
         GROUP BY e.aggregate_type, e.aggregate_id",
    );
    let rows: Vec<(String, String, String)> = on_conn!(conn, c => sqlx::query(sql)
        .bind(types)
        .bind(ids)
        .fetch_all(c)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()?);
    Ok(rows.into_iter().map(|(t, id, ws)| ((t, id), ws)).collect())
}

/// Up to `limit` events after `after`, in log order, never past a
/// transaction that may still commit below them.
pub async fn read_after<'a>(
    conn: impl Into<Conn<'a>>,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let conn = conn.into();
    let sql = match conn.engine() {
        Engine::Postgres => format!(
            "SELECT {} FROM events \
             WHERE (tx_id, position) > ($1::text::xid8, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, position LIMIT $3",
            event_columns(Engine::Postgres)
        ),
        Engine::Sqlite => format!(
            "SELECT {} FROM events \
             WHERE (tx_id, position) > (CAST($1 AS INTEGER), $2) \
             ORDER BY tx_id, position LIMIT $3",
            event_columns(Engine::Sqlite)
        ),
    };
    let rows: Vec<EventRow> = on_conn!(conn, c => sqlx::query_as(&sql)
        .bind(after.tx.to_string())
        .bind(after.position)
        .bind(limit)
        .fetch_all(c)
        .await?);
    Ok(rows.into_iter().map(EventRow::upcast).collect())
}

/// Where the readable log ends now: the last event [`read_after`] could
/// return (the start when none). Every event a later reading finds is
/// after it.
pub async fn tail(db: &Db) -> Result<LogPosition, sqlx::Error> {
    let sql = db.pick(
        "SELECT tx_id::text::bigint, position FROM events \
         WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id DESC, position DESC LIMIT 1",
        "SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1",
    );
    let row: Option<(i64, i64)> =
        crate::on_db!(db, pool => sqlx::query_as(sql).fetch_optional(pool).await?);
    Ok(row
        .map(|(tx, position)| LogPosition { tx, position })
        .unwrap_or(LogPosition::START))
}

/// The events of one stream, in stream order, after `after_sequence`.
pub async fn read_stream<'a>(
    conn: impl Into<Conn<'a>>,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let conn = conn.into();
    let sql = format!(
        "SELECT {} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
         ORDER BY sequence LIMIT $4",
        event_columns(conn.engine())
    );
    let rows: Vec<EventRow> = on_conn!(conn, c => sqlx::query_as(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .bind(limit)
        .fetch_all(c)
        .await?);
    Ok(rows.into_iter().map(EventRow::upcast).collect())
}

/// The `DeployCompleted` events of these deploys recorded up to `until`,
/// in log order: what an entity's release was at an instant is their fold
/// (`read_model::releases`).
pub async fn completions_until<'a>(
    conn: impl Into<Conn<'a>>,
    deploys: &[String],
    until: DateTime<Utc>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let conn = conn.into();
    let sql = format!(
        "SELECT {} FROM events \
         WHERE aggregate_type = 'Deploy' AND event_type = 'DeployCompleted' AND {} \
           AND recorded_at <= $2 \
         ORDER BY tx_id, position",
        event_columns(conn.engine()),
        crate::store::bind::any_of(conn.engine(), "aggregate_id", 1)
    );
    let rows: Vec<EventRow> = on_conn!(conn, c => sqlx::query_as(&sql)
        .bind(TextList(deploys))
        .bind(until)
        .fetch_all(c)
        .await?);
    Ok(rows.into_iter().map(EventRow::upcast).collect())
}

/// Where the last event of a stream sits in the log.
pub async fn stream_head<'a>(
    conn: impl Into<Conn<'a>>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<LogPosition>, sqlx::Error> {
    let conn = conn.into();
    let sql = conn.pick(
        "SELECT tx_id::text::bigint, position FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
        "SELECT tx_id, position FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
    );
    let row: Option<(i64, i64)> = on_conn!(conn, c => sqlx::query_as(sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(c)
        .await?);
    Ok(row.map(|(tx, position)| LogPosition { tx, position }))
}

/// The highest position in the log (0 when empty).
pub async fn head(db: &Db) -> Result<i64, sqlx::Error> {
    let head: Option<i64> = crate::on_db!(db, pool => sqlx::query_scalar("SELECT max(position) FROM events")
            .fetch_one(pool)
            .await?);
    Ok(head.unwrap_or(0))
}

/// How far a reader is behind the log.
#[derive(Debug, Clone)]
pub struct ReaderLag {
    pub reader: String,
    /// Events after its checkpoint (counted up to 10,000).
    pub events_behind: i64,
    /// Age of the oldest of them.
    pub seconds_behind: f64,
}

/// Every reader's lag.
pub async fn reader_lags(db: &Db) -> Result<Vec<ReaderLag>, sqlx::Error> {
    let sql = db.pick(
        "SELECT c.name, \
                (SELECT count(*) FROM (SELECT 1 FROM events e \
                   WHERE (e.tx_id, e.position) > (c.tx_id, c.position) LIMIT 10000) behind), \
                (SELECT extract(epoch FROM now() - min(e.recorded_at))::float8 FROM events e \
                   WHERE (e.tx_id, e.position) > (c.tx_id, c.position)) \
         FROM checkpoints c",
        "SELECT c.name, \
                (SELECT count(*) FROM (SELECT 1 FROM events e \
                   WHERE e.position > c.position LIMIT 10000)), \
                (SELECT (julianday('now') - julianday(min(e.recorded_at))) * 86400.0 \
                   FROM events e WHERE e.position > c.position) \
         FROM checkpoints c",
    );
    let rows: Vec<(String, i64, Option<f64>)> =
        crate::on_db!(db, pool => sqlx::query_as(sql).fetch_all(pool).await?);
    Ok(rows
        .into_iter()
        .map(|(reader, events_behind, seconds)| ReaderLag {
            reader,
            events_behind,
            seconds_behind: seconds.unwrap_or(0.0),
        })
        .collect())
}

/// Whether a reader is moving: where it stands, what waits for it, and for
/// how long it has not moved while events wait.
#[derive(Debug, Clone)]
pub struct ReaderStall {
    pub reader: String,
    pub position: i64,
    /// Events after its checkpoint (counted up to 10,000).
    pub events_behind: i64,
    /// With events waiting: the shorter of the time since its checkpoint
    /// last moved and the age of the oldest waiting event (an import's old
    /// events are not a stall while the reader moves); else 0.
    pub stalled_seconds: f64,
}

/// Every reader's [`ReaderStall`].
pub async fn reader_stalls(db: &Db) -> Result<Vec<ReaderStall>, sqlx::Error> {
    let sql = db.pick(
        "SELECT c.name, c.position, \
                (SELECT count(*) FROM (SELECT 1 FROM events e \
                   WHERE (e.tx_id, e.position) > (c.tx_id, c.position) LIMIT 10000) behind), \
                extract(epoch FROM now() - c.updated_at)::float8, \
                (SELECT extract(epoch FROM now() - min(e.recorded_at))::float8 FROM events e \
                   WHERE (e.tx_id, e.position) > (c.tx_id, c.position)) \
         FROM checkpoints c ORDER BY c.name",
        "SELECT c.name, c.position, \
                (SELECT count(*) FROM (SELECT 1 FROM events e \
                   WHERE e.position > c.position LIMIT 10000)), \
                (julianday('now') - julianday(c.updated_at)) * 86400.0, \
                (SELECT (julianday('now') - julianday(min(e.recorded_at))) * 86400.0 \
                   FROM events e WHERE e.position > c.position) \
         FROM checkpoints c ORDER BY c.name",
    );
    // name, position, events behind, seconds unmoved, age of the oldest
    type StallRow = (String, i64, i64, Option<f64>, Option<f64>);
    let rows: Vec<StallRow> = crate::on_db!(db, pool => sqlx::query_as(sql).fetch_all(pool).await?);
    Ok(rows
        .into_iter()
        .map(|(reader, position, events_behind, unmoved, oldest)| {
            let stalled_seconds = if events_behind == 0 {
                0.0
            } else {
                match (unmoved, oldest) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b).unwrap_or(0.0),
                }
                .max(0.0)
            };
            ReaderStall {
                reader,
                position,
                events_behind,
                stalled_seconds,
            }
        })
        .collect())
}

/// The log position of the event at `position`, if there is one.
pub async fn at_position<'a>(
    conn: impl Into<Conn<'a>>,
    position: i64,
) -> Result<Option<LogPosition>, sqlx::Error> {
    let conn = conn.into();
    let sql = conn.pick(
        "SELECT tx_id::text::bigint, position FROM events WHERE position = $1",
        "SELECT tx_id, position FROM events WHERE position = $1",
    );
    let row: Option<(i64, i64)> =
        on_conn!(conn, c => sqlx::query_as(sql).bind(position).fetch_optional(c).await?);
    Ok(row.map(|(tx, position)| LogPosition { tx, position }))
}

/// A reader's checkpoint, as last committed.
pub async fn checkpoint<'a>(
    conn: impl Into<Conn<'a>>,
    name: &str,
) -> Result<LogPosition, sqlx::Error> {
    let conn = conn.into();
    let sql = conn.pick(
        "SELECT tx_id::text::bigint, position FROM checkpoints WHERE name = $1",
        "SELECT tx_id, position FROM checkpoints WHERE name = $1",
    );
    let row: Option<(i64, i64)> =
        on_conn!(conn, c => sqlx::query_as(sql).bind(name).fetch_optional(c).await?);
    Ok(row
        .map(|(tx, position)| LogPosition { tx, position })
        .unwrap_or(LogPosition::START))
}

/// Takes the reader's lock for the rest of the transaction and returns its
/// checkpoint. Two instances of one reader serialise here, and each reads
/// the checkpoint the other committed: an event is never applied twice.
/// (On PostgreSQL an advisory lock, not `FOR UPDATE`, so the transaction
/// takes no xid before it has read the log, and does not hold its own
/// horizon back. On SQLite the transaction already holds the write lock.)
pub async fn lock_checkpoint(tx: &mut Tx, name: &str) -> Result<LogPosition, sqlx::Error> {
    if let Tx::Postgres(t) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('deployd.reader.' || $1, 0))")
            .bind(name)
            .execute(&mut **t)
            .await?;
    }
    checkpoint(tx, name).await
}

/// Tries the reader's lock without waiting: `None` when another instance
/// holds it.
pub async fn try_lock_checkpoint(
    tx: &mut Tx,
    name: &str,
) -> Result<Option<LogPosition>, sqlx::Error> {
    if let Tx::Postgres(t) = tx {
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('deployd.reader.' || $1, 0))",
        )
        .bind(name)
        .fetch_one(&mut **t)
        .await?;
        if !locked {
            return Ok(None);
        }
    }
    Ok(Some(checkpoint(tx, name).await?))
}

/// Moves the checkpoint, in the caller's transaction, and wakes waiters at
/// commit.
pub async fn save_checkpoint(tx: &mut Tx, name: &str, at: LogPosition) -> Result<(), sqlx::Error> {
    match tx {
        Tx::Postgres(t) => {
            sqlx::query(
                "INSERT INTO checkpoints (name, tx_id, position, updated_at) \
                 VALUES ($1, $2::text::xid8, $3, now()) \
                 ON CONFLICT (name) DO UPDATE SET tx_id = EXCLUDED.tx_id, \
                     position = EXCLUDED.position, updated_at = now()",
            )
            .bind(name)
            .bind(at.tx.to_string())
            .bind(at.position)
            .execute(&mut **t)
            .await?;
            sqlx::query("SELECT pg_notify('deployd_checkpoint', $1)")
                .bind(name)
                .execute(&mut **t)
                .await?;
        }
        Tx::Sqlite(t, _) => {
            // waiters are woken by Tx::commit
            sqlx::query(
                "INSERT INTO checkpoints (name, tx_id, position, updated_at) \
                 VALUES ($1, $2, $3, deployd_now()) \
                 ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, \
                     position = excluded.position, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(at.tx)
            .bind(at.position)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

/// Wake-ups: a counter that moves when events were appended
/// (`deployd_events`) and one that moves when a checkpoint moved
/// (`deployd_checkpoint`), in any process (PostgreSQL's LISTEN/NOTIFY), or
/// in this one (the embedded engine). Waiters also poll, so a missed
/// notification only delays them.
#[derive(Clone)]
pub struct LogSignals {
    events: watch::Receiver<u64>,
    checkpoints: watch::Receiver<u64>,
    /// The health of this process's readers, for `/readyz`.
    health: crate::store::health::ReaderHealth,
}

impl LogSignals {
    /// Listens (on PostgreSQL, on a dedicated connection) until `shutdown`.
    pub async fn listen(db: &Db, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let pool = match db {
            Db::Postgres(pool) => pool,
            Db::Sqlite(embedded) => {
                let (events, checkpoints) = embedded.subscribe();
                return Ok(Self {
                    events,
                    checkpoints,
                    health: Default::default(),
                });
            }
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
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
                        events_tx.send_modify(|c| *c += 1);
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
            health: Default::default(),
        })
    }

    /// Signals that never fire: waiters fall back to polling.
    pub fn polling_only() -> Self {
        let (_, events) = watch::channel(0u64);
        let (_, checkpoints) = watch::channel(0u64);
        Self {
            events,
            checkpoints,
            health: Default::default(),
        }
    }

    /// The health of this process's readers.
    pub fn health(&self) -> &crate::store::health::ReaderHealth {
        &self.health
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
    db: &Db,
    signals: &LogSignals,
    name: &str,
    target: LogPosition,
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = signals.checkpoints();
    loop {
        rx.borrow_and_update();
        if checkpoint(db, name).await? >= target {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        wait_signal(&mut rx, (deadline - now).min(Duration::from_millis(50))).await;
    }
}

/// Every reader's status; the second value is false when one is failing or
/// stalled beyond `max_lag`.
pub async fn reader_statuses(
    db: &Db,
    health: &crate::store::health::ReaderHealth,
    max_lag: Duration,
) -> sqlx::Result<(Vec<crate::store::health::ReaderStatus>, bool)> {
    let failing = health.failing();
    let mut all_ok = true;
    let mut statuses = Vec::new();
    for lag in reader_stalls(db).await? {
        let failure = failing.get(&lag.reader);
        let stalled = lag.events_behind > 0 && lag.stalled_seconds > max_lag.as_secs_f64();
        let status = if failure.is_some() {
            "failing"
        } else if stalled {
            "stalled"
        } else {
            "ok"
        };
        all_ok &= status == "ok";
        statuses.push(crate::store::health::ReaderStatus {
            status: status.into(),
            position: lag.position,
            events_behind: lag.events_behind,
            stalled_seconds: lag.stalled_seconds,
            error: failure.map(|f| f.error.clone()),
            reader: lag.reader,
        });
    }
    // A failing reader without a checkpoint yet (it never applied a batch).
    for (reader, failure) in failing {
        if !statuses.iter().any(|s| s.reader == reader) {
            all_ok = false;
            statuses.push(crate::store::health::ReaderStatus {
                reader,
                status: "failing".into(),
                position: failure.position,
                events_behind: 0,
                stalled_seconds: 0.0,
                error: Some(failure.error),
            });
        }
    }
    Ok((statuses, all_ok))
}
