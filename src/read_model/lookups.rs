//! The read model's point lookups, asked by the API, the catalog feed and
//! the saga worker (the list language is [`super::list`]). Each statement
//! reads the same on both engines but for a list parameter, bound with
//! [`TextList`] and tested with [`any_of`].

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::domain::ids::{BuildId, EntityId, VersionId, WorkspaceId};
use crate::domain::{DeployPolicy, Target};
use crate::on_db;
use crate::read_model::{DeployRow, StepRow, DEPLOY_COLUMNS};
use crate::store::bind::{any_of, TextList};
use crate::store::db::Db;

/// A build as a create resolves it.
#[derive(Debug, Clone, FromRow)]
pub struct BuildRef {
    pub id: BuildId,
    pub workspace_id: WorkspaceId,
    pub entity_id: EntityId,
    /// `succeeded` or `failed`.
    pub status: String,
    pub version_id: VersionId,
}

/// The build `id`, if it is in `scope`.
pub async fn build_in_scope(
    db: &Db,
    id: &BuildId,
    scope: &[String],
) -> sqlx::Result<Option<BuildRef>> {
    let sql = format!(
        "SELECT id, workspace_id, entity_id, status, version_id FROM builds \
         WHERE id = $1 AND {}",
        any_of(db.engine(), "workspace_id", 2)
    );
    on_db!(db, pool => sqlx::query_as(&sql).bind(id).bind(TextList(scope)).fetch_optional(pool).await)
}

/// The default version of entity `id`, if the entity is in `scope`
/// (`Some(None)`: it has none).
pub async fn entity_default_version(
    db: &Db,
    id: &EntityId,
    scope: &[String],
) -> sqlx::Result<Option<Option<VersionId>>> {
    let sql = format!(
        "SELECT default_version_id FROM entities WHERE id = $1 AND {}",
        any_of(db.engine(), "workspace_id", 2)
    );
    on_db!(db, pool => sqlx::query_scalar(&sql).bind(id).bind(TextList(scope)).fetch_optional(pool).await)
}

/// The newest successful build of an entity's version, in `scope`.
pub async fn latest_successful_build(
    db: &Db,
    entity: &EntityId,
    version: &VersionId,
    scope: &[String],
) -> sqlx::Result<Option<BuildRef>> {
    let sql = format!(
        "SELECT id, workspace_id, entity_id, status, version_id FROM builds \
         WHERE entity_id = $1 AND version_id = $2 AND status = 'succeeded' AND {} \
         ORDER BY created_at DESC, id DESC LIMIT 1",
        any_of(db.engine(), "workspace_id", 3)
    );
    on_db!(db, pool => sqlx::query_as(&sql)
        .bind(entity)
        .bind(version)
        .bind(TextList(scope))
        .fetch_optional(pool)
        .await)
}

/// A deploy row with its cancellation columns.
#[derive(Debug, FromRow)]
pub struct DeployWithCancellation {
    #[sqlx(flatten)]
    pub row: DeployRow,
    pub cancel_reason: Option<String>,
    pub cancelled_by: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// Deploy `id`, if it is in `scope`.
pub async fn deploy_in_scope(
    db: &Db,
    id: &str,
    scope: &[String],
) -> sqlx::Result<Option<DeployWithCancellation>> {
    let sql = format!(
        "SELECT {}, cancel_reason, cancelled_by, cancelled_at FROM deploys WHERE id = $1 AND {}",
        DEPLOY_COLUMNS.join(", "),
        any_of(db.engine(), "workspace_id", 2)
    );
    on_db!(db, pool => sqlx::query_as(&sql).bind(id).bind(TextList(scope)).fetch_optional(pool).await)
}

/// The steps of a deploy, in order.
pub async fn deploy_steps(db: &Db, id: &str) -> sqlx::Result<Vec<StepRow>> {
    on_db!(db, pool => sqlx::query_as(
        "SELECT name, status, started_at, completed_at, error FROM deploy_steps \
         WHERE deploy_id = $1 ORDER BY ordinal",
    )
    .bind(id)
    .fetch_all(pool)
    .await)
}

/// Whether deploy `id` completed (its files may be served).
pub async fn deploy_completed(db: &Db, id: &str) -> sqlx::Result<bool> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deploys WHERE id = $1 AND status = 'completed')",
    )
    .bind(id)
    .fetch_one(pool)
    .await)
}

/// The entity's live deploy.
pub async fn live_deploy(db: &Db, entity: &str) -> sqlx::Result<Option<String>> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT id FROM deploys WHERE entity_id = $1 AND live",
    )
    .bind(entity)
    .fetch_optional(pool)
    .await)
}

/// The rollback that pins the entity's production, if any.
pub async fn pinned_by(db: &Db, entity: &str) -> sqlx::Result<Option<String>> {
    on_db!(db, pool => sqlx::query_scalar::<_, Option<String>>(
        "SELECT pinned_by FROM releases WHERE entity_id = $1",
    )
    .bind(entity)
    .fetch_optional(pool)
    .await)
    .map(Option::flatten)
}

/// The entity's deploy policy, if the entity is known.
pub async fn deploy_policy(db: &Db, entity: &str) -> sqlx::Result<Option<DeployPolicy>> {
    let policy: Option<String> = on_db!(db, pool => sqlx::query_scalar(
        "SELECT deploy_policy FROM entities WHERE id = $1",
    )
    .bind(entity)
    .fetch_optional(pool)
    .await)?;
    policy
        .map(|p| p.parse().map_err(|e: String| sqlx::Error::Decode(e.into())))
        .transpose()
}

/// The entity's pending deploys of `target` numbered before `than`'s.
pub async fn older_pending_deploys(
    db: &Db,
    entity: &str,
    target: Target,
    than: u64,
) -> sqlx::Result<Vec<String>> {
    let than = i64::try_from(than).unwrap_or(i64::MAX);
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT id FROM deploys WHERE entity_id = $1 AND target = $2 AND status = 'pending' \
           AND sequence_number < $3 ORDER BY sequence_number",
    )
    .bind(entity)
    .bind(target.as_str())
    .bind(than)
    .fetch_all(pool)
    .await)
}

/// The workspace of entity `id`, if it is known.
pub async fn entity_workspace(db: &Db, id: &str) -> sqlx::Result<Option<String>> {
    on_db!(db, pool => sqlx::query_scalar("SELECT workspace_id FROM entities WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// The entity of workspace `ws` named `name`, if there is one (the oldest,
/// should upstream have recorded several).
pub async fn entity_named(db: &Db, ws: &str, name: &str) -> sqlx::Result<Option<String>> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT id FROM entities WHERE workspace_id = $1 AND name = $2 ORDER BY id LIMIT 1",
    )
    .bind(ws)
    .bind(name)
    .fetch_optional(pool)
    .await)
}

/// The deploy of the entity to drive next: one that runs already (one at
/// a time per entity), else the oldest pending production deploy, else the
/// oldest pending preview.
pub async fn next_unfinished_deploy(db: &Db, entity: &str) -> sqlx::Result<Option<String>> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT id FROM deploys WHERE entity_id = $1 AND status IN ('pending', 'running') \
         ORDER BY CASE WHEN status = 'running' THEN 0 WHEN target = 'production' THEN 1 ELSE 2 END, \
                  sequence_number \
         LIMIT 1",
    )
    .bind(entity)
    .fetch_optional(pool)
    .await)
}

/// Up to `limit` entities with a deploy that has not finished.
pub async fn entities_with_unfinished_deploys(db: &Db, limit: i64) -> sqlx::Result<Vec<String>> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT DISTINCT entity_id FROM deploys WHERE status IN ('pending', 'running') LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await)
}

/// What a deploy's steps work on: the build's artifact directory and
/// version, and its entity's default version.
pub async fn build_context(
    db: &Db,
    build: &str,
) -> sqlx::Result<Option<(Option<String>, String, Option<String>)>> {
    on_db!(db, pool => sqlx::query_as(
        "SELECT b.artifact_dir, b.version_id, e.default_version_id \
         FROM builds b LEFT JOIN entities e ON e.id = b.entity_id WHERE b.id = $1",
    )
    .bind(build)
    .fetch_optional(pool)
    .await)
}

/// Deploys per status, for the metrics.
pub async fn deploys_per_status(db: &Db) -> sqlx::Result<Vec<(String, i64)>> {
    on_db!(db, pool => sqlx::query_as("SELECT status, count(*) FROM deploys GROUP BY status")
        .fetch_all(pool)
        .await)
}
