//! The webhooks' tables, on both engines (`migrations/*/…_webhooks.sql`).
//! Every question the API asks is scoped to the caller's workspaces.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::on_db;
use crate::store::bind::{any_of, TextList};
use crate::store::db::{Db, Tx};

/// A webhook as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Webhook {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    pub events: Option<String>,
    pub description: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const WEBHOOK_COLUMNS: &str = "id, workspace_id, url, events, description, secret, \
     previous_secret, previous_secret_until, disabled, disabled_reason, failing_since, \
     created_at, updated_at";

impl Webhook {
    /// The event types it takes; `None`: all.
    pub fn event_types(&self) -> Option<Vec<String>> {
        self.events
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
    }

    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types()
            .is_none_or(|types| types.iter().any(|t| t == event_type))
    }
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    #[serde(skip)]
    pub webhook_id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's position in the log.
    pub position: i64,
    /// Attempts made so far.
    pub attempt: i32,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// The endpoint's status code at the last attempt.
    pub response_status: Option<i32>,
    pub duration_ms: Option<i64>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_type, position, attempt, status, \
     response_status, duration_ms, error, next_attempt_at, created_at";

pub async fn insert(db: &Db, w: &Webhook) -> sqlx::Result<()> {
    crate::on_writer!(db.writer().await, pool => sqlx::query(
        "INSERT INTO webhooks (id, workspace_id, url, events, description, secret, disabled, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, false, $7, $7)",
    )
    .bind(&w.id)
    .bind(&w.workspace_id)
    .bind(&w.url)
    .bind(&w.events)
    .bind(&w.description)
    .bind(&w.secret)
    .bind(w.created_at)
    .execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// The caller's webhook `id`.
pub async fn get(db: &Db, id: &str, scope: &[String]) -> sqlx::Result<Option<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND {}",
        any_of(db.engine(), "workspace_id", 2)
    );
    on_db!(db, pool => sqlx::query_as(&sql).bind(id).bind(TextList(scope)).fetch_optional(pool).await)
}

/// The caller's webhooks, oldest first.
pub async fn list(db: &Db, scope: &[String]) -> sqlx::Result<Vec<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE {} ORDER BY id",
        any_of(db.engine(), "workspace_id", 1)
    );
    on_db!(db, pool => sqlx::query_as(&sql).bind(TextList(scope)).fetch_all(pool).await)
}

/// Saves what a PATCH or a rotation changed.
pub async fn update(db: &Db, w: &Webhook) -> sqlx::Result<()> {
    crate::on_writer!(db.writer().await, pool => sqlx::query(
        "UPDATE webhooks SET url = $2, events = $3, description = $4, secret = $5, \
         previous_secret = $6, previous_secret_until = $7, disabled = $8, disabled_reason = $9, \
         failing_since = $10, updated_at = $11 WHERE id = $1",
    )
    .bind(&w.id)
    .bind(&w.url)
    .bind(&w.events)
    .bind(&w.description)
    .bind(&w.secret)
    .bind(&w.previous_secret)
    .bind(w.previous_secret_until)
    .bind(w.disabled)
    .bind(&w.disabled_reason)
    .bind(w.failing_since)
    .bind(crate::domain::time::now())
    .execute(pool).await.map(|_| ()))?;
    Ok(())
}

pub async fn delete(db: &Db, id: &str, scope: &[String]) -> sqlx::Result<bool> {
    let sql = format!(
        "DELETE FROM webhooks WHERE id = $1 AND {}",
        any_of(db.engine(), "workspace_id", 2)
    );
    let done = crate::on_writer!(db.writer().await, pool => sqlx::query(&sql).bind(id).bind(TextList(scope)).execute(pool).await?.rows_affected());
    Ok(done > 0)
}

/// The enabled webhooks, for the fan-out.
pub async fn enabled(tx: &mut Tx) -> sqlx::Result<Vec<Webhook>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE NOT disabled");
    crate::on_tx!(tx, c => sqlx::query_as(&sql).fetch_all(c).await)
}

/// A webhook by id alone, for the sender.
pub async fn by_id(db: &Db, id: &str) -> sqlx::Result<Option<Webhook>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
    on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)
}

/// `postgres` or `sqlite`, for the transaction's engine.
fn pick<'s>(tx: &Tx, postgres: &'s str, sqlite: &'s str) -> &'s str {
    match tx.engine() {
        crate::store::db::Engine::Postgres => postgres,
        crate::store::db::Engine::Sqlite => sqlite,
    }
}

/// A delivery for [`add_deliveries`].
#[derive(Debug, Clone, Serialize)]
pub struct NewDelivery {
    pub id: String,
    pub webhook: String,
    pub event_id: String,
    pub event_type: String,
    pub position: i64,
    pub body: String,
}

/// New deliveries, due now, in one statement; an event a webhook already
/// has is left as it is.
pub async fn add_deliveries(
    tx: &mut Tx,
    deliveries: &[NewDelivery],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let rows = serde_json::to_string(deliveries).expect("deliveries serialise");
    let sql = pick(
        tx,
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, position, body, \
         next_attempt_at, created_at, updated_at) \
         SELECT d->>'id', d->>'webhook', d->>'event_id', d->>'event_type', \
                (d->>'position')::bigint, d->>'body', $2, $2, $2 \
         FROM jsonb_array_elements($1::text::jsonb) d \
         ON CONFLICT (webhook_id, event_id) DO NOTHING",
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, position, body, \
         next_attempt_at, created_at, updated_at) \
         SELECT json_extract(d.value, '$.id'), json_extract(d.value, '$.webhook'), \
                json_extract(d.value, '$.event_id'), json_extract(d.value, '$.event_type'), \
                json_extract(d.value, '$.position'), json_extract(d.value, '$.body'), $2, $2, $2 \
         FROM json_each($1) d WHERE true \
         ON CONFLICT (webhook_id, event_id) DO NOTHING",
    );
    crate::on_tx!(tx, c => sqlx::query(sql)
        .bind(rows)
        .bind(now)
        .execute(c).await.map(|_| ()))?;
    Ok(())
}

/// The enabled webhooks with a delivery due at `now`.
pub async fn due_webhooks(db: &Db, now: DateTime<Utc>) -> sqlx::Result<Vec<String>> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT DISTINCT d.webhook_id FROM webhook_deliveries d \
         JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND NOT w.disabled \
         LIMIT 1000",
    )
    .bind(now)
    .fetch_all(pool)
    .await)
}

/// A due delivery of a webhook, with its body: the next in log order.
pub async fn due_deliveries(
    db: &Db,
    webhook: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<(Delivery, String)>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, body FROM webhook_deliveries \
         WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at <= $2 \
         ORDER BY position LIMIT $3"
    );
    let rows: Vec<DueRow> = on_db!(db, pool => sqlx::query_as(&sql)
        .bind(webhook)
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
    Ok(rows.into_iter().map(|r| (r.delivery, r.body)).collect())
}

#[derive(sqlx::FromRow)]
struct DueRow {
    #[sqlx(flatten)]
    delivery: Delivery,
    body: String,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub succeeded: bool,
    pub response_status: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// Records an attempt: the delivery's new state, and the webhook's
/// failing streak (cleared by a success; a streak of `disable_after`
/// disables the webhook).
pub async fn record(
    db: &Db,
    delivery: &Delivery,
    attempt: &Attempt,
    next_attempt_at: Option<DateTime<Utc>>,
    disable_after: chrono::Duration,
) -> sqlx::Result<()> {
    record_all(
        db,
        &[(delivery.clone(), attempt.clone(), next_attempt_at)],
        disable_after,
    )
    .await
}

/// Records attempts of one webhook, in the order they were made, in one
/// transaction: each delivery's new state, then the webhook's failing
/// streak as the last of them leaves it.
pub async fn record_all(
    db: &Db,
    attempts: &[(Delivery, Attempt, Option<DateTime<Utc>>)],
    disable_after: chrono::Duration,
) -> sqlx::Result<()> {
    let Some((last_delivery, last, _)) = attempts.last() else {
        return Ok(());
    };
    let now = crate::domain::time::now();
    let mut tx = db.begin().await?;
    // The successes in one statement: (id, response status, duration).
    let succeeded: Vec<(&str, Option<i32>, i64)> = attempts
        .iter()
        .filter(|(_, a, _)| a.succeeded)
        .map(|(d, a, _)| (d.id.as_str(), a.response_status, a.duration_ms))
        .collect();
    if !succeeded.is_empty() {
        let rows = serde_json::to_string(&succeeded).expect("attempts serialise");
        let sql = pick(
            &tx,
            "UPDATE webhook_deliveries w SET attempt = w.attempt + 1, status = 'succeeded', \
                    response_status = (a->>1)::integer, duration_ms = (a->>2)::bigint, \
                    error = NULL, next_attempt_at = NULL, updated_at = $2 \
             FROM jsonb_array_elements($1::text::jsonb) a WHERE w.id = a->>0",
            "UPDATE webhook_deliveries SET attempt = attempt + 1, status = 'succeeded', \
                    response_status = json_extract(a.value, '$[1]'), \
                    duration_ms = json_extract(a.value, '$[2]'), \
                    error = NULL, next_attempt_at = NULL, updated_at = $2 \
             FROM json_each($1) a WHERE webhook_deliveries.id = json_extract(a.value, '$[0]')",
        );
        crate::on_tx!(&mut tx, c => sqlx::query(sql)
            .bind(rows)
            .bind(now)
            .execute(c).await.map(|_| ()))?;
    }
    for (delivery, attempt, next_attempt_at) in attempts.iter().filter(|(_, a, _)| !a.succeeded) {
        let status = match (attempt.succeeded, next_attempt_at) {
            (true, _) => "succeeded",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        crate::on_tx!(&mut tx, c => sqlx::query(
            "UPDATE webhook_deliveries SET attempt = attempt + 1, status = $2, response_status = $3, \
             duration_ms = $4, error = $5, next_attempt_at = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(&delivery.id)
        .bind(status)
        .bind(attempt.response_status)
        .bind(attempt.duration_ms)
        .bind(&attempt.error)
        .bind(next_attempt_at)
        .bind(now)
        .execute(c).await.map(|_| ()))?;
    }
    let webhook = &last_delivery.webhook_id;
    if last.succeeded {
        crate::on_tx!(&mut tx, c => sqlx::query(
            "UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
        )
        .bind(webhook)
        .execute(c).await.map(|_| ()))?;
    } else {
        // Failing since the first failure after the batch's last success,
        // or since before the batch when none succeeded.
        let sql = if attempts.iter().any(|(_, a, _)| a.succeeded) {
            "UPDATE webhooks SET failing_since = $2 WHERE id = $1"
        } else {
            "UPDATE webhooks SET failing_since = COALESCE(failing_since, $2) WHERE id = $1"
        };
        crate::on_tx!(&mut tx, c => sqlx::query(sql)
        .bind(webhook)
        .bind(now)
        .execute(c).await.map(|_| ()))?;
        let reason = format!(
            "every delivery failed for {} hours; the last: {}",
            disable_after.num_hours(),
            last.error.as_deref().unwrap_or("no answer")
        );
        crate::on_tx!(&mut tx, c => sqlx::query(
            "UPDATE webhooks SET disabled = true, disabled_reason = $2, updated_at = $3 \
             WHERE id = $1 AND NOT disabled AND failing_since <= $4",
        )
        .bind(webhook)
        .bind(reason)
        .bind(now)
        .bind(now - disable_after)
        .execute(c).await.map(|_| ()))?;
    }
    tx.commit().await
}

/// A page of a webhook's deliveries, newest first, before `before`.
pub async fn deliveries(
    db: &Db,
    webhook: &str,
    before: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
         WHERE webhook_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    );
    on_db!(db, pool => sqlx::query_as(&sql)
        .bind(webhook)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Makes a delivery due now again; the delivery as it then is.
pub async fn retry(db: &Db, webhook: &str, id: &str) -> sqlx::Result<Option<Delivery>> {
    let now = crate::domain::time::now();
    {
        crate::on_writer!(db.writer().await, pool => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, updated_at = $3 \
             WHERE webhook_id = $1 AND id = $2",
        )
        .bind(webhook)
        .bind(id)
        .bind(now)
        .execute(pool).await.map(|_| ()))?;
    }
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
    );
    on_db!(db, pool => sqlx::query_as(&sql).bind(webhook).bind(id).fetch_optional(pool).await)
}
