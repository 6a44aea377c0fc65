//! The webhooks' fan-out: a catch-up reader (`readers::runner`) of the log that writes a
//! delivery row for every (enabled webhook, event of its workspace that it
//! wants) in the transaction that moves its checkpoint, so each event is
//! fanned out exactly once across crashes, and the sender
//! (`webhooks::sender`) finds what to send in the table. One active
//! instance: a batch runs only under the reader's lock (others stand by).
//! A webhook receives the events recorded after it was made.

use tokio_util::sync::CancellationToken;

use crate::domain::ids::DeliveryId;
use crate::feeds::{self, Streams};
use crate::readers::runner::{self, Reader};
use crate::store::db::Db;
use crate::store::log::{self, LogSignals};
use crate::webhooks::store;

/// The reader's checkpoint name.
pub const NAME: &str = "webhooks";
const BATCH: i64 = 500;

/// Fans out one batch. Returns how many events it read (0: nothing to do,
/// or another instance is active).
pub async fn step(db: &Db, streams: &Streams, public_url: &str) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let Some(from) = log::try_lock_checkpoint(&mut tx, NAME).await? else {
        return Ok(0);
    };
    let events = log::read_after(&mut tx, from, BATCH).await?;
    let Some(last) = events.last().map(|e| e.log) else {
        return Ok(0);
    };
    let hooks = store::enabled(&mut tx).await?;
    if !hooks.is_empty() {
        let infos = streams.resolve(db, &events).await?;
        let mut deliveries = Vec::new();
        for (event, info) in events.iter().zip(infos) {
            let Some(workspace) = info.workspace else {
                continue;
            };
            let mut body = None;
            for hook in &hooks {
                if hook.workspace_id != workspace
                    || hook.created_at > event.recorded_at
                    || !hook.wants(&event.event_type)
                {
                    continue;
                }
                deliveries.push(store::NewDelivery {
                    id: DeliveryId::generate().to_string(),
                    webhook: hook.id.clone(),
                    event_id: event.event_id.clone(),
                    event_type: event.event_type.clone(),
                    position: event.log.position,
                    body: body
                        .get_or_insert_with(|| feeds::body(event, &workspace, public_url))
                        .clone(),
                });
            }
        }
        store::add_deliveries(&mut tx, &deliveries, crate::domain::time::now()).await?;
    }
    log::save_checkpoint(&mut tx, NAME, last).await?;
    tx.commit().await?;
    Ok(events.len())
}

/// The fan-out as a [`Reader`], with the streams it has resolved and the
/// public URL the events' locations resolve under.
struct FanOut(Streams, String);

#[async_trait::async_trait]
impl Reader for FanOut {
    fn name(&self) -> &str {
        NAME
    }

    async fn step(&self, db: &Db) -> anyhow::Result<usize> {
        step(db, &self.0, &self.1).await
    }
}

/// Keeps fanning out until `shutdown`.
pub async fn run(db: Db, public_url: String, signals: LogSignals, shutdown: CancellationToken) {
    runner::run(
        db,
        &FanOut(Streams::default(), public_url),
        signals,
        shutdown,
    )
    .await;
}
