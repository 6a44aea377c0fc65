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

use serde::Serialize;

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

    /// A batch of `reader`, standing at log position `at`, failed with
    /// `error`.
    pub fn failed(&self, reader: &str, at: Option<i64>, error: &anyhow::Error) {
        let mut readers = self.0.lock().expect("reader health");
        let entry = readers
            .entry(reader.to_string())
            .or_insert_with(|| Failing {
                position: at.unwrap_or(0),
                error: String::new(),
                attempts: 0,
                since: crate::domain::time::now(),
            });
        if let Some(at) = at {
            entry.position = at;
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
