//! The sweeper: the safety net for a lost message or a dead worker. Every
//! few seconds it drives each entity that has a deploy not yet terminal
//! and no worker holding it, so no deploy stays pending or running for
//! ever.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::read_model::lookups;

impl Worker {
    /// Drives every entity that has a non-terminal deploy and no worker.
    pub async fn sweep(self: &Arc<Self>) -> anyhow::Result<usize> {
        let entities = lookups::entities_with_unfinished_deploys(&self.db, 500).await?;
        let mut started = 0;
        for entity in entities {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            started += 1;
            let worker = self.clone();
            tokio::spawn(async move {
                if let Err(error) = worker.drive_entity(&entity, &|| {}, permit).await {
                    tracing::error!(
                        entity,
                        error = format!("{error:#}"),
                        "sweeper: drive failed"
                    );
                }
            });
        }
        Ok(started)
    }

    /// Sweeps every `sweep_interval` until `shutdown`.
    pub(super) async fn sweep_until(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.settings.sweep_interval) => {}
            }
            if let Err(error) = self.sweep().await {
                tracing::warn!(error = format!("{error:#}"), "sweeper failed");
            }
        }
    }
}
