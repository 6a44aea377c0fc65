//! The deploy endpoints: create, detail, cancel, events (and list, in
//! `list.rs`). Each handler checks the caller's scope before anything else:
//! a deploy outside the token's workspaces does not exist (404).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::auth::RequestId;
use crate::api::docs::{DeployPath, IdempotencyKey};
use crate::api::idempotency::{self, Begin, Held};
use crate::api::problem::{problem_response, FieldError, Problem};
use crate::api::AppState;
use crate::app::{deploys, Actor, Failed};
use crate::domain::deploy::Deploy;
use crate::domain::ids::{DeployId, WorkspaceId};
use crate::domain::location;
use crate::domain::Target;
use crate::read_model::{lookups, DeployRow, StepRow};
use crate::store::log;
use crate::store::tokens::Caller;

/// Largest `metadata` accepted, serialised.
const METADATA_LIMIT: usize = 16 * 1024;
const REASON_LIMIT: usize = 1024;

/// A deploy with its steps and, once cancelled, who cancelled it and why.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployDetail {
    #[serde(flatten)]
    pub deploy: DeployRow,
    pub steps: Vec<StepRow>,
    pub cancellation: Option<Cancellation>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cancellation {
    pub reason: Option<String>,
    pub cancelled_by: String,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub cancelled_at: chrono::DateTime<chrono::Utc>,
}

/// How a mutating request failed, for the idempotency record.
pub(super) struct Failure {
    pub(super) problem: Problem,
    /// Whether a command had already committed: then the record is kept (a
    /// retry takes it over) rather than forgotten.
    pub(super) committed: bool,
}

impl From<Problem> for Failure {
    fn from(problem: Problem) -> Self {
        Failure {
            problem,
            committed: false,
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Problem::from(e).into()
    }
}

impl From<Failed> for Failure {
    fn from(failed: Failed) -> Self {
        Failure {
            problem: failed.refusal.into(),
            committed: failed.committed,
        }
    }
}

/// The caller and the request, as the use cases see them.
pub(super) fn actor<'a>(caller: &'a Caller, request_id: &'a RequestId) -> Actor<'a> {
    Actor {
        caller,
        request_id: &request_id.0,
    }
}

/// Answers, recording the answer for replay when the request holds an
/// idempotency key.
pub(super) async fn answer(
    state: &AppState,
    held: Option<Held>,
    result: Result<(StatusCode, Value), Failure>,
) -> Response {
    let (status, body) = match result {
        Ok(ok) => ok,
        Err(Failure { problem, committed }) => {
            if let Some(held) = &held {
                let recorded = if problem.status.is_server_error() {
                    if committed {
                        Ok(())
                    } else {
                        idempotency::abandon(&state.db, held).await
                    }
                } else {
                    idempotency::finish(&state.db, held, problem.status, &problem.body()).await
                };
                if let Err(e) = recorded {
                    tracing::error!(error = %e, "recording an idempotent answer failed");
                }
            }
            return problem.into_response();
        }
    };
    if let Some(held) = &held {
        if let Err(e) = idempotency::finish(&state.db, held, status, &body).await {
            return Problem::internal(e).into_response();
        }
    }
    success(status, body)
}

/// A success answer; a 201 names the new deploy in `Location`.
fn success(status: StatusCode, body: Value) -> Response {
    let location = (status == StatusCode::CREATED)
        .then(|| body["id"].as_str())
        .flatten()
        .and_then(|id| HeaderValue::from_str(&format!("/api/deploys/{id}")).ok());
    let mut response = (status, Json(body)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

pub(super) fn replay(status: StatusCode, body: Value) -> Response {
    if status.is_client_error() || status.is_server_error() {
        problem_response(status, &body)
    } else {
        success(status, body)
    }
}

/// Parses a JSON object body; an empty body is `{}` when `empty_ok`. A
/// body must say it is JSON (`Content-Type: application/json`, else 415)
/// and have no key twice in an object (which one would win is a guess).
pub(crate) fn json_object(
    headers: &axum::http::HeaderMap,
    body: &Bytes,
    empty_ok: bool,
) -> Result<Map<String, Value>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) && empty_ok {
        return Ok(Map::new());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
    if !json {
        return Err(Problem::unsupported_media_type(
            "send the body as JSON, with Content-Type: application/json",
        ));
    }
    if let Some(pointer) = crate::domain::json::duplicate_key(body) {
        return Err(Problem::invalid_field(
            join_pointer("body", &pointer),
            "this key appears more than once in its object",
        ));
    }
    // An integer the parser would round: what was sent could not be kept.
    if let Some(issue) = crate::domain::json::integer_literal_issue(body) {
        return Err(Problem::invalid_field("body", issue));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Problem::invalid_field("body", "expected a JSON object")),
        Err(e) => Err(Problem::invalid_field(
            "body",
            format!("not valid JSON: {e}"),
        )),
    }
}

/// A body of `{"reason?": "string"}` (cancel, rollback, promote).
pub(super) fn parse_reason_body(map: &Map<String, Value>) -> Result<Option<String>, Problem> {
    let mut errors = unknown_fields(map, &["reason"]);
    let reason = match map.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if crate::domain::json::string_issue(r).is_some() => {
            errors.push(FieldError::new(
                "body/reason",
                crate::domain::json::string_issue(r).unwrap_or_default(),
            ));
            None
        }
        Some(Value::String(r)) if r.len() <= REASON_LIMIT => Some(r.clone()),
        Some(Value::String(_)) => {
            errors.push(FieldError::new(
                "body/reason",
                format!("at most {REASON_LIMIT} bytes"),
            ));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("body/reason", "expected a string"));
            None
        }
    };
    if errors.is_empty() {
        Ok(reason)
    } else {
        Err(Problem::invalid(errors))
    }
}

fn join_pointer(base: &str, rest: &str) -> String {
    if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{rest}")
    }
}

pub(crate) fn unknown_fields(map: &Map<String, Value>, known: &[&str]) -> Vec<FieldError> {
    map.keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| {
            FieldError::new(
                format!("body/{k}"),
                format!("unknown field; expected one of {}", known.join(", ")),
            )
        })
        .collect()
}

/// The workspace a body names, or the token's only one: required when the
/// token grants several, and one of the token's.
pub(crate) fn body_workspace(
    caller: &Caller,
    value: Option<&Value>,
    errors: &mut Vec<FieldError>,
) -> Option<WorkspaceId> {
    match value {
        None | Some(Value::Null) => match caller.workspaces.as_slice() {
            [one] => Some(*one),
            _ => {
                errors.push(FieldError::new(
                    "body/workspaceId",
                    "required: the token grants several workspaces",
                ));
                None
            }
        },
        Some(Value::String(w)) => match w.parse::<WorkspaceId>() {
            Ok(w) if caller.can_see(&w.to_string()) => Some(w),
            _ => {
                errors.push(FieldError::new(
                    "body/workspaceId",
                    "not one of the token's workspaces",
                ));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "body/workspaceId",
                "expected a workspace id",
            ));
            None
        }
    }
}

struct CreateRequest {
    source: deploys::Source,
    metadata: Map<String, Value>,
    target: Option<Target>,
}

fn parse_create(map: &Map<String, Value>) -> Result<CreateRequest, Problem> {
    let mut errors = unknown_fields(map, &["buildId", "appId", "metadata", "target"]);
    let target = match map.get("target") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => match t.parse::<Target>() {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(FieldError::new("body/target", e));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "body/target",
                "expected \"production\" or \"preview\"",
            ));
            None
        }
    };
    let id_field = |name: &str| -> Option<Result<String, FieldError>> {
        map.get(name).filter(|v| !v.is_null()).map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| FieldError::new(format!("body/{name}"), "expected a string"))
        })
    };
    let source = match (id_field("buildId"), id_field("appId")) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "body",
            "give exactly one of buildId or appId, not both",
        )),
        (None, None) => Err(FieldError::new(
            "body",
            "give exactly one of buildId or appId",
        )),
        (Some(Err(e)), None) | (None, Some(Err(e))) => Err(e),
        (Some(Ok(id)), None) => {
            id.parse()
                .map(deploys::Source::Build)
                .map_err(|e: crate::domain::ids::IdError| {
                    FieldError::new("body/buildId", e.to_string())
                })
        }
        (None, Some(Ok(id))) => id
            .parse::<crate::domain::ids::EntityId>()
            .map_err(|e: crate::domain::ids::IdError| FieldError::new("body/appId", e.to_string()))
            .and_then(|id| {
                if id.kind() == crate::domain::ids::EntityKind::App {
                    Ok(deploys::Source::App(id))
                } else {
                    Err(FieldError::new(
                        "body/appId",
                        "expected an app id (app_…); deploy a function by its buildId",
                    ))
                }
            }),
    };
    let metadata = match map.get("metadata") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) if Value::Object(m.clone()).to_string().len() <= METADATA_LIMIT => {
            // Only values that read back exactly from either engine.
            let issues = crate::domain::json::check(&Value::Object(m.clone()), "body/metadata");
            if issues.is_empty() {
                Ok(m.clone())
            } else {
                errors.extend(
                    issues
                        .into_iter()
                        .map(|i| FieldError::new(i.pointer, i.message)),
                );
                Ok(Map::new())
            }
        }
        Some(Value::Object(_)) => Err(FieldError::new(
            "body/metadata",
            format!("at most {} KiB of JSON", METADATA_LIMIT / 1024),
        )),
        Some(_) => Err(FieldError::new("body/metadata", "expected a JSON object")),
    };
    match (source, metadata) {
        (Ok(source), Ok(metadata)) if errors.is_empty() => Ok(CreateRequest {
            source,
            metadata,
            target,
        }),
        (source, metadata) => {
            errors.extend(source.err());
            errors.extend(metadata.err());
            Err(Problem::invalid(errors))
        }
    }
}

/// POST /api/deploys
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    headers: axum::http::HeaderMap,
    request_id: RequestId,
    IdempotencyKey(key): IdempotencyKey,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(crate::api::problem::body_problem)?;
    let map = json_object(&headers, &body, false)?;
    let request = parse_create(&map)?;
    let print = idempotency::fingerprint("POST", "/api/deploys", &Value::Object(map));
    let (begin, deploy_id) = idempotency::begin(
        &state.db,
        key.as_ref(),
        &caller.idempotency_scope(),
        &print,
        DeployId::generate().to_string(),
    )
    .await?;
    let held = match begin {
        Begin::Replay(status, body) => return Ok(replay(status, body)),
        Begin::Run(held) => held,
    };
    let new = deploys::NewDeploy {
        id: deploy_id
            .parse()
            .map_err(|e| Problem::internal(format!("deploy id: {e}")))?,
        source: request.source,
        metadata: request.metadata,
        target: request.target,
    };
    let result = deploys::create(state.services(), actor(&caller, &request_id), new)
        .await
        .map(|row| (StatusCode::CREATED, json!(row.resolved(&state.public_url))))
        .map_err(Failure::from);
    Ok(answer(&state, held, result).await)
}

pub(super) async fn fetch_row(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> sqlx::Result<Option<DeployRow>> {
    Ok(
        lookups::deploy_in_scope(&state.db, id, &caller.workspace_strings())
            .await?
            .map(|d| d.row),
    )
}

pub(super) fn parse_deploy_id(id: &str) -> Result<DeployId, Problem> {
    id.parse()
        .map_err(|_| Problem::not_found(format!("deploy {id} not found")))
}

/// GET /api/deploys/{id}
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DetailParams {
    /// An RFC 3339 instant with an offset: the deploy as it stood then,
    /// folded from its events (404 before it existed). Encode a `+` offset
    /// as `%2B`; one sent bare arrives as a space and is read as `+`.
    #[serde(rename = "asOf")]
    #[serde(default)]
    #[schemars(schema_with = "crate::api::docs::query::instant")]
    as_of: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<DetailParams>,
    Path(DeployPath { id }): Path<DeployPath>,
    Query(params): Query<DetailParams>,
) -> Result<Json<DeployDetail>, Problem> {
    let id = parse_deploy_id(&id)?.to_string();
    if let Some(as_of) = params.as_of.as_deref() {
        let as_of = parse_as_of(as_of)?;
        return detail_as_of(&state, &caller, &id, as_of).await.map(Json);
    }
    // The row and its cancellation in one read.
    let found = lookups::deploy_in_scope(&state.db, &id, &caller.workspace_strings())
        .await?
        .ok_or_else(|| Problem::not_found(format!("deploy {id} not found")))?;
    let deploy = found.row;
    let cancellation = match (found.cancelled_by, found.cancelled_at) {
        (Some(cancelled_by), Some(cancelled_at)) => Some(Cancellation {
            reason: found.cancel_reason,
            cancelled_by,
            cancelled_at,
        }),
        _ => None,
    };
    let steps = lookups::deploy_steps(&state.db, &id).await?;
    Ok(Json(DeployDetail {
        deploy: deploy.resolved(&state.public_url),
        steps,
        cancellation,
    }))
}

/// `asOf`: an RFC 3339 instant with an offset. A `+` offset sent without
/// encoding arrives as a space (`…T10:05:00 01:00`: `+` means space in a
/// query string); that is what the client meant, so it is read as `+`.
/// Anything else unreadable is a 400 quoting what arrived.
fn parse_as_of(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, Problem> {
    let parse = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let space_for_plus = raw.rsplit_once(' ').and_then(|(instant, offset)| {
        let b = offset.as_bytes();
        let offset_like =
            b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
        offset_like.then(|| format!("{instant}+{offset}"))
    });
    parse(raw)
        .or_else(|| space_for_plus.as_deref().and_then(parse))
        .ok_or_else(|| {
            Problem::invalid_field(
                "asOf",
                format!(
                    "expected an RFC 3339 timestamp with an offset, such as \
                     2026-11-27T10:05:00Z or 2026-11-27T10:05:00%2B01:00 (a + in a query \
                     string must be sent as %2B); received {raw:?}"
                ),
            )
        })
}

/// The deploy as it stood at `as_of`: its events recorded until then,
/// folded (`read_model::fold`) into the same shape as the read model.
async fn detail_as_of(
    state: &AppState,
    caller: &Caller,
    id: &str,
    as_of: chrono::DateTime<chrono::Utc>,
) -> Result<DeployDetail, Problem> {
    let not_found = || Problem::not_found(format!("deploy {id} not found at {as_of}"));
    let events = log::read_stream(&state.db, Deploy::TYPE, id, 0, i64::MAX).await?;
    let folded = crate::read_model::fold::fold(events.iter().filter(|e| e.recorded_at <= as_of))
        .map_err(|e| Problem::internal(format!("folding deploy {id}: {e:#}")))?
        .ok_or_else(not_found)?;
    if !caller.workspaces.contains(&folded.row.workspace_id) {
        return Err(not_found());
    }
    let mut folded = folded;
    if folded.row.live {
        // Live when it completed; still live at `as_of` unless another
        // deploy of its entity went live since.
        let release = crate::read_model::releases::release_as_of(
            &state.db,
            &folded.row.entity_id.to_string(),
            as_of,
        )
        .await
        .map_err(|e| Problem::internal(format!("{e:#}")))?;
        folded.row.live = release
            .live
            .is_some_and(|l| l.deploy_id == folded.row.id.to_string());
    }
    let cancellation = match (folded.cancelled_at, folded.cancelled_by) {
        (Some(cancelled_at), Some(cancelled_by)) => Some(Cancellation {
            reason: folded.cancel_reason,
            cancelled_by,
            cancelled_at,
        }),
        _ => None,
    };
    Ok(DeployDetail {
        deploy: folded.row.resolved(&state.public_url),
        steps: folded.steps,
        cancellation,
    })
}

// An axum handler takes its extractors as arguments.
#[allow(clippy::too_many_arguments)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    headers: axum::http::HeaderMap,
    request_id: RequestId,
    Path(DeployPath { id }): Path<DeployPath>,
    IdempotencyKey(key): IdempotencyKey,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(crate::api::problem::body_problem)?;
    let deploy_id = parse_deploy_id(&id)?;
    let id = deploy_id.to_string();
    let map = json_object(&headers, &body, true)?;
    let reason = parse_reason_body(&map)?;
    if fetch_row(&state, &caller, &id).await?.is_none() {
        return Err(Problem::not_found(format!("deploy {id} not found")));
    }
    let print = idempotency::fingerprint(
        "POST",
        &format!("/api/deploys/{id}/cancel"),
        &Value::Object(map),
    );
    let (begin, _) = idempotency::begin(
        &state.db,
        key.as_ref(),
        &caller.idempotency_scope(),
        &print,
        id.clone(),
    )
    .await?;
    let held = match begin {
        Begin::Replay(status, body) => return Ok(replay(status, body)),
        Begin::Run(held) => held,
    };
    let result = deploys::cancel(
        state.services(),
        actor(&caller, &request_id),
        &deploy_id,
        reason,
    )
    .await
    .map(|()| {
        (
            StatusCode::OK,
            json!(crate::api::docs::CancelResponse { success: true }),
        )
    })
    .map_err(Failure::from);
    Ok(answer(&state, held, result).await)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EventsParams {
    /// Only events after this sequence number (keyset: the `sequence` of
    /// the last event already read; default 0, from the first).
    #[serde(default)]
    #[schemars(schema_with = "crate::api::docs::query::sequence")]
    pub(crate) after: Option<String>,
    /// At most this many events, 1 to 1000 (default 100).
    #[serde(default)]
    #[schemars(schema_with = "crate::api::docs::query::limit_1000")]
    pub(crate) limit: Option<String>,
}

/// One event of a deploy, for auditors.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub event_id: String,
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's version (`data` follows its schema of that version).
    #[schemars(with = "u32")]
    pub version: Value,
    pub recorded_at: String,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub data: Value,
}

/// GET /api/deploys/{id}/events
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(DeployPath { id }): Path<DeployPath>,
    Query(params): Query<EventsParams>,
) -> Result<Json<Vec<AuditEvent>>, Problem> {
    let id = parse_deploy_id(&id)?.to_string();
    let after = match params.after.as_deref() {
        None => 0,
        Some(a) => a.parse::<i64>().ok().filter(|a| *a >= 0).ok_or_else(|| {
            Problem::invalid_field("after", "expected a sequence number (0 or more)")
        })?,
    };
    let limit = match params.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| Problem::invalid_field("limit", "expected an integer from 1 to 1000"))?,
    };
    if fetch_row(&state, &caller, &id).await?.is_none() {
        return Err(Problem::not_found(format!("deploy {id} not found")));
    }
    let events = log::read_stream(&state.db, Deploy::TYPE, &id, after, limit).await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| AuditEvent {
                data: {
                    let mut data = e.data().clone();
                    location::resolve_event(&e.event_type, &mut data, &state.public_url);
                    data
                },
                version: e.version_json(),
                actor: e
                    .metadata
                    .get("actor")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                request_id: e
                    .metadata
                    .get("requestId")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                event_id: e.event_id,
                sequence: e.sequence,
                event_type: e.event_type,
                recorded_at: crate::domain::time::format(&e.recorded_at),
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_reads_a_plus_offset_that_arrived_as_a_space() {
        let utc = parse_as_of("2026-11-27T10:05:00Z").unwrap();
        assert_eq!(parse_as_of("2026-11-27T11:05:00+01:00").unwrap(), utc);
        assert_eq!(parse_as_of("2026-11-27T11:05:00 01:00").unwrap(), utc);
        assert_eq!(parse_as_of("2026-11-27T09:05:00-01:00").unwrap(), utc);
    }

    #[test]
    fn a_bad_as_of_quotes_what_was_received() {
        let problem = parse_as_of("2026-11-27T10:05:00 1h").unwrap_err();
        assert_eq!(problem.errors[0].pointer, "asOf");
        let message = &problem.errors[0].message;
        assert!(
            message.contains("received \"2026-11-27T10:05:00 1h\""),
            "{message}"
        );
        assert!(message.contains("%2B"), "{message}");
    }
}
