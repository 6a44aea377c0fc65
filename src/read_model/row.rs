use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::ids::{BuildId, DeployId, EntityId, WorkspaceId};
use crate::domain::{DeployStatus, StepStatus, Target, Trigger};

/// The columns of `deploys` that make a [`DeployRow`], in a form that can be
/// put after `SELECT` (qualified by the table name).
pub const DEPLOY_COLUMNS: &[&str] = &[
    "id",
    "workspace_id",
    "entity_id",
    "sequence_number",
    "build_id",
    "status",
    "trigger",
    "source_event_id",
    "production_url",
    "preview_url",
    "error",
    "metadata",
    "created_by",
    "started_at",
    "completed_at",
    "created_at",
    "target",
    "live",
    "rollback_of",
    "promoted_from",
    "superseded_by",
];

/// A deploy as the list and the detail show it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DeployRow {
    pub id: DeployId,
    pub workspace_id: WorkspaceId,
    pub entity_id: EntityId,
    pub sequence_number: i64,
    pub build_id: BuildId,
    #[sqlx(try_from = "String")]
    pub status: DeployStatusColumn,
    #[sqlx(try_from = "String")]
    pub trigger: TriggerColumn,
    /// The upstream event an auto-deploy came from, as upstream named it.
    pub source_event_id: Option<String>,
    /// Where the entity's production is served (a production deploy).
    pub production_url: Option<String>,
    /// Where this deploy alone is served.
    pub preview_url: Option<String>,
    pub error: Option<String>,
    pub metadata: serde_json::Value,
    pub created_by: String,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub target: TargetColumn,
    /// Whether the entity's production URL serves this deploy now (true
    /// for exactly one deploy of an entity once one went live).
    pub live: bool,
    /// A rollback: the deploy it went back to.
    pub rollback_of: Option<String>,
    /// A promotion: the deploy it promoted.
    pub promoted_from: Option<String>,
    /// Cancelled by the `latest` policy: the newer deploy that superseded it.
    pub superseded_by: Option<String>,
}

impl DeployRow {
    /// The row as answered: where the deploy is served as absolute URLs
    /// under `public_url` (the read model holds the recorded locations,
    /// `domain::location`).
    pub fn resolved(mut self, public_url: &str) -> Self {
        for url in [&mut self.preview_url, &mut self.production_url]
            .into_iter()
            .flatten()
        {
            *url = crate::domain::location::resolve(public_url, url);
        }
        self
    }
}

macro_rules! enum_column {
    ($column:ident, $inner:ty) => {
        /// A text column holding the enum's wire name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $column(pub $inner);

        impl TryFrom<String> for $column {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse().map($column)
            }
        }
    };
}

enum_column!(DeployStatusColumn, DeployStatus);
enum_column!(TriggerColumn, Trigger);
enum_column!(TargetColumn, Target);
enum_column!(StepStatusColumn, StepStatus);

/// One step of a deploy, in execution order.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StepRow {
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: StepStatusColumn,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub completed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}
