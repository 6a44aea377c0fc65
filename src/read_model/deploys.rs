//! The `deploys` projection: `deploys` and `deploy_steps` from Deploy events.

use sqlx::PgConnection;

use crate::domain::deploy::DeployEvent;
use crate::domain::StepStatus;
use crate::projector::Projection;
use crate::store::log::StoredEvent;

pub struct DeploysProjection;

impl DeploysProjection {
    pub const NAME: &'static str = "deploys";
}

async fn set_step(
    tx: &mut PgConnection,
    deploy: &str,
    step: &str,
    status: StepStatus,
    started: Option<chrono::DateTime<chrono::Utc>>,
    completed: Option<chrono::DateTime<chrono::Utc>>,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(include_str!("../../projections/deploys/step.sql"))
        .bind(deploy)
        .bind(step)
        .bind(status.as_str())
        .bind(started)
        .bind(completed)
        .bind(error)
        .execute(tx)
        .await
        .map(drop)
}

async fn skip_pending_steps(tx: &mut PgConnection, deploy: &str) -> sqlx::Result<()> {
    sqlx::query(include_str!(
        "../../projections/deploys/skip_pending_steps.sql"
    ))
    .bind(deploy)
    .execute(tx)
    .await
    .map(drop)
}

#[async_trait::async_trait]
impl Projection for DeploysProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn apply(&self, tx: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != "Deploy" {
            return Ok(());
        }
        let id = event.aggregate_id.as_str();
        let decoded: DeployEvent = serde_json::from_value(event.payload.clone())?;
        if let DeployEvent::DeployCreated(c) = &decoded {
            sqlx::query(include_str!("../../projections/deploys/created.sql"))
                .bind(id)
                .bind(c.workspace_id.to_string())
                .bind(c.entity_id.to_string())
                .bind(i64::try_from(c.sequence_number)?)
                .bind(c.build_id.to_string())
                .bind(c.trigger.as_str())
                .bind(c.source_event_id.map(|e| e.to_string()))
                .bind(serde_json::Value::Object(c.metadata.clone()))
                .bind(&c.created_by)
                .bind(c.created_at)
                .bind(event.sequence)
                .execute(&mut *tx)
                .await?;
            sqlx::query(include_str!("../../projections/deploys/created_steps.sql"))
                .bind(id)
                .bind(&c.steps)
                .execute(&mut *tx)
                .await?;
            return Ok(());
        }
        let claimed = sqlx::query(include_str!("../../projections/deploys/guard.sql"))
            .bind(id)
            .bind(event.sequence)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            return Ok(());
        }
        match decoded {
            DeployEvent::DeployCreated(_) => {}
            DeployEvent::DeployStarted(e) => {
                sqlx::query(include_str!("../../projections/deploys/started.sql"))
                    .bind(id)
                    .bind(e.started_at)
                    .execute(&mut *tx)
                    .await?;
            }
            DeployEvent::StepStarted(e) => {
                set_step(tx, id, &e.step, StepStatus::Running, Some(e.at), None, None).await?
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
                .await?
            }
            DeployEvent::StepFailed(e) => {
                let error = Some(e.error.as_str());
                set_step(tx, id, &e.step, StepStatus::Failed, None, Some(e.at), error).await?
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
                .await?
            }
            DeployEvent::DeployCompleted(e) => {
                sqlx::query(include_str!("../../projections/deploys/completed.sql"))
                    .bind(id)
                    .bind(e.completed_at)
                    .bind(e.production_url)
                    .bind(e.preview_url)
                    .execute(&mut *tx)
                    .await?;
            }
            DeployEvent::DeployFailed(e) => {
                sqlx::query(include_str!("../../projections/deploys/failed.sql"))
                    .bind(id)
                    .bind(e.failed_at)
                    .bind(e.error)
                    .execute(&mut *tx)
                    .await?;
                skip_pending_steps(tx, id).await?;
            }
            DeployEvent::DeployCancelled(e) => {
                sqlx::query(include_str!("../../projections/deploys/cancelled.sql"))
                    .bind(id)
                    .bind(e.cancelled_at)
                    .bind(e.reason)
                    .bind(e.cancelled_by)
                    .execute(&mut *tx)
                    .await?;
                skip_pending_steps(tx, id).await?;
            }
        }
        Ok(())
    }
}
