//! `GET /api/entities[/{id}]` and `GET /api/builds[/{id}]`: read-only,
//! scoped to the caller's workspaces (404 outside them), keyset pages like
//! the deploy list (`read_model::catalog_pages`).

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;

use super::list::scoped_key;
use crate::api::problem::Problem;
use crate::api::AppState;
use crate::read_model::catalog_pages::{self, BuildView, CatalogParams, EntityView, Page};
use crate::store::tokens::Caller;

type Params = Result<Query<CatalogParams>, axum::extract::rejection::QueryRejection>;

/// GET /api/entities
pub async fn entities(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Page<EntityView>>, Problem> {
    let Query(raw) = params.map_err(|e| Problem::invalid_field("query", e.body_text()))?;
    let key = scoped_key(&state.cursor_key, &caller);
    catalog_pages::entities(&state.db, &caller.workspace_strings(), &raw, &key)
        .await?
        .map(Json)
        .map_err(Problem::invalid)
}

/// `{id}` in an entity's path.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EntityPath {
    /// The entity's id, `app_…` or `fn_…`.
    pub id: String,
}

/// `{id}` in a build's path.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct BuildPath {
    /// The build's id, `bld_…`.
    pub id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EntityParams {
    /// An RFC 3339 instant: the entity as it stood then, and what was live
    /// (folded from the log; 404 before it existed).
    #[serde(rename = "asOf")]
    as_of: Option<String>,
}

/// GET /api/entities/{id}
pub async fn entity(
    State(state): State<AppState>,
    caller: Caller,
    Path(EntityPath { id }): Path<EntityPath>,
    Query(params): Query<EntityParams>,
) -> Result<Json<EntityView>, Problem> {
    let not_found = || Problem::not_found(format!("entity {id} not found"));
    let scope = caller.workspace_strings();
    let Ok(parsed) = id.parse::<crate::domain::ids::EntityId>() else {
        return Err(not_found());
    };
    let id_text = parsed.to_string();
    let found = match params.as_of.as_deref() {
        None => catalog_pages::entity(&state.db, &id_text, &scope).await?,
        Some(as_of) => {
            let as_of = chrono::DateTime::parse_from_rfc3339(as_of)
                .map_err(|_| {
                    Problem::invalid_field("asOf", "expected an RFC 3339 timestamp with an offset")
                })?
                .with_timezone(&chrono::Utc);
            catalog_pages::entity_as_of(&state.db, &id_text, &scope, as_of)
                .await
                .map_err(|e| Problem::internal(format!("{e:#}")))?
        }
    };
    found.map(Json).ok_or_else(not_found)
}

/// GET /api/builds
pub async fn builds(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Page<BuildView>>, Problem> {
    let Query(raw) = params.map_err(|e| Problem::invalid_field("query", e.body_text()))?;
    let key = scoped_key(&state.cursor_key, &caller);
    catalog_pages::builds(&state.db, &caller.workspace_strings(), &raw, &key)
        .await?
        .map(Json)
        .map_err(Problem::invalid)
}

/// GET /api/builds/{id}
pub async fn build(
    State(state): State<AppState>,
    caller: Caller,
    Path(BuildPath { id }): Path<BuildPath>,
) -> Result<Json<BuildView>, Problem> {
    let not_found = || Problem::not_found(format!("build {id} not found"));
    let Ok(parsed) = id.parse::<crate::domain::ids::BuildId>() else {
        return Err(not_found());
    };
    catalog_pages::build(&state.db, &parsed.to_string(), &caller.workspace_strings())
        .await?
        .map(Json)
        .ok_or_else(not_found)
}
