//! Catch-up readers of the log (DESIGN.md decision 4).
//!
//! A [`Projection`] turns events into rows. The projector feeds it batches in
//! log order, each batch in one transaction that also moves the
//! projection's checkpoint: effects are applied exactly once, a crash loses
//! nothing (the batch rolls back and is read again), and a rebuild is a
//! checkpoint reset. Instances in several processes serialise on the
//! projection's lock, so any number of servers can run one.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::runner::{self, Reader};
use crate::store::db::{Db, Tx};
use crate::store::log::{self, LogPosition, LogSignals, StoredEvent};

const BATCH: i64 = 500;

/// A read model built from the log.
#[async_trait::async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The stable name of the projection and of its checkpoint.
    fn name(&self) -> &'static str;

    /// Applies one event inside the batch transaction. Events the projection
    /// does not use are ignored. Must be idempotent.
    async fn apply(&self, tx: &mut Tx, event: &StoredEvent) -> anyhow::Result<()>;

    /// The read-model tables the projection writes, parents first: what
    /// `deployd replay` rebuilds into fresh tables and swaps in. Empty (the
    /// default): the projection cannot be rebuilt.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Applies a batch, in log order, to tables being rebuilt (fresh tables
    /// that only the rebuild writes and that shadow the live ones). The
    /// default applies each event with [`Projection::apply`]; a projection
    /// may write in bulk instead, as long as the rows come out the same.
    async fn rebuild(&self, tx: &mut Tx, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events {
            self.apply(tx, event).await?;
        }
        Ok(())
    }
}

/// Applies one batch. Returns how many events it applied (0: caught up, as
/// far as the log can be read now).
pub async fn step(db: &Db, projection: &dyn Projection) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let from = log::lock_checkpoint(&mut tx, projection.name()).await?;
    let events = log::read_after(&mut tx, from, BATCH).await?;
    let Some(last) = events.last().map(|e| e.log) else {
        return Ok(0);
    };
    for event in &events {
        projection.apply(&mut tx, event).await.map_err(|e| {
            e.context(format!(
                "projection {} failed on event {} ({} {} #{})",
                projection.name(),
                event.event_id,
                event.event_type,
                event.aggregate_id,
                event.sequence
            ))
        })?;
    }
    log::save_checkpoint(&mut tx, projection.name(), last).await?;
    tx.commit().await?;
    Ok(events.len())
}

/// Applies batches until the projection has applied everything up to
/// `target`, or `timeout` passes (returns false then).
pub async fn catch_up_to(
    db: &Db,
    projection: &dyn Projection,
    target: LogPosition,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if log::checkpoint(db, projection.name()).await? >= target {
            return Ok(true);
        }
        if step(db, projection).await? == 0 {
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            // An older transaction is still open: its end lets us read on.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A projection as a reader of the log.
pub struct Projector(pub Arc<dyn Projection>);

#[async_trait::async_trait]
impl Reader for Projector {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn step(&self, db: &Db) -> anyhow::Result<usize> {
        step(db, self.0.as_ref()).await
    }
}

/// Keeps the projection caught up until `shutdown`.
pub async fn run(
    db: Db,
    projection: Arc<dyn Projection>,
    signals: LogSignals,
    shutdown: CancellationToken,
) {
    runner::run(db, &Projector(projection), signals, shutdown).await;
}
