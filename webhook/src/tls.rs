//! The serving certificate: loaded from PEM files, swapped in place when the files change (a Secret
//! update, cert-manager renewal), so new connections get the new certificate without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::error::{Error, Result};

/// Hands every handshake the current certificate; [`reload_if_changed`](Self::reload_if_changed)
/// replaces it.
#[derive(Debug)]
pub struct CertReloader {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents last loaded. Compared by content, not mtime: Secret volumes swap a symlink
    /// (mtime of the link target may not move), and two rotations within a second share an mtime.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

fn tls_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Tls {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_error(path, e.to_string()))
}

impl CertReloader {
    /// Loads the certificate chain and key; errors name the file at fault.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_pem, key_pem) = (read(cert_file)?, read(key_file)?);
        let key = certified(&cert_pem, &key_pem, cert_file, key_file, &provider)?;
        Ok(CertReloader {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
            loaded: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// Re-reads both files; if either changed and the pair is valid, serves it from now on. Returns
    /// whether a new certificate was installed. A half-written or mismatched pair is an error and the
    /// old certificate stays (the next poll tries again).
    pub fn reload_if_changed(&self) -> Result<bool> {
        let (cert_pem, key_pem) = (read(&self.cert_file)?, read(&self.key_file)?);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let key = certified(
            &cert_pem,
            &key_pem,
            &self.cert_file,
            &self.key_file,
            &self.provider,
        )?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        *loaded = (cert_pem, key_pem);
        Ok(true)
    }

    /// The crypto provider, for the client CA's verifier.
    pub(crate) fn provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }

    /// A rustls server configuration (h2 and http/1.1) resolving through this reloader, requiring a
    /// client certificate that `clients` accepts when given.
    pub fn server_config(
        self: &Arc<Self>,
        clients: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Result<Arc<ServerConfig>> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&self.cert_file, e.to_string()))?;
        let builder = match clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn certified(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert_file, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(tls_error(cert_file, "contains no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| tls_error(key_file, format!("not a PEM private key: {e}")))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| tls_error(key_file, format!("does not fit the certificate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::generate;

    #[test]
    fn a_broken_rotation_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let a = generate("svc", "ns").unwrap();
        std::fs::write(&cert, &a.cert_pem).unwrap();
        std::fs::write(&key, &a.key_pem).unwrap();
        let r = CertReloader::load(&cert, &key).unwrap();
        assert!(!r.reload_if_changed().unwrap());
        // A new certificate with the old key: refused, the old pair stays.
        let b = generate("svc", "ns").unwrap();
        std::fs::write(&cert, &b.cert_pem).unwrap();
        let e = r.reload_if_changed().unwrap_err().to_string();
        assert!(e.contains("tls.key") && e.contains("does not fit"), "{e}");
        std::fs::write(&key, &b.key_pem).unwrap();
        assert!(r.reload_if_changed().unwrap());
        std::fs::write(&key, "garbage").unwrap();
        assert!(r.reload_if_changed().is_err());
        assert!(CertReloader::load(&dir.path().join("missing"), &key).is_err());
    }
}
