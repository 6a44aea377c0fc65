//! Serving deploys made with local hosting: `/preview/<dep>/…` serves a
//! completed deploy, `/live/<entity>/…` the entity's latest completed
//! production deploy. Public, like the sites they are; only completed
//! deploys are ever served, so a cancelled one never goes live.
//!
//! As Cloudflare Pages and Netlify do: a directory path serves its
//! `index.html`; a build with a `_redirects` rule `/* /index.html 200` gets
//! the single-page-app fallback; a missing path gets the build's nearest
//! `404.html` (status 404). Content-hashed assets are cached for a year,
//! `If-None-Match` answers 304, and bodies are compressed (the router's
//! compression layer).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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

/// `Cache-Control` of a served file: a content-hashed asset never changes
/// under its name, so it is cached for a year; anything else of the live
/// site is revalidated on every use (it changes with the next deploy), and
/// of a preview (fixed for good, but a preview is looked at, not hot) for
/// five minutes. A 404 page is never cached.
fn cache_control(key: &str, live: bool, found: bool) -> &'static str {
    if !found {
        "no-cache"
    } else if crate::hosting::content_hashed(key) {
        "public, max-age=31536000, immutable"
    } else if live {
        "no-cache"
    } else {
        "public, max-age=300"
    }
}

async fn serve_file(
    state: &AppState,
    deploy: &DeployId,
    path: &str,
    live: bool,
    if_none_match: Option<&HeaderValue>,
) -> Response {
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
    let Some(route) = manifest.route(path) else {
        return not_found();
    };
    let entry = route.entry;
    let etag = HeaderValue::from_str(&format!("\"{}\"", entry.sha256)).ok();
    let cache = HeaderValue::from_static(cache_control(route.key, live, route.found));
    if let (true, Some(tag), Some(sent)) = (route.found, &etag, if_none_match) {
        let matches = sent.to_str().is_ok_and(|sent| {
            sent.split(',')
                .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == tag)
        });
        if matches {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().insert(header::ETAG, tag.clone());
            response.headers_mut().insert(header::CACHE_CONTROL, cache);
            return response;
        }
    }
    let file = match tokio::fs::File::open(hosting.blob_path(&entry.sha256)).await {
        Ok(f) => f,
        Err(error) => {
            tracing::error!(%error, sha256 = entry.sha256, "a stored file is missing");
            return not_found();
        }
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let status = if route.found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.size));
    if let (true, Some(tag)) = (route.found, etag) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(header::CACHE_CONTROL, cache);
    response
}

async fn completed(state: &AppState, deploy: &DeployId) -> sqlx::Result<bool> {
    crate::read_model::lookups::deploy_completed(&state.db, &deploy.to_string()).await
}

async fn live_deploy(state: &AppState, entity: &EntityId) -> sqlx::Result<Option<String>> {
    crate::read_model::lookups::live_deploy(&state.db, &entity.to_string()).await
}

async fn preview_at(state: AppState, deploy: String, path: String, headers: HeaderMap) -> Response {
    let Ok(deploy) = deploy.parse::<DeployId>() else {
        return not_found();
    };
    match completed(&state, &deploy).await {
        Ok(true) => {
            serve_file(
                &state,
                &deploy,
                &path,
                false,
                headers.get(header::IF_NONE_MATCH),
            )
            .await
        }
        Ok(false) => not_found(),
        Err(error) => crate::api::problem::Problem::from(error).into_response(),
    }
}

async fn live_at(state: AppState, entity: String, path: String, headers: HeaderMap) -> Response {
    let Ok(entity) = entity.parse::<EntityId>() else {
        return not_found();
    };
    match live_deploy(&state, &entity).await {
        Ok(Some(id)) => match id.parse::<DeployId>() {
            Ok(deploy) => {
                serve_file(
                    &state,
                    &deploy,
                    &path,
                    true,
                    headers.get(header::IF_NONE_MATCH),
                )
                .await
            }
            Err(_) => not_found(),
        },
        Ok(None) => not_found(),
        Err(error) => crate::api::problem::Problem::from(error).into_response(),
    }
}

pub async fn preview(
    State(state): State<AppState>,
    Path((deploy, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    preview_at(state, deploy, path, headers).await
}

pub async fn preview_root(
    State(state): State<AppState>,
    Path(deploy): Path<String>,
    headers: HeaderMap,
) -> Response {
    preview_at(state, deploy, String::new(), headers).await
}

pub async fn live(
    State(state): State<AppState>,
    Path((entity, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    live_at(state, entity, path, headers).await
}

pub async fn live_root(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
) -> Response {
    live_at(state, entity, String::new(), headers).await
}

/// `/preview/<dep>` → `/preview/<dep>/`, so relative links resolve.
pub async fn add_slash(uri: axum::http::Uri) -> Redirect {
    Redirect::permanent(&format!("{}/", uri.path()))
}
