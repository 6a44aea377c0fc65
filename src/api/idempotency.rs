//! `Idempotency-Key`: a retry with the same key and the same request replays
//! the first answer (status and body); the same key with another request is
//! a 422; a retry while the first is in flight is a 409. Keys belong to
//! the token that sent them (its id and workspaces): two tokens never share
//! a key, whatever their names.
//!
//! The record is made before the command runs and carries the id of the
//! resource the request acts on (for a create, the new deploy's id). If the
//! server dies mid-request, the record's lease runs out and a retry takes it
//! over with the same resource id, so the retried create finds its deploy
//! instead of making a second one. Records are kept 48 hours.

use std::time::Duration;

use crate::store::access;
use crate::store::Db;
use axum::http::{HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::api::problem::Problem;

pub const HEADER: &str = "idempotency-key";
/// How long a request may stay in flight before a retry may take it over.
const LEASE: Duration = Duration::from_secs(30);
/// How long answers are kept for replay (the API promises at least 24 h).
pub const RETENTION: Duration = Duration::from_secs(48 * 3600);

/// A request holding an idempotency record.
#[derive(Debug, Clone)]
pub struct Held {
    /// Whose key it is: `Caller::idempotency_scope` (the token's id and
    /// workspaces, never its name).
    pub principal: String,
    pub key: String,
    pub resource_id: String,
}

/// What to do with the request.
pub enum Begin {
    /// Run it, on `resource_id`.
    Run(Option<Held>),
    /// Answer this, as the first time.
    Replay(StatusCode, serde_json::Value),
}

/// The fingerprint of a request: method, path and canonical JSON body
/// (keys sorted at every level).
pub fn fingerprint(method: &str, path: &str, body: &serde_json::Value) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b" ");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    // Keys sorted: the same JSON in another key order is the same request.
    hash.update(crate::domain::json::canonical_text(body).as_bytes());
    hash.finalize().to_vec()
}

/// Starts a request: with no key, just runs it on `new_resource_id`.
pub async fn begin(
    db: &Db,
    header: Option<&HeaderValue>,
    principal: &str,
    fingerprint: &[u8],
    new_resource_id: String,
) -> Result<(Begin, String), Problem> {
    let Some(raw) = header else {
        return Ok((Begin::Run(None), new_resource_id));
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .ok_or_else(|| {
            Problem::invalid_field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
        })?
        .to_string();
    let now = crate::domain::time::now();
    let lease_until = now + LEASE;
    let mut tx = db.begin().await?;
    let Some(record) = access::claim_idempotency_key(
        &mut tx,
        principal,
        &key,
        fingerprint,
        &new_resource_id,
        lease_until,
    )
    .await?
    else {
        tx.commit().await?;
        let held = Held {
            principal: principal.to_string(),
            key,
            resource_id: new_resource_id.clone(),
        };
        return Ok((Begin::Run(Some(held)), new_resource_id));
    };
    if record.request_sha256 != fingerprint {
        return Err(Problem::unprocessable(
            "this Idempotency-Key was already used with a different request",
        ));
    }
    let resource_id = record.resource_id;
    if let (Some(status), Some(response)) = (record.status, record.response) {
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        return Ok((Begin::Replay(status, response), resource_id));
    }
    if record.lease_until > now {
        return Err(Problem::conflict(
            "a request with this Idempotency-Key is still in flight; retry later",
        ));
    }
    // The first request died without answering: take over its record.
    access::renew_idempotency_key(&mut tx, principal, &key, lease_until).await?;
    tx.commit().await?;
    let held = Held {
        principal: principal.to_string(),
        key,
        resource_id: resource_id.clone(),
    };
    Ok((Begin::Run(Some(held)), resource_id))
}

/// Records the answer for replay.
pub async fn finish(
    db: &Db,
    held: &Held,
    status: StatusCode,
    body: &serde_json::Value,
) -> sqlx::Result<()> {
    access::finish_idempotency_key(db, &held.principal, &held.key, status.as_u16() as i16, body)
        .await
}

/// Forgets a request that failed before it changed anything, so a retry
/// runs it afresh.
pub async fn abandon(db: &Db, held: &Held) -> sqlx::Result<()> {
    access::delete_idempotency_key(db, &held.principal, &held.key).await
}

/// Deletes records past their retention.
pub async fn expire(db: &Db) -> sqlx::Result<u64> {
    access::expire_idempotency_keys(db, crate::domain::time::now() - RETENTION).await
}
