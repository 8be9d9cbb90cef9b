//! The server's TLS settings, built from PEM files and rebuilt when the files change:
//! cert-manager renews the server certificate into its mounted Secret, the platform team adds
//! a client CA or publishes a certificate revocation list, and new connections use the new
//! settings without a restart. A set of files that does not make a valid configuration (a key
//! that does not match its certificate, a CRL that does not parse) is refused and the previous
//! settings stay in force, with an error in the log. Open connections are closed gracefully
//! when new settings are taken (after the request they are serving), so every connection is
//! soon one that was accepted under the current CA bundle and revocation list.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::watch;

/// Parses every certificate of a PEM file.
pub fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the PEM");
    Ok(certs)
}

/// Parses every certificate revocation list (`X509 CRL` block) of a PEM file.
pub fn revocation_lists(pem: &[u8]) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!crls.is_empty(), "no certificate revocation list in the PEM");
    Ok(crls)
}

/// The server's TLS settings: TLS 1.3 and 1.2, ALPN h2 and http/1.1; client certificates
/// verified against `client_ca` (optional: clients without one may still use a token) and, when
/// given, the revocation lists in `client_crl`.
///
/// Revocation is checked for the client's own certificate (not its intermediates), and a
/// certificate whose issuer has no list in `client_crl` is accepted: a CRL revokes the
/// certificates it names, it is not required for every client CA.
pub fn tls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
    client_crl_pem: Option<&[u8]>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| anyhow::anyhow!("no private key in the PEM: {e}"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match (client_ca_pem, client_crl_pem) {
        (Some(ca), crl) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert)?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if let Some(crl) = crl {
                verifier = verifier
                    .with_crls(revocation_lists(crl)?)
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
            }
            builder.with_client_cert_verifier(verifier.allow_unauthenticated().build()?)
        }
        (None, Some(_)) => anyhow::bail!("a client CRL needs a client CA"),
        (None, None) => builder.with_no_client_auth(),
    };
    // Refuses a key that does not belong to the certificate (a renewal caught half-written).
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Where the TLS settings are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM server certificate chain.
    pub cert: PathBuf,
    /// PEM private key of the server certificate.
    pub key: PathBuf,
    /// PEM CA(s) that sign client certificates.
    pub client_ca: Option<PathBuf>,
    /// PEM certificate revocation list(s) of client certificates.
    pub client_crl: Option<PathBuf>,
}

impl TlsFiles {
    fn read(&self) -> anyhow::Result<TlsContents> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()));
        Ok(TlsContents {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
            client_ca: self.client_ca.as_deref().map(read).transpose()?,
            client_crl: self.client_crl.as_deref().map(read).transpose()?,
        })
    }
}

/// What the files held when they were last read.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsContents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    client_crl: Option<Vec<u8>>,
}

impl TlsContents {
    fn build(&self) -> anyhow::Result<Arc<ServerConfig>> {
        tls_config(&self.cert, &self.key, self.client_ca.as_deref(), self.client_crl.as_deref())
    }
}

/// The TLS settings new connections are accepted with; [`ServerTls::current`] is read once per
/// connection.
#[derive(Debug)]
pub struct ServerTls {
    files: Option<TlsFiles>,
    current: RwLock<Arc<ServerConfig>>,
    /// Counts the settings taken since start; connections watch it to close when it moves.
    generation: watch::Sender<u64>,
    /// The contents last tried (taken or refused), so a refused set is reported once.
    seen: Mutex<TlsContents>,
}

impl ServerTls {
    /// Settings that never change.
    pub fn fixed(config: Arc<ServerConfig>) -> Arc<ServerTls> {
        Arc::new(ServerTls {
            files: None,
            current: RwLock::new(config),
            generation: watch::Sender::new(0),
            seen: Mutex::default(),
        })
    }

    /// Loads `files`; files that are missing or do not make a valid configuration are an error
    /// at start-up.
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<ServerTls>> {
        let contents = files.read()?;
        let config = contents.build()?;
        Ok(Arc::new(ServerTls {
            files: Some(files),
            current: RwLock::new(config),
            generation: watch::Sender::new(0),
            seen: Mutex::new(contents),
        }))
    }

    /// The settings for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().expect("TLS lock").clone()
    }

    /// Tells when new settings are taken: `changed()` resolves after each. Connections use it
    /// to close (gracefully) and reconnect under the new settings, so that a revoked client
    /// certificate or a removed client CA does not live on in a long keep-alive connection.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-reads the files; `Ok(true)` when they changed and the new settings were taken. Files
    /// that cannot be read or do not make a valid configuration are an error, and the previous
    /// settings stay in force; the same refused contents are not reported twice.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Some(files) = &self.files else { return Ok(false) };
        let contents = files.read()?;
        let config = {
            let mut seen = self.seen.lock().expect("TLS lock");
            if *seen == contents {
                return Ok(false);
            }
            *seen = contents;
            seen.build()?
        };
        *self.current.write().expect("TLS lock") = config;
        self.generation.send_modify(|generation| *generation += 1);
        tracing::info!(cert = %files.cert.display(), "loaded new TLS settings");
        Ok(true)
    }

    /// Checks the files every `interval` until the task is aborted.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let tls = Arc::clone(self);
        crate::reload::spawn(interval, "TLS files not reloaded; the previous settings stay in force", move || {
            tls.reload()
        })
    }
}
