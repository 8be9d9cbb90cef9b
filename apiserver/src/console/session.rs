//! Console sessions: opened by a token login (or on a client certificate's first visit, for
//! its CSRF token), kept in the status store so that every apiserver replica knows them, and
//! ended by logout, by their etcd lease, or by the withdrawal of the token they were opened
//! with.
//!
//! The browser holds the session id in a `__Host-` cookie (`Secure`, `HttpOnly`,
//! `SameSite=Strict`, path `/`); the store holds only its SHA-256
//! (`console-sessions/<hash>`), and the CSRF token is another one-way function of the id, so
//! neither the store nor a page reveals the id.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use etcd_client::PutOptions;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use suyun_store::readmodel::SessionRecord;

use crate::AppState;
use crate::auth::{Identity, Method};
use crate::problem::Problem;

/// The session cookie. `__Host-` makes the browser refuse it unless it is `Secure`, has path
/// `/` and no `Domain`: another host of the domain cannot set or read it.
pub const COOKIE: &str = "__Host-suyun-session";

/// How long a store operation of a session may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// A session as the request presented it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session id (from the cookie).
    id: String,
    /// Hash of the id: its key in the store.
    pub hash: String,
    /// What the store says of it.
    pub record: SessionRecord,
}

impl Session {
    /// The `Set-Cookie` value that carries this session until it expires.
    fn cookie(&self) -> String {
        let left = self
            .record
            .expires
            .parse::<jiff::Timestamp>()
            .map_or(0, |end| end.duration_since(jiff::Timestamp::now()).as_secs().max(0));
        format!("{COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={left}", self.id)
    }

    /// The CSRF token of this session: forms that change something carry it.
    pub fn csrf(&self) -> String {
        csrf_of(&self.id)
    }
}

fn hash_of(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn csrf_of(id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"suyun-console-csrf\0");
    hasher.update(id.as_bytes());
    hex::encode(&hasher.finalize()[..20])
}

/// Whether `given` is the CSRF token of `session` (compared as hashes: the time taken does not
/// tell how much of a guess was right).
pub fn csrf_matches(session: &Session, given: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(session.csrf().as_bytes())
}

/// The session id the request's cookie carries, if any (and if it has the shape of one).
fn cookie_id(headers: &HeaderMap) -> Option<&str> {
    super::cookie(headers, COOKIE)
        .filter(|v| v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Whether the request carries a session cookie at all (to remove one that names no session).
pub fn cookie_present(headers: &HeaderMap) -> bool {
    super::cookie(headers, COOKIE).is_some()
}

/// Whether a session has passed its end (the lease removes it from the store, but an index
/// cut off from the store keeps it).
fn expired(record: &SessionRecord) -> bool {
    record.expires.parse::<jiff::Timestamp>().map_or(true, |end| end <= jiff::Timestamp::now())
}

/// The session of the request's cookie: from the index, or (opened on another replica an
/// instant ago, before this one's watch saw it) from the store. `None` when there is no
/// cookie, or it names no live session.
///
/// The store is asked only within the rate limit of one pseudo-identity shared by every
/// caller: cookies that name no session (forged, or ended) cannot make the apiserver send
/// etcd a read per request.
pub async fn find(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let id = cookie_id(headers)?;
    let hash = hash_of(id);
    let indexed = state.index.read().ok()?.sessions.get(&hash).map(|e| e.record.clone());
    let record = match indexed {
        Some(record) => record,
        None => {
            let lookups = Identity {
                name: "console session lookups in the store".to_owned(),
                scope: crate::auth::Scope::Province,
                read_only: true,
                method: Method::Token,
            };
            state.limiter.check(&lookups).ok()?;
            let mut client = state.health.client()?;
            let key = state.keys.session(&hash);
            let read = tokio::time::timeout(STORE_TIMEOUT, client.get(key, None)).await.ok()?.ok()?;
            serde_json::from_slice(read.kvs().first()?.value()).ok()?
        }
    };
    (!expired(&record)).then(|| Session { id: id.to_owned(), hash, record })
}

/// The identity a session stands for now, given the client certificate of the connection:
/// the certificate's own identity for a session opened with it (and `None` for another
/// certificate's), the token's current identity for a token session (`None` once the token
/// file no longer lists it).
pub fn identity_of(state: &AppState, session: &Session, certificate: Option<&Identity>) -> Option<Identity> {
    match (&session.record.token_sha256, certificate) {
        (None, Some(cert)) => {
            (cert.name == session.record.identity && cert.scope.as_str() == session.record.scope).then(|| cert.clone())
        }
        (None, None) => None,
        (Some(hash), _) => {
            let digest: [u8; 32] = hex::decode(hash).ok()?.try_into().ok()?;
            state.tokens.lookup_digest(&digest)
        }
    }
}

/// Opens a session for `identity` (authenticated by `token`, or by its client certificate
/// when `token` is `None`), lasting `ttl`: written to the store under a lease of that length,
/// and put into the index at once (the next request may come before the watch brings it).
/// Returns the session and its `Set-Cookie` value.
pub async fn open(
    state: &AppState,
    identity: &Identity,
    token: Option<&str>,
    ttl: Duration,
) -> Result<(Session, String), Problem> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a session id");
        Problem::internal()
    })?;
    let id = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_of(&id);
    let now = jiff::Timestamp::now();
    let ttl_seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(60);
    let expires = now.checked_add(jiff::SignedDuration::from_secs(ttl_seconds)).map_err(|_| Problem::internal())?;
    let record = SessionRecord {
        identity: identity.name.clone(),
        scope: identity.scope.as_str().to_owned(),
        token_sha256: match (token, identity.method) {
            (Some(token), _) => Some(crate::auth::token_hash(token)),
            (None, Method::Certificate) => None,
            (None, Method::Token) => return Err(Problem::internal()),
        },
        created: format!("{now:.0}"),
        expires: format!("{expires:.0}"),
    };
    let value = serde_json::to_vec(&record).map_err(|_| Problem::internal())?;
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "the status store refused a console session");
        Problem::unavailable("the status store is unreachable: no session can be opened now; try again later")
    };
    let mut client = state.health.client().ok_or_else(|| unavailable(&"not connected"))?;
    let lease = tokio::time::timeout(STORE_TIMEOUT, client.lease_grant(ttl_seconds, None))
        .await
        .map_err(|_| unavailable(&"timed out"))?
        .map_err(|e| unavailable(&e))?;
    let key = state.keys.session(&hash);
    let put = tokio::time::timeout(
        STORE_TIMEOUT,
        client.put(key.clone(), value.clone(), Some(PutOptions::new().with_lease(lease.id()))),
    )
    .await
    .map_err(|_| unavailable(&"timed out"))?
    .map_err(|e| unavailable(&e))?;
    let revision = put.header().map(|h| h.revision()).unwrap_or_default();
    if let Ok(mut index) = state.index.write() {
        index.put_kv(&state.keys, &key, &value, revision, revision);
    }
    tracing::info!(identity = %identity.name, scope = %identity.scope.as_str(), "console session opened");
    let session = Session { id, hash, record };
    let cookie = session.cookie();
    Ok((session, cookie))
}

/// The sessions this replica opened for client certificates, by identity and scope: a
/// certificate that comes back without the cookie (another browser, a script that keeps no
/// cookies) is given the same session again instead of a new one, so a certificate holder
/// cannot fill the store with sessions. A session is reused only while the store still has it.
#[derive(Debug, Default)]
pub struct CertificateSessions(std::sync::Mutex<std::collections::HashMap<String, Session>>);

impl CertificateSessions {
    /// The session of `identity`'s certificate, and the cookie to set: a live one this replica
    /// opened before, or a new one.
    pub async fn get_or_open(
        &self,
        state: &AppState,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<(Session, String), Problem> {
        let key = format!("{}\0{}", identity.name, identity.scope.as_str());
        let known = self.0.lock().map_err(|_| Problem::internal())?.get(&key).cloned();
        if let Some(session) = known {
            let live = state.index.read().is_ok_and(|index| index.sessions.contains_key(&session.hash));
            if live && !expired(&session.record) {
                let cookie = session.cookie();
                return Ok((session, cookie));
            }
        }
        let (session, cookie) = open(state, identity, None, ttl).await?;
        let mut sessions = self.0.lock().map_err(|_| Problem::internal())?;
        sessions.retain(|_, s| !expired(&s.record));
        sessions.insert(key, session.clone());
        Ok((session, cookie))
    }
}

/// Ends `session` everywhere (deleted from the store and the index); returns the `Set-Cookie`
/// value that removes the cookie. A store that cannot be reached is an error: the session
/// would live on in the other replicas.
pub async fn close(state: &AppState, session: &Session) -> Result<String, Problem> {
    let key = state.keys.session(&session.hash);
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "the status store refused to end a console session");
        Problem::unavailable("the status store is unreachable: the session could not be ended; try again")
    };
    let mut client = state.health.client().ok_or_else(|| unavailable(&"not connected"))?;
    tokio::time::timeout(STORE_TIMEOUT, client.delete(key, None))
        .await
        .map_err(|_| unavailable(&"timed out"))?
        .map_err(|e| unavailable(&e))?;
    if let Ok(mut index) = state.index.write() {
        index.sessions.remove(&session.hash);
    }
    tracing::info!(identity = %session.record.identity, "console session ended");
    Ok(removal())
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn removal() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn the_cookie_is_read_only_in_its_own_shape() {
        let id = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, HeaderValue::from_str(&format!("a=b; {COOKIE}={id}; c=d")).unwrap());
        assert_eq!(cookie_id(&headers), Some(id.as_str()));
        headers.insert(http::header::COOKIE, HeaderValue::from_static("__Host-suyun-session=short"));
        assert_eq!(cookie_id(&headers), None);
        headers.insert(http::header::COOKIE, HeaderValue::from_static("suyun-session=x"));
        assert_eq!(cookie_id(&headers), None);
    }

    #[test]
    fn csrf_tokens_are_per_session_and_not_the_store_key() {
        let a = Session { id: "a".repeat(43), hash: hash_of(&"a".repeat(43)), record: SessionRecord::default() };
        let b = Session { id: "b".repeat(43), hash: hash_of(&"b".repeat(43)), record: SessionRecord::default() };
        assert!(csrf_matches(&a, &a.csrf()));
        assert!(!csrf_matches(&a, &b.csrf()));
        assert!(!csrf_matches(&a, ""));
        assert!(!a.hash.starts_with(&a.csrf()), "the CSRF token must not be readable from the store key");
    }

    #[test]
    fn sessions_end_at_their_expiry() {
        let mut record = SessionRecord { expires: "2000-01-01T00:00:00Z".into(), ..SessionRecord::default() };
        assert!(expired(&record));
        record.expires = "2999-01-01T00:00:00Z".into();
        assert!(!expired(&record));
        record.expires = "garbage".into();
        assert!(expired(&record));
    }
}
