//! Throw-away PKI for tests, generated with rcgen at test time (never committed): a CA, a
//! server certificate for 127.0.0.1/localhost, client certificates with a chosen subject, and
//! a second, untrusted CA.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber, date_time_ymd,
};

/// A PEM certificate and its private key.
#[derive(Debug, Clone)]
pub struct Pem {
    /// Certificate (PEM).
    pub cert: String,
    /// Private key (PEM, PKCS#8).
    pub key: String,
    /// Serial number (what a CRL names).
    pub serial: u64,
}

/// A certificate authority that can sign server and client certificates.
#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate and key.
    pub pem: Pem,
    params: CertificateParams,
    key: KeyPair,
    serials: AtomicU64,
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
        TestCa { pem: Pem { cert: cert.pem(), key: key.serialize_pem(), serial: 1 }, params, key, serials: 1.into() }
    }

    fn sign(&self, mut params: CertificateParams) -> Pem {
        let serial = self.serials.fetch_add(1, Ordering::Relaxed) + 1;
        params.serial_number = Some(SerialNumber::from(serial));
        // As certificates from openssl and cert-manager have it; strict RFC 5280 verifiers
        // (sslyze's, tests/tests/tls_audit.rs) refuse a leaf without an authority key identifier.
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed certificate");
        Pem { cert: cert.pem(), key: key.serialize_pem(), serial }
    }

    /// A certificate revocation list (PEM) of this CA revoking `revoked`.
    pub fn crl(&self, revoked: &[&Pem]) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(self.serials.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|pem| RevokedCertParams {
                    serial_number: SerialNumber::from(pem.serial),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(&issuer).expect("signed CRL").pem().expect("CRL PEM")
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

/// Writes `contents` to `dir/name` and returns the path. The file is replaced whole (written
/// beside it, then renamed), as Kubernetes updates a mounted Secret: a reader never sees half.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("PKI directory");
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    std::fs::write(&partial, contents).expect("writing PEM");
    std::fs::rename(&partial, &path).expect("renaming PEM");
    path
}
