//! `GET /api/entities[/{id}]` and `GET /api/builds[/{id}]`: scoped to the
//! caller's workspaces (404 outside them), keyset pages like the deploy
//! list (`read_model::catalog_pages`); `POST /api/entities` makes an app or
//! function without an upstream catalog (`app::entities`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::deploys::{json_object, unknown_fields};
use super::list::scoped_key;
use crate::api::auth::RequestId;
use crate::api::problem::{FieldError, Problem};
use crate::api::AppState;
use crate::app::entities::NewEntity;
use crate::domain::ids::EntityKind;
use crate::domain::DeployPolicy;
use crate::read_model::catalog_pages::{self, BuildView, CatalogParams, EntityView, Page};
use crate::store::tokens::Caller;

type Params<P> = Result<Query<P>, axum::extract::rejection::QueryRejection>;

/// GET /api/entities
pub async fn entities(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<catalog_pages::EntitiesParams>,
    params: Params<catalog_pages::EntitiesParams>,
) -> Result<Json<Page<EntityView>>, Problem> {
    let Query(raw) = params.map_err(|e| Problem::invalid_field("query", e.body_text()))?;
    let raw = CatalogParams::from(raw);
    let key = scoped_key(&state.cursor_key, &caller);
    let mut page = catalog_pages::entities(&state.db, &caller.workspace_strings(), &raw, &key)
        .await?
        .map_err(Problem::invalid)?;
    page.data = page
        .data
        .into_iter()
        .map(|e| e.resolved(&state.public_url))
        .collect();
    Ok(Json(page))
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
    #[serde(default)]
    #[schemars(schema_with = "crate::api::docs::query::instant")]
    as_of: Option<String>,
}

/// GET /api/entities/{id}
pub async fn entity(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<EntityParams>,
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
    found
        .map(|e| Json(e.resolved(&state.public_url)))
        .ok_or_else(not_found)
}

/// GET /api/builds
pub async fn builds(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<catalog_pages::BuildsParams>,
    params: Params<catalog_pages::BuildsParams>,
) -> Result<Json<Page<BuildView>>, Problem> {
    let Query(raw) = params.map_err(|e| Problem::invalid_field("query", e.body_text()))?;
    let raw = CatalogParams::from(raw);
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
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
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

/// Longest entity name, in characters.
const NAME_LIMIT: usize = 100;

/// POST /api/entities
pub async fn create_entity(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    request_id: RequestId,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let map = json_object(&headers, &body, false)?;
    let new = parse_entity(&caller, &map).map_err(Problem::invalid)?;
    let actor = super::deploys::actor(&caller, &request_id);
    let created = crate::app::entities::create(state.services(), actor, new)
        .await
        .map_err(|failed| Problem::from(failed.refusal))?;
    let location = HeaderValue::from_str(&format!("/api/entities/{}", created.id))
        .map_err(|e| Problem::internal(e.to_string()))?;
    let mut response = (
        StatusCode::CREATED,
        Json(created.resolved(&state.public_url)),
    )
        .into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// The body of `POST /api/entities`, every complaint naming its field.
fn parse_entity(caller: &Caller, map: &Map<String, Value>) -> Result<NewEntity, Vec<FieldError>> {
    let mut errors = unknown_fields(
        map,
        &["kind", "name", "autoDeploy", "deployPolicy", "workspaceId"],
    );
    let kind = match map.get("kind") {
        Some(Value::String(k)) if k == "app" => Some(EntityKind::App),
        Some(Value::String(k)) if k == "function" => Some(EntityKind::Function),
        None | Some(Value::Null) => {
            errors.push(FieldError::new("body/kind", "required: app or function"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("body/kind", "expected app or function"));
            None
        }
    };
    let name = match map.get("name") {
        Some(Value::String(n)) => match name_issue(n) {
            None => Some(n.clone()),
            Some(issue) => {
                errors.push(FieldError::new("body/name", issue));
                None
            }
        },
        None | Some(Value::Null) => {
            errors.push(FieldError::new("body/name", "required: the entity's name"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("body/name", "expected a string"));
            None
        }
    };
    let auto_deploy = match map.get("autoDeploy") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new("body/autoDeploy", "expected true or false"));
            false
        }
    };
    let deploy_policy = match map.get("deployPolicy") {
        None | Some(Value::Null) => DeployPolicy::default(),
        Some(Value::String(p)) => p.parse().unwrap_or_else(|e: String| {
            errors.push(FieldError::new("body/deployPolicy", e));
            DeployPolicy::default()
        }),
        Some(_) => {
            errors.push(FieldError::new(
                "body/deployPolicy",
                "expected queue or latest",
            ));
            DeployPolicy::default()
        }
    };
    let workspace =
        crate::api::deploys::body_workspace(caller, map.get("workspaceId"), &mut errors);
    match (kind, name, workspace) {
        (Some(kind), Some(name), Some(workspace)) if errors.is_empty() => Ok(NewEntity {
            workspace,
            kind,
            name,
            auto_deploy,
            deploy_policy,
        }),
        _ => Err(errors),
    }
}

/// What is wrong with a name, if anything. A name is what `deployd deploy
/// --app NAME` finds the entity by, so it may not look like an id.
fn name_issue(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("must not be empty".into());
    }
    if name.trim() != name {
        return Some("must not start or end with white space".into());
    }
    if name.chars().count() > NAME_LIMIT {
        return Some(format!("at most {NAME_LIMIT} characters"));
    }
    if name.chars().any(char::is_control) {
        return Some("must not contain control characters".into());
    }
    if name.parse::<crate::domain::ids::EntityId>().is_ok() {
        return Some("must not be an entity id (app_…, fn_…): names and ids are told apart".into());
    }
    None
}
