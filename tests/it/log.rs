//! The log's gap-safety (DESIGN.md decision 3). On PostgreSQL: a writer
//! that took a lower position but commits later is still read, in order; a
//! rolled-back writer never stalls the reader. On SQLite: one writer at a
//! time, so positions follow commit order, and a rolled-back append leaves
//! no gap.

use deployd::store::db::{open_sqlite, EMBEDDED_FILE};
use deployd::store::log::{self, LogPosition};
use deployd::store::Tx;
use sqlx::{Connection, PgConnection};

use crate::helpers::*;

async fn append(conn: &mut PgConnection, id: &str) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Probe', $1, 1, 'Probed', '1', '{}', '{}')",
    )
    .bind(id)
    .execute(conn)
    .await
    .unwrap();
}

/// Reads the log until it shows `n` events after `after`. The horizon is
/// the oldest transaction open anywhere on the server, so a test running
/// beside this one can hold it back for a moment; it never reorders.
async fn read_at_least(
    db: &deployd::store::Db,
    after: LogPosition,
    n: usize,
) -> Vec<log::StoredEvent> {
    for _ in 0..200 {
        let seen = log::read_after(db, after, 100).await.unwrap();
        if seen.len() >= n {
            return seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the log did not show {n} events within 10 s");
}

#[tokio::test]
async fn a_slow_writer_is_read_in_order_and_a_rolled_back_one_stalls_nothing() {
    let (name, url) = fresh_database();
    let pool = deployd::store::Db::Postgres(
        deployd::store::db::connect_and_migrate(&url, &Default::default())
            .await
            .unwrap(),
    );
    let mut slow = PgConnection::connect(&url).await.unwrap();
    let mut fast = PgConnection::connect(&url).await.unwrap();
    let mut doomed = PgConnection::connect(&url).await.unwrap();

    // The slow writer takes the first position and holds its transaction.
    let mut slow_tx = slow.begin().await.unwrap();
    append(&mut slow_tx, "slow").await;
    // A rolled-back writer takes a position and vanishes.
    let mut doomed_tx = doomed.begin().await.unwrap();
    append(&mut doomed_tx, "doomed").await;
    doomed_tx.rollback().await.unwrap();
    // A later writer commits first.
    append(&mut fast, "fast").await;

    // While the slow writer is open, the reader does not pass it.
    let seen = log::read_after(&pool, LogPosition::START, 100)
        .await
        .unwrap();
    assert!(seen.is_empty(), "read past an open writer: {seen:?}");

    slow_tx.commit().await.unwrap();
    let seen = read_at_least(&pool, LogPosition::START, 2).await;
    let ids: Vec<&str> = seen.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, vec!["slow", "fast"]);
    assert!(seen[0].log < seen[1].log);
    // The slow writer's position is lower, though it committed later.
    assert!(seen[0].log.position < seen[1].log.position);

    // From a checkpoint after both, nothing more: the rolled-back row never
    // appears, and a new writer is read next.
    let checkpoint = seen[1].log;
    assert!(log::read_after(&pool, checkpoint, 100)
        .await
        .unwrap()
        .is_empty());
    append(&mut fast, "next").await;
    let next = read_at_least(&pool, checkpoint, 1).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].aggregate_id, "next");

    pool.close().await;
    drop((slow, fast, doomed));
    drop_database(&name).await;
}

#[tokio::test]
async fn the_projection_reads_a_slow_writer_that_committed_after_a_faster_one() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    // Hold a transaction open that has appended a deploy, then create more
    // deploys through the API while it is open.
    let mut conn = PgConnection::connect(app.database_url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let slow_id = format!("dep_{}", ulid::Ulid::generate());
    let payload = serde_json::json!({"DeployCreated": {
        "deployId": slow_id, "workspaceId": WS, "entityId": seeded.app, "sequenceNumber": 0,
        "buildId": seeded.build, "trigger": "manual", "sourceEventId": null, "metadata": {},
        "createdBy": "slowpoke", "steps": ["prepare", "upload", "promote"],
        "createdAt": "2026-11-27T10:00:00.000000Z"}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Deploy', $1, 1, 'DeployCreated', '1', $2, '{}')",
    )
    .bind(&slow_id)
    .bind(&payload)
    .execute(&mut *tx)
    .await
    .unwrap();
    let creating = {
        let app_url = app.url("/api/deploys");
        let client = app.client.clone();
        let token = app.token.clone();
        let build = seeded.build.clone();
        tokio::spawn(async move {
            client
                .post(app_url)
                .bearer_auth(token)
                .json(&serde_json::json!({"buildId": build}))
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let response = creating.await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    // Both are in the read model, numbered in the order they committed.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT created_by, sequence_number FROM deploys ORDER BY sequence_number")
            .fetch_all(app.pg())
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], ("slowpoke".to_string(), 1));
    assert_eq!(rows[1].1, 2);
    app.stop().await;
}

async fn append_in(tx: &mut Tx, id: &str) {
    deployd::on_tx!(tx, c => sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Probe', $1, 1, 'Probed', '1', '{}', '{}')",
    )
    .bind(id)
    .execute(c)
    .await
    .unwrap()
    .rows_affected());
}

#[tokio::test]
async fn on_sqlite_positions_follow_commit_order_and_a_rollback_leaves_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_sqlite(&dir.path().join(EMBEDDED_FILE), &Default::default())
        .await
        .unwrap();
    // The first writer holds the write lock from its first append.
    let mut slow = db.begin().await.unwrap();
    append_in(&mut slow, "slow").await;
    // A second writer waits for it; a reader sees nothing uncommitted.
    let fast = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            append_in(&mut tx, "fast").await;
            tx.commit().await.unwrap();
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!fast.is_finished(), "a second writer ran beside the first");
    assert!(log::read_after(&db, LogPosition::START, 100)
        .await
        .unwrap()
        .is_empty());
    slow.commit().await.unwrap();
    fast.await.unwrap();
    // A rolled-back append gives its position back.
    let mut doomed = db.begin().await.unwrap();
    append_in(&mut doomed, "doomed").await;
    drop(doomed);
    let mut next = db.begin().await.unwrap();
    append_in(&mut next, "next").await;
    next.commit().await.unwrap();

    let seen = log::read_after(&db, LogPosition::START, 100).await.unwrap();
    let order: Vec<(&str, i64)> = seen
        .iter()
        .map(|e| (e.aggregate_id.as_str(), e.log.position))
        .collect();
    assert_eq!(order, vec![("slow", 1), ("fast", 2), ("next", 3)]);
    // Each got an event id, a time and a hash from the store.
    assert!(seen
        .iter()
        .all(|e| e.event_id.starts_with("evt_") && e.hash.is_some()));
    db.close().await;
}
