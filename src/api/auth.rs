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
        let caller = tokens::authenticate(&state.db, secret)
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown or revoked token"))?;
        state
            .limiter
            .check(&caller.token_id)
            .map_err(Problem::too_many_requests)?;
        Ok(caller)
    }
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
