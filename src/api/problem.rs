//! The API's one error boundary: every error leaves as
//! `application/problem+json` (RFC 9457).
//!
//! - Handlers return `Result<_, Problem>`.
//! - Bad input is a 400 whose `errors[].pointer` names the parameter and the
//!   path inside it (`filter/or/1/status/eq`); nothing has changed.
//! - Domain refusals map to 404 (unknown, or outside the caller's
//!   workspaces), 409 (state conflict) and 422 (well-formed, but the state
//!   refuses it).
//! - Anything unexpected is logged once, here, and answered as a 500 with no
//!   detail: no SQL, no stack trace, nothing of another workspace.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::Refusal;
pub use crate::domain::FieldError;
use crate::read_model::list::ListError;

/// An error answer.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extra headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// 400, naming each bad part.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.pointer, one.message),
            _ => format!("{} parts of the request are invalid", errors.len()),
        };
        let mut p = Self::new(StatusCode::BAD_REQUEST, "Invalid request", detail);
        p.errors = errors;
        p
    }

    /// 400 for one bad part.
    pub fn invalid_field(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(pointer, message)])
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut p = Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail);
        p.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"deployd\""),
        ));
        p
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable request",
            detail,
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            detail,
        )
    }

    /// 429 with `Retry-After` (whole seconds, at least 1).
    pub fn too_many_requests(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            format!("this token is over its rate limit; retry in {seconds} s"),
        );
        p.headers
            .push((header::RETRY_AFTER, HeaderValue::from(seconds)));
        p
    }

    /// 500: logged here, answered without detail.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "the server failed to answer this request; it has been logged",
        )
    }
}

impl From<anyhow::Error> for Problem {
    fn from(error: anyhow::Error) -> Self {
        Problem::internal(format!("{error:#}"))
    }
}

impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        Problem::internal(error)
    }
}

impl Problem {
    /// The body as JSON (what an idempotent replay sends again).
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Body {
            kind: format!(
                "https://deployd.dev/problems/{}",
                self.title.to_ascii_lowercase().replace(' ', "-")
            ),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            errors: &self.errors,
        })
        .unwrap_or_default()
    }
}

/// A response with the problem+json content type.
pub fn problem_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = problem_response(self.status, &self.body());
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl From<ListError> for Problem {
    fn from(e: ListError) -> Self {
        match e {
            ListError::Invalid(errors) => Problem::invalid(errors),
            ListError::Database(e) => Problem::internal(e),
        }
    }
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound(detail) => Problem::not_found(detail),
            Refusal::Unprocessable(detail) => Problem::unprocessable(detail),
            Refusal::Conflict(detail) => Problem::conflict(detail),
            Refusal::Behind { id } => {
                let mut problem = Problem::unavailable(format!(
                    "deploy {id} was recorded but the read model is behind; GET /api/deploys/{id} shortly"
                ));
                problem
                    .headers
                    .push((header::RETRY_AFTER, HeaderValue::from_static("1")));
                problem
            }
            Refusal::Internal(error) => Problem::internal(format!("{error:#}")),
        }
    }
}
