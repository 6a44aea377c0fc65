//! `Authorization: Bearer <token>` → [`Caller`], or a 401.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::api::problem::Problem;
use crate::api::AppState;
use crate::store::tokens::{self, Caller};

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        // Failed authentications are limited per client address: past the
        // budget, 429 before any lookup (guessing tokens costs a database
        // query each otherwise).
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::api::listener::ClientAddr>>()
            .map(|c| c.0 .0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        state
            .auth_failures
            .peek(&address)
            .map_err(too_many_failures)?;
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            Problem::unauthorized("send a bearer token: Authorization: Bearer <token>")
        })?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be: Bearer <token>")
            })?;
        let Some(caller) = tokens::authenticate(&state.db, secret).await? else {
            state
                .auth_failures
                .check(&address)
                .map_err(too_many_failures)?;
            return Err(Problem::unauthorized("unknown or revoked token"));
        };
        // A blob upload is not counted: a build of 20,000 files would take
        // 200 s at the default rate. Blobs are taken only while one of the
        // caller's uploading builds lists them, and that listing is counted.
        let blob_upload =
            parts.method == axum::http::Method::PUT && parts.uri.path().starts_with("/api/blobs/");
        if !blob_upload {
            state
                .limiter
                .check(&caller.token_id)
                .map_err(Problem::too_many_requests)?;
        }
        if state.last_use.due(&caller.token_id) {
            let (db, id) = (state.db.clone(), caller.token_id.clone());
            tokio::spawn(async move {
                let now = crate::domain::time::now();
                if let Err(error) = crate::store::access::touch_token(&db, &id, now).await {
                    tracing::warn!(%error, token = id, "recording a token's last use failed");
                }
            });
        }
        Ok(caller)
    }
}

/// When each token's last use was recorded by this server: at most once a
/// minute per token, so `deployd token list` can say when a token was last
/// used without a write on every request.
#[derive(Default)]
pub struct LastUse(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl LastUse {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    /// Whether `token`'s use should be recorded now (and notes that it is).
    pub fn due(&self, token: &str) -> bool {
        let now = std::time::Instant::now();
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, at| now.duration_since(*at) < Self::EVERY);
        }
        match seen.get(token) {
            Some(at) if now.duration_since(*at) < Self::EVERY => false,
            _ => {
                seen.insert(token.to_string(), now);
                true
            }
        }
    }
}

fn too_many_failures(wait: std::time::Duration) -> Problem {
    let mut problem = Problem::too_many_requests(wait);
    problem.detail = format!(
        "too many failed authentications from this address; retry in {} s",
        wait.as_secs_f64().ceil().max(1.0) as u64
    );
    problem
}

/// The request id (`x-request-id`, set by the middleware when the client
/// sent none), carried into event metadata.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        ))
    }
}
