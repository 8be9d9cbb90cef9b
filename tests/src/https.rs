//! A small HTTPS client for tests and the load generator: hyper over tokio-rustls (ring),
//! HTTP/1.1 with keep-alive, an optional client certificate, and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A response with its body read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes (as sent: still gzip-compressed when the server compressed it).
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// TLS client settings trusting `ca_pem`, presenting `client` (cert, key PEMs) when given.
pub fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_pem)? {
        roots.add(cert)?;
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("no private key in PEM")?;
            builder.with_client_auth_cert(certs(cert)?, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in PEM");
    Ok(certs)
}

/// A TLS connection to `addr` (server name `localhost`) with nothing spoken over it yet: for
/// tests that send raw bytes or look at the server's certificate.
pub async fn tls_connect(addr: SocketAddr, tls: Arc<ClientConfig>) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tokio_rustls::TlsConnector::from(tls).connect(ServerName::try_from("localhost")?, tcp).await?)
}

/// One keep-alive HTTPS connection.
#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Connects to `addr` and completes the TLS handshake (server name `localhost`).
    pub async fn open(addr: SocketAddr, tls: Arc<ClientConfig>) -> anyhow::Result<Connection> {
        let stream = tls_connect(addr, tls).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        self.sender.ready().await?;
        let mut request = Request::builder().method(method).uri(path).header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.sender.send_request(request.body(Full::new(body))?).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, headers, body })
    }
}

/// A caller: where the server is, how to reach it, and an optional bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Server address.
    pub addr: SocketAddr,
    /// TLS settings (CA, client certificate).
    pub tls: Arc<ClientConfig>,
    /// Bearer token sent with every request.
    pub token: Option<String>,
}

impl Caller {
    /// `GET path` on a fresh connection, with extra headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        self.call(Method::GET, path, headers).await
    }

    /// `GET path` on a fresh connection.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.call(Method::GET, path, &[]).await
    }

    /// `POST path` with an empty body declared as JSON (as a well-behaved client sends it) on
    /// a fresh connection.
    pub async fn post(&self, path: &str) -> anyhow::Result<Reply> {
        self.call(Method::POST, path, &[("content-type", "application/json")]).await
    }

    /// `DELETE path` with an empty body declared as JSON on a fresh connection.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Reply> {
        self.call(Method::DELETE, path, &[("content-type", "application/json")]).await
    }

    /// Any request, with exactly these headers (plus the bearer token) and body, on a fresh
    /// connection.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        let mut connection = Connection::open(self.addr, self.tls.clone()).await?;
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(value) = &authorization {
            all.push(("authorization", value));
        }
        connection.send(method, path, &all, body.into()).await
    }

    async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        self.send(method, path, headers, Bytes::new()).await
    }
}
