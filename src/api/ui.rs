//! The web dashboard (`spec/dashboard.md`), compiled into the binary.
//!
//! The page is plain JavaScript modules and CSS under `src/api/ui/`, read
//! with `include_str!`. Each asset is served under a content-hashed name
//! (`/ui/assets/app.<hash>.js`, the hash a BLAKE3 prefix computed once at
//! startup) with a year's `max-age`, `immutable` and an ETag; the app shell
//! (`/ui/`, and every dashboard route, so addresses can be bookmarked) is
//! revalidated on each load. A Content-Security-Policy keeps the page to
//! its own origin: it talks only to this server's public API.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::api::problem::Problem;

/// What the page may load and talk to: this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

const SHELL: &str = include_str!("ui/index.html");

/// One compiled-in asset.
struct Asset {
    /// The name in the page: `app.<hash>.js`.
    name: String,
    content_type: &'static str,
    body: &'static str,
    etag: String,
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, body: &'static str) -> Self {
        let hash = blake3::hash(body.as_bytes()).to_hex();
        let short = &hash.as_str()[..16];
        Asset {
            name: format!("{stem}.{short}.{ext}"),
            content_type,
            body,
            etag: format!("\"{short}\""),
        }
    }
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        Asset::new(
            "app",
            "js",
            "text/javascript; charset=utf-8",
            include_str!("ui/app.js"),
        ),
        Asset::new(
            "app",
            "css",
            "text/css; charset=utf-8",
            include_str!("ui/app.css"),
        ),
        Asset::new("icon", "svg", "image/svg+xml", include_str!("ui/icon.svg")),
    ]
});

/// The shell with the hashed asset names filled in, and its ETag.
static PAGE: LazyLock<(String, String)> = LazyLock::new(|| {
    let mut page = SHELL.to_string();
    for asset in ASSETS.iter() {
        let plain = asset.name.split('.').collect::<Vec<_>>();
        let placeholder = format!("{{{{{}.{}}}}}", plain[0], plain[2]);
        page = page.replace(&placeholder, &format!("/ui/assets/{}", asset.name));
    }
    let etag = format!(
        "\"{}\"",
        &blake3::hash(page.as_bytes()).to_hex().as_str()[..16]
    );
    (page, etag)
});

/// The hashed names of the assets, for tests and the page-weight report.
pub fn asset_paths() -> Vec<String> {
    ASSETS
        .iter()
        .map(|a| format!("/ui/assets/{}", a.name))
        .collect()
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// The app shell: every dashboard route answers it; the page draws the view.
async fn shell(headers: HeaderMap) -> Response {
    let (page, etag) = &*PAGE;
    let mut response = if not_modified(&headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page.clone(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(etag).expect("an etag"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn shell_with_id(Path(_id): Path<String>, headers: HeaderMap) -> Response {
    shell(headers).await
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return Problem::not_found(format!("no dashboard asset {name}")).into_response();
    };
    let mut response = if not_modified(&headers, &asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&asset.etag).expect("an etag"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `/` redirects to the dashboard.
async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// The dashboard's routes (compressed with gzip when the browser accepts it).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(root))
        .route("/ui/", get(shell))
        .route("/ui/deploys", get(shell))
        .route("/ui/deploys/{id}", get(shell_with_id))
        .route("/ui/apps", get(shell))
        .route("/ui/apps/{id}", get(shell_with_id))
        .route("/ui/webhooks", get(shell))
        .route("/ui/assets/{name}", get(asset))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
}
