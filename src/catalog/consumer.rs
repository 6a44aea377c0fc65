//! The catalog consumer: documents published upstream on the bus, recorded
//! through [`CatalogFeed`]. A document is acknowledged only after it was
//! recorded; a bad one is dropped (it will not get better) and logged; a
//! failure on our side is delivered again later.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CatalogFeed, Rejection};
use crate::bus::{Bus, Settle};

/// Consumes catalog documents until `shutdown` (the in-process bus has none
/// to consume).
pub async fn run(bus: &Bus, feed: &CatalogFeed, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(mut deliveries) = bus.catalog_deliveries().await? else {
        shutdown.cancelled().await;
        return Ok(());
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = deliveries.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                tracing::warn!(%error, "catalog consumer: receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            None => return Ok(()),
        };
        let carrier = delivery.carrier();
        let text = String::from_utf8_lossy(&delivery.payload).into_owned();
        let settle = match feed.handle_text(&text, &carrier).await {
            Ok(_) => Settle::Ack,
            Err(rejection @ Rejection::Invalid(_)) => {
                tracing::warn!(%carrier, problems = %rejection, "catalog document rejected");
                Settle::Drop
            }
            Err(Rejection::Failed(error)) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "catalog document failed; will retry"
                );
                Settle::Retry(Duration::from_secs(1))
            }
        };
        if let Err(error) = delivery.settle(settle).await {
            tracing::warn!(%error, "catalog consumer: ack failed; the document will be redelivered");
        }
    }
}
