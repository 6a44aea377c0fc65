//! Serving deploys made with local hosting: `/preview/<dep>/…` serves a
//! completed deploy, `/live/<entity>/…` the entity's latest completed
//! production deploy. Public, like the sites they are; only completed
//! deploys are ever served, so a cancelled one never goes live.
//!
//! As Cloudflare Pages and Netlify do: a directory path serves its
//! `index.html`; a build with a `_redirects` rule `/* /index.html 200` gets
//! the single-page-app fallback; a missing path gets the build's nearest
//! `404.html` (status 404). Content-hashed assets are cached for a year,
//! `If-None-Match` (or `If-Modified-Since`) answers 304, one `Range`
//! answers 206 (416 past the end), and bodies are compressed (the router's
//! compression layer; never a 206). Files are streamed from the artifact
//! store, never read whole.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::api::AppState;
use crate::domain::ids::{DeployId, EntityId};

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

/// What a request asks about the file, from its headers.
struct Conditions<'h> {
    if_none_match: Option<&'h HeaderValue>,
    if_modified_since: Option<&'h HeaderValue>,
    range: Option<&'h HeaderValue>,
    if_range: Option<&'h HeaderValue>,
}

impl<'h> Conditions<'h> {
    fn of(headers: &'h HeaderMap) -> Self {
        Self {
            if_none_match: headers.get(header::IF_NONE_MATCH),
            if_modified_since: headers.get(header::IF_MODIFIED_SINCE),
            range: headers.get(header::RANGE),
            if_range: headers.get(header::IF_RANGE),
        }
    }
}

/// What a `Range` header asks of a file of `size` bytes (RFC 9110 14.2):
/// one range, clamped to the file; several ranges or a malformed header
/// are ignored (the whole file is sent).
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    All,
    Part(std::ops::Range<u64>),
    Unsatisfiable,
}

fn wanted_range(header: &str, size: u64) -> Wanted {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::All;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        // bytes=-N: the last N bytes
        (Err(_), Ok(n)) if first.is_empty() => {
            if n == 0 || size == 0 {
                return Wanted::Unsatisfiable;
            }
            size.saturating_sub(n)..size
        }
        (Ok(a), Err(_)) if last.is_empty() => a..size,
        (Ok(a), Ok(b)) if a <= b => a..(b.saturating_add(1)).min(size),
        _ => return Wanted::All,
    };
    if range.start >= size {
        Wanted::Unsatisfiable
    } else {
        Wanted::Part(range)
    }
}

/// Whether an `If-None-Match` list names `tag` (weak comparison).
fn matches_tag(sent: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(tag) = tag.to_str() else { return false };
    sent.to_str().is_ok_and(|sent| {
        sent.split(',')
            .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == tag)
    })
}

fn http_date(at: chrono::DateTime<chrono::Utc>) -> Option<HeaderValue> {
    HeaderValue::from_str(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}

fn parse_http_date(value: &HeaderValue) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = value.to_str().ok()?;
    chrono::DateTime::parse_from_rfc2822(text.trim().trim_end_matches("GMT").trim())
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(text))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

async fn serve_file(
    state: &AppState,
    deploy: &DeployId,
    path: &str,
    live: bool,
    conditions: Conditions<'_>,
) -> Response {
    let Some(hosting) = state.hosting.as_ref() else {
        return not_found();
    };
    let manifest = match hosting.completed_manifest(deploy).await {
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
    let not_modified = |last_modified: Option<HeaderValue>| {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        let headers = response.headers_mut();
        if let Some(tag) = &etag {
            headers.insert(header::ETAG, tag.clone());
        }
        if let Some(at) = last_modified {
            headers.insert(header::LAST_MODIFIED, at);
        }
        headers.insert(header::CACHE_CONTROL, cache.clone());
        response
    };
    if let (true, Some(tag), Some(sent)) = (route.found, &etag, conditions.if_none_match) {
        if matches_tag(sent, tag) {
            return not_modified(None);
        }
    }
    // A range of the file, when asked for (and, with If-Range, only while
    // the file is the one the client has).
    let range_allowed = route.found
        && conditions.if_range.is_none_or(|sent| {
            etag.as_ref()
                .is_some_and(|tag| sent.as_bytes() == tag.as_bytes())
        });
    let wanted = match conditions.range.and_then(|r| r.to_str().ok()) {
        Some(r) if range_allowed => wanted_range(r, entry.size),
        _ => Wanted::All,
    };
    if wanted == Wanted::Unsatisfiable {
        let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", entry.size)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return response;
    }
    let range = match &wanted {
        Wanted::Part(r) => Some(r.clone()),
        _ => None,
    };
    let blob = match hosting.store().get(&entry.sha256, range.clone()).await {
        Ok(Some(blob)) => blob,
        Ok(None) => {
            tracing::error!(sha256 = entry.sha256, "a stored file is missing");
            return not_found();
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "reading a stored file");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let last_modified = http_date(blob.last_modified);
    if let (true, None, Some(since)) = (
        route.found,
        conditions.if_none_match,
        conditions.if_modified_since.and_then(parse_http_date),
    ) {
        if blob.last_modified.timestamp() <= since.timestamp() {
            return not_modified(last_modified);
        }
    }
    let body = Body::from_stream(blob.body);
    let (status, length) = match (&range, route.found) {
        (Some(r), _) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        (None, true) => (StatusCode::OK, entry.size),
        (None, false) => (StatusCode::NOT_FOUND, entry.size),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(r) = &range {
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end - 1, entry.size))
        {
            headers.insert(header::CONTENT_RANGE, v);
        }
    }
    if route.found {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(tag) = etag {
            headers.insert(header::ETAG, tag);
        }
        if let Some(at) = last_modified {
            headers.insert(header::LAST_MODIFIED, at);
        }
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
        Ok(true) => serve_file(&state, &deploy, &path, false, Conditions::of(&headers)).await,
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
            Ok(deploy) => serve_file(&state, &deploy, &path, true, Conditions::of(&headers)).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(wanted_range("bytes=0-4", 10), Wanted::Part(0..5));
        assert_eq!(wanted_range("bytes=5-", 10), Wanted::Part(5..10));
        assert_eq!(wanted_range("bytes=-3", 10), Wanted::Part(7..10));
        assert_eq!(wanted_range("bytes=-30", 10), Wanted::Part(0..10));
        assert_eq!(wanted_range("bytes=8-100", 10), Wanted::Part(8..10));
        assert_eq!(wanted_range("bytes=10-", 10), Wanted::Unsatisfiable);
        assert_eq!(wanted_range("bytes=-0", 10), Wanted::Unsatisfiable);
        assert_eq!(wanted_range("bytes=0-1,3-4", 10), Wanted::All);
        assert_eq!(wanted_range("bytes=4-2", 10), Wanted::All);
        assert_eq!(wanted_range("items=0-1", 10), Wanted::All);
    }

    #[test]
    fn http_dates_read_back() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let text = http_date(at).unwrap();
        assert_eq!(text.to_str().unwrap(), "Fri, 15 Jan 2027 08:00:00 GMT");
        assert_eq!(parse_http_date(&text), Some(at));
    }
}
