//! `POST /api/deploys/{id}/rollback` and `POST /api/deploys/{id}/promote`:
//! HTTP around the release use cases (`app::releases`). Each answers 201
//! with the new deploy; 404 for a deploy outside the caller's workspaces;
//! 409 naming why the deploy is not eligible, with nothing recorded.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::deploys::{
    actor, answer, fetch_row, json_object, parse_deploy_id, parse_reason_body, replay, Failure,
};
use crate::api::auth::RequestId;
use crate::api::docs::{DeployPath, IdempotencyKey};
use crate::api::idempotency::{self, Begin};
use crate::api::problem::Problem;
use crate::api::AppState;
use crate::app::releases::{self, ReleaseKind, ReleaseRequest};
use crate::domain::ids::DeployId;
use crate::store::tokens::Caller;

/// POST /api/deploys/{id}/rollback
// An axum handler takes its extractors as arguments.
#[allow(clippy::too_many_arguments)]
pub async fn rollback(
    state: State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    request_id: RequestId,
    path: Path<DeployPath>,
    key: IdempotencyKey,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let kind = ReleaseKind::Rollback;
    release(kind, state, caller, request_id, path, key, &headers, body).await
}

/// POST /api/deploys/{id}/promote
// An axum handler takes its extractors as arguments.
#[allow(clippy::too_many_arguments)]
pub async fn promote(
    state: State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    request_id: RequestId,
    path: Path<DeployPath>,
    key: IdempotencyKey,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let kind = ReleaseKind::Promotion;
    release(kind, state, caller, request_id, path, key, &headers, body).await
}

#[allow(clippy::too_many_arguments)]
async fn release(
    kind: ReleaseKind,
    State(state): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    Path(DeployPath { id }): Path<DeployPath>,
    IdempotencyKey(key): IdempotencyKey,
    headers: &axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let source = parse_deploy_id(&id)?;
    let map = json_object(headers, &body, true)?;
    let reason = parse_reason_body(&map)?;
    if fetch_row(&state, &caller, &source.to_string())
        .await?
        .is_none()
    {
        return Err(Problem::not_found(format!("deploy {source} not found")));
    }
    let action = match kind {
        ReleaseKind::Rollback => "rollback",
        ReleaseKind::Promotion => "promote",
    };
    let print = idempotency::fingerprint(
        "POST",
        &format!("/api/deploys/{source}/{action}"),
        &Value::Object(map),
    );
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
    let request = ReleaseRequest {
        kind,
        source,
        deploy_id: deploy_id
            .parse()
            .map_err(|e| Problem::internal(format!("deploy id: {e}")))?,
        reason,
    };
    let result = releases::release(state.services(), actor(&caller, &request_id), request)
        .await
        .map(|row| (StatusCode::CREATED, json!(row.resolved(&state.public_url))))
        .map_err(Failure::from);
    Ok(answer(&state, held, result).await)
}
