//! The release use cases (`spec/releases.md`): roll back to an earlier
//! production deploy, promote a finished deploy, and supersede older
//! pending deploys under an entity's `latest` policy.
//!
//! Each is a function of typed inputs, called by the API and callable
//! without HTTP (tests, tools). They look up what the rules need, then the
//! `Deploy` aggregate decides: whether the source is eligible
//! ([`Origin`], `Ineligible`), what the new deploy is, and what a
//! supersede does. A refused request records nothing.

use cqrs_es::Aggregate;

use super::{Actor, Failed, Refusal, Services};
use crate::domain::deploy::{
    CreateDeploy, Deploy, DeployCommand, DeployError, DeployEvent, Origin, SourceDeploy,
};
use crate::domain::ids::DeployId;
use crate::domain::{DeployPolicy, Target, Trigger};
use crate::read_model::{lookups, DeployRow};
use crate::store::commands::{CommandError, CommandMeta, Commands};
use crate::store::db::Db;
use crate::store::log::{self, LogPosition};

/// Which release a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseKind {
    /// `POST /api/deploys/{id}/rollback`
    Rollback,
    /// `POST /api/deploys/{id}/promote`
    Promotion,
}

/// A rollback or promotion, as asked.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub kind: ReleaseKind,
    /// The deploy to go back to, or to promote.
    pub source: DeployId,
    /// The new deploy's id (the API reserves it with the idempotency key,
    /// so a retried request finds the deploy it made).
    pub deploy_id: DeployId,
    pub reason: Option<String>,
}

/// The deploy `id` folded from its events (`Deploy::default()` when it
/// has none).
async fn load(db: &Db, id: &str) -> anyhow::Result<Deploy> {
    let mut deploy = Deploy::default();
    for e in log::read_stream(db, Deploy::TYPE, id, 0, i64::MAX).await? {
        deploy.apply(serde_json::from_value::<DeployEvent>(e.payload)?);
    }
    Ok(deploy)
}

/// Makes the new deploy of a rollback or promotion; answers its row as
/// the read model shows it. A source outside the caller's workspaces is
/// not found; an ineligible one is a conflict naming why, and nothing is
/// recorded.
pub async fn release(
    s: Services<'_>,
    actor: Actor<'_>,
    request: ReleaseRequest,
) -> Result<DeployRow, Failed> {
    let scope = actor.caller.workspace_strings();
    let source_id = request.source.to_string();
    let not_found = || Refusal::NotFound(format!("deploy {source_id} not found"));
    let row = lookups::deploy_in_scope(s.db, &source_id, &scope)
        .await?
        .ok_or_else(not_found)?
        .row;
    let folded = load(s.db, &source_id).await.map_err(Refusal::Internal)?;
    let (Some(status), Some(created)) = (folded.status, folded.created) else {
        return Err(not_found().into());
    };
    let source = SourceDeploy {
        id: request.source,
        status,
        target: created.target,
        live: row.live,
    };
    let (origin, trigger) = match request.kind {
        ReleaseKind::Rollback => (Origin::Rollback(source), Trigger::Rollback),
        ReleaseKind::Promotion => (Origin::Promotion(source), Trigger::Manual),
    };
    let command = DeployCommand::Create(CreateDeploy {
        deploy_id: request.deploy_id,
        workspace_id: created.workspace_id,
        entity_id: created.entity_id,
        build_id: created.build_id,
        version_id: created.version_id,
        trigger,
        target: Target::Production,
        origin,
        reason: request.reason,
        source_event_id: None,
        metadata: serde_json::Map::new(),
        created_by: actor.caller.principal.clone(),
        at: crate::domain::time::now(),
    });
    let id = request.deploy_id.to_string();
    let meta = actor.meta();
    let head = match s.commands.deploy(&id, command, &meta).await {
        Ok(head) => head,
        // A retry that took over an idempotency record: the deploy exists.
        Err(CommandError::Domain(DeployError::AlreadyExists)) => {
            log::stream_head(s.db, Deploy::TYPE, &id)
                .await?
                .unwrap_or(LogPosition::START)
        }
        Err(e) => return Err(super::refused(e).into()),
    };
    let superseded = supersede_older(s.commands, request.deploy_id, &meta)
        .await
        .map_err(Failed::after_commit)?;
    super::visible(s, head.max(superseded), &id).await?;
    lookups::deploy_in_scope(s.db, &id, &scope)
        .await
        .map_err(Failed::after_commit)?
        .map(|d| d.row)
        .ok_or_else(|| Failed::after_commit(anyhow::anyhow!("deploy {id} projected but not found")))
}

/// Under the entity's `latest` policy, cancels every older deploy of the
/// same entity and target that is still pending, as superseded by
/// `newer` (by `system`, each an event). A deploy that already runs is
/// never interrupted; under `queue` nothing happens. Returns the log
/// position of the last cancellation.
pub async fn supersede_older(
    commands: &Commands,
    newer: DeployId,
    meta: &CommandMeta,
) -> anyhow::Result<LogPosition> {
    let db = commands.db();
    let deploy = load(db, &newer.to_string()).await?;
    let Some(created) = deploy.created else {
        return Ok(LogPosition::START);
    };
    let entity = created.entity_id.to_string();
    if lookups::deploy_policy(db, &entity).await? != Some(DeployPolicy::Latest) {
        return Ok(LogPosition::START);
    }
    let meta = CommandMeta {
        actor: "system".into(),
        ..meta.clone()
    };
    let mut head = LogPosition::START;
    for older in
        lookups::older_pending_deploys(db, &entity, created.target, created.sequence_number).await?
    {
        let command = DeployCommand::Supersede {
            by: newer,
            at: crate::domain::time::now(),
        };
        match commands.deploy(&older, command, &meta).await {
            Ok(at) => head = head.max(at),
            // It moved on meanwhile (started, or cancelled): left alone.
            Err(CommandError::Domain(_) | CommandError::Conflict) => {}
            Err(CommandError::Store(e)) => return Err(anyhow::anyhow!(e)),
        }
    }
    Ok(head)
}
