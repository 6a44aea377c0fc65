//! GET /api/deploys: the list, with the query language of `crate::read_model::list`.

use axum::extract::{Query, State};
use axum::Json;
use sha2::{Digest, Sha256};

use crate::api::problem::Problem;
use crate::api::AppState;
use crate::read_model::list::{self, ListPage, RawListParams};
use crate::store::tokens::Caller;

/// The key cursors are signed with, for this caller: the installation's key
/// bound to the caller's workspaces, so a cursor only works for a caller
/// who sees the same rows it was made from.
pub(super) fn scoped_key(key: &[u8], caller: &Caller) -> Vec<u8> {
    let mut scope = caller.workspace_strings();
    scope.sort();
    let mut hash = Sha256::new();
    hash.update(key);
    for ws in scope {
        hash.update(b"\n");
        hash.update(ws.as_bytes());
    }
    hash.finalize().to_vec()
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<RawListParams>,
    params: Result<Query<RawListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListPage>, Problem> {
    let Query(raw) = params.map_err(|e| Problem::invalid_field("query", e.body_text()))?;
    let request = list::parse_list_params(&raw)
        .map_err(Problem::invalid)?
        .relocated(&state.public_url);
    let key = scoped_key(&state.cursor_key, &caller);
    let mut page = list::list_deploys(&state.db, &caller.workspaces, &request, &key).await?;
    page.data = page
        .data
        .into_iter()
        .map(|row| row.resolved(&state.public_url))
        .collect();
    Ok(Json(page))
}
