//! What is live: each entity's release as the read model holds it now
//! (`releases`, written by the `deploys` projection), and as the log says
//! it was at an instant (`asOf`), folded from the `release` of each
//! `DeployCompleted` of the entity in log order.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::deploy::DeployEvent;
use crate::on_db;
use crate::store::db::Db;
use crate::store::log;

/// The deploy an entity's production URL serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveDeploy {
    pub deploy_id: String,
    pub build_id: String,
    /// When it went live (its completion).
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub since: DateTime<Utc>,
}

/// An entity's production: what is live and what pins it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub live: Option<LiveDeploy>,
    /// The rollback that pins production (`None`: not pinned).
    pub pinned_by: Option<String>,
    pub production_url: Option<String>,
}

/// The entity's release as the log stood at `as_of`: every completion of
/// its deploys recorded until then, folded in log order.
pub async fn release_as_of(db: &Db, entity: &str, as_of: DateTime<Utc>) -> anyhow::Result<Release> {
    let deploys: Vec<(String, String)> = on_db!(db, pool => sqlx::query_as(
        "SELECT id, build_id FROM deploys WHERE entity_id = $1",
    )
    .bind(entity)
    .fetch_all(pool)
    .await)?;
    let ids: Vec<String> = deploys.iter().map(|(id, _)| id.clone()).collect();
    let mut release = Release::default();
    for event in log::completions_until(db, &ids, as_of).await? {
        let DeployEvent::DeployCompleted(done) = serde_json::from_value(event.payload)? else {
            continue;
        };
        let Some(r) = done.release else { continue };
        release.pinned_by = r.pinned_by.map(|p| p.to_string());
        if done.production_url.is_some() {
            release.production_url = done.production_url;
        }
        if r.live {
            let build_id = deploys
                .iter()
                .find(|(id, _)| *id == event.aggregate_id)
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            release.live = Some(LiveDeploy {
                deploy_id: event.aggregate_id,
                build_id,
                since: done.completed_at,
            });
        }
    }
    Ok(release)
}
