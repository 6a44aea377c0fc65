//! The hash chain of each stream (`migrations/…_event_hash.sql`) and
//! `deployd audit verify`.
//!
//! Every event's `hash` is `sha256(previous || canonical)`, where `previous`
//! is the stored hash of the stream's event at `sequence - 1` (32 zero bytes
//! for the first) and `canonical` is, for each of aggregate_type,
//! aggregate_id, sequence (decimal), event_type, event_version,
//! `payload::text`, `metadata::text` and event_id: a 4-byte big-endian
//! length, then the UTF-8 bytes. The JSON is taken as PostgreSQL renders
//! jsonb (normalised), never re-serialised here, so both sides hash the same
//! bytes.
//!
//! The walk checks each event against the *stored* hash of its predecessor,
//! so a tampered event is named alone rather than with every event after it,
//! and checks that each stream's sequences run 1, 2, 3… without a hole, so a
//! deleted event is named too. (Deleting a stream's *last* events leaves a
//! shorter chain that still holds; the chain cannot see that.)

use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::Db;

/// The fields an event's hash covers, as PostgreSQL returns them.
#[derive(Debug, Clone)]
pub struct Hashed<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// `payload::text`
    pub payload: &'a str,
    /// `metadata::text`
    pub metadata: &'a str,
    pub event_id: &'a str,
}

/// The canonical bytes of an event (see the module docs).
pub fn canonical(e: &Hashed<'_>) -> Vec<u8> {
    let sequence = e.sequence.to_string();
    let fields = [
        e.aggregate_type,
        e.aggregate_id,
        &sequence,
        e.event_type,
        e.event_version,
        e.payload,
        e.metadata,
        e.event_id,
    ];
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// The hash an event must carry, chained to `previous`.
pub fn chain(previous: Option<&[u8]>, event: &Hashed<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(previous.unwrap_or(&[0u8; 32]));
    h.update(canonical(event));
    h.finalize().into()
}

/// One broken link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The stored hash is not the hash of the stored event chained to its
    /// predecessor (the event or its predecessor's hash was changed).
    HashMismatch { stream: String, sequence: i64 },
    /// Sequences `from..=to` of the stream are missing (deleted events).
    Missing { stream: String, from: i64, to: i64 },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::HashMismatch { stream, sequence } => {
                write!(f, "{stream} sequence {sequence}: hash does not match")
            }
            Failure::Missing { stream, from, to } if from == to => {
                write!(f, "{stream} sequence {from}: missing")
            }
            Failure::Missing { stream, from, to } => {
                write!(f, "{stream} sequences {from} to {to}: missing")
            }
        }
    }
}

/// What a walk of the log found.
#[derive(Debug, Default)]
pub struct Report {
    pub events: u64,
    pub streams: u64,
    pub failures: Vec<Failure>,
}

/// Walks every stream in sequence order and checks every link.
pub async fn verify(db: &Db) -> anyhow::Result<Report> {
    // The JSON as the engine stores it: jsonb's rendering on PostgreSQL,
    // the stored text on SQLite.
    let sql = db.pick(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
                payload::text AS payload, metadata::text AS metadata, event_id, hash \
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
                payload, metadata, event_id, hash \
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    );
    crate::on_db!(db, pool => walk(sqlx::query(sql).fetch(pool)).await)
}

async fn walk<R: Row>(
    mut rows: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
) -> anyhow::Result<Report>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut report = Report::default();
    let mut current: Option<(String, String)> = None;
    let mut previous: Option<(i64, Option<Vec<u8>>)> = None;
    while let Some(row) = rows.try_next().await? {
        let aggregate_type: String = row.try_get("aggregate_type")?;
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let sequence: i64 = row.try_get("sequence")?;
        let stored: Option<Vec<u8>> = row.try_get("hash")?;
        let stream = format!("{aggregate_type}/{aggregate_id}");
        let same = current
            .as_ref()
            .is_some_and(|(t, i)| *t == aggregate_type && *i == aggregate_id);
        if !same {
            current = Some((aggregate_type.clone(), aggregate_id.clone()));
            previous = None;
            report.streams += 1;
        }
        report.events += 1;
        let expected_seq = previous.as_ref().map_or(1, |(s, _)| s + 1);
        if sequence > expected_seq {
            report.failures.push(Failure::Missing {
                stream: stream.clone(),
                from: expected_seq,
                to: sequence - 1,
            });
        }
        let payload: String = row.try_get("payload")?;
        let metadata: String = row.try_get("metadata")?;
        let event_type: String = row.try_get("event_type")?;
        let event_version: String = row.try_get("event_version")?;
        let event_id: String = row.try_get("event_id")?;
        let hashed = Hashed {
            aggregate_type: &aggregate_type,
            aggregate_id: &aggregate_id,
            sequence,
            event_type: &event_type,
            event_version: &event_version,
            payload: &payload,
            metadata: &metadata,
            event_id: &event_id,
        };
        // The link to the stored hash of the predecessor; when the
        // predecessor is missing, to whatever came before it (which fails,
        // and says so).
        let prev_hash = previous.as_ref().and_then(|(_, h)| h.as_deref());
        let expected = chain(prev_hash, &hashed);
        if stored.as_deref() != Some(&expected[..]) {
            report
                .failures
                .push(Failure::HashMismatch { stream, sequence });
        }
        previous = Some((sequence, stored));
    }
    Ok(report)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
