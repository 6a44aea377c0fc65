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
//! The parts: [`decide`] (what to do next for a deploy, a pure function),
//! `steps` (running one step against the target), `sweeper`, `consumer`.
//!
//! Driving an entity runs its non-terminal deploys oldest first, each under
//! the entity's lease ([`EntityLease`]: one deploy per entity at a time), so
//! later ones wait their turn. A busy entity costs its own queue only:
//! - a message whose entity is held by another drive is acked at once
//!   ("parked"): its deploy is visible in the read model before the lease
//!   is tried, and every drive looks at the entity's queue again after it
//!   releases the lease, so the holder (or whoever takes the lease next)
//!   runs it. No message circles through the bus while it waits;
//! - between two deploys of one entity the drive gives its slot (a permit of
//!   the worker's concurrency) back and queues for it again, behind the
//!   deploys of other entities that wait for one.
//!
//! Driving a deploy is a loop that folds the
//! deploy's events into the aggregate and does the one next thing: start,
//! start the next step, run it, record its outcome, complete. It keeps no
//! state of its own, so a worker that replaces a dead one resumes where the
//! log says, a redelivered message never repeats a completed step, and a
//! cancel is seen at the next step boundary. Every command goes through the
//! same command path as the API; a message is acked only after the commands
//! it caused have committed, or when its entity is held (above).

mod consumer;
pub mod decide;
mod steps;
mod sweeper;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cqrs_es::Aggregate;
use serde_json::Value;

use crate::domain::deploy::{Deploy, DeployCommand, DeployEvent};
use crate::hosting::store::ArtifactStore;
use crate::hosting::{DeployTarget, StepError};
use crate::read_model::{lookups, DeploysProjection};
use crate::store::commands::{CommandError, CommandMeta, Commands};
use crate::store::db::Db;
use crate::store::lease::Leases;
use crate::store::log::{self, LogPosition, LogSignals};
use decide::Next;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

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
    /// The directories builds may be published from (see
    /// `hosting::artifacts`).
    pub artifact_roots: Vec<PathBuf>,
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
            artifact_roots: Vec::new(),
        }
    }
}

/// Whether an entity could be driven.
#[derive(Debug, PartialEq, Eq)]
pub enum Drive {
    /// Every deploy of the entity is terminal (as far as the log shows).
    Done,
    /// Another drive holds the entity; it looks at the entity's queue again
    /// when it releases it.
    Busy,
    /// The worker is stopping: the drive ended at a deploy boundary with
    /// deploys left.
    Stopped,
}

/// What one turn under the lease did.
enum Turn {
    /// It drove a deploy until it settled.
    Drove,
    /// Nothing (more) to drive, as far as the read model shows.
    Idle,
}

pub struct Worker {
    db: Db,
    commands: Arc<Commands>,
    signals: LogSignals,
    target: Arc<dyn DeployTarget>,
    /// Where builds' files and deploys' manifests are kept.
    store: Arc<ArtifactStore>,
    settings: WorkerSettings,
    /// Identifies this worker in event metadata.
    name: String,
    leases: Leases,
    /// Deploys driven (or messages handled) at once: `concurrency`.
    permits: Arc<Semaphore>,
    /// Cancelled when the worker stops: drives end at a deploy boundary.
    stop: CancellationToken,
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
        store: Arc<ArtifactStore>,
        settings: WorkerSettings,
    ) -> Self {
        let slots = settings.concurrency.max(1);
        let db = commands.db().clone();
        Self {
            // A lease is held or tried only under a permit.
            leases: Leases::new(&db, slots as u32 + 1),
            permits: Arc::new(Semaphore::new(slots)),
            stop: CancellationToken::new(),
            db,
            commands,
            signals,
            target,
            store,
            settings,
            name: format!("worker:{}:{}", std::process::id(), ulid::Ulid::generate()),
        }
    }

    /// Runs the entity's non-terminal deploys, oldest first, each under its
    /// lease, on the slot `permit` (given back and queued for again between
    /// deploys). `Busy` when another drive holds the entity: that drive
    /// looks at the entity's queue again after it releases the lease, so
    /// whatever the read model showed before this attempt is run.
    pub async fn drive_entity(
        &self,
        entity: &str,
        heartbeat: &(dyn Fn() + Send + Sync),
        mut permit: OwnedSemaphorePermit,
    ) -> anyhow::Result<Drive> {
        let mut driven = Vec::new();
        let mut held = false;
        loop {
            let Some(lease) = self.leases.try_take(entity).await? else {
                return Ok(if held { Drive::Done } else { Drive::Busy });
            };
            held = true;
            let turn = self.drive_next(entity, &mut driven, heartbeat).await;
            lease.release().await;
            match turn? {
                Turn::Drove => {
                    // Other entities waiting for a slot go first.
                    drop(permit);
                    permit = tokio::select! {
                        _ = self.stop.cancelled() => return Ok(Drive::Stopped),
                        permit = self.permits.clone().acquire_owned() => permit?,
                    };
                }
                Turn::Idle => {
                    // A message that found the lease taken while we held it
                    // was parked on us: look again now that it is free.
                    match lookups::next_unfinished_deploy(&self.db, entity).await? {
                        Some(id) if !driven.contains(&id) => continue,
                        // Nothing, or the read model still lags behind what
                        // we did (the sweeper looks again).
                        _ => return Ok(Drive::Done),
                    }
                }
            }
        }
    }

    /// Drives the entity's next deploy, under its lease.
    async fn drive_next(
        &self,
        entity: &str,
        driven: &mut Vec<String>,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> anyhow::Result<Turn> {
        let next = lookups::next_unfinished_deploy(&self.db, entity).await?;
        let Some(id) = next else {
            return Ok(Turn::Idle);
        };
        if driven.contains(&id) {
            // The read model has not caught up with what we did; the
            // sweeper will look again.
            return Ok(Turn::Idle);
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
        Ok(Turn::Drove)
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
            let Some(created) = deploy.created.clone() else {
                return Ok(head);
            };
            let now = crate::domain::time::now();
            let command = match decide::next(&deploy) {
                Next::Settled => {
                    return Ok(log::stream_head(&self.db, Deploy::TYPE, id)
                        .await?
                        .unwrap_or(head))
                }
                Next::Start => DeployCommand::Start { at: now },
                Next::StartStep(step) => DeployCommand::StartStep {
                    step: step.to_string(),
                    at: now,
                },
                Next::RunStep(step) => {
                    let outcome = self.run_step(&created, step, heartbeat).await;
                    self.outcome(id, step.as_str(), outcome, &meta).await?
                }
                Next::UnknownStep(step) => {
                    let outcome = Err(StepError::permanent(format!("no such step {step:?}")));
                    self.outcome(id, &step, outcome, &meta).await?
                }
                Next::Complete {
                    production_url,
                    preview_url,
                } => DeployCommand::Complete {
                    production_url,
                    preview_url,
                    pinned_by: self.pinned_by(&created).await?,
                    at: now,
                },
            };
            head = self.command(id, command, &meta).await?;
        }
        anyhow::bail!("deploy {id} did not settle after {MAX_DECISIONS} decisions")
    }

    /// The command that records a step's outcome: `CompleteStep`, or
    /// `FailStep` (recorded here) followed by `Fail`.
    async fn outcome(
        &self,
        id: &str,
        step: &str,
        outcome: Result<Option<Value>, StepError>,
        meta: &CommandMeta,
    ) -> anyhow::Result<DeployCommand> {
        let at = crate::domain::time::now();
        Ok(match outcome {
            Ok(output) => DeployCommand::CompleteStep {
                step: step.to_string(),
                output,
                at,
            },
            Err(error) => {
                let message = format!("{step}: {}", error.message);
                let fail_step = DeployCommand::FailStep {
                    step: step.to_string(),
                    error: error.message,
                    at,
                };
                self.command(id, fail_step, meta).await?;
                DeployCommand::Fail { error: message, at }
            }
        })
    }
}
