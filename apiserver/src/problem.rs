//! Errors as RFC 7807 problem details (`application/problem+json`).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use schemars::JsonSchema;
use serde::Serialize;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response (RFC 7807).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ProblemDetails {
    /// A URI naming the kind of problem, e.g. `https://suyun.io/problems/not-found`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
}

/// `text` as a JSON string literal (quoted, control characters escaped): how a detail
/// names a value the client sent.
pub fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// An API error; converts into a problem response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {kind}: {detail}")]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Last segment of the problem type URI.
    pub kind: &'static str,
    /// Title.
    pub title: &'static str,
    /// Detail for this occurrence.
    pub detail: String,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem { status, kind, title, detail: detail.into() }
    }

    /// 401: no credentials, or credentials that do not authenticate.
    pub fn unauthenticated(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required", detail)
    }

    /// 403: the caller may not do this (outside its scope or read-only).
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed in your scope", detail)
    }

    /// 404: no such object in the caller's scope (objects outside it are not revealed).
    pub fn not_found(what: &str, name: &str) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", format!("{what} {} not found", quoted(name)))
    }

    /// 404 for a path no route serves.
    pub fn no_route(path: &str) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "no-route", "No such endpoint", format!("no endpoint at {path}"))
    }

    /// 405 for a known path with another method.
    pub fn method_not_allowed() -> Problem {
        Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed", "see /openapi.json")
    }

    /// 400: a malformed query parameter.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }

    /// 409: the request conflicts with the object's state.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 503: the status store cannot be used right now.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Status store unavailable", detail)
    }

    /// 415: a state-changing request whose body is not declared as JSON.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type", detail)
    }

    /// 500: something failed on the server; the detail never carries the internal error.
    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be handled; the server logged why",
        )
    }

    /// A problem for any status, with the kind and title that status has elsewhere in the API
    /// (used for rejections that carry only a status and a text).
    pub fn from_status(status: StatusCode, detail: impl Into<String>) -> Problem {
        let (kind, title) = match status {
            StatusCode::BAD_REQUEST => ("bad-request", "Bad request"),
            StatusCode::UNAUTHORIZED => ("unauthenticated", "Authentication required"),
            StatusCode::FORBIDDEN => ("forbidden", "Not allowed in your scope"),
            StatusCode::NOT_FOUND => ("not-found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
            StatusCode::CONFLICT => ("conflict", "Conflict"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Request body too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Unsupported media type"),
            StatusCode::TOO_MANY_REQUESTS => ("too-many-requests", "Too many requests"),
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "Status store unavailable"),
            s if s.is_server_error() => ("internal", "Internal error"),
            _ => ("bad-request", "Bad request"),
        };
        Problem::new(status, kind, title, detail)
    }

    /// The problem-details body.
    pub fn details(&self) -> ProblemDetails {
        ProblemDetails {
            type_: format!("https://suyun.io/problems/{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        }
    }

    /// 413: a request body larger than the server accepts.
    pub fn payload_too_large(limit: usize) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Request body too large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 429: the caller's identity is over its rate limit (the response also carries
    /// `Retry-After`).
    pub fn too_many_requests(identity: &str, retry_after_seconds: u64) -> Problem {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("{identity} is over its request rate; retry in {retry_after_seconds} s"),
        )
    }

    /// 408: the client did not send the whole request in time.
    pub fn request_timeout(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::REQUEST_TIMEOUT, "request-timeout", "Request not received in time", detail)
    }

    /// 503: the server did not finish the request in time.
    pub fn server_timeout(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request not completed in time", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        // Serialising four plain fields cannot fail; should it ever, the status still goes out.
        let body = serde_json::to_vec(&self.details()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"suyun\""));
        }
        response
    }
}
