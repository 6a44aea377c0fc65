//! Creating and cancelling deploys.

use cqrs_es::Aggregate;
use serde_json::{Map, Value};

use super::{refused, visible, Actor, Failed, Refusal, Services};
use crate::domain::deploy::{CreateDeploy, Deploy, DeployCommand, DeployError, Origin};
use crate::domain::ids::{BuildId, DeployId, EntityId};
use crate::domain::{Target, Trigger};
use crate::read_model::lookups::{self, BuildRef};
use crate::read_model::DeployRow;
use crate::store::commands::CommandError;
use crate::store::log::{self, LogPosition};

/// What to deploy.
#[derive(Debug, Clone)]
pub enum Source {
    /// This build.
    Build(BuildId),
    /// The latest successful build of the app's default version.
    App(EntityId),
}

/// A deploy to create.
#[derive(Debug, Clone)]
pub struct NewDeploy {
    /// Chosen by the caller of the use case (the API records it on the
    /// idempotency key first, so a retry creates the same deploy).
    pub id: DeployId,
    pub source: Source,
    pub metadata: Map<String, Value>,
    /// `None`: production when the build is of its entity's default
    /// version, else preview.
    pub target: Option<Target>,
}

/// Creates a deploy; answers its row as the read model shows it.
pub async fn create(
    s: Services<'_>,
    actor: Actor<'_>,
    new: NewDeploy,
) -> Result<DeployRow, Failed> {
    let build = resolve(s, actor, &new.source).await?;
    let scope = actor.caller.workspace_strings();
    let default_version = lookups::entity_default_version(s.db, &build.entity_id, &scope)
        .await?
        .flatten();
    let target = new
        .target
        .unwrap_or(if default_version == Some(build.version_id) {
            Target::Production
        } else {
            Target::Preview
        });
    let id = new.id.to_string();
    let command = DeployCommand::Create(CreateDeploy {
        deploy_id: new.id,
        workspace_id: build.workspace_id,
        entity_id: build.entity_id,
        build_id: build.id,
        version_id: Some(build.version_id),
        trigger: Trigger::Manual,
        target,
        origin: Origin::Build,
        reason: None,
        source_event_id: None,
        metadata: new.metadata,
        created_by: actor.caller.principal.clone(),
        at: crate::domain::time::now(),
    });
    let head = match s.commands.deploy(&id, command, &actor.meta()).await {
        Ok(head) => head,
        // A retry that took over an idempotency record: the deploy exists.
        Err(CommandError::Domain(DeployError::AlreadyExists)) => {
            log::stream_head(s.db, Deploy::TYPE, &id)
                .await?
                .unwrap_or(LogPosition::START)
        }
        Err(e) => return Err(refused(e).into()),
    };
    let superseded = super::releases::supersede_older(s.commands, new.id, &actor.meta())
        .await
        .map_err(Failed::after_commit)?;
    visible(s, head.max(superseded), &id).await?;
    lookups::deploy_in_scope(s.db, &id, &actor.caller.workspace_strings())
        .await
        .map_err(Failed::after_commit)?
        .map(|d| d.row)
        .ok_or_else(|| Failed::after_commit(anyhow::anyhow!("deploy {id} projected but not found")))
}

/// Cancels a deploy that is not terminal yet.
pub async fn cancel(
    s: Services<'_>,
    actor: Actor<'_>,
    id: &DeployId,
    reason: Option<String>,
) -> Result<(), Failed> {
    let id = id.to_string();
    let command = DeployCommand::Cancel {
        reason,
        by: actor.caller.principal.clone(),
        at: crate::domain::time::now(),
    };
    let head = s
        .commands
        .deploy(&id, command, &actor.meta())
        .await
        .map_err(refused)?;
    visible(s, head, &id).await
}

/// The build `source` names, inside the caller's workspaces.
async fn resolve(s: Services<'_>, actor: Actor<'_>, source: &Source) -> Result<BuildRef, Refusal> {
    let scope = actor.caller.workspace_strings();
    match source {
        Source::Build(id) => {
            let build = lookups::build_in_scope(s.db, id, &scope)
                .await?
                .ok_or_else(|| Refusal::NotFound(format!("build {id} not found")))?;
            if build.status != "succeeded" {
                return Err(Refusal::Unprocessable(format!(
                    "build {id} did not succeed; only a successful build can be deployed"
                )));
            }
            Ok(build)
        }
        Source::App(id) => {
            let version = lookups::entity_default_version(s.db, id, &scope)
                .await?
                .ok_or_else(|| Refusal::NotFound(format!("app {id} not found")))?
                .ok_or_else(|| {
                    Refusal::Unprocessable(format!("app {id} has no default version"))
                })?;
            lookups::latest_successful_build(s.db, id, &version, &scope)
                .await?
                .ok_or_else(|| {
                    Refusal::Unprocessable(format!(
                        "app {id} has no successful build of its default version {version}"
                    ))
                })
        }
    }
}
