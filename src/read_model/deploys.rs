//! The `deploys` projection: `deploys` and `deploy_steps` from Deploy events.

use crate::domain::deploy::Deploy;
use cqrs_es::Aggregate as _;
use std::collections::HashMap;

use serde::Deserialize;
use sqlx::PgConnection;

use crate::store::db::Tx;

use crate::domain::deploy::{DeployEvent, Release};
use crate::domain::StepStatus;
use crate::read_model::fold::{self, FoldedDeploy};
use crate::read_model::{DeployRow, StepRow};
use crate::readers::projector::Projection;
use crate::store::log::StoredEvent;

pub struct DeploysProjection;

impl DeploysProjection {
    pub const NAME: &'static str = "deploys";
}

/// Runs one statement (the same text on both engines) in the transaction.
macro_rules! exec {
    ($tx:expr, $query:expr) => {
        crate::on_tx!($tx, c => $query.execute(c).await.map(|r| r.rows_affected()))
    };
}

async fn set_step(
    tx: &mut Tx,
    deploy: &str,
    step: &str,
    status: StepStatus,
    started: Option<chrono::DateTime<chrono::Utc>>,
    completed: Option<chrono::DateTime<chrono::Utc>>,
    error: Option<&str>,
) -> sqlx::Result<()> {
    exec!(
        tx,
        sqlx::query(include_str!("../../projections/deploys/step.sql"))
            .bind(deploy)
            .bind(step)
            .bind(status.as_str())
            .bind(started)
            .bind(completed)
            .bind(error)
    )
    .map(drop)
}

async fn skip_pending_steps(tx: &mut Tx, deploy: &str) -> sqlx::Result<()> {
    exec!(
        tx,
        sqlx::query(include_str!(
            "../../projections/deploys/skip_pending_steps.sql"
        ))
        .bind(deploy)
    )
    .map(drop)
}

/// A production deploy completed: when it went live, `live` moves to it
/// (off the entity's previous live deploy first, in this transaction), and
/// the entity's release row says what is live and what pins production.
async fn apply_release(
    tx: &mut Tx,
    deploy: &str,
    release: &Release,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    if release.live {
        exec!(
            &mut *tx,
            sqlx::query(include_str!("../../projections/deploys/live_off.sql")).bind(deploy)
        )?;
        exec!(
            &mut *tx,
            sqlx::query(include_str!("../../projections/deploys/live_on.sql")).bind(deploy)
        )?;
    }
    exec!(
        &mut *tx,
        sqlx::query(include_str!("../../projections/deploys/release.sql"))
            .bind(deploy)
            .bind(release.live)
            .bind(at)
            .bind(release.pinned_by.map(|d| d.to_string()))
    )
    .map(drop)
}

#[async_trait::async_trait]
impl Projection for DeploysProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["deploys", "deploy_steps", "releases"]
    }

    async fn rebuild(&self, tx: &mut Tx, events: &[StoredEvent]) -> anyhow::Result<()> {
        match tx {
            Tx::Postgres(t) => rebuild(t, events).await,
            // In-process SQLite writes row by row as fast as in bulk.
            Tx::Sqlite(..) => {
                for event in events {
                    self.apply(tx, event).await?;
                }
                Ok(())
            }
        }
    }

    async fn apply(&self, tx: &mut Tx, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != Deploy::TYPE {
            return Ok(());
        }
        let id = event.aggregate_id.as_str();
        let decoded: DeployEvent = serde_json::from_value(event.payload.clone())?;
        if let DeployEvent::DeployCreated(c) = &decoded {
            let sequence_number = i64::try_from(c.sequence_number)?;
            exec!(
                &mut *tx,
                sqlx::query(include_str!("../../projections/deploys/created.sql"))
                    .bind(id)
                    .bind(c.workspace_id.to_string())
                    .bind(c.entity_id.to_string())
                    .bind(sequence_number)
                    .bind(c.build_id.to_string())
                    .bind(c.trigger.as_str())
                    .bind(c.source_event_id.map(|e| e.to_string()))
                    .bind(serde_json::Value::Object(c.metadata.clone()))
                    .bind(&c.created_by)
                    .bind(c.created_at)
                    .bind(event.sequence)
                    .bind(c.target.as_str())
                    .bind(c.rollback_of.map(|d| d.to_string()))
                    .bind(c.promoted_from.map(|d| d.to_string()))
            )?;
            match tx {
                Tx::Postgres(t) => {
                    sqlx::query(include_str!("../../projections/deploys/created_steps.sql"))
                        .bind(id)
                        .bind(&c.steps)
                        .execute(&mut **t)
                        .await?;
                }
                Tx::Sqlite(t, _) => {
                    sqlx::query(include_str!(
                        "../../projections/deploys/created_steps.sqlite.sql"
                    ))
                    .bind(id)
                    .bind(serde_json::to_string(&c.steps)?)
                    .execute(&mut **t)
                    .await?;
                }
            }
            return Ok(());
        }
        let claimed = exec!(
            &mut *tx,
            sqlx::query(include_str!("../../projections/deploys/guard.sql"))
                .bind(id)
                .bind(event.sequence)
        )?;
        if claimed == 0 {
            return Ok(());
        }
        match decoded {
            DeployEvent::DeployCreated(_) => {}
            DeployEvent::DeployStarted(e) => {
                exec!(
                    &mut *tx,
                    sqlx::query(include_str!("../../projections/deploys/started.sql"))
                        .bind(id)
                        .bind(e.started_at)
                )?;
            }
            DeployEvent::StepStarted(e) => {
                set_step(tx, id, &e.step, StepStatus::Running, Some(e.at), None, None).await?;
            }
            DeployEvent::StepCompleted(e) => {
                set_step(
                    tx,
                    id,
                    &e.step,
                    StepStatus::Completed,
                    None,
                    Some(e.at),
                    None,
                )
                .await?;
            }
            DeployEvent::StepFailed(e) => {
                let error = Some(e.error.as_str());
                set_step(tx, id, &e.step, StepStatus::Failed, None, Some(e.at), error).await?;
            }
            DeployEvent::StepDiscarded(e) => {
                let error = e.error.as_deref();
                set_step(
                    tx,
                    id,
                    &e.step,
                    StepStatus::Discarded,
                    None,
                    Some(e.at),
                    error,
                )
                .await?;
            }
            DeployEvent::DeployCompleted(e) => {
                exec!(
                    &mut *tx,
                    sqlx::query(include_str!("../../projections/deploys/completed.sql"))
                        .bind(id)
                        .bind(e.completed_at)
                        .bind(&e.production_url)
                        .bind(&e.preview_url)
                )?;
                if let Some(release) = &e.release {
                    apply_release(tx, id, release, e.completed_at).await?;
                }
            }
            DeployEvent::DeployFailed(e) => {
                exec!(
                    &mut *tx,
                    sqlx::query(include_str!("../../projections/deploys/failed.sql"))
                        .bind(id)
                        .bind(e.failed_at)
                        .bind(&e.error)
                )?;
                skip_pending_steps(tx, id).await?;
            }
            DeployEvent::DeployCancelled(e) => {
                exec!(
                    &mut *tx,
                    sqlx::query(include_str!("../../projections/deploys/cancelled.sql"))
                        .bind(id)
                        .bind(e.cancelled_at)
                        .bind(&e.reason)
                        .bind(&e.cancelled_by)
                        .bind(e.superseded_by.map(|d| d.to_string()))
                )?;
                skip_pending_steps(tx, id).await?;
            }
        }
        Ok(())
    }
}

/// The columns of `deploys` and `deploy_steps`, in the order the bulk
/// rebuild loads and writes them.
const ROW_COLUMNS: &str = "id, workspace_id, entity_id, sequence_number, build_id, status, \
     trigger, source_event_id, production_url, preview_url, error, metadata, created_by, \
     started_at, completed_at, created_at, cancel_reason, cancelled_by, cancelled_at, \
     event_sequence, target, live, rollback_of, promoted_from, superseded_by";

#[derive(sqlx::FromRow)]
struct StoredRow {
    #[sqlx(flatten)]
    row: DeployRow,
    cancel_reason: Option<String>,
    cancelled_by: Option<String>,
    cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
    event_sequence: i64,
}

#[derive(sqlx::FromRow)]
struct StoredStep {
    deploy_id: String,
    #[sqlx(flatten)]
    step: StepRow,
}

/// The deploys with these ids as the tables hold them now.
async fn load(
    tx: &mut PgConnection,
    ids: &[String],
) -> anyhow::Result<HashMap<String, FoldedDeploy>> {
    let rows: Vec<StoredRow> = sqlx::query_as(&format!(
        "SELECT {ROW_COLUMNS} FROM deploys WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut out: HashMap<String, FoldedDeploy> = rows
        .into_iter()
        .map(|r| {
            (
                r.row.id.to_string(),
                FoldedDeploy {
                    row: r.row,
                    steps: vec![],
                    cancel_reason: r.cancel_reason,
                    cancelled_by: r.cancelled_by,
                    cancelled_at: r.cancelled_at,
                    event_sequence: r.event_sequence,
                },
            )
        })
        .collect();
    let steps: Vec<StoredStep> = sqlx::query_as(
        "SELECT deploy_id, name, status, started_at, completed_at, error FROM deploy_steps \
         WHERE deploy_id = ANY($1) ORDER BY deploy_id, ordinal",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    for s in steps {
        if let Some(d) = out.get_mut(&s.deploy_id) {
            d.steps.push(s.step);
        }
    }
    Ok(out)
}

/// Writes folded deploys in three statements: the old rows of `replace`
/// go, then every deploy and step of `deploys` is inserted from arrays.
async fn store(
    tx: &mut PgConnection,
    replace: &[String],
    deploys: &[&FoldedDeploy],
) -> anyhow::Result<()> {
    if !replace.is_empty() {
        // Steps first: during a rebuild the foreign key (and its cascade)
        // is only added after the load.
        sqlx::query("DELETE FROM deploy_steps WHERE deploy_id = ANY($1)")
            .bind(replace)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM deploys WHERE id = ANY($1)")
            .bind(replace)
            .execute(&mut *tx)
            .await?;
    }
    let col = |f: &dyn Fn(&FoldedDeploy) -> Option<String>| -> Vec<Option<String>> {
        deploys.iter().map(|d| f(d)).collect()
    };
    let time = |f: &dyn Fn(&FoldedDeploy) -> Option<chrono::DateTime<chrono::Utc>>| {
        deploys.iter().map(|d| f(d)).collect::<Vec<_>>()
    };
    sqlx::query(&format!(
        "INSERT INTO deploys ({ROW_COLUMNS}) SELECT * FROM UNNEST(\
         $1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::text[], $11::text[], $12::jsonb[], $13::text[], \
         $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::text[], $18::text[], \
         $19::timestamptz[], $20::bigint[], $21::text[], $22::bool[], $23::text[], $24::text[], \
         $25::text[])"
    ))
    .bind(col(&|d| Some(d.row.id.to_string())))
    .bind(col(&|d| Some(d.row.workspace_id.to_string())))
    .bind(col(&|d| Some(d.row.entity_id.to_string())))
    .bind(
        deploys
            .iter()
            .map(|d| d.row.sequence_number)
            .collect::<Vec<_>>(),
    )
    .bind(col(&|d| Some(d.row.build_id.to_string())))
    .bind(col(&|d| Some(d.row.status.0.as_str().to_string())))
    .bind(col(&|d| Some(d.row.trigger.0.as_str().to_string())))
    .bind(col(&|d| d.row.source_event_id.clone()))
    .bind(col(&|d| d.row.production_url.clone()))
    .bind(col(&|d| d.row.preview_url.clone()))
    .bind(col(&|d| d.row.error.clone()))
    .bind(
        deploys
            .iter()
            .map(|d| d.row.metadata.clone())
            .collect::<Vec<_>>(),
    )
    .bind(col(&|d| Some(d.row.created_by.clone())))
    .bind(time(&|d| d.row.started_at))
    .bind(time(&|d| d.row.completed_at))
    .bind(time(&|d| Some(d.row.created_at)))
    .bind(col(&|d| d.cancel_reason.clone()))
    .bind(col(&|d| d.cancelled_by.clone()))
    .bind(time(&|d| d.cancelled_at))
    .bind(deploys.iter().map(|d| d.event_sequence).collect::<Vec<_>>())
    .bind(col(&|d| Some(d.row.target.0.as_str().to_string())))
    .bind(deploys.iter().map(|d| d.row.live).collect::<Vec<_>>())
    .bind(col(&|d| d.row.rollback_of.clone()))
    .bind(col(&|d| d.row.promoted_from.clone()))
    .bind(col(&|d| d.row.superseded_by.clone()))
    .execute(&mut *tx)
    .await?;

    let steps: Vec<(String, i32, &StepRow)> = deploys
        .iter()
        .flat_map(|d| {
            d.steps
                .iter()
                .enumerate()
                .map(|(i, s)| (d.row.id.to_string(), i as i32 + 1, s))
        })
        .collect();
    sqlx::query(
        "INSERT INTO deploy_steps (deploy_id, ordinal, name, status, started_at, completed_at, error) \
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], \
                              $6::timestamptz[], $7::text[])",
    )
    .bind(steps.iter().map(|s| s.0.clone()).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.2.name.as_str()).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.2.status.0.as_str()).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.2.started_at).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.2.completed_at).collect::<Vec<_>>())
    .bind(steps.iter().map(|s| s.2.error.as_deref()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The bulk rebuild: the batch's deploys are folded in memory
/// (`read_model::fold`, from their rows so far) and written back in a few
/// statements, instead of one statement per event (PostgreSQL).
pub(super) async fn rebuild(tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
    let mut order: Vec<String> = Vec::new();
    let mut decoded: Vec<(&StoredEvent, DeployEvent)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for event in events.iter().filter(|e| e.aggregate_type == Deploy::TYPE) {
        if seen.insert(event.aggregate_id.as_str()) {
            order.push(event.aggregate_id.clone());
        }
        decoded.push((event, DeployEvent::deserialize(&event.payload)?));
    }
    if order.is_empty() {
        return Ok(());
    }
    let existing = load(tx, &order).await?;
    let replace: Vec<String> = existing.keys().cloned().collect();
    let mut states: HashMap<String, Option<FoldedDeploy>> =
        existing.into_iter().map(|(k, v)| (k, Some(v))).collect();
    // Each entity's release as the batch leaves it, in first-seen order.
    let mut releases: Vec<(String, ReleaseRow)> = Vec::new();
    for (event, e) in &decoded {
        let state = states.entry(event.aggregate_id.clone()).or_default();
        let before = state.as_ref().map(|d| d.event_sequence);
        fold::apply(state, &event.aggregate_id, event.sequence, e)?;
        let applied = state.as_ref().map(|d| d.event_sequence) != before;
        let (DeployEvent::DeployCompleted(done), Some(d), true) = (e, state.as_ref(), applied)
        else {
            continue;
        };
        let Some(release) = &done.release else {
            continue;
        };
        let entity_id = d.row.entity_id;
        let entity = entity_id.to_string();
        let at = match releases.iter().position(|(id, _)| *id == entity) {
            Some(at) => at,
            None => {
                releases.push((
                    entity.clone(),
                    ReleaseRow {
                        workspace_id: d.row.workspace_id.to_string(),
                        live: None,
                        pinned_by: None,
                        production_url: None,
                    },
                ));
                releases.len() - 1
            }
        };
        let row = &mut releases[at].1;
        row.pinned_by = release.pinned_by.map(|p| p.to_string());
        if d.row.production_url.is_some() {
            row.production_url = d.row.production_url.clone();
        }
        if release.live {
            row.live = Some((
                d.row.id.to_string(),
                d.row.build_id.to_string(),
                done.completed_at,
            ));
            let live_id = d.row.id;
            for other in states.values_mut().flatten() {
                if other.row.entity_id == entity_id && other.row.id != live_id {
                    other.row.live = false;
                }
            }
        }
    }
    let out: Vec<&FoldedDeploy> = order
        .iter()
        .filter_map(|id| states.get(id).and_then(Option::as_ref))
        .collect();
    let switched: Vec<String> = releases
        .iter()
        .filter(|(_, r)| r.live.is_some())
        .map(|(entity, _)| entity.clone())
        .collect();
    if !switched.is_empty() {
        // Rows of earlier batches stop being live before the batch's rows
        // (with their one live deploy per entity) are written.
        sqlx::query("UPDATE deploys SET live = false WHERE entity_id = ANY($1) AND live")
            .bind(&switched)
            .execute(&mut *tx)
            .await?;
    }
    store(tx, &replace, &out).await?;
    for (entity, r) in &releases {
        let (deploy, build, since) = match &r.live {
            Some((d, b, t)) => (Some(d), Some(b), Some(*t)),
            None => (None, None, None),
        };
        sqlx::query(
            "INSERT INTO releases (entity_id, workspace_id, live_deploy_id, live_build_id, \
                                   live_since, pinned_by, production_url) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (entity_id) DO UPDATE \
             SET live_deploy_id = COALESCE(EXCLUDED.live_deploy_id, releases.live_deploy_id), \
                 live_build_id = COALESCE(EXCLUDED.live_build_id, releases.live_build_id), \
                 live_since = COALESCE(EXCLUDED.live_since, releases.live_since), \
                 pinned_by = EXCLUDED.pinned_by, \
                 production_url = COALESCE(EXCLUDED.production_url, releases.production_url)",
        )
        .bind(entity)
        .bind(&r.workspace_id)
        .bind(deploy)
        .bind(build)
        .bind(since)
        .bind(&r.pinned_by)
        .bind(&r.production_url)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One entity's `releases` row as a rebuild batch leaves it: the deploy
/// that went live last (with its build and when), and the pin.
struct ReleaseRow {
    workspace_id: String,
    live: Option<(String, String, chrono::DateTime<chrono::Utc>)>,
    pinned_by: Option<String>,
    production_url: Option<String>,
}
