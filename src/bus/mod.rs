//! The bus: how the relay's events reach the saga worker and subscribers,
//! and how catalog documents arrive.
//!
//! [`Bus::Nats`] is NATS JetStream: transport, never memory (DESIGN.md
//! decision 1). [`Bus::Local`] is the embedded mode's in-process stand-in
//! (no `NATS_URL`): the relay hands `DeployCreated` to the worker through a
//! queue in memory, nothing leaves the process, and no catalog documents
//! arrive (use `deployd catalog import`). PostgreSQL or SQLite stays the
//! truth either way: a message lost with the process is found again by the
//! worker's sweeper, which drives every deploy the read model shows
//! unfinished.
//!
//! Every name deployd makes in NATS starts with the installation's prefix,
//! so several installations (and parallel tests) can share one server.
//!
//! Subjects and streams:
//! - `<prefix>.catalog.>` in stream `<prefix>_catalog`: upstream catalog
//!   documents, consumed by the durable pull consumer `<prefix>_catalog`.
//! - `<prefix>.events.<workspace>.<aggregate>.<EventType>` in stream
//!   `<prefix>_events`: every event of the log, published by the relay
//!   (`Nats-Msg-Id` = event id). The saga worker reads the `DeployCreated`
//!   ones through the durable pull consumer `<prefix>_worker`.

use crate::domain::deploy::Deploy;
use cqrs_es::Aggregate as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_nats::HeaderMap;
use futures::StreamExt;
use tokio::sync::{mpsc, Mutex};

/// The bus the process runs on.
#[derive(Clone)]
pub enum Bus {
    Nats(Box<NatsBus>),
    Local(LocalBus),
}

/// One event on its way out (see `relay`).
pub struct Outgoing {
    pub event_id: String,
    pub workspace: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// RFC 3339, as in the body.
    pub recorded_at: String,
    pub event_type: String,
    pub event_version: String,
    pub position: i64,
    /// The JSON body subscribers receive.
    pub body: Vec<u8>,
}

/// `ce-type` is this followed by the event type (`dev.deployd.DeployCompleted`).
pub const CLOUDEVENTS_TYPE_PREFIX: &str = "dev.deployd.";

/// What becomes of a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with it.
    Ack,
    /// Deliver it again after the delay.
    Retry(Duration),
    /// It will never succeed: drop it.
    Drop,
}

/// A message delivered to the saga worker: a published `DeployCreated`.
pub struct Delivery {
    /// The published event (see `relay::PublishedEvent`).
    pub payload: Vec<u8>,
    /// Whether it was delivered before.
    pub redelivered: bool,
    source: Source,
}

#[derive(Clone)]
enum Source {
    Nats(Box<jetstream::Message>),
    Local(LocalBus),
}

impl Delivery {
    /// Where the message came from, for logs and for the catalog's record
    /// of a document's origin: `nats:<stream>:<sequence>`, or `local`.
    pub fn carrier(&self) -> String {
        match &self.source {
            Source::Nats(message) => match message.info() {
                Ok(info) => format!("nats:{}:{}", info.stream, info.stream_sequence),
                Err(_) => format!("nats:{}", message.subject),
            },
            Source::Local(_) => "local".to_string(),
        }
    }

    /// A handle that tells the bus the message is still being worked on
    /// (JetStream's `Progress`; nothing to tell the in-process queue).
    pub fn progress_handle(&self) -> impl Fn() + Send + Sync + 'static {
        let source = self.source.clone();
        move || {
            if let Source::Nats(message) = &source {
                let message = message.clone();
                tokio::spawn(async move {
                    let _ = message.ack_with(AckKind::Progress).await;
                });
            }
        }
    }

    pub async fn settle(self, settle: Settle) -> anyhow::Result<()> {
        match self.source {
            Source::Nats(message) => {
                let kind = match settle {
                    Settle::Ack => AckKind::Ack,
                    Settle::Retry(delay) => AckKind::Nak(Some(delay)),
                    Settle::Drop => AckKind::Term,
                };
                message
                    .ack_with(kind)
                    .await
                    .map_err(|e| anyhow::anyhow!("acknowledging a message: {e}"))
            }
            Source::Local(bus) => {
                if let Settle::Retry(delay) = settle {
                    let payload = self.payload;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        bus.enqueue(payload, true);
                    });
                }
                Ok(())
            }
        }
    }
}

/// The worker's feed of deliveries.
pub enum Deliveries {
    Nats(Box<consumer::pull::Stream>),
    Local(LocalBus),
}

impl Deliveries {
    /// The next delivery; `None` when the feed ended.
    pub async fn next(&mut self) -> Option<anyhow::Result<Delivery>> {
        match self {
            Deliveries::Nats(messages) => Some(match messages.next().await? {
                Ok(message) => Ok(Delivery {
                    payload: message.payload.to_vec(),
                    redelivered: message.info().map(|i| i.delivered > 1).unwrap_or(false),
                    source: Source::Nats(Box::new(message)),
                }),
                Err(error) => Err(anyhow::anyhow!("receiving from a consumer: {error}")),
            }),
            Deliveries::Local(bus) => {
                let (payload, redelivered) = bus.queue.1.lock().await.recv().await?;
                Some(Ok(Delivery {
                    payload,
                    redelivered,
                    source: Source::Local(bus.clone()),
                }))
            }
        }
    }
}

/// The in-process bus of the embedded mode.
#[derive(Clone)]
pub struct LocalBus {
    #[allow(clippy::type_complexity)]
    queue: Arc<(
        mpsc::UnboundedSender<(Vec<u8>, bool)>,
        Mutex<mpsc::UnboundedReceiver<(Vec<u8>, bool)>>,
    )>,
    /// Whether a worker takes deliveries (else nothing is queued).
    consumed: Arc<AtomicBool>,
}

impl LocalBus {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            queue: Arc::new((tx, Mutex::new(rx))),
            consumed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn enqueue(&self, payload: Vec<u8>, redelivered: bool) {
        if self.consumed.load(Ordering::Relaxed) {
            let _ = self.queue.0.send((payload, redelivered));
        }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// NATS at `url`, or the in-process bus when there is none.
    pub async fn connect(url: Option<&str>, prefix: &str) -> anyhow::Result<Self> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Ok(Bus::Nats(Box::new(NatsBus::connect(url, prefix).await?))),
            None => Ok(Bus::Local(LocalBus::new())),
        }
    }

    /// `nats` or `in-process`.
    pub fn kind(&self) -> &'static str {
        match self {
            Bus::Nats(_) => "nats",
            Bus::Local(_) => "in-process",
        }
    }

    /// The NATS connection, if the bus is NATS.
    pub fn nats(&self) -> Option<&NatsBus> {
        match self {
            Bus::Nats(nats) => Some(nats),
            Bus::Local(_) => None,
        }
    }

    /// Makes what publishing needs (the events stream).
    pub async fn prepare_events(&self) -> anyhow::Result<()> {
        match self {
            Bus::Nats(nats) => nats.events_stream().await.map(drop),
            Bus::Local(_) => Ok(()),
        }
    }

    /// Publishes a batch of events in order and returns once the bus has
    /// taken every one (JetStream: every PubAck).
    pub async fn publish(&self, events: &[Outgoing]) -> anyhow::Result<()> {
        match self {
            Bus::Nats(nats) => nats.publish(events).await,
            Bus::Local(local) => {
                for e in events {
                    if e.aggregate_type == Deploy::TYPE && e.event_type == "DeployCreated" {
                        local.enqueue(e.body.clone(), false);
                    }
                }
                Ok(())
            }
        }
    }

    /// The worker's feed of `DeployCreated`.
    pub async fn worker_deliveries(
        &self,
        ack_wait: Duration,
        batch: usize,
    ) -> anyhow::Result<Deliveries> {
        match self {
            Bus::Nats(nats) => {
                let consumer = nats.worker_consumer(ack_wait).await?;
                let messages = consumer
                    .stream()
                    .max_messages_per_batch(batch)
                    .messages()
                    .await
                    .context("subscribing to the worker consumer")?;
                Ok(Deliveries::Nats(Box::new(messages)))
            }
            Bus::Local(local) => {
                local.consumed.store(true, Ordering::Relaxed);
                Ok(Deliveries::Local(local.clone()))
            }
        }
    }

    /// The catalog documents published upstream, from the durable consumer
    /// `<prefix>_catalog`; `None` on the in-process bus, where none arrive
    /// (`deployd catalog import` records them instead).
    pub async fn catalog_deliveries(&self) -> anyhow::Result<Option<Deliveries>> {
        match self {
            Bus::Nats(nats) => {
                let messages = nats
                    .prepare_catalog()
                    .await?
                    .messages()
                    .await
                    .context("subscribing to the catalog consumer")?;
                Ok(Some(Deliveries::Nats(Box::new(messages))))
            }
            Bus::Local(_) => Ok(None),
        }
    }
}

/// A connection to NATS with the installation's prefix.
#[derive(Clone)]
pub struct NatsBus {
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

impl NatsBus {
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

    /// Publishes a batch with `Nats-Msg-Id` = event id, then waits for
    /// every PubAck.
    pub async fn publish(&self, events: &[Outgoing]) -> anyhow::Result<()> {
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", e.event_id.as_str());
            headers.insert("Deployd-Event-Type", e.event_type.as_str());
            headers.insert("Deployd-Event-Version", e.event_version.as_str());
            headers.insert("Deployd-Position", e.position.to_string().as_str());
            // CloudEvents 1.0, binary content mode (the NATS protocol
            // binding): the attributes as `ce-` headers, the body as is.
            headers.insert("ce-specversion", "1.0");
            headers.insert("ce-id", e.event_id.as_str());
            headers.insert(
                "ce-type",
                format!("{CLOUDEVENTS_TYPE_PREFIX}{}", e.event_type).as_str(),
            );
            headers.insert("ce-source", format!("/workspaces/{}", e.workspace).as_str());
            headers.insert("ce-subject", e.aggregate_id.as_str());
            headers.insert("ce-time", e.recorded_at.as_str());
            headers.insert("content-type", "application/json");
            let subject = self.event_subject(&e.workspace, &e.aggregate_type, &e.event_type);
            let ack = self
                .jetstream
                .publish_with_headers(subject, headers, e.body.clone().into())
                .await
                .context("publishing an event")?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .context("waiting for JetStream to acknowledge an event")?;
        }
        Ok(())
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
}
