//! The saga worker: it runs deploys (DESIGN.md decision 8).
//!
//! Work arrives two ways, and both end in [`Worker::drive_entity`]:
//! - the durable JetStream consumer `<prefix>_worker` (every
//!   `DeployCreated`, shared by any number of worker processes): the fast
//!   path;
//! - the sweeper, which every few seconds looks for deploys that are not
//!   terminal and drives any whose entity no worker holds: the safety net
//!   for a lost message or a dead worker. No deploy stays pending or
//!   running for ever.
//!
//! Driving an entity takes its lease ([`EntityLease`]: one deploy
//! per entity at a time) and runs its non-terminal deploys oldest first, so
//! later ones wait their turn. Driving a deploy is a loop that folds the
//! deploy's events into the aggregate and does the one next thing: start,
//! start the next step, run it, record its outcome, complete. It keeps no
//! state of its own, so a worker that replaces a dead one resumes where the
//! log says, a redelivered message never repeats a completed step, and a
//! cancel is seen at the next step boundary. Every command goes through the
//! same command path as the API; a message is acked only after the commands
//! it caused have committed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, Delivery, Settle};
use crate::domain::deploy::{Deploy, DeployCommand, DeployCreated, DeployEvent};
use crate::domain::DeployStatus;
use crate::hosting::manifests::{load_manifest, save_manifest};
use crate::hosting::{DeployTarget, Manifest, StepContext, StepError};
use crate::read_model::{lookups, DeploysProjection};
use crate::store::commands::{CommandError, CommandMeta, Commands};
use crate::store::db::Db;
use crate::store::lease::EntityLease;
use crate::store::log::{self, LogPosition, LogSignals};
use cqrs_es::Aggregate;

/// Tunables of the worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Deploys run at once by one worker process (on different entities).
    pub concurrency: usize,
    /// Longest one attempt of one step may take.
    pub step_timeout: Duration,
    /// Attempts of a step that fails transiently, before the deploy fails.
    pub attempts: u32,
    /// First pause between attempts (doubles each time).
    pub retry_backoff: Duration,
    /// How often the sweeper looks for deploys no one is driving.
    pub sweep_interval: Duration,
    /// JetStream's ack wait for the worker consumer; progress is reported
    /// well within it during a long step.
    pub ack_wait: Duration,
    pub data_dir: PathBuf,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            step_timeout: Duration::from_secs(600),
            attempts: 3,
            retry_backoff: Duration::from_millis(500),
            sweep_interval: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            data_dir: PathBuf::from("./data"),
        }
    }
}

/// Whether an entity could be driven.
#[derive(Debug, PartialEq, Eq)]
pub enum Drive {
    /// Every deploy of the entity is terminal (as far as the log shows).
    Done,
    /// Another worker holds the entity.
    Busy,
}

pub struct Worker {
    db: Db,
    commands: Arc<Commands>,
    signals: LogSignals,
    target: Arc<dyn DeployTarget>,
    settings: WorkerSettings,
    /// Identifies this worker in event metadata.
    name: String,
}

/// The worker's body for the `deploys` projection to catch up with its own
/// commands before it reads the read model again.
const PROJECTION_WAIT: Duration = Duration::from_secs(10);
/// A bound on the decisions one drive makes (a deploy takes about ten).
const MAX_DECISIONS: usize = 100;

impl Worker {
    pub fn new(
        commands: Arc<Commands>,
        signals: LogSignals,
        target: Arc<dyn DeployTarget>,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            db: commands.db().clone(),
            commands,
            signals,
            target,
            settings,
            name: format!("worker:{}:{}", std::process::id(), ulid::Ulid::generate()),
        }
    }

    /// Runs the entity's non-terminal deploys, oldest first, under its
    /// lease.
    pub async fn drive_entity(
        &self,
        entity: &str,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> anyhow::Result<Drive> {
        let Some(lease) = EntityLease::try_take(&self.db, entity).await? else {
            return Ok(Drive::Busy);
        };
        let result = self.drive_entity_leased(entity, heartbeat).await;
        lease.release().await;
        result.map(|()| Drive::Done)
    }

    async fn drive_entity_leased(
        &self,
        entity: &str,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> anyhow::Result<()> {
        let mut driven = Vec::new();
        loop {
            let next = lookups::next_unfinished_deploy(&self.db, entity).await?;
            let Some(id) = next else { return Ok(()) };
            if driven.contains(&id) {
                // The read model has not caught up with what we did; the
                // sweeper will look again.
                return Ok(());
            }
            let head = self.drive_deploy(&id, heartbeat).await?;
            log::wait_for_checkpoint(
                &self.db,
                &self.signals,
                DeploysProjection::NAME,
                head,
                PROJECTION_WAIT,
            )
            .await?;
            driven.push(id);
        }
    }

    /// The deploy as its events say.
    async fn load(&self, id: &str) -> anyhow::Result<(Deploy, Value)> {
        let events = log::read_stream(&self.db, Deploy::TYPE, id, 0, 10_000).await?;
        let meta = events
            .first()
            .map(|e| e.metadata.clone())
            .unwrap_or(Value::Null);
        let mut deploy = Deploy::default();
        for e in events {
            let event: DeployEvent = serde_json::from_value(e.payload)
                .with_context(|| format!("decoding event {} of {id}", e.sequence))?;
            deploy.apply(event);
        }
        Ok((deploy, meta))
    }

    fn meta(&self, created_meta: &Value) -> CommandMeta {
        let correlation = created_meta
            .get("correlationId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        CommandMeta {
            actor: "worker".into(),
            request_id: self.name.clone(),
            correlation_id: correlation,
            causation_id: created_meta
                .get("requestId")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// Runs one command; a refusal means the state moved (a cancel, another
    /// worker): the loop reloads and decides again.
    async fn command(
        &self,
        id: &str,
        command: DeployCommand,
        meta: &CommandMeta,
    ) -> anyhow::Result<LogPosition> {
        match self.commands.deploy(id, command, meta).await {
            Ok(head) => Ok(head),
            Err(CommandError::Domain(refused)) => {
                tracing::debug!(deploy = id, %refused, "command refused; reloading");
                Ok(log::stream_head(&self.db, Deploy::TYPE, id)
                    .await?
                    .unwrap_or(LogPosition::START))
            }
            Err(CommandError::Conflict) => Ok(LogPosition::START),
            Err(CommandError::Store(e)) => Err(anyhow::anyhow!(e)),
        }
    }

    /// Drives one deploy until it is terminal; returns its stream's head.
    /// Its logs carry the deploy id and the id of the request that created
    /// it (`correlation_id`).
    pub async fn drive_deploy(
        &self,
        id: &str,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> anyhow::Result<LogPosition> {
        use tracing::Instrument;
        let (_, created_meta) = self.load(id).await?;
        let correlation_id = created_meta
            .get("correlationId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let span = tracing::info_span!("deploy", deploy = id, correlation_id);
        async {
            tracing::info!("driving the deploy");
            let head = self.drive_deploy_steps(id, heartbeat).await;
            match &head {
                Ok(_) => tracing::info!("the deploy settled"),
                Err(error) => tracing::warn!(error = format!("{error:#}"), "the drive stopped"),
            }
            head
        }
        .instrument(span)
        .await
    }

    async fn drive_deploy_steps(
        &self,
        id: &str,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> anyhow::Result<LogPosition> {
        let mut head = LogPosition::START;
        for _ in 0..MAX_DECISIONS {
            let (deploy, created_meta) = self.load(id).await?;
            let meta = self.meta(&created_meta);
            let (Some(status), Some(created)) = (deploy.status, deploy.created.clone()) else {
                return Ok(head);
            };
            let now = crate::domain::time::now();
            let command = match status {
                s if s.is_terminal() => {
                    return Ok(log::stream_head(&self.db, Deploy::TYPE, id)
                        .await?
                        .unwrap_or(head))
                }
                DeployStatus::Pending => DeployCommand::Start { at: now },
                _ => {
                    let step = deploy
                        .running_step()
                        .or_else(|| deploy.next_step())
                        .cloned();
                    match step {
                        Some(step) if step.status == crate::domain::StepStatus::Pending => {
                            DeployCommand::StartStep {
                                step: step.name,
                                at: now,
                            }
                        }
                        Some(step) => {
                            let outcome = self.run_step(&created, &step.name, heartbeat).await;
                            let at = crate::domain::time::now();
                            match outcome {
                                Ok(output) => DeployCommand::CompleteStep {
                                    step: step.name,
                                    output,
                                    at,
                                },
                                Err(error) => {
                                    let message = format!("{}: {}", step.name, error.message);
                                    self.command(
                                        id,
                                        DeployCommand::FailStep {
                                            step: step.name,
                                            error: error.message,
                                            at,
                                        },
                                        &meta,
                                    )
                                    .await?;
                                    DeployCommand::Fail { error: message, at }
                                }
                            }
                        }
                        None => {
                            let urls = deploy
                                .steps
                                .iter()
                                .find(|s| s.name == "promote")
                                .and_then(|s| s.output.clone())
                                .unwrap_or(Value::Null);
                            let url =
                                |k: &str| urls.get(k).and_then(Value::as_str).map(str::to_string);
                            DeployCommand::Complete {
                                production_url: url("productionUrl"),
                                preview_url: url("previewUrl"),
                                at: now,
                            }
                        }
                    }
                }
            };
            head = self.command(id, command, &meta).await?;
        }
        anyhow::bail!("deploy {id} did not settle after {MAX_DECISIONS} decisions")
    }

    /// What a step of `created` works on.
    async fn context(&self, created: &DeployCreated) -> Result<StepContext, StepError> {
        let row = lookups::build_context(&self.db, &created.build_id.to_string())
            .await
            .map_err(|e| StepError::transient(format!("reading the build: {e}")))?;
        let (artifact_dir, version, default_version) = row.ok_or_else(|| {
            StepError::permanent(format!("build {} is not in the catalog", created.build_id))
        })?;
        let artifact_dir = artifact_dir.ok_or_else(|| {
            StepError::permanent(format!(
                "build {} has no artifact directory",
                created.build_id
            ))
        })?;
        Ok(StepContext {
            deploy_id: created.deploy_id,
            entity_id: created.entity_id,
            artifact_dir: artifact_dir.into(),
            production: default_version.as_deref() == Some(version.as_str()),
        })
    }

    /// The deploy's manifest as `prepare` saved it, or scanned again when
    /// this worker cannot see that file.
    async fn manifest(&self, ctx: &StepContext) -> Result<Manifest, StepError> {
        if let Some(m) = load_manifest(&self.settings.data_dir, &ctx.deploy_id)
            .map_err(|e| StepError::transient(format!("{e:#}")))?
        {
            return Ok(m);
        }
        self.scan(ctx).await
    }

    /// Scans the build's files and saves the manifest.
    async fn scan(&self, ctx: &StepContext) -> Result<Manifest, StepError> {
        let dir = ctx.artifact_dir.clone();
        let manifest = tokio::task::spawn_blocking(move || Manifest::scan(&dir))
            .await
            .map_err(|e| StepError::transient(format!("scan task: {e}")))?
            .map_err(|e| StepError::permanent(format!("{e:#}")))?;
        save_manifest(&self.settings.data_dir, &ctx.deploy_id, &manifest)
            .map_err(|e| StepError::transient(format!("{e:#}")))?;
        Ok(manifest)
    }

    async fn execute(
        &self,
        created: &DeployCreated,
        step: &str,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<Option<Value>, StepError> {
        let ctx = self.context(created).await?;
        match step {
            "prepare" => {
                // Always a fresh scan: a retried prepare sees the files as
                // they are now.
                let manifest = self.scan(&ctx).await?;
                let bytes: u64 = manifest.files.values().map(|f| f.size).sum();
                Ok(Some(
                    json!({ "files": manifest.files.len(), "bytes": bytes }),
                ))
            }
            "upload" => {
                let manifest = self.manifest(&ctx).await?;
                self.target.upload(&ctx, &manifest, heartbeat).await?;
                Ok(None)
            }
            "promote" => {
                let manifest = self.manifest(&ctx).await?;
                let urls = self.target.promote(&ctx, &manifest).await?;
                Ok(Some(json!({
                    "previewUrl": urls.preview_url,
                    "productionUrl": urls.production_url,
                })))
            }
            other => Err(StepError::permanent(format!("no such step {other:?}"))),
        }
    }

    /// One step with its timeout and retries.
    async fn run_step(
        &self,
        created: &DeployCreated,
        step: &str,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<Option<Value>, StepError> {
        let started = std::time::Instant::now();
        let result = self.run_step_attempts(created, step, heartbeat).await;
        metrics::histogram!(
            "deployd_step_duration_seconds",
            "step" => step.to_string(),
            "outcome" => if result.is_ok() { "completed" } else { "failed" }
        )
        .record(started.elapsed().as_secs_f64());
        result
    }

    async fn run_step_attempts(
        &self,
        created: &DeployCreated,
        step: &str,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<Option<Value>, StepError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = tokio::time::timeout(
                self.settings.step_timeout,
                self.execute(created, step, heartbeat),
            )
            .await
            .unwrap_or_else(|_| {
                Err(StepError::transient(format!(
                    "timed out after {} s",
                    self.settings.step_timeout.as_secs_f64()
                )))
            });
            match outcome {
                Err(e) if e.transient && attempt < self.settings.attempts => {
                    let pause = self.settings.retry_backoff * 2u32.pow(attempt - 1);
                    tracing::warn!(deploy = %created.deploy_id, step, attempt, error = %e, "step failed; retrying");
                    heartbeat();
                    tokio::time::sleep(pause).await;
                }
                Err(e) if e.transient => {
                    return Err(StepError::permanent(format!(
                        "{} (gave up after {attempt} attempts)",
                        e.message
                    )))
                }
                other => return other,
            }
        }
    }

    /// Drives every entity that has a non-terminal deploy and no worker.
    pub async fn sweep(self: &Arc<Self>, permits: &Arc<Semaphore>) -> anyhow::Result<usize> {
        let entities = lookups::entities_with_unfinished_deploys(&self.db, 500).await?;
        let mut started = 0;
        for entity in entities {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            started += 1;
            let worker = self.clone();
            tokio::spawn(async move {
                if let Err(error) = worker.drive_entity(&entity, &|| {}).await {
                    tracing::error!(
                        entity,
                        error = format!("{error:#}"),
                        "sweeper: drive failed"
                    );
                }
                drop(permit);
            });
        }
        Ok(started)
    }

    async fn handle_message(&self, message: &Delivery) -> Settle {
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
        let outcome = self.drive_entity(entity, &progress).await;
        ticker.abort();
        match outcome {
            Ok(Drive::Done) => Settle::Ack,
            Ok(Drive::Busy) => Settle::Retry(Duration::from_secs(1)),
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
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let sweeper = {
            let (worker, permits, shutdown) = (self.clone(), permits.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(worker.settings.sweep_interval) => {}
                    }
                    if let Err(error) = worker.sweep(&permits).await {
                        tracing::warn!(error = format!("{error:#}"), "sweeper failed");
                    }
                }
            })
        };
        while !shutdown.is_cancelled() {
            if let Err(error) = self.consume(&bus, &permits, &shutdown).await {
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
        // Let deploys in flight reach a step boundary: the permits come back
        // when they finish.
        let _ = permits
            .acquire_many(self.settings.concurrency.max(1) as u32)
            .await;
    }

    async fn consume(
        self: &Arc<Self>,
        bus: &Bus,
        permits: &Arc<Semaphore>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut messages = bus
            .worker_deliveries(self.settings.ack_wait, self.settings.concurrency.max(1))
            .await?;
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                permit = permits.clone().acquire_owned() => permit?,
            };
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
            let worker = self.clone();
            tokio::spawn(async move {
                let settle = worker.handle_message(&message).await;
                if let Err(error) = message.settle(settle).await {
                    tracing::warn!(%error, "worker: ack failed; the message will be redelivered");
                }
                drop(permit);
            });
        }
    }
}
