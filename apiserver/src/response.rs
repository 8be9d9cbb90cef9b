//! The response envelope, ETags and the staleness header.
//!
//! Every body is `{"metadata": {...}, "item": ...}` or `{"metadata": {...}, "items": [...]}`.
//! Records are spliced in as the bytes stored in etcd, so serving one costs a copy, not a
//! serialisation. ETags are weak (`W/"..."`): they follow the records' etcd revisions, and
//! the `staleSeconds` field may change under the same ETag.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use schemars::JsonSchema;
use serde::Serialize;

/// The header that marks a response served while etcd is unreachable: seconds since it was
/// last heard.
pub const STALE_HEADER: &str = "suyun-stale";

/// Metadata of every response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMetadata {
    /// The etcd revision of the data (of the record, or of the whole index for lists).
    pub revision: i64,
    /// Whether the status store is unreachable and this is the last state seen.
    pub stale: bool,
    /// Seconds since the status store was last heard, when stale.
    pub stale_seconds: Option<u64>,
    /// For a list with more items: pass it as `continue` to get the next page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_: Option<String>,
}

impl ResponseMetadata {
    /// Metadata at `revision` with the current staleness.
    pub fn new(revision: i64, stale_seconds: Option<u64>) -> ResponseMetadata {
        ResponseMetadata { revision, stale: stale_seconds.is_some(), stale_seconds, continue_: None }
    }
}

/// One object (schema for the OpenAPI document; bodies are spliced by [`item_body`]).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "{T}Item")]
pub struct ItemResponse<T> {
    /// Revision and staleness.
    pub metadata: ResponseMetadata,
    /// The object.
    pub item: T,
}

/// A list (schema for the OpenAPI document; bodies are spliced by [`list_body`]).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "{T}List")]
pub struct ListResponse<T> {
    /// Revision, staleness and the continue token.
    pub metadata: ResponseMetadata,
    /// The objects, sorted by name (systems by `systemId`).
    pub items: Vec<T>,
}

/// `{"metadata":…,"item":<json>}`.
pub fn item_body(metadata: &ResponseMetadata, json: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(json.len() + 96);
    body.extend_from_slice(b"{\"metadata\":");
    serde_json::to_writer(&mut body, metadata).expect("metadata serialises");
    body.extend_from_slice(b",\"item\":");
    body.extend_from_slice(json);
    body.push(b'}');
    body
}

/// `{"metadata":…,"items":[<json>,…]}`, allocated once at its final size (a list of 20 kB
/// grown from a guess was copied three times).
pub fn list_body<'a, I>(metadata: &ResponseMetadata, items: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let items = items.into_iter();
    let size = items.clone().map(|json| json.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(size + 160);
    body.extend_from_slice(b"{\"metadata\":");
    serde_json::to_writer(&mut body, metadata).expect("metadata serialises");
    body.extend_from_slice(b",\"items\":[");
    for (i, json) in items.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(json);
    }
    body.extend_from_slice(b"]}");
    body
}

/// FNV-1a, for ETags of lists: stable across processes and builds.
#[derive(Debug, Clone, Copy)]
pub struct EtagHasher(u64);

impl Default for EtagHasher {
    fn default() -> Self {
        EtagHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl EtagHasher {
    /// Adds bytes.
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// Adds a number.
    pub fn number(&mut self, n: i64) -> &mut Self {
        self.write(&n.to_le_bytes())
    }

    /// The weak ETag.
    pub fn etag(&self) -> String {
        format!("W/\"{:016x}\"", self.0)
    }
}

/// The weak ETag of one record at `revision` (plus what else shaped the view).
pub fn revision_etag(revision: i64, view: &str) -> String {
    EtagHasher::default().number(revision).write(view.as_bytes()).etag()
}

fn matches(headers: &HeaderMap, etag: &str) -> bool {
    fn weak(tag: &str) -> &str {
        tag.trim().trim_start_matches("W/")
    }
    let ours = weak(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || weak(t) == ours)
}

/// A 200 JSON response with `etag`, or 304 when the request's `If-None-Match` matches it;
/// `body` is built only when needed. Adds `Suyun-Stale` when stale.
pub fn respond(
    headers: &HeaderMap,
    etag: String,
    stale_seconds: Option<u64>,
    body: impl FnOnce() -> Vec<u8>,
) -> Response {
    let mut response = if matches(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Bytes::from(body()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if let Some(seconds) = stale_seconds {
        out.insert(STALE_HEADER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json() {
        let meta = ResponseMetadata::new(7, Some(3));
        let item: serde_json::Value =
            serde_json::from_slice(&item_body(&meta, "{\"name\":\"苏州\"}".as_bytes())).unwrap();
        assert_eq!(item["item"]["name"], "苏州");
        assert_eq!(item["metadata"]["staleSeconds"], 3);
        let list: serde_json::Value = serde_json::from_slice(&list_body(&meta, [&b"1"[..], b"2"])).unwrap();
        assert_eq!(list["items"], serde_json::json!([1, 2]));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let etag = revision_etag(5, "");
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"x\", {etag}")).unwrap());
        assert_eq!(respond(&headers, etag.clone(), None, Vec::new).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(respond(&HeaderMap::new(), etag, None, Vec::new).status(), StatusCode::OK);
    }
}
