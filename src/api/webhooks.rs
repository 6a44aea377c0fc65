//! `/api/webhooks`: a workspace's webhook endpoints, their secrets and
//! their deliveries (`spec/feeds.md`). A webhook outside the caller's
//! workspaces does not exist (404). Bodies are parsed by hand so that each
//! complaint names its field.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::deploys::{body_workspace, json_object, unknown_fields};
use crate::api::problem::{FieldError, Problem};
use crate::api::AppState;
use crate::domain::ids::{DeliveryId, WebhookId};
use crate::store::tokens::Caller;
use crate::webhooks::store::{self, Delivery, Webhook};
use crate::webhooks::{address, signing};

/// A webhook as the API shows it (the secret only when made or rotated).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    /// The event types it receives; null: all.
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `whsec_…`: shown when the webhook is made and when it is rotated,
    /// never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Set when every delivery failed for 3 days; `PATCH {"disabled":
    /// false}` re-enables it.
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl WebhookView {
    fn of(w: &Webhook, with_secret: bool) -> Self {
        WebhookView {
            id: w.id.clone(),
            workspace_id: w.workspace_id.clone(),
            url: w.url.clone(),
            events: w.event_types(),
            description: w.description.clone(),
            secret: with_secret.then(|| w.secret.clone()),
            disabled: w.disabled,
            disabled_reason: w.disabled_reason.clone(),
            created_at: w.created_at,
        }
    }
}

/// The caller's webhooks.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct WebhookList {
    pub data: Vec<WebhookView>,
}

/// The body of `POST /api/webhooks`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // documents the body; the handler parses it by hand
pub struct CreateWebhookRequest {
    /// Where events are POSTed: http or https, not a private address.
    url: String,
    /// Event types to send; absent: all.
    events: Option<Vec<String>>,
    description: Option<String>,
    /// The workspace whose events it receives (required when the token
    /// has several).
    workspace_id: Option<String>,
}

/// The body of `PATCH /api/webhooks/{id}`: any of these.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // documents the body; the handler parses it by hand
pub struct UpdateWebhookRequest {
    /// `false` re-enables a disabled webhook; `true` pauses it.
    disabled: Option<bool>,
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
}

/// `{id}` in a webhook's path.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WebhookPath {
    /// The webhook's id, `whk_…`.
    pub id: String,
}

/// `{id}` and `{deliveryId}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPath {
    pub id: String,
    /// The delivery's id, `whd_…`.
    pub delivery_id: String,
}

fn not_found(id: &str) -> Problem {
    Problem::not_found(format!("webhook {id} not found"))
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Webhook, Problem> {
    if id.parse::<WebhookId>().is_err() {
        return Err(not_found(id));
    }
    store::get(&state.db, id, &caller.workspace_strings())
        .await?
        .ok_or_else(|| not_found(id))
}

async fn url_field(
    state: &AppState,
    value: Option<&Value>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match value {
        Some(Value::String(url)) => {
            match address::check_url(url, state.webhooks.allow_private).await {
                Ok(parsed) => Some(parsed.to_string()),
                Err(message) => {
                    errors.push(FieldError::new("body/url", message));
                    None
                }
            }
        }
        _ => {
            errors.push(FieldError::new("body/url", "expected a URL (a string)"));
            None
        }
    }
}

fn events_field(value: &Value, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::Array(items) => {
            let mut types = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(t) if crate::feeds::EVENT_TYPES.contains(&t) => types.push(t.to_string()),
                    _ => errors.push(FieldError::new(
                        format!("body/events/{i}"),
                        format!(
                            "unknown event type; known: {}",
                            crate::feeds::EVENT_TYPES.join(", ")
                        ),
                    )),
                }
            }
            Some(Some(
                serde_json::to_string(&types).expect("a list serialises"),
            ))
        }
        _ => {
            errors.push(FieldError::new(
                "body/events",
                "expected an array of event types, or null for all",
            ));
            None
        }
    }
}

fn description_field(value: &Value, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(s) if s.len() <= 1024 => Some(Some(s.clone())),
        _ => {
            errors.push(FieldError::new(
                "body/description",
                "expected a string of at most 1024 bytes",
            ));
            None
        }
    }
}

/// POST /api/webhooks
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let map: Map<String, Value> = json_object(&headers, &body, false)?;
    let mut errors = unknown_fields(&map, &["url", "events", "description", "workspaceId"]);
    let url = url_field(&state, map.get("url"), &mut errors).await;
    let events = events_field(map.get("events").unwrap_or(&Value::Null), &mut errors);
    let description =
        description_field(map.get("description").unwrap_or(&Value::Null), &mut errors);
    let workspace =
        body_workspace(&caller, map.get("workspaceId"), &mut errors).map(|w| w.to_string());
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let (Some(url), Some(events), Some(description), Some(workspace)) =
        (url, events, description, workspace)
    else {
        return Err(Problem::internal("a field was neither valid nor reported"));
    };
    let now = crate::domain::time::now();
    let webhook = Webhook {
        id: WebhookId::generate().to_string(),
        workspace_id: workspace,
        url,
        events,
        description,
        secret: signing::new_secret(),
        previous_secret: None,
        previous_secret_until: None,
        disabled: false,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    store::insert(&state.db, &webhook).await?;
    Ok((StatusCode::CREATED, Json(WebhookView::of(&webhook, true))).into_response())
}

/// GET /api/webhooks
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
) -> Result<Json<WebhookList>, Problem> {
    let hooks = store::list(&state.db, &caller.workspace_strings()).await?;
    Ok(Json(WebhookList {
        data: hooks.iter().map(|w| WebhookView::of(w, false)).collect(),
    }))
}

/// GET /api/webhooks/{id}
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    Path(WebhookPath { id }): Path<WebhookPath>,
) -> Result<Json<WebhookView>, Problem> {
    let hook = find(&state, &caller, &id).await?;
    Ok(Json(WebhookView::of(&hook, false)))
}

/// PATCH /api/webhooks/{id}
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    Path(WebhookPath { id }): Path<WebhookPath>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookView>, Problem> {
    let mut hook = find(&state, &caller, &id).await?;
    let map = json_object(&headers, &body, false)?;
    let mut errors = unknown_fields(&map, &["disabled", "url", "events", "description"]);
    if let Some(disabled) = map.get("disabled") {
        match disabled {
            Value::Bool(false) => {
                hook.disabled = false;
                hook.disabled_reason = None;
                hook.failing_since = None;
            }
            Value::Bool(true) => {
                hook.disabled = true;
                hook.disabled_reason = Some(format!("disabled by {}", caller.principal));
            }
            _ => errors.push(FieldError::new("body/disabled", "expected true or false")),
        }
    }
    if map.contains_key("url") {
        if let Some(url) = url_field(&state, map.get("url"), &mut errors).await {
            hook.url = url;
        }
    }
    if let Some(events) = map.get("events") {
        if let Some(events) = events_field(events, &mut errors) {
            hook.events = events;
        }
    }
    if let Some(description) = map.get("description") {
        if let Some(description) = description_field(description, &mut errors) {
            hook.description = description;
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    store::update(&state.db, &hook).await?;
    Ok(Json(WebhookView::of(&hook, false)))
}

/// DELETE /api/webhooks/{id}
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    Path(WebhookPath { id }): Path<WebhookPath>,
) -> Result<StatusCode, Problem> {
    let hook = find(&state, &caller, &id).await?;
    store::delete(&state.db, &hook.id, &caller.workspace_strings()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/webhooks/{id}/rotate-secret
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    Path(WebhookPath { id }): Path<WebhookPath>,
) -> Result<Json<WebhookView>, Problem> {
    let mut hook = find(&state, &caller, &id).await?;
    let overlap = chrono::Duration::from_std(state.webhooks.rotation_overlap)
        .unwrap_or(chrono::Duration::hours(24));
    hook.previous_secret = Some(std::mem::replace(&mut hook.secret, signing::new_secret()));
    hook.previous_secret_until = Some(crate::domain::time::now() + overlap);
    store::update(&state.db, &hook).await?;
    Ok(Json(WebhookView::of(&hook, true)))
}

/// The query of the deliveries log.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DeliveriesParams {
    /// The `pageInfo.endCursor` of the previous page (a delivery id): the
    /// deliveries older than it. Absent: from the newest.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::docs::query::delivery_id")]
    pub after: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[serde(default)]
    #[schemars(schema_with = "crate::api::docs::query::limit_deliveries")]
    pub limit: Option<String>,
}

/// Where a page of deliveries stopped.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveriesPageInfo {
    pub has_next_page: bool,
    /// The last delivery's id: pass it as `after` for older ones.
    pub end_cursor: Option<String>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveriesPage {
    pub data: Vec<Delivery>,
    pub page_info: DeliveriesPageInfo,
}

/// GET /api/webhooks/{id}/deliveries
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<DeliveriesParams>,
    Path(WebhookPath { id }): Path<WebhookPath>,
    Query(params): Query<DeliveriesParams>,
) -> Result<Json<DeliveriesPage>, Problem> {
    let limit = match params.limit.as_deref() {
        None => 20,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| Problem::invalid_field("limit", "expected an integer from 1 to 100"))?,
    };
    let after = match params.after.as_deref() {
        None => None,
        Some(a) => Some(
            a.parse::<DeliveryId>()
                .map_err(|_| Problem::invalid_field("after", "expected a delivery id (whd_…)"))?
                .to_string(),
        ),
    };
    let hook = find(&state, &caller, &id).await?;
    let mut rows = store::deliveries(&state.db, &hook.id, after.as_deref(), limit + 1).await?;
    let has_next_page = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(DeliveriesPage {
        page_info: DeliveriesPageInfo {
            has_next_page,
            end_cursor: rows.last().map(|d| d.id.clone()),
        },
        data: rows,
    }))
}

/// POST /api/webhooks/{id}/deliveries/{deliveryId}/retry
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    Path(DeliveryPath { id, delivery_id }): Path<DeliveryPath>,
) -> Result<(StatusCode, Json<Delivery>), Problem> {
    let hook = find(&state, &caller, &id).await?;
    let missing = || Problem::not_found(format!("delivery {delivery_id} not found"));
    if delivery_id.parse::<DeliveryId>().is_err() {
        return Err(missing());
    }
    let delivery = store::retry(&state.db, &hook.id, &delivery_id)
        .await?
        .ok_or_else(missing)?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
