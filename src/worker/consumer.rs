//! The fast path: the bus's deliveries of `DeployCreated` (the durable
//! JetStream consumer `<prefix>_worker`, shared by every worker process, or
//! the in-process queue). Each is acked only after the drive it caused has
//! committed, or at once when another drive holds its entity (that drive
//! runs it: see the module above). Only a failure is delivered again.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::{Drive, Worker, PROJECTION_WAIT};
use crate::bus::{Bus, Delivery, Settle};
use crate::domain::deploy::Deploy;
use crate::read_model::DeploysProjection;
use crate::store::log::{self, LogPosition};

impl Worker {
    async fn handle_message(&self, message: &Delivery, permit: OwnedSemaphorePermit) -> Settle {
        if message.redelivered {
            metrics::counter!("deployd_worker_redeliveries_total").increment(1);
        }
        let envelope: Value = match serde_json::from_slice(&message.payload) {
            Ok(v) => v,
            Err(error) => {
                tracing::warn!(%error, "worker: not an event envelope; dropped");
                return Settle::Drop;
            }
        };
        let (Some(deploy), Some(entity)) = (
            envelope["aggregateId"].as_str(),
            envelope["data"]["entityId"].as_str(),
        ) else {
            tracing::warn!("worker: DeployCreated without ids; dropped");
            return Settle::Drop;
        };
        // The read model must show the deploy before the entity's queue is
        // read from it.
        let visible = async {
            let head = log::stream_head(&self.db, Deploy::TYPE, deploy).await?;
            log::wait_for_checkpoint(
                &self.db,
                &self.signals,
                DeploysProjection::NAME,
                head.unwrap_or(LogPosition::START),
                PROJECTION_WAIT,
            )
            .await
        };
        if !matches!(visible.await, Ok(true)) {
            return Settle::Retry(Duration::from_secs(1));
        }
        let progress = message.progress_handle();
        // Report progress on a clock too, for steps that report none.
        let ticker = {
            let tick = message.progress_handle();
            let every = self.settings.ack_wait / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    tick();
                }
            })
        };
        let outcome = self.drive_entity(entity, &progress, permit).await;
        ticker.abort();
        match outcome {
            Ok(Drive::Done) => Settle::Ack,
            Ok(Drive::Busy) => {
                // Parked: the drive holding the entity runs this deploy.
                metrics::counter!("deployd_worker_parked_total").increment(1);
                Settle::Ack
            }
            Ok(Drive::Stopped) => Settle::Retry(Duration::from_secs(1)),
            Err(error) => {
                tracing::error!(
                    deploy,
                    error = format!("{error:#}"),
                    "worker: drive failed; will retry"
                );
                Settle::Retry(Duration::from_secs(2))
            }
        }
    }

    /// Consumes `DeployCreated` and sweeps until `shutdown`.
    pub async fn run(self: Arc<Self>, bus: Bus, shutdown: CancellationToken) {
        let sweeper = tokio::spawn(self.clone().sweep_until(shutdown.clone()));
        while !shutdown.is_cancelled() {
            if let Err(error) = self.consume(&bus, &shutdown).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "worker consumer stopped; restarting"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        sweeper.abort();
        // Drives end at their next deploy boundary.
        self.stop.cancel();
        // Let deploys in flight reach their end: the permits come back when
        // they finish.
        let _ = self
            .permits
            .acquire_many(self.settings.concurrency.max(1) as u32)
            .await;
    }

    async fn consume(
        self: &Arc<Self>,
        bus: &Bus,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut messages = bus
            .worker_deliveries(self.settings.ack_wait, self.settings.concurrency.max(1))
            .await?;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "worker: receive failed");
                    continue;
                }
                None => return Ok(()),
            };
            // A slot, in turn with the drives between two deploys; the
            // message is not taken for lost meanwhile.
            let permit = {
                let progress = message.progress_handle();
                let mut ticks = tokio::time::interval(
                    (self.settings.ack_wait / 3).max(Duration::from_millis(100)),
                );
                ticks.tick().await;
                let acquire = self.permits.clone().acquire_owned();
                tokio::pin!(acquire);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        permit = &mut acquire => break permit?,
                        _ = ticks.tick() => progress(),
                    }
                }
            };
            let worker = self.clone();
            tokio::spawn(async move {
                let settle = worker.handle_message(&message, permit).await;
                if let Err(error) = message.settle(settle).await {
                    tracing::warn!(%error, "worker: ack failed; the message will be redelivered");
                }
            });
        }
    }
}
