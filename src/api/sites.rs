//! Serving deploys made with local hosting: `/preview/<dep>/…` serves a
//! completed deploy, `/live/<entity>/…` the entity's latest completed
//! production deploy. Public, like the sites they are; only completed
//! deploys are ever served, so a cancelled one never goes live.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::api::AppState;
use crate::domain::ids::{DeployId, EntityId};
use crate::hosting::manifests::load_manifest;

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 Not Found\n",
    )
        .into_response()
}

async fn serve_file(state: &AppState, deploy: &DeployId, path: &str, live: bool) -> Response {
    let Some(hosting) = state.hosting.as_ref() else {
        return not_found();
    };
    let manifest = match load_manifest(hosting.data_dir(), deploy) {
        Ok(Some(m)) => m,
        Ok(None) => return not_found(),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "reading a manifest");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some((_, entry)) = manifest.resolve(path) else {
        return not_found();
    };
    let file = match tokio::fs::File::open(hosting.blob_path(&entry.sha256)).await {
        Ok(f) => f,
        Err(error) => {
            tracing::error!(%error, sha256 = entry.sha256, "a stored file is missing");
            return not_found();
        }
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.size));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", entry.sha256)) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if live {
            "no-cache"
        } else {
            "public, max-age=300"
        }),
    );
    response
}

async fn completed(state: &AppState, deploy: &DeployId) -> sqlx::Result<bool> {
    crate::read_model::lookups::deploy_completed(&state.db, &deploy.to_string()).await
}

async fn live_deploy(state: &AppState, entity: &EntityId) -> sqlx::Result<Option<String>> {
    crate::read_model::lookups::live_deploy(&state.db, &entity.to_string()).await
}

async fn preview_at(state: AppState, deploy: String, path: String) -> Response {
    let Ok(deploy) = deploy.parse::<DeployId>() else {
        return not_found();
    };
    match completed(&state, &deploy).await {
        Ok(true) => serve_file(&state, &deploy, &path, false).await,
        Ok(false) => not_found(),
        Err(error) => crate::api::problem::Problem::from(error).into_response(),
    }
}

async fn live_at(state: AppState, entity: String, path: String) -> Response {
    let Ok(entity) = entity.parse::<EntityId>() else {
        return not_found();
    };
    match live_deploy(&state, &entity).await {
        Ok(Some(id)) => match id.parse::<DeployId>() {
            Ok(deploy) => serve_file(&state, &deploy, &path, true).await,
            Err(_) => not_found(),
        },
        Ok(None) => not_found(),
        Err(error) => crate::api::problem::Problem::from(error).into_response(),
    }
}

pub async fn preview(
    State(state): State<AppState>,
    Path((deploy, path)): Path<(String, String)>,
) -> Response {
    preview_at(state, deploy, path).await
}

pub async fn preview_root(State(state): State<AppState>, Path(deploy): Path<String>) -> Response {
    preview_at(state, deploy, String::new()).await
}

pub async fn live(
    State(state): State<AppState>,
    Path((entity, path)): Path<(String, String)>,
) -> Response {
    live_at(state, entity, path).await
}

pub async fn live_root(State(state): State<AppState>, Path(entity): Path<String>) -> Response {
    live_at(state, entity, String::new()).await
}

/// `/preview/<dep>` → `/preview/<dep>/`, so relative links resolve.
pub async fn add_slash(uri: axum::http::Uri) -> Redirect {
    Redirect::permanent(&format!("{}/", uri.path()))
}
