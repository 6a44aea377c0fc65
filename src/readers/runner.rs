//! The one catch-up loop every reader of the log runs (DESIGN.md decision
//! 4): take a batch after the reader's checkpoint, handle it, move the
//! checkpoint in the same transaction; when caught up, sleep until events
//! are appended or another reader's checkpoint moves (whose commit can be
//! what held the log back); after a failure, back off and read the same
//! batch again: a reader never skips an event, and never fails silently
//! (`health`: an error log, a metric, and `/readyz` naming it).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::db::Db;
use crate::store::log::{self, LogSignals};

/// How often an idle reader looks at the log even with no notification.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// A reader of the log: one batch at a time.
#[async_trait::async_trait]
pub trait Reader: Send + Sync {
    /// The reader's name, as its checkpoint and in logs.
    fn name(&self) -> &str;

    /// Handles one batch. Returns how many events it handled (0: caught up
    /// as far as the log can be read now, or another instance is active).
    async fn step(&self, db: &Db) -> anyhow::Result<usize>;

    /// Called after a failed batch, before it is tried again.
    async fn recover(&self) {}
}

/// Keeps `reader` caught up until `shutdown`.
pub async fn run(db: Db, reader: &dyn Reader, signals: LogSignals, shutdown: CancellationToken) {
    let mut wake = signals.events();
    let mut moved = signals.checkpoints();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        wake.borrow_and_update();
        moved.borrow_and_update();
        match reader.step(&db).await {
            Ok(0) => {
                failures = 0;
                signals.health().ok(reader.name());
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = log::wait_signal(&mut wake, IDLE_POLL) => {}
                    _ = moved.changed() => {}
                }
            }
            Ok(_) => {
                failures = 0;
                signals.health().ok(reader.name());
            }
            Err(error) => {
                failures += 1;
                let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                // Loudly: logged as an error, counted, and named by /readyz
                // with the position the reader cannot get past.
                let at = log::checkpoint(&db, reader.name()).await.ok();
                signals
                    .health()
                    .failed(reader.name(), at.map(|p| p.position), &error);
                tracing::warn!(
                    reader = reader.name(),
                    failures,
                    retry_in_ms = backoff.as_millis() as u64,
                    "reader batch failed; it will be read again"
                );
                reader.recover().await;
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}
