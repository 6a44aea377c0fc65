//! Bookkeeping that is not domain history: bearer tokens, idempotency
//! records and the installation's secrets. Plain tables on either engine;
//! times are the server's clock, bound as parameters, so the statements
//! read the same on both. Writes outside a transaction go through
//! `Db::writer` (on the embedded engine, this process's write turn).

use chrono::{DateTime, Utc};

use crate::on_conn;
use crate::store::bind::TextList;
use crate::store::db::{Db, Tx};
use crate::store::log::Conn;

/// A token row: id, name, SHA-256 of the secret, workspaces.
pub type TokenRow = (String, String, Vec<u8>, Vec<String>);

pub async fn insert_token(
    db: &Db,
    id: &str,
    name: &str,
    secret_sha256: &[u8],
    workspace_ids: &[String],
) -> sqlx::Result<()> {
    crate::on_writer!(db.writer().await, pool => sqlx::query(
        "INSERT INTO api_tokens (id, name, secret_sha256, workspace_ids) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(name)
    .bind(secret_sha256)
    .bind(TextList(workspace_ids))
    .execute(pool)
    .await
    .map(drop))
}

/// The live (not revoked) token whose secret hashes to `secret_sha256`.
pub async fn live_token(db: &Db, secret_sha256: &[u8]) -> sqlx::Result<Option<TokenRow>> {
    const SQL: &str = "SELECT id, name, secret_sha256, workspace_ids FROM api_tokens \
                       WHERE secret_sha256 = $1 AND revoked_at IS NULL";
    match db {
        Db::Postgres(pool) => {
            sqlx::query_as(SQL)
                .bind(secret_sha256)
                .fetch_optional(pool)
                .await
        }
        Db::Sqlite(embedded) => {
            let row: Option<(String, String, Vec<u8>, String)> = sqlx::query_as(SQL)
                .bind(secret_sha256)
                .fetch_optional(&embedded.pool)
                .await?;
            row.map(|(id, name, sha, workspaces)| {
                let workspaces = serde_json::from_str(&workspaces)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok((id, name, sha, workspaces))
            })
            .transpose()
        }
    }
}

/// A token as `deployd token list` shows it: never its secret.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub workspaces: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Every token, oldest first.
pub async fn list_tokens(db: &Db) -> sqlx::Result<Vec<TokenInfo>> {
    const SQL: &str = "SELECT id, name, workspace_ids, created_at, last_used_at, revoked_at \
                       FROM api_tokens ORDER BY created_at, id";
    type Row<W> = (
        String,
        String,
        W,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let info = |(id, name, workspaces, created_at, last_used_at, revoked_at): Row<Vec<String>>| {
        TokenInfo {
            id,
            name,
            workspaces,
            created_at,
            last_used_at,
            revoked_at,
        }
    };
    match db {
        Db::Postgres(pool) => {
            let rows: Vec<Row<Vec<String>>> = sqlx::query_as(SQL).fetch_all(pool).await?;
            Ok(rows.into_iter().map(info).collect())
        }
        Db::Sqlite(embedded) => {
            let rows: Vec<Row<String>> = sqlx::query_as(SQL).fetch_all(&embedded.pool).await?;
            rows.into_iter()
                .map(|(id, name, ws, c, l, r)| {
                    let ws: Vec<String> =
                        serde_json::from_str(&ws).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                    Ok(info((id, name, ws, c, l, r)))
                })
                .collect()
        }
    }
}

/// Revokes a live token; false when there is no live token with that id.
pub async fn revoke_token(db: &Db, id: &str, at: DateTime<Utc>) -> sqlx::Result<bool> {
    crate::on_writer!(db.writer().await, pool => sqlx::query(
        "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(at)
    .execute(pool)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Records that a token was used at `at`.
pub async fn touch_token(db: &Db, id: &str, at: DateTime<Utc>) -> sqlx::Result<()> {
    crate::on_writer!(db.writer().await, pool => sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(pool)
        .await
        .map(drop))
}

/// An idempotency record as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct IdempotencyRecord {
    pub request_sha256: Vec<u8>,
    pub resource_id: String,
    pub status: Option<i16>,
    pub response: Option<serde_json::Value>,
    pub lease_until: DateTime<Utc>,
}

/// Records a new key in `tx`, leased until `lease_until`; when the key is
/// already there, returns its record instead (locked for the rest of `tx`).
pub async fn claim_idempotency_key(
    tx: &mut Tx,
    principal: &str,
    key: &str,
    fingerprint: &[u8],
    resource_id: &str,
    lease_until: DateTime<Utc>,
) -> sqlx::Result<Option<IdempotencyRecord>> {
    let inserted: Option<String> = on_conn!(Conn::Tx(&mut *tx), c => sqlx::query_scalar(
        "INSERT INTO idempotency_keys (principal, key, request_sha256, resource_id, lease_until) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (principal, key) DO NOTHING RETURNING resource_id",
    )
    .bind(principal)
    .bind(key)
    .bind(fingerprint)
    .bind(resource_id)
    .bind(lease_until)
    .fetch_optional(c)
    .await?);
    if inserted.is_some() {
        return Ok(None);
    }
    // PostgreSQL locks the row; a SQLite transaction holds the write lock.
    let sql = match tx {
        Tx::Postgres(_) => {
            "SELECT request_sha256, resource_id, status, response, lease_until \
             FROM idempotency_keys WHERE principal = $1 AND key = $2 FOR UPDATE"
        }
        Tx::Sqlite(..) => {
            "SELECT request_sha256, resource_id, status, response, lease_until \
             FROM idempotency_keys WHERE principal = $1 AND key = $2"
        }
    };
    on_conn!(Conn::Tx(tx), c => sqlx::query_as(sql)
        .bind(principal)
        .bind(key)
        .fetch_one(c)
        .await
        .map(Some))
}

/// Extends the lease of a key, in `tx` (a retry taking over).
pub async fn renew_idempotency_key(
    tx: &mut Tx,
    principal: &str,
    key: &str,
    lease_until: DateTime<Utc>,
) -> sqlx::Result<()> {
    on_conn!(Conn::Tx(tx), c => sqlx::query(
        "UPDATE idempotency_keys SET lease_until = $3 WHERE principal = $1 AND key = $2",
    )
    .bind(principal)
    .bind(key)
    .bind(lease_until)
    .execute(c)
    .await
    .map(drop))
}

/// Stores the answer of a key's request.
pub async fn finish_idempotency_key(
    db: &Db,
    principal: &str,
    key: &str,
    status: i16,
    body: &serde_json::Value,
) -> sqlx::Result<()> {
    crate::on_writer!(db.writer().await, pool => sqlx::query(
        "UPDATE idempotency_keys SET status = $3, response = $4 WHERE principal = $1 AND key = $2",
    )
    .bind(principal)
    .bind(key)
    .bind(status)
    .bind(body)
    .execute(pool)
    .await
    .map(drop))
}

pub async fn delete_idempotency_key(db: &Db, principal: &str, key: &str) -> sqlx::Result<()> {
    crate::on_writer!(db.writer().await, pool => sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2")
        .bind(principal)
        .bind(key)
        .execute(pool)
        .await
        .map(drop))
}

/// Deletes records made before `before`.
pub async fn expire_idempotency_keys(db: &Db, before: DateTime<Utc>) -> sqlx::Result<u64> {
    crate::on_writer!(db.writer().await, pool => sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(before)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}

/// The key that signs list cursors, made by the first migration.
pub async fn cursor_key(db: &Db) -> sqlx::Result<Vec<u8>> {
    crate::on_db!(db, pool => sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'cursor_hmac'")
        .fetch_one(pool)
        .await)
}
