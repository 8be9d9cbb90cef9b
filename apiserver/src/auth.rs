//! Who is calling and what they may see: client certificates (mTLS) and bearer tokens, both
//! mapped to an [`Identity`] with a [`Scope`].
//!
//! * **Certificate**: signed by the configured client CA (checked in the TLS handshake); the
//!   subject's CN is the identity, its OU the scope (`province` or a 6-digit region code). A
//!   second OU `read-only` withholds the right to approve cutovers.
//! * **Token**: `Authorization: Bearer <token>`; the token file holds SHA-256 hashes of the
//!   tokens, never the tokens, one per line:
//!   `<sha256 hex> <identity> <scope> [read-only]` (`#` starts a comment). It is re-read when
//!   its content changes, and fails closed: while it is missing, unreadable or malformed, no
//!   token is accepted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::problem::quoted;
use suyun_store::readmodel::region_in_scope;

/// What an identity may see: the whole province or one region (a city with its counties).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything.
    Province,
    /// One GB/T 2260 region code, e.g. `320500` (苏州市 and its counties).
    Region(String),
}

impl Scope {
    /// Parses `province` or a 6-digit region code.
    pub fn parse(text: &str) -> Result<Scope, String> {
        if text == "province" {
            Ok(Scope::Province)
        } else if text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Scope::Region(text.to_owned()))
        } else {
            Err(format!("scope {} is neither `province` nor a 6-digit region code", quoted(text)))
        }
    }

    /// Whether a record of `region` is visible in this scope.
    pub fn covers(&self, region: &str) -> bool {
        match self {
            Scope::Province => true,
            Scope::Region(code) => region_in_scope(region, code),
        }
    }

    /// `province` or the region code.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::Province => "province",
            Scope::Region(code) => code,
        }
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A client certificate.
    Certificate,
    /// A bearer token.
    Token,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Certificate CN or the token's identity, e.g. `suzhou-ops-zhang`.
    pub name: String,
    /// What it may see.
    pub scope: Scope,
    /// Whether it may only read (no cutover approvals).
    pub read_only: bool,
    /// How it authenticated.
    pub method: Method,
}

/// The identity in a client certificate's subject (the chain was verified in the handshake).
pub fn identity_from_certificate(der: &[u8]) -> Result<Identity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the certificate subject has no CN")?
        .to_owned();
    let mut scope = None;
    let mut read_only = false;
    for unit in subject.iter_organizational_unit() {
        match unit.as_str().map_err(|_| "an OU of the certificate subject is not text")? {
            "read-only" => read_only = true,
            other if scope.is_none() => scope = Some(Scope::parse(other)?),
            other => return Err(format!("the certificate subject has a second scope OU {}", quoted(other))),
        }
    }
    let scope = scope.ok_or("the certificate subject has no OU naming its scope")?;
    Ok(Identity { name, scope, read_only, method: Method::Certificate })
}

/// SHA-256 of a token, lower-case hex: what the token file holds.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Parses a token file into hash → identity; errors name the line.
pub fn parse_token_file(text: &str) -> Result<HashMap<[u8; 32], Identity>, String> {
    let mut tokens = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: String| format!("line {}: {what}", number + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (hash, name, scope, read_only) = match fields[..] {
            [hash, name, scope] => (hash, name, scope, false),
            [hash, name, scope, "read-only"] => (hash, name, scope, true),
            _ => return Err(at("expected `<sha256 hex> <identity> <scope> [read-only]`".into())),
        };
        let digest: [u8; 32] = hex::decode(hash)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| at(format!("{} is not a SHA-256 in hex (64 characters)", quoted(hash))))?;
        let scope = Scope::parse(scope).map_err(at)?;
        let identity = Identity { name: name.to_owned(), scope, read_only, method: Method::Token };
        if tokens.insert(digest, identity).is_some() {
            return Err(at("the same token hash appears twice".into()));
        }
    }
    Ok(tokens)
}

/// The bearer tokens, re-read from their file when it changes. The file fails closed: while it
/// is missing, unreadable or does not parse, no token is accepted (a token withdrawn by
/// deleting or breaking the file must not stay valid).
#[derive(Debug, Default)]
pub struct TokenStore {
    path: Option<PathBuf>,
    state: RwLock<TokenState>,
}

#[derive(Debug, Default)]
struct TokenState {
    /// The file's content when it was last read; `None` when it could not be read.
    text: Option<Vec<u8>>,
    /// The tokens in force: the file's, or none when it could not be read or parsed.
    tokens: HashMap<[u8; 32], Identity>,
}

impl TokenStore {
    /// No tokens: certificates only.
    pub fn empty() -> TokenStore {
        TokenStore::default()
    }

    /// Loads `path`; a file that is missing or does not parse is an error at start-up.
    pub fn load(path: &Path) -> anyhow::Result<TokenStore> {
        let store = TokenStore { path: Some(path.to_owned()), state: RwLock::default() };
        store.reload()?;
        Ok(store)
    }

    /// The identity of `token`, if the file lists its hash.
    pub fn lookup(&self, token: &str) -> Option<Identity> {
        self.lookup_digest(&Sha256::digest(token.as_bytes()).into())
    }

    /// The identity of the token whose SHA-256 is `digest`, if the file still lists it (a
    /// console session keeps the hash of the token it was opened with, never the token).
    pub fn lookup_digest(&self, digest: &[u8; 32]) -> Option<Identity> {
        self.state.read().expect("token lock").tokens.get(digest).cloned()
    }

    /// Re-reads the file; `Ok(true)` when its content changed and was taken. A file that cannot
    /// be read or does not parse is an error, and withdraws every token until it is fixed.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Some(path) = &self.path else { return Ok(false) };
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) => {
                *self.state.write().expect("token lock") = TokenState::default();
                anyhow::bail!("reading {}: {e}; no token is accepted until it can be read", path.display());
            }
        };
        if self.state.read().expect("token lock").text.as_ref() == Some(&text) {
            return Ok(false);
        }
        match parse_token_file(&String::from_utf8_lossy(&text)) {
            Ok(tokens) => {
                let count = tokens.len();
                *self.state.write().expect("token lock") = TokenState { text: Some(text), tokens };
                tracing::info!(path = %path.display(), tokens = count, "loaded the token file");
                Ok(true)
            }
            Err(e) => {
                *self.state.write().expect("token lock") = TokenState { text: Some(text), tokens: HashMap::new() };
                anyhow::bail!("token file {}: {e}; no token is accepted until it parses", path.display())
            }
        }
    }

    /// Checks the file every `interval` until the task is aborted; logs an error each time the
    /// file becomes unusable (and again when the reason changes).
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        crate::reload::spawn(interval, "token file unusable; every bearer token is refused", move || store.reload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_cover() {
        assert_eq!(Scope::parse("province"), Ok(Scope::Province));
        assert!(Scope::parse("3205").is_err());
        assert!(Scope::parse("nanjing").is_err());
        let suzhou = Scope::parse("320500").unwrap();
        assert!(suzhou.covers("320583"));
        assert!(!suzhou.covers("320100"));
        assert!(Scope::Province.covers("320100"));
    }

    #[test]
    fn token_file_lines() {
        let hash = token_hash("s3cret");
        let text = format!("# city ops\n{hash} suzhou-ops 320500\n{} viewer province read-only\n", token_hash("x"));
        let tokens = parse_token_file(&text).unwrap();
        assert_eq!(tokens.len(), 2);
        let err = parse_token_file("abc suzhou 320500").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = parse_token_file(&format!("{hash} a 3205")).unwrap_err();
        assert!(err.contains("6-digit"), "{err}");
    }

    #[test]
    fn token_file_fails_closed() {
        let dir = std::env::temp_dir().join(format!("suyun-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, format!("{} ops 320500\n", token_hash("t"))).unwrap();
        let store = TokenStore::load(&path).unwrap();
        assert!(store.lookup("t").is_some());
        std::fs::remove_file(&path).unwrap();
        assert!(store.reload().is_err());
        assert!(store.lookup("t").is_none(), "a deleted token file still grants its tokens");
        std::fs::write(&path, format!("{} ops 320500\n", token_hash("t"))).unwrap();
        assert!(store.reload().unwrap());
        assert!(store.lookup("t").is_some());
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(store.reload().is_err());
        assert!(store.lookup("t").is_none(), "a malformed token file still grants the old tokens");
        // The same bad content is not reported again; fixing it restores the tokens.
        assert!(!store.reload().unwrap());
        std::fs::write(&path, format!("{} ops 320500\n", token_hash("t"))).unwrap();
        assert!(store.reload().unwrap());
        assert!(store.lookup("t").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
