//! NATS JetStream: transport, never memory (DESIGN.md decision 1). Every
//! name deployd makes here starts with the installation's prefix, so several
//! installations (and parallel tests) can share one server.
//!
//! Subjects and streams:
//! - `<prefix>.catalog.>` in stream `<prefix>_catalog`: upstream catalog
//!   documents, consumed by the durable pull consumer `<prefix>_catalog`.
//! - `<prefix>.events.<workspace>.<aggregate>.<EventType>` in stream
//!   `<prefix>_events`: every event of the log, published by the relay
//!   (`Nats-Msg-Id` = event id). The saga worker reads the `DeployCreated`
//!   ones through the durable pull consumer `<prefix>_worker`.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::catalog::{CatalogFeed, Rejection};

/// A connection to NATS with the installation's prefix.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    prefix: String,
}

/// Checks a prefix: it becomes part of subjects and stream names.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(format!(
            "DEPLOYD_NATS_PREFIX {prefix:?} must be 1 to 64 letters, digits, '_' or '-'"
        ))
    }
}

impl Bus {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        validate_prefix(prefix).map_err(anyhow::Error::msg)?;
        let client = async_nats::ConnectOptions::new()
            .name("deployd")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Self {
            client,
            jetstream,
            prefix: prefix.to_string(),
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject an event is published on.
    pub fn event_subject(&self, workspace: &str, aggregate: &str, event_type: &str) -> String {
        format!(
            "{}.events.{workspace}.{aggregate}.{event_type}",
            self.prefix
        )
    }

    /// Creates (or finds) the stream of published events.
    pub async fn events_stream(&self) -> anyhow::Result<stream::Stream> {
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: format!("{}_events", self.prefix),
                subjects: vec![format!("{}.events.>", self.prefix)],
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(30 * 24 * 3600),
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .context("creating the events stream")
    }

    /// The worker's durable consumer: every `DeployCreated`, shared by all
    /// worker processes.
    pub async fn worker_consumer(
        &self,
        ack_wait: Duration,
    ) -> anyhow::Result<consumer::PullConsumer> {
        let stream = self.events_stream().await?;
        let name = format!("{}_worker", self.prefix);
        stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{}.events.*.Deploy.DeployCreated", self.prefix),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait,
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .context("creating the worker consumer")
    }

    /// The subject a catalog document for `workspace` is published on.
    pub fn catalog_subject(&self, workspace: &str, kind: &str) -> String {
        format!("{}.catalog.{workspace}.{kind}", self.prefix)
    }

    async fn catalog_stream(&self) -> anyhow::Result<stream::Stream> {
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: format!("{}_catalog", self.prefix),
                subjects: vec![format!("{}.catalog.>", self.prefix)],
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(7 * 24 * 3600),
                ..Default::default()
            })
            .await
            .context("creating the catalog stream")
    }

    /// Creates the catalog stream and its consumer, so documents published
    /// from now on are kept until handled.
    pub async fn prepare_catalog(&self) -> anyhow::Result<consumer::PullConsumer> {
        let stream = self.catalog_stream().await?;
        let name = format!("{}_catalog", self.prefix);
        stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .context("creating the catalog consumer")
    }

    /// Consumes catalog documents until `shutdown`. A document is acked only
    /// after it was recorded; a bad one is terminated (it will not get
    /// better) and logged; a failure on our side is redelivered later.
    pub async fn run_catalog_consumer(
        &self,
        feed: CatalogFeed,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let consumer = self.prepare_catalog().await?;
        let mut messages = consumer
            .messages()
            .await
            .context("subscribing to the catalog consumer")?;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "catalog consumer: receive failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                None => return Ok(()),
            };
            let carrier = match message.info() {
                Ok(info) => format!("nats:{}:{}", info.stream, info.stream_sequence),
                Err(_) => format!("nats:{}", message.subject),
            };
            let text = String::from_utf8_lossy(&message.payload);
            let ack = match feed.handle_text(&text, &carrier).await {
                Ok(_) => AckKind::Ack,
                Err(Rejection::Invalid(problems)) => {
                    tracing::warn!(
                        subject = %message.subject,
                        problems = %Rejection::Invalid(problems),
                        "catalog document rejected"
                    );
                    AckKind::Term
                }
                Err(Rejection::Failed(error)) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "catalog document failed; will retry"
                    );
                    AckKind::Nak(Some(Duration::from_secs(1)))
                }
            };
            if let Err(error) = message.ack_with(ack).await {
                tracing::warn!(%error, "catalog consumer: ack failed; the document will be redelivered");
            }
        }
    }
}
