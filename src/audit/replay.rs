//! `deployd replay`: rebuilds projections from position 0 while the API
//! keeps serving, blue/green.
//!
//! 1. A schema `deployd_rebuild_<ulid>` gets an empty copy of each table of
//!    the projections (same names, columns, constraints and indexes: copied
//!    from the catalog, so they survive any number of replays).
//! 2. The log is read from the start in batches; each batch runs through
//!    each projection's [`Projection::rebuild`] with `search_path` set to the
//!    rebuild schema first, so the projection's unqualified SQL writes the
//!    new tables. The live projector keeps writing the live tables.
//! 3. One transaction swaps: it takes each projection's reader lock (the
//!    live projector waits), applies what was appended since, moves the live
//!    tables out and the new ones in (`ALTER TABLE … SET SCHEMA`), sets each
//!    checkpoint and drops the old tables. The API waits only for that
//!    transaction; the projector, once it has the lock, reads the new
//!    checkpoint and carries on with the new tables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{Connection, PgConnection, PgPool};

use crate::readers::projector::Projection;
use crate::store::db::{Db, Embedded, Tx};
use crate::store::log::{self, LogPosition, StoredEvent};

/// Events read per batch.
pub const BATCH: i64 = 20_000;

/// Where a replay stands, reported about once a second.
#[derive(Debug, Clone)]
pub struct Progress {
    pub done: u64,
    /// Events below the readable horizon when the replay began (the log
    /// grows meanwhile, so `done` may pass it).
    pub total: u64,
    pub elapsed: Duration,
}

impl Progress {
    pub fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Time left at the current rate.
    pub fn eta(&self) -> Duration {
        let rate = self.per_second();
        if rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / rate)
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replay: {}/{} events, {:.0} events/s, {}s left",
            self.done,
            self.total,
            self.per_second(),
            self.eta().as_secs()
        )
    }
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub projections: Vec<&'static str>,
    /// Events read while building.
    pub events: u64,
    /// Events appended meanwhile and applied in the swap.
    pub caught_up: u64,
    pub elapsed: Duration,
    /// How long the swap transaction held the tables.
    pub swap: Duration,
    pub position: LogPosition,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.events + self.caught_up;
        write!(
            f,
            "replay done: projections {} rebuilt from {} events ({} during the swap) in {:.2}s \
             ({:.0} events/s); swap took {} ms; checkpoint at tx {} position {}",
            self.projections.join(", "),
            total,
            self.caught_up,
            self.elapsed.as_secs_f64(),
            total as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.swap.as_millis(),
            self.position.tx,
            self.position.position,
        )
    }
}

/// The schema that holds a table as the normal `search_path` resolves it.
async fn schema_of(conn: &mut PgConnection, table: &str) -> anyhow::Result<String> {
    sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = $1::regclass",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("finding table {table}"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// An empty copy of `live.table` in `shadow`: columns, defaults, checks,
/// then primary and unique keys under their own names. Foreign keys and
/// plain indexes come after the bulk load ([`finish_table`]): a foreign key
/// checks every inserted row one by one. The copy is unlogged while it is
/// loaded (no WAL per row) and logged before the swap.
async fn copy_table(
    conn: &mut PgConnection,
    live: &str,
    shadow: &str,
    table: &str,
) -> anyhow::Result<()> {
    let (l, s, t) = (ident(live), ident(shadow), ident(table));
    sqlx::query(&format!(
        "CREATE UNLOGGED TABLE {s}.{t} (LIKE {l}.{t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)"
    ))
    .execute(&mut *conn)
    .await?;
    copy_constraints(conn, live, shadow, table, &["p", "u", "x"]).await
}

/// The constraints of these kinds (`pg_constraint.contype`) of
/// `live.table`, under the same names, on the copy.
async fn copy_constraints(
    conn: &mut PgConnection,
    live: &str,
    shadow: &str,
    table: &str,
    kinds: &[&str],
) -> anyhow::Result<()> {
    let (l, s, t) = (ident(live), ident(shadow), ident(table));
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = $1::regclass AND contype::text = ANY($2) ORDER BY conname",
    )
    .bind(format!("{l}.{t}"))
    .bind(kinds)
    .fetch_all(&mut *conn)
    .await?;
    for (name, def) in constraints {
        // A foreign key names its target unqualified when it is on the
        // search_path; make it point at the copy in the shadow schema.
        let def = def.replace(&format!("REFERENCES {live}."), "REFERENCES ");
        let def = if def.starts_with("FOREIGN KEY") {
            def.replacen("REFERENCES ", &format!("REFERENCES {s}."), 1)
        } else {
            def
        };
        sqlx::query(&format!(
            "ALTER TABLE {s}.{t} ADD CONSTRAINT {} {def}",
            ident(&name)
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The foreign keys and plain indexes of `live.table`, under the same
/// names, on the loaded copy.
async fn finish_table(
    conn: &mut PgConnection,
    live: &str,
    shadow: &str,
    table: &str,
) -> anyhow::Result<()> {
    sqlx::query(&format!(
        "ALTER TABLE {}.{} SET LOGGED",
        ident(shadow),
        ident(table)
    ))
    .execute(&mut *conn)
    .await?;
    copy_constraints(conn, live, shadow, table, &["f"]).await?;
    let defs: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
         WHERE i.indrelid = $1::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
             WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)",
    )
    .bind(format!("{}.{}", ident(live), ident(table)))
    .fetch_all(&mut *conn)
    .await?;
    for def in defs {
        let from = format!(" ON {live}.{table} ");
        anyhow::ensure!(def.contains(&from), "unexpected index definition: {def}");
        let def = def.replacen(
            &from,
            &format!(" ON {}.{} ", ident(shadow), ident(table)),
            1,
        );
        sqlx::query(&def).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The connection of a PostgreSQL transaction.
fn pg(tx: &mut Tx) -> &mut PgConnection {
    match tx {
        Tx::Postgres(t) => t,
        Tx::Sqlite(..) => unreachable!("the PostgreSQL replay runs on PostgreSQL"),
    }
}

/// Applies one batch to the rebuild tables, in the caller's transaction.
async fn apply(
    tx: &mut Tx,
    shadow: &str,
    live: &str,
    projections: &[Arc<dyn Projection>],
    events: &[StoredEvent],
) -> anyhow::Result<()> {
    sqlx::query(&format!(
        "SET LOCAL search_path TO {}, {}",
        ident(shadow),
        ident(live)
    ))
    .execute(pg(tx))
    .await?;
    for p in projections {
        p.rebuild(tx, events)
            .await
            .with_context(|| format!("rebuilding projection {}", p.name()))?;
    }
    Ok(())
}

/// Rebuilds `projections` from the start of the log and swaps them in,
/// reading [`BATCH`] events at a time. `progress` is called about once a
/// second while the log is read.
pub async fn replay(
    db: &Db,
    projections: &[Arc<dyn Projection>],
    progress: impl FnMut(&Progress),
) -> anyhow::Result<Summary> {
    replay_in_batches(db, projections, BATCH, progress).await
}

/// [`replay`], `batch` events at a time.
pub async fn replay_in_batches(
    db: &Db,
    projections: &[Arc<dyn Projection>],
    batch: i64,
    progress: impl FnMut(&Progress),
) -> anyhow::Result<Summary> {
    anyhow::ensure!(!projections.is_empty(), "no projection to replay");
    for p in projections {
        anyhow::ensure!(
            !p.tables().is_empty(),
            "projection {} cannot be rebuilt",
            p.name()
        );
    }
    match db {
        Db::Postgres(pool) => replay_postgres(pool, projections, batch, progress).await,
        Db::Sqlite(embedded) => replay_sqlite(embedded, projections, batch, progress).await,
    }
}

/// The embedded engine's replay: one `BEGIN IMMEDIATE` transaction empties
/// the projections' tables, resets their checkpoints and applies the whole
/// log. Readers (WAL) see the old tables until it commits and the new ones
/// after, never a half-built model; writers wait for it, which at the
/// embedded mode's size is seconds (see docs/PERFORMANCE.md).
async fn replay_sqlite(
    embedded: &Embedded,
    projections: &[Arc<dyn Projection>],
    batch: i64,
    mut progress: impl FnMut(&Progress),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let db = Db::Sqlite(embedded.clone());
    let mut tx = db.begin().await?;
    let total: i64 = crate::on_tx!(&mut tx, c => sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(c)
        .await?);
    for p in projections {
        // children first (tables() lists parents first)
        for table in p.tables().iter().rev() {
            crate::on_tx!(&mut tx, c => sqlx::query(&format!("DELETE FROM {}", ident(table)))
                .execute(c)
                .await
                .map(drop)?);
        }
    }
    let mut report = Progress {
        done: 0,
        total: total as u64,
        elapsed: Duration::ZERO,
    };
    let mut last_report = Instant::now();
    let mut at = LogPosition::START;
    loop {
        let events = log::read_after(&mut tx, at, batch).await?;
        let Some(last) = events.last().map(|e| e.log) else {
            break;
        };
        for p in projections {
            p.rebuild(&mut tx, &events).await?;
        }
        at = last;
        report.done += events.len() as u64;
        if last_report.elapsed() >= Duration::from_secs(1) {
            report.elapsed = started.elapsed();
            progress(&report);
            last_report = Instant::now();
        }
    }
    for p in projections {
        log::save_checkpoint(&mut tx, p.name(), at).await?;
    }
    let swap = Instant::now();
    tx.commit().await?;
    report.elapsed = started.elapsed();
    progress(&report);
    Ok(Summary {
        projections: projections.iter().map(|p| p.name()).collect(),
        events: report.done,
        caught_up: 0,
        elapsed: started.elapsed(),
        swap: swap.elapsed(),
        position: at,
    })
}

/// The PostgreSQL replay (the module docs).
async fn replay_postgres(
    pool: &PgPool,
    projections: &[Arc<dyn Projection>],
    batch: i64,
    mut progress: impl FnMut(&Progress),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    // One replay at a time: the session lock lives as long as this
    // connection, which is closed at the end (or dropped on error).
    let mut guard = pool.acquire().await?.detach();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('deployd.replay', 0))")
        .execute(&mut guard)
        .await?;
    // Leftovers of a replay that died before its swap.
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'deployd\\_rebuild\\_%'",
    )
    .fetch_all(&mut guard)
    .await?;
    for schema in stale {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", ident(&schema)))
            .execute(&mut guard)
            .await?;
    }

    let first_table = projections[0].tables()[0];
    let live = schema_of(&mut guard, first_table).await?;
    let suffix = ulid::Ulid::generate().to_string().to_lowercase();
    let shadow = format!("deployd_rebuild_{suffix}");
    sqlx::query(&format!("CREATE SCHEMA {}", ident(&shadow)))
        .execute(&mut guard)
        .await?;
    for p in projections {
        for table in p.tables() {
            copy_table(&mut guard, &live, &shadow, table).await?;
        }
    }

    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())",
    )
    .fetch_one(&mut guard)
    .await?;
    let mut report = Progress {
        done: 0,
        total: total as u64,
        elapsed: Duration::ZERO,
    };
    let mut last_report = Instant::now();
    let mut at = LogPosition::START;
    // Read the next batch while the current one is written.
    let mut next = tokio::spawn(read(pool.clone(), at, batch));
    loop {
        let events = next.await??;
        let Some(last) = events.last().map(|e| e.log) else {
            break;
        };
        at = last;
        next = tokio::spawn(read(pool.clone(), at, batch));
        let mut tx = Tx::Postgres(pool.begin().await?);
        // Nothing reads these tables before the swap, and a crash restarts
        // the replay: no need to wait for each batch to reach the disk.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(pg(&mut tx))
            .await?;
        apply(&mut tx, &shadow, &live, projections, &events).await?;
        tx.commit().await?;
        report.done += events.len() as u64;
        if last_report.elapsed() >= Duration::from_secs(1) {
            report.elapsed = started.elapsed();
            progress(&report);
            last_report = Instant::now();
        }
    }
    report.elapsed = started.elapsed();
    progress(&report);
    for p in projections {
        for table in p.tables() {
            finish_table(&mut guard, &live, &shadow, table).await?;
            sqlx::query(&format!("ANALYZE {}.{}", ident(&shadow), ident(table)))
                .execute(&mut guard)
                .await?;
        }
    }

    // The swap.
    let swap_started = Instant::now();
    // (on a pool connection: the guard session holds the replay's lock)
    let mut tx = Tx::Postgres(pool.begin().await?);
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(pg(&mut tx))
        .await?;
    let mut names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    let mut live_checkpoint = LogPosition::START;
    for name in &names {
        live_checkpoint = live_checkpoint.max(log::lock_checkpoint(&mut tx, name).await?);
    }
    let mut caught_up = 0u64;
    loop {
        let events = log::read_after(&mut tx, at, batch).await?;
        let Some(last) = events.last().map(|e| e.log) else {
            break;
        };
        apply(&mut tx, &shadow, &live, projections, &events).await?;
        caught_up += events.len() as u64;
        at = last;
    }
    sqlx::query("SET LOCAL search_path TO DEFAULT")
        .execute(pg(&mut tx))
        .await?;
    let retired = format!("deployd_retired_{suffix}");
    sqlx::query(&format!("CREATE SCHEMA {}", ident(&retired)))
        .execute(pg(&mut tx))
        .await?;
    for p in projections {
        for table in p.tables().iter().rev() {
            sqlx::query(&format!(
                "ALTER TABLE {}.{t} SET SCHEMA {}",
                ident(&live),
                ident(&retired),
                t = ident(table)
            ))
            .execute(pg(&mut tx))
            .await?;
            sqlx::query(&format!(
                "ALTER TABLE {}.{t} SET SCHEMA {}",
                ident(&shadow),
                ident(&live),
                t = ident(table)
            ))
            .execute(pg(&mut tx))
            .await?;
        }
    }
    let position = at.max(live_checkpoint);
    for name in &names {
        log::save_checkpoint(&mut tx, name, position).await?;
    }
    for schema in [&retired, &shadow] {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", ident(schema)))
            .execute(pg(&mut tx))
            .await?;
    }
    tx.commit().await?;
    let swap = swap_started.elapsed();
    guard.close().await?;
    Ok(Summary {
        projections: projections.iter().map(|p| p.name()).collect(),
        events: report.done,
        caught_up,
        elapsed: started.elapsed(),
        swap,
        position,
    })
}

async fn read(pool: PgPool, after: LogPosition, batch: i64) -> anyhow::Result<Vec<StoredEvent>> {
    Ok(log::read_after(&Db::Postgres(pool), after, batch).await?)
}
