//! The catalog feed: upstream documents about entities and builds, from
//! NATS (`<prefix>.catalog.>`) or from `deployd catalog import`, through one
//! handler. The handler is idempotent by the document's `eventId` (the
//! aggregates see a redelivery and write nothing), so at-least-once delivery
//! is enough.

pub mod consumer;
pub mod document;

use std::sync::Arc;
use std::time::Duration;

use crate::store::Db;
use anyhow::Context;

use cqrs_es::Aggregate;

use crate::domain::catalog::{
    Build, BuildEvent, CatalogError, Entity, EntityEvent, RecordBuild, UpsertEntity,
};
use crate::domain::deploy::{CreateDeploy, DeployCommand, DeployError, Origin};
use crate::domain::ids::DeployId;
use crate::domain::FieldError;
use crate::domain::{Target, Trigger};
use crate::hosting::artifacts::ArtifactRoots;
use crate::read_model::CatalogProjection;
use crate::readers::projector;
use crate::store::commands::{CommandError, CommandMeta, Commands};
use crate::store::log::LogPosition;

pub use document::CatalogDocument;

/// Why a document was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The document is wrong; sending it again will not help.
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// Something failed on our side; the document may be sent again.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            if e.pointer.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.pointer, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Records catalog documents as events.
#[derive(Clone)]
pub struct CatalogFeed {
    commands: Arc<Commands>,
    /// Where a build's `artifactDir` may be.
    artifacts: Arc<ArtifactRoots>,
}

impl CatalogFeed {
    pub fn new(commands: Arc<Commands>, artifacts: ArtifactRoots) -> Self {
        Self {
            commands,
            artifacts: Arc::new(artifacts),
        }
    }

    fn db(&self) -> &Db {
        self.commands.db()
    }

    /// Parses and records one document; returns where its stream's head is.
    pub async fn handle_text(&self, text: &str, carrier: &str) -> Result<LogPosition, Rejection> {
        Ok(self.handle_text_reporting(text, carrier).await?.head)
    }

    /// Parses and records one document, saying whether it wrote anything.
    pub async fn handle_text_reporting(
        &self,
        text: &str,
        carrier: &str,
    ) -> Result<Handled, Rejection> {
        let document = document::parse(text).map_err(Rejection::Invalid)?;
        let (aggregate, id) = match &document {
            CatalogDocument::Entity(e) => (Entity::TYPE, e.entity_id.to_string()),
            CatalogDocument::Build(b) => (Build::TYPE, b.recorded().build_id.to_string()),
        };
        let before = crate::store::log::stream_head(self.db(), aggregate, &id)
            .await
            .map_err(|e| Rejection::Failed(e.into()))?;
        let head = self.handle(document, carrier).await?;
        let after = crate::store::log::stream_head(self.db(), aggregate, &id)
            .await
            .map_err(|e| Rejection::Failed(e.into()))?;
        Ok(Handled {
            head,
            new: after != before,
        })
    }

    /// Records one parsed document.
    pub async fn handle(
        &self,
        document: CatalogDocument,
        carrier: &str,
    ) -> Result<LogPosition, Rejection> {
        let event_id = document.event_id().to_string();
        let meta = CommandMeta {
            actor: "catalog".into(),
            request_id: carrier.to_string(),
            correlation_id: event_id.clone(),
            causation_id: Some(event_id),
        };
        let result = match document {
            CatalogDocument::Entity(e) => {
                let id = e.entity_id.to_string();
                self.commands.entity(&id, UpsertEntity(e), &meta).await
            }
            CatalogDocument::Build(b) => {
                let recorded = b.recorded().clone();
                if let Some(dir) = &recorded.artifact_dir {
                    // Only directories the operator allowed, never deployd's own.
                    self.artifacts
                        .check(std::path::Path::new(dir))
                        .map_err(|reason| {
                            Rejection::Invalid(vec![FieldError::new(
                                "build/artifactDir",
                                format!("build {}: {reason}", recorded.build_id),
                            )])
                        })?;
                }
                self.check_entity_workspace(&recorded).await?;
                let id = recorded.build_id.to_string();
                let succeeded = matches!(b, BuildEvent::BuildSucceeded(_));
                let result = self.commands.build(&id, RecordBuild(b), &meta).await;
                if result.is_ok() && succeeded {
                    // Also on a redelivery: the deploy's id comes from the
                    // upstream event, so this makes at most one.
                    let head = self.auto_deploy(&recorded, &meta).await?;
                    return Ok(result.unwrap_or_default().max(head));
                }
                result
            }
        };
        result.map_err(|e| match e {
            CommandError::Domain(CatalogError::WrongWorkspace { .. }) => {
                Rejection::Invalid(vec![FieldError::new("workspaceId", e.to_string())])
            }
            CommandError::Domain(CatalogError::BuildImmutable(_)) => {
                Rejection::Invalid(vec![FieldError::new("build/id", e.to_string())])
            }
            other => Rejection::Failed(anyhow::anyhow!(other.to_string())),
        })
    }

    /// A successful build of an entity's default version, when the entity
    /// has auto-deploy on, makes a deploy with trigger `auto` whose
    /// `sourceEventId` is the upstream event. The deploy's id is derived
    /// from that event's id, so one upstream event makes at most one deploy
    /// however often it is delivered. The entity is read from its own
    /// events, not the read model, so a build that arrives right after its
    /// entity is judged on the entity as recorded.
    async fn auto_deploy(
        &self,
        build: &crate::domain::catalog::BuildRecorded,
        meta: &CommandMeta,
    ) -> Result<LogPosition, Rejection> {
        let events = crate::store::log::read_stream(
            self.db(),
            "Entity",
            &build.entity_id.to_string(),
            0,
            i64::MAX,
        )
        .await
        .map_err(|e| Rejection::Failed(e.into()))?;
        let Some(last) = events.last() else {
            return Ok(LogPosition::START);
        };
        let EntityEvent::EntityUpserted(entity) = serde_json::from_value(last.payload.clone())
            .map_err(|e| Rejection::Failed(e.into()))?;
        if !entity.auto_deploy
            || entity.default_version_id != Some(build.version_id)
            || entity.workspace_id != build.workspace_id
        {
            return Ok(LogPosition::START);
        }
        let deploy_id = DeployId::from_ulid(build.source_event_id.ulid());
        let command = DeployCommand::Create(CreateDeploy {
            deploy_id,
            workspace_id: build.workspace_id,
            entity_id: build.entity_id,
            build_id: build.build_id,
            version_id: Some(build.version_id),
            trigger: Trigger::Auto,
            // a build of the default version, so production
            target: Target::Production,
            origin: Origin::Build,
            reason: None,
            source_event_id: Some(build.source_event_id),
            metadata: serde_json::Map::new(),
            created_by: "system".into(),
            at: crate::domain::time::now(),
        });
        let meta = CommandMeta {
            actor: "system".into(),
            ..meta.clone()
        };
        match self
            .commands
            .deploy(&deploy_id.to_string(), command, &meta)
            .await
        {
            Ok(head) => {
                let superseded =
                    crate::app::releases::supersede_older(&self.commands, deploy_id, &meta)
                        .await
                        .map_err(Rejection::Failed)?;
                Ok(head.max(superseded))
            }
            Err(CommandError::Domain(DeployError::AlreadyExists)) => Ok(LogPosition::START),
            Err(other) => Err(Rejection::Failed(anyhow::anyhow!(other.to_string()))),
        }
    }

    /// A build must name an entity of its own workspace (when the entity is
    /// known; builds may arrive before their entity).
    async fn check_entity_workspace(
        &self,
        build: &crate::domain::catalog::BuildRecorded,
    ) -> Result<(), Rejection> {
        let owner =
            crate::read_model::lookups::entity_workspace(self.db(), &build.entity_id.to_string())
                .await
                .map_err(|e| Rejection::Failed(e.into()))?;
        match owner {
            Some(ws) if ws != build.workspace_id.to_string() => {
                Err(Rejection::Invalid(vec![FieldError::new(
                    "build/entityId",
                    format!("{} belongs to another workspace", build.entity_id),
                )]))
            }
            _ => Ok(()),
        }
    }

    /// Waits until the catalog read model shows everything up to `head`,
    /// applying it in this process if no other projector does.
    pub async fn make_visible(&self, head: LogPosition) -> anyhow::Result<()> {
        let done =
            projector::catch_up_to(self.db(), &CatalogProjection, head, Duration::from_secs(60))
                .await?;
        anyhow::ensure!(done, "the catalog projection did not catch up within 60 s");
        Ok(())
    }
}

/// What handling one document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// Where the document's stream's head is.
    pub head: LogPosition,
    /// Whether it recorded an event; `false` for a document already
    /// recorded (the same `eventId`, identical content or an older one).
    pub new: bool,
}

/// The outcome of an import.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Documents that recorded an event.
    pub recorded: usize,
    /// Documents that were recorded before (a re-import): nothing written.
    pub already_recorded: usize,
    pub rejected: usize,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} documents recorded, {} already recorded, {} rejected",
            self.recorded, self.already_recorded, self.rejected
        )
    }
}

/// Imports documents, one per line; blank lines are skipped. Every bad line
/// is reported on `errors` with its number, and the good ones still go in.
pub async fn import(
    feed: &CatalogFeed,
    input: impl tokio::io::AsyncBufRead + Unpin,
    mut errors: impl std::io::Write,
) -> anyhow::Result<ImportReport> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = input.lines();
    let mut report = ImportReport::default();
    let mut head = LogPosition::START;
    let mut number = 0usize;
    while let Some(line) = lines.next_line().await.context("reading the input")? {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        match feed
            .handle_text_reporting(&line, &format!("import:{number}"))
            .await
        {
            Ok(handled) => {
                if handled.new {
                    report.recorded += 1;
                } else {
                    report.already_recorded += 1;
                }
                head = head.max(handled.head);
            }
            Err(Rejection::Invalid(problems)) => {
                report.rejected += 1;
                writeln!(errors, "line {number}: {}", describe(&problems))?;
            }
            Err(Rejection::Failed(error)) => {
                return Err(error.context(format!("line {number}")));
            }
        }
    }
    feed.make_visible(head).await?;
    Ok(report)
}
