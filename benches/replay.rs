//! Replay throughput against a plain scan of the log, in one run, on a
//! fresh database:
//!
//! ```sh
//! cargo bench --bench replay                       # 1,000,000 events
//! DEPLOYD_BENCH_EVENTS=200000 cargo bench --bench replay
//! ```
//!
//! The events are generated in SQL: deploys of 9 events each (created,
//! started, three steps started and completed, completed), interleaved a
//! thousand deploys at a time the way concurrent deploys interleave in the
//! log, 100,000 events per transaction. They are inserted with triggers off
//! (`session_replication_role = replica`), so they carry no hash; replay
//! does not read it.
//!
//! `DEPLOYD_BENCH_PER_EVENT=1` replays through each projection's per-event
//! SQL (what the live projector runs) instead of its bulk rebuild, for
//! comparison.

#[path = "common/mod.rs"]
mod common;
use common::server_url;

use std::time::Instant;

use std::sync::Arc;

use deployd::readers::projector::Projection;
use deployd::store::log::StoredEvent;
use futures::TryStreamExt;
use sqlx::{PgPool, Row};

const STEPS: [&str; 3] = ["prepare", "upload", "promote"];

/// A projection without its bulk rebuild: every event through `apply`.
struct PerEvent(Arc<dyn Projection>);

#[async_trait::async_trait]
impl Projection for PerEvent {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn tables(&self) -> &'static [&'static str] {
        self.0.tables()
    }
    async fn apply(&self, tx: &mut deployd::store::Tx, event: &StoredEvent) -> anyhow::Result<()> {
        self.0.apply(tx, event).await
    }
}

async fn generate(pool: &PgPool, events: i64) -> anyhow::Result<()> {
    let deploys = events / 9;
    let per_tx = 100_000 / 9;
    // A connection of its own, closed at the end: replica mode also turns
    // off foreign-key triggers, which the rebuild relies on.
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut conn)
        .await?;
    let mut first = 0;
    while first < deploys {
        let last = (first + per_tx).min(deploys) - 1;
        sqlx::query(
            r#"
            INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
            SELECT 'Deploy', 'dep_' || lpad(d::text, 26, '0'), k, e.type, e.version,
                   jsonb_build_object(e.type, e.data), '{"actor": "bench"}'
            FROM generate_series($1::bigint, $2::bigint) AS d
            CROSS JOIN generate_series(1, 9) AS k
            CROSS JOIN LATERAL (
                SELECT CASE WHEN k = 1 THEN 'DeployCreated' WHEN k = 2 THEN 'DeployStarted'
                            WHEN k = 9 THEN 'DeployCompleted'
                            WHEN k % 2 = 1 THEN 'StepStarted' ELSE 'StepCompleted' END AS type,
                       CASE WHEN k = 1 THEN '2' ELSE '1' END AS version,
                       CASE
                         WHEN k = 1 THEN jsonb_build_object(
                           'deployId', 'dep_' || lpad(d::text, 26, '0'),
                           'workspaceId', 'ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M',
                           'entityId', 'app_' || lpad((d % 100)::text, 26, '0'),
                           'sequenceNumber', d + 1,
                           'buildId', 'bld_' || lpad((d % 1000)::text, 26, '0'),
                           'versionId', 'ver_' || lpad((d % 100)::text, 26, '0'),
                           'trigger', 'manual', 'sourceEventId', NULL,
                           'metadata', jsonb_build_object('pr', d), 'createdBy', 'bench',
                           'steps', $3::jsonb, 'createdAt', '2026-11-27T10:00:00.000000Z')
                         WHEN k = 2 THEN jsonb_build_object('startedAt', '2026-11-27T10:00:01.000000Z')
                         WHEN k = 9 THEN jsonb_build_object(
                           'productionUrl', 'https://d' || d || '.example', 'previewUrl', NULL,
                           'completedAt', '2026-11-27T10:00:09.000000Z')
                         ELSE jsonb_build_object('step', $3::jsonb ->> ((k - 3) / 2),
                                                 'at', '2026-11-27T10:00:0' || k || '.000000Z')
                       END AS data
            ) AS e
            ORDER BY d / 1000, k, d
            "#,
        )
        .bind(first)
        .bind(last)
        .bind(serde_json::json!(STEPS))
        .execute(&mut conn)
        .await?;
        first = last + 1;
    }
    sqlx::query("ANALYZE events").execute(&mut conn).await?;
    sqlx::Connection::close(conn).await?;
    Ok(())
}

/// Reads every event in log order, decoding the same columns the log
/// reader decodes, and nothing else.
async fn plain_scan(pool: &PgPool) -> anyhow::Result<u64> {
    let mut rows = sqlx::query(
        "SELECT tx_id::text::bigint AS tx, position, event_id, aggregate_type, aggregate_id, \
                sequence, event_type, event_version, payload, metadata, recorded_at \
         FROM events ORDER BY tx_id, position",
    )
    .fetch(pool);
    let mut n = 0u64;
    while let Some(row) = rows.try_next().await? {
        let _: serde_json::Value = row.try_get("payload")?;
        let _: serde_json::Value = row.try_get("metadata")?;
        let _: String = row.try_get("aggregate_id")?;
        n += 1;
    }
    Ok(n)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: i64 = std::env::var("DEPLOYD_BENCH_EVENTS")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let name = format!(
        "deployd_bench_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let mut url = url::Url::parse(&server_url())?;
    url.set_path(&name);
    let options = deployd::store::db::DbOptions {
        statement_timeout: std::time::Duration::ZERO,
        ..Default::default()
    };
    let pool = deployd::store::db::connect_and_migrate(url.as_str(), &options).await?;
    let result = run(&pool, events).await;
    pool.close().await;
    let admin = PgPool::connect(&server_url()).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    result
}

async fn run(pool: &PgPool, events: i64) -> anyhow::Result<()> {
    let pool = pool.clone();
    let t = Instant::now();
    generate(&pool, events).await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    eprintln!(
        "generated {stored} events in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let scanned = plain_scan(&pool).await?;
    let scan = t.elapsed().as_secs_f64();
    let scan_rate = scanned as f64 / scan;

    let mut projections = deployd::read_model::projections();
    let per_event = std::env::var("DEPLOYD_BENCH_PER_EVENT").is_ok_and(|v| v == "1");
    if per_event {
        projections = projections
            .into_iter()
            .map(|p| Arc::new(PerEvent(p)) as Arc<dyn Projection>)
            .collect();
    }
    let summary = deployd::audit::replay::replay(
        &deployd::store::Db::Postgres(pool.clone()),
        &projections,
        |p| eprintln!("{p}"),
    )
    .await?;
    eprintln!("{summary}");
    let replayed = summary.events + summary.caught_up;
    let replay = summary.elapsed.as_secs_f64();
    let replay_rate = replayed as f64 / replay;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deploys")
        .fetch_one(&pool)
        .await?;
    assert_eq!(rows, stored / 9, "every deploy rebuilt");

    println!("events:        {stored}");
    println!("plain scan:    {scan:.2}s, {scan_rate:.0} events/s");
    let mode = if per_event {
        "per-event SQL"
    } else {
        "bulk rebuild"
    };
    println!("replay ({mode}): {replay:.2}s, {replay_rate:.0} events/s");
    println!("replay / scan: {:.2}", replay_rate / scan_rate);
    Ok(())
}
