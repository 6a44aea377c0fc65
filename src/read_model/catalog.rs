//! The `catalog` projection: `entities` and `builds` from catalog events.

use crate::store::db::Tx;

use crate::domain::catalog::{BuildEvent, EntityEvent};
use crate::readers::projector::Projection;
use crate::store::log::StoredEvent;

pub struct CatalogProjection;

impl CatalogProjection {
    pub const NAME: &'static str = "catalog";
}

#[async_trait::async_trait]
impl Projection for CatalogProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["entities", "builds"]
    }

    async fn apply(&self, tx: &mut Tx, event: &StoredEvent) -> anyhow::Result<()> {
        match event.aggregate_type.as_str() {
            "Entity" => {
                let EntityEvent::EntityUpserted(e) = serde_json::from_value(event.payload.clone())?;
                crate::on_tx!(tx, c => sqlx::query(include_str!(
                    "../../projections/catalog/entity_upserted.sql"
                ))
                .bind(e.entity_id.to_string())
                .bind(e.workspace_id.to_string())
                .bind(e.kind.as_str())
                .bind(&e.name)
                .bind(e.default_version_id.map(|v| v.to_string()))
                .bind(e.auto_deploy)
                .bind(e.occurred_at)
                .bind(e.deploy_policy.as_str())
                .execute(c)
                .await
                .map(drop))?;
            }
            "Build" => {
                let decoded: BuildEvent = serde_json::from_value(event.payload.clone())?;
                let status = match decoded {
                    BuildEvent::BuildSucceeded(_) => "succeeded",
                    BuildEvent::BuildFailed(_) => "failed",
                };
                let b = decoded.recorded();
                crate::on_tx!(tx, c => sqlx::query(include_str!("../../projections/catalog/build_recorded.sql"))
                    .bind(b.build_id.to_string())
                    .bind(b.workspace_id.to_string())
                    .bind(b.entity_id.to_string())
                    .bind(b.version_id.to_string())
                    .bind(status)
                    .bind(&b.artifact_dir)
                    .bind(&b.commit_sha)
                    .bind(&b.branch)
                    .bind(&b.error)
                    .bind(b.source_event_id.to_string())
                    .bind(b.occurred_at)
                    .execute(c)
                    .await
                    .map(drop))?;
            }
            _ => {}
        }
        Ok(())
    }
}
