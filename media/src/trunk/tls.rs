//! Mutual TLS for trunks: every node holds a certificate signed by the
//! cluster's CA and accepts only peers that do too. Also makes a development
//! set (a CA and one node certificate) for `chats3 cluster-cert` and tests.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The name every node certificate carries and every dialer expects: the
/// CA, not the name, says who belongs to the cluster.
pub const SERVER_NAME: &str = "chats3-node";
const ALPN: &[u8] = b"chats3-trunk/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {why}")]
    Pem { what: &'static str, why: String },
    #[error("tls: {0}")]
    Rustls(String),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A node's certificate chain and key, and the cluster CA, in PEM.
#[derive(Clone)]
pub struct TrunkTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for TrunkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrunkTls { .. }") // never print the key
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn rustls_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}

impl TrunkTls {
    /// A development set: a fresh CA and one certificate for all nodes.
    pub fn generate() -> Result<Self, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "chats3 cluster CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut node = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        node.distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        node.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = node.signed_by(&key, &ca)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.pem(),
        })
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        pem_certs(&self.cert_pem, "cluster_cert")
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| TlsError::Pem {
            what: "cluster_key",
            why: e.to_string(),
        })
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(&self.ca_pem, "cluster_ca")? {
            roots.add(c).map_err(rustls_err)?;
        }
        Ok(Arc::new(roots))
    }

    /// The accepting side: only clients with a certificate from the CA.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(rustls_err)?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, self.key()?)
            .map_err(rustls_err)?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(cfg).map_err(rustls_err)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    /// The dialing side: presents its certificate, trusts only the CA.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls_err)?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain()?, self.key()?)
            .map_err(rustls_err)?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).map_err(rustls_err)?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }
}

fn pem_certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            why: "no certificate found".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_set_makes_both_configs() {
        let set = TrunkTls::generate().unwrap();
        set.server_config().unwrap();
        set.client_config().unwrap();
        assert!(!format!("{set:?}").contains("PRIVATE"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let mut set = TrunkTls::generate().unwrap();
        set.ca_pem = "not pem".into();
        let e = set.server_config().unwrap_err().to_string();
        assert!(e.contains("cluster_ca"), "{e}");
    }
}
