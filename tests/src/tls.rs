//! Throw-away PKI for tests, generated with rcgen at test time (never committed): a CA, a
//! server certificate for 127.0.0.1/localhost, client certificates with a chosen subject, and
//! a second, untrusted CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A PEM certificate and its private key.
#[derive(Debug, Clone)]
pub struct Pem {
    /// Certificate (PEM).
    pub cert: String,
    /// Private key (PEM, PKCS#8).
    pub key: String,
}

/// A certificate authority that can sign server and client certificates.
#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate and key.
    pub pem: Pem,
    params: CertificateParams,
    key: KeyPair,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa { pem: Pem { cert: cert.pem(), key: key.serialize_pem() }, params, key }
    }

    fn sign(&self, mut params: CertificateParams) -> Pem {
        // As certificates from openssl and cert-manager have it; strict RFC 5280 verifiers
        // (sslyze's, tests/tests/tls_audit.rs) refuse a leaf without an authority key identifier.
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed certificate");
        Pem { cert: cert.pem(), key: key.serialize_pem() }
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server params");
        params.distinguished_name.push(DnType::CommonName, "suyun-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate with subject `CN=<cn>` and one `OU` per entry of `units` (the
    /// apiserver reads the scope, and `read-only`, from them).
    pub fn client(&self, cn: &str, units: &[&str]) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        for (i, unit) in units.iter().enumerate() {
            // rcgen keeps one value per attribute type; further OUs go in under the OU's OID.
            let ty = if i == 0 { DnType::OrganizationalUnitName } else { DnType::CustomDnType(vec![2, 5, 4, 11]) };
            params.distinguished_name.push(ty, *unit);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("PKI directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("writing PEM");
    path
}
