//! The serving certificate, read from files (a mounted Secret) and reloaded when they change, so a
//! rotated certificate is served without a restart and a broken one never replaces a good one.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not PEM of the kind expected.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key is not one rustls can sign with.
    #[error("{}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The key is not the certificate's.
    #[error("the key does not match the certificate: {0}")]
    Mismatch(#[source] rustls::Error),
    /// The TLS configuration could not be built.
    #[error("{0}")]
    Config(#[source] rustls::Error),
}

/// The certificate currently served, swapped in place when the files change.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Vec<u8>, Arc<CertifiedKey>)>,
}

impl CertStore {
    /// Loads the certificate chain and key; fails when either is unusable.
    pub fn open(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (raw, ck) = load(cert, key)?;
        Ok(CertStore { cert: cert.into(), key: key.into(), current: RwLock::new((raw, Arc::new(ck))) })
    }

    /// Reads the files again; swaps in a changed, valid pair. Returns whether it swapped.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (raw, ck) = load(&self.cert, &self.key)?;
        let Ok(mut cur) = self.current.write() else { return Ok(false) };
        if cur.0 == raw {
            return Ok(false);
        }
        *cur = (raw, Arc::new(ck));
        Ok(true)
    }

    /// Checks the files every `every`, for as long as the process runs.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            match self.reload() {
                Ok(true) => tracing::info!(cert = %self.cert.display(), "serving a new certificate"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "certificate files unusable; still serving the previous one"),
            }
        }
    }

    /// The TLS server configuration that serves whatever the store holds.
    pub fn server_config(self: Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self);
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.1.clone())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.into(), source })
}

fn load(cert: &Path, key: &Path) -> Result<(Vec<u8>, CertifiedKey), TlsError> {
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Pem { path: cert.into(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.into() });
    }
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::Pem { path: key.into(), source })?;
    let provider =
        CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let signer =
        provider.key_provider.load_private_key(der).map_err(|source| TlsError::Key { path: key.into(), source })?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(TlsError::Mismatch)?;
    let mut raw = cert_pem;
    raw.extend_from_slice(&key_pem);
    Ok((raw, ck))
}
