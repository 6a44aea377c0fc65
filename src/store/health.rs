//! The health of the log's readers (the projections, the relay): no event
//! may stop one silently. A reader that cannot apply a batch says so here
//! (logged as an error, counted in `deployd_reader_failures_total`, shown
//! as `deployd_reader_stalled`), and `/readyz` answers 503 naming it, the
//! position it stands at and the error, until a batch goes through again.
//!
//! What this process knows is joined with what the store shows for
//! readers of any process: one with events to apply whose checkpoint has
//! not moved, and whose oldest unapplied event is older than the bound
//! (`DEPLOYD_READY_MAX_LAG_MS`), is stalled too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::store::log::LogPosition;
use crate::store::Db;

/// A reader that failed on its last attempt.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failing {
    /// Where the reader stands: it cannot get past the event after this.
    pub position: i64,
    pub error: String,
    /// Attempts in a row that failed.
    pub attempts: u32,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub since: chrono::DateTime<chrono::Utc>,
}

/// The readers of this process that are failing, by name.
#[derive(Clone, Default)]
pub struct ReaderHealth(Arc<Mutex<BTreeMap<String, Failing>>>);

impl ReaderHealth {
    /// A batch of `reader` went through (or there was nothing to do).
    pub fn ok(&self, reader: &str) {
        let was = self.0.lock().expect("reader health").remove(reader);
        if was.is_some() {
            tracing::info!(reader, "reader recovered");
            metrics::gauge!("deployd_reader_stalled", "reader" => reader.to_string()).set(0.0);
        }
    }

    /// A batch of `reader`, standing at `at`, failed with `error`.
    pub fn failed(&self, reader: &str, at: Option<LogPosition>, error: &anyhow::Error) {
        let mut readers = self.0.lock().expect("reader health");
        let entry = readers
            .entry(reader.to_string())
            .or_insert_with(|| Failing {
                position: at.map(|a| a.position).unwrap_or(0),
                error: String::new(),
                attempts: 0,
                since: crate::domain::time::now(),
            });
        if let Some(at) = at {
            entry.position = at.position;
        }
        entry.error = format!("{error:#}");
        entry.attempts += 1;
        tracing::error!(
            reader,
            position = entry.position,
            attempts = entry.attempts,
            error = entry.error,
            "reader cannot apply the event after this position; /readyz reports it until it can"
        );
        metrics::counter!("deployd_reader_failures_total", "reader" => reader.to_string())
            .increment(1);
        metrics::gauge!("deployd_reader_stalled", "reader" => reader.to_string()).set(1.0);
    }

    /// The failing readers of this process.
    pub fn failing(&self) -> BTreeMap<String, Failing> {
        self.0.lock().expect("reader health").clone()
    }
}

/// One reader as `/readyz` shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReaderStatus {
    pub reader: String,
    /// `ok`, `failing` (this process cannot apply its next event) or
    /// `stalled` (events waiting longer than the bound).
    pub status: String,
    /// The position of the last event it applied.
    pub position: i64,
    /// Events waiting (capped at 10 000).
    pub events_behind: i64,
    /// How long it has not moved while events wait, in seconds.
    pub stalled_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every reader's status; the second value is false when one is failing or
/// stalled beyond `max_lag`.
pub async fn readers(
    db: &Db,
    health: &ReaderHealth,
    max_lag: Duration,
) -> sqlx::Result<(Vec<ReaderStatus>, bool)> {
    let failing = health.failing();
    let mut all_ok = true;
    let mut statuses = Vec::new();
    for lag in crate::store::log::reader_stalls(db).await? {
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
        statuses.push(ReaderStatus {
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
            statuses.push(ReaderStatus {
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
