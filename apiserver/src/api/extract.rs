//! Extractors whose every rejection is a [`Problem`] (RFC 7807), never axum's `text/plain`.
//!
//! Handlers take these instead of axum's `Path`, `Query`, `Bytes` and `Extension<Identity>`:
//! a repeated `?region=`, a path segment that is not UTF-8 (`%FF`) or a body that cannot be
//! read is answered with `application/problem+json` like every other error.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::Identity;
use crate::problem::Problem;

/// A rejection as a problem: its status, and its text when it is the client's fault (4xx);
/// a server-side rejection (5xx) gets a generic detail and is logged instead.
fn rejected(status: StatusCode, text: String) -> Problem {
    if status.is_server_error() {
        tracing::error!(%status, error = %text, "an extractor failed on the server side");
        Problem::from_status(status, "the request could not be handled")
    } else {
        Problem::from_status(status, text)
    }
}

/// Path parameters (`axum::extract::Path`) with problem rejections.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}

/// The query string (`axum::extract::Query`) with problem rejections.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}

/// The whole request body (`bytes::Bytes`) with problem rejections (e.g. 413 past the limit).
#[derive(Debug, Clone)]
pub struct ApiBody(pub Bytes);

impl<S> FromRequest<S> for ApiBody
where
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(ApiBody(bytes)),
            Err(rejection) => {
                // The text names the transport's error (hyper's): log it, answer in general terms.
                let status = rejection.status();
                tracing::info!(%status, error = %rejection.body_text(), "a request body could not be read");
                let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "the request body is larger than this endpoint accepts"
                } else {
                    "the request body could not be read"
                };
                Err(rejected(status, detail.to_owned()))
            }
        }
    }
}

/// The caller's identity, as the authentication middleware resolved it: taken out of the
/// request (moved, not copied), so a handler extracts it once.
impl<S> FromRequestParts<S> for Identity
where
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        match parts.extensions.remove::<Identity>() {
            Some(identity) => Ok(identity),
            None => {
                tracing::error!(path = %parts.uri.path(), "a handler that needs an identity ran without authentication");
                Err(Problem::unauthenticated("present a client certificate or a bearer token"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use http::header;
    use http_body_util::BodyExt;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Region {
        #[allow(dead_code)]
        region: Option<String>,
    }

    async fn problem_of(app: Router, request: http::Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some(crate::problem::PROBLEM_JSON),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn app() -> Router {
        Router::new()
            .route("/q", get(|ApiQuery(_): ApiQuery<Region>| async { "ok" }))
            .route("/p/{name}", get(|ApiPath(name): ApiPath<String>| async move { name }))
            .route("/who", get(|identity: Identity| async move { identity.name }))
            .route(
                "/body",
                post(|ApiBody(body): ApiBody| async move { body.len().to_string() })
                    .layer(axum::extract::DefaultBodyLimit::max(8)),
            )
    }

    fn get_request(uri: &str) -> http::Request<Body> {
        http::Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn rejections_are_problems() {
        let (status, problem) = problem_of(app(), get_request("/q?region=320500&region=320100")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["status"], 400);
        assert!(problem["detail"].as_str().unwrap().contains("region"), "{problem}");

        let (status, _) = problem_of(app(), get_request("/p/%FF")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let (status, problem) = problem_of(app(), get_request("/who")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");

        let request = http::Request::post("/body").body(Body::from("0123456789abcdef")).unwrap();
        let (status, _) = problem_of(app(), request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
