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
    /// Extension members of the body (RFC 9457 3.2): `missing` of a
    /// finalize that came too early.
    pub extensions: Vec<(&'static str, serde_json::Value)>,
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
    #[serde(flatten)]
    extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
            extensions: Vec::new(),
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

    /// 413: a body or a file larger than the server takes.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable request",
            detail,
        )
    }

    /// 415: the body is not in a type the endpoint takes.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
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
            extensions: self
                .extensions
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
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
                let (what, path) = if id.starts_with("dep_") {
                    ("deploy", "deploys")
                } else {
                    ("entity", "entities")
                };
                let mut problem = Problem::unavailable(format!(
                    "{what} {id} was recorded but the read model is behind; GET /api/{path}/{id} shortly"
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

/// Middleware: every error the server sends is problem+json, also those
/// made below the handlers (the body limit's 413, the timeout's 503, a
/// path that is not UTF-8, a panic's 500). A response of 400 or more that
/// is not problem+json is rewritten with the same status, its text (when
/// short) as the detail.
pub async fn every_error_is_a_problem(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // A URI too long for hyper never gets here (`api::listener`); one
    // shorter than hyper's bound but over deployd's is refused here.
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri_bytes > crate::api::listener::MAX_URI_BYTES {
        return problem_response(
            StatusCode::URI_TOO_LONG,
            &serde_json::json!({
                "type": "https://deployd.dev/problems/uri-too-long",
                "title": "URI Too Long",
                "status": 414,
                "detail": format!(
                    "the request URI is {uri_bytes} bytes; this server reads {} at most",
                    crate::api::listener::MAX_URI_BYTES
                ),
            }),
        );
    }
    // A hosted site answers with its own pages (a build's 404.html).
    let site = {
        let path = request.uri().path();
        path.starts_with("/preview/") || path.starts_with("/live/")
    };
    let response = next.run(request).await;
    let status = response.status();
    if status.as_u16() < 400 {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // problem+json already, a JSON document of its own (`/readyz`'s 503),
    // or a site's own error page.
    if content_type.starts_with("application/problem+json")
        || content_type.starts_with("application/json")
        || (site && content_type.starts_with("text/html"))
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = match (status, text) {
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            "the request body is larger than this server takes (DEPLOYD_BODY_LIMIT)".to_string()
        }
        (StatusCode::SERVICE_UNAVAILABLE, None) => {
            "the request took longer than this server allows (DEPLOYD_REQUEST_TIMEOUT_MS)"
                .to_string()
        }
        (_, Some(text)) => text,
        (_, None) => title.to_string(),
    };
    let body = serde_json::json!({
        "type": format!("https://deployd.dev/problems/{}", title.to_ascii_lowercase().replace(' ', "-")),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut rewritten = problem_response(status, &body);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// A request body that could not be read: too large (413), not sent in
/// time (408), or broken off (400).
pub fn body_problem(rejection: axum::extract::rejection::BytesRejection) -> Problem {
    use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
    let timed_out = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        let mut found = false;
        while let Some(e) = source {
            if e.is::<tower_http::timeout::TimeoutError>() {
                found = true;
                break;
            }
            source = e.source();
        }
        found
    };
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                "the request body is larger than this server takes (DEPLOYD_BODY_LIMIT)",
            )
        }
        _ if timed_out => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request Timeout",
            "the request body did not arrive in time",
        ),
        other => Problem::invalid_field("body", format!("could not be read: {other}")),
    }
}
