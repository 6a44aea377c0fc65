//! Creating an app or function through the API, for installations without
//! an upstream catalog (and for `deployd deploy --create`). It is recorded
//! as the same `EntityUpserted` event a catalog document makes, so the
//! read model, replay and the feeds treat both alike; the event's
//! `sourceEventId` is a fresh id, as no upstream event caused it.

use std::time::Duration;

use super::{Actor, Failed, Refusal, Services};
use crate::domain::catalog::{CatalogError, EntityUpserted, UpsertEntity};
use crate::domain::ids::{EntityId, EntityKind, EventId, VersionId, WorkspaceId};
use crate::domain::DeployPolicy;
use crate::read_model::catalog_pages::{self, EntityView};
use crate::read_model::{lookups, CatalogProjection};
use crate::store::commands::CommandError;
use crate::store::lease::EntityLease;
use crate::store::log;

/// An entity to create.
#[derive(Debug, Clone)]
pub struct NewEntity {
    pub workspace: WorkspaceId,
    pub kind: EntityKind,
    /// Unique in its workspace among the entities the read model shows.
    pub name: String,
    pub auto_deploy: bool,
    pub deploy_policy: DeployPolicy,
}

/// Creates the entity with a default version of its own; answers it as the
/// read model shows it. A name the workspace already uses is a conflict.
///
/// Names are made unique under a lock per workspace (an advisory lock on
/// PostgreSQL, so across API servers): the name is looked up, the event
/// appended and the catalog projection waited for before the lock is given
/// back, so the next create of the workspace sees this one.
pub async fn create(
    s: Services<'_>,
    actor: Actor<'_>,
    new: NewEntity,
) -> Result<EntityView, Failed> {
    let lock = names_lock(s, &new.workspace).await?;
    let result = create_locked(s, actor, new).await;
    lock.release().await;
    result
}

async fn create_locked(
    s: Services<'_>,
    actor: Actor<'_>,
    new: NewEntity,
) -> Result<EntityView, Failed> {
    let ws = new.workspace.to_string();
    if let Some(existing) = lookups::entity_named(s.db, &ws, &new.name).await? {
        return Err(Refusal::Conflict(format!(
            "workspace {ws} already has an entity named {:?}: {existing}",
            new.name
        ))
        .into());
    }
    let id = EntityId::new(new.kind);
    let event = EntityUpserted {
        workspace_id: new.workspace,
        entity_id: id,
        kind: new.kind,
        name: new.name,
        default_version_id: Some(VersionId::generate()),
        auto_deploy: new.auto_deploy,
        deploy_policy: new.deploy_policy,
        source_event_id: EventId::generate(),
        occurred_at: crate::domain::time::now(),
    };
    let id = id.to_string();
    let head = s
        .commands
        .entity(&id, UpsertEntity(event), &actor.meta())
        .await
        .map_err(|e| match e {
            // A fresh id has no stream, so this cannot happen; said anyway.
            CommandError::Domain(e @ CatalogError::WrongWorkspace { .. }) => {
                Refusal::Conflict(e.to_string())
            }
            other => Refusal::Internal(anyhow::anyhow!(other.to_string())),
        })?;
    let shown = log::wait_for_checkpoint(
        s.db,
        s.signals,
        CatalogProjection::NAME,
        head,
        s.projection_wait,
    )
    .await
    .map_err(Failed::after_commit)?;
    if !shown {
        return Err(Failed::after_commit(Refusal::Behind { id }));
    }
    catalog_pages::entity(s.db, &id, &actor.caller.workspace_strings())
        .await
        .map_err(Failed::after_commit)?
        .ok_or_else(|| Failed::after_commit(anyhow::anyhow!("entity {id} projected but not found")))
}

/// The workspace's names lock, waited for (polling: creates are short).
async fn names_lock(s: Services<'_>, ws: &WorkspaceId) -> Result<EntityLease, Refusal> {
    let key = format!("deployd.entity-names.{ws}");
    let deadline = tokio::time::Instant::now() + s.projection_wait;
    loop {
        if let Some(lease) = s.leases.try_take_named(key.clone()).await? {
            return Ok(lease);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Refusal::Internal(anyhow::anyhow!(
                "another create in workspace {ws} held its names for {} ms",
                s.projection_wait.as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
