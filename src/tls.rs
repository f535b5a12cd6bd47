//! Built-in TLS (rustls) from PEM certificate and key files. The certificate
//! is held behind a resolver so `SIGHUP` can swap it without touching open
//! connections: new handshakes use the new certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {0}: {1}")]
    Cert(PathBuf, String),
    #[error("cannot read private key {0}: {1}")]
    Key(PathBuf, String),
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert(cert.into(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(cert.into(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Cert(cert.into(), "no certificate found".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key(key.into(), e.to_string()))?;
    let ck = CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    Ok(Arc::new(ck))
}

/// The current certificate, replaceable at runtime.
#[derive(Debug)]
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            cert: cert.into(),
            key: key.into(),
            current: RwLock::new(load(cert, key)?),
        }))
    }

    /// Re-reads the files; on error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A TLS acceptor offering HTTP/2 and HTTP/1.1.
pub fn acceptor(cert: Arc<ReloadableCert>) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
