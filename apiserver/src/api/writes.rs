//! The guard of every state-changing request (any method but GET, HEAD and OPTIONS), checked
//! for every authenticated route by [`super::admit`]:
//!
//! * the request must declare its body as JSON (`Content-Type: application/json`, an empty
//!   body is fine), else 415. A browser sends `text/plain`, form or multipart bodies across
//!   sites without asking; a JSON content type needs a CORS preflight, which this API never
//!   grants.
//! * a request with an `Origin` header (a browser's) is refused (403) unless that origin is
//!   one of `--allowed-origins` (none by default): a page of another site cannot approve
//!   anything with a city operator's credentials.

use http::{HeaderMap, header};

use crate::problem::Problem;

/// Normalises an origin for comparison: trimmed, without a trailing `/`, ASCII lower-case.
pub fn normalise_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether the headers declare a JSON body (`application/json`, parameters allowed).
fn declares_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return false };
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Checks a request against the rules above; `Ok` for safe methods.
pub fn check(headers: &HeaderMap, method: &http::Method, allowed_origins: &[String]) -> Result<(), Problem> {
    if method.is_safe() {
        return Ok(());
    }
    for origin in headers.get_all(header::ORIGIN) {
        let origin = origin.to_str().map(normalise_origin).unwrap_or_default();
        if !allowed_origins.contains(&origin) {
            return Err(Problem::forbidden(
                "requests from a browser page of this origin may not change anything (see --allowed-origins)",
            ));
        }
    }
    if !declares_json(headers) {
        return Err(Problem::unsupported_media_type(
            "a request that changes something must be sent with Content-Type: application/json",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Method, StatusCode};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn writes_need_json_and_an_allowed_origin() {
        let allowed = vec![normalise_origin("https://ops.suyun.example/")];
        let status = |pairs: &[(&'static str, &'static str)], method: Method| {
            check(&headers(pairs), &method, &allowed).err().map(|p| p.status)
        };
        assert_eq!(status(&[], Method::GET), None);
        assert_eq!(status(&[("origin", "https://evil.example")], Method::GET), None);
        assert_eq!(status(&[("content-type", "application/json")], Method::POST), None);
        assert_eq!(status(&[("content-type", "Application/JSON; charset=utf-8")], Method::DELETE), None);
        assert_eq!(status(&[], Method::POST), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert_eq!(status(&[("content-type", "text/plain")], Method::POST), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert_eq!(
            status(&[("content-type", "application/json-seq")], Method::POST),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            status(&[("content-type", "application/json"), ("content-type", "text/plain")], Method::POST),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(status(&[("content-type", "text/plain")], Method::DELETE), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        let json = ("content-type", "application/json");
        assert_eq!(status(&[json, ("origin", "https://evil.example")], Method::POST), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&[json, ("origin", "null")], Method::POST), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&[json, ("origin", "https://OPS.suyun.example")], Method::POST), None);
        assert_eq!(
            status(&[json, ("origin", "https://ops.suyun.example"), ("origin", "https://evil.example")], Method::POST),
            Some(StatusCode::FORBIDDEN)
        );
        // No origin list at all: no browser origin is allowed.
        assert!(check(&headers(&[json, ("origin", "https://ops.suyun.example")]), &Method::POST, &[]).is_err());
    }
}
